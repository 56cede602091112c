/* whoami - sleeps for ?ms=N milliseconds (default 0), then answers with its
 * process id, so tests can tell instances apart and count them. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sofaas.h"

int sofaas_handle(const sofaas_request *req, sofaas_response *res)
{
    const char *q = strstr(req->query, "ms=");
    long ms = q ? strtol(q + 3, NULL, 10) : 0;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
    return sofaas_printf(res, "%ld\n", (long)getpid()) < 0;
}
