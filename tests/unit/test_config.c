/* test_config.c - the config module (src/config.c): defaults, flags, the
 * JSON file, error messages naming key paths, diffing for SIGHUP. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "config.h"

/* Runs sf_config_load on a NULL-terminated flag list; errors land in
 * errbuf. */
static enum sf_config_action load(sf_config *c, char *errbuf, size_t len, ...)
{
    char *argv[32] = {"sofaasd"};
    int argc = 1;
    va_list ap;
    char *a;
    FILE *err = fmemopen(errbuf, len, "w");
    enum sf_config_action act;

    va_start(ap, len);
    while ((a = va_arg(ap, char *)) != NULL && argc < 31)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    memset(errbuf, 0, len);
    act = sf_config_load(c, argc, argv, err);
    fclose(err);
    return act;
}

static char *write_tmp(const char *text)
{
    static char path[64];
    int fd;

    snprintf(path, sizeof(path), "/tmp/sofaas-test-config-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_parse_listen(void **state)
{
    char host[64];
    int port = -1;
    (void)state;
    assert_int_equal(
        sf_config_parse_listen("127.0.0.1:8080", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_int_equal(
        sf_config_parse_listen("[::1]:0", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 0);
    assert_int_equal(sf_config_parse_listen("8080", host, sizeof(host), &port),
                     -EINVAL);
    assert_int_equal(sf_config_parse_listen(":8080", host, sizeof(host), &port),
                     -EINVAL);
    assert_int_equal(sf_config_parse_listen("h:", host, sizeof(host), &port),
                     -EINVAL);
    assert_int_equal(
        sf_config_parse_listen("h:65536", host, sizeof(host), &port), -EINVAL);
    assert_int_equal(sf_config_parse_listen("h:80x", host, sizeof(host), &port),
                     -EINVAL);
    assert_int_equal(sf_config_parse_listen("[]:80", host, sizeof(host), &port),
                     -EINVAL);
}

static void test_defaults_and_flags(void **state)
{
    sf_config c;
    char err[512];
    (void)state;
    assert_int_equal(load(&c, err, sizeof(err), NULL), SF_CONFIG_RUN);
    assert_string_equal(c.listen, "127.0.0.1:8080");
    assert_string_equal(c.state_dir, "./var");
    assert_string_equal(c.admin_token_file, "");
    assert_int_equal(c.log_level, SF_LOG_INFO);
    assert_true(c.access_log);
    assert_int_equal(c.pool.generic_min, 4);
    assert_int_equal(c.pool.max_workers, 64);
    assert_int_equal(c.http.max_connections, 10000);
    assert_int_equal(c.http.invoke_body_max_kb, 6144);
    assert_int_equal(c.deploy.max_artifact_mb, 50);
    assert_int_equal(c.shutdown.drain_timeout_ms, 30000);
    assert_null(c.file);
    sf_config_clear(&c);

    assert_int_equal(load(&c, err, sizeof(err), "--workers", "7", "--log-level",
                          "debug", "--set", "access_log=false", "--set",
                          "http.body_timeout_ms=500", "--listen", "[::1]:9",
                          NULL),
                     SF_CONFIG_RUN);
    assert_int_equal(c.pool.generic_min, 7);
    assert_int_equal(c.log_level, SF_LOG_DEBUG);
    assert_false(c.access_log);
    assert_int_equal(c.http.body_timeout_ms, 500);
    assert_string_equal(c.listen, "[::1]:9");
    sf_config_clear(&c);

    /* Parsing twice (SIGHUP) starts from scratch. */
    assert_int_equal(load(&c, err, sizeof(err), NULL), SF_CONFIG_RUN);
    assert_int_equal(c.pool.generic_min, 4);
    sf_config_clear(&c);
}

static void test_bad_flags(void **state)
{
    sf_config c;
    char err[512];
    (void)state;
    assert_int_equal(load(&c, err, sizeof(err), "--workers", "-1", NULL),
                     SF_CONFIG_EXIT_USAGE);
    assert_non_null(strstr(err, "pool.generic_min: expected integer "
                                "0..1024, got '-1'"));
    assert_int_equal(load(&c, err, sizeof(err), "--set", "x", NULL),
                     SF_CONFIG_EXIT_USAGE);
    assert_int_equal(load(&c, err, sizeof(err), "--set", "pool.nope=1", NULL),
                     SF_CONFIG_EXIT_USAGE);
    assert_non_null(strstr(err, "pool.nope: unknown key"));
    assert_int_equal(load(&c, err, sizeof(err), "--set", "access_log=1", NULL),
                     SF_CONFIG_EXIT_USAGE);
    assert_non_null(strstr(err, "access_log: expected boolean"));
    assert_int_equal(load(&c, err, sizeof(err), "stray", NULL),
                     SF_CONFIG_EXIT_USAGE);
    /* Cleared on failure: nothing to free, nothing dangling. */
    assert_null(c.listen);
}

static void test_file(void **state)
{
    sf_config c;
    char err[1024];
    char *path;
    (void)state;

    path = write_tmp("{\"log_level\":\"warn\",\"pool\":{\"generic_min\":2},"
                     "\"deploy\":{\"max_artifact_mb\":5}}");
    assert_int_equal(
        load(&c, err, sizeof(err), "--config", path, "--workers", "3", NULL),
        SF_CONFIG_RUN);
    assert_int_equal(c.log_level, SF_LOG_WARN);
    assert_int_equal(c.pool.generic_min, 3); /* the flag wins */
    assert_int_equal(c.deploy.max_artifact_mb, 5);
    assert_string_equal(c.file, path);
    sf_config_clear(&c);
    unlink(path);

    path = write_tmp("{\"pool\":{\"generic_min\":-3,\"x\":1},"
                     "\"http\":[],\"state_dir\":\"\"}");
    assert_int_equal(load(&c, err, sizeof(err), "--config", path, NULL),
                     SF_CONFIG_EXIT_ERROR);
    assert_non_null(strstr(err, "pool.generic_min: expected integer "
                                "0..1024, got -3"));
    assert_non_null(strstr(err, "pool.x: unknown key"));
    assert_non_null(strstr(err, "http: expected object, got array"));
    unlink(path);

    path = write_tmp("[1,2]");
    assert_int_equal(load(&c, err, sizeof(err), "--check-config", path, NULL),
                     SF_CONFIG_EXIT_ERROR);
    assert_non_null(strstr(err, "expected a JSON object at the top"));
    unlink(path);

    path = write_tmp("{\"state_dir\":\"\"}");
    assert_int_equal(load(&c, err, sizeof(err), "--config", path, NULL),
                     SF_CONFIG_EXIT_ERROR);
    assert_non_null(strstr(err, "state_dir: must not be empty"));
    unlink(path);
}

static void on_diff(void *ctx, const char *path, bool reloadable)
{
    char *seen = ctx;
    strcat(seen, path);
    strcat(seen, reloadable ? "+ " : "- ");
}

static void test_diff_and_keep(void **state)
{
    sf_config a, b;
    char err[256], seen[256] = "";
    cJSON *j;
    (void)state;
    assert_int_equal(load(&a, err, sizeof(err), NULL), SF_CONFIG_RUN);
    assert_int_equal(load(&b, err, sizeof(err), "--listen", "127.0.0.1:1",
                          "--workers", "9", NULL),
                     SF_CONFIG_RUN);
    assert_int_equal(sf_config_diff(&a, &b, on_diff, seen), 1);
    assert_string_equal(seen, "listen- pool.generic_min+ ");
    assert_int_equal(sf_config_keep_restart_keys(&b, &a), 0);
    assert_string_equal(b.listen, "127.0.0.1:8080"); /* kept */
    assert_int_equal(b.pool.generic_min, 9);         /* applied */
    assert_int_equal(sf_config_diff(&a, &b, NULL, NULL), 0);

    j = sf_config_to_json(&b);
    assert_non_null(j);
    assert_int_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "pool"), "generic_min")
            ->valueint,
        9);
    assert_string_equal(cJSON_GetObjectItem(j, "log_level")->valuestring,
                        "info");
    cJSON_Delete(j);
    sf_config_clear(&a);
    sf_config_clear(&b);
    sf_config_clear(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_listen),
        cmocka_unit_test(test_defaults_and_flags),
        cmocka_unit_test(test_bad_flags),
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_diff_and_keep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
