/*
 * The .csw reader (models/FORMAT.md). Everything the rest of the engine trusts about a
 * weight file is established here, at open: the file is untrusted input (and a fuzz
 * target), so every offset, size, alignment and name is checked before use.
 */
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "caputf8.h"
#include "weights.h"

#define HEADER_SIZE 24
#define ALIGNMENT 64
#define MAX_NAME 1024

struct ce_weights {
    const uint8_t *base; /* the whole file */
    size_t size;
    int mapped; /* base is an mmap (else malloc'd) */
    int count;
    ce_tensor *tensors; /* file order */
    int *sorted;        /* indices sorted by name, for bsearch */
    char *names;        /* all names, NUL-terminated, back to back */
    float **converted;  /* per tensor: f16 -> f32 copy, or NULL */
};

static int parse(ce_weights *w, ce_err *err);
static int convert_f16(ce_weights *w, ce_err *err);
static int fail(ce_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------------ open / close */

int ce__weights_open(const char *path, ce_weights **out, ce_err *err)
{
    return ce__weights_open_flags(path, CE_WEIGHTS_CONVERT_F16, out, err);
}

int ce__weights_open_flags(const char *path, int flags, ce_weights **out, ce_err *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(err, -errno, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fail(err, -e, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, -EINVAL, "%s: not a regular file", path);
    }
    if ((size_t)st.st_size < HEADER_SIZE) {
        close(fd);
        return fail(err, -EBADMSG, "%s: too short for a weight file", path);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return fail(err, -e, "%s: mmap: %s", path, strerror(e));

    ce_weights *w = calloc(1, sizeof *w);
    if (!w) {
        munmap(map, (size_t)st.st_size);
        return fail(err, -ENOMEM, "out of memory");
    }
    w->base = map;
    w->size = (size_t)st.st_size;
    w->mapped = 1;
    int rc = parse(w, err);
    if (rc == 0 && !(flags & CE_WEIGHTS_SKIP_F16)) rc = convert_f16(w, err);
    if (rc < 0) {
        char msg[CE_ERR_MAX];
        snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
        ce__weights_close(w);
        return fail(err, rc, "%s: %s", path, msg);
    }
    *out = w;
    return 0;
}

int ce__weights_open_memory(const void *data, size_t size, ce_weights **out, ce_err *err)
{
    *out = NULL;
    if (size < HEADER_SIZE) return fail(err, -EBADMSG, "too short for a weight file");
    /* A private aligned copy: tensors are 64-byte aligned relative to the file start and
     * are read as floats in place. */
    uint8_t *copy = aligned_alloc(ALIGNMENT, (size + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT);
    ce_weights *w = calloc(1, sizeof *w);
    if (!copy || !w) {
        free(copy);
        free(w);
        return fail(err, -ENOMEM, "out of memory");
    }
    memcpy(copy, data, size);
    w->base = copy;
    w->size = size;
    int rc = parse(w, err);
    if (rc == 0) rc = convert_f16(w, err);
    if (rc < 0) {
        ce__weights_close(w);
        return rc;
    }
    *out = w;
    return 0;
}

void ce__weights_release(const ce_weights *w, const void *data, size_t bytes)
{
    const uint8_t *p = data;
    if (!w->mapped || p < w->base || bytes > w->size || (size_t)(p - w->base) > w->size - bytes)
        return;
    /* MADV_DONTNEED on an unmodified private file mapping drops the pages, never the
     * bytes (on the malloc'd copy it would zero them: hence the check above). */
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)p + page - 1) & ~(page - 1),
              hi = ((uintptr_t)p + bytes) & ~(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

void ce__weights_close(ce_weights *w)
{
    if (!w) return;
    if (w->converted) {
        for (int i = 0; i < w->count; i++) free(w->converted[i]);
        free(w->converted);
    }
    free(w->tensors);
    free(w->sorted);
    free(w->names);
    if (w->mapped) munmap((void *)w->base, w->size);
    else free((void *)w->base);
    free(w);
}

/* ------------------------------------------------------------------ lookup */

int ce__weights_count(const ce_weights *w) { return w->count; }

const ce_tensor *ce__weights_at(const ce_weights *w, int index)
{
    return index >= 0 && index < w->count ? &w->tensors[index] : NULL;
}

const ce_tensor *ce__weights_find(const ce_weights *w, const char *name)
{
    int lo = 0, hi = w->count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const ce_tensor *t = &w->tensors[w->sorted[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

static const char *const DTYPE_NAMES[] = {"float32", "float16", "int32", "uint8"};

static const ce_tensor *get_v(const ce_weights *w, const char *name, int dtype, ce_err *err,
                              int rank, va_list ap)
{
    const ce_tensor *t = ce__weights_find(w, name);
    if (!t) {
        fail(err, -ENOENT, "weight file lacks tensor '%s'", name);
        return NULL;
    }
    if (t->dtype != dtype) {
        fail(err, -EBADMSG, "tensor '%s' is %s, expected %s", name, DTYPE_NAMES[t->dtype],
             DTYPE_NAMES[dtype]);
        return NULL;
    }
    int ok = t->rank == rank;
    char want[128] = "", *p = want;
    for (int i = 0; i < rank; i++) {
        int d = va_arg(ap, int);
        if (ok && (d < 0 || t->dims[i] != (uint32_t)d)) ok = 0;
        p += snprintf(p, (size_t)(want + sizeof want - p), i ? ",%d" : "%d", d);
        if (p >= want + sizeof want - 12) break;
    }
    if (!ok) {
        char got[128] = "", *q = got;
        for (int i = 0; i < t->rank && q < got + sizeof got - 12; i++)
            q += snprintf(q, (size_t)(got + sizeof got - q), i ? ",%u" : "%u", t->dims[i]);
        fail(err, -EBADMSG, "tensor '%s' has shape [%s], expected [%s]", name, got, want);
        return NULL;
    }
    return t;
}

const ce_tensor *ce__weights_get(const ce_weights *w, const char *name, int dtype, ce_err *err,
                                 int rank, ...)
{
    va_list ap;
    va_start(ap, rank);
    const ce_tensor *t = get_v(w, name, dtype, err, rank, ap);
    va_end(ap);
    return t;
}

const float *ce__weights_f32(const ce_weights *w, const char *name, ce_err *err, int rank, ...)
{
    va_list ap;
    va_start(ap, rank);
    const ce_tensor *t = get_v(w, name, CE_DT_F32, err, rank, ap);
    va_end(ap);
    return t ? t->data : NULL;
}

/* ------------------------------------------------------------------ validation */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static int valid_utf8(const uint8_t *s, size_t n);
static int compare_names(const void *a, const void *b, void *ctx);
static float half_to_float(uint16_t h);

static int parse(ce_weights *w, ce_err *err)
{
    const uint8_t *b = w->base;
    if (memcmp(b, "CSWEIGHT", 8) != 0) return fail(err, -EBADMSG, "not a capsearch weight file");
    uint32_t version = rd32(b + 8), count = rd32(b + 12);
    uint64_t data_offset = rd64(b + 16);
    if (version != 1) return fail(err, -EBADMSG, "format version %u, expected 1", version);
    if (data_offset % ALIGNMENT || data_offset < HEADER_SIZE || data_offset > w->size)
        return fail(err, -EBADMSG, "bad data offset %llu", (unsigned long long)data_offset);
    /* The smallest entry is 21 bytes: a cheap bound before allocating. */
    if (count > (data_offset - HEADER_SIZE) / 21)
        return fail(err, -EBADMSG, "%u tensors cannot fit the directory", count);

    w->count = (int)count;
    w->tensors = calloc(count ? count : 1, sizeof *w->tensors);
    w->sorted = calloc(count ? count : 1, sizeof *w->sorted);
    w->converted = calloc(count ? count : 1, sizeof *w->converted);
    /* Names are shorter than the directory that holds them. */
    w->names = malloc(data_offset);
    if (!w->tensors || !w->sorted || !w->converted || !w->names)
        return fail(err, -ENOMEM, "out of memory");

    size_t pos = HEADER_SIZE, name_at = 0;
    const size_t end = data_offset; /* the directory lies before the data */
    for (uint32_t i = 0; i < count; i++) {
        ce_tensor *t = &w->tensors[i];
        if (end - pos < 2) return fail(err, -EBADMSG, "entry %u runs past the directory", i);
        size_t len = rd16(b + pos);
        pos += 2;
        if (len < 1 || len > MAX_NAME)
            return fail(err, -EBADMSG, "entry %u: name length %zu", i, len);
        if (end - pos < len + 2) return fail(err, -EBADMSG, "entry %u runs past the directory", i);
        if (memchr(b + pos, 0, len) || !valid_utf8(b + pos, len))
            return fail(err, -EBADMSG, "entry %u: name is not NUL-free UTF-8", i);
        memcpy(w->names + name_at, b + pos, len);
        w->names[name_at + len] = 0;
        size_t this_name = name_at;
        name_at += len + 1;
        pos += len;
        int dtype = b[pos], rank = b[pos + 1];
        pos += 2;
        if (dtype > CE_DT_U8) return fail(err, -EBADMSG, "entry %u: unknown dtype %d", i, dtype);
        if (rank > CE_WEIGHTS_MAX_RANK) return fail(err, -EBADMSG, "entry %u: rank %d", i, rank);
        if (end - pos < (size_t)rank * 4 + 16)
            return fail(err, -EBADMSG, "entry %u runs past the directory", i);
        static const int WIDTH[] = {4, 2, 4, 1};
        uint64_t elements = 1;
        for (int d = 0; d < rank; d++) {
            t->dims[d] = rd32(b + pos);
            pos += 4;
            /* Bounded by the file size, so the product cannot overflow before it fails. */
            elements *= t->dims[d];
            if (elements > w->size) return fail(err, -EBADMSG, "entry %u: dims exceed the file", i);
        }
        uint64_t offset = rd64(b + pos), nbytes = rd64(b + pos + 8);
        pos += 16;
        if (nbytes != elements * (uint64_t)WIDTH[dtype])
            return fail(err, -EBADMSG, "entry %u: %llu bytes for its dims", i,
                        (unsigned long long)nbytes);
        if (offset % ALIGNMENT || offset < data_offset || offset > w->size ||
            nbytes > w->size - offset)
            return fail(err, -EBADMSG, "entry %u: data at %llu (+%llu) outside the data region", i,
                        (unsigned long long)offset, (unsigned long long)nbytes);
        t->dtype = dtype;
        t->rank = rank;
        t->count = (size_t)elements;
        t->data = b + offset;
        t->name = w->names + this_name;
        w->sorted[i] = (int)i;
    }

    qsort_r(w->sorted, count, sizeof *w->sorted, compare_names, w->tensors);
    for (uint32_t i = 1; i < count; i++)
        if (!strcmp(w->tensors[w->sorted[i]].name, w->tensors[w->sorted[i - 1]].name))
            return fail(err, -EBADMSG, "tensor '%s' appears twice", w->tensors[w->sorted[i]].name);
    return 0;
}

/* The engine computes in float32: float16 tensors get a converted copy once, at open. */
static int convert_f16(ce_weights *w, ce_err *err)
{
    for (int i = 0; i < w->count; i++) {
        ce_tensor *t = &w->tensors[i];
        if (t->dtype != CE_DT_F16) continue;
        float *f = aligned_alloc(ALIGNMENT, (t->count * 4 + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT +
                                                ALIGNMENT);
        if (!f) return fail(err, -ENOMEM, "out of memory converting '%s'", t->name);
        const uint8_t *h = t->data;
        for (size_t k = 0; k < t->count; k++) f[k] = half_to_float(rd16(h + 2 * k));
        w->converted[i] = f;
        t->data = f;
        t->dtype = CE_DT_F32;
    }
    return 0;
}

static int compare_names(const void *a, const void *b, void *ctx)
{
    const ce_tensor *t = ctx;
    return strcmp(t[*(const int *)a].name, t[*(const int *)b].name);
}

static int valid_utf8(const uint8_t *s, size_t n)
{
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        int len = cu_utf8_decode(s + i, n - i, &cp);
        if (len == 0) return 0;
        i += (size_t)len;
    }
    return 1;
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | mant << 13; /* inf / NaN */
    } else if (exp != 0) {
        bits = sign | (exp + 112) << 23 | mant << 13; /* normal: rebias 15 -> 127 */
    } else if (mant == 0) {
        bits = sign; /* zero */
    } else {         /* subnormal: normalise */
        int e = -1;
        do {
            mant <<= 1;
            e++;
        } while (!(mant & 0x400));
        bits = sign | (uint32_t)(112 - e) << 23 | (mant & 0x3FF) << 13;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static int fail(ce_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}
