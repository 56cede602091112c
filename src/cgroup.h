/*
 * cgroup.h - per-worker memory limits and OOM detection through cgroups.
 *
 * Prefers cgroup v2 when the daemon's own cgroup is delegated to it (systemd
 * Delegate=yes): the daemon moves itself into a "daemon" leaf, enables the
 * memory controller and gives every worker a leaf under "workers" with
 * memory.max and memory.swap.max = 0; an OOM kill shows in memory.events.
 * Falls back to the cgroup v1 memory controller (memory.limit_in_bytes,
 * memsw, "oom_kill" in memory.oom_control), and to nothing (rlimits only, in
 * the worker's sandbox) when neither is writable. Loop thread only.
 */
#ifndef SF_CGROUP_H
#define SF_CGROUP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef enum sf_cgroup_mode {
    SF_CGROUP_NONE = 0,
    SF_CGROUP_V1,
    SF_CGROUP_V2,
} sf_cgroup_mode;

typedef struct sf_cgroup sf_cgroup;

/*
 * Detects and prepares the worker cgroup root. Never fails: when cgroups
 * cannot be used, *out is a handle in SF_CGROUP_NONE mode and one log line
 * says why. Returns 0 or -ENOMEM.
 */
int sf_cgroup_open(sf_cgroup **out);
sf_cgroup_mode sf_cgroup_get_mode(const sf_cgroup *cg);
const char *sf_cgroup_mode_name(sf_cgroup_mode m);

/* Puts pid into a new leaf for worker id. Returns 0 or -errno. */
int sf_cgroup_add(sf_cgroup *cg, uint64_t id, pid_t pid);
/*
 * Creates the (empty) leaf of worker id, for a worker that joins it itself
 * (sf_cgroup_procs_path). Returns 0 or -errno (0 in SF_CGROUP_NONE mode).
 */
int sf_cgroup_prepare(sf_cgroup *cg, uint64_t id);
/* The leaf's cgroup.procs, which a process joins by writing its pid there.
 * Caller frees; NULL in SF_CGROUP_NONE mode or out of memory. */
char *sf_cgroup_procs_path(sf_cgroup *cg, uint64_t id);
/* Sets the worker's memory limit (and no swap). Returns 0 or -errno. */
int sf_cgroup_set_memory(sf_cgroup *cg, uint64_t id, uint32_t memory_mb);
/* True if the kernel OOM-killed a process of worker id's leaf. */
bool sf_cgroup_oom_killed(sf_cgroup *cg, uint64_t id);
/* Removes the (empty) leaf of worker id. On cgroup v1 an rmdir can wait
 * ~10-20 ms for the kernel: event-loop callers use sf_cgroup_leaf_dir and
 * remove it from a thread (pool.c). */
void sf_cgroup_remove(sf_cgroup *cg, uint64_t id);
/* The leaf directory of worker id. Caller frees; NULL in SF_CGROUP_NONE
 * mode or out of memory. */
char *sf_cgroup_leaf_dir(sf_cgroup *cg, uint64_t id);
/* Removes the daemon's worker root where possible. NULL-safe. */
void sf_cgroup_free(sf_cgroup *cg);

#endif
