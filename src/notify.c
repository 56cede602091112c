/*
 * notify.c - sd_notify and sd_listen_fds, implemented directly (see
 * notify.h). The protocols are small and stable (documented in sd_notify(3)
 * and sd_listen_fds(3)); a direct implementation keeps libsystemd out of the
 * daemon's dependencies and lets it run unchanged without systemd.
 */
#include "notify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_addr_len;
static uint64_t watchdog_usec;

int sf_notify_init(void)
{
    const char *sock = getenv("NOTIFY_SOCKET");
    const char *wd = getenv("WATCHDOG_USEC");
    const char *wpid = getenv("WATCHDOG_PID");
    size_t len;
    int r = 0;

    if (wd != NULL && (wpid == NULL || atol(wpid) == (long)getpid())) {
        char *end;
        unsigned long long v = strtoull(wd, &end, 10);
        watchdog_usec = (*end == '\0' && v > 0) ? v : 0;
    }
    if (sock == NULL || sock[0] == '\0')
        goto out;
    len = strlen(sock);
    if ((sock[0] != '/' && sock[0] != '@') ||
        len >= sizeof(notify_addr.sun_path)) {
        r = -EINVAL;
        goto out;
    }
    memset(&notify_addr, 0, sizeof(notify_addr));
    notify_addr.sun_family = AF_UNIX;
    memcpy(notify_addr.sun_path, sock, len);
    if (sock[0] == '@') /* abstract namespace: leading NUL, no terminator */
        notify_addr.sun_path[0] = '\0';
    notify_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
                                  (sock[0] == '/' ? 1 : 0));
    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (notify_fd < 0)
        r = -errno;
out:
    /* Workers must never see these: a function could otherwise tell systemd
     * the service is ready, stopping, or feed the watchdog. */
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    return r;
}

bool sf_notify_enabled(void)
{
    return notify_fd >= 0;
}

uint64_t sf_notify_watchdog_usec(void)
{
    return watchdog_usec;
}

int sf_notify(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    int n;

    if (notify_fd < 0)
        return 0;
    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n >= sizeof(msg))
        n = sizeof(msg) - 1;
    /* MSG_DONTWAIT: a stuck service manager must not stall the loop. */
    if (sendto(notify_fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT,
               (struct sockaddr *)&notify_addr, notify_addr_len) < 0)
        return -errno;
    return 0;
}

void sf_notify_close(void)
{
    if (notify_fd >= 0)
        close(notify_fd);
    notify_fd = -1;
}

/* Returns the index of name in the colon-separated list, or -1. */
static int name_index(const char *names, const char *name)
{
    size_t nl = strlen(name);
    int i = 0;

    for (const char *p = names; p != NULL; i++) {
        const char *colon = strchr(p, ':');
        size_t l = colon ? (size_t)(colon - p) : strlen(p);
        if (l == nl && strncmp(p, name, nl) == 0)
            return i;
        p = colon ? colon + 1 : NULL;
    }
    return -1;
}

int sf_listen_fds_take(int *fd, char *why, size_t whylen)
{
    const char *spid = getenv("LISTEN_PID");
    const char *sfds = getenv("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES");
    long pid, n;
    int pick = -1, type = 0, acc = 0, r = 0;
    socklen_t ol = sizeof(type);
    char *end;

    *fd = -1;
    if (spid == NULL || sfds == NULL)
        goto out;
    pid = strtol(spid, &end, 10);
    if (*end != '\0' || pid != (long)getpid())
        goto out; /* meant for another process (sd_listen_fds(3)) */
    n = strtol(sfds, &end, 10);
    if (*end != '\0' || n <= 0 || n > 64)
        goto out;
    for (long i = 0; i < n; i++) {
        int f = SF_LISTEN_FDS_START + (int)i;
        int fl = fcntl(f, F_GETFD);
        /* Passed fds are ours now: none may leak into a worker. */
        if (fl >= 0)
            fcntl(f, F_SETFD, fl | FD_CLOEXEC);
    }
    if (n == 1) {
        pick = SF_LISTEN_FDS_START;
    } else if (names != NULL && (pick = name_index(names, "http")) >= 0 &&
               pick < n) {
        pick += SF_LISTEN_FDS_START;
    } else {
        snprintf(why, whylen,
                 "%ld sockets passed and none named http "
                 "(set FileDescriptorName=http)",
                 n);
        r = -EINVAL;
        goto out;
    }
    if (getsockopt(pick, SOL_SOCKET, SO_TYPE, &type, &ol) < 0 ||
        type != SOCK_STREAM ||
        (ol = sizeof(acc),
         getsockopt(pick, SOL_SOCKET, SO_ACCEPTCONN, &acc, &ol)) < 0 ||
        !acc) {
        snprintf(why, whylen,
                 "fd %d is not a listening stream socket "
                 "(use ListenStream= in the socket unit)",
                 pick);
        r = -EINVAL;
        goto out;
    }
    *fd = pick;
out:
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return r;
}
