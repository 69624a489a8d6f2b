#ifndef CSQLITE_SHIM_H
#define CSQLITE_SHIM_H
// The session extension (changesets for the changelog): Debian's libsqlite3 is built with it,
// and its declarations in sqlite3.h are behind these two macros.
#define SQLITE_ENABLE_SESSION 1
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#include <sqlite3.h>

// sqlite3_config is variadic, which Swift cannot call. Memory statistics take a global mutex
// on every allocation of every connection, so connections on different threads (the loop's,
// the checkpointer's, a store per task) would queue on one lock; the project reads none of
// them. Must run before SQLite initializes: returns SQLITE_MISUSE after.
static inline int csqlite_disable_memory_statistics(void) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}
#endif
