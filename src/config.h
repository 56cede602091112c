/*
 * config.h - sofaasd's configuration: one JSON file (parsed with cJSON)
 * overlaid by command-line flags, validated against one table of keys.
 *
 * Order of precedence: built-in defaults < the file < flags. The file is
 * --config FILE, else /etc/sofaas/sofaasd.json when it exists, else none
 * (development). An unknown key or a value of the wrong type is an error that
 * names the key path ("pool.generic_min") and the expected type. On SIGHUP
 * the daemon calls sf_config_load again with the same argv and applies the
 * keys marked reloadable; the others are reported as needing a restart.
 *
 * Adding a section (e.g. "meter"): add its struct as a member of sf_config,
 * a key array for it in config.c, and one row in config.c's sections[].
 * docs/configuration.md and packaging/sofaasd.json list every key; a test
 * checks that they agree with this table.
 */
#ifndef SF_CONFIG_H
#define SF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "log.h"

#define SF_CONFIG_DEFAULT_PATH "/etc/sofaas/sofaasd.json"

#ifndef SOFAAS_VERSION /* normally set by CMake from project(VERSION) */
#define SOFAAS_VERSION "0.1.0"
#endif

/* Strings are owned by the sf_config (freed by sf_config_clear). "" means
 * "not set" where a key is optional. */
typedef struct sf_config_pool {
    unsigned generic_min; /* generic workers kept ready */
    unsigned max_workers; /* all workers together */
    char *worker;         /* sofaas-worker path; "" = next to sofaasd */
    unsigned spawn_rate;  /* background worker spawns per second */
    bool predictive_warming;        /* keep 2x the recent peak warm */
    unsigned template_threshold_ms; /* template=auto: init at least this */
} sf_config_pool;

typedef struct sf_config_http {
    unsigned max_connections;
    unsigned header_timeout_ms;
    unsigned body_timeout_ms;
    unsigned keepalive_timeout_ms;
    unsigned invoke_body_max_kb;
} sf_config_http;

typedef struct sf_config_deploy {
    unsigned max_artifact_mb;
} sf_config_deploy;

typedef struct sf_config_shutdown {
    unsigned drain_timeout_ms;
} sf_config_shutdown;

typedef struct sf_config_logs {
    unsigned function_max_kib;         /* function output kept per call */
    unsigned function_retention_hours; /* function logs kept this long */
} sf_config_logs;
typedef struct sf_config_sandbox {
    bool enabled;      /* false only for benchmarks/debugging (--sandbox off) */
    char *worker_user; /* USER or UID:GID when root; "" = sofaas or nobody */
} sf_config_sandbox;
/* Metering (meter.c turns these into its sf_meter_config). */
typedef struct sf_config_meter {
    char *mode; /* sync | async | off */
    unsigned retention_days;
    unsigned commit_interval_us;
    bool fsync;
    unsigned rollup_interval_s;
    unsigned wal_max_mb;
    unsigned spill_max_mb;
} sf_config_meter;

/* Prices: decimal strings, parsed exactly by meter.c (never floats). */
typedef struct sf_config_billing {
    char *price_per_request;
    char *price_per_gb_second;
    unsigned granularity_ms;
    char *currency;
} sf_config_billing;

typedef struct sf_config {
    char *file; /* the file that was read, or NULL */
    char *listen;
    char *state_dir;
    char *admin_token_file;
    enum sf_log_level log_level;
    bool access_log;
    sf_config_pool pool;
    sf_config_http http;
    sf_config_deploy deploy;
    sf_config_shutdown shutdown;
    sf_config_logs logs;
    sf_config_sandbox sandbox;
    sf_config_meter meter;
    sf_config_billing billing;
} sf_config;

/* What main should do after sf_config_load. */
enum sf_config_action {
    SF_CONFIG_RUN,
    SF_CONFIG_EXIT_OK,    /* --help, --version, --check-config passed */
    SF_CONFIG_EXIT_USAGE, /* bad flags (exit 2) */
    SF_CONFIG_EXIT_ERROR, /* bad file (exit 1) */
    SF_CONFIG_CHECK_SANDBOX, /* --check-sandbox: cfg is filled, report */
};

/*
 * Builds *cfg from defaults, the config file and argv (argv[0] ignored);
 * does not keep argv. Errors are written to err (one line each, naming the
 * key path). On SF_CONFIG_RUN and SF_CONFIG_CHECK_SANDBOX *cfg is filled;
 * otherwise it is cleared.
 * Safe to call again on a fresh sf_config (SIGHUP).
 */
enum sf_config_action sf_config_load(sf_config *cfg, int argc, char **argv,
                                     FILE *err);

/* Frees the strings of cfg and zeroes it. NULL-safe. */
void sf_config_clear(sf_config *cfg);

/*
 * Parses "HOST:PORT" or "[V6]:PORT" into host (NUL-terminated) and port.
 * Returns 0 or -EINVAL.
 */
int sf_config_parse_listen(const char *s, char *host, size_t hostlen,
                           int *port);

/*
 * Compares two configurations key by key. For every key that differs,
 * calls cb with its path and whether it can change without a restart.
 * Returns the number of differing keys that need a restart.
 */
unsigned sf_config_diff(const sf_config *a, const sf_config *b,
                        void (*cb)(void *ctx, const char *path,
                                   bool reloadable),
                        void *ctx);

/*
 * Copies into dst the value of every key of src that cannot change without
 * a restart, so that after a reload the running daemon's view stays true.
 */
int sf_config_keep_restart_keys(sf_config *dst, const sf_config *src);

/* The effective configuration as JSON, every key (--print-config).
 * Caller frees with cJSON_Delete. NULL on allocation failure. */
struct cJSON *sf_config_to_json(const sf_config *cfg);

/* Usage text for --help. */
void sf_config_usage(FILE *out);

#endif
