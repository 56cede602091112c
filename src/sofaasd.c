/*
 * sofaasd.c - the daemon's main: loads the configuration (config.c), opens
 * the registry, starts the worker pool and the HTTP server on one libuv
 * loop, hands lifecycle signals to service.c, and applies a reloaded
 * configuration to the modules on SIGHUP. Logic lives in the modules it
 * wires together.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "api.h"
#include "config.h"
#include "fnlog.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "meter.h"
#include "notify.h"
#include "pool.h"
#include "registry.h"
#include "sandbox_probe.h"
#include "service.h"

typedef struct daemon_state {
    uv_loop_t *loop;
    int argc;
    char **argv; /* kept for SIGHUP: the same flags override the new file */
    sf_config cfg;
    char addr[300]; /* where we serve, for logs and STATUS */
    sf_service *svc;
    uv_timer_t drain_timer;
    uint64_t drain_deadline_ms;
    sf_http_server *http;
    sf_pool *pool;
    sf_api *api;
    sf_registry *reg;
    sf_cgroup *cgroup;
    sf_metrics *metrics;
    sf_fnlog *fnlog;
    sf_meter *meter;
    uv_prepare_t log_flush;
} daemon_state;

/*
 * The identity workers run user code as: USER (a name) or UID:GID; by
 * default (root only) the package's "sofaas-worker" user, else nobody.
 */
static int resolve_worker_user(const char *spec, uid_t *uid, gid_t *gid)
{
    const struct passwd *pw;
    unsigned u, g;
    char end;

    if (spec != NULL && sscanf(spec, "%u:%u%c", &u, &g, &end) == 2) {
        *uid = u;
        *gid = g;
        return u == 0 || g == 0 ? -EINVAL : 0;
    }
    pw = getpwnam(spec ? spec : "sofaas-worker");
    if (pw == NULL && spec == NULL)
        pw = getpwnam("nobody");
    if (pw == NULL)
        return -ENOENT;
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    return *uid == 0 || *gid == 0 ? -EINVAL : 0;
}

/* True if this process may switch uid/gid (CAP_SETUID and CAP_SETGID
 * effective, e.g. from systemd's AmbientCapabilities=). */
static bool can_setid(void)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];

    if (syscall(SYS_capget, &h, d) != 0)
        return false;
    return (d[0].effective & (1u << CAP_SETUID)) &&
           (d[0].effective & (1u << CAP_SETGID));
}

/*
 * Worker arguments for the sandbox (identity, --sandbox=off), written into
 * args (NULL-ended, pointing into ids). Root always switches (to the
 * configured user or the default); a non-root daemon switches only when
 * sandbox.worker_user is set, and needs CAP_SETUID/CAP_SETGID for it.
 * Returns 0, or -1 after logging why the user cannot be used.
 */
static int sandbox_args(const sf_config *c, char ids[2][32],
                        const char *args[4], uid_t *uid, gid_t *gid)
{
    const char *user = c->sandbox.worker_user[0] ? c->sandbox.worker_user
                                                 : NULL;
    int n = 0, r;

    *uid = 0;
    *gid = 0;
    if (geteuid() == 0 || (user != NULL && can_setid())) {
        r = resolve_worker_user(user, uid, gid);
        if (r < 0) {
            SF_ERR("msg=\"cannot run functions as this user\" user=%s "
                   "error=\"%s\" hint=\"set sandbox.worker_user (or "
                   "--worker-user) to a name or UID:GID other than root\"",
                   user ? user : "sofaas|nobody",
                   r == -ENOENT ? "no such user" : "uid or gid is 0");
            return -1;
        }
        snprintf(ids[0], sizeof(ids[0]), "--uid=%u", *uid);
        snprintf(ids[1], sizeof(ids[1]), "--gid=%u", *gid);
        args[n++] = ids[0];
        args[n++] = ids[1];
    } else if (user != NULL) {
        SF_ERR("msg=\"sandbox.worker_user needs the daemon to start as "
               "root or with CAP_SETUID and CAP_SETGID\" user=%s",
               user);
        return -1;
    }
    if (!c->sandbox.enabled)
        args[n++] = "--sandbox=off";
    args[n] = NULL;
    return 0;
}

/* --check-sandbox: the probe, then a real worker builds the sandbox. */
static int check_sandbox(const char *worker_path, const char *const *wargs,
                         uid_t uid, gid_t gid)
{
    sf_sandbox_probe pr;
    char *argv[8];
    int n = 0, status;
    pid_t pid;

    sf_sandbox_probe_run(&pr);
    sf_sandbox_probe_print(&pr, uid, gid, stdout);
    printf("worker self-test (%s):\n", worker_path);
    fflush(stdout);
    argv[n++] = (char *)worker_path;
    for (int i = 0; wargs[i] != NULL; i++)
        argv[n++] = (char *)wargs[i];
    argv[n++] = "--self-test";
    argv[n++] = (char *)worker_path; /* any readable file as the artifact */
    argv[n] = NULL;
    pid = fork();
    if (pid == 0) {
        execv(worker_path, argv);
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &status, 0) < 0)
        return 1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("sandbox: NOT usable on this host\n");
        return 1;
    }
    printf("sandbox: usable\n");
    return 0;
}

static bool is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

/* Reads the admin token (file first, then env). Caller frees *out. */
static int load_token(const char *token_file, char **out)
{
    const char *env = getenv("SOFAAS_ADMIN_TOKEN");
    char buf[512];
    size_t n;
    FILE *f;

    *out = NULL;
    if (token_file != NULL && token_file[0] != '\0') {
        f = fopen(token_file, "re");
        if (f == NULL) {
            SF_ERR("msg=\"cannot read admin token file\" path=%s error=\"%s\"",
                   token_file, strerror(errno));
            return -errno;
        }
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        while (n > 0 &&
               (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
            buf[--n] = '\0';
        if (n == 0) {
            SF_ERR("msg=\"admin token file is empty\" path=%s", token_file);
            return -EINVAL;
        }
        *out = strdup(buf);
        explicit_bzero(buf, sizeof(buf));
    } else if (env != NULL && env[0] != '\0') {
        *out = strdup(env);
    }
    /* Workers are spawned with their own environment, but keep the token
     * out of ours too. */
    unsetenv("SOFAAS_ADMIN_TOKEN");
    return 0;
}

/*
 * The worker next to sofaasd (build tree), else where `cmake --install`
 * puts it relative to sofaasd (SOFAAS_WORKER_REL, e.g.
 * ../libexec/sofaas/sofaas-worker from sbin). Caller frees.
 */
static char *default_worker_path(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    char *p = NULL;
    const char *dir;

    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    dir = dirname(exe);
    if (asprintf(&p, "%s/sofaas-worker", dir) < 0)
        return NULL;
#ifdef SOFAAS_WORKER_REL
    if (access(p, X_OK) != 0) {
        free(p);
        if (asprintf(&p, "%s/%s", dir, SOFAAS_WORKER_REL) < 0)
            return NULL;
    }
#endif
    return p;
}

/* The host part of a socket's local address, for the loopback check. */
static void sock_host(int fd, char *host, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    snprintf(host, len, "?");
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host,
                  (socklen_t)len);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host,
                  (socklen_t)len);
}

/* Pushes the reloadable settings of d->cfg into the modules. */
static void apply_runtime_settings(daemon_state *d)
{
    const sf_config *c = &d->cfg;
    sf_http_limits hl = {
        .max_connections = c->http.max_connections,
        .header_timeout_ms = c->http.header_timeout_ms,
        .body_timeout_ms = c->http.body_timeout_ms,
        .keepalive_timeout_ms = c->http.keepalive_timeout_ms,
    };

    sf_log_set_level(c->log_level);
    if (d->api != NULL)
        sf_api_set_access_log(d->api, c->access_log);
    if (d->http != NULL)
        sf_http_server_set_limits(d->http, &hl);
    if (d->api != NULL)
        sf_api_set_limits(d->api, (size_t)c->http.invoke_body_max_kb << 10,
                          (size_t)c->deploy.max_artifact_mb << 20);
    if (d->pool != NULL) {
        sf_pool_set_worker_log_level(d->pool, c->log_level);
        sf_pool_set_limits(d->pool, c->pool.generic_min, c->pool.max_workers);
    }
}

static void on_pool_ready(void *ctx)
{
    daemon_state *d = ctx;

    SF_INFO("msg=\"ready\" addr=%s generic_workers=%u", d->addr,
            d->cfg.pool.generic_min);
    /* /readyz turns 200 at the same moment systemd hears READY=1. */
    sf_api_set_ready(d->api, true);
    sf_service_ready(d->svc);
}

static void svc_status(void *ctx, char *buf, size_t len)
{
    daemon_state *d = ctx;
    sf_pool_stats st = {0};

    if (d->pool != NULL)
        sf_pool_get_stats(d->pool, &st);
    snprintf(buf, len,
             "serving on %s; workers: %u generic, %u idle, %u busy; "
             "queued %u; functions %zu",
             d->addr, st.generic, st.idle, st.busy, st.queued,
             d->reg ? sf_registry_count(d->reg) : (size_t)0);
}

static void log_change(void *ctx, const char *path, bool reloadable)
{
    (void)ctx;
    if (reloadable)
        SF_INFO("msg=\"config changed\" key=%s", path);
    else
        SF_WARN("msg=\"config change needs a restart, keeping the running "
                "value\" key=%s hint=\"systemctl restart sofaasd\"",
                path);
}

/* SIGHUP: the file and the original flags again, applied where possible. */
static int svc_reload(void *ctx)
{
    daemon_state *d = ctx;
    sf_config next;
    char *errs = NULL;
    size_t errlen = 0;
    FILE *err = open_memstream(&errs, &errlen);
    enum sf_config_action act;
    unsigned restart;

    if (err == NULL)
        return -ENOMEM;
    act = sf_config_load(&next, d->argc, d->argv, err);
    fclose(err);
    if (act != SF_CONFIG_RUN) {
        for (char *line = strtok(errs, "\n"); line != NULL;
             line = strtok(NULL, "\n"))
            SF_ERR("msg=\"config reload\" error=\"%s\"", line);
        free(errs);
        return -EINVAL;
    }
    free(errs);
    restart = sf_config_diff(&d->cfg, &next, log_change, d);
    if (sf_config_keep_restart_keys(&next, &d->cfg) < 0) {
        sf_config_clear(&next);
        return -ENOMEM;
    }
    sf_config_clear(&d->cfg);
    d->cfg = next;
    apply_runtime_settings(d);
    SF_INFO("msg=\"configuration reloaded\" file=%s needs_restart=%u",
            d->cfg.file ? d->cfg.file : "-", restart);
    return 0;
}

/* Last step of shutdown: connections are done (or out of time). */
static void finish_shutdown(daemon_state *d)
{
    uv_timer_stop(&d->drain_timer);
    uv_close((uv_handle_t *)&d->drain_timer, NULL);
    sf_http_server_close(d->http);
    d->http = NULL;
    sf_pool_free(d->pool);
    d->pool = NULL;
}

static void on_drain_tick(uv_timer_t *t)
{
    daemon_state *d = t->data;
    unsigned left = sf_http_server_connections(d->http);

    if (left == 0) {
        SF_INFO("msg=\"drained, stopping workers\"");
        finish_shutdown(d);
    } else if (uv_now(d->loop) >= d->drain_deadline_ms) {
        SF_WARN("msg=\"drain timeout, closing remaining connections\" "
                "connections=%u hint=\"raise shutdown.drain_timeout_ms\"",
                left);
        finish_shutdown(d);
    }
}

/* SIGTERM/SIGINT: no new connections, in-flight requests finish (up to
 * shutdown.drain_timeout_ms), then the workers stop. */
static void svc_stop(void *ctx, int signum)
{
    daemon_state *d = ctx;

    (void)signum;
    sf_api_set_ready(d->api, false); /* /readyz: 503 from now on */
    SF_INFO("msg=\"no new connections, finishing in-flight requests\" "
            "drain_timeout_ms=%u",
            d->cfg.shutdown.drain_timeout_ms);
    sf_http_server_drain(d->http);
    d->drain_deadline_ms = uv_now(d->loop) + d->cfg.shutdown.drain_timeout_ms;
    uv_timer_init(d->loop, &d->drain_timer);
    d->drain_timer.data = d;
    uv_timer_start(&d->drain_timer, on_drain_tick, 0, 20);
}

/* Before the loop blocks for I/O: writes the log lines of the iteration
 * (sf_log_batch). The access log is one line per invocation; written one
 * by one they were ~5% of the loop thread's time under load. Anything a
 * client sees later than a response (its next request, say) is handled in
 * a later iteration, so its lines are out by then. */
static void on_log_flush(uv_prepare_t *p)
{
    (void)p;
    sf_log_flush();
}

static void on_close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int main(int argc, char **argv)
{
    daemon_state d = {.argc = argc, .argv = argv};
    sf_pool_config pc = {0};
    sf_api_config ac = {0};
    sf_service_hooks hooks = {.status = svc_status,
                              .reload = svc_reload,
                              .stop = svc_stop,
                              .ctx = &d};
    char *token = NULL, *worker_path = NULL;
    char host[256], why[160], ids[2][32];
    const char *wargs[4] = {NULL};
    uid_t wuid;
    gid_t wgid;
    sf_sandbox_probe probe;
    bool check_only = false;
    int r, port = 0, bound = 0, lfd = -1, rc = 1;

    sf_log_init("sofaasd", SF_LOG_INFO);
    switch (sf_config_load(&d.cfg, argc, argv, stderr)) {
    case SF_CONFIG_RUN:
        break;
    case SF_CONFIG_CHECK_SANDBOX:
        check_only = true;
        break;
    case SF_CONFIG_EXIT_OK:
        return 0;
    case SF_CONFIG_EXIT_USAGE:
        return 2;
    case SF_CONFIG_EXIT_ERROR:
        return 1;
    }
    sf_log_set_level(d.cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    if (sandbox_args(&d.cfg, ids, wargs, &wuid, &wgid) < 0)
        goto out;
    if (check_only) {
        worker_path = d.cfg.pool.worker[0] ? strdup(d.cfg.pool.worker)
                                           : default_worker_path();
        rc = worker_path ? check_sandbox(worker_path, wargs, wuid, wgid) : 1;
        goto out;
    }
    /* Before anything is spawned: these strip the service manager's
     * variables from our environment. */
    if (sf_notify_init() < 0)
        SF_WARN("msg=\"NOTIFY_SOCKET is not a usable address, not "
                "notifying systemd\"");
    if (sf_listen_fds_take(&lfd, why, sizeof(why)) < 0) {
        SF_ERR("msg=\"unusable socket activation\" reason=\"%s\"", why);
        goto out;
    }
    if (lfd >= 0) {
        sock_host(lfd, host, sizeof(host));
    } else {
        sf_config_parse_listen(d.cfg.listen, host, sizeof(host), &port);
    }

    if (load_token(d.cfg.admin_token_file, &token) < 0)
        goto out;
    if (token == NULL && !is_loopback(host)) {
        SF_ERR("msg=\"refusing to serve the admin API on a non-loopback "
               "address without a token\" listen=%s "
               "hint=\"set admin_token_file or SOFAAS_ADMIN_TOKEN\"",
               host);
        goto out;
    }
    worker_path = d.cfg.pool.worker[0] ? strdup(d.cfg.pool.worker)
                                       : default_worker_path();
    if (worker_path == NULL || access(worker_path, X_OK) != 0) {
        SF_ERR("msg=\"sofaas-worker not found or not executable\" path=%s "
               "hint=\"set pool.worker or pass --worker PATH\"",
               worker_path ? worker_path : "?");
        goto out;
    }

    if (!d.cfg.sandbox.enabled) {
        SF_WARN("msg=\"SANDBOX DISABLED (sandbox.enabled=false): functions "
                "run unconfined with the daemon's uid. For benchmarks and "
                "debugging only, never in production\"");
    } else {
        sf_sandbox_probe_run(&probe);
        sf_sandbox_probe_log(&probe, wuid, wgid);
    }

    d.loop = uv_default_loop();
    if ((r = sf_service_new(d.loop, &hooks, &d.svc)) < 0) {
        SF_ERR("msg=\"cannot set up signal handling\" error=%s",
               uv_strerror(r));
        goto out;
    }
    if (sf_registry_open(d.cfg.state_dir, &d.reg) < 0)
        goto out;
    if (sf_cgroup_open(&d.cgroup) < 0)
        goto out;
    pc.cgroup = d.cgroup;
    {
        sf_fnlog_config fc = {
            .max_per_invocation = (size_t)d.cfg.logs.function_max_kib << 10,
            .retention_s = (int64_t)d.cfg.logs.function_retention_hours * 3600};
        if (sf_fnlog_new(d.loop, sf_registry_db(d.reg), &fc, &d.fnlog) < 0)
            goto out;
    }
    d.metrics = sf_metrics_new(SOFAAS_VERSION);
    if (d.metrics == NULL)
        goto out;
    pc.fnlog = d.fnlog;
    pc.worker_path = worker_path;
    pc.generic_min = d.cfg.pool.generic_min;
    pc.max_workers = d.cfg.pool.max_workers;
    pc.spawn_rate = d.cfg.pool.spawn_rate;
    pc.predictive = d.cfg.pool.predictive_warming;
    pc.template_threshold_ms = d.cfg.pool.template_threshold_ms;
    pc.worker_log_level = d.cfg.log_level;
    for (int i = 0; wargs[i] != NULL; i++)
        pc.worker_args[i] = wargs[i];
    pc.on_ready = on_pool_ready;
    pc.ready_ctx = &d;
    if ((r = sf_pool_new(d.loop, &pc, &d.pool)) < 0) {
        SF_ERR("msg=\"cannot create pool\" error=%s", uv_strerror(r));
        goto out;
    }
    {
        sf_meter_config mc;
        char *dbpath = NULL;
        /* validated by sf_config_load, so this cannot fail on values */
        if (sf_meter_config_from(&d.cfg, &mc, why, sizeof(why)) < 0 ||
            asprintf(&dbpath, "%s/sofaas.db", sf_registry_state_dir(d.reg)) <
                0)
            goto out;
        r = sf_meter_open(d.loop, dbpath, &mc, &d.meter);
        free(dbpath);
        if (r < 0)
            goto out;
    }
    ac.admin_token = token;
    ac.access_log = d.cfg.access_log;
    ac.metrics = d.metrics;
    ac.fnlog = d.fnlog;
    ac.meter = d.meter;
    if (d.meter != NULL)
        sf_metrics_set_cost_source(d.metrics, sf_meter_cost_total, d.meter);
    d.api = sf_api_new(d.reg, d.pool, &ac);
    d.http =
        d.api ? sf_http_server_new(d.loop, sf_api_handlers(), d.api) : NULL;
    if (d.http == NULL)
        goto out;
    apply_runtime_settings(&d);
    if (lfd >= 0) {
        r = sf_http_server_listen_fd(d.http, lfd, &bound);
        if (r < 0)
            SF_ERR("msg=\"cannot serve on the socket systemd passed\" fd=%d "
                   "error=\"%s\"",
                   lfd, uv_strerror(r));
    } else {
        r = sf_http_server_listen(d.http, host, port, &bound);
        if (r < 0)
            SF_ERR("msg=\"cannot listen\" host=%s port=%d error=\"%s\"", host,
                   port, uv_strerror(r));
    }
    if (r < 0)
        goto out;
    snprintf(d.addr, sizeof(d.addr), strchr(host, ':') ? "[%s]:%d" : "%s:%d",
             host, bound);
    SF_INFO("msg=\"listening\" addr=%s socket_activated=%s state_dir=%s "
            "workers=%u max_workers=%u admin_token=%s config=%s version=%s",
            d.addr, lfd >= 0 ? "yes" : "no", sf_registry_state_dir(d.reg),
            d.cfg.pool.generic_min, d.cfg.pool.max_workers,
            token ? "set" : "none", d.cfg.file ? d.cfg.file : "-",
            SOFAAS_VERSION);
    sf_metrics_attach(d.metrics, d.pool, d.http);
    /* READY=1 follows from on_pool_ready once the generic workers are up. */
    if ((r = sf_pool_start(d.pool)) < 0) {
        SF_ERR("msg=\"cannot start workers\" error=%s", uv_strerror(r));
        goto out;
    }
    sf_api_provision_all(d.api); /* min_warm survives restarts */
    uv_prepare_init(d.loop, &d.log_flush);
    uv_prepare_start(&d.log_flush, on_log_flush);
    uv_unref((uv_handle_t *)&d.log_flush);
    sf_log_batch(true);
    uv_run(d.loop, UV_RUN_DEFAULT);
    sf_log_batch(false);
    rc = 0;

out:
    sf_http_server_close(d.http);
    sf_pool_free(d.pool);
    sf_service_close(d.svc);
    /* After the HTTP server (its followers unfollow as they close) and the
     * pool (which stops feeding it when freed); before the registry's db. */
    sf_fnlog_free(d.fnlog);
    d.fnlog = NULL;
    /* After the pool: its last invocation results are recorded too. */
    sf_meter_close(d.meter);
    if (d.loop != NULL) {
        uv_walk(d.loop, on_close_walk, NULL);
        uv_run(d.loop, UV_RUN_DEFAULT);
        uv_loop_close(d.loop);
    } else if (lfd >= 0) {
        close(lfd);
    }
    sf_api_free(d.api);
    sf_metrics_free(d.metrics);
    sf_registry_free(d.reg);
    sf_cgroup_free(d.cgroup);
    sf_notify_close();
    if (token != NULL) {
        explicit_bzero(token, strlen(token));
        free(token);
    }
    free(worker_path);
    sf_config_clear(&d.cfg);
    return rc;
}
