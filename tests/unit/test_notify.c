/* test_notify.c - sd_notify and sd_listen_fds as implemented in
 * src/notify.c: abstract and path sockets, environment scrubbing,
 * watchdog parsing, LISTEN_PID checks and fd name selection. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../src/notify.c"

static int bind_dgram(const char *name, bool abstract)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    socklen_t len;
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);

    assert_true(fd >= 0);
    if (abstract) {
        a.sun_path[0] = '\0';
        memcpy(a.sun_path + 1, name, strlen(name));
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                          strlen(name));
    } else {
        unlink(name);
        strcpy(a.sun_path, name);
        len = sizeof(a);
    }
    assert_int_equal(bind(fd, (struct sockaddr *)&a, len), 0);
    return fd;
}

static void expect_msg(int fd, const char *want)
{
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void test_abstract_socket_and_scrub(void **state)
{
    char name[64], env[80];
    int fd;
    (void)state;
    snprintf(name, sizeof(name), "sofaas-unit-%d", (int)getpid());
    fd = bind_dgram(name, true);
    snprintf(env, sizeof(env), "@%s", name);
    setenv("NOTIFY_SOCKET", env, 1);
    setenv("WATCHDOG_USEC", "3000000", 1);
    unsetenv("WATCHDOG_PID");
    assert_int_equal(sf_notify_init(), 0);
    assert_true(sf_notify_enabled());
    assert_null(getenv("NOTIFY_SOCKET"));
    assert_null(getenv("WATCHDOG_USEC"));
    assert_int_equal(sf_notify_watchdog_usec(), 3000000);
    assert_int_equal(sf_notify("READY=1\nSTATUS=%s", "up"), 0);
    expect_msg(fd, "READY=1\nSTATUS=up");
    sf_notify_close();
    assert_false(sf_notify_enabled());
    assert_int_equal(sf_notify("WATCHDOG=1"), 0); /* disabled: no-op */
    close(fd);
}

static void test_path_socket_and_watchdog_pid(void **state)
{
    char path[64], pid[32];
    int fd;
    (void)state;
    snprintf(path, sizeof(path), "/tmp/sofaas-unit-notify-%d", (int)getpid());
    fd = bind_dgram(path, false);
    setenv("NOTIFY_SOCKET", path, 1);
    setenv("WATCHDOG_USEC", "1000", 1);
    setenv("WATCHDOG_PID", "1", 1); /* not us: no watchdog */
    watchdog_usec = 0;
    assert_int_equal(sf_notify_init(), 0);
    assert_int_equal(sf_notify_watchdog_usec(), 0);
    assert_null(getenv("WATCHDOG_PID"));
    assert_int_equal(sf_notify("STOPPING=1"), 0);
    expect_msg(fd, "STOPPING=1");
    sf_notify_close();

    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    setenv("WATCHDOG_USEC", "1000", 1);
    setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(sf_notify_init(), 0); /* no NOTIFY_SOCKET: disabled */
    assert_false(sf_notify_enabled());
    assert_int_equal(sf_notify_watchdog_usec(), 1000);
    close(fd);
    unlink(path);
}

static void test_bad_notify_address(void **state)
{
    (void)state;
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    assert_int_equal(sf_notify_init(), -EINVAL);
    assert_false(sf_notify_enabled());
    assert_null(getenv("NOTIFY_SOCKET"));
}

static void test_name_index(void **state)
{
    (void)state;
    assert_int_equal(name_index("http", "http"), 0);
    assert_int_equal(name_index("metrics:http", "http"), 1);
    assert_int_equal(name_index("a:b:c", "http"), -1);
    assert_int_equal(name_index("httpx:http", "http"), 1);
    assert_int_equal(name_index("", "http"), -1);
}

static void test_listen_fds_not_ours(void **state)
{
    char why[128];
    int fd = 7;
    (void)state;
    setenv("LISTEN_PID", "1", 1);
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_FDNAMES", "http", 1);
    assert_int_equal(sf_listen_fds_take(&fd, why, sizeof(why)), 0);
    assert_int_equal(fd, -1);
    assert_null(getenv("LISTEN_PID"));
    assert_null(getenv("LISTEN_FDS"));
    assert_null(getenv("LISTEN_FDNAMES"));
    /* Nothing set at all. */
    assert_int_equal(sf_listen_fds_take(&fd, why, sizeof(why)), 0);
    assert_int_equal(fd, -1);
}

static void test_listen_fds_ambiguous(void **state)
{
    char why[128], pid[32];
    int fd;
    (void)state;
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "2", 1);
    setenv("LISTEN_FDNAMES", "a:b", 1);
    assert_int_equal(sf_listen_fds_take(&fd, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "none named http"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abstract_socket_and_scrub),
        cmocka_unit_test(test_path_socket_and_watchdog_pid),
        cmocka_unit_test(test_bad_notify_address),
        cmocka_unit_test(test_name_index),
        cmocka_unit_test(test_listen_fds_not_ours),
        cmocka_unit_test(test_listen_fds_ambiguous),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
