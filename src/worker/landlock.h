/*
 * landlock.h - the worker's Landlock layer: which paths it may read or
 * write, whether it may bind or connect TCP ports, and (ABI >= 6) whether
 * it may signal or reach abstract Unix sockets outside its own domain.
 *
 * The kernel's uapi header on the build machine may predate the ABI the
 * running kernel offers, so the structures and flags this file needs are
 * defined in landlock.c and the ABI is asked of the kernel at run time.
 * Runs only in sofaas-worker (sandbox.c calls it).
 */
#ifndef SF_WORKER_LANDLOCK_H
#define SF_WORKER_LANDLOCK_H

#include <stdbool.h>
#include <stddef.h>

/* The best Landlock ABI this kernel offers, 0 when Landlock is absent. */
int sf_landlock_abi(void);

/* One path rule: an fd (O_PATH is enough) and whether it may be written. */
typedef struct sf_landlock_rule {
    int fd;
    bool write;  /* read-write (tmp); otherwise read-only */
    bool is_dir; /* directory rights (READ_DIR, make/remove) apply */
} sf_landlock_rule;

/*
 * Enforces a new Landlock domain on the calling process: only the given
 * rules grant filesystem access; TCP bind/connect are denied unless
 * network (ABI >= 4); signals and abstract Unix sockets are scoped to the
 * domain (ABI >= 6). The fds stay the caller's. Returns 0, -EOPNOTSUPP
 * when the kernel has no Landlock, or -errno with err written.
 */
int sf_landlock_apply(int abi, const sf_landlock_rule *rules, size_t n,
                      bool network, char *err, size_t errlen);

/*
 * The same in steps, so a ruleset can be built ahead of time and finished
 * later: sf_landlock_ruleset() returns a ruleset fd (caller closes) or
 * -errno; sf_landlock_add() adds rules to it; sf_landlock_enforce()
 * restricts the calling process to it. All write err on failure.
 */
int sf_landlock_ruleset(int abi, bool network, char *err, size_t errlen);
int sf_landlock_add(int abi, int ruleset, const sf_landlock_rule *rules,
                    size_t n, char *err, size_t errlen);
int sf_landlock_enforce(int ruleset, char *err, size_t errlen);

/*
 * Adds a domain that only scopes signals and abstract Unix sockets
 * (ABI >= 6; a no-op returning 0 below that). A forked instance calls it
 * so it cannot signal the template's other children.
 */
int sf_landlock_scope_self(int abi);

#endif
