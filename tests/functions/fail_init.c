/* fail_init - sofaas_init reports failure. */
#include "sofaas.h"

int sofaas_init(void) { return 7; }

int sofaas_handle(const sofaas_request *req, sofaas_response *res)
{
    (void)req;
    return sofaas_printf(res, "never\n") < 0;
}
