/*
 * http.h - the HTTP/1.1 front end of sofaasd: accepts connections on the
 * libuv loop, parses requests with llhttp, enforces size limits and hands
 * each complete request to the API layer, one at a time per connection.
 *
 * Pipelined requests are parsed only after the previous response has been
 * queued, so responses always leave in request order and a connection holds
 * at most one request in flight. Every error body is
 * {"error":{"code":"...","message":"..."}}.
 */
#ifndef SF_HTTP_H
#define SF_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "router.h"

#define SOFAAS_NO_ABI_STAMP
#include "sofaas.h"

#define SF_HTTP_MAX_HEADER_BYTES (16u << 10) /* whole header block: 431 */
#define SF_HTTP_MAX_HEADERS 100              /* header count: 431 */
#define SF_HTTP_MAX_URL (8u << 10)           /* request target: 414 */

/* Connection-level limits (docs/api.md). Zero fields take the default. */
typedef struct sf_http_limits {
    unsigned header_timeout_ms;    /* request line + headers: 408 (10000) */
    unsigned body_timeout_ms;      /* whole body after headers: 408 (30000) */
    unsigned keepalive_timeout_ms; /* idle between requests: close (15000) */
    unsigned max_connections;      /* beyond: 503 then close (10000) */
} sf_http_limits;

typedef struct sf_http_server sf_http_server;
typedef struct sf_http_conn sf_http_conn;

/*
 * One request. Owned by http.c from message-begin until the API layer calls
 * sf_http_respond() (or sf_http_error()) exactly once; that call frees it.
 * Strings are NUL-terminated and valid until then.
 */
typedef struct sf_http_req sf_http_req;
struct sf_http_req {
    const char *method; /* "GET", ... (static) */
    char *path;         /* raw path, never empty */
    size_t path_len;
    char *query; /* raw query without '?', "" if none */
    size_t query_len;
    sofaas_header *headers;
    size_t header_count;
    sf_buf body;
    char request_id[129];
    uint64_t start_us; /* sf_mono_us() at message begin */
    bool keep_alive;
    bool is_head;
    sf_route route;    /* filled at headers-complete */
    size_t body_limit; /* set by on_headers; default 0 = no body allowed */
    size_t body_seen;  /* body bytes received so far */
    void *user;        /* for the API layer */
    /*
     * Optional, set by on_headers: receives body bytes instead of req->body
     * (e.g. to stream an upload to disk). Returns 0, or an HTTP status to
     * refuse the request with (*code, *message static strings).
     */
    int (*body_sink)(sf_http_req *req, const char *data, size_t len,
                     const char **code, const char **message);
    /* Optional: called when req is freed (answered or abandoned). */
    void (*on_free)(sf_http_req *req);

    /* private to http.c */
    sf_http_conn *conn; /* NULL once the client has gone */
    sf_buf url;
    sf_buf hbuf; /* header names and values, NUL-separated */
    size_t *hoff; /* per header: name offset, name len, value off, value len */
    size_t hoff_cap;
    bool in_value;
    bool streaming;
    void (*gone)(void *ctx);
    void *gone_ctx;
};

typedef struct sf_http_handlers {
    /*
     * Called when the headers are complete. Set req->route and
     * req->body_limit and return 0 to go on, or return an HTTP status to
     * refuse the request before its body is read (the connection is then
     * closed); *code and *message (static strings) describe the refusal.
     */
    int (*on_headers)(void *ctx, sf_http_req *req, const char **code,
                      const char **message);
    /* Called with a complete request; must lead to one sf_http_respond. */
    void (*on_request)(void *ctx, sf_http_req *req);
} sf_http_handlers;

/* Creates a server on loop. Returns NULL on allocation failure. */
sf_http_server *sf_http_server_new(uv_loop_t *loop,
                                   const sf_http_handlers *h, void *ctx);
/* Sets the limits (copied); applies to new timers from now on. */
void sf_http_server_set_limits(sf_http_server *s, const sf_http_limits *l);

/* Live connection count (for metrics and tests). */
unsigned sf_http_server_connections(const sf_http_server *s);

/*
 * Binds and listens on host:port (port 0 picks one). *bound_port receives
 * the port actually bound. Returns 0 or a negative libuv error.
 */
int sf_http_server_listen(sf_http_server *s, const char *host, int port,
                          int *bound_port);
/*
 * Graceful stop, first half: closes the listener, closes idle connections,
 * and lets requests in flight finish (their responses carry
 * "Connection: close"). Pipelined requests not yet started are dropped.
 * Poll sf_http_server_connections() until it reaches 0, then close.
 */
void sf_http_server_drain(sf_http_server *s);

/*
 * Serves on fd, an already bound and listening TCP socket (systemd socket
 * activation). The server takes ownership of fd. *bound_port receives its
 * port. Returns 0 or a negative libuv error.
 */
int sf_http_server_listen_fd(sf_http_server *s, int fd, int *bound_port);

/* Stops accepting and closes all connections; frees on the loop. NULL-safe. */
void sf_http_server_close(sf_http_server *s);

/* Finds a request header (case-insensitive). Returns it or NULL. */
const sofaas_header *sf_http_header(const sf_http_req *req, const char *name);

/*
 * Sends a response and frees req. Copies hdrs and body. Content-Length,
 * Connection and X-Request-Id are set here; hop-by-hop headers in hdrs are
 * dropped.
 */
void sf_http_respond(sf_http_req *req, int status, const sofaas_header *hdrs,
                     size_t nhdrs, const void *body, size_t body_len);

/* Sends the JSON error body {"error":{"code","message"}} and frees req. */
void sf_http_error(sf_http_req *req, int status, const char *code,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The same with extra headers (copied; at most 7). */
void sf_http_error_hdrs(sf_http_req *req, int status,
                        const sofaas_header *hdrs, size_t nhdrs,
                        const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Convenience: a JSON body with Content-Type: application/json. */
void sf_http_json(sf_http_req *req, int status, const char *json);

/*
 * Streaming responses (chunked transfer encoding), for bodies produced
 * over time such as a followed log. sf_http_stream_begin sends the status
 * and headers; req then stays owned by the caller until it calls
 * sf_http_stream_end, which sends the last chunk and frees req. If the
 * client goes away first (EOF, error, write backlog over
 * SF_HTTP_MAX_STREAM_BACKLOG, or server shutdown), gone(ctx) runs once; the
 * caller must then stop writing and call sf_http_stream_end. Returns 0, or
 * a negative error when the client is already gone (gone is not called;
 * the caller ends the stream). Writes of len 0 are ignored.
 */
#define SF_HTTP_MAX_STREAM_BACKLOG (1u << 20)
int sf_http_stream_begin(sf_http_req *req, int status,
                         const sofaas_header *hdrs, size_t nhdrs,
                         void (*gone)(void *ctx), void *ctx);
int sf_http_stream_write(sf_http_req *req, const void *data, size_t len);
void sf_http_stream_end(sf_http_req *req);

/*
 * Responses sent so far by status code: *counts[code] for code < *n.
 * Valid while s lives. For the metrics module.
 */
void sf_http_server_status_counts(const sf_http_server *s,
                                  const uint64_t **counts, size_t *n);

#endif
