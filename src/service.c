/*
 * service.c - the daemon's service-manager lifecycle (see service.h).
 *
 * Notification order is the contract tested by test_systemd.py:
 *   READY=1 + STATUS=          once listening, DB open, generic pool up
 *   STATUS=                    when the status text changes (every 2 s check)
 *   RELOADING=1 + MONOTONIC_USEC= + STATUS=   on SIGHUP, then READY=1 again
 *   STOPPING=1 + STATUS=       on SIGTERM/SIGINT
 *   WATCHDOG=1                 every $WATCHDOG_USEC/2, from a loop timer
 * MONOTONIC_USEC is what Type=notify-reload (systemd 253+) requires with
 * RELOADING=1; older managers ignore it.
 */
#include "service.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "notify.h"

#define STATUS_CHECK_MS 2000
#define STATUS_LEN 256

struct sf_service {
    uv_loop_t *loop;
    sf_service_hooks h;
    enum sf_service_state state;
    uv_signal_t sighup, sigterm, sigint;
    uv_timer_t watchdog, status;
    int open_handles;
    bool handles_closed; /* uv_close issued on all of them */
    bool free_requested;
    char last_status[STATUS_LEN];
};

static const char *const state_names[] = {"starting", "ready", "reloading",
                                          "stopping"};

static void status_text(sf_service *s, char *buf, size_t len)
{
    buf[0] = '\0';
    if (s->h.status != NULL)
        s->h.status(s->h.ctx, buf, len);
}

static unsigned long long mono_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000ull +
           (unsigned long long)ts.tv_nsec / 1000ull;
}

/* The one place the state changes; tells systemd and the log. */
static void transition(sf_service *s, enum sf_service_state to)
{
    char st[STATUS_LEN];
    int r = 0;

    SF_INFO("msg=\"service state\" from=%s to=%s", state_names[s->state],
            state_names[to]);
    s->state = to;
    switch (to) {
    case SF_SVC_READY:
        status_text(s, st, sizeof(st));
        snprintf(s->last_status, sizeof(s->last_status), "%s", st);
        r = sf_notify("READY=1\nSTATUS=%s", st);
        break;
    case SF_SVC_RELOADING:
        r = sf_notify("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading "
                      "configuration",
                      mono_usec());
        break;
    case SF_SVC_STOPPING:
        r = sf_notify("STOPPING=1\nSTATUS=stopping");
        break;
    case SF_SVC_STARTING:
        break;
    }
    if (r < 0)
        SF_WARN("msg=\"cannot notify the service manager\" state=%s "
                "error=\"%s\"",
                state_names[to], strerror(-r));
}

static void on_closed(uv_handle_t *h)
{
    sf_service *s = h->data;

    if (--s->open_handles == 0 && s->free_requested)
        free(s);
}

static void close_handles(sf_service *s)
{
    uv_handle_t *hs[] = {(uv_handle_t *)&s->sighup, (uv_handle_t *)&s->sigterm,
                         (uv_handle_t *)&s->sigint, (uv_handle_t *)&s->watchdog,
                         (uv_handle_t *)&s->status};

    if (s->handles_closed)
        return;
    s->handles_closed = true;
    for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
        if (hs[i]->data != NULL && !uv_is_closing(hs[i]))
            uv_close(hs[i], on_closed);
}

static void unref_handles(sf_service *s)
{
    uv_handle_t *hs[] = {(uv_handle_t *)&s->sighup, (uv_handle_t *)&s->sigterm,
                         (uv_handle_t *)&s->sigint, (uv_handle_t *)&s->watchdog,
                         (uv_handle_t *)&s->status};

    for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
        if (hs[i]->data != NULL)
            uv_unref(hs[i]);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    sf_service *s = sig->data;

    if (signum == SIGHUP) {
        if (s->state != SF_SVC_READY) {
            /* Starting: READY=1 has not been sent; stopping: too late. */
            SF_WARN("msg=\"SIGHUP ignored\" state=%s "
                    "hint=\"reload once the daemon is ready\"",
                    state_names[s->state]);
            return;
        }
        transition(s, SF_SVC_RELOADING);
        if (s->h.reload != NULL && s->h.reload(s->h.ctx) < 0)
            SF_ERR("msg=\"reload failed, running configuration kept\"");
        transition(s, SF_SVC_READY);
        return;
    }
    if (s->state == SF_SVC_STOPPING)
        return;
    SF_INFO("msg=\"shutting down\" signal=%s",
            signum == SIGINT ? "SIGINT" : "SIGTERM");
    transition(s, SF_SVC_STOPPING);
    /* Our handles must not keep the loop alive while the daemon drains,
     * but stay open: a second SIGTERM or a SIGHUP now is ignored (above)
     * rather than taking the default action, which would kill us mid-drain,
     * and the watchdog keeps being fed while the loop runs. */
    unref_handles(s);
    if (s->h.stop != NULL)
        s->h.stop(s->h.ctx, signum);
}

static void on_watchdog(uv_timer_t *t)
{
    int r = sf_notify("WATCHDOG=1");

    if (r < 0)
        SF_WARN("msg=\"watchdog ping failed\" error=\"%s\"", strerror(-r));
    (void)t;
}

static void on_status(uv_timer_t *t)
{
    sf_service *s = t->data;
    char st[STATUS_LEN];

    if (s->state != SF_SVC_READY)
        return;
    status_text(s, st, sizeof(st));
    if (strcmp(st, s->last_status) == 0)
        return;
    snprintf(s->last_status, sizeof(s->last_status), "%s", st);
    sf_notify("STATUS=%s", st);
}

int sf_service_new(uv_loop_t *loop, const sf_service_hooks *hooks,
                   sf_service **out)
{
    sf_service *s = calloc(1, sizeof(*s));
    uint64_t wd = sf_notify_watchdog_usec();
    struct {
        uv_signal_t *h;
        int signum;
    } sigs[3];
    int r;

    if (s == NULL)
        return UV_ENOMEM;
    s->loop = loop;
    s->h = *hooks;
    sigs[0].h = &s->sighup;
    sigs[0].signum = SIGHUP;
    sigs[1].h = &s->sigterm;
    sigs[1].signum = SIGTERM;
    sigs[2].h = &s->sigint;
    sigs[2].signum = SIGINT;
    for (int i = 0; i < 3; i++) {
        if ((r = uv_signal_init(loop, sigs[i].h)) < 0)
            goto fail;
        sigs[i].h->data = s;
        s->open_handles++;
        if ((r = uv_signal_start(sigs[i].h, on_signal, sigs[i].signum)) < 0)
            goto fail;
    }
    if (wd > 0) {
        /* Half the period, as sd_watchdog_enabled(3) recommends, so one
         * late tick is not yet a missed deadline. */
        uint64_t ms = wd / 2000 ? wd / 2000 : 1;
        if ((r = uv_timer_init(loop, &s->watchdog)) < 0)
            goto fail;
        s->watchdog.data = s;
        s->open_handles++;
        uv_timer_start(&s->watchdog, on_watchdog, ms, ms);
        SF_INFO("msg=\"systemd watchdog enabled\" period_ms=%llu "
                "ping_ms=%llu",
                (unsigned long long)(wd / 1000), (unsigned long long)ms);
    }
    if (sf_notify_enabled()) {
        if ((r = uv_timer_init(loop, &s->status)) < 0)
            goto fail;
        s->status.data = s;
        s->open_handles++;
        uv_timer_start(&s->status, on_status, STATUS_CHECK_MS, STATUS_CHECK_MS);
        /* Status only: must not keep a stopping loop alive on its own. */
        uv_unref((uv_handle_t *)&s->status);
    }
    *out = s;
    return 0;
fail:
    sf_service_close(s);
    return r;
}

void sf_service_ready(sf_service *s)
{
    if (s->state == SF_SVC_STARTING)
        transition(s, SF_SVC_READY);
}

enum sf_service_state sf_service_state(const sf_service *s)
{
    return s->state;
}

void sf_service_close(sf_service *s)
{
    if (s == NULL)
        return;
    close_handles(s);
    s->free_requested = true;
    if (s->open_handles == 0)
        free(s);
}
