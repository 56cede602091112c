/* test_meter.c - the billing arithmetic of src/meter.c (billed duration,
 * cost in picos, status classes), the exact decimal parsing and formatting
 * of src/util.c it relies on, RFC 3339 parsing of src/usage.c and the
 * budget key of src/fnconfig.c. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fnconfig.h"
#include "meter.h"
#include "usage.h"
#include "util.h"

static void test_billed_ms(void **state)
{
    (void)state;
    /* 1 ms granularity: any started millisecond is billed */
    assert_int_equal(sf_meter_billed_ms(0, 0, 1), 0);
    assert_int_equal(sf_meter_billed_ms(1, 0, 1), 1);
    assert_int_equal(sf_meter_billed_ms(1000, 0, 1), 1);
    assert_int_equal(sf_meter_billed_ms(1001, 0, 1), 2);
    assert_int_equal(sf_meter_billed_ms(20345, 0, 1), 21);
    /* init time is billable and added before rounding (Lambda, 2025) */
    assert_int_equal(sf_meter_billed_ms(20345, 700, 1), 22);
    assert_int_equal(sf_meter_billed_ms(400, 400, 1), 1);
    /* coarser granularity rounds up to its multiples */
    assert_int_equal(sf_meter_billed_ms(1, 0, 100), 100);
    assert_int_equal(sf_meter_billed_ms(100000, 0, 100), 100);
    assert_int_equal(sf_meter_billed_ms(100001, 0, 100), 200);
    /* 0 is treated as 1 ms, never a division by zero */
    assert_int_equal(sf_meter_billed_ms(1500, 0, 0), 2);
}

static void test_cost(void **state)
{
    (void)state;
    /* Lambda defaults: 200000 pico per request, 16666700 pico per GB-s */
    /* 1 ms at 128 MB: 1 x 0.125 GB x 16666700 / 1000 = 2083.3375 -> 2084 */
    assert_int_equal(sf_meter_cost_pico(1, 128, 200000, 16666700),
                     200000 + 2084);
    /* 6 ms at 256 MB: 25000.05 -> 25001 */
    assert_int_equal(sf_meter_cost_pico(6, 256, 200000, 16666700), 225001);
    /* 1000 ms at 1024 MB is exactly one GB-second */
    assert_int_equal(sf_meter_cost_pico(1000, 1024, 200000, 16666700),
                     200000 + 16666700);
    /* a million 1-GB-s invocations = $0.20 + $16.6667 */
    assert_int_equal(1000000 * sf_meter_cost_pico(1000, 1024, 200000, 16666700),
                     16866700000000LL);
    /* no duration, request price only */
    assert_int_equal(sf_meter_cost_pico(0, 128, 200000, 16666700), 200000);
    /* worst case within the caps does not overflow: 1.8e6 ms, 10240 MB */
    assert_int_equal(sf_meter_cost_pico(1800000, 10240,
                                        SF_METER_PRICE_REQUEST_MAX,
                                        SF_METER_PRICE_GBS_MAX),
                     SF_METER_PRICE_REQUEST_MAX +
                         (int64_t)1800 * 10 * SF_METER_PRICE_GBS_MAX);
}

static void test_classes(void **state)
{
    (void)state;
    assert_int_equal(sf_meter_class_of(SF_INV_OK, 0), SF_MC_OK);
    assert_int_equal(sf_meter_class_of(SF_INV_OK, 3), SF_MC_FUNCTION_ERROR);
    assert_int_equal(sf_meter_class_of(SF_INV_CRASHED, 0), SF_MC_CRASHED);
    assert_int_equal(sf_meter_class_of(SF_INV_TIMEOUT, 0), SF_MC_TIMEOUT);
    assert_int_equal(sf_meter_class_of(SF_INV_SANDBOX, 0),
                     SF_MC_SANDBOX_VIOLATION);
    assert_int_equal(sf_meter_class_of(SF_INV_UNAVAILABLE, 0), SF_MC_REJECTED);
    assert_false(sf_meter_class_billable(SF_MC_THROTTLED));
    assert_false(sf_meter_class_billable(SF_MC_REJECTED));
    assert_true(sf_meter_class_billable(SF_MC_TIMEOUT));
    for (int c = 0; c < SF_MC_COUNT; c++) {
        const char *n = sf_meter_class_name((sf_meter_class)c);
        assert_int_equal(sf_meter_class_parse(n, strlen(n)), c);
    }
    assert_int_equal(sf_meter_class_parse("okay", 4), -1);
}

static void test_decimal(void **state)
{
    int64_t v;
    char buf[48];
    (void)state;
    assert_int_equal(sf_parse_decimal("0.0000166667", 12, 12, INT64_MAX, &v),
                     0);
    assert_int_equal(v, 16666700);
    assert_int_equal(sf_parse_decimal("0.0000002", 9, 12, INT64_MAX, &v), 0);
    assert_int_equal(v, 200000);
    assert_int_equal(sf_parse_decimal("12", 2, 9, INT64_MAX, &v), 0);
    assert_int_equal(v, 12000000000LL);
    assert_int_equal(sf_parse_decimal("3.", 2, 9, INT64_MAX, &v), 0);
    assert_int_equal(v, 3000000000LL);
    assert_int_equal(sf_parse_decimal(".5", 2, 9, INT64_MAX, &v), 0);
    assert_int_equal(v, 500000000);
    /* more decimals than the unit holds is refused, never rounded */
    assert_int_equal(sf_parse_decimal("0.0000000001", 12, 9, INT64_MAX, &v),
                     -EINVAL);
    assert_int_equal(sf_parse_decimal("", 0, 9, INT64_MAX, &v), -EINVAL);
    assert_int_equal(sf_parse_decimal(".", 1, 9, INT64_MAX, &v), -EINVAL);
    assert_int_equal(sf_parse_decimal("-1", 2, 9, INT64_MAX, &v), -EINVAL);
    assert_int_equal(sf_parse_decimal("1e3", 3, 9, INT64_MAX, &v), -EINVAL);
    assert_int_equal(sf_parse_decimal("1.5", 3, 9, 1000000000, &v), -ERANGE);
    assert_int_equal(
        sf_parse_decimal("99999999999999999999", 20, 0, INT64_MAX, &v),
        -ERANGE);
    assert_int_equal(
        sf_parse_decimal("9223372036.854775808", 20, 9, INT64_MAX, &v),
        -ERANGE);
    sf_format_decimal(16666700, 12, buf, sizeof(buf));
    assert_string_equal(buf, "0.0000166667");
    sf_format_decimal(200000, 12, buf, sizeof(buf));
    assert_string_equal(buf, "0.0000002");
    sf_format_decimal(12000000000LL, 9, buf, sizeof(buf));
    assert_string_equal(buf, "12.00");
    sf_format_decimal(0, 9, buf, sizeof(buf));
    assert_string_equal(buf, "0.00");
    sf_format_decimal(1, 12, buf, sizeof(buf));
    assert_string_equal(buf, "0.000000000001");
}

static void test_rfc3339(void **state)
{
    int64_t t;
    (void)state;
    assert_int_equal(sf_usage_parse_rfc3339("1970-01-01T00:00:00Z", 20, &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(sf_usage_parse_rfc3339("2026-11-01T00:00:00Z", 20, &t), 0);
    assert_int_equal(t, 1793491200000000LL);
    assert_int_equal(
        sf_usage_parse_rfc3339("2026-11-01T01:00:00.25+01:00", 28, &t), 0);
    assert_int_equal(t, 1793491200250000LL);
    assert_int_equal(sf_usage_parse_rfc3339("2026-11-01", 10, &t), -EINVAL);
    assert_int_equal(sf_usage_parse_rfc3339("2026-13-01T00:00:00Z", 20, &t),
                     -EINVAL);
    assert_int_equal(sf_usage_parse_rfc3339("2026-02-31T00:00:00Z", 20, &t),
                     -EINVAL);
    assert_int_equal(sf_usage_parse_rfc3339("2026-11-01T00:00:00", 19, &t),
                     -EINVAL);
    assert_int_equal(sf_usage_parse_rfc3339("2026-11-01T00:00:00Zjunk", 24, &t),
                     -EINVAL);
}

static void test_budget_config(void **state)
{
    sf_fn_config c;
    char err[256];
    cJSON *j, *out;
    (void)state;
    sf_fn_config_defaults(&c);
    assert_int_equal(c.budget_nanos, 0);
    j = cJSON_Parse("{\"budget\":{\"amount\":\"10.000000001\","
                    "\"action\":\"block\"}}");
    assert_int_equal(sf_fn_config_apply_json(&c, j, err, sizeof(err)), 0);
    cJSON_Delete(j);
    assert_int_equal(c.budget_nanos, 10000000001LL);
    assert_int_equal(c.budget_action, SF_BUDGET_BLOCK);
    /* round trip through JSON (stored config) keeps the exact amount */
    out = sf_fn_config_to_json(&c);
    {
        sf_fn_config d;
        sf_fn_config_defaults(&d);
        assert_int_equal(sf_fn_config_apply_json(&d, out, err, sizeof(err)), 0);
        assert_int_equal(d.budget_nanos, 10000000001LL);
        assert_int_equal(d.budget_action, SF_BUDGET_BLOCK);
    }
    cJSON_Delete(out);
    /* errors name the key and leave c unchanged */
    j = cJSON_Parse("{\"budget\":{\"amount\":\"1.0000000001\"}}");
    assert_int_equal(sf_fn_config_apply_json(&c, j, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "budget.amount"));
    cJSON_Delete(j);
    j = cJSON_Parse("{\"budget\":{\"amount\":\"5\",\"action\":\"stop\"}}");
    assert_int_equal(sf_fn_config_apply_json(&c, j, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "budget.action"));
    cJSON_Delete(j);
    j = cJSON_Parse("{\"budget\":{\"amount\":2.5}}");
    assert_int_equal(sf_fn_config_apply_json(&c, j, err, sizeof(err)), -EINVAL);
    cJSON_Delete(j);
    assert_int_equal(c.budget_nanos, 10000000001LL);
    j = cJSON_Parse("{\"budget\":null}");
    assert_int_equal(sf_fn_config_apply_json(&c, j, err, sizeof(err)), 0);
    cJSON_Delete(j);
    assert_int_equal(c.budget_nanos, 0);
}

static void test_config_set(void **state)
{
    sf_meter_config c;
    char err[256];
    (void)state;
    sf_meter_config_defaults(&c);
    assert_int_equal(c.price_per_request_pico, 200000);
    assert_int_equal(c.price_per_gb_second_pico, 16666700);
    assert_int_equal(c.granularity_ms, 1);
    assert_string_equal(c.currency, "USD");
    assert_int_equal(sf_meter_config_set(&c, "billing.price_per_gb_second",
                                         "0.00001", err, sizeof(err)),
                     0);
    assert_int_equal(c.price_per_gb_second_pico, 10000000);
    assert_int_equal(
        sf_meter_config_set(&c, "meter.mode", "async", err, sizeof(err)), 0);
    assert_int_equal(c.mode, SF_METER_ASYNC);
    assert_int_equal(
        sf_meter_config_set(&c, "meter.fsync", "true", err, sizeof(err)), 0);
    assert_true(c.fsync_commits);
    /* refusals name the key and leave the value */
    assert_int_equal(sf_meter_config_set(&c, "billing.price_per_request",
                                         "1001", err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "billing.price_per_request"));
    assert_int_equal(c.price_per_request_pico, 200000);
    assert_int_equal(sf_meter_config_set(&c, "billing.granularity_ms", "0", err,
                                         sizeof(err)),
                     -EINVAL);
    assert_int_equal(
        sf_meter_config_set(&c, "billing.currency", "EU,R", err, sizeof(err)),
        -EINVAL);
    assert_int_equal(
        sf_meter_config_set(&c, "meter.colour", "red", err, sizeof(err)),
        -EINVAL);
    assert_non_null(strstr(err, "unknown"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_billed_ms),  cmocka_unit_test(test_cost),
        cmocka_unit_test(test_classes),    cmocka_unit_test(test_decimal),
        cmocka_unit_test(test_rfc3339),    cmocka_unit_test(test_budget_config),
        cmocka_unit_test(test_config_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
