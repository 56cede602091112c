/* test_seccomp.c - the worker's system-call filters and SIGSYS reporter
 * (src/worker/seccomp.c). Each case forks a child that installs the
 * reporter on one end of a socketpair, loads a filter and makes one call;
 * the parent reads what the child reported and how it ended. The first
 * case checks that the programs compiled at build time, once pinned to a
 * pid, are exactly what libseccomp compiles from the rules for that pid
 * (src/worker/seccomp_rules.c). */
#include <errno.h>
#include <linux/audit.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ipc.h"
#include "worker/seccomp.h"
#include "worker/seccomp_rules.h"

enum {
    DO_GETPPID,
    DO_MOUNT,
    DO_KILL_PARENT,
    DO_CLONE3,
    DO_SIGSYS,
    DO_FORK,
    DO_EXEC_MEM,
    DO_TEMPLATE
};

typedef struct outcome {
    int status;         /* waitpid status */
    bool reported;      /* a VIOLATION frame arrived */
    sf_violation_msg v; /* its payload */
    char rc[32];        /* what the child wrote when the call returned */
} outcome;

static void child(int fd, int what, bool serve)
{
    sf_seccomp_opts o = {.network = false, .allow_fork = what == DO_TEMPLATE};
    char err[256];
    long r = 0;

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        sf_seccomp_install_reporter(fd) != 0 ||
        sf_seccomp_load_filter(&o, err, sizeof(err)) != 0 ||
        (serve && sf_seccomp_serve_filter(&o, err, sizeof(err)) != 0))
        _exit(90);
    switch (what) {
    case DO_GETPPID:
        r = syscall(SYS_getppid);
        break;
    case DO_MOUNT:
        r = syscall(SYS_mount, "none", "/", "tmpfs", 0, NULL);
        break;
    case DO_KILL_PARENT:
        r = syscall(SYS_kill, getppid(), 0);
        break;
    case DO_CLONE3: {
        uint64_t args[11] = {0};
        r = syscall(SYS_clone3, args, sizeof(args));
        if (r == 0)
            _exit(0);
        break;
    }
    case DO_SIGSYS: {
        struct sigaction sa = {.sa_handler = SIG_IGN};
        r = sigaction(SIGSYS, &sa, NULL);
        break;
    }
    case DO_FORK:
        r = syscall(SYS_fork);
        if (r == 0)
            _exit(0);
        break;
    case DO_TEMPLATE: {
        /* A template forks (allowed); its child stacks the serve filter
         * and tries to fork again (refused, reported on the inherited fd).
         * The template exits with the child's status. */
        int st;
        pid_t c = fork();
        if (c == 0) {
            if (sf_seccomp_serve_filter(&o, err, sizeof(err)) != 0)
                _exit(91);
            /* fork() as glibc does it: clone without CLONE_THREAD, which
             * the template's own filter allows; only the serve filter can
             * refuse it. */
            syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
            _exit(92);
        }
        if (c < 0 || waitpid(c, &st, 0) != c)
            _exit(93);
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 94);
    }
    case DO_EXEC_MEM: {
        void *p = mmap(NULL, 4096, PROT_READ | PROT_EXEC,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        r = p == MAP_FAILED ? -1 : 0;
        break;
    }
    }
    {
        char out[32];
        int n = snprintf(out, sizeof(out), "%ld %d", r, r < 0 ? errno : 0);
        (void)!write(fd, out, (size_t)n);
    }
    _exit(0);
}

static outcome run(int what, bool serve)
{
    outcome oc;
    int sv[2];
    char buf[256];
    ssize_t n, got = 0;
    pid_t pid;

    memset(&oc, 0, sizeof(oc));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        child(sv[1], what, serve);
    }
    close(sv[1]);
    while ((n = read(sv[0], buf + got, sizeof(buf) - (size_t)got)) > 0)
        got += n;
    close(sv[0]);
    assert_int_equal(waitpid(pid, &oc.status, 0), pid);
    if (got == (ssize_t)(sizeof(sf_frame_hdr) + sizeof(sf_violation_msg))) {
        sf_frame_hdr h;
        memcpy(&h, buf, sizeof(h));
        assert_int_equal(h.type, SF_FRAME_VIOLATION);
        assert_int_equal(h.len, sizeof(sf_violation_msg));
        assert_int_equal(sf_ipc_check_hdr(&h, true), 0);
        memcpy(&oc.v, buf + sizeof(h), sizeof(oc.v));
        oc.reported = true;
    } else if (got > 0 && (size_t)got < sizeof(oc.rc)) {
        memcpy(oc.rc, buf, (size_t)got);
    }
    return oc;
}

static void assert_trapped(const outcome *oc, int nr)
{
    assert_true(oc->reported);
    assert_int_equal(oc->v.syscall_nr, nr);
    assert_int_equal(oc->v.arch, AUDIT_ARCH_X86_64);
    assert_true(WIFEXITED(oc->status));
    assert_int_equal(WEXITSTATUS(oc->status), SF_SECCOMP_EXIT_VIOLATION);
}

static void test_precompiled_programs_are_libseccomps(void **state)
{
    /* Our pid, and pids unlike the generator's. */
    const pid_t pids[] = {getpid(), 1, 4194304, 0x7fffffff};
    (void)state;

    for (unsigned v = 0; v < SF_SECCOMP_VARIANTS; v++) {
        for (size_t k = 0; k < sizeof(pids) / sizeof(*pids); k++) {
            struct sock_filter pre[BPF_MAXINSNS], *lib = NULL;
            size_t len = 0, n;
            char err[256];

            assert_int_equal(
                sf_seccomp_rules_compile(v, pids[k], &lib, &len, err,
                                         sizeof(err)),
                0);
            n = sf_seccomp_program(v, pids[k], pre, BPF_MAXINSNS);
            assert_int_equal(n, len);
            assert_memory_equal(pre, lib, len * sizeof(*lib));
            free(lib);
        }
    }
    /* Out of range or no room: nothing. */
    {
        struct sock_filter one[1];
        assert_int_equal(sf_seccomp_program(SF_SECCOMP_VARIANTS, 1, one, 1),
                         0);
        assert_int_equal(sf_seccomp_program(0, 1, one, 1), 0);
    }
}

static void test_allowed_call_returns(void **state)
{
    outcome oc = run(DO_GETPPID, true);
    (void)state;
    assert_false(oc.reported);
    assert_true(WIFEXITED(oc.status) && WEXITSTATUS(oc.status) == 0);
    assert_true(strstr(oc.rc, " 0") != NULL); /* errno 0 */
}

static void test_mount_is_reported_by_number_and_arch(void **state)
{
    outcome oc = run(DO_MOUNT, false);
    (void)state;
    assert_trapped(&oc, SYS_mount);
}

static void test_signals_only_to_itself(void **state)
{
    outcome oc = run(DO_KILL_PARENT, false);
    (void)state;
    assert_trapped(&oc, SYS_kill);
}

static void test_clone3_is_enosys(void **state)
{
    outcome oc = run(DO_CLONE3, false);
    char want[32];
    (void)state;
    snprintf(want, sizeof(want), "-1 %d", ENOSYS);
    assert_false(oc.reported);
    assert_string_equal(oc.rc, want);
}

static void test_sigsys_action_cannot_change(void **state)
{
    outcome oc = run(DO_SIGSYS, false);
    char want[32];
    (void)state;
    snprintf(want, sizeof(want), "-1 %d", EINVAL);
    assert_false(oc.reported);
    assert_string_equal(oc.rc, want);
}

static void test_fork_refused(void **state)
{
    outcome oc = run(DO_FORK, false);
    (void)state;
    assert_trapped(&oc, SYS_fork);
}

static void test_exec_memory_only_before_serving(void **state)
{
    outcome oc = run(DO_EXEC_MEM, false);
    (void)state;
    assert_false(oc.reported);
    assert_string_equal(oc.rc, "0 0");
    oc = run(DO_EXEC_MEM, true);
    assert_trapped(&oc, SYS_mmap);
}

static void test_template_forks_but_its_children_cannot(void **state)
{
    outcome oc = run(DO_TEMPLATE, false);
    (void)state;
    assert_trapped(&oc, SYS_clone);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precompiled_programs_are_libseccomps),
        cmocka_unit_test(test_allowed_call_returns),
        cmocka_unit_test(test_mount_is_reported_by_number_and_arch),
        cmocka_unit_test(test_signals_only_to_itself),
        cmocka_unit_test(test_clone3_is_enosys),
        cmocka_unit_test(test_sigsys_action_cannot_change),
        cmocka_unit_test(test_fork_refused),
        cmocka_unit_test(test_exec_memory_only_before_serving),
        cmocka_unit_test(test_template_forks_but_its_children_cannot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
