/*
 * Fuzz target: the .csw weight-file loader (engine/weights.c, models/FORMAT.md) from
 * memory. Promises checked: a rejected file has a message; an accepted one hands out
 * only tensors that lie inside what was loaded (every byte of every tensor is read, so
 * ASan sees any that does not), whose byte size matches their shape, and whose names
 * find them again.
 */
#include <string.h>

#include "capengine.h"
#include "fuzz.h"
#include "weights.h"

static size_t dtype_size(int dtype);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ce_weights *w = NULL;
    ce_err err;
    memset(&err, 0, sizeof err);
    int rc = ce__weights_open_memory(data, size, &w, &err);
    if (rc < 0) {
        if (!err.msg[0]) fuzz_fail("ce__weights_open_memory returned %d with no message", rc);
        return 0;
    }
    int n = ce__weights_count(w);
    if (n < 0) fuzz_fail("negative tensor count %d", n);
    for (int i = 0; i < n; i++) {
        const ce_tensor *t = ce__weights_at(w, i);
        if (!t || !t->name) fuzz_fail("tensor %d missing", i);
        size_t esize = dtype_size(t->dtype);
        if (!esize) fuzz_fail("tensor %s has dtype %d after open", t->name, t->dtype);
        if (t->rank < 0 || t->rank > CE_WEIGHTS_MAX_RANK)
            fuzz_fail("tensor %s has rank %d", t->name, t->rank);
        size_t count = 1;
        for (int d = 0; d < t->rank; d++) count *= t->dims[d];
        if (count != t->count)
            fuzz_fail("tensor %s: count %zu, dims say %zu", t->name, t->count, count);
        if (t->count && ((uintptr_t)t->data & 63))
            fuzz_fail("tensor %s is not 64-byte aligned", t->name);
        const volatile uint8_t *bytes = t->data;
        uint8_t sum = 0;
        for (size_t b = 0; b < t->count * esize; b++) sum ^= bytes[b];
        (void)sum;
        if (ce__weights_find(w, t->name) != t)
            fuzz_fail("ce__weights_find(\"%s\") does not return tensor %d", t->name, i);
    }
    ce__weights_close(w);
    return 0;
}

static size_t dtype_size(int dtype)
{
    switch (dtype) {
    case CE_DT_F32: return 4;
    case CE_DT_I32: return 4;
    case CE_DT_U8: return 1;
    default: return 0; /* float16 is converted at open: never seen here */
    }
}
