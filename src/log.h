/*
 * log.h - the one logging module of sofaasd and sofaas-worker.
 *
 * One line per event: "LEVEL msg key=value ...". When JOURNAL_STREAM is set
 * (stderr goes to journald) each line is prefixed with a syslog priority
 * ("<3>", "<4>", "<6>", "<7>") so the journal keeps levels.
 */
#ifndef SF_LOG_H
#define SF_LOG_H

#include <stdbool.h>

enum sf_log_level {
    SF_LOG_ERROR = 0,
    SF_LOG_WARN = 1,
    SF_LOG_INFO = 2,
    SF_LOG_DEBUG = 3,
};

/* Reads JOURNAL_STREAM and sets the program tag. Call once, early. */
void sf_log_init(const char *tag, enum sf_log_level level);
void sf_log_set_level(enum sf_log_level level);
bool sf_log_enabled(enum sf_log_level level);
/* Parses "error|warn|info|debug". Returns 0 or -EINVAL. */
int sf_log_parse_level(const char *s, enum sf_log_level *out);

void sf_log(enum sf_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Batching for the calling thread (the daemon's loop thread): its info and
 * debug lines wait in a buffer and sf_log_flush writes them, whole lines,
 * in writes of at most PIPE_BUF bytes (never split among other processes'
 * lines on a pipe). A warning or error writes the buffer first, then
 * itself, at once. sf_log_batch(false) flushes and stops; the buffer is
 * also flushed at exit.
 */
void sf_log_batch(bool on);
void sf_log_flush(void);

#define SF_ERR(...) sf_log(SF_LOG_ERROR, __VA_ARGS__)
#define SF_WARN(...) sf_log(SF_LOG_WARN, __VA_ARGS__)
#define SF_INFO(...) sf_log(SF_LOG_INFO, __VA_ARGS__)
#define SF_DEBUG(...)                                                          \
    do {                                                                       \
        if (sf_log_enabled(SF_LOG_DEBUG))                                      \
            sf_log(SF_LOG_DEBUG, __VA_ARGS__);                                 \
    } while (0)

#endif
