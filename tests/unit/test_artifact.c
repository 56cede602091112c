/* test_artifact.c - the daemon-side ELF header check (src/artifact.c). */
#include <elf.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "artifact.h"

static Elf64_Ehdr good(void)
{
    Elf64_Ehdr e;
    memset(&e, 0, sizeof(e));
    memcpy(e.e_ident, ELFMAG, SELFMAG);
    e.e_ident[EI_CLASS] = ELFCLASS64;
    e.e_ident[EI_DATA] = ELFDATA2LSB;
    e.e_type = ET_DYN;
    e.e_machine = EM_X86_64;
    e.e_ehsize = sizeof(Elf64_Ehdr);
    e.e_phentsize = sizeof(Elf64_Phdr);
    e.e_phnum = 0;
    e.e_phoff = sizeof(Elf64_Ehdr);
    return e;
}

static void test_accepts_shared_object(void **state)
{
    Elf64_Ehdr e = good();
    char err[128];
    (void)state;
    assert_int_equal(sf_artifact_check(&e, sizeof(e), sizeof(e), err, sizeof(err)), 0);
}

static void test_rejects(void **state)
{
    Elf64_Ehdr e;
    char err[128];
    (void)state;

    assert_int_equal(sf_artifact_check("abc", 3, 3, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too small"));

    e = good();
    e.e_ident[1] = 'X';
    assert_int_equal(sf_artifact_check(&e, sizeof(e), sizeof(e), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "magic"));

    e = good();
    e.e_ident[EI_CLASS] = ELFCLASS32;
    assert_int_equal(sf_artifact_check(&e, sizeof(e), sizeof(e), err, sizeof(err)), -1);

    e = good();
    e.e_machine = EM_AARCH64;
    assert_int_equal(sf_artifact_check(&e, sizeof(e), sizeof(e), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "x86-64"));

    e = good();
    e.e_type = ET_EXEC;
    assert_int_equal(sf_artifact_check(&e, sizeof(e), sizeof(e), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "shared object"));

    /* program headers claimed beyond the end of the file */
    e = good();
    e.e_phnum = 10;
    assert_int_equal(sf_artifact_check(&e, sizeof(e), sizeof(e), err, sizeof(err)), -1);
    assert_non_null(strstr(err, "truncated"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_shared_object),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
