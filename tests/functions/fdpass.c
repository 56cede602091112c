/* fdpass - hostile: on /pass, sends one byte with a file descriptor
 * (SCM_RIGHTS) down the worker's IPC socket (fd 3), as only a template may;
 * the daemon must kill it. Any other path answers "ok". */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sofaas.h"

int sofaas_handle(const sofaas_request *req, sofaas_response *res)
{
    if (strcmp(req->path, "/pass") == 0) {
        char byte = 0;
        int fd = 0;
        struct iovec iov = {&byte, 1};
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int))];
        } cm;
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = cm.buf,
                             .msg_controllen = sizeof(cm.buf)};
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

        memset(&cm, 0, sizeof(cm));
        c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
        sendmsg(3, &msg, 0);
        sleep(5);
    }
    return sofaas_printf(res, "ok\n") < 0;
}
