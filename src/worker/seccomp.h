/*
 * seccomp.h - the worker's system-call filters and the SIGSYS handler that
 * reports a refused call to the daemon.
 *
 * Two filters stack: the load filter (an allow-list, in force before
 * dlopen) and the serve filter (a deny-list on top of it, in force after
 * sofaas_init). A kernel only ever tightens stacked filters. A call outside
 * them traps (SCMP_ACT_TRAP): the handler sends an SF_FRAME_VIOLATION frame
 * naming the call and its architecture on the IPC fd, then exits the
 * process. docs/sandbox.md explains each syscall group.
 *
 * The rules are written with libseccomp (seccomp_rules.c) but compiled at
 * build time: every variant below is a ready BPF program in the worker
 * binary, and loading one costs a copy, the worker's pid written into the
 * places the rules name it, and one seccomp(2) call. Runs only in
 * sofaas-worker (and its unit test).
 */
#ifndef SF_WORKER_SECCOMP_H
#define SF_WORKER_SECCOMP_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Exit status of a worker that the sandbox stopped. */
#define SF_SECCOMP_EXIT_VIOLATION 77

typedef struct sf_seccomp_opts {
    bool network;    /* socket/connect/bind for AF_INET, AF_INET6 */
    bool allow_fork; /* load stage, template only: clone without CLONE_THREAD */
    bool file_access; /* serve stage: may open and create files */
} sf_seccomp_opts;

/*
 * LOAD and SERVE are the two filters above. PRE and NARROW split LOAD in
 * two, so that most of its cost is paid before LOAD arrives: a generic
 * worker (root daemon) loads PRE before HELLO — LOAD's rules for the
 * broadest options (network and fork) plus the few calls the load stage
 * makes before dlopen (setns, mount, move_mount, the uid switch) — and at
 * LOAD stacks NARROW for the function's options, a short deny-list that
 * takes back exactly what PRE allows beyond LOAD. PRE with NARROW on top
 * decides every call as LOAD alone would (tests/unit/test_seccomp.c runs
 * both through a BPF interpreter for every system call and many
 * arguments). Attaching a filter costs the kernel ~0.5 us per
 * instruction on top of a fixed part; NARROW is ~6x shorter than LOAD.
 */
typedef enum sf_seccomp_stage {
    SF_SECCOMP_LOAD = 0,
    SF_SECCOMP_SERVE = 1,
    SF_SECCOMP_PRE = 2,
    SF_SECCOMP_NARROW = 3,
} sf_seccomp_stage;

/* Number of precompiled programs: LOAD, SERVE and NARROW per network x
 * (allow_fork for LOAD and NARROW, file_access for SERVE), and one PRE. */
#define SF_SECCOMP_VARIANTS 13

/* Index of the program for stage and o (an option that does not apply to
 * the stage is ignored). */
static inline unsigned sf_seccomp_variant(sf_seccomp_stage stage,
                                          const sf_seccomp_opts *o)
{
    bool third = stage == SF_SECCOMP_SERVE ? o->file_access : o->allow_fork;
    unsigned opt = (o->network ? 2u : 0u) + (third ? 1u : 0u);

    switch (stage) {
    case SF_SECCOMP_LOAD:
        return opt;
    case SF_SECCOMP_SERVE:
        return 4u + opt;
    case SF_SECCOMP_PRE:
        return 8u;
    default:
        return 9u + opt;
    }
}

/* The inverse: stage and options of variant v. Returns 0, or -1 when v is
 * out of range. */
static inline int sf_seccomp_variant_opts(unsigned v, sf_seccomp_stage *stage,
                                          sf_seccomp_opts *o)
{
    unsigned opt;

    if (v >= SF_SECCOMP_VARIANTS)
        return -1;
    *stage = v < 4 ? SF_SECCOMP_LOAD
             : v < 8 ? SF_SECCOMP_SERVE
             : v == 8 ? SF_SECCOMP_PRE
                      : SF_SECCOMP_NARROW;
    opt = v < 8 ? v % 4u : v == 8 ? 3u : v - 9u;
    o->network = (opt & 2u) != 0;
    o->allow_fork = *stage != SF_SECCOMP_SERVE && (opt & 1u) != 0;
    o->file_access = *stage == SF_SECCOMP_SERVE && (opt & 1u) != 0;
    return 0;
}

/*
 * Installs the SIGSYS handler that reports violations on ipc_fd. Must run
 * before the first filter is loaded. Returns 0 or -errno.
 */
int sf_seccomp_install_reporter(int ipc_fd);

/* Loads the load-stage allow-list. Returns 0 or -errno with err written. */
int sf_seccomp_load_filter(const sf_seccomp_opts *o, char *err, size_t errlen);

/* Loads PRE (before HELLO: the reporter must be installed first). Returns
 * 0 or -errno with err written. */
int sf_seccomp_pre_filter(char *err, size_t errlen);

/* Stacks NARROW for o on PRE: together they are the load-stage filter for
 * o. Returns 0 or -errno with err written. */
int sf_seccomp_narrow_filter(const sf_seccomp_opts *o, char *err,
                             size_t errlen);

/* Stacks the serve-stage filter (for the calling process's pid: a
 * template's child calls it after the fork). Returns 0 or -errno with err
 * written. */
int sf_seccomp_serve_filter(const sf_seccomp_opts *o, char *err, size_t errlen);

/*
 * Writes the program for variant, pinned to pid self, into out (cap
 * instructions). Returns its length, or 0 if variant is out of range or
 * cap too small. The loading functions above use it; exposed for the test
 * that compares it with libseccomp's own compilation.
 */
size_t sf_seccomp_program(unsigned variant, pid_t self, struct sock_filter *out,
                          size_t cap);

/* True if this kernel can load a filter with SECCOMP_RET_TRAP. */
bool sf_seccomp_available(void);

#endif
