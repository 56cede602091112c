/*
 * sofaasd.c - the daemon's main: parses flags, opens the registry, starts the
 * worker pool and the HTTP server on one libuv loop, and shuts down cleanly
 * on SIGINT/SIGTERM. Logic lives in the modules it wires together.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "api.h"
#include "fnlog.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "registry.h"
#include "router.h"

#define SOFAAS_VERSION "0.1.0"

typedef struct options {
    char host[256];
    int port;
    const char *state_dir;
    unsigned workers;
    unsigned max_workers;
    const char *token_file;
    const char *worker_path;
    enum sf_log_level log_level;
    sf_http_limits http;
    unsigned drain_timeout_ms;
    bool access_log;
    unsigned fn_log_max_kib;
    unsigned fn_log_retention_h;
} options;

typedef struct daemon_state {
    uv_loop_t *loop;
    uv_signal_t sigint, sigterm;
    uv_timer_t drain_timer;
    uint64_t drain_deadline_ms;
    bool draining;
    unsigned drain_timeout;
    sf_http_server *http;
    sf_pool *pool;
    sf_api *api;
    sf_registry *reg;
    sf_cgroup *cgroup;
    sf_metrics *metrics;
    sf_fnlog *fnlog;
} daemon_state;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sofaasd [options]\n"
            "  --listen HOST:PORT       address to serve on (127.0.0.1:8080)\n"
            "  --state-dir DIR          database and artifacts (./var)\n"
            "  --workers N              generic workers kept ready (4)\n"
            "  --max-workers N          all workers together (64)\n"
            "  --admin-token-file FILE  bearer token for /v1 (or env "
            "SOFAAS_ADMIN_TOKEN)\n"
            "  --worker PATH            sofaas-worker executable (next to "
            "sofaasd)\n"
            "  --log-level LEVEL        error|warn|info|debug (info)\n"
            "  --http-header-timeout-ms N     408 if headers take longer "
            "(10000)\n"
            "  --http-body-timeout-ms N       408 if the body takes longer "
            "(30000)\n"
            "  --http-keepalive-timeout-ms N  idle keep-alive close (15000)\n"
            "  --http-max-connections N       beyond: 503 and close (10000)\n"
            "  --shutdown-drain-timeout-ms N  SIGTERM: let in-flight calls "
            "finish (30000)\n"
            "  --access-log on|off      one info line per invocation (on)\n"
            "  --function-log-max-kib N function output kept per "
            "invocation (64)\n"
            "  --function-log-retention-hours N  keep function logs (168)\n"
            "  --print-routes           print the route table and exit\n"
            "  --version, --help\n");
}

static int parse_listen(const char *s, options *o)
{
    const char *colon = strrchr(s, ':');
    char *end;
    long port;
    size_t hl;

    if (colon == NULL)
        return -EINVAL;
    hl = (size_t)(colon - s);
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') { /* [::1]:8080 */
        s++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof(o->host))
        return -EINVAL;
    memcpy(o->host, s, hl);
    o->host[hl] = '\0';
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || end == colon + 1 || port < 0 ||
        port > 65535)
        return -EINVAL;
    o->port = (int)port;
    return 0;
}

static int parse_count(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s || v < (long)lo || v > (long)hi)
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
}

static bool is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

/* Reads the admin token (file first, then env). Caller frees *out. */
static int load_token(const options *o, char **out)
{
    const char *env = getenv("SOFAAS_ADMIN_TOKEN");
    char buf[512];
    size_t n;
    FILE *f;

    *out = NULL;
    if (o->token_file != NULL) {
        f = fopen(o->token_file, "re");
        if (f == NULL) {
            SF_ERR("msg=\"cannot read admin token file\" path=%s error=\"%s\"",
                   o->token_file, strerror(errno));
            return -errno;
        }
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
                         buf[n - 1] == ' '))
            buf[--n] = '\0';
        if (n == 0) {
            SF_ERR("msg=\"admin token file is empty\" path=%s", o->token_file);
            return -EINVAL;
        }
        *out = strdup(buf);
        explicit_bzero(buf, sizeof(buf));
    } else if (env != NULL && env[0] != '\0') {
        *out = strdup(env);
    }
    /* Workers are spawned with their own environment, but keep the token
     * out of ours too. */
    unsetenv("SOFAAS_ADMIN_TOKEN");
    return 0;
}

static char *default_worker_path(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    char *p = NULL;

    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    if (asprintf(&p, "%s/sofaas-worker", dirname(exe)) < 0)
        return NULL;
    return p;
}

static void on_close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Last step of shutdown: connections are done (or out of time). */
static void finish_shutdown(daemon_state *d)
{
    uv_timer_stop(&d->drain_timer);
    uv_close((uv_handle_t *)&d->drain_timer, NULL);
    sf_http_server_close(d->http);
    d->http = NULL;
    sf_pool_free(d->pool);
    d->pool = NULL;
}

static void on_drain_tick(uv_timer_t *t)
{
    daemon_state *d = t->data;
    unsigned left = sf_http_server_connections(d->http);

    if (left == 0) {
        SF_INFO("msg=\"drained, stopping workers\"");
        finish_shutdown(d);
    } else if (uv_now(d->loop) >= d->drain_deadline_ms) {
        SF_WARN("msg=\"drain timeout, closing remaining connections\" "
                "connections=%u hint=\"raise --shutdown-drain-timeout-ms\"",
                left);
        finish_shutdown(d);
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    daemon_state *d = s->data;

    if (d->draining)
        return;
    d->draining = true;
    sf_api_set_ready(d->api, false); /* /readyz: 503 from now on */
    SF_INFO("msg=\"shutting down: no new connections, finishing in-flight "
            "requests\" signal=%s drain_timeout_ms=%u",
            signum == SIGINT ? "SIGINT" : "SIGTERM", d->drain_timeout);
    uv_signal_stop(&d->sigint);
    uv_signal_stop(&d->sigterm);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    sf_http_server_drain(d->http);
    d->drain_deadline_ms = uv_now(d->loop) + d->drain_timeout;
    uv_timer_init(d->loop, &d->drain_timer);
    d->drain_timer.data = d;
    uv_timer_start(&d->drain_timer, on_drain_tick, 0, 20);
}

/* The daemon is ready: listening, database open, generic pool up. */
static void on_pool_ready(void *ctx)
{
    daemon_state *d = ctx;

    sf_api_set_ready(d->api, true);
    SF_INFO("msg=\"ready\"");
}

static void print_routes(void)
{
    size_t n;
    const sf_route_def *t = sf_router_table(&n);

    for (size_t i = 0; i < n; i++)
        printf("%s %s\n", t[i].method, t[i].pattern);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"state-dir", required_argument, NULL, 's'},
        {"workers", required_argument, NULL, 'w'},
        {"max-workers", required_argument, NULL, 'm'},
        {"admin-token-file", required_argument, NULL, 't'},
        {"worker", required_argument, NULL, 'W'},
        {"log-level", required_argument, NULL, 'L'},
        {"http-header-timeout-ms", required_argument, NULL, 1001},
        {"http-body-timeout-ms", required_argument, NULL, 1002},
        {"http-keepalive-timeout-ms", required_argument, NULL, 1003},
        {"http-max-connections", required_argument, NULL, 1004},
        {"shutdown-drain-timeout-ms", required_argument, NULL, 1005},
        {"access-log", required_argument, NULL, 'A'},
        {"function-log-max-kib", required_argument, NULL, 'F'},
        {"function-log-retention-hours", required_argument, NULL, 'R'},
        {"print-routes", no_argument, NULL, 'P'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    options o = {.host = "127.0.0.1",
                 .port = 8080,
                 .state_dir = "./var",
                 .workers = 4,
                 .max_workers = 64,
                 .log_level = SF_LOG_INFO,
                 .drain_timeout_ms = 30000,
                 .access_log = true,
                 .fn_log_max_kib = 64,
                 .fn_log_retention_h = 168};
    daemon_state d = {0};
    sf_pool_config pc = {0};
    sf_api_config ac = {0};
    char *token = NULL, *worker_path = NULL;
    int c, r, port = 0, rc = 1;

    sf_log_init("sofaasd", SF_LOG_INFO);
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
            if (parse_listen(optarg, &o) < 0) {
                fprintf(stderr, "sofaasd: --listen: expected HOST:PORT, got "
                                "'%s'\n", optarg);
                return 2;
            }
            break;
        case 's':
            o.state_dir = optarg;
            break;
        case 'w':
            if (parse_count(optarg, 0, 1024, &o.workers) < 0) {
                fprintf(stderr, "sofaasd: --workers: expected 0..1024\n");
                return 2;
            }
            break;
        case 'm':
            if (parse_count(optarg, 1, 4096, &o.max_workers) < 0) {
                fprintf(stderr, "sofaasd: --max-workers: expected 1..4096\n");
                return 2;
            }
            break;
        case 't':
            o.token_file = optarg;
            break;
        case 'W':
            o.worker_path = optarg;
            break;
        case 'L':
            if (sf_log_parse_level(optarg, &o.log_level) < 0) {
                fprintf(stderr, "sofaasd: --log-level: expected "
                                "error|warn|info|debug\n");
                return 2;
            }
            break;
        case 1001:
        case 1002:
        case 1003:
        case 1004:
        case 1005: {
            unsigned *dst = c == 1001   ? &o.http.header_timeout_ms
                            : c == 1002 ? &o.http.body_timeout_ms
                            : c == 1003 ? &o.http.keepalive_timeout_ms
                            : c == 1004 ? &o.http.max_connections
                                        : &o.drain_timeout_ms;
            if (parse_count(optarg, 1, 100000000, dst) < 0) {
                fprintf(stderr, "sofaasd: %s: expected a positive integer\n",
                        longopts[c - 1001 + 7].name);
                return 2;
            }
            break;
        }
        case 'A':
            if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0) {
                fprintf(stderr, "sofaasd: --access-log: expected on|off\n");
                return 2;
            }
            o.access_log = strcmp(optarg, "on") == 0;
            break;
        case 'F':
            if (parse_count(optarg, 1, 1u << 20, &o.fn_log_max_kib) < 0) {
                fprintf(stderr, "sofaasd: --function-log-max-kib: expected "
                                "1..1048576\n");
                return 2;
            }
            break;
        case 'R':
            if (parse_count(optarg, 1, 24 * 3650, &o.fn_log_retention_h) <
                0) {
                fprintf(stderr, "sofaasd: --function-log-retention-hours: "
                                "expected 1..87600\n");
                return 2;
            }
            break;
        case 'P':
            print_routes();
            return 0;
        case 'V':
            printf("sofaasd %s (function ABI %d)\n", SOFAAS_VERSION,
                   SOFAAS_ABI_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sofaasd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    sf_log_set_level(o.log_level);
    signal(SIGPIPE, SIG_IGN);

    if (load_token(&o, &token) < 0)
        return 1;
    if (token == NULL && !is_loopback(o.host)) {
        SF_ERR("msg=\"refusing to serve the admin API on a non-loopback "
               "address without a token\" listen=%s "
               "hint=\"set --admin-token-file or SOFAAS_ADMIN_TOKEN\"",
               o.host);
        return 1;
    }
    worker_path = o.worker_path ? strdup(o.worker_path) : default_worker_path();
    if (worker_path == NULL || access(worker_path, X_OK) != 0) {
        SF_ERR("msg=\"sofaas-worker not found or not executable\" path=%s "
               "hint=\"pass --worker PATH\"",
               worker_path ? worker_path : "?");
        goto out;
    }

    d.loop = uv_default_loop();
    if (sf_registry_open(o.state_dir, &d.reg) < 0)
        goto out;
    if (sf_cgroup_open(&d.cgroup) < 0)
        goto out;
    pc.cgroup = d.cgroup;
    {
        sf_fnlog_config fc = {
            .max_per_invocation = (size_t)o.fn_log_max_kib << 10,
            .retention_s = (int64_t)o.fn_log_retention_h * 3600};
        if (sf_fnlog_new(d.loop, sf_registry_db(d.reg), &fc, &d.fnlog) < 0)
            goto out;
    }
    d.metrics = sf_metrics_new(SOFAAS_VERSION);
    if (d.metrics == NULL)
        goto out;
    pc.fnlog = d.fnlog;
    pc.on_ready = on_pool_ready;
    pc.ready_ctx = &d;
    pc.worker_path = worker_path;
    pc.generic_min = o.workers;
    pc.max_workers = o.max_workers;
    pc.worker_log_level = o.log_level;
    if ((r = sf_pool_new(d.loop, &pc, &d.pool)) < 0) {
        SF_ERR("msg=\"cannot create pool\" error=%s", uv_strerror(r));
        goto out;
    }
    ac.admin_token = token;
    ac.access_log = o.access_log;
    ac.metrics = d.metrics;
    ac.fnlog = d.fnlog;
    d.api = sf_api_new(d.reg, d.pool, &ac);
    d.http = d.api ? sf_http_server_new(d.loop, sf_api_handlers(), d.api)
                   : NULL;
    if (d.http == NULL)
        goto out;
    sf_http_server_set_limits(d.http, &o.http);
    r = sf_http_server_listen(d.http, o.host, o.port, &port);
    if (r < 0) {
        SF_ERR("msg=\"cannot listen\" host=%s port=%d error=\"%s\"", o.host,
               o.port, uv_strerror(r));
        goto out;
    }
    sf_metrics_attach(d.metrics, d.pool, d.http);
    if ((r = sf_pool_start(d.pool)) < 0) {
        SF_ERR("msg=\"cannot start workers\" error=%s", uv_strerror(r));
        goto out;
    }
    d.drain_timeout = o.drain_timeout_ms;
    uv_signal_init(d.loop, &d.sigint);
    uv_signal_init(d.loop, &d.sigterm);
    d.sigint.data = d.sigterm.data = &d;
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    SF_INFO("msg=\"listening\" addr=%s:%d state_dir=%s workers=%u "
            "max_workers=%u admin_token=%s version=%s",
            o.host, port, sf_registry_state_dir(d.reg), o.workers,
            o.max_workers, token ? "set" : "none", SOFAAS_VERSION);
    uv_run(d.loop, UV_RUN_DEFAULT);
    rc = 0;

out:
    if (d.http != NULL) {
        sf_http_server_close(d.http);
        sf_pool_free(d.pool);
        d.pool = NULL;
    } else if (d.pool != NULL) {
        sf_pool_free(d.pool);
        d.pool = NULL;
    }
    /* After the HTTP server (its followers unfollow as they close) and the
     * pool (which stops feeding it when freed); before the registry's db. */
    sf_fnlog_free(d.fnlog);
    d.fnlog = NULL;
    if (d.loop != NULL) {
        uv_walk(d.loop, on_close_walk, NULL);
        uv_run(d.loop, UV_RUN_DEFAULT);
        uv_loop_close(d.loop);
    }
    sf_api_free(d.api);
    sf_metrics_free(d.metrics);
    sf_registry_free(d.reg);
    sf_cgroup_free(d.cgroup);
    if (token != NULL) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
    free(worker_path);
    return rc;
}
