// Implementation follows.
#include "kata/config/config.h"
