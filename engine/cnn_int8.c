/*
 * The optional int8 1x1 convolutions (cnn_int8.h states the quantization rule).
 *
 * Why: on a 1x1 convolution VPDPBUSD multiplies 64 uint8 x int8 pairs per instruction
 * where an FMA multiplies 16 float pairs; measured on an AMD Zen 4 the same 12 x 32 tile
 * runs 4.2-4.4x faster than the float kernel on the network's layer shapes (2.8x on the
 * 16-input one). The 1x1 convolutions are about 77% of the float CNN's time.
 *
 * Exactness: the int32 sums are exact (|x| <= 255, |w| <= 127, cin <= 1280: below 2^26),
 * so the only errors are the two roundings to 8 bits; the checks against float are in
 * tests/engine/test_cnn_int8.c and the model card.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cnn_int8.h"
#include "lines.h"
#include "store_row.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define Q8_X86 1
#define Q8_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16")))
#endif

#define Q8_MR 12 /* pixels per tile, as the float kernel */

int ce__q8_supported(void)
{
#ifdef Q8_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
           __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

int ce__q8_pack(const float *w, int cin, int cout, ce_q8_matrix *out)
{
    memset(out, 0, sizeof *out);
    if (cin < 1 || cin > CE_Q8_MAX_CIN || cout < 1) return -EINVAL;
    int cin4 = (cin + 3) / 4 * 4, blocks = (cout + 31) / 32, cpad = blocks * 32;
    size_t wbytes = (size_t)blocks * (size_t)cin4 * 32;
    size_t total = wbytes + (size_t)cpad * (sizeof(float) + sizeof(int32_t));
    uint8_t *mem = ce__alloc_lines(total);
    if (!mem) return -ENOMEM;
    int8_t *q = (int8_t *)mem;
    float *scale = (float *)(mem + wbytes);
    int32_t *sum = (int32_t *)(scale + cpad);
    memset(mem, 0, wbytes);
    for (int o = 0; o < cpad; o++) {
        float mx = 0.0f;
        for (int i = 0; o < cout && i < cin; i++) {
            float a = w[(size_t)i * (size_t)cout + (size_t)o];
            a = a < 0 ? -a : a;
            mx = a > mx ? a : mx;
        }
        scale[o] = mx > 0.0f ? mx / 127.0f : 1.0f;
        int32_t s = 0;
        for (int i = 0; o < cout && i < cin; i++) {
            float v = w[(size_t)i * (size_t)cout + (size_t)o] / scale[o];
            int iv = (int)(v < 0 ? v - 0.5f : v + 0.5f);
            iv = iv > 127 ? 127 : iv < -127 ? -127 : iv;
            /* block o/32, group i/4, output o%32, input i%4 */
            size_t at = (((size_t)(o / 32) * (size_t)(cin4 / 4) + (size_t)(i / 4)) * 32 +
                         (size_t)(o % 32)) *
                            4 +
                        (size_t)(i % 4);
            q[at] = (int8_t)iv;
            s += iv;
        }
        sum[o] = s;
    }
    *out = (ce_q8_matrix){q, scale, sum, cin, cin4, cout, mem};
    return 0;
}

void ce__q8_free(ce_q8_matrix *m)
{
    if (!m) return;
    free(m->owned);
    memset(m, 0, sizeof *m);
}

/* float -> bfloat16, rounding to nearest even (finite weights: no NaN case needed). */
static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

int ce__bf16_pack(const float *w, int cin, int cout, ce_bf16_matrix *out)
{
    memset(out, 0, sizeof *out);
    if (cin < 1 || cin > CE_Q8_MAX_CIN || cout < 1) return -EINVAL;
    int cin2 = (cin + 1) / 2 * 2, blocks = (cout + 31) / 32;
    size_t bytes = (size_t)blocks * (size_t)cin2 * 32 * sizeof(uint16_t);
    uint16_t *q = ce__alloc_lines(bytes);
    if (!q) return -ENOMEM;
    memset(q, 0, bytes);
    for (int o = 0; o < cout; o++)
        for (int i = 0; i < cin; i++) {
            /* block o/32, pair i/2, output o%32, input i%2 */
            size_t at = (((size_t)(o / 32) * (size_t)(cin2 / 2) + (size_t)(i / 2)) * 32 +
                         (size_t)(o % 32)) *
                            2 +
                        (size_t)(i % 2);
            q[at] = to_bf16(w[(size_t)i * (size_t)cout + (size_t)o]);
        }
    *out = (ce_bf16_matrix){q, cin, cin2, cout, q};
    return 0;
}

void ce__bf16_free(ce_bf16_matrix *m)
{
    if (!m) return;
    free(m->owned);
    memset(m, 0, sizeof *m);
}

#ifdef Q8_X86

/* The kernels' input layout: pixels by tiles of 12, and within a tile the 32-bit units
 * (4 int8 or 2 bfloat16 inputs) of its 12 pixels side by side, unit by unit:
 * [n/12][units][12][32 bits]. A tile then broadcasts pixel r's unit g from one pointer,
 * tile + 12 g + r, instead of holding 12 row pointers (GCC 12 spilled those to the stack
 * inside the loop). A last tile of fewer than 12 pixels
 * repeats its last one, as the float kernel does. */
static void put_units(uint32_t *buf, int units, int p, const uint32_t *u, int g0, int n)
{
    uint32_t *t = buf + (size_t)(p / Q8_MR) * (size_t)units * Q8_MR + p % Q8_MR;
    for (int k = 0; k < n && g0 + k < units; k++) t[(size_t)(g0 + k) * Q8_MR] = u[k];
}

static void repeat_last(uint32_t *buf, int units, int n)
{
    if (n % Q8_MR == 0) return;
    uint32_t *t = buf + (size_t)(n / Q8_MR) * (size_t)units * Q8_MR;
    int last = n % Q8_MR - 1;
    for (int g = 0; g < units; g++)
        for (int r = last + 1; r < Q8_MR; r++)
            t[(size_t)g * Q8_MR + r] = t[(size_t)g * Q8_MR + last];
}

/* n pixels of cin floats (contiguous rows) -> the tile layout above, cin4/4 units each,
 * every pixel with its own scale and zero point (x ~= scale * (q - zero)): a pixel's
 * result never depends on which other pixels share its call, so thread splits and bands
 * give the same bits. */
static Q8_TARGET void quantize_pixels(const float *in, int n, int cin, int cin4, uint32_t *buf,
                                      float *scale, int *zero)
{
    const __m512i floor0 = _mm512_setzero_si512(), top = _mm512_set1_epi32(255);
    for (int p = 0; p < n; p++) {
        const float *x = in + (size_t)p * (size_t)cin;
        __m512 lo = _mm512_setzero_ps(), hi = lo;
        for (int c = 0; c < cin; c += 16) {
            int left = cin - c;
            __mmask16 m = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
            __m512 v = _mm512_maskz_loadu_ps(m, x + c);
            lo = _mm512_min_ps(lo, v), hi = _mm512_max_ps(hi, v);
        }
        float mn = _mm512_reduce_min_ps(lo), mx = _mm512_reduce_max_ps(hi);
        float s;
        int z;
        if (mn >= 0.0f) z = 0, s = mx / 255.0f;
        else z = 128, s = (-mn > mx ? -mn : mx) / 127.0f;
        if (!(s > 0.0f)) s = 1.0f; /* all zero (or NaN: garbage in, no crash) */
        scale[p] = s, zero[p] = z;
        const __m512 inv = _mm512_set1_ps(1.0f / s);
        const __m512i zv = _mm512_set1_epi32(z);
        for (int c = 0; c < cin4; c += 16) {
            int left = cin - c;
            __mmask16 m = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1); /* left > 0 */
            __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + c), inv));
            v = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(v, zv), floor0), top);
            v = _mm512_maskz_mov_epi32(m, v); /* padding inputs: 0 (their weights are 0) */
            uint32_t u[4];
            _mm_storeu_si128((__m128i *)u, _mm512_cvtusepi32_epi8(v));
            put_units(buf, cin4 / 4, p, u, c / 4, 4);
        }
    }
    repeat_last(buf, cin4 / 4, n);
}

/* The lanes of a 32-output block that are the layer's, when `left` outputs remain. */
static inline void tail_masks(int left, __mmask16 *m0, __mmask16 *m1)
{
    *m0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
    *m1 = left >= 32 ? 0xFFFF : left > 16 ? (__mmask16)((1u << (left - 16)) - 1) : 0;
}

/* One tile: 12 pixels of the tile layout (mr of them stored) x the 32 outputs of one
 * weight block, of which the masks say which are the layer's. */
static inline __attribute__((always_inline)) Q8_TARGET void
q8_tile(const int halves, int mr, const uint32_t *in, int cin4, const int8_t *w, const float *scale,
        const int32_t *sum, const float *xscale, const int *zero, const float *b, __mmask16 m0,
        __mmask16 m1, int relu6, const float *residual, int cout, float *out)
{
#define Q8_REP(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)
#define Q8_INIT(r) __m512i a##r##_0 = _mm512_setzero_si512(), a##r##_1 = _mm512_setzero_si512();
    Q8_REP(Q8_INIT)
#undef Q8_INIT
    for (int g = 0; g < cin4 / 4; g++) {
        const __m512i w0 = _mm512_load_si512(w + (size_t)g * 128);
        const __m512i w1 = halves == 2 ? _mm512_load_si512(w + (size_t)g * 128 + 64) : w0;
#define Q8_DOT(r)                                                                                  \
    {                                                                                              \
        const __m512i v = _mm512_set1_epi32((int)in[(size_t)g * Q8_MR + (r)]);                     \
        a##r##_0 = _mm512_dpbusd_epi32(a##r##_0, v, w0);                                           \
        if (halves == 2) a##r##_1 = _mm512_dpbusd_epi32(a##r##_1, v, w1);                          \
    }
        Q8_REP(Q8_DOT)
#undef Q8_DOT
    }
    /* zero point 128: subtract 128 * (the output's weight sum), exactly, in int32 */
    const __m512i c0 = _mm512_slli_epi32(_mm512_load_si512(sum), 7),
                  c1 = _mm512_slli_epi32(_mm512_load_si512(sum + 16), 7);
    const __m512 w0s = _mm512_load_ps(scale), w1s = _mm512_load_ps(scale + 16);
    const __m512 b0 = _mm512_maskz_loadu_ps(m0, b), b1 = _mm512_maskz_loadu_ps(m1, b + 16);
#define Q8_STORE(r)                                                                                \
    if ((r) < mr) {                                                                                \
        float *o = out + (size_t)(r)*cout;                                                         \
        const __mmask16 zr = zero[r] ? 0xFFFF : 0;                                                 \
        const __m512 xs = _mm512_set1_ps(xscale[r]);                                               \
        __m512 y0 = _mm512_cvtepi32_ps(_mm512_mask_sub_epi32(a##r##_0, zr, a##r##_0, c0));         \
        __m512 y1 = _mm512_cvtepi32_ps(_mm512_mask_sub_epi32(a##r##_1, zr, a##r##_1, c1));         \
        y0 = _mm512_fmadd_ps(y0, _mm512_mul_ps(xs, w0s), b0);                                      \
        y1 = _mm512_fmadd_ps(y1, _mm512_mul_ps(xs, w1s), b1);                                      \
        ce__store_row(halves, o, y0, y1, m0, m1, relu6,                                            \
                      residual ? residual + (size_t)(r)*cout : NULL);                              \
    }
    Q8_REP(Q8_STORE)
#undef Q8_STORE
#undef Q8_REP
}

static Q8_TARGET void q8_tile32(int mr, const uint32_t *in, int cin4, const int8_t *w,
                                const float *scale, const int32_t *sum, const float *xscale,
                                const int *zero, const float *b, __mmask16 m0, __mmask16 m1,
                                int relu6, const float *residual, int cout, float *out)
{
    q8_tile(2, mr, in, cin4, w, scale, sum, xscale, zero, b, m0, m1, relu6, residual, cout, out);
}

static Q8_TARGET void q8_tile16(int mr, const uint32_t *in, int cin4, const int8_t *w,
                                const float *scale, const int32_t *sum, const float *xscale,
                                const int *zero, const float *b, __mmask16 m0, int relu6,
                                const float *residual, int cout, float *out)
{
    q8_tile(1, mr, in, cin4, w, scale, sum, xscale, zero, b, m0, 0, relu6, residual, cout, out);
}

static Q8_TARGET void q8_range(const float *in, int p0, int p1, const ce_q8_matrix *m,
                               const float *b, int relu6, const float *residual, float *out)
{
    /* 48 pixels x at most 1280 inputs: 60 KB of stack (glibc threads have 8 MB) */
    uint32_t buf[CE_Q8_GROUP * CE_Q8_MAX_CIN / 4];
    float xscale[CE_Q8_GROUP];
    int zero[CE_Q8_GROUP];
    const int cin = m->cin, cin4 = m->cin4, cout = m->cout;
    for (int g0 = p0; g0 < p1; g0 += CE_Q8_GROUP) {
        int n = p1 - g0 < CE_Q8_GROUP ? p1 - g0 : CE_Q8_GROUP;
        quantize_pixels(in + (size_t)g0 * (size_t)cin, n, cin, cin4, buf, xscale, zero);
        for (int o = 0; o < cout; o += 32) {
            __mmask16 m0, m1;
            tail_masks(cout - o, &m0, &m1);
            const int8_t *w = m->w + (size_t)(o / 32) * (size_t)cin4 * 32;
            for (int t = 0; t < n; t += Q8_MR) {
                int mr = n - t < Q8_MR ? n - t : Q8_MR;
                const uint32_t *x = buf + (size_t)t * (size_t)cin4 / 4;
                size_t at = (size_t)(g0 + t) * (size_t)cout + (size_t)o;
                const float *r = residual ? residual + at : NULL;
                if (m1)
                    q8_tile32(mr, x, cin4, w, m->scale + o, m->sum + o, xscale + t, zero + t, b + o,
                              m0, m1, relu6, r, cout, out + at);
                else
                    q8_tile16(mr, x, cin4, w, m->scale + o, m->sum + o, xscale + t, zero + t, b + o,
                              m0, relu6, r, cout, out + at);
            }
        }
    }
}

/* n pixels of cin floats -> the tile layout, cin2/2 units of two bfloat16 (nearest even)
 * each, padding 0. */
static Q8_TARGET void bf16_pixels(const float *in, int n, int cin, int cin2, uint32_t *buf)
{
    for (int p = 0; p < n; p++) {
        const float *x = in + (size_t)p * (size_t)cin;
        for (int c = 0; c < cin2; c += 16) {
            int left = cin - c;
            __mmask16 m = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1); /* left > 0 */
            uint32_t u[8];
            _mm256_storeu_si256((__m256i *)u,
                                (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + c)));
            put_units(buf, cin2 / 2, p, u, c / 2, 8);
        }
    }
    repeat_last(buf, cin2 / 2, n);
}

static inline __attribute__((always_inline)) Q8_TARGET void
bf16_tile(const int halves, int mr, const uint32_t *in, int cin2, const uint16_t *w, const float *b,
          __mmask16 m0, __mmask16 m1, int relu6, const float *residual, int cout, float *out)
{
    const __m512 b0 = _mm512_maskz_loadu_ps(m0, b), b1 = _mm512_maskz_loadu_ps(m1, b + 16);
#define BF_REP(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)
#define BF_INIT(r) __m512 a##r##_0 = b0, a##r##_1 = b1;
    BF_REP(BF_INIT)
#undef BF_INIT
    for (int g = 0; g < cin2 / 2; g++) {
        const __m512bh w0 = (__m512bh)_mm512_load_si512(w + (size_t)g * 64);
        const __m512bh w1 = halves == 2 ? (__m512bh)_mm512_load_si512(w + (size_t)g * 64 + 32) : w0;
#define BF_DOT(r)                                                                                  \
    {                                                                                              \
        const __m512bh v = (__m512bh)_mm512_set1_epi32((int)in[(size_t)g * Q8_MR + (r)]);          \
        a##r##_0 = _mm512_dpbf16_ps(a##r##_0, v, w0);                                              \
        if (halves == 2) a##r##_1 = _mm512_dpbf16_ps(a##r##_1, v, w1);                             \
    }
        BF_REP(BF_DOT)
#undef BF_DOT
    }
#define BF_STORE(r)                                                                                \
    if ((r) < mr)                                                                                  \
        ce__store_row(halves, out + (size_t)(r)*cout, a##r##_0, a##r##_1, m0, m1, relu6,           \
                      residual ? residual + (size_t)(r)*cout : NULL);
    BF_REP(BF_STORE)
#undef BF_STORE
#undef BF_REP
}

static Q8_TARGET void bf16_tile32(int mr, const uint32_t *in, int cin2, const uint16_t *w,
                                  const float *b, __mmask16 m0, __mmask16 m1, int relu6,
                                  const float *residual, int cout, float *out)
{
    bf16_tile(2, mr, in, cin2, w, b, m0, m1, relu6, residual, cout, out);
}

static Q8_TARGET void bf16_tile16(int mr, const uint32_t *in, int cin2, const uint16_t *w,
                                  const float *b, __mmask16 m0, int relu6, const float *residual,
                                  int cout, float *out)
{
    bf16_tile(1, mr, in, cin2, w, b, m0, 0, relu6, residual, cout, out);
}

static Q8_TARGET void bf16_range(const float *in, int p0, int p1, const ce_bf16_matrix *m,
                                 const float *b, int relu6, const float *residual, float *out)
{
    /* 48 pixels x at most 1280 inputs: 120 KB of stack */
    uint32_t buf[CE_Q8_GROUP * CE_Q8_MAX_CIN / 2];
    const int cin = m->cin, cin2 = m->cin2, cout = m->cout;
    for (int g0 = p0; g0 < p1; g0 += CE_Q8_GROUP) {
        int n = p1 - g0 < CE_Q8_GROUP ? p1 - g0 : CE_Q8_GROUP;
        bf16_pixels(in + (size_t)g0 * (size_t)cin, n, cin, cin2, buf);
        for (int o = 0; o < cout; o += 32) {
            __mmask16 m0, m1;
            tail_masks(cout - o, &m0, &m1);
            const uint16_t *w = m->w + (size_t)(o / 32) * (size_t)cin2 * 32;
            for (int t = 0; t < n; t += Q8_MR) {
                int mr = n - t < Q8_MR ? n - t : Q8_MR;
                const uint32_t *x = buf + (size_t)t * (size_t)cin2 / 2;
                size_t at = (size_t)(g0 + t) * (size_t)cout + (size_t)o;
                const float *r = residual ? residual + at : NULL;
                if (m1) bf16_tile32(mr, x, cin2, w, b + o, m0, m1, relu6, r, cout, out + at);
                else bf16_tile16(mr, x, cin2, w, b + o, m0, relu6, r, cout, out + at);
            }
        }
    }
}
#endif

void ce__q8_pointwise_range(const float *in, int p0, int p1, const ce_q8_matrix *m, const float *b,
                            int relu6, const float *residual, float *out)
{
#ifdef Q8_X86
    q8_range(in, p0, p1, m, b, relu6, residual, out);
#else
    (void)in, (void)p0, (void)p1, (void)m, (void)b, (void)relu6, (void)residual, (void)out;
    abort(); /* never packed where ce__q8_supported() is 0 */
#endif
}

void ce__bf16_pointwise_range(const float *in, int p0, int p1, const ce_bf16_matrix *m,
                              const float *b, int relu6, const float *residual, float *out)
{
#ifdef Q8_X86
    bf16_range(in, p0, p1, m, b, relu6, residual, out);
#else
    (void)in, (void)p0, (void)p1, (void)m, (void)b, (void)relu6, (void)residual, (void)out;
    abort(); /* never packed where ce__q8_supported() is 0 */
#endif
}
