/* libpq, loaded on first use (libpq.h says why). */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

#define CAPDB_LIBPQ_LOADER
#include "libpq.h"

/* Debian 12's libpq5; the soname has not changed since PostgreSQL 8.4. */
#define LIBPQ_SONAME "libpq.so.5"

struct capdb_libpq capdb__libpq;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static char load_error[256]; /* "" once loaded; written only inside load_once */

static void load(void);

int capdb__libpq_load(char *why, size_t size)
{
    pthread_once(&load_once, load);
    if (!load_error[0]) return 0;
    snprintf(why, size, "%s", load_error);
    return -ENOSYS;
}

static void load(void)
{
    /* RTLD_LOCAL: its symbols stay out of the global namespace (the macros in libpq.h
     * would otherwise be the only thing between us and a second copy). */
    void *lib = dlopen(LIBPQ_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(load_error, sizeof load_error,
                 "PostgreSQL needs the client library %s (Debian package libpq5): %s",
                 LIBPQ_SONAME, dlerror());
        return;
    }
#define CAPDB_LIBPQ_RESOLVE(name)                                                                  \
    if (!(*(void **)&capdb__libpq.name = dlsym(lib, #name))) {                                     \
        snprintf(load_error, sizeof load_error, "%s has no function %s", LIBPQ_SONAME, #name);     \
        return;                                                                                    \
    }
    CAPDB_LIBPQ_FUNCTIONS(CAPDB_LIBPQ_RESOLVE)
#undef CAPDB_LIBPQ_RESOLVE
}
