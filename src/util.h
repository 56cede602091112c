/*
 * util.h - small helpers of the daemon: clocks, request ids, constant-time
 * comparison and timestamps.
 */
#ifndef SF_UTIL_H
#define SF_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Monotonic clock in microseconds (for durations). */
uint64_t sf_mono_us(void);
/* Wall clock, microseconds since the Unix epoch (UTC). */
int64_t sf_wall_us(void);

/* Fills out with n bytes of kernel randomness (buffered: see util.c).
 * Returns 0 or -errno. */
int sf_random_bytes(void *out, size_t n);

/* Copies the C string src into dst (cap bytes, cap > 0), truncating;
 * always NUL-terminates. Returns the length copied. For the hot path,
 * where snprintf("%s") showed in profiles. */
size_t sf_strlcpy(char *dst, const char *src, size_t cap);

/* Formats v in decimal into out (at least 21 bytes). Returns its length. */
size_t sf_fmt_u64(uint64_t v, char *out);
/* Writes a UUIDv7 (RFC 9562) as 36 chars + NUL into out. */
void sf_uuid7(char out[37]);

/* The parent pid of process pid, from /proc/PID/stat (whose command name
 * may hold any byte, ")" and newlines included). Returns it, or -errno. */
int sf_proc_ppid(int pid);

/* Compares without leaking where the first difference is. */
bool sf_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Formats µs since the epoch as RFC 3339 UTC ("2026-11-27T00:00:00Z"). */
void sf_rfc3339(int64_t us, char out[32]);

/* Parses a decimal uint64 with no sign or junk. Returns 0 or -EINVAL/-ERANGE.
 */
int sf_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out);

/* Finds key in a raw query string; returns its raw value or NULL. */
const char *sf_query_get(const char *query, const char *key, size_t *vlen);

/*
 * Parses a non-negative decimal string ("0.0000166667", "12", "3.5") into
 * an integer of 10^-scale units, exactly (more than scale decimals is an
 * error, not a rounding). Returns 0 or -EINVAL/-ERANGE (above max).
 */
int sf_parse_decimal(const char *s, size_t len, int scale, int64_t max,
                     int64_t *out);
/* Formats v (10^-scale units) as a decimal string with trailing zeros of
 * the fraction trimmed to at least two decimals ("0.20", "1.000002"). */
void sf_format_decimal(int64_t v, int scale, char *out, size_t outlen);

#endif
