/*
 * journal.c - an append-only file of checksummed records (see journal.h).
 */
#include "journal.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC 0x314a4653u /* "SFJ1" */

typedef struct frame_hdr {
    uint32_t magic;
    uint32_t len; /* payload bytes */
    uint64_t sum; /* sf_journal_sum of the payload */
} frame_hdr;
_Static_assert(sizeof(frame_hdr) == 16, "frame header layout");

struct sf_journal {
    int fd;
    uint64_t size;
    bool broken; /* junk could not be cut off its end: no more writes */
};

uint64_t sf_journal_sum(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 14695981039346656037ull;

    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h;
}

int sf_journal_open(const char *path, sf_journal **out)
{
    sf_journal *j = calloc(1, sizeof(*j));
    struct stat st;

    *out = NULL;
    if (j == NULL)
        return -ENOMEM;
    j->fd =
        open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (j->fd < 0 || fstat(j->fd, &st) < 0) {
        int r = -errno;
        if (j->fd >= 0)
            close(j->fd);
        free(j);
        return r;
    }
    if (!S_ISREG(st.st_mode)) {
        close(j->fd);
        free(j);
        return -EINVAL;
    }
    j->size = (uint64_t)st.st_size;
    *out = j;
    return 0;
}

void sf_journal_close(sf_journal *j)
{
    if (j == NULL)
        return;
    close(j->fd);
    free(j);
}

/* Reads exactly n bytes at off. Returns n, fewer at the end of the file,
 * or -errno. */
static ssize_t read_at(int fd, void *p, size_t n, uint64_t off)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = pread(fd, (char *)p + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

int sf_journal_read(sf_journal *j,
                    int (*fn)(void *arg, const void *rec, size_t len),
                    void *arg, size_t *dropped)
{
    char rec[SF_JOURNAL_MAX_RECORD];
    struct stat st;
    uint64_t off = 0;
    int n = 0;

    *dropped = 0;
    if (fstat(j->fd, &st) < 0)
        return -errno;
    for (;;) {
        frame_hdr h;
        ssize_t r = read_at(j->fd, &h, sizeof(h), off);
        if (r < 0)
            return (int)r;
        if ((size_t)r < sizeof(h) || h.magic != MAGIC ||
            h.len > SF_JOURNAL_MAX_RECORD)
            break;
        r = read_at(j->fd, rec, h.len, off + sizeof(h));
        if (r < 0)
            return (int)r;
        if ((size_t)r < h.len || sf_journal_sum(rec, h.len) != h.sum)
            break;
        if ((r = fn(arg, rec, h.len)) != 0)
            return (int)r;
        off += sizeof(h) + h.len;
        n++;
    }
    /* A torn or corrupt tail: cut it, so what is appended next follows
     * the last whole record (a reader would stop at the bad frame). */
    if ((uint64_t)st.st_size > off) {
        *dropped = (size_t)((uint64_t)st.st_size - off);
        if (ftruncate(j->fd, (off_t)off) < 0)
            return -errno;
    }
    j->size = off;
    return n;
}

int sf_journal_frame(sf_buf *b, const void *rec, size_t len)
{
    frame_hdr h = {.magic = MAGIC, .len = (uint32_t)len};

    if (len > SF_JOURNAL_MAX_RECORD)
        return -EINVAL;
    h.sum = sf_journal_sum(rec, len);
    if (sf_buf_reserve(b, sizeof(h) + len) < 0)
        return -ENOMEM;
    sf_buf_append(b, &h, sizeof(h));
    sf_buf_append(b, rec, len);
    return 0;
}

int sf_journal_write(sf_journal *j, const void *frames, size_t len)
{
    size_t done = 0;

    if (j->broken)
        return -EIO;
    while (done < len) {
        ssize_t r = write(j->fd, (const char *)frames + done, len - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            /* Nothing half-written stays: a reader would stop there and
             * never see the frames appended after it. */
            if (done > 0 && ftruncate(j->fd, (off_t)j->size) < 0)
                j->broken = true;
            return -e;
        }
        done += (size_t)r;
    }
    j->size += len;
    return 0;
}

int sf_journal_reset(sf_journal *j)
{
    if (ftruncate(j->fd, 0) < 0)
        return -errno;
    j->size = 0;
    j->broken = false;
    return 0;
}

uint64_t sf_journal_size(const sf_journal *j)
{
    return j->size;
}
