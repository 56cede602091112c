/*
 * landlock.c - the Landlock layer of the worker sandbox (see landlock.h).
 *
 * Access rights are handled for the whole ABI the kernel reports, so a
 * right the kernel knows about is denied unless a rule grants it: EXECUTE
 * is handled and never granted (no execve of anything), REFER is handled
 * so files cannot be re-parented out of tmp, IOCTL_DEV (ABI 5) so device
 * ioctls are refused even on /dev/null.
 */
#include "landlock.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Definitions newer than the build host's uapi header (ABI 3 to 6). */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#define SF_LL_NET_BIND_TCP (1ULL << 0)
#define SF_LL_NET_CONNECT_TCP (1ULL << 1)
#define SF_LL_SCOPE_ABSTRACT_UNIX (1ULL << 0)
#define SF_LL_SCOPE_SIGNAL (1ULL << 1)

/* The ABI 6 layout of struct landlock_ruleset_attr; the size passed to the
 * kernel says how much of it an older kernel should read. */
typedef struct ll_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net; /* ABI >= 4 */
    uint64_t scoped;             /* ABI >= 6 */
} ll_ruleset_attr;

typedef struct __attribute__((packed)) ll_path_beneath {
    uint64_t allowed_access;
    int32_t parent_fd;
} ll_path_beneath;

#define LL_READ_FILE (LANDLOCK_ACCESS_FS_READ_FILE)
#define LL_READ_DIR (LANDLOCK_ACCESS_FS_READ_DIR)
#define LL_WRITE_FILE                                                          \
    (LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_TRUNCATE)
#define LL_WRITE_DIR                                                           \
    (LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |          \
     LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |               \
     LANDLOCK_ACCESS_FS_MAKE_SYM | LANDLOCK_ACCESS_FS_REFER)

int sf_landlock_abi(void)
{
    long v = syscall(SYS_landlock_create_ruleset, NULL, 0,
                     LANDLOCK_CREATE_RULESET_VERSION);
    return v < 0 ? 0 : (int)v;
}

/* Every filesystem right the given ABI knows. */
static uint64_t fs_rights(int abi)
{
    uint64_t r = (LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1; /* ABI 1 */
    if (abi >= 2)
        r |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3)
        r |= LANDLOCK_ACCESS_FS_TRUNCATE;
    if (abi >= 5)
        r |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
    return r;
}

static size_t attr_size(int abi)
{
    if (abi >= 6)
        return sizeof(ll_ruleset_attr);
    if (abi >= 4)
        return offsetof(ll_ruleset_attr, scoped);
    return offsetof(ll_ruleset_attr, handled_access_net);
}

static int restrict_self(int ruleset, char *err, size_t errlen)
{
    if (syscall(SYS_landlock_restrict_self, ruleset, 0) != 0) {
        int e = errno;
        snprintf(err, errlen, "landlock_restrict_self: %s", strerror(e));
        return -e;
    }
    return 0;
}

int sf_landlock_ruleset(int abi, bool network, char *err, size_t errlen)
{
    ll_ruleset_attr attr = {0};
    int ruleset;

    if (abi <= 0)
        return -EOPNOTSUPP;
    attr.handled_access_fs = fs_rights(abi);
    if (abi >= 4 && !network)
        attr.handled_access_net = SF_LL_NET_BIND_TCP | SF_LL_NET_CONNECT_TCP;
    if (abi >= 6)
        attr.scoped = SF_LL_SCOPE_ABSTRACT_UNIX | SF_LL_SCOPE_SIGNAL;
    ruleset =
        (int)syscall(SYS_landlock_create_ruleset, &attr, attr_size(abi), 0);
    if (ruleset < 0) {
        int r = -errno;
        snprintf(err, errlen, "landlock_create_ruleset: %s", strerror(-r));
        return r;
    }
    return ruleset;
}

int sf_landlock_add(int abi, int ruleset, const sf_landlock_rule *rules,
                    size_t n, char *err, size_t errlen)
{
    uint64_t all = fs_rights(abi);

    for (size_t i = 0; i < n; i++) {
        ll_path_beneath pb = {.parent_fd = rules[i].fd};

        pb.allowed_access = LL_READ_FILE;
        if (rules[i].is_dir)
            pb.allowed_access |= LL_READ_DIR;
        if (rules[i].write) {
            pb.allowed_access |= LL_WRITE_FILE;
            if (rules[i].is_dir)
                pb.allowed_access |= LL_WRITE_DIR;
        }
        pb.allowed_access &= all;
        if (syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH,
                    &pb, 0) != 0) {
            int r = -errno;
            snprintf(err, errlen, "landlock_add_rule (rule %zu): %s", i,
                     strerror(-r));
            return r;
        }
    }
    return 0;
}

int sf_landlock_enforce(int ruleset, char *err, size_t errlen)
{
    return restrict_self(ruleset, err, errlen);
}

int sf_landlock_apply(int abi, const sf_landlock_rule *rules, size_t n,
                      bool network, char *err, size_t errlen)
{
    int ruleset = sf_landlock_ruleset(abi, network, err, errlen), r;

    if (ruleset < 0)
        return ruleset;
    r = sf_landlock_add(abi, ruleset, rules, n, err, errlen);
    if (r == 0)
        r = restrict_self(ruleset, err, errlen);
    close(ruleset);
    return r;
}

int sf_landlock_scope_self(int abi)
{
    ll_ruleset_attr attr = {.scoped =
                                SF_LL_SCOPE_ABSTRACT_UNIX | SF_LL_SCOPE_SIGNAL};
    char err[128];
    int ruleset, r;

    if (abi < 6)
        return 0;
    ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
    if (ruleset < 0)
        return -errno;
    r = restrict_self(ruleset, err, sizeof(err));
    close(ruleset);
    return r;
}
