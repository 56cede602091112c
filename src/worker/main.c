/*
 * main.c - sofaas-worker: one sandboxed instance of one function.
 *
 * Spawned by sofaasd with its IPC socket on fd 3 (SF_IPC_FD). Not meant to be
 * run by hand. All logic lives in serve.c, sandbox.c and runtime.c.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "ipc.h"
#include "log.h"
#include "sandbox.h"
#include "serve.h"

int main(int argc, char **argv)
{
    enum sf_log_level lvl = SF_LOG_INFO;
    const char *l = getenv("SOFAAS_LOG_LEVEL");

    (void)argc;
    (void)argv;
    if (l != NULL)
        sf_log_parse_level(l, &lvl);
    sf_log_init("sofaas-worker", lvl);
    if (fcntl(SF_IPC_FD, F_GETFD) < 0) {
        fprintf(stderr, "sofaas-worker: no IPC channel on fd %d; this program "
                        "is started by sofaasd\n", SF_IPC_FD);
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
    return sf_worker_serve(SF_IPC_FD);
}
