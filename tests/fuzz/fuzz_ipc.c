/*
 * fuzz_ipc.c - libFuzzer target for the daemon<->worker frame codec
 * (src/ipc.c): sf_ipc_check_hdr and every sf_ipc_decode_*, plus
 * encode/decode round trips.
 *
 * Input format: byte 0 picks the mode, the rest is the frame or payload.
 *   0: a frame header, checked in both directions; a header that passes
 *      must name a known type within that type's cap;
 *   1-4: an INVOKE, RESPONSE, LOAD or LOADED payload, decoded as hostile
 *      input; when it decodes, every string must be NUL-terminated inside
 *      the payload, and re-encoding the result must give back the same
 *      payload (reserved fields aside) in a frame that passes check_hdr;
 *   5: an invocation built from the input (fields split at 0xff bytes),
 *      encoded, then decoded: the fields must come back unchanged.
 * Any violation aborts.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipc.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_ipc: check failed at line %d: %s\n",         \
                    __LINE__, #cond);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* p[0..len) lies inside the payload and is followed by a NUL there. */
static void check_str(const char *pl, size_t plen, const char *p, size_t len)
{
    CHECK(p >= pl && len < plen && (size_t)(p - pl) <= plen - len - 1);
    CHECK(p[len] == '\0');
}

static void check_headers(const char *pl, size_t plen, const sofaas_header *h,
                          size_t n)
{
    CHECK(n <= SF_IPC_MAX_HEADERS);
    CHECK(n == 0 || h != NULL);
    for (size_t i = 0; i < n; i++) {
        check_str(pl, plen, h[i].name, h[i].name_len);
        check_str(pl, plen, h[i].value, h[i].value_len);
    }
}

static bool same_headers(const sofaas_header *a, size_t na,
                         const sofaas_header *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (a[i].name_len != b[i].name_len ||
            a[i].value_len != b[i].value_len ||
            memcmp(a[i].name, b[i].name, a[i].name_len) != 0 ||
            memcmp(a[i].value, b[i].value, a[i].value_len) != 0)
            return false;
    return true;
}

static bool same_bytes(const void *a, size_t na, const void *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na) == 0);
}

static void check_frame_hdr(const char *frame, size_t payload_len,
                            uint16_t type, bool from_worker)
{
    sf_frame_hdr h;

    memcpy(&h, frame, sizeof(h));
    CHECK(h.type == type && h.len == payload_len);
    CHECK(sf_ipc_check_hdr(&h, from_worker) == 0);
    CHECK(sf_ipc_check_hdr(&h, !from_worker) == -EPROTO);
}

static void fuzz_hdr(const uint8_t *d, size_t n)
{
    sf_frame_hdr h;

    if (n < sizeof(h))
        return;
    memcpy(&h, d, sizeof(h));
    for (int dir = 0; dir < 2; dir++) {
        int r = sf_ipc_check_hdr(&h, dir);
        CHECK(r == 0 || r == -EPROTO || r == -EMSGSIZE);
        if (r == 0) {
            CHECK(h.type >= 1 && h.type <= SF_FRAME_TYPE_MAX);
            CHECK(h.len <= (h.type == SF_FRAME_INVOKE ? SF_IPC_MAX_INVOKE
                            : h.type == SF_FRAME_RESPONSE
                                ? SF_IPC_MAX_RESPONSE
                                : SF_IPC_MAX_CONTROL));
        }
    }
}

/* Compares a re-encoded payload with the original, reserved bytes aside. */
static void check_reencoded(const char *orig, size_t olen, const char *enc,
                            size_t enc_len, size_t reserved_off)
{
    CHECK(enc_len == olen);
    CHECK(memcmp(enc, orig, reserved_off) == 0);
    CHECK(memcmp(enc + reserved_off + 4, orig + reserved_off + 4,
                 olen - reserved_off - 4) == 0);
}

static void fuzz_invoke(const char *p, size_t n)
{
    sf_invoke inv;
    sofaas_header *h = NULL;
    char *out = NULL;
    size_t out_len;
    char *whole;

    if (sf_ipc_decode_invoke(p, n, &inv, &h) != 0) {
        CHECK(h == NULL);
        return;
    }
    check_str(p, n, inv.method, inv.method_len);
    check_str(p, n, inv.path, inv.path_len);
    check_str(p, n, inv.query, inv.query_len);
    check_str(p, n, inv.request_id, inv.request_id_len);
    check_headers(p, n, inv.headers, inv.header_count);
    CHECK(inv.body_len <= n);
    CHECK(inv.body_len == 0 || (const char *)inv.body + inv.body_len == p + n);
    /* encode() leaves the body to the caller: the frame is out + body. */
    CHECK(sf_ipc_encode_invoke(&inv, 7, &out, &out_len) == 0);
    check_frame_hdr(out, out_len - sizeof(sf_frame_hdr) + inv.body_len,
                    SF_FRAME_INVOKE, false);
    whole = malloc(out_len + inv.body_len + 1);
    CHECK(whole != NULL);
    memcpy(whole, out, out_len);
    if (inv.body_len)
        memcpy(whole + out_len, inv.body, inv.body_len);
    /* invoke meta: 7 u32 fields, then the reserved one at offset 28. */
    check_reencoded(p, n, whole + sizeof(sf_frame_hdr),
                    out_len + inv.body_len - sizeof(sf_frame_hdr), 28);
    free(whole);
    free(out);
    free(h);
}

static void fuzz_response(const char *p, size_t n)
{
    sf_response res, back;
    sofaas_header *h = NULL, *h2 = NULL;
    char *out = NULL, *whole;
    size_t out_len;

    if (sf_ipc_decode_response(p, n, &res, &h) != 0) {
        CHECK(h == NULL);
        return;
    }
    check_headers(p, n, res.headers, res.header_count);
    CHECK(res.body_len == 0 || (const char *)res.body + res.body_len == p + n);
    CHECK(sf_ipc_encode_response(&res, 9, &out, &out_len) == 0);
    check_frame_hdr(out, out_len - sizeof(sf_frame_hdr) + res.body_len,
                    SF_FRAME_RESPONSE, true);
    whole = malloc(out_len + res.body_len + 1);
    CHECK(whole != NULL);
    memcpy(whole, out, out_len);
    if (res.body_len)
        memcpy(whole + out_len, res.body, res.body_len);
    /* response meta: 5 fields, then the reserved one at offset 20. */
    check_reencoded(p, n, whole + sizeof(sf_frame_hdr),
                    out_len + res.body_len - sizeof(sf_frame_hdr), 20);
    CHECK(sf_ipc_decode_response(whole + sizeof(sf_frame_hdr),
                                 out_len + res.body_len - sizeof(sf_frame_hdr),
                                 &back, &h2) == 0);
    CHECK(back.status == res.status && back.rc == res.rc);
    CHECK(same_headers(back.headers, back.header_count, res.headers,
                       res.header_count));
    CHECK(same_bytes(back.body, back.body_len, res.body, res.body_len));
    free(h2);
    free(whole);
    free(out);
    free(h);
}

static void fuzz_load(const char *p, size_t n)
{
    sf_load_msg m;
    const char *path = NULL, *env = NULL;
    char *out = NULL;
    size_t out_len;

    if (sf_ipc_decode_load(p, n, &m, &path, &env) != 0)
        return;
    check_str(p, n, path, m.path_len);
    CHECK(m.path_len > 0 && strlen(path) == m.path_len);
    CHECK((size_t)(env - p) + m.env_len == n);
    CHECK(m.env_len == 0 || env[m.env_len - 1] == '\0');
    if (sf_ipc_encode_load(&m, path, env, m.env_len, &out, &out_len) != 0) {
        /* Only a payload past the control cap may fail to re-encode. */
        CHECK(n > SF_IPC_MAX_CONTROL);
        return;
    }
    check_frame_hdr(out, n, SF_FRAME_LOAD, false);
    CHECK(out_len == sizeof(sf_frame_hdr) + n);
    CHECK(memcmp(out + sizeof(sf_frame_hdr), p, n) == 0);
    free(out);
}

static void fuzz_loaded(const char *p, size_t n)
{
    int32_t status, st2;
    const char *msg = NULL, *msg2 = NULL;
    char *out = NULL;
    size_t out_len, mlen;

    if (sf_ipc_decode_loaded(p, n, &status, &msg) != 0)
        return;
    CHECK(n >= sizeof(sf_loaded_msg) + 1 && p[n - 1] == '\0');
    check_str(p, n, msg, n - sizeof(sf_loaded_msg) - 1);
    CHECK(sf_ipc_encode_loaded(status, msg, &out, &out_len) == 0);
    mlen = strlen(msg) > 4096 ? 4096 : strlen(msg);
    check_frame_hdr(out, out_len - sizeof(sf_frame_hdr), SF_FRAME_LOADED, true);
    CHECK(sf_ipc_decode_loaded(out + sizeof(sf_frame_hdr),
                               out_len - sizeof(sf_frame_hdr), &st2,
                               &msg2) == 0);
    CHECK(st2 == status && strlen(msg2) == mlen &&
          memcmp(msg2, msg, mlen) == 0);
    free(out);
}

/* Splits d at 0xff bytes into at most max fields. */
static size_t split(const char *d, size_t n, const char **f, size_t *fl,
                    size_t max)
{
    size_t k = 0, start = 0;

    for (size_t i = 0; i <= n && k < max; i++) {
        if (i == n || (unsigned char)d[i] == 0xff) {
            f[k] = d + start;
            fl[k] = i - start;
            k++;
            start = i + 1;
        }
    }
    return k;
}

static void fuzz_roundtrip(const char *d, size_t n)
{
    const char *f[4 + 2 * 16 + 1];
    size_t fl[4 + 2 * 16 + 1], k;
    sofaas_header hs[16], *h = NULL;
    sf_invoke inv = {0}, back;
    char *out = NULL, *whole;
    size_t out_len, nh;

    k = split(d, n, f, fl, sizeof(f) / sizeof(f[0]));
    if (k < 5)
        return;
    inv.method = f[0];
    inv.method_len = fl[0];
    inv.path = f[1];
    inv.path_len = fl[1];
    inv.query = f[2];
    inv.query_len = fl[2];
    inv.request_id = f[3];
    inv.request_id_len = fl[3];
    nh = (k - 5) / 2;
    for (size_t i = 0; i < nh; i++)
        hs[i] = (sofaas_header){f[4 + 2 * i], fl[4 + 2 * i], f[5 + 2 * i],
                                fl[5 + 2 * i]};
    inv.headers = hs;
    inv.header_count = nh;
    inv.body = f[k - 1];
    inv.body_len = fl[k - 1];
    CHECK(sf_ipc_encode_invoke(&inv, 42, &out, &out_len) == 0);
    check_frame_hdr(out, out_len - sizeof(sf_frame_hdr) + inv.body_len,
                    SF_FRAME_INVOKE, false);
    whole = malloc(out_len + inv.body_len + 1);
    CHECK(whole != NULL);
    memcpy(whole, out, out_len);
    if (inv.body_len)
        memcpy(whole + out_len, inv.body, inv.body_len);
    CHECK(sf_ipc_decode_invoke(whole + sizeof(sf_frame_hdr),
                               out_len - sizeof(sf_frame_hdr) + inv.body_len,
                               &back, &h) == 0);
    CHECK(same_bytes(back.method, back.method_len, inv.method, inv.method_len));
    CHECK(same_bytes(back.path, back.path_len, inv.path, inv.path_len));
    CHECK(same_bytes(back.query, back.query_len, inv.query, inv.query_len));
    CHECK(same_bytes(back.request_id, back.request_id_len, inv.request_id,
                     inv.request_id_len));
    CHECK(same_headers(back.headers, back.header_count, hs, nh));
    CHECK(same_bytes(back.body, back.body_len, inv.body, inv.body_len));
    free(h);
    free(whole);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *p;

    if (size == 0)
        return 0;
    /* A private copy, so ASan sees any read past the payload. */
    p = malloc(size - 1 ? size - 1 : 1);
    if (p == NULL)
        return 0;
    memcpy(p, data + 1, size - 1);
    switch (data[0] % 6) {
    case 0:
        fuzz_hdr((const uint8_t *)p, size - 1);
        break;
    case 1:
        fuzz_invoke(p, size - 1);
        break;
    case 2:
        fuzz_response(p, size - 1);
        break;
    case 3:
        fuzz_load(p, size - 1);
        break;
    case 4:
        fuzz_loaded(p, size - 1);
        break;
    case 5:
        fuzz_roundtrip(p, size - 1);
        break;
    }
    free(p);
    return 0;
}
