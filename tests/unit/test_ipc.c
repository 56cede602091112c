/* test_ipc.c - frame encoding/decoding and size checks (src/ipc.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>

#include "ipc.h"

static const sofaas_header hdrs[] = {
    {"Host", 4, "example", 7},
    {"X-Empty", 7, "", 0},
};

static sf_invoke sample(const void *body, size_t blen)
{
    return (sf_invoke){.method = "POST", .method_len = 4,
                       .path = "/a/b", .path_len = 4,
                       .query = "x=1", .query_len = 3,
                       .request_id = "rid-1", .request_id_len = 5,
                       .headers = hdrs, .header_count = 2,
                       .body = body, .body_len = blen};
}

/* Builds a full INVOKE payload (meta + body) the way the daemon sends it. */
static char *invoke_payload(const sf_invoke *inv, size_t *len)
{
    char *meta, *p;
    size_t mlen;
    sf_frame_hdr h;

    assert_int_equal(sf_ipc_encode_invoke(inv, 42, &meta, &mlen), 0);
    memcpy(&h, meta, sizeof(h));
    assert_int_equal(h.type, SF_FRAME_INVOKE);
    assert_int_equal(h.id, 42);
    assert_int_equal(h.len, mlen - sizeof(h) + inv->body_len);
    p = malloc(h.len + 1);
    memcpy(p, meta + sizeof(h), mlen - sizeof(h));
    memcpy(p + mlen - sizeof(h), inv->body, inv->body_len);
    free(meta);
    *len = h.len;
    return p;
}

static void test_invoke_roundtrip(void **state)
{
    const char body[] = {0, 1, 2, '\r', '\n', (char)0xff};
    sf_invoke in = sample(body, sizeof(body)), out;
    sofaas_header *hd;
    size_t len;
    char *p = invoke_payload(&in, &len);
    (void)state;

    assert_int_equal(sf_ipc_decode_invoke(p, len, &out, &hd), 0);
    assert_string_equal(out.method, "POST");
    assert_string_equal(out.path, "/a/b");
    assert_string_equal(out.query, "x=1");
    assert_string_equal(out.request_id, "rid-1");
    assert_int_equal(out.header_count, 2);
    assert_string_equal(out.headers[0].name, "Host");
    assert_string_equal(out.headers[0].value, "example");
    assert_int_equal(out.headers[1].value_len, 0);
    assert_int_equal(out.body_len, sizeof(body));
    assert_memory_equal(out.body, body, sizeof(body));
    free(hd);
    free(p);
}

static void test_invoke_truncated_is_rejected(void **state)
{
    sf_invoke in = sample("hello", 5), out;
    sofaas_header *hd;
    size_t len;
    char *p = invoke_payload(&in, &len);
    (void)state;

    /* Every proper prefix must be refused, never read past. */
    for (size_t cut = 0; cut < len; cut++) {
        char *q = malloc(cut ? cut : 1);
        memcpy(q, p, cut);
        assert_int_equal(sf_ipc_decode_invoke(q, cut, &out, &hd), -EPROTO);
        assert_null(hd);
        free(q);
    }
    /* Trailing garbage is refused too. */
    p = realloc(p, len + 1);
    p[len] = 'x';
    assert_int_equal(sf_ipc_decode_invoke(p, len + 1, &out, &hd), -EPROTO);
    free(p);
}

static void test_invoke_bad_lengths(void **state)
{
    sf_invoke in = sample("", 0), out;
    sofaas_header *hd;
    size_t len;
    char *p = invoke_payload(&in, &len);
    uint32_t huge = 0xffffffffu;
    (void)state;

    /* method_len claims more than present */
    memcpy(p, &huge, 4);
    assert_int_equal(sf_ipc_decode_invoke(p, len, &out, &hd), -EPROTO);
    free(p);

    /* a string without its NUL terminator */
    p = invoke_payload(&in, &len);
    p[32 + 4] = 'X'; /* the NUL after "POST" */
    assert_int_equal(sf_ipc_decode_invoke(p, len, &out, &hd), -EPROTO);
    free(p);

    /* too many headers claimed */
    p = invoke_payload(&in, &len);
    huge = SF_IPC_MAX_HEADERS + 1;
    memcpy(p + 16, &huge, 4);
    assert_int_equal(sf_ipc_decode_invoke(p, len, &out, &hd), -EPROTO);
    free(p);
}

static void test_oversized_encode(void **state)
{
    sf_invoke in = sample(NULL, SF_IPC_MAX_INVOKE);
    char *meta = NULL;
    size_t mlen;
    (void)state;
    assert_int_equal(sf_ipc_encode_invoke(&in, 1, &meta, &mlen), -EMSGSIZE);
    assert_null(meta);
}

static void test_check_hdr(void **state)
{
    sf_frame_hdr h = {0};
    (void)state;

    h.type = SF_FRAME_RESPONSE;
    h.len = SF_IPC_MAX_RESPONSE;
    assert_int_equal(sf_ipc_check_hdr(&h, true), 0);
    h.len = SF_IPC_MAX_RESPONSE + 1;
    assert_int_equal(sf_ipc_check_hdr(&h, true), -EMSGSIZE);
    /* direction: a worker never sends INVOKE, the daemon never RESPONSE */
    h.len = 10;
    assert_int_equal(sf_ipc_check_hdr(&h, false), -EPROTO);
    h.type = SF_FRAME_INVOKE;
    assert_int_equal(sf_ipc_check_hdr(&h, true), -EPROTO);
    assert_int_equal(sf_ipc_check_hdr(&h, false), 0);
    h.type = SF_FRAME_HELLO;
    h.len = SF_IPC_MAX_CONTROL + 1;
    assert_int_equal(sf_ipc_check_hdr(&h, true), -EMSGSIZE);
    h.type = 0;
    h.len = 0;
    assert_int_equal(sf_ipc_check_hdr(&h, true), -EPROTO);
    h.type = 999;
    assert_int_equal(sf_ipc_check_hdr(&h, false), -EPROTO);
}

/* Templates: only the daemon sends FORK, only a worker FORKED and SPARE. */
static void test_check_hdr_fork_frames(void **state)
{
    sf_frame_hdr h = {.type = SF_FRAME_FORK};
    (void)state;

    assert_int_equal(sf_ipc_check_hdr(&h, false), 0);
    assert_int_equal(sf_ipc_check_hdr(&h, true), -EPROTO);
    h.type = SF_FRAME_FORKED;
    h.len = sizeof(sf_forked_msg);
    assert_int_equal(sf_ipc_check_hdr(&h, true), 0);
    assert_int_equal(sf_ipc_check_hdr(&h, false), -EPROTO);
    h.len = SF_IPC_MAX_CONTROL + 1;
    assert_int_equal(sf_ipc_check_hdr(&h, true), -EMSGSIZE);
    h.type = SF_FRAME_SPARE;
    h.len = sizeof(sf_forked_msg);
    assert_int_equal(sf_ipc_check_hdr(&h, true), 0);
    assert_int_equal(sf_ipc_check_hdr(&h, false), -EPROTO);
    h.type = SF_FRAME_TYPE_MAX + 1;
    h.len = 0;
    assert_int_equal(sf_ipc_check_hdr(&h, true), -EPROTO);
}

/* Descriptors ride the first byte: the receiver gets the bytes and both
 * descriptors, which work; more than SF_IPC_MAX_FDS is refused. */
static void test_send_fds(void **state)
{
    int sv[2], p[2], fds[3];
    char buf[8];
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(4 * sizeof(int))];
    } cm;
    struct iovec iov = {"abc", 3}, in = {buf, sizeof(buf)};
    struct msghdr msg = {.msg_iov = &in,
                         .msg_iovlen = 1,
                         .msg_control = cm.buf,
                         .msg_controllen = sizeof(cm.buf)};
    struct cmsghdr *c;
    (void)state;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(pipe(p), 0);
    fds[0] = p[0];
    fds[1] = p[1];
    fds[2] = sv[0];
    assert_int_equal(sf_ipc_send_fds(sv[0], &iov, 1, fds, 3, 0), -EINVAL);
    assert_int_equal(sf_ipc_send_fds(sv[0], &iov, 1, fds, 2, 0), 3);
    assert_int_equal(recvmsg(sv[1], &msg, 0), 3);
    assert_memory_equal(buf, "abc", 3);
    c = CMSG_FIRSTHDR(&msg);
    assert_non_null(c);
    assert_int_equal(c->cmsg_type, SCM_RIGHTS);
    assert_int_equal(c->cmsg_len, CMSG_LEN(2 * sizeof(int)));
    {
        int r, w;
        char x;
        memcpy(&r, CMSG_DATA(c), sizeof(int));
        memcpy(&w, CMSG_DATA(c) + sizeof(int), sizeof(int));
        assert_int_equal(write(w, "z", 1), 1);
        assert_int_equal(read(r, &x, 1), 1);
        assert_int_equal(x, 'z');
        close(r);
        close(w);
    }
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
}

static void test_response_roundtrip(void **state)
{
    sf_response in = {.status = 201, .rc = 0, .headers = hdrs,
                      .header_count = 2, .body = "xyz", .body_len = 3};
    sf_response out;
    sofaas_header *hd;
    char *meta, *p;
    size_t mlen, len;
    (void)state;

    assert_int_equal(sf_ipc_encode_response(&in, 7, &meta, &mlen), 0);
    len = mlen - sizeof(sf_frame_hdr) + 3;
    p = malloc(len);
    memcpy(p, meta + sizeof(sf_frame_hdr), mlen - sizeof(sf_frame_hdr));
    memcpy(p + len - 3, "xyz", 3);
    assert_int_equal(sf_ipc_decode_response(p, len, &out, &hd), 0);
    assert_int_equal(out.status, 201);
    assert_int_equal(out.header_count, 2);
    assert_memory_equal(out.body, "xyz", 3);
    free(hd);
    /* truncated */
    assert_int_equal(sf_ipc_decode_response(p, len - 1, &out, &hd), -EPROTO);
    free(p);
    free(meta);
}

static void test_load_roundtrip(void **state)
{
    sf_load_msg m = {.abi = 1, .memory_mb = 128, .timeout_ms = 5, .tmp_mb = 3};
    static const char env[] = "A=1\0B=two";
    sf_load_msg o;
    const char *path, *e;
    char *buf;
    size_t len;
    (void)state;

    assert_int_equal(sf_ipc_encode_load(&m, "/x/y.so", env, sizeof(env), &buf,
                                        &len), 0);
    assert_int_equal(sf_ipc_decode_load(buf + 16, len - 16, &o, &path, &e), 0);
    assert_string_equal(path, "/x/y.so");
    assert_int_equal(o.memory_mb, 128);
    assert_int_equal(o.env_len, sizeof(env));
    assert_string_equal(e, "A=1");
    assert_string_equal(e + 4, "B=two");
    /* an env block without a final NUL is refused */
    buf[len - 1] = 'x';
    assert_int_equal(sf_ipc_decode_load(buf + 16, len - 16, &o, &path, &e),
                     -EPROTO);
    free(buf);
}

static void test_loaded_roundtrip(void **state)
{
    char *buf;
    size_t len;
    int32_t st;
    const char *msg;
    (void)state;

    assert_int_equal(sf_ipc_encode_loaded(SF_LOAD_ERR_INIT, "boom", &buf, &len),
                     0);
    assert_int_equal(sf_ipc_decode_loaded(buf + 16, len - 16, &st, &msg), 0);
    assert_int_equal(st, SF_LOAD_ERR_INIT);
    assert_string_equal(msg, "boom");
    assert_int_equal(sf_ipc_decode_loaded(buf + 16, 4, &st, &msg), -EPROTO);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invoke_roundtrip),
        cmocka_unit_test(test_invoke_truncated_is_rejected),
        cmocka_unit_test(test_invoke_bad_lengths),
        cmocka_unit_test(test_oversized_encode),
        cmocka_unit_test(test_check_hdr),
        cmocka_unit_test(test_check_hdr_fork_frames),
        cmocka_unit_test(test_send_fds),
        cmocka_unit_test(test_response_roundtrip),
        cmocka_unit_test(test_load_roundtrip),
        cmocka_unit_test(test_loaded_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
