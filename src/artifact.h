/*
 * artifact.h - a header-only sanity check of an uploaded artifact, done in the
 * daemon before a worker is asked to load it. It reads bytes; it never maps
 * or loads the object (the daemon never runs user code).
 */
#ifndef SF_ARTIFACT_H
#define SF_ARTIFACT_H

#include <stddef.h>

/*
 * Returns 0 if data starts like an x86-64 little-endian ELF shared object
 * (ET_DYN) with sane header sizes, else -1 with a reason in err.
 */
int sf_artifact_check(const void *data, size_t len, char *err, size_t errlen);

#endif
