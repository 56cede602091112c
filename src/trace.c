/*
 * trace.c - traceparent parsing and propagation (see trace.h). Follows the
 * W3C Trace Context recommendation, section 3.2 (traceparent header).
 */
#include "trace.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* upper case is invalid in traceparent */
}

static bool lowhex(const char *s, size_t n, bool *all_zero)
{
    *all_zero = true;
    for (size_t i = 0; i < n; i++) {
        if (hexval(s[i]) < 0)
            return false;
        if (s[i] != '0')
            *all_zero = false;
    }
    return true;
}

bool sf_trace_parse(const char *s, size_t len, sf_trace *out)
{
    bool zero;
    int v;

    if (s == NULL || len < SF_TRACEPARENT_LEN)
        return false;
    if (!lowhex(s, 2, &zero) || s[2] != '-' || s[35] != '-' || s[52] != '-')
        return false;
    v = hexval(s[0]) * 16 + hexval(s[1]);
    if (v == 0xff)
        return false;
    /* Version 00 has exactly this length; a later version may append
     * fields, introduced by '-'. */
    if (v == 0 && len != SF_TRACEPARENT_LEN)
        return false;
    if (v != 0 && len > SF_TRACEPARENT_LEN && s[SF_TRACEPARENT_LEN] != '-')
        return false;
    if (!lowhex(s + 3, 32, &zero) || zero)
        return false;
    memcpy(out->trace_id, s + 3, 32);
    out->trace_id[32] = '\0';
    if (!lowhex(s + 36, 16, &zero) || zero)
        return false;
    memcpy(out->span_id, s + 36, 16);
    out->span_id[16] = '\0';
    if (!lowhex(s + 53, 2, &zero))
        return false;
    out->flags = (unsigned char)(hexval(s[53]) * 16 + hexval(s[54]));
    out->inherited = true;
    return true;
}

static void random_hex(char *out, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    bool zero = true;

    if (sf_random_bytes(b, nbytes) != 0) {
        uint64_t t = sf_mono_us() ^ (uint64_t)sf_wall_us();
        for (size_t i = 0; i < nbytes; i++)
            b[i] = (unsigned char)(t >> (8 * (i % 8))) ^ (unsigned char)i;
    }
    for (size_t i = 0; i < nbytes; i++)
        if (b[i] != 0)
            zero = false;
    if (zero) /* all-zero ids are invalid */
        b[nbytes - 1] = 1;
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * nbytes] = '\0';
}

void sf_trace_start(const char *s, size_t len, sf_trace *out)
{
    sf_trace in;

    memset(out, 0, sizeof(*out));
    if (s != NULL && sf_trace_parse(s, len, &in)) {
        memcpy(out->trace_id, in.trace_id, sizeof(out->trace_id));
        /* Only the sampled bit is defined; others are not propagated. */
        out->flags = in.flags & 0x01;
        out->inherited = true;
    } else {
        random_hex(out->trace_id, 16);
        out->flags = 0;
    }
    random_hex(out->span_id, 8);
}

void sf_trace_format(const sf_trace *t, char out[SF_TRACEPARENT_LEN + 1])
{
    snprintf(out, SF_TRACEPARENT_LEN + 1, "00-%s-%s-%02x", t->trace_id,
             t->span_id, t->flags);
}
