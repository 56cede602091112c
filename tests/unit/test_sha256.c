/* test_sha256.c - SHA-256 against FIPS 180-4 / NIST test vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sha256.h"

static void check(const char *in, size_t len, const char *want)
{
    char out[65];
    sf_sha256_hex(in, len, out);
    assert_string_equal(out, want);
}

static void test_vectors(void **state)
{
    (void)state;
    check("", 0,
          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check("abc", 3,
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    check("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_million_a_incremental(void **state)
{
    /* One million 'a', fed in odd-sized pieces to cross block edges. */
    char *buf = malloc(1000000);
    unsigned char d[32];
    char hex[65];
    sf_sha256 c;
    size_t off = 0, step = 1;
    (void)state;

    memset(buf, 'a', 1000000);
    sf_sha256_init(&c);
    while (off < 1000000) {
        size_t n = step < 1000000 - off ? step : 1000000 - off;
        sf_sha256_update(&c, buf + off, n);
        off += n;
        step = step * 3 % 997 + 1;
    }
    sf_sha256_final(&c, d);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    assert_string_equal(
        hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_million_a_incremental),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
