/*
 * fnconfig.h - the per-function configuration: what a deploy (query
 * parameters or the X-Sofaas-Config header) and PATCH /v1/functions/{name}
 * may set, its defaults, limits, validation and JSON form.
 *
 * A version is an immutable snapshot of code and configuration: changing
 * the configuration records a new version (registry.c), so instances always
 * run with the configuration they were started with. The struct is plain
 * data (no pointers) and may be copied by value.
 */
#ifndef SF_FNCONFIG_H
#define SF_FNCONFIG_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SF_FN_TIMEOUT_DEFAULT 3000
#define SF_FN_TIMEOUT_MAX 900000
#define SF_FN_MEMORY_DEFAULT 128
#define SF_FN_MEMORY_MIN 16
#define SF_FN_MEMORY_MAX 10240
#define SF_FN_INIT_TIMEOUT_DEFAULT 10000
#define SF_FN_TMP_DEFAULT 64
#define SF_FN_TMP_MAX 4096
#define SF_FN_ENV_MAX 4096 /* whole env block, like Lambda's 4 KB */
#define SF_FN_IDLE_TIMEOUT_DEFAULT 300
#define SF_FN_MAX_QUEUE_DEFAULT 100
#define SF_FN_QUEUE_TIMEOUT_DEFAULT 10000

typedef enum sf_template_mode {
    SF_TEMPLATE_AUTO = 0, /* decided from the measured init time */
    SF_TEMPLATE_OFF,
    SF_TEMPLATE_ON,
} sf_template_mode;

typedef enum sf_budget_action {
    SF_BUDGET_WARN = 0, /* log and show warnings at 80% and 100% */
    SF_BUDGET_BLOCK,    /* also refuse invocations (402) at 100% */
} sf_budget_action;

/* Largest monthly budget: 1e6 currency units, in nanos. */
#define SF_FN_BUDGET_MAX_NANOS 1000000000000000LL

typedef struct sf_fn_config {
    /* limits */
    uint32_t timeout_ms;      /* per invocation; 1..900000 */
    uint32_t memory_mb;       /* 16..10240 */
    uint32_t init_timeout_ms; /* dlopen + sofaas_init; 1..900000 */
    /* sandbox policy */
    bool network;    /* may use the network */
    bool file_access; /* may open files while serving (else EACCES) */
    uint32_t tmp_mb; /* private tmp quota; 1..4096 */
    char env[SF_FN_ENV_MAX]; /* "K=V\0K=V\0"; the whole environment */
    size_t env_len;
    /* pool */
    uint32_t min_warm;         /* instances kept ready */
    uint32_t max_concurrency;  /* 0 = bounded only by the pool */
    uint32_t idle_timeout_s;   /* idle instances above min_warm retire */
    uint32_t max_queue;        /* waiting invocations beyond capacity */
    uint32_t queue_timeout_ms; /* longest wait in the queue */
    uint32_t max_invocations_per_instance; /* 0 = unlimited */
    sf_template_mode template_mode;
    /* cost control (meter.c): monthly spend cap, 0 = no budget */
    int64_t budget_nanos;          /* nanos of the meter's currency */
    sf_budget_action budget_action;
} sf_fn_config;

void sf_fn_config_defaults(sf_fn_config *c);

/* Caller owns the returned object. */
cJSON *sf_fn_config_to_json(const sf_fn_config *c);

/*
 * Applies the keys present in j onto c; keys absent keep their value. An
 * unknown key, a wrong type or an out-of-range value fails with the key path
 * named in err, and c is left unchanged. Returns 0 or -EINVAL.
 */
int sf_fn_config_apply_json(sf_fn_config *c, const cJSON *j, char *err,
                            size_t errlen);

/*
 * Applies one key given as text (a deploy query parameter): numbers and
 * booleans ("true"/"false"/"1"/"0"); "env" cannot be set this way.
 * Returns 0 or -EINVAL with err set.
 */
int sf_fn_config_apply_param(sf_fn_config *c, const char *key, size_t klen,
                             const char *val, size_t vlen, char *err,
                             size_t errlen);

#endif
