/* test_trace.c - traceparent parsing and propagation (src/trace.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "trace.h"

#define GOOD "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static bool parses(const char *s)
{
    sf_trace t;
    return sf_trace_parse(s, strlen(s), &t);
}

static void test_parse_valid(void **state)
{
    sf_trace t;
    (void)state;
    assert_true(sf_trace_parse(GOOD, strlen(GOOD), &t));
    assert_string_equal(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(t.span_id, "00f067aa0ba902b7");
    assert_int_equal(t.flags, 1);
    assert_true(t.inherited);
    /* a future version may append fields after a dash */
    assert_true(
        parses("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-abc"));
    assert_true(
        parses("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
}

static void test_parse_invalid(void **state)
{
    static const char *const bad[] = {
        "",
        "00",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(parses(bad[i]));
    assert_false(sf_trace_parse(NULL, 0, &(sf_trace){0}));
}

static void test_start_continues_or_starts(void **state)
{
    sf_trace a, b;
    char out[SF_TRACEPARENT_LEN + 1];
    (void)state;

    sf_trace_start(GOOD, strlen(GOOD), &a);
    assert_true(a.inherited);
    assert_string_equal(a.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_not_equal(a.span_id, "00f067aa0ba902b7");
    assert_int_equal(a.flags, 1);
    sf_trace_format(&a, out);
    assert_int_equal(strlen(out), SF_TRACEPARENT_LEN);
    assert_true(parses(out));
    assert_memory_equal(out, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36);

    sf_trace_start(NULL, 0, &a);
    sf_trace_start("garbage", 7, &b);
    assert_false(a.inherited);
    assert_false(b.inherited);
    assert_string_not_equal(a.trace_id, b.trace_id);
    assert_int_equal(a.flags, 0);
    sf_trace_format(&a, out);
    assert_true(parses(out));

    /* unknown flag bits are not propagated */
    sf_trace_start("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff",
                   SF_TRACEPARENT_LEN, &a);
    assert_int_equal(a.flags, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),
        cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_start_continues_or_starts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
