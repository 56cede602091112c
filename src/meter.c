/*
 * meter.c - invocation records, billing arithmetic, group commit, retention
 * roll-up and monthly spend for budgets (see meter.h).
 *
 * Group commit: the loop thread prices a record and keeps it in a list for
 * the current loop iteration. A uv_check handle (after the iteration's I/O
 * callbacks) then either commits the list itself and runs the callbacks
 * that send the HTTP responses (sync mode without fsync: no thread hop, so
 * the response waits only for an append to the WAL), or hands it to the
 * writer thread with one lock (async mode, or fsync on: an fsync must not
 * stall the loop). The writer, with its own SQLite connection, takes
 * everything queued -- at most once per commit_interval_us -- inserts it
 * in one transaction and hands the batch back through a uv_async_t. The
 * writer also runs the retention roll-up; dbmu serializes the two users of
 * the connection. WAL checkpoints run on a third thread with a third
 * connection (PASSIVE: they never block a commit), so no commit on the
 * loop ever includes a checkpoint's fsync; the checkpointer also makes
 * the write that restarts the WAL (and fsyncs its header). When the loop
 * cannot commit at once, its rows go to the spill journal and are
 * answered ("spill journal" below). bench/meter_overhead.sh measures the
 * cost (docs/metering.md).
 *
 * Rows are inserted with INSERT OR IGNORE on the daemon-assigned invocation
 * id (the table's INTEGER PRIMARY KEY, never reused), so replaying a batch
 * can never count an invocation twice.
 */
#include "meter.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "journal.h"
#include "log.h"
#include "util.h"

#define ROLLUP_BATCH 2000 /* rows per roll-up transaction */
#define INLINE_BUSY_MS 2    /* a loop commit waits this long for the lock */
#define WRITER_BUSY_MS 10000
#define CHECKPOINTER_BUSY_MS 10000
#define HOUR_US 3600000000LL
#define DAY_US (24 * HOUR_US)

/* ---- config, decimals, arithmetic --------------------------------------- */

void sf_meter_config_defaults(sf_meter_config *c)
{
    memset(c, 0, sizeof(*c));
    c->mode = SF_METER_SYNC;
    c->retention_days = SF_METER_RETENTION_DEFAULT;
    c->price_per_request_pico = 200000;     /* $0.20 / 1e6 requests */
    c->price_per_gb_second_pico = 16666700; /* $0.0000166667 */
    c->granularity_ms = 1;
    c->commit_interval_us = SF_METER_COMMIT_INTERVAL_DEFAULT;
    c->rollup_interval_s = 3600;
    c->wal_max_mb = 64;
    c->spill_max_mb = 64;
    snprintf(c->currency, sizeof(c->currency), "USD");
}

static int set_uint(const char *v, uint64_t lo, uint64_t hi, uint32_t *out)
{
    uint64_t u;

    if (sf_parse_u64(v, strlen(v), hi, &u) < 0 || u < lo)
        return -EINVAL;
    *out = (uint32_t)u;
    return 0;
}

int sf_meter_config_set(sf_meter_config *c, const char *key, const char *v,
                        char *err, size_t errlen)
{
    const char *expect;
    int64_t pico;

    if (strcmp(key, "meter.mode") == 0) {
        expect = "sync, async or off";
        if (strcmp(v, "sync") == 0)
            c->mode = SF_METER_SYNC;
        else if (strcmp(v, "async") == 0)
            c->mode = SF_METER_ASYNC;
        else if (strcmp(v, "off") == 0)
            c->mode = SF_METER_OFF;
        else
            goto bad;
    } else if (strcmp(key, "meter.retention_days") == 0) {
        expect = "days in 0..36500 (0 keeps rows forever)";
        if (set_uint(v, 0, 36500, &c->retention_days) < 0)
            goto bad;
    } else if (strcmp(key, "meter.commit_interval_us") == 0) {
        expect = "microseconds in 0..1000000";
        if (set_uint(v, 0, 1000000, &c->commit_interval_us) < 0)
            goto bad;
    } else if (strcmp(key, "meter.wal_max_mb") == 0) {
        expect = "MiB in 1..4096";
        if (set_uint(v, 1, 4096, &c->wal_max_mb) < 0)
            goto bad;
    } else if (strcmp(key, "meter.spill_max_mb") == 0) {
        expect = "MiB in 0..4096 (0 turns the spill journal off)";
        if (set_uint(v, 0, 4096, &c->spill_max_mb) < 0)
            goto bad;
    } else if (strcmp(key, "meter.rollup_interval_s") == 0) {
        expect = "seconds in 1..86400";
        if (set_uint(v, 1, 86400, &c->rollup_interval_s) < 0)
            goto bad;
    } else if (strcmp(key, "meter.fsync") == 0) {
        expect = "true or false";
        if (strcmp(v, "true") == 0)
            c->fsync_commits = true;
        else if (strcmp(v, "false") == 0)
            c->fsync_commits = false;
        else
            goto bad;
    } else if (strcmp(key, "billing.price_per_request") == 0) {
        expect = "a decimal in 0..1000 with at most 12 decimals";
        if (sf_parse_decimal(v, strlen(v), 12, SF_METER_PRICE_REQUEST_MAX,
                             &pico) < 0)
            goto bad;
        c->price_per_request_pico = pico;
    } else if (strcmp(key, "billing.price_per_gb_second") == 0) {
        expect = "a decimal in 0..100 with at most 12 decimals";
        if (sf_parse_decimal(v, strlen(v), 12, SF_METER_PRICE_GBS_MAX, &pico) <
            0)
            goto bad;
        c->price_per_gb_second_pico = pico;
    } else if (strcmp(key, "billing.granularity_ms") == 0) {
        expect = "milliseconds in 1..60000";
        if (set_uint(v, 1, 60000, &c->granularity_ms) < 0)
            goto bad;
    } else if (strcmp(key, "billing.currency") == 0) {
        /* It is printed in CSV and logs: no separators or quotes. */
        expect = "1 to 7 letters, digits or symbols, no comma or quote";
        if (v[0] == '\0' || strlen(v) >= sizeof(c->currency) ||
            strpbrk(v, ",\"\r\n \\") != NULL)
            goto bad;
        snprintf(c->currency, sizeof(c->currency), "%s", v);
    } else {
        snprintf(err, errlen, "%.64s: unknown metering setting", key);
        return -EINVAL;
    }
    return 0;
bad:
    snprintf(err, errlen, "%s: expected %s, got '%.64s'", key, expect, v);
    return -EINVAL;
}

int sf_meter_config_from(const sf_config *cfg, sf_meter_config *out, char *err,
                         size_t errlen)
{
    const sf_config_meter *m = &cfg->meter;
    const sf_config_billing *b = &cfg->billing;
    /* config.c has range-checked the numbers; what only the meter can
     * judge (the mode's meaning, exact decimal prices, the currency label)
     * goes through sf_meter_config_set. */
    const struct {
        const char *key, *value;
    } kv[] = {
        {"meter.mode", m->mode ? m->mode : "sync"},
        {"billing.price_per_request",
         b->price_per_request ? b->price_per_request : "0.0000002"},
        {"billing.price_per_gb_second",
         b->price_per_gb_second ? b->price_per_gb_second : "0.0000166667"},
        {"billing.currency", b->currency ? b->currency : "USD"},
    };

    sf_meter_config_defaults(out);
    out->retention_days = m->retention_days;
    out->commit_interval_us = m->commit_interval_us;
    out->fsync_commits = m->fsync;
    out->rollup_interval_s = m->rollup_interval_s;
    out->wal_max_mb = m->wal_max_mb;
    out->spill_max_mb = m->spill_max_mb;
    out->granularity_ms = b->granularity_ms;
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
        if (sf_meter_config_set(out, kv[i].key, kv[i].value, err, errlen) < 0)
            return -EINVAL;
    return 0;
}

uint64_t sf_meter_billed_ms(uint64_t duration_us, uint64_t init_us,
                            uint32_t granularity_ms)
{
    uint64_t g = (uint64_t)(granularity_ms ? granularity_ms : 1) * 1000;
    uint64_t t = duration_us + init_us;

    return (t + g - 1) / g * (g / 1000);
}

int64_t sf_meter_cost_pico(uint64_t billed_ms, uint32_t memory_mb,
                           int64_t price_request_pico, int64_t price_gbs_pico)
{
    /* GB-seconds = billed_ms/1000 x memory_mb/1024. 128-bit intermediate:
     * 1.8e6 ms x 10240 MB x 1e14 pico fits easily; the result stays below
     * 2^63 within the price caps. */
    unsigned __int128 num =
        (unsigned __int128)billed_ms * memory_mb * (uint64_t)price_gbs_pico;
    unsigned __int128 den = 1000u * 1024u;
    unsigned __int128 dur = (num + den - 1) / den;

    return price_request_pico + (int64_t)dur;
}

static const char *const class_names[SF_MC_COUNT] = {
    [SF_MC_OK] = "ok",
    [SF_MC_FUNCTION_ERROR] = "function_error",
    [SF_MC_TIMEOUT] = "timeout",
    [SF_MC_CRASHED] = "crashed",
    [SF_MC_OUT_OF_MEMORY] = "out_of_memory",
    [SF_MC_SANDBOX_VIOLATION] = "sandbox_violation",
    [SF_MC_THROTTLED] = "throttled",
    [SF_MC_REJECTED] = "rejected",
};

const char *sf_meter_class_name(sf_meter_class c)
{
    return (unsigned)c < SF_MC_COUNT ? class_names[c] : "function_error";
}

int sf_meter_class_parse(const char *name, size_t len)
{
    for (int c = 0; c < SF_MC_COUNT; c++)
        if (strlen(class_names[c]) == len &&
            strncmp(class_names[c], name, len) == 0)
            return c;
    return -1;
}

bool sf_meter_class_billable(sf_meter_class c)
{
    return c != SF_MC_THROTTLED && c != SF_MC_REJECTED;
}

sf_meter_class sf_meter_class_of(enum sf_invoke_status st, int fn_rc)
{
    /* The one table from pool outcomes to classes. No default: -Wswitch
     * makes a status added to the pool a build error until it is listed. */
    switch (st) {
    case SF_INV_OK:
        return fn_rc == 0 ? SF_MC_OK : SF_MC_FUNCTION_ERROR;
    case SF_INV_CRASHED:
        return SF_MC_CRASHED;
    case SF_INV_TIMEOUT:
        return SF_MC_TIMEOUT;
    case SF_INV_INIT_FAILED:      /* the function's own init failed */
    case SF_INV_INVALID_RESPONSE: /* it answered beyond the caps */
        return SF_MC_FUNCTION_ERROR;
    case SF_INV_SANDBOX:
        return SF_MC_SANDBOX_VIOLATION;
    case SF_INV_UNAVAILABLE: /* we could not run it: not billed */
        return SF_MC_REJECTED;
    case SF_INV_OOM:
        return SF_MC_OUT_OF_MEMORY;
    case SF_INV_THROTTLED:     /* max_queue / queue_timeout_ms: not run */
    case SF_INV_QUEUE_TIMEOUT:
        return SF_MC_THROTTLED;
    case SF_INV_BACKOFF: /* crash-loop backoff: not run */
        return SF_MC_REJECTED;
    }
    return SF_MC_FUNCTION_ERROR;
}

/* ---- the meter ---------------------------------------------------------- */

/* Insert statements for 1, 2, 4, 8 and 16 rows: a batch of n rows takes
 * at most log2(n) + 1 statement steps (14 rows: 8 + 4 + 2), each step's
 * fixed cost (cursor, VDBE setup) shared by its rows. */
#define INSERT_SIZES 5

typedef struct rec {
    struct rec *next;
    sf_meter_done_cb cb;
    void *ctx;
    int status;
    /* The row, from id to the end: plain data (no pointers), copied whole
     * into the spill journal (spill_encode). */
    int64_t id; /* seq: assigned on the loop thread, unique for ever */
    char request_id[129];
    char function[64];
    char tenant[64];
    bool has_tenant;
    int64_t version, start_us;
    uint64_t queue_us, duration_us, init_us, instance_id, bytes_in, bytes_out;
    bool cold_start, billed;
    sf_meter_class cls;
    int http_status;
    uint32_t memory_mb;
    uint64_t billed_ms;
    int64_t cost_pico;
} rec;

/* This month's spend of one function (loop thread only). */
typedef struct spend {
    char function[64];
    int64_t pico;
    int warned; /* highest warning logged this period: 0, 80 or 100 */
} spend;

struct sf_meter {
    uv_loop_t *loop;
    sf_meter_config cfg;
    sqlite3 *db; /* the writer's connection */
    sqlite3_stmt *ins[INSERT_SIZES]; /* ins[k] inserts 2^k rows */
    sqlite3_stmt *begin, *commit; /* prepared once: parsed per commit before */
    sqlite3_stmt *lag_set;        /* raises meter_state's seq_lag_us */
    int64_t lag_stored; /* seq_lag_us as committed (under dbmu) */

    pthread_t thread;
    bool thread_started;
    /* checkpointer: its own connection and thread, so WAL checkpoints
     * (which fsync) never sit inside a commit that responses wait for */
    sqlite3 *ckdb;
    pthread_t ckthread;
    bool ck_started, ck_wanted;
    pthread_cond_t ckcv;
    uint64_t checkpoints;
    int ck_next_pages; /* writer thread: WAL size that asks for the next */
    int ck_last_pages; /* writer thread: WAL size after the last commit */
    int ck_wal_pages;  /* under mu: the WAL's size when a checkpoint was asked */
    int ck_every;      /* ask for a checkpoint per this many new frames */
    int ck_restart;    /* frames: past this the WAL is made to restart */
    char size_limit_sql[64]; /* journal_size_limit, for both connections */
    char *wal_path;          /* for wal_prefetch */
    int64_t frame_bytes;     /* a WAL frame: header and page */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rec *local_head, *local_tail; /* this loop iteration's (loop only) */
    rec *pend_head, *pend_tail;   /* loop -> writer */
    rec *done_head, *done_tail;   /* writer -> loop */
    bool stopping;
    bool writer_idle; /* the writer waits for rows (not for its interval) */
    /* Serializes use of db between the loop (inline commits, sync mode)
     * and the writer thread (async batches, roll-up). */
    pthread_mutex_t dbmu;
    bool inline_commit; /* sync without fsync: the loop commits itself */
    /* The spill journal (inline commits only, else NULL): rows the loop
     * could not commit at once, answered and committed later. */
    sf_journal *spill;
    rec *spill_head, *spill_tail; /* answered, not yet committed (loop) */
    uint64_t spilled;             /* rows ever spilled (loop) */
    uint64_t spill_run;           /* rows spilled since it was last empty */
    bool spill_warned;            /* a failed spill was logged (loop) */
    bool spill_failing; /* their last commit failed (not busy): back off */
    uv_async_t async;
    uv_check_t check;
    uv_timer_t retry; /* wakes an idle loop to commit spilled rows */
    int open_handles; /* while closing: freed after the last one */

    uint64_t rows, commits, commit_us; /* writer thread's counters */

    int64_t last_id; /* the last invocation id handed out (loop thread) */
    int64_t billed_pico_total; /* since start, committed or queued (loop) */
    int period;                /* year*12+month of the spend table */
    spend *spends;
    size_t nspends, capspends;
};

static const char insert_sql[] =
    "INSERT OR IGNORE INTO invocations (seq, request_id, function,"
    " version, tenant, start_us, queue_us, duration_us, init_us, cold_start,"
    " instance_id, status, http_status, bytes_in, bytes_out, memory_mb,"
    " billed, billed_ms, cost_pico, price_request_pico,"
    " price_gb_second_pico, granularity_ms, currency) VALUES ";
/* The row's 19 per-invocation values; the price columns in force follow as
 * literals (they change only with a restart, see prepare_insert). */
static const char insert_row[] = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,";

static int exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        SF_ERR("msg=\"meter statement failed\" error=\"%s\"",
               msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -EIO;
    }
    return 0;
}

static int period_of(int64_t us)
{
    time_t s = (time_t)(us / 1000000);
    struct tm tm;

    gmtime_r(&s, &tm);
    return (tm.tm_year + 1900) * 12 + tm.tm_mon;
}

/* Start of the month `period` in µs since the epoch. */
static int64_t period_start_us(int period)
{
    struct tm tm = {
        .tm_year = period / 12 - 1900, .tm_mon = period % 12, .tm_mday = 1};

    return (int64_t)timegm(&tm) * 1000000;
}

static spend *spend_of(sf_meter *m, const char *function, bool create)
{
    for (size_t i = 0; i < m->nspends; i++)
        if (strcmp(m->spends[i].function, function) == 0)
            return &m->spends[i];
    if (!create)
        return NULL;
    if (m->nspends == m->capspends) {
        size_t cap = m->capspends ? m->capspends * 2 : 16;
        spend *n = realloc(m->spends, cap * sizeof(*n));
        if (n == NULL)
            return NULL;
        m->spends = n;
        m->capspends = cap;
    }
    memset(&m->spends[m->nspends], 0, sizeof(spend));
    snprintf(m->spends[m->nspends].function, 64, "%s", function);
    return &m->spends[m->nspends++];
}

/* Starts a new period's spend table when the month has changed. */
static void roll_period(sf_meter *m, int64_t now_us)
{
    int p = period_of(now_us);

    if (p != m->period) {
        m->period = p;
        m->nspends = 0;
    }
}

/* Loads this month's spend per function from rows and aggregates. */
static int load_spend(sf_meter *m)
{
    static const char sql[] =
        "SELECT function, SUM(c) FROM ("
        " SELECT function, cost_pico AS c FROM invocations"
        "  WHERE seq >= ?1 AND start_us >= ?1 AND currency = ?2"
        " UNION ALL SELECT function, cost_pico FROM usage_hourly"
        "  WHERE hour_us >= ?1 AND currency = ?2) GROUP BY function";
    sqlite3_stmt *st;
    int rc;

    m->period = period_of(sf_wall_us());
    m->nspends = 0;
    if (sqlite3_prepare_v2(m->db, sql, -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_int64(st, 1, period_start_us(m->period));
    sqlite3_bind_text(st, 2, m->cfg.currency, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        spend *s = spend_of(m, (const char *)sqlite3_column_text(st, 0), true);
        if (s == NULL) {
            sqlite3_finalize(st);
            return -ENOMEM;
        }
        s->pico = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

/*
 * Invocation ids continue after the largest ever stored. Rolled-up rows
 * are gone from invocations, so the high-water mark is also kept in
 * meter_state (written with each roll-up) and never goes back.
 */
static int load_last_id(sf_meter *m)
{
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(m->db,
                           "SELECT MAX(COALESCE((SELECT MAX(seq) FROM "
                           "invocations), 0), COALESCE((SELECT value FROM "
                           "meter_state WHERE key = 'last_rolled_seq'), 0)),"
                           " " SF_METER_SEQ_LAG_SQL,
                           -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        m->last_id = sqlite3_column_int64(st, 0);
        m->lag_stored = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

/* ---- checkpointer ------------------------------------------------------ */

#define CHECKPOINT_PAGES 1000 /* SQLite's own auto-checkpoint threshold */

/* Writer thread, after each commit: asks for a checkpoint past the
 * threshold (replaces SQLite's auto-checkpoint on this connection). */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    sf_meter *m = arg;

    (void)db;
    (void)name;
    /* Once per CHECKPOINT_PAGES new frames, not at every commit past the
     * threshold: while commits keep coming a PASSIVE checkpoint cannot
     * reset the log, so "past the threshold" stays true and asking each
     * time ran one checkpoint (with its fsyncs) per few commits. */
    if (pages < m->ck_last_pages)
        m->ck_next_pages = m->ck_every; /* the log was reset */
    m->ck_last_pages = pages;
    if (pages >= m->ck_next_pages) {
        m->ck_next_pages = pages + m->ck_every;
        pthread_mutex_lock(&m->mu);
        m->ck_wanted = true;
        m->ck_wal_pages = pages;
        pthread_cond_signal(&m->ckcv);
        pthread_mutex_unlock(&m->mu);
    }
    return SQLITE_OK;
}

/*
 * The WAL's bounds from meter.wal_max_mb: the frame count past which it is
 * made to restart (checkpointer_main), a checkpoint every quarter of that
 * (at most every CHECKPOINT_PAGES frames), and journal_size_limit at twice
 * the size, which trims a WAL left larger (by an older sofaasd) when it
 * next restarts but leaves a normal one's blocks allocated for reuse.
 */
static int wal_limits(sf_meter *m)
{
    sqlite3_stmt *st;
    int64_t max = (int64_t)m->cfg.wal_max_mb << 20, frame = 4096;

    if (sqlite3_prepare_v2(m->db, "PRAGMA page_size", -1, &st, NULL) !=
        SQLITE_OK)
        return -EIO;
    if (sqlite3_step(st) == SQLITE_ROW)
        frame = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    frame += 24; /* the frame header */
    m->frame_bytes = frame;
    m->ck_restart = (int)(max / frame);
    m->ck_every = m->ck_restart / 4;
    if (m->ck_every > CHECKPOINT_PAGES)
        m->ck_every = CHECKPOINT_PAGES;
    if (m->ck_every < 1)
        m->ck_every = 1;
    m->ck_next_pages = m->ck_every;
    snprintf(m->size_limit_sql, sizeof(m->size_limit_sql),
             "PRAGMA journal_size_limit=%lld", (long long)(2 * max));
    return exec(m->db, m->size_limit_sql);
}

/* One PASSIVE checkpoint. Returns the WAL's frame count when it began
 * (all of them copied unless a reader held some back), or -1. */
static int checkpoint(sf_meter *m)
{
    int log = 0, done = 0;

    if (sqlite3_wal_checkpoint_v2(m->ckdb, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                  &log, &done) != SQLITE_OK) {
        SF_WARN("msg=\"WAL checkpoint failed\" error=\"%s\"",
                sqlite3_errmsg(m->ckdb));
        return -1;
    }
    return log;
}

/*
 * Checkpointer, holding dbmu after a complete checkpoint: starts the WAL
 * over with a write of its own. The first write after a complete
 * checkpoint restarts the WAL, and SQLite fsyncs the new WAL header then
 * (synchronous=NORMAL too, so that a write reordered after the restart
 * cannot corrupt the database). Left to the meter's next commit, that
 * fsync ran on the loop thread (fdatasync took 15-180 ms here under
 * load), with every request waiting. Here the loop spills meanwhile.
 * The write counts these writes in meter_state (wal_restarts): each one
 * restarts the WAL unless a reader still used frames the checkpoint could
 * not copy. Busy (another connection writes): skipped, and that writer
 * restarts it.
 */
static void restart_wal(sf_meter *m)
{
    static const char sql[] =
        "INSERT INTO meter_state (key, value) VALUES ('wal_restarts', 1)"
        " ON CONFLICT (key) DO UPDATE SET value = value + 1";

    sqlite3_busy_timeout(m->ckdb, 0);
    if (sqlite3_exec(m->ckdb, sql, NULL, NULL, NULL) != SQLITE_OK)
        SF_DEBUG("msg=\"WAL restart left to the next writer\" error=\"%s\"",
                 sqlite3_errmsg(m->ckdb));
    sqlite3_busy_timeout(m->ckdb, CHECKPOINTER_BUSY_MS);
}

/*
 * Checkpointer: asks the kernel to read the WAL frames the meter will
 * write next into the page cache -- those after frame `from` and those
 * from the start (where the WAL goes after a restart), two checkpoint
 * intervals of each. A WAL frame is a 24-byte header and a page, so
 * every write covers parts of two 4 KiB pages; where the page cache no
 * longer holds one, write() first reads it from the disk, on the loop
 * thread. On the reference VM the host reclaims idle page cache within
 * seconds (a 64 MiB WAL is rewritten every ~10 s under load), and while
 * the kernel flushes 200 MB of dirty log pages every 30 s such a read
 * waited 100-250 ms (perf: pwrite64 -> ext4_block_write_begin ->
 * wait_on_buffer), with every request waiting too. POSIX_FADV_WILLNEED
 * starts the reads and returns.
 */
static void wal_prefetch(sf_meter *m, int from)
{
    off_t len = (off_t)(2 * m->ck_every) * m->frame_bytes;
    int fd = open(m->wal_path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return;
    posix_fadvise(fd, 32 + (off_t)from * m->frame_bytes, len,
                  POSIX_FADV_WILLNEED);
    if (from > 0)
        posix_fadvise(fd, 0, len, POSIX_FADV_WILLNEED);
    close(fd);
}

/*
 * PASSIVE checkpoints never block the writer or readers. But the WAL only
 * starts again from its beginning when a transaction begins with every
 * frame copied, and under sustained load a commit always lands while a
 * checkpoint (with its fsyncs) runs: the WAL grew without bound, 320 MB
 * in 20 s of wrk, and the file keeps that size afterwards; every frame was
 * an append that made ext4 allocate blocks (~8 us per frame on the
 * reference VM against ~4 us rewriting allocated ones). So once the WAL
 * is past meter.wal_max_mb (ck_restart frames), the checkpointer runs one
 * more pass holding dbmu: no meter transaction can start meanwhile (the
 * loop spills its rows and answers them, spill_local), so that pass
 * copies the last frames and restart_wal starts the WAL over. Unlocked
 * passes first, until one has little left to copy (each copies what came
 * during the one before), so the locked pass is short: its fsyncs and a
 * few dozen frames, once per wal_max_mb of WAL.
 */
#define CHECKPOINT_CATCH_UP_PASSES 8
#define CHECKPOINT_SMALL_PAGES 64
static void *checkpointer_main(void *arg)
{
    sf_meter *m = arg;

    pthread_mutex_lock(&m->mu);
    for (;;) {
        int pages, log;

        while (!m->ck_wanted && !m->stopping)
            pthread_cond_wait(&m->ckcv, &m->mu);
        if (m->stopping)
            break;
        m->ck_wanted = false;
        pages = m->ck_wal_pages;
        pthread_mutex_unlock(&m->mu);
        if ((log = checkpoint(m)) >= 0 && pages >= m->ck_restart) {
            uint64_t t0;
            int pass = 0, prev;
            do { /* each pass copies what came during the one before */
                prev = log;
                log = checkpoint(m);
            } while (log >= 0 && log - prev > CHECKPOINT_SMALL_PAGES &&
                     ++pass < CHECKPOINT_CATCH_UP_PASSES);
            t0 = sf_mono_us();
            pthread_mutex_lock(&m->dbmu);
            prev = log;
            if ((log = checkpoint(m)) >= 0)
                restart_wal(m);
            pthread_mutex_unlock(&m->dbmu);
            SF_DEBUG("msg=\"WAL caught up for a restart\" wal_pages=%d "
                     "passes=%d last_pages=%d held_us=%llu",
                     pages, pass + 2, log - prev,
                     (unsigned long long)(sf_mono_us() - t0));
        }
        wal_prefetch(m, pages);
        pthread_mutex_lock(&m->mu);
        m->checkpoints++;
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* ---- writer thread ------------------------------------------------------ */

/* Binds r to parameters i.. of st. Returns the next parameter index. */
static int bind_rec(sqlite3_stmt *st, int i, const rec *r)
{
    sqlite3_bind_int64(st, i++, r->id);
    sqlite3_bind_text(st, i++, r->request_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, i++, r->function, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, i++, r->version);
    if (r->has_tenant)
        sqlite3_bind_text(st, i++, r->tenant, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i++);
    sqlite3_bind_int64(st, i++, r->start_us);
    sqlite3_bind_int64(st, i++, (int64_t)r->queue_us);
    sqlite3_bind_int64(st, i++, (int64_t)r->duration_us);
    sqlite3_bind_int64(st, i++, (int64_t)r->init_us);
    sqlite3_bind_int(st, i++, r->cold_start);
    sqlite3_bind_int64(st, i++, (int64_t)r->instance_id);
    sqlite3_bind_text(st, i++, sf_meter_class_name(r->cls), -1, SQLITE_STATIC);
    sqlite3_bind_int(st, i++, r->http_status);
    sqlite3_bind_int64(st, i++, (int64_t)r->bytes_in);
    sqlite3_bind_int64(st, i++, (int64_t)r->bytes_out);
    sqlite3_bind_int(st, i++, (int)r->memory_mb);
    sqlite3_bind_int(st, i++, r->billed);
    sqlite3_bind_int64(st, i++, (int64_t)r->billed_ms);
    sqlite3_bind_int64(st, i++, r->cost_pico);
    return i;
}

/* Runs st once over the n rows from *p on, advancing *p. */
static int insert_rows(sf_meter *m, sqlite3_stmt *st, rec **p, int n)
{
    int i = 1, r;
    rec *first = *p;

    for (int k = 0; k < n; k++, *p = (*p)->next)
        i = bind_rec(st, i, *p);
    r = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
    if (r < 0)
        SF_ERR("msg=\"cannot record invocations\" rows=%d "
               "first_request_id=%s error=\"%s\"",
               n, first->request_id, sqlite3_errmsg(m->db));
    sqlite3_reset(st); /* every parameter is bound again next time */
    return r;
}

/* Runs a prepared statement that returns no rows. */
static int step_once(sqlite3_stmt *st)
{
    int r = sqlite3_step(st);

    sqlite3_reset(st);
    if (r == SQLITE_BUSY)
        return -EBUSY;
    return r == SQLITE_DONE ? 0 : -EIO;
}

/* Inserts a batch in one transaction, the widest statement that fits
 * what is left each time. Returns 0, -EBUSY when the database's write
 * lock could not be had within the busy timeout (nothing was written), or
 * -EIO. */
static int write_batch(sf_meter *m, rec *head)
{
    int r = 0, left = 0;
    int64_t lag = m->lag_stored;
    rec *p = head;

    for (rec *q = head; q != NULL; q = q->next) {
        if (q->id - q->start_us > lag)
            lag = q->id - q->start_us;
        left++;
    }
    if ((r = step_once(m->begin)) < 0) {
        if (r == -EBUSY)
            return r; /* the caller may retry elsewhere; nothing written */
        SF_ERR("msg=\"meter cannot begin a transaction\" error=\"%s\"",
               sqlite3_errmsg(m->db));
        return -EIO;
    }
    while (r == 0 && left > 0) {
        int k = INSERT_SIZES - 1;
        while ((1 << k) > left)
            k--;
        r = insert_rows(m, m->ins[k], &p, 1 << k);
        left -= 1 << k;
    }
    if (r == 0 && lag > m->lag_stored) {
        sqlite3_bind_int64(m->lag_set, 1, lag);
        r = step_once(m->lag_set) == 0 ? 0 : -EIO;
    }
    if (r == 0 && step_once(m->commit) == 0) {
        m->lag_stored = lag;
        return 0;
    }
    if (r == 0)
        SF_ERR("msg=\"meter cannot commit\" error=\"%s\"",
               sqlite3_errmsg(m->db));
    exec(m->db, "ROLLBACK");
    return -EIO;
}

/* Prepares the insert of n rows, with the prices in force as literals:
 * four values fewer to bind per row, and they cannot change without a
 * restart (a new statement). */
static int prepare_insert(sqlite3 *db, const sf_meter_config *c, int n,
                          sqlite3_stmt **out)
{
    sf_buf sql = {0};
    char *prices = sqlite3_mprintf("%lld,%lld,%u,%Q)",
                                   (long long)c->price_per_request_pico,
                                   (long long)c->price_per_gb_second_pico,
                                   c->granularity_ms, c->currency);
    int r = prices ? sf_buf_append(&sql, insert_sql, sizeof(insert_sql) - 1)
                   : -ENOMEM;

    for (int k = 0; k < n && r == 0; k++) {
        if (k > 0)
            r = sf_buf_append(&sql, ",", 1);
        if (r == 0)
            r = sf_buf_append(&sql, insert_row, sizeof(insert_row) - 1);
        if (r == 0)
            r = sf_buf_append(&sql, prices, strlen(prices));
    }
    sqlite3_free(prices);
    if (r < 0) {
        sf_buf_free(&sql);
        return -ENOMEM;
    }
    r = sqlite3_prepare_v3(db, sql.data, (int)sql.len,
                           SQLITE_PREPARE_PERSISTENT, out, NULL);
    sf_buf_free(&sql);
    if (r != SQLITE_OK) {
        SF_ERR("msg=\"meter cannot prepare insert\" rows=%d error=\"%s\"", n,
               sqlite3_errmsg(db));
        return -EIO;
    }
    return 0;
}

/* After a commit attempt started at t0: each record's status, the
 * counters. Under dbmu (the counters are shared by loop and writer). */
static void settle(sf_meter *m, rec *batch, int r, uint64_t t0)
{
    m->commit_us += sf_mono_us() - t0;
    m->commits++;
    for (rec *p = batch; p != NULL; p = p->next) {
        p->status = r;
        m->rows++;
    }
}

static struct timespec mono_after(uint64_t us)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(us / 1000000);
    ts.tv_nsec += (long)(us % 1000000) * 1000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

static void *writer_main(void *arg)
{
    sf_meter *m = arg;
    const int64_t every = (int64_t)m->cfg.rollup_interval_s * 1000000;
    int64_t next_rollup = sf_wall_us() + every, rolled = 0;
    uint64_t last_start = 0;

    pthread_mutex_lock(&m->mu);
    for (;;) {
        rec *batch, *tail;
        int r;

        while (m->pend_head == NULL && !m->stopping) {
            struct timespec ts =
                mono_after(next_rollup > sf_wall_us()
                               ? (uint64_t)(next_rollup - sf_wall_us())
                               : 0);
            m->writer_idle = true;
            pthread_cond_timedwait(&m->cv, &m->mu, &ts);
            m->writer_idle = false;
            if (m->pend_head == NULL && sf_wall_us() >= next_rollup)
                break;
        }
        if (m->pend_head == NULL && m->stopping)
            break;
        /* Group commit: at most one commit per interval, so under load a
         * commit carries an interval's worth of rows (its fixed cost is
         * what metering costs); an idle meter commits at once. */
        if (m->pend_head != NULL && !m->stopping &&
            sf_mono_us() < last_start + m->cfg.commit_interval_us) {
            struct timespec ts = mono_after(
                last_start + m->cfg.commit_interval_us - sf_mono_us());
            while (!m->stopping &&
                   pthread_cond_timedwait(&m->cv, &m->mu, &ts) == 0)
                ;
        }
        batch = m->pend_head;
        tail = m->pend_tail;
        m->pend_head = m->pend_tail = NULL;
        pthread_mutex_unlock(&m->mu);

        if (batch != NULL) {
            uint64_t t0 = sf_mono_us();
            last_start = t0;
            pthread_mutex_lock(&m->dbmu);
            r = write_batch(m, batch);
            settle(m, batch, r, t0);
            pthread_mutex_unlock(&m->dbmu);
        }
        if (sf_wall_us() >= next_rollup) {
            /* One batch at a time between group commits, so a large
             * backlog never holds up the responses waiting for a commit. */
            bool more = false;
            int64_t n;
            pthread_mutex_lock(&m->dbmu);
            n = sf_meter_rollup(m, sf_wall_us(), 1, &more);
            pthread_mutex_unlock(&m->dbmu);
            if (n > 0)
                rolled += n;
            if (!more && rolled > 0) {
                SF_INFO("msg=\"invocation rows rolled up into hourly "
                        "usage\" rows=%lld retention_days=%u",
                        (long long)rolled, m->cfg.retention_days);
                rolled = 0;
            }
            next_rollup = more ? 0 : sf_wall_us() + every;
        }

        pthread_mutex_lock(&m->mu);
        if (batch != NULL) {
            if (m->done_tail != NULL)
                m->done_tail->next = batch;
            else
                m->done_head = batch;
            m->done_tail = tail;
            uv_async_send(&m->async);
        }
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/*
 * Loop thread, once per loop iteration (after I/O callbacks): hands the
 * records of this iteration to the writer with one lock and one wake-up
 * instead of one per record.
 */
static void handoff(sf_meter *m)
{
    if (m->local_head == NULL)
        return;
    pthread_mutex_lock(&m->mu);
    if (m->pend_tail != NULL)
        m->pend_tail->next = m->local_head;
    else
        m->pend_head = m->local_head;
    m->pend_tail = m->local_tail;
    /* Only a writer waiting for rows needs waking: one that is spacing
     * its commits (commit_interval_us) wakes at its deadline and takes
     * these then; waking it each loop iteration cost a context switch. */
    if (m->writer_idle)
        pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    m->local_head = m->local_tail = NULL;
}

/* Loop thread: settles committed (or failed) records and runs their
 * callbacks, which send the HTTP responses. */
static void run_done(sf_meter *m, rec *p)
{
    while (p != NULL) {
        rec *next = p->next;
        if (p->status < 0 && p->billed) {
            /* Not recorded, so not billed: take it out of the spend. */
            spend *s = spend_of(m, p->function, false);
            if (s != NULL)
                s->pico -= p->cost_pico;
            m->billed_pico_total -= p->cost_pico;
        }
        if (p->cb != NULL)
            p->cb(p->ctx, p->status, p->billed_ms);
        free(p);
        p = next;
    }
}

/* ---- spill journal ------------------------------------------------------ */

/*
 * In sync mode a response waits for its row's commit, and the loop never
 * waits on the database. So when it cannot commit at once -- the
 * checkpointer's last pass before a WAL restart holds dbmu across two
 * fsyncs (15-180 ms on the reference VM), a roll-up batch holds it, or
 * another connection holds SQLite's write lock -- the loop appends the
 * iteration's rows to STATE/sofaas.db-spill with one write() and answers
 * them: in the page cache, the rows survive a crash of the process just as
 * a WAL commit without fsync does. They are committed with the next
 * batches (SPILL_DRAIN_ROWS per iteration, so a long backlog never stalls
 * the loop), and the file is emptied once none is left. On start, rows
 * left in the file are inserted before anything else (INSERT OR IGNORE on
 * their ids: a row committed before the crash is not counted twice).
 * Before the journal those responses waited for the database, and under
 * sustained load one WAL restart per meter.wal_max_mb put the checkpoint's
 * fsyncs into the latency of every request in flight. Past
 * meter.spill_max_mb of rows in the file (0: no journal), they wait so
 * again.
 */
#define SPILL_DRAIN_ROWS 64
#define SPILL_RETRY_MS 5 /* an idle loop retries spilled rows this often */
#define SPILL_RETRY_FAILING_MS 1000 /* ... or this, while commits fail */
#define SPILL_LAYOUT 2
#define ROW_OFFSET offsetof(rec, id)
#define ROW_SIZE (sizeof(rec) - ROW_OFFSET)
/* A change to rec's row changes the journal's layout: bump SPILL_LAYOUT
 * (a build then refuses an older journal rather than misread it) and
 * this size. */
_Static_assert(ROW_SIZE == 368, "rec changed: bump SPILL_LAYOUT");

/* A row in the journal: the record's row as it is in memory, and the
 * prices it was priced with (a restart may bring other prices; the row
 * keeps its own). */
typedef struct spill_rec {
    uint32_t layout;
    uint32_t granularity_ms;
    int64_t price_request_pico, price_gb_second_pico;
    char currency[8];
    unsigned char row[ROW_SIZE];
} spill_rec;

static void spill_encode(const sf_meter *m, const rec *r, spill_rec *s)
{
    memset(s, 0, sizeof(*s)); /* padding too: the checksum covers it */
    s->layout = SPILL_LAYOUT;
    s->granularity_ms = m->cfg.granularity_ms;
    s->price_request_pico = m->cfg.price_per_request_pico;
    s->price_gb_second_pico = m->cfg.price_per_gb_second_pico;
    memcpy(s->currency, m->cfg.currency, sizeof(s->currency));
    /* rec is calloc'd, so its padding is zeros too */
    memcpy(s->row, (const char *)r + ROW_OFFSET, ROW_SIZE);
}

/* Checks a journal row and fills r from it. Returns 0 or -EINVAL. */
static int spill_decode(const void *p, size_t len, spill_rec *s, rec *r)
{
    if (len != sizeof(*s))
        return -EINVAL;
    memcpy(s, p, sizeof(*s));
    if (s->layout != SPILL_LAYOUT ||
        memchr(s->currency, 0, sizeof(s->currency)) == NULL)
        return -EINVAL;
    memset(r, 0, sizeof(*r));
    memcpy((char *)r + ROW_OFFSET, s->row, ROW_SIZE);
    if ((unsigned)r->cls >= SF_MC_COUNT ||
        memchr(r->request_id, 0, sizeof(r->request_id)) == NULL ||
        memchr(r->function, 0, sizeof(r->function)) == NULL ||
        memchr(r->tenant, 0, sizeof(r->tenant)) == NULL)
        return -EINVAL;
    return 0;
}

/*
 * Loop thread: appends this iteration's rows to the journal with one
 * write() and answers them (their callbacks run now, with success); they
 * move to the spill list, to be committed later. Returns false, having
 * done nothing, when there is no journal, it is full, or the write failed:
 * the rows then wait for the database as they did before the journal.
 */
static bool spill_local(sf_meter *m)
{
    rec *head = m->local_head, *tail = m->local_tail;
    sf_buf frames = {0};
    size_t n = 0;
    int r = 0;

    if (m->spill == NULL || head == NULL)
        return false;
    for (rec *p = head; p != NULL && r == 0; p = p->next, n++) {
        spill_rec s;
        spill_encode(m, p, &s);
        r = sf_journal_frame(&frames, &s, sizeof(s));
    }
    if (r == 0 && sf_journal_size(m->spill) + frames.len >
                      (uint64_t)m->cfg.spill_max_mb << 20)
        r = -ENOSPC;
    if (r == 0)
        r = sf_journal_write(m->spill, frames.data, frames.len);
    sf_buf_free(&frames);
    if (r < 0) {
        if (!m->spill_warned) /* once until the journal is empty again */
            SF_WARN("msg=\"cannot spill invocation rows, their responses "
                    "wait for the database\" rows=%zu error=\"%s\"",
                    n, strerror(-r));
        m->spill_warned = true;
        return false;
    }
    m->local_head = m->local_tail = NULL;
    if (m->spill_tail != NULL)
        m->spill_tail->next = head;
    else
        m->spill_head = head;
    m->spill_tail = tail;
    m->spilled += n;
    m->spill_run += n;
    /* Answered now; committed later with cb gone (as in async mode). The
     * callbacks may record more rows (a pipelined request refused at
     * once): those go to the local list, for the next commit. */
    for (rec *p = head, *end = tail->next; p != end; p = p->next) {
        sf_meter_done_cb cb = p->cb;
        p->status = 0;
        p->cb = NULL;
        if (cb != NULL)
            cb(p->ctx, 0, p->billed_ms);
    }
    return true;
}

/* Loop thread: detaches up to max rows from the front of the spill list;
 * *tail gets the last one. */
static rec *spill_take(sf_meter *m, size_t max, rec **tail)
{
    rec *head = m->spill_head, *p = head;

    *tail = NULL;
    if (head == NULL)
        return NULL;
    for (size_t i = 1; i < max && p->next != NULL; i++)
        p = p->next;
    m->spill_head = p->next;
    if (m->spill_head == NULL)
        m->spill_tail = NULL;
    p->next = NULL;
    *tail = p;
    return head;
}

/* Loop thread: puts rows taken with spill_take back in front. */
static void spill_untake(sf_meter *m, rec *head, rec *tail)
{
    tail->next = m->spill_head;
    if (m->spill_head == NULL)
        m->spill_tail = tail;
    m->spill_head = head;
}

/* Loop thread, after a commit that took spilled rows: once none is left,
 * the journal is emptied (every row in it is committed). */
static void spill_committed(sf_meter *m)
{
    int r;

    if (m->spill_head != NULL)
        return;
    if ((r = sf_journal_reset(m->spill)) < 0)
        SF_WARN("msg=\"cannot empty the spill journal; its rows are "
                "committed and would only be skipped at the next start\" "
                "error=\"%s\"",
                strerror(-r));
    SF_DEBUG("msg=\"spilled invocation rows committed\" rows=%llu",
             (unsigned long long)m->spill_run);
    m->spill_run = 0;
    m->spill_warned = false;
}

typedef struct replay_ctx {
    sf_meter *m;
    sqlite3_stmt *ins;
    int64_t lag;
    int64_t added;
} replay_ctx;

static int replay_one(void *arg, const void *p, size_t len)
{
    replay_ctx *x = arg;
    spill_rec s;
    rec r;
    int i;

    /* A whole frame (its checksum held) that does not decode is an
     * answered row this build cannot read (another layout): refuse it
     * rather than drop it. */
    if (spill_decode(p, len, &s, &r) < 0) {
        SF_ERR("msg=\"a spilled invocation row has an unknown layout\" "
               "bytes=%zu",
               len);
        return -EINVAL;
    }
    i = bind_rec(x->ins, 1, &r);
    sqlite3_bind_int64(x->ins, i++, s.price_request_pico);
    sqlite3_bind_int64(x->ins, i++, s.price_gb_second_pico);
    sqlite3_bind_int(x->ins, i++, (int)s.granularity_ms);
    sqlite3_bind_text(x->ins, i, s.currency, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(x->ins) != SQLITE_DONE) {
        SF_ERR("msg=\"cannot insert a spilled invocation row\" "
               "request_id=%s error=\"%s\"",
               r.request_id, sqlite3_errmsg(x->m->db));
        sqlite3_reset(x->ins);
        return -EIO;
    }
    x->added += sqlite3_changes(x->m->db);
    sqlite3_reset(x->ins);
    if (r.id - r.start_us > x->lag)
        x->lag = r.id - r.start_us;
    return 0;
}

/*
 * At open, before ids and spend are loaded: inserts the rows a previous
 * run left in the journal (answered, not committed when it stopped), in
 * one transaction, then empties it. Keeps the journal open in m->spill
 * when the loop will commit inline. Returns 0 or -errno (the daemon does
 * not start: those rows would be lost).
 */
static int spill_open(sf_meter *m, const char *db_path)
{
    char *path = NULL;
    replay_ctx x = {.m = m};
    size_t dropped = 0;
    int n, r;

    if (asprintf(&path, "%s-spill", db_path) < 0)
        return -ENOMEM;
    r = sf_journal_open(path, &m->spill);
    if (r < 0) {
        SF_ERR("msg=\"meter cannot open its spill journal\" path=%s "
               "error=\"%s\"",
               path, strerror(-r));
        free(path);
        return r;
    }
    if (sf_journal_size(m->spill) > 0) {
        if (sqlite3_prepare_v2(
                m->db,
                "INSERT OR IGNORE INTO invocations (seq, request_id,"
                " function, version, tenant, start_us, queue_us,"
                " duration_us, init_us, cold_start, instance_id, status,"
                " http_status, bytes_in, bytes_out, memory_mb, billed,"
                " billed_ms, cost_pico, price_request_pico,"
                " price_gb_second_pico, granularity_ms, currency) VALUES"
                " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                -1, &x.ins, NULL) != SQLITE_OK) {
            r = -EIO;
            goto out;
        }
        if ((r = exec(m->db, "BEGIN IMMEDIATE")) < 0)
            goto out;
        n = sf_journal_read(m->spill, replay_one, &x, &dropped);
        if (n >= 0 && x.lag > 0) { /* kept as MAX(stored, this) */
            sqlite3_bind_int64(m->lag_set, 1, x.lag);
            if (step_once(m->lag_set) < 0)
                n = -EIO;
        }
        if (n < 0 || exec(m->db, "COMMIT") < 0) {
            exec(m->db, "ROLLBACK");
            SF_ERR("msg=\"meter cannot replay its spill journal; the "
                   "daemon does not start rather than lose its rows\" "
                   "path=%s error=\"%s\"",
                   path, strerror(n < 0 ? -n : EIO));
            r = n < 0 ? n : -EIO;
            goto out;
        }
        SF_INFO("msg=\"invocation rows replayed from the spill journal\" "
                "rows=%d new=%lld",
                n, (long long)x.added);
        if (dropped > 0)
            SF_WARN("msg=\"spill journal had a torn or bad tail (a crash "
                    "while it was written: those rows were never "
                    "answered)\" path=%s dropped_bytes=%zu",
                    path, dropped);
        if ((r = sf_journal_reset(m->spill)) < 0) {
            SF_ERR("msg=\"cannot empty the spill journal\" path=%s "
                   "error=\"%s\"",
                   path, strerror(-r));
            goto out;
        }
    }
    r = 0;
out:
    sqlite3_finalize(x.ins);
    /* Replayed whatever the setting: only new rows need it on. */
    if (r < 0 || !m->inline_commit || m->cfg.spill_max_mb == 0) {
        sf_journal_close(m->spill);
        m->spill = NULL;
    }
    free(path);
    return r;
}

/* At close, the threads stopped: commits what is left of the spill list
 * (else its rows stay in the journal, for the next start) and frees it. */
static void spill_close(sf_meter *m)
{
    rec *p = m->spill_head;

    if (p == NULL)
        return;
    m->spill_head = m->spill_tail = NULL;
    if (write_batch(m, p) == 0)
        spill_committed(m);
    else
        SF_WARN("msg=\"spilled invocation rows not committed at exit; "
                "the next start inserts them\"");
    while (p != NULL) {
        rec *next = p->next;
        free(p);
        p = next;
    }
}

/*
 * Sync mode without fsync: the loop commits this iteration's records
 * itself, then answers. A commit that only appends to the WAL costs tens
 * of microseconds; handing the batch to the writer and back cost two
 * thread wake-ups on top, which on a busy machine are the larger part of
 * the wait every response in sync mode has (docs/metering.md). Records a
 * callback adds (a pipelined request refused at once) go in the next
 * round; a few rounds at most, then the writer takes the rest.
 */
static void commit_inline(sf_meter *m)
{
    for (int round = 0; round < 4; round++) {
        rec *batch, *tail, *spilled, *spilled_tail = NULL;
        uint64_t t0 = sf_mono_us();
        int r;

        /* Spilled rows are taken in the first round only: at most
         * SPILL_DRAIN_ROWS of them per loop iteration. */
        if (m->local_head == NULL && (round > 0 || m->spill_head == NULL))
            break;
        /* The loop never waits on the database: while the checkpointer
         * or a roll-up batch holds it, or another connection (an
         * operator's sqlite3 shell) holds the write lock, the rows go to
         * the spill journal and are answered; without one, the writer
         * thread takes them and waits as long as it must. */
        if (pthread_mutex_trylock(&m->dbmu) != 0) {
            if (spill_local(m))
                continue;
            break;
        }
        /* Spilled rows first, with this iteration's. */
        spilled =
            round == 0 ? spill_take(m, SPILL_DRAIN_ROWS, &spilled_tail) : NULL;
        batch = m->local_head;
        tail = m->local_tail;
        m->local_head = m->local_tail = NULL;
        if (spilled != NULL) {
            spilled_tail->next = batch;
            if (batch == NULL)
                tail = spilled_tail;
            batch = spilled;
        }
        sqlite3_busy_timeout(m->db, m->spill != NULL ? 0 : INLINE_BUSY_MS);
        r = write_batch(m, batch);
        sqlite3_busy_timeout(m->db, WRITER_BUSY_MS);
        if (spilled != NULL) /* an I/O error: retry them slowly */
            m->spill_failing = r < 0 && r != -EBUSY;
        if (r < 0 && spilled != NULL) {
            /* Answered already: they stay in the journal and the list. */
            batch = spilled_tail->next;
            spilled_tail->next = NULL;
            spill_untake(m, spilled, spilled_tail);
            if (batch == NULL)
                tail = NULL;
        }
        if (r == -EBUSY) {
            pthread_mutex_unlock(&m->dbmu);
            m->local_head = batch;
            m->local_tail = tail;
            if (spill_local(m))
                continue;
            if (batch != NULL)
                SF_DEBUG("msg=\"database busy, the meter's writer thread "
                         "takes this batch\"");
            break;
        }
        if (batch != NULL)
            settle(m, batch, r, t0);
        pthread_mutex_unlock(&m->dbmu);
        if (r == 0 && spilled != NULL)
            spill_committed(m);
        run_done(m, batch);
    }
    handoff(m);
}

static void on_retry(uv_timer_t *t)
{
    (void)t;
}

static void on_check(uv_check_t *c)
{
    sf_meter *m = c->data;

    if (m->inline_commit)
        commit_inline(m);
    else
        handoff(m);
    /* Spilled rows wait for a commit; with no traffic, the loop could
     * sleep on them for long. The timer only wakes it: this check phase,
     * after the timer's, commits them. */
    if (m->spill_head != NULL && !uv_is_active((uv_handle_t *)&m->retry))
        uv_timer_start(
            &m->retry, on_retry,
            m->spill_failing ? SPILL_RETRY_FAILING_MS : SPILL_RETRY_MS, 0);
}

/* Loop thread: runs the callbacks of batches the writer committed. */
static void on_async(uv_async_t *a)
{
    sf_meter *m = a->data;
    rec *p;

    pthread_mutex_lock(&m->mu);
    p = m->done_head;
    m->done_head = m->done_tail = NULL;
    pthread_mutex_unlock(&m->mu);
    run_done(m, p);
}

/* ---- retention roll-up -------------------------------------------------- */

int64_t sf_meter_rollup(sf_meter *m, int64_t now_us, unsigned max_batches,
                        bool *more)
{
    /* One batch: the ROLLUP_BATCH oldest rows (by rowid) older than the
     * cutoff are added to their hourly buckets and deleted in the same
     * transaction, so a crash leaves either both or neither. */
    static const char agg_sql[] =
        "INSERT INTO usage_hourly (function, hour_us, currency, invocations,"
        " n_ok, n_function_error, n_timeout, n_crashed, n_out_of_memory,"
        " n_sandbox_violation, n_throttled, n_rejected, cold_starts,"
        " billed_ms, billed_mb_ms, cost_pico, bytes_in, bytes_out,"
        " duration_us)"
        " SELECT function, start_us - start_us % 3600000000, currency,"
        "  COUNT(*), SUM(status='ok'), SUM(status='function_error'),"
        "  SUM(status='timeout'), SUM(status='crashed'),"
        "  SUM(status='out_of_memory'), SUM(status='sandbox_violation'),"
        "  SUM(status='throttled'), SUM(status='rejected'), SUM(cold_start),"
        "  SUM(billed_ms), SUM(billed_ms * memory_mb), SUM(cost_pico),"
        "  SUM(bytes_in), SUM(bytes_out), SUM(duration_us)"
        " FROM invocations WHERE seq IN (SELECT seq FROM invocations"
        "  WHERE seq < ?1 + " SF_METER_SEQ_LAG_SQL " AND start_us < ?1"
        "  ORDER BY seq LIMIT ?2)"
        " GROUP BY 1, 2, 3"
        " ON CONFLICT (function, hour_us, currency) DO UPDATE SET"
        "  invocations = invocations + excluded.invocations,"
        "  n_ok = n_ok + excluded.n_ok,"
        "  n_function_error = n_function_error + excluded.n_function_error,"
        "  n_timeout = n_timeout + excluded.n_timeout,"
        "  n_crashed = n_crashed + excluded.n_crashed,"
        "  n_out_of_memory = n_out_of_memory + excluded.n_out_of_memory,"
        "  n_sandbox_violation = n_sandbox_violation +"
        "   excluded.n_sandbox_violation,"
        "  n_throttled = n_throttled + excluded.n_throttled,"
        "  n_rejected = n_rejected + excluded.n_rejected,"
        "  cold_starts = cold_starts + excluded.cold_starts,"
        "  billed_ms = billed_ms + excluded.billed_ms,"
        "  billed_mb_ms = billed_mb_ms + excluded.billed_mb_ms,"
        "  cost_pico = cost_pico + excluded.cost_pico,"
        "  bytes_in = bytes_in + excluded.bytes_in,"
        "  bytes_out = bytes_out + excluded.bytes_out,"
        "  duration_us = duration_us + excluded.duration_us";
    static const char mark_sql[] =
        "INSERT INTO meter_state (key, value) SELECT 'last_rolled_seq', m"
        " FROM (SELECT MAX(seq) AS m FROM (SELECT seq FROM invocations"
        "  WHERE seq < ?1 + " SF_METER_SEQ_LAG_SQL " AND start_us < ?1"
        "  ORDER BY seq LIMIT ?2)) WHERE m IS NOT NULL"
        " ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)";
    static const char del_sql[] =
        "DELETE FROM invocations WHERE seq IN (SELECT seq FROM invocations"
        " WHERE seq < ?1 + " SF_METER_SEQ_LAG_SQL " AND start_us < ?1"
        " ORDER BY seq LIMIT ?2)";
    int64_t cutoff = now_us - (int64_t)m->cfg.retention_days * DAY_US;
    sqlite3_stmt *agg = NULL, *mark = NULL, *del = NULL;
    int64_t total = 0;
    unsigned batches = 0;

    if (more != NULL)
        *more = false;
    if (m->cfg.retention_days == 0)
        return 0;
    if (sqlite3_prepare_v2(m->db, agg_sql, -1, &agg, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(m->db, mark_sql, -1, &mark, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(m->db, del_sql, -1, &del, NULL) != SQLITE_OK) {
        SF_ERR("msg=\"cannot prepare roll-up\" error=\"%s\"",
               sqlite3_errmsg(m->db));
        total = -EIO;
        goto out;
    }
    for (;;) {
        int n;
        if (exec(m->db, "BEGIN IMMEDIATE") < 0) {
            total = -EIO;
            goto out;
        }
        sqlite3_bind_int64(agg, 1, cutoff);
        sqlite3_bind_int(agg, 2, ROLLUP_BATCH);
        sqlite3_bind_int64(mark, 1, cutoff);
        sqlite3_bind_int(mark, 2, ROLLUP_BATCH);
        sqlite3_bind_int64(del, 1, cutoff);
        sqlite3_bind_int(del, 2, ROLLUP_BATCH);
        if (sqlite3_step(agg) != SQLITE_DONE ||
            sqlite3_step(mark) != SQLITE_DONE ||
            sqlite3_step(del) != SQLITE_DONE) {
            SF_ERR("msg=\"roll-up failed\" error=\"%s\"",
                   sqlite3_errmsg(m->db));
            sqlite3_reset(agg);
            sqlite3_reset(mark);
            sqlite3_reset(del);
            exec(m->db, "ROLLBACK");
            total = -EIO;
            goto out;
        }
        n = sqlite3_changes(m->db);
        sqlite3_reset(agg);
        sqlite3_reset(mark);
        sqlite3_reset(del);
        if (exec(m->db, "COMMIT") < 0) {
            exec(m->db, "ROLLBACK");
            total = -EIO;
            goto out;
        }
        total += n;
        if (n < ROLLUP_BATCH)
            break;
        if (max_batches > 0 && ++batches == max_batches) {
            if (more != NULL)
                *more = true;
            break;
        }
    }
    if (total > 0 && max_batches == 0)
        SF_INFO("msg=\"invocation rows rolled up into hourly usage\" "
                "rows=%lld retention_days=%u",
                (long long)total, m->cfg.retention_days);
out:
    sqlite3_finalize(agg);
    sqlite3_finalize(mark);
    sqlite3_finalize(del);
    return total;
}

/* ---- lifecycle ---------------------------------------------------------- */

/* Statements, connections and locks: what open made and close ends. */
static void release(sf_meter *m)
{
    for (int k = 0; k < INSERT_SIZES; k++)
        sqlite3_finalize(m->ins[k]);
    sqlite3_finalize(m->begin);
    sqlite3_finalize(m->commit);
    sqlite3_finalize(m->lag_set);
    sf_journal_close(m->spill);
    sqlite3_close(m->db);
    sqlite3_close(m->ckdb);
    free(m->wal_path);
    pthread_mutex_destroy(&m->mu);
    pthread_mutex_destroy(&m->dbmu);
    pthread_cond_destroy(&m->cv);
    pthread_cond_destroy(&m->ckcv);
}

int sf_meter_open(uv_loop_t *loop, const char *db_path,
                  const sf_meter_config *cfg, sf_meter **out)
{
    sf_meter *m = calloc(1, sizeof(*m));
    int r = -EIO;

    *out = NULL;
    if (m == NULL)
        return -ENOMEM;
    m->loop = loop;
    m->cfg = *cfg;
    m->inline_commit = cfg->mode == SF_METER_SYNC && !cfg->fsync_commits;
    pthread_mutex_init(&m->mu, NULL);
    pthread_mutex_init(&m->dbmu, NULL);
    {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&m->cv, &ca);
        pthread_cond_init(&m->ckcv, &ca);
        pthread_condattr_destroy(&ca);
    }
    if (cfg->mode == SF_METER_OFF) {
        SF_WARN("msg=\"metering is off: invocations are not recorded or "
                "billed\" hint=\"use --meter-mode=off only to benchmark\"");
        *out = m;
        return 0;
    }
    /* NOMUTEX: each connection is used by one thread at a time (the
     * writer's by the writer once it runs), so SQLite's own locking of
     * every call is pure cost. */
    if (sqlite3_open_v2(db_path, &m->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        SF_ERR("msg=\"meter cannot open the database\" path=%s error=\"%s\"",
               db_path, m->db ? sqlite3_errmsg(m->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(m->db, WRITER_BUSY_MS);
    if (exec(m->db, "PRAGMA journal_mode=WAL") < 0 ||
        exec(m->db, cfg->fsync_commits ? "PRAGMA synchronous=FULL"
                                       : "PRAGMA synchronous=NORMAL") < 0 ||
        wal_limits(m) < 0)
        goto fail;
    for (int k = 0; k < INSERT_SIZES; k++)
        if (prepare_insert(m->db, cfg, 1 << k, &m->ins[k]) < 0)
            goto fail;
    if (sqlite3_prepare_v3(m->db, "BEGIN IMMEDIATE", -1,
                           SQLITE_PREPARE_PERSISTENT, &m->begin,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(m->db, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT,
                           &m->commit, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(m->db,
                           "INSERT INTO meter_state (key, value)"
                           " VALUES ('seq_lag_us', ?1) ON CONFLICT (key)"
                           " DO UPDATE SET value = MAX(value, excluded.value)",
                           -1, SQLITE_PREPARE_PERSISTENT, &m->lag_set,
                           NULL) != SQLITE_OK)
        goto fail;
    /* Reconcile: WAL recovery already rolled back any uncommitted batch
     * (its clients got no answer, see docs/metering.md); rows answered
     * from the spill journal go in before ids and spend are loaded; finish
     * the retention work a crash may have interrupted. */
    if ((r = spill_open(m, db_path)) < 0)
        goto fail;
    if (sf_meter_rollup(m, sf_wall_us(), 0, NULL) < 0)
        goto fail;
    if ((r = load_last_id(m)) < 0)
        goto fail;
    if (asprintf(&m->wal_path, "%s-wal", db_path) < 0) {
        m->wal_path = NULL;
        r = -ENOMEM;
        goto fail;
    }
    if (sqlite3_open_v2(db_path, &m->ckdb,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        SF_ERR("msg=\"meter cannot open the database\" path=%s", db_path);
        goto fail;
    }
    sqlite3_busy_timeout(m->ckdb, CHECKPOINTER_BUSY_MS);
    if (exec(m->ckdb, cfg->fsync_commits ? "PRAGMA synchronous=FULL"
                                         : "PRAGMA synchronous=NORMAL") < 0 ||
        exec(m->ckdb, m->size_limit_sql) < 0) /* it restarts the WAL too */
        goto fail;
    sqlite3_wal_hook(m->db, wal_hook, m);
    if ((r = load_spend(m)) < 0) {
        SF_ERR("msg=\"meter cannot load this month's spend\"");
        goto fail;
    }
    r = uv_async_init(loop, &m->async, on_async);
    if (r < 0)
        goto fail;
    m->async.data = m;
    /* The loop's life is the server's and the pool's; the meter is closed
     * after the loop has drained (sf_meter_close). */
    uv_unref((uv_handle_t *)&m->async);
    uv_check_init(loop, &m->check);
    m->check.data = m;
    uv_check_start(&m->check, on_check);
    uv_unref((uv_handle_t *)&m->check);
    uv_timer_init(loop, &m->retry);
    m->retry.data = m;
    uv_unref((uv_handle_t *)&m->retry);
    r = -pthread_create(&m->thread, NULL, writer_main, m);
    if (r < 0) {
        /* m is freed below, so the handles must not outlive this call:
         * close them and let the loop finish the close first. */
        uv_close((uv_handle_t *)&m->async, NULL);
        uv_close((uv_handle_t *)&m->check, NULL);
        uv_close((uv_handle_t *)&m->retry, NULL);
        uv_run(loop, UV_RUN_NOWAIT);
        goto fail;
    }
    m->thread_started = true;
    if (pthread_create(&m->ckthread, NULL, checkpointer_main, m) == 0)
        m->ck_started = true;
    else /* degrade to SQLite's checkpoints inside commits */
        sqlite3_wal_autocheckpoint(m->db, CHECKPOINT_PAGES);
    SF_INFO("msg=\"meter ready\" mode=%s fsync_commits=%d "
            "commit_interval_us=%u wal_max_mb=%u spill_max_mb=%u "
            "retention_days=%u "
            "currency=%s "
            "price_per_request_pico=%lld price_per_gb_second_pico=%lld "
            "granularity_ms=%u",
            cfg->mode == SF_METER_SYNC ? "sync" : "async", cfg->fsync_commits,
            cfg->commit_interval_us, cfg->wal_max_mb, cfg->spill_max_mb,
            cfg->retention_days, cfg->currency,
            (long long)cfg->price_per_request_pico,
            (long long)cfg->price_per_gb_second_pico, cfg->granularity_ms);
    *out = m;
    return 0;
fail:
    release(m);
    free(m);
    return r < 0 ? r : -EIO;
}

/* libuv finishes closing handles in the reverse order of uv_close, and
 * marks each one closed before its callback: m (which holds them) is freed
 * after the last of its handles, not after whichever closes first. */
static void on_handle_closed(uv_handle_t *h)
{
    sf_meter *m = h->data;

    if (--m->open_handles > 0)
        return;
    free(m->spends);
    free(m);
}

void sf_meter_close(sf_meter *m)
{
    if (m == NULL)
        return;
    if (m->thread_started) {
        handoff(m);
        pthread_mutex_lock(&m->mu);
        m->stopping = true;
        pthread_cond_signal(&m->cv);
        pthread_cond_signal(&m->ckcv);
        pthread_mutex_unlock(&m->mu);
        pthread_join(m->thread, NULL);
        if (m->ck_started)
            pthread_join(m->ckthread, NULL);
        on_async(&m->async); /* callbacks of the last batches */
        spill_close(m);
        SF_INFO(
            "msg=\"meter closed\" rows=%llu commits=%llu "
            "rows_per_commit=%.1f commit_us_avg=%llu checkpoints=%llu "
            "spilled=%llu",
            (unsigned long long)m->rows, (unsigned long long)m->commits,
            m->commits ? (double)m->rows / (double)m->commits : 0.0,
            (unsigned long long)(m->commits ? m->commit_us / m->commits : 0),
            (unsigned long long)m->checkpoints, (unsigned long long)m->spilled);
    }
    release(m);
    if (m->thread_started) {
        m->open_handles = 3;
        uv_close((uv_handle_t *)&m->check, on_handle_closed);
        uv_close((uv_handle_t *)&m->retry, on_handle_closed);
        uv_close((uv_handle_t *)&m->async, on_handle_closed);
        return;
    }
    free(m->spends);
    free(m);
}

double sf_meter_cost_total(void *ctx)
{
    const sf_meter *m = ctx;

    return m == NULL ? 0.0
                     : (double)m->billed_pico_total / (double)SF_PICO_PER_UNIT;
}

uv_loop_t *sf_meter_loop(const sf_meter *m)
{
    return m != NULL ? m->loop : NULL;
}

const sf_meter_config *sf_meter_config_of(const sf_meter *m)
{
    static sf_meter_config defaults;
    static bool init;

    if (m != NULL)
        return &m->cfg;
    if (!init) { /* loop thread only, like the rest of this API */
        sf_meter_config_defaults(&defaults);
        init = true;
    }
    return &defaults;
}

/* ---- recording and budgets ---------------------------------------------- */

/*
 * Invocation ids: seq = MAX(start_us, previous seq + 1). Unique and
 * increasing like a counter, and never below the row's start time, so a
 * time range is a rowid range (the table needs no start_us index, which
 * cost one more page written per commit). seq - start_us, the lag, grows
 * when invocations finish out of start order or the clock steps back; its
 * largest value is kept in meter_state (seq_lag_us), raised in the same
 * transaction as the row that needs it, so a query for start_us < T reads
 * seq < T + lag and misses nothing (docs/metering.md).
 */
static int64_t next_id(sf_meter *m, int64_t start_us)
{
    int64_t id = start_us > m->last_id ? start_us : m->last_id + 1;

    m->last_id = id;
    return id;
}

static void budget_warn(sf_meter *m, spend *s, const sf_meter_rec *in)
{
    int level;
    char spent[40], budget[40];

    if (in->budget_nanos <= 0)
        return;
    if (s->pico >= in->budget_nanos * SF_PICO_PER_NANO)
        level = 100;
    else if (s->pico * 10 >= in->budget_nanos * SF_PICO_PER_NANO * 8)
        level = 80;
    else
        return;
    if (level <= s->warned)
        return;
    s->warned = level;
    sf_format_decimal(s->pico / SF_PICO_PER_NANO, 9, spent, sizeof(spent));
    sf_format_decimal(in->budget_nanos, 9, budget, sizeof(budget));
    SF_WARN("msg=\"function reached %d%% of its monthly budget\" function=%s "
            "spent=%s budget=%s currency=%s action=%s",
            level, s->function, spent, budget, m->cfg.currency,
            in->budget_action == SF_BUDGET_BLOCK
                ? "block (invocations will get 402 at 100%)"
                : "warn");
}

void sf_meter_record(sf_meter *m, const sf_meter_rec *in, sf_meter_done_cb cb,
                     void *ctx)
{
    const sf_meter_config *c = sf_meter_config_of(m);
    bool billable = sf_meter_class_billable(in->cls);
    uint64_t billed_ms = billable
                             ? sf_meter_billed_ms(in->duration_us, in->init_us,
                                                  c->granularity_ms)
                             : 0;
    rec *r;

    if (m == NULL || c->mode == SF_METER_OFF) {
        cb(ctx, 0, billed_ms);
        return;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        SF_ERR("msg=\"cannot record invocation: out of memory\" "
               "request_id=%s function=%s",
               in->request_id, in->function);
        cb(ctx, -ENOMEM, billed_ms);
        return;
    }
    /* Invocation ids follow the clock: see next_id. */
    r->id = next_id(m, in->start_us);
    sf_strlcpy(r->request_id, in->request_id, sizeof(r->request_id));
    sf_strlcpy(r->function, in->function, sizeof(r->function));
    if (in->tenant != NULL) {
        r->has_tenant = true;
        snprintf(r->tenant, sizeof(r->tenant), "%s", in->tenant);
    }
    r->version = in->version;
    r->start_us = in->start_us;
    r->queue_us = in->queue_us;
    r->duration_us = in->duration_us;
    r->init_us = in->cold_start ? in->init_us : 0;
    r->cold_start = in->cold_start;
    r->instance_id = in->instance_id;
    r->cls = in->cls;
    r->http_status = in->http_status;
    r->bytes_in = in->bytes_in;
    r->bytes_out = in->bytes_out;
    r->memory_mb = in->memory_mb;
    r->billed = billable;
    r->billed_ms = billed_ms;
    r->cost_pico = billable ? sf_meter_cost_pico(billed_ms, in->memory_mb,
                                                 c->price_per_request_pico,
                                                 c->price_per_gb_second_pico)
                            : 0;

    if (billable) {
        spend *s;
        roll_period(m, sf_wall_us());
        s = spend_of(m, in->function, true);
        if (s != NULL) {
            s->pico += r->cost_pico;
            budget_warn(m, s, in);
        }
        m->billed_pico_total += r->cost_pico;
    }

    if (c->mode == SF_METER_ASYNC) {
        cb(ctx, 0, billed_ms);
        cb = NULL;
    }
    r->cb = cb;
    r->ctx = ctx;
    if (m->local_tail != NULL)
        m->local_tail->next = r;
    else
        m->local_head = r;
    m->local_tail = r;
}

bool sf_meter_budget_blocks(sf_meter *m, const char *function,
                            const sf_fn_config *cfg)
{
    spend *s;

    if (m == NULL || cfg->budget_nanos <= 0 ||
        cfg->budget_action != SF_BUDGET_BLOCK || m->cfg.mode == SF_METER_OFF)
        return false;
    roll_period(m, sf_wall_us());
    s = spend_of(m, function, false);
    return s != NULL && s->pico >= cfg->budget_nanos * SF_PICO_PER_NANO;
}

cJSON *sf_meter_budget_json(sf_meter *m, const char *function,
                            const sf_fn_config *cfg)
{
    cJSON *j;
    spend *s;
    int64_t pico;
    char buf[40], month[16];
    int pct = 0;

    if (m == NULL || cfg->budget_nanos <= 0)
        return NULL;
    roll_period(m, sf_wall_us());
    s = spend_of(m, function, false);
    pico = s ? s->pico : 0;
    j = cJSON_CreateObject();
    snprintf(month, sizeof(month), "%04d-%02d", m->period / 12,
             m->period % 12 + 1);
    cJSON_AddStringToObject(j, "period", month);
    sf_format_decimal(pico / SF_PICO_PER_NANO, 9, buf, sizeof(buf));
    cJSON_AddStringToObject(j, "spent", buf);
    cJSON_AddNumberToObject(j, "spent_nanos",
                            (double)(pico / SF_PICO_PER_NANO));
    sf_format_decimal(cfg->budget_nanos, 9, buf, sizeof(buf));
    cJSON_AddStringToObject(j, "amount", buf);
    cJSON_AddStringToObject(j, "currency", m->cfg.currency);
    cJSON_AddStringToObject(
        j, "action", cfg->budget_action == SF_BUDGET_BLOCK ? "block" : "warn");
    if (pico >= cfg->budget_nanos * SF_PICO_PER_NANO)
        pct = 100;
    else if (pico * 10 >= cfg->budget_nanos * SF_PICO_PER_NANO * 8)
        pct = 80;
    if (pct > 0) {
        snprintf(buf, sizeof(buf), "%d%%", pct);
        cJSON_AddStringToObject(j, "warning", buf);
    } else {
        cJSON_AddNullToObject(j, "warning");
    }
    cJSON_AddBoolToObject(j, "blocked",
                          pct == 100 && cfg->budget_action == SF_BUDGET_BLOCK);
    return j;
}
