/*
 * metrics.h - the daemon's Prometheus metrics: counters updated on the
 * invocation path, gauges read from the pool and the HTTP server at scrape
 * time, and process metrics read from /proc. Rendered by GET /metrics in the
 * text exposition format 0.0.4 (docs/metrics.md lists every series).
 *
 * Loop thread only. Updating is O(number of functions) at worst (a linear
 * scan of a small table) and allocation-free once a function is known.
 */
#ifndef SF_METRICS_H
#define SF_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "http.h"
#include "pool.h"

typedef struct sf_metrics sf_metrics;

/* Copies version. Returns NULL on allocation failure. */
sf_metrics *sf_metrics_new(const char *version);
void sf_metrics_free(sf_metrics *m); /* NULL-safe */

/* Borrowed sources of gauges; either may be NULL (then omitted). */
void sf_metrics_attach(sf_metrics *m, sf_pool *pool, sf_http_server *http);

/*
 * Hook for the metering module: returns the total billed cost so far (in
 * the billing currency unit). Until one is set, sofaas_billed_cost_total is
 * not exposed at all rather than exposed as a made-up zero.
 */
typedef double (*sf_metrics_cost_fn)(void *ctx);
void sf_metrics_set_cost_source(sf_metrics *m, sf_metrics_cost_fn fn,
                                void *ctx);

/*
 * Counts one finished invocation of function. outcome is the error code
 * the client saw ("ok", "function_error", "timeout", ...). duration_us is
 * the time the instance spent on it (dispatch to response).
 */
void sf_metrics_invocation(sf_metrics *m, const char *function,
                           const char *outcome, uint64_t duration_us,
                           bool cold_start);

/* Appends the exposition text to out. Returns 0 or -ENOMEM. */
int sf_metrics_render(sf_metrics *m, sf_buf *out);

#define SF_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
