/*
 * seccomp.h - the worker's system-call filters (libseccomp) and the SIGSYS
 * handler that reports a refused call to the daemon.
 *
 * Two filters stack: the load filter (an allow-list, in force before
 * dlopen) and the serve filter (a deny-list on top of it, in force after
 * sofaas_init). A kernel only ever tightens stacked filters. A call outside
 * them traps (SCMP_ACT_TRAP): the handler sends an SF_FRAME_VIOLATION frame
 * naming the call and its architecture on the IPC fd, then exits the
 * process. docs/sandbox.md explains each syscall group.
 * Runs only in sofaas-worker.
 */
#ifndef SF_WORKER_SECCOMP_H
#define SF_WORKER_SECCOMP_H

#include <stdbool.h>
#include <stddef.h>

/* Exit status of a worker that the sandbox stopped. */
#define SF_SECCOMP_EXIT_VIOLATION 77

typedef struct sf_seccomp_opts {
    bool network;    /* socket/connect/bind for AF_INET, AF_INET6 */
    bool allow_fork; /* template only: clone without CLONE_THREAD */
    bool file_access; /* serve stage: may open and create files */
} sf_seccomp_opts;

/*
 * Installs the SIGSYS handler that reports violations on ipc_fd. Must run
 * before the first filter is loaded. Returns 0 or -errno.
 */
int sf_seccomp_install_reporter(int ipc_fd);

/* Loads the load-stage allow-list. Returns 0 or -errno with err written. */
int sf_seccomp_load_filter(const sf_seccomp_opts *o, char *err, size_t errlen);

/* Stacks the serve-stage filter. Returns 0 or -errno with err written. */
int sf_seccomp_serve_filter(const sf_seccomp_opts *o, char *err, size_t errlen);

/* True if this kernel can load a filter with SECCOMP_RET_TRAP. */
bool sf_seccomp_available(void);

#endif
