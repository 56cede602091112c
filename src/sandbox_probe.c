/*
 * sandbox_probe.c - kernel feature detection for the worker sandbox (see
 * sandbox_probe.h). Each namespace is tried in a short-lived child so the
 * daemon itself is never moved into one.
 */
#include "sandbox_probe.h"

#include <errno.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

/* Tries unshare(flags) in a child (inside a new user namespace when not
 * root); true if the kernel allowed it. */
static bool try_unshare(int flags, bool root)
{
    int status;
    pid_t pid = fork();

    if (pid < 0)
        return false;
    if (pid == 0) {
        if (!root && unshare(CLONE_NEWUSER) != 0)
            _exit(1);
        _exit(unshare(flags) == 0 ? 0 : 1);
    }
    if (waitpid(pid, &status, 0) < 0)
        return false;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

void sf_sandbox_probe_run(sf_sandbox_probe *p)
{
    uint32_t act = SECCOMP_RET_TRAP;
    long abi;

    memset(p, 0, sizeof(*p));
    p->seccomp = prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 &&
                 syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &act) == 0;
    abi = syscall(SYS_landlock_create_ruleset, NULL, 0,
                  LANDLOCK_CREATE_RULESET_VERSION);
    p->landlock_abi = abi > 0 ? (int)abi : 0;
    p->root = geteuid() == 0;
    if (!p->root)
        p->userns = try_unshare(0, false);
    if (p->root || p->userns) {
        p->mntns = try_unshare(CLONE_NEWNS, p->root);
        p->netns = try_unshare(CLONE_NEWNET, p->root);
        p->ipcns = try_unshare(CLONE_NEWIPC, p->root);
        p->utsns = try_unshare(CLONE_NEWUTS, p->root);
    }
#if defined(__SANITIZE_ADDRESS__)
    p->asan = true;
#endif
}

/* Appends ",name" (or "name") to buf when cond holds; truncates safely. */
static void miss(bool cond, const char *name, char *buf, size_t len)
{
    size_t n = strlen(buf);

    if (cond && n + 1 < len)
        snprintf(buf + n, len - n, "%s%s", n ? "," : "", name);
}

/* The optional layers this host lacks, comma-separated ("" if none). */
static const char *missing(const sf_sandbox_probe *p, char *buf, size_t len)
{
    buf[0] = '\0';
    miss(p->landlock_abi == 0, "landlock", buf, len);
    miss(p->landlock_abi > 0 && p->landlock_abi < 4, "landlock_net(abi>=4)",
         buf, len);
    miss(p->landlock_abi > 0 && p->landlock_abi < 6, "landlock_scope(abi>=6)",
         buf, len);
    miss(!p->root && !p->userns, "userns", buf, len);
    miss(!p->mntns, "mntns(private_tmp)", buf, len);
    miss(!p->netns, "netns", buf, len);
    miss(!p->ipcns, "ipcns", buf, len);
    miss(!p->utsns, "utsns", buf, len);
    miss(p->asan, "rlimit_as(asan_build)", buf, len);
    return buf;
}

void sf_sandbox_probe_log(const sf_sandbox_probe *p, uid_t uid, gid_t gid)
{
    char miss[256], ids[48];

    if (uid != 0)
        snprintf(ids, sizeof(ids), "%u:%u", uid, gid);
    else
        snprintf(ids, sizeof(ids), "unchanged");
    SF_INFO("msg=\"sandbox layers\" seccomp=%s landlock_abi=%d "
            "worker_ids=%s userns=%d mntns=%d netns=%d ipcns=%d utsns=%d "
            "rlimit_as=%d",
            p->seccomp ? "trap" : "none", p->landlock_abi, ids, p->userns,
            p->mntns, p->netns, p->ipcns, p->utsns, !p->asan);
    missing(p, miss, sizeof(miss));
    if (miss[0] != '\0')
        SF_WARN("msg=\"sandbox running without some optional layers\" "
                "missing=\"%s\"",
                miss);
    if (!p->seccomp)
        SF_ERR("msg=\"seccomp with SECCOMP_RET_TRAP is unavailable: every "
               "function load will fail (the worker fails closed)\"");
}

void sf_sandbox_probe_print(const sf_sandbox_probe *p, uid_t uid, gid_t gid,
                            FILE *out)
{
    char miss[256];

    fprintf(out, "sandbox layers on this kernel:\n");
    fprintf(out, "  %-22s %s\n", "no_new_privs", "yes");
    fprintf(out, "  %-22s %s\n", "seccomp (trap)",
            p->seccomp ? "yes" : "NO (required: loads will fail)");
    if (p->landlock_abi > 0)
        fprintf(out, "  %-22s yes, ABI %d%s%s\n", "landlock", p->landlock_abi,
                p->landlock_abi >= 4 ? ", tcp bind/connect" : "",
                p->landlock_abi >= 6 ? ", signal+abstract-unix scope" : "");
    else
        fprintf(out, "  %-22s no\n", "landlock");
    if (uid != 0)
        fprintf(out,
                "  %-22s yes, to uid %u gid %u, all capabilities "
                "dropped\n",
                "uid/gid drop", uid, gid);
    else
        fprintf(out,
                "  %-22s no (daemon is not root, no sandbox.worker_user); "
                "user namespace: %s\n",
                "uid/gid drop", p->userns ? "yes" : "no");
    fprintf(out, "  %-22s %s\n", "mount ns + /tmp", p->mntns ? "yes" : "no");
    fprintf(out, "  %-22s %s\n", "network ns", p->netns ? "yes" : "no");
    fprintf(out, "  %-22s %s\n", "ipc ns", p->ipcns ? "yes" : "no");
    fprintf(out, "  %-22s %s\n", "uts ns", p->utsns ? "yes" : "no");
    fprintf(out, "  %-22s %s\n", "rlimits",
            p->asan ? "yes, except RLIMIT_AS (AddressSanitizer build)" : "yes");
    missing(p, miss, sizeof(miss));
    fprintf(out, "missing: %s\n", miss[0] ? miss : "nothing");
}
