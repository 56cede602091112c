/* hello - the smallest sofaas function: answers every request in plain text. */
#include "sofaas.h"

int sofaas_handle(const sofaas_request *req, sofaas_response *res)
{
    (void)req;
    sofaas_set_header(res, "Content-Type", "text/plain; charset=utf-8");
    return sofaas_printf(res, "Hello from sofaas!\n") < 0;
}
