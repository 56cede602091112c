/*
 * fnlog.h - function logs: what functions write to stdout and stderr,
 * captured per invocation, split into lines, tagged (function, version,
 * instance, request id), bounded per invocation, stored in SQLite
 * (table function_logs) with time-based retention, and fanned out live to
 * followers (GET /v1/functions/{name}/logs?follow=1).
 *
 * The pool feeds raw bytes read from a worker's output pipe through an
 * sf_fnlog_stream embedded in its worker; this module does the rest. Rows
 * are written in batches (one transaction per flush, at most every
 * SF_FNLOG_FLUSH_MS) so a chatty function costs one commit per batch, not
 * per line. Loop thread only. Text is stored as valid UTF-8 (invalid bytes
 * become U+FFFD) so it can always be served as JSON.
 */
#ifndef SF_FNLOG_H
#define SF_FNLOG_H

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"

#define SF_FNLOG_LINE_MAX 4096u          /* longer lines are split */
#define SF_FNLOG_DEFAULT_MAX (64u << 10) /* bytes per invocation */
#define SF_FNLOG_DEFAULT_RETENTION_S (7 * 24 * 3600)
#define SF_FNLOG_FLUSH_MS 200
#define SF_FNLOG_QUERY_MAX 1000 /* rows per GET */

typedef struct sf_fnlog sf_fnlog;

typedef struct sf_fnlog_config {
    size_t max_per_invocation; /* 0: SF_FNLOG_DEFAULT_MAX */
    int64_t retention_s;       /* 0: SF_FNLOG_DEFAULT_RETENTION_S */
} sf_fnlog_config;

/* Who wrote the bytes. Strings are borrowed for the call. */
typedef struct sf_fnlog_tags {
    const char *function;
    int64_t version;
    uint64_t instance;
    const char *request_id; /* NULL: outside an invocation (init, idle) */
} sf_fnlog_tags;

/* Per-worker capture state; zero-initialize, sf_fnlog_stream_free at end. */
typedef struct sf_fnlog_stream {
    sf_buf partial; /* an unfinished line */
    size_t bytes;   /* accepted since the last invocation began */
    bool truncated; /* the marker was written for this invocation */
} sf_fnlog_stream;

/* Borrows loop and db (which must outlive the fnlog). */
int sf_fnlog_new(uv_loop_t *loop, sqlite3 *db, const sf_fnlog_config *cfg,
                 sf_fnlog **out);
/* Flushes pending rows, ends followers, frees on the loop. NULL-safe. */
void sf_fnlog_free(sf_fnlog *l);

/* An invocation starts on the stream's instance: resets its budget. */
void sf_fnlog_stream_begin(sf_fnlog_stream *s);
/*
 * Feeds len bytes of raw output. Complete lines are emitted with tags;
 * output over the budget is dropped after one marker line.
 */
void sf_fnlog_feed(sf_fnlog *l, sf_fnlog_stream *s, const sf_fnlog_tags *t,
                   const char *data, size_t len);
/* Emits an unfinished line (the output ended without a newline). */
void sf_fnlog_stream_flush(sf_fnlog *l, sf_fnlog_stream *s,
                           const sf_fnlog_tags *t);
void sf_fnlog_stream_free(sf_fnlog_stream *s);

/* A query of stored lines of one function. */
typedef struct sf_fnlog_query {
    const char *function;
    const char *request_id; /* NULL: any */
    int64_t since_us;       /* < 0: no lower time bound */
    int64_t after_id;       /* 0: none; else only rows with a larger id */
    unsigned limit;         /* 1..SF_FNLOG_QUERY_MAX */
} sf_fnlog_query;

/*
 * Runs q. Without since_us/after_id it returns the newest limit lines;
 * with either, the oldest limit lines after that point. Either way in
 * ascending id order, as a JSON array (caller owns). Returns 0 or -EIO.
 */
int sf_fnlog_select(sf_fnlog *l, const sf_fnlog_query *q, cJSON **out);

/*
 * A follower receives every line emitted from now on whose function (and
 * request id, if given) matches, as one JSON object. cb must not call
 * sf_fnlog_* except sf_fnlog_unfollow on its own follower.
 */
typedef struct sf_fnlog_follower sf_fnlog_follower;
typedef void (*sf_fnlog_line_cb)(void *ctx, const cJSON *line);
sf_fnlog_follower *sf_fnlog_follow(sf_fnlog *l, const char *function,
                                   const char *request_id, sf_fnlog_line_cb cb,
                                   void *ctx);
void sf_fnlog_unfollow(sf_fnlog *l, sf_fnlog_follower *f); /* NULL-safe */

#endif
