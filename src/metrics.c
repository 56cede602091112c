/*
 * metrics.c - counters, histograms and the text exposition (see metrics.h).
 *
 * Per-function series live in a small array that only grows: a Prometheus
 * counter must not vanish while the process lives, so a deleted function
 * keeps its series until restart. Function names are [a-z0-9-] (router.c),
 * so label values never need escaping.
 */
#include "metrics.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Outcome label values; anything else is counted as "other". */
static const char *const outcomes[] = {
    "ok",          "function_error",   "function_crashed",
    "timeout",     "init_failed",      "invalid_response",
    "sandbox_violation", "function_unavailable", "overloaded", "other"};
#define N_OUTCOMES (sizeof(outcomes) / sizeof(outcomes[0]))

/* Seconds; chosen to span a warm hello (~50 µs) to a long timeout. */
static const double buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                 0.005,  0.01,    0.025,  0.05,  0.1,
                                 0.25,   0.5,     1,      2.5,   5,
                                 10,     30,      60};
#define N_BUCKETS (sizeof(buckets) / sizeof(buckets[0]))

typedef struct fn_metrics {
    char name[64];
    uint64_t outcome[N_OUTCOMES];
    uint64_t bucket[N_BUCKETS]; /* not cumulative; summed when rendered */
    uint64_t count;
    uint64_t sum_us;
    uint64_t cold;
    unsigned queued; /* scratch, filled at render time */
} fn_metrics;

struct sf_metrics {
    char *version;
    sf_pool *pool;
    sf_http_server *http;
    sf_metrics_cost_fn cost_fn;
    void *cost_ctx;
    fn_metrics *fns;
    size_t n, cap;
};

sf_metrics *sf_metrics_new(const char *version)
{
    sf_metrics *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return NULL;
    m->version = strdup(version);
    if (m->version == NULL) {
        free(m);
        return NULL;
    }
    return m;
}

void sf_metrics_free(sf_metrics *m)
{
    if (m == NULL)
        return;
    free(m->version);
    free(m->fns);
    free(m);
}

void sf_metrics_attach(sf_metrics *m, sf_pool *pool, sf_http_server *http)
{
    m->pool = pool;
    m->http = http;
}

void sf_metrics_set_cost_source(sf_metrics *m, sf_metrics_cost_fn fn,
                                void *ctx)
{
    m->cost_fn = fn;
    m->cost_ctx = ctx;
}

/* Finds or adds the series of name. NULL only on allocation failure. */
static fn_metrics *fn_get(sf_metrics *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->fns[i].name, name) == 0)
            return &m->fns[i];
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        fn_metrics *n = realloc(m->fns, cap * sizeof(*n));
        if (n == NULL)
            return NULL;
        m->fns = n;
        m->cap = cap;
    }
    memset(&m->fns[m->n], 0, sizeof(m->fns[m->n]));
    snprintf(m->fns[m->n].name, sizeof(m->fns[m->n].name), "%s", name);
    return &m->fns[m->n++];
}

void sf_metrics_invocation(sf_metrics *m, const char *function,
                           const char *outcome, uint64_t duration_us,
                           bool cold_start)
{
    fn_metrics *f = m ? fn_get(m, function) : NULL;
    size_t o = N_OUTCOMES - 1;
    double s = (double)duration_us / 1e6;

    if (f == NULL)
        return;
    for (size_t i = 0; i < N_OUTCOMES - 1; i++)
        if (strcmp(outcomes[i], outcome) == 0)
            o = i;
    f->outcome[o]++;
    for (size_t i = 0; i < N_BUCKETS; i++) {
        if (s <= buckets[i]) {
            f->bucket[i]++;
            break;
        }
    }
    f->count++;
    f->sum_us += duration_us;
    if (cold_start)
        f->cold++;
}

static void add_queue(void *ctx, const char *name, int64_t version,
                      unsigned queued)
{
    sf_metrics *m = ctx;
    fn_metrics *f = fn_get(m, name);

    (void)version;
    if (f != NULL)
        f->queued += queued;
}

/* ---- process metrics ---------------------------------------------------- */

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}

static long long rss_bytes(long long *vsz)
{
    FILE *f = fopen("/proc/self/statm", "re");
    long long size = -1, res = -1;
    long page = sysconf(_SC_PAGESIZE);

    if (f == NULL)
        return -1;
    if (fscanf(f, "%lld %lld", &size, &res) != 2)
        res = -1;
    fclose(f);
    *vsz = size < 0 ? -1 : size * page;
    return res < 0 ? -1 : res * page;
}

/* Process start as seconds since the epoch: boot time + starttime ticks. */
static double start_time(void)
{
    static double cached;
    char buf[1024], *p;
    unsigned long long ticks = 0, btime = 0;
    FILE *f;
    size_t n;

    if (cached > 0)
        return cached;
    f = fopen("/proc/self/stat", "re");
    if (f == NULL)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* comm may hold spaces and ')': fields restart after the last ')'. */
    p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    p++;
    for (int field = 3; field < 22 && p != NULL; field++)
        p = strchr(p + 1, ' ');
    if (p == NULL || sscanf(p, " %llu", &ticks) != 1)
        return -1;
    f = fopen("/proc/stat", "re");
    if (f == NULL)
        return -1;
    while (fgets(buf, sizeof(buf), f) != NULL)
        if (sscanf(buf, "btime %llu", &btime) == 1)
            break;
    fclose(f);
    if (btime == 0)
        return -1;
    cached = (double)btime + (double)ticks / (double)sysconf(_SC_CLK_TCK);
    return cached;
}

/* ---- rendering ---------------------------------------------------------- */

#define HELP(name, type, text)                                                 \
    "# HELP " name " " text "\n# TYPE " name " " type "\n"

int sf_metrics_render(sf_metrics *m, sf_buf *out)
{
    int r = 0;
    struct rusage ru;
    struct rlimit rl;
    long long vsz, rss;
    int fds;
    double st;

    for (size_t i = 0; i < m->n; i++)
        m->fns[i].queued = 0;
    if (m->pool != NULL)
        sf_pool_foreach_queue(m->pool, add_queue, m);

    r |= sf_buf_printf(out,
                       HELP("sofaas_build_info", "gauge",
                            "Build of this sofaasd; the value is always 1.")
                       "sofaas_build_info{version=\"%s\",abi=\"%d\"} 1\n",
                       m->version, SOFAAS_ABI_VERSION);

    r |= sf_buf_printf(out, HELP("sofaas_invocations_total", "counter",
                                 "Finished invocations by function and "
                                 "outcome (the error code clients saw, or "
                                 "ok)."));
    for (size_t i = 0; i < m->n; i++)
        for (size_t o = 0; o < N_OUTCOMES; o++)
            if (m->fns[i].outcome[o] > 0 || o == 0)
                r |= sf_buf_printf(
                    out,
                    "sofaas_invocations_total{function=\"%s\","
                    "status=\"%s\"} %llu\n",
                    m->fns[i].name, outcomes[o],
                    (unsigned long long)m->fns[i].outcome[o]);

    r |= sf_buf_printf(out,
                       HELP("sofaas_invocation_duration_seconds", "histogram",
                            "Time an instance spent on an invocation, from "
                            "dispatch to response (excludes queueing)."));
    for (size_t i = 0; i < m->n; i++) {
        fn_metrics *f = &m->fns[i];
        uint64_t cum = 0;
        for (size_t b = 0; b < N_BUCKETS; b++) {
            cum += f->bucket[b];
            r |= sf_buf_printf(out,
                               "sofaas_invocation_duration_seconds_bucket{"
                               "function=\"%s\",le=\"%g\"} %llu\n",
                               f->name, buckets[b], (unsigned long long)cum);
        }
        r |= sf_buf_printf(out,
                           "sofaas_invocation_duration_seconds_bucket{"
                           "function=\"%s\",le=\"+Inf\"} %llu\n"
                           "sofaas_invocation_duration_seconds_sum{"
                           "function=\"%s\"} %.6f\n"
                           "sofaas_invocation_duration_seconds_count{"
                           "function=\"%s\"} %llu\n",
                           f->name, (unsigned long long)f->count, f->name,
                           (double)f->sum_us / 1e6, f->name,
                           (unsigned long long)f->count);
    }

    r |= sf_buf_printf(out, HELP("sofaas_cold_starts_total", "counter",
                                 "Invocations served by a freshly "
                                 "initialized instance."));
    for (size_t i = 0; i < m->n; i++)
        r |= sf_buf_printf(out, "sofaas_cold_starts_total{function=\"%s\"} "
                                "%llu\n",
                           m->fns[i].name,
                           (unsigned long long)m->fns[i].cold);

    r |= sf_buf_printf(out, HELP("sofaas_queue_depth", "gauge",
                                 "Invocations waiting for an instance."));
    for (size_t i = 0; i < m->n; i++)
        r |= sf_buf_printf(out, "sofaas_queue_depth{function=\"%s\"} %u\n",
                           m->fns[i].name, m->fns[i].queued);

    if (m->pool != NULL) {
        sf_pool_stats s;
        sf_pool_get_stats(m->pool, &s);
        r |= sf_buf_printf(
            out,
            HELP("sofaas_workers", "gauge",
                 "Worker processes by state.")
            "sofaas_workers{state=\"spawning\"} %u\n"
            "sofaas_workers{state=\"generic\"} %u\n"
            "sofaas_workers{state=\"loading\"} %u\n"
            "sofaas_workers{state=\"idle\"} %u\n"
            "sofaas_workers{state=\"busy\"} %u\n"
            "sofaas_workers{state=\"draining\"} %u\n",
            s.spawning, s.generic, s.loading, s.idle, s.busy, s.draining);
    }

    if (m->http != NULL) {
        const uint64_t *counts;
        size_t n;
        sf_http_server_status_counts(m->http, &counts, &n);
        r |= sf_buf_printf(out, HELP("sofaas_http_requests_total", "counter",
                                     "HTTP responses sent, by status code."));
        for (size_t c = 0; c < n; c++)
            if (counts[c] > 0)
                r |= sf_buf_printf(out,
                                   "sofaas_http_requests_total{code=\"%zu\"} "
                                   "%llu\n",
                                   c, (unsigned long long)counts[c]);
    }

    if (m->cost_fn != NULL)
        r |= sf_buf_printf(out,
                           HELP("sofaas_billed_cost_total", "counter",
                                "Total billed cost of all invocations.")
                           "sofaas_billed_cost_total %.9g\n",
                           m->cost_fn(m->cost_ctx));

    rss = rss_bytes(&vsz);
    if (rss >= 0)
        r |= sf_buf_printf(out,
                           HELP("process_resident_memory_bytes", "gauge",
                                "Resident memory size in bytes.")
                           "process_resident_memory_bytes %lld\n"
                           HELP("process_virtual_memory_bytes", "gauge",
                                "Virtual memory size in bytes.")
                           "process_virtual_memory_bytes %lld\n",
                           rss, vsz);
    fds = open_fds();
    if (fds >= 0)
        r |= sf_buf_printf(out,
                           HELP("process_open_fds", "gauge",
                                "Number of open file descriptors.")
                           "process_open_fds %d\n",
                           fds);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        r |= sf_buf_printf(out,
                           HELP("process_max_fds", "gauge",
                                "Maximum number of open file descriptors.")
                           "process_max_fds %llu\n",
                           (unsigned long long)rl.rlim_cur);
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        r |= sf_buf_printf(
            out,
            HELP("process_cpu_seconds_total", "counter",
                 "User and system CPU time of sofaasd itself (workers are "
                 "not included), in seconds.")
            "process_cpu_seconds_total %.6f\n",
            (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
    st = start_time();
    if (st > 0)
        r |= sf_buf_printf(out,
                           HELP("process_start_time_seconds", "gauge",
                                "Start time of the process since the Unix "
                                "epoch, in seconds.")
                           "process_start_time_seconds %.2f\n",
                           st);
    return r != 0 ? -ENOMEM : 0;
}
