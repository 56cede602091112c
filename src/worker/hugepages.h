/*
 * hugepages.h - a template's memory moved into transparent huge pages
 * before it forks instances.
 *
 * Every fork copies the template's page tables and every instance's exit
 * tears its copy down: for slow-init's 16 MiB table that is 4096 entries
 * (each with a reference on a shared page) per instance, about a
 * millisecond of CPU on the reference VM, which a back-to-back template
 * start paid on the other CPU. In 2 MiB pages the same table is 8 entries.
 * MADV_COLLAPSE (Linux 6.1) rebuilds memory that is already populated in
 * huge pages, whatever the system's THP mode; a child that later writes
 * into such a page gets a 4 KiB copy, not a 2 MiB one.
 */
#ifndef SF_WORKER_HUGEPAGES_H
#define SF_WORKER_HUGEPAGES_H

#include <stdint.h>

typedef struct sf_huge_stats {
    unsigned candidates; /* aligned 2 MiB ranges resident enough to try */
    unsigned collapsed;  /* of those, now in a huge page */
    int err;             /* 0, or why it stopped early (-EINVAL: no kernel
                            support, -errno reading the maps) */
} sf_huge_stats;

/*
 * Collapses into huge pages the aligned 2 MiB ranges of this process's
 * private anonymous writable memory (the heap and anonymous mappings, not
 * stacks) that are at least min_resident_pct percent resident: a whole
 * mapping at once when it is that resident as a whole, else range by range
 * (in mappings up to 1 GiB), so the collapse adds at most the rest in
 * memory. smaps_path is normally "/proc/self/smaps". Best effort: a range
 * the kernel will not collapse is left as it is. Returns st->err.
 */
int sf_huge_collapse_anon(const char *smaps_path, unsigned min_resident_pct,
                          sf_huge_stats *st);

#endif
