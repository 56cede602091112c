/*
 * runtime.c - implementation of the sofaas_* functions that function objects
 * call to build their response. Exported from sofaas-worker through
 * exports.list; user code calls them, so every argument is checked.
 */
#include "runtime.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sf_response_reset(sofaas_response *res)
{
    for (size_t i = 0; i < res->header_count; i++) {
        free((void *)res->headers[i].name);
        free((void *)res->headers[i].value);
    }
    res->header_count = 0;
    res->header_bytes = 0;
    res->status = 200;
    res->body_len = 0;
    res->overflow = false;
    /* Don't keep a huge buffer around after one large response. */
    if (res->body_cap > (256u << 10)) {
        free(res->body);
        res->body = NULL;
        res->body_cap = 0;
    }
}

void sf_response_release(sofaas_response *res)
{
    if (res == NULL)
        return;
    sf_response_reset(res);
    free(res->body);
    res->body = NULL;
    res->body_cap = 0;
}

void sofaas_set_status(sofaas_response *res, int status)
{
    if (res != NULL && status >= 100 && status <= 599)
        res->status = status;
}

/* RFC 9110 token characters. */
static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int sofaas_set_header(sofaas_response *res, const char *name,
                      const char *value)
{
    size_t nl, vl;
    char *n, *v;

    if (res == NULL || name == NULL || value == NULL)
        return -1;
    nl = strlen(name);
    vl = strlen(value);
    if (nl == 0 || nl > 256)
        return -1;
    for (size_t i = 0; i < nl; i++)
        if (!is_tchar((unsigned char)name[i]))
            return -1;
    for (size_t i = 0; i < vl; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return -1;
    }
    if (res->header_count == SF_RESPONSE_MAX_HEADERS ||
        res->header_bytes + nl + vl > SF_RESPONSE_MAX_HEADER_BYTES) {
        res->overflow = true;
        return -1;
    }
    n = strdup(name);
    v = strdup(value);
    if (n == NULL || v == NULL) {
        free(n);
        free(v);
        return -1;
    }
    res->headers[res->header_count++] =
        (sofaas_header){.name = n, .name_len = nl, .value = v, .value_len = vl};
    res->header_bytes += nl + vl;
    return 0;
}

int sofaas_write(sofaas_response *res, const void *data, size_t len)
{
    if (res == NULL || (data == NULL && len > 0))
        return -1;
    if (len > SF_RESPONSE_MAX_BODY - res->body_len) {
        res->overflow = true;
        return -1;
    }
    if (res->body_len + len > res->body_cap) {
        size_t cap = res->body_cap ? res->body_cap : 4096;
        char *nb;
        while (cap < res->body_len + len)
            cap *= 2;
        if (cap > SF_RESPONSE_MAX_BODY)
            cap = SF_RESPONSE_MAX_BODY;
        nb = realloc(res->body, cap);
        if (nb == NULL)
            return -1;
        res->body = nb;
        res->body_cap = cap;
    }
    if (len > 0)
        memcpy(res->body + res->body_len, data, len);
    res->body_len += len;
    return 0;
}

int sofaas_printf(sofaas_response *res, const char *fmt, ...)
{
    char small[1024];
    char *p = small;
    va_list ap;
    int n, r;

    if (res == NULL || fmt == NULL)
        return -1;
    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n >= sizeof(small)) {
        if ((size_t)n > SF_RESPONSE_MAX_BODY) {
            res->overflow = true;
            return -1;
        }
        p = malloc((size_t)n + 1);
        if (p == NULL)
            return -1;
        va_start(ap, fmt);
        vsnprintf(p, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    r = sofaas_write(res, p, (size_t)n);
    if (p != small)
        free(p);
    return r < 0 ? -1 : n;
}
