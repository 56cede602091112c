/*
 * sandbox.c - the worker's confinement, stage by stage (see sandbox.h and
 * docs/sandbox.md).
 *
 * The load stage runs its steps in an order forced by the kernel: the
 * artifact is opened while it is still reachable (before the private /tmp
 * may hide it and before the uid drop takes directory search rights away);
 * the user namespace's id maps are written while /proc/self is still ours
 * (before PR_SET_DUMPABLE 0); root drops its uid after the mounts that need
 * its privilege (a non-root daemon with CAP_SETUID drops first and mounts
 * inside a user namespace of the new uid); the Landlock rules are opened
 * after /tmp is mounted, so the tmp rule names the new tmpfs; Landlock and
 * the seccomp filter come last because they take away the calls the
 * earlier steps make. Seccomp is required; Landlock and namespaces are optional
 * kernel features and are skipped when absent (sofaasd logs which at
 * start), everything else failing is fatal.
 */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ipc.h"
#include "landlock.h"
#include "netns.h"
#include "log.h"
#include "seccomp.h"

/* Open files per instance: the IPC channel, stdio, and room for the
 * function's own files and sockets. */
#define SF_SANDBOX_NOFILE 64
/* Processes and threads of the instance's uid (a kernel count per uid). */
#define SF_SANDBOX_NPROC 1024
#define SF_SANDBOX_HOSTNAME "sofaas"

#if defined(__SANITIZE_ADDRESS__)
#define SF_SANDBOX_ASAN 1
#else
#define SF_SANDBOX_ASAN 0
#endif

static sf_sandbox_opts opts = {.enabled = true};
/* This process joined the memory cgroup leaf the daemon made for it. */
static bool in_memcg;
/* Work done before LOAD (prepare_ahead): the namespaces entered (a mount
 * namespace with its mounts already private), the host's network namespace
 * to return to for a function with network (-1 if none), whether the
 * bounding set is empty, and Landlock rulesets holding the read-only rules,
 * one per value of network (-1 if none). */
static int pre_ns;
static int host_netns = -1;
/* Non-root daemon: a network namespace made ahead but not entered (the
 * worker's user namespace owns it, so a function with network could never
 * leave it again); joined at LOAD unless the function has network. */
static int pre_netns = -1;
/* The worker switched to its uid ahead (ids_before_namespaces). */
static bool pre_ids;
static bool pre_bounding;
static int pre_ruleset[2] = {-1, -1};
static int pre_abi;
/* The private /tmp made ahead as a detached mount (-1: none), at the
 * default tmp_mb (fnconfig.h) so most functions need no resize at LOAD. It
 * is attached only at LOAD, after the artifact is open: a state directory
 * under /tmp would be hidden by it. */
#define TMP_AHEAD_MB 64
static int pre_tmp_fd = -1;
/* The prepared rulesets hold the rule for the private /tmp already. */
static bool pre_tmp_rule;
/* PRE is in force (pre_attach): the load stage stacks NARROW, not LOAD. */
static bool pre_filter;

static int add_rule(sf_landlock_rule *rules, size_t *n, const char *path,
                    bool write, char *err, size_t errlen);
static void close_rules(sf_landlock_rule *r, size_t n);
static int drop_bounding(bool must, char *err, size_t errlen);
static int tmp_ahead(void);
static int enter_userns(void);
static int ids_before_namespaces(char *err, size_t errlen);

/* Read-only for every function: the dynamic loader's world, time zones,
 * name resolution and CA certificates, and a few character devices. */
static const char *const ro_paths[] = {
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/host.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/dev/zero",
    "/dev/urandom",
    "/dev/random",
    "/proc/self",
};

#define SF_SANDBOX_MAX_RULES 32

/* Monotonic microseconds, for the per-step costs in the debug log. */
static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void sf_sandbox_configure(const sf_sandbox_opts *o)
{
    opts = *o;
}

/*
 * Joins the memory cgroup leaf named by SOFAAS_CGROUP_PROCS, if the daemon
 * made one. The worker does it rather than the daemon because the move can
 * wait for an RCU grace period (cgroup.c), and it happens before HELLO, so
 * before the worker can be given any function. On failure the worker only
 * loses the relaxed RLIMIT_AS that a memory cgroup allows (address_space()).
 */
static void join_cgroup(void)
{
    const char *procs = getenv("SOFAAS_CGROUP_PROCS");
    char pid[32];
    int fd, n;

    if (procs == NULL || procs[0] == '\0')
        return;
    n = snprintf(pid, sizeof(pid), "%d", (int)getpid());
    fd = open(procs, O_WRONLY | O_CLOEXEC);
    if (fd >= 0 && write(fd, pid, (size_t)n) == n)
        in_memcg = true;
    else
        SF_WARN("msg=\"cannot join the worker's memory cgroup; memory_mb is "
                "enforced by RLIMIT_AS alone\" path=%s error=\"%s\"",
                procs, strerror(errno));
    if (fd >= 0)
        close(fd);
}

/*
 * The read-only Landlock rules (everything but /tmp and the artifact),
 * added to a new ruleset for each value of network.
 */
static void prepare_rulesets(void)
{
    sf_landlock_rule rules[SF_SANDBOX_MAX_RULES];
    size_t n = 0;
    char err[256];

    pre_abi = sf_landlock_abi();
    if (pre_abi <= 0)
        return;
    for (size_t i = 0; i < sizeof(ro_paths) / sizeof(*ro_paths); i++)
        if (add_rule(rules, &n, ro_paths[i], false, err, sizeof(err)) < 0)
            goto out;
    if (add_rule(rules, &n, "/dev/null", true, err, sizeof(err)) < 0)
        goto out;
    for (int net = 0; net < 2; net++) {
        int fd = sf_landlock_ruleset(pre_abi, net, err, sizeof(err));
        if (fd < 0)
            break;
        if (sf_landlock_add(pre_abi, fd, rules, n, err, sizeof(err)) < 0) {
            close(fd);
            break;
        }
        pre_ruleset[net] = fd;
    }
    /* The private /tmp too, through the detached mount's root: a rule
     * holds the inode, which stays the same once it is attached. */
    if (pre_tmp_fd >= 0 && pre_ruleset[0] >= 0 && pre_ruleset[1] >= 0) {
        sf_landlock_rule tmp = {.fd = pre_tmp_fd, .write = true,
                                .is_dir = true};
        pre_tmp_rule =
            sf_landlock_add(pre_abi, pre_ruleset[0], &tmp, 1, err,
                            sizeof(err)) == 0 &&
            sf_landlock_add(pre_abi, pre_ruleset[1], &tmp, 1, err,
                            sizeof(err)) == 0;
    }
out:
    close_rules(rules, n);
}

/*
 * The seccomp filter's first part (PRE, seccomp.h), loaded before HELLO so
 * that LOAD only stacks the short NARROW: only when every namespace was
 * made here, since PRE does not allow unshare (the load stage would then
 * trap). The SIGSYS reporter goes first: PRE, like LOAD, refuses to
 * change SIGSYS's action. Returns whether PRE is in force.
 */
static bool pre_attach(void)
{
    char err[256];
    const int all = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET;

    /* A non-root worker's network namespace is joined by setns at LOAD,
     * which PRE allows. */
    if (((pre_ns | (pre_netns >= 0 ? CLONE_NEWNET : 0)) & all) != all ||
        sf_seccomp_install_reporter(SF_IPC_FD) < 0)
        return false;
    if (sf_seccomp_pre_filter(err, sizeof(err)) < 0) {
        SF_DEBUG("msg=\"no seccomp filter ahead of LOAD\" error=\"%s\"", err);
        return false;
    }
    return true;
}

/* Non-root: the uid switch and the user namespace of the load stage,
 * done now. Returns whether the worker is in its user namespace. */
static bool userns_ahead(void)
{
    char err[256];

    if (ids_before_namespaces(err, sizeof(err)) < 0)
        return false;
    pre_ids = true;
    if (enter_userns() != 0)
        return false;
    pre_ns |= CLONE_NEWUSER;
    /* The id maps are written; not ptrace-able by the worker uid's other
     * processes while it waits for LOAD (which sets this again). */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    return true;
}

/*
 * Does, while the worker is still generic, what does not depend on the
 * function, so that it is not in every cold start (costs measured on the
 * reference VM): new IPC and UTS namespaces (IPC up to 0.8 ms), a network
 * namespace (1-2 ms to make; a root daemon's is shared by all workers), a
 * mount namespace with private mounts and the private /tmp made but not
 * attached (the artifact may live under the host's /tmp), an empty
 * capability bounding set (~40 prctl), the read-only Landlock rules and
 * the first part of the seccomp load filter (PRE).
 *
 * As root the worker enters the network namespace now and keeps the
 * host's (host_netns) to return to, in the load stage, if its function
 * has network. A non-root daemon's worker first switches to its uid and
 * enters a user namespace (as the load stage would), which owns every
 * namespace made after it: it could not return to the host's network
 * namespace, so it only makes one here, from a short-lived thread, and
 * keeps it (pre_netns) to enter at LOAD if the function has no network.
 * Nothing here is required: whatever fails is done, or fails closed, in
 * the load stage.
 */
static void prepare_ahead(int shared_netns)
{
    char err[256];
    bool root = geteuid() == 0;

    if (!opts.enabled || (!root && !userns_ahead()))
        return;
    if (unshare(CLONE_NEWNS) == 0) {
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0) {
            pre_ns |= CLONE_NEWNS;
            pre_tmp_fd = tmp_ahead();
        } else
            SF_DEBUG("msg=\"make mounts private ahead of LOAD\" "
                     "error=\"%s\"",
                     strerror(errno));
    }
    if (unshare(CLONE_NEWIPC) == 0)
        pre_ns |= CLONE_NEWIPC;
    if (unshare(CLONE_NEWUTS) == 0) {
        pre_ns |= CLONE_NEWUTS;
        /* Cosmetic (see enter_namespaces). */
        (void)sethostname(SF_SANDBOX_HOSTNAME, strlen(SF_SANDBOX_HOSTNAME));
    }
    if (!root) {
        pre_netns = sf_netns_aside();
    } else {
        host_netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (host_netns >= 0 &&
            ((shared_netns >= 0 && setns(shared_netns, CLONE_NEWNET) == 0) ||
             unshare(CLONE_NEWNET) == 0)) {
            pre_ns |= CLONE_NEWNET;
        } else if (host_netns >= 0) {
            close(host_netns);
            host_netns = -1;
        }
    }
    pre_bounding = drop_bounding(true, err, sizeof(err)) == 0;
    prepare_rulesets();
    pre_filter = pre_attach();
}

/*
 * Load stage, first: a function with network leaves the network namespace
 * made in advance. The host's namespace is closed either way, before
 * anything of the function's runs. Fails closed: a function that asked for
 * no network never reaches this setns.
 */
static int settle_network(const sf_sandbox_policy *p, char *err, size_t errlen)
{
    int r = 0;

    if (p->network && (pre_ns & CLONE_NEWNET)) {
        if (setns(host_netns, CLONE_NEWNET) != 0) {
            snprintf(err, errlen, "return to the host network namespace: %s",
                     strerror(errno));
            r = -1;
        } else {
            pre_ns &= ~CLONE_NEWNET;
        }
    } else if (!p->network && pre_netns >= 0) {
        if (setns(pre_netns, CLONE_NEWNET) != 0) {
            snprintf(err, errlen,
                     "enter the network namespace made ahead: %s",
                     strerror(errno));
            r = -1;
        } else {
            pre_ns |= CLONE_NEWNET;
        }
    }
    if (host_netns >= 0)
        close(host_netns);
    if (pre_netns >= 0)
        close(pre_netns);
    host_netns = pre_netns = -1;
    return r;
}

/* The daemon's shared, empty network namespace (pool.c, shared_netns), if
 * it passed one: returns the fd, or -1. sf_sandbox_early closes it after
 * prepare_ahead either way. */
static int take_shared_netns(void)
{
    const char *v = getenv("SOFAAS_NETNS_FD");

    if (v == NULL || strcmp(v, SF_WORKER_NETNS_FD_STR) != 0 ||
        fcntl(SF_WORKER_NETNS_FD, F_GETFD) < 0)
        return -1;
    return SF_WORKER_NETNS_FD;
}

int sf_sandbox_early(void)
{
    const char *want = getenv("SOFAAS_DAEMON_PID");
    int sn;

    /* Die with the daemon. If it died before the prctl took effect we have
     * been reparented already: the parent check catches that window. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        return -errno;
    if (want == NULL || strtol(want, NULL, 10) != (long)getppid())
        return -ESRCH;
    /* Own session and process group, so kill(0, sig) can never reach the
     * daemon's group. */
    if (setsid() < 0 && errno != EPERM)
        return -errno;
    sn = take_shared_netns();
    join_cgroup();
    prepare_ahead(sn);
    if (sn >= 0)
        close(sn);
    return 0;
}

/*
 * The environment is exactly the function's configured env. putenv keeps
 * the pointers it is given, and the LOAD payload they come from is freed
 * after loading, so the block is copied into storage that lives as long as
 * the process (never freed on purpose).
 */
static int set_env(const sf_sandbox_policy *p, char *err, size_t errlen)
{
    char *block = NULL;

    if (clearenv() != 0) {
        snprintf(err, errlen, "clearenv failed");
        return -1;
    }
    if (p->env_len == 0)
        return 0;
    block = malloc(p->env_len + 1);
    if (block == NULL) {
        snprintf(err, errlen, "environment: out of memory");
        return -1;
    }
    memcpy(block, p->env, p->env_len);
    block[p->env_len] = '\0';
    for (size_t off = 0; off < p->env_len;) {
        char *kv = block + off;
        size_t l = strlen(kv);
        if (l > 0 && putenv(kv) != 0) {
            snprintf(err, errlen, "putenv: %s", strerror(errno));
            return -1;
        }
        off += l + 1;
    }
    return 0;
}

/* Closes fds lo..hi (inclusive). */
static int close_span(unsigned lo, unsigned hi)
{
    struct rlimit rl;

    if (lo > hi || syscall(SYS_close_range, lo, hi, 0) == 0)
        return 0;
    if (errno != ENOSYS || getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    for (rlim_t fd = lo; fd <= hi && fd < rl.rlim_cur && fd < 65536; fd++)
        close((int)fd);
    return 0;
}

/* stdin from /dev/null; nothing open but stdio, the IPC channel, what was
 * prepared ahead (the rulesets, closed once Landlock is in force, and the
 * detached /tmp, closed once attached) and also_keep (the artifact the
 * daemon passed, or -1). */
static int close_fds(int also_keep, char *err, size_t errlen)
{
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    unsigned keep[4], nk = 0, lo = SF_IPC_FD + 1;

    if (nul < 0 || dup2(nul, STDIN_FILENO) < 0) {
        snprintf(err, errlen, "stdin from /dev/null: %s", strerror(errno));
        return -1;
    }
    if (nul != STDIN_FILENO)
        close(nul);
    int held[4] = {pre_ruleset[0], pre_ruleset[1], pre_tmp_fd, also_keep};

    for (int i = 0; i < 4; i++)
        if (held[i] > SF_IPC_FD)
            keep[nk++] = (unsigned)held[i];
    for (unsigned i = 1; i < nk; i++) /* sort, ascending */
        for (unsigned j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
            unsigned t = keep[j];
            keep[j] = keep[j - 1];
            keep[j - 1] = t;
        }
    for (unsigned i = 0; i <= nk; i++) {
        unsigned hi = i < nk ? keep[i] - 1 : ~0U;
        if (close_span(lo, hi) < 0) {
            snprintf(err, errlen, "close_range: %s", strerror(errno));
            return -1;
        }
        if (i < nk)
            lo = keep[i] + 1;
    }
    return 0;
}

/* What was prepared ahead, once used or useless. */
static void close_prepared(void)
{
    for (int i = 0; i < 2; i++) {
        if (pre_ruleset[i] >= 0)
            close(pre_ruleset[i]);
        pre_ruleset[i] = -1;
    }
    if (pre_tmp_fd >= 0)
        close(pre_tmp_fd);
    pre_tmp_fd = -1;
}

static int write_file(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -errno;
    n = write(fd, s, strlen(s));
    close(fd);
    return n == (ssize_t)strlen(s) ? 0 : -EIO;
}

/* Enters a user namespace mapping our own ids onto themselves, which gives
 * us the capabilities to create the others; shed in ids_after_namespaces(). */
static int enter_userns(void)
{
    char map[64];
    uid_t u = geteuid();
    gid_t g = getegid();

    if (unshare(CLONE_NEWUSER) != 0)
        return -errno;
    snprintf(map, sizeof(map), "%u %u 1\n", u, u);
    if (write_file("/proc/self/uid_map", map) < 0 ||
        write_file("/proc/self/setgroups", "deny") < 0)
        return -EPERM;
    snprintf(map, sizeof(map), "%u %u 1\n", g, g);
    return write_file("/proc/self/gid_map", map);
}

static uid_t tmp_uid(void)
{
    return opts.set_ids ? opts.uid : geteuid();
}

static gid_t tmp_gid(void)
{
    return opts.set_ids ? opts.gid : getegid();
}

/*
 * The private /tmp, made before LOAD as a detached mount (fsopen, fsmount):
 * creating a tmpfs costs ~50 us, ~120 us on a CPU that was idle, while
 * attaching it at LOAD costs ~10 us (~40 us). Returns the mount's fd, or
 * -1 (then LOAD mounts as before).
 */
static int tmp_ahead(void)
{
    char v[32];
    int fs = (int)syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC), mfd = -1;

    if (fs < 0)
        return -1;
    snprintf(v, sizeof(v), "%um", TMP_AHEAD_MB);
    if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "size", v, 0) != 0)
        goto out;
    snprintf(v, sizeof(v), "%u", TMP_AHEAD_MB * 64 + 64);
    if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "nr_inodes", v, 0) !=
            0 ||
        syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "mode", "0700", 0) !=
            0)
        goto out;
    snprintf(v, sizeof(v), "%u", (unsigned)tmp_uid());
    if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "uid", v, 0) != 0)
        goto out;
    snprintf(v, sizeof(v), "%u", (unsigned)tmp_gid());
    if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "gid", v, 0) != 0 ||
        syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) != 0)
        goto out;
    mfd = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC,
                       MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                           MOUNT_ATTR_NOEXEC);
out:
    close(fs);
    return mfd < 0 ? -1 : mfd;
}

/* Puts the private /tmp (tmp_mb MiB, 64 inodes per MiB, the worker uid's)
 * on /tmp: attaches the one made ahead, resized if tmp_mb is not its
 * size, or mounts a new one. Returns 0 or -1 with errno set. */
static int mount_tmp(unsigned tmp_mb)
{
    char data[128];
    unsigned long fl = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    int r;

    if (pre_tmp_fd >= 0) {
        r = (int)syscall(SYS_move_mount, pre_tmp_fd, "", AT_FDCWD, "/tmp",
                         MOVE_MOUNT_F_EMPTY_PATH);
        close(pre_tmp_fd);
        pre_tmp_fd = -1;
        if (r != 0)
            return -1;
        if (tmp_mb == TMP_AHEAD_MB)
            return 0;
        snprintf(data, sizeof(data), "size=%um,nr_inodes=%u", tmp_mb,
                 tmp_mb * 64 + 64);
        return mount("sofaas-tmp", "/tmp", "tmpfs", fl | MS_REMOUNT, data);
    }
    snprintf(data, sizeof(data),
             "size=%um,nr_inodes=%u,mode=0700,uid=%u,gid=%u", tmp_mb,
             tmp_mb * 64 + 64, (unsigned)tmp_uid(), (unsigned)tmp_gid());
    return mount("sofaas-tmp", "/tmp", "tmpfs", fl, data);
}

/*
 * New mount, IPC, UTS and (without network) network namespaces, as many as
 * the kernel grants; a private size-limited tmpfs on /tmp when the mount
 * namespace exists. *got receives the CLONE_NEW* flags in effect.
 */
static int enter_namespaces(const sf_sandbox_policy *p, int *got, char *err,
                            size_t errlen)
{
    static const int each[] = {CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUTS,
                               CLONE_NEWNET};
    int want = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS |
               (p->network ? 0 : CLONE_NEWNET);

    *got = pre_ns;
    want &= ~pre_ns;
    if (geteuid() != 0 && !(pre_ns & CLONE_NEWUSER)) {
        if (enter_userns() != 0)
            return 0; /* no user namespaces: no namespaces at all */
        *got |= CLONE_NEWUSER;
    }
    if (want == 0 || unshare(want) == 0) {
        *got |= want;
    } else {
        for (size_t i = 0; i < sizeof(each) / sizeof(*each); i++)
            if ((want & each[i]) && unshare(each[i]) == 0)
                *got |= each[i];
    }
    if (*got & CLONE_NEWNS) {
        if ((want & CLONE_NEWNS) &&
            mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
            snprintf(err, errlen, "make mounts private: %s", strerror(errno));
            return -1;
        }
        if (mount_tmp(p->tmp_mb) != 0) {
            snprintf(err, errlen, "mount private /tmp: %s", strerror(errno));
            return -1;
        }
    }
    /* Only cosmetic (the host's name is not a secret the sandbox keeps),
     * and a service manager may forbid it (systemd ProtectHostname=). */
    if ((want & *got & CLONE_NEWUTS) &&
        sethostname(SF_SANDBOX_HOSTNAME, strlen(SF_SANDBOX_HOSTNAME)) != 0)
        SF_DEBUG("msg=\"cannot set the sandbox hostname\" error=\"%s\"",
                 strerror(errno));
    return 0;
}

static int last_cap(void)
{
    static int cached = -1;
    FILE *f;
    int c = 40;

    if (cached >= 0)
        return cached;
    f = fopen("/proc/sys/kernel/cap_last_cap", "re");
    if (f != NULL) {
        if (fscanf(f, "%d", &c) != 1)
            c = 40;
        fclose(f);
    }
    cached = c;
    return c;
}

/*
 * Empties the bounding and ambient sets. The bounding set needs
 * CAP_SETPCAP: root and a user namespace have it and must succeed; a
 * non-root daemon given only CAP_SETUID/CAP_SETGID does not, and there the
 * bounding set is moot anyway (NO_NEW_PRIVS, and execve is refused).
 */
static int drop_bounding(bool must, char *err, size_t errlen)
{
    int lc = last_cap();

    for (int c = 0; c <= lc; c++) {
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) == 0 || errno == EINVAL)
            continue;
        if (errno == EPERM && !must)
            break;
        snprintf(err, errlen, "PR_CAPBSET_DROP %d: %s", c, strerror(errno));
        return -1;
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 &&
        errno != EINVAL) {
        snprintf(err, errlen, "clear ambient caps: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int caps_empty(void)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];

    if (syscall(SYS_capget, &h, d) != 0)
        return 0;
    return (d[0].effective | d[0].permitted | d[0].inheritable |
            d[1].effective | d[1].permitted | d[1].inheritable) == 0;
}

/* Leaves no capability anywhere (sets emptied, then verified). */
static int shed_caps(bool must_bound, char *err, size_t errlen)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];

    /* Without capabilities (an unprivileged daemon and no user namespace)
     * there is nothing to drop and no right to drop it. */
    if (caps_empty())
        return 0;
    if (!pre_bounding && drop_bounding(must_bound, err, errlen) < 0)
        return -1;
    memset(d, 0, sizeof(d));
    if (syscall(SYS_capset, &h, d) != 0) {
        snprintf(err, errlen, "capset: %s", strerror(errno));
        return -1;
    }
    if (!caps_empty()) {
        snprintf(err, errlen, "capabilities still held after the drop");
        return -1;
    }
    return 0;
}

/* Switches to opts.uid/gid (no supplementary groups), verified. Needs
 * root or CAP_SETUID+CAP_SETGID. */
static int switch_ids(char *err, size_t errlen)
{
    uid_t ru, eu, su;
    gid_t rg, eg, sg;

    if (setgroups(0, NULL) != 0 && errno != EPERM) {
        snprintf(err, errlen, "setgroups: %s", strerror(errno));
        return -1;
    }
    if (setresgid(opts.gid, opts.gid, opts.gid) != 0 ||
        setresuid(opts.uid, opts.uid, opts.uid) != 0) {
        snprintf(err, errlen, "switch to uid %u gid %u: %s", opts.uid, opts.gid,
                 strerror(errno));
        return -1;
    }
    if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0 ||
        ru != opts.uid || eu != opts.uid || su != opts.uid || rg != opts.gid ||
        eg != opts.gid || sg != opts.gid) {
        snprintf(err, errlen, "uid/gid switch did not hold");
        return -1;
    }
    return 0;
}

/*
 * Identity before namespaces, for a non-root daemon that holds
 * CAP_SETUID/CAP_SETGID (systemd AmbientCapabilities=): it cannot create
 * namespaces directly, so it switches first and then builds them in a user
 * namespace of the worker uid. The uid change made the process
 * non-dumpable, which would keep it from writing its own id maps; it is
 * made non-dumpable again right after.
 */
static int ids_before_namespaces(char *err, size_t errlen)
{
    if (geteuid() == 0 || !opts.set_ids)
        return 0;
    if (switch_ids(err, errlen) < 0 || shed_caps(false, err, errlen) < 0)
        return -1;
    if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) {
        snprintf(err, errlen, "PR_SET_DUMPABLE: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/*
 * Identity after namespaces: root empties the bounding set (while it holds
 * CAP_SETPCAP) and switches, which clears its other capabilities; a user
 * namespace's capabilities are shed here too. Refuses to go on as root.
 */
static int ids_after_namespaces(char *err, size_t errlen)
{
    if (geteuid() == 0) {
        if (!opts.set_ids || opts.uid == 0) {
            snprintf(err, errlen,
                     "worker runs as root and no unprivileged uid was given "
                     "(sandbox.worker_user)");
            return -1;
        }
        if ((!pre_bounding && drop_bounding(true, err, errlen) < 0) ||
            switch_ids(err, errlen) < 0)
            return -1;
    }
    return shed_caps(true, err, errlen);
}

/* Address space for memory_mb. Under a memory cgroup (which limits and
 * reports what is resident) only a backstop: address space runs well ahead
 * of resident memory (thread stacks, malloc arenas), and a failed mmap
 * inside user code would hide the cgroup's clean OOM report. */
static rlim_t address_space(const sf_sandbox_policy *p)
{
    rlim_t mb = p->memory_mb;

    if (SF_SANDBOX_ASAN)
        return RLIM_INFINITY;
    if (p->memcg && in_memcg)
        mb = mb * 4 + 1024;
    return mb << 20;
}

static int set_limits(const sf_sandbox_policy *p, char *err, size_t errlen)
{
    struct {
        int res;
        rlim_t v;
        const char *name;
    } lim[] = {
        {RLIMIT_CORE, 0, "RLIMIT_CORE"},
        {RLIMIT_NOFILE, SF_SANDBOX_NOFILE, "RLIMIT_NOFILE"},
        {RLIMIT_FSIZE, (rlim_t)p->tmp_mb << 20, "RLIMIT_FSIZE"},
        {RLIMIT_NPROC, SF_SANDBOX_NPROC, "RLIMIT_NPROC"},
        /* ASan reserves terabytes of shadow address space; under ASan the
         * address-space limit cannot be applied (logged below). */
        {RLIMIT_AS, address_space(p), "RLIMIT_AS"},
    };

    for (size_t i = 0; i < sizeof(lim) / sizeof(*lim); i++) {
        struct rlimit rl = {lim[i].v, lim[i].v};
        if (p->memory_mb == 0 && lim[i].res == RLIMIT_AS)
            continue;
        if (lim[i].v == RLIM_INFINITY)
            continue;
        if (setrlimit(lim[i].res, &rl) != 0) {
            snprintf(err, errlen, "setrlimit %s: %s", lim[i].name,
                     strerror(errno));
            return -1;
        }
    }
    if (SF_SANDBOX_ASAN)
        SF_DEBUG("msg=\"AddressSanitizer build: RLIMIT_AS not applied\"");
    return 0;
}

static void close_rules(sf_landlock_rule *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (r[i].fd >= 0)
            close(r[i].fd);
}

/* Adds an O_PATH rule for path; a path this system lacks is skipped. */
static int add_rule(sf_landlock_rule *rules, size_t *n, const char *path,
                    bool write, char *err, size_t errlen)
{
    struct stat st;
    int fd;

    if (*n == SF_SANDBOX_MAX_RULES) {
        snprintf(err, errlen, "too many Landlock rules");
        return -1;
    }
    fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT
                   ? 0
                   : (snprintf(err, errlen, "open %s for Landlock: %s", path,
                               strerror(errno)),
                      -1);
    if (fstat(fd, &st) != 0) {
        close(fd);
        snprintf(err, errlen, "stat %s: %s", path, strerror(errno));
        return -1;
    }
    rules[(*n)++] = (sf_landlock_rule){
        .fd = fd, .write = write, .is_dir = S_ISDIR(st.st_mode)};
    return 0;
}

static int apply_landlock(const sf_sandbox_policy *p, int afd, bool have_tmp,
                          int abi, char *err, size_t errlen)
{
    sf_landlock_rule rules[SF_SANDBOX_MAX_RULES];
    size_t n = 0;
    int r = -1, pre = pre_ruleset[p->network ? 1 : 0];

    if (pre >= 0 && abi == pre_abi) {
        /* The read-only rules are in already (and /tmp's, unless it
         * could not be added ahead): add the artifact. */
        if (have_tmp && !pre_tmp_rule &&
            add_rule(rules, &n, "/tmp", true, err, errlen) < 0)
            goto out;
        rules[n++] =
            (sf_landlock_rule){.fd = afd, .write = false, .is_dir = false};
        r = sf_landlock_add(abi, pre, rules, n, err, errlen);
        if (r == 0)
            r = sf_landlock_enforce(pre, err, errlen);
        n--; /* afd stays open for dlopen */
        goto out;
    }
    for (size_t i = 0; i < sizeof(ro_paths) / sizeof(*ro_paths); i++)
        if (add_rule(rules, &n, ro_paths[i], false, err, errlen) < 0)
            goto out;
    if (add_rule(rules, &n, "/dev/null", true, err, errlen) < 0)
        goto out;
    /* Without a private tmpfs there is no writable directory at all: the
     * host's /tmp is shared with everything else on the machine. */
    if (have_tmp && add_rule(rules, &n, "/tmp", true, err, errlen) < 0)
        goto out;
    rules[n++] = (sf_landlock_rule){.fd = afd, .write = false, .is_dir = false};
    r = sf_landlock_apply(abi, rules, n, p->network, err, errlen);
    n--; /* afd stays open for dlopen */
out:
    close_rules(rules, n);
    return r;
}

int sf_sandbox_load_stage(const sf_sandbox_policy *p, char *dlpath,
                          size_t dlpathlen, int *artifact_fd, char *err,
                          size_t errlen)
{
    sf_seccomp_opts so = {.network = p->network, .allow_fork = p->allow_fork};
    int afd = -1, ns = 0, abi, r;
    struct rlimit core = {0, 0};

    uint64_t t0 = now_us(), t_ns, t_ids, t_ll;

    *artifact_fd = -1;
    if (set_env(p, err, errlen) < 0)
        return -1;
    if (!opts.enabled) {
        if (p->artifact_fd > 0)
            close(p->artifact_fd);
        snprintf(dlpath, dlpathlen, "%s", p->artifact_path);
        return 0;
    }
    if (settle_network(p, err, errlen) < 0)
        return -1;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        snprintf(err, errlen, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
        return -1;
    }
    if (close_fds(p->artifact_fd > 0 ? p->artifact_fd : -1, err, errlen) < 0)
        return -1;
    /* Writing past RLIMIT_FSIZE fails with EFBIG instead of killing. */
    signal(SIGXFSZ, SIG_IGN);
    /* Passed by the daemon, or opened here as the daemon's uid (before the
     * uid drop and before /tmp is replaced). */
    afd = p->artifact_fd > 0 ? p->artifact_fd
                             : open(p->artifact_path, O_RDONLY | O_CLOEXEC);
    if (afd < 0) {
        snprintf(err, errlen, "open artifact: %s", strerror(errno));
        return -1;
    }
    if ((!pre_ids && ids_before_namespaces(err, errlen) < 0) ||
        enter_namespaces(p, &ns, err, errlen) < 0)
        goto fail;
    t_ns = now_us();
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 ||
        setrlimit(RLIMIT_CORE, &core) != 0) {
        snprintf(err, errlen, "disable core dumps: %s", strerror(errno));
        goto fail;
    }
    if (ids_after_namespaces(err, errlen) < 0 || set_limits(p, err, errlen) < 0)
        goto fail;
    t_ids = now_us();
    abi = pre_abi > 0 ? pre_abi : sf_landlock_abi();
    if (abi > 0 &&
        apply_landlock(p, afd, (ns & CLONE_NEWNS) != 0, abi, err, errlen) < 0)
        goto fail;
    close_prepared();
    t_ll = now_us();
    if (pre_filter) {
        /* PRE is in force since before HELLO, the reporter with it. */
        if (sf_seccomp_narrow_filter(&so, err, errlen) < 0)
            goto fail;
    } else {
        if ((r = sf_seccomp_install_reporter(SF_IPC_FD)) < 0) {
            snprintf(err, errlen, "SIGSYS handler: %s", strerror(-r));
            goto fail;
        }
        if (sf_seccomp_load_filter(&so, err, errlen) < 0)
            goto fail;
    }
    SF_DEBUG(
        "msg=\"sandbox in force\" stage=load uid=%u gid=%u userns=%d "
        "mntns=%d netns=%d ipcns=%d utsns=%d landlock_abi=%d "
        "seccomp=1 seccomp_ahead=%d network=%d allow_fork=%d ns_us=%llu "
        "ids_us=%llu landlock_us=%llu seccomp_us=%llu",
        getuid(), getgid(), !!(ns & CLONE_NEWUSER), !!(ns & CLONE_NEWNS),
        !!(ns & CLONE_NEWNET), !!(ns & CLONE_NEWIPC), !!(ns & CLONE_NEWUTS),
        abi, pre_filter, p->network, p->allow_fork,
        (unsigned long long)(t_ns - t0),
        (unsigned long long)(t_ids - t_ns), (unsigned long long)(t_ll - t_ids),
        (unsigned long long)(now_us() - t_ll));
    /* The artifact's directory may not be searchable by the new uid and
     * /tmp may now hide it: load it through the fd opened above. */
    snprintf(dlpath, dlpathlen, "/proc/self/fd/%d", afd);
    *artifact_fd = afd;
    return 0;
fail:
    close_prepared();
    if (afd >= 0)
        close(afd);
    return -1;
}

int sf_sandbox_serve_stage(const sf_sandbox_policy *p, char *err, size_t errlen)
{
    sf_seccomp_opts so = {.network = p->network,
                          .allow_fork = false,
                          .file_access = p->file_access};
    int r;

    if (!opts.enabled)
        return 0;
    if ((r = sf_landlock_scope_self(sf_landlock_abi())) < 0) {
        snprintf(err, errlen, "Landlock scope domain: %s", strerror(-r));
        return -1;
    }
    return sf_seccomp_serve_filter(&so, err, errlen) < 0 ? -1 : 0;
}

/* Prints the lines of /proc/self/status that show the sandbox. */
static void print_status(void)
{
    char line[256];
    FILE *f = fopen("/proc/self/status", "re");

    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "Seccomp:", 8) == 0 ||
            strncmp(line, "NoNewPrivs:", 11) == 0 ||
            strncmp(line, "Uid:", 4) == 0 || strncmp(line, "CapEff:", 7) == 0)
            printf("  status   %s", line);
    fclose(f);
}

/* Mean cost of one cheap system call, in ns (getppid: no locks, no I/O). */
static double syscall_ns(void)
{
    struct timespec a, b;
    const int n = 200000;

    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++)
        (void)syscall(SYS_getppid);
    clock_gettime(CLOCK_MONOTONIC, &b);
    return ((double)(b.tv_sec - a.tv_sec) * 1e9 +
            (double)(b.tv_nsec - a.tv_nsec)) /
           n;
}

int sf_sandbox_self_test(const char *artifact)
{
    static const char env[] = "SOFAAS_SELF_TEST=1";
    /* file_access: the checks below read /proc and write /tmp while
     * serving, to show the layers behind the serve-stage file ban. */
    sf_sandbox_policy pol = {.artifact_path = artifact,
                             .memory_mb = 256,
                             .tmp_mb = 4,
                             .file_access = true,
                             .env = env,
                             .env_len = sizeof(env)};
    char err[512], dl[64];
    int status, afd, fd;
    pid_t pid;

    fflush(stdout);
    pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        double before = syscall_ns(), after;
        if (sf_sandbox_load_stage(&pol, dl, sizeof(dl), &afd, err,
                                  sizeof(err)) < 0 ||
            sf_sandbox_serve_stage(&pol, err, sizeof(err)) < 0) {
            printf("  result   FAILED: %s\n", err);
            fflush(stdout);
            _exit(1);
        }
        after = syscall_ns();
        printf("  result   load and serve stages applied\n");
        printf("  cost     one system call: %.0f ns unfiltered, %.0f ns under "
               "both filters (+%.0f ns)\n",
               before, after, after - before);
        print_status();
        fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
        printf("  check    open(/etc/passwd): %s\n",
               fd < 0 ? strerror(errno) : "ALLOWED (Landlock missing)");
        fd = open("/tmp/probe", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        printf("  check    write /tmp/probe: %s\n",
               fd < 0 ? strerror(errno) : "ok");
        fflush(stdout);
        _exit(0);
    }
    if (waitpid(pid, &status, 0) < 0)
        return -errno;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EPERM;
}
