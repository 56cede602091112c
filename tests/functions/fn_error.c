/* fn_error - sofaas_handle returns non-zero. */
#include "sofaas.h"

int sofaas_handle(const sofaas_request *req, sofaas_response *res)
{
    (void)req;
    (void)res;
    return 3;
}
