/*
 * seccomp.c - loading the worker's precompiled system-call filters, and the
 * SIGSYS reporter (see seccomp.h; the rules are in seccomp_rules.c).
 *
 * The programs come from seccomp_bpf.h, which sofaas-seccomp-gen writes at
 * build time from the libseccomp rules. Each lists the instructions whose
 * constant is the worker's own pid (checked by the generator: compiling
 * with two different pids changes exactly those constants and nothing
 * else); they are patched with getpid() before the program is loaded, so a
 * template's child gets a filter pinned to its own pid without compiling
 * anything.
 */
#include "seccomp.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ipc.h"

/* One precompiled program (the generated header fills a table of them). */
typedef struct sf_bpf_prog {
    const struct sock_filter *insns;
    unsigned short len;
    const unsigned short *pid_at; /* indices of instructions whose k = pid */
    unsigned short n_pid;
} sf_bpf_prog;

#include "seccomp_bpf.h"

_Static_assert(sizeof(sf_bpf_progs) / sizeof(*sf_bpf_progs) ==
                   SF_SECCOMP_VARIANTS,
               "seccomp_bpf.h does not match seccomp.h");

static int report_fd = -1;

/*
 * Async-signal-safe: one write of a complete frame, then exit_group. The
 * frame is built on the stack so nothing here allocates.
 */
static void on_sigsys(int sig, siginfo_t *si, void *uctx)
{
    struct {
        sf_frame_hdr h;
        sf_violation_msg v;
    } __attribute__((packed)) f;
    static const char msg[] = "sofaas-worker: sandbox refused a system call, "
                              "exiting\n";

    (void)sig;
    (void)uctx;
    memset(&f, 0, sizeof(f));
    f.h.len = sizeof(f.v);
    f.h.type = SF_FRAME_VIOLATION;
    f.v.syscall_nr = si->si_syscall;
    f.v.arch = si->si_arch;
    if (report_fd >= 0)
        (void)!write(report_fd, &f, sizeof(f));
    (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
    syscall(SYS_exit_group, SF_SECCOMP_EXIT_VIOLATION);
    _exit(SF_SECCOMP_EXIT_VIOLATION);
}

int sf_seccomp_install_reporter(int ipc_fd)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigfillset(&sa.sa_mask);
    report_fd = ipc_fd;
    if (sigaction(SIGSYS, &sa, NULL) != 0)
        return -errno;
    return 0;
}

bool sf_seccomp_available(void)
{
    uint32_t act = SECCOMP_RET_TRAP;

    if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0)
        return false;
    return syscall(SYS_seccomp, 2 /* SECCOMP_GET_ACTION_AVAIL */, 0, &act) == 0;
}

size_t sf_seccomp_program(unsigned variant, pid_t self, struct sock_filter *out,
                          size_t cap)
{
    const sf_bpf_prog *p;

    if (variant >= SF_SECCOMP_VARIANTS)
        return 0;
    p = &sf_bpf_progs[variant];
    if (cap < p->len)
        return 0;
    memcpy(out, p->insns, p->len * sizeof(*out));
    for (unsigned i = 0; i < p->n_pid; i++)
        out[p->pid_at[i]].k = (uint32_t)self;
    return p->len;
}

/*
 * Loads the program for (stage, o) with our pid written in. NO_NEW_PRIVS
 * first, as libseccomp's seccomp_load does (the kernel refuses a filter
 * from an unprivileged process without it).
 *
 * TSYNC: a filter applies to the calling thread only, and a thread that a
 * constructor or sofaas_init started would otherwise serve with the load
 * stage's broader filter (test_sandbox.py, late_thread). With the flag the
 * kernel gives every thread of the process the new filter, or fails (with
 * the id of a thread whose filters differ, which cannot happen here: all
 * of them inherited the load filter) without loading it.
 */
static int load_prog(sf_seccomp_stage stage, const sf_seccomp_opts *o,
                     char *err, size_t errlen)
{
    struct sock_filter insns[SF_BPF_MAX_LEN];
    struct sock_fprog prog = {.filter = insns};
    long r = -1;

    prog.len = (unsigned short)sf_seccomp_program(
        sf_seccomp_variant(stage, o), getpid(), insns, SF_BPF_MAX_LEN);
    if (prog.len != 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0)
        r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                    SECCOMP_FILTER_FLAG_TSYNC, &prog);
    if (r != 0) {
        int e = prog.len == 0 ? EINVAL : r > 0 ? EBUSY : errno;
        static const char *const names[] = {"load", "serve", "pre-load",
                                            "narrowing"};
        snprintf(err, errlen, "loading the %s seccomp filter: %s",
                 names[stage], strerror(e));
        return -e;
    }
    return 0;
}

int sf_seccomp_load_filter(const sf_seccomp_opts *o, char *err, size_t errlen)
{
    return load_prog(SF_SECCOMP_LOAD, o, err, errlen);
}

int sf_seccomp_serve_filter(const sf_seccomp_opts *o, char *err, size_t errlen)
{
    return load_prog(SF_SECCOMP_SERVE, o, err, errlen);
}

int sf_seccomp_pre_filter(char *err, size_t errlen)
{
    sf_seccomp_opts all = {.network = true, .allow_fork = true};

    return load_prog(SF_SECCOMP_PRE, &all, err, errlen);
}

int sf_seccomp_narrow_filter(const sf_seccomp_opts *o, char *err,
                             size_t errlen)
{
    return load_prog(SF_SECCOMP_NARROW, o, err, errlen);
}
