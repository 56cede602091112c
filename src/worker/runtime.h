/*
 * runtime.h - the worker's side of the function ABI: the sofaas_response
 * object that sofaas_set_status/set_header/write/printf build.
 * Runs only in sofaas-worker.
 */
#ifndef SF_WORKER_RUNTIME_H
#define SF_WORKER_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>

#define SOFAAS_NO_ABI_STAMP
#include "sofaas.h"

/* Response caps: body (issue contract: 6 MiB) and headers. */
#define SF_RESPONSE_MAX_BODY (6u << 20)
#define SF_RESPONSE_MAX_HEADERS 64
#define SF_RESPONSE_MAX_HEADER_BYTES (16u << 10)

struct sofaas_response {
    int status;
    sofaas_header headers[SF_RESPONSE_MAX_HEADERS];
    size_t header_count;
    size_t header_bytes;
    char *body;
    size_t body_len;
    size_t body_cap;
    bool overflow; /* a write or header was refused for size */
};

/* Resets res for a new invocation, keeping its body buffer. */
void sf_response_reset(sofaas_response *res);
/* Frees everything res owns (res itself is caller's). NULL is a no-op. */
void sf_response_release(sofaas_response *res);

#endif
