/*
 * log.c - line-oriented, key=value logging to stderr (see log.h).
 *
 * Each line is formatted into one buffer and written with a single write(2)
 * so lines from the daemon and its workers (which share stderr) never
 * interleave mid-line.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* sf_log_batch: this thread's waiting lines (NULL: not batching). */
#define BATCH_CAP (64 * 1024)
#define WRITE_MAX 4096 /* PIPE_BUF: a pipe never splits a write this big */
static __thread char *batch;
static __thread size_t batch_len;

static enum sf_log_level cur_level = SF_LOG_INFO;
static bool journal;
static char tag[32] = "sofaas";

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const char *const level_prio[] = {"<3>", "<4>", "<6>", "<7>"};

void sf_log_init(const char *t, enum sf_log_level level)
{
    const char *js = getenv("JOURNAL_STREAM");
    journal = js != NULL && js[0] != '\0';
    cur_level = level;
    if (t != NULL)
        snprintf(tag, sizeof(tag), "%s", t);
}

void sf_log_set_level(enum sf_log_level level) { cur_level = level; }

bool sf_log_enabled(enum sf_log_level level) { return level <= cur_level; }

int sf_log_parse_level(const char *s, enum sf_log_level *out)
{
    for (int i = 0; i <= SF_LOG_DEBUG; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum sf_log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* Lines go to stderr whatever happens; nothing can be done about a failed
 * write, but a short one is finished. */
static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

void sf_log(enum sf_log_level level, const char *fmt, ...)
{
    char line[4096];
    size_t n = 0;
    va_list ap;
    int r;

    if (!sf_log_enabled(level))
        return;
    if (journal) {
        r = snprintf(line, sizeof(line), "%s%s[%d]: level=%s ",
                     level_prio[level], tag, (int)getpid(), level_names[level]);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        r = snprintf(line, sizeof(line),
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d] level=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, tag,
                     (int)getpid(), level_names[level]);
    }
    if (r > 0)
        n = (size_t)r < sizeof(line) ? (size_t)r : sizeof(line) - 1;
    va_start(ap, fmt);
    r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (r > 0)
        n += (size_t)r < sizeof(line) - n ? (size_t)r : sizeof(line) - n - 1;
    /* Keep one event on one line: fold embedded newlines. */
    for (size_t i = 0; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    if (n >= sizeof(line) - 1)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    if (batch != NULL && level >= SF_LOG_INFO) {
        if (batch_len + n > BATCH_CAP)
            sf_log_flush();
        memcpy(batch + batch_len, line, n);
        batch_len += n;
        return;
    }
    sf_log_flush(); /* this thread's earlier lines first */
    write_all(line, n);
}

void sf_log_flush(void)
{
    size_t off = 0;

    while (off < batch_len) {
        size_t n = batch_len - off;
        if (n > WRITE_MAX) { /* whole lines: each is at most WRITE_MAX */
            n = WRITE_MAX;
            while (n > 1 && batch[off + n - 1] != '\n')
                n--;
        }
        write_all(batch + off, n);
        off += n;
    }
    batch_len = 0;
}

static void flush_at_exit(void) { sf_log_flush(); }

void sf_log_batch(bool on)
{
    static bool registered;

    if (!on) {
        sf_log_flush();
        free(batch);
        batch = NULL;
        return;
    }
    if (batch == NULL)
        batch = malloc(BATCH_CAP); /* NULL: lines go out one by one */
    if (!registered && atexit(flush_at_exit) == 0)
        registered = true;
}
