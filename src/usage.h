/*
 * usage.h - the read side of metering: GET /v1/usage (JSON), GET
 * /v1/usage.csv and GET /v1/invocations. Usage sums raw invocation rows and
 * the hourly roll-ups of expired rows together, so a query never notices
 * the retention boundary. Parameters are checked on the loop thread; the
 * query runs on libuv's thread pool with its own read-only connection (WAL:
 * it reads the last committed state while the meter's writer keeps
 * committing), so large reports never stall the loop.
 */
#ifndef SF_USAGE_H
#define SF_USAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "http.h"
#include "meter.h"
#include "registry.h"

/* Answers req (route USAGE, USAGE_CSV or INVOCATIONS). */
void sf_usage_handle(sf_registry *reg, sf_meter *m, sf_http_req *req);

/*
 * Parses an RFC 3339 timestamp ("2026-11-01T00:00:00Z", fractional seconds
 * and numeric offsets allowed) into µs since the epoch. Returns 0 or
 * -EINVAL.
 */
int sf_usage_parse_rfc3339(const char *s, size_t len, int64_t *out_us);

#endif
