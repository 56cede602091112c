/*
 * artifact.h - a header-only sanity check of an uploaded artifact, done in the
 * daemon before a worker is asked to load it. It reads bytes; it never maps
 * or loads the object (the daemon never runs user code).
 */
#ifndef SF_ARTIFACT_H
#define SF_ARTIFACT_H

#include <stddef.h>

/*
 * Returns 0 if head (the first head_len bytes of a file of file_size bytes)
 * starts like an x86-64 little-endian ELF shared object (ET_DYN) whose
 * program headers fit in the file, else -1 with a reason in err.
 */
int sf_artifact_check(const void *head, size_t head_len, size_t file_size,
                      char *err, size_t errlen);

#endif
