#ifndef LOYALTY_CSQLITE_SHIM_H
#define LOYALTY_CSQLITE_SHIM_H
#include <sqlite3.h>
#endif
