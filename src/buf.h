/*
 * buf.h - a growable byte buffer with a hard cap, used for request bodies,
 * IPC read buffers and response assembly in the daemon.
 */
#ifndef SF_BUF_H
#define SF_BUF_H

#include <stddef.h>

typedef struct sf_buf {
    char *data;
    size_t len;
    size_t cap;
} sf_buf;

/* Makes room for n more bytes. Returns 0 or -ENOMEM. */
int sf_buf_reserve(sf_buf *b, size_t n);
/* Appends n bytes. Returns 0 or -ENOMEM. */
int sf_buf_append(sf_buf *b, const void *p, size_t n);
/* Appends a formatted string. Returns 0 or -ENOMEM. */
int sf_buf_printf(sf_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes. */
void sf_buf_consume(sf_buf *b, size_t n);
/* Frees the storage; the struct can be reused. NULL-safe. */
void sf_buf_free(sf_buf *b);

#endif
