/* wrong_abi - claims an ABI version this runtime does not speak. */
#define SOFAAS_NO_ABI_STAMP
#include "sofaas.h"

__attribute__((visibility("default"))) const unsigned int sofaas_abi_version =
    99;

int sofaas_handle(const sofaas_request *req, sofaas_response *res)
{
    (void)req;
    return sofaas_printf(res, "never\n") < 0;
}
