/*
 * fnconfig.c - defaults, validation and JSON of the per-function
 * configuration (see fnconfig.h). One table lists every numeric key with
 * its range, so the JSON and query-parameter paths validate identically.
 */
#include "fnconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct ukey {
    const char *name;
    size_t off;
    uint32_t lo, hi;
} ukey;

#define UK(field, lo, hi) {#field, offsetof(sf_fn_config, field), lo, hi}

static const ukey ukeys[] = {
    UK(timeout_ms, 1, SF_FN_TIMEOUT_MAX),
    UK(memory_mb, SF_FN_MEMORY_MIN, SF_FN_MEMORY_MAX),
    UK(init_timeout_ms, 1, SF_FN_TIMEOUT_MAX),
    UK(tmp_mb, 1, SF_FN_TMP_MAX),
    UK(min_warm, 0, 1024),
    UK(max_concurrency, 0, 4096),
    UK(idle_timeout_s, 1, 86400 * 7),
    UK(max_queue, 0, 100000),
    UK(queue_timeout_ms, 0, SF_FN_TIMEOUT_MAX),
    UK(max_invocations_per_instance, 0, UINT32_MAX - 1),
};

static uint32_t *ufield(sf_fn_config *c, const ukey *k)
{
    return (uint32_t *)((char *)c + k->off);
}

static const ukey *find_ukey(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(ukeys) / sizeof(ukeys[0]); i++)
        if (strlen(ukeys[i].name) == len &&
            strncmp(ukeys[i].name, name, len) == 0)
            return &ukeys[i];
    return NULL;
}

void sf_fn_config_defaults(sf_fn_config *c)
{
    memset(c, 0, sizeof(*c));
    c->timeout_ms = SF_FN_TIMEOUT_DEFAULT;
    c->memory_mb = SF_FN_MEMORY_DEFAULT;
    c->init_timeout_ms = SF_FN_INIT_TIMEOUT_DEFAULT;
    c->tmp_mb = SF_FN_TMP_DEFAULT;
    c->idle_timeout_s = SF_FN_IDLE_TIMEOUT_DEFAULT;
    c->max_queue = SF_FN_MAX_QUEUE_DEFAULT;
    c->queue_timeout_ms = SF_FN_QUEUE_TIMEOUT_DEFAULT;
    c->template_mode = SF_TEMPLATE_AUTO;
}

cJSON *sf_fn_config_to_json(const sf_fn_config *c)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *env;

    for (size_t i = 0; i < sizeof(ukeys) / sizeof(ukeys[0]); i++)
        cJSON_AddNumberToObject(j, ukeys[i].name,
                                *ufield((sf_fn_config *)c, &ukeys[i]));
    cJSON_AddBoolToObject(j, "network", c->network);
    cJSON_AddBoolToObject(j, "file_access", c->file_access);
    if (c->template_mode == SF_TEMPLATE_AUTO)
        cJSON_AddStringToObject(j, "template", "auto");
    else
        cJSON_AddBoolToObject(j, "template", c->template_mode == SF_TEMPLATE_ON);
    if (c->budget_nanos > 0) {
        cJSON *b = cJSON_AddObjectToObject(j, "budget");
        char amount[40];
        sf_format_decimal(c->budget_nanos, 9, amount, sizeof(amount));
        cJSON_AddStringToObject(b, "amount", amount);
        cJSON_AddStringToObject(b, "action", c->budget_action == SF_BUDGET_BLOCK
                                                 ? "block"
                                                 : "warn");
    } else {
        cJSON_AddNullToObject(j, "budget");
    }
    env = cJSON_AddObjectToObject(j, "env");
    for (size_t off = 0; off < c->env_len;) {
        const char *kv = c->env + off;
        const char *eq = strchr(kv, '=');
        size_t l = strlen(kv);
        if (eq != NULL) {
            char key[256];
            snprintf(key, sizeof(key), "%.*s", (int)(eq - kv), kv);
            cJSON_AddStringToObject(env, key, eq + 1);
        }
        off += l + 1;
    }
    return j;
}

static bool valid_env_name(const char *s)
{
    if (s[0] == '\0' || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
              (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

static int apply_env(sf_fn_config *c, const cJSON *e, char *err,
                     size_t errlen)
{
    const cJSON *it;
    size_t len = 0;

    if (!cJSON_IsObject(e)) {
        snprintf(err, errlen, "env: expected an object of strings");
        return -EINVAL;
    }
    cJSON_ArrayForEach(it, e)
    {
        size_t kl = strlen(it->string), vl;
        if (!valid_env_name(it->string) || kl > 255) {
            snprintf(err, errlen, "env.%.64s: names must match "
                                  "[A-Za-z_][A-Za-z0-9_]*", it->string);
            return -EINVAL;
        }
        if (!cJSON_IsString(it)) {
            snprintf(err, errlen, "env.%s: expected a string", it->string);
            return -EINVAL;
        }
        vl = strlen(it->valuestring);
        if (len + kl + 1 + vl + 1 > SF_FN_ENV_MAX) {
            snprintf(err, errlen, "env: exceeds %d bytes in total",
                     SF_FN_ENV_MAX);
            return -EINVAL;
        }
        memcpy(c->env + len, it->string, kl);
        c->env[len + kl] = '=';
        memcpy(c->env + len + kl + 1, it->valuestring, vl + 1);
        len += kl + 1 + vl + 1;
    }
    c->env_len = len;
    return 0;
}

/*
 * "budget": null (none) or {"amount": "12.50", "action": "warn"|"block"}.
 * The amount is a decimal string (or an integer) parsed exactly to nanos:
 * money never goes through a double.
 */
static int apply_budget(sf_fn_config *c, const cJSON *b, char *err,
                        size_t errlen)
{
    const cJSON *amount, *action, *it;
    int64_t nanos;

    if (cJSON_IsNull(b)) {
        c->budget_nanos = 0;
        c->budget_action = SF_BUDGET_WARN;
        return 0;
    }
    if (!cJSON_IsObject(b)) {
        snprintf(err, errlen, "budget: expected null or an object "
                              "{\"amount\":\"10.00\",\"action\":\"warn\"}");
        return -EINVAL;
    }
    cJSON_ArrayForEach(it, b)
    {
        if (strcmp(it->string, "amount") != 0 &&
            strcmp(it->string, "action") != 0) {
            snprintf(err, errlen, "budget.%.64s: unknown key", it->string);
            return -EINVAL;
        }
    }
    amount = cJSON_GetObjectItemCaseSensitive(b, "amount");
    action = cJSON_GetObjectItemCaseSensitive(b, "action");
    if (cJSON_IsString(amount)) {
        if (sf_parse_decimal(amount->valuestring, strlen(amount->valuestring),
                             9, SF_FN_BUDGET_MAX_NANOS, &nanos) < 0 ||
            nanos == 0) {
            snprintf(err, errlen, "budget.amount: expected a positive "
                                  "decimal string with at most 9 decimals, "
                                  "up to 1000000");
            return -EINVAL;
        }
    } else if (cJSON_IsNumber(amount) &&
               amount->valuedouble == (double)(int64_t)amount->valuedouble &&
               amount->valuedouble >= 1 && amount->valuedouble <= 1e6) {
        nanos = (int64_t)amount->valuedouble * 1000000000LL;
    } else {
        snprintf(err, errlen, "budget.amount: expected a decimal string "
                              "such as \"10.50\" (or a whole number)");
        return -EINVAL;
    }
    if (action == NULL || (cJSON_IsString(action) &&
                           strcmp(action->valuestring, "warn") == 0)) {
        c->budget_action = SF_BUDGET_WARN;
    } else if (cJSON_IsString(action) &&
               strcmp(action->valuestring, "block") == 0) {
        c->budget_action = SF_BUDGET_BLOCK;
    } else {
        snprintf(err, errlen, "budget.action: expected \"warn\" or "
                              "\"block\"");
        return -EINVAL;
    }
    c->budget_nanos = nanos;
    return 0;
}

int sf_fn_config_apply_json(sf_fn_config *c, const cJSON *j, char *err,
                            size_t errlen)
{
    const cJSON *it;
    sf_fn_config n = *c;

    if (!cJSON_IsObject(j)) {
        snprintf(err, errlen, "config: expected a JSON object");
        return -EINVAL;
    }
    cJSON_ArrayForEach(it, j)
    {
        const ukey *k = find_ukey(it->string, strlen(it->string));
        if (k != NULL) {
            double d = it->valuedouble;
            /* Range first: converting an out-of-range double (1e300) to an
             * integer is undefined behaviour. NaN fails the range too. */
            if (!cJSON_IsNumber(it) || !(d >= k->lo && d <= k->hi) ||
                d != (double)(int64_t)d) {
                snprintf(err, errlen, "%s: expected an integer in %u..%u",
                         k->name, k->lo, k->hi);
                return -EINVAL;
            }
            *ufield(&n, k) = (uint32_t)d;
        } else if (strcmp(it->string, "network") == 0 ||
                   strcmp(it->string, "file_access") == 0) {
            if (!cJSON_IsBool(it)) {
                snprintf(err, errlen, "%s: expected true or false",
                         it->string);
                return -EINVAL;
            }
            if (it->string[0] == 'n')
                n.network = cJSON_IsTrue(it);
            else
                n.file_access = cJSON_IsTrue(it);
        } else if (strcmp(it->string, "template") == 0) {
            if (cJSON_IsBool(it))
                n.template_mode =
                    cJSON_IsTrue(it) ? SF_TEMPLATE_ON : SF_TEMPLATE_OFF;
            else if (cJSON_IsString(it) &&
                     strcmp(it->valuestring, "auto") == 0)
                n.template_mode = SF_TEMPLATE_AUTO;
            else {
                snprintf(err, errlen, "template: expected true, false or "
                                      "\"auto\"");
                return -EINVAL;
            }
        } else if (strcmp(it->string, "env") == 0) {
            if (apply_env(&n, it, err, errlen) < 0)
                return -EINVAL;
        } else if (strcmp(it->string, "budget") == 0) {
            if (apply_budget(&n, it, err, errlen) < 0)
                return -EINVAL;
        } else {
            snprintf(err, errlen, "%.64s: unknown configuration key",
                     it->string);
            return -EINVAL;
        }
    }
    *c = n;
    return 0;
}

int sf_fn_config_apply_param(sf_fn_config *c, const char *key, size_t klen,
                             const char *val, size_t vlen, char *err,
                             size_t errlen)
{
    const ukey *k = find_ukey(key, klen);
    uint64_t v;

    if (k != NULL) {
        if (sf_parse_u64(val, vlen, k->hi, &v) < 0 || v < k->lo) {
            snprintf(err, errlen, "%s: expected an integer in %u..%u",
                     k->name, k->lo, k->hi);
            return -EINVAL;
        }
        *ufield(c, k) = (uint32_t)v;
        return 0;
    }
    if ((klen == 7 && strncmp(key, "network", 7) == 0) ||
        (klen == 11 && strncmp(key, "file_access", 11) == 0) ||
        (klen == 8 && strncmp(key, "template", 8) == 0)) {
        bool t = (vlen == 4 && strncmp(val, "true", 4) == 0) ||
                 (vlen == 1 && val[0] == '1');
        bool f = (vlen == 5 && strncmp(val, "false", 5) == 0) ||
                 (vlen == 1 && val[0] == '0');
        bool a = klen == 8 && vlen == 4 && strncmp(val, "auto", 4) == 0;
        if (!t && !f && !a) {
            snprintf(err, errlen, "%.*s: expected true or false%s",
                     (int)klen, key, klen == 8 ? " or auto" : "");
            return -EINVAL;
        }
        if (klen == 7)
            c->network = t;
        else if (klen == 11)
            c->file_access = t;
        else
            c->template_mode = a ? SF_TEMPLATE_AUTO
                                 : (t ? SF_TEMPLATE_ON : SF_TEMPLATE_OFF);
        return 0;
    }
    snprintf(err, errlen, "%.*s: unknown configuration key",
             (int)(klen > 64 ? 64 : klen), key);
    return -EINVAL;
}
