/*
 * meter_floor.c - what the meter's own work costs per invocation row, with
 * nothing else running: the real meter (src/meter.c) on a real libuv loop
 * and a real SQLite file, fed BATCH rows per loop iteration the way the
 * gateway feeds it under load (sync mode: the rows of an iteration are
 * committed in the iteration's check phase, as their responses would be).
 *
 * It prints the CPU time the loop thread spent per row (the gateway's
 * bottleneck in bench/meter_overhead.sh) and that of the whole process
 * (the checkpointer thread included), for "sync" and for "off" (the same
 * calls with metering off: what recording costs without the database).
 * bench/meter_overhead.sh runs it next to the daemons and divides it by
 * the loop thread's CPU per request with metering off: that ratio is the
 * least sync metering can cost in throughput where the loop thread is the
 * bottleneck, whatever the noise of the machine does to the wrk figures.
 * Its caches are warmer than the gateway's (nothing else runs between the
 * commits), so it is a lower bound. A benchmark: it never fails on a
 * number.
 *
 * usage: sofaas-bench-meter-floor [BATCH [ROWS [KEY=VALUE...]]]
 *   BATCH 13, ROWS 200000; KEY=VALUE: meter settings as in the config
 *   file (meter.wal_max_mb=4, ...), for both runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "meter.h"
#include "registry.h"
#include "util.h"

typedef struct run {
    sf_meter *m;
    int batch;
    long rows, recorded, answered, failed;
    uv_prepare_t prep;
    uv_idle_t idle; /* keeps the loop's poll from blocking */
} run;

static double cpu_us(clockid_t id)
{
    struct timespec t;

    clock_gettime(id, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void on_done(void *ctx, int status, uint64_t billed_ms)
{
    run *r = ctx;

    (void)billed_ms;
    r->answered++;
    if (status != 0)
        r->failed++;
}

static void on_idle(uv_idle_t *h)
{
    (void)h;
}

/* Before each poll: one iteration's worth of finished invocations. */
static void on_prepare(uv_prepare_t *h)
{
    run *r = h->data;
    char rid[40];

    for (int i = 0; i < r->batch && r->recorded < r->rows; i++) {
        int64_t now = sf_wall_us();
        sf_meter_rec in = {
            .request_id = rid,
            .function = "hello",
            .version = 1,
            .start_us = now - 300,
            .duration_us = 250 + (uint64_t)(r->recorded % 97),
            .instance_id = 72,
            .cls = SF_MC_OK,
            .http_status = 200,
            .bytes_out = 19,
            .memory_mb = 128,
        };
        /* shaped like the gateway's ids (UUIDv7 text) */
        snprintf(rid, sizeof(rid), "%08llx-27d1-7bed-a7d6-%012lx",
                 (unsigned long long)(now / 1000) & 0xffffffffULL, r->recorded);
        sf_meter_record(r->m, &in, on_done, r);
        r->recorded++;
    }
    if (r->recorded >= r->rows) {
        uv_prepare_stop(&r->prep);
        uv_idle_stop(&r->idle);
    }
}

/* Records rows in mode, BATCH per iteration; prints CPU per row and
 * stores the loop thread's in *loop_us. */
static int measure(const char *dir, const char *mode, int batch, long rows,
                   char **set, int nset, double *loop_us)
{
    uv_loop_t loop;
    sf_registry *reg = NULL;
    sf_meter_config mc;
    char db[4096], err[256];
    run r = {.batch = batch, .rows = rows};
    double t0, p0, w0;

    if (sf_registry_open(dir, &reg) < 0)
        return -1;
    snprintf(db, sizeof(db), "%s/sofaas.db", dir);
    sf_meter_config_defaults(&mc);
    for (int i = 0; i < nset; i++) {
        char key[64];
        const char *eq = strchr(set[i], '=');
        if (eq == NULL || (size_t)(eq - set[i]) >= sizeof(key)) {
            fprintf(stderr, "meter_floor: not KEY=VALUE: %s\n", set[i]);
            goto fail;
        }
        snprintf(key, sizeof(key), "%.*s", (int)(eq - set[i]), set[i]);
        if (sf_meter_config_set(&mc, key, eq + 1, err, sizeof(err)) < 0) {
            fprintf(stderr, "meter_floor: %s\n", err);
            goto fail;
        }
    }
    /* last: the mode is what this run measures */
    if (sf_meter_config_set(&mc, "meter.mode", mode, err, sizeof(err)) < 0)
        goto fail;
    uv_loop_init(&loop);
    if (sf_meter_open(&loop, db, &mc, &r.m) < 0) {
        uv_loop_close(&loop);
        goto fail;
    }
    uv_prepare_init(&loop, &r.prep);
    uv_idle_init(&loop, &r.idle);
    r.prep.data = &r;
    uv_prepare_start(&r.prep, on_prepare);
    uv_idle_start(&r.idle, on_idle);

    t0 = cpu_us(CLOCK_THREAD_CPUTIME_ID);
    p0 = cpu_us(CLOCK_PROCESS_CPUTIME_ID);
    w0 = (double)sf_mono_us();
    uv_run(&loop, UV_RUN_DEFAULT);
    *loop_us = (cpu_us(CLOCK_THREAD_CPUTIME_ID) - t0) / rows;
    printf("%-5s batch %3d: loop thread %6.2f us/row, process %6.2f "
           "us/row, %8.0f rows/s (%ld rows, %ld not recorded)\n",
           mode, batch, *loop_us,
           (cpu_us(CLOCK_PROCESS_CPUTIME_ID) - p0) / rows,
           rows / (((double)sf_mono_us() - w0) / 1e6), rows, r.failed);

    uv_close((uv_handle_t *)&r.prep, NULL);
    uv_close((uv_handle_t *)&r.idle, NULL);
    sf_meter_close(r.m);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    sf_registry_free(reg);
    return r.answered == rows ? 0 : -1;
fail:
    sf_registry_free(reg);
    return -1;
}

int main(int argc, char **argv)
{
    int batch = argc > 1 ? atoi(argv[1]) : 13;
    long rows = argc > 2 ? atol(argv[2]) : 200000;
    char dir[] = "/tmp/sofaas-meterfloor.XXXXXX";
    char cmd[64];
    double off_us = 0, sync_us = 0;
    int rc = 0;

    if (batch < 1 || batch > 4096 || rows < 1) {
        fprintf(stderr, "usage: %s [BATCH [ROWS [KEY=VALUE...]]]\n", argv[0]);
        return 2;
    }
    sf_log_init("meter_floor", SF_LOG_WARN);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    /* off first: it writes nothing, so sync starts on an empty table */
    if (measure(dir, "off", batch, rows, argv + 3, argc - 3, &off_us) < 0 ||
        measure(dir, "sync", batch, rows, argv + 3, argc - 3, &sync_us) < 0)
        rc = 1;
    else
        printf("metering: %.2f us of loop thread CPU per row (sync - off)\n",
               sync_us - off_us);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
