/*
 * faulty - misbehaves on request, to test how the daemon contains faults.
 * The path picks the fault:
 *   /abort  abort()                 /stack   unbounded recursion
 *   /exit   _exit(3) mid-request    /hang    block every signal, never return
 *   /oom?mb=N  allocate and touch N MiB
 *   /garbage   write a malformed frame on the IPC channel (fd 3)
 *   anything else: "ok"
 * sofaas_init fails when FAIL_INIT is set and hangs when HANG_INIT is set
 * (set through the function's env config).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sofaas.h"

static volatile char sink;

/* Deep recursion until the stack runs out (depth comes from the request
 * so the compiler cannot prove it unbounded). */
static int recurse(long n, long limit)
{
    volatile char pad[4096];
    pad[0] = (char)n;
    if (n >= limit)
        return pad[0];
    return recurse(n + 1, limit) + pad[0];
}

static void hang(void)
{
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    for (int i = 1; i < 32; i++)
        signal(i, SIG_IGN);
    for (;;)
        pause();
}

int sofaas_init(void)
{
    if (getenv("HANG_INIT") != NULL)
        hang();
    return getenv("FAIL_INIT") != NULL ? 1 : 0;
}

int sofaas_handle(const sofaas_request *req, sofaas_response *res)
{
    const char *p = req->path;

    if (strcmp(p, "/abort") == 0)
        abort();
    if (strcmp(p, "/stack") == 0)
        return recurse(0, (long)req->body_len + 100000000L);
    if (strcmp(p, "/exit") == 0)
        _exit(3);
    if (strcmp(p, "/hang") == 0)
        hang();
    if (strcmp(p, "/oom") == 0) {
        const char *q = strstr(req->query, "mb=");
        long mb = q ? strtol(q + 3, NULL, 10) : 1024;
        for (long i = 0; i < mb; i++) {
            char *c = malloc(1 << 20);
            if (c == NULL)
                break;
            memset(c, (int)i, 1 << 20);
            sink = c[i % (1 << 20)];
        }
        return sofaas_printf(res, "allocated %ld MiB\n", mb) < 0;
    }
    if (strcmp(p, "/garbage") == 0) {
        static const unsigned char junk[16] = {8, 0, 0, 0, 99, 0};
        (void)!write(3, junk, sizeof(junk));
        pause();
    }
    return sofaas_printf(res, "ok\n") < 0;
}
