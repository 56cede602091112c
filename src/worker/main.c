/*
 * main.c - sofaas-worker: one sandboxed instance of one function.
 *
 * Spawned by sofaasd with its IPC socket on fd 3 (SF_IPC_FD). Not meant to be
 * run by hand. The daemon passes the sandbox settings on the command line:
 *   --uid=N --gid=N   run user code as this uid/gid (the daemon is root)
 *   --sandbox=off     no confinement (sofaasd --sandbox=off, benchmarks only)
 *   --self-test PATH  build the whole sandbox in a child and report, for
 *                     sofaasd --check-sandbox (no IPC channel needed)
 * All logic lives in serve.c, sandbox.c and runtime.c.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ipc.h"
#include "log.h"
#include "sandbox.h"
#include "serve.h"

static int parse_id(const char *s, unsigned *out)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);

    if (*s == '\0' || *end != '\0' || v > 0x7fffffffUL)
        return -1;
    *out = (unsigned)v;
    return 0;
}

int main(int argc, char **argv)
{
    enum sf_log_level lvl = SF_LOG_INFO;
    const char *l = getenv("SOFAAS_LOG_LEVEL");
    const char *self_test = NULL;
    sf_sandbox_opts so = {.enabled = true};
    bool have_uid = false, have_gid = false;
    int rc;

    if (l != NULL)
        sf_log_parse_level(l, &lvl);
    sf_log_init("sofaas-worker", lvl);
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--uid=", 6) == 0 &&
            parse_id(argv[i] + 6, &so.uid) == 0) {
            have_uid = true;
        } else if (strncmp(argv[i], "--gid=", 6) == 0 &&
                   parse_id(argv[i] + 6, &so.gid) == 0) {
            have_gid = true;
        } else if (strcmp(argv[i], "--sandbox=off") == 0) {
            so.enabled = false;
        } else if (strcmp(argv[i], "--self-test") == 0 && i + 1 < argc) {
            self_test = argv[++i];
        } else {
            fprintf(stderr, "sofaas-worker: unknown argument '%s'\n", argv[i]);
            return 64;
        }
    }
    so.set_ids = have_uid && have_gid;
    sf_sandbox_configure(&so);
    if (self_test != NULL)
        return sf_sandbox_self_test(self_test) == 0 ? 0 : 1;
    if (fcntl(SF_IPC_FD, F_GETFD) < 0) {
        fprintf(stderr,
                "sofaas-worker: no IPC channel on fd %d; this program "
                "is started by sofaasd\n",
                SF_IPC_FD);
        return 64;
    }
    signal(SIGPIPE, SIG_IGN);
    /* stdout and stderr are a pipe the daemon reads as the function's log:
     * line buffering keeps lines in the order written and lets a follower
     * see them while a long invocation still runs. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (sf_sandbox_early() != 0)
        _exit(70);
    SF_DEBUG("msg=\"worker started\"");
    rc = sf_worker_serve(SF_IPC_FD);
    /* Once user code ran, leave without atexit handlers or destructors:
     * they are the function's, and LeakSanitizer's exit-time check would
     * need ptrace and clone, which the sandbox refuses. */
    fflush(NULL);
    _exit(rc);
}
