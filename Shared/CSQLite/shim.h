#ifndef CSQLITE_SHIM_H
#define CSQLITE_SHIM_H
// The session extension (changesets for the changelog): Debian's libsqlite3 is built with it,
// and its declarations in sqlite3.h are behind these two macros.
#define SQLITE_ENABLE_SESSION 1
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include <sqlite3.h>
#endif
