/*
 * usage.c - usage reports and invocation listings (see usage.h).
 *
 * Every figure is an integer sum done by SQLite over integer columns; money
 * stays in picos until it is formatted, and the JSON and CSV forms are
 * printed from the same rows by the same formatting functions, so they
 * agree to the digit. Bad parameters get 400 naming the parameter; unknown
 * parameters are refused too, so a typo never silently widens a report.
 */
#include "usage.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "log.h"
#include "util.h"

#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 1000

typedef enum group_by { BY_FUNCTION = 0, BY_HOUR, BY_DAY } group_by;

static const char *const group_names[] = {"function", "hour", "day"};

typedef struct params {
    int64_t from, to;
    char function[64]; /* "" = all */
    char status[24];   /* "" = all */
    char currency[8];
    group_by by;
    int64_t limit;
    int64_t before; /* 0 = from the newest */
} params;

/* One row (or the total) of a usage report. */
typedef struct agg {
    char key[64];
    int64_t n;
    int64_t by_class[SF_MC_COUNT];
    int64_t cold, mb_ms, pico;
} agg;

/*
 * One query. Parameters are parsed on the loop thread; the query runs on a
 * libuv thread-pool thread with its own read-only connection (WAL: it never
 * blocks the writer), so a report over millions of rows never stalls the
 * loop; the answer is sent back on the loop thread.
 */
typedef struct job {
    uv_work_t work;
    sf_http_req *req;
    char *dbpath;
    params p;
    sf_route_id route;
    int status; /* 200, or 500 with err */
    char *body; /* owned */
    size_t len;
    char err[256];
} job;

static void job_fail(job *j, sqlite3 *db, const char *what)
{
    j->status = 500;
    snprintf(j->err, sizeof(j->err), "%s query failed: %s", what,
             db ? sqlite3_errmsg(db) : "out of memory");
}

/* ---- parameters --------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes into out ('+' stays '+': RFC 3339 offsets). Returns the
 * length or -1. */
static int decode(const char *s, size_t len, char *out, size_t outlen)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            int h, l;
            if (i + 2 >= len)
                return -1;
            h = hexval(s[i + 1]);
            l = hexval(s[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            c = (char)(h * 16 + l);
            i += 2;
        }
        if (o + 1 >= outlen || c == '\0')
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return (int)o;
}

static int digits(const char *s, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int sf_usage_parse_rfc3339(const char *s, size_t len, int64_t *out_us)
{
    struct tm tm = {0};
    int64_t frac = 0, off = 0;
    int y, mo, d, h, mi, sec;
    size_t i = 19;

    if (len < 20 || s[4] != '-' || s[7] != '-' ||
        (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' ||
        s[16] != ':')
        return -EINVAL;
    y = digits(s, 4);
    mo = digits(s + 5, 2);
    d = digits(s + 8, 2);
    h = digits(s + 11, 2);
    mi = digits(s + 14, 2);
    sec = digits(s + 17, 2);
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 ||
        mi < 0 || mi > 59 || sec < 0 || sec > 60)
        return -EINVAL;
    if (s[i] == '.') {
        int nd = 0;
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++, nd++)
            if (nd < 6)
                frac = frac * 10 + (s[i] - '0');
        if (nd == 0)
            return -EINVAL;
        for (; nd < 6; nd++)
            frac *= 10;
    }
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i + 6 == len && (s[i] == '+' || s[i] == '-') &&
               s[i + 3] == ':') {
        int oh = digits(s + i + 1, 2), om = digits(s + i + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return -EINVAL;
        off = (int64_t)(oh * 60 + om) * 60 * (s[i] == '+' ? 1 : -1);
        i += 6;
    } else {
        return -EINVAL;
    }
    if (i != len)
        return -EINVAL;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    {
        time_t t = timegm(&tm);
        struct tm back;
        gmtime_r(&t, &back);
        if (back.tm_mday != d && sec != 60) /* 2026-02-31 */
            return -EINVAL;
        *out_us = ((int64_t)t - off) * 1000000 + frac;
    }
    return 0;
}

static int64_t month_start(int64_t us, int add)
{
    time_t s = (time_t)(us / 1000000);
    struct tm tm;

    gmtime_r(&s, &tm);
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_mon += add;
    return (int64_t)timegm(&tm) * 1000000;
}

/*
 * Parses the query of req for the route. Returns 0, or -EINVAL after
 * answering 400 naming the parameter.
 */
static int parse_params(sf_http_req *req, const sf_meter_config *mc, params *p)
{
    bool list = req->route.id == SF_ROUTE_INVOCATIONS;
    const char *q = req->query;
    bool has_from = false, has_to = false;
    int64_t now = sf_wall_us();

    memset(p, 0, sizeof(*p));
    snprintf(p->currency, sizeof(p->currency), "%s", mc->currency);
    p->limit = LIST_LIMIT_DEFAULT;
    while (*q != '\0') {
        const char *amp = strchr(q, '&');
        size_t pl = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', pl);
        size_t kl = eq ? (size_t)(eq - q) : pl;
        char key[32], val[128];
        int vl;

        if (pl == 0) {
            q = amp ? amp + 1 : q + pl;
            continue;
        }
        if (decode(q, kl, key, sizeof(key)) < 0) {
            sf_http_error(req, 400, "invalid_parameter",
                          "unknown or malformed query parameter");
            return -EINVAL;
        }
        vl = eq ? decode(eq + 1, pl - kl - 1, val, sizeof(val)) : 0;
        if (!eq)
            val[0] = '\0';
        if (vl < 0) {
            sf_http_error(req, 400, "invalid_parameter", "%s: malformed value",
                          key);
            return -EINVAL;
        }
        if (strcmp(key, "function") == 0) {
            if (!sf_router_valid_name(val, (size_t)vl)) {
                sf_http_error(req, 400, "invalid_parameter",
                              "function: expected a function name");
                return -EINVAL;
            }
            snprintf(p->function, sizeof(p->function), "%.63s", val);
        } else if (!list &&
                   (strcmp(key, "from") == 0 || strcmp(key, "to") == 0)) {
            bool from = key[0] == 'f';
            if (sf_usage_parse_rfc3339(val, (size_t)vl,
                                       from ? &p->from : &p->to) < 0) {
                sf_http_error(req, 400, "invalid_parameter",
                              "%s: expected an RFC 3339 timestamp such as "
                              "2026-11-01T00:00:00Z",
                              key);
                return -EINVAL;
            }
            if (from)
                has_from = true;
            else
                has_to = true;
        } else if (!list && strcmp(key, "group_by") == 0) {
            int g = -1;
            for (int i = 0; i < 3; i++)
                if (strcmp(val, group_names[i]) == 0)
                    g = i;
            if (g < 0) {
                sf_http_error(req, 400, "invalid_parameter",
                              "group_by: expected hour, day or function");
                return -EINVAL;
            }
            p->by = (group_by)g;
        } else if (!list && strcmp(key, "currency") == 0) {
            if (vl == 0 || vl >= (int)sizeof(p->currency)) {
                sf_http_error(req, 400, "invalid_parameter",
                              "currency: expected a currency code");
                return -EINVAL;
            }
            snprintf(p->currency, sizeof(p->currency), "%.7s", val);
        } else if (list && strcmp(key, "status") == 0) {
            if (sf_meter_class_parse(val, (size_t)vl) < 0) {
                sf_http_error(req, 400, "invalid_parameter",
                              "status: expected ok, function_error, timeout, "
                              "crashed, out_of_memory, sandbox_violation, "
                              "throttled or rejected");
                return -EINVAL;
            }
            snprintf(p->status, sizeof(p->status), "%.23s", val);
        } else if (list && strcmp(key, "limit") == 0) {
            uint64_t v;
            if (sf_parse_u64(val, (size_t)vl, LIST_LIMIT_MAX, &v) < 0 ||
                v == 0) {
                sf_http_error(req, 400, "invalid_parameter",
                              "limit: expected an integer in 1..%d",
                              LIST_LIMIT_MAX);
                return -EINVAL;
            }
            p->limit = (int64_t)v;
        } else if (list && strcmp(key, "before") == 0) {
            uint64_t v;
            if (sf_parse_u64(val, (size_t)vl, INT64_MAX, &v) < 0 || v == 0) {
                sf_http_error(req, 400, "invalid_parameter",
                              "before: expected the next_before cursor of "
                              "a previous page");
                return -EINVAL;
            }
            p->before = (int64_t)v;
        } else {
            sf_http_error(req, 400, "invalid_parameter",
                          "%.31s: unknown query parameter", key);
            return -EINVAL;
        }
        q = amp ? amp + 1 : q + pl;
    }
    if (!list) {
        if (!has_from)
            p->from = has_to ? month_start(p->to - 1, 0) : month_start(now, 0);
        if (!has_to)
            p->to = month_start(p->from, 1);
        if (p->from >= p->to) {
            sf_http_error(req, 400, "invalid_parameter",
                          "from: must be before to");
            return -EINVAL;
        }
    }
    return 0;
}

/* ---- usage -------------------------------------------------------------- */

static const char usage_sql[] =
    "SELECT %s AS k, SUM(n), SUM(c0), SUM(c1), SUM(c2), SUM(c3), SUM(c4),"
    " SUM(c5), SUM(c6), SUM(c7), SUM(cold), SUM(mbms), SUM(pico) FROM ("
    " SELECT function AS fn, start_us AS t, 1 AS n, status = 'ok' AS c0,"
    "  status = 'function_error' AS c1, status = 'timeout' AS c2,"
    "  status = 'crashed' AS c3, status = 'out_of_memory' AS c4,"
    "  status = 'sandbox_violation' AS c5, status = 'throttled' AS c6,"
    "  status = 'rejected' AS c7, cold_start AS cold,"
    "  billed_ms * memory_mb AS mbms, cost_pico AS pico FROM invocations"
    "  WHERE seq >= ?1 AND seq < ?2 + " SF_METER_SEQ_LAG_SQL
    "  AND start_us >= ?1 AND start_us < ?2 AND currency = ?3"
    "  AND (?4 IS NULL OR function = ?4)"
    " UNION ALL"
    " SELECT function, hour_us, invocations, n_ok, n_function_error,"
    "  n_timeout, n_crashed, n_out_of_memory, n_sandbox_violation,"
    "  n_throttled, n_rejected, cold_starts, billed_mb_ms, cost_pico"
    "  FROM usage_hourly WHERE hour_us >= ?1 AND hour_us < ?2"
    "  AND currency = ?3 AND (?4 IS NULL OR function = ?4)"
    ") GROUP BY k ORDER BY k";

static void fmt_gbs(int64_t mb_ms, char *out, size_t len)
{
    /* GB-s = MB-ms / (1024 x 1000), printed to 6 decimals, rounded. */
    int64_t micro = (mb_ms * 1000 + 512) / 1024;
    sf_format_decimal(micro, 6, out, len);
}

static void fmt_cost(int64_t pico, char *cost, size_t len, int64_t *nanos)
{
    sf_format_decimal(pico, 12, cost, len);
    *nanos = (pico + SF_PICO_PER_NANO / 2) / SF_PICO_PER_NANO;
}

/* An integer as an exact JSON number. cJSON prints doubles with "%1.15g"
 * when that parses back to within a relative 2e-16, so an id such as
 * 1795761840735500 (ids follow the clock, ~1.8e15) came out as
 * 1.7957618407355e+15, which clients read as a float. */
static void add_int(cJSON *o, const char *key, int64_t v)
{
    char b[24];

    snprintf(b, sizeof(b), "%lld", (long long)v);
    cJSON_AddRawToObject(o, key, b);
}

static cJSON *agg_json(const agg *a, const char *keyname, const char *cur)
{
    cJSON *j = cJSON_CreateObject(), *e;
    char buf[48];
    int64_t nanos;

    if (keyname != NULL)
        cJSON_AddStringToObject(j, keyname, a->key);
    add_int(j, "invocations", a->n);
    e = cJSON_AddObjectToObject(j, "errors");
    for (int c = SF_MC_OK + 1; c < SF_MC_COUNT; c++)
        add_int(e, sf_meter_class_name((sf_meter_class)c), a->by_class[c]);
    add_int(j, "cold_starts", a->cold);
    fmt_gbs(a->mb_ms, buf, sizeof(buf));
    cJSON_AddRawToObject(j, "billed_gb_seconds", buf);
    fmt_cost(a->pico, buf, sizeof(buf), &nanos);
    cJSON_AddStringToObject(j, "cost", buf);
    add_int(j, "cost_nanos", nanos);
    cJSON_AddStringToObject(j, "currency", cur);
    return j;
}

static void agg_csv(sf_buf *b, const agg *a, const char *cur)
{
    char gbs[48], cost[48];
    int64_t nanos;

    fmt_gbs(a->mb_ms, gbs, sizeof(gbs));
    fmt_cost(a->pico, cost, sizeof(cost), &nanos);
    sf_buf_printf(b, "%s,%lld", a->key, (long long)a->n);
    for (int c = SF_MC_OK + 1; c < SF_MC_COUNT; c++)
        sf_buf_printf(b, ",%lld", (long long)a->by_class[c]);
    sf_buf_printf(b, ",%lld,%s,%s,%lld,%s\r\n", (long long)a->cold, gbs, cost,
                  (long long)nanos, cur);
}

static void run_usage(job *j, sqlite3 *db)
{
    static const char *const key_expr[] = {"fn", "t - t % 3600000000",
                                           "t - t % 86400000000"};
    const params p = j->p;
    bool csv = j->route == SF_ROUTE_USAGE_CSV;
    sqlite3_stmt *st = NULL;
    char sql[sizeof(usage_sql) + 64], from[32], to[32];
    agg total = {.key = "total"};
    cJSON *root = NULL, *rows = NULL;
    sf_buf b = {0};
    int rc;

    snprintf(sql, sizeof(sql), usage_sql, key_expr[p.by]);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        job_fail(j, db, "usage");
        return;
    }
    sqlite3_bind_int64(st, 1, p.from);
    sqlite3_bind_int64(st, 2, p.to);
    sqlite3_bind_text(st, 3, p.currency, -1, SQLITE_STATIC);
    if (p.function[0] != '\0')
        sqlite3_bind_text(st, 4, p.function, -1, SQLITE_STATIC);
    sf_rfc3339(p.from, from);
    sf_rfc3339(p.to, to);
    if (csv) {
        sf_buf_printf(&b, "%s,invocations", group_names[p.by]);
        for (int c = SF_MC_OK + 1; c < SF_MC_COUNT; c++)
            sf_buf_printf(&b, ",%s", sf_meter_class_name((sf_meter_class)c));
        sf_buf_printf(&b, ",cold_starts,billed_gb_seconds,cost,cost_nanos,"
                          "currency\r\n");
    } else {
        root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "from", from);
        cJSON_AddStringToObject(root, "to", to);
        cJSON_AddStringToObject(root, "group_by", group_names[p.by]);
        if (p.function[0] != '\0')
            cJSON_AddStringToObject(root, "function", p.function);
        rows = cJSON_AddArrayToObject(root, "rows");
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        agg a = {0};
        if (p.by == BY_FUNCTION)
            snprintf(a.key, sizeof(a.key), "%s", sqlite3_column_text(st, 0));
        else
            sf_rfc3339(sqlite3_column_int64(st, 0), a.key);
        a.n = sqlite3_column_int64(st, 1);
        for (int c = 0; c < SF_MC_COUNT; c++)
            a.by_class[c] = sqlite3_column_int64(st, 2 + c);
        a.cold = sqlite3_column_int64(st, 10);
        a.mb_ms = sqlite3_column_int64(st, 11);
        a.pico = sqlite3_column_int64(st, 12);
        total.n += a.n;
        for (int c = 0; c < SF_MC_COUNT; c++)
            total.by_class[c] += a.by_class[c];
        total.cold += a.cold;
        total.mb_ms += a.mb_ms;
        total.pico += a.pico;
        if (csv)
            agg_csv(&b, &a, p.currency);
        else
            cJSON_AddItemToArray(rows,
                                 agg_json(&a, group_names[p.by], p.currency));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        cJSON_Delete(root);
        sf_buf_free(&b);
        job_fail(j, db, "usage");
        return;
    }
    if (csv) {
        agg_csv(&b, &total, p.currency);
        j->body = b.data; /* takes the buffer */
        j->len = b.len;
        j->status = 200;
        return;
    }
    cJSON_AddItemToObject(root, "total", agg_json(&total, NULL, p.currency));
    j->body = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (j->body == NULL) {
        job_fail(j, NULL, "usage");
        return;
    }
    j->len = strlen(j->body);
    j->status = 200;
}

/* ---- invocation records ------------------------------------------------- */

static const char list_sql[] =
    "SELECT seq, seq, request_id, function, version, tenant,"
    " start_us, queue_us, duration_us, init_us, cold_start, instance_id,"
    " status, http_status, bytes_in, bytes_out, memory_mb, billed, billed_ms,"
    " cost_pico, price_request_pico, price_gb_second_pico, granularity_ms,"
    " currency FROM invocations"
    " WHERE (?1 IS NULL OR function = ?1) AND (?2 IS NULL OR status = ?2)"
    " AND (?3 IS NULL OR seq < ?3) ORDER BY seq DESC LIMIT ?4";

static void run_list(job *jb, sqlite3 *db)
{
    static const char *const int_cols[] = {
        [4] = "version",    [7] = "queue_us",     [8] = "duration_us",
        [9] = "init_us",    [11] = "instance_id", [13] = "http_status",
        [14] = "bytes_in",  [15] = "bytes_out",   [16] = "memory_mb",
        [18] = "billed_ms", [19] = "cost_picos",  [22] = "granularity_ms"};
    const params p = jb->p;
    sqlite3_stmt *st = NULL;
    cJSON *root, *arr;
    int64_t last = 0, count = 0;
    int rc;

    if (sqlite3_prepare_v2(db, list_sql, -1, &st, NULL) != SQLITE_OK) {
        job_fail(jb, db, "invocation");
        return;
    }
    if (p.function[0] != '\0')
        sqlite3_bind_text(st, 1, p.function, -1, SQLITE_STATIC);
    if (p.status[0] != '\0')
        sqlite3_bind_text(st, 2, p.status, -1, SQLITE_STATIC);
    if (p.before > 0)
        sqlite3_bind_int64(st, 3, p.before);
    sqlite3_bind_int64(st, 4, p.limit);
    root = cJSON_CreateObject();
    arr = cJSON_AddArrayToObject(root, "invocations");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *j = cJSON_CreateObject();
        char ts[32], buf[48];
        int64_t nanos;

        last = sqlite3_column_int64(st, 0);
        count++;
        add_int(j, "invocation_id", sqlite3_column_int64(st, 1));
        cJSON_AddStringToObject(j, "request_id",
                                (const char *)sqlite3_column_text(st, 2));
        cJSON_AddStringToObject(j, "function",
                                (const char *)sqlite3_column_text(st, 3));
        if (sqlite3_column_type(st, 5) == SQLITE_NULL)
            cJSON_AddNullToObject(j, "tenant");
        else
            cJSON_AddStringToObject(j, "tenant",
                                    (const char *)sqlite3_column_text(st, 5));
        sf_rfc3339(sqlite3_column_int64(st, 6), ts);
        cJSON_AddStringToObject(j, "start", ts);
        add_int(j, "start_us", sqlite3_column_int64(st, 6));
        for (int c = 4; c <= 22; c++)
            if (int_cols[c] != NULL)
                add_int(j, int_cols[c], sqlite3_column_int64(st, c));
        cJSON_AddBoolToObject(j, "cold_start", sqlite3_column_int(st, 10));
        cJSON_AddStringToObject(j, "status",
                                (const char *)sqlite3_column_text(st, 12));
        cJSON_AddBoolToObject(j, "billed", sqlite3_column_int(st, 17));
        fmt_cost(sqlite3_column_int64(st, 19), buf, sizeof(buf), &nanos);
        cJSON_AddStringToObject(j, "cost", buf);
        sf_format_decimal(sqlite3_column_int64(st, 20), 12, buf, sizeof(buf));
        cJSON_AddStringToObject(j, "price_per_request", buf);
        sf_format_decimal(sqlite3_column_int64(st, 21), 12, buf, sizeof(buf));
        cJSON_AddStringToObject(j, "price_per_gb_second", buf);
        cJSON_AddStringToObject(j, "currency",
                                (const char *)sqlite3_column_text(st, 23));
        cJSON_AddItemToArray(arr, j);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        cJSON_Delete(root);
        job_fail(jb, db, "invocation");
        return;
    }
    if (count == p.limit)
        add_int(root, "next_before", last);
    else
        cJSON_AddNullToObject(root, "next_before");
    jb->body = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (jb->body == NULL) {
        job_fail(jb, NULL, "invocation");
        return;
    }
    jb->len = strlen(jb->body);
    jb->status = 200;
}

static void run(job *j, sqlite3 *db)
{
    if (j->route == SF_ROUTE_INVOCATIONS)
        run_list(j, db);
    else
        run_usage(j, db);
}

/* Thread-pool thread: a fresh read-only connection per query. */
static void on_work(uv_work_t *w)
{
    job *j = w->data;
    sqlite3 *db = NULL;

    if (sqlite3_open_v2(j->dbpath, &db, SQLITE_OPEN_READONLY, NULL) !=
        SQLITE_OK) {
        job_fail(j, db, "usage");
        sqlite3_close(db);
        return;
    }
    sqlite3_busy_timeout(db, 10000);
    run(j, db);
    sqlite3_close(db);
}

static void respond(job *j)
{
    static const sofaas_header json = {"Content-Type", 12, "application/json",
                                       16};
    static const sofaas_header csv = {"Content-Type", 12,
                                      "text/csv; charset=utf-8", 23};

    if (j->status != 200)
        sf_http_error(j->req, 500, "internal", "%s", j->err);
    else
        sf_http_respond(j->req, 200,
                        j->route == SF_ROUTE_USAGE_CSV ? &csv : &json, 1,
                        j->body, j->len);
    free(j->body);
    free(j->dbpath);
    free(j);
}

static void on_work_done(uv_work_t *w, int status)
{
    job *j = w->data;

    (void)status; /* work requests are never cancelled here */
    respond(j);
}

void sf_usage_handle(sf_registry *reg, sf_meter *m, sf_http_req *req)
{
    job *j = calloc(1, sizeof(*j));
    uv_loop_t *loop = sf_meter_loop(m);

    if (j == NULL) {
        sf_http_error(req, 503, "overloaded", "out of memory");
        return;
    }
    if (parse_params(req, sf_meter_config_of(m), &j->p) < 0) {
        free(j);
        return;
    }
    j->req = req;
    j->route = req->route.id;
    j->status = 500;
    if (loop != NULL &&
        asprintf(&j->dbpath, "%s/sofaas.db", sf_registry_state_dir(reg)) >= 0) {
        j->work.data = j;
        if (uv_queue_work(loop, &j->work, on_work, on_work_done) == 0)
            return;
    }
    /* No meter (so no loop handle) or no thread: run here. */
    run(j, sf_registry_db(reg));
    respond(j);
}
