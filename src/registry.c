/*
 * registry.c - functions, versions and artifacts (see registry.h).
 *
 * Schema changes are migrations keyed by PRAGMA user_version; each runs in
 * one transaction, so a crash mid-migration leaves the previous version.
 * Deleting a function keeps its version rows (billing history refers to
 * them) and sets functions.deleted_at; a later deploy of the same name
 * continues its version numbers.
 */
#include "registry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "sha256.h"
#include "util.h"

struct sf_registry {
    char *state_dir;
    char *artifact_dir;
    sqlite3 *db;
    sf_function *fns; /* sorted by name */
    size_t n, cap;
};

/* ---- schema ------------------------------------------------------------- */

static const char *const migrations[] = {
    /* 1: functions and their versions. */
    "CREATE TABLE functions ("
    "  name TEXT PRIMARY KEY,"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  latest_version INTEGER NOT NULL,"
    "  deleted_at INTEGER"
    ");"
    "CREATE TABLE versions ("
    "  function TEXT NOT NULL REFERENCES functions(name),"
    "  version INTEGER NOT NULL,"
    "  sha256 TEXT NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  config TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  PRIMARY KEY (function, version)"
    ");"
    "CREATE INDEX versions_sha256 ON versions(sha256);",
    /* 2: function logs (fnlog.c): stdout/stderr lines of functions. ts is
     * microseconds since the epoch; request_id is NULL outside an
     * invocation (init, idle). No foreign key: logs outlive a deleted
     * function until retention removes them. */
    "CREATE TABLE function_logs ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT," /* ids never reused: cursors */
    "  ts INTEGER NOT NULL,"
    "  function TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  instance INTEGER NOT NULL,"
    "  request_id TEXT,"
    "  message TEXT NOT NULL"
    ");"
    "CREATE INDEX function_logs_function ON function_logs(function, id);"
    "CREATE INDEX function_logs_request ON function_logs(request_id);"
    "CREATE INDEX function_logs_ts ON function_logs(ts);",
    /* 3: metering (meter.c). One row per invocation, priced with the
     * price in force (kept in the row); hourly aggregates of rows past the
     * retention, kept forever. Money in picos (1e-12 of currency). */
    "CREATE TABLE invocations ("
    "  seq INTEGER PRIMARY KEY," /* the invocation id, never reused */
    "  request_id TEXT NOT NULL,"
    "  function TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  tenant TEXT,"
    "  start_us INTEGER NOT NULL,"
    "  queue_us INTEGER NOT NULL,"
    "  duration_us INTEGER NOT NULL,"
    "  init_us INTEGER NOT NULL,"
    "  cold_start INTEGER NOT NULL,"
    "  instance_id INTEGER NOT NULL,"
    "  status TEXT NOT NULL,"
    "  http_status INTEGER NOT NULL,"
    "  bytes_in INTEGER NOT NULL,"
    "  bytes_out INTEGER NOT NULL,"
    "  memory_mb INTEGER NOT NULL,"
    "  billed INTEGER NOT NULL,"
    "  billed_ms INTEGER NOT NULL,"
    "  cost_pico INTEGER NOT NULL,"
    "  price_request_pico INTEGER NOT NULL,"
    "  price_gb_second_pico INTEGER NOT NULL,"
    "  granularity_ms INTEGER NOT NULL,"
    "  currency TEXT NOT NULL"
    ");"
    /* One index only: every index is another page written per commit. */
    "CREATE INDEX invocations_start ON invocations(start_us);"
    "CREATE TABLE usage_hourly ("
    "  function TEXT NOT NULL,"
    "  hour_us INTEGER NOT NULL,"
    "  currency TEXT NOT NULL,"
    "  invocations INTEGER NOT NULL,"
    "  n_ok INTEGER NOT NULL,"
    "  n_function_error INTEGER NOT NULL,"
    "  n_timeout INTEGER NOT NULL,"
    "  n_crashed INTEGER NOT NULL,"
    "  n_out_of_memory INTEGER NOT NULL,"
    "  n_sandbox_violation INTEGER NOT NULL,"
    "  n_throttled INTEGER NOT NULL,"
    "  n_rejected INTEGER NOT NULL,"
    "  cold_starts INTEGER NOT NULL,"
    "  billed_ms INTEGER NOT NULL,"
    "  billed_mb_ms INTEGER NOT NULL,"
    "  cost_pico INTEGER NOT NULL,"
    "  bytes_in INTEGER NOT NULL,"
    "  bytes_out INTEGER NOT NULL,"
    "  duration_us INTEGER NOT NULL,"
    "  PRIMARY KEY (function, hour_us, currency)"
    ");"
    "CREATE TABLE meter_state (key TEXT PRIMARY KEY, value INTEGER);",
    /* 4: invocation ids follow the clock (meter.c, "Invocation ids"):
     * seq >= start_us, so time ranges are rowid ranges and the start_us
     * index, one more page written by every commit, goes. Old rows are
     * renumbered in start order with the same rule the meter uses
     * (seq = MAX(start_us, previous seq + 1)); negating first keeps every
     * intermediate state unique. seq_lag_us bounds seq - start_us. */
    "CREATE TEMP TABLE seq_map (old INTEGER PRIMARY KEY, new INTEGER);"
    "INSERT INTO seq_map SELECT seq, rn + MAX(start_us - rn) OVER"
    " (ORDER BY start_us, seq ROWS UNBOUNDED PRECEDING) FROM"
    " (SELECT seq, start_us, ROW_NUMBER() OVER (ORDER BY start_us, seq)"
    "  AS rn FROM invocations);"
    "UPDATE invocations SET seq = -seq;"
    "UPDATE invocations SET seq ="
    " (SELECT new FROM seq_map WHERE old = -invocations.seq);"
    "DROP TABLE seq_map;"
    "DROP INDEX IF EXISTS invocations_start;"
    "INSERT INTO meter_state (key, value)"
    " SELECT 'seq_lag_us', COALESCE(MAX(seq - start_us), 0) FROM invocations"
    " WHERE true ON CONFLICT (key) DO UPDATE SET value = excluded.value;",
};

static int exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        SF_ERR("msg=\"sqlite statement failed\" error=\"%s\"",
               msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -EIO;
    }
    return 0;
}

static int migrate(sqlite3 *db)
{
    sqlite3_stmt *st;
    int ver = 0;
    const int target = (int)(sizeof(migrations) / sizeof(migrations[0]));

    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) !=
        SQLITE_OK)
        return -EIO;
    if (sqlite3_step(st) == SQLITE_ROW)
        ver = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (ver > target) {
        SF_ERR("msg=\"database schema is newer than this sofaasd\" "
               "schema=%d supported=%d",
               ver, target);
        return -EPROTO;
    }
    for (; ver < target; ver++) {
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version=%d", ver + 1);
        if (exec(db, "BEGIN IMMEDIATE") < 0)
            return -EIO;
        if (exec(db, migrations[ver]) < 0 || exec(db, pragma) < 0) {
            exec(db, "ROLLBACK");
            return -EIO;
        }
        if (exec(db, "COMMIT") < 0)
            return -EIO;
        SF_INFO("msg=\"database migrated\" schema=%d", ver + 1);
    }
    return 0;
}

/* ---- cache -------------------------------------------------------------- */

static size_t find_pos(sf_registry *r, const char *name, size_t len,
                       bool *found)
{
    size_t lo = 0, hi = r->n;

    *found = false;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strncmp(r->fns[mid].name, name, len);
        if (c == 0 && r->fns[mid].name[len] != '\0')
            c = 1;
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static char *artifact_path(sf_registry *r, const char *sha)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s.so", r->artifact_dir, sha) < 0)
        return NULL;
    return p;
}

/* Inserts or replaces the cached entry for f->name (takes f's path). */
static int cache_put(sf_registry *r, sf_function *f)
{
    bool found;
    size_t pos = find_pos(r, f->name, strlen(f->name), &found);

    if (found) {
        free(r->fns[pos].artifact_path);
        r->fns[pos] = *f;
        return (int)pos;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        sf_function *n = realloc(r->fns, cap * sizeof(*n));
        if (n == NULL)
            return -ENOMEM;
        r->fns = n;
        r->cap = cap;
    }
    memmove(&r->fns[pos + 1], &r->fns[pos], (r->n - pos) * sizeof(*r->fns));
    r->fns[pos] = *f;
    r->n++;
    return (int)pos;
}

static void row_to_function(sf_registry *r, sqlite3_stmt *st, sf_function *f)
{
    const char *cfg = (const char *)sqlite3_column_text(st, 4);
    cJSON *j = cfg ? cJSON_Parse(cfg) : NULL;
    char err[128];

    memset(f, 0, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%s", sqlite3_column_text(st, 0));
    f->version = sqlite3_column_int64(st, 1);
    snprintf(f->sha256, sizeof(f->sha256), "%s", sqlite3_column_text(st, 2));
    f->size = sqlite3_column_int64(st, 3);
    f->created_at_us = sqlite3_column_int64(st, 5);
    sf_fn_config_defaults(&f->config);
    if (j == NULL || sf_fn_config_apply_json(&f->config, j, err,
                                             sizeof(err)) < 0)
        SF_WARN("msg=\"stored config unreadable, using defaults\" "
                "function=%s version=%lld",
                f->name, (long long)f->version);
    cJSON_Delete(j);
    f->artifact_path = artifact_path(r, f->sha256);
}

static int load_cache(sf_registry *r)
{
    static const char sql[] =
        "SELECT v.function, v.version, v.sha256, v.size, v.config,"
        " v.created_at FROM functions f JOIN versions v"
        " ON v.function = f.name AND v.version = f.latest_version"
        " WHERE f.deleted_at IS NULL ORDER BY f.name";
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sf_function f;
        row_to_function(r, st, &f);
        if (cache_put(r, &f) < 0) {
            sqlite3_finalize(st);
            return -ENOMEM;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

static void remove_stale_uploads(sf_registry *r);

/* ---- open/close --------------------------------------------------------- */

static int mkdir_p(const char *dir)
{
    if (mkdir(dir, 0750) == 0 || errno == EEXIST)
        return 0;
    return -errno;
}

int sf_registry_open(const char *state_dir, sf_registry **out)
{
    sf_registry *r = calloc(1, sizeof(*r));
    char *dbpath = NULL;
    int e;

    if (r == NULL)
        return -ENOMEM;
    r->state_dir = realpath(state_dir, NULL);
    if (r->state_dir == NULL) {
        if ((e = mkdir_p(state_dir)) < 0)
            goto fail_errno;
        r->state_dir = realpath(state_dir, NULL);
        if (r->state_dir == NULL) {
            e = -errno;
            goto fail_errno;
        }
    }
    if (asprintf(&r->artifact_dir, "%s/artifacts", r->state_dir) < 0) {
        e = -ENOMEM;
        goto fail;
    }
    if ((e = mkdir_p(r->artifact_dir)) < 0)
        goto fail_errno;
    remove_stale_uploads(r);
    if (asprintf(&dbpath, "%s/sofaas.db", r->state_dir) < 0) {
        e = -ENOMEM;
        goto fail;
    }
    if (sqlite3_open_v2(dbpath, &r->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        SF_ERR("msg=\"cannot open database\" path=%s error=\"%s\"", dbpath,
               r->db ? sqlite3_errmsg(r->db) : "out of memory");
        e = -EIO;
        goto fail;
    }
    sqlite3_busy_timeout(r->db, SF_REGISTRY_OPEN_BUSY_MS);
    if (exec(r->db, "PRAGMA journal_mode=WAL") < 0 ||
        exec(r->db, "PRAGMA synchronous=NORMAL") < 0 ||
        exec(r->db, "PRAGMA foreign_keys=ON") < 0) {
        e = -EIO;
        goto fail;
    }
    if ((e = migrate(r->db)) < 0 || (e = load_cache(r)) < 0)
        goto fail;
    sqlite3_busy_timeout(r->db, SF_REGISTRY_BUSY_MS); /* from now: the loop's */
    free(dbpath);
    SF_INFO("msg=\"registry open\" state_dir=%s functions=%zu", r->state_dir,
            r->n);
    *out = r;
    return 0;

fail_errno:
    SF_ERR("msg=\"cannot prepare state dir\" path=%s error=\"%s\"", state_dir,
           strerror(-e));
fail:
    free(dbpath);
    sf_registry_free(r);
    return e;
}

void sf_registry_free(sf_registry *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n; i++)
        free(r->fns[i].artifact_path);
    free(r->fns);
    sqlite3_close(r->db);
    free(r->artifact_dir);
    free(r->state_dir);
    free(r);
}

sqlite3 *sf_registry_db(sf_registry *r) { return r->db; }
const char *sf_registry_state_dir(sf_registry *r) { return r->state_dir; }

const sf_function *sf_registry_get(sf_registry *r, const char *name,
                                   size_t len)
{
    bool found;
    size_t pos = find_pos(r, name, len, &found);
    return found ? &r->fns[pos] : NULL;
}

size_t sf_registry_count(sf_registry *r) { return r->n; }

const sf_function *sf_registry_at(sf_registry *r, size_t i)
{
    return i < r->n ? &r->fns[i] : NULL;
}

/* ---- artifacts ---------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int e = 0;
    if (fd < 0)
        return -errno;
    if (fsync(fd) < 0)
        e = -errno;
    close(fd);
    return e;
}

struct sf_upload {
    sf_registry *reg;
    int fd;
    char *tmp;
    sf_sha256 hash;
    size_t size;
    unsigned char head[4096];
    size_t head_len;
};

int sf_registry_upload_begin(sf_registry *r, sf_upload **out)
{
    sf_upload *u = calloc(1, sizeof(*u));

    if (u == NULL)
        return -ENOMEM;
    u->reg = r;
    if (asprintf(&u->tmp, "%s/.upload-XXXXXX", r->artifact_dir) < 0) {
        free(u);
        return -ENOMEM;
    }
    u->fd = mkostemp(u->tmp, O_CLOEXEC);
    if (u->fd < 0) {
        int e = -errno;
        SF_ERR("msg=\"cannot create upload file\" dir=%s error=\"%s\"",
               r->artifact_dir, strerror(-e));
        free(u->tmp);
        free(u);
        return e;
    }
    fchmod(u->fd, 0644);
    sf_sha256_init(&u->hash);
    *out = u;
    return 0;
}

int sf_upload_write(sf_upload *u, const void *data, size_t len)
{
    int e = write_all(u->fd, data, len);

    if (e < 0)
        return e;
    if (u->head_len < sizeof(u->head)) {
        size_t n = sizeof(u->head) - u->head_len;
        if (n > len)
            n = len;
        memcpy(u->head + u->head_len, data, n);
        u->head_len += n;
    }
    sf_sha256_update(&u->hash, data, len);
    u->size += len;
    return 0;
}

const void *sf_upload_head(const sf_upload *u, size_t *head_len)
{
    *head_len = u->head_len;
    return u->head;
}

size_t sf_upload_size(const sf_upload *u) { return u->size; }

void sf_upload_abort(sf_upload *u)
{
    if (u == NULL)
        return;
    if (u->fd >= 0)
        close(u->fd);
    unlink(u->tmp);
    free(u->tmp);
    free(u);
}

int sf_registry_upload_commit(sf_upload *u, char sha[65], char **path)
{
    static const char hex[] = "0123456789abcdef";
    sf_registry *r = u->reg;
    unsigned char d[32];
    struct stat st;
    char *final = NULL;
    int e = 0;

    sf_sha256_final(&u->hash, d);
    for (int i = 0; i < 32; i++) {
        sha[2 * i] = hex[d[i] >> 4];
        sha[2 * i + 1] = hex[d[i] & 15];
    }
    sha[64] = '\0';
    final = artifact_path(r, sha);
    if (final == NULL) {
        e = -ENOMEM;
        goto out;
    }
    if (stat(final, &st) == 0 && (size_t)st.st_size == u->size)
        goto done; /* same content already stored: keep that file */
    if (fsync(u->fd) < 0 || rename(u->tmp, final) < 0) {
        e = -errno;
        goto out;
    }
    e = fsync_dir(r->artifact_dir);
    if (e < 0)
        goto out;
done:
    sf_upload_abort(u); /* unlinks the temp name if it still exists */
    *path = final;
    return 0;
out:
    SF_ERR("msg=\"cannot store artifact\" sha256=%s error=\"%s\"", sha,
           strerror(-e));
    sf_upload_abort(u);
    free(final);
    return e;
}

/* Removes temp files a crash left in the artifacts folder. */
static void remove_stale_uploads(sf_registry *r)
{
    DIR *d = opendir(r->artifact_dir);
    struct dirent *e;

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        char *p = NULL;
        if (strncmp(e->d_name, ".upload-", 8) != 0 ||
            asprintf(&p, "%s/%s", r->artifact_dir, e->d_name) < 0)
            continue;
        if (unlink(p) == 0)
            SF_INFO("msg=\"removed unfinished upload\" path=%s", p);
        free(p);
    }
    closedir(d);
}

void sf_registry_drop_artifact_if_unused(sf_registry *r, const char *sha)
{
    static const char sql[] =
        "SELECT 1 FROM versions v JOIN functions f ON f.name = v.function"
        " WHERE v.sha256 = ?1 AND f.deleted_at IS NULL LIMIT 1";
    sqlite3_stmt *st;
    bool used = true;

    if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_text(st, 1, sha, -1, SQLITE_STATIC);
    used = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    if (!used) {
        char *p = artifact_path(r, sha);
        if (p != NULL && unlink(p) == 0)
            SF_DEBUG("msg=\"artifact removed\" sha256=%s", sha);
        free(p);
    }
}

/* ---- versions ----------------------------------------------------------- */

static void busy_warn(const char *name)
{
    SF_WARN("msg=\"database busy: another connection holds the write lock, "
            "function not changed\" function=%s busy_timeout_ms=%d",
            name, SF_REGISTRY_BUSY_MS);
}

/* BEGIN IMMEDIATE: takes the write lock now or fails, -EBUSY when another
 * connection held it for all of SF_REGISTRY_BUSY_MS. */
static int begin_write(sf_registry *r, const char *name)
{
    int rc = sqlite3_exec(r->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);

    if (rc == SQLITE_OK)
        return 0;
    if (rc == SQLITE_BUSY) {
        busy_warn(name);
        return -EBUSY;
    }
    SF_ERR("msg=\"cannot begin a registry transaction\" function=%s "
           "error=\"%s\"",
           name, sqlite3_errmsg(r->db));
    return -EIO;
}

int sf_registry_add_version(sf_registry *r, const char *name,
                            const char *sha, int64_t size,
                            const sf_fn_config *cfg, const sf_function **out)
{
    static const char upsert[] =
        "INSERT INTO functions(name, created_at, updated_at, latest_version)"
        " VALUES (?1, ?2, ?2, 1)"
        " ON CONFLICT(name) DO UPDATE SET latest_version = latest_version + 1,"
        " updated_at = ?2,"
        " created_at = CASE WHEN deleted_at IS NULL THEN created_at ELSE ?2 END,"
        " deleted_at = NULL"
        " RETURNING latest_version";
    static const char ins[] =
        "INSERT INTO versions(function, version, sha256, size, config,"
        " created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    sqlite3_stmt *st = NULL;
    int64_t now = sf_wall_us(), version = 0;
    cJSON *cj = sf_fn_config_to_json(cfg);
    char *cfgs = cJSON_PrintUnformatted(cj);
    sf_function f;
    int pos, e = -EIO;

    cJSON_Delete(cj);
    if (cfgs == NULL)
        return -ENOMEM;
    if ((e = begin_write(r, name)) < 0)
        goto out;
    e = -EIO;
    if (sqlite3_prepare_v2(r->db, upsert, -1, &st, NULL) != SQLITE_OK)
        goto rollback;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    if (sqlite3_step(st) != SQLITE_ROW)
        goto rollback;
    version = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(r->db, ins, -1, &st, NULL) != SQLITE_OK)
        goto rollback;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, version);
    sqlite3_bind_text(st, 3, sha, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, size);
    sqlite3_bind_text(st, 5, cfgs, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, now);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto rollback;
    sqlite3_finalize(st);
    st = NULL;
    if (exec(r->db, "COMMIT") < 0)
        goto rollback;

    memset(&f, 0, sizeof(f));
    snprintf(f.name, sizeof(f.name), "%s", name);
    f.version = version;
    snprintf(f.sha256, sizeof(f.sha256), "%s", sha);
    f.size = size;
    f.created_at_us = now;
    f.config = *cfg;
    f.artifact_path = artifact_path(r, sha);
    pos = cache_put(r, &f);
    if (pos < 0) {
        free(f.artifact_path);
        e = pos;
        goto out;
    }
    *out = &r->fns[pos];
    e = 0;
    goto out;

rollback:
    SF_ERR("msg=\"cannot record version\" function=%s error=\"%s\"", name,
           sqlite3_errmsg(r->db));
    sqlite3_finalize(st);
    exec(r->db, "ROLLBACK");
out:
    free(cfgs);
    return e;
}

int sf_registry_delete(sf_registry *r, const char *name)
{
    static const char sql[] =
        "UPDATE functions SET deleted_at = ?2, updated_at = ?2"
        " WHERE name = ?1 AND deleted_at IS NULL";
    static const char shas[] =
        "SELECT DISTINCT sha256 FROM versions WHERE function = ?1";
    sqlite3_stmt *st;
    bool found;
    size_t pos = find_pos(r, name, strlen(name), &found);
    int changed, rc;

    if (!found)
        return -ENOENT;
    if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, sf_wall_us());
    rc = sqlite3_step(st);
    changed = rc == SQLITE_DONE && sqlite3_changes(r->db) == 1;
    sqlite3_finalize(st);
    if (rc == SQLITE_BUSY) {
        busy_warn(name);
        return -EBUSY;
    }
    if (!changed)
        return -EIO;
    free(r->fns[pos].artifact_path);
    memmove(&r->fns[pos], &r->fns[pos + 1],
            (r->n - pos - 1) * sizeof(*r->fns));
    r->n--;

    /* Remove artifacts no live function uses any more. */
    if (sqlite3_prepare_v2(r->db, shas, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        while (sqlite3_step(st) == SQLITE_ROW)
            sf_registry_drop_artifact_if_unused(
                r, (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    return 0;
}

cJSON *sf_registry_versions_json(sf_registry *r, const char *name)
{
    static const char sql[] =
        "SELECT version, sha256, size, config, created_at FROM versions"
        " WHERE function = ?1 ORDER BY version DESC";
    sqlite3_stmt *st;
    cJSON *arr;

    if (sf_registry_get(r, name, strlen(name)) == NULL)
        return NULL;
    if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    arr = cJSON_CreateArray();
    while (sqlite3_step(st) == SQLITE_ROW) {
        cJSON *v = cJSON_CreateObject();
        const char *cfg = (const char *)sqlite3_column_text(st, 3);
        char ts[32];
        cJSON_AddNumberToObject(v, "version",
                                (double)sqlite3_column_int64(st, 0));
        cJSON_AddStringToObject(v, "sha256",
                                (const char *)sqlite3_column_text(st, 1));
        cJSON_AddNumberToObject(v, "size",
                                (double)sqlite3_column_int64(st, 2));
        cJSON_AddItemToObject(v, "config",
                              cfg ? cJSON_Parse(cfg) : cJSON_CreateObject());
        sf_rfc3339(sqlite3_column_int64(st, 4), ts);
        cJSON_AddStringToObject(v, "created_at", ts);
        cJSON_AddItemToArray(arr, v);
    }
    sqlite3_finalize(st);
    return arr;
}
