/*
 * netns.h - a network namespace made aside: by a short-lived thread whose
 * unshare() affects only itself, returned as an fd, while the caller stays
 * in its own namespace. Shared by the daemon (the workers' shared
 * namespace, pool.c) and the worker (a non-root worker's own, sandbox.c).
 */
#ifndef SF_NETNS_H
#define SF_NETNS_H

/* Returns an O_CLOEXEC fd of a new, empty network namespace, or -1 (no
 * privilege for it, or no thread). Needs CAP_SYS_ADMIN in the caller's
 * user namespace. */
int sf_netns_aside(void);

#endif
