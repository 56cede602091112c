/*
 * sha256.h - SHA-256 (FIPS 180-4) for content-addressing artifacts.
 * Written for sofaas so the daemon needs no crypto library for hashing.
 */
#ifndef SF_SHA256_H
#define SF_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct sf_sha256 {
    uint32_t h[8];
    uint64_t total;
    unsigned char block[64];
    size_t used;
} sf_sha256;

void sf_sha256_init(sf_sha256 *c);
void sf_sha256_update(sf_sha256 *c, const void *data, size_t len);
void sf_sha256_final(sf_sha256 *c, unsigned char out[32]);
/* One-shot, lowercase hex output (64 chars + NUL). */
void sf_sha256_hex(const void *data, size_t len, char out[65]);

#endif
