/*
 * meter.h - metering and billing of invocations: one row per invocation in
 * STATE/sofaas.db (table invocations), priced when it is recorded with the
 * price then in force, committed in groups by a writer thread that has its
 * own SQLite connection, rolled up into hourly aggregates after the
 * retention period, and summed per function and month for budgets.
 *
 * Everything in a record is measured by the daemon (pool.c and api.c);
 * nothing a worker says about its own time or memory reaches this module.
 * All functions run on the loop thread unless stated otherwise. Money is
 * integer picos (1e-12 of the currency) per row and nanos in API totals;
 * no floating point touches money anywhere.
 */
#ifndef SF_METER_H
#define SF_METER_H

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "fnconfig.h"
#include "pool.h"

#define SF_PICO_PER_UNIT 1000000000000LL /* picos in one currency unit */
#define SF_PICO_PER_NANO 1000LL

typedef enum sf_meter_mode {
    SF_METER_SYNC = 0, /* a response waits for its row's commit (default) */
    SF_METER_ASYNC,    /* responses go out at once; a crash can lose rows */
    SF_METER_OFF,      /* nothing recorded: for benchmarking only */
} sf_meter_mode;

/* Status classes of a recorded invocation (stored as text). */
typedef enum sf_meter_class {
    SF_MC_OK = 0,
    SF_MC_FUNCTION_ERROR,
    SF_MC_TIMEOUT,
    SF_MC_CRASHED,
    SF_MC_OUT_OF_MEMORY,
    SF_MC_SANDBOX_VIOLATION,
    SF_MC_THROTTLED, /* recorded, not billed */
    SF_MC_REJECTED,  /* recorded, not billed (budget, unavailable) */
    SF_MC_COUNT
} sf_meter_class;

/* Prices and policy; plain data, copied by sf_meter_open. */
typedef struct sf_meter_config {
    sf_meter_mode mode;
    uint32_t retention_days;          /* raw rows kept; then hourly roll-up */
    int64_t price_per_request_pico;   /* default 200000 ($0.20 per million) */
    int64_t price_per_gb_second_pico; /* default 16666700 ($0.0000166667) */
    uint32_t granularity_ms;          /* billed duration rounded up to this */
    char currency[8];                 /* ISO 4217-ish label, e.g. "USD" */
    uint32_t commit_interval_us; /* group commit: at most one per interval */
    bool fsync_commits; /* synchronous=FULL: rows also survive power loss */
    uint32_t rollup_interval_s; /* how often the writer checks retention */
    uint32_t wal_max_mb; /* the WAL is made to restart past this size */
    uint32_t spill_max_mb; /* spill journal's bound; 0: no journal */
} sf_meter_config;

/* The largest seq - start_us of any row (meter.c, next_id): rows with
 * start_us < T all have seq < T + this, so a time range is a rowid range. */
#define SF_METER_SEQ_LAG_SQL                                                  \
    "(SELECT COALESCE(MAX(value), 0) FROM meter_state"                        \
    " WHERE key = 'seq_lag_us')"

#define SF_METER_RETENTION_DEFAULT 30
#define SF_METER_COMMIT_INTERVAL_DEFAULT 300
#define SF_METER_PRICE_REQUEST_MAX (1000 * SF_PICO_PER_UNIT)
#define SF_METER_PRICE_GBS_MAX (100 * SF_PICO_PER_UNIT)

void sf_meter_config_defaults(sf_meter_config *c);

/*
 * Sets one setting from text, by its configuration key: meter.mode
 * (sync|async|off), meter.retention_days, meter.commit_interval_us,
 * meter.fsync (true|false), meter.rollup_interval_s, meter.wal_max_mb,
 * meter.spill_max_mb,
 * billing.price_per_request, billing.price_per_gb_second (decimal strings,
 * exact, at most 12 decimals), billing.granularity_ms, billing.currency.
 * For the daemon's flags and the config file alike. Returns 0, or -EINVAL
 * with err naming the key and what it expects (c unchanged).
 */
int sf_meter_config_set(sf_meter_config *c, const char *key, const char *value,
                        char *err, size_t errlen);

/*
 * Builds *out from the daemon configuration's meter.* and billing.* keys
 * (defaults first). Returns 0, or -EINVAL with err naming the key; used
 * by config.c's validation and by sofaasd at start.
 */
int sf_meter_config_from(const sf_config *cfg, sf_meter_config *out, char *err,
                         size_t errlen);

/* ---- billing arithmetic (pure; unit-tested) ----------------------------- */

/* Billed milliseconds: (duration + init) rounded up to the granularity. */
uint64_t sf_meter_billed_ms(uint64_t duration_us, uint64_t init_us,
                            uint32_t granularity_ms);
/*
 * Cost in picos of one billed invocation: the request price plus
 * billed_ms x memory_mb/1024 GB x the GB-second price, the duration part
 * rounded up to a whole pico. Never overflows within the price caps.
 */
int64_t sf_meter_cost_pico(uint64_t billed_ms, uint32_t memory_mb,
                           int64_t price_request_pico, int64_t price_gbs_pico);

const char *sf_meter_class_name(sf_meter_class c);
/* -1 if name is not a class. */
int sf_meter_class_parse(const char *name, size_t len);
/* Throttled and rejected invocations are recorded, never billed. */
bool sf_meter_class_billable(sf_meter_class c);
/*
 * The one mapping from a pool outcome to a status class: st is the pool
 * status, fn_rc the function's return code when st is SF_INV_OK.
 */
sf_meter_class sf_meter_class_of(enum sf_invoke_status st, int fn_rc);

/* ---- recording ---------------------------------------------------------- */

/* One invocation, as measured by the daemon. Strings are copied. */
typedef struct sf_meter_rec {
    const char *request_id; /* the HTTP request id (client may choose it) */
    const char *function;
    int64_t version;
    const char *tenant; /* NULL until tenancy exists */
    int64_t start_us;   /* wall clock, µs since the epoch, UTC */
    uint64_t queue_us;
    uint64_t duration_us; /* dispatch to last byte of the response */
    uint64_t init_us;     /* cold starts only */
    bool cold_start;
    uint64_t instance_id;
    sf_meter_class cls;
    int http_status;
    uint64_t bytes_in, bytes_out;
    uint32_t memory_mb;
    int64_t budget_nanos; /* the function's budget (0: none), for warnings */
    sf_budget_action budget_action;
} sf_meter_rec;

typedef struct sf_meter sf_meter;

/*
 * Called once per record on the loop thread: in sync mode after the row is
 * committed (status 0) or could not be (status -EIO); in async and off mode
 * at once, with 0. billed_ms is what the row bills.
 */
typedef void (*sf_meter_done_cb)(void *ctx, int status, uint64_t billed_ms);

/*
 * Opens the writer's own connection to STATE/sofaas.db (the schema must
 * exist: registry.c migrated it), reconciles what a crash left, rolls up
 * rows older than the retention, loads this month's spend per function and
 * starts the writer thread. Returns 0 or -errno with a reason logged.
 */
int sf_meter_open(uv_loop_t *loop, const char *db_path,
                  const sf_meter_config *cfg, sf_meter **out);
/*
 * Commits what is queued, runs every pending callback, stops the thread and
 * frees once the async handle is closed. NULL-safe. Call before the loop's
 * final run.
 */
void sf_meter_close(sf_meter *m);

/* m's configuration; the defaults if m is NULL (no meter: nothing is
 * recorded, record/budget calls are no-ops). */
const sf_meter_config *sf_meter_config_of(const sf_meter *m);
/*
 * Billed cost recorded since this daemon started, in currency units (for
 * the sofaas_billed_cost_total counter of /metrics; sf_metrics_cost_fn).
 * ctx is the sf_meter. A float only for exposition: money is never
 * computed with it.
 */
double sf_meter_cost_total(void *ctx);

/* The loop m runs on, or NULL if m is NULL. */
uv_loop_t *sf_meter_loop(const sf_meter *m);

/*
 * Prices and queues r. cb runs exactly once (see sf_meter_done_cb), never
 * before this returns in sync mode, possibly before it returns otherwise.
 */
void sf_meter_record(sf_meter *m, const sf_meter_rec *r, sf_meter_done_cb cb,
                     void *ctx);

/*
 * True if function's budget action is block and this month's spend has
 * reached the budget: the invocation must be refused with 402.
 */
bool sf_meter_budget_blocks(sf_meter *m, const char *function,
                            const sf_fn_config *cfg);
/* This month's spend and budget state of function, for GET
 * /v1/functions/{name}. Caller owns the object; NULL if no budget set. */
cJSON *sf_meter_budget_json(sf_meter *m, const char *function,
                            const sf_fn_config *cfg);

/*
 * Rolls up rows older than the retention into usage_hourly and deletes
 * them, ROLLUP_BATCH rows per transaction, at most max_batches of them
 * (0: until done; *more, if not NULL, says whether rows are left). Uses
 * the writer's connection on the calling thread: only before the writer
 * starts (sf_meter_open) or from the writer itself. Returns the number of
 * rows rolled up, or -EIO.
 */
int64_t sf_meter_rollup(sf_meter *m, int64_t now_us, unsigned max_batches,
                        bool *more);

#endif
