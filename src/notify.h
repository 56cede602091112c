/*
 * notify.h - the systemd service manager protocols sofaasd speaks, written
 * directly (no libsystemd): readiness notification over $NOTIFY_SOCKET
 * (sd_notify(3): READY=1, RELOADING=1, STOPPING=1, STATUS=, WATCHDOG=1) and
 * socket activation via $LISTEN_FDS/$LISTEN_PID/$LISTEN_FDNAMES
 * (sd_listen_fds(3)).
 *
 * Both read their environment once, at start, and remove it from the
 * daemon's environment so that nothing spawned later (workers) can see the
 * notification socket or believe fds were passed to it. Loop thread only;
 * no state besides the notification socket.
 */
#ifndef SF_NOTIFY_H
#define SF_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SF_LISTEN_FDS_START 3 /* SD_LISTEN_FDS_START */

/*
 * Reads and unsets NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID, and opens
 * the datagram socket used to notify ("@name" is an abstract socket).
 * Without NOTIFY_SOCKET every later call is a no-op. Returns 0 or -errno
 * (bad address); the daemon carries on without notifications then.
 */
int sf_notify_init(void);

/* True when a notification socket is configured. */
bool sf_notify_enabled(void);

/*
 * Sends one datagram holding the formatted text: newline-separated
 * "KEY=VALUE" assignments, e.g. "READY=1\nSTATUS=serving". Returns 0 (also
 * when disabled) or -errno.
 */
int sf_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * The watchdog period systemd expects pings within ($WATCHDOG_USEC, when
 * WATCHDOG_PID is unset or ours), or 0 when there is no watchdog.
 */
uint64_t sf_notify_watchdog_usec(void);

/* Closes the notification socket. */
void sf_notify_close(void);

/*
 * Socket activation: when LISTEN_PID is our pid, takes the passed fds
 * (SF_LISTEN_FDS_START...), marks them close-on-exec and unsets LISTEN_*.
 * Picks the one to serve HTTP on: the fd named "http" in LISTEN_FDNAMES,
 * else the only one. *fd is -1 when nothing was passed to us. Returns 0, or
 * -EINVAL with a reason in why (several fds and none named "http", not a
 * listening stream socket).
 */
int sf_listen_fds_take(int *fd, char *why, size_t whylen);

#endif
