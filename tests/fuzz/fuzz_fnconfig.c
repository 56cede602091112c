/*
 * fuzz_fnconfig.c - libFuzzer target for the per-function configuration
 * parsers (src/fnconfig.c): the JSON object of PATCH bodies and the
 * X-Sofaas-Config header (sf_fn_config_apply_json, after cJSON parses the
 * bytes exactly as api.c does) and deploy query parameters
 * (sf_fn_config_apply_param).
 *
 * Input format: byte 0 picks the parser. Even: the rest is JSON text. Odd:
 * the rest is "key=value" (split at the first '=').
 *
 * Checked: a refusal leaves the config untouched and names the problem in
 * a NUL-terminated message; an accepted config has every key in its
 * documented range and a well-formed env block, and survives the round trip
 * to_json -> apply_json onto the defaults unchanged.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fnconfig.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_fnconfig: check failed at line %d: %s\n",    \
                    __LINE__, #cond);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

static bool same_config(const sf_fn_config *a, const sf_fn_config *b)
{
    return a->timeout_ms == b->timeout_ms && a->memory_mb == b->memory_mb &&
           a->init_timeout_ms == b->init_timeout_ms &&
           a->network == b->network && a->tmp_mb == b->tmp_mb &&
           a->env_len == b->env_len &&
           memcmp(a->env, b->env, a->env_len) == 0 &&
           a->min_warm == b->min_warm &&
           a->max_concurrency == b->max_concurrency &&
           a->idle_timeout_s == b->idle_timeout_s &&
           a->max_queue == b->max_queue &&
           a->queue_timeout_ms == b->queue_timeout_ms &&
           a->max_invocations_per_instance == b->max_invocations_per_instance &&
           a->template_mode == b->template_mode;
}

static void check_valid(const sf_fn_config *c)
{
    CHECK(c->timeout_ms >= 1 && c->timeout_ms <= SF_FN_TIMEOUT_MAX);
    CHECK(c->memory_mb >= SF_FN_MEMORY_MIN && c->memory_mb <= SF_FN_MEMORY_MAX);
    CHECK(c->init_timeout_ms >= 1 && c->init_timeout_ms <= SF_FN_TIMEOUT_MAX);
    CHECK(c->tmp_mb >= 1 && c->tmp_mb <= SF_FN_TMP_MAX);
    CHECK(c->idle_timeout_s >= 1);
    CHECK(c->max_invocations_per_instance != UINT32_MAX);
    CHECK(c->template_mode == SF_TEMPLATE_AUTO ||
          c->template_mode == SF_TEMPLATE_OFF ||
          c->template_mode == SF_TEMPLATE_ON);
    /* env: "K=V\0" entries exactly filling env_len. */
    CHECK(c->env_len <= SF_FN_ENV_MAX);
    for (size_t off = 0; off < c->env_len;) {
        const char *kv = c->env + off;
        size_t l = strnlen(kv, c->env_len - off);
        CHECK(l < c->env_len - off); /* NUL-terminated inside the block */
        CHECK(memchr(kv, '=', l) != NULL && kv[0] != '=');
        off += l + 1;
    }
}

/* to_json then apply_json onto the defaults must give c back. */
static void check_roundtrip(const sf_fn_config *c)
{
    sf_fn_config back;
    char err[256] = "";
    cJSON *j = sf_fn_config_to_json(c);
    char *text;
    cJSON *j2;

    CHECK(j != NULL);
    /* Through text, as the registry stores it. */
    text = cJSON_PrintUnformatted(j);
    CHECK(text != NULL);
    j2 = cJSON_Parse(text);
    CHECK(j2 != NULL);
    sf_fn_config_defaults(&back);
    if (sf_fn_config_apply_json(&back, j2, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_fnconfig: own JSON refused: %s\n%s\n", err, text);
        abort();
    }
    CHECK(same_config(&back, c));
    cJSON_Delete(j2);
    free(text);
    cJSON_Delete(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sf_fn_config c, before;
    char err[256];
    int r;

    if (size == 0)
        return 0;
    sf_fn_config_defaults(&c);
    memset(err, 0, sizeof(err));
    before = c;
    if ((data[0] & 1) == 0) {
        cJSON *j = cJSON_ParseWithLength((const char *)data + 1, size - 1);
        if (j == NULL)
            return 0;
        r = sf_fn_config_apply_json(&c, j, err, sizeof(err));
        cJSON_Delete(j);
    } else {
        const char *kv = (const char *)data + 1;
        size_t n = size - 1;
        const char *eq = memchr(kv, '=', n);
        size_t kl = eq ? (size_t)(eq - kv) : n;
        r = sf_fn_config_apply_param(&c, kv, kl, eq ? eq + 1 : kv + n,
                                     eq ? n - kl - 1 : 0, err, sizeof(err));
    }
    CHECK(r == 0 || r == -EINVAL);
    if (r != 0) {
        CHECK(same_config(&c, &before));
        CHECK(err[0] != '\0' && err[sizeof(err) - 1] == '\0');
        return 0;
    }
    check_valid(&c);
    check_roundtrip(&c);
    return 0;
}
