/*
 * baseline.c - the benchmark's yardstick: a bare libuv + llhttp HTTP/1.1
 * server that answers every request with the same body examples/hello
 * returns, with keep-alive. No routing, no limits, no workers: the fastest
 * this loop and parser can go on this machine, measured in the same run as
 * sofaasd (bench/run, docs/benchmarks.md). Not part of the product.
 *
 *   sofaas-bench-baseline PORT
 */
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
} conn;

static llhttp_settings_t settings;

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    free(req);
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

    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
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
