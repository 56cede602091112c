/*
 * api.h - the daemon's HTTP surface: routing decisions at headers-complete
 * (auth, body limits) and the handlers for the admin API (/v1/...), health
 * and invocation (/fn/{name}/...). Glues http.c to registry.c and pool.c.
 * Runs on the loop thread.
 */
#ifndef SF_API_H
#define SF_API_H

#include <stddef.h>

#include "fnlog.h"
#include "http.h"
#include "metrics.h"
#include "meter.h"
#include "pool.h"
#include "registry.h"

#define SF_API_INVOKE_BODY_MAX (6u << 20)
#define SF_API_DEPLOY_BODY_MAX (50u << 20)

typedef struct sf_api_config {
    const char *admin_token; /* NULL: admin API open (loopback only) */
    size_t invoke_body_max;
    size_t deploy_body_max;
    bool access_log;     /* one info line per invocation (--access-log) */
    sf_metrics *metrics; /* borrowed; NULL: /metrics answers 503 */
    sf_fnlog *fnlog;     /* borrowed; NULL: function logs answer 503 */
    sf_meter *meter; /* borrowed; records and bills invocations */
} sf_api_config;

typedef struct sf_api sf_api;

/* Borrows reg and pool; copies cfg (and the token). */
sf_api *sf_api_new(sf_registry *reg, sf_pool *pool, const sf_api_config *cfg);
/* Changes the body limits for requests that start from now on (SIGHUP);
 * 0 keeps the built-in default. */
void sf_api_set_limits(sf_api *api, size_t invoke_body_max,
                       size_t deploy_body_max);
/* Wipes the token and frees. NULL-safe. */
void sf_api_free(sf_api *api);
/*
 * Readiness as /readyz reports it. main sets it true at the moment the
 * daemon is ready to serve (listening, database open, generic pool up:
 * sf_pool_on_ready), which is also when systemd gets READY=1, and false
 * when it starts to stop. Starts false.
 */
void sf_api_set_ready(sf_api *api, bool ready);
/* Turns the per-invocation access log line on or off (SIGHUP). */
void sf_api_set_access_log(sf_api *api, bool on);
bool sf_api_ready(const sf_api *api);

/* Starts the min_warm instances of every live function (daemon start). */
void sf_api_provision_all(sf_api *api);
/* The handlers to give sf_http_server_new, with api as ctx. */
const sf_http_handlers *sf_api_handlers(void);

#endif
