/*
 * service.h - sofaasd's lifecycle as the service manager sees it: one state
 * machine (STARTING -> READY <-> RELOADING, any -> STOPPING) driven by
 * readiness and by signals (SIGHUP reloads, SIGTERM/SIGINT stop), which
 * tells systemd every transition over notify.h, keeps its STATUS= line
 * current and pings the watchdog from the loop so a stalled loop is caught.
 *
 * The work itself (what a reload changes, how shutdown drains) stays with
 * the daemon's main, behind the hooks. Loop thread only.
 */
#ifndef SF_SERVICE_H
#define SF_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

enum sf_service_state {
    SF_SVC_STARTING,
    SF_SVC_READY,
    SF_SVC_RELOADING,
    SF_SVC_STOPPING,
};

typedef struct sf_service_hooks {
    /* Writes the one-line STATUS= text into buf (NUL-terminated). */
    void (*status)(void *ctx, char *buf, size_t len);
    /* SIGHUP while READY: re-reads and applies the configuration. Returns 0
     * or -errno (the running configuration is then kept). */
    int (*reload)(void *ctx);
    /* SIGTERM/SIGINT: begins shutdown. Called once. */
    void (*stop)(void *ctx, int signum);
    void *ctx;
} sf_service_hooks;

typedef struct sf_service sf_service;

/*
 * Starts listening for SIGHUP/SIGTERM/SIGINT on loop and, when systemd asked
 * for one ($WATCHDOG_USEC, read by sf_notify_init), pings the watchdog at
 * half its period. Copies hooks. Returns 0 or a negative libuv error.
 */
int sf_service_new(uv_loop_t *loop, const sf_service_hooks *hooks,
                   sf_service **out);

/* STARTING -> READY: sends READY=1 with the status. No-op in other states. */
void sf_service_ready(sf_service *s);

/* The current state (READY is what /readyz reports). */
enum sf_service_state sf_service_state(const sf_service *s);

/* Closes the signal and timer handles; frees once they are closed (the
 * caller runs the loop). NULL-safe. */
void sf_service_close(sf_service *s);

#endif
