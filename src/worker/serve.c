/*
 * serve.c - the worker's life: HELLO, then LOAD (sandbox, dlopen, ABI check,
 * sofaas_init), then one INVOKE at a time, each answered by one RESPONSE.
 * A LOAD flagged SF_LOAD_F_TEMPLATE makes the worker a template instead: it
 * runs init once and then only answers FORK frames, each with a new child
 * that tightens its own sandbox and serves on its own socket (docs/pool.md).
 *
 * I/O here is plain blocking read/write on the IPC fd: a worker has exactly
 * one peer and one request in flight, so an event loop would only add code
 * and resident memory. Every frame header is checked before its payload is
 * read (ipc.h).
 */
#include "serve.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "hugepages.h"
#include "ipc.h"
#include "log.h"
#include "runtime.h"
#include "sandbox.h"

typedef int (*handle_fn)(const sofaas_request *, sofaas_response *);
typedef int (*init_fn)(void);

static handle_fn fn_handle;
static sofaas_response response;
/* The function's policy, kept for a template's children (they tighten their
 * own sandbox after the fork). Strings are copies owned for process life. */
static sf_sandbox_policy policy;
static uint32_t max_children;

/* do_load's result when the worker became a template. */
#define SERVE_TEMPLATE 1
/* A 2 MiB range of a template's memory goes into a huge page when this
 * much of it is resident: the collapse costs at most a tenth more. */
#define TEMPLATE_HUGE_MIN_PCT 90

static int read_full(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n == 0)
            return -EPIPE;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Frames from the daemon arrive through a small input buffer, so a frame
 * usually costs one read. The wait for input is a poll() for POLLIN, not a
 * blocking read: a reader blocked in read() on a unix socket is also woken
 * each time the daemon consumes what this worker wrote (the socket's write
 * space wake-up), which cost a context switch per invocation for nothing.
 */
static char inbuf[16 << 10];
/* Until LOAD is handled, input is read with recvmsg so that the artifact
 * the daemon passes with LOAD (SCM_RIGHTS) arrives; passed_fd holds it. */
static bool accept_fd = true;
static int passed_fd = -1;

static ssize_t read_some(int fd, void *buf, size_t len)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(2 * sizeof(int))];
    } cm;
    struct iovec iov = {buf, len};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = cm.buf,
                         .msg_controllen = sizeof(cm.buf)};
    ssize_t n;

    if (!accept_fd)
        return read(fd, buf, len);
    n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    for (struct cmsghdr *c = n >= 0 ? CMSG_FIRSTHDR(&msg) : NULL; c != NULL;
         c = CMSG_NXTHDR(&msg, c)) {
        size_t nfd;
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfd; i++) {
            int got;
            memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            /* One fd, with LOAD; anything more is dropped. */
            if (passed_fd < 0)
                passed_fd = got;
            else
                close(got);
        }
    }
    return n;
}
static size_t in_off, in_len;

static int fill_input(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};

    if (in_off == in_len)
        in_off = in_len = 0;
    else if (in_off > 0 && in_len == sizeof(inbuf)) {
        memmove(inbuf, inbuf + in_off, in_len - in_off);
        in_len -= in_off;
        in_off = 0;
    }
    for (;;) {
        ssize_t n;

        pfd.revents = 0;
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
            return -errno;
        if (!(pfd.revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        /* Readable: this read does not block (we are its only reader). */
        n = read_some(fd, inbuf + in_len, sizeof(inbuf) - in_len);
        if (n > 0) {
            in_len += (size_t)n;
            return 0;
        }
        if (n == 0)
            return -EPIPE;
        if (errno != EINTR && errno != EAGAIN)
            return -errno;
    }
}

/* Copies len bytes of the stream into dst: buffered ones first, a large
 * remainder straight from the socket. */
static int read_input(int fd, void *dst, size_t len)
{
    char *p = dst;

    while (len > 0) {
        size_t have = in_len - in_off, n;

        if (have == 0) {
            int r;
            if (len >= sizeof(inbuf))
                return read_full(fd, p, len);
            r = fill_input(fd);
            if (r < 0)
                return r;
            continue;
        }
        n = have < len ? have : len;
        memcpy(p, inbuf + in_off, n);
        in_off += n;
        p += n;
        len -= n;
    }
    return 0;
}

/* A forked child serves on a new socket: nothing buffered is its. */
static void reset_input(void)
{
    in_off = in_len = 0;
}

static int write_iov(int fd, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        ssize_t n = writev(fd, iov, cnt);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        while (cnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

static int send_buf(int fd, const void *buf, size_t len)
{
    struct iovec iov = {(void *)buf, len};
    return write_iov(fd, &iov, 1);
}

static int send_loaded(int fd, int32_t status, const char *msg)
{
    char *out;
    size_t len;
    int r = sf_ipc_encode_loaded(status, msg, &out, &len);
    if (r < 0)
        return r;
    r = send_buf(fd, out, len);
    free(out);
    return r;
}

/*
 * After reporting a failed LOAD, waits for the daemon to close the channel
 * (it retires the worker on receipt) so the report is always read before
 * the exit is seen, instead of racing it.
 */
static void wait_for_eof(int fd)
{
    char buf[256];

    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0 || (n < 0 && errno == EINTR))
            continue;
        return;
    }
}

/* Fail closed: report why the sandbox could not be built, then leave. */
static void __attribute__((noreturn)) sandbox_failed(int fd, const char *why)
{
    char msg[600];

    SF_ERR("msg=\"sandbox setup failed, refusing to run the function\" "
           "reason=\"%s\"",
           why);
    snprintf(msg, sizeof(msg), "sandbox setup failed: %s", why);
    send_loaded(fd, SF_LOAD_ERR_SANDBOX, msg);
    wait_for_eof(fd);
    _exit(70);
}

/*
 * Specializes this worker. On any failure the worker reports it and exits:
 * a half-loaded process is never reused (its address space may already hold
 * user code).
 */
static int do_load(int fd, const char *payload, size_t len)
{
    sf_load_msg m;
    const char *path, *env;
    sf_sandbox_policy pol;
    char err[512], dlpath[64 + 4096];
    int afd;
    void *h;
    const unsigned int *abi;
    init_fn init;

    if (sf_ipc_decode_load(payload, len, &m, &path, &env) < 0)
        return -EPROTO;
    if (fn_handle != NULL) {
        send_loaded(fd, SF_LOAD_ERR_STATE, "worker is already specialized");
        return -EPROTO;
    }
    if (m.abi != SOFAAS_ABI_VERSION) {
        send_loaded(fd, SF_LOAD_ERR_ABI, "daemon and worker ABI differ");
        return -EPROTO;
    }

    accept_fd = false;
    pol = (sf_sandbox_policy){.artifact_path = path,
                              .artifact_fd = passed_fd,
                              .memory_mb = m.memory_mb,
                              .tmp_mb = m.tmp_mb,
                              .network = (m.flags & SF_LOAD_F_NETWORK) != 0,
                              .file_access =
                                  (m.flags & SF_LOAD_F_FILES) != 0,
                              .memcg = (m.flags & SF_LOAD_F_MEMCG) != 0,
                              .env = env,
                              .env_len = m.env_len,
                              .allow_fork = (m.flags & SF_LOAD_F_TEMPLATE) != 0};
    if (sf_sandbox_load_stage(&pol, dlpath, sizeof(dlpath), &afd, err,
                              sizeof(err)) != 0)
        sandbox_failed(fd, err);

    /* Everything after this line on stdout/stderr is function output (ipc.h).
     * Fail closed: without the mark the daemon would keep treating our
     * output as trusted log lines. */
    if (write(STDERR_FILENO, SF_USER_CODE_MARK "\n",
              sizeof(SF_USER_CODE_MARK)) != (ssize_t)sizeof(SF_USER_CODE_MARK)) {
        send_loaded(fd, SF_LOAD_ERR_SANDBOX, "cannot mark the output stream");
        _exit(70);
    }

    /* RTLD_NOW: fail here on unresolved symbols, not mid-request. */
    h = dlopen(dlpath, RTLD_NOW | RTLD_LOCAL);
    if (afd >= 0)
        close(afd);
    if (h == NULL) {
        snprintf(err, sizeof(err), "dlopen: %s", dlerror());
        send_loaded(fd, SF_LOAD_ERR_OPEN, err);
        return -ENOEXEC;
    }
    abi = dlsym(h, "sofaas_abi_version");
    if (abi == NULL) {
        send_loaded(fd, SF_LOAD_ERR_ABI,
                    "no sofaas_abi_version symbol: build with sofaas.h");
        return -ENOEXEC;
    }
    if (*abi != SOFAAS_ABI_VERSION) {
        snprintf(err, sizeof(err),
                 "function built for ABI version %u, this runtime is %d",
                 *abi, SOFAAS_ABI_VERSION);
        send_loaded(fd, SF_LOAD_ERR_ABI, err);
        return -ENOEXEC;
    }
    fn_handle = (handle_fn)dlsym(h, "sofaas_handle");
    if (fn_handle == NULL) {
        send_loaded(fd, SF_LOAD_ERR_SYMBOL, "no sofaas_handle symbol");
        return -ENOEXEC;
    }
    init = (init_fn)dlsym(h, "sofaas_init");
    if (init != NULL) {
        int r = init();
        fflush(stdout);
        if (r != 0) {
            snprintf(err, sizeof(err), "sofaas_init returned %d", r);
            send_loaded(fd, SF_LOAD_ERR_INIT, err);
            return -ENOEXEC;
        }
    }
    if (pol.allow_fork) {
        sf_huge_stats hs;
        /* What each fork copies and each instance's exit tears down is
         * the page tables of everything init built: in huge pages, 512
         * times fewer entries (hugepages.h). Best effort. */
        sf_huge_collapse_anon("/proc/self/smaps", TEMPLATE_HUGE_MIN_PCT, &hs);
        policy = pol;
        policy.artifact_path = strdup(path);
        policy.env = m.env_len ? malloc(m.env_len) : NULL;
        if (policy.artifact_path == NULL || (m.env_len && !policy.env)) {
            send_loaded(fd, SF_LOAD_ERR_STATE, "out of memory");
            return -ENOEXEC;
        }
        if (m.env_len)
            memcpy((char *)policy.env, env, m.env_len);
        max_children = m.max_children;
        if (send_loaded(fd, SF_LOAD_OK, "") < 0)
            return -EPIPE;
        return SERVE_TEMPLATE;
    }
    if (sf_sandbox_serve_stage(&pol, err, sizeof(err)) != 0)
        sandbox_failed(fd, err);
    return send_loaded(fd, SF_LOAD_OK, "");
}

/* Sends FORKED (or SPARE) with status, passing fds[0..1] (when fds is not
 * NULL) in SCM_RIGHTS: the instance's socket, then its output pipe. */
static int send_forked(int chan, uint16_t type, int32_t status, pid_t pid,
                       const int *fds)
{
    sf_forked_msg m = {status, (uint32_t)pid};
    sf_frame_hdr h = {.len = sizeof(m), .type = type};
    struct iovec iov[2] = {{&h, sizeof(h)}, {&m, sizeof(m)}};
    long n = sf_ipc_send_fds(chan, iov, 2, fds, fds ? 2 : 0, 0);

    if (n < 0)
        return (int)n;
    /* The rest (rarely any) goes without the fds: they rode the first byte. */
    if ((size_t)n < sizeof(h) + sizeof(m)) {
        char all[sizeof(h) + sizeof(m)];
        memcpy(all, &h, sizeof(h));
        memcpy(all + sizeof(h), &m, sizeof(m));
        return send_buf(chan, all + n, sizeof(all) - (size_t)n);
    }
    return 0;
}

/*
 * A forked child shares every page with its template copy-on-write, so its
 * first invocation takes a fault for each page it writes: the input
 * buffer, the stack, the allocator's arena. A spare takes them before it
 * is handed over (measured on slow-init: first invocation 0.42 ms against
 * 0.05 ms warm). What the function itself writes is left to it.
 */
static void prefault(void)
{
    volatile char stack[64 << 10];
    void *heap = malloc(64 << 10);

    memset(inbuf, 0, sizeof(inbuf));
    for (size_t i = 0; i < sizeof(stack); i += 4096)
        stack[i] = 0;
    if (heap != NULL) {
        memset(heap, 0, 64 << 10);
        free(heap);
    }
}

/*
 * Forks one instance with its own channel and output pipe. In the child
 * (returns 0): tightens its sandbox, announces itself with LOADED on its
 * channel (read by the daemon once it has adopted it) and goes on to serve
 * on SF_IPC_FD. In the template: returns the child's pid with the daemon's
 * ends in *sock and *out (non-blocking, to be passed with FORKED), or
 * -errno.
 */
static pid_t fork_instance(pid_t self, bool spare, int *sock, int *out)
{
    int sv[2], op[2];
    pid_t pid;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    /* Its own stdout+stderr pipe, so the daemon can tell its output (and
     * which invocation wrote it) from its siblings'. */
    if (pipe2(op, O_CLOEXEC) < 0) {
        int e = -errno;
        close(sv[0]);
        close(sv[1]);
        return e;
    }
    pid = fork();
    if (pid == 0) {
        char err[512];
        /* Die with the template (which dies with the daemon). The
         * template outlives its children: the daemon retires it last. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != self)
            _exit(70);
        /* dup2 drops CLOEXEC and replaces the template's channel. */
        if (dup2(sv[1], SF_IPC_FD) < 0 || dup2(op[1], 1) < 0 ||
            dup2(op[1], 2) < 0)
            _exit(70);
        close(sv[0]);
        close(sv[1]);
        close(op[0]);
        close(op[1]);
        reset_input();
        policy.allow_fork = false;
        if (sf_sandbox_serve_stage(&policy, err, sizeof(err)) != 0) {
            send_loaded(SF_IPC_FD, SF_LOAD_ERR_SANDBOX, err);
            _exit(70);
        }
        if (send_loaded(SF_IPC_FD, SF_LOAD_OK, "") < 0)
            _exit(0);
        if (spare)
            prefault();
        return 0;
    }
    close(sv[1]);
    close(op[1]);
    if (pid < 0) {
        int e = -errno;
        close(sv[0]);
        close(op[0]);
        return e;
    }
    /* The daemon's ends are non-blocking (libuv reads them, and so does
     * its output drain); the child's stay blocking. */
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    fcntl(op[0], F_SETFL, fcntl(op[0], F_GETFL) | O_NONBLOCK);
    *sock = sv[0];
    *out = op[0];
    return pid;
}

/*
 * The template's loop. Answers each FORK with one child; the daemon sends
 * the next FORK only after it has handled this FORKED (so it can pidfd_open
 * the child before the template could reap it: zombies are reaped here, at
 * the next FORK). Returns 0 in a new child, whose IPC fd is then SF_IPC_FD;
 * returns < 0 in the template when it must exit (0 exit when the daemon
 * closed the channel is reported as -EPIPE).
 *
 * One child is kept forked ahead (the spare) and offered to the daemon
 * with SPARE, descriptors attached, so the fork (page tables of everything
 * init built) and the child's serve stage are off the path of the
 * invocation that needs a new instance. The daemon may take it without
 * asking (it then sends FORK flagged SF_FORK_F_TAKEN, and the template
 * forgets it and offers the next); otherwise a plain FORK is answered
 * with it. The spare counts against max_children; it is reaped, like any
 * child, only here, so a pid handed to the daemon is never a reaped one.
 * A spare that died is noticed when reaping and replaced.
 */
static int template_loop(int chan)
{
    uint32_t live = 0;
    pid_t self = getpid(), spare = -1;
    int spare_fds[2] = {-1, -1};

    for (;;) {
        sf_frame_hdr h;
        pid_t pid;
        int fds[2];
        bool taken;
        int r = read_input(chan, &h, sizeof(h));

        if (r < 0)
            return r;
        if (sf_ipc_check_hdr(&h, false) < 0 || h.type != SF_FRAME_FORK ||
            h.len != 0 || (h.flags & ~SF_FORK_FLAGS) != 0) {
            SF_ERR("msg=\"template got a frame other than FORK\" type=%u",
                   h.type);
            return -EPROTO;
        }
        taken = (h.flags & SF_FORK_F_TAKEN) != 0;
        while ((pid = waitpid(-1, NULL, WNOHANG)) > 0) {
            live--;
            if (pid == spare)
                spare = -1;
        }
        if (spare < 0 || taken) {
            /* Dead, or the daemon has it now: ours are only copies. */
            if (spare_fds[0] >= 0) {
                close(spare_fds[0]);
                close(spare_fds[1]);
                spare_fds[0] = spare_fds[1] = -1;
            }
            spare = -1;
        }
        if (!taken) {
            if (spare > 0) {
                pid = spare;
                fds[0] = spare_fds[0];
                fds[1] = spare_fds[1];
                spare = -1;
                spare_fds[0] = spare_fds[1] = -1;
            } else if (live >= max_children) {
                r = send_forked(chan, SF_FRAME_FORKED, -EAGAIN, 0, NULL);
                if (r < 0)
                    return r;
                continue;
            } else {
                pid = fork_instance(self, false, &fds[0], &fds[1]);
                if (pid == 0)
                    return 0;
                if (pid < 0) {
                    r = send_forked(chan, SF_FRAME_FORKED, pid, 0, NULL);
                    if (r < 0)
                        return r;
                    continue;
                }
                live++;
            }
            r = send_forked(chan, SF_FRAME_FORKED, 0, pid, fds);
            close(fds[0]);
            close(fds[1]);
            if (r < 0)
                return r;
        }
        /* The next spare, offered at once. A taken-spare FORK always gets
         * a SPARE back, if only to say none could be made. */
        pid = live < max_children
                  ? fork_instance(self, true, &spare_fds[0], &spare_fds[1])
                  : -EAGAIN;
        if (pid == 0)
            return 0;
        if (pid > 0) {
            spare = pid;
            live++;
            r = send_forked(chan, SF_FRAME_SPARE, 0, pid, spare_fds);
        } else {
            r = taken ? send_forked(chan, SF_FRAME_SPARE, pid, 0, NULL) : 0;
        }
        if (r < 0)
            return r;
    }
}

static int do_invoke(int fd, uint64_t id, const char *payload, size_t len)
{
    sf_invoke inv;
    sofaas_header *hdrs = NULL;
    sofaas_request req;
    sf_response out;
    char *meta = NULL;
    size_t meta_len;
    sf_frame_hdr *fh;
    int rc, r, pending = 0;

    if (fn_handle == NULL)
        return -EPROTO;
    if (sf_ipc_decode_invoke(payload, len, &inv, &hdrs) < 0)
        return -EPROTO;
    req = (sofaas_request){
        .method = inv.method,
        .path = inv.path,
        .query = inv.query,
        .headers = inv.headers,
        .header_count = inv.header_count,
        .body = inv.body,
        .body_len = inv.body_len,
        .request_id = inv.request_id,
    };
    sf_response_reset(&response);
    rc = fn_handle(&req, &response);
    fflush(stdout);
    fflush(stderr);
    free(hdrs);

    out = (sf_response){.status = response.status,
                        .rc = rc,
                        .headers = response.headers,
                        .header_count = response.header_count,
                        .body = response.body,
                        .body_len = response.body_len};
    r = sf_ipc_encode_response(&out, id, &meta, &meta_len);
    if (r < 0)
        return r;
    fh = (sf_frame_hdr *)meta;
    if (response.overflow)
        fh->flags |= SF_RESPONSE_F_OVERFLOW;
    /* Tells the daemon whether it must read our output pipe before it
     * closes this invocation's log (it skips two reads when not). Counted
     * after the flushes above, so nothing this call wrote is missed. */
    if (ioctl(STDOUT_FILENO, FIONREAD, &pending) != 0 || pending > 0)
        fh->flags |= SF_RESPONSE_F_OUTPUT;
    {
        struct iovec iov[2] = {{meta, meta_len},
                               {response.body, response.body_len}};
        r = write_iov(fd, iov, response.body_len ? 2 : 1);
    }
    free(meta);
    return r;
}

int sf_worker_serve(int fd)
{
    sf_hello_msg hello = {SOFAAS_ABI_VERSION, (uint32_t)getpid()};
    sf_frame_hdr fh = {.len = sizeof(hello), .type = SF_FRAME_HELLO};
    struct iovec iov[2] = {{&fh, sizeof(fh)}, {&hello, sizeof(hello)}};
    char *payload = NULL; /* the current frame's payload */
    size_t payload_cap = 0;
    int r;

    if (write_iov(fd, iov, 2) < 0)
        return 1;
    for (;;) {
        sf_frame_hdr h;

        r = read_input(fd, &h, sizeof(h));
        if (r == -EPIPE)
            return 0; /* daemon closed the channel: retire quietly */
        if (r < 0)
            return 1;
        if (sf_ipc_check_hdr(&h, false) < 0) {
            SF_ERR("msg=\"protocol error from daemon\" type=%u len=%u",
                   h.type, h.len);
            return 1;
        }
        /* +1: room for a NUL after the body, as a courtesy to C strings.
         * Kept between frames (no allocation per invocation); a buffer
         * grown by one large body is given back after it. */
        if ((size_t)h.len + 1 > payload_cap ||
            (payload_cap > (1u << 20) && (size_t)h.len + 1 <= (64u << 10))) {
            size_t cap = (size_t)h.len + 1 < (64u << 10) ? (64u << 10)
                                                         : (size_t)h.len + 1;
            free(payload);
            payload = malloc(cap);
            payload_cap = payload ? cap : 0;
            if (payload == NULL)
                return 1;
        }
        r = read_input(fd, payload, h.len);
        if (r < 0)
            return r == -EPIPE ? 0 : 1;
        payload[h.len] = '\0';
        switch (h.type) {
        case SF_FRAME_LOAD:
            r = do_load(fd, payload, h.len);
            if (r == SERVE_TEMPLATE) {
                r = template_loop(fd);
                if (r == -EPIPE)
                    return 0;
                if (r < 0)
                    return 1;
                /* A new child: serve on SF_IPC_FD (same number as fd). */
                continue;
            }
            break;
        case SF_FRAME_INVOKE:
            r = do_invoke(fd, h.id, payload, h.len);
            break;
        default:
            r = -EPROTO;
        }
        if (r == -ENOEXEC)
            wait_for_eof(fd);
        if (r < 0)
            return r == -ENOEXEC ? 2 : 1;
    }
}
