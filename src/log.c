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
    (void)!write(STDERR_FILENO, line, n);
}
