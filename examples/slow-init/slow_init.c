/*
 * slow-init - a function whose sofaas_init is expensive, to show
 * fork-from-template cold starts (docs/pool.md).
 *
 * init builds a 16 MiB lookup table (pi(n), the number of primes <= n, for
 * every n below 4 Mi) and keeps rebuilding it until 300 ms have passed, as a
 * stand-in for loading a model. It records when it ran and in which process;
 * every answer reports both, so a caller can tell that instances forked from
 * a template did not run init again (same init_ns, different pid).
 *
 *   GET /fn/slow-init/?n=1000  ->  {"n":1000,"pi":168,"init_ns":...,
 *                                   "init_pid":...,"pid":...}
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sofaas.h"

#define TABLE_N (4u << 20)
#define INIT_MS 300

static uint32_t *pi_table;
static long long init_ns;
static long init_pid;

static long long now_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void build(uint32_t *t, uint8_t *composite)
{
    uint32_t count = 0;

    memset(composite, 0, TABLE_N);
    for (uint32_t i = 2; i < TABLE_N; i++) {
        if (!composite[i]) {
            count++;
            for (uint64_t j = (uint64_t)i * i; j < TABLE_N; j += i)
                composite[j] = 1;
        }
        t[i] = count;
    }
    t[0] = t[1] = 0;
}

int sofaas_init(void)
{
    long long start = now_ns(CLOCK_MONOTONIC);
    uint8_t *composite = malloc(TABLE_N);

    pi_table = malloc(TABLE_N * sizeof(*pi_table));
    if (pi_table == NULL || composite == NULL)
        return 1;
    do
        build(pi_table, composite);
    while (now_ns(CLOCK_MONOTONIC) - start < INIT_MS * 1000000LL);
    free(composite);
    init_ns = now_ns(CLOCK_REALTIME);
    init_pid = (long)getpid();
    return 0;
}

int sofaas_handle(const sofaas_request *req, sofaas_response *res)
{
    const char *q = strstr(req->query, "n=");
    unsigned long n = q ? strtoul(q + 2, NULL, 10) : 0;

    if (n >= TABLE_N)
        n = TABLE_N - 1;
    sofaas_set_header(res, "Content-Type", "application/json");
    return sofaas_printf(res,
                         "{\"n\":%lu,\"pi\":%u,\"init_ns\":%lld,"
                         "\"init_pid\":%ld,\"pid\":%ld}\n",
                         n, pi_table[n], init_ns, init_pid, (long)getpid()) < 0;
}
