/*
 * Private to engine/: the reader of the capsearch weight file (.csw, models/FORMAT.md).
 *
 * A file is mmap'd and every directory entry validated once at open (bounds, alignment,
 * sizes, unique names), so that the lookups afterwards can hand out pointers into the
 * mapping without further checks. float16 tensors are converted to float32 at open and
 * are seen as float32 by every caller.
 */
#ifndef CAPENGINE_WEIGHTS_H
#define CAPENGINE_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "capengine.h"

enum { CE_DT_F32 = 0, CE_DT_F16 = 1, CE_DT_I32 = 2, CE_DT_U8 = 3 };
#define CE_WEIGHTS_MAX_RANK 8

typedef struct {
    const char *name; /* NUL-terminated copy */
    int dtype;        /* CE_DT_*, CE_DT_F16 only with CE_WEIGHTS_SKIP_F16 */
    int rank;
    uint32_t dims[CE_WEIGHTS_MAX_RANK];
    size_t count;     /* product of dims */
    const void *data; /* 64-byte aligned, count elements of dtype */
} ce_tensor;

typedef struct ce_weights ce_weights;

/* Maps and validates a file. -ENOENT when it does not exist, -EBADMSG when it breaks a
 * rule of the format (the message says which). */
int ce__weights_open(const char *path, ce_weights **out, ce_err *err);
/* CE_WEIGHTS_SKIP_F16: float16 tensors are neither converted nor reachable by the typed
 * lookups (they keep dtype CE_DT_F16): for a reader that needs only the small int32 /
 * uint8 / float32 tensors, such as the search's text side, so that opening costs an
 * mmap instead of converting every weight. */
enum { CE_WEIGHTS_CONVERT_F16 = 0, CE_WEIGHTS_SKIP_F16 = 1 };
int ce__weights_open_flags(const char *path, int flags, ce_weights **out, ce_err *err);
/* The same from a buffer (copied): used by the fuzz target and tests. */
int ce__weights_open_memory(const void *data, size_t size, ce_weights **out, ce_err *err);
void ce__weights_close(ce_weights *w);
/* Tells the kernel this process reads [data, data + bytes) of a mapped file no more (a
 * tensor used through a converted copy): its whole pages leave the resident set, and a
 * later read maps them again from the page cache. Nothing for a copied buffer. */
void ce__weights_release(const ce_weights *w, const void *data, size_t bytes);

int ce__weights_count(const ce_weights *w);
const ce_tensor *ce__weights_at(const ce_weights *w, int index); /* file order */
const ce_tensor *ce__weights_find(const ce_weights *w, const char *name);

/* A tensor of the given dtype and shape: `rank` dims follow as ints. Returns NULL with
 * the message filled when the name is missing or the dtype or shape differs. */
const ce_tensor *ce__weights_get(const ce_weights *w, const char *name, int dtype, ce_err *err,
                                 int rank, ...);
/* Shorthand for float32 data. */
const float *ce__weights_f32(const ce_weights *w, const char *name, ce_err *err, int rank, ...);

#endif
