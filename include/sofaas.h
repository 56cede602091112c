/*
 * sofaas.h - the only header a sofaas function author includes.
 *
 * A function is a shared object that defines sofaas_handle() (and optionally
 * sofaas_init()). The worker process that loads it provides the sofaas_set_*,
 * sofaas_write and sofaas_printf functions declared here. Including this header
 * stamps the ABI version into the object as the exported weak symbol
 * `sofaas_abi_version`, which the loader checks before it calls anything.
 *
 * ABI version 1. Fields may be appended to sofaas_request in later versions
 * without breaking ABI 1; existing fields never move.
 *
 * Build a function with:
 *     cc -shared -fPIC -O2 -I include hello.c -o hello.so
 */
#ifndef SOFAAS_H
#define SOFAAS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SOFAAS_ABI_VERSION 1

/* One request header. Not NUL-terminated: use the lengths. */
typedef struct sofaas_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} sofaas_header;

/*
 * An invocation. Everything it points to is owned by the runtime and valid
 * only until sofaas_handle() returns.
 */
typedef struct sofaas_request {
    const char *method;     /* "GET", NUL-terminated */
    const char *path;       /* part after /fn/{name}, "/" if empty */
    const char *query;      /* raw query without '?', "" if none */
    const sofaas_header *headers;
    size_t header_count;
    const void *body;       /* may be NULL when body_len is 0 */
    size_t body_len;
    const char *request_id; /* NUL-terminated */
} sofaas_request;

/* The response being built. Opaque; owned by the runtime. */
typedef struct sofaas_response sofaas_response;

/* Sets the HTTP status (100..599). Default 200. Out-of-range values are ignored. */
void sofaas_set_status(sofaas_response *res, int status);

/*
 * Adds a response header. Returns 0, or -1 if the name or value is invalid
 * (empty name, CR/LF/NUL or non-token characters) or a limit is reached.
 */
int sofaas_set_header(sofaas_response *res, const char *name, const char *value);

/* Appends to the body. Returns 0, or -1 if the response size cap is reached. */
int sofaas_write(sofaas_response *res, const void *data, size_t len);

/* printf-style sofaas_write. Returns bytes written, or -1 on error. */
int sofaas_printf(sofaas_response *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Implemented by the function.
 * sofaas_handle: required; return 0 on success, non-zero for an error (the
 *                caller gets 500 function_error).
 * sofaas_init:   optional; runs once per instance before the first request;
 *                non-zero means the instance failed to initialize.
 */
int sofaas_handle(const sofaas_request *req, sofaas_response *res);
int sofaas_init(void);

/*
 * ABI stamp. A weak, exported definition in every object that includes this
 * header; the loader refuses an object whose value differs from its own.
 * The runtime itself defines SOFAAS_NO_ABI_STAMP.
 */
#ifndef SOFAAS_NO_ABI_STAMP
__attribute__((weak, visibility("default"), used))
const unsigned int sofaas_abi_version = SOFAAS_ABI_VERSION;
#endif

#ifdef __cplusplus
}
#endif

#endif /* SOFAAS_H */
