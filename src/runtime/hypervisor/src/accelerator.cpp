// Implementation follows.
#include "kata/hypervisor/hypervisor.h"
