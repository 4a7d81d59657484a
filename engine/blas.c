/* OpenBLAS, loaded on first need (blas.h says why). */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

#include "blas.h"

/* Debian 12's libopenblas0 (any of its pthread / openmp / serial variants). */
#define OPENBLAS_SONAME "libopenblas.so.0"

struct ce_blas ce__blas;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static char load_error[256]; /* written only inside load_once */
static int loaded;            /* written only inside load_once */

static void load(void);

int ce__blas_load(ce_err *err)
{
    pthread_once(&load_once, load);
    if (loaded) return 0;
    snprintf(err->msg, sizeof err->msg, "%s", load_error);
    return -ENOSYS;
}

static void load(void)
{
    void *lib = dlopen(OPENBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(load_error, sizeof load_error,
                 "the CNN's portable path needs %s (Debian package libopenblas0): %s",
                 OPENBLAS_SONAME, dlerror());
        return;
    }
    void (*set_num_threads)(int) = NULL;
    *(void **)&ce__blas.sgemm = dlsym(lib, "cblas_sgemm");
    *(void **)&set_num_threads = dlsym(lib, "openblas_set_num_threads");
    if (!ce__blas.sgemm || !set_num_threads) {
        snprintf(load_error, sizeof load_error, "%s lacks cblas_sgemm or openblas_set_num_threads",
                 OPENBLAS_SONAME);
        dlclose(lib);
        return;
    }
    set_num_threads(1);
    loaded = 1;
}
