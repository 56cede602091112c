/*
 * ipc.c - encoding and decoding of the frames defined in ipc.h.
 *
 * Decoders treat the payload as hostile: every length is checked against the
 * bytes actually present (without integer overflow) and every string must be
 * followed by the NUL the encoder writes, so the worker can hand pointers into
 * the payload straight to user code.
 */
#include "ipc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

typedef struct invoke_meta {
    uint32_t method_len, path_len, query_len, reqid_len;
    uint32_t header_count, headers_len, body_len, reserved;
} invoke_meta;
_Static_assert(sizeof(invoke_meta) == 32, "invoke meta layout");

typedef struct response_meta {
    int32_t status, rc;
    uint32_t header_count, headers_len, body_len, reserved;
} response_meta;
_Static_assert(sizeof(response_meta) == 24, "response meta layout");

int sf_ipc_check_hdr(const sf_frame_hdr *h, bool from_worker)
{
    size_t cap;

    switch (h->type) {
    case SF_FRAME_HELLO:
    case SF_FRAME_LOADED:
    case SF_FRAME_VIOLATION:
    case SF_FRAME_FORKED:
    case SF_FRAME_SPARE:
        if (!from_worker)
            return -EPROTO;
        cap = SF_IPC_MAX_CONTROL;
        break;
    case SF_FRAME_RESPONSE:
        if (!from_worker)
            return -EPROTO;
        cap = SF_IPC_MAX_RESPONSE;
        break;
    case SF_FRAME_LOAD:
    case SF_FRAME_FORK:
        if (from_worker)
            return -EPROTO;
        cap = SF_IPC_MAX_CONTROL;
        break;
    case SF_FRAME_INVOKE:
        if (from_worker)
            return -EPROTO;
        cap = SF_IPC_MAX_INVOKE;
        break;
    default:
        return -EPROTO;
    }
    return h->len > cap ? -EMSGSIZE : 0;
}

/* Cursor over a payload being decoded. */
typedef struct cursor {
    const char *p;
    size_t left;
} cursor;

static int take(cursor *c, size_t n, const char **out)
{
    if (n > c->left)
        return -EPROTO;
    *out = c->p;
    c->p += n;
    c->left -= n;
    return 0;
}

/* A string of len bytes followed by a NUL. */
static int take_str(cursor *c, size_t len, const char **out)
{
    const char *s;

    if (len == SIZE_MAX || take(c, len + 1, &s) < 0 || s[len] != '\0')
        return -EPROTO;
    *out = s;
    return 0;
}

static size_t headers_size(const sofaas_header *h, size_t n)
{
    size_t sz = 0;
    for (size_t i = 0; i < n; i++)
        sz += 8 + h[i].name_len + 1 + h[i].value_len + 1;
    return sz;
}

static char *put(char *p, const void *src, size_t n)
{
    if (n > 0)
        memcpy(p, src, n);
    return p + n;
}

static char *put_str(char *p, const char *s, size_t n)
{
    p = put(p, s, n);
    *p++ = '\0';
    return p;
}

static char *put_headers(char *p, const sofaas_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t l[2] = {(uint32_t)h[i].name_len, (uint32_t)h[i].value_len};
        p = put(p, l, sizeof(l));
        p = put_str(p, h[i].name, h[i].name_len);
        p = put_str(p, h[i].value, h[i].value_len);
    }
    return p;
}

static int take_headers(cursor *c, size_t count, size_t bytes,
                        sofaas_header **out)
{
    const char *sec;
    cursor hc;
    sofaas_header *h = NULL;

    *out = NULL;
    if (count > SF_IPC_MAX_HEADERS || take(c, bytes, &sec) < 0)
        return -EPROTO;
    if (count == 0)
        return bytes == 0 ? 0 : -EPROTO;
    h = calloc(count, sizeof(*h));
    if (h == NULL)
        return -ENOMEM;
    hc.p = sec;
    hc.left = bytes;
    for (size_t i = 0; i < count; i++) {
        const char *lp;
        uint32_t l[2];
        if (take(&hc, sizeof(l), &lp) < 0)
            goto bad;
        memcpy(l, lp, sizeof(l));
        h[i].name_len = l[0];
        h[i].value_len = l[1];
        if (take_str(&hc, l[0], &h[i].name) < 0 ||
            take_str(&hc, l[1], &h[i].value) < 0)
            goto bad;
    }
    if (hc.left != 0)
        goto bad;
    *out = h;
    return 0;
bad:
    free(h);
    return -EPROTO;
}

int sf_ipc_encode_invoke(const sf_invoke *inv, uint64_t id, char **out,
                         size_t *out_len)
{
    invoke_meta m = {0};
    sf_frame_hdr fh = {0};
    size_t hlen = headers_size(inv->headers, inv->header_count);
    size_t meta_len = sizeof(m) + inv->method_len + 1 + inv->path_len + 1 +
                      inv->query_len + 1 + inv->request_id_len + 1 + hlen;
    char *buf, *p;

    if (inv->header_count > SF_IPC_MAX_HEADERS ||
        meta_len + inv->body_len > SF_IPC_MAX_INVOKE)
        return -EMSGSIZE;
    m.method_len = (uint32_t)inv->method_len;
    m.path_len = (uint32_t)inv->path_len;
    m.query_len = (uint32_t)inv->query_len;
    m.reqid_len = (uint32_t)inv->request_id_len;
    m.header_count = (uint32_t)inv->header_count;
    m.headers_len = (uint32_t)hlen;
    m.body_len = (uint32_t)inv->body_len;
    fh.len = (uint32_t)(meta_len + inv->body_len);
    fh.type = SF_FRAME_INVOKE;
    fh.id = id;

    buf = malloc(sizeof(fh) + meta_len);
    if (buf == NULL)
        return -ENOMEM;
    p = put(buf, &fh, sizeof(fh));
    p = put(p, &m, sizeof(m));
    p = put_str(p, inv->method, inv->method_len);
    p = put_str(p, inv->path, inv->path_len);
    p = put_str(p, inv->query, inv->query_len);
    p = put_str(p, inv->request_id, inv->request_id_len);
    p = put_headers(p, inv->headers, inv->header_count);
    *out = buf;
    *out_len = (size_t)(p - buf);
    return 0;
}

int sf_ipc_decode_invoke(const char *payload, size_t len, sf_invoke *inv,
                         sofaas_header **hdrs)
{
    cursor c = {payload, len};
    invoke_meta m;
    const char *mp;
    int r;

    *hdrs = NULL;
    if (take(&c, sizeof(m), &mp) < 0)
        return -EPROTO;
    memcpy(&m, mp, sizeof(m));
    memset(inv, 0, sizeof(*inv));
    if (take_str(&c, m.method_len, &inv->method) < 0 ||
        take_str(&c, m.path_len, &inv->path) < 0 ||
        take_str(&c, m.query_len, &inv->query) < 0 ||
        take_str(&c, m.reqid_len, &inv->request_id) < 0)
        return -EPROTO;
    inv->method_len = m.method_len;
    inv->path_len = m.path_len;
    inv->query_len = m.query_len;
    inv->request_id_len = m.reqid_len;
    r = take_headers(&c, m.header_count, m.headers_len, hdrs);
    if (r < 0)
        return r;
    inv->headers = *hdrs;
    inv->header_count = m.header_count;
    if (c.left != m.body_len) {
        free(*hdrs);
        *hdrs = NULL;
        return -EPROTO;
    }
    inv->body = m.body_len ? c.p : NULL;
    inv->body_len = m.body_len;
    return 0;
}

int sf_ipc_encode_response(const sf_response *res, uint64_t id, char **out,
                           size_t *out_len)
{
    response_meta m = {0};
    sf_frame_hdr fh = {0};
    size_t hlen = headers_size(res->headers, res->header_count);
    size_t meta_len = sizeof(m) + hlen;
    char *buf, *p;

    if (res->header_count > SF_IPC_MAX_HEADERS ||
        meta_len + res->body_len > SF_IPC_MAX_RESPONSE)
        return -EMSGSIZE;
    m.status = res->status;
    m.rc = res->rc;
    m.header_count = (uint32_t)res->header_count;
    m.headers_len = (uint32_t)hlen;
    m.body_len = (uint32_t)res->body_len;
    fh.len = (uint32_t)(meta_len + res->body_len);
    fh.type = SF_FRAME_RESPONSE;
    fh.id = id;

    buf = malloc(sizeof(fh) + meta_len);
    if (buf == NULL)
        return -ENOMEM;
    p = put(buf, &fh, sizeof(fh));
    p = put(p, &m, sizeof(m));
    p = put_headers(p, res->headers, res->header_count);
    *out = buf;
    *out_len = (size_t)(p - buf);
    return 0;
}

int sf_ipc_decode_response(const char *payload, size_t len, sf_response *res,
                           sofaas_header **hdrs)
{
    cursor c = {payload, len};
    response_meta m;
    const char *mp;
    int r;

    *hdrs = NULL;
    if (take(&c, sizeof(m), &mp) < 0)
        return -EPROTO;
    memcpy(&m, mp, sizeof(m));
    memset(res, 0, sizeof(*res));
    r = take_headers(&c, m.header_count, m.headers_len, hdrs);
    if (r < 0)
        return r;
    if (c.left != m.body_len) {
        free(*hdrs);
        *hdrs = NULL;
        return -EPROTO;
    }
    res->status = m.status;
    res->rc = m.rc;
    res->headers = *hdrs;
    res->header_count = m.header_count;
    res->body = m.body_len ? c.p : NULL;
    res->body_len = m.body_len;
    return 0;
}

int sf_ipc_encode_load(const sf_load_msg *m, const char *path,
                       const char *env, size_t env_len, char **out,
                       size_t *out_len)
{
    sf_frame_hdr fh = {0};
    sf_load_msg mm = *m;
    size_t plen = strlen(path);
    size_t len = sizeof(mm) + plen + 1 + env_len;
    char *buf, *p;

    if (len > SF_IPC_MAX_CONTROL)
        return -EMSGSIZE;
    mm.path_len = (uint32_t)plen;
    mm.env_len = (uint32_t)env_len;
    fh.len = (uint32_t)len;
    fh.type = SF_FRAME_LOAD;
    buf = malloc(sizeof(fh) + len);
    if (buf == NULL)
        return -ENOMEM;
    p = put(buf, &fh, sizeof(fh));
    p = put(p, &mm, sizeof(mm));
    p = put_str(p, path, plen);
    p = put(p, env, env_len);
    *out = buf;
    *out_len = (size_t)(p - buf);
    return 0;
}

int sf_ipc_decode_load(const char *payload, size_t len, sf_load_msg *m,
                       const char **path, const char **env)
{
    cursor c = {payload, len};
    const char *mp;

    if (take(&c, sizeof(*m), &mp) < 0)
        return -EPROTO;
    memcpy(m, mp, sizeof(*m));
    if (m->path_len == 0 || take_str(&c, m->path_len, path) < 0 ||
        strlen(*path) != m->path_len)
        return -EPROTO;
    if (c.left != m->env_len)
        return -EPROTO;
    /* The env block is a sequence of NUL-terminated "K=V" strings. */
    if (m->env_len > 0 && c.p[m->env_len - 1] != '\0')
        return -EPROTO;
    *env = c.p;
    return 0;
}

int sf_ipc_encode_loaded(int32_t status, const char *msg, char **out,
                         size_t *out_len)
{
    sf_frame_hdr fh = {0};
    sf_loaded_msg m = {status, 0};
    size_t mlen = msg ? strlen(msg) : 0;
    char *buf, *p;

    if (mlen > 4096)
        mlen = 4096;
    m.msg_len = (uint32_t)mlen;
    fh.len = (uint32_t)(sizeof(m) + mlen + 1);
    fh.type = SF_FRAME_LOADED;
    buf = malloc(sizeof(fh) + fh.len);
    if (buf == NULL)
        return -ENOMEM;
    p = put(buf, &fh, sizeof(fh));
    p = put(p, &m, sizeof(m));
    p = put_str(p, msg ? msg : "", mlen);
    *out = buf;
    *out_len = (size_t)(p - buf);
    return 0;
}

int sf_ipc_decode_loaded(const char *payload, size_t len, int32_t *status,
                         const char **msg)
{
    cursor c = {payload, len};
    sf_loaded_msg m;
    const char *mp;

    if (take(&c, sizeof(m), &mp) < 0)
        return -EPROTO;
    memcpy(&m, mp, sizeof(m));
    if (take_str(&c, m.msg_len, msg) < 0 || c.left != 0)
        return -EPROTO;
    *status = m.status;
    return 0;
}

long sf_ipc_send_fds(int sock, struct iovec *iov, int iovcnt, const int *fds,
                     int nfds, int flags)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(SF_IPC_MAX_FDS * sizeof(int))];
    } cm;
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
    ssize_t n;

    if (nfds < 0 || nfds > SF_IPC_MAX_FDS)
        return -EINVAL;
    if (nfds > 0) {
        struct cmsghdr *c;
        memset(&cm, 0, sizeof(cm));
        msg.msg_control = cm.buf;
        msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    }
    do
        n = sendmsg(sock, &msg, MSG_NOSIGNAL | flags);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : (long)n;
}

