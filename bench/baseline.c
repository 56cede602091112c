/*
 * baseline.c - the benchmark's yardstick: a bare libuv + llhttp HTTP/1.1
 * server that answers every request with the same body examples/hello
 * returns, with keep-alive. No routing, no limits, no workers: the fastest
 * this loop and parser can go on this machine, measured in the same run as
 * sofaasd (bench/run, docs/benchmarks.md). Not part of the product.
 *
 * With a worker count it is instead the floor of sofaasd's architecture:
 * each request is handed to one of N pre-forked processes over a
 * socketpair (a 16-byte message; the process waits in poll(), reads it and
 * writes 16 bytes back, nothing else) and answered when that comes back.
 * No sandbox, no function, no metering, no log: what one process hop per
 * request costs on this machine by itself.
 *
 *   sofaas-bench-baseline PORT [WORKERS]
 */
#include <llhttp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

static const char reply[] = "HTTP/1.1 200 OK\r\n"
                            "Content-Type: text/plain; charset=utf-8\r\n"
                            "Content-Length: 19\r\n"
                            "\r\n"
                            "Hello from sofaas!\n";

typedef struct conn {
    uv_tcp_t tcp;
    llhttp_t parser;
    unsigned pending; /* responses owed from the current read */
    struct conn *qnext; /* waiting for a worker */
    int closing;
    unsigned refs; /* the handle, plus one per request at a worker */
} conn;

static llhttp_settings_t settings;

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

/* ---- the process hop (WORKERS > 0) -------------------------------------- */

typedef struct hop {
    uv_pipe_t pipe;
    conn *cur;
    struct hop *next_idle;
    char in[16];
    size_t got;
} hop;

static hop *idle_hops;
static conn *q_head, *q_tail;
static int nworkers;

static void worker_main(int fd)
{
    char m[16];
    struct pollfd p = {.fd = fd, .events = POLLIN};

    for (;;) {
        size_t got = 0;
        while (got < sizeof(m)) {
            ssize_t n;
            if (poll(&p, 1, -1) < 0)
                continue;
            n = read(fd, m + got, sizeof(m) - got);
            if (n <= 0)
                _exit(0);
            got += (size_t)n;
        }
        if (write(fd, m, sizeof(m)) != (ssize_t)sizeof(m))
            _exit(0);
    }
}

static void conn_unref(conn *c)
{
    if (--c->refs == 0)
        free(c);
}

static void respond(conn *c)
{
    uv_buf_t b = uv_buf_init((char *)reply, sizeof(reply) - 1);

    if (c->closing)
        return;
    if (uv_try_write((uv_stream_t *)&c->tcp, &b, 1) != (int)b.len) {
        uv_write_t *w = malloc(sizeof(*w));
        uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    }
}

static void send_to(hop *h, conn *c)
{
    char m[16] = {0};
    uv_buf_t b = uv_buf_init(m, sizeof(m));

    h->cur = c;
    if (uv_try_write((uv_stream_t *)&h->pipe, &b, 1) != (int)sizeof(m)) {
        fprintf(stderr, "baseline: worker write failed\n");
        exit(1);
    }
}

static void dispatch(conn *c)
{
    hop *h = idle_hops;

    c->refs++;
    if (h == NULL) {
        c->qnext = NULL;
        if (q_tail)
            q_tail->qnext = c;
        else
            q_head = c;
        q_tail = c;
        return;
    }
    idle_hops = h->next_idle;
    send_to(h, c);
}

static void hop_alloc(uv_handle_t *hd, size_t sz, uv_buf_t *b)
{
    hop *h = hd->data;

    (void)sz;
    *b = uv_buf_init(h->in + h->got, (unsigned)(sizeof(h->in) - h->got));
}

static void hop_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    hop *h = s->data;
    conn *c;

    (void)b;
    if (n < 0) {
        fprintf(stderr, "baseline: a worker exited\n");
        exit(1);
    }
    h->got += (size_t)n;
    if (h->got < sizeof(h->in))
        return;
    c = h->cur;
    h->cur = NULL;
    h->got = 0;
    respond(c);
    conn_unref(c);
    if (q_head != NULL) {
        conn *next = q_head;
        q_head = next->qnext;
        if (q_head == NULL)
            q_tail = NULL;
        send_to(h, next);
    } else {
        h->next_idle = idle_hops;
        idle_hops = h;
    }
}

static void start_workers(uv_loop_t *loop, int n)
{
    for (int i = 0; i < n; i++) {
        int sv[2];
        hop *h = calloc(1, sizeof(*h));
        pid_t pid;

        if (h == NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
            perror("baseline: socketpair");
            exit(1);
        }
        pid = fork();
        if (pid == 0) {
            close(sv[0]);
            worker_main(sv[1]);
        }
        close(sv[1]);
        uv_pipe_init(loop, &h->pipe, 0);
        uv_pipe_open(&h->pipe, sv[0]);
        h->pipe.data = h;
        uv_read_start((uv_stream_t *)&h->pipe, hop_alloc, hop_read);
        h->next_idle = idle_hops;
        idle_hops = h;
    }
}

static void on_closed(uv_handle_t *h)
{
    conn *c = h->data;

    c->closing = 1;
    conn_unref(c);
}

static int on_complete(llhttp_t *p)
{
    ((conn *)p->data)->pending++;
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    (void)h;
    b->base = malloc(sz);
    b->len = b->base ? sz : 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn *c = s->data;

    if (n > 0) {
        c->pending = 0;
        if (llhttp_execute(&c->parser, b->base, (size_t)n) != HPE_OK) {
            uv_close((uv_handle_t *)s, on_closed);
        } else if (c->pending > 0 && nworkers > 0) {
            for (unsigned i = 0; i < c->pending; i++)
                dispatch(c);
        } else if (c->pending > 0) {
            /* One write for all pipelined responses of this read. */
            size_t len = (sizeof(reply) - 1) * c->pending;
            uv_write_t *w = malloc(sizeof(*w) + len);
            char *out = (char *)(w + 1);
            uv_buf_t ob = uv_buf_init(out, (unsigned)len);
            for (unsigned i = 0; i < c->pending; i++)
                memcpy(out + i * (sizeof(reply) - 1), reply, sizeof(reply) - 1);
            uv_write(w, s, &ob, 1, on_written);
        }
    } else if (n < 0) {
        uv_close((uv_handle_t *)s, on_closed);
    }
    free(b->base);
}

static void on_conn(uv_stream_t *srv, int status)
{
    conn *c;

    if (status < 0)
        return;
    c = calloc(1, sizeof(*c));
    c->refs = 1;
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int main(int argc, char **argv)
{
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t srv;
    struct sockaddr_in a;
    int r;

    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s PORT [WORKERS]\n", argv[0]);
        return 2;
    }
    nworkers = argc == 3 ? atoi(argv[2]) : 0;
    if (nworkers > 0)
        start_workers(loop, nworkers);
    llhttp_settings_init(&settings);
    settings.on_message_complete = on_complete;
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &a);
    uv_tcp_init(loop, &srv);
    if ((r = uv_tcp_bind(&srv, (struct sockaddr *)&a, 0)) != 0 ||
        (r = uv_listen((uv_stream_t *)&srv, 511, on_conn)) != 0) {
        fprintf(stderr, "baseline: %s\n", uv_strerror(r));
        return 1;
    }
    return uv_run(loop, UV_RUN_DEFAULT);
}
