/* no_handle - built with the header but defines no sofaas_handle. */
#include "sofaas.h"

int not_the_handler(void) { return 0; }
