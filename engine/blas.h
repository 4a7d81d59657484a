/*
 * OpenBLAS, loaded only when the CNN's portable path needs it (machines without
 * AVX-512), never merely because a program links the engine.
 *
 * Why: linked the ordinary way, OpenBLAS starts its thread pool in every process at load
 * time, before main: about 4 ms and some spinning CPU in each `capsearch` search, and
 * threads in a daemon whose CNN runs on our own AVX-512 / AVX2 kernels (engine/cnn.c) and
 * never calls BLAS. So no binary links it; ce__blas_load dlopens Debian's libopenblas0
 * (soname libopenblas.so.0) when a CNN is built for the portable path (a build without
 * AVX2 + FMA: an old CPU, or CAPSEARCH_NATIVE=OFF). Debian's default pthread variant
 * still starts its pool when loaded; set to one thread, its helpers then sleep.
 *
 * Invariants: ce__blas.sgemm is called only after ce__blas_load returned 0 (the CNN's
 * build step does that); loading is thread-safe and happens at most once per process;
 * OpenBLAS computes on one thread.
 */
#ifndef CE_BLAS_H
#define CE_BLAS_H

#include <cblas.h>

#include "capengine.h"

struct ce_blas {
    __typeof__(cblas_sgemm) *sgemm;
};
extern struct ce_blas ce__blas;

/* Loads OpenBLAS and sets it to one thread: its threaded sgemm splits the work by the
 * thread count, so results would depend on it, and a layer's tasks already run on our own
 * helpers where there are any. 0, or -ENOSYS with why in err (the library is missing or
 * lacks a function). */
int ce__blas_load(ce_err *err);

#endif
