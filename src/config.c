/*
 * config.c - defaults, the JSON config file and command-line flags of
 * sofaasd, all driven by one table of keys (see config.h).
 *
 * Every key is described once, in a section's key array: its name, type,
 * bounds, default, whether a SIGHUP can change it, and where it lives in
 * sf_config. Flags are not a second parser: each one names a key path and
 * its argument goes through the same conversion and checks as a JSON value,
 * so "--workers x" and {"pool":{"generic_min":"x"}} fail the same way.
 */
#include "config.h"
#include "meter.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "router.h"

#define SOFAAS_NO_ABI_STAMP
#include "sofaas.h"

#define MAX_FILE_BYTES (1u << 20)

enum key_type { T_STRING, T_UINT, T_BOOL, T_LOG_LEVEL };

typedef struct key {
    const char *name;
    enum key_type type;
    size_t offset; /* within the section's struct */
    unsigned min, max;
    const char *def; /* default, as a flag argument would spell it */
    bool reloadable;
} key;

typedef struct section {
    const char *name; /* "" for top-level keys */
    size_t offset;    /* of the section's struct within sf_config */
    const key *keys;
} section;

#define K_STR(st, f, d, rl)                                                    \
    {                                                                          \
#f, T_STRING, offsetof(st, f), 0, 0, d, rl                             \
    }
#define K_UINT(st, f, lo, hi, d, rl)                                           \
    {                                                                          \
#f, T_UINT, offsetof(st, f), lo, hi, d, rl                             \
    }
#define K_BOOL(st, f, d, rl)                                                   \
    {                                                                          \
#f, T_BOOL, offsetof(st, f), 0, 0, d, rl                               \
    }

static const key top_keys[] = {
    K_STR(sf_config, listen, "127.0.0.1:8080", false),
    K_STR(sf_config, state_dir, "./var", false),
    K_STR(sf_config, admin_token_file, "", false),
    {"log_level", T_LOG_LEVEL, offsetof(sf_config, log_level), 0, 0, "info",
     true},
    K_BOOL(sf_config, access_log, "true", true),
    {NULL, 0, 0, 0, 0, NULL, false},
};

static const key pool_keys[] = {
    K_UINT(sf_config_pool, generic_min, 0, 1024, "4", true),
    K_UINT(sf_config_pool, max_workers, 1, 4096, "64", true),
    K_STR(sf_config_pool, worker, "", false),
    K_UINT(sf_config_pool, spawn_rate, 1, 100000, "100", false),
    K_BOOL(sf_config_pool, predictive_warming, "true", false),
    K_UINT(sf_config_pool, template_threshold_ms, 1, 3600000, "20", false),
    {NULL, 0, 0, 0, 0, NULL, false},
};

static const key http_keys[] = {
    K_UINT(sf_config_http, max_connections, 1, 1000000, "10000", true),
    K_UINT(sf_config_http, header_timeout_ms, 100, 3600000, "10000", true),
    K_UINT(sf_config_http, body_timeout_ms, 100, 3600000, "30000", true),
    K_UINT(sf_config_http, keepalive_timeout_ms, 100, 3600000, "15000", true),
    K_UINT(sf_config_http, invoke_body_max_kb, 1, 1048576, "6144", true),
    {NULL, 0, 0, 0, 0, NULL, false},
};

static const key deploy_keys[] = {
    K_UINT(sf_config_deploy, max_artifact_mb, 1, 4096, "50", true),
    {NULL, 0, 0, 0, 0, NULL, false},
};

static const key logs_keys[] = {
    K_UINT(sf_config_logs, function_max_kib, 1, 1048576, "64", false),
    K_UINT(sf_config_logs, function_retention_hours, 1, 87600, "168", false),
    {NULL, 0, 0, 0, 0, NULL, false},
};

static const key shutdown_keys[] = {
    K_UINT(sf_config_shutdown, drain_timeout_ms, 0, 3600000, "30000", true),
    {NULL, 0, 0, 0, 0, NULL, false},
};

/* The worker sandbox (docs/sandbox.md): identity and the benchmark switch. */
static const key sandbox_keys[] = {
    K_BOOL(sf_config_sandbox, enabled, "true", false),
    K_STR(sf_config_sandbox, worker_user, "", false),
    {NULL, 0, 0, 0, 0, NULL, false},
};

/* meter.c checks the meaning of these (mode, decimals) in validate(). */
static const key meter_keys[] = {
    K_STR(sf_config_meter, mode, "sync", false),
    K_UINT(sf_config_meter, retention_days, 0, 36500, "30", false),
    K_UINT(sf_config_meter, commit_interval_us, 0, 1000000, "300", false),
    K_BOOL(sf_config_meter, fsync, "false", false),
    K_UINT(sf_config_meter, rollup_interval_s, 1, 86400, "3600", false),
    K_UINT(sf_config_meter, wal_max_mb, 1, 4096, "64", false),
    K_UINT(sf_config_meter, spill_max_mb, 0, 4096, "64", false),
    {NULL, 0, 0, 0, 0, NULL, false},
};

static const key billing_keys[] = {
    K_STR(sf_config_billing, price_per_request, "0.0000002", false),
    K_STR(sf_config_billing, price_per_gb_second, "0.0000166667", false),
    K_UINT(sf_config_billing, granularity_ms, 1, 60000, "1", false),
    K_STR(sf_config_billing, currency, "USD", false),
    {NULL, 0, 0, 0, 0, NULL, false},
};

/* One row per section. Other modules add theirs here (meter, billing...). */
static const section sections[] = {
    {"", 0, top_keys},
    {"pool", offsetof(sf_config, pool), pool_keys},
    {"http", offsetof(sf_config, http), http_keys},
    {"deploy", offsetof(sf_config, deploy), deploy_keys},
    {"shutdown", offsetof(sf_config, shutdown), shutdown_keys},
    {"logs", offsetof(sf_config, logs), logs_keys},
    {"sandbox", offsetof(sf_config, sandbox), sandbox_keys},
    {"meter", offsetof(sf_config, meter), meter_keys},
    {"billing", offsetof(sf_config, billing), billing_keys},
};
#define NSECTIONS (sizeof(sections) / sizeof(sections[0]))

/* Flags that set a key: the flag's argument is the key's value. */
static const struct {
    const char *flag;
    const char *path;
} flag_keys[] = {
    {"listen", "listen"},
    {"state-dir", "state_dir"},
    {"admin-token-file", "admin_token_file"},
    {"log-level", "log_level"},
    {"workers", "pool.generic_min"},
    {"max-workers", "pool.max_workers"},
    {"worker", "pool.worker"},
    {"spawn-rate", "pool.spawn_rate"},
    {"predictive-warming", "pool.predictive_warming"},
    {"template-threshold-ms", "pool.template_threshold_ms"},
    {"http-header-timeout-ms", "http.header_timeout_ms"},
    {"http-body-timeout-ms", "http.body_timeout_ms"},
    {"http-keepalive-timeout-ms", "http.keepalive_timeout_ms"},
    {"http-max-connections", "http.max_connections"},
    {"shutdown-drain-timeout-ms", "shutdown.drain_timeout_ms"},
    {"access-log", "access_log"},
    {"function-log-max-kib", "logs.function_max_kib"},
    {"function-log-retention-hours", "logs.function_retention_hours"},
    {"sandbox", "sandbox.enabled"}, /* --sandbox on|off */
    {"worker-user", "sandbox.worker_user"},
    {"meter-mode", "meter.mode"},
    {"meter-retention-days", "meter.retention_days"},
    {"meter-commit-interval-us", "meter.commit_interval_us"},
    {"meter-fsync", "meter.fsync"},
    {"meter-rollup-interval-s", "meter.rollup_interval_s"},
    {"meter-wal-max-mb", "meter.wal_max_mb"},
    {"meter-spill-max-mb", "meter.spill_max_mb"},
    {"price-per-request", "billing.price_per_request"},
    {"price-per-gb-second", "billing.price_per_gb_second"},
    {"billing-granularity-ms", "billing.granularity_ms"},
    {"currency", "billing.currency"},
};
#define NFLAGS (sizeof(flag_keys) / sizeof(flag_keys[0]))

static void *field(sf_config *cfg, const section *s, const key *k)
{
    return (char *)cfg + s->offset + k->offset;
}

static const void *cfield(const sf_config *cfg, const section *s, const key *k)
{
    return (const char *)cfg + s->offset + k->offset;
}

static void path_of(const section *s, const key *k, char *out, size_t len)
{
    if (s->name[0] == '\0')
        snprintf(out, len, "%s", k->name);
    else
        snprintf(out, len, "%s.%s", s->name, k->name);
}

static const char *expected(const key *k, char *buf, size_t len)
{
    switch (k->type) {
    case T_STRING:
        return "string";
    case T_BOOL:
        return "boolean";
    case T_LOG_LEVEL:
        return "string, one of error|warn|info|debug";
    case T_UINT:
        snprintf(buf, len, "integer %u..%u", k->min, k->max);
        return buf;
    }
    return "?";
}

static const char *json_type(const cJSON *v)
{
    if (cJSON_IsString(v))
        return "string";
    if (cJSON_IsNumber(v))
        return "number";
    if (cJSON_IsBool(v))
        return "boolean";
    if (cJSON_IsNull(v))
        return "null";
    if (cJSON_IsArray(v))
        return "array";
    if (cJSON_IsObject(v))
        return "object";
    return "invalid";
}

static int find_key(const char *path, const section **so, const key **ko)
{
    const char *dot = strchr(path, '.');
    size_t sl = dot ? (size_t)(dot - path) : 0;
    const char *name = dot ? dot + 1 : path;

    for (size_t i = 0; i < NSECTIONS; i++) {
        const section *s = &sections[i];
        if (strlen(s->name) != sl || strncmp(s->name, path, sl) != 0)
            continue;
        for (const key *k = s->keys; k->name != NULL; k++) {
            if (strcmp(k->name, name) == 0) {
                *so = s;
                *ko = k;
                return 0;
            }
        }
    }
    return -ENOENT;
}

static int set_string(char **dst, const char *v)
{
    char *c = strdup(v);

    if (c == NULL)
        return -ENOMEM;
    free(*dst);
    *dst = c;
    return 0;
}

/*
 * Sets key k from a flag-style string. Returns 0, -EINVAL (reported to err
 * with the path and expected type, prefixed by where) or -ENOMEM.
 */
static int set_from_string(sf_config *cfg, const section *s, const key *k,
                           const char *v, const char *where, FILE *err)
{
    char path[128], eb[64];
    char *end;
    unsigned long long n;

    path_of(s, k, path, sizeof(path));
    switch (k->type) {
    case T_STRING:
        return set_string(field(cfg, s, k), v);
    case T_LOG_LEVEL:
        if (sf_log_parse_level(v, field(cfg, s, k)) == 0)
            return 0;
        break;
    case T_BOOL:
        /* on/off too: flags like --access-log on read naturally. */
        if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0 ||
            strcmp(v, "on") == 0 || strcmp(v, "off") == 0) {
            *(bool *)field(cfg, s, k) = v[0] == 't' || strcmp(v, "on") == 0;
            return 0;
        }
        break;
    case T_UINT:
        errno = 0;
        n = strtoull(v, &end, 10);
        if (errno == 0 && end != v && *end == '\0' && v[0] != '-' &&
            n >= k->min && n <= k->max) {
            *(unsigned *)field(cfg, s, k) = (unsigned)n;
            return 0;
        }
        break;
    }
    fprintf(err, "sofaasd: %s: %s: expected %s, got '%s'\n", where, path,
            expected(k, eb, sizeof(eb)), v);
    return -EINVAL;
}

/* Sets key k from a JSON value, checking its type first. */
static int set_from_json(sf_config *cfg, const section *s, const key *k,
                         const cJSON *v, const char *where, FILE *err)
{
    char path[128], eb[64], num[32];
    double d;

    path_of(s, k, path, sizeof(path));
    switch (k->type) {
    case T_STRING:
    case T_LOG_LEVEL:
        if (cJSON_IsString(v))
            return set_from_string(cfg, s, k, v->valuestring, where, err);
        break;
    case T_BOOL:
        if (cJSON_IsBool(v))
            return set_from_string(
                cfg, s, k, cJSON_IsTrue(v) ? "true" : "false", where, err);
        break;
    case T_UINT:
        if (!cJSON_IsNumber(v))
            break;
        d = v->valuedouble;
        /* Range first: converting an out-of-range double (1e300) to an
         * integer is undefined behaviour. */
        if (!(d >= k->min && d <= k->max) || d != (double)(long long)d) {
            fprintf(err, "sofaasd: %s: %s: expected %s, got %g\n", where, path,
                    expected(k, eb, sizeof(eb)), d);
            return -EINVAL;
        }
        snprintf(num, sizeof(num), "%lld", (long long)d);
        return set_from_string(cfg, s, k, num, where, err);
    }
    fprintf(err, "sofaasd: %s: %s: expected %s, got %s\n", where, path,
            expected(k, eb, sizeof(eb)), json_type(v));
    return -EINVAL;
}

static int set_defaults(sf_config *cfg)
{
    for (size_t i = 0; i < NSECTIONS; i++)
        for (const key *k = sections[i].keys; k->name != NULL; k++)
            if (set_from_string(cfg, &sections[i], k, k->def, "default",
                                stderr) < 0)
                return -ENOMEM;
    return 0;
}

static char *read_file(const char *path, FILE *err)
{
    FILE *f = fopen(path, "re");
    char *buf = NULL;
    size_t n;

    if (f == NULL) {
        fprintf(err, "sofaasd: %s: cannot read config file: %s\n", path,
                strerror(errno));
        return NULL;
    }
    buf = malloc(MAX_FILE_BYTES + 1);
    if (buf == NULL)
        goto out;
    n = fread(buf, 1, MAX_FILE_BYTES + 1, f);
    if (ferror(f) || n > MAX_FILE_BYTES) {
        fprintf(err, "sofaasd: %s: %s\n", path,
                ferror(f) ? "read error" : "larger than 1 MiB");
        free(buf);
        buf = NULL;
        goto out;
    }
    buf[n] = '\0';
out:
    fclose(f);
    return buf;
}

/* Applies every key of the JSON object in text (NUL-terminated; path is
 * for messages). Reports all problems, not just the first. */
static int apply_text(sf_config *cfg, const char *text, const char *path,
                      FILE *err)
{
    const char *ep = NULL;
    cJSON *root, *it, *sub;
    int bad = 0;

    root = cJSON_ParseWithOpts(text, &ep, true);
    if (root == NULL) {
        unsigned line = 1;
        for (const char *c = text; ep != NULL && c < ep; c++)
            line += *c == '\n';
        fprintf(err, "sofaasd: %s:%u: not valid JSON\n", path, line);
        return -EINVAL;
    }
    if (!cJSON_IsObject(root)) {
        fprintf(err,
                "sofaasd: %s: expected a JSON object at the top, got "
                "%s\n",
                path, json_type(root));
        bad = 1;
        goto out;
    }
    cJSON_ArrayForEach(it, root)
    {
        const section *s = NULL;
        const key *k = NULL;

        if (find_key(it->string, &s, &k) == 0 &&
            strchr(it->string, '.') == NULL) {
            if (set_from_json(cfg, s, k, it, path, err) < 0)
                bad = 1;
            continue;
        }
        s = NULL;
        for (size_t i = 1; i < NSECTIONS; i++)
            if (strcmp(sections[i].name, it->string) == 0)
                s = &sections[i];
        if (s == NULL) {
            fprintf(err, "sofaasd: %s: %s: unknown key\n", path, it->string);
            bad = 1;
            continue;
        }
        if (!cJSON_IsObject(it)) {
            fprintf(err, "sofaasd: %s: %s: expected object, got %s\n", path,
                    it->string, json_type(it));
            bad = 1;
            continue;
        }
        cJSON_ArrayForEach(sub, it)
        {
            k = NULL;
            for (const key *kk = s->keys; kk->name != NULL; kk++)
                if (strcmp(kk->name, sub->string) == 0)
                    k = kk;
            if (k == NULL) {
                fprintf(err, "sofaasd: %s: %s.%s: unknown key\n", path, s->name,
                        sub->string);
                bad = 1;
            } else if (set_from_json(cfg, s, k, sub, path, err) < 0) {
                bad = 1;
            }
        }
    }
out:
    cJSON_Delete(root);
    return bad ? -EINVAL : 0;
}

static int apply_file(sf_config *cfg, const char *path, FILE *err)
{
    char *text = read_file(path, err);
    int r;

    if (text == NULL)
        return -EINVAL;
    r = apply_text(cfg, text, path, err);
    free(text);
    return r;
}

/* Checks that involve the meaning of a value, not just its type. */
static int validate(const sf_config *cfg, const char *where, FILE *err)
{
    char host[256];
    int port;

    if (sf_config_parse_listen(cfg->listen, host, sizeof(host), &port) < 0) {
        fprintf(err,
                "sofaasd: %s: listen: expected \"HOST:PORT\" (e.g. "
                "\"127.0.0.1:8080\" or \"[::1]:8080\"), got '%s'\n",
                where, cfg->listen);
        return -EINVAL;
    }
    if (cfg->state_dir[0] == '\0') {
        fprintf(err, "sofaasd: %s: state_dir: must not be empty\n", where);
        return -EINVAL;
    }
    {
        sf_meter_config mc;
        char why[256];
        if (sf_meter_config_from(cfg, &mc, why, sizeof(why)) < 0) {
            fprintf(err, "sofaasd: %s: %s\n", where, why);
            return -EINVAL;
        }
    }
    return 0;
}

int sf_config_parse_listen(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(s, ':');
    char *end;
    long p;
    size_t hl;

    if (colon == NULL)
        return -EINVAL;
    hl = (size_t)(colon - s);
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') { /* [::1]:8080 */
        s++;
        hl -= 2;
    }
    if (hl == 0 || hl >= hostlen)
        return -EINVAL;
    memcpy(host, s, hl);
    host[hl] = '\0';
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || end == colon + 1 || p < 0 || p > 65535)
        return -EINVAL;
    *port = (int)p;
    return 0;
}

void sf_config_usage(FILE *f)
{
    fprintf(f,
            "usage: sofaasd [options]\n"
            "  --config FILE            config file (default %s if it "
            "exists)\n"
            "  --check-config FILE      validate FILE and exit\n"
            "  --print-config           print the effective config as JSON "
            "and exit\n"
            "  --set KEY=VALUE          set any config key, e.g. "
            "http.max_connections=100\n"
            "  --listen HOST:PORT       address to serve on (127.0.0.1:8080)\n"
            "  --state-dir DIR          database and artifacts (./var)\n"
            "  --workers N              generic workers kept ready (4)\n"
            "  --max-workers N          all workers together (64)\n"
            "  --spawn-rate N           background worker spawns per second "
            "(100)\n"
            "  --predictive-warming on|off  keep twice the recent peak "
            "warm (on)\n"
            "  --template-threshold-ms N  template=auto forks instances of "
            "functions\n"
            "                           whose init took >= N ms (20)\n"
            "  --admin-token-file FILE  bearer token for /v1 (or env "
            "SOFAAS_ADMIN_TOKEN)\n"
            "  --worker PATH            sofaas-worker executable (next to "
            "sofaasd)\n"
            "  --log-level LEVEL        error|warn|info|debug (info)\n"
            "  --http-header-timeout-ms N, --http-body-timeout-ms N,\n"
            "  --http-keepalive-timeout-ms N, --http-max-connections N,\n"
            "  --shutdown-drain-timeout-ms N   the http.* and shutdown.* "
            "keys\n"
            "  --access-log on|off      one info line per invocation (on)\n"
            "  --function-log-max-kib N, --function-log-retention-hours N\n"
            "                           the logs.* keys (64, 168)\n"
            "  --print-routes           print the route table and exit\n"
            "  --worker-user USER|UID:GID  run functions as this user "
            "(sandbox.worker_user;\n"
            "                           as root: sofaas-worker, else nobody)\n"
            "  --sandbox on|off         off is for benchmarks and debugging "
            "ONLY\n"
            "  --check-sandbox          print the sandbox layers this kernel "
            "supports and\n"
            "                           build a real one in a worker, then "
            "exit\n"
            "  --meter-mode sync|async|off, --meter-retention-days N,\n"
            "  --meter-commit-interval-us N, --meter-fsync true|false,\n"
            "  --meter-rollup-interval-s N, --meter-wal-max-mb N,\n"
            "  --meter-spill-max-mb N\n"
            "                           the meter.* keys "
            "(docs/metering.md)\n"
            "  --price-per-request X, --price-per-gb-second X,\n"
            "  --billing-granularity-ms N, --currency CODE   the billing.* "
            "keys\n"
            "  --version, --help\n"
            "Flags override the config file. See sofaasd(8) and "
            "docs/configuration.md.\n",
            SF_CONFIG_DEFAULT_PATH);
}

void sf_config_clear(sf_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < NSECTIONS; i++)
        for (const key *k = sections[i].keys; k->name != NULL; k++)
            if (k->type == T_STRING)
                free(*(char **)field(cfg, &sections[i], k));
    free(cfg->file);
    memset(cfg, 0, sizeof(*cfg));
}

/* One command-line override, applied after the file. */
typedef struct override {
    const char *path;
    const char *value;
    char *owned; /* for --set: path and value split in place */
} override;

static int print_config(const sf_config *cfg)
{
    cJSON *j = sf_config_to_json(cfg);
    char *s = j ? cJSON_Print(j) : NULL;

    cJSON_Delete(j);
    if (s == NULL)
        return -ENOMEM;
    printf("%s\n", s);
    free(s);
    return 0;
}

enum sf_config_action sf_config_load(sf_config *cfg, int argc, char **argv,
                                     FILE *err)
{
    enum {
        O_CONFIG = 256,
        O_CHECK,
        O_PRINT,
        O_SET,
        O_VERSION,
        O_HELP,
        O_ROUTES,
        O_CHECK_SANDBOX
    };
    struct option longopts[NFLAGS + 9];
    override *ov = calloc((size_t)argc + 1, sizeof(*ov));
    size_t nov = 0, nl = 0;
    const char *file = NULL;
    bool check = false, print = false, check_sandbox = false;
    enum sf_config_action act = SF_CONFIG_EXIT_ERROR;
    int c, idx;

    memset(cfg, 0, sizeof(*cfg));
    if (ov == NULL)
        return SF_CONFIG_EXIT_ERROR;
    for (size_t i = 0; i < NFLAGS; i++)
        longopts[nl++] =
            (struct option){flag_keys[i].flag, required_argument, NULL, (int)i};
    longopts[nl++] =
        (struct option){"config", required_argument, NULL, O_CONFIG};
    longopts[nl++] =
        (struct option){"check-config", required_argument, NULL, O_CHECK};
    longopts[nl++] =
        (struct option){"print-config", no_argument, NULL, O_PRINT};
    longopts[nl++] = (struct option){"set", required_argument, NULL, O_SET};
    longopts[nl++] =
        (struct option){"print-routes", no_argument, NULL, O_ROUTES};
    longopts[nl++] = (struct option){"version", no_argument, NULL, O_VERSION};
    longopts[nl++] = (struct option){"help", no_argument, NULL, O_HELP};
    longopts[nl++] =
        (struct option){"check-sandbox", no_argument, NULL, O_CHECK_SANDBOX};
    longopts[nl] = (struct option){NULL, 0, NULL, 0};

    optind = 0; /* GNU: full re-initialization, so SIGHUP can parse again */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, &idx)) != -1) {
        if (c >= 0 && c < (int)NFLAGS) {
            ov[nov].path = flag_keys[c].path;
            ov[nov++].value = optarg;
            continue;
        }
        switch (c) {
        case O_CONFIG:
            file = optarg;
            break;
        case O_CHECK:
            file = optarg;
            check = true;
            break;
        case O_PRINT:
            print = true;
            break;
        case O_CHECK_SANDBOX:
            check_sandbox = true;
            break;
        case O_SET: {
            char *eq, *dup = strdup(optarg);
            if (dup == NULL)
                goto out;
            eq = strchr(dup, '=');
            if (eq == NULL) {
                fprintf(err, "sofaasd: --set: expected KEY=VALUE, got '%s'\n",
                        optarg);
                free(dup);
                act = SF_CONFIG_EXIT_USAGE;
                goto out;
            }
            *eq = '\0';
            ov[nov].owned = dup;
            ov[nov].path = dup;
            ov[nov++].value = eq + 1;
            break;
        }
        case O_ROUTES: {
            size_t n;
            const sf_route_def *t = sf_router_table(&n);
            for (size_t i = 0; i < n; i++)
                printf("%s %s\n", t[i].method, t[i].pattern);
            act = SF_CONFIG_EXIT_OK;
            goto out;
        }
        case O_VERSION:
            printf("sofaasd %s (function ABI %d)\n", SOFAAS_VERSION,
                   SOFAAS_ABI_VERSION);
            act = SF_CONFIG_EXIT_OK;
            goto out;
        case O_HELP:
            sf_config_usage(stdout);
            act = SF_CONFIG_EXIT_OK;
            goto out;
        default:
            if (optopt != 0 || argv[optind - 1] == NULL)
                fprintf(err, "sofaasd: option '%s' needs an argument\n",
                        argv[optind - 1]);
            else
                fprintf(err, "sofaasd: unknown option '%s'\n",
                        argv[optind - 1]);
            sf_config_usage(err);
            act = SF_CONFIG_EXIT_USAGE;
            goto out;
        }
    }
    if (optind < argc) {
        fprintf(err, "sofaasd: unexpected argument '%s'\n", argv[optind]);
        sf_config_usage(err);
        act = SF_CONFIG_EXIT_USAGE;
        goto out;
    }

    if (set_defaults(cfg) < 0)
        goto out;
    if (file == NULL && access(SF_CONFIG_DEFAULT_PATH, F_OK) == 0)
        file = SF_CONFIG_DEFAULT_PATH;
    if (file != NULL) {
        if ((cfg->file = strdup(file)) == NULL ||
            apply_file(cfg, file, err) < 0 || validate(cfg, file, err) < 0)
            goto out;
    }
    for (size_t i = 0; i < nov; i++) {
        const section *s;
        const key *k;

        if (find_key(ov[i].path, &s, &k) < 0) {
            fprintf(err, "sofaasd: --set: %s: unknown key\n", ov[i].path);
            act = SF_CONFIG_EXIT_USAGE;
            goto out;
        }
        if (set_from_string(cfg, s, k, ov[i].value, "command line", err) < 0 ||
            validate(cfg, "command line", err) < 0) {
            act = SF_CONFIG_EXIT_USAGE;
            goto out;
        }
    }
    if (check) {
        printf("sofaasd: %s: OK\n", file);
        act = SF_CONFIG_EXIT_OK;
    } else if (print) {
        act = print_config(cfg) == 0 ? SF_CONFIG_EXIT_OK : SF_CONFIG_EXIT_ERROR;
    } else if (check_sandbox) {
        act = SF_CONFIG_CHECK_SANDBOX;
    } else {
        act = SF_CONFIG_RUN;
    }

out:
    for (size_t i = 0; i < nov; i++)
        free(ov[i].owned);
    free(ov);
    if (act != SF_CONFIG_RUN && act != SF_CONFIG_CHECK_SANDBOX)
        sf_config_clear(cfg);
    return act;
}

static bool key_equal(const sf_config *a, const sf_config *b, const section *s,
                      const key *k)
{
    const void *fa = cfield(a, s, k), *fb = cfield(b, s, k);

    switch (k->type) {
    case T_STRING:
        return strcmp(*(char *const *)fa, *(char *const *)fb) == 0;
    case T_UINT:
        return *(const unsigned *)fa == *(const unsigned *)fb;
    case T_BOOL:
        return *(const bool *)fa == *(const bool *)fb;
    case T_LOG_LEVEL:
        return *(const enum sf_log_level *)fa == *(const enum sf_log_level *)fb;
    }
    return false;
}

unsigned sf_config_diff(const sf_config *a, const sf_config *b,
                        void (*cb)(void *ctx, const char *path,
                                   bool reloadable),
                        void *ctx)
{
    unsigned restart = 0;
    char path[128];

    for (size_t i = 0; i < NSECTIONS; i++) {
        for (const key *k = sections[i].keys; k->name != NULL; k++) {
            if (key_equal(a, b, &sections[i], k))
                continue;
            path_of(&sections[i], k, path, sizeof(path));
            if (!k->reloadable)
                restart++;
            if (cb != NULL)
                cb(ctx, path, k->reloadable);
        }
    }
    return restart;
}

int sf_config_keep_restart_keys(sf_config *dst, const sf_config *src)
{
    for (size_t i = 0; i < NSECTIONS; i++) {
        const section *s = &sections[i];
        for (const key *k = s->keys; k->name != NULL; k++) {
            if (k->reloadable)
                continue;
            switch (k->type) {
            case T_STRING:
                if (set_string(field(dst, s, k),
                               *(char *const *)cfield(src, s, k)) < 0)
                    return -ENOMEM;
                break;
            case T_UINT:
                *(unsigned *)field(dst, s, k) =
                    *(const unsigned *)cfield(src, s, k);
                break;
            case T_BOOL:
                *(bool *)field(dst, s, k) = *(const bool *)cfield(src, s, k);
                break;
            case T_LOG_LEVEL:
                *(enum sf_log_level *)field(dst, s, k) =
                    *(const enum sf_log_level *)cfield(src, s, k);
                break;
            }
        }
    }
    return 0;
}

cJSON *sf_config_to_json(const sf_config *cfg)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    cJSON *root = cJSON_CreateObject();

    if (root == NULL)
        return NULL;
    for (size_t i = 0; i < NSECTIONS; i++) {
        const section *s = &sections[i];
        cJSON *obj = root, *v = NULL;

        if (s->name[0] != '\0' &&
            (obj = cJSON_AddObjectToObject(root, s->name)) == NULL)
            goto fail;
        for (const key *k = s->keys; k->name != NULL; k++) {
            const void *f = cfield(cfg, s, k);
            switch (k->type) {
            case T_STRING:
                v = cJSON_AddStringToObject(obj, k->name, *(char *const *)f);
                break;
            case T_UINT:
                v = cJSON_AddNumberToObject(obj, k->name, *(const unsigned *)f);
                break;
            case T_BOOL:
                v = cJSON_AddBoolToObject(obj, k->name, *(const bool *)f);
                break;
            case T_LOG_LEVEL:
                v = cJSON_AddStringToObject(
                    obj, k->name, levels[*(const enum sf_log_level *)f]);
                break;
            }
            if (v == NULL)
                goto fail;
        }
    }
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}
