/*
 * sandbox.h - confinement of a sofaas-worker process before it runs user
 * code (docs/sandbox.md describes the model and every layer).
 *
 * Interface, in call order (all run in sofaas-worker only):
 *
 *   sf_sandbox_configure()   from main(), with what the daemon passed on the
 *                            command line (on/off, the uid/gid to run as).
 *   sf_sandbox_early()       first thing in main(): parent-death signal, own
 *                            session, joining its memory cgroup leaf.
 *   sf_sandbox_load_stage()  after a LOAD frame and before dlopen() (user
 *                            code starts running inside dlopen): fds, env,
 *                            namespaces + private /tmp, uid/gid and caps,
 *                            rlimits, Landlock, the seccomp load filter.
 *                            It hands back the path to dlopen (the artifact
 *                            through an fd opened before the uid drop).
 *   sf_sandbox_serve_stage() after sofaas_init() succeeded, in every process
 *                            that serves invocations: stacks a tighter
 *                            seccomp filter and a Landlock scope domain.
 *
 * Templates (fork-from-initialized-instance): a template worker sets
 * policy.allow_fork. Its load stage then permits clone() without
 * CLONE_THREAD (fork, bounded by RLIMIT_NPROC), kill/tgkill of positive
 * pids (Landlock's signal scope keeps that inside the template's own
 * domain), socketpair(AF_UNIX) and sendmsg (a channel per child, passed to
 * the daemon with SCM_RIGHTS). wait4/waitid and prctl(PR_SET_PDEATHSIG)
 * are allowed for every worker. The template itself does not call the serve stage; each
 * child it forks calls sf_sandbox_serve_stage() before serving, which
 * forbids fork/vfork/clone-without-CLONE_THREAD again, pins kill/tgkill to
 * the child's own pid and puts the child in its own Landlock scope domain,
 * so siblings cannot signal each other. Everything else (namespaces, /tmp,
 * uid, rlimits, Landlock paths) is inherited from the template.
 *
 * Every stage fails closed: a non-zero return means the caller reports
 * SF_LOAD_ERR_SANDBOX and _exit()s without running user code. Only missing
 * optional kernel features degrade, with one log line naming them.
 */
#ifndef SF_WORKER_SANDBOX_H
#define SF_WORKER_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct sf_sandbox_policy {
    const char *artifact_path; /* the .so about to be loaded */
    /* > 0: the daemon passed it open with LOAD (the worker may already run
     * as a uid that cannot open the path); otherwise the path is opened. */
    int artifact_fd;
    uint32_t memory_mb;        /* address-space limit, 0 = none */
    bool memcg;                /* a memory cgroup enforces memory_mb */
    uint32_t tmp_mb;           /* private tmp quota */
    bool network;              /* the function may use the network */
    bool file_access;          /* may open files while serving */
    bool allow_fork;           /* template only, see above */
    const char *env;           /* "K=V\0K=V\0": the whole environment */
    size_t env_len;
} sf_sandbox_policy;

/* Process-wide settings chosen by the daemon (command line). */
typedef struct sf_sandbox_opts {
    bool enabled; /* false only with sofaasd --sandbox=off */
    bool set_ids; /* switch to uid/gid (the daemon runs as root) */
    uid_t uid;
    gid_t gid;
} sf_sandbox_opts;

/* Copies o; call before sf_sandbox_early(). Default: enabled, no ids. */
void sf_sandbox_configure(const sf_sandbox_opts *o);

/* Process-wide settings that do not depend on the function. */
int sf_sandbox_early(void);

/*
 * Everything that must hold before dlopen(). On success writes the path to
 * pass to dlopen into dlpath and sets *artifact_fd (-1 if none) which the
 * caller closes once dlopen returned. On failure writes a reason to err.
 */
int sf_sandbox_load_stage(const sf_sandbox_policy *p, char *dlpath,
                          size_t dlpathlen, int *artifact_fd, char *err,
                          size_t errlen);

/* Tightens after init (see above). On failure writes a reason to err. */
int sf_sandbox_serve_stage(const sf_sandbox_policy *p, char *err,
                           size_t errlen);

/*
 * Applies both stages in a child process with a throw-away policy, then
 * checks /proc/self/status; prints one line per layer to stdout. Used by
 * `sofaasd --check-sandbox` through `sofaas-worker --self-test`. Returns 0
 * when the full sandbox could be built.
 */
int sf_sandbox_self_test(const char *artifact);

#endif
