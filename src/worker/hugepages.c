/*
 * hugepages.c - a template's memory moved into transparent huge pages
 * (see hugepages.h).
 *
 * The candidates come from /proc/self/smaps, which gives each mapping's
 * resident size: a mapping resident enough as a whole is collapsed with
 * one madvise; a partly resident one of at most SCAN_MAX is looked at 2
 * MiB at a time with mincore; anything else (a sanitizer's terabytes of
 * shadow, a large reservation) is left alone, so the work stays bounded
 * by what the process really uses.
 */
#include "hugepages.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25 /* Linux 6.1; glibc 2.36's headers lack it */
#endif

#define HUGE_SIZE (2ul << 20)
#define SMALL_PAGES (HUGE_SIZE / 4096)
#define MAX_RANGES 4096         /* mappings looked at; templates have ~100 */
#define SCAN_MAX (1ul << 30)    /* a partly resident mapping looked into */

typedef struct range {
    uintptr_t start, end;
    unsigned long rss_kib;
} range;

/* True for a mapping line naming private anonymous writable memory that is
 * not a stack: "[heap]", an unnamed mapping or one named with
 * PR_SET_VMA_ANON_NAME ("[anon:...]"). */
static int parse_mapping(const char *line, range *r)
{
    unsigned long start, end, inode;
    char perms[5];
    int pathpos = 0;
    const char *path;

    if (sscanf(line, "%lx-%lx %4s %*x %*x:%*x %lu %n", &start, &end, perms,
               &inode, &pathpos) < 4 ||
        pathpos == 0)
        return 0;
    if (strcmp(perms, "rw-p") != 0 || inode != 0 || end <= start)
        return 0;
    path = line + pathpos;
    if (path[0] != '\0' && path[0] != '\n' &&
        strncmp(path, "[heap]", 6) != 0 && strncmp(path, "[anon:", 6) != 0)
        return 0;
    r->start = start;
    r->end = end;
    r->rss_kib = 0;
    return 1;
}

/* Reads the candidates first: collapsing may change the file. */
static int read_ranges(const char *path, range *out, size_t max, size_t *n)
{
    FILE *f = fopen(path, "re");
    char line[512];
    range *cur = NULL;

    *n = 0;
    if (f == NULL)
        return -errno;
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t len = strlen(line);
        unsigned long a, b;

        if (sscanf(line, "%lx-%lx", &a, &b) == 2) { /* a mapping's line */
            cur = NULL;
            if (*n < max && parse_mapping(line, &out[*n]))
                cur = &out[(*n)++];
        } else if (cur != NULL) {
            sscanf(line, "Rss: %lu kB", &cur->rss_kib);
        }
        /* A longer line (a long file name) is skipped whole. */
        while (len > 0 && line[len - 1] != '\n' &&
               fgets(line, sizeof(line), f) != NULL)
            len = strlen(line);
    }
    fclose(f);
    return 0;
}

static unsigned resident(uintptr_t at)
{
    unsigned char vec[SMALL_PAGES];
    unsigned n = 0;

    if (mincore((void *)at, HUGE_SIZE, vec) != 0)
        return 0;
    for (size_t i = 0; i < SMALL_PAGES; i++)
        n += vec[i] & 1;
    return n;
}

/* EAGAIN from MADV_COLLAPSE means a page or lock was busy for a moment
 * (madvise(2)): ~1 in 400 runs of test_hugepages here, and still 3 in
 * 2500 with immediate retries (a transient reference, e.g. from the
 * host's memory sampling), so the retries wait a millisecond first. */
#define COLLAPSE_TRIES 4

/* madvise(MADV_COLLAPSE) over [at, end); counts the 2 MiB ranges. */
static int collapse(uintptr_t at, uintptr_t end, sf_huge_stats *st)
{
    unsigned n = (unsigned)((end - at) / HUGE_SIZE);

    st->candidates += n;
    for (int i = 0; i < COLLAPSE_TRIES; i++) {
        if (madvise((void *)at, end - at, MADV_COLLAPSE) == 0) {
            st->collapsed += n;
            return 0;
        }
        if (errno != EAGAIN)
            break;
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    /* EINVAL: no MADV_COLLAPSE here (or THP off for us), nothing will do.
     * ENOMEM (no free huge page now), EAGAIN still: left as it is. */
    return errno == EINVAL ? -EINVAL : 0;
}

int sf_huge_collapse_anon(const char *smaps_path, unsigned min_resident_pct,
                          sf_huge_stats *st)
{
    range *rs = malloc(MAX_RANGES * sizeof(*rs));
    size_t n = 0;

    memset(st, 0, sizeof(*st));
    if (rs == NULL)
        return st->err = -ENOMEM;
    if ((st->err = read_ranges(smaps_path, rs, MAX_RANGES, &n)) < 0)
        goto out;
    for (size_t i = 0; i < n && st->err == 0; i++) {
        uintptr_t at = (rs[i].start + HUGE_SIZE - 1) & ~(HUGE_SIZE - 1);
        uintptr_t end = rs[i].end & ~(HUGE_SIZE - 1);
        unsigned long size_kib = (rs[i].end - rs[i].start) >> 10;

        if (at >= end || rs[i].rss_kib < HUGE_SIZE >> 10)
            continue;
        if (rs[i].rss_kib * 100 >= (unsigned long)min_resident_pct * size_kib) {
            st->err = collapse(at, end, st);
            continue;
        }
        if (end - at > SCAN_MAX)
            continue;
        for (; at < end && st->err == 0; at += HUGE_SIZE)
            if (resident(at) * 100 >= min_resident_pct * SMALL_PAGES)
                st->err = collapse(at, at + HUGE_SIZE, st);
    }
out:
    free(rs);
    return st->err;
}
