/*
 * seccomp_rules.h - the worker's system-call filter rules, written with
 * libseccomp and compiled to classic BPF at build time (seccomp_gen.c), so
 * that no worker compiles a filter at run time (docs/sandbox.md, "Seccomp
 * filters"). The unit test compiles them again at run time to check that
 * the programs the worker loads are exactly libseccomp's.
 *
 * Not linked into sofaas-worker: only into sofaas-seccomp-gen and tests.
 */
#ifndef SF_WORKER_SECCOMP_RULES_H
#define SF_WORKER_SECCOMP_RULES_H

#include <linux/filter.h>
#include <stddef.h>
#include <sys/types.h>

#include "seccomp.h"

/*
 * Compiles variant (see sf_seccomp_variant) for a process whose pid is
 * self. On success *prog is a malloc'd array of *len instructions the
 * caller frees. Returns 0 or -errno with err written.
 */
int sf_seccomp_rules_compile(unsigned variant, pid_t self,
                             struct sock_filter **prog, size_t *len, char *err,
                             size_t errlen);

#endif
