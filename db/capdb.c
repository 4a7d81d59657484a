/* SCAFFOLD: replaced by the foundation issue. */
#include "capdb.h"
