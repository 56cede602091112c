/*
 * counter - keeps state in a global. Each instance counts its own
 * invocations: consecutive calls served by the same warm instance see the
 * count go up; a new instance starts again at 1.
 */
#include <unistd.h>

#include "sofaas.h"

static unsigned long count;
static long started;

int sofaas_init(void)
{
    started = (long)getpid();
    return 0;
}

int sofaas_handle(const sofaas_request *req, sofaas_response *res)
{
    (void)req;
    count++;
    sofaas_set_header(res, "Content-Type", "application/json");
    return sofaas_printf(res, "{\"count\":%lu,\"instance_pid\":%ld}\n", count,
                         started) < 0;
}
