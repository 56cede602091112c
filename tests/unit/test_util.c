/* test_util.c - ids, parsing and comparison helpers (src/util.c),
 * and the per-function config validation (src/fnconfig.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fnconfig.h"
#include "util.h"

static void test_uuid7(void **state)
{
    char a[37], b[37];
    (void)state;
    sf_uuid7(a);
    sf_uuid7(b);
    assert_int_equal(strlen(a), 36);
    assert_true(a[8] == '-' && a[13] == '-' && a[18] == '-' && a[23] == '-');
    assert_true(a[14] == '7');                      /* version */
    assert_non_null(strchr("89ab", a[19]));         /* variant */
    assert_string_not_equal(a, b);
    /* time-ordered: the 48-bit ms prefix never goes backwards */
    assert_true(memcmp(a, b, 8) <= 0);
}

/* The buffered pool hands out fresh bytes across refills (4 KiB). */
static void test_random_bytes(void **state)
{
    unsigned char a[3000], b[3000];
    (void)state;
    assert_int_equal(sf_random_bytes(a, sizeof(a)), 0);
    assert_int_equal(sf_random_bytes(b, sizeof(b)), 0);
    assert_memory_not_equal(a, b, sizeof(a));
    assert_memory_not_equal(a, a + 1500, 1500);
}

static void test_strlcpy_fmt(void **state)
{
    char d[8], n[21];
    (void)state;
    assert_int_equal(sf_strlcpy(d, "abc", sizeof(d)), 3);
    assert_string_equal(d, "abc");
    assert_int_equal(sf_strlcpy(d, "abcdefghij", sizeof(d)), 7);
    assert_string_equal(d, "abcdefg");
    assert_int_equal(sf_strlcpy(d, "", sizeof(d)), 0);
    assert_string_equal(d, "");
    assert_int_equal(sf_fmt_u64(0, n), 1);
    assert_string_equal(n, "0");
    assert_int_equal(sf_fmt_u64(1234567890, n), 10);
    assert_string_equal(n, "1234567890");
    assert_int_equal(sf_fmt_u64(UINT64_MAX, n), 20);
    assert_string_equal(n, "18446744073709551615");
}

static void test_parse_u64(void **state)
{
    uint64_t v;
    (void)state;
    assert_int_equal(sf_parse_u64("123", 3, 1000, &v), 0);
    assert_int_equal(v, 123);
    assert_int_equal(sf_parse_u64("", 0, 1000, &v), -EINVAL);
    assert_int_equal(sf_parse_u64("-1", 2, 1000, &v), -EINVAL);
    assert_int_equal(sf_parse_u64("12a", 3, 1000, &v), -EINVAL);
    assert_int_equal(sf_parse_u64("1001", 4, 1000, &v), -ERANGE);
    assert_int_equal(sf_parse_u64("99999999999999999999", 20, UINT64_MAX, &v),
                     -ERANGE);
}

static void test_ct_equal(void **state)
{
    (void)state;
    assert_true(sf_ct_equal("secret", 6, "secret", 6));
    assert_false(sf_ct_equal("secret", 6, "secreT", 6));
    assert_false(sf_ct_equal("secret", 6, "secret1", 7));
    assert_false(sf_ct_equal("", 0, "x", 1));
}

static void test_query_get(void **state)
{
    size_t l;
    const char *v;
    (void)state;
    v = sf_query_get("a=1&bb=22&c", "bb", &l);
    assert_non_null(v);
    assert_int_equal(l, 2);
    assert_memory_equal(v, "22", 2);
    v = sf_query_get("a=1&bb=22&c", "c", &l);
    assert_non_null(v);
    assert_int_equal(l, 0);
    assert_null(sf_query_get("a=1&bb=22", "b", &l));
}

static void test_fnconfig(void **state)
{
    sf_fn_config c;
    char err[256];
    cJSON *j;
    (void)state;

    sf_fn_config_defaults(&c);
    assert_int_equal(c.timeout_ms, 3000);
    assert_int_equal(c.memory_mb, 128);

    j = cJSON_Parse("{\"timeout_ms\":50,\"env\":{\"A\":\"1\",\"B_2\":\"x=y\"},"
                    "\"network\":true,\"template\":false}");
    assert_int_equal(sf_fn_config_apply_json(&c, j, err, sizeof(err)), 0);
    cJSON_Delete(j);
    assert_int_equal(c.timeout_ms, 50);
    assert_true(c.network);
    assert_int_equal(c.template_mode, SF_TEMPLATE_OFF);
    assert_int_equal(c.env_len, 4 + 8);
    assert_string_equal(c.env, "A=1");
    assert_string_equal(c.env + 4, "B_2=x=y");

    /* errors name the key and leave the config untouched */
    j = cJSON_Parse("{\"memory_mb\":8}");
    assert_int_equal(sf_fn_config_apply_json(&c, j, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "memory_mb"));
    cJSON_Delete(j);
    assert_int_equal(c.memory_mb, 128);
    j = cJSON_Parse("{\"bogus\":1}");
    assert_int_equal(sf_fn_config_apply_json(&c, j, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "bogus"));
    cJSON_Delete(j);
    j = cJSON_Parse("{\"env\":{\"1BAD\":\"x\"}}");
    assert_int_equal(sf_fn_config_apply_json(&c, j, err, sizeof(err)),
                     -EINVAL);
    cJSON_Delete(j);
    j = cJSON_Parse("{\"timeout_ms\":1.5}");
    assert_int_equal(sf_fn_config_apply_json(&c, j, err, sizeof(err)),
                     -EINVAL);
    cJSON_Delete(j);

    assert_int_equal(sf_fn_config_apply_param(&c, "memory_mb", 9, "256", 3,
                                              err, sizeof(err)), 0);
    assert_int_equal(c.memory_mb, 256);
    assert_int_equal(sf_fn_config_apply_param(&c, "network", 7, "maybe", 5,
                                              err, sizeof(err)), -EINVAL);
    assert_false(c.file_access);
    assert_int_equal(sf_fn_config_apply_param(&c, "file_access", 11, "true",
                                              4, err, sizeof(err)), 0);
    assert_true(c.file_access);
    j = cJSON_Parse("{\"file_access\":\"yes\"}");
    assert_int_equal(sf_fn_config_apply_json(&c, j, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "file_access"));
    cJSON_Delete(j);
    assert_int_equal(sf_fn_config_apply_param(&c, "env", 3, "x", 1, err,
                                              sizeof(err)), -EINVAL);
}

/* A child whose command name looks like more /proc/PID/stat fields. */
static void test_proc_ppid(void **state)
{
    int sync[2];
    char c;
    pid_t pid;

    (void)state;
    assert_int_equal(pipe(sync), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_NAME, "x) R 1 2 (y) 3");
        (void)write(sync[1], "n", 1);
        pause();
        _exit(0);
    }
    assert_int_equal(read(sync[0], &c, 1), 1);
    assert_int_equal(sf_proc_ppid(pid), getpid());
    assert_int_equal(sf_proc_ppid(getpid()), getppid());
    kill(pid, SIGKILL);
    /* A zombie still names its parent; a reaped pid is gone. */
    {
        siginfo_t si;
        assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT),
                         0);
    }
    assert_int_equal(sf_proc_ppid(pid), getpid());
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    assert_int_equal(sf_proc_ppid(pid), -ENOENT);
    close(sync[0]);
    close(sync[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uuid7),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_strlcpy_fmt),
        cmocka_unit_test(test_parse_u64),
        cmocka_unit_test(test_ct_equal),
        cmocka_unit_test(test_query_get),
        cmocka_unit_test(test_fnconfig),
        cmocka_unit_test(test_proc_ppid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
