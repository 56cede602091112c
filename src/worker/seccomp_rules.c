/*
 * seccomp_rules.c - the worker's filter rules (see seccomp_rules.h), built
 * with libseccomp at build time by sofaas-seccomp-gen.
 *
 * The load filter is an allow-list grouped by purpose; everything else
 * traps, and so does any call made under another architecture (i386
 * `int 0x80`; x32 numbers are refused by libseccomp's x86_64 arch check),
 * because the filter is built for the native architecture only. Arguments
 * are checked where a call is harmless for some values and an escape for
 * others: signals only to this process, clone only for threads, ioctl only
 * for a few tty/fd queries, socket only for IP families (and only with
 * network), prctl only for names and read-only queries, rt_sigaction never
 * changes SIGSYS (so user code cannot take a violation from the reporter).
 *
 * The worker's own pid appears in the rules (signals and prlimit64 only to
 * itself); sofaas-seccomp-gen records where it lands in each program and
 * the worker writes its pid there before loading (seccomp.c).
 */
#include "seccomp_rules.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/netlink.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

/* libseccomp's SCMP_A0()..SCMP_A5() leave the comparison's second datum
 * to zero-initialization, which clang's -Wextra reports. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

// clang-format off
/*
 * Allowed unconditionally at the load stage. Grouped as in docs/sandbox.md;
 * a name libseccomp does not know is skipped (and so stays denied).
 */
static const char *const allow_plain[] = {
    /* memory: the allocator, dlopen's segment mapping and relocation */
    "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "msync",
    "mincore", "membarrier",
    /* file I/O; which paths may be opened is Landlock's job */
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv",
    "pwritev", "preadv2", "pwritev2", "open", "openat", "close",
    "close_range", "lseek", "fstat", "stat", "lstat", "newfstatat", "statx",
    "statfs", "fstatfs", "access", "faccessat", "faccessat2", "readlink",
    "readlinkat", "getdents", "getdents64", "dup", "dup2", "dup3",
    "pipe", "pipe2", "ftruncate", "truncate", "fsync", "fdatasync",
    "fallocate", "flock", "fadvise64", "sendfile", "copy_file_range",
    "splice", "tee", "mkdir", "mkdirat", "unlink", "unlinkat", "rename",
    "renameat", "renameat2", "rmdir", "symlink", "symlinkat", "link",
    "linkat", "getcwd", "chdir", "fchdir", "umask", "utimensat", "fchmod",
    /* waiting on fds the process already holds */
    "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1",
    "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd",
    "eventfd2", "timerfd_create", "timerfd_settime", "timerfd_gettime",
    "signalfd", "signalfd4",
    /* time */
    "clock_gettime", "clock_getres", "gettimeofday", "time", "nanosleep",
    "clock_nanosleep",
    /* read-only facts about this process and the machine */
    "getpid", "getppid", "gettid", "getuid", "geteuid", "getgid",
    "getegid", "getresuid", "getresgid", "getgroups", "getpgrp", "getpgid",
    "getsid", "getrlimit", "setrlimit", "getrusage", "uname", "sysinfo",
    "times", "getcpu", "getpriority", "sched_getaffinity", "sched_yield",
    "sched_getparam", "sched_getscheduler", "sched_get_priority_max",
    "sched_get_priority_min", "getrandom",
    /* signals delivered to this process */
    "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait",
    "rt_sigsuspend", "sigaltstack", "pause", "alarm", "setitimer",
    "getitimer", "restart_syscall",
    /* threads (clone itself is checked below) and process exit */
    "futex", "futex_waitv", "set_robust_list", "get_robust_list",
    "set_tid_address", "rseq", "arch_prctl", "exit", "exit_group",
    "wait4", "waitid",
    /* stacking the serve stage on top of this one (can only tighten) */
    "seccomp", "landlock_create_ruleset", "landlock_add_rule",
    "landlock_restrict_self",
};

/* With network: true, on sockets the function creates. */
static const char *const allow_network[] = {
    "connect", "bind", "listen", "accept", "accept4", "getsockname",
    "getpeername", "setsockopt", "getsockopt", "sendto", "recvfrom",
    "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown",
};
// clang-format on

#define CLONE_NS_FLAGS                                                         \
    (CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID |               \
     CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP)

/* Adds act for each name (but skip); a name libseccomp does not know is
 * left out (and so keeps the default action). */
static int add_names_act(scmp_filter_ctx ctx, uint32_t act,
                         const char *const *names, size_t n, const char *skip,
                         char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        int nr = seccomp_syscall_resolve_name(names[i]);
        int r;

        if (nr == __NR_SCMP_ERROR || (skip && strcmp(names[i], skip) == 0))
            continue;
        r = seccomp_rule_add(ctx, act, nr, 0);
        if (r < 0) {
            snprintf(err, errlen, "seccomp_rule_add %s: %s", names[i],
                     strerror(-r));
            return r;
        }
    }
    return 0;
}

#define ADD(ctx, act, name, ...)                                               \
    do {                                                                       \
        r = seccomp_rule_add(ctx, act, SCMP_SYS(name), __VA_ARGS__);           \
        if (r < 0) {                                                           \
            snprintf(err, errlen, "seccomp_rule_add %s: %s", #name,            \
                     strerror(-r));                                            \
            goto out;                                                          \
        }                                                                      \
    } while (0)

static scmp_filter_ctx new_ctx(uint32_t def, char *err, size_t errlen)
{
    scmp_filter_ctx ctx = seccomp_init(def);

    if (ctx == NULL) {
        snprintf(err, errlen, "seccomp_init failed");
        return NULL;
    }
    /* Another architecture's syscall table (i386 int 0x80) traps too, so
     * the handler can name it. */
    if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_TRAP) < 0) {
        snprintf(err, errlen, "seccomp_attr_set failed");
        seccomp_release(ctx);
        return NULL;
    }
    /* A binary tree keeps the hot path (read, write) short; not fatal if
     * this libseccomp lacks it. */
    (void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    return ctx;
}

static int add_load_rules(scmp_filter_ctx ctx, const sf_seccomp_opts *o,
                          pid_t self, char *err, size_t errlen)
{
    static const unsigned long ioctls[] = {TCGETS,  TIOCGWINSZ, FIONREAD,
                                           FIONBIO, FIOCLEX,    FIONCLEX};
    /* Not F_SETOWN/F_SETSIG (SIGIO to another process), F_SETLEASE,
     * F_NOTIFY. */
    static const int fcntls[] = {
        F_DUPFD,      F_DUPFD_CLOEXEC, F_GETFD,     F_SETFD,
        F_GETFL,      F_SETFL,         F_GETLK,     F_SETLK,
        F_SETLKW,     F_OFD_GETLK,     F_OFD_SETLK, F_OFD_SETLKW,
        F_GETPIPE_SZ, F_SETPIPE_SZ,    F_ADD_SEALS, F_GET_SEALS};
    /* PR_SET_PDEATHSIG: a template's child dies with its template
     * (docs/sandbox.md says so for every worker; harmless: it only asks for
     * a signal to ourselves). */
    static const int prctls[] = {
        PR_SET_NAME,    PR_GET_NAME, PR_GET_DUMPABLE, PR_GET_NO_NEW_PRIVS,
        PR_GET_SECCOMP, PR_SET_VMA,  PR_CAPBSET_READ, PR_SET_NO_NEW_PRIVS,
        PR_SET_PDEATHSIG};
    int r;

    r = add_names_act(ctx, SCMP_ACT_ALLOW, allow_plain,
                      sizeof(allow_plain) / sizeof(*allow_plain), NULL, err,
                      errlen);
    if (r < 0)
        goto out;
    for (size_t i = 0; i < sizeof(ioctls) / sizeof(*ioctls); i++)
        ADD(ctx, SCMP_ACT_ALLOW, ioctl, 1, SCMP_A1(SCMP_CMP_EQ, ioctls[i]));
    for (size_t i = 0; i < sizeof(fcntls) / sizeof(*fcntls); i++)
        ADD(ctx, SCMP_ACT_ALLOW, fcntl, 1,
            SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)fcntls[i]));
    for (size_t i = 0; i < sizeof(prctls) / sizeof(*prctls); i++)
        ADD(ctx, SCMP_ACT_ALLOW, prctl, 1,
            SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)prctls[i]));
    /* SIGSYS belongs to the reporter: changing its action fails with
     * EINVAL, as for SIGKILL and SIGSTOP (so "ignore every signal" loops
     * still work); reading it is fine. */
    ADD(ctx, SCMP_ACT_ALLOW, rt_sigaction, 1,
        SCMP_A0(SCMP_CMP_NE, (scmp_datum_t)SIGSYS));
    ADD(ctx, SCMP_ACT_ALLOW, rt_sigaction, 2,
        SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)SIGSYS), SCMP_A1(SCMP_CMP_EQ, 0));
    ADD(ctx, SCMP_ACT_ERRNO(EINVAL), rt_sigaction, 2,
        SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)SIGSYS), SCMP_A1(SCMP_CMP_NE, 0));
    /* getrlimit() is prlimit64(0, ...) in glibc. */
    ADD(ctx, SCMP_ACT_ALLOW, prlimit64, 1, SCMP_A0(SCMP_CMP_EQ, 0));
    ADD(ctx, SCMP_ACT_ALLOW, prlimit64, 1,
        SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)self));
    if (o->allow_fork) {
        /* A template signals its own children; 0 < pid <= INT_MAX (never
         * -1 or a process group); Landlock's signal scope keeps it inside
         * its own domain, and each child pins itself in its serve stage. */
        ADD(ctx, SCMP_ACT_ALLOW, kill, 1,
            SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffff80000000ULL, 0));
        ADD(ctx, SCMP_ACT_ALLOW, tgkill, 1,
            SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffff80000000ULL, 0));
        ADD(ctx, SCMP_ACT_ALLOW, clone, 1,
            SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NS_FLAGS, 0));
        /* The template hands each child a channel to the daemon: a Unix
         * socket pair, passed over its own channel with SCM_RIGHTS. */
        ADD(ctx, SCMP_ACT_ALLOW, socketpair, 1,
            SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
        ADD(ctx, SCMP_ACT_ALLOW, sendmsg, 0);
    } else {
        /* raise()/abort() are tgkill(getpid(), gettid(), sig). */
        ADD(ctx, SCMP_ACT_ALLOW, kill, 1,
            SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)self));
        ADD(ctx, SCMP_ACT_ALLOW, tgkill, 1,
            SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)self));
        /* Threads only: CLONE_THREAD set, no namespace flags. */
        ADD(ctx, SCMP_ACT_ALLOW, clone, 1,
            SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NS_FLAGS | CLONE_THREAD,
                    CLONE_THREAD));
    }
    /* clone3 passes its flags in memory, out of a filter's reach: ENOSYS
     * makes glibc fall back to clone, whose flags are checked above. */
    ADD(ctx, SCMP_ACT_ERRNO(ENOSYS), clone3, 0);
    if (o->network) {
        r = add_names_act(ctx, SCMP_ACT_ALLOW, allow_network,
                          sizeof(allow_network) / sizeof(*allow_network),
                          NULL, err, errlen);
        if (r < 0)
            goto out;
        ADD(ctx, SCMP_ACT_ALLOW, socket, 1, SCMP_A0(SCMP_CMP_EQ, AF_INET));
        ADD(ctx, SCMP_ACT_ALLOW, socket, 1, SCMP_A0(SCMP_CMP_EQ, AF_INET6));
        /* getaddrinfo asks the kernel for local addresses over netlink. */
        ADD(ctx, SCMP_ACT_ALLOW, socket, 2, SCMP_A0(SCMP_CMP_EQ, AF_NETLINK),
            SCMP_A2(SCMP_CMP_EQ, NETLINK_ROUTE));
    }
    r = 0;
out:
    return r;
}

/*
 * What the load stage calls between PRE (before HELLO) and NARROW (right
 * before dlopen) beyond LOAD's own rules: return to the host's network
 * namespace (network: true), attach and size the private /tmp, the switch
 * to the worker uid and the capability checks after it (sandbox.c). NARROW
 * traps every one of them again, so no function code can ever call them.
 */
static const char *const setup_calls[] = {
    "setns",  "mount",     "move_mount", "setgroups",
    "setresuid", "setresgid", "capget",  "capset",
};
static const int setup_prctls[] = {PR_SET_DUMPABLE, PR_CAPBSET_DROP,
                                   PR_CAP_AMBIENT};

/* PRE: LOAD for network and fork (which allows what every other variant
 * of LOAD allows, and more), plus the setup calls. */
static int add_pre_rules(scmp_filter_ctx ctx, pid_t self, char *err,
                         size_t errlen)
{
    sf_seccomp_opts all = {.network = true, .allow_fork = true};
    int r = add_load_rules(ctx, &all, self, err, errlen);

    if (r < 0)
        goto out;
    r = add_names_act(ctx, SCMP_ACT_ALLOW, setup_calls,
                      sizeof(setup_calls) / sizeof(*setup_calls), NULL, err,
                      errlen);
    if (r < 0)
        goto out;
    for (size_t i = 0; i < sizeof(setup_prctls) / sizeof(*setup_prctls); i++)
        ADD(ctx, SCMP_ACT_ALLOW, prctl, 1,
            SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)setup_prctls[i]));
    r = 0;
out:
    return r;
}

/* NARROW for o: on top of PRE, traps exactly what LOAD for o would and PRE
 * does not (LOAD traps everything it does not allow). */
static int add_narrow_rules(scmp_filter_ctx ctx, const sf_seccomp_opts *o,
                            pid_t self, char *err, size_t errlen)
{
    int r = add_names_act(ctx, SCMP_ACT_TRAP, setup_calls,
                          sizeof(setup_calls) / sizeof(*setup_calls), NULL,
                          err, errlen);

    if (r < 0)
        goto out;
    for (size_t i = 0; i < sizeof(setup_prctls) / sizeof(*setup_prctls); i++)
        ADD(ctx, SCMP_ACT_TRAP, prctl, 1,
            SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)setup_prctls[i]));
    if (!o->allow_fork) {
        /* LOAD: signals to itself only; clone only with CLONE_THREAD
         * (PRE already refuses namespace flags); no socketpair, and
         * sendmsg only with network. */
        ADD(ctx, SCMP_ACT_TRAP, kill, 1,
            SCMP_A0(SCMP_CMP_NE, (scmp_datum_t)self));
        ADD(ctx, SCMP_ACT_TRAP, tgkill, 1,
            SCMP_A0(SCMP_CMP_NE, (scmp_datum_t)self));
        ADD(ctx, SCMP_ACT_TRAP, clone, 1,
            SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0));
        ADD(ctx, SCMP_ACT_TRAP, socketpair, 0);
        if (!o->network)
            ADD(ctx, SCMP_ACT_TRAP, sendmsg, 0);
    }
    if (!o->network) {
        /* sendmsg was settled just above (a template keeps it). */
        r = add_names_act(ctx, SCMP_ACT_TRAP, allow_network,
                          sizeof(allow_network) / sizeof(*allow_network),
                          "sendmsg", err, errlen);
        if (r < 0)
            goto out;
        ADD(ctx, SCMP_ACT_TRAP, socket, 0);
    }
    r = 0;
out:
    return r;
}

static int add_serve_rules(scmp_filter_ctx ctx, const sf_seccomp_opts *o,
                           pid_t self, char *err, size_t errlen)
{
    static const char *const deny[] = {"seccomp",
                                       "landlock_create_ruleset",
                                       "landlock_add_rule",
                                       "landlock_restrict_self",
                                       "setrlimit",
                                       "fork",
                                       "vfork"};
    int r = 0;

    for (size_t i = 0; i < sizeof(deny) / sizeof(*deny); i++) {
        int nr = seccomp_syscall_resolve_name(deny[i]);
        if (nr == __NR_SCMP_ERROR)
            continue;
        r = seccomp_rule_add(ctx, SCMP_ACT_TRAP, nr, 0);
        if (r < 0) {
            snprintf(err, errlen, "seccomp_rule_add %s: %s", deny[i],
                     strerror(-r));
            goto out;
        }
    }
    /* No new processes in the serving loop, not even in a template's
     * child; threads stay allowed. */
    ADD(ctx, SCMP_ACT_TRAP, clone, 1,
        SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0));
    /* Signals only to this very process (a template child has a new pid). */
    ADD(ctx, SCMP_ACT_TRAP, kill, 1, SCMP_A0(SCMP_CMP_NE, (scmp_datum_t)self));
    ADD(ctx, SCMP_ACT_TRAP, tgkill, 1,
        SCMP_A0(SCMP_CMP_NE, (scmp_datum_t)self));
    /* Limits may be read, not changed, once serving. */
    ADD(ctx, SCMP_ACT_TRAP, prlimit64, 1, SCMP_A2(SCMP_CMP_NE, 0));
    if (!o->network) {
        /* W^X once serving: no new executable mappings. With network the
         * resolver may dlopen NSS modules, so this is left to Landlock
         * (no file may be executed) and the load stage. */
        ADD(ctx, SCMP_ACT_TRAP, mmap, 1,
            SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
        ADD(ctx, SCMP_ACT_TRAP, mprotect, 1,
            SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
        ADD(ctx, SCMP_ACT_TRAP, pkey_mprotect, 1,
            SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
    }
    if (!o->file_access) {
        /* No file access once serving unless the function asked for it
         * (file_access): opening or creating anything fails with EACCES,
         * as a permission error would, rather than killing the instance,
         * because libc opens files on its own (e.g. /etc/localtime) and
         * copes with a refusal. Files opened during init stay usable. */
        static const char *const fs[] = {
            "open",     "openat",   "openat2",  "creat",     "mkdir",
            "mkdirat",  "mknod",    "mknodat",  "unlink",    "unlinkat",
            "rmdir",    "rename",   "renameat", "renameat2", "link",
            "linkat",   "symlink",  "symlinkat", "truncate", "chmod",
            "fchmodat", "chown",    "lchown",   "fchownat",  "utimensat"};
        for (size_t i = 0; i < sizeof(fs) / sizeof(*fs); i++) {
            int nr = seccomp_syscall_resolve_name(fs[i]);
            if (nr == __NR_SCMP_ERROR)
                continue;
            r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), nr, 0);
            if (r < 0) {
                snprintf(err, errlen, "seccomp_rule_add %s: %s", fs[i],
                         strerror(-r));
                goto out;
            }
        }
    }
    r = 0;
out:
    return r;
}

/* Reads back what seccomp_export_bpf wrote to fd. */
static int read_prog(int fd, struct sock_filter **prog, size_t *len)
{
    struct stat st;
    struct sock_filter *p;

    if (fstat(fd, &st) != 0)
        return -errno;
    if (st.st_size <= 0 || st.st_size % sizeof(*p) != 0 ||
        (size_t)st.st_size / sizeof(*p) > BPF_MAXINSNS)
        return -EINVAL;
    p = malloc((size_t)st.st_size);
    if (p == NULL)
        return -ENOMEM;
    if (pread(fd, p, (size_t)st.st_size, 0) != st.st_size) {
        free(p);
        return -EIO;
    }
    *prog = p;
    *len = (size_t)st.st_size / sizeof(*p);
    return 0;
}

int sf_seccomp_rules_compile(unsigned variant, pid_t self,
                             struct sock_filter **prog, size_t *len,
                             char *err, size_t errlen)
{
    sf_seccomp_stage stage;
    sf_seccomp_opts o;
    scmp_filter_ctx ctx;
    int fd = -1, r;

    if (sf_seccomp_variant_opts(variant, &stage, &o) < 0) {
        snprintf(err, errlen, "no filter variant %u", variant);
        return -EINVAL;
    }
    /* LOAD and PRE are allow-lists; SERVE and NARROW deny-lists stacked
     * on one of them. */
    ctx = new_ctx(stage == SF_SECCOMP_LOAD || stage == SF_SECCOMP_PRE
                      ? SCMP_ACT_TRAP
                      : SCMP_ACT_ALLOW,
                  err, errlen);
    if (ctx == NULL)
        return -ENOMEM;
    switch (stage) {
    case SF_SECCOMP_LOAD:
        r = add_load_rules(ctx, &o, self, err, errlen);
        break;
    case SF_SECCOMP_SERVE:
        r = add_serve_rules(ctx, &o, self, err, errlen);
        break;
    case SF_SECCOMP_PRE:
        r = add_pre_rules(ctx, self, err, errlen);
        break;
    default:
        r = add_narrow_rules(ctx, &o, self, err, errlen);
        break;
    }
    if (r < 0)
        goto out;
    /* libseccomp 2.5 exports to a file descriptor only. */
    fd = memfd_create("sofaas-bpf", MFD_CLOEXEC);
    if (fd < 0) {
        r = -errno;
        snprintf(err, errlen, "memfd_create: %s", strerror(-r));
        goto out;
    }
    r = seccomp_export_bpf(ctx, fd);
    if (r < 0) {
        snprintf(err, errlen, "seccomp_export_bpf: %s", strerror(-r));
        goto out;
    }
    r = read_prog(fd, prog, len);
    if (r < 0)
        snprintf(err, errlen, "reading the exported filter: %s", strerror(-r));
out:
    if (fd >= 0)
        close(fd);
    seccomp_release(ctx);
    return r;
}
