/*
 * Private to engine/: memory on 64-byte cache lines for every buffer a vector kernel
 * reads or writes (activation maps, packed weights, the captioner's vectors). malloc
 * aligns to 16 bytes, so each 64-byte load or store of such a buffer straddled two lines
 * (CNN 16.0-16.4 -> 15.2-15.5 ms at 1 thread once the maps were aligned). Free with free().
 */
#ifndef CAPENGINE_LINES_H
#define CAPENGINE_LINES_H

#include <stdlib.h>

/* bytes rounded up to whole lines, as C11's aligned_alloc asks; NULL when out of memory */
static inline void *ce__alloc_lines(size_t bytes)
{
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

#endif
