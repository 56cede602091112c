/*
 * fuzz_http.c - libFuzzer target for the HTTP connection layer (src/http.c):
 * hostile bytes in, our request objects, limits and responses out.
 *
 * The file under test is #included (as the unit tests do) so the harness
 * can drive a real connection exactly the way libuv does, with no seam in
 * http.c: a real listener accepts a real loopback TCP connection, then the
 * input is delivered through http.c's own on_alloc/on_read callbacks in
 * chunks the input chooses (only while the connection is reading, as libuv
 * would), followed by EOF. Responses are written by http.c through uv_write
 * to the socket and read back by the harness. Stub handlers stand in for
 * the API layer: they route with the real router, set body limits like
 * api.c, stream deploy bodies through a body sink, refuse on request
 * (X-Fuzz-Refuse, X-Fuzz-Sink-Fail), and answer either at once (inside
 * on_request) or later (after the next chunk), which exercises pipelining,
 * buffering while a request is in flight, and EOF with a request outstanding.
 *
 * Input format: byte 0 selects the delivery (bits 0-2: chunk size, bit 3:
 * deferred answers); the rest are the bytes the client sends. Seeds in
 * corpus/http/ start with '0' (whole input at once, immediate answers).
 *
 * Checked on every input (any failure aborts, which libFuzzer reports):
 *  - each dispatched request is well-formed: absolute path, NUL-terminated
 *    strings whose lengths match, at most SF_HTTP_MAX_HEADERS headers, a
 *    body no larger than the limit on_headers set, a valid request id;
 *  - the output is a sequence of valid HTTP/1.1 responses: one per
 *    dispatched request, in order (matched by X-Request-Id), then at most
 *    one refusal from http.c itself, which must be last, carry
 *    "Connection: close" and a documented status, and have a JSON error
 *    body; no response follows one marked "Connection: close";
 *  - after EOF the connection is closed and all its memory freed (ASan's
 *    leak checker runs at exit and libFuzzer's -detect_leaks per input).
 */
#include "http.c"

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_REQS 4096

static uv_loop_t loop;
static sf_http_server *srv;
static int port;

/* Per-input state. */
static struct {
    sf_http_req *pending; /* deferred answer (at most one in flight) */
    bool defer;
    unsigned nreq;
    char ids[MAX_REQS][129];
    bool head[MAX_REQS];
    sf_buf out; /* bytes the server wrote */
} st;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_http: check failed at line %d: %s\n",        \
                    __LINE__, #cond);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* ---- stub API layer ----------------------------------------------------- */

/*
 * Deploys stream their body through a sink, as api.c does: the stub counts
 * the bytes in req->user (freed by on_free, so a request http.c forgets to
 * free shows up as a leak) and refuses mid-body when asked to.
 */
static int stub_sink(sf_http_req *req, const char *data, size_t len,
                     const char **code, const char **message)
{
    size_t *seen = req->user;

    (void)data;
    *seen += len;
    CHECK(*seen == req->body_seen && *seen <= req->body_limit);
    if (sf_http_header(req, "X-Fuzz-Sink-Fail") != NULL) {
        *code = "insufficient_storage";
        *message = "refused by the fuzz stub's body sink";
        return 507;
    }
    return 0;
}

static void stub_free(sf_http_req *req)
{
    free(req->user);
    req->user = NULL;
}

static int stub_on_headers(void *ctx, sf_http_req *req, const char **code,
                           const char **message)
{
    (void)ctx;
    CHECK(req->method != NULL && req->path != NULL);
    sf_router_match(req->method, req->path, req->path_len, &req->route);
    if (sf_http_header(req, "X-Fuzz-Refuse") != NULL) {
        *code = "unauthorized";
        *message = "refused by the fuzz stub";
        return 401;
    }
    switch (req->route.id) {
    case SF_ROUTE_FN_DEPLOY:
        req->body_limit = 4096;
        req->user = calloc(1, sizeof(size_t));
        CHECK(req->user != NULL);
        req->body_sink = stub_sink;
        req->on_free = stub_free;
        break;
    case SF_ROUTE_INVOKE:
        req->body_limit = 1024;
        break;
    case SF_ROUTE_FN_PATCH:
        req->body_limit = 64;
        break;
    default:
        req->body_limit = 0;
        break;
    }
    return 0;
}

static void check_request(const sf_http_req *r)
{
    CHECK(r->conn != NULL);
    CHECK(r->path_len > 0 && r->path[0] == '/');
    CHECK(strlen(r->path) == r->path_len);
    CHECK(strlen(r->query) == r->query_len);
    CHECK(r->path_len + r->query_len <= SF_HTTP_MAX_URL);
    CHECK(r->header_count <= SF_HTTP_MAX_HEADERS);
    for (size_t i = 0; i < r->header_count; i++) {
        const sofaas_header *h = &r->headers[i];
        CHECK(h->name[h->name_len] == '\0');
        CHECK(h->value[h->value_len] == '\0');
    }
    CHECK(r->body.len <= r->body_limit);
    if (r->body_sink != NULL) /* streamed: nothing buffered, all counted */
        CHECK(r->body.len == 0 && *(size_t *)r->user == r->body_seen);
    else
        CHECK(r->body.len == r->body_seen);
    CHECK(valid_request_id(r->request_id, strlen(r->request_id)));
}

static void answer(sf_http_req *r)
{
    char body[64];
    int n;

    if (r->route.id == SF_ROUTE_NONE) {
        sf_http_error(r, r->route.miss_status, "not_found", "no such route");
        return;
    }
    n = snprintf(body, sizeof(body), "%s %zu", r->method, r->body.len);
    sf_http_respond(r, 200, NULL, 0, body, (size_t)n);
}

static void stub_on_request(void *ctx, sf_http_req *req)
{
    (void)ctx;
    check_request(req);
    CHECK(st.pending == NULL);
    CHECK(st.nreq < MAX_REQS);
    memcpy(st.ids[st.nreq], req->request_id, sizeof(req->request_id));
    st.head[st.nreq] = req->is_head;
    st.nreq++;
    if (st.defer)
        st.pending = req;
    else
        answer(req);
}

static const sf_http_handlers stub = {stub_on_headers, stub_on_request};

/* ---- checking the output ------------------------------------------------ */

typedef struct resp_check {
    unsigned n;     /* final responses seen */
    unsigned extra; /* responses beyond the dispatched requests */
    bool closed;    /* a response said Connection: close */
    bool in_msg;    /* inside a response */
    bool is_close;  /* current one does */
    sf_buf hname, hval, rid, body;
} resp_check;

static int r_on_message_begin(llhttp_t *p)
{
    resp_check *k = p->data;
    CHECK(!k->closed); /* nothing may follow a Connection: close response */
    k->in_msg = true;
    k->is_close = false;
    k->rid.len = 0;
    k->body.len = 0;
    return 0;
}

static void header_done(resp_check *k)
{
    if (k->hname.len == 12 &&
        strncasecmp(k->hname.data, "X-Request-Id", 12) == 0)
        sf_buf_append(&k->rid, k->hval.data, k->hval.len);
    if (k->hname.len == 10 &&
        strncasecmp(k->hname.data, "Connection", 10) == 0 && k->hval.len == 5 &&
        strncasecmp(k->hval.data, "close", 5) == 0)
        k->is_close = true;
    k->hname.len = 0;
    k->hval.len = 0;
}

static int r_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    resp_check *k = p->data;
    return sf_buf_append(&k->hname, at, len) < 0 ? -1 : 0;
}

static int r_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    resp_check *k = p->data;
    return sf_buf_append(&k->hval, at, len) < 0 ? -1 : 0;
}

static int r_on_header_value_complete(llhttp_t *p)
{
    header_done(p->data);
    return 0;
}

static int r_on_headers_complete(llhttp_t *p)
{
    resp_check *k = p->data;

    if (p->status_code == 100)
        return 0;
    /* A HEAD response carries Content-Length but no body. */
    if (k->n < st.nreq && st.head[k->n])
        return 1;
    return 0;
}

static int r_on_body(llhttp_t *p, const char *at, size_t len)
{
    resp_check *k = p->data;
    return sf_buf_append(&k->body, at, len) < 0 ? -1 : 0;
}

static bool refusal_status(int s)
{
    return s == 400 || s == 401 || s == 408 || s == 413 || s == 414 ||
           s == 431 || s == 501 || s == 503 || s == 507;
}

static void check_error_body(const resp_check *k)
{
    cJSON *j =
        cJSON_ParseWithLength(k->body.data ? k->body.data : "", k->body.len);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");

    CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "code")));
    CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "message")));
    cJSON_Delete(j);
}

static int r_on_message_complete(llhttp_t *p)
{
    resp_check *k = p->data;
    int status = p->status_code;

    k->in_msg = false;
    if (status == 100) /* interim, for Expect: 100-continue */
        return 0;
    if (k->n < st.nreq) {
        /* The answer to the n-th dispatched request, in order. */
        CHECK(k->rid.len == strlen(st.ids[k->n]) &&
              memcmp(k->rid.data, st.ids[k->n], k->rid.len) == 0);
        CHECK(status == 200 || status == 404 || status == 405);
        if (status != 200 && !st.head[k->n])
            check_error_body(k);
    } else {
        /* http.c refused a request it never dispatched: last, closing. */
        k->extra++;
        CHECK(k->extra == 1);
        CHECK(refusal_status(status));
        CHECK(k->is_close);
        check_error_body(k);
    }
    k->n++;
    if (k->is_close)
        k->closed = true;
    return 0;
}

static void check_output(void)
{
    static llhttp_settings_t rs;
    static bool rs_init;
    resp_check k = {0};
    llhttp_t p;
    llhttp_errno_t e;

    if (!rs_init) {
        llhttp_settings_init(&rs);
        rs.on_message_begin = r_on_message_begin;
        rs.on_header_field = r_on_header_field;
        rs.on_header_value = r_on_header_value;
        rs.on_header_value_complete = r_on_header_value_complete;
        rs.on_headers_complete = r_on_headers_complete;
        rs.on_body = r_on_body;
        rs.on_message_complete = r_on_message_complete;
        rs_init = true;
    }
    llhttp_init(&p, HTTP_RESPONSE, &rs);
    p.data = &k;
    e = llhttp_execute(&p, st.out.data ? st.out.data : "", st.out.len);
    if (e != HPE_OK) {
        fprintf(stderr, "fuzz_http: server output does not parse: %s\n%.*s\n",
                llhttp_get_error_reason(&p), (int)st.out.len, st.out.data);
        abort();
    }
    /* Every byte belongs to a complete response. */
    CHECK(!k.in_msg);
    CHECK(k.n == st.nreq + k.extra);
    sf_buf_free(&k.hname);
    sf_buf_free(&k.hval);
    sf_buf_free(&k.rid);
    sf_buf_free(&k.body);
}

/* ---- driving one connection --------------------------------------------- */

/* Reads whatever the server wrote; returns true at EOF. */
static bool drain(int fd)
{
    for (;;) {
        ssize_t n;
        if (sf_buf_reserve(&st.out, 16384) < 0)
            abort();
        n = recv(fd, st.out.data + st.out.len, st.out.cap - st.out.len,
                 MSG_DONTWAIT);
        if (n > 0) {
            st.out.len += (size_t)n;
            continue;
        }
        return n == 0;
    }
}

/*
 * A blocking connect that libFuzzer's SIGALRM (its -timeout watchdog) may
 * interrupt: the connection then completes in the background, so wait for
 * it rather than retry.
 */
static void connect_loopback(int fd, const struct sockaddr_in *sa)
{
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    socklen_t len = sizeof(int);
    int err = 0;

    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
        return;
    err = errno;
    if (err == EINTR) {
        while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
            ;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err == 0)
            return;
    }
    fprintf(stderr, "fuzz_http: connect: %s\n", strerror(err));
    abort();
}

/* One loop iteration: write and close callbacks run here, as in sofaasd. */
static void pump(void)
{
    uv_run(&loop, UV_RUN_NOWAIT);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    sf_log_init("fuzz_http", SF_LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);
    CHECK(uv_loop_init(&loop) == 0);
    srv = sf_http_server_new(&loop, &stub, NULL);
    CHECK(srv != NULL);
    CHECK(sf_http_server_listen(srv, "127.0.0.1", 0, &port) == 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t chunks[8] = {SIZE_MAX, 1, 2, 3, 7, 16, 64, 1024};
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    size_t chunk, off = 0;
    bool eof_sent = false, peer_closed = false;
    sf_http_conn *c;
    int fd, spins;

    if (size == 0)
        return 0;
    chunk = chunks[data[0] & 7];
    {
        sf_buf keep = st.out; /* reuse the output buffer across inputs */
        memset(&st, 0, sizeof(st));
        st.out = keep;
        st.out.len = 0;
    }
    st.defer = (data[0] & 8) != 0;
    data++;
    size--;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    connect_loopback(fd, &sa);
    for (spins = 0; srv->conns == NULL && spins < 1000; spins++)
        uv_run(&loop, UV_RUN_NOWAIT);
    c = srv->conns;
    CHECK(c != NULL && c->next == NULL);

    /* Deliver the input as libuv would, then EOF; bounded. */
    for (spins = 0; srv->conns == c && spins < 100000; spins++) {
        uv_buf_t b;
        if (st.pending != NULL) {
            sf_http_req *r = st.pending;
            st.pending = NULL;
            answer(r);
        } else if (!c->reading) {
            /* Not reading, nothing in flight: only closing may remain. */
            CHECK(c->writes_pending > 0 || c->close_after_write);
        } else if (off < size) {
            size_t n = size - off < chunk ? size - off : chunk;
            on_alloc((uv_handle_t *)&c->tcp, 65536, &b);
            CHECK(b.base != NULL);
            if (n > b.len)
                n = b.len;
            memcpy(b.base, data + off, n);
            off += n;
            on_read((uv_stream_t *)&c->tcp, (ssize_t)n, &b);
        } else if (!eof_sent) {
            eof_sent = true;
            b = uv_buf_init(NULL, 0);
            on_read((uv_stream_t *)&c->tcp, UV_EOF, &b);
        }
        /* The loop only has work once something was written or closed. */
        if (srv->conns != c || c->writes_pending > 0) {
            drain(fd);
            pump();
        }
    }
    /* The connection must be gone and the peer must see it. */
    CHECK(srv->conns == NULL);
    for (spins = 0; !peer_closed && spins < 1000; spins++) {
        pump();
        peer_closed = drain(fd);
    }
    CHECK(peer_closed);
    /* Reset rather than close: the server closed first, so a clean close
     * would leave its end in TIME_WAIT and, at thousands of connections a
     * second, run the loopback out of ephemeral ports. */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &(struct linger){1, 0},
               sizeof(struct linger));
    close(fd);
    pump();
    CHECK(st.pending == NULL);
    check_output();
    return 0;
}
