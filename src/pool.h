/*
 * pool.h - the worker pool of sofaasd: spawns sofaas-worker processes, keeps
 * generic ones ready, specializes them for a function version on demand,
 * queues invocations when no instance is free, and turns worker deaths and
 * timeouts into invocation results. It also applies each function's pool
 * settings (sf_fn_config: min_warm, max_concurrency, idle_timeout_s,
 * max_queue, queue_timeout_ms, max_invocations_per_instance, template),
 * backs off crash-looping functions, warms instances ahead of predicted
 * demand and forks instances from per-function templates (docs/pool.md).
 *
 * Runs on the daemon's loop thread only. Every worker has one state (enum in
 * pool.c) changed by one transition function that logs each change at debug
 * level.
 */
#ifndef SF_POOL_H
#define SF_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cgroup.h"
#include "fnlog.h"
#include "ipc.h"
#include "log.h"
#include "registry.h"

typedef struct sf_pool sf_pool;

typedef struct sf_pool_config {
    const char *worker_path;   /* sofaas-worker executable (copied) */
    unsigned generic_min;      /* generic workers kept ready (--workers) */
    unsigned max_workers;      /* all workers together */
    enum sf_log_level worker_log_level;
    sf_cgroup *cgroup;         /* borrowed; memory limits + OOM detection */
    /* Called once, on the loop, when generic_min workers have come up as
     * generic ones (from sf_pool_start when generic_min is 0): the point
     * from which the daemon reports itself ready. May be NULL. */
    void (*on_ready)(void *ctx);
    void *ready_ctx;
    /*
     * Function output (fds 1 and 2 of every worker share one pipe the pool
     * reads) goes here, tagged; borrowed, may be NULL (output discarded).
     * Output of a worker that has not begun loading user code is the
     * worker's own log and is copied to the daemon's stderr instead.
     */
    sf_fnlog *fnlog;
    /* Extra worker arguments (sandbox identity, --sandbox=off), NULL-ended;
     * borrowed: must outlive the pool. */
    const char *worker_args[4];
    /* Background spawns (generic refills, provisioning, warming) per second;
     * spawns for waiting invocations are not limited. 0 = default (100). */
    unsigned spawn_rate;
    bool predictive;           /* warm ahead of the recent peak concurrency */
    /* template: auto turns templates on for a function whose measured init
     * took at least this long. 0 = default (SF_POOL_TEMPLATE_THRESHOLD_MS). */
    unsigned template_threshold_ms;
} sf_pool_config;

#define SF_POOL_TEMPLATE_THRESHOLD_MS 20
#define SF_POOL_SPAWN_RATE_DEFAULT 100
/* Crash loop: this many instance failures within the window put the
 * function in backoff (1 s, doubling up to 32 s). */
#define SF_POOL_CRASH_LOOP_N 5
#define SF_POOL_CRASH_LOOP_WINDOW_MS 10000

/* A function version to run. The pool copies what it keeps. */
typedef struct sf_fn_spec {
    const char *name;
    int64_t version;
    const char *artifact_path;
    sf_fn_config config;
} sf_fn_spec;

enum sf_invoke_status {
    SF_INV_OK = 0,           /* resp is valid (resp->rc may be non-zero) */
    SF_INV_CRASHED,          /* the instance died mid-invocation */
    SF_INV_TIMEOUT,          /* killed at timeout_ms */
    SF_INV_INIT_FAILED,      /* no instance could be initialized */
    SF_INV_INVALID_RESPONSE, /* over the cap or a malformed frame */
    SF_INV_SANDBOX,          /* the sandbox refused a syscall */
    SF_INV_UNAVAILABLE,      /* could not spawn, or shutting down */
    SF_INV_OOM,              /* the instance ran out of memory_mb */
    SF_INV_THROTTLED,        /* queue full (max_queue): retry_after_s set */
    SF_INV_QUEUE_TIMEOUT,    /* waited queue_timeout_ms: retry_after_s set */
    SF_INV_BACKOFF,          /* crash-loop backoff: retry_after_s set */
};

typedef struct sf_invoke_result {
    enum sf_invoke_status status;
    const char *detail;      /* human-readable; valid during the callback */
    const sf_response *resp; /* SF_INV_OK only; valid during the callback */
    bool cold_start;         /* served by a new instance */
    uint64_t instance_id;
    uint64_t queue_us;    /* waiting for an instance */
    uint64_t init_us;     /* load + init of the instance, when cold */
    uint64_t duration_us; /* dispatch to last byte of the response */
    unsigned retry_after_s; /* THROTTLED, QUEUE_TIMEOUT, BACKOFF */
} sf_invoke_result;

/* Start of the detail of a worker the sandbox stopped; the rest names the
 * refused call. api.c maps a validation failure with it to 500
 * sandbox_violation. */
#define SF_POOL_VIOLATION_PREFIX "sandbox refused system call"

typedef void (*sf_invoke_cb)(void *ctx, const sf_invoke_result *res);
/* ok: true if the artifact loaded and initialized; else reason says why. */
typedef void (*sf_validate_cb)(void *ctx, bool ok, const char *reason);

int sf_pool_new(uv_loop_t *loop, const sf_pool_config *cfg, sf_pool **out);
/* Spawns the generic workers. Returns 0 or a negative libuv error. */
int sf_pool_start(sf_pool *p);

/*
 * Runs inv on an instance of fn. inv (and what it points to) must stay valid
 * until cb runs; cb runs exactly once, possibly before this returns.
 */
void sf_pool_invoke(sf_pool *p, const sf_fn_spec *fn, const sf_invoke *inv,
                    sf_invoke_cb cb, void *ctx);

/*
 * Loads fn in a fresh worker (never in the daemon), runs its init, reports,
 * and retires that worker. cb runs exactly once.
 */
void sf_pool_validate(sf_pool *p, const sf_fn_spec *fn, sf_validate_cb cb,
                      void *ctx);

/*
 * Retires instances of function name whose version differs from
 * keep_version (all of them if keep_version < 0): idle ones now, busy ones
 * after their in-flight invocation. Queued invocations of retired versions
 * still run on those versions.
 */
void sf_pool_retire_function(sf_pool *p, const char *name,
                             int64_t keep_version);

/*
 * Changes the pool size at run time (SIGHUP): spawns generic workers up to
 * generic_min, retires idle generic ones above it. max_workers is raised to
 * generic_min + 1 if lower, as in sf_pool_new.
 */
void sf_pool_set_limits(sf_pool *p, unsigned generic_min,
                        unsigned max_workers);

/* Log level for workers spawned from now on (SIGHUP). */
void sf_pool_set_worker_log_level(sf_pool *p, enum sf_log_level level);

/*
 * Declares fn the current version of its function: creates its pool entry
 * and starts its min_warm instances (in the background, rate-limited).
 * Called after a deploy or PATCH and for every live function at start.
 * Returns 0 or -ENOMEM.
 */
int sf_pool_provision(sf_pool *p, const sf_fn_spec *fn);

/* One function's instances (all its versions) and pool state. */
typedef struct sf_pool_fn_stats {
    unsigned loading, idle, busy, draining;
    unsigned templates;   /* 0 or 1 (plus one being retired) */
    unsigned queued;
    unsigned warm_target; /* max(min_warm, predicted), capped */
    double recent_peak;   /* decaying max of concurrency (prediction) */
    bool template_active; /* new instances are forked from a template */
    uint64_t backoff_ms;  /* > 0 while in crash-loop backoff */
    uint64_t template_init_us; /* the template's init time, or 0 */
} sf_pool_fn_stats;
/* Fills s (zeroed when the pool knows nothing of name). */
void sf_pool_function_stats(sf_pool *p, const char *name,
                            sf_pool_fn_stats *s);

/* Counts for status reporting. */
typedef struct sf_pool_stats {
    unsigned spawning, generic, loading, idle, busy, draining, templates;
    unsigned queued;
} sf_pool_stats;
void sf_pool_get_stats(sf_pool *p, sf_pool_stats *s);

/* Calls cb once per function version the pool knows, with its queue length. */
void sf_pool_foreach_queue(sf_pool *p,
                           void (*cb)(void *ctx, const char *name,
                                      int64_t version, unsigned queued),
                           void *ctx);

/*
 * Kills every worker, fails queued invocations with SF_INV_UNAVAILABLE and
 * frees the pool once all handles are closed. NULL-safe.
 */
void sf_pool_free(sf_pool *p);

#endif
