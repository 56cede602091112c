/* artifact.c - ELF header check for uploaded artifacts (see artifact.h). */
#include "artifact.h"

#include <elf.h>
#include <stdio.h>
#include <string.h>

int sf_artifact_check(const void *data, size_t head_len, size_t len,
                      char *err, size_t errlen)
{
    Elf64_Ehdr eh;

    if (head_len < sizeof(eh) || len < sizeof(eh)) {
        snprintf(err, errlen, "artifact is %zu bytes, too small for an ELF "
                              "header", len);
        return -1;
    }
    memcpy(&eh, data, sizeof(eh));
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) {
        snprintf(err, errlen, "not an ELF file (bad magic)");
        return -1;
    }
    if (eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_ident[EI_DATA] != ELFDATA2LSB) {
        snprintf(err, errlen, "not a 64-bit little-endian ELF object");
        return -1;
    }
    if (eh.e_machine != EM_X86_64) {
        snprintf(err, errlen, "ELF machine %u is not x86-64", eh.e_machine);
        return -1;
    }
    if (eh.e_type != ET_DYN) {
        snprintf(err, errlen, "ELF type %u is not a shared object (ET_DYN); "
                              "build with -shared -fPIC", eh.e_type);
        return -1;
    }
    if (eh.e_ehsize != sizeof(Elf64_Ehdr) ||
        (eh.e_phnum > 0 && eh.e_phentsize != sizeof(Elf64_Phdr)) ||
        eh.e_phoff > len ||
        (size_t)eh.e_phnum * sizeof(Elf64_Phdr) > len - eh.e_phoff) {
        snprintf(err, errlen, "ELF header sizes are inconsistent or the file "
                              "is truncated");
        return -1;
    }
    return 0;
}
