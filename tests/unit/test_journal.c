/* test_journal.c - the append-only record file behind the meter's spill
 * journal (src/journal.c): whole records come back in order; a torn or
 * corrupt tail is reported and cut, and what is appended afterwards is
 * read again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"

typedef struct seen {
    int n;
    char recs[16][64];
} seen;

static int collect(void *arg, const void *rec, size_t len)
{
    seen *s = arg;

    if (s->n == 16 || len >= sizeof(s->recs[0]))
        return -1;
    memcpy(s->recs[s->n], rec, len);
    s->recs[s->n][len] = '\0';
    s->n++;
    return 0;
}

static char *tmp_path(void)
{
    static char path[64];
    int fd;

    snprintf(path, sizeof(path), "/tmp/sofaas-test-journal.XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    return path;
}

/* Writes each string as one record, all in one write. */
static void append(sf_journal *j, const char *const *recs, int n)
{
    sf_buf b = {0};

    for (int i = 0; i < n; i++)
        assert_int_equal(sf_journal_frame(&b, recs[i], strlen(recs[i])), 0);
    assert_int_equal(sf_journal_write(j, b.data, b.len), 0);
    sf_buf_free(&b);
}

static off_t file_size(const char *path)
{
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static void test_round_trip_and_reset(void **state)
{
    static const char *const recs[] = {"one", "two", "three"};
    char *path = tmp_path();
    sf_journal *j;
    seen s = {0};
    size_t dropped = 1;

    (void)state;
    assert_int_equal(sf_journal_open(path, &j), 0);
    append(j, recs, 3);
    assert_int_equal(sf_journal_size(j), 3 * 16 + 3 + 3 + 5);
    sf_journal_close(j);

    assert_int_equal(sf_journal_open(path, &j), 0);
    assert_int_equal(sf_journal_read(j, collect, &s, &dropped), 3);
    assert_int_equal(dropped, 0);
    assert_string_equal(s.recs[0], "one");
    assert_string_equal(s.recs[2], "three");
    assert_int_equal(sf_journal_reset(j), 0);
    assert_int_equal(file_size(path), 0);
    memset(&s, 0, sizeof(s));
    assert_int_equal(sf_journal_read(j, collect, &s, &dropped), 0);
    sf_journal_close(j);
    unlink(path);
}

/* A crash in the middle of a write leaves a short last frame. */
static void test_torn_tail_is_cut_and_appends_follow(void **state)
{
    static const char *const recs[] = {"alpha", "beta"};
    static const char *const more[] = {"gamma"};
    char *path = tmp_path();
    sf_journal *j;
    seen s = {0};
    size_t dropped = 0;
    off_t whole;
    int fd;

    (void)state;
    assert_int_equal(sf_journal_open(path, &j), 0);
    append(j, recs, 2);
    whole = file_size(path);
    sf_journal_close(j);
    assert_true(truncate(path, whole - 2) == 0); /* "beta" torn */

    assert_int_equal(sf_journal_open(path, &j), 0);
    assert_int_equal(sf_journal_read(j, collect, &s, &dropped), 1);
    assert_string_equal(s.recs[0], "alpha");
    assert_int_equal(dropped, 16 + 4 - 2);
    assert_int_equal(file_size(path), 16 + 5); /* cut after "alpha" */
    append(j, more, 1);
    sf_journal_close(j);

    /* A frame header alone, then nothing. */
    fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "SFJ1", 4), 4);
    close(fd);
    memset(&s, 0, sizeof(s));
    assert_int_equal(sf_journal_open(path, &j), 0);
    assert_int_equal(sf_journal_read(j, collect, &s, &dropped), 2);
    assert_string_equal(s.recs[1], "gamma");
    assert_int_equal(dropped, 4);
    sf_journal_close(j);
    unlink(path);
}

/* A changed byte in a payload fails its checksum: reading stops there. */
static void test_corrupt_record_stops_reading(void **state)
{
    static const char *const recs[] = {"first", "second", "third"};
    char *path = tmp_path();
    sf_journal *j;
    seen s = {0};
    size_t dropped = 0;
    int fd;

    (void)state;
    assert_int_equal(sf_journal_open(path, &j), 0);
    append(j, recs, 3);
    sf_journal_close(j);
    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    /* second record's payload starts at 16 + 5 + 16 */
    assert_int_equal(pwrite(fd, "X", 1, 16 + 5 + 16 + 2), 1);
    close(fd);

    assert_int_equal(sf_journal_open(path, &j), 0);
    assert_int_equal(sf_journal_read(j, collect, &s, &dropped), 1);
    assert_string_equal(s.recs[0], "first");
    assert_int_equal(dropped, 16 + 6 + 16 + 5);
    sf_journal_close(j);
    unlink(path);
}

/* The callback's non-zero result ends reading and is returned. */
static int refuse_second(void *arg, const void *rec, size_t len)
{
    int *n = arg;

    (void)rec;
    (void)len;
    return ++*n == 2 ? -5 : 0;
}

static void test_callback_error_is_returned(void **state)
{
    static const char *const recs[] = {"a", "b", "c"};
    char *path = tmp_path();
    sf_journal *j;
    size_t dropped = 0;
    int n = 0;

    (void)state;
    assert_int_equal(sf_journal_open(path, &j), 0);
    append(j, recs, 3);
    assert_int_equal(sf_journal_read(j, refuse_second, &n, &dropped), -5);
    /* nothing was cut: every record is still there */
    assert_int_equal(file_size(path), 3 * 17);
    sf_journal_close(j);
    unlink(path);
}

static void test_frame_limits(void **state)
{
    static char big[SF_JOURNAL_MAX_RECORD + 1];
    sf_buf b = {0};

    (void)state;
    assert_int_equal(sf_journal_frame(&b, big, sizeof(big)), -EINVAL);
    assert_int_equal(b.len, 0);
    assert_int_equal(sf_journal_frame(&b, big, sizeof(big) - 1), 0);
    assert_int_equal(b.len, 16 + SF_JOURNAL_MAX_RECORD);
    sf_buf_free(&b);
    /* FNV-1a 64 test vectors */
    assert_true(sf_journal_sum("", 0) == 0xcbf29ce484222325ull);
    assert_true(sf_journal_sum("a", 1) == 0xaf63dc4c8601ec8cull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_reset),
        cmocka_unit_test(test_torn_tail_is_cut_and_appends_follow),
        cmocka_unit_test(test_corrupt_record_stops_reading),
        cmocka_unit_test(test_callback_error_is_returned),
        cmocka_unit_test(test_frame_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
