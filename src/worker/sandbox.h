/*
 * sandbox.h - confinement of a sofaas-worker process before it runs user code.
 *
 * The worker calls sf_sandbox_early() first thing in main(), and
 * sf_sandbox_load_stage() after it has received a LOAD frame and before it
 * dlopen()s the artifact (user code starts running inside dlopen). Both fail
 * closed: a non-zero return means the caller must _exit() without loading.
 * Runs only in sofaas-worker.
 */
#ifndef SF_WORKER_SANDBOX_H
#define SF_WORKER_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sf_sandbox_policy {
    const char *artifact_path; /* the .so about to be loaded */
    uint32_t memory_mb;        /* address-space limit, 0 = none */
    uint32_t tmp_mb;           /* private tmp quota */
    bool network;              /* the function may use the network */
    const char *env;           /* "K=V\0K=V\0": the whole environment */
    size_t env_len;
} sf_sandbox_policy;

/* Process-wide settings that do not depend on the function. */
int sf_sandbox_early(void);

/* Everything that must hold before dlopen(). On failure writes a reason. */
int sf_sandbox_load_stage(const sf_sandbox_policy *p, char *err, size_t errlen);

#endif
