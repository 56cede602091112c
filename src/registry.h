/*
 * registry.h - deployed functions: their versions in SQLite
 * (STATE/sofaas.db) and their artifacts on disk (STATE/artifacts/<sha>.so).
 *
 * The registry keeps an in-memory, name-sorted cache of the latest version of
 * every live function so the invocation path never touches SQLite. It is used
 * only from the daemon's loop thread. Artifacts are content-addressed and
 * never rewritten in place: a running worker may have one mapped.
 */
#ifndef SF_REGISTRY_H
#define SF_REGISTRY_H

/* How long the registry's connection waits for SQLite's write lock. While
 * the daemon serves, the connection is the loop thread's, and any wait
 * stalls every request: a lock held elsewhere (an operator's sqlite3
 * shell in a transaction, a long roll-up) makes a deploy, PATCH or DELETE
 * fail after SF_REGISTRY_BUSY_MS with -EBUSY (503 database_busy and
 * Retry-After), not the gateway wait. Callers on hot paths lower it
 * further around their own writes (fnlog.c) and restore it. Opening the
 * registry (migrations, before anything is served) waits up to
 * SF_REGISTRY_OPEN_BUSY_MS. */
#define SF_REGISTRY_BUSY_MS 20
#define SF_REGISTRY_OPEN_BUSY_MS 5000

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fnconfig.h"

/* The latest version of a live function. Owned by the registry. */
typedef struct sf_function {
    char name[64];
    int64_t version;
    char sha256[65];
    int64_t size;
    int64_t created_at_us; /* this version's deploy time */
    sf_fn_config config;
    char *artifact_path; /* absolute */
} sf_function;

typedef struct sf_registry sf_registry;

/*
 * Opens (creating) state_dir, its artifacts/ folder and sofaas.db, runs the
 * schema migrations and loads the live functions. Returns 0 or -errno with
 * a reason logged.
 */
int sf_registry_open(const char *state_dir, sf_registry **out);
void sf_registry_free(sf_registry *r); /* NULL-safe */

sqlite3 *sf_registry_db(sf_registry *r);
const char *sf_registry_state_dir(sf_registry *r);

/* Latest version of a live function, or NULL. */
const sf_function *sf_registry_get(sf_registry *r, const char *name,
                                   size_t len);
/* Live functions sorted by name. */
size_t sf_registry_count(sf_registry *r);
const sf_function *sf_registry_at(sf_registry *r, size_t i);

/*
 * An artifact upload in progress: a temp file in STATE/artifacts, hashed as
 * it is written, so a deploy body is never buffered whole in memory.
 */
typedef struct sf_upload sf_upload;

/* Creates the temp file. Returns 0 or -errno. */
int sf_registry_upload_begin(sf_registry *r, sf_upload **out);
/* Appends bytes. Returns 0 or -errno (-ENOSPC when the disk is full). */
int sf_upload_write(sf_upload *u, const void *data, size_t len);
/* The first bytes written (up to 4 KiB) and the total size so far. */
const void *sf_upload_head(const sf_upload *u, size_t *head_len);
size_t sf_upload_size(const sf_upload *u);
/*
 * Makes the upload STATE/artifacts/<sha256>.so: fsync, rename (or drop the
 * temp file if that content is already stored), fsync the folder. Consumes
 * u whatever the outcome. sha receives the hex digest, *path a new string
 * the caller frees. Returns 0 or -errno.
 */
int sf_registry_upload_commit(sf_upload *u, char sha[65], char **path);
/* Discards an upload and its temp file. NULL-safe. */
void sf_upload_abort(sf_upload *u);

/* Deletes the artifact file unless a version row still references it. */
void sf_registry_drop_artifact_if_unused(sf_registry *r, const char *sha);

/*
 * Records version N+1 of name (creating the function, or reviving a deleted
 * one: version numbers never repeat). *out points at the cached entry.
 * Returns 0, -EBUSY (another connection held the write lock for
 * SF_REGISTRY_BUSY_MS; nothing changed) or -EIO.
 */
int sf_registry_add_version(sf_registry *r, const char *name,
                            const char *sha, int64_t size,
                            const sf_fn_config *cfg, const sf_function **out);

/* Marks a function deleted. Returns 0, -ENOENT, -EBUSY (as above) or
 * -EIO. */
int sf_registry_delete(sf_registry *r, const char *name);

/*
 * All versions of name, newest first, as a JSON array (caller owns), or
 * NULL if the function is unknown.
 */
cJSON *sf_registry_versions_json(sf_registry *r, const char *name);

#endif
