/*
 * sandbox.c - the worker's confinement layers (see sandbox.h).
 *
 * Layers in force today: parent-death signal, no-new-privs, not dumpable,
 * no core files, a clean environment holding only the function's configured
 * env. Seccomp, Landlock, namespaces, rlimits and the uid drop are added by
 * the sandbox work (docs/sandbox.md); they slot into sf_sandbox_load_stage
 * in the order the design brief gives.
 */
#include "sandbox.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

int sf_sandbox_early(void)
{
    const char *want = getenv("SOFAAS_DAEMON_PID");

    /* Die with the daemon. If it died before the prctl took effect we have
     * been reparented already: the parent check catches that window. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        return -errno;
    if (want == NULL || strtol(want, NULL, 10) != (long)getppid())
        return -ESRCH;
    return 0;
}

int sf_sandbox_load_stage(const sf_sandbox_policy *p, char *err, size_t errlen)
{
    struct rlimit core = {0, 0};

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        snprintf(err, errlen, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
        return -1;
    }
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 ||
        setrlimit(RLIMIT_CORE, &core) != 0) {
        snprintf(err, errlen, "disable core dumps: %s", strerror(errno));
        return -1;
    }
    if (clearenv() != 0) {
        snprintf(err, errlen, "clearenv failed");
        return -1;
    }
    for (size_t off = 0; off < p->env_len;) {
        const char *kv = p->env + off;
        size_t l = strlen(kv);
        if (putenv((char *)kv) != 0) {
            snprintf(err, errlen, "putenv: %s", strerror(errno));
            return -1;
        }
        off += l + 1;
    }
    return 0;
}
