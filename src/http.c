/*
 * http.c - connections, llhttp parsing, limits and response writing for
 * sofaasd (see http.h).
 *
 * Flow per connection: bytes are appended to conn->in; process() runs llhttp
 * over them until a message completes, at which point on_message_complete
 * pauses the parser (HPE_PAUSED) and the request is dispatched. Parsing of
 * whatever follows (pipelined requests) resumes only after that request has
 * been answered, which keeps responses in order and bounds buffering: while a
 * request is in flight we stop reading once SF_HTTP_MAX_BUFFERED bytes wait.
 *
 * Limits that can be judged from headers (body too large, auth, unknown
 * route with a body) are enforced at headers-complete, before any body byte
 * is buffered.
 */
#include "http.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <llhttp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "util.h"

#define SF_HTTP_MAX_BUFFERED (64u << 10)

struct sf_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    bool listening;        /* the listener handle is open */
    bool listener_closing; /* uv_close called, callback pending */
    bool free_pending;     /* free s once the listener has closed */
    sf_http_handlers h;
    void *ctx;
    sf_http_conn *conns; /* doubly linked list of live connections */
    unsigned nconns;
    sf_http_limits limits;
    bool draining;
    bool closing;
    uint64_t status_counts[600]; /* responses by status, for /metrics */
};

/* What the connection's one timer is measuring. */
typedef enum conn_phase {
    PHASE_IDLE,    /* between requests: keepalive_timeout closes quietly */
    PHASE_HEADERS, /* a request has begun: header_timeout answers 408 */
    PHASE_BODY,    /* headers done, body arriving: body_timeout answers 408 */
    PHASE_ACTIVE,  /* dispatched: the function's own deadline governs */
} conn_phase;

struct sf_http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    int open_handles;
    conn_phase phase;
    sf_http_server *srv;
    sf_http_conn *prev, *next;
    llhttp_t parser;
    sf_buf in;
    sf_http_req *cur;    /* being parsed */
    sf_http_req *active; /* dispatched, not yet answered */
    size_t header_bytes;
    unsigned header_count;
    int err_status; /* set by a callback that refuses the request */
    const char *err_code;
    const char *err_msg;
    unsigned writes_pending;
    bool reading;
    bool eof;
    bool in_process;
    bool close_after_write;
    bool linger;    /* after the close-write, drain input before closing */
    bool lingering;
    uv_shutdown_t shutdown_req;
    bool closing;
};

typedef struct write_req {
    uv_write_t req;
    sf_http_conn *conn;
    char *data;
} write_req;

static llhttp_settings_t settings;

static void conn_close(sf_http_conn *c);
static void start_linger(sf_http_conn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);
static void set_phase(sf_http_conn *c, conn_phase ph);
static void refuse_and_close(sf_http_conn *c, int status, const char *code,
                             const char *msg);
static void process(sf_http_conn *c);
static void start_reading(sf_http_conn *c);
static int conn_write(sf_http_conn *c, char *data, size_t len);

/* ---- request objects ---------------------------------------------------- */

static void req_free(sf_http_req *r)
{
    if (r == NULL)
        return;
    if (r->on_free != NULL)
        r->on_free(r);
    free(r->path);
    free(r->query);
    free(r->headers);
    free(r->hoff);
    sf_buf_free(&r->body);
    sf_buf_free(&r->url);
    sf_buf_free(&r->hbuf);
    free(r);
}

const sofaas_header *sf_http_header(const sf_http_req *req, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < req->header_count; i++)
        if (req->headers[i].name_len == nl &&
            strncasecmp(req->headers[i].name, name, nl) == 0)
            return &req->headers[i];
    return NULL;
}

static bool valid_request_id(const char *s, size_t len)
{
    if (len == 0 || len > 128)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
              c == ':'))
            return false;
    }
    return true;
}

/* ---- llhttp callbacks --------------------------------------------------- */

static int refuse(sf_http_conn *c, int status, const char *code,
                  const char *msg)
{
    c->err_status = status;
    c->err_code = code;
    c->err_msg = msg;
    return -1;
}

static int on_message_begin(llhttp_t *p)
{
    sf_http_conn *c = p->data;

    c->cur = calloc(1, sizeof(*c->cur));
    if (c->cur == NULL)
        return refuse(c, 503, "overloaded", "out of memory");
    c->cur->start_us = sf_mono_us();
    c->header_bytes = 0;
    c->header_count = 0;
    set_phase(c, PHASE_HEADERS);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    sf_http_conn *c = p->data;

    if (c->cur->url.len + len > SF_HTTP_MAX_URL)
        return refuse(c, 414, "uri_too_long",
                      "request target exceeds 8 KiB");
    return sf_buf_append(&c->cur->url, at, len) < 0 ? -1 : 0;
}

static int on_url_complete(llhttp_t *p)
{
    sf_http_conn *c = p->data;
    sf_http_req *r = c->cur;
    const char *u = r->url.data ? r->url.data : "";
    size_t ul = r->url.len;
    const char *q = memchr(u, '?', ul);
    size_t pl = q ? (size_t)(q - u) : ul;

    if (pl == 0 || u[0] != '/')
        return refuse(c, 400, "bad_request",
                      "request target must be an absolute path");
    r->path = strndup(u, pl);
    r->path_len = pl;
    r->query = q ? strndup(q + 1, ul - pl - 1) : strdup("");
    r->query_len = q ? ul - pl - 1 : 0;
    if (r->path == NULL || r->query == NULL)
        return refuse(c, 503, "overloaded", "out of memory");
    return 0;
}

static int header_bytes(sf_http_conn *c, size_t len)
{
    c->header_bytes += len;
    if (c->header_bytes > SF_HTTP_MAX_HEADER_BYTES)
        return refuse(c, 431, "headers_too_large",
                      "request header block exceeds 16 KiB");
    return 0;
}

/*
 * Trailer fields of a chunked body arrive through the same callbacks after
 * headers-complete has built req->headers (and set req->method): they count
 * against the header budget but are dropped, since appending them would
 * outgrow req->headers and move the bytes it points into.
 */
static bool in_trailer(const sf_http_req *r)
{
    return r->method != NULL;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    sf_http_conn *c = p->data;
    sf_http_req *r = c->cur;

    if (header_bytes(c, len) < 0)
        return -1;
    if (in_trailer(r))
        return 0;
    if (r->hoff == NULL || r->in_value ||
        r->header_count == 0) { /* a new header starts */
        if (r->header_count >= SF_HTTP_MAX_HEADERS)
            return refuse(c, 431, "headers_too_large",
                          "more than 100 request headers");
        if ((r->header_count + 1) * 4 > r->hoff_cap) {
            size_t cap = r->hoff_cap ? r->hoff_cap * 2 : 64;
            size_t *n = realloc(r->hoff, cap * sizeof(*n));
            if (n == NULL)
                return -1;
            r->hoff = n;
            r->hoff_cap = cap;
        }
        r->header_count++;
        r->in_value = false;
        r->hoff[(r->header_count - 1) * 4 + 0] = r->hbuf.len;
        r->hoff[(r->header_count - 1) * 4 + 1] = 0;
        r->hoff[(r->header_count - 1) * 4 + 2] = 0;
        r->hoff[(r->header_count - 1) * 4 + 3] = 0;
    }
    r->hoff[(r->header_count - 1) * 4 + 1] += len;
    return sf_buf_append(&r->hbuf, at, len) < 0 ? -1 : 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    sf_http_conn *c = p->data;
    sf_http_req *r = c->cur;

    if (in_trailer(r))
        return 0;
    if (sf_buf_append(&r->hbuf, "", 1) < 0)
        return -1;
    r->in_value = true;
    r->hoff[(r->header_count - 1) * 4 + 2] = r->hbuf.len;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    sf_http_conn *c = p->data;
    sf_http_req *r = c->cur;

    if (header_bytes(c, len) < 0)
        return -1;
    if (in_trailer(r))
        return 0;
    r->hoff[(r->header_count - 1) * 4 + 3] += len;
    return sf_buf_append(&r->hbuf, at, len) < 0 ? -1 : 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    sf_http_conn *c = p->data;
    sf_http_req *r = c->cur;

    if (in_trailer(r))
        return 0;
    /* A value can be empty, in which case on_header_value never ran. */
    if (!r->in_value) {
        r->in_value = true;
        r->hoff[(r->header_count - 1) * 4 + 2] = r->hbuf.len;
    }
    return sf_buf_append(&r->hbuf, "", 1) < 0 ? -1 : 0;
}

static int on_headers_complete(llhttp_t *p)
{
    sf_http_conn *c = p->data;
    sf_http_server *s = c->srv;
    sf_http_req *r = c->cur;
    const sofaas_header *rid;
    const char *code = "bad_request", *msg = "request refused";
    int st;

    r->method = llhttp_method_name((llhttp_method_t)llhttp_get_method(p));
    r->is_head = llhttp_get_method(p) == HTTP_HEAD;
    if (r->header_count > 0) {
        r->headers = calloc(r->header_count, sizeof(*r->headers));
        if (r->headers == NULL)
            return refuse(c, 503, "overloaded", "out of memory");
        for (size_t i = 0; i < r->header_count; i++) {
            size_t *o = &r->hoff[i * 4];
            r->headers[i] = (sofaas_header){.name = r->hbuf.data + o[0],
                                            .name_len = o[1],
                                            .value = r->hbuf.data + o[2],
                                            .value_len = o[3]};
        }
    }
    rid = sf_http_header(r, "X-Request-Id");
    if (rid != NULL && valid_request_id(rid->value, rid->value_len))
        memcpy(r->request_id, rid->value, rid->value_len + 1);
    else
        sf_uuid7(r->request_id);

    st = s->h.on_headers(s->ctx, r, &code, &msg);
    if (st != 0)
        return refuse(c, st, code, msg);
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > r->body_limit) {
        if (r->body_limit == 0)
            return refuse(c, 413, "payload_too_large",
                          "this route takes no request body");
        return refuse(c, 413, "payload_too_large",
                      "request body exceeds the limit for this route");
    }
    /* curl and others wait for this before sending a large body. */
    {
        const sofaas_header *ex = sf_http_header(r, "Expect");
        if (ex != NULL && ex->value_len == 12 &&
            strncasecmp(ex->value, "100-continue", 12) == 0) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            char *d = strdup(cont);
            if (d == NULL || conn_write(c, d, sizeof(cont) - 1) < 0)
                return refuse(c, 503, "overloaded", "out of memory");
        }
    }
    set_phase(c, PHASE_BODY);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    sf_http_conn *c = p->data;
    sf_http_req *r = c->cur;

    if (len > r->body_limit - r->body_seen)
        return refuse(c, 413, "payload_too_large",
                      "request body exceeds the limit for this route");
    r->body_seen += len;
    if (r->body_sink != NULL) {
        const char *code = "internal", *msg = "cannot store the body";
        int st = r->body_sink(r, at, len, &code, &msg);
        return st == 0 ? 0 : refuse(c, st, code, msg);
    }
    return sf_buf_append(&r->body, at, len) < 0 ? -1 : 0;
}

static int on_message_complete(llhttp_t *p)
{
    sf_http_conn *c = p->data;

    c->cur->keep_alive = llhttp_should_keep_alive(p) != 0;
    /* Stop here: the next pipelined request waits for this response. */
    return HPE_PAUSED;
}

/* ---- writing ------------------------------------------------------------ */

/* A write finished: ends the connection if it was the last one owed. */
static void write_done(sf_http_conn *c)
{
    if (c->close_after_write && c->writes_pending == 0 && !c->closing) {
        if (c->linger && !c->eof)
            start_linger(c);
        else
            conn_close(c);
    }
}

static void on_write(uv_write_t *w, int status)
{
    write_req *wr = (write_req *)w;
    sf_http_conn *c = wr->conn;

    free(wr->data);
    free(wr);
    c->writes_pending--;
    if (status < 0 && !c->closing) {
        conn_close(c);
        return;
    }
    write_done(c);
}

/*
 * Writes data (taken). Most responses fit the socket buffer, so it is
 * first written directly: a queued uv_write would cost an epoll_ctl per
 * response when it completes (libuv re-arms the watcher on drain). Only
 * a remainder is queued. Set close_after_write before calling: a write
 * that completes here may end the connection at once.
 */
static int conn_write(sf_http_conn *c, char *data, size_t len)
{
    write_req *wr;
    uv_buf_t b = uv_buf_init(data, (unsigned int)len);
    int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);

    if (r == (int)len) {
        free(data);
        write_done(c);
        return 0;
    }
    if (r < 0 && r != UV_EAGAIN) {
        free(data);
        return r;
    }
    if (r < 0)
        r = 0;
    wr = malloc(sizeof(*wr));
    if (wr == NULL) {
        free(data);
        return -ENOMEM;
    }
    wr->conn = c;
    wr->data = data;
    b = uv_buf_init(data + r, (unsigned int)(len - (size_t)r));
    r = uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (r < 0) {
        free(data);
        free(wr);
        return r;
    }
    c->writes_pending++;
    return 0;
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 507: return "Insufficient Storage";
    default: return "Status";
    }
}

/* Headers that describe the connection, not the response: ours to set. */
static bool hop_by_hop(const sofaas_header *h)
{
    static const char *const names[] = {
        "connection", "content-length", "transfer-encoding", "keep-alive",
        "upgrade",    "x-request-id",   "te",                "trailer"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (h->name_len == strlen(names[i]) &&
            strncasecmp(h->name, names[i], h->name_len) == 0)
            return true;
    return false;
}

static int append_str(sf_buf *out, const char *s)
{
    return sf_buf_append(out, s, strlen(s));
}

static int append_uint(sf_buf *out, uint64_t v)
{
    char d[21];

    return sf_buf_append(out, d, sf_fmt_u64(v, d));
}

/* Appends the caller's headers (minus hop-by-hop ones) and the blank line
 * that ends the header block. Returns 0 or -ENOMEM. */
static int append_headers(sf_buf *out, const sofaas_header *hdrs,
                          size_t nhdrs)
{
    int r = 0;

    for (size_t i = 0; i < nhdrs; i++) {
        if (hop_by_hop(&hdrs[i]))
            continue;
        r |= sf_buf_append(out, hdrs[i].name, hdrs[i].name_len);
        r |= sf_buf_append(out, ": ", 2);
        r |= sf_buf_append(out, hdrs[i].value, hdrs[i].value_len);
        r |= sf_buf_append(out, "\r\n", 2);
    }
    return r | sf_buf_append(out, "\r\n", 2);
}

/*
 * Serializes one response onto c. close_conn adds "Connection: close" and
 * closes once written.
 */
static void write_response(sf_http_conn *c, int status, const char *req_id,
                           bool close_conn, bool head,
                           const sofaas_header *hdrs, size_t nhdrs,
                           const void *body, size_t body_len)
{
    sf_buf out = {0};
    int r = 0;

    if (status >= 100 && status < 600)
        c->srv->status_counts[status]++;
    /* Assembled by hand: printf was a visible share of the warm path. */
    r |= sf_buf_reserve(&out, 256 + body_len);
    r |= sf_buf_append(&out, "HTTP/1.1 ", 9);
    r |= append_uint(&out, (uint64_t)status);
    r |= sf_buf_append(&out, " ", 1);
    r |= append_str(&out, reason(status));
    r |= append_str(&out, "\r\nServer: sofaas\r\nContent-Length: ");
    r |= append_uint(&out, body_len);
    r |= append_str(&out, "\r\nX-Request-Id: ");
    r |= append_str(&out, req_id);
    r |= append_str(&out, close_conn ? "\r\nConnection: close\r\n" : "\r\n");
    r |= append_headers(&out, hdrs, nhdrs);
    if (!head)
        r |= sf_buf_append(&out, body, body_len);
    if (r != 0) {
        sf_buf_free(&out);
        conn_close(c);
        return;
    }
    if (close_conn)
        c->close_after_write = true;
    if (conn_write(c, out.data, out.len) < 0)
        conn_close(c);
}

static char *error_json(const char *code, const char *message)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(root, "error");
    char *s;

    cJSON_AddStringToObject(err, "code", code);
    cJSON_AddStringToObject(err, "message", message);
    s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static const sofaas_header json_ct = {"Content-Type", 12, "application/json",
                                      16};

/* Answers a request that never reached the API layer, then closes. */
static void refuse_and_close(sf_http_conn *c, int status, const char *code,
                             const char *msg)
{
    char rid[37];
    const char *id = rid;
    char *body = error_json(code, msg);

    if (c->cur != NULL && c->cur->request_id[0] != '\0')
        id = c->cur->request_id;
    else
        sf_uuid7(rid);
    /* The client may still be sending (a refused body): read and drop its
     * bytes for a moment after our answer, or closing with unread data
     * would reset the connection before the client reads the answer. */
    c->linger = true;
    SF_INFO("msg=\"request refused\" request_id=%s status=%d code=%s "
            "reason=\"%s\"",
            id, status, code, msg);
    if (body != NULL)
        write_response(c, status, id, true, false, &json_ct, 1, body,
                       strlen(body));
    else
        conn_close(c);
    free(body);
}

void sf_http_respond(sf_http_req *req, int status, const sofaas_header *hdrs,
                     size_t nhdrs, const void *body, size_t body_len)
{
    sf_http_conn *c = req->conn;

    if (c == NULL || c->closing) { /* the client has gone */
        req_free(req);
        return;
    }
    /* A client that half-closed after pipelining still gets an answer to
     * every complete request it sent: EOF ends the connection only once
     * nothing is left to parse. */
    write_response(c, status, req->request_id,
                   !req->keep_alive || (c->eof && c->in.len == 0) ||
                       c->srv->closing || c->srv->draining,
                   req->is_head,
                   hdrs, nhdrs, body, body_len);
    c->active = NULL;
    req_free(req);
    if (!c->closing)
        set_phase(c, c->cur != NULL ? PHASE_HEADERS : PHASE_IDLE);
    if (!c->closing && !c->in_process)
        process(c);
}

void sf_http_json(sf_http_req *req, int status, const char *json)
{
    sf_http_respond(req, status, &json_ct, 1, json, strlen(json));
}

static void verror(sf_http_req *req, int status, const sofaas_header *extra,
                   size_t nextra, const char *code, const char *fmt,
                   va_list ap)
{
    sofaas_header h[8];
    char msg[1024];
    char *body;
    size_t n = 0;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    body = error_json(code, msg);
    if (status >= 500)
        SF_WARN("msg=\"request failed\" request_id=%s status=%d code=%s "
                "reason=\"%s\"",
                req->request_id, status, code, msg);
    else
        SF_DEBUG("msg=\"request refused\" request_id=%s status=%d code=%s "
                 "reason=\"%s\"",
                 req->request_id, status, code, msg);
    h[n++] = json_ct;
    for (size_t i = 0; i < nextra && n < sizeof(h) / sizeof(h[0]); i++)
        h[n++] = extra[i];
    body = body ? body : strdup("{}");
    sf_http_respond(req, status, h, n, body, body ? strlen(body) : 0);
    free(body);
}

void sf_http_error(sf_http_req *req, int status, const char *code,
                   const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    verror(req, status, NULL, 0, code, fmt, ap);
    va_end(ap);
}

void sf_http_error_hdrs(sf_http_req *req, int status,
                        const sofaas_header *hdrs, size_t nhdrs,
                        const char *code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    verror(req, status, hdrs, nhdrs, code, fmt, ap);
    va_end(ap);
}

/* ---- streaming ---------------------------------------------------------- */

int sf_http_stream_begin(sf_http_req *req, int status,
                         const sofaas_header *hdrs, size_t nhdrs,
                         void (*gone)(void *ctx), void *ctx)
{
    sf_http_conn *c = req->conn;
    sf_buf out = {0};
    int r = 0;

    req->streaming = true;
    if (c == NULL || c->closing)
        return -EPIPE;
    if (status >= 100 && status < 600)
        c->srv->status_counts[status]++;
    r |= sf_buf_printf(&out,
                       "HTTP/1.1 %d %s\r\nServer: sofaas\r\n"
                       "Transfer-Encoding: chunked\r\nX-Request-Id: %s\r\n"
                       "%s",
                       status, reason(status), req->request_id,
                       !req->keep_alive || c->srv->closing ||
                               c->srv->draining
                           ? "Connection: close\r\n"
                           : "");
    r |= append_headers(&out, hdrs, nhdrs);
    if (r != 0 || conn_write(c, out.data, out.len) < 0) {
        if (r != 0)
            sf_buf_free(&out);
        conn_close(c); /* req->gone is not set yet: not called */
        return -EPIPE;
    }
    req->gone = gone;
    req->gone_ctx = ctx;
    return 0;
}

int sf_http_stream_write(sf_http_req *req, const void *data, size_t len)
{
    sf_http_conn *c = req->conn;
    sf_buf out = {0};

    if (c == NULL || c->closing)
        return -EPIPE;
    if (len == 0)
        return 0;
    /* A client that stops reading must not pin unbounded memory. */
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) >
        SF_HTTP_MAX_STREAM_BACKLOG) {
        SF_INFO("msg=\"stream client too slow, closing\" request_id=%s "
                "backlog_bytes=%zu",
                req->request_id,
                uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp));
        conn_close(c);
        return -EPIPE;
    }
    if (sf_buf_printf(&out, "%zx\r\n", len) < 0 ||
        sf_buf_append(&out, data, len) < 0 ||
        sf_buf_append(&out, "\r\n", 2) < 0) {
        sf_buf_free(&out);
        conn_close(c);
        return -ENOMEM;
    }
    if (conn_write(c, out.data, out.len) < 0) {
        conn_close(c);
        return -EPIPE;
    }
    return 0;
}

void sf_http_stream_end(sf_http_req *req)
{
    sf_http_conn *c = req->conn;

    req->gone = NULL;
    if (c == NULL || c->closing) {
        req_free(req);
        return;
    }
    if (!req->keep_alive || c->eof || c->srv->closing || c->srv->draining)
        c->close_after_write = true;
    {
        char *d = strdup("0\r\n\r\n");
        if (d == NULL || conn_write(c, d, 5) < 0) {
            c->active = NULL;
            req_free(req);
            conn_close(c);
            return;
        }
    }
    c->active = NULL;
    req_free(req);
    if (!c->closing)
        set_phase(c, c->cur != NULL ? PHASE_HEADERS : PHASE_IDLE);
    if (!c->closing && !c->in_process)
        process(c);
}

void sf_http_server_status_counts(const sf_http_server *s,
                                  const uint64_t **counts, size_t *n)
{
    *counts = s->status_counts;
    *n = sizeof(s->status_counts) / sizeof(s->status_counts[0]);
}

/* ---- connection lifecycle ----------------------------------------------- */

static void process(sf_http_conn *c)
{
    if (c->srv->draining && c->active == NULL) {
        if (c->writes_pending == 0)
            conn_close(c);
        else
            c->close_after_write = true;
        return;
    }
    c->in_process = true;
    while (!c->closing && c->active == NULL && c->in.len > 0) {
        const char *data = c->in.data;
        llhttp_errno_t e;

        if (c->close_after_write) {
            /* The response being written ends the connection (e.g. the
             * request said Connection: close): what follows is never
             * parsed, only drained until the close. */
            sf_buf_consume(&c->in, c->in.len);
            break;
        }
        e = llhttp_execute(&c->parser, data, c->in.len);

        if (e == HPE_OK) {
            sf_buf_consume(&c->in, c->in.len);
            break;
        }
        if (e == HPE_PAUSED) {
            sf_http_req *r = c->cur;
            sf_buf_consume(&c->in,
                           (size_t)(llhttp_get_error_pos(&c->parser) - data));
            llhttp_resume(&c->parser);
            c->cur = NULL;
            c->active = r;
            r->conn = c;
            set_phase(c, PHASE_ACTIVE);
            c->srv->h.on_request(c->srv->ctx, r);
            continue;
        }
        if (c->err_status != 0)
            refuse_and_close(c, c->err_status, c->err_code, c->err_msg);
        else
            refuse_and_close(c, 400, "bad_request",
                             llhttp_get_error_reason(&c->parser));
        break;
    }
    c->in_process = false;
    if (c->closing)
        return;
    if (c->eof && c->active == NULL && c->writes_pending == 0) {
        conn_close(c);
        return;
    }
    if (c->eof && c->active == NULL)
        c->close_after_write = true;
    if (!c->eof && c->in.len < SF_HTTP_MAX_BUFFERED)
        start_reading(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    sf_http_conn *c = h->data;

    (void)suggested;
    if (sf_buf_reserve(&c->in, 64u << 10) < 0) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init(c->in.data + c->in.len,
                       (unsigned int)(c->in.cap - c->in.len));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    sf_http_conn *c = st->data;

    (void)buf;
    if (c->lingering) {
        if (n < 0)
            conn_close(c);
        return; /* bytes after a refusal are dropped unread */
    }
    if (n < 0) {
        uv_read_stop(st);
        c->reading = false;
        if (n != UV_EOF || c->closing) {
            conn_close(c);
            return;
        }
        c->eof = true;
        /* A streamed response lasts while the client stays. */
        if (c->active != NULL && c->active->streaming) {
            conn_close(c);
            return;
        }
        /* A partial request at EOF can never complete. */
        if (c->active == NULL && c->in.len == 0 && c->writes_pending == 0) {
            conn_close(c);
            return;
        }
        if (c->active == NULL)
            process(c);
        if (!c->closing && c->active == NULL && c->writes_pending == 0)
            conn_close(c);
        return;
    }
    c->in.len += (size_t)n;
    if (c->active == NULL) {
        process(c);
    } else if (c->in.len >= SF_HTTP_MAX_BUFFERED) {
        uv_read_stop(st); /* backpressure until the response is out */
        c->reading = false;
    }
}

static void start_reading(sf_http_conn *c)
{
    if (c->reading || c->closing || c->eof)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
}

static void on_conn_closed(uv_handle_t *h)
{
    sf_http_conn *c = h->data;

    if (--c->open_handles > 0)
        return;
    req_free(c->cur);
    sf_buf_free(&c->in);
    free(c);
}

static void conn_close(sf_http_conn *c)
{
    sf_http_server *s = c->srv;

    if (c->closing)
        return;
    c->closing = true;
    if (c->active != NULL) {
        sf_http_req *a = c->active;
        a->conn = NULL; /* the API layer still owns it */
        c->active = NULL;
        if (a->streaming && a->gone != NULL) {
            void (*gone)(void *) = a->gone;
            a->gone = NULL;
            gone(a->gone_ctx); /* may free a through sf_http_stream_end */
        }
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status; /* the linger timer or EOF ends the connection */
}

static void on_linger_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

/* Half-closes, then drops input until EOF or a 2 s deadline. */
static void start_linger(sf_http_conn *c)
{
    c->lingering = true;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) <
        0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_linger_timeout, 2000, 0);
    c->in.len = 0;
    if (!c->reading &&
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
}

static void on_conn_timer(uv_timer_t *t)
{
    sf_http_conn *c = t->data;

    switch (c->phase) {
    case PHASE_IDLE:
        SF_DEBUG("msg=\"closing idle keep-alive connection\"");
        conn_close(c);
        break;
    case PHASE_HEADERS:
    case PHASE_BODY:
        /* Stop reading before the answer: once written it starts the
         * linger, which reads again (maybe at once, inside the call). */
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
        refuse_and_close(c, 408, "request_timeout",
                         c->phase == PHASE_HEADERS
                             ? "request headers not received in time"
                             : "request body not received in time");
        break;
    case PHASE_ACTIVE:
        break;
    }
}

/* Moves the connection to a phase and (re)arms its timer for it. */
static void set_phase(sf_http_conn *c, conn_phase ph)
{
    const sf_http_limits *l = &c->srv->limits;
    unsigned ms = 0;

    if (c->phase == ph && ph != PHASE_IDLE)
        return; /* deadlines run from the start of a phase */
    c->phase = ph;
    switch (ph) {
    case PHASE_IDLE:
        ms = l->keepalive_timeout_ms;
        break;
    case PHASE_HEADERS:
        ms = l->header_timeout_ms;
        break;
    case PHASE_BODY:
        ms = l->body_timeout_ms;
        break;
    case PHASE_ACTIVE:
        uv_timer_stop(&c->timer);
        return;
    }
    uv_timer_start(&c->timer, on_conn_timer, ms, 0);
}

static void on_connection(uv_stream_t *ls, int status)
{
    sf_http_server *s = ls->data;
    sf_http_conn *c;

    if (status < 0) {
        SF_WARN("msg=\"accept failed\" error=%s", uv_strerror(status));
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->timer, on_conn_closed);
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    if (s->nconns > s->limits.max_connections) {
        /* Refuse cleanly: a reason the client can read, then close. */
        SF_WARN("msg=\"connection limit reached, refusing\" "
                "max_connections=%u hint=\"raise http.max_connections or "
                "add capacity\"",
                s->limits.max_connections);
        refuse_and_close(c, 503, "overloaded",
                         "too many connections; retry later");
        return;
    }
    /* A new connection must produce a request line within the header
     * timeout, or it is a slowloris. */
    c->phase = PHASE_IDLE;
    set_phase(c, PHASE_HEADERS);
    start_reading(c);
}

sf_http_server *sf_http_server_new(uv_loop_t *loop, const sf_http_handlers *h,
                                   void *ctx)
{
    sf_http_server *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_url_complete = on_url_complete;
    settings.on_header_field = on_header_field;
    settings.on_header_field_complete = on_header_field_complete;
    settings.on_header_value = on_header_value;
    settings.on_header_value_complete = on_header_value_complete;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
    s->loop = loop;
    s->h = *h;
    s->ctx = ctx;
    sf_http_server_set_limits(s, &(sf_http_limits){0});
    return s;
}

void sf_http_server_set_limits(sf_http_server *s, const sf_http_limits *l)
{
    s->limits.header_timeout_ms =
        l->header_timeout_ms ? l->header_timeout_ms : 10000;
    s->limits.body_timeout_ms = l->body_timeout_ms ? l->body_timeout_ms : 30000;
    s->limits.keepalive_timeout_ms =
        l->keepalive_timeout_ms ? l->keepalive_timeout_ms : 15000;
    s->limits.max_connections =
        l->max_connections ? l->max_connections : 10000;
}

unsigned sf_http_server_connections(const sf_http_server *s)
{
    return s->nconns;
}

/* Listens on the bound or adopted listener; reports the port it has. */
static int start_listening(sf_http_server *s, int *bound_port)
{
    struct sockaddr_storage got;
    int len = sizeof(got);
    int r = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection);

    if (r < 0)
        return r;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&got, &len);
    *bound_port = got.ss_family == AF_INET6
                      ? ntohs(((struct sockaddr_in6 *)&got)->sin6_port)
                      : ntohs(((struct sockaddr_in *)&got)->sin_port);
    return 0;
}

int sf_http_server_listen(sf_http_server *s, const char *host, int port,
                          int *bound_port)
{
    struct sockaddr_storage ss;
    int r;

    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
        return UV_EINVAL;
    r = uv_tcp_init(s->loop, &s->listener);
    if (r < 0)
        return r;
    s->listener.data = s;
    s->listening = true;
    r = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0);
    return r < 0 ? r : start_listening(s, bound_port);
}

int sf_http_server_listen_fd(sf_http_server *s, int fd, int *bound_port)
{
    int r;

    r = uv_tcp_init(s->loop, &s->listener);
    if (r < 0)
        return r;
    s->listener.data = s;
    s->listening = true;
    r = uv_tcp_open(&s->listener, fd);
    return r < 0 ? r : start_listening(s, bound_port);
}

static void on_listener_closed(uv_handle_t *h)
{
    sf_http_server *s = h->data;

    s->listener_closing = false;
    if (s->free_pending)
        free(s);
}

static void close_listener(sf_http_server *s)
{
    if (!s->listening)
        return;
    s->listening = false;
    s->listener_closing = true;
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
}

void sf_http_server_drain(sf_http_server *s)
{
    if (s == NULL || s->draining)
        return;
    s->draining = true;
    close_listener(s);
    for (sf_http_conn *c = s->conns, *next; c != NULL; c = next) {
        next = c->next;
        /* A streamed response (a followed log) never ends by itself: end
         * it now, cleanly, through its owner (which calls stream_end). */
        if (c->active != NULL && c->active->streaming &&
            c->active->gone != NULL) {
            sf_http_req *a = c->active;
            void (*gone)(void *) = a->gone;
            a->gone = NULL;
            gone(a->gone_ctx);
            continue;
        }
        if (c->active == NULL && c->writes_pending == 0)
            conn_close(c);
        else if (c->active == NULL)
            c->close_after_write = true;
    }
}

void sf_http_server_close(sf_http_server *s)
{
    if (s == NULL)
        return;
    s->closing = true;
    while (s->conns != NULL)
        conn_close(s->conns);
    close_listener(s);
    if (s->listener_closing)
        s->free_pending = true; /* on_listener_closed frees */
    else
        free(s);
}
