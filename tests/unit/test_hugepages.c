/* test_hugepages.c - a template's memory collapsed into huge pages
 * (src/worker/hugepages.c), on this test's own memory. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sys/mman.h>
#include <unistd.h>

#include "worker/hugepages.h"

#define MIB (1ul << 20)

/* AnonHugePages of one mapping, in KiB, from /proc/self/smaps; -1 if the
 * mapping is not found. */
static long huge_kib_at(void *addr)
{
    FILE *f = fopen("/proc/self/smaps", "re");
    char line[512];
    int in = 0;
    long kib = -1;

    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long s, e;
        if (sscanf(line, "%lx-%lx ", &s, &e) == 2) { /* a mapping's line */
            in = (uintptr_t)addr >= s && (uintptr_t)addr < e;
            continue;
        }
        if (in && sscanf(line, "AnonHugePages: %ld kB", &kib) == 1)
            break;
    }
    fclose(f);
    return kib;
}

/* A 2 MiB-aligned anonymous mapping of len bytes, touched up to touch,
 * its own VMA: inaccessible pages on both sides keep the kernel from
 * merging it with a neighbour (smaps reports per VMA). */
static char *aligned_map(size_t len, size_t touch)
{
    size_t total = len + 4 * MIB;
    char *raw = mmap(NULL, total, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *p;

    assert_true(raw != MAP_FAILED);
    p = (char *)(((uintptr_t)raw + 4096 + 2 * MIB - 1) &
                 ~(uintptr_t)(2 * MIB - 1));
    assert_int_equal(mprotect(raw, (size_t)(p - raw), PROT_NONE), 0);
    assert_int_equal(
        mprotect(p + len, (size_t)(raw + total - (p + len)), PROT_NONE), 0);
    for (size_t i = 0; i < touch; i += 4096)
        p[i] = (char)(i >> 12);
    return p;
}

static void test_populated_memory_is_collapsed(void **state)
{
    char *full = aligned_map(8 * MIB, 8 * MIB);
    char *part = aligned_map(8 * MIB, 4 * MIB); /* half resident */
    char *sparse = aligned_map(4 * MIB, 1 * MIB); /* a quarter */
    sf_huge_stats st;
    int r;

    (void)state;
    r = sf_huge_collapse_anon("/proc/self/smaps", 90, &st);
    if (r == -EINVAL) {
        skip(); /* a kernel before 6.1, or THP disabled for this process */
        return;
    }
    assert_int_equal(r, 0);
    /* At least full's four ranges and part's two (this process may have
     * more). */
    assert_true(st.collapsed >= 6);
    assert_true(st.candidates >= st.collapsed);
    assert_int_equal(huge_kib_at(full), 8 * 1024);
    /* Only the populated ranges of a partly resident mapping, and nothing
     * of a mostly empty one: the collapse does not add memory. */
    assert_int_equal(huge_kib_at(part), 4 * 1024);
    assert_int_equal(huge_kib_at(sparse), 0);
    /* Contents unchanged. */
    for (size_t i = 0; i < 8 * MIB; i += 4096)
        assert_int_equal(full[i], (char)(i >> 12));
}

/* Only private anonymous writable memory, from an smaps file's lines. */
static void test_only_private_anonymous_memory_is_considered(void **state)
{
    char *mem = aligned_map(4 * MIB, 4 * MIB);
    char path[] = "/tmp/sofaas-test-maps.XXXXXX";
    int fd = mkstemp(path);
    FILE *f;
    sf_huge_stats st;
    uintptr_t a = (uintptr_t)mem;
    char longline[1024];
    int n;

    (void)state;
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    /* A file mapping whose name runs past the parser's 511-byte line
     * buffer exactly where the text of an anonymous mapping's line
     * starts: it must be skipped whole, not read as that line. */
    n = snprintf(longline, sizeof(longline),
                 "%lx-%lx rw-p 00000000 08:01 77 /tmp/", a, a + 2 * MIB);
    memset(longline + n, 'x', (size_t)(511 - n));
    snprintf(longline + 511, sizeof(longline) - 511,
             "%lx-%lx rw-p 00000000 00:00 0 \n", a, a + 2 * MIB);
    /* The same populated range under names that must be skipped, and a
     * long line that must not be read as two. */
    fprintf(f, "%lx-%lx r--p 00000000 00:00 0 \nRss: 2048 kB\n", a,
            a + 2 * MIB);
    fprintf(f, "%lx-%lx rw-s 00000000 00:01 12 /dev/zero (deleted)\n"
            "Rss: 2048 kB\n", a, a + 2 * MIB);
    fprintf(f, "%lx-%lx rw-p 00000000 08:01 4242 /usr/lib/libfoo.so\n"
            "Rss: 2048 kB\n", a, a + 2 * MIB);
    fprintf(f, "%lx-%lx rw-p 00000000 00:00 0 [stack]\nRss: 2048 kB\n", a,
            a + 2 * MIB);
    fputs(longline, f);
    fprintf(f, "Rss: 2048 kB\ngarbage\n");
    /* Anonymous, but its resident size says there is nothing to collapse
     * (and it is far too large to look into). */
    fprintf(f, "%lx-%lx rw-p 00000000 00:00 0 \nRss: 4 kB\n", a,
            a + (64ul << 30));
    fclose(f);
    assert_int_equal(sf_huge_collapse_anon(path, 90, &st), 0);
    assert_int_equal(st.candidates, 0);

    /* An anonymous one is considered: one 2 MiB range. */
    f = fopen(path, "w");
    fprintf(f, "%lx-%lx rw-p 00000000 00:00 0 [anon:model]\n"
            "Size: 2052 kB\nRss: 2052 kB\n", a, a + 2 * MIB + 4096);
    fclose(f);
    if (sf_huge_collapse_anon(path, 90, &st) != -EINVAL)
        assert_int_equal(st.candidates, 1);
    unlink(path);
    assert_int_equal(sf_huge_collapse_anon("/nonexistent/maps", 90, &st),
                     -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_populated_memory_is_collapsed),
        cmocka_unit_test(test_only_private_anonymous_memory_is_considered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
