/*
 * pool.c - worker processes, their states, the invocation queues and the
 * per-function pool policy (see pool.h and docs/pool.md).
 *
 * Worker life:  SPAWNING --HELLO--> GENERIC --LOAD--> LOADING --LOADED-->
 *               IDLE <--RESPONSE-- BUSY,  and from any state to DRAINING
 *               (finish, then retire) or DEAD (process gone). A template
 *               goes GENERIC --LOAD(template)--> LOADING --> TEMPLATE and
 *               never serves; each instance it forks enters at LOADING.
 * A worker serves one function version for its whole life.
 *
 * Dispatch: an invocation goes to an idle instance of its version if one
 * exists and nothing is queued ahead of it; otherwise it joins the version's
 * FIFO (bounded by max_queue beyond the capacity max_concurrency leaves, and
 * by queue_timeout_ms). A version with more queued invocations than instances
 * on their way gets a new instance: forked from its template, or a generic
 * worker specialized for it; when none is generic a new worker is spawned
 * (up to max_workers), evicting the least recently used idle instance of
 * another version if the pool is full. A one-second tick retires idle
 * instances above the warm target, keeps min_warm and predicted instances
 * (in the background, at a bounded spawn rate) and ends crash-loop backoffs.
 */
#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "netns.h"
#include "util.h"

typedef enum wstate {
    W_SPAWNING = 0,
    W_GENERIC,
    W_LOADING,
    W_IDLE,
    W_BUSY,
    W_DRAINING,
    W_TEMPLATE,
    W_DEAD,
    W_NSTATES
} wstate;

static const char *const wstate_names[W_NSTATES] = {
    "spawning", "generic", "loading", "idle",
    "busy",     "draining", "template", "dead"};

#define TICK_MS 1000
/* Predictive warming: the recent peak loses this share per tick (a half-life
 * of about 3 s), so it follows a rise at once and forgets it in ~15 s. */
#define PEAK_DECAY 0.8
#define BACKOFF_MAX_SHIFT 5 /* 1 s << 5 = 32 s */

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
    /* Instances (not the template) of this version by state. */
    unsigned n_state[W_NSTATES];
    worker *idle; /* IDLE instances, most recently idle first */
    unsigned n_workers; /* every live worker bound to it, template too */
    unsigned n_carrying; /* LOADING instances already given an invocation */
    bool retired;       /* a newer version exists, or it was deleted */
    bool current;       /* provisioned: keep min_warm instances */
    /* template */
    bool slow_init;      /* auto mode: a measured init reached threshold */
    worker *tmpl;        /* loading or ready template, or NULL */
    bool fork_pending;   /* one FORK in flight at a time (see on_forked) */
    bool fork_taken;     /* ... and it only asks for the next spare */
    uint64_t fork_req_us;
    struct spare_leaf *spare; /* the template's offered spare, held */
    bool spare_may_come; /* one SPARE may follow each FORKED with a child */
    /* crash loop */
    uint64_t crash_us[SF_POOL_CRASH_LOOP_N]; /* ring of failure times */
    unsigned crash_next;
    unsigned backoff_shift;
    uint64_t backoff_until_us;
    /* predictive warming */
    unsigned peak;       /* highest concurrency seen this tick */
    double recent;       /* decaying maximum of per-tick peaks */
    uint64_t last_used_us;
    fnv *next;
};

struct inv {
    fnv *fn;
    const sf_invoke *req;
    sf_invoke_cb cb;
    void *ctx;
    uint64_t id;
    uint64_t enq_us, dispatch_us;
    bool redelivered; /* already moved once off a worker that was gone */
    inv *next;
};

typedef struct validation {
    sf_validate_cb cb;
    void *ctx;
    char *path;
    sf_fn_config cfg;
} validation;

/*
 * Why the daemon killed a worker. KILL_GONE: its channel broke before an
 * invocation was fully delivered (the process was already dying), so that
 * invocation never reached user code and is delivered again elsewhere.
 */
typedef enum kill_reason {
    KILL_NONE,
    KILL_TIMEOUT,
    KILL_RETIRE,
    KILL_PROTO,
    KILL_GONE
} kill_reason;

struct worker {
    sf_pool *pool;
    uint64_t id;
    wstate state;
    int pid;
    uv_poll_t pidpoll; /* readable on pidfd when the process exits */
    bool forked;
    bool is_template;
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
    uint64_t ready_us; /* when it became IDLE the first time */
    uint64_t served;
    uint64_t last_used_us;
    kill_reason kill;
    /* Signals go through it, so a recycled pid is never hit, and it is
     * how the exit is seen (pidpoll; a spawned worker is then reaped with
     * waitid(P_PIDFD)). -1 once closed. */
    int pidfd;
    bool oom;         /* the memory cgroup OOM-killed it */
    uint32_t cg_memory_mb; /* limit last written to its cgroup, 0 = none */
    /* A forked instance's move into its cgroup leaf, on libuv's thread
     * pool (see adopt_child). While cg_pending it is not dispatched to;
     * loaded_held: its LOADED came first and is finished when the move is
     * done. The work holds one open_handles reference. */
    uv_work_t cgwork;
    bool cg_pending;
    bool loaded_held;
    int violation_nr; /* -1 when none */
    bool untrusted;   /* SF_USER_CODE_MARK seen: output may be user code's */
    bool out_empty;   /* its last RESPONSE said its output pipe was empty */
    sf_buf trusted;   /* before the mark: an unfinished worker log line */
    sf_fnlog_stream outs;
    uint32_t violation_arch; /* AUDIT_ARCH_* of violation_nr; 0 = unknown */
    worker *prev, *next;   /* all live workers */
    worker *sprev, *snext; /* the pool's list for this state */
    worker *iprev, *inext; /* fn->idle, while IDLE */
};

struct sf_pool {
    uv_loop_t *loop;
    sf_pool_config cfg;
    worker *workers;
    worker *by_state[W_NSTATES]; /* not DEAD; newest first */
    unsigned n_state[W_NSTATES];
    unsigned total; /* live (not DEAD) workers */
    fnv *fns;
    uint64_t next_worker_id;
    uint64_t next_inv_id;
    unsigned generic_seen; /* workers that said HELLO as generic ones */
    bool ready_fired;      /* cfg.on_ready has run */
    bool stopping;
    uv_timer_t tick;   /* idle retirement, warming, backoff ends */
    uv_timer_t qtimer; /* the earliest queue deadline */
    uv_timer_t rtimer; /* spawn-rate refill */
    int open_handles;  /* of the three timers, and cgroup moves in flight */
    uint64_t cg_move_us; /* when our last cgroup move of a process ended */
    int netns_fd;      /* the workers' shared network namespace, or -1 */
    double tokens;     /* spawn-rate bucket */
    uint64_t tokens_us;
};

typedef struct wwrite {
    uv_write_t req;
    char *meta;
} wwrite;

static void pump(sf_pool *p, fnv *f);
static void pump_all(sf_pool *p);
static void worker_kill(worker *w, kill_reason why);
static void maybe_spawn(sf_pool *p);
static void schedule_refill(sf_pool *p);
static void arm_qtimer(sf_pool *p);
static void drop_spare(sf_pool *p, fnv *f);

/* ---- states ------------------------------------------------------------- */

#define LIST_UNLINK(head, w, prev, next)                                      \
    do {                                                                      \
        if ((w)->prev)                                                        \
            (w)->prev->next = (w)->next;                                      \
        else                                                                  \
            (head) = (w)->next;                                               \
        if ((w)->next)                                                        \
            (w)->next->prev = (w)->prev;                                      \
        (w)->prev = (w)->next = NULL;                                         \
    } while (0)
#define LIST_PUSH(head, w, prev, next)                                        \
    do {                                                                      \
        (w)->prev = NULL;                                                     \
        (w)->next = (head);                                                   \
        if (head)                                                             \
            (head)->prev = (w);                                               \
        (head) = (w);                                                         \
    } while (0)

/* The only place a worker's state changes; keeps all counters and lists
 * in step (so finding an idle instance or a generic worker is O(1)). */
static void transition(worker *w, wstate to)
{
    sf_pool *p = w->pool;
    wstate from = w->state;
    fnv *f = w->fn;

    if (from == to)
        return;
    p->n_state[from]--;
    p->n_state[to]++;
    LIST_UNLINK(p->by_state[from], w, sprev, snext);
    if (to != W_DEAD)
        LIST_PUSH(p->by_state[to], w, sprev, snext);
    if (f != NULL && !w->is_template) {
        if (from == W_IDLE)
            LIST_UNLINK(f->idle, w, iprev, inext);
        if (to == W_IDLE)
            LIST_PUSH(f->idle, w, iprev, inext);
    }
    if (to == W_DEAD)
        p->total--;
    if (f != NULL) {
        if (!w->is_template) {
            f->n_state[from]--;
            f->n_state[to]++;
        }
        if (to == W_DEAD) {
            f->n_workers--;
            if (f->tmpl == w) {
                f->tmpl = NULL;
                f->fork_pending = false;
                f->fork_taken = false;
                f->spare_may_come = false;
                drop_spare(w->pool, f);
            }
        }
    }
    w->state = to;
    SF_DEBUG("msg=\"worker state\" instance=%llu pid=%d from=%s to=%s "
             "function=%s%s",
             (unsigned long long)w->id, w->pid, wstate_names[from],
             wstate_names[to], f ? f->name : "-",
             w->is_template ? " template=1" : "");
}

/* Binds w to f (before its LOADING transition). */
static void bind_fn(worker *w, fnv *f, bool is_template)
{
    w->fn = f;
    w->is_template = is_template;
    f->n_workers++;
    if (is_template)
        f->tmpl = w;
    else
        f->n_state[w->state]++;
}

/* Instances on their way that no invocation has claimed yet. */
static unsigned n_free_loading(const fnv *f)
{
    return f->n_state[W_LOADING] - f->n_carrying +
           (f->fork_pending && !f->fork_taken ? 1u : 0u);
}

/* Instances that count against max_concurrency. */
static unsigned n_live(const fnv *f)
{
    return f->n_state[W_LOADING] + f->n_state[W_IDLE] + f->n_state[W_BUSY] +
           (f->fork_pending && !f->fork_taken ? 1u : 0u);
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
    f->last_used_us = sf_mono_us();
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

static bool use_template(const fnv *f)
{
    if (f->cfg.template_mode == SF_TEMPLATE_ON)
        return true;
    return f->cfg.template_mode == SF_TEMPLATE_AUTO && f->slow_init;
}

static unsigned predicted(const sf_pool *p, const fnv *f)
{
    /* Room for a burst of twice the recent peak; the peak decays to zero
     * within ~15 idle ticks, so scale to zero still happens. */
    if (!p->cfg.predictive || f->recent < 0.1)
        return 0;
    {
        double want = 2.0 * f->recent; /* rounded up, without libm */
        unsigned n = (unsigned)want;
        return (double)n < want ? n + 1 : n;
    }
}

/* Instances f should keep ready: min_warm and the prediction, capped. */
static unsigned warm_target(const sf_pool *p, const fnv *f)
{
    unsigned t = f->cfg.min_warm, pr = predicted(p, f);

    if (!f->current || f->retired)
        return 0;
    if (pr > t)
        t = pr;
    if (f->cfg.max_concurrency > 0 && t > f->cfg.max_concurrency)
        t = f->cfg.max_concurrency;
    return t;
}

static void note_concurrency(fnv *f)
{
    unsigned c = f->n_state[W_BUSY] + (unsigned)f->q_len;
    if (c > f->peak)
        f->peak = c;
    f->last_used_us = sf_mono_us();
}

static bool in_backoff(const fnv *f, uint64_t now)
{
    return f->backoff_until_us > now;
}

static unsigned backoff_left_s(const fnv *f, uint64_t now)
{
    uint64_t left = f->backoff_until_us > now ? f->backoff_until_us - now : 0;
    return (unsigned)((left + 999999) / 1000000);
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

/* Puts i back at the head of its queue: it keeps its place in line. */
static void requeue_front(fnv *f, inv *i)
{
    i->next = f->q_head;
    f->q_head = i;
    if (f->q_tail == NULL)
        f->q_tail = i;
    f->q_len++;
}

static void finish(inv *i, sf_invoke_result *res)
{
    i->cb(i->ctx, res);
    free(i);
}

static void fail_retry(inv *i, enum sf_invoke_status st, const char *detail,
                       unsigned retry_after_s)
{
    sf_invoke_result res = {.status = st,
                            .detail = detail,
                            .retry_after_s = retry_after_s};
    uint64_t now = sf_mono_us();

    res.queue_us = (i->dispatch_us ? i->dispatch_us : now) - i->enq_us;
    res.duration_us = i->dispatch_us ? now - i->dispatch_us : 0;
    finish(i, &res);
}

static void fail(inv *i, enum sf_invoke_status st, const char *detail)
{
    fail_retry(i, st, detail, 0);
}

/*
 * Counts one instance failure (crash, sandbox kill, failed init) of f. The
 * Nth within the window starts a backoff: queued invocations fail with
 * SF_INV_BACKOFF and no instance starts until it ends.
 */
static void record_failure(sf_pool *p, fnv *f)
{
    uint64_t now = sf_mono_us();
    uint64_t oldest;
    unsigned secs;
    char detail[160];
    inv *i;

    if (p->stopping)
        return;
    f->crash_us[f->crash_next] = now;
    f->crash_next = (f->crash_next + 1) % SF_POOL_CRASH_LOOP_N;
    oldest = f->crash_us[f->crash_next]; /* the Nth most recent */
    if (oldest == 0 ||
        now - oldest > (uint64_t)SF_POOL_CRASH_LOOP_WINDOW_MS * 1000)
        return;
    secs = 1u << f->backoff_shift;
    if (f->backoff_shift < BACKOFF_MAX_SHIFT)
        f->backoff_shift++;
    f->backoff_until_us = now + (uint64_t)secs * 1000000;
    memset(f->crash_us, 0, sizeof(f->crash_us));
    SF_WARN("msg=\"function is crash-looping, backing off\" function=%s "
            "version=%lld failures=%d window_ms=%d backoff_s=%u "
            "hint=\"see the worker died lines above; fix and redeploy\"",
            f->name, (long long)f->version, SF_POOL_CRASH_LOOP_N,
            SF_POOL_CRASH_LOOP_WINDOW_MS, secs);
    snprintf(detail, sizeof(detail),
             "instances crashed %d times within %d s; retrying in %u s",
             SF_POOL_CRASH_LOOP_N, SF_POOL_CRASH_LOOP_WINDOW_MS / 1000, secs);
    while ((i = dequeue(f)) != NULL)
        fail_retry(i, SF_INV_BACKOFF, detail, secs);
}

/* ---- worker handles ----------------------------------------------------- */

static void pool_destroy(sf_pool *p)
{
    while (p->fns != NULL) {
        fnv *f = p->fns;
        p->fns = f->next;
        free(f->name);
        free(f->path);
        free(f);
    }
    if (p->netns_fd >= 0)
        close(p->netns_fd);
    free((char *)p->cfg.worker_path);
    free(p);
}

static void maybe_destroy(sf_pool *p)
{
    if (p->stopping && p->workers == NULL && p->open_handles == 0)
        pool_destroy(p);
}

/* Drops one reference (a handle or the cgroup work) to w. */
static void worker_release(worker *w)
{
    if (--w->open_handles > 0)
        return;
    sf_buf_free(&w->rbuf);
    sf_buf_free(&w->trusted);
    sf_fnlog_stream_free(&w->outs);
    free(w);
}

static void on_handle_closed(uv_handle_t *h)
{
    worker_release(h->data);
}

static void worker_unlink(worker *w)
{
    LIST_UNLINK(w->pool->workers, w, prev, next);
}

/* Counts a new live worker in its initial state (SPAWNING or GENERIC). */
static void enter_pool(sf_pool *p, worker *w)
{
    p->n_state[w->state]++;
    p->total++;
    LIST_PUSH(p->workers, w, prev, next);
    LIST_PUSH(p->by_state[w->state], w, sprev, snext);
}

static void close_ipc(worker *w)
{
    if (!uv_is_closing((uv_handle_t *)&w->ipc))
        uv_close((uv_handle_t *)&w->ipc, on_handle_closed);
}

/* ---- function output ---------------------------------------------------- */

/* The request output is tagged with: the one in flight, if any. */
static const char *invocation_id(const worker *w)
{
    return w->cur != NULL ? w->cur->req->request_id : NULL;
}

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
                        .request_id = invocation_id(w)};
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
static void read_output(worker *w)
{
    uv_os_fd_t fd;
    char buf[16 << 10];

    if (uv_is_closing((uv_handle_t *)&w->out) ||
        uv_fileno((uv_handle_t *)&w->out, &fd) != 0)
        return;
    for (int i = 0; i < 64; i++) { /* bounded: a writer may keep on */
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        on_output(w, buf, (size_t)n);
    }
}

/* Ends the current invocation's output: what is left of a line is stored
 * under its request id. */
static void end_output(worker *w)
{
    if (w->untrusted && w->fn != NULL && w->val == NULL &&
        w->pool->cfg.fnlog != NULL) {
        sf_fnlog_tags t = {.function = w->fn->name,
                           .version = w->fn->version,
                           .instance = w->id,
                           .request_id = invocation_id(w)};
        sf_fnlog_stream_flush(w->pool->cfg.fnlog, &w->outs, &t);
    }
}

static void drain_output(worker *w, bool end_of_invocation)
{
    read_output(w);
    if (end_of_invocation)
        end_output(w);
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

/* Describes how the worker died into buf. status < 0: not known (a forked
 * instance is the template's child, so only the template could wait it). */
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
    else if (status < 0)
        snprintf(buf, len, "instance died");
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
            "template=%d reason=\"%s\"",
            f->name, (long long)f->version, w->is_template, reason);
    /* One failed load fails one waiting invocation (the one it carried, if
     * any), so a function whose init always fails cannot hold its queue
     * forever. */
    if (w->cur != NULL) {
        i = w->cur;
        w->cur = NULL;
        f->n_carrying--;
    } else {
        i = dequeue(f);
    }
    if (i != NULL)
        fail(i, w->violation_nr >= 0 ? SF_INV_SANDBOX : SF_INV_INIT_FAILED,
             reason);
    record_failure(w->pool, f);
}

static void on_retire_timer(uv_timer_t *t)
{
    worker *w = t->data;

    close_ipc(w);
    worker_kill(w, KILL_RETIRE);
}

/*
 * retire(), for an instance that has just answered: it stops taking work
 * now, and is killed at the start of the next loop iteration, after this
 * one has committed the invocation's row and written the response (the
 * meter's uv_check). Killed at once, a process that slept long enough
 * preempts the daemon on its CPU for its whole exit (~1 ms for slow-init's
 * 16 MiB table, measured with perf sched) with that response still
 * unsent.
 */
static void retire_after_response(worker *w)
{
    transition(w, W_DRAINING);
    uv_timer_start(&w->timer, on_retire_timer, 0, 0);
}

/* Retires f's template once it has no instances left to parent. */
static void maybe_retire_template(sf_pool *p, fnv *f, uint64_t now);

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

/*
 * Removing a cgroup v1 leaf waits for the kernel (an RCU grace period):
 * usually ~0.1 ms, but 11-18 ms for 2 of 30 retirements measured under
 * strace, all of it on the loop. The rmdir runs on libuv's thread pool
 * instead; the path is computed here, so the thread touches nothing of
 * the pool's. A leaf left behind (daemon stopped first) is removed by
 * sf_cgroup_free or at the next start.
 */
typedef struct leaf_rm {
    uv_work_t req;
    char *dir;
} leaf_rm;

static void leaf_rm_work(uv_work_t *req)
{
    leaf_rm *x = req->data;

    if (rmdir(x->dir) != 0 && errno != ENOENT)
        SF_DEBUG("msg=\"cannot remove worker cgroup\" path=%s error=\"%s\"",
                 x->dir, strerror(errno));
}

static void leaf_rm_done(uv_work_t *req, int status)
{
    leaf_rm *x = req->data;

    (void)status;
    free(x->dir);
    free(x);
}

static void remove_leaf(sf_pool *p, uint64_t id)
{
    leaf_rm *x;
    char *dir = sf_cgroup_leaf_dir(p->cfg.cgroup, id);

    if (dir == NULL)
        return;
    x = calloc(1, sizeof(*x));
    if (x != NULL) {
        x->dir = dir;
        x->req.data = x;
        if (uv_queue_work(p->loop, &x->req, leaf_rm_work, leaf_rm_done) == 0)
            return;
        free(x);
    }
    free(dir);
    sf_cgroup_remove(p->cfg.cgroup, id); /* could not hand it off */
}

/* The process is gone (its exit or pidfd callback already closed that
 * handle). Fails what it held and lets the pool react. */
static void worker_gone(worker *w, int64_t status, int sig)
{
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
    if (!w->cg_pending) /* else when the move is over (cg_attach_done) */
        remove_leaf(p, w->id);
    if (w->violation_nr < 0)
        drain_violation(w);
    /* SIGSYS without a VIOLATION frame: the filter trapped while SIGSYS was
     * blocked, or the report could not be sent. Still the sandbox. */
    if (sig == SIGSYS && w->violation_nr < 0)
        w->violation_nr = INT32_MAX;
    death_detail(w, status, sig, detail, sizeof(detail));
    if (w->kill != KILL_RETIRE && !p->stopping)
        SF_WARN("msg=\"worker died\" instance=%llu pid=%d state=%s "
                "function=%s template=%d request_id=%s detail=\"%s\"",
                (unsigned long long)w->id, w->pid, wstate_names[was],
                f ? f->name : "-", w->is_template,
                w->cur ? w->cur->req->request_id : "-", detail);
    transition(w, W_DEAD);
    worker_unlink(w);
    close_ipc(w);
    uv_close((uv_handle_t *)&w->timer, on_handle_closed);

    if (was == W_LOADING || (was == W_SPAWNING && w->val != NULL))
        load_failed(w, detail);
    else if (f != NULL && w->kill != KILL_RETIRE && w->kill != KILL_TIMEOUT &&
             !p->stopping && w->cur == NULL)
        record_failure(p, f); /* died idle, or a template died */
    if (w->cur != NULL && w->kill == KILL_GONE && !w->cur->redelivered &&
        f != NULL && !p->stopping) {
        /* Never delivered: it goes to the next instance, once. */
        inv *i = w->cur;
        w->cur = NULL;
        i->redelivered = true;
        i->dispatch_us = 0;
        requeue_front(f, i);
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
        if ((st == SF_INV_CRASHED || st == SF_INV_SANDBOX) &&
            w->kill != KILL_RETIRE)
            record_failure(p, f);
    }
    if (w->is_template && f != NULL && !p->stopping) {
        /* Its children die with it (PDEATHSIG); count that once, as the
         * template's failure above, not once per child. */
        for (worker *c = p->workers; c != NULL; c = c->next)
            if (c->fn == f && c->forked)
                worker_kill(c, KILL_RETIRE);
    }
    if (p->stopping) {
        maybe_destroy(p);
        return;
    }
    if (f != NULL) {
        maybe_retire_template(p, f, sf_mono_us());
        fnv_gc(p, f);
    }
    schedule_refill(p);
    pump_all(p);
}

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* The process exited. A spawned worker is our child: reaped here, with
 * its exit status or signal. A forked instance is the template's, whose
 * status we cannot read. */
static void on_pidfd(uv_poll_t *h, int status, int events)
{
    worker *w = h->data;
    siginfo_t si;
    int64_t code = -1;
    int sig = 0;

    (void)status;
    (void)events;
    memset(&si, 0, sizeof(si));
    if (!w->forked &&
        waitid((idtype_t)P_PIDFD, (id_t)w->pidfd, &si, WEXITED | WNOHANG) ==
            0 &&
        si.si_pid != 0) {
        if (si.si_code == CLD_EXITED) {
            code = si.si_status;
        } else {
            code = 0;
            sig = si.si_status;
        }
    }
    uv_close((uv_handle_t *)&w->pidpoll, on_handle_closed);
    close(w->pidfd);
    w->pidfd = -1;
    worker_gone(w, code, sig);
}

static void worker_kill(worker *w, kill_reason why)
{
    if (w->exited)
        return;
    if (w->kill == KILL_NONE)
        w->kill = why;
    /* Through the pidfd: it names this process, not whatever reuses its
     * pid (none once the exit was seen: nothing left to kill). */
    if (w->pidfd >= 0)
        syscall(SYS_pidfd_send_signal, w->pidfd, SIGKILL, NULL, 0);
}

static void retire(worker *w)
{
    transition(w, W_DRAINING);
    close_ipc(w);
    worker_kill(w, KILL_RETIRE);
}

static void maybe_retire_template(sf_pool *p, fnv *f, uint64_t now)
{
    worker *t = f->tmpl;

    if (t == NULL || t->state != W_TEMPLATE || f->fork_pending ||
        f->n_workers > 1)
        return;
    /* Its children die with it (PR_SET_PDEATHSIG), so it goes last. */
    if (f->retired || p->stopping ||
        (warm_target(p, f) == 0 && f->q_len == 0 &&
         now - f->last_used_us >= (uint64_t)f->cfg.idle_timeout_s * 1000000)) {
        SF_DEBUG("msg=\"retiring template\" instance=%llu function=%s",
                 (unsigned long long)t->id, f->name);
        retire(t);
    }
}

static void on_timer(uv_timer_t *t)
{
    worker *w = t->data;

    SF_WARN("msg=\"deadline passed, killing instance\" instance=%llu pid=%d "
            "state=%s function=%s request_id=%s",
            (unsigned long long)w->id, w->pid, wstate_names[w->state],
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
    /* A failed write means the frame never arrived whole: the worker is
     * gone (or going), not misbehaving. */
    if (status < 0 && status != UV_ECANCELED && !w->exited)
        worker_kill(w, KILL_GONE);
}

/*
 * Sends meta (taken) followed by an optional body (borrowed until the
 * write completes). Written directly when the socket takes it all, which
 * is the rule for invocations: a queued uv_write would cost an epoll_ctl
 * when it drains. Only a remainder is queued.
 */
static int send_frame(worker *w, char *meta, size_t meta_len,
                      const void *body, size_t body_len)
{
    wwrite *ww;
    uv_buf_t b[2];
    unsigned nb = body_len ? 2 : 1;
    int r;

    b[0] = uv_buf_init(meta, (unsigned int)meta_len);
    b[1] = uv_buf_init((char *)body, (unsigned int)body_len);
    r = uv_try_write((uv_stream_t *)&w->ipc, b, nb);
    if (r >= 0 && (size_t)r == meta_len + body_len) {
        free(meta);
        return 0;
    }
    if (r < 0 && r != UV_EAGAIN) {
        free(meta);
        return r;
    }
    /* Skip what went out; the rest is queued in order. */
    for (size_t done = r > 0 ? (size_t)r : 0; done > 0;) {
        size_t n = done < b[0].len ? done : b[0].len;
        b[0].base += n;
        b[0].len -= n;
        done -= n;
        if (b[0].len == 0 && nb == 2) {
            b[0] = b[1];
            nb = 1;
        }
    }
    ww = malloc(sizeof(*ww));
    if (ww == NULL) {
        free(meta);
        return -ENOMEM;
    }
    ww->meta = meta;
    ww->req.data = w;
    r = uv_write(&ww->req, (uv_stream_t *)&w->ipc, b, nb, on_wwrite);
    if (r < 0) {
        free(meta);
        free(ww);
    }
    return r;
}

/*
 * send_frame, passing fd (SCM_RIGHTS) on the frame's first byte: written
 * with sendmsg on the pipe's descriptor (libuv passes only its own handle
 * types), the rest if any as send_frame does. When writes are queued
 * before it (never for LOAD) or the socket is full, the frame goes without
 * the fd. fd stays the caller's.
 */
static int send_frame_fd(worker *w, char *meta, size_t len, int fd)
{
    struct iovec iov = {meta, len};
    uv_os_fd_t sock;
    long n;
    char *rest;

    if (fd < 0 || uv_stream_get_write_queue_size((uv_stream_t *)&w->ipc) != 0 ||
        uv_fileno((uv_handle_t *)&w->ipc, &sock) != 0)
        return send_frame(w, meta, len, NULL, 0);
    n = sf_ipc_send_fds(sock, &iov, 1, &fd, 1, MSG_DONTWAIT);
    if (n == -EAGAIN || n == -EWOULDBLOCK)
        return send_frame(w, meta, len, NULL, 0);
    if (n < 0) {
        free(meta);
        return (int)n;
    }
    if ((size_t)n == len) {
        free(meta);
        return 0;
    }
    rest = malloc(len - (size_t)n);
    if (rest == NULL) {
        free(meta);
        return -ENOMEM;
    }
    memcpy(rest, meta + n, len - (size_t)n);
    free(meta);
    return send_frame(w, rest, len - (size_t)n, NULL, 0);
}

static void dispatch(worker *w, inv *i)
{
    char *meta;
    size_t len;
    int r;

    i->dispatch_us = sf_mono_us();
    /* Idle output stays untagged. Skipped when the last RESPONSE said the
     * pipe was empty: output written since then (a thread of the function
     * still running) the loop reads as it comes. */
    if (!w->out_empty)
        read_output(w);
    end_output(w);
    sf_fnlog_stream_begin(&w->outs);
    w->cur = i;
    transition(w, W_BUSY);
    note_concurrency(w->fn);
    r = sf_ipc_encode_invoke(i->req, i->id, &meta, &len);
    if (r == 0)
        r = send_frame(w, meta, len, i->req->body, i->req->body_len);
    if (r < 0) {
        SF_WARN("msg=\"cannot send invocation, instance is gone; delivering "
                "it elsewhere\" instance=%llu request_id=%s error=%s",
                (unsigned long long)w->id, i->req->request_id,
                uv_strerror(r));
        worker_kill(w, KILL_GONE);
        return;
    }
    uv_timer_start(&w->timer, on_timer, w->fn->cfg.timeout_ms, 0);
}

static int send_load(worker *w, const char *path, const sf_fn_config *cfg,
                     bool as_template, unsigned max_children)
{
    sf_load_msg m = {.abi = SOFAAS_ABI_VERSION,
                     .memory_mb = cfg->memory_mb,
                     .timeout_ms = cfg->timeout_ms,
                     .flags = (cfg->network ? SF_LOAD_F_NETWORK : 0) |
                              (cfg->file_access ? SF_LOAD_F_FILES : 0) |
                              (as_template ? SF_LOAD_F_TEMPLATE : 0),
                     .tmp_mb = cfg->tmp_mb,
                     .max_children = max_children};
    char *out;
    size_t len;
    int r, afd;

    /* With a memory cgroup in force the worker's RLIMIT_AS is only a
     * backstop, so the cgroup (which sees resident memory and reports OOM
     * kills) decides. */
    /* Most functions keep the default, which the worker got at spawn: no
     * cgroup file write on the cold start's path then. */
    if (cfg->memory_mb != w->cg_memory_mb &&
        sf_cgroup_set_memory(w->pool->cfg.cgroup, w->id, cfg->memory_mb) == 0)
        w->cg_memory_mb = cfg->memory_mb;
    if (cfg->memory_mb == w->cg_memory_mb &&
        sf_cgroup_get_mode(w->pool->cfg.cgroup) != SF_CGROUP_NONE)
        m.flags |= SF_LOAD_F_MEMCG;
    r = sf_ipc_encode_load(&m, path, cfg->env, cfg->env_len, &out, &len);
    if (r < 0)
        return r;
    w->load_start_us = sf_mono_us();
    uv_timer_start(&w->timer, on_timer, cfg->init_timeout_ms, 0);
    /* The artifact goes open with LOAD: a worker may already run as a uid
     * that cannot open the state directory (sandbox.c, userns_ahead). If
     * it cannot be opened here, the worker opens the path and reports. */
    afd = open(path, O_RDONLY | O_CLOEXEC);
    r = send_frame_fd(w, out, len, afd);
    if (afd >= 0)
        close(afd);
    return r;
}

/*
 * Sends the first queued invocation of a just-forked instance before its
 * LOADED: it reads frames in order, so it serves the invocation as soon as
 * it is ready, one daemon round trip less per template start. It counts as
 * dispatched at LOADED. Only for forked instances: they run no init, so all
 * they write is the invocation's output. A specialized worker's pipe would
 * carry init's output and the invocation's back to back, with nothing to
 * tell them apart (function logs tag the two differently).
 */
static void predispatch(worker *w)
{
    fnv *f = w->fn;
    char *meta;
    size_t len;
    int r;

    if (!w->forked || w->exited || w->cur != NULL || f->q_head == NULL)
        return;
    w->cur = dequeue(f);
    f->n_carrying++;
    sf_fnlog_stream_begin(&w->outs);
    r = sf_ipc_encode_invoke(w->cur->req, w->cur->id, &meta, &len);
    if (r == 0)
        r = send_frame(w, meta, len, w->cur->req->body,
                       w->cur->req->body_len);
    if (r < 0)
        worker_kill(w, KILL_PROTO);
}

static void specialize(worker *w, fnv *f, bool as_template)
{
    sf_pool *p = w->pool;
    unsigned maxc = f->cfg.max_concurrency ? f->cfg.max_concurrency
                                           : p->cfg.max_workers;

    bind_fn(w, f, as_template);
    transition(w, W_LOADING);
    if (send_load(w, f->path, &f->cfg, as_template, maxc) < 0)
        worker_kill(w, KILL_PROTO);
}

static void start_validation(worker *w)
{
    transition(w, W_LOADING);
    if (send_load(w, w->val->path, &w->val->cfg, false, 0) < 0)
        worker_kill(w, KILL_PROTO);
}

/* Asks f's ready template for one more instance (flags 0), or only for a
 * new spare after we took the one it offered (SF_FORK_F_TAKEN). */
static int request_fork(fnv *f, uint16_t flags)
{
    char *m = malloc(sizeof(sf_frame_hdr));
    sf_frame_hdr h = {.type = SF_FRAME_FORK, .flags = flags};

    if (m == NULL)
        return -ENOMEM;
    memcpy(m, &h, sizeof(h));
    f->fork_pending = true;
    f->fork_taken = (flags & SF_FORK_F_TAKEN) != 0;
    if (!f->fork_taken)
        f->fork_req_us = sf_mono_us();
    if (send_frame(f->tmpl, m, sizeof(h), NULL, 0) < 0) {
        f->fork_pending = false;
        f->fork_taken = false;
        worker_kill(f->tmpl, KILL_PROTO);
        return -EPIPE;
    }
    return 0;
}

/* ---- receiving ---------------------------------------------------------- */

static void finish_loaded(worker *w);

static void on_loaded(worker *w, const char *payload, size_t len)
{
    sf_pool *p = w->pool;
    int32_t st;
    const char *msg;
    fnv *f;

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
    f = w->fn;
    if (st != SF_LOAD_OK) {
        load_failed(w, msg);
        retire(w);
        return;
    }
    SF_DEBUG("msg=\"instance ready\" instance=%llu function=%s version=%lld "
             "init_us=%llu forked=%d template=%d",
             (unsigned long long)w->id, f->name, (long long)f->version,
             (unsigned long long)w->init_us, w->forked, w->is_template);
    w->last_used_us = w->ready_us = sf_mono_us();
    if (!w->is_template && !w->forked &&
        f->cfg.template_mode == SF_TEMPLATE_AUTO && !f->slow_init &&
        w->init_us >= (uint64_t)p->cfg.template_threshold_ms * 1000) {
        f->slow_init = true;
        SF_INFO("msg=\"slow init, forking further instances from a "
                "template\" function=%s version=%lld init_us=%llu "
                "threshold_ms=%u",
                f->name, (long long)f->version,
                (unsigned long long)w->init_us, p->cfg.template_threshold_ms);
    }
    if (w->cg_pending) {
        w->loaded_held = true; /* finish_loaded once it is in its cgroup */
        return;
    }
    finish_loaded(w);
}

/* A loaded instance starts serving (or, a template, forking). */
static void finish_loaded(worker *w)
{
    sf_pool *p = w->pool;
    fnv *f = w->fn;

    if (w->is_template) {
        transition(w, W_TEMPLATE);
    } else if (w->cur != NULL) {
        /* It carries an invocation (predispatch) and serves it now. */
        f->n_carrying--;
        w->cur->dispatch_us = w->ready_us;
        transition(w, W_BUSY);
        note_concurrency(f);
        uv_timer_start(&w->timer, on_timer, f->cfg.timeout_ms, 0);
    } else {
        transition(w, W_IDLE);
    }
    pump(p, f);
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
    /* A hostile instance can only misattribute its own output with a
     * wrong flag. */
    w->out_empty = !(h->flags & SF_RESPONSE_F_OUTPUT);
    if (!w->out_empty)
        read_output(w);
    end_output(w);
    w->cur = NULL;
    /* Cold: this invocation waited for the instance to start. A
     * provisioned (min_warm, predicted) instance was ready before. */
    res.cold_start = w->served == 0 && w->ready_us > i->enq_us;
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
        w->fn->backoff_shift = 0; /* it works again */
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

static void on_ipc_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_ipc_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* A cgroup move that ends within this long after the previous one does
 * not wait for an RCU grace period (measured on the reference VM, cgroup
 * v1: ~10 us up to 12 ms after, 6-15 ms at 20 ms): a kernel detail, so it
 * only picks the cheaper path; a miss stalls the loop once, as every move
 * used to. */
#define CG_MOVE_HOT_US 5000

/* Moves pid into leaf id (made if needed) and gives it memory_mb. Loop or
 * thread pool: touches nothing of the pool's. Returns whether both held. */
static bool move_into_leaf(sf_cgroup *cg, uint64_t id, int pid,
                           uint32_t memory_mb)
{
    return sf_cgroup_add(cg, id, pid) == 0 &&
           sf_cgroup_set_memory(cg, id, memory_mb) == 0;
}

/* Thread pool: moves a forked instance into its leaf and sets its limit.
 * Reads only fields that do not change while cg_pending. */
static void cg_attach_work(uv_work_t *req)
{
    worker *w = req->data;

    move_into_leaf(w->pool->cfg.cgroup, w->id, w->pid, w->cg_memory_mb);
}

/* Loop: the move is over; the instance may be given work now. */
static void cg_attach_done(uv_work_t *req, int status)
{
    worker *w = req->data;
    sf_pool *p = w->pool;

    (void)status;
    w->cg_pending = false;
    p->cg_move_us = sf_mono_us();
    if (w->state == W_DEAD) {
        remove_leaf(p, w->id);
    } else if (w->state == W_LOADING && w->kill == KILL_NONE && !p->stopping) {
        /* Its first invocation goes now, before or after its LOADED (a
         * held LOADED then finds it carrying one and makes it BUSY). */
        predispatch(w);
        if (w->loaded_held && !w->exited)
            finish_loaded(w);
    }
    w->loaded_held = false;
    worker_release(w);
    p->open_handles--;
    maybe_destroy(p);
}

/*
 * A template's spare child, offered with SPARE (its socket and output
 * pipe attached) and held here until an invocation needs a new instance:
 * then it is started at once, with no FORK round trip on the path (the
 * template is told afterwards, FORK flagged SF_FORK_F_TAKEN). While held
 * it is moved into its own leaf, so taking it has no cgroup move either: a
 * move waits ~9 ms for an RCU grace period unless another one just
 * happened, which made a template start after a pause ~10x slower than
 * back to back. The leaf is made under the id the instance gets. No FORK
 * is sent while the move runs: the template reaps only on FORK, so the pid
 * stays the spare's meanwhile.
 */
typedef struct spare_leaf {
    uv_work_t req;
    sf_pool *pool;
    fnv *fn;    /* NULL once dropped (the move's end then cleans up) */
    worker *w;  /* its accepted channel and pipe; not in the pool yet */
    uint64_t id;
    int pid;
    int pidfd; /* opened and checked (child_of) when SPARE came */
    uint32_t memory_mb;
    bool moving;
    bool ok; /* in its leaf (or there are no cgroups) */
} spare_leaf;

/* Closes a worker that never entered the pool (only its two pipes). */
static void close_unstarted(worker *w)
{
    uv_close((uv_handle_t *)&w->ipc, on_handle_closed);
    uv_close((uv_handle_t *)&w->out, on_handle_closed);
}

static void spare_free(spare_leaf *s)
{
    if (s->w != NULL)
        close_unstarted(s->w);
    if (s->pidfd >= 0)
        close(s->pidfd);
    free(s);
}

static void spare_move(spare_leaf *s)
{
    s->ok = move_into_leaf(s->pool->cfg.cgroup, s->id, s->pid, s->memory_mb);
}

static void spare_move_work(uv_work_t *req)
{
    spare_move(req->data);
}

static void spare_move_done(uv_work_t *req, int status)
{
    spare_leaf *s = req->data;
    sf_pool *p = s->pool;

    (void)status;
    s->moving = false;
    p->cg_move_us = sf_mono_us();
    p->open_handles--;
    if (s->fn == NULL) {
        remove_leaf(p, s->id);
        spare_free(s);
    } else {
        pump(p, s->fn); /* an invocation may have waited for this */
    }
    maybe_destroy(p);
}

/* Forgets f's held spare (the template is gone, or it died, or it could
 * not be moved). The template keeps its own copies of the descriptors, so
 * a spare that is alive is handed over on the next plain FORK. */
static void drop_spare(sf_pool *p, fnv *f)
{
    spare_leaf *s = f->spare;

    if (s == NULL)
        return;
    f->spare = NULL;
    if (s->moving) {
        s->fn = NULL;
        return;
    }
    remove_leaf(p, s->id);
    spare_free(s);
}

/* Whether the process pidfd refers to (opened from pid) is parent's child.
 * While that process is not reaped its pid names it and nothing else, so
 * if it is still there after /proc was read, /proc described it. */
static bool child_of(int pidfd, int pid, int parent)
{
    return sf_proc_ppid(pid) == parent &&
           syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0;
}

/* Whether the process behind pidfd has exited (a zombie still takes
 * signals; a pidfd is readable once the process has exited). */
static bool pidfd_exited(int pidfd)
{
    struct pollfd pf = {.fd = pidfd, .events = POLLIN};

    return poll(&pf, 1, 0) != 0;
}

/*
 * Takes the two descriptors attached to a template's FORKED or SPARE (its
 * socket, then its output pipe) into a new worker for pid, not yet in the
 * pool. NULL if they cannot be accepted: then the template is killed, as
 * descriptors left queued would be taken for the next frame's.
 */
static worker *accept_child(worker *t, int pid, int pidfd, uint64_t id)
{
    sf_pool *p = t->pool;
    worker *w = calloc(1, sizeof(*w));
    int r;

    if (w == NULL) {
        SF_ERR("msg=\"cannot accept forked instance: out of memory\"");
        worker_kill(t, KILL_PROTO);
        return NULL;
    }
    w->pool = p;
    w->id = id;
    w->violation_nr = -1;
    w->pid = pid;
    w->pidfd = pidfd;
    w->forked = true;
    w->state = W_GENERIC;
    /* Everything it writes is user code's: it is past init. */
    w->untrusted = true;
    uv_pipe_init(p->loop, &w->ipc, 1);
    w->ipc.data = w;
    uv_pipe_init(p->loop, &w->out, 0);
    w->out.data = w;
    w->open_handles = 2;
    r = uv_accept((uv_stream_t *)&t->ipc, (uv_stream_t *)&w->ipc);
    if (r == 0)
        r = uv_accept((uv_stream_t *)&t->ipc, (uv_stream_t *)&w->out);
    if (r < 0) {
        SF_ERR("msg=\"cannot accept forked instance's descriptors\" "
               "error=%s",
               uv_strerror(r));
        close_unstarted(w);
        worker_kill(t, KILL_PROTO);
        return NULL;
    }
    return w;
}

/* Starts an accepted child as an instance of f: loading, reading, its
 * first invocation sent once it is in its leaf (moved: already there). */
static void start_child(worker *w, fnv *f, bool moved)
{
    sf_pool *p = w->pool;

    uv_timer_init(p->loop, &w->timer);
    w->timer.data = w;
    uv_poll_init(p->loop, &w->pidpoll, w->pidfd);
    w->pidpoll.data = w;
    w->open_handles = 4;
    uv_poll_start(&w->pidpoll, UV_READABLE, on_pidfd);
    enter_pool(p, w);
    bind_fn(w, f, false);
    transition(w, W_LOADING);
    w->load_start_us = f->fork_req_us;
    uv_timer_start(&w->timer, on_timer, f->cfg.init_timeout_ms, 0);
    uv_read_start((uv_stream_t *)&w->ipc, on_ipc_alloc, on_ipc_read);
    uv_read_start((uv_stream_t *)&w->out, on_out_alloc, on_out_read);
    /* Its own memory leaf, like a spawned worker (it starts in the
     * template's, which it shares pages with copy-on-write). Moved from a
     * thread unless a move just happened: the move can wait ~9 ms for an
     * RCU grace period (cgroup.c), which must not stall the loop. Nothing
     * is dispatched to it until it is there, so user code never runs in
     * the template's leaf. */
    if (moved || sf_cgroup_get_mode(p->cfg.cgroup) == SF_CGROUP_NONE) {
        predispatch(w);
        return;
    }
    if (sf_mono_us() - p->cg_move_us > CG_MOVE_HOT_US) {
        w->cg_memory_mb = f->cfg.memory_mb;
        w->cgwork.data = w;
        w->cg_pending = true;
        w->open_handles++;
        p->open_handles++;
        if (uv_queue_work(p->loop, &w->cgwork, cg_attach_work,
                          cg_attach_done) == 0)
            return;
        w->cg_pending = false;
        w->open_handles--;
        p->open_handles--;
    }
    /* Right after another move the kernel has no grace period to wait
     * for (~10 us measured up to ~12 ms after the previous move, several
     * ms at 20 ms): done here, without the two thread hand-offs. */
    move_into_leaf(p->cfg.cgroup, w->id, w->pid, f->cfg.memory_mb);
    p->cg_move_us = sf_mono_us();
    predispatch(w);
}

/* Adopts the instance a template forked on a plain FORK (FORKED). */
static void adopt_child(worker *t, int pid)
{
    sf_pool *p = t->pool;
    fnv *f = t->fn;
    worker *w;
    int pidfd = -1;

    drop_spare(p, f);
    /* The template reaps children only when it gets the next FORK, which
     * we send after this: the pid cannot have been recycled yet. */
    if (pid > 0)
        pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        SF_ERR("msg=\"cannot track forked instance\" function=%s pid=%d "
               "error=\"%s\"",
               f->name, pid, strerror(errno));
        if (pid > 0)
            kill(pid, SIGKILL); /* still our grandchild: not yet reaped */
        return;
    }
    /* The template ran user code (init), so the pid is a claim: adopting
     * any other process would put it in a leaf and later SIGKILL it. */
    if (!child_of(pidfd, pid, t->pid)) {
        SF_ERR("msg=\"forked instance is not the template's child\" "
               "function=%s instance=%llu pid=%d",
               f->name, (unsigned long long)t->id, pid);
        close(pidfd);
        worker_kill(t, KILL_PROTO);
        return;
    }
    w = accept_child(t, pid, pidfd, ++p->next_worker_id);
    if (w == NULL) {
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
        close(pidfd);
        return;
    }
    start_child(w, f, false);
}

/*
 * Starts f's held spare as a new instance (it is in its leaf, through its
 * serve stage, its LOADED waiting in its socket): the invocation that
 * needed it goes out now, and the template is asked for the next spare.
 * False if there is none to take (then a dead one has been dropped).
 */
static bool take_spare(sf_pool *p, fnv *f)
{
    spare_leaf *s = f->spare;
    worker *w;

    if (s == NULL || s->moving)
        return false;
    if (!s->ok || pidfd_exited(s->pidfd)) {
        drop_spare(p, f);
        return false;
    }
    f->spare = NULL;
    w = s->w;
    w->pidfd = s->pidfd;
    s->w = NULL;
    s->pidfd = -1;
    spare_free(s);
    f->fork_req_us = sf_mono_us();
    SF_DEBUG("msg=\"spare taken\" instance=%llu function=%s pid=%d",
             (unsigned long long)w->id, f->name, w->pid);
    start_child(w, f, true);
    if (f->tmpl != NULL && f->tmpl->state == W_TEMPLATE)
        request_fork(f, SF_FORK_F_TAKEN);
    return true;
}

/*
 * Whether a FORKED or SPARE came with the descriptors it must carry: a
 * child's socket, then its output pipe (both UV_NAMED_PIPE) when it hands
 * over a child, none otherwise. If not, the template is killed as a
 * protocol error (queued descriptors would pair with the next frame).
 */
static bool child_fds_came(worker *t, bool child, const char *frame)
{
    int n = uv_pipe_pending_count(&t->ipc);

    if (child ? n == 2 && uv_pipe_pending_type(&t->ipc) == UV_NAMED_PIPE
              : n == 0)
        return true;
    SF_WARN("msg=\"%s with %d descriptors, expected %d\" instance=%llu",
            frame, n, child ? 2 : 0, (unsigned long long)t->id);
    worker_kill(t, KILL_PROTO);
    return false;
}

static void on_forked(worker *t, const char *payload)
{
    sf_pool *p = t->pool;
    fnv *f = t->fn;
    sf_forked_msg m;

    memcpy(&m, payload, sizeof(m));
    f->fork_pending = false;
    f->spare_may_come = m.status == 0;
    if (!child_fds_came(t, m.status == 0, "FORKED"))
        return;
    if (m.status != 0) {
        SF_WARN("msg=\"template could not fork an instance\" function=%s "
                "error=\"%s\"",
                f->name, strerror(-m.status));
        record_failure(p, f);
        return;
    }
    adopt_child(t, (int)m.pid);
    pump(p, f);
}

/*
 * SPARE: the template's next child, offered with its descriptors. Held
 * (keep) and moved into its leaf now, off the path of the invocation that
 * will take it; or, when it crossed a plain FORK (which the template will
 * answer with this same child), its descriptors are only closed.
 */
static void on_spare(worker *t, const char *payload, bool keep)
{
    sf_pool *p = t->pool;
    fnv *f = t->fn;
    sf_forked_msg m;
    spare_leaf *s;
    worker *w;
    int pidfd;

    memcpy(&m, payload, sizeof(m));
    /* status < 0: none could be forked (a taken-spare answer) */
    if (!child_fds_came(t, m.status == 0, "SPARE") || m.status != 0)
        return;
    drop_spare(p, f);
    /* Only a child of the template: the pid is a claim (adopt_child). */
    pidfd = m.pid > 0 ? (int)syscall(SYS_pidfd_open, (int)m.pid, 0) : -1;
    if (pidfd < 0 || !child_of(pidfd, (int)m.pid, t->pid)) {
        SF_ERR("msg=\"forked instance is not the template's child\" "
               "function=%s instance=%llu pid=%u spare=1",
               f->name, (unsigned long long)t->id, m.pid);
        if (pidfd >= 0)
            close(pidfd);
        worker_kill(t, KILL_PROTO);
        return;
    }
    w = accept_child(t, (int)m.pid, pidfd, ++p->next_worker_id);
    s = w != NULL && keep && !p->stopping ? calloc(1, sizeof(*s)) : NULL;
    if (s == NULL) {
        /* The template still holds the spare: a plain FORK gets it. */
        if (w != NULL)
            close_unstarted(w);
        close(pidfd);
        return;
    }
    s->pool = p;
    s->fn = f;
    s->w = w;
    s->id = w->id;
    s->pid = (int)m.pid;
    s->pidfd = pidfd;
    w->pidfd = -1; /* the spare's until taken */
    s->memory_mb = f->cfg.memory_mb;
    s->req.data = s;
    f->spare = s;
    if (sf_cgroup_get_mode(p->cfg.cgroup) == SF_CGROUP_NONE) {
        s->ok = true;
    } else {
        if (sf_mono_us() - p->cg_move_us > CG_MOVE_HOT_US) {
            s->moving = true;
            p->open_handles++;
            if (uv_queue_work(p->loop, &s->req, spare_move_work,
                              spare_move_done) == 0)
                return;
            s->moving = false;
            p->open_handles--;
        }
        spare_move(s); /* right after another move: cheap (start_child) */
        p->cg_move_us = sf_mono_us();
    }
    pump(p, f); /* an invocation may be waiting for it */
}

static void on_frame(worker *w, const sf_frame_hdr *h, const char *payload)
{
    switch (h->type) {
    case SF_FRAME_HELLO:
        if (w->state != W_SPAWNING || w->forked)
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
        if (w->state == W_DRAINING && !w->exited) {
            retire_after_response(w);
        } else if (w->state == W_IDLE &&
                   (w->fn->retired ||
                    (w->fn->cfg.max_invocations_per_instance > 0 &&
                     w->served >= w->fn->cfg.max_invocations_per_instance))) {
            SF_DEBUG("msg=\"recycling instance\" instance=%llu function=%s "
                     "served=%llu",
                     (unsigned long long)w->id, w->fn->name,
                     (unsigned long long)w->served);
            retire_after_response(w);
            pump(w->pool, w->fn);
        } else if (w->state == W_IDLE) {
            pump(w->pool, w->fn);
        }
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
    case SF_FRAME_FORKED:
        if (w->state != W_TEMPLATE || !w->fn->fork_pending ||
            w->fn->fork_taken || h->len != sizeof(sf_forked_msg))
            break;
        on_forked(w, payload);
        return;
    case SF_FRAME_SPARE:
        if (w->state != W_TEMPLATE || h->len != sizeof(sf_forked_msg))
            break;
        /* The answer to a FORK that said we took the last spare. */
        if (w->fn->fork_pending && w->fn->fork_taken) {
            w->fn->fork_pending = w->fn->fork_taken = false;
            on_spare(w, payload, true);
            return;
        }
        /* Otherwise at most one per FORKED that handed over a child: each
         * costs us a leaf and a move, so a template (which ran user code)
         * must not be able to send them at will. */
        {
            int32_t status;
            memcpy(&status, payload, sizeof(status));
            if (!w->fn->spare_may_come || status != 0)
                break;
        }
        w->fn->spare_may_come = false;
        /* Sent before the template read a plain FORK we sent meanwhile:
         * that FORK is answered with this child, adopted then. */
        on_spare(w, payload, !w->fn->fork_pending);
        return;
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
        /* EOF or error: the process is exiting; its exit callback
         * reports it. Until then nothing may be dispatched to it. */
        if (w->state == W_IDLE || w->state == W_GENERIC)
            transition(w, W_DRAINING);
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
            break;
        }
        on_frame(w, &h, w->rbuf.data + sizeof(h));
        sf_buf_consume(&w->rbuf, need);
    }
    /* Only a template with a FORK in flight, or one that may offer a
     * spare, may pass descriptors: the two of the frame it is sending
     * (whose rest may follow). More would be a way to fill our fd table. */
    if (!uv_is_closing((uv_handle_t *)&w->ipc) &&
        uv_pipe_pending_count(&w->ipc) > 0 &&
        (uv_pipe_pending_count(&w->ipc) > 2 ||
         !(w->state == W_TEMPLATE &&
           (w->fn->fork_pending || w->fn->spare_may_come)))) {
        SF_WARN("msg=\"worker passed an unexpected file descriptor\" "
                "instance=%llu state=%s",
                (unsigned long long)w->id, wstate_names[w->state]);
        close_ipc(w);
        worker_kill(w, KILL_PROTO);
        return;
    }
    /* Don't pin a large buffer after one big response. */
    if (w->rbuf.len == 0 && w->rbuf.cap > (1u << 20))
        sf_buf_free(&w->rbuf);
}

/* ---- spawning ----------------------------------------------------------- */

/*
 * Starts the worker program with stdin on /dev/null, stdout and stderr on
 * out_fd, the IPC channel on fd 3 and nothing else open, signals at their
 * defaults and unblocked. posix_spawn (clone with CLONE_VM|CLONE_VFORK in
 * glibc) rather than uv_spawn, whose fork() copied the daemon's page
 * tables (~11% of the loop thread's time in a run of paced cold starts,
 * copy_page_range) and left every page of the daemon copy-on-write, so
 * the request after each refill took a page fault for every page it
 * wrote (~0.2 ms). Returns the pid and a pidfd for it, or -errno.
 */
static int spawn_process(const char *path, char **args, char **env,
                         int out_fd, int ipc_fd, int netns_fd, int *pidfd)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;
    pid_t pid = -1;
    int r;

    sigemptyset(&none);
    sigfillset(&all);
    if (posix_spawn_file_actions_init(&fa) != 0)
        return -ENOMEM;
    if (posix_spawnattr_init(&at) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return -ENOMEM;
    }
    r = posix_spawnattr_setsigmask(&at, &none);
    if (r == 0)
        r = posix_spawnattr_setsigdefault(&at, &all);
    if (r == 0)
        r = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK |
                                              POSIX_SPAWN_SETSIGDEF);
    if (r == 0)
        r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY,
                                             0);
    if (r == 0)
        r = posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    if (r == 0)
        r = posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
    if (r == 0)
        r = posix_spawn_file_actions_adddup2(&fa, ipc_fd, SF_IPC_FD);
    if (r == 0 && netns_fd >= 0)
        r = posix_spawn_file_actions_adddup2(&fa, netns_fd,
                                             SF_WORKER_NETNS_FD);
    if (r == 0)
        r = posix_spawn_file_actions_addclosefrom_np(
            &fa, netns_fd >= 0 ? SF_WORKER_NETNS_FD + 1 : SF_IPC_FD + 1);
    if (r == 0)
        r = posix_spawn(&pid, path, &fa, &at, args, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (r != 0)
        return -r;
    /* Our child, not reaped until its pidfd says it exited: the pid is
     * its own until then. */
    *pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (*pidfd < 0) {
        r = -errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return r;
    }
    return pid;
}

static int spawn_worker(sf_pool *p, validation *val)
{
    worker *w = calloc(1, sizeof(*w));
    uv_os_sock_t fds[2] = {-1, -1};
    uv_file ofds[2] = {-1, -1};
    char *args[2 + sizeof(p->cfg.worker_args) / sizeof(char *)];
    size_t na = 0;
    char lvl[32];
    char *env[7];
    char *cgenv = NULL, *procs;
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
    if (p->netns_fd >= 0)
        env[++ne] = "SOFAAS_NETNS_FD=" SF_WORKER_NETNS_FD_STR;
    /* Its memory leaf, which it joins itself before saying HELLO (see
     * cgroup.c); it gets the default limit now, like every worker. */
    if (sf_cgroup_prepare(p->cfg.cgroup, w->id) == 0 &&
        (procs = sf_cgroup_procs_path(p->cfg.cgroup, w->id)) != NULL) {
        if (asprintf(&cgenv, "SOFAAS_CGROUP_PROCS=%s", procs) < 0)
            cgenv = NULL;
        else
            env[++ne] = cgenv;
        free(procs);
        if (sf_cgroup_set_memory(p->cfg.cgroup, w->id, SF_FN_MEMORY_DEFAULT) ==
            0)
            w->cg_memory_mb = SF_FN_MEMORY_DEFAULT;
    }
    env[++ne] = NULL;

    /* ipc = 1: a worker may become a template, which passes the sockets of
     * the instances it forks (SCM_RIGHTS); anyone else passing one is a
     * protocol error (on_ipc_read). */
    uv_pipe_init(p->loop, &w->ipc, 1);
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
        r = spawn_process(p->cfg.worker_path, args, env, ofds[1], fds[1],
                          p->netns_fd, &w->pidfd);
        if (r > 0) {
            w->pid = r;
            r = 0;
        } else {
            r = r < 0 ? r : -EIO;
        }
    }
    close(fds[1]);
    close(ofds[1]);
    free(cgenv);
    if (r < 0) {
        SF_ERR("msg=\"cannot spawn worker\" path=%s error=\"%s\"",
               p->cfg.worker_path, strerror(-r));
        sf_cgroup_remove(p->cfg.cgroup, w->id);
        w->val = NULL;
        w->pidfd = -1;
        uv_close((uv_handle_t *)&w->ipc, on_handle_closed);
        uv_close((uv_handle_t *)&w->out, on_handle_closed);
        uv_close((uv_handle_t *)&w->timer, on_handle_closed);
        return r;
    }
    uv_poll_init(p->loop, &w->pidpoll, w->pidfd);
    w->pidpoll.data = w;
    w->open_handles = 4;
    uv_poll_start(&w->pidpoll, UV_READABLE, on_pidfd);
    enter_pool(p, w);
    uv_read_start((uv_stream_t *)&w->ipc, on_ipc_alloc, on_ipc_read);
    uv_read_start((uv_stream_t *)&w->out, on_out_alloc, on_out_read);
    SF_DEBUG("msg=\"worker spawned\" instance=%llu pid=%d",
             (unsigned long long)w->id, w->pid);
    return 0;
}

static void on_rtimer(uv_timer_t *t);

/*
 * Refills the generic pool a little later rather than now: spawning blocks
 * the loop ~0.5 ms (the leaf's mkdir and limits, posix_spawn until the
 * child has exec'd), which would sit right on the path of the cold start
 * that just used a generic worker.
 */
#define REFILL_DELAY_MS 5
static void schedule_refill(sf_pool *p)
{
    if (!p->stopping && !uv_is_active((uv_handle_t *)&p->rtimer))
        uv_timer_start(&p->rtimer, on_rtimer, REFILL_DELAY_MS, 0);
}

/* Takes one background-spawn token; when none is left, arranges a retry. */
static bool take_token(sf_pool *p)
{
    uint64_t now = sf_mono_us();
    double burst = p->cfg.generic_min > 8 ? p->cfg.generic_min : 8;

    p->tokens += (double)(now - p->tokens_us) * p->cfg.spawn_rate / 1e6;
    p->tokens_us = now;
    if (p->tokens > burst)
        p->tokens = burst;
    if (p->tokens >= 1.0) {
        p->tokens -= 1.0;
        return true;
    }
    if (!uv_is_active((uv_handle_t *)&p->rtimer))
        uv_timer_start(&p->rtimer, on_rtimer,
                       (uint64_t)((1.0 - p->tokens) * 1000.0 /
                                  p->cfg.spawn_rate) +
                           1,
                       0);
    return false;
}

/* Keeps generic_min generic (or soon generic) workers while room allows. */
static void maybe_spawn(sf_pool *p)
{
    while (!p->stopping && p->total < p->cfg.max_workers &&
           p->n_state[W_GENERIC] + p->n_state[W_SPAWNING] <
               p->cfg.generic_min &&
           take_token(p)) {
        if (spawn_worker(p, NULL) < 0)
            break;
    }
}

/* A generic worker, or f's most recently idle instance (LIFO keeps a few
 * instances hot and lets the rest reach idle_timeout_s). */
static worker *find_generic(sf_pool *p) { return p->by_state[W_GENERIC]; }
static worker *find_idle(fnv *f) { return f->idle; }

/* Retires the least recently used idle instance not of f. */
static bool evict_lru(sf_pool *p, const fnv *f)
{
    worker *best = NULL;

    for (worker *w = p->by_state[W_IDLE]; w != NULL; w = w->snext)
        if (w->fn != f &&
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

enum start_result {
    START_BOUND,   /* an instance of f is on its way (counted in n_live) */
    START_WAIT,    /* a worker is coming; it will pump when ready */
    START_NO_ROOM, /* nothing possible now */
    START_FAILED,  /* could not spawn */
};

/*
 * Starts one more instance of f: forked from its template when templates
 * are on, else a generic worker specialized. urgent (an invocation waits)
 * may evict another function's idle instance and ignores the spawn rate.
 */
static enum start_result start_instance(sf_pool *p, fnv *f, bool urgent)
{
    worker *g;

    if (use_template(f) && f->tmpl != NULL) {
        if (f->tmpl->state != W_TEMPLATE || f->fork_pending ||
            (f->spare != NULL && f->spare->moving))
            return START_WAIT;
        if (p->total >= p->cfg.max_workers && (!urgent || !evict_lru(p, f)))
            return START_NO_ROOM;
        if (p->total >= p->cfg.max_workers)
            return START_WAIT; /* the evicted one is dying */
        if (take_spare(p, f))
            return START_BOUND;
        return request_fork(f, 0) == 0 ? START_BOUND : START_WAIT;
    }
    g = find_generic(p);
    if (g != NULL) {
        bool as_template = use_template(f);
        specialize(g, f, as_template);
        schedule_refill(p);
        return as_template ? START_WAIT : START_BOUND;
    }
    /* A worker already on its way will find f when it says HELLO. */
    if (p->n_state[W_SPAWNING] > 0)
        return START_WAIT;
    if (p->total >= p->cfg.max_workers) {
        if (urgent && evict_lru(p, f))
            return START_WAIT;
        return START_NO_ROOM;
    }
    if (!urgent && !take_token(p))
        return START_NO_ROOM;
    return spawn_worker(p, NULL) < 0 ? START_FAILED : START_WAIT;
}

/* Serves f's queue from idle instances and asks for more if needed. */
static void pump(sf_pool *p, fnv *f)
{
    uint64_t now = sf_mono_us();

    if (p->stopping)
        return;
    while (f->q_head != NULL) {
        worker *w = find_idle(f);
        if (w == NULL)
            break;
        dispatch(w, dequeue(f));
    }
    if (in_backoff(f, now))
        return;
    /* Waiting invocations beyond the instances on their way. */
    while (f->q_len > n_free_loading(f)) {
        enum start_result r;

        if (f->cfg.max_concurrency > 0 && n_live(f) >= f->cfg.max_concurrency)
            break;
        r = start_instance(p, f, true);
        if (r == START_BOUND)
            continue;
        if (r == START_FAILED) {
            inv *i = dequeue(f);
            fail(i, SF_INV_UNAVAILABLE, "cannot start a worker process");
            continue;
        }
        break;
    }
    /* Keep the warm target (background, rate-limited). */
    while (n_live(f) < warm_target(p, f) && !in_backoff(f, now)) {
        if (start_instance(p, f, false) != START_BOUND)
            break;
    }
}

static void pump_all(sf_pool *p)
{
    for (fnv *f = p->fns, *next; f != NULL; f = next) {
        next = f->next;
        pump(p, f);
    }
}

static void on_rtimer(uv_timer_t *t)
{
    sf_pool *p = t->data;

    maybe_spawn(p);
    pump_all(p);
}

/* ---- queue deadlines and the tick --------------------------------------- */

static uint64_t queue_deadline(const inv *i)
{
    return i->enq_us + (uint64_t)i->fn->cfg.queue_timeout_ms * 1000;
}

static void on_qtimer(uv_timer_t *t)
{
    sf_pool *p = t->data;
    uint64_t now = sf_mono_us();

    for (fnv *f = p->fns; f != NULL; f = f->next) {
        char detail[128];
        if (f->cfg.queue_timeout_ms == 0)
            continue;
        snprintf(detail, sizeof(detail),
                 "waited %u ms for an instance (queue_timeout_ms)",
                 f->cfg.queue_timeout_ms);
        while (f->q_head != NULL && queue_deadline(f->q_head) <= now) {
            SF_INFO("msg=\"queue timeout, consider raising max_concurrency\" "
                    "function=%s queue_timeout_ms=%u max_concurrency=%u",
                    f->name, f->cfg.queue_timeout_ms,
                    f->cfg.max_concurrency);
            fail_retry(dequeue(f), SF_INV_QUEUE_TIMEOUT, detail, 1);
        }
    }
    arm_qtimer(p);
}

/* Runs on_qtimer at the earliest deadline of any queue head (queues are
 * FIFO and a version's timeout is fixed, so heads expire first). */
static void arm_qtimer(sf_pool *p)
{
    uint64_t due = UINT64_MAX, now = sf_mono_us();

    for (fnv *f = p->fns; f != NULL; f = f->next)
        if (f->q_head != NULL && f->cfg.queue_timeout_ms > 0 &&
            queue_deadline(f->q_head) < due)
            due = queue_deadline(f->q_head);
    if (due == UINT64_MAX) {
        uv_timer_stop(&p->qtimer);
        return;
    }
    uv_timer_start(&p->qtimer, on_qtimer,
                   due > now ? (due - now + 999) / 1000 : 0, 0);
}

static void on_tick(uv_timer_t *t)
{
    sf_pool *p = t->data;
    uint64_t now = sf_mono_us();

    for (fnv *f = p->fns; f != NULL; f = f->next) {
        f->recent = f->recent * PEAK_DECAY;
        if (f->peak > f->recent)
            f->recent = f->peak;
        f->peak = f->n_state[W_BUSY] + (unsigned)f->q_len;
        if (f->backoff_until_us != 0 && !in_backoff(f, now)) {
            f->backoff_until_us = 0;
            SF_INFO("msg=\"backoff over, starting instances again\" "
                    "function=%s version=%lld",
                    f->name, (long long)f->version);
        }
    }
    /* Idle instances above their function's warm target retire. */
    for (worker *w = p->workers, *next; w != NULL; w = next) {
        fnv *f = w->fn;
        next = w->next;
        if (w->state != W_IDLE ||
            now - w->last_used_us < (uint64_t)f->cfg.idle_timeout_s * 1000000 ||
            n_live(f) <= warm_target(p, f))
            continue;
        SF_DEBUG("msg=\"retiring idle instance\" instance=%llu function=%s "
                 "idle_timeout_s=%u",
                 (unsigned long long)w->id, f->name, f->cfg.idle_timeout_s);
        retire(w);
    }
    for (fnv *f = p->fns; f != NULL; f = f->next)
        maybe_retire_template(p, f, now);
    maybe_spawn(p);
    pump_all(p);
}

/* ---- public ------------------------------------------------------------- */

static void on_pool_timer_closed(uv_handle_t *h)
{
    sf_pool *p = h->data;

    p->open_handles--;
    maybe_destroy(p);
}

/*
 * One empty network namespace for every worker, made once (aside: the
 * daemon's own is left alone, netns.c). A worker joins it with setns (~10 us) instead of
 * creating its own (~0.8-1.4 ms of CPU, ~25% of a worker's start, and as
 * much again for the kernel to tear it down when the worker dies). Sharing
 * it gives functions nothing to share: it holds a down loopback and no
 * sockets, and without network: true a function cannot create a socket at
 * all (seccomp; a template's socketpair is unnamed); with it, the worker
 * returns to the host's namespace. Only for a root daemon with the sandbox
 * on: a non-root daemon's workers each live in their own user namespace,
 * which must own their network namespace (sandbox.c, prepare_ahead). -1
 * if not made; workers then make their own.
 */
static int shared_netns(const sf_pool_config *cfg)
{
    int fd;

    if (geteuid() != 0)
        return -1;
    for (size_t i = 0; i < sizeof(cfg->worker_args) / sizeof(char *) &&
                       cfg->worker_args[i] != NULL;
         i++)
        if (strcmp(cfg->worker_args[i], "--sandbox=off") == 0)
            return -1;
    fd = sf_netns_aside();
    if (fd < 0)
        SF_DEBUG("msg=\"no shared network namespace for workers, each "
                 "makes its own\"");
    return fd;
}

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
    if (p->cfg.spawn_rate == 0)
        p->cfg.spawn_rate = SF_POOL_SPAWN_RATE_DEFAULT;
    if (p->cfg.template_threshold_ms == 0)
        p->cfg.template_threshold_ms = SF_POOL_TEMPLATE_THRESHOLD_MS;
    p->netns_fd = shared_netns(cfg);
    p->tokens = 1.0;
    p->tokens_us = sf_mono_us();
    uv_timer_init(loop, &p->tick);
    uv_timer_init(loop, &p->qtimer);
    uv_timer_init(loop, &p->rtimer);
    p->tick.data = p->qtimer.data = p->rtimer.data = p;
    p->open_handles = 3;
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
    uv_timer_start(&p->tick, on_tick, TICK_MS, TICK_MS);
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
    uint64_t now = sf_mono_us();
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
    f->current = !f->retired;
    i->fn = f;
    i->req = req;
    i->cb = cb;
    i->ctx = ctx;
    i->id = ++p->next_inv_id;
    i->enq_us = now;
    if (in_backoff(f, now)) {
        fail_retry(i, SF_INV_BACKOFF,
                   "function is crash-looping; instances are not started "
                   "until the backoff ends",
                   backoff_left_s(f, now));
        return;
    }
    if (f->q_head == NULL) {
        worker *w = find_idle(f);
        if (w != NULL) {
            dispatch(w, i);
            return;
        }
    }
    /* Queued beyond what running, loading and startable instances will
     * take: at most max_queue of those. */
    if (f->cfg.max_concurrency > 0) {
        unsigned live = n_live(f);
        size_t room = n_free_loading(f) +
                      (live < f->cfg.max_concurrency
                           ? f->cfg.max_concurrency - live
                           : 0);
        if (f->q_len + 1 > room + f->cfg.max_queue) {
            SF_INFO("msg=\"queue full, consider raising max_concurrency\" "
                    "function=%s max_concurrency=%u max_queue=%u",
                    f->name, f->cfg.max_concurrency, f->cfg.max_queue);
            fail_retry(i, SF_INV_THROTTLED,
                       "too many concurrent invocations (max_concurrency "
                       "and max_queue reached)",
                       1);
            return;
        }
    }
    if (f->q_tail)
        f->q_tail->next = i;
    else
        f->q_head = i;
    f->q_tail = i;
    f->q_len++;
    note_concurrency(f);
    if (f->q_head == i)
        arm_qtimer(p);
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
    g = p->stopping ? NULL : find_generic(p);
    if (g != NULL) {
        g->val = v;
        start_validation(g);
        schedule_refill(p);
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
    uint64_t now = sf_mono_us();

    for (fnv *f = p->fns; f != NULL; f = f->next)
        if (strcmp(f->name, name) == 0 && f->version != keep_version) {
            f->retired = true;
            f->current = false;
        }
    for (worker *w = p->workers, *next; w != NULL; w = next) {
        next = w->next;
        if (w->fn == NULL || !w->fn->retired)
            continue;
        if (w->state == W_IDLE)
            retire(w);
        else if (w->state == W_BUSY)
            transition(w, W_DRAINING);
    }
    for (fnv *f = p->fns, *next; f != NULL; f = next) {
        next = f->next;
        if (f->retired && strcmp(f->name, name) == 0) {
            maybe_retire_template(p, f, now);
            fnv_gc(p, f);
        }
    }
}

int sf_pool_provision(sf_pool *p, const sf_fn_spec *s)
{
    fnv *f;

    if (p->stopping)
        return 0;
    f = fnv_get(p, s);
    if (f == NULL)
        return -ENOMEM;
    f->retired = false;
    f->current = true;
    if (f->cfg.min_warm > 0)
        SF_DEBUG("msg=\"provisioning\" function=%s version=%lld min_warm=%u",
                 f->name, (long long)f->version, f->cfg.min_warm);
    pump(p, f);
    return 0;
}

void sf_pool_function_stats(sf_pool *p, const char *name,
                            sf_pool_fn_stats *s)
{
    uint64_t now = sf_mono_us();

    memset(s, 0, sizeof(*s));
    for (fnv *f = p->fns; f != NULL; f = f->next) {
        if (strcmp(f->name, name) != 0)
            continue;
        s->loading += f->n_state[W_LOADING];
        s->idle += f->n_state[W_IDLE];
        s->busy += f->n_state[W_BUSY];
        s->draining += f->n_state[W_DRAINING];
        s->queued += (unsigned)f->q_len;
        if (f->tmpl != NULL) {
            s->templates++;
            if (f->tmpl->state == W_TEMPLATE)
                s->template_init_us = f->tmpl->init_us;
        }
        if (f->retired)
            continue;
        s->warm_target = warm_target(p, f);
        s->recent_peak = f->recent;
        s->template_active = use_template(f);
        if (in_backoff(f, now))
            s->backoff_ms = (f->backoff_until_us - now) / 1000;
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
    s->templates = p->n_state[W_TEMPLATE];
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
    uv_close((uv_handle_t *)&p->tick, on_pool_timer_closed);
    uv_close((uv_handle_t *)&p->qtimer, on_pool_timer_closed);
    uv_close((uv_handle_t *)&p->rtimer, on_pool_timer_closed);
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
    /* Workers finish dying through their exit callbacks; the last handle
     * closed frees p. The caller runs the loop until all are closed. */
}
