/*
 * hostile.c - a function that tries to escape its sandbox, for
 * tests/integration/test_sandbox.py. Built three times (CMakeLists.txt):
 *
 *   hostile       attacks from sofaas_handle; the attack is the query
 *                 "attack=NAME[&arg=VALUE]".
 *   hostile_ctor  attacks from a constructor, i.e. inside dlopen; the
 *                 attack comes from the function's env (ATTACK, ATTACK_ARG).
 *   hostile_init  attacks from sofaas_init, same env keys.
 *
 * An attack the seccomp filter traps never returns (the worker dies and the
 * daemon answers 500 sandbox_violation). One the kernel refuses another
 * way reports "refused: ERRNO"; one that worked reports "ESCAPED: ...".
 * The ctor/init builds keep their report and return it from sofaas_handle.
 * ATTACK=late_thread ATTACK_ARG=NAME starts a thread there that runs
 * attack NAME only when the first request comes (from sofaas_handle).
 * Attacks that could hurt this machine if the sandbox were off (kill -1)
 * first check that they are confined and report "skipped" otherwise.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "sofaas.h"

#ifndef HOSTILE_STAGE
#define HOSTILE_STAGE 0 /* 0 handle, 1 constructor, 2 init */
#endif

extern char **environ;

static char report[8192];

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(report, sizeof(report), fmt, ap);
    va_end(ap);
}

static void refused(const char *what)
{
    say("refused: %s (%s)", strerrorname_np(errno), what);
}

/* True when this process runs under a seccomp filter and not as root. */
static int confined(void)
{
    char line[256];
    int ok = 0;
    FILE *f = fopen("/proc/self/status", "re");

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strcmp(line, "Seccomp:\t2\n") == 0)
            ok = 1;
    fclose(f);
    return ok && getuid() != 0;
}

static void slurp(const char *path)
{
    char buf[512];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0) {
        refused(path);
        return;
    }
    n = read(fd, buf, sizeof(buf));
    close(fd);
    say("ESCAPED: read %zd bytes of %s", n, path);
}

static void connect_to(int family, const char *arg)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int s = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (s < 0) {
        refused("socket");
        return;
    }
    memset(&ss, 0, sizeof(ss));
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)atoi(arg));
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(*in);
    } else {
        struct sockaddr_un *un = (struct sockaddr_un *)&ss;
        un->sun_family = AF_UNIX;
        /* "@name" is an abstract address. */
        snprintf(un->sun_path, sizeof(un->sun_path), "%s", arg);
        if (arg[0] == '@')
            un->sun_path[0] = '\0';
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(arg));
    }
    if (connect(s, (struct sockaddr *)&ss, len) != 0)
        refused("connect");
    else
        say("connected");
    close(s);
}

static void fill_tmp(void)
{
    static char chunk[1 << 20];
    size_t total = 0;
    char path[64];

    memset(chunk, 'x', sizeof(chunk));
    for (int i = 0; i < 10000; i++) {
        int fd;
        snprintf(path, sizeof(path), "/tmp/fill.%d", i);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            say("refused: %s after %zu bytes (open)", strerrorname_np(errno),
                total);
            return;
        }
        /* 1 MiB files: RLIMIT_FSIZE (tmp_mb) never stops one, so the
         * tmpfs size is what must. */
        for (int j = 0; j < 1; j++) {
            ssize_t n = write(fd, chunk, sizeof(chunk));
            if (n < 0) {
                say("refused: %s after %zu bytes (write)",
                    strerrorname_np(errno), total);
                close(fd);
                return;
            }
            total += (size_t)n;
            if ((size_t)n < sizeof(chunk))
                break;
        }
        close(fd);
    }
    say("ESCAPED: wrote %zu bytes to /tmp", total);
}

static void list_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    size_t n = 0;

    if (d == NULL) {
        refused("opendir /proc/self/fd");
        return;
    }
    report[0] = '\0';
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
            continue;
        n += (size_t)snprintf(report + n, sizeof(report) - n, "%s%s",
                              n ? " " : "", e->d_name);
        if (n >= sizeof(report))
            break;
    }
    closedir(d);
}

static void dump_env(void)
{
    size_t n = 0;

    report[0] = '\0';
    for (char **e = environ; e && *e && n < sizeof(report); e++)
        n += (size_t)snprintf(report + n, sizeof(report) - n, "%s\n", *e);
}

static void *thread_main(void *arg)
{
    return arg;
}

static void attack(const char *name, const char *arg);

/* late_thread: a thread started while loading that attacks only once the
 * instance serves (sofaas_handle wakes it), i.e. after the serve stage
 * tightened the sandbox of the thread that ran the load. */
static int late_go[2] = {-1, -1}, late_done[2] = {-1, -1};
static char late_name[64];

static void *late_main(void *unused)
{
    char c;

    (void)unused;
    if (read(late_go[0], &c, 1) == 1)
        attack(late_name, NULL);
    (void)!write(late_done[1], "x", 1);
    return NULL;
}

static void attack(const char *name, const char *arg)
{
    pid_t pid;

    say("unknown attack '%s'", name ? name : "");
    if (name == NULL)
        return;
    if (strcmp(name, "getpid") == 0) {
        say("%d", getpid());
    } else if (strcmp(name, "fork") == 0) {
        pid = fork();
        if (pid == 0)
            _exit(0);
        if (pid < 0)
            refused("fork");
        else
            say("ESCAPED: forked %d", pid);
    } else if (strcmp(name, "vfork") == 0) {
        pid = vfork();
        if (pid == 0)
            _exit(0);
        if (pid < 0)
            refused("vfork");
        else
            say("ESCAPED: vforked %d", pid);
    } else if (strcmp(name, "clone3") == 0) {
        uint64_t args[11] = {0};
        args[4] = SIGCHLD; /* exit_signal */
        pid = (pid_t)syscall(SYS_clone3, args, 88);
        if (pid == 0)
            _exit(0);
        if (pid < 0)
            refused("clone3");
        else
            say("ESCAPED: clone3 %d", pid);
    } else if (strcmp(name, "system") == 0) {
        int r = system("true");
        if (r == -1)
            refused("system");
        else
            say("ESCAPED: system() returned %d", r);
    } else if (strcmp(name, "execve") == 0) {
        char *argv[] = {"/bin/true", NULL};
        execve(argv[0], argv, environ);
        refused("execve");
    } else if (strcmp(name, "connect_tcp") == 0) {
        connect_to(AF_INET, arg ? arg : "80");
    } else if (strcmp(name, "connect_unix") == 0) {
        connect_to(AF_UNIX, arg ? arg : "/run/systemd/notify");
    } else if (strcmp(name, "ptrace") == 0) {
        if (ptrace(PTRACE_ATTACH, getppid(), NULL, NULL) != 0)
            refused("ptrace");
        else
            say("ESCAPED: attached to %d", getppid());
    } else if (strcmp(name, "vm_readv") == 0) {
        char buf[64];
        struct iovec l = {buf, sizeof(buf)}, r = {(void *)0x400000, 64};
        if (process_vm_readv(getppid(), &l, 1, &r, 1, 0) < 0)
            refused("process_vm_readv");
        else
            say("ESCAPED: read the daemon's memory");
    } else if (strcmp(name, "kill_parent") == 0 ||
               strcmp(name, "kill_all") == 0 || strcmp(name, "kill_pid") == 0) {
        pid_t target = strcmp(name, "kill_parent") == 0 ? getppid()
                       : strcmp(name, "kill_all") == 0  ? -1
                                                        : atoi(arg ? arg : "0");
        if (!confined() || target == 0) {
            say("skipped: not confined, refusing to kill %d", target);
            return;
        }
        if (kill(target, SIGKILL) != 0)
            refused("kill");
        else
            say("ESCAPED: killed %d", target);
    } else if (strcmp(name, "read") == 0) {
        slurp(arg ? arg : "/etc/shadow");
    } else if (strcmp(name, "write") == 0) {
        int fd = open(arg, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            refused("open for writing");
        } else {
            close(fd);
            say("ESCAPED: created %s", arg);
        }
    } else if (strcmp(name, "write_tmp") == 0) {
        char path[256];
        int fd;
        snprintf(path, sizeof(path), "/tmp/%s", arg ? arg : "x");
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            refused("open in /tmp");
        } else {
            (void)!write(fd, "hi", 2);
            close(fd);
            say("wrote %s", path);
        }
    } else if (strcmp(name, "fill_tmp") == 0) {
        fill_tmp();
    } else if (strcmp(name, "mount") == 0) {
        if (mount("none", "/mnt", "tmpfs", 0, NULL) != 0)
            refused("mount");
        else
            say("ESCAPED: mounted");
    } else if (strcmp(name, "unshare") == 0) {
        if (unshare(CLONE_NEWUSER) != 0)
            refused("unshare");
        else
            say("ESCAPED: unshared");
    } else if (strcmp(name, "setns") == 0) {
        if (setns(0, 0) != 0)
            refused("setns");
        else
            say("ESCAPED: setns");
    } else if (strcmp(name, "keyctl") == 0) {
        if (syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3, 0) < 0)
            refused("keyctl");
        else
            say("ESCAPED: keyctl");
    } else if (strcmp(name, "bpf") == 0) {
        char attr[128] = {0};
        if (syscall(SYS_bpf, 0, attr, sizeof(attr)) < 0)
            refused("bpf");
        else
            say("ESCAPED: bpf");
    } else if (strcmp(name, "perf_event_open") == 0) {
        struct perf_event_attr pa = {.type = PERF_TYPE_SOFTWARE,
                                     .size = sizeof(pa),
                                     .config = PERF_COUNT_SW_CPU_CLOCK};
        if (syscall(SYS_perf_event_open, &pa, 0, -1, -1, 0) < 0)
            refused("perf_event_open");
        else
            say("ESCAPED: perf_event_open");
    } else if (strcmp(name, "io_uring_setup") == 0) {
        char params[120] = {0};
        if (syscall(SYS_io_uring_setup, 1, params) < 0)
            refused("io_uring_setup");
        else
            say("ESCAPED: io_uring");
    } else if (strcmp(name, "userfaultfd") == 0) {
        if (syscall(SYS_userfaultfd, 0) < 0)
            refused("userfaultfd");
        else
            say("ESCAPED: userfaultfd");
    } else if (strcmp(name, "int80") == 0) {
        long r;
        /* i386 getpid through the 32-bit entry point. */
        __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
        say("ESCAPED: i386 getpid returned %ld", r);
    } else if (strcmp(name, "setown") == 0) {
        /* SIGIO for our stdout would go to the daemon. */
        if (fcntl(STDOUT_FILENO, F_SETOWN, getppid()) != 0)
            refused("fcntl F_SETOWN");
        else
            say("ESCAPED: F_SETOWN to %d", getppid());
    } else if (strcmp(name, "sigsys") == 0) {
        if (signal(SIGSYS, SIG_IGN) == SIG_ERR)
            refused("signal(SIGSYS)");
        else
            say("ESCAPED: took over SIGSYS");
    } else if (strcmp(name, "exec_mem") == 0) {
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            refused("mmap PROT_EXEC");
        else
            say("mapped executable memory");
    } else if (strcmp(name, "thread") == 0) {
        /* Not an attack: threads are allowed (docs/sandbox.md). */
        pthread_t t;
        void *ret = NULL;
        int e = pthread_create(&t, NULL, thread_main, (void *)report);
        if (e != 0 || pthread_join(t, &ret) != 0 || ret != report) {
            errno = e;
            refused("pthread_create");
        } else {
            say("thread ok");
        }
    } else if (strcmp(name, "late_thread") == 0) {
        pthread_t t;
        snprintf(late_name, sizeof(late_name), "%s", arg ? arg : "");
        if (pipe(late_go) != 0 || pipe(late_done) != 0 ||
            pthread_create(&t, NULL, late_main, NULL) != 0) {
            refused("late_thread");
        } else {
            pthread_detach(t);
            say("late thread never woken");
        }
    } else if (strcmp(name, "fds") == 0) {
        list_fds();
    } else if (strcmp(name, "env") == 0) {
        dump_env();
    } else if (strcmp(name, "status") == 0) {
        int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, report, sizeof(report) - 1);
        report[n > 0 ? n : 0] = '\0';
        if (fd >= 0)
            close(fd);
        else
            refused("/proc/self/status");
    }
}

#if HOSTILE_STAGE == 1
__attribute__((constructor)) static void at_load(void)
{
    attack(getenv("ATTACK"), getenv("ATTACK_ARG"));
}
#elif HOSTILE_STAGE == 2
int sofaas_init(void)
{
    attack(getenv("ATTACK"), getenv("ATTACK_ARG"));
    return 0;
}
#endif

/* Copies the value of key from a query string into out. */
static const char *param(const char *q, const char *key, char *out, size_t len)
{
    size_t kl = strlen(key);

    while (q != NULL && *q != '\0') {
        const char *amp = strchr(q, '&');
        size_t pl = amp ? (size_t)(amp - q) : strlen(q);
        if (pl > kl && strncmp(q, key, kl) == 0 && q[kl] == '=') {
            snprintf(out, len, "%.*s", (int)(pl - kl - 1), q + kl + 1);
            return out;
        }
        q = amp ? amp + 1 : NULL;
    }
    return NULL;
}

int sofaas_handle(const sofaas_request *req, sofaas_response *res)
{
#if HOSTILE_STAGE == 0
    char name[64], arg[512];
    attack(param(req->query, "attack", name, sizeof(name)),
           param(req->query, "arg", arg, sizeof(arg)));
#else
    (void)req;
    (void)param;
    if (late_go[1] >= 0) {
        char c;
        (void)!write(late_go[1], "g", 1);
        (void)!read(late_done[0], &c, 1);
    }
#endif
    sofaas_set_header(res, "Content-Type", "text/plain");
    return sofaas_printf(res, "%s", report) < 0;
}
