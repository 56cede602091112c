/*
 * journal.h - an append-only file of checksummed records. The meter's
 * spill journal (meter.c): rows that could not be committed to SQLite at
 * once are appended here with one write(), their responses sent, and the
 * rows committed later; the file is emptied once they are. A record is in
 * the page cache when sf_journal_write returns, so it survives a crash of
 * the process like a WAL commit with synchronous=NORMAL does.
 *
 * On disk each record is a frame: magic, length, FNV-1a 64 of the
 * payload, payload (host byte order: the file never leaves this host). A
 * crash can leave the last frame torn; reading stops at the first frame
 * that is short or fails its checksum and reports what it left.
 *
 * Loop-thread use only (no locking).
 */
#ifndef SF_JOURNAL_H
#define SF_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define SF_JOURNAL_MAX_RECORD 4096 /* a longer length means a bad frame */

typedef struct sf_journal sf_journal;

/* Opens (creating, mode 0600) the journal at path. Returns 0 or -errno. */
int sf_journal_open(const char *path, sf_journal **out);
/* Closes it; the file stays. NULL-safe. */
void sf_journal_close(sf_journal *j);

/*
 * Calls fn(arg, payload, len) for each whole record from the start of the
 * file, in order, until fn returns non-zero (which is returned) or a frame
 * is torn or corrupt. *dropped gets the bytes from that frame to the end
 * of the file (0 when every frame was whole). Returns the number of
 * records read, fn's non-zero result, or -errno.
 */
int sf_journal_read(sf_journal *j,
                    int (*fn)(void *arg, const void *rec, size_t len),
                    void *arg, size_t *dropped);

/* Appends the frame of one record to b (caller's buffer, for one write of
 * many records). Returns 0, -EINVAL (too long) or -ENOMEM. */
int sf_journal_frame(sf_buf *b, const void *rec, size_t len);

/* Appends frames (from sf_journal_frame) with write(). On failure nothing
 * of them stays in the file (it is cut back). Returns 0 or -errno. */
int sf_journal_write(sf_journal *j, const void *frames, size_t len);

/* Empties the file. Returns 0 or -errno. */
int sf_journal_reset(sf_journal *j);

/* Bytes in the file (as this process wrote or read them). */
uint64_t sf_journal_size(const sf_journal *j);

/* FNV-1a 64 of n bytes (exposed for tests). */
uint64_t sf_journal_sum(const void *p, size_t n);

#endif
