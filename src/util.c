/* util.c - clocks, ids and parsing helpers of the daemon (see util.h). */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

uint64_t sf_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int64_t sf_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Kernel randomness, fetched 4 KiB at a time: ids are minted several per
 * request, and a getrandom() call each was a tenth of the daemon's system
 * calls. Bytes are handed out once and never reused; per thread, so no
 * lock. The process never forks without exec, so no copy is shared.
 */
int sf_random_bytes(void *out, size_t n)
{
    static __thread unsigned char pool[4096];
    static __thread size_t left;
    unsigned char *o = out;

    while (n > 0) {
        size_t k;
        if (left == 0) {
            ssize_t got = getrandom(pool, sizeof(pool), 0);
            if (got <= 0)
                return got < 0 ? -errno : -EIO;
            left = (size_t)got;
        }
        k = n < left ? n : left;
        memcpy(o, pool + sizeof(pool) - left, k);
        memset(pool + sizeof(pool) - left, 0, k);
        left -= k;
        o += k;
        n -= k;
    }
    return 0;
}

size_t sf_strlcpy(char *dst, const char *src, size_t cap)
{
    size_t n = strnlen(src, cap - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
    return n;
}

size_t sf_fmt_u64(uint64_t v, char *out)
{
    char d[20];
    size_t n = 0;

    do
        d[sizeof(d) - ++n] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    memcpy(out, d + sizeof(d) - n, n);
    out[n] = '\0';
    return n;
}

void sf_uuid7(char out[37])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    uint64_t ms = (uint64_t)(sf_wall_us() / 1000);
    size_t o = 0;

    if (sf_random_bytes(b + 6, 10) != 0) {
        /* getrandom on a booted system does not fail; keep ids unique
         * anyway by mixing the monotonic clock. */
        uint64_t t = sf_mono_us();
        memcpy(b + 6, &t, 8);
    }
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | (b[6] & 0x0f));
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

bool sf_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    const volatile unsigned char *x = a, *y = b;
    unsigned char d = (unsigned char)(alen != blen);
    size_t n = alen < blen ? alen : blen;

    for (size_t i = 0; i < n; i++)
        d |= x[i] ^ y[i];
    return d == 0;
}

void sf_rfc3339(int64_t us, char out[32])
{
    time_t s = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int sf_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0 || len > 20)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        if (v > (UINT64_MAX - 9) / 10)
            return -ERANGE;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return -ERANGE;
    *out = v;
    return 0;
}

const char *sf_query_get(const char *q, const char *key, size_t *vlen)
{
    size_t kl = strlen(key);

    while (q != NULL && *q != '\0') {
        const char *amp = strchr(q, '&');
        size_t pl = amp ? (size_t)(amp - q) : strlen(q);
        if (pl >= kl && strncmp(q, key, kl) == 0 &&
            (pl == kl || q[kl] == '=')) {
            const char *v = pl == kl ? q + kl : q + kl + 1;
            *vlen = pl == kl ? 0 : pl - kl - 1;
            return v;
        }
        q = amp ? amp + 1 : NULL;
    }
    return NULL;
}

int sf_parse_decimal(const char *s, size_t len, int scale, int64_t max,
                     int64_t *out)
{
    int64_t ip = 0, fp = 0;
    size_t i = 0;
    int fd = 0;
    bool digits = false;

    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        if (ip > (INT64_MAX - 9) / 10)
            return -ERANGE;
        ip = ip * 10 + (s[i] - '0');
        digits = true;
    }
    if (i < len && s[i] == '.') {
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
            if (++fd > scale)
                return -EINVAL;
            fp = fp * 10 + (s[i] - '0');
            digits = true;
        }
    }
    if (!digits || i != len)
        return -EINVAL;
    for (; fd < scale; fd++)
        fp *= 10;
    {
        int64_t unit = 1;
        for (int k = 0; k < scale; k++)
            unit *= 10;
        if (ip > (INT64_MAX - fp) / unit)
            return -ERANGE;
        ip = ip * unit + fp;
    }
    if (ip > max)
        return -ERANGE;
    *out = ip;
    return 0;
}

void sf_format_decimal(int64_t v, int scale, char *out, size_t outlen)
{
    int64_t unit = 1;
    char frac[24];
    int n;
    bool neg = v < 0;
    uint64_t a = neg ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

    for (int k = 0; k < scale; k++)
        unit *= 10;
    snprintf(frac, sizeof(frac), "%0*llu", scale,
             (unsigned long long)(a % (uint64_t)unit));
    n = scale;
    while (n > 2 && frac[n - 1] == '0')
        n--;
    frac[n] = '\0';
    snprintf(out, outlen, "%s%llu%s%s", neg ? "-" : "",
             (unsigned long long)(a / (uint64_t)unit), n > 0 ? "." : "", frac);
}

int sf_proc_ppid(int pid)
{
    char path[48], buf[512];
    const char *p;
    ssize_t n;
    int fd, ppid = 0;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return n < 0 ? -errno : -EPROTO;
    buf[n] = '\0';
    /* "pid (comm) S ppid ...": comm is up to 15 bytes of anything, so
     * the last ')' ends it. */
    p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ' || p[2] == '\0' || p[3] != ' ')
        return -EPROTO;
    for (p += 4; *p >= '0' && *p <= '9'; p++) {
        ppid = ppid * 10 + (*p - '0');
        if (ppid > (1 << 22))
            return -EPROTO;
    }
    return *p == ' ' ? ppid : -EPROTO;
}
