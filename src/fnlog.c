/*
 * fnlog.c - capture, storage and fan-out of function output (see fnlog.h).
 *
 * Lines wait in memory (pending) until the flush timer writes them in one
 * transaction; a query flushes first so it sees everything emitted so far
 * (unless the database is busy, see below). Pending memory is capped (SF_FNLOG_PENDING_MAX): past it lines are
 * dropped and counted, and the next flush logs how many, because a stalled
 * disk must not grow the daemon without bound. A flush never waits on a
 * busy database (SF_FNLOG_BUSY_MS): its lines stay pending for the next
 * one. Retention runs once a minute and deletes rows older than
 * retention_s.
 */
#include "fnlog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "registry.h"
#include "util.h"

#define SF_FNLOG_PENDING_MAX (8u << 20)
#define SF_FNLOG_RETENTION_EVERY_MS 60000
/* The loop waits at most this long for SQLite's write lock; if another
 * connection holds it (the meter's writer, an operator's sqlite3 shell),
 * lines stay pending and the flush timer tries again. */
#define SF_FNLOG_BUSY_MS 2

typedef struct row {
    int64_t ts_us;
    char function[64];
    int64_t version;
    uint64_t instance;
    char request_id[129]; /* "" for none */
    char *message;        /* valid UTF-8, NUL-terminated */
    size_t len;
} row;

struct sf_fnlog_follower {
    char function[64];
    char request_id[129]; /* "" for any */
    sf_fnlog_line_cb cb;
    void *ctx;
    sf_fnlog_follower *prev, *next;
};

struct sf_fnlog {
    uv_loop_t *loop;
    sqlite3 *db;
    sqlite3_stmt *ins;
    size_t max_inv;
    int64_t retention_s;
    uv_timer_t flush_timer;
    uv_timer_t retention_timer;
    row *pending;
    size_t n_pending, cap_pending, pending_bytes;
    uint64_t dropped;
    sf_fnlog_follower *followers;
    int64_t next_id; /* ids are assigned here so followers see them too */
    int open_handles;
};

/* ---- text --------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* overlong, surrogates, beyond U+10FFFF */
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return len;
}

/* Copies s as valid UTF-8 (invalid bytes -> U+FFFD, NUL -> U+FFFD). */
static char *utf8_clean(const char *s, size_t n, size_t *out_len)
{
    char *o = malloc(n * 3 + 1);
    size_t j = 0;

    if (o == NULL)
        return NULL;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq((const unsigned char *)s + i, n - i);
        if (l == 0 || s[i] == '\0') {
            memcpy(o + j, "\xef\xbf\xbd", 3);
            j += 3;
            i++;
            continue;
        }
        memcpy(o + j, s + i, l);
        j += l;
        i += l;
    }
    o[j] = '\0';
    *out_len = j;
    return o;
}

/*
 * Quotes text for a key="value" log field: escapes '"' and '\\' and writes
 * control bytes as \xNN, so user text cannot forge fields or lines.
 */
static void log_quote(const char *s, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t j = 0;

    for (size_t i = 0; i < n && j + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[j++] = '\\';
            out[j++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            out[j++] = '\\';
            out[j++] = 'x';
            out[j++] = hex[c >> 4];
            out[j++] = hex[c & 15];
        } else {
            out[j++] = (char)c;
        }
    }
    out[j] = '\0';
}

/* ---- rows --------------------------------------------------------------- */

static cJSON *row_json(int64_t id, const row *r)
{
    cJSON *j = cJSON_CreateObject();
    char ts[32], frac[40];

    sf_rfc3339(r->ts_us, ts);
    /* RFC 3339 with microseconds: insert ".uuuuuu" before the 'Z'. */
    snprintf(frac, sizeof(frac), "%.19s.%06lldZ", ts,
             (long long)(r->ts_us % 1000000));
    cJSON_AddNumberToObject(j, "id", (double)id);
    cJSON_AddStringToObject(j, "time", frac);
    cJSON_AddStringToObject(j, "function", r->function);
    cJSON_AddNumberToObject(j, "version", (double)r->version);
    cJSON_AddNumberToObject(j, "instance", (double)r->instance);
    if (r->request_id[0] != '\0')
        cJSON_AddStringToObject(j, "request_id", r->request_id);
    else
        cJSON_AddNullToObject(j, "request_id");
    cJSON_AddStringToObject(j, "message", r->message);
    return j;
}

static void on_flush_timer(uv_timer_t *t);

/*
 * Writes the pending lines in one transaction. Unless wait is set (at
 * shutdown), it never waits on the database for more than SF_FNLOG_BUSY_MS:
 * when the write lock is taken elsewhere the lines stay pending (within
 * SF_FNLOG_PENDING_MAX) and the timer retries, so a held lock never stalls
 * the loop. Returns 0, -EBUSY (kept for later) or -EIO (lines dropped).
 */
static int flush_lines(sf_fnlog *l, bool wait)
{
    int rc = 0, b;
    char *err = NULL;

    if (l->n_pending == 0)
        goto dropped;
    if (!wait)
        sqlite3_busy_timeout(l->db, SF_FNLOG_BUSY_MS);
    b = sqlite3_exec(l->db, "BEGIN IMMEDIATE", NULL, NULL, &err);
    if (!wait)
        sqlite3_busy_timeout(l->db, SF_REGISTRY_BUSY_MS);
    if (b == SQLITE_BUSY) {
        sqlite3_free(err);
        SF_DEBUG("msg=\"database busy, function log lines kept for the next "
                 "flush\" lines=%zu",
                 l->n_pending);
        if (!uv_is_active((uv_handle_t *)&l->flush_timer))
            uv_timer_start(&l->flush_timer, on_flush_timer,
                           SF_FNLOG_FLUSH_MS, 0);
        return -EBUSY;
    }
    if (b != SQLITE_OK) {
        SF_ERR("msg=\"cannot store function logs\" error=\"%s\" lines=%zu",
               err ? err : "?", l->n_pending);
        sqlite3_free(err);
        rc = -EIO;
        goto out;
    }
    for (size_t i = 0; i < l->n_pending; i++) {
        row *r = &l->pending[i];
        int64_t id = l->next_id - (int64_t)(l->n_pending - i);
        sqlite3_reset(l->ins);
        sqlite3_bind_int64(l->ins, 1, id);
        sqlite3_bind_int64(l->ins, 2, r->ts_us);
        sqlite3_bind_text(l->ins, 3, r->function, -1, SQLITE_STATIC);
        sqlite3_bind_int64(l->ins, 4, r->version);
        sqlite3_bind_int64(l->ins, 5, (sqlite3_int64)r->instance);
        if (r->request_id[0] != '\0')
            sqlite3_bind_text(l->ins, 6, r->request_id, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(l->ins, 6);
        sqlite3_bind_text(l->ins, 7, r->message, (int)r->len, SQLITE_STATIC);
        if (sqlite3_step(l->ins) != SQLITE_DONE) {
            SF_ERR("msg=\"cannot store function logs\" error=\"%s\"",
                   sqlite3_errmsg(l->db));
            rc = -EIO;
            break;
        }
    }
    sqlite3_reset(l->ins);
    if (sqlite3_exec(l->db, rc == 0 ? "COMMIT" : "ROLLBACK", NULL, NULL,
                     NULL) != SQLITE_OK)
        rc = -EIO;
out:
    /* On failure the batch is lost: say so, and do not retry forever. */
    if (rc < 0)
        l->dropped += l->n_pending;
    for (size_t i = 0; i < l->n_pending; i++)
        free(l->pending[i].message);
    l->n_pending = 0;
    l->pending_bytes = 0;
dropped:
    if (l->dropped > 0) {
        SF_WARN("msg=\"function log lines dropped\" lines=%llu "
                "hint=\"the database is slow or failing, or functions log "
                "faster than it can store\"",
                (unsigned long long)l->dropped);
        l->dropped = 0;
    }
    return rc;
}

static int flush(sf_fnlog *l)
{
    return flush_lines(l, false);
}

static void on_flush_timer(uv_timer_t *t)
{
    flush(t->data);
}

static void retention(sf_fnlog *l)
{
    sqlite3_stmt *st;
    int rc;
    int64_t cutoff = sf_wall_us() - l->retention_s * 1000000;

    if (sqlite3_prepare_v2(l->db, "DELETE FROM function_logs WHERE ts < ?", -1,
                           &st, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_int64(st, 1, cutoff);
    /* Like a flush, never a long wait on the loop: a busy database skips
     * this round (the next one deletes the same rows). */
    sqlite3_busy_timeout(l->db, SF_FNLOG_BUSY_MS);
    rc = sqlite3_step(st);
    sqlite3_busy_timeout(l->db, SF_REGISTRY_BUSY_MS);
    if (rc == SQLITE_BUSY)
        SF_DEBUG("msg=\"database busy, function log retention skipped\"");
    else if (rc != SQLITE_DONE)
        SF_WARN("msg=\"function log retention failed\" error=\"%s\"",
                sqlite3_errmsg(l->db));
    else if (sqlite3_changes(l->db) > 0)
        SF_DEBUG("msg=\"function log retention\" deleted=%d",
                 sqlite3_changes(l->db));
    sqlite3_finalize(st);
}

static void on_retention_timer(uv_timer_t *t)
{
    sf_fnlog *l = t->data;
    flush(l);
    retention(l);
}

/* Records one line (len bytes, no newline) with tags. */
static void emit(sf_fnlog *l, const sf_fnlog_tags *t, const char *s, size_t len)
{
    row r = {0};
    char quoted[256 * 4 + 8];

    if (sf_log_enabled(SF_LOG_DEBUG)) {
        log_quote(s, len > 256 ? 256 : len, quoted, sizeof(quoted));
        SF_DEBUG("msg=\"function output\" request_id=%s function=%s "
                 "version=%lld instance=%llu bytes=%zu text=\"%s\"",
                 t->request_id ? t->request_id : "-", t->function,
                 (long long)t->version, (unsigned long long)t->instance, len,
                 quoted);
    }
    if (l->pending_bytes + len > SF_FNLOG_PENDING_MAX) {
        l->dropped++;
        return;
    }
    if (l->n_pending == l->cap_pending) {
        size_t cap = l->cap_pending ? l->cap_pending * 2 : 64;
        row *n = realloc(l->pending, cap * sizeof(*n));
        if (n == NULL) {
            l->dropped++;
            return;
        }
        l->pending = n;
        l->cap_pending = cap;
    }
    r.ts_us = sf_wall_us();
    snprintf(r.function, sizeof(r.function), "%s", t->function);
    r.version = t->version;
    r.instance = t->instance;
    snprintf(r.request_id, sizeof(r.request_id), "%s",
             t->request_id ? t->request_id : "");
    r.message = utf8_clean(s, len, &r.len);
    if (r.message == NULL) {
        l->dropped++;
        return;
    }
    l->pending[l->n_pending++] = r;
    l->pending_bytes += r.len + sizeof(r);
    l->next_id++;

    if (l->followers != NULL) {
        cJSON *j = row_json(l->next_id - 1, &r);
        for (sf_fnlog_follower *f = l->followers, *next; f != NULL; f = next) {
            next = f->next; /* cb may unfollow f */
            if (strcmp(f->function, r.function) != 0)
                continue;
            if (f->request_id[0] != '\0' &&
                strcmp(f->request_id, r.request_id) != 0)
                continue;
            if (j != NULL)
                f->cb(f->ctx, j);
        }
        cJSON_Delete(j);
    }
    if (!uv_is_active((uv_handle_t *)&l->flush_timer))
        uv_timer_start(&l->flush_timer, on_flush_timer, SF_FNLOG_FLUSH_MS, 0);
}

/* ---- streams ------------------------------------------------------------ */

void sf_fnlog_stream_begin(sf_fnlog_stream *s)
{
    s->bytes = 0;
    s->truncated = false;
}

void sf_fnlog_stream_free(sf_fnlog_stream *s)
{
    sf_buf_free(&s->partial);
}

static void emit_partial(sf_fnlog *l, sf_fnlog_stream *s,
                         const sf_fnlog_tags *t, bool strip_cr)
{
    size_t n = s->partial.len;

    if (strip_cr && n > 0 && s->partial.data[n - 1] == '\r')
        n--; /* the CR of a CRLF */
    emit(l, t, s->partial.data ? s->partial.data : "", n);
    s->partial.len = 0;
}

void sf_fnlog_feed(sf_fnlog *l, sf_fnlog_stream *s, const sf_fnlog_tags *t,
                   const char *data, size_t len)
{
    while (len > 0 && !s->truncated) {
        const char *nl = memchr(data, '\n', len);
        size_t seg = nl ? (size_t)(nl - data) : len; /* bytes before '\n' */
        bool has_nl = nl != NULL;
        size_t room = SF_FNLOG_LINE_MAX - s->partial.len;
        size_t want, left;

        if (seg > room) { /* an over-long line is cut into pieces */
            seg = room;
            has_nl = false;
        }
        want = seg + (has_nl ? 1 : 0); /* the newline counts too */
        left = s->bytes < l->max_inv ? l->max_inv - s->bytes : 0;
        if (want > left) {
            /* Over budget: keep what fits, mark, drop the rest. */
            char marker[128];
            int m = snprintf(marker, sizeof(marker),
                             "[sofaas: output truncated: more than %zu bytes "
                             "in this invocation]",
                             l->max_inv);
            size_t take = left < seg ? left : seg;
            if (take > 0)
                (void)sf_buf_append(&s->partial, data, take);
            if (s->partial.len > 0)
                emit_partial(l, s, t, false);
            emit(l, t, marker, (size_t)m);
            s->bytes = l->max_inv;
            s->truncated = true;
            return;
        }
        s->bytes += want;
        if (seg > 0 && sf_buf_append(&s->partial, data, seg) < 0)
            return;
        data += want;
        len -= want;
        if (has_nl || s->partial.len >= SF_FNLOG_LINE_MAX)
            emit_partial(l, s, t, has_nl);
    }
}

void sf_fnlog_stream_flush(sf_fnlog *l, sf_fnlog_stream *s,
                           const sf_fnlog_tags *t)
{
    if (s->partial.len > 0)
        emit_partial(l, s, t, false);
    if (s->partial.cap > SF_FNLOG_LINE_MAX * 2)
        sf_buf_free(&s->partial);
}

/* ---- lifecycle ---------------------------------------------------------- */

int sf_fnlog_new(uv_loop_t *loop, sqlite3 *db, const sf_fnlog_config *cfg,
                 sf_fnlog **out)
{
    sf_fnlog *l = calloc(1, sizeof(*l));
    sqlite3_stmt *st;

    if (l == NULL)
        return -ENOMEM;
    l->loop = loop;
    l->db = db;
    l->max_inv = cfg && cfg->max_per_invocation ? cfg->max_per_invocation
                                                : SF_FNLOG_DEFAULT_MAX;
    l->retention_s = cfg && cfg->retention_s ? cfg->retention_s
                                             : SF_FNLOG_DEFAULT_RETENTION_S;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO function_logs (id, ts, function, "
                           "version, instance, request_id, message) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)",
                           -1, &l->ins, NULL) != SQLITE_OK) {
        SF_ERR("msg=\"cannot prepare function log statement\" error=\"%s\"",
               sqlite3_errmsg(db));
        free(l);
        return -EIO;
    }
    l->next_id = 1;
    if (sqlite3_prepare_v2(db,
                           /* AUTOINCREMENT's high-water mark outlives
                            * rows deleted by retention, so an after=
                            * cursor never sees an id twice. */
                           "SELECT MAX(COALESCE((SELECT seq FROM "
                           "sqlite_sequence WHERE name = 'function_logs'), 0), "
                           "COALESCE((SELECT MAX(id) FROM function_logs), 0)) "
                           "+ 1",
                           -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            l->next_id = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    uv_timer_init(loop, &l->flush_timer);
    uv_timer_init(loop, &l->retention_timer);
    l->flush_timer.data = l->retention_timer.data = l;
    l->open_handles = 2;
    retention(l);
    uv_timer_start(&l->retention_timer, on_retention_timer,
                   SF_FNLOG_RETENTION_EVERY_MS, SF_FNLOG_RETENTION_EVERY_MS);
    /* Housekeeping alone must not keep the loop alive at shutdown. */
    uv_unref((uv_handle_t *)&l->retention_timer);
    *out = l;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    sf_fnlog *l = h->data;
    if (--l->open_handles == 0)
        free(l);
}

void sf_fnlog_free(sf_fnlog *l)
{
    if (l == NULL)
        return;
    flush_lines(l, true); /* at shutdown, waiting is right */
    sqlite3_finalize(l->ins);
    free(l->pending);
    while (l->followers != NULL) {
        sf_fnlog_follower *f = l->followers;
        l->followers = f->next;
        free(f);
    }
    uv_close((uv_handle_t *)&l->flush_timer, on_closed);
    uv_close((uv_handle_t *)&l->retention_timer, on_closed);
}

/* ---- reading ------------------------------------------------------------ */

int sf_fnlog_select(sf_fnlog *l, const sf_fnlog_query *q, cJSON **out)
{
    /* Newest-first then reversed for a tail; ascending for a cursor. */
    static const char tail_sql[] =
        "SELECT * FROM (SELECT id, ts, function, version, instance, "
        "request_id, message FROM function_logs WHERE function = ?1 "
        "AND (?2 IS NULL OR request_id = ?2) ORDER BY id DESC LIMIT ?3) "
        "ORDER BY id ASC";
    static const char cursor_sql[] =
        "SELECT id, ts, function, version, instance, request_id, message "
        "FROM function_logs WHERE function = ?1 "
        "AND (?2 IS NULL OR request_id = ?2) AND ts >= ?4 AND id > ?5 "
        "ORDER BY id ASC LIMIT ?3";
    bool cursor = q->since_us >= 0 || q->after_id > 0;
    sqlite3_stmt *st;
    cJSON *arr;
    int rc;

    flush(l);
    if (sqlite3_prepare_v2(l->db, cursor ? cursor_sql : tail_sql, -1, &st,
                           NULL) != SQLITE_OK) {
        SF_ERR("msg=\"cannot query function logs\" error=\"%s\"",
               sqlite3_errmsg(l->db));
        return -EIO;
    }
    sqlite3_bind_text(st, 1, q->function, -1, SQLITE_STATIC);
    if (q->request_id != NULL)
        sqlite3_bind_text(st, 2, q->request_id, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 2);
    sqlite3_bind_int(st, 3, (int)q->limit);
    if (cursor) {
        sqlite3_bind_int64(st, 4, q->since_us);
        sqlite3_bind_int64(st, 5, q->after_id);
    }
    arr = cJSON_CreateArray();
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        row r = {0};
        const unsigned char *rid = sqlite3_column_text(st, 5);
        r.ts_us = sqlite3_column_int64(st, 1);
        snprintf(r.function, sizeof(r.function), "%s",
                 (const char *)sqlite3_column_text(st, 2));
        r.version = sqlite3_column_int64(st, 3);
        r.instance = (uint64_t)sqlite3_column_int64(st, 4);
        snprintf(r.request_id, sizeof(r.request_id), "%s",
                 rid ? (const char *)rid : "");
        r.message = (char *)sqlite3_column_text(st, 6);
        if (r.message == NULL)
            r.message = "";
        cJSON_AddItemToArray(arr, row_json(sqlite3_column_int64(st, 0), &r));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        cJSON_Delete(arr);
        return -EIO;
    }
    *out = arr;
    return 0;
}

sf_fnlog_follower *sf_fnlog_follow(sf_fnlog *l, const char *function,
                                   const char *request_id, sf_fnlog_line_cb cb,
                                   void *ctx)
{
    sf_fnlog_follower *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return NULL;
    snprintf(f->function, sizeof(f->function), "%s", function);
    snprintf(f->request_id, sizeof(f->request_id), "%s",
             request_id ? request_id : "");
    f->cb = cb;
    f->ctx = ctx;
    f->next = l->followers;
    if (l->followers)
        l->followers->prev = f;
    l->followers = f;
    return f;
}

void sf_fnlog_unfollow(sf_fnlog *l, sf_fnlog_follower *f)
{
    if (f == NULL)
        return;
    if (f->prev)
        f->prev->next = f->next;
    else
        l->followers = f->next;
    if (f->next)
        f->next->prev = f->prev;
    free(f);
}
