/*
 * The .csw reader (engine/weights.c) on files built here byte by byte: a valid file
 * with every dtype, then each rule of models/FORMAT.md broken in turn, every truncation
 * and every single-byte corruption (which must fail cleanly or load, never crash: run
 * under ASan). Also the model-level errors a user meets: a missing backbone, and a
 * text-only model asked to run the CNN.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capengine.h"
#include "weights.h"

static int failures;
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* ------------------------------------------------------------------ a tiny writer */

typedef struct {
    const char *name;
    int dtype, rank;
    uint32_t dims[4];
    const void *data;
    size_t nbytes;
} entry;

typedef struct {
    uint8_t *b;
    size_t n, cap;
} buf;

static void put(buf *o, const void *p, size_t n)
{
    if (o->n + n > o->cap) {
        o->cap = (o->n + n) * 2;
        o->b = realloc(o->b, o->cap);
    }
    memcpy(o->b + o->n, p, n);
    o->n += n;
}
static void put16(buf *o, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(o, b, 2);
}
static void put32(buf *o, uint32_t v)
{
    put16(o, (uint16_t)v);
    put16(o, (uint16_t)(v >> 16));
}
static void put64(buf *o, uint64_t v)
{
    put32(o, (uint32_t)v);
    put32(o, (uint32_t)(v >> 32));
}
static size_t align64(size_t n) { return (n + 63) / 64 * 64; }

/* Lays the entries out exactly as models/csw.py does. */
static buf build(const entry *e, int n)
{
    size_t dir = 0;
    for (int i = 0; i < n; i++) dir += 2 + strlen(e[i].name) + 2 + 4 * (size_t)e[i].rank + 16;
    size_t data_offset = align64(24 + dir), at = data_offset;
    size_t offsets[16];
    for (int i = 0; i < n; i++) {
        offsets[i] = at;
        at = align64(at + e[i].nbytes);
    }
    buf o = {0};
    put(&o, "CSWEIGHT", 8);
    put32(&o, 1);
    put32(&o, (uint32_t)n);
    put64(&o, data_offset);
    for (int i = 0; i < n; i++) {
        put16(&o, (uint16_t)strlen(e[i].name));
        put(&o, e[i].name, strlen(e[i].name));
        uint8_t dr[2] = {(uint8_t)e[i].dtype, (uint8_t)e[i].rank};
        put(&o, dr, 2);
        for (int d = 0; d < e[i].rank; d++) put32(&o, e[i].dims[d]);
        put64(&o, offsets[i]);
        put64(&o, e[i].nbytes);
    }
    for (int i = 0; i < n; i++) {
        static const uint8_t zeros[64];
        put(&o, zeros, offsets[i] - o.n);
        put(&o, e[i].data, e[i].nbytes);
    }
    return o;
}

/* ------------------------------------------------------------------ tests */

static const float F32[6] = {1, 2, 3, 4, 5, 6.5f};
/* 1.0, -2.0, 0.5, the smallest subnormal 2^-24, 65504 (largest), +inf */
static const uint16_t F16[6] = {0x3C00, 0xC000, 0x3800, 0x0001, 0x7BFF, 0x7C00};
static const int32_t I32[3] = {7, -1, 42};
static const uint8_t U8[5] = {'d', 'o', 'g', 0, 0};

static entry valid_entries[4] = {
    {"a/weights", 0, 2, {2, 3}, F32, sizeof F32},
    {"b/half", 1, 1, {6}, F16, sizeof F16},
    {"config/ids", 2, 1, {3}, I32, sizeof I32},
    {"vocab", 3, 1, {5}, U8, sizeof U8},
};

static int opens(const buf *b)
{
    ce_weights *w;
    ce_err err;
    int rc = ce__weights_open_memory(b->b, b->n, &w, &err);
    if (rc == 0) ce__weights_close(w);
    else CHECK(err.msg[0] != 0);
    return rc == 0;
}

static void test_valid(void)
{
    buf b = build(valid_entries, 4);
    ce_weights *w;
    ce_err err;
    CHECK(ce__weights_open_memory(b.b, b.n, &w, &err) == 0);
    if (!w) return;
    CHECK(ce__weights_count(w) == 4);
    CHECK(!strcmp(ce__weights_at(w, 2)->name, "config/ids"));
    const float *f = ce__weights_f32(w, "a/weights", &err, 2, 2, 3);
    CHECK(f && f[5] == 6.5f);
    CHECK(((uintptr_t)f & 63) == 0);
    const float *h = ce__weights_f32(w, "b/half", &err, 1, 6);
    CHECK(h && h[0] == 1.0f && h[1] == -2.0f && h[2] == 0.5f && h[3] == ldexpf(1, -24) &&
          h[4] == 65504.0f && isinf(h[5]));
    const ce_tensor *t = ce__weights_get(w, "config/ids", CE_DT_I32, &err, 1, 3);
    CHECK(t && ((const int32_t *)t->data)[2] == 42);
    t = ce__weights_get(w, "vocab", CE_DT_U8, &err, 1, 5);
    CHECK(t && !strcmp(t->data, "dog"));
    /* Wrong shape, wrong dtype, missing name: NULL and a message naming the tensor. */
    err.msg[0] = 0;
    CHECK(ce__weights_f32(w, "a/weights", &err, 2, 3, 2) == NULL && strstr(err.msg, "[2,3]"));
    CHECK(ce__weights_f32(w, "config/ids", &err, 1, 3) == NULL && strstr(err.msg, "int32"));
    CHECK(ce__weights_f32(w, "nope", &err, 1, 3) == NULL && strstr(err.msg, "nope"));
    CHECK(ce__weights_find(w, "a/weight") == NULL);
    ce__weights_close(w);

    /* The same through a real file and mmap. */
    char path[] = "/tmp/test_weights_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, b.b, b.n) == (ssize_t)b.n);
    close(fd);
    CHECK(ce__weights_open(path, &w, &err) == 0);
    if (w) {
        CHECK(ce__weights_f32(w, "a/weights", &err, 2, 2, 3)[1] == 2.0f);
        ce__weights_close(w);
    }
    unlink(path);
    CHECK(ce__weights_open(path, &w, &err) == -ENOENT && w == NULL);
    free(b.b);
}

static void test_broken(void)
{
    buf good = build(valid_entries, 4);
    CHECK(opens(&good));
    /* Offsets inside the header and the first entry ("a/weights", rank 2). */
    const size_t E = 24, DT = E + 2 + 9, DIMS = DT + 2, OFF = DIMS + 8, NB = OFF + 8;
    struct {
        const char *what;
        size_t at;
        uint8_t value;
    } cases[] = {
        {"magic", 0, 'X'},
        {"version 2", 8, 2},
        {"tensor count huge", 15, 0x7F},
        {"data offset unaligned", 16, 0x41},
        {"data offset past the end", 19, 0x7F},
        {"name length 0", E, 0}, /* with the high byte 0 */
        {"name with NUL", E + 3, 0},
        {"name not UTF-8", E + 3, 0xFF},
        {"dtype 7", DT, 7},
        {"rank 9", DT + 1, 9},
        {"dims disagree with bytes", DIMS, 3},
        {"offset unaligned", OFF, 0x44},
        {"offset past the end", OFF + 5, 0x01},
        {"byte count past the end", NB + 4, 0x01},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf b = {0};
        put(&b, good.b, good.n);
        b.b[cases[i].at] = cases[i].value;
        if (opens(&b)) {
            fprintf(stderr, "accepted a file with: %s\n", cases[i].what);
            failures++;
        }
        free(b.b);
    }
    /* A duplicate name. */
    entry dup[2] = {valid_entries[0], valid_entries[0]};
    buf d = build(dup, 2);
    CHECK(!opens(&d));
    free(d.b);
    /* Every truncation fails; every single-byte corruption fails cleanly or loads. */
    for (size_t n = 0; n < good.n; n++) {
        buf t = {good.b, n, n};
        if (opens(&t)) { /* the file ends with the last tensor's data */
            fprintf(stderr, "accepted a file truncated to %zu of %zu bytes\n", n, good.n);
            failures++;
        }
    }
    for (size_t at = 0; at < good.n; at++) {
        for (int bit = 0; bit < 8; bit++) {
            good.b[at] ^= (uint8_t)(1 << bit);
            (void)opens(&good);
            good.b[at] ^= (uint8_t)(1 << bit);
        }
    }
    free(good.b);
}

static void test_model_errors(void)
{
    char dir[] = "/tmp/test_model_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    ce_model *m;
    ce_err err;
    CHECK(ce_model_open(dir, CE_OPEN_DEFAULT, &m, &err) == -ENOENT && m == NULL);
    CHECK(strstr(err.msg, "fetch_and_convert.sh") != NULL);

    /* Text-only needs no backbone; asking it for the CNN is an error, not a crash. */
    CHECK(ce_model_open(dir, CE_OPEN_TEXT_ONLY, &m, &err) == 0);
    if (m) {
        CHECK(!ce_model_has_captioner(m));
        CHECK(!strncmp(ce_model_version(m), "ssdlite_mobilenet_v2_coco", 25));
        ce_session *s;
        CHECK(ce_session_new(m, &s, &err) == 0);
        uint8_t px[3] = {1, 2, 3};
        ce_image img = {.width = 1, .height = 1, .pixels = px};
        ce_cnn_output *out = calloc(1, sizeof *out);
        CHECK(ce_cnn_run(s, &img, out, &err) == -EINVAL);
        free(out);
        ce_session_free(s);
        ce_model_close(m);
    }
    /* A file that is not a weight file where the backbone should be. */
    char path[4096];
    snprintf(path, sizeof path, "%s/ssdlite_mobilenet_v2_coco.csw", dir);
    FILE *f = fopen(path, "w");
    fputs("this is not a weight file, but it is long enough to have a header", f);
    fclose(f);
    CHECK(ce_model_open(dir, CE_OPEN_DEFAULT, &m, &err) == -EBADMSG && m == NULL);
    CHECK(strstr(err.msg, "not a capsearch weight file") != NULL);
    /* A valid weight file that lacks the network's tensors. */
    buf b = build(valid_entries, 4);
    f = fopen(path, "w");
    fwrite(b.b, 1, b.n, f);
    fclose(f);
    free(b.b);
    CHECK(ce_model_open(dir, CE_OPEN_DEFAULT, &m, &err) < 0 && m == NULL);
    CHECK(strstr(err.msg, "mnv2/conv0/w") != NULL);
    unlink(path);
    rmdir(dir);
}

/* Resident kB of the mapping that holds p (/proc/self/smaps), or -1. */
static long resident_kb(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    int inside = 0;
    long kb = -1;
    while (kb < 0 && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
            inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        else if (inside && sscanf(line, "Rss: %ld kB", &kb) == 1) break;
    }
    fclose(f);
    return kb;
}

/* ce__weights_release: the released pages of a mapping leave the resident set and read
 * back the file's bytes; a copied buffer is left alone (MADV_DONTNEED there would zero
 * it); a range outside the file is ignored. */
static void test_release(void)
{
    enum { BYTES = 5 * 4096 };
    static uint8_t pattern[BYTES];
    for (int i = 0; i < BYTES; i++) pattern[i] = (uint8_t)(i * 7 + 3);
    entry big[1] = {{"big", 3, 1, {BYTES}, pattern, BYTES}};
    buf b = build(big, 1);
    char path[] = "/tmp/test_weights_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, b.b, b.n) == (ssize_t)b.n);
    close(fd);
    ce_weights *opened[2] = {NULL, NULL};
    ce_err err;
    CHECK(ce__weights_open(path, &opened[0], &err) == 0);
    CHECK(ce__weights_open_memory(b.b, b.n, &opened[1], &err) == 0);
    for (int k = 0; k < 2; k++) {
        ce_weights *w = opened[k];
        if (!w) continue;
        const ce_tensor *t = ce__weights_get(w, "big", CE_DT_U8, &err, 1, BYTES);
        CHECK(t && memcmp(t->data, pattern, BYTES) == 0);
        if (!t) continue;
        const long before = resident_kb(t->data);
        ce__weights_release(w, t->data, BYTES);
        if (k == 0) /* at least the 4 whole pages inside the tensor's 5 leave */
            CHECK(before >= 0 && resident_kb(t->data) >= 0 &&
                  before - resident_kb(t->data) >= 4 * 4096 / 1024);
        CHECK(memcmp(t->data, pattern, BYTES) == 0);
        ce__weights_release(w, (const uint8_t *)t->data + 1, (size_t)-1); /* past the end */
        ce__weights_release(w, pattern, BYTES);                           /* not in the file */
        CHECK(memcmp(t->data, pattern, BYTES) == 0);
        ce__weights_close(w);
    }
    unlink(path);
    free(b.b);
}

int main(void)
{
    test_valid();
    test_release();
    test_broken();
    test_model_errors();
    if (failures) fprintf(stderr, "%d checks failed\n", failures);
    else printf("weights: all checks passed\n");
    return failures ? 1 : 0;
}
