/*
 * router.c - the route table and its matcher (see router.h).
 *
 * Patterns are literal segments plus "{name}" (one segment) and a trailing
 * "{path...}" (the rest, possibly empty). The table is small, so matching is
 * a linear scan; it runs once per request, at headers-complete.
 */
#include "router.h"

#include <string.h>

static const sf_route_def routes[] = {
    {"GET", "/healthz", SF_ROUTE_HEALTHZ},
    {"GET", "/readyz", SF_ROUTE_READYZ},
    {"GET", "/metrics", SF_ROUTE_METRICS},
    {"GET", "/v1/functions", SF_ROUTE_FN_LIST},
    {"PUT", "/v1/functions/{name}", SF_ROUTE_FN_DEPLOY},
    {"GET", "/v1/functions/{name}", SF_ROUTE_FN_GET},
    {"DELETE", "/v1/functions/{name}", SF_ROUTE_FN_DELETE},
    {"PATCH", "/v1/functions/{name}", SF_ROUTE_FN_PATCH},
    {"GET", "/v1/functions/{name}/logs", SF_ROUTE_FN_LOGS},
    {"GET", "/v1/usage", SF_ROUTE_USAGE},
    {"GET", "/v1/usage.csv", SF_ROUTE_USAGE_CSV},
    {"GET", "/v1/invocations", SF_ROUTE_INVOCATIONS},
    {"*", "/fn/{name}{path...}", SF_ROUTE_INVOKE},
};

const sf_route_def *sf_router_table(size_t *n)
{
    *n = sizeof(routes) / sizeof(routes[0]);
    return routes;
}

bool sf_router_valid_name(const char *s, size_t len)
{
    if (len == 0 || len > 63)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  (c == '-' && i > 0);
        if (!ok)
            return false;
    }
    return true;
}

/*
 * Matches path against pattern. Fills name and subpath when the pattern has
 * them. Returns true on a match.
 */
static bool match(const char *pat, const char *path, size_t len, sf_route *r)
{
    size_t i = 0;

    while (*pat != '\0') {
        if (strncmp(pat, "{name}", 6) == 0) {
            size_t start = i;
            while (i < len && path[i] != '/')
                i++;
            if (i == start)
                return false;
            r->name = path + start;
            r->name_len = i - start;
            pat += 6;
        } else if (strcmp(pat, "{path...}") == 0) {
            /* Either nothing, or a '/'-led rest. */
            if (i < len && path[i] != '/')
                return false;
            r->subpath = i < len ? path + i : "/";
            r->subpath_len = i < len ? len - i : 1;
            return true;
        } else {
            if (i >= len || path[i] != *pat)
                return false;
            i++;
            pat++;
        }
    }
    return i == len;
}

void sf_router_match(const char *method, const char *path, size_t path_len,
                     sf_route *out)
{
    bool path_known = false;

    memset(out, 0, sizeof(*out));
    for (size_t k = 0; k < sizeof(routes) / sizeof(routes[0]); k++) {
        sf_route r = {0};
        if (!match(routes[k].pattern, path, path_len, &r))
            continue;
        path_known = true;
        if (strcmp(routes[k].method, "*") != 0 &&
            strcmp(routes[k].method, method) != 0)
            continue;
        *out = r;
        out->id = routes[k].id;
        out->admin = strncmp(routes[k].pattern, "/v1/", 4) == 0;
        out->name_valid =
            r.name != NULL && sf_router_valid_name(r.name, r.name_len);
        return;
    }
    out->id = SF_ROUTE_NONE;
    out->miss_status = path_known ? 405 : 404;
    out->admin = path_len >= 4 && strncmp(path, "/v1/", 4) == 0;
}
