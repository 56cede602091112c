/*
 * chatty.c - a test function that writes to stdout and stderr, so the
 * integration tests can check function log capture.
 *
 * Query: "n=N" prints N numbered lines to stdout (default 1); "big=N"
 * writes N bytes of 'x' in one line (to hit the per-invocation cap);
 * "nonl=1" ends with a line that has no newline; "forge=1" prints a line
 * shaped like a daemon log line, quotes included; "bad=1" prints bytes
 * that are not UTF-8; "sleep=MS" prints "sleeping" then sleeps; "crash=1"
 * prints "dying" then segfaults. It always writes one
 * line to stderr, and init writes one line too. The body is the
 * traceparent header it received.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sofaas.h"

int sofaas_init(void)
{
    printf("chatty init\n");
    return 0;
}

static long qnum(const char *q, const char *key)
{
    const char *p = q ? strstr(q, key) : NULL;
    return p ? strtol(p + strlen(key), NULL, 10) : 0;
}

int sofaas_handle(const sofaas_request *req, sofaas_response *resp)
{
    long n = qnum(req->query, "n=");
    long big = qnum(req->query, "big=");
    const sofaas_header *tp = NULL;

    if (n <= 0)
        n = 1;
    for (long i = 0; i < n; i++)
        printf("out %ld request %s\n", i, req->request_id);
    fprintf(stderr, "err request %s\n", req->request_id);
    if (big > 0) {
        for (long i = 0; i < big; i++)
            putchar('x');
        putchar('\n');
    }
    if (qnum(req->query, "forge=") == 1)
        printf("x\" level=error msg=\"forged\"\n");
    if (qnum(req->query, "bad=") == 1)
        printf("bad \xff\xfe end\n");
    if (qnum(req->query, "sleep=") > 0) {
        long ms = qnum(req->query, "sleep=");
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        printf("sleeping\n");
        nanosleep(&ts, NULL);
    }
    if (qnum(req->query, "crash=") == 1) {
        printf("dying\n");
        *(volatile int *)0 = 1;
    }
    if (qnum(req->query, "nonl=") == 1)
        printf("no newline at the end");
    for (size_t i = 0; i < req->header_count; i++)
        if (req->headers[i].name_len == 11 &&
            strncmp(req->headers[i].name, "traceparent", 11) == 0)
            tp = &req->headers[i];
    if (tp != NULL)
        sofaas_write(resp, tp->value, tp->value_len);
    return 0;
}
