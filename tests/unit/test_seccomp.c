/* test_seccomp.c - the worker's system-call filters and SIGSYS reporter
 * (src/worker/seccomp.c). Each case forks a child that installs the
 * reporter on one end of a socketpair, loads a filter and makes one call;
 * the parent reads what the child reported and how it ended. The first
 * case checks that the programs compiled at build time, once pinned to a
 * pid, are exactly what libseccomp compiles from the rules for that pid
 * (src/worker/seccomp_rules.c). */
#include <errno.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <limits.h>
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

/* ---- PRE with NARROW on top decides as LOAD does ------------------------ */

/*
 * Classic BPF as the kernel runs a seccomp program (the instructions
 * seccomp_check_filter accepts), over one struct seccomp_data. Fails the
 * test on anything else, on a bad load offset or on running off the end.
 */
static uint32_t bpf_run(const struct sock_filter *f, size_t n,
                        const struct seccomp_data *d)
{
    uint32_t A = 0, X = 0, M[BPF_MEMWORDS] = {0};

    for (size_t pc = 0; pc < n; pc++) {
        const struct sock_filter *i = &f[pc];
        uint32_t v = BPF_SRC(i->code) == BPF_X ? X : i->k;

        switch (BPF_CLASS(i->code)) {
        case BPF_LD:
        case BPF_LDX: {
            uint32_t *r = BPF_CLASS(i->code) == BPF_LD ? &A : &X;
            switch (BPF_MODE(i->code)) {
            case BPF_ABS:
                assert_int_equal(BPF_SIZE(i->code), BPF_W);
                assert_true(i->k % 4 == 0 && i->k + 4 <= sizeof(*d));
                memcpy(r, (const char *)d + i->k, 4);
                break;
            case BPF_IMM:
                *r = i->k;
                break;
            case BPF_MEM:
                assert_true(i->k < BPF_MEMWORDS);
                *r = M[i->k];
                break;
            case BPF_LEN:
                *r = sizeof(*d);
                break;
            default:
                fail_msg("load mode %#x", i->code);
            }
            break;
        }
        case BPF_ST:
        case BPF_STX:
            assert_true(i->k < BPF_MEMWORDS);
            M[i->k] = BPF_CLASS(i->code) == BPF_ST ? A : X;
            break;
        case BPF_ALU:
            switch (BPF_OP(i->code)) {
            case BPF_ADD: A += v; break;
            case BPF_SUB: A -= v; break;
            case BPF_MUL: A *= v; break;
            case BPF_DIV: assert_true(v != 0); A /= v; break;
            case BPF_MOD: assert_true(v != 0); A %= v; break;
            case BPF_OR: A |= v; break;
            case BPF_AND: A &= v; break;
            case BPF_XOR: A ^= v; break;
            case BPF_LSH: A = v < 32 ? A << v : 0; break;
            case BPF_RSH: A = v < 32 ? A >> v : 0; break;
            case BPF_NEG: A = -A; break;
            default: fail_msg("alu op %#x", i->code);
            }
            break;
        case BPF_JMP: {
            bool c;
            switch (BPF_OP(i->code)) {
            case BPF_JA: pc += i->k; continue;
            case BPF_JEQ: c = A == v; break;
            case BPF_JGT: c = A > v; break;
            case BPF_JGE: c = A >= v; break;
            case BPF_JSET: c = (A & v) != 0; break;
            default: fail_msg("jump op %#x", i->code); return 0;
            }
            pc += c ? i->jt : i->jf;
            break;
        }
        case BPF_RET:
            return BPF_RVAL(i->code) == BPF_A ? A : i->k;
        case BPF_MISC:
            if (BPF_MISCOP(i->code) == BPF_TAX)
                X = A;
            else
                A = X;
            break;
        default:
            fail_msg("instruction class %#x", i->code);
        }
    }
    fail_msg("ran off the end of the program");
    return 0;
}

/* Two stacked filters: the kernel runs every filter and keeps the action
 * of highest precedence (lowest signed action value); for equal ones, the
 * newest filter's (seccomp_run_filters). */
static uint32_t stacked(uint32_t older, uint32_t newer)
{
    return (int32_t)(older & SECCOMP_RET_ACTION_FULL) <
                   (int32_t)(newer & SECCOMP_RET_ACTION_FULL)
               ? older
               : newer;
}

/* Adds to vals[arg] (n[arg] so far, cap) each 32-bit constant the program
 * compares a word of argument arg with (its k after a load from there). */
static void arg_constants(const struct sock_filter *f, size_t len,
                          uint32_t vals[6][128], size_t n[6])
{
    uint32_t from = 0;

    for (size_t i = 0; i < len; i++) {
        uint16_t c = f[i].code;
        size_t arg;
        bool seen = false;

        if (c == (BPF_LD | BPF_W | BPF_ABS))
            from = f[i].k;
        if (BPF_CLASS(c) != BPF_JMP && BPF_CLASS(c) != BPF_ALU)
            continue;
        if (BPF_SRC(c) != BPF_K || BPF_OP(c) == BPF_JA ||
            from < offsetof(struct seccomp_data, args))
            continue;
        arg = (from - offsetof(struct seccomp_data, args)) / 8;
        for (size_t j = 0; j < n[arg] && !seen; j++)
            seen = vals[arg][j] == f[i].k;
        if (!seen && n[arg] < 128)
            vals[arg][n[arg]++] = f[i].k;
    }
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/*
 * For every load variant: every system call number (and some beyond the
 * table), on this architecture and two others, with all-zero arguments,
 * with each argument set to each constant any of the three programs
 * compares that argument with (and one above and below it, under a zero
 * and an all-ones high word), and with random arguments: LOAD's answer
 * must equal PRE's and NARROW's stacked.
 */
static void test_pre_with_narrow_is_load(void **state)
{
    static struct sock_filter load[BPF_MAXINSNS], pre[BPF_MAXINSNS],
        narrow[BPF_MAXINSNS];
    static const uint32_t archs[] = {AUDIT_ARCH_X86_64, AUDIT_ARCH_I386,
                                     0x12345678};
    static const uint32_t highs[] = {0, 0xffffffffu};
    pid_t self = getpid();
    sf_seccomp_opts all = {.network = true, .allow_fork = true};
    size_t npre, checked = 0;
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    (void)state;

    npre = sf_seccomp_program(sf_seccomp_variant(SF_SECCOMP_PRE, &all), self,
                              pre, BPF_MAXINSNS);
    assert_true(npre > 0);
    for (unsigned opt = 0; opt < 4; opt++) {
        sf_seccomp_opts o = {.network = (opt & 2u) != 0,
                             .allow_fork = (opt & 1u) != 0};
        size_t nload = sf_seccomp_program(
            sf_seccomp_variant(SF_SECCOMP_LOAD, &o), self, load, BPF_MAXINSNS);
        size_t nnarrow =
            sf_seccomp_program(sf_seccomp_variant(SF_SECCOMP_NARROW, &o), self,
                               narrow, BPF_MAXINSNS);
        uint32_t consts[6][128];
        size_t nc[6] = {0}, nvar = 0;

        assert_true(nload > 0 && nnarrow > 0);
        /* NARROW is the point: much shorter than LOAD. */
        assert_true(nnarrow * 3 < nload);
        arg_constants(load, nload, consts, nc);
        arg_constants(pre, npre, consts, nc);
        arg_constants(narrow, nnarrow, consts, nc);
        for (int k = 0; k < 6; k++)
            nvar += nc[k] * 6; /* k-1, k, k+1 under two high words */
        for (size_t a = 0; a < sizeof(archs) / sizeof(*archs); a++) {
            for (uint32_t nr = 0; nr < 520; nr++) {
                uint32_t nrs[] = {nr, nr | 0x40000000u, 0xffffffffu - nr};
                for (size_t w = 0; w < (nr < 8 ? 3u : 1u); w++) {
                    size_t variations = a == 0 && w == 0 ? 1 + nvar + 32 : 1;

                    for (size_t t = 0; t < variations; t++) {
                        struct seccomp_data d;
                        uint32_t want, got;

                        memset(&d, 0, sizeof(d));
                        d.nr = (int)nrs[w];
                        d.arch = archs[a];
                        if (t > 0 && t <= nvar) {
                            size_t u = t - 1, arg = 0;
                            while (u >= nc[arg] * 6)
                                u -= nc[arg++] * 6;
                            d.args[arg] =
                                (uint64_t)highs[(u / 3) % 2] << 32 |
                                (uint32_t)(consts[arg][u / 6] +
                                           (uint32_t)(u % 3) - 1u);
                        } else if (t > 0) {
                            for (int k = 0; k < 6; k++)
                                d.args[k] = xorshift(&seed);
                        }
                        want = bpf_run(load, nload, &d);
                        got = stacked(bpf_run(pre, npre, &d),
                                      bpf_run(narrow, nnarrow, &d));
                        if (want != got)
                            fail_msg("variant net=%d fork=%d arch=%#x nr=%d "
                                     "args=%#llx,%#llx,%#llx: LOAD %#x, "
                                     "PRE+NARROW %#x",
                                     o.network, o.allow_fork, d.arch, d.nr,
                                     (unsigned long long)d.args[0],
                                     (unsigned long long)d.args[1],
                                     (unsigned long long)d.args[2], want, got);
                        checked++;
                    }
                }
            }
        }
    }
    /* End to end, every worker of a root daemon runs PRE and NARROW
     * (test_sandbox.py's attacks); this checks the rules, input by input. */
    print_message("checked %zu inputs\n", checked);
    assert_true(checked > 100000);
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
        cmocka_unit_test(test_pre_with_narrow_is_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
