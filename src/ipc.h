/*
 * ipc.h - the binary frame protocol between sofaasd and sofaas-worker.
 *
 * One SOCK_STREAM socketpair per worker carries length-prefixed frames:
 * a fixed 16-byte header (sf_frame_hdr) followed by `len` payload bytes.
 * Both sides check every header with sf_ipc_check_hdr() before reading the
 * payload, so a peer can never make the other allocate more than the cap for
 * that frame type; an unknown type is a protocol error that retires the
 * worker. Multi-byte fields are in host byte order (both ends are one host).
 * This header is shared by the daemon and the worker and is the single
 * definition of the wire format (docs/architecture.md describes it).
 */
#ifndef SF_IPC_H
#define SF_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SOFAAS_NO_ABI_STAMP
#include "sofaas.h"

/* Worker's end of the socketpair is always this fd. */
#define SF_IPC_FD 3
/* A root daemon's workers get the shared, empty network namespace on this
 * fd (with SOFAAS_NETNS_FD naming it), join it before HELLO and close it
 * (pool.c, shared_netns). */
#define SF_WORKER_NETNS_FD 4
#define SF_WORKER_NETNS_FD_STR "4"

/*
 * A worker's stdout and stderr are one pipe the daemon reads. Until the
 * worker writes this line (alone, in one write, right before it dlopens the
 * function) everything on it is the worker's own log and is copied to the
 * daemon's log; from this line on it may be user code's and is only ever
 * stored as function output (pool.c, fnlog.c). No secret is needed: only
 * worker code runs before the line, and text after it cannot undo it.
 */
#define SF_USER_CODE_MARK "sofaas-worker: user code starts here"

enum sf_frame_type {
    SF_FRAME_HELLO = 1,     /* W->D  worker is up and generic      */
    SF_FRAME_LOAD = 2,      /* D->W  specialize: load an artifact   */
    SF_FRAME_LOADED = 3,    /* W->D  result of LOAD                 */
    SF_FRAME_INVOKE = 4,    /* D->W  one invocation                 */
    SF_FRAME_RESPONSE = 5,  /* W->D  the invocation's response      */
    SF_FRAME_VIOLATION = 6, /* W->D  sandbox refused a syscall      */
    SF_FRAME_FORK = 7,      /* D->T  template: fork one instance    */
    SF_FRAME_FORKED = 8,    /* T->D  result of FORK (+ one fd)      */
    SF_FRAME_SPARE = 9,     /* T->D  next child forked ahead         */
    SF_FRAME_TYPE_MAX = 9,
};

typedef struct sf_frame_hdr {
    uint32_t len;  /* payload bytes after this header */
    uint16_t type; /* enum sf_frame_type */
    uint16_t flags;
    uint64_t id; /* invocation id for INVOKE/RESPONSE, else 0 */
} sf_frame_hdr;
_Static_assert(sizeof(sf_frame_hdr) == 16, "frame header is 16 bytes");

/* RESPONSE header flags. */
#define SF_RESPONSE_F_OVERFLOW 0x1u /* the function hit the response cap */
/* Output (stdout/stderr) was waiting in the instance's pipe when it
 * answered. Without it the daemon has read all of the call's output. */
#define SF_RESPONSE_F_OUTPUT 0x2u

/* Caps. The invocation body limit (6 MiB) plus room for headers. */
#define SF_IPC_MAX_INVOKE (7u << 20)
#define SF_IPC_MAX_RESPONSE (7u << 20)
#define SF_IPC_MAX_CONTROL (64u << 10)
#define SF_IPC_MAX_HEADERS 256

/* HELLO payload. */
typedef struct sf_hello_msg {
    uint32_t abi;
    uint32_t pid;
} sf_hello_msg;
_Static_assert(sizeof(sf_hello_msg) == 8, "hello layout");

/* LOAD flags. */
#define SF_LOAD_F_NETWORK 0x1u
/* Become a template: init once, then only fork instances on FORK frames
 * (docs/pool.md). A template never serves invocations. */
#define SF_LOAD_F_TEMPLATE 0x2u
/* The daemon holds the worker to memory_mb with a memory cgroup; the
 * worker's RLIMIT_AS is then a looser backstop (docs/sandbox.md). 0x2 is
 * left for templates (issue 4). */
#define SF_LOAD_F_MEMCG 0x4u
/* The function may open files while serving (fnconfig file_access). */
#define SF_LOAD_F_FILES 0x8u

/*
 * LOAD payload: this struct, then path (path_len bytes + NUL), then the env
 * block (env_len bytes: "KEY=VALUE\0" repeated).
 */
typedef struct sf_load_msg {
    uint32_t abi;
    uint32_t memory_mb;
    uint32_t timeout_ms;
    uint32_t flags;
    uint32_t tmp_mb;
    uint32_t path_len;
    uint32_t env_len;
    uint32_t max_children; /* templates: live forked instances at most */
} sf_load_msg;
_Static_assert(sizeof(sf_load_msg) == 32, "load layout");

enum sf_load_status {
    SF_LOAD_OK = 0,
    SF_LOAD_ERR_OPEN = 1,    /* dlopen failed */
    SF_LOAD_ERR_SYMBOL = 2,  /* no sofaas_handle */
    SF_LOAD_ERR_ABI = 3,     /* missing or different sofaas_abi_version */
    SF_LOAD_ERR_INIT = 4,    /* sofaas_init returned non-zero */
    SF_LOAD_ERR_SANDBOX = 5, /* sandbox could not be built */
    SF_LOAD_ERR_STATE = 6,   /* LOAD sent to an already specialized worker */
};

/* LOADED payload: this struct, then msg_len bytes of message (+ NUL). */
typedef struct sf_loaded_msg {
    int32_t status; /* enum sf_load_status */
    uint32_t msg_len;
} sf_loaded_msg;
_Static_assert(sizeof(sf_loaded_msg) == 8, "loaded layout");

/* VIOLATION payload. */
typedef struct sf_violation_msg {
    int32_t syscall_nr;
    uint32_t arch; /* AUDIT_ARCH_* */
} sf_violation_msg;
_Static_assert(sizeof(sf_violation_msg) == 8, "violation layout");

/*
 * FORK has no payload. Without flags it asks for an instance now: the
 * template answers FORKED with this payload and, when status is 0, exactly
 * two file descriptors in SCM_RIGHTS ancillary data on the frame's first
 * byte: the daemon's end of the new instance's socketpair, then the read
 * end of its stdout+stderr pipe. The new instance then speaks on its own
 * socket and sends LOADED there first (it never sends HELLO).
 */
typedef struct sf_forked_msg {
    int32_t status; /* 0 or -errno (-EAGAIN: at max_children) */
    uint32_t pid;   /* the new instance (a child of the template) */
} sf_forked_msg;
_Static_assert(sizeof(sf_forked_msg) == 8, "forked layout");

/*
 * SPARE (the same payload; with status 0, the same two descriptors): the
 * template's next child, forked ahead and offered. It is sent right after
 * a FORKED that handed over a child, or in answer to a FORK flagged
 * SF_FORK_F_TAKEN (then with status -errno when none could be forked).
 * The template keeps its own copies of the offered spare's descriptors:
 * if the daemon did not take it, the next plain FORK is answered with it.
 * The daemon may take it at once (it sends the spare its first invocation
 * itself, docs/pool.md) and then sends FORK with SF_FORK_F_TAKEN: the
 * template forgets the spare (closes its copies) and offers the next one.
 * The daemon ignores a SPARE that crossed a plain FORK (the template then
 * hands that child over with FORKED).
 */
#define SF_FORK_F_TAKEN 0x1 /* FORK flag: the offered spare was taken */
#define SF_FORK_FLAGS SF_FORK_F_TAKEN

/*
 * A decoded or to-be-encoded invocation. Strings are not owned; on decode
 * they point into the payload and are NUL-terminated there.
 */
typedef struct sf_invoke {
    const char *method;
    size_t method_len;
    const char *path;
    size_t path_len;
    const char *query;
    size_t query_len;
    const char *request_id;
    size_t request_id_len;
    const sofaas_header *headers;
    size_t header_count;
    const void *body;
    size_t body_len;
} sf_invoke;

/* A decoded or to-be-encoded response; same ownership rules. */
typedef struct sf_response {
    int32_t status; /* HTTP status */
    int32_t rc;     /* sofaas_handle's return value */
    const sofaas_header *headers;
    size_t header_count;
    const void *body;
    size_t body_len;
} sf_response;

/*
 * Checks a received header: known type, payload within the cap for that
 * type, and a type that may travel in this direction.
 * Returns 0, -EPROTO (bad type/direction) or -EMSGSIZE.
 */
int sf_ipc_check_hdr(const sf_frame_hdr *h, bool from_worker);

/* Maximum descriptors one message passes (a forked instance's socket and
 * output pipe). */
#define SF_IPC_MAX_FDS 2

/*
 * One sendmsg(2) of iov[0..iovcnt) on sock with fds[0..nfds) attached as
 * SCM_RIGHTS (they ride the first byte sent; nfds <= SF_IPC_MAX_FDS),
 * MSG_NOSIGNAL plus flags, retried on EINTR. Returns the bytes sent (the
 * caller sends any rest without the fds) or -errno.
 */
struct iovec;
long sf_ipc_send_fds(int sock, struct iovec *iov, int iovcnt, const int *fds,
                     int nfds, int flags);

/*
 * Encodes a frame header plus everything of an invocation except the body
 * into a new buffer (caller frees *out); the header's len already counts the
 * body, which the caller sends right after *out. Returns 0, -EMSGSIZE or
 * -ENOMEM.
 */
int sf_ipc_encode_invoke(const sf_invoke *inv, uint64_t id, char **out,
                         size_t *out_len);

/*
 * Decodes an INVOKE payload of len bytes in place. *hdrs is a new array the
 * caller frees (NULL when there are none). Returns 0 or -EPROTO.
 */
int sf_ipc_decode_invoke(const char *payload, size_t len, sf_invoke *inv,
                         sofaas_header **hdrs);

/* Same pair for RESPONSE frames. */
int sf_ipc_encode_response(const sf_response *res, uint64_t id, char **out,
                           size_t *out_len);
int sf_ipc_decode_response(const char *payload, size_t len, sf_response *res,
                           sofaas_header **hdrs);

/* LOAD: encodes the whole frame (caller frees *out). */
int sf_ipc_encode_load(const sf_load_msg *m, const char *path,
                       const char *env, size_t env_len, char **out,
                       size_t *out_len);
/* Decodes LOAD in place; *path and *env point into the payload. */
int sf_ipc_decode_load(const char *payload, size_t len, sf_load_msg *m,
                       const char **path, const char **env);

/* LOADED: encodes the whole frame (caller frees *out). */
int sf_ipc_encode_loaded(int32_t status, const char *msg, char **out,
                         size_t *out_len);
int sf_ipc_decode_loaded(const char *payload, size_t len, int32_t *status,
                         const char **msg);

#endif
