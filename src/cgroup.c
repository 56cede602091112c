/*
 * cgroup.c - worker memory cgroups, v2 with a v1 fallback (see cgroup.h).
 *
 * Every write goes through write_file() so a failure is reported with the
 * path. Nothing here is on the invocation path: leaves are made at spawn,
 * limited at specialization and read once when a worker dies. A spawned
 * worker joins its leaf itself (sf_cgroup_procs_path): moving a process
 * between cgroups takes a lock whose writer waits for an RCU grace period
 * when no other move happened just before (~9 ms on the reference VM under
 * cgroup v1), which must not block the daemon's loop.
 */
#include "cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

struct sf_cgroup {
    sf_cgroup_mode mode;
    char *root;   /* folder holding one leaf per worker */
    char *daemon; /* v2: the leaf the daemon moved itself into */
};

static int write_file(const char *path, const char *val)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t n;
    int e = 0;

    if (fd < 0)
        return -errno;
    n = write(fd, val, strlen(val));
    if (n < 0)
        e = -errno;
    close(fd);
    return e;
}

static char *read_file(const char *path)
{
    char buf[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return NULL;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0)
        return NULL;
    buf[n] = '\0';
    return strdup(buf);
}

/* Our cgroup path for a v1 controller, or for v2 when controller is "". */
static char *own_path(const char *controller)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    char line[1024];
    char *res = NULL;

    if (f == NULL)
        return NULL;
    while (fgets(line, sizeof(line), f) != NULL) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        size_t cl;
        if (c2 == NULL)
            continue;
        line[strcspn(line, "\n")] = '\0';
        cl = (size_t)(c2 - c1 - 1);
        if (controller[0] == '\0' ? cl == 0
                                  : (cl == strlen(controller) &&
                                     strncmp(c1 + 1, controller, cl) == 0)) {
            res = strdup(c2 + 1);
            break;
        }
    }
    fclose(f);
    return res;
}

static bool contains_word(const char *list, const char *word)
{
    size_t wl = strlen(word);
    for (const char *p = list; p && (p = strstr(p, word)) != NULL; p += wl)
        if ((p == list || p[-1] == ' ') &&
            (p[wl] == '\0' || p[wl] == ' ' || p[wl] == '\n'))
            return true;
    return false;
}

static int try_v2(sf_cgroup *cg)
{
    char *own = own_path(""), *base = NULL, *ctl = NULL, *p = NULL;
    char pid[32];
    int e = -ENOENT;

    if (own == NULL || access("/sys/fs/cgroup/cgroup.controllers", F_OK) != 0)
        goto out;
    if (asprintf(&base, "/sys/fs/cgroup%s", strcmp(own, "/") ? own : "") < 0)
        goto out;
    if (asprintf(&p, "%s/cgroup.controllers", base) < 0)
        goto out;
    ctl = read_file(p);
    if (ctl == NULL || !contains_word(ctl, "memory"))
        goto out;
    /* "No internal processes": move ourselves into a leaf first. */
    if (asprintf(&cg->daemon, "%s/daemon", base) < 0)
        goto out;
    mkdir(cg->daemon, 0755);
    free(p);
    p = NULL;
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    if (asprintf(&p, "%s/cgroup.procs", cg->daemon) < 0 ||
        (e = write_file(p, pid)) < 0)
        goto out;
    free(p);
    p = NULL;
    if (asprintf(&p, "%s/cgroup.subtree_control", base) < 0 ||
        (e = write_file(p, "+memory")) < 0)
        goto out;
    if (asprintf(&cg->root, "%s/workers", base) < 0)
        goto out;
    mkdir(cg->root, 0755);
    free(p);
    p = NULL;
    if (asprintf(&p, "%s/cgroup.subtree_control", cg->root) < 0 ||
        (e = write_file(p, "+memory")) < 0)
        goto out;
    cg->mode = SF_CGROUP_V2;
    e = 0;
out:
    free(own);
    free(base);
    free(ctl);
    free(p);
    return e;
}

/* Removes the leftovers of daemons that died without cleaning up (a
 * SIGKILLed daemon cannot): folders sofaas-<pid> whose pid is gone. */
static void remove_stale(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        char *sub = NULL;
        DIR *sd;
        struct dirent *le;
        long pid;
        if (strncmp(e->d_name, "sofaas-", 7) != 0)
            continue;
        pid = strtol(e->d_name + 7, NULL, 10);
        if (pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        if (asprintf(&sub, "%s/%s", dir, e->d_name) < 0)
            continue;
        sd = opendir(sub);
        while (sd != NULL && (le = readdir(sd)) != NULL) {
            char *leaf = NULL;
            if (le->d_name[0] != 'w' ||
                asprintf(&leaf, "%s/%s", sub, le->d_name) < 0)
                continue;
            rmdir(leaf);
            free(leaf);
        }
        if (sd != NULL)
            closedir(sd);
        if (rmdir(sub) == 0)
            SF_INFO("msg=\"removed stale worker cgroup\" path=%s", sub);
        free(sub);
    }
    closedir(d);
}

static int try_v1(sf_cgroup *cg)
{
    char *own = own_path("memory"), *dir = NULL;
    struct stat st;
    int e = -ENOENT;

    if (own == NULL)
        goto out;
    /* In a container our path may not be visible: use the mount root. */
    if (asprintf(&dir, "/sys/fs/cgroup/memory%s", own) < 0)
        goto out;
    if (stat(dir, &st) != 0) {
        free(dir);
        dir = strdup("/sys/fs/cgroup/memory");
    }
    if (dir == NULL || stat(dir, &st) != 0)
        goto out;
    remove_stale(dir);
    if (asprintf(&cg->root, "%s/sofaas-%d", dir, (int)getpid()) < 0)
        goto out;
    if (mkdir(cg->root, 0755) != 0 && errno != EEXIST) {
        e = -errno;
        free(cg->root);
        cg->root = NULL;
        goto out;
    }
    cg->mode = SF_CGROUP_V1;
    e = 0;
out:
    free(own);
    free(dir);
    return e;
}

int sf_cgroup_open(sf_cgroup **out)
{
    sf_cgroup *cg = calloc(1, sizeof(*cg));
    int e2, e1 = 0;

    if (cg == NULL)
        return -ENOMEM;
    e2 = try_v2(cg);
    if (e2 < 0) {
        free(cg->root);
        free(cg->daemon);
        cg->root = cg->daemon = NULL;
        e1 = try_v1(cg);
    }
    if (cg->mode == SF_CGROUP_NONE)
        SF_WARN("msg=\"no writable memory cgroup; worker memory is limited by "
                "rlimits only and out-of-memory kills cannot be told apart "
                "from crashes\" v2_error=\"%s\" v1_error=\"%s\" "
                "hint=\"run under systemd with Delegate=yes\"",
                strerror(-e2), strerror(-e1));
    else
        SF_INFO("msg=\"worker memory cgroups active\" mode=%s root=%s",
                sf_cgroup_mode_name(cg->mode), cg->root);
    *out = cg;
    return 0;
}

sf_cgroup_mode sf_cgroup_get_mode(const sf_cgroup *cg) { return cg->mode; }

const char *sf_cgroup_mode_name(sf_cgroup_mode m)
{
    return m == SF_CGROUP_V2 ? "v2" : m == SF_CGROUP_V1 ? "v1" : "none";
}

static char *leaf_file(sf_cgroup *cg, uint64_t id, const char *file)
{
    char *p = NULL;
    if (asprintf(&p, "%s/w%llu%s%s", cg->root, (unsigned long long)id,
                 file ? "/" : "", file ? file : "") < 0)
        return NULL;
    return p;
}

int sf_cgroup_prepare(sf_cgroup *cg, uint64_t id)
{
    char *dir;
    int e = 0;

    if (cg->mode == SF_CGROUP_NONE)
        return 0;
    dir = leaf_file(cg, id, NULL);
    if (dir == NULL)
        e = -ENOMEM;
    else if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        e = -errno;
    if (e < 0)
        SF_WARN("msg=\"cannot create worker cgroup\" instance=%llu "
                "error=\"%s\"",
                (unsigned long long)id, strerror(-e));
    free(dir);
    return e;
}

char *sf_cgroup_leaf_dir(sf_cgroup *cg, uint64_t id)
{
    return cg->mode == SF_CGROUP_NONE ? NULL : leaf_file(cg, id, NULL);
}

char *sf_cgroup_procs_path(sf_cgroup *cg, uint64_t id)
{
    return cg->mode == SF_CGROUP_NONE ? NULL
                                      : leaf_file(cg, id, "cgroup.procs");
}

int sf_cgroup_add(sf_cgroup *cg, uint64_t id, pid_t pid)
{
    char *procs = NULL;
    char buf[32];
    int e;

    if (cg->mode == SF_CGROUP_NONE)
        return 0;
    e = sf_cgroup_prepare(cg, id);
    if (e < 0)
        return e;
    procs = leaf_file(cg, id, "cgroup.procs");
    if (procs == NULL) {
        e = -ENOMEM;
        goto out;
    }
    snprintf(buf, sizeof(buf), "%d", (int)pid);
    e = write_file(procs, buf);
out:
    if (e < 0)
        SF_WARN("msg=\"cannot place worker in its cgroup\" instance=%llu "
                "error=\"%s\"",
                (unsigned long long)id, strerror(-e));
    free(procs);
    return e;
}

int sf_cgroup_set_memory(sf_cgroup *cg, uint64_t id, uint32_t memory_mb)
{
    char val[32];
    char *p = NULL;
    int e = 0;

    if (cg->mode == SF_CGROUP_NONE)
        return 0;
    snprintf(val, sizeof(val), "%llu",
             (unsigned long long)memory_mb * 1024 * 1024);
    if (cg->mode == SF_CGROUP_V2) {
        p = leaf_file(cg, id, "memory.max");
        e = p ? write_file(p, val) : -ENOMEM;
        free(p);
        p = leaf_file(cg, id, "memory.swap.max");
        if (p != NULL && access(p, F_OK) == 0)
            write_file(p, "0");
    } else {
        p = leaf_file(cg, id, "memory.limit_in_bytes");
        e = p ? write_file(p, val) : -ENOMEM;
        free(p);
        /* memsw = memory + swap; equal to the limit means no swap. */
        p = leaf_file(cg, id, "memory.memsw.limit_in_bytes");
        if (p != NULL && access(p, F_OK) == 0)
            write_file(p, val);
    }
    free(p);
    if (e < 0)
        SF_WARN("msg=\"cannot set worker memory limit\" instance=%llu "
                "memory_mb=%u error=\"%s\"",
                (unsigned long long)id, memory_mb, strerror(-e));
    return e;
}

bool sf_cgroup_oom_killed(sf_cgroup *cg, uint64_t id)
{
    char *p, *s, *k;
    bool oom = false;

    if (cg->mode == SF_CGROUP_NONE)
        return false;
    p = leaf_file(cg, id, cg->mode == SF_CGROUP_V2 ? "memory.events"
                                                   : "memory.oom_control");
    s = p ? read_file(p) : NULL;
    k = s ? strstr(s, "oom_kill ") : NULL;
    if (k != NULL)
        oom = strtoull(k + 9, NULL, 10) > 0;
    free(p);
    free(s);
    return oom;
}

void sf_cgroup_remove(sf_cgroup *cg, uint64_t id)
{
    char *dir;

    if (cg->mode == SF_CGROUP_NONE)
        return;
    dir = leaf_file(cg, id, NULL);
    if (dir != NULL && rmdir(dir) != 0 && errno != ENOENT)
        SF_DEBUG("msg=\"cannot remove worker cgroup\" path=%s error=\"%s\"",
                 dir, strerror(errno));
    free(dir);
}

void sf_cgroup_free(sf_cgroup *cg)
{
    if (cg == NULL)
        return;
    if (cg->mode == SF_CGROUP_V1 && cg->root != NULL)
        rmdir(cg->root);
    free(cg->root);
    free(cg->daemon);
    free(cg);
}
