/* netns.c - a network namespace made aside (see netns.h). */
#include "netns.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

static void *netns_thread(void *arg)
{
    int *fd = arg;

    if (unshare(CLONE_NEWNET) == 0)
        *fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    return NULL;
}

int sf_netns_aside(void)
{
    pthread_attr_t a;
    pthread_t t;
    int fd = -1;

    if (pthread_attr_init(&a) != 0)
        return -1;
    /* It only unshares and opens: a small stack keeps it out of a
     * worker's resident memory. */
    pthread_attr_setstacksize(&a, 64 << 10);
    if (pthread_create(&t, &a, netns_thread, &fd) == 0)
        pthread_join(t, NULL);
    pthread_attr_destroy(&a);
    return fd;
}
