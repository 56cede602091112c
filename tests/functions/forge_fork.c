/* forge_fork - hostile: its sofaas_init takes over the worker's channel
 * (fd 3) and answers LOAD itself. With VICTIM in the environment it then
 * answers each FORK with a forged FORKED naming a process that is not its
 * child ("parent" is the daemon, "self" the worker itself), with a
 * socketpair and a pipe attached as a real template would: a daemon that
 * trusted the pid would track, move into a memory cgroup and finally
 * SIGKILL that process; with VIA_SPARE as well it hands over a real child
 * and then offers the victim as the next spare (SPARE, descriptors
 * attached). With FLOOD it forks a real child and sends SPARE
 * frames for it, unasked, over and over: each would cost the daemon a
 * cgroup leaf and a move. With FDFLOOD it answers a FORK with a FORKED
 * sent a byte at a time, 64 descriptors attached to each byte. The frames are written out here by hand, from
 * the protocol in src/ipc.h. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "sofaas.h"

struct hdr {
    uint32_t len;
    uint16_t type;
    uint16_t flags;
    uint64_t id;
};

enum { LOADED = 3, FORK = 7, FORKED = 8, SPARE = 9 };

static int read_full(int fd, void *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return -1;
        p = (char *)p + r;
        n -= (size_t)r;
    }
    return 0;
}

static void send_loaded(void)
{
    struct {
        struct hdr h;
        int32_t status;
        uint32_t msg_len;
        char nul;
    } __attribute__((packed)) loaded = {{9, LOADED, 0, 0}, 0, 0, 0};

    if (write(3, &loaded, sizeof(loaded)) != (ssize_t)sizeof(loaded))
        _exit(1);
}

/* Sends len bytes with nfds descriptors attached (SCM_RIGHTS). */
static int send_fds(const void *buf, size_t len, const int *fds, int nfds)
{
    struct iovec iov = {(void *)buf, len};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(64 * sizeof(int))];
    } cm;
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = cm.buf,
                         .msg_controllen = CMSG_SPACE(nfds * sizeof(int))};
    struct cmsghdr *c;

    if (nfds < 1 || nfds > 64)
        return -1;
    memset(&cm, 0, sizeof(cm));
    c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    return sendmsg(3, &msg, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

static void flood(void)
{
    pid_t child = fork();
    struct {
        struct hdr h;
        int32_t status;
        uint32_t pid;
    } m = {{8, SPARE, 0, 0}, 0, 0};

    if (child == 0) {
        pause();
        _exit(0);
    }
    m.pid = (uint32_t)child;
    send_loaded();
    for (int i = 0; i < 1000; i++)
        if (write(3, &m, sizeof(m)) != (ssize_t)sizeof(m))
            break;
    pause();
    _exit(0);
}

/* Sends a FORKED or SPARE frame naming pid, with a fresh socketpair's end
 * and a pipe's read end attached, as a real template would. */
static void send_claim(uint16_t type, pid_t pid)
{
    struct {
        struct hdr h;
        int32_t status;
        uint32_t pid;
    } m = {{8, type, 0, 0}, 0, (uint32_t)pid};
    int fds[2], sv[2], op[2];

    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || pipe(op) < 0)
        _exit(1);
    fds[0] = sv[0];
    fds[1] = op[0];
    send_fds(&m, sizeof(m), fds, 2);
    /* The "instance" then dies at once: a daemon that adopted the victim
     * would now kill it. */
    close(sv[0]);
    close(sv[1]);
    close(op[0]);
    close(op[1]);
}

/* On the first FORK: a well-formed FORKED, one byte at a time, each byte
 * with 64 descriptors attached (one pipe's two ends, 32 times over): a
 * daemon that kept descriptors until a frame is complete would hold 1536
 * of them before it could look at the frame. */
static void fd_flood(void)
{
    struct hdr h;
    struct {
        struct hdr h;
        int32_t status;
        uint32_t pid;
    } m = {{8, FORKED, 0, 0}, 0, 1};
    int p[2], fds[64];

    send_loaded();
    if (read_full(3, &h, sizeof(h)) != 0 || pipe(p) < 0)
        _exit(0);
    for (int i = 0; i < 64; i++)
        fds[i] = p[i % 2];
    for (size_t i = 0; i < sizeof(m); i++) {
        if (send_fds((char *)&m + i, 1, fds, 64) < 0)
            break;
        usleep(1000); /* one read each */
    }
    pause();
    _exit(0);
}

/* Answers each FORK with a forged FORKED naming victim; with via_spare,
 * with a real child in FORKED and then a SPARE naming victim. */
static void forge(pid_t victim, int via_spare)
{
    struct hdr h;

    send_loaded();
    while (read_full(3, &h, sizeof(h)) == 0) {
        if (h.type != FORK)
            continue;
        if (via_spare) {
            pid_t child = fork();
            if (child == 0) {
                sleep(5);
                _exit(0);
            }
            send_claim(FORKED, child);
            send_claim(SPARE, victim);
        } else {
            send_claim(FORKED, victim);
        }
    }
    _exit(0);
}

int sofaas_init(void)
{
    const char *v = getenv("VICTIM");

    if (getenv("FLOOD") != NULL)
        flood();
    if (getenv("FDFLOOD") != NULL)
        fd_flood();
    if (v == NULL)
        return 0;
    forge(strcmp(v, "self") == 0 ? getpid() : getppid(),
          getenv("VIA_SPARE") != NULL);
    return 0;
}

int sofaas_handle(const sofaas_request *req, sofaas_response *res)
{
    (void)req;
    return sofaas_printf(res, "ok\n") < 0;
}
