/*
 * Vectors, shared by both backends: the pooled CNN vector as int8 with a scale, and the
 * concept vector as one byte per concept with the strongest concepts as postings.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int by_weight_desc(const void *a, const void *b);

void capdb__encode_pooled(const float *x, int n, unsigned char *blob)
{
    float maxabs = 0;
    for (int i = 0; i < n; i++) {
        float a = isfinite(x[i]) ? fabsf(x[i]) : 0;
        if (a > maxabs) maxabs = a;
    }
    float scale = maxabs > 0 ? maxabs / 127.0f : 1.0f;
    double norm2 = 0;
    int8_t *q = (int8_t *)(blob + CAPDB_POOLED_HEADER);
    for (int i = 0; i < n; i++) {
        float v = isfinite(x[i]) ? x[i] / scale : 0;
        long r = lroundf(v);
        q[i] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
        norm2 += (double)q[i] * q[i];
    }
    float norm = (float)sqrt(norm2);
    memcpy(blob, &scale, 4);
    memcpy(blob + 4, &norm, 4);
}

int capdb__decode_pooled(const void *blob, int bytes, float *out, int n)
{
    if (bytes != CAPDB_POOLED_HEADER + n) return -EINVAL;
    float scale;
    memcpy(&scale, blob, 4);
    const int8_t *q = (const int8_t *)((const unsigned char *)blob + CAPDB_POOLED_HEADER);
    for (int i = 0; i < n; i++) out[i] = q[i] * scale;
    return 0;
}

int capdb__concept_bytes(const capdb_image *img, unsigned char *bytes, capdb_posting *top)
{
    int n_top = 0;
    for (int i = 0; i < img->n_concepts; i++) {
        float p = img->concepts[i];
        p = isfinite(p) ? (p < 0 ? 0 : p > 1 ? 1 : p) : 0;
        bytes[i] = (unsigned char)lroundf(p * 255.0f);
        if (p >= CAPDB_POSTING_MIN) top[n_top++] = (capdb_posting){i, bytes[i]};
    }
    if (n_top) qsort(top, (size_t)n_top, sizeof *top, by_weight_desc);
    return n_top < CAPDB_POSTINGS_PER_IMAGE ? n_top : CAPDB_POSTINGS_PER_IMAGE;
}

static int by_weight_desc(const void *a, const void *b)
{
    const capdb_posting *x = a, *y = b;
    if (x->weight != y->weight) return y->weight - x->weight;
    return x->index - y->index;
}

int32_t capdb__dot_i8(const int8_t *a, const int8_t *b, int n)
{
    int32_t s = 0;
    for (int i = 0; i < n; i++) s += (int32_t)a[i] * b[i];
    return s;
}
