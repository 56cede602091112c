/* test_fnlog.c - function log capture: line splitting, the per-invocation
 * budget, UTF-8 cleaning, followers and queries (src/fnlog.c), on a real
 * state directory migrated by the registry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fnlog.h"
#include "registry.h"

typedef struct fixture {
    char dir[64];
    uv_loop_t loop;
    sf_registry *reg;
    sf_fnlog *log;
} fixture;

static const sf_fnlog_tags tags = {"fn", 3, 7, "req-1"};
static const sf_fnlog_tags idle_tags = {"fn", 3, 7, NULL};

static int setup_budget(void **state, size_t max)
{
    fixture *f = calloc(1, sizeof(*f));
    sf_fnlog_config cfg = {.max_per_invocation = max};

    snprintf(f->dir, sizeof(f->dir), "/tmp/sf-test-fnlog-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    uv_loop_init(&f->loop);
    assert_int_equal(sf_registry_open(f->dir, &f->reg), 0);
    assert_int_equal(
        sf_fnlog_new(&f->loop, sf_registry_db(f->reg), &cfg, &f->log), 0);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_budget(state, 100);
}
static int setup_big(void **state)
{
    return setup_budget(state, 1 << 20);
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];

    sf_fnlog_free(f->log);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_loop_close(&f->loop);
    sf_registry_free(f->reg);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Messages of fn's stored lines, joined with '|'. Caller frees. */
static char *messages(fixture *f, const char *rid)
{
    sf_fnlog_query q = {
        .function = "fn", .request_id = rid, .since_us = -1, .limit = 1000};
    cJSON *arr, *it;
    size_t cap = 1 << 16, n = 0;
    char *out = calloc(1, cap);

    assert_int_equal(sf_fnlog_select(f->log, &q, &arr), 0);
    cJSON_ArrayForEach(it, arr)
    {
        const char *m = cJSON_GetObjectItem(it, "message")->valuestring;
        n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? "|" : "", m);
    }
    cJSON_Delete(arr);
    return out;
}

static void feed(fixture *f, sf_fnlog_stream *s, const sf_fnlog_tags *t,
                 const char *str)
{
    sf_fnlog_feed(f->log, s, t, str, strlen(str));
}

static void test_lines(void **state)
{
    fixture *f = *state;
    sf_fnlog_stream s = {0};
    char *m;

    sf_fnlog_stream_begin(&s);
    feed(f, &s, &tags, "one\ntw");
    feed(f, &s, &tags, "o\r\n\nthree");
    m = messages(f, "req-1");
    assert_string_equal(m, "one|two|");
    free(m);
    sf_fnlog_stream_flush(f->log, &s, &tags);
    m = messages(f, "req-1");
    assert_string_equal(m, "one|two||three");
    free(m);
    sf_fnlog_stream_free(&s);
}

static void test_budget_and_marker(void **state)
{
    fixture *f = *state;
    sf_fnlog_stream s = {0};
    char big[300];
    char *m;

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    sf_fnlog_stream_begin(&s);
    feed(f, &s, &tags, "0123456789\n"); /* 11 of 100 */
    feed(f, &s, &tags, big);            /* 89 fit */
    feed(f, &s, &tags, "dropped\n");
    sf_fnlog_stream_flush(f->log, &s, &tags);
    m = messages(f, "req-1");
    assert_int_equal(strncmp(m, "0123456789|", 11), 0);
    assert_int_equal(strspn(m + 11, "x"), 89);
    assert_non_null(strstr(m, "|[sofaas: output truncated: more than 100 "
                              "bytes in this invocation]"));
    assert_null(strstr(m, "dropped"));
    free(m);

    /* a new invocation has a new budget */
    sf_fnlog_stream_begin(&s);
    feed(f, &s, &idle_tags, "again\n");
    m = messages(f, NULL);
    assert_non_null(strstr(m, "|again"));
    free(m);
    sf_fnlog_stream_free(&s);
}

static void test_long_line_is_split(void **state)
{
    fixture *f = *state;
    sf_fnlog_stream s = {0};
    size_t n = SF_FNLOG_LINE_MAX + 10;
    char *big = malloc(n + 2), *m;

    memset(big, 'y', n);
    big[n] = '\n';
    big[n + 1] = '\0';
    sf_fnlog_stream_begin(&s);
    feed(f, &s, &tags, big);
    m = messages(f, "req-1");
    assert_int_equal(strlen(m), SF_FNLOG_LINE_MAX + 1 + 10);
    assert_int_equal(m[SF_FNLOG_LINE_MAX], '|');
    free(m);
    free(big);
    sf_fnlog_stream_free(&s);
}

static void test_utf8_cleaned(void **state)
{
    fixture *f = *state;
    sf_fnlog_stream s = {0};
    char *m;
    /* valid 2-, 3- and 4-byte sequences survive; a stray continuation
     * byte, an overlong '/', a surrogate and a NUL do not */
    static const char in[] = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \x80 "
                             "\xc0\xaf \xed\xa0\x80 a\0b\n";

    sf_fnlog_feed(f->log, &s, &tags, in, sizeof(in) - 1);
    m = messages(f, "req-1");
    assert_string_equal(m, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 "
                           "\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd "
                           "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd "
                           "a\xef\xbf\xbd"
                           "b");
    free(m);
    sf_fnlog_stream_free(&s);
}

typedef struct seen {
    sf_fnlog *log;
    sf_fnlog_follower *self;
    int n;
    char last[64];
    bool leave;
} seen;

static void on_line(void *ctx, const cJSON *line)
{
    seen *s = ctx;
    s->n++;
    snprintf(s->last, sizeof(s->last), "%s",
             cJSON_GetObjectItem(line, "message")->valuestring);
    if (s->leave)
        sf_fnlog_unfollow(s->log, s->self);
}

static void test_followers(void **state)
{
    fixture *f = *state;
    sf_fnlog_stream s = {0};
    seen all = {0}, one = {0}, other = {0}, quitter = {0};
    sf_fnlog_tags t2 = {"other-fn", 1, 9, "req-2"};

    all.self = sf_fnlog_follow(f->log, "fn", NULL, on_line, &all);
    one.self = sf_fnlog_follow(f->log, "fn", "req-1", on_line, &one);
    other.self = sf_fnlog_follow(f->log, "other-fn", NULL, on_line, &other);
    quitter.log = f->log;
    quitter.leave = true;
    quitter.self = sf_fnlog_follow(f->log, "fn", NULL, on_line, &quitter);

    sf_fnlog_stream_begin(&s);
    feed(f, &s, &tags, "a\n");
    feed(f, &s, &idle_tags, "b\n");
    feed(f, &s, &t2, "c\n");
    assert_int_equal(all.n, 2);
    assert_string_equal(all.last, "b");
    assert_int_equal(one.n, 1);
    assert_string_equal(one.last, "a");
    assert_int_equal(other.n, 1);
    assert_int_equal(quitter.n, 1); /* left after its first line */
    sf_fnlog_unfollow(f->log, all.self);
    sf_fnlog_unfollow(f->log, one.self);
    sf_fnlog_unfollow(f->log, other.self);
    sf_fnlog_stream_free(&s);
}

static void test_select_tail_and_cursor(void **state)
{
    fixture *f = *state;
    sf_fnlog_stream s = {0};
    sf_fnlog_query q = {.function = "fn", .since_us = -1, .limit = 2};
    cJSON *arr;
    char line[16];

    sf_fnlog_stream_begin(&s);
    for (int i = 0; i < 5; i++) {
        snprintf(line, sizeof(line), "l%d\n", i);
        feed(f, &s, &tags, line);
    }
    assert_int_equal(sf_fnlog_select(f->log, &q, &arr), 0);
    assert_int_equal(cJSON_GetArraySize(arr), 2);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "message")->valuestring,
        "l3");
    cJSON_Delete(arr);
    q.after_id = 1;
    assert_int_equal(sf_fnlog_select(f->log, &q, &arr), 0);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "message")->valuestring,
        "l1");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0),
                                                 "request_id")) == false);
    cJSON_Delete(arr);
    sf_fnlog_stream_free(&s);
}

/* Ids never go back, even when retention has deleted every row. */
static void test_ids_survive_retention(void **state)
{
    fixture *f = *state;
    sf_fnlog_stream s = {0};
    sf_fnlog_query q = {.function = "fn", .since_us = -1, .limit = 10};
    cJSON *arr;
    double before;

    feed(f, &s, &tags, "a\nb\nc\n");
    assert_int_equal(sf_fnlog_select(f->log, &q, &arr), 0);
    before = cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 2), "id")->valuedouble;
    cJSON_Delete(arr);
    assert_int_equal(sqlite3_exec(sf_registry_db(f->reg),
                                  "DELETE FROM function_logs", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    sf_fnlog_free(f->log);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(sf_fnlog_new(&f->loop, sf_registry_db(f->reg), NULL,
                                  &f->log),
                     0);
    feed(f, &s, &tags, "d\n");
    assert_int_equal(sf_fnlog_select(f->log, &q, &arr), 0);
    assert_int_equal(cJSON_GetArraySize(arr), 1);
    assert_true(
        cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "id")->valuedouble >
        before);
    cJSON_Delete(arr);
    sf_fnlog_stream_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_and_marker, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_long_line_is_split, setup_big,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_utf8_cleaned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_followers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_select_tail_and_cursor, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ids_survive_retention, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
