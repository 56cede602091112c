/*
 * trace.h - W3C Trace Context (traceparent) for invocations.
 *
 * sofaasd is one hop of a distributed trace: it accepts a caller's
 * traceparent (version 00 format, validated strictly), starts a new span for
 * the invocation (same trace-id, fresh parent-id) and passes that to the
 * function as its traceparent request header. When the header is absent or
 * invalid it starts a new trace. sofaasd records no spans itself; it only
 * propagates ids so the function and the logs can be correlated.
 */
#ifndef SF_TRACE_H
#define SF_TRACE_H

#include <stdbool.h>
#include <stddef.h>

/* "00-" 32 hex "-" 16 hex "-" 2 hex */
#define SF_TRACEPARENT_LEN 55

typedef struct sf_trace {
    char trace_id[33]; /* 32 lowercase hex + NUL */
    char span_id[17];  /* 16 lowercase hex + NUL: this hop's span */
    unsigned char flags;
    bool inherited; /* trace_id came from a valid incoming traceparent */
} sf_trace;

/*
 * Parses a traceparent value (len bytes, not NUL-terminated). Accepts version
 * 00 exactly and future versions by their 00-compatible prefix, as the spec
 * says; rejects version ff, upper-case hex and all-zero ids. Fills trace_id,
 * span_id (the caller's parent-id) and flags. Returns true if valid.
 */
bool sf_trace_parse(const char *s, size_t len, sf_trace *out);

/*
 * Starts this hop: from a valid incoming traceparent (s may be NULL) keeps
 * the trace-id and flags and draws a new span-id; otherwise draws a new
 * trace-id too, with flags 00 (not sampled: sofaasd records nothing).
 */
void sf_trace_start(const char *s, size_t len, sf_trace *out);

/* Writes the traceparent header value of t (55 chars + NUL). */
void sf_trace_format(const sf_trace *t, char out[SF_TRACEPARENT_LEN + 1]);

#endif
