/*
 * api.c - request handlers of sofaasd (see api.h).
 *
 * Every error a client can see is produced here or in http.c through
 * sf_http_error(), so bodies are always {"error":{"code","message"}}; the
 * invocation failure classes map to statuses in one table (inv_errors).
 */
#include "api.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "artifact.h"
#include "log.h"
#include "trace.h"
#include "meter.h"
#include "usage.h"
#include "util.h"

struct sf_api {
    sf_registry *reg;
    sf_pool *pool;
    sf_meter *meter;
    char *token;
    size_t token_len;
    size_t invoke_body_max;
    size_t deploy_body_max;
    bool access_log;
    bool ready;
    sf_metrics *metrics;
    sf_fnlog *fnlog;
};

static const struct {
    int status;
    const char *code;
} inv_errors[] = {
    [SF_INV_OK] = {200, "ok"},
    [SF_INV_CRASHED] = {502, "function_crashed"},
    [SF_INV_TIMEOUT] = {504, "timeout"},
    [SF_INV_INIT_FAILED] = {502, "init_failed"},
    [SF_INV_INVALID_RESPONSE] = {502, "invalid_response"},
    [SF_INV_SANDBOX] = {500, "sandbox_violation"},
    [SF_INV_UNAVAILABLE] = {503, "function_unavailable"},
    [SF_INV_OOM] = {502, "out_of_memory"},
    [SF_INV_THROTTLED] = {429, "throttled"},
    [SF_INV_QUEUE_TIMEOUT] = {429, "throttled"},
    [SF_INV_BACKOFF] = {503, "function_unavailable"},
};

#define SF_API_SMALL_BODY_MAX (64u << 10)

static int deploy_begin(sf_api *api, sf_http_req *req, const char **code,
                        const char **msg);

/* ---- headers stage ------------------------------------------------------ */

static bool authorized(sf_api *api, const sf_http_req *req)
{
    const sofaas_header *h;

    if (api->token == NULL)
        return true;
    h = sf_http_header(req, "Authorization");
    if (h == NULL || h->value_len < 7 ||
        strncasecmp(h->value, "Bearer ", 7) != 0)
        return false;
    return sf_ct_equal(h->value + 7, h->value_len - 7, api->token,
                       api->token_len);
}

static int on_headers(void *ctx, sf_http_req *req, const char **code,
                      const char **msg)
{
    sf_api *api = ctx;

    sf_router_match(req->method, req->path, req->path_len, &req->route);
    if (req->route.admin && !authorized(api, req)) {
        *code = "unauthorized";
        *msg = "missing or wrong admin token (Authorization: Bearer ...)";
        return 401;
    }
    switch (req->route.id) {
    case SF_ROUTE_FN_DEPLOY:
        req->body_limit = api->deploy_body_max;
        return deploy_begin(api, req, code, msg);
    case SF_ROUTE_INVOKE:
        req->body_limit = api->invoke_body_max;
        break;
    default:
        req->body_limit = SF_API_SMALL_BODY_MAX;
    }
    return 0;
}

/* ---- JSON helpers ------------------------------------------------------- */

static void respond_json(sf_http_req *req, int status, cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);

    cJSON_Delete(j);
    if (s == NULL) {
        sf_http_error(req, 500, "internal", "out of memory");
        return;
    }
    sf_http_json(req, status, s);
    free(s);
}

static cJSON *function_json(const sf_function *f)
{
    cJSON *j = cJSON_CreateObject();
    char ts[32];

    cJSON_AddStringToObject(j, "name", f->name);
    cJSON_AddNumberToObject(j, "version", (double)f->version);
    cJSON_AddStringToObject(j, "sha256", f->sha256);
    cJSON_AddNumberToObject(j, "size", (double)f->size);
    cJSON_AddItemToObject(j, "config", sf_fn_config_to_json(&f->config));
    sf_rfc3339(f->created_at_us, ts);
    cJSON_AddStringToObject(j, "created_at", ts);
    return j;
}

/* ---- admin handlers ----------------------------------------------------- */

static void handle_list(sf_api *api, sf_http_req *req)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "functions");

    for (size_t i = 0; i < sf_registry_count(api->reg); i++)
        cJSON_AddItemToArray(arr,
                             function_json(sf_registry_at(api->reg, i)));
    respond_json(req, 200, root);
}

static const sf_function *named_function(sf_api *api, sf_http_req *req)
{
    const sf_route *rt = &req->route;
    const sf_function *f;

    if (!rt->name_valid) {
        sf_http_error(req, 400, "invalid_name",
                      "function names must match ^[a-z0-9][a-z0-9-]{0,62}$");
        return NULL;
    }
    f = sf_registry_get(api->reg, rt->name, rt->name_len);
    if (f == NULL)
        sf_http_error(req, 404, "function_not_found",
                      "no function named '%.*s'", (int)rt->name_len,
                      rt->name);
    return f;
}

/* The pool's view of a function: instance counts by state and the state of
 * its warm target, template and crash-loop backoff. Caller owns. */
static cJSON *instances_json(sf_api *api, const char *name)
{
    sf_pool_fn_stats s;
    cJSON *j = cJSON_CreateObject();

    sf_pool_function_stats(api->pool, name, &s);
    cJSON_AddNumberToObject(j, "loading", s.loading);
    cJSON_AddNumberToObject(j, "idle", s.idle);
    cJSON_AddNumberToObject(j, "busy", s.busy);
    cJSON_AddNumberToObject(j, "draining", s.draining);
    cJSON_AddNumberToObject(j, "template", s.templates);
    cJSON_AddNumberToObject(j, "queued", s.queued);
    cJSON_AddNumberToObject(j, "warm_target", s.warm_target);
    cJSON_AddNumberToObject(j, "recent_peak",
                            (double)(long)(s.recent_peak * 1000) / 1000);
    cJSON_AddBoolToObject(j, "template_active", s.template_active);
    cJSON_AddNumberToObject(j, "template_init_us", (double)s.template_init_us);
    cJSON_AddNumberToObject(j, "backoff_ms", (double)s.backoff_ms);
    return j;
}

/* Tells the pool f is current so its min_warm instances start. */
static void provision(sf_api *api, const sf_function *f)
{
    sf_fn_spec spec = {.name = f->name,
                       .version = f->version,
                       .artifact_path = f->artifact_path,
                       .config = f->config};

    if (sf_pool_provision(api->pool, &spec) < 0)
        SF_WARN("msg=\"cannot provision instances\" function=%s", f->name);
}

void sf_api_provision_all(sf_api *api)
{
    for (size_t i = 0; i < sf_registry_count(api->reg); i++)
        provision(api, sf_registry_at(api->reg, i));
}

static void handle_get(sf_api *api, sf_http_req *req)
{
    const sf_function *f = named_function(api, req);
    cJSON *j, *budget;

    if (f == NULL)
        return;
    j = function_json(f);
    budget = sf_meter_budget_json(api->meter, f->name, &f->config);
    if (budget != NULL)
        cJSON_AddItemToObject(j, "budget_status", budget);
    cJSON_AddItemToObject(j, "instances", instances_json(api, f->name));
    cJSON_AddItemToObject(j, "versions",
                          sf_registry_versions_json(api->reg, f->name));
    respond_json(req, 200, j);
}

/* Answers a registry write that failed: 503 with Retry-After when the
 * database was busy (nothing changed; the client should retry), else 500. */
static void registry_failed(sf_http_req *req, int r, const char *name,
                            const char *what)
{
    static const sofaas_header retry = {"Retry-After", 11, "1", 1};

    if (r == -EBUSY)
        sf_http_error_hdrs(req, 503, &retry, 1, "database_busy",
                           "the database is locked by another connection; "
                           "'%s' was not changed, retry",
                           name);
    else
        sf_http_error(req, 500, "internal", "could not %s '%s'", what, name);
}

static void handle_delete(sf_api *api, sf_http_req *req)
{
    const sf_function *f = named_function(api, req);
    char name[64];
    int r;

    if (f == NULL)
        return;
    snprintf(name, sizeof(name), "%s", f->name);
    if ((r = sf_registry_delete(api->reg, name)) < 0) {
        registry_failed(req, r, name, "delete");
        return;
    }
    sf_pool_retire_function(api->pool, name, -1);
    SF_INFO("msg=\"function deleted\" function=%s request_id=%s", name,
            req->request_id);
    sf_http_respond(req, 204, NULL, 0, NULL, 0);
}

/*
 * A deploy in progress. Lives exactly as long as its request (freed by the
 * request's on_free hook), so an abandoned upload never leaves a temp file.
 */
typedef struct deploy {
    sf_api *api;
    sf_http_req *req;
    char name[64];
    char sha[65];
    char *path;
    int64_t size;
    sf_fn_config cfg;
    sf_upload *upload;
    char err[256];
} deploy;

static void deploy_free(sf_http_req *req)
{
    deploy *d = req->user;

    if (d == NULL)
        return;
    sf_upload_abort(d->upload);
    free(d->path);
    free(d);
    req->user = NULL;
}

/*
 * Applies the deploy's configuration onto cfg: first the optional
 * X-Sofaas-Config header (a JSON object), then each query parameter.
 * Returns 0, or -EINVAL with the reason (naming the key) in err.
 */
static int deploy_params(sf_http_req *req, sf_fn_config *cfg, char *err,
                         size_t errlen)
{
    const sofaas_header *h = sf_http_header(req, "X-Sofaas-Config");
    const char *q = req->query;

    if (h != NULL) {
        cJSON *j = cJSON_ParseWithLength(h->value, h->value_len);
        int r = j ? sf_fn_config_apply_json(cfg, j, err, errlen) : -EINVAL;
        cJSON_Delete(j);
        if (j == NULL)
            snprintf(err, errlen, "X-Sofaas-Config: not valid JSON");
        if (r < 0)
            return -EINVAL;
    }
    while (*q != '\0') {
        const char *amp = strchr(q, '&');
        size_t pl = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', pl);
        size_t kl = eq ? (size_t)(eq - q) : pl;

        if (pl > 0 && sf_fn_config_apply_param(cfg, q, kl, eq ? eq + 1 : q + pl,
                                               eq ? pl - kl - 1 : 0, err,
                                               errlen) < 0)
            return -EINVAL;
        q = amp ? amp + 1 : q + pl;
    }
    return 0;
}

static int deploy_sink(sf_http_req *req, const char *data, size_t len,
                       const char **code, const char **msg)
{
    deploy *d = req->user;
    int r = sf_upload_write(d->upload, data, len);

    if (r == 0)
        return 0;
    if (r == -ENOSPC || r == -EDQUOT) {
        *code = "insufficient_storage";
        *msg = "no space left to store the artifact";
        SF_WARN("msg=\"deploy refused: disk full\" function=%s "
                "request_id=%s hint=\"free space in the state dir\"",
                d->name, req->request_id);
        return 507;
    }
    *code = "internal";
    *msg = "could not write the artifact";
    return 500;
}

/*
 * Headers stage of a deploy: everything that can be refused before the
 * body is read (name, configuration), then a temp file the body streams to.
 */
static int deploy_begin(sf_api *api, sf_http_req *req, const char **code,
                        const char **msg)
{
    const sf_route *rt = &req->route;
    const sf_function *cur;
    deploy *d;
    int r;

    if (!rt->name_valid) {
        *code = "invalid_name";
        *msg = "function names must match ^[a-z0-9][a-z0-9-]{0,62}$";
        return 400;
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        *code = "overloaded";
        *msg = "out of memory";
        return 503;
    }
    d->api = api;
    d->req = req;
    req->user = d;
    req->on_free = deploy_free;
    snprintf(d->name, sizeof(d->name), "%.*s", (int)rt->name_len, rt->name);
    /* A redeploy keeps the current config unless told otherwise. */
    cur = sf_registry_get(api->reg, d->name, strlen(d->name));
    if (cur != NULL)
        d->cfg = cur->config;
    else
        sf_fn_config_defaults(&d->cfg);
    if (deploy_params(req, &d->cfg, d->err, sizeof(d->err)) < 0) {
        *code = sf_http_header(req, "X-Sofaas-Config") != NULL &&
                        strstr(d->err, "X-Sofaas-Config") != NULL
                    ? "invalid_config"
                    : "invalid_parameter";
        *msg = d->err;
        return 400;
    }
    r = sf_registry_upload_begin(api->reg, &d->upload);
    if (r < 0) {
        *code = r == -ENOSPC ? "insufficient_storage" : "internal";
        *msg = r == -ENOSPC ? "no space left to store the artifact"
                            : "could not create the upload file";
        return r == -ENOSPC ? 507 : 500;
    }
    req->body_sink = deploy_sink;
    return 0;
}

static void on_validated(void *ctx, bool ok, const char *reason)
{
    deploy *d = ctx;
    const sf_function *f;
    sf_http_req *req = d->req;
    int r;

    /* Answering frees req, and with it d: d is not touched after. */
    if (!ok) {
        SF_INFO("msg=\"deploy rejected\" function=%s sha256=%s reason=\"%s\" "
                "request_id=%s",
                d->name, d->sha, reason, req->request_id);
        sf_registry_drop_artifact_if_unused(d->api->reg, d->sha);
        if (strncmp(reason, SF_POOL_VIOLATION_PREFIX,
                    strlen(SF_POOL_VIOLATION_PREFIX)) == 0)
            sf_http_error(req, 500, "sandbox_violation",
                          "loading the function: %s", reason);
        else
            sf_http_error(req, 422, "invalid_artifact", "%s", reason);
        return;
    }
    if ((r = sf_registry_add_version(d->api->reg, d->name, d->sha, d->size,
                                     &d->cfg, &f)) < 0) {
        sf_registry_drop_artifact_if_unused(d->api->reg, d->sha);
        registry_failed(req, r, d->name, "record a version of");
        return;
    }
    sf_pool_retire_function(d->api->pool, f->name, f->version);
    provision(d->api, f);
    SF_INFO("msg=\"function deployed\" function=%s version=%lld sha256=%s "
            "size=%lld request_id=%s",
            f->name, (long long)f->version, f->sha256, (long long)f->size,
            req->request_id);
    respond_json(req, 201, function_json(f));
}

static void handle_deploy(sf_api *api, sf_http_req *req)
{
    deploy *d = req->user;
    const void *head;
    size_t head_len;
    char err[256];
    sf_fn_spec spec;
    int r;

    (void)api;
    head = sf_upload_head(d->upload, &head_len);
    d->size = (int64_t)sf_upload_size(d->upload);
    if (sf_artifact_check(head, head_len, (size_t)d->size, err,
                          sizeof(err)) < 0) {
        sf_http_error(req, 422, "invalid_artifact", "%s", err);
        return;
    }
    r = sf_registry_upload_commit(d->upload, d->sha, &d->path);
    d->upload = NULL;
    if (r == -ENOSPC || r == -EDQUOT) {
        sf_http_error(req, 507, "insufficient_storage",
                      "no space left to store the artifact");
        return;
    }
    if (r < 0) {
        sf_http_error(req, 500, "internal", "could not store the artifact: %s",
                      strerror(-r));
        return;
    }
    /* The artifact is loaded in a worker process, never here. */
    spec = (sf_fn_spec){.name = d->name,
                        .version = 0,
                        .artifact_path = d->path,
                        .config = d->cfg};
    sf_pool_validate(d->api->pool, &spec, on_validated, d);
}

/*
 * PATCH /v1/functions/{name}: a JSON object of configuration keys. Records
 * a new version with the same artifact and the merged configuration (a
 * version is a snapshot of code and config), so instances restart with it.
 */
static void handle_patch(sf_api *api, sf_http_req *req)
{
    const sf_function *f = named_function(api, req);
    sf_fn_config cfg;
    char err[256], name[64], sha[65];
    cJSON *j;
    int64_t size;
    int r;

    if (f == NULL)
        return;
    j = cJSON_ParseWithLength(req->body.data ? req->body.data : "",
                              req->body.len);
    if (j == NULL) {
        sf_http_error(req, 400, "invalid_json", "body is not valid JSON");
        return;
    }
    cfg = f->config;
    r = sf_fn_config_apply_json(&cfg, j, err, sizeof(err));
    cJSON_Delete(j);
    if (r < 0) {
        sf_http_error(req, 400, "invalid_config", "%s", err);
        return;
    }
    snprintf(name, sizeof(name), "%s", f->name);
    snprintf(sha, sizeof(sha), "%s", f->sha256);
    size = f->size;
    if ((r = sf_registry_add_version(api->reg, name, sha, size, &cfg, &f)) <
        0) {
        registry_failed(req, r, name, "record a version of");
        return;
    }
    sf_pool_retire_function(api->pool, f->name, f->version);
    provision(api, f);
    SF_INFO("msg=\"function configured\" function=%s version=%lld "
            "request_id=%s",
            f->name, (long long)f->version, req->request_id);
    respond_json(req, 200, function_json(f));
}

/* ---- invocation --------------------------------------------------------- */

/*
 * One invocation from dispatch to response. In sync metering mode the
 * response is built when the pool answers and kept here (the pool's buffers
 * live only during its callback) until the meter has committed the row.
 */
typedef struct invocation {
    sf_api *api;
    sf_http_req *req;
    sf_invoke inv;
    char name[64];
    int64_t version;
    sf_trace trace;
    char traceparent[SF_TRACEPARENT_LEN + 1];
    sofaas_header *hdrs; /* the request's, traceparent replaced */
    int64_t start_wall_us;
    uint32_t memory_mb;
    int64_t budget_nanos;
    sf_budget_action budget_action;
    /* what the daemon measured (for the access log) */
    uint64_t queue_us, duration_us, init_us, instance_id;
    bool cold_start;
    /* the response, kept until its row is committed */
    int status;
    const char *code;     /* error code (static), or NULL: the function's */
    char msg[256];        /* error message */
    sofaas_header *rhdrs; /* function response headers + room for ours */
    size_t nrhdrs;
    char *blob; /* copies of header strings and body */
    const char *body;
    size_t body_len;
    char inst[24];
    char billed[24];
    unsigned retry_after_s; /* > 0: answer with Retry-After */
    char retry[16];
} invocation;

static void invocation_free(invocation *iv)
{
    free(iv->rhdrs);
    free(iv->blob);
    free(iv->hdrs);
    free(iv);
}

/* Keeps a copy of the function's response (headers and body) in iv. */
static int keep_response(invocation *iv, const sf_response *r)
{
    size_t total = r->body_len, off = 0;

    for (size_t i = 0; i < r->header_count; i++)
        total += r->headers[i].name_len + r->headers[i].value_len;
    iv->rhdrs = calloc(r->header_count + 4, sizeof(*iv->rhdrs));
    iv->blob = malloc(total ? total : 1);
    if (iv->rhdrs == NULL || iv->blob == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < r->header_count; i++) {
        const sofaas_header *h = &r->headers[i];
        memcpy(iv->blob + off, h->name, h->name_len);
        iv->rhdrs[i].name = iv->blob + off;
        iv->rhdrs[i].name_len = h->name_len;
        off += h->name_len;
        memcpy(iv->blob + off, h->value, h->value_len);
        iv->rhdrs[i].value = iv->blob + off;
        iv->rhdrs[i].value_len = h->value_len;
        off += h->value_len;
    }
    if (r->body_len > 0)
        memcpy(iv->blob + off, r->body, r->body_len);
    iv->body = iv->blob + off;
    iv->body_len = r->body_len;
    iv->nrhdrs = r->header_count;
    iv->status = r->status;
    return 0;
}

static void set_error(invocation *iv, int status, const char *code,
                      const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_error(invocation *iv, int status, const char *code,
                      const char *fmt, ...)
{
    va_list ap;

    iv->status = status;
    iv->code = code;
    va_start(ap, fmt);
    vsnprintf(iv->msg, sizeof(iv->msg), fmt, ap);
    va_end(ap);
}

/* One line per finished invocation (--access-log=on), with the billed
 * duration the meter recorded. */
static void access_log(const invocation *iv, uint64_t billed_ms)
{
    /* Milliseconds with 3 decimals from integer microseconds: the same text
     * as "%.3f" of us / 1000.0, without the floating-point formatting
     * (~1.5% of the loop thread under load). */
#define MS3(us) (unsigned long long)((us) / 1000), (unsigned)((us) % 1000)
    SF_INFO("msg=\"access\" request_id=%s function=%s version=%lld "
            "method=%s status=%d outcome=%s duration_ms=%llu.%03u "
            "queue_ms=%llu.%03u cold_start=%d init_ms=%llu.%03u instance=%llu "
            "trace_id=%s billed_ms=%llu",
            iv->req->request_id, iv->name, (long long)iv->version,
            iv->req->method, iv->status, iv->code ? iv->code : "ok",
            MS3(iv->duration_us), MS3(iv->queue_us), iv->cold_start ? 1 : 0,
            MS3(iv->init_us), (unsigned long long)iv->instance_id,
            iv->trace.trace_id, (unsigned long long)billed_ms);
#undef MS3
}

/* Sends the kept response; frees iv. Meter callback (loop thread): in sync
 * mode the row is committed by now. */
static void on_metered(void *ctx, int status, uint64_t billed_ms)
{
    invocation *iv = ctx;
    sf_http_req *req = iv->req;
    sofaas_header billed;

    billed = (sofaas_header){"X-Sofaas-Billed-Ms", 18, iv->billed,
                             sf_fmt_u64(billed_ms, iv->billed)};
    if (status < 0)
        set_error(iv, 503, "metering_unavailable",
                  "function '%s' ran but its invocation could not be "
                  "recorded; not billed",
                  iv->name);
    if (iv->api->access_log)
        access_log(iv, status < 0 ? 0 : billed_ms);
    if (status < 0) {
        /* Never answer an invocation the meter could not record. */
        sf_http_error(req, iv->status, iv->code, "%s", iv->msg);
    } else if (iv->code != NULL) {
        sofaas_header eh[2] = {billed};
        size_t neh = 1;
        if (iv->retry_after_s > 0) {
            snprintf(iv->retry, sizeof(iv->retry), "%u", iv->retry_after_s);
            eh[neh++] = (sofaas_header){"Retry-After", 11, iv->retry,
                                        strlen(iv->retry)};
        }
        sf_http_error_hdrs(req, iv->status, eh, neh, iv->code, "%s",
                           iv->msg);
    } else {
        size_t n = iv->nrhdrs;
        iv->rhdrs[n++] = billed;
        iv->rhdrs[n++] = (sofaas_header){"X-Sofaas-Instance", 17, iv->inst,
                                         strlen(iv->inst)};
        if (iv->cold_start)
            iv->rhdrs[n++] = (sofaas_header){"X-Sofaas-Cold-Start", 19, "1", 1};
        sf_http_respond(req, iv->status, iv->rhdrs, n, iv->body, iv->body_len);
    }
    invocation_free(iv);
}

static void meter_invocation(invocation *iv, sf_meter_class cls)
{
    sf_meter_rec rec = {
        .request_id = iv->req->request_id,
        .function = iv->name,
        .version = iv->version,
        .start_us = iv->start_wall_us,
        .queue_us = iv->queue_us,
        .duration_us = iv->duration_us,
        .init_us = iv->init_us,
        .cold_start = iv->cold_start,
        .instance_id = iv->instance_id,
        .cls = cls,
        .http_status = iv->status,
        .bytes_in = iv->req->body.len,
        .bytes_out = iv->code ? 0 : iv->body_len,
        .memory_mb = iv->memory_mb,
        .budget_nanos = iv->budget_nanos,
        .budget_action = iv->budget_action,
    };

    sf_meter_record(iv->api->meter, &rec, on_metered, iv);
}

static void on_invoked(void *ctx, const sf_invoke_result *res)
{
    invocation *iv = ctx;
    sf_api *api = iv->api;
    sf_meter_class cls;

    sf_fmt_u64(res->instance_id, iv->inst);
    iv->queue_us = res->queue_us;
    iv->duration_us = res->duration_us;
    iv->init_us = res->init_us;
    iv->instance_id = res->instance_id;
    iv->cold_start = res->cold_start;
    iv->retry_after_s = res->retry_after_s; /* 429 throttled, 503 backoff */
    cls = sf_meter_class_of(res->status,
                            res->status == SF_INV_OK ? res->resp->rc : 0);
    if (res->status != SF_INV_OK) {
        set_error(iv, inv_errors[res->status].status,
                  inv_errors[res->status].code, "function '%s': %s", iv->name,
                  res->detail ? res->detail : "failed");
    } else if (res->resp->rc != 0) {
        set_error(iv, 500, "function_error", "function '%s' returned %d",
                  iv->name, res->resp->rc);
    } else if (keep_response(iv, res->resp) < 0) {
        set_error(iv, 503, "overloaded", "out of memory");
    }
    sf_metrics_invocation(api->metrics, iv->name, iv->code ? iv->code : "ok",
                          res->duration_us, res->cold_start);
    meter_invocation(iv, cls);
}

static bool header_is(const sofaas_header *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

/*
 * Starts this hop of the trace and gives the function the request headers
 * with our traceparent in place of the caller's. An invalid traceparent
 * also invalidates tracestate (W3C Trace Context 3.3.1.1), so it goes too.
 */
static int trace_headers(invocation *iv, const sf_http_req *req)
{
    const sofaas_header *tp = sf_http_header(req, "traceparent");
    size_t n = 0;

    sf_trace_start(tp ? tp->value : NULL, tp ? tp->value_len : 0,
                   &iv->trace);
    sf_trace_format(&iv->trace, iv->traceparent);
    iv->hdrs = calloc(req->header_count + 1, sizeof(*iv->hdrs));
    if (iv->hdrs == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < req->header_count; i++) {
        const sofaas_header *h = &req->headers[i];
        if (header_is(h, "traceparent") ||
            (!iv->trace.inherited && header_is(h, "tracestate")))
            continue;
        iv->hdrs[n++] = *h;
    }
    iv->hdrs[n++] = (sofaas_header){"traceparent", 11, iv->traceparent,
                                    SF_TRACEPARENT_LEN};
    iv->inv.headers = iv->hdrs;
    iv->inv.header_count = n;
    return 0;
}

static void handle_invoke(sf_api *api, sf_http_req *req)
{
    const sf_route *rt = &req->route;
    const sf_function *f = NULL;
    invocation *iv;
    sf_fn_spec spec;

    if (rt->name_valid)
        f = sf_registry_get(api->reg, rt->name, rt->name_len);
    if (f == NULL) {
        sf_http_error(req, 404, "function_not_found",
                      "no function named '%.*s'",
                      (int)(rt->name_len > 64 ? 64 : rt->name_len), rt->name);
        return;
    }
    iv = calloc(1, sizeof(*iv));
    if (iv == NULL) {
        sf_http_error(req, 503, "overloaded", "out of memory");
        return;
    }
    iv->api = api;
    iv->req = req;
    sf_strlcpy(iv->name, f->name, sizeof(iv->name));
    iv->version = f->version;
    iv->start_wall_us = sf_wall_us();
    iv->memory_mb = f->config.memory_mb;
    iv->budget_nanos = f->config.budget_nanos;
    iv->budget_action = f->config.budget_action;
    if (sf_meter_budget_blocks(api->meter, f->name, &f->config)) {
        /* Recorded (so the refusal shows in usage), never billed. */
        set_error(iv, 402, "budget_exceeded",
                  "function '%s' has spent its monthly budget; raise "
                  "budget.amount or wait for the next month",
                  f->name);
        meter_invocation(iv, SF_MC_REJECTED);
        return;
    }
    iv->inv = (sf_invoke){.method = req->method,
                          .method_len = strlen(req->method),
                          .path = rt->subpath,
                          .path_len = rt->subpath_len,
                          .query = req->query,
                          .query_len = req->query_len,
                          .request_id = req->request_id,
                          .request_id_len = strlen(req->request_id),
                          .headers = req->headers,
                          .header_count = req->header_count,
                          .body = req->body.data,
                          .body_len = req->body.len};
    if (trace_headers(iv, req) < 0) {
        invocation_free(iv);
        sf_http_error(req, 503, "overloaded", "out of memory");
        return;
    }
    spec = (sf_fn_spec){.name = f->name,
                        .version = f->version,
                        .artifact_path = f->artifact_path,
                        .config = f->config};
    sf_pool_invoke(api->pool, &spec, &iv->inv, on_invoked, iv);
}

/* ---- observability ------------------------------------------------------ */

static void handle_readyz(sf_api *api, sf_http_req *req)
{
    if (api->ready)
        sf_http_json(req, 200, "{\"status\":\"ready\"}");
    else
        sf_http_error(req, 503, "not_ready",
                      "starting up or shutting down; not serving yet");
}

static void handle_metrics(sf_api *api, sf_http_req *req)
{
    static const sofaas_header ct = {"Content-Type", 12,
                                     SF_METRICS_CONTENT_TYPE,
                                     sizeof(SF_METRICS_CONTENT_TYPE) - 1};
    sf_buf out = {0};

    if (api->metrics == NULL) {
        sf_http_error(req, 503, "unavailable", "metrics are not enabled");
        return;
    }
    if (sf_metrics_render(api->metrics, &out) < 0) {
        sf_buf_free(&out);
        sf_http_error(req, 503, "overloaded", "out of memory");
        return;
    }
    sf_http_respond(req, 200, &ct, 1, out.data, out.len);
    sf_buf_free(&out);
}

/* Percent-decodes a raw query value into out (NUL-terminated). */
static int query_value(const char *v, size_t len, char *out, size_t cap)
{
    size_t j = 0;

    for (size_t i = 0; i < len; i++) {
        char c = v[i];
        if (c == '%') {
            unsigned x;
            if (i + 2 >= len || !isxdigit((unsigned char)v[i + 1]) ||
                !isxdigit((unsigned char)v[i + 2]) ||
                sscanf(v + i + 1, "%2x", &x) != 1)
                return -EINVAL;
            c = (char)x;
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (j + 1 >= cap || c == '\0')
            return -EINVAL;
        out[j++] = c;
    }
    out[j] = '\0';
    return 0;
}

/* "since": Unix seconds (may have a fraction) or RFC 3339 UTC ("...Z"). */
static int parse_since(const char *s, int64_t *us)
{
    struct tm tm = {0};
    double secs;
    char *end;
    const char *p;

    if (s[0] >= '0' && s[0] <= '9' && strchr(s, '-') == NULL) {
        secs = strtod(s, &end);
        if (*end != '\0' || secs < 0 || secs > 1e11)
            return -EINVAL;
        *us = (int64_t)(secs * 1e6);
        return 0;
    }
    p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL)
        return -EINVAL;
    *us = (int64_t)timegm(&tm) * 1000000;
    if (*p == '.') {
        int64_t scale = 100000;
        for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
            *us += (*p - '0') * scale;
    }
    if (strcmp(p, "Z") != 0)
        return -EINVAL;
    return 0;
}

typedef struct follow {
    sf_api *api;
    sf_http_req *req;
    sf_fnlog_follower *f;
} follow;

static void follow_gone(void *ctx)
{
    follow *fl = ctx;

    SF_DEBUG("msg=\"log follower left\" request_id=%s", fl->req->request_id);
    sf_fnlog_unfollow(fl->api->fnlog, fl->f);
    sf_http_stream_end(fl->req);
    free(fl);
}

/* Writes one NDJSON line. On failure follow_gone has already run. */
static int follow_send(follow *fl, const cJSON *line)
{
    char *s = cJSON_PrintUnformatted(line);
    size_t n;
    int r;

    if (s == NULL)
        return 0; /* out of memory: skip the line, keep the stream */
    n = strlen(s);
    s[n] = '\n'; /* over the NUL: the length is passed explicitly */
    r = sf_http_stream_write(fl->req, s, n + 1);
    free(s);
    return r;
}

static void follow_line(void *ctx, const cJSON *line)
{
    (void)follow_send(ctx, line);
}

static void start_follow(sf_api *api, sf_http_req *req,
                         const sf_fnlog_query *q, cJSON *history)
{
    static const sofaas_header hdrs[] = {
        {"Content-Type", 12, "application/x-ndjson", 20},
        {"Cache-Control", 13, "no-cache", 8},
        {"X-Accel-Buffering", 17, "no", 2}, /* nginx: do not buffer */
    };
    follow *fl = calloc(1, sizeof(*fl));
    const cJSON *it;

    if (fl == NULL) {
        sf_http_error(req, 503, "overloaded", "out of memory");
        return;
    }
    fl->api = api;
    fl->req = req;
    fl->f = sf_fnlog_follow(api->fnlog, q->function, q->request_id,
                            follow_line, fl);
    if (fl->f == NULL) {
        free(fl);
        sf_http_error(req, 503, "overloaded", "out of memory");
        return;
    }
    if (sf_http_stream_begin(req, 200, hdrs, 3, follow_gone, fl) < 0) {
        follow_gone(fl);
        return;
    }
    SF_DEBUG("msg=\"log follower joined\" request_id=%s function=%s",
             req->request_id, q->function);
    cJSON_ArrayForEach(it, history) {
        if (follow_send(fl, it) < 0)
            return;
    }
}

static void handle_logs(sf_api *api, sf_http_req *req)
{
    const sf_function *f = named_function(api, req);
    sf_fnlog_query q = {.limit = 100, .since_us = -1};
    char rid[129], val[64], name[64];
    const char *v;
    size_t vl;
    bool follow_mode = false;
    uint64_t u;
    cJSON *arr = NULL, *root;

    if (f == NULL)
        return;
    if (api->fnlog == NULL) {
        sf_http_error(req, 503, "unavailable", "function logs are off");
        return;
    }
    snprintf(name, sizeof(name), "%s", f->name);
    q.function = name;
    if ((v = sf_query_get(req->query, "request_id", &vl)) != NULL) {
        if (query_value(v, vl, rid, sizeof(rid)) < 0 || rid[0] == '\0') {
            sf_http_error(req, 400, "invalid_parameter",
                          "request_id: at most 128 characters");
            return;
        }
        q.request_id = rid;
    }
    if ((v = sf_query_get(req->query, "limit", &vl)) != NULL) {
        if (sf_parse_u64(v, vl, SF_FNLOG_QUERY_MAX, &u) < 0 || u == 0) {
            sf_http_error(req, 400, "invalid_parameter",
                          "limit: expected 1..%u", SF_FNLOG_QUERY_MAX);
            return;
        }
        q.limit = (unsigned)u;
    }
    if ((v = sf_query_get(req->query, "after", &vl)) != NULL) {
        if (sf_parse_u64(v, vl, INT64_MAX, &u) < 0) {
            sf_http_error(req, 400, "invalid_parameter",
                          "after: expected a log line id");
            return;
        }
        q.after_id = (int64_t)u;
    }
    if ((v = sf_query_get(req->query, "since", &vl)) != NULL) {
        if (query_value(v, vl, val, sizeof(val)) < 0 ||
            parse_since(val, &q.since_us) < 0) {
            sf_http_error(req, 400, "invalid_parameter",
                          "since: expected Unix seconds or RFC 3339 UTC "
                          "(2026-11-27T00:00:00Z)");
            return;
        }
    }
    if ((v = sf_query_get(req->query, "follow", &vl)) != NULL) {
        if ((vl == 1 && (v[0] == '1' || v[0] == '0')) ||
            (vl == 4 && strncmp(v, "true", 4) == 0) ||
            (vl == 5 && strncmp(v, "false", 5) == 0))
            follow_mode = v[0] == '1' || v[0] == 't';
        else {
            sf_http_error(req, 400, "invalid_parameter",
                          "follow: expected 1 or 0");
            return;
        }
    }
    if (sf_fnlog_select(api->fnlog, &q, &arr) < 0) {
        sf_http_error(req, 500, "internal", "could not read function logs");
        return;
    }
    if (follow_mode) {
        start_follow(api, req, &q, arr);
        cJSON_Delete(arr);
        return;
    }
    root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "logs", arr);
    respond_json(req, 200, root);
}

/* ---- dispatch ----------------------------------------------------------- */

static void on_request(void *ctx, sf_http_req *req)
{
    sf_api *api = ctx;

    switch (req->route.id) {
    case SF_ROUTE_HEALTHZ:
        sf_http_json(req, 200, "{\"status\":\"ok\"}");
        return;
    case SF_ROUTE_READYZ:
        handle_readyz(api, req);
        return;
    case SF_ROUTE_METRICS:
        handle_metrics(api, req);
        return;
    case SF_ROUTE_FN_LOGS:
        handle_logs(api, req);
        return;
    case SF_ROUTE_FN_LIST:
        handle_list(api, req);
        return;
    case SF_ROUTE_FN_GET:
        handle_get(api, req);
        return;
    case SF_ROUTE_FN_DELETE:
        handle_delete(api, req);
        return;
    case SF_ROUTE_FN_DEPLOY:
        handle_deploy(api, req);
        return;
    case SF_ROUTE_FN_PATCH:
        handle_patch(api, req);
        return;
    case SF_ROUTE_INVOKE:
        handle_invoke(api, req);
        return;
    case SF_ROUTE_USAGE:
    case SF_ROUTE_USAGE_CSV:
    case SF_ROUTE_INVOCATIONS:
        sf_usage_handle(api->reg, api->meter, req);
        return;
    case SF_ROUTE_NONE:
        break;
    }
    if (req->route.miss_status == 405)
        sf_http_error(req, 405, "method_not_allowed",
                      "%s is not allowed on %s", req->method, req->path);
    else
        sf_http_error(req, 404, "not_found", "no route for %s", req->path);
}

static const sf_http_handlers handlers = {on_headers, on_request};

const sf_http_handlers *sf_api_handlers(void) { return &handlers; }

void sf_api_set_ready(sf_api *api, bool ready) { api->ready = ready; }

void sf_api_set_access_log(sf_api *api, bool on) { api->access_log = on; }

bool sf_api_ready(const sf_api *api) { return api->ready; }

sf_api *sf_api_new(sf_registry *reg, sf_pool *pool, const sf_api_config *cfg)
{
    sf_api *api = calloc(1, sizeof(*api));

    if (api == NULL)
        return NULL;
    api->reg = reg;
    api->pool = pool;
    api->access_log = cfg->access_log;
    api->metrics = cfg->metrics;
    api->fnlog = cfg->fnlog;
    api->meter = cfg->meter;
    api->invoke_body_max =
        cfg->invoke_body_max ? cfg->invoke_body_max : SF_API_INVOKE_BODY_MAX;
    api->deploy_body_max =
        cfg->deploy_body_max ? cfg->deploy_body_max : SF_API_DEPLOY_BODY_MAX;
    if (cfg->admin_token != NULL) {
        api->token = strdup(cfg->admin_token);
        if (api->token == NULL) {
            free(api);
            return NULL;
        }
        api->token_len = strlen(api->token);
    }
    return api;
}

void sf_api_set_limits(sf_api *api, size_t invoke_body_max,
                       size_t deploy_body_max)
{
    api->invoke_body_max = invoke_body_max ? invoke_body_max
                                           : SF_API_INVOKE_BODY_MAX;
    api->deploy_body_max = deploy_body_max ? deploy_body_max
                                           : SF_API_DEPLOY_BODY_MAX;
}

void sf_api_free(sf_api *api)
{
    if (api == NULL)
        return;
    if (api->token != NULL) {
        explicit_bzero(api->token, api->token_len);
        free(api->token);
    }
    free(api);
}
