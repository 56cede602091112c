/*
 * router.h - maps a request's method and path to a route of the HTTP surface.
 *
 * The route table lives in router.c and is the single list of what the daemon
 * serves (docs/api.md and docs/openapi.yaml describe the same list). Matching
 * is on the raw path, before any percent-decoding, so a function name can
 * never be smuggled in encoded form.
 */
#ifndef SF_ROUTER_H
#define SF_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

typedef enum sf_route_id {
    SF_ROUTE_NONE = 0,
    SF_ROUTE_HEALTHZ,
    SF_ROUTE_FN_LIST,
    SF_ROUTE_FN_DEPLOY,
    SF_ROUTE_FN_GET,
    SF_ROUTE_FN_DELETE,
    SF_ROUTE_FN_PATCH,
    SF_ROUTE_INVOKE,
    SF_ROUTE_READYZ,
    SF_ROUTE_METRICS,
    SF_ROUTE_FN_LOGS,
    SF_ROUTE_USAGE,       /* usage.c */
    SF_ROUTE_USAGE_CSV,
    SF_ROUTE_INVOCATIONS,
} sf_route_id;

typedef struct sf_route {
    sf_route_id id;
    int miss_status;    /* when id == NONE: 404, or 405 for a known path */
    bool admin;         /* under /v1: needs the admin token */
    const char *name;   /* {name} segment (points into path), or NULL */
    size_t name_len;
    bool name_valid;    /* name matches ^[a-z0-9][a-z0-9-]{0,62}$ */
    const char *subpath; /* INVOKE: the part after /fn/{name}, never empty */
    size_t subpath_len;
} sf_route;

/* One row of the route table, for docs and the OpenAPI consistency test. */
typedef struct sf_route_def {
    const char *method; /* "GET", ..., or "*" for any */
    const char *pattern;
    sf_route_id id;
} sf_route_def;

/* path is the raw path without the query, path_len bytes. */
void sf_router_match(const char *method, const char *path, size_t path_len,
                     sf_route *out);

/* True if s matches ^[a-z0-9][a-z0-9-]{0,62}$. */
bool sf_router_valid_name(const char *s, size_t len);

/* The route table; *n receives its length. */
const sf_route_def *sf_router_table(size_t *n);

#endif
