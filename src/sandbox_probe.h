/*
 * sandbox_probe.h - what the worker sandbox can use on this kernel, as
 * seen from sofaasd: seccomp with SECCOMP_RET_TRAP, the Landlock ABI, which
 * namespaces can be created (directly as root, or inside a user namespace
 * otherwise), and the unprivileged user workers switch to.
 *
 * The daemon logs the result once at start (naming any layer that is
 * missing) and `sofaasd --check-sandbox` prints it, then asks a real
 * worker to build the whole sandbox (sofaas-worker --self-test). The probe
 * itself only asks the kernel: it forks a child to try unshare(2), and it
 * never loads user code. Runs in sofaasd only.
 */
#ifndef SF_SANDBOX_PROBE_H
#define SF_SANDBOX_PROBE_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

typedef struct sf_sandbox_probe {
    bool seccomp;     /* filters with SECCOMP_RET_TRAP */
    int landlock_abi; /* 0 = no Landlock */
    bool root;        /* the daemon runs as root: workers switch uid */
    bool userns;      /* unprivileged: user namespaces available */
    bool mntns, netns, ipcns, utsns;
    bool asan; /* sanitizer build: no RLIMIT_AS */
} sf_sandbox_probe;

/* Fills p. Never fails: an unusable feature is reported as absent. */
void sf_sandbox_probe_run(sf_sandbox_probe *p);

/*
 * Writes the layers in effect as one log line, and one warning line naming
 * the optional layers this kernel lacks (if any). uid/gid: the identity
 * workers switch to, uid 0 when they keep the daemon's.
 */
void sf_sandbox_probe_log(const sf_sandbox_probe *p, uid_t uid, gid_t gid);

/* Human-readable table for --check-sandbox. */
void sf_sandbox_probe_print(const sf_sandbox_probe *p, uid_t uid, gid_t gid,
                            FILE *out);

#endif
