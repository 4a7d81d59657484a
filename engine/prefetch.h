/*
 * Private to engine/: a software prefetch for the kernels that stream weights (cnn.c's
 * 1x1 kernels, matvec.c's float16 products).
 */
#ifndef CAPENGINE_PREFETCH_H
#define CAPENGINE_PREFETCH_H

#include <stddef.h>
#include <stdint.h>

/* A read hint for the line `bytes` after p, kept in every cache level. The address is
 * made as an integer: near the end of a matrix it lies past the array, where a pointer
 * may not point; a hint there never faults (at worst it loads a line nobody uses).
 * __builtin_prefetch, not _mm_prefetch: GCC 12 dropped _mm_prefetch of such an address
 * inside this helper without a word (every prefetch vanished from the objects). */
static inline void ce__prefetch(const void *p, size_t bytes)
{
    __builtin_prefetch((const void *)((uintptr_t)p + bytes), 0, 3);
}

#endif
