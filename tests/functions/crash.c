/* crash - segfaults when the path is /crash, else answers "alive". */
#include <string.h>

#include "sofaas.h"

int sofaas_handle(const sofaas_request *req, sofaas_response *res)
{
    if (strcmp(req->path, "/crash") == 0) {
        volatile int *p = (int *)0;
        *p = 1;
    }
    return sofaas_printf(res, "alive\n") < 0;
}
