/*
 * pool.c - worker processes, their states and the invocation queue
 * (see pool.h).
 *
 * Worker life:  SPAWNING --HELLO--> GENERIC --LOAD--> LOADING --LOADED-->
 *               IDLE <--RESPONSE-- BUSY,  and from any state to DRAINING
 *               (finish, then retire) or DEAD (process gone).
 * A worker serves one function version for its whole life.
 *
 * Dispatch: an invocation goes to an idle instance of its version if one
 * exists and nothing is queued ahead of it; otherwise it joins the version's
 * FIFO. A version with more queued invocations than instances loading gets a
 * generic worker specialized for it; when none is generic, a new worker is
 * spawned (up to max_workers), evicting the least recently used idle
 * instance of another version if the pool is full.
 */
#include "pool.h"

#include <errno.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "buf.h"
#include "util.h"

typedef enum wstate {
    W_SPAWNING = 0,
    W_GENERIC,
    W_LOADING,
    W_IDLE,
    W_BUSY,
    W_DRAINING,
    W_DEAD,
    W_NSTATES
} wstate;

static const char *const wstate_names[W_NSTATES] = {
    "spawning", "generic", "loading", "idle", "busy", "draining", "dead"};

typedef struct fnv fnv;
typedef struct inv inv;
typedef struct worker worker;

/* A function version known to the pool. */
struct fnv {
    char *name;
    int64_t version;
    char *path;
    sf_fn_config cfg;
    inv *q_head, *q_tail;
    size_t q_len;
    unsigned n_loading;
    unsigned n_workers; /* LOADING, IDLE, BUSY, DRAINING bound to it */
    bool retired;       /* a newer version exists */
    fnv *next;
};

struct inv {
    fnv *fn;
    const sf_invoke *req;
    sf_invoke_cb cb;
    void *ctx;
    uint64_t id;
    uint64_t enq_us, dispatch_us;
    inv *next;
};

typedef struct validation {
    sf_validate_cb cb;
    void *ctx;
    char *path;
    sf_fn_config cfg;
} validation;

typedef enum kill_reason { KILL_NONE, KILL_TIMEOUT, KILL_RETIRE, KILL_PROTO } kill_reason;

struct worker {
    sf_pool *pool;
    uint64_t id;
    wstate state;
    uv_process_t proc;
    uv_pipe_t ipc;
    uv_pipe_t out; /* the worker's stdout+stderr */
    uv_timer_t timer;
    int open_handles;
    bool exited;
    sf_buf rbuf;
    fnv *fn;          /* bound version (LOADING onwards), or NULL */
    validation *val;  /* set for a deploy-validation worker */
    inv *cur;         /* BUSY: the invocation in flight */
    uint64_t load_start_us, init_us;
    uint64_t served;
    uint64_t last_used_us;
    kill_reason kill;
    int pidfd;        /* signals go through it: a recycled pid is never hit */
    bool oom;         /* the memory cgroup OOM-killed it */
    int violation_nr; /* -1 when none */
    bool untrusted;   /* SF_USER_CODE_MARK seen: output may be user code's */
    sf_buf trusted;   /* before the mark: an unfinished worker log line */
    sf_fnlog_stream outs;
    uint32_t violation_arch; /* AUDIT_ARCH_* of violation_nr; 0 = unknown */
    worker *prev, *next;
};

struct sf_pool {
    uv_loop_t *loop;
    sf_pool_config cfg;
    worker *workers;
    unsigned n_state[W_NSTATES];
    unsigned total; /* live (not DEAD) workers */
    fnv *fns;
    uint64_t next_worker_id;
    uint64_t next_inv_id;
    unsigned generic_seen; /* workers that said HELLO as generic ones */
    bool ready_fired;      /* cfg.on_ready has run */
    bool stopping;
};

typedef struct wwrite {
    uv_write_t req;
    char *meta;
} wwrite;

static void pump(sf_pool *p, fnv *f);
static void pump_all(sf_pool *p);
static void worker_kill(worker *w, kill_reason why);
static void maybe_spawn(sf_pool *p);

/* ---- states ------------------------------------------------------------- */

static void transition(worker *w, wstate to)
{
    sf_pool *p = w->pool;
    wstate from = w->state;

    if (from == to)
        return;
    p->n_state[from]--;
    p->n_state[to]++;
    if (to == W_DEAD)
        p->total--;
    if (w->fn != NULL) {
        if (from == W_LOADING)
            w->fn->n_loading--;
        if (to == W_LOADING)
            w->fn->n_loading++;
        if (to == W_DEAD)
            w->fn->n_workers--;
    }
    w->state = to;
    SF_DEBUG("msg=\"worker state\" instance=%llu pid=%d from=%s to=%s "
             "function=%s",
             (unsigned long long)w->id, w->proc.pid, wstate_names[from],
             wstate_names[to], w->fn ? w->fn->name : "-");
}

/* ---- function versions -------------------------------------------------- */

static fnv *fnv_find(sf_pool *p, const char *name, int64_t version)
{
    for (fnv *f = p->fns; f != NULL; f = f->next)
        if (f->version == version && strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static fnv *fnv_get(sf_pool *p, const sf_fn_spec *s)
{
    fnv *f = fnv_find(p, s->name, s->version);

    if (f != NULL) {
        f->cfg = s->config;
        return f;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->name = strdup(s->name);
    f->path = strdup(s->artifact_path);
    if (f->name == NULL || f->path == NULL) {
        free(f->name);
        free(f->path);
        free(f);
        return NULL;
    }
    f->version = s->version;
    f->cfg = s->config;
    f->next = p->fns;
    p->fns = f;
    return f;
}

/* Frees a retired version nobody uses any more. */
static void fnv_gc(sf_pool *p, fnv *f)
{
    if (!f->retired || f->n_workers > 0 || f->q_len > 0)
        return;
    for (fnv **pp = &p->fns; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    }
    free(f->name);
    free(f->path);
    free(f);
}

static inv *dequeue(fnv *f)
{
    inv *i = f->q_head;
    if (i == NULL)
        return NULL;
    f->q_head = i->next;
    if (f->q_head == NULL)
        f->q_tail = NULL;
    f->q_len--;
    i->next = NULL;
    return i;
}

static void finish(inv *i, sf_invoke_result *res)
{
    i->cb(i->ctx, res);
    free(i);
}

static void fail(inv *i, enum sf_invoke_status st, const char *detail)
{
    sf_invoke_result res = {.status = st, .detail = detail};
    uint64_t now = sf_mono_us();

    res.queue_us = (i->dispatch_us ? i->dispatch_us : now) - i->enq_us;
    res.duration_us = i->dispatch_us ? now - i->dispatch_us : 0;
    finish(i, &res);
}

/* ---- worker handles ----------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    worker *w = h->data;

    if (--w->open_handles > 0)
        return;
    sf_buf_free(&w->rbuf);
    sf_buf_free(&w->trusted);
    sf_fnlog_stream_free(&w->outs);
    free(w);
}

static void worker_unlink(worker *w)
{
    sf_pool *p = w->pool;
    if (w->prev)
        w->prev->next = w->next;
    else
        p->workers = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
}

static void close_ipc(worker *w)
{
    if (!uv_is_closing((uv_handle_t *)&w->ipc))
        uv_close((uv_handle_t *)&w->ipc, on_handle_closed);
}

/* ---- function output ---------------------------------------------------- */

static void on_output(worker *w, const char *data, size_t len);

/*
 * Output before SF_USER_CODE_MARK is the worker's own log (whole lines from
 * log.c, sandbox reports among them): copied to our stderr line by line.
 * The mark line itself is dropped; what follows it goes to on_output as
 * function output. Returns nothing: the switch is w->untrusted.
 */
static void trusted_output(worker *w, const char *data, size_t len)
{
    static const char mark[] = SF_USER_CODE_MARK;
    size_t start = 0;

    if (sf_buf_append(&w->trusted, data, len) < 0) {
        w->untrusted = true; /* fail closed: no more pass-through */
        sf_buf_free(&w->trusted);
        return;
    }
    for (size_t i = 0; i < w->trusted.len; i++) {
        size_t n;
        if (w->trusted.data[i] != '\n')
            continue;
        n = i - start;
        if (n == sizeof(mark) - 1 &&
            memcmp(w->trusted.data + start, mark, n) == 0) {
            size_t rest = w->trusted.len - (i + 1);
            char *tail = rest ? w->trusted.data + i + 1 : NULL;
            w->untrusted = true;
            if (rest > 0)
                on_output(w, tail, rest);
            sf_buf_free(&w->trusted);
            return;
        }
        (void)!write(STDERR_FILENO, w->trusted.data + start, n + 1);
        start = i + 1;
    }
    sf_buf_consume(&w->trusted, start);
    /* A worker line longer than log.c ever writes: pass it on as is. */
    if (w->trusted.len > 8192) {
        (void)!write(STDERR_FILENO, w->trusted.data, w->trusted.len);
        w->trusted.len = 0;
    }
}

/*
 * After the mark any byte may come from user code, so it is only ever
 * stored as function output, tagged with what we know, never passed
 * through as a log line.
 */
static void on_output(worker *w, const char *data, size_t len)
{
    sf_fnlog_tags t;

    if (!w->untrusted) {
        trusted_output(w, data, len);
        return;
    }
    if (w->fn == NULL || w->val != NULL || w->pool->cfg.fnlog == NULL)
        return; /* a deploy validation's init output is not kept */
    t = (sf_fnlog_tags){.function = w->fn->name,
                        .version = w->fn->version,
                        .instance = w->id,
                        .request_id = w->cur ? w->cur->req->request_id
                                             : NULL};
    sf_fnlog_feed(w->pool->cfg.fnlog, &w->outs, &t, data, len);
}

static void on_out_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    /* Consumed synchronously by on_out_read, so one buffer serves all. */
    static char space[64 << 10];

    (void)h;
    (void)suggested;
    *buf = uv_buf_init(space, sizeof(space));
}

static void close_out(worker *w)
{
    if (!uv_is_closing((uv_handle_t *)&w->out))
        uv_close((uv_handle_t *)&w->out, on_handle_closed);
}

static void on_out_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    worker *w = s->data;

    if (n < 0) {
        close_out(w);
        return;
    }
    if (n > 0)
        on_output(w, buf->base, (size_t)n);
}

/*
 * Reads whatever output is already in the pipe. The worker flushes stdio
 * before it writes RESPONSE, so at the response (or at the process's death)
 * every byte the invocation wrote is in the pipe: draining here, before the
 * invocation is finished, attributes it to the right request even when the
 * loop would have polled the two fds in the other order.
 */
static void drain_output(worker *w, bool end_of_invocation)
{
    uv_os_fd_t fd;
    char buf[16 << 10];

    if (!uv_is_closing((uv_handle_t *)&w->out) &&
        uv_fileno((uv_handle_t *)&w->out, &fd) == 0) {
        for (int i = 0; i < 64; i++) { /* bounded: a writer may keep on */
            ssize_t n = read(fd, buf, sizeof(buf));
            if (n <= 0)
                break;
            on_output(w, buf, (size_t)n);
        }
    }
    if (end_of_invocation && w->untrusted && w->fn != NULL &&
        w->val == NULL && w->pool->cfg.fnlog != NULL) {
        sf_fnlog_tags t = {.function = w->fn->name,
                           .version = w->fn->version,
                           .instance = w->id,
                           .request_id =
                               w->cur ? w->cur->req->request_id : NULL};
        sf_fnlog_stream_flush(w->pool->cfg.fnlog, &w->outs, &t);
    }
}

static const char *signame(int sig)
{
    static char buf[16];
    const char *n = sigabbrev_np(sig);
    if (n == NULL) {
        snprintf(buf, sizeof(buf), "%d", sig);
        return buf;
    }
    snprintf(buf, sizeof(buf), "SIG%s", n);
    return buf;
}

/* Names the refused call: "sandbox refused system call ptrace (101,
 * x86_64)". libseccomp resolves the number for the arch the worker
 * reported (an i386 `int 0x80` is named from the i386 table). */
static void violation_detail(worker *w, char *buf, size_t len)
{
    char *name = NULL;
    const char *arch = "unknown arch";

    if (w->violation_arch == SCMP_ARCH_X86_64)
        arch = "x86_64";
    else if (w->violation_arch == SCMP_ARCH_X86)
        arch = "i386";
    else if (w->violation_arch == SCMP_ARCH_AARCH64)
        arch = "aarch64";
    if (w->violation_nr == INT32_MAX) {
        snprintf(buf, len, SF_POOL_VIOLATION_PREFIX
                 " (unreported: the instance was killed by SIGSYS)");
        return;
    }
    if (w->violation_arch != 0)
        name = seccomp_syscall_resolve_num_arch(w->violation_arch,
                                                w->violation_nr);
    snprintf(buf, len, SF_POOL_VIOLATION_PREFIX " %s (%d, %s)",
             name ? name : "?", w->violation_nr, arch);
    free(name);
}

/* Describes how the worker died into buf. */
static const char *death_detail(worker *w, int64_t status, int sig, char *buf,
                                size_t len)
{
    if (w->kill == KILL_TIMEOUT)
        snprintf(buf, len, "killed at the deadline");
    else if (w->oom)
        snprintf(buf, len, "instance exceeded its memory limit (memory_mb=%u)",
                 w->fn ? w->fn->cfg.memory_mb : 0);
    else if (w->violation_nr >= 0)
        violation_detail(w, buf, len);
    else if (sig != 0)
        snprintf(buf, len, "instance killed by %s", signame(sig));
    else
        snprintf(buf, len, "instance exited with status %lld",
                 (long long)status);
    return buf;
}

static void load_failed(worker *w, const char *reason)
{
    fnv *f = w->fn;
    inv *i;

    if (w->val != NULL) {
        validation *v = w->val;
        w->val = NULL;
        v->cb(v->ctx, false, reason);
        free(v->path);
        free(v);
        return;
    }
    if (f == NULL)
        return;
    SF_WARN("msg=\"instance failed to initialize\" function=%s version=%lld "
            "reason=\"%s\"",
            f->name, (long long)f->version, reason);
    /* One failed load fails one waiting invocation, so a function whose init
     * always fails cannot hold its queue forever. */
    i = dequeue(f);
    if (i != NULL)
        fail(i, w->violation_nr >= 0 ? SF_INV_SANDBOX : SF_INV_INIT_FAILED,
             reason);
}

static void pool_destroy(sf_pool *p)
{
    while (p->fns != NULL) {
        fnv *f = p->fns;
        p->fns = f->next;
        free(f->name);
        free(f->path);
        free(f);
    }
    free((char *)p->cfg.worker_path);
    free(p);
}

/*
 * libuv may report the exit before the last bytes on the channel were
 * read. A worker the sandbox stopped writes its VIOLATION frame and exits
 * at once, so pick that report out of whatever is still unread (the pipe
 * is non-blocking; other frames are not acted on any more).
 */
static void drain_violation(worker *w)
{
    uv_os_fd_t fd;
    size_t off = 0;

    if (uv_is_closing((uv_handle_t *)&w->ipc) ||
        uv_fileno((uv_handle_t *)&w->ipc, &fd) != 0)
        return;
    for (;;) {
        ssize_t n;
        if (sf_buf_reserve(&w->rbuf, 64u << 10) < 0)
            break;
        n = read(fd, w->rbuf.data + w->rbuf.len, w->rbuf.cap - w->rbuf.len);
        if (n <= 0)
            break;
        w->rbuf.len += (size_t)n;
    }
    while (w->rbuf.len - off >= sizeof(sf_frame_hdr)) {
        sf_frame_hdr h;
        memcpy(&h, w->rbuf.data + off, sizeof(h));
        if (sf_ipc_check_hdr(&h, true) < 0 ||
            w->rbuf.len - off - sizeof(h) < h.len)
            break;
        if (h.type == SF_FRAME_VIOLATION &&
            h.len == sizeof(sf_violation_msg)) {
            sf_violation_msg v;
            memcpy(&v, w->rbuf.data + off + sizeof(h), sizeof(v));
            w->violation_nr = v.syscall_nr < 0 ? 0 : v.syscall_nr;
            w->violation_arch = v.arch;
        }
        off += sizeof(h) + h.len;
    }
    sf_buf_consume(&w->rbuf, off);
}

static void on_exit_cb(uv_process_t *proc, int64_t status, int sig)
{
    worker *w = proc->data;
    sf_pool *p = w->pool;
    wstate was = w->state;
    char detail[160];
    fnv *f = w->fn;

    w->exited = true;
    uv_timer_stop(&w->timer);
    drain_output(w, true);
    close_out(w);
    if (w->pidfd >= 0) {
        close(w->pidfd);
        w->pidfd = -1;
    }
    w->oom = sf_cgroup_oom_killed(p->cfg.cgroup, w->id);
    sf_cgroup_remove(p->cfg.cgroup, w->id);
    if (w->violation_nr < 0)
        drain_violation(w);
    /* SIGSYS without a VIOLATION frame: the filter trapped while SIGSYS was
     * blocked, or the report could not be sent. Still the sandbox. */
    if (sig == SIGSYS && w->violation_nr < 0)
        w->violation_nr = INT32_MAX;
    death_detail(w, status, sig, detail, sizeof(detail));
    if (w->kill != KILL_RETIRE && !p->stopping)
        SF_WARN("msg=\"worker died\" instance=%llu pid=%d state=%s "
                "function=%s request_id=%s detail=\"%s\"",
                (unsigned long long)w->id, proc->pid, wstate_names[was],
                f ? f->name : "-", w->cur ? w->cur->req->request_id : "-",
                detail);
    transition(w, W_DEAD);
    worker_unlink(w);
    close_ipc(w);
    uv_close((uv_handle_t *)&w->proc, on_handle_closed);
    uv_close((uv_handle_t *)&w->timer, on_handle_closed);

    if (was == W_LOADING || was == W_SPAWNING) {
        if (was == W_LOADING || w->val != NULL)
            load_failed(w, detail);
    }
    if (w->cur != NULL) {
        inv *i = w->cur;
        enum sf_invoke_status st = SF_INV_CRASHED;
        w->cur = NULL;
        if (w->kill == KILL_TIMEOUT)
            st = SF_INV_TIMEOUT;
        else if (w->oom)
            st = SF_INV_OOM;
        else if (w->kill == KILL_PROTO)
            st = SF_INV_INVALID_RESPONSE;
        else if (w->violation_nr >= 0)
            st = SF_INV_SANDBOX;
        fail(i, st, detail);
    }
    if (p->stopping) {
        if (p->workers == NULL)
            pool_destroy(p);
        return;
    }
    if (f != NULL)
        fnv_gc(p, f);
    maybe_spawn(p);
    pump_all(p);
}

static void worker_kill(worker *w, kill_reason why)
{
    if (w->exited)
        return;
    if (w->kill == KILL_NONE)
        w->kill = why;
    /* Through the pidfd when we have one: it names this process, not
     * whatever reuses its pid. */
    if (w->pidfd >= 0 &&
        syscall(SYS_pidfd_send_signal, w->pidfd, SIGKILL, NULL, 0) == 0)
        return;
    uv_process_kill(&w->proc, SIGKILL);
}

static void retire(worker *w)
{
    transition(w, W_DRAINING);
    close_ipc(w);
    worker_kill(w, KILL_RETIRE);
}

static void on_timer(uv_timer_t *t)
{
    worker *w = t->data;

    SF_WARN("msg=\"deadline passed, killing instance\" instance=%llu pid=%d "
            "state=%s function=%s request_id=%s",
            (unsigned long long)w->id, w->proc.pid, wstate_names[w->state],
            w->fn ? w->fn->name : "-",
            w->cur ? w->cur->req->request_id : "-");
    worker_kill(w, KILL_TIMEOUT);
}

/* ---- sending ------------------------------------------------------------ */

static void on_wwrite(uv_write_t *req, int status)
{
    wwrite *ww = (wwrite *)req;
    worker *w = req->data;

    free(ww->meta);
    free(ww);
    if (status < 0 && status != UV_ECANCELED && !w->exited)
        worker_kill(w, KILL_PROTO);
}

/* Sends meta (taken) followed by an optional body (borrowed). */
static int send_frame(worker *w, char *meta, size_t meta_len,
                      const void *body, size_t body_len)
{
    wwrite *ww = malloc(sizeof(*ww));
    uv_buf_t b[2];
    int r;

    if (ww == NULL) {
        free(meta);
        return -ENOMEM;
    }
    ww->meta = meta;
    ww->req.data = w;
    b[0] = uv_buf_init(meta, (unsigned int)meta_len);
    b[1] = uv_buf_init((char *)body, (unsigned int)body_len);
    r = uv_write(&ww->req, (uv_stream_t *)&w->ipc, b, body_len ? 2 : 1,
                 on_wwrite);
    if (r < 0) {
        free(meta);
        free(ww);
    }
    return r;
}

static void dispatch(worker *w, inv *i)
{
    char *meta;
    size_t len;
    int r;

    i->dispatch_us = sf_mono_us();
    drain_output(w, true); /* idle output stays untagged */
    sf_fnlog_stream_begin(&w->outs);
    w->cur = i;
    transition(w, W_BUSY);
    r = sf_ipc_encode_invoke(i->req, i->id, &meta, &len);
    if (r == 0)
        r = send_frame(w, meta, len, i->req->body, i->req->body_len);
    if (r < 0) {
        SF_ERR("msg=\"cannot send invocation\" instance=%llu request_id=%s "
               "error=%s",
               (unsigned long long)w->id, i->req->request_id, uv_strerror(r));
        worker_kill(w, KILL_PROTO);
        return;
    }
    uv_timer_start(&w->timer, on_timer, w->fn->cfg.timeout_ms, 0);
}

static int send_load(worker *w, const char *path, const sf_fn_config *cfg)
{
    sf_load_msg m = {.abi = SOFAAS_ABI_VERSION,
                     .memory_mb = cfg->memory_mb,
                     .timeout_ms = cfg->timeout_ms,
                     .flags = cfg->network ? SF_LOAD_F_NETWORK : 0,
                     .tmp_mb = cfg->tmp_mb};
    char *out;
    size_t len;
    int r;

    /* With a memory cgroup in force the worker's RLIMIT_AS is only a
     * backstop, so the cgroup (which sees resident memory and reports OOM
     * kills) decides. */
    if (sf_cgroup_set_memory(w->pool->cfg.cgroup, w->id, cfg->memory_mb) ==
            0 &&
        sf_cgroup_get_mode(w->pool->cfg.cgroup) != SF_CGROUP_NONE)
        m.flags |= SF_LOAD_F_MEMCG;
    r = sf_ipc_encode_load(&m, path, cfg->env, cfg->env_len, &out, &len);
    if (r < 0)
        return r;
    w->load_start_us = sf_mono_us();
    uv_timer_start(&w->timer, on_timer, cfg->init_timeout_ms, 0);
    return send_frame(w, out, len, NULL, 0);
}

static void specialize(worker *w, fnv *f)
{
    w->fn = f;
    f->n_workers++;
    transition(w, W_LOADING);
    if (send_load(w, f->path, &f->cfg) < 0)
        worker_kill(w, KILL_PROTO);
}

static void start_validation(worker *w)
{
    transition(w, W_LOADING);
    if (send_load(w, w->val->path, &w->val->cfg) < 0)
        worker_kill(w, KILL_PROTO);
}

/* ---- receiving ---------------------------------------------------------- */

static void on_loaded(worker *w, const char *payload, size_t len)
{
    int32_t st;
    const char *msg;

    uv_timer_stop(&w->timer);
    if (sf_ipc_decode_loaded(payload, len, &st, &msg) < 0) {
        worker_kill(w, KILL_PROTO);
        return;
    }
    w->init_us = sf_mono_us() - w->load_start_us;
    /* The mark was written before dlopen, so it is in the pipe by now;
     * after a successful load, user code has run whatever we read. */
    drain_output(w, false);
    if (st == SF_LOAD_OK)
        w->untrusted = true;
    if (w->val != NULL) {
        validation *v = w->val;
        w->val = NULL;
        v->cb(v->ctx, st == SF_LOAD_OK, st == SF_LOAD_OK ? "" : msg);
        free(v->path);
        free(v);
        retire(w);
        return;
    }
    if (st != SF_LOAD_OK) {
        load_failed(w, msg);
        retire(w);
        return;
    }
    SF_DEBUG("msg=\"instance ready\" instance=%llu function=%s version=%lld "
             "init_us=%llu",
             (unsigned long long)w->id, w->fn->name,
             (long long)w->fn->version, (unsigned long long)w->init_us);
    w->last_used_us = sf_mono_us();
    transition(w, W_IDLE);
    pump(w->pool, w->fn);
}

static void on_response(worker *w, const sf_frame_hdr *h, const char *payload)
{
    inv *i = w->cur;
    sofaas_header *hdrs = NULL;
    sf_response resp;
    sf_invoke_result res = {0};
    uint64_t now = sf_mono_us();

    uv_timer_stop(&w->timer);
    if (sf_ipc_decode_response(payload, h->len, &resp, &hdrs) < 0) {
        SF_WARN("msg=\"malformed response frame\" instance=%llu",
                (unsigned long long)w->id);
        worker_kill(w, KILL_PROTO);
        return;
    }
    drain_output(w, true);
    w->cur = NULL;
    res.cold_start = w->served == 0;
    res.init_us = res.cold_start ? w->init_us : 0;
    res.instance_id = w->id;
    res.queue_us = i->dispatch_us - i->enq_us;
    res.duration_us = now - i->dispatch_us;
    if (h->flags & SF_RESPONSE_F_OVERFLOW) {
        res.status = SF_INV_INVALID_RESPONSE;
        res.detail = "function response exceeded the size cap";
    } else {
        res.status = SF_INV_OK;
        res.resp = &resp;
    }
    w->served++;
    w->last_used_us = now;
    if (w->state == W_BUSY)
        transition(w, W_IDLE);
    finish(i, &res);
    free(hdrs);
}

/* Runs cfg.on_ready once: the generic pool has been filled. */
static void fire_ready(sf_pool *p)
{
    if (p->ready_fired || p->stopping)
        return;
    p->ready_fired = true;
    if (p->cfg.on_ready != NULL)
        p->cfg.on_ready(p->cfg.ready_ctx);
}

static void on_frame(worker *w, const sf_frame_hdr *h, const char *payload)
{
    switch (h->type) {
    case SF_FRAME_HELLO:
        if (w->state != W_SPAWNING)
            break;
        transition(w, W_GENERIC);
        if (w->val != NULL) {
            start_validation(w);
            return;
        }
        if (++w->pool->generic_seen >= w->pool->cfg.generic_min)
            fire_ready(w->pool);
        pump_all(w->pool);
        return;
    case SF_FRAME_LOADED:
        if (w->state != W_LOADING)
            break;
        on_loaded(w, payload, h->len);
        return;
    case SF_FRAME_RESPONSE:
        if ((w->state != W_BUSY && w->state != W_DRAINING) ||
            w->cur == NULL || h->id != w->cur->id)
            break;
        on_response(w, h, payload);
        if (w->state == W_DRAINING && !w->exited)
            retire(w);
        else if (w->state == W_IDLE && w->fn->retired)
            retire(w);
        else if (w->state == W_IDLE)
            pump(w->pool, w->fn);
        return;
    case SF_FRAME_VIOLATION:
        if (h->len == sizeof(sf_violation_msg)) {
            sf_violation_msg v;
            memcpy(&v, payload, sizeof(v));
            w->violation_nr = v.syscall_nr < 0 ? 0 : v.syscall_nr;
            w->violation_arch = v.arch;
            return;
        }
        break;
    }
    SF_WARN("msg=\"unexpected frame from worker\" instance=%llu type=%u "
            "state=%s",
            (unsigned long long)w->id, h->type, wstate_names[w->state]);
    worker_kill(w, KILL_PROTO);
}

static void on_ipc_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    worker *w = h->data;

    (void)suggested;
    if (sf_buf_reserve(&w->rbuf, 64u << 10) < 0) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init(w->rbuf.data + w->rbuf.len,
                       (unsigned int)(w->rbuf.cap - w->rbuf.len));
}

static void on_ipc_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    worker *w = s->data;

    (void)buf;
    if (n < 0) {
        /* EOF or error: the process is exiting; on_exit_cb reports it. */
        close_ipc(w);
        return;
    }
    w->rbuf.len += (size_t)n;
    while (w->rbuf.len >= sizeof(sf_frame_hdr) && !w->exited &&
           !uv_is_closing((uv_handle_t *)&w->ipc)) {
        sf_frame_hdr h;
        size_t need;

        memcpy(&h, w->rbuf.data, sizeof(h));
        if (sf_ipc_check_hdr(&h, true) < 0) {
            SF_WARN("msg=\"invalid frame header from worker\" instance=%llu "
                    "type=%u len=%u",
                    (unsigned long long)w->id, h.type, h.len);
            close_ipc(w);
            worker_kill(w, KILL_PROTO);
            return;
        }
        need = sizeof(h) + h.len;
        if (w->rbuf.len < need) {
            if (sf_buf_reserve(&w->rbuf, need - w->rbuf.len) < 0)
                worker_kill(w, KILL_PROTO);
            return;
        }
        on_frame(w, &h, w->rbuf.data + sizeof(h));
        sf_buf_consume(&w->rbuf, need);
    }
    /* Don't pin a large buffer after one big response. */
    if (w->rbuf.len == 0 && w->rbuf.cap > (1u << 20))
        sf_buf_free(&w->rbuf);
}

/* ---- spawning ----------------------------------------------------------- */

static int spawn_worker(sf_pool *p, validation *val)
{
    worker *w = calloc(1, sizeof(*w));
    uv_os_sock_t fds[2] = {-1, -1};
    uv_file ofds[2] = {-1, -1};
    uv_process_options_t o = {0};
    uv_stdio_container_t stdio[4];
    char *args[2 + sizeof(p->cfg.worker_args) / sizeof(char *)];
    size_t na = 0;
    char lvl[32];
    char *env[5];
    char ppid[48];
    char journal[64];
    const char *js = getenv("JOURNAL_STREAM");
    size_t ne = 0;
    static const char *const lvls[] = {"error", "warn", "info", "debug"};
    int r;

    if (w == NULL)
        return UV_ENOMEM;
    r = uv_socketpair(SOCK_STREAM, 0, fds, UV_NONBLOCK_PIPE, 0);
    if (r < 0) {
        free(w);
        return r;
    }
    /* Our end non-blocking (drain_output reads it directly), theirs
     * blocking: a function writing faster than we read just waits. */
    r = uv_pipe(ofds, UV_NONBLOCK_PIPE, 0);
    if (r < 0) {
        close(fds[0]);
        close(fds[1]);
        free(w);
        return r;
    }
    w->pool = p;
    w->id = ++p->next_worker_id;
    w->violation_nr = -1;
    w->pidfd = -1;
    w->val = val;
    w->state = W_SPAWNING;

    args[na++] = (char *)p->cfg.worker_path;
    for (size_t i = 0; i < sizeof(p->cfg.worker_args) / sizeof(char *) &&
                       p->cfg.worker_args[i] != NULL;
         i++)
        args[na++] = (char *)p->cfg.worker_args[i];
    args[na] = NULL;
    /* The worker gets nothing of the daemon's environment. */
    snprintf(lvl, sizeof(lvl), "SOFAAS_LOG_LEVEL=%s",
             lvls[p->cfg.worker_log_level]);
    /* The worker compares this with getppid() at start: if the daemon died
     * between fork and PR_SET_PDEATHSIG, it exits instead of orphaning. */
    snprintf(ppid, sizeof(ppid), "SOFAAS_DAEMON_PID=%d", (int)getpid());
    env[0] = lvl;
    env[++ne] = ppid;
#if defined(__SANITIZE_ADDRESS__)
    /* Sanitizer builds only: let faults in user code kill the worker with
     * the real signal (the daemon reports it) instead of ASan turning them
     * into exit(1), and skip leak checks of processes we SIGKILL anyway. */
    env[++ne] = "ASAN_OPTIONS=handle_segv=0:handle_sigbus=0:handle_sigfpe=0:"
                "handle_abort=0:detect_leaks=0";
#endif
    /* So the worker's own lines carry journald priorities like ours. */
    if (js != NULL && js[0] != '\0' &&
        snprintf(journal, sizeof(journal), "JOURNAL_STREAM=%s", js) <
            (int)sizeof(journal))
        env[++ne] = journal;
    env[++ne] = NULL;
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = ofds[1];
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = ofds[1];
    stdio[3].flags = UV_INHERIT_FD;
    stdio[3].data.fd = fds[1];
    o.file = p->cfg.worker_path;
    o.args = args;
    o.env = env;
    o.stdio = stdio;
    o.stdio_count = 4;
    o.exit_cb = on_exit_cb;

    uv_pipe_init(p->loop, &w->ipc, 0);
    w->ipc.data = w;
    uv_timer_init(p->loop, &w->timer);
    w->timer.data = w;
    uv_pipe_init(p->loop, &w->out, 0);
    w->out.data = w;
    w->open_handles = 3;
    r = uv_pipe_open(&w->ipc, fds[0]);
    if (r == 0)
        r = uv_pipe_open(&w->out, ofds[0]);
    else
        close(ofds[0]);
    if (r == 0) {
        w->proc.data = w;
        r = uv_spawn(p->loop, &w->proc, &o);
    }
    close(fds[1]);
    close(ofds[1]);
    if (r < 0) {
        SF_ERR("msg=\"cannot spawn worker\" path=%s error=%s",
               p->cfg.worker_path, uv_strerror(r));
        w->val = NULL;
        uv_close((uv_handle_t *)&w->ipc, on_handle_closed);
        uv_close((uv_handle_t *)&w->out, on_handle_closed);
        uv_close((uv_handle_t *)&w->timer, on_handle_closed);
        /* uv_spawn failure leaves proc uninitialized: nothing to close. */
        return r;
    }
    w->open_handles = 4;
    w->pidfd = (int)syscall(SYS_pidfd_open, w->proc.pid, 0);
    sf_cgroup_add(p->cfg.cgroup, w->id, w->proc.pid);
    p->n_state[W_SPAWNING]++;
    p->total++;
    w->next = p->workers;
    if (p->workers)
        p->workers->prev = w;
    p->workers = w;
    uv_read_start((uv_stream_t *)&w->ipc, on_ipc_alloc, on_ipc_read);
    uv_read_start((uv_stream_t *)&w->out, on_out_alloc, on_out_read);
    SF_DEBUG("msg=\"worker spawned\" instance=%llu pid=%d",
             (unsigned long long)w->id, w->proc.pid);
    return 0;
}

/* Keeps generic_min generic (or soon generic) workers while room allows. */
static void maybe_spawn(sf_pool *p)
{
    while (!p->stopping && p->total < p->cfg.max_workers &&
           p->n_state[W_GENERIC] + p->n_state[W_SPAWNING] <
               p->cfg.generic_min) {
        if (spawn_worker(p, NULL) < 0)
            break;
    }
}

static worker *find_worker(sf_pool *p, wstate st, const fnv *f)
{
    for (worker *w = p->workers; w != NULL; w = w->next)
        if (w->state == st && (f == NULL || w->fn == f))
            return w;
    return NULL;
}

/* Retires the least recently used idle instance not of f. */
static bool evict_lru(sf_pool *p, const fnv *f)
{
    worker *best = NULL;

    for (worker *w = p->workers; w != NULL; w = w->next)
        if (w->state == W_IDLE && w->fn != f &&
            (best == NULL || w->last_used_us < best->last_used_us))
            best = w;
    if (best == NULL)
        return false;
    SF_DEBUG("msg=\"evicting idle instance for room\" instance=%llu "
             "function=%s",
             (unsigned long long)best->id, best->fn->name);
    retire(best);
    return true;
}

/* Serves f's queue from idle instances and asks for more if needed. */
static void pump(sf_pool *p, fnv *f)
{
    if (p->stopping)
        return;
    while (f->q_head != NULL) {
        worker *w = find_worker(p, W_IDLE, f);
        if (w == NULL)
            break;
        dispatch(w, dequeue(f));
    }
    while (f->q_len > f->n_loading) {
        worker *g = find_worker(p, W_GENERIC, NULL);
        if (g != NULL) {
            specialize(g, f);
            maybe_spawn(p);
            continue;
        }
        /* A worker already on its way will find this queue when ready. */
        if (p->n_state[W_SPAWNING] > 0)
            break;
        if (p->total >= p->cfg.max_workers && !evict_lru(p, f))
            break;
        if (p->total < p->cfg.max_workers && spawn_worker(p, NULL) < 0) {
            inv *i = dequeue(f);
            fail(i, SF_INV_UNAVAILABLE, "cannot start a worker process");
            continue;
        }
        break;
    }
}

static void pump_all(sf_pool *p)
{
    for (fnv *f = p->fns, *next; f != NULL; f = next) {
        next = f->next;
        if (f->q_len > 0)
            pump(p, f);
    }
}

/* ---- public ------------------------------------------------------------- */

int sf_pool_new(uv_loop_t *loop, const sf_pool_config *cfg, sf_pool **out)
{
    sf_pool *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return UV_ENOMEM;
    p->loop = loop;
    p->cfg = *cfg;
    p->cfg.worker_path = strdup(cfg->worker_path);
    if (p->cfg.worker_path == NULL) {
        free(p);
        return UV_ENOMEM;
    }
    if (p->cfg.max_workers < p->cfg.generic_min + 1)
        p->cfg.max_workers = p->cfg.generic_min + 1;
    *out = p;
    return 0;
}

int sf_pool_start(sf_pool *p)
{
    /* Counts workers already on their way (sf_pool_set_limits may have
     * run first), so calling this once more never overshoots. */
    while (p->n_state[W_GENERIC] + p->n_state[W_SPAWNING] <
           p->cfg.generic_min) {
        int r = spawn_worker(p, NULL);
        if (r < 0)
            return r;
    }
    if (p->cfg.generic_min == 0)
        fire_ready(p);
    return 0;
}

void sf_pool_set_worker_log_level(sf_pool *p, enum sf_log_level level)
{
    p->cfg.worker_log_level = level;
}

void sf_pool_set_limits(sf_pool *p, unsigned generic_min,
                        unsigned max_workers)
{
    if (max_workers < generic_min + 1)
        max_workers = generic_min + 1;
    p->cfg.generic_min = generic_min;
    p->cfg.max_workers = max_workers;
    /* Fewer generic workers wanted: retire the surplus now. Busy
     * instances over a lowered max_workers finish and are not replaced. */
    for (worker *w = p->workers, *next; w != NULL; w = next) {
        next = w->next;
        if (w->state == W_GENERIC && w->val == NULL &&
            p->n_state[W_GENERIC] + p->n_state[W_SPAWNING] > generic_min)
            retire(w);
    }
    maybe_spawn(p);
}

void sf_pool_foreach_queue(sf_pool *p,
                           void (*cb)(void *ctx, const char *name,
                                      int64_t version, unsigned queued),
                           void *ctx)
{
    for (fnv *f = p->fns; f != NULL; f = f->next)
        cb(ctx, f->name, f->version, (unsigned)f->q_len);
}

void sf_pool_invoke(sf_pool *p, const sf_fn_spec *s, const sf_invoke *req,
                    sf_invoke_cb cb, void *ctx)
{
    fnv *f;
    inv *i;

    if (p->stopping) {
        sf_invoke_result res = {.status = SF_INV_UNAVAILABLE,
                                .detail = "shutting down"};
        cb(ctx, &res);
        return;
    }
    f = fnv_get(p, s);
    i = f ? calloc(1, sizeof(*i)) : NULL;
    if (i == NULL) {
        sf_invoke_result res = {.status = SF_INV_UNAVAILABLE,
                                .detail = "out of memory"};
        cb(ctx, &res);
        return;
    }
    i->fn = f;
    i->req = req;
    i->cb = cb;
    i->ctx = ctx;
    i->id = ++p->next_inv_id;
    i->enq_us = sf_mono_us();
    if (f->q_head == NULL) {
        worker *w = find_worker(p, W_IDLE, f);
        if (w != NULL) {
            dispatch(w, i);
            return;
        }
    }
    if (f->q_tail)
        f->q_tail->next = i;
    else
        f->q_head = i;
    f->q_tail = i;
    f->q_len++;
    pump(p, f);
}

void sf_pool_validate(sf_pool *p, const sf_fn_spec *s, sf_validate_cb cb,
                      void *ctx)
{
    validation *v = calloc(1, sizeof(*v));
    worker *g;
    int r;

    if (v == NULL || (v->path = strdup(s->artifact_path)) == NULL) {
        free(v);
        cb(ctx, false, "out of memory");
        return;
    }
    v->cb = cb;
    v->ctx = ctx;
    v->cfg = s->config;
    g = p->stopping ? NULL : find_worker(p, W_GENERIC, NULL);
    if (g != NULL) {
        g->val = v;
        start_validation(g);
        maybe_spawn(p);
        return;
    }
    /* No generic worker free: a dedicated one, outside max_workers, so a
     * deploy never waits behind invocation traffic. */
    r = p->stopping ? UV_ECANCELED : spawn_worker(p, v);
    if (r < 0) {
        free(v->path);
        free(v);
        cb(ctx, false, "cannot start a worker process to validate the "
                       "artifact");
    }
}

void sf_pool_retire_function(sf_pool *p, const char *name,
                             int64_t keep_version)
{
    for (fnv *f = p->fns; f != NULL; f = f->next)
        if (strcmp(f->name, name) == 0 && f->version != keep_version)
            f->retired = true;
    for (worker *w = p->workers, *next; w != NULL; w = next) {
        next = w->next;
        if (w->fn == NULL || !w->fn->retired)
            continue;
        if (w->state == W_IDLE)
            retire(w);
        else if (w->state == W_BUSY)
            transition(w, W_DRAINING);
    }
}

void sf_pool_get_stats(sf_pool *p, sf_pool_stats *s)
{
    memset(s, 0, sizeof(*s));
    s->spawning = p->n_state[W_SPAWNING];
    s->generic = p->n_state[W_GENERIC];
    s->loading = p->n_state[W_LOADING];
    s->idle = p->n_state[W_IDLE];
    s->busy = p->n_state[W_BUSY];
    s->draining = p->n_state[W_DRAINING];
    for (fnv *f = p->fns; f != NULL; f = f->next)
        s->queued += (unsigned)f->q_len;
}

void sf_pool_free(sf_pool *p)
{
    if (p == NULL)
        return;
    p->stopping = true;
    /* The fnlog may be freed before the last worker is reaped. */
    p->cfg.fnlog = NULL;
    for (fnv *f = p->fns; f != NULL; f = f->next) {
        inv *i;
        while ((i = dequeue(f)) != NULL)
            fail(i, SF_INV_UNAVAILABLE, "shutting down");
    }
    for (worker *w = p->workers; w != NULL; w = w->next) {
        if (w->val != NULL) {
            validation *v = w->val;
            w->val = NULL;
            v->cb(v->ctx, false, "shutting down");
            free(v->path);
            free(v);
        }
        close_ipc(w);
        worker_kill(w, KILL_RETIRE);
    }
    /* Workers finish dying through on_exit_cb; the last one frees p. The
     * caller runs the loop until all handles are closed. */
    if (p->workers == NULL)
        pool_destroy(p);
}
