/* test_router.c - route matching and function-name validation (src/router.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "router.h"

static void match(const char *method, const char *path, sf_route *r)
{
    sf_router_match(method, path, strlen(path), r);
}

static void test_invoke_routes(void **state)
{
    sf_route r;
    (void)state;

    match("GET", "/fn/hello", &r);
    assert_int_equal(r.id, SF_ROUTE_INVOKE);
    assert_true(r.name_valid);
    assert_int_equal(r.name_len, 5);
    assert_memory_equal(r.name, "hello", 5);
    assert_int_equal(r.subpath_len, 1);
    assert_memory_equal(r.subpath, "/", 1);
    assert_false(r.admin);

    match("POST", "/fn/hello/a/b", &r);
    assert_int_equal(r.id, SF_ROUTE_INVOKE);
    assert_int_equal(r.subpath_len, 4);
    assert_memory_equal(r.subpath, "/a/b", 4);

    match("DELETE", "/fn/hello/", &r);
    assert_int_equal(r.id, SF_ROUTE_INVOKE);
    assert_memory_equal(r.subpath, "/", 1);

    /* A name is one segment; an invalid one still routes (caller: 404). */
    match("GET", "/fn/Hello", &r);
    assert_int_equal(r.id, SF_ROUTE_INVOKE);
    assert_false(r.name_valid);

    match("GET", "/fn/", &r);
    assert_int_equal(r.id, SF_ROUTE_NONE);
    assert_int_equal(r.miss_status, 404);
    match("GET", "/fnx/hello", &r);
    assert_int_equal(r.id, SF_ROUTE_NONE);
}

static void test_admin_routes(void **state)
{
    sf_route r;
    (void)state;

    match("GET", "/v1/functions", &r);
    assert_int_equal(r.id, SF_ROUTE_FN_LIST);
    assert_true(r.admin);
    match("PUT", "/v1/functions/my-fn", &r);
    assert_int_equal(r.id, SF_ROUTE_FN_DEPLOY);
    assert_true(r.name_valid);
    match("GET", "/v1/functions/my-fn", &r);
    assert_int_equal(r.id, SF_ROUTE_FN_GET);
    match("DELETE", "/v1/functions/my-fn", &r);
    assert_int_equal(r.id, SF_ROUTE_FN_DELETE);
    match("PATCH", "/v1/functions/my-fn", &r);
    assert_int_equal(r.id, SF_ROUTE_FN_PATCH);

    /* Known path, wrong method: 405; unknown: 404. Both still admin. */
    match("POST", "/v1/functions/my-fn", &r);
    assert_int_equal(r.id, SF_ROUTE_NONE);
    assert_int_equal(r.miss_status, 405);
    assert_true(r.admin);
    match("GET", "/v1/nothing", &r);
    assert_int_equal(r.id, SF_ROUTE_NONE);
    assert_int_equal(r.miss_status, 404);
    assert_true(r.admin);
    match("GET", "/v1/functions/a/b", &r);
    assert_int_equal(r.id, SF_ROUTE_NONE);

    match("GET", "/healthz", &r);
    assert_int_equal(r.id, SF_ROUTE_HEALTHZ);
    assert_false(r.admin);
}

static void test_observability_routes(void **state)
{
    sf_route r;
    (void)state;

    match("GET", "/readyz", &r);
    assert_int_equal(r.id, SF_ROUTE_READYZ);
    assert_false(r.admin);
    match("GET", "/metrics", &r);
    assert_int_equal(r.id, SF_ROUTE_METRICS);
    assert_false(r.admin);
    match("POST", "/metrics", &r);
    assert_int_equal(r.id, SF_ROUTE_NONE);
    assert_int_equal(r.miss_status, 405);

    /* function logs are admin, and the name is checked like elsewhere */
    match("GET", "/v1/functions/my-fn/logs", &r);
    assert_int_equal(r.id, SF_ROUTE_FN_LOGS);
    assert_true(r.admin);
    assert_true(r.name_valid);
    assert_int_equal(r.name_len, 5);
    match("GET", "/v1/functions/Bad/logs", &r);
    assert_int_equal(r.id, SF_ROUTE_FN_LOGS);
    assert_false(r.name_valid);
    match("DELETE", "/v1/functions/my-fn/logs", &r);
    assert_int_equal(r.id, SF_ROUTE_NONE);
    assert_int_equal(r.miss_status, 405);
    match("GET", "/v1/functions/my-fn/logs/x", &r);
    assert_int_equal(r.id, SF_ROUTE_NONE);
    assert_int_equal(r.miss_status, 404);
}

static void test_names(void **state)
{
    (void)state;
    assert_true(sf_router_valid_name("a", 1));
    assert_true(sf_router_valid_name("0abc-def", 8));
    assert_false(sf_router_valid_name("", 0));
    assert_false(sf_router_valid_name("-a", 2));
    assert_false(sf_router_valid_name("a_b", 3));
    assert_false(sf_router_valid_name("A", 1));
    assert_false(sf_router_valid_name("a.b", 3));
    assert_false(sf_router_valid_name("%61", 3));
    char n63[64], n64[65];
    memset(n63, 'a', 63);
    memset(n64, 'a', 64);
    assert_true(sf_router_valid_name(n63, 63));
    assert_false(sf_router_valid_name(n64, 64));
}

static void test_table_is_consistent(void **state)
{
    size_t n;
    const sf_route_def *t = sf_router_table(&n);
    (void)state;

    assert_true(n >= 7);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(t[i].method);
        assert_true(t[i].pattern[0] == '/');
        assert_int_not_equal(t[i].id, SF_ROUTE_NONE);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invoke_routes),
        cmocka_unit_test(test_admin_routes),
        cmocka_unit_test(test_observability_routes),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_table_is_consistent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
