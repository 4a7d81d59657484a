/*
 * The network's input: the graph's ResizeBilinear (align_corners = false,
 * half_pixel_centers = false, the legacy TensorFlow mapping src = dst * in / out) to
 * 300x300, then x * (2/255) - 1. The golden tests hold this to the original graph, so
 * the arithmetic follows TensorFlow's: coordinates and interpolation in double, the
 * result rounded to float, then the float scale and shift.
 *
 * With AVX-512, 8 output values at a time: the source bytes gathered, the same double
 * FMAs as the scalar loop compiles to (GCC contracts a + d * f into fma(d, f, a)), the
 * same roundings; ce__resize_input_scalar is that loop, and test_resize holds the two to
 * the same bits on images of many sizes. With AVX-512 VBMI the 8 values' source bytes
 * (both neighbours) come from one 64-byte load and one byte permutation per source row
 * instead of four gathers (resize of a 500x375 photo 0.63-0.65 -> 0.19 ms on an AMD Zen 4);
 * groups whose bytes span 64 or more are gathered (some from about 2,000 pixels wide, all
 * from about 3,000: the photos' decode scale keeps them narrower).
 */
#include <math.h>
#include <stdint.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#define RESIZE_AVX512 1
#if defined(__AVX512BW__) && defined(__AVX512VBMI__)
#define RESIZE_VBMI 1
#endif
#endif

#include "cnn.h"
#include "parallel.h"

#define OUT_VALUES (CE_INPUT_SIZE * 3) /* floats per output row */

typedef struct {
    int lo, hi;  /* source rows (or columns) */
    double frac; /* weight of hi */
} sample;

typedef struct {
    const ce_image *img;
    float *out;
    int vector; /* 0: the scalar loop only */
    sample ys[CE_INPUT_SIZE], xs[CE_INPUT_SIZE];
    /* per output value k = x * 3 + c: byte offsets of its two source pixels' channel in a
     * row, and the weight of the second */
    int lo3[OUT_VALUES], hi3[OUT_VALUES]; /* int: the gathers' offsets (vector only) */
    double fx3[OUT_VALUES];
    /* values [0, safe) whose 4-byte gathers end inside their row (the bytes after a row
     * are the next row's, except after the image's last) */
    int safe;
#ifdef RESIZE_VBMI
    /* per group g of 8 values (k = 8g..8g+7): the row offset of its first source byte;
     * relative to it, the 8 lo3 then the 8 hi3 offsets (vpermb indices), 0xFF.. when
     * they do not all fall within 64 bytes (the group is gathered); and the mask of the
     * 64 bytes from there that lie inside the row */
    int at8[OUT_VALUES / 8];
    uint8_t perm8[OUT_VALUES / 8][16];
    uint64_t inside8[OUT_VALUES / 8];
#endif
} resize_job;

#define ROWS_PER_TASK 25 /* 12 tasks of 25 output rows, claimed by whichever thread is free */

static void plan(const ce_image *img, float *out, int vector, resize_job *j);
static void plan_axis(int in, sample *out);
static void resize_rows(void *ctx, int task);
static int row_vector(const resize_job *j, const uint8_t *top, const uint8_t *bottom, double fy,
                      int end, float *o);

void ce__resize_input(ce_pool *pool, const ce_image *img, float *out)
{
    resize_job j;
    plan(img, out, 1, &j);
    ce__parallel_for(pool, (CE_INPUT_SIZE + ROWS_PER_TASK - 1) / ROWS_PER_TASK, resize_rows, &j);
}

void ce__resize_input_scalar(const ce_image *img, float *out)
{
    resize_job j;
    plan(img, out, 0, &j);
    for (int t = 0; t < (CE_INPUT_SIZE + ROWS_PER_TASK - 1) / ROWS_PER_TASK; t++) resize_rows(&j, t);
}

static void plan(const ce_image *img, float *out, int vector, resize_job *j)
{
    j->img = img;
    j->out = out;
    /* the gathers take 32-bit offsets: rows up to 2^31 bytes (700 M pixels wide) */
    j->vector = vector && (int64_t)img->width * 3 + 4 <= INT32_MAX;
    plan_axis(img->height, j->ys);
    plan_axis(img->width, j->xs);
    j->safe = 0;
    if (!j->vector) return;
    const int stride = img->width * 3;
    j->safe = OUT_VALUES / 8 * 8;
    for (int k = 0; k < OUT_VALUES; k++) {
        const sample *sx = &j->xs[k / 3];
        j->lo3[k] = sx->lo * 3 + k % 3;
        j->hi3[k] = sx->hi * 3 + k % 3;
        j->fx3[k] = sx->frac;
        /* hi3 never decreases: the first value whose gather ends past the row sets it */
        if (j->hi3[k] + 4 > stride && k / 8 * 8 < j->safe) j->safe = k / 8 * 8;
    }
#ifdef RESIZE_VBMI
    for (int g = 0; g < OUT_VALUES / 8; g++) {
        /* the group's first source pixel (pixels never decrease along a row; channels
         * cycle, so the first value need not be the lowest byte) */
        const int at = j->lo3[8 * g] / 3 * 3, left = stride - at; /* bytes of the row from at */
        int fits = 1;
        j->at8[g] = at;
        j->inside8[g] = left >= 64 ? ~0ull : (1ull << left) - 1;
        for (int i = 0; i < 8; i++) {
            const int lo = j->lo3[8 * g + i] - at, hi = j->hi3[8 * g + i] - at;
            j->perm8[g][i] = (uint8_t)lo;
            j->perm8[g][8 + i] = (uint8_t)hi;
            fits &= hi < 64;
        }
        if (!fits) j->perm8[g][0] = 0xFF;
    }
#endif
}

static void resize_rows(void *ctx, int task)
{
    const resize_job *j = ctx;
    const float scale = 2.0f / 255.0f;
    const uint8_t *px = j->img->pixels;
    const size_t stride = (size_t)j->img->width * 3;
    const int y1 = (task + 1) * ROWS_PER_TASK < CE_INPUT_SIZE ? (task + 1) * ROWS_PER_TASK : CE_INPUT_SIZE;
    for (int y = task * ROWS_PER_TASK; y < y1; y++) {
        const uint8_t *top = px + (size_t)j->ys[y].lo * stride;
        const uint8_t *bottom = px + (size_t)j->ys[y].hi * stride;
        double fy = j->ys[y].frac;
        float *o = j->out + (size_t)y * OUT_VALUES;
        const int last_row = j->ys[y].hi == j->img->height - 1;
        int k = j->vector ? row_vector(j, top, bottom, fy, last_row ? j->safe : OUT_VALUES / 8 * 8, o) : 0;
        for (; k < OUT_VALUES; k++) {
            const sample *sx = &j->xs[k / 3];
            const size_t l = (size_t)sx->lo * 3 + (size_t)(k % 3), r = (size_t)sx->hi * 3 + (size_t)(k % 3);
            double fx = sx->frac;
            double t = top[l] + (top[r] - top[l]) * fx;
            double b = bottom[l] + (bottom[r] - bottom[l]) * fx;
            float v = (float)(t + (b - t) * fy);
            o[k] = v * scale - 1.0f;
        }
    }
}

/* Output values [0, end) of one row, 8 at a time; returns how many it wrote. */
static int row_vector(const resize_job *j, const uint8_t *top, const uint8_t *bottom, double fy,
                      int end, float *o)
{
#ifdef RESIZE_AVX512
    const __m256i byte = _mm256_set1_epi32(0xFF);
    const __m512d vfy = _mm512_set1_pd(fy);
    const __m256 scale = _mm256_set1_ps(2.0f / 255.0f), minus1 = _mm256_set1_ps(-1.0f);
    int k = 0;
    for (; k + 8 <= end; k += 8) {
        __m256i tl, tr, bl, br;
#ifdef RESIZE_VBMI
        const int g = k / 8;
        if (j->perm8[g][0] != 0xFF) {
            /* bytes 0..7 of each permuted window: the lo neighbours, 8..15 the hi ones */
            const __m512i idx =
                _mm512_zextsi128_si512(_mm_loadu_si128((const __m128i *)(const void *)j->perm8[g]));
            const __m128i t = _mm512_castsi512_si128(_mm512_permutexvar_epi8(
                idx, _mm512_maskz_loadu_epi8(j->inside8[g], top + j->at8[g])));
            const __m128i b = _mm512_castsi512_si128(_mm512_permutexvar_epi8(
                idx, _mm512_maskz_loadu_epi8(j->inside8[g], bottom + j->at8[g])));
            tl = _mm256_cvtepu8_epi32(t), tr = _mm256_cvtepu8_epi32(_mm_srli_si128(t, 8));
            bl = _mm256_cvtepu8_epi32(b), br = _mm256_cvtepu8_epi32(_mm_srli_si128(b, 8));
        } else
#endif
        {
            const __m256i lo = _mm256_loadu_si256((const __m256i *)(const void *)(j->lo3 + k));
            const __m256i hi = _mm256_loadu_si256((const __m256i *)(const void *)(j->hi3 + k));
            tl = _mm256_and_si256(_mm256_i32gather_epi32((const int *)(const void *)top, lo, 1),
                                  byte);
            tr = _mm256_and_si256(_mm256_i32gather_epi32((const int *)(const void *)top, hi, 1),
                                  byte);
            bl = _mm256_and_si256(_mm256_i32gather_epi32((const int *)(const void *)bottom, lo, 1),
                                  byte);
            br = _mm256_and_si256(_mm256_i32gather_epi32((const int *)(const void *)bottom, hi, 1),
                                  byte);
        }
        const __m512d fx = _mm512_loadu_pd(j->fx3 + k);
        const __m512d t = _mm512_fmadd_pd(_mm512_cvtepi32_pd(_mm256_sub_epi32(tr, tl)), fx, _mm512_cvtepi32_pd(tl));
        const __m512d b = _mm512_fmadd_pd(_mm512_cvtepi32_pd(_mm256_sub_epi32(br, bl)), fx, _mm512_cvtepi32_pd(bl));
        const __m256 v = _mm512_cvtpd_ps(_mm512_fmadd_pd(_mm512_sub_pd(b, t), vfy, t));
        _mm256_storeu_ps(o + k, _mm256_fmadd_ps(v, scale, minus1));
    }
    return k;
#else
    (void)j, (void)top, (void)bottom, (void)fy, (void)end, (void)o;
    return 0;
#endif
}

static void plan_axis(int in, sample *out)
{
    double ratio = (double)in / CE_INPUT_SIZE;
    for (int i = 0; i < CE_INPUT_SIZE; i++) {
        double src = ratio * i;
        int lo = (int)floor(src);
        int hi = (int)ceil(src);
        if (hi > in - 1) hi = in - 1;
        out[i].lo = lo;
        out[i].hi = hi;
        out[i].frac = src - lo;
    }
}
