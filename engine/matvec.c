/*
 * x · wᵀ with float16 weights (matvec.h): the captioner's concept head, conditioning and
 * every LSTM step (M = beams, 1..16) go through ce__matmul_f16.
 *
 * Why not sgemm: with M = 3 rows an sgemm is a stream over the weights, and OpenBLAS
 * packs (copies) the whole float32 weight matrix before each call: 17 MB per step, half
 * of the captioner's time in sgemm_incopy. Here each weight is read once per step,
 * straight from the float16 mapping (8.5 MB per step), widened in registers and used
 * for every beam while it is there.
 *
 * Kernel (AVX-512 + F16C, the build's -march=native): blocks of ROWS weight rows times up
 * to BEAMS rows of x, ROWS x BEAMS accumulators of 16 lanes; the x chunks (a few KB) stay
 * in L1. Lane sums are added in a fixed order, so a result depends only on n, the shapes
 * and the data, never on where a row falls in a block.
 *
 * AVX2 + FMA + F16C: the same 16 lanes as two 8-lane halves, the same FMAs in the same
 * order, the same reduction tree and the same 16-wide chunks in the LSTM cell and the
 * softmax, so the captions are bit for bit those of the AVX-512 kernel (one weight row
 * per block: the accumulators of 4 beams fill the 16 registers). Elsewhere a portable
 * loop with 8 partial sums that the compiler can vectorise.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__F16C__)
#include <immintrin.h>
#define MATVEC_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define MATVEC_AVX2 1
#endif

#include "matvec.h"
#include "prefetch.h"

/* The loops over a block's rows and beams must be unrolled completely, or GCC -O2 keeps
 * the accumulators in memory (a load and a store around every FMA: 1.75x slower). */
#define UNROLL _Pragma("GCC unroll 4")

/* The weights stream from L3 or memory once per step (8.5 MB, more than L2): each row
 * is prefetched this many rows ahead, so its lines arrive while earlier rows are used
 * (the hardware prefetcher alone left the kernel waiting on L3). */
#define PREFETCH_ROWS 16

#define ROWS 4  /* weight rows per block */
#define BEAMS 4 /* x rows per block */
#define MAX_COLS 8192

static float half_to_float(uint16_t h);

/* ------------------------------------------------------------------ AVX-512 */

#ifdef MATVEC_AVX512
/* One block: R weight rows against NB rows of x, all `cols` columns. R and NB are
 * constants at every call site, so the accumulators live in registers. */
static inline __attribute__((always_inline)) void block_avx512(const int R, const int NB, int cols,
                                                               const float *x, int ldx,
                                                               const uint16_t *w, int ldw, float *y,
                                                               int ldy)
{
    __m512 acc[ROWS][BEAMS];
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int b = 0; b < NB; b++) acc[r][b] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= cols; k += 16) {
        __m512 xv[BEAMS];
        UNROLL for (int b = 0; b < NB; b++) xv[b] = _mm512_loadu_ps(x + (size_t)b * ldx + k);
        UNROLL for (int r = 0; r < R; r++) {
            ce__prefetch(w, ((size_t)(r + PREFETCH_ROWS) * ldw + k) * sizeof *w);
            __m512 wv = _mm512_cvtph_ps(
                _mm256_loadu_si256((const __m256i *)(const void *)(w + (size_t)r * ldw + k)));
            UNROLL for (int b = 0; b < NB; b++) acc[r][b] = _mm512_fmadd_ps(wv, xv[b], acc[r][b]);
        }
    }
    if (k < cols) {
        const __mmask16 m = (__mmask16)((1u << (cols - k)) - 1);
        __m512 xv[BEAMS];
        UNROLL for (int b = 0; b < NB; b++) xv[b] = _mm512_maskz_loadu_ps(m, x + (size_t)b * ldx + k);
        UNROLL for (int r = 0; r < R; r++) {
            __m512 wv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w + (size_t)r * ldw + k));
            UNROLL for (int b = 0; b < NB; b++) acc[r][b] = _mm512_fmadd_ps(wv, xv[b], acc[r][b]);
        }
    }
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int b = 0; b < NB; b++) y[(size_t)b * ldy + r] += _mm512_reduce_add_ps(acc[r][b]);
}

/* All rows of w against NB rows of x. */
static inline __attribute__((always_inline)) void rows_avx512(const int NB, int rows, int cols,
                                                              const float *x, int ldx,
                                                              const uint16_t *w, int ldw, float *y,
                                                              int ldy)
{
    int j = 0;
    for (; j + ROWS <= rows; j += ROWS)
        block_avx512(ROWS, NB, cols, x, ldx, w + (size_t)j * ldw, ldw, y + j, ldy);
    for (; j < rows; j++) block_avx512(1, NB, cols, x, ldx, w + (size_t)j * ldw, ldw, y + j, ldy);
}
#endif

#ifdef MATVEC_AVX512
/* exp(x) for 16 lanes: Cephes' expf (x = n ln2 + r, |r| <= ln2 / 2, degree-6
 * polynomial), within 2 ulp of libm's expf; underflows to 0, overflows to +inf. */
static inline __m512 exp_avx512(__m512 x)
{
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(89.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

static inline __m512 sigmoid_avx512(__m512 x)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one,
                         _mm512_add_ps(one, exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

/* tanh(x) = sign(x) (1 - e) / (1 + e), e = exp(-2|x|): within about 1e-7 of libm. */
static inline __m512 tanh_avx512(__m512 x)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 ax = _mm512_abs_ps(x);
    __m512 e = exp_avx512(_mm512_mul_ps(ax, _mm512_set1_ps(-2.0f)));
    __m512 t = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
    return _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_castps_si512(t),
        _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u))));
}
#endif

/* ------------------------------------------------------------------ AVX2 */

#ifdef MATVEC_AVX2
/* _mm512_reduce_add_ps's tree on 16 lanes held as lo (0..7) and hi (8..15): halves, then
 * quarters, then pairs. */
static inline float reduce16_avx2(__m256 lo, __m256 hi)
{
    __m256 t3 = _mm256_add_ps(hi, lo);
    __m128 t6 = _mm_add_ps(_mm256_extractf128_ps(t3, 1), _mm256_castps256_ps128(t3));
    __m128 t8 = _mm_add_ps(t6, _mm_shuffle_ps(t6, t6, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm_cvtss_f32(t8) + _mm_cvtss_f32(_mm_shuffle_ps(t8, t8, 1));
}

/* One weight row against NB rows of x, all `cols` columns (the tail through zeroed
 * buffers, as the AVX-512 kernel's masked loads give zeros). */
static inline __attribute__((always_inline)) void row_avx2(const int NB, int cols, const float *x,
                                                           int ldx, const uint16_t *w, int ldw,
                                                           float *y, int ldy)
{
    __m256 lo[BEAMS], hi[BEAMS];
    UNROLL for (int b = 0; b < NB; b++) lo[b] = hi[b] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 16 <= cols; k += 16) {
        ce__prefetch(w, ((size_t)PREFETCH_ROWS * ldw + k) * sizeof *w);
        const __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(w + k)));
        const __m256 w1 =
            _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(w + k + 8)));
        UNROLL for (int b = 0; b < NB; b++) {
            lo[b] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + (size_t)b * ldx + k), lo[b]);
            hi[b] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + (size_t)b * ldx + k + 8), hi[b]);
        }
    }
    if (k < cols) {
        uint16_t wt[16] = {0};
        float xt[16] = {0};
        memcpy(wt, w + k, sizeof(uint16_t) * (size_t)(cols - k));
        const __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)wt));
        const __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(wt + 8)));
        UNROLL for (int b = 0; b < NB; b++) {
            memcpy(xt, x + (size_t)b * ldx + k, sizeof(float) * (size_t)(cols - k));
            lo[b] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xt), lo[b]);
            hi[b] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xt + 8), hi[b]);
        }
    }
    UNROLL for (int b = 0; b < NB; b++) y[(size_t)b * ldy] += reduce16_avx2(lo[b], hi[b]);
}

static inline __attribute__((always_inline)) void rows_avx2(const int NB, int rows, int cols,
                                                            const float *x, int ldx,
                                                            const uint16_t *w, int ldw, float *y,
                                                            int ldy)
{
    for (int j = 0; j < rows; j++) row_avx2(NB, cols, x, ldx, w + (size_t)j * ldw, ldw, y + j, ldy);
}

/* exp_avx512 on 8 lanes: the same steps; scalef(p, n) as p * 2^(n/2) * 2^(n - n/2), each
 * factor a normal float, so the one rounding is scalef's. */
static inline __m256 exp_avx2(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-104.0f)), _mm256_set1_ps(89.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_cvtps_epi32(n), e1 = _mm256_srai_epi32(e, 1), e2 = _mm256_sub_epi32(e, e1);
    __m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e1, _mm256_set1_epi32(127)), 23));
    __m256 f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e2, _mm256_set1_epi32(127)), 23));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, f1), f2);
    /* scalef's result is final: the compiler must not fuse this multiply into the add
     * that uses it (-ffp-contract=fast), which AVX-512 cannot do with scalef. */
    __asm__("" : "+x"(y));
    return y;
}

static inline __m256 sigmoid_avx2(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

static inline __m256 tanh_avx2(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    __m256 ax = _mm256_andnot_ps(sign, x);
    __m256 e = exp_avx2(_mm256_mul_ps(ax, _mm256_set1_ps(-2.0f)));
    __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
    return _mm256_or_ps(t, _mm256_and_ps(x, sign));
}

/* One LSTM cell on 8 units at j. */
static inline void lstm8_avx2(const float *g, const float *c_prev, float *h, float *c, int H, int j)
{
    __m256 i_g = sigmoid_avx2(_mm256_loadu_ps(g + j));
    __m256 f_g = sigmoid_avx2(_mm256_loadu_ps(g + H + j));
    __m256 g_g = tanh_avx2(_mm256_loadu_ps(g + 2 * H + j));
    __m256 o_g = sigmoid_avx2(_mm256_loadu_ps(g + 3 * H + j));
    __m256 cj = _mm256_fmadd_ps(f_g, _mm256_loadu_ps(c_prev + j), _mm256_mul_ps(i_g, g_g));
    _mm256_storeu_ps(c + j, cj);
    _mm256_storeu_ps(h + j, _mm256_mul_ps(o_g, tanh_avx2(cj)));
}
#endif

/* ------------------------------------------------------------------ portable */

#if !defined(MATVEC_AVX512) && !defined(MATVEC_AVX2)
/* One weight row widened once, then a dot product with 8 partial sums per row of x. */
static void rows_portable(int n, int rows, int cols, const float *x, int ldx, const uint16_t *w,
                          int ldw, float *y, int ldy)
{
    float wf[MAX_COLS];
    for (int j = 0; j < rows; j++) {
        ce__f16_to_f32(w + (size_t)j * ldw, wf, (size_t)cols);
        for (int b = 0; b < n; b++) {
            const float *xb = x + (size_t)b * ldx;
            float part[8] = {0};
            int k = 0;
            for (; k + 8 <= cols; k += 8)
                for (int l = 0; l < 8; l++) part[l] += wf[k + l] * xb[k + l];
            for (; k < cols; k++) part[0] += wf[k] * xb[k];
            float sum = ((part[0] + part[1]) + (part[2] + part[3])) +
                        ((part[4] + part[5]) + (part[6] + part[7]));
            y[(size_t)b * ldy + j] += sum;
        }
    }
}
#endif

/* ------------------------------------------------------------------ public */

void ce__matmul_f16(int n, int rows, int cols, const float *x, int ldx, const uint16_t *w, int ldw,
                    float *y, int ldy)
{
    if (n <= 0 || rows <= 0 || cols <= 0) return;
#ifdef MATVEC_AVX512
    for (int b = 0; b < n; b += BEAMS) {
        const float *xb = x + (size_t)b * ldx;
        float *yb = y + (size_t)b * ldy;
        switch (n - b < BEAMS ? n - b : BEAMS) {
        case 1: rows_avx512(1, rows, cols, xb, ldx, w, ldw, yb, ldy); break;
        case 2: rows_avx512(2, rows, cols, xb, ldx, w, ldw, yb, ldy); break;
        case 3: rows_avx512(3, rows, cols, xb, ldx, w, ldw, yb, ldy); break;
        default: rows_avx512(4, rows, cols, xb, ldx, w, ldw, yb, ldy); break;
        }
    }
#elif defined(MATVEC_AVX2)
    for (int b = 0; b < n; b += BEAMS) {
        const float *xb = x + (size_t)b * ldx;
        float *yb = y + (size_t)b * ldy;
        switch (n - b < BEAMS ? n - b : BEAMS) {
        case 1: rows_avx2(1, rows, cols, xb, ldx, w, ldw, yb, ldy); break;
        case 2: rows_avx2(2, rows, cols, xb, ldx, w, ldw, yb, ldy); break;
        case 3: rows_avx2(3, rows, cols, xb, ldx, w, ldw, yb, ldy); break;
        default: rows_avx2(4, rows, cols, xb, ldx, w, ldw, yb, ldy); break;
        }
    }
#else
    if (cols > MAX_COLS) {
        /* Wider than the row buffer: in column slices (sums in another order). */
        for (int k = 0; k < cols; k += MAX_COLS)
            ce__matmul_f16(n, rows, cols - k < MAX_COLS ? cols - k : MAX_COLS, x + k, ldx, w + k,
                           ldw, y, ldy);
        return;
    }
    rows_portable(n, rows, cols, x, ldx, w, ldw, y, ldy);
#endif
}

float ce__log_sum_exp(const float *v, int n)
{
    int i = 0;
    float mx = v[0];
    double sum = 0;
#ifdef MATVEC_AVX512
    __m512 m16 = _mm512_set1_ps(v[0]);
    for (; i + 16 <= n; i += 16) m16 = _mm512_max_ps(m16, _mm512_loadu_ps(v + i));
    mx = _mm512_reduce_max_ps(m16);
    for (; i < n; i++) mx = v[i] > mx ? v[i] : mx;
    __m512 s16 = _mm512_setzero_ps(), shift = _mm512_set1_ps(mx);
    for (i = 0; i + 16 <= n; i += 16)
        s16 = _mm512_add_ps(s16, exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(v + i), shift)));
    sum = _mm512_reduce_add_ps(s16);
#elif defined(MATVEC_AVX2)
    __m256 m8 = _mm256_set1_ps(v[0]);
    for (; i + 16 <= n; i += 16)
        m8 = _mm256_max_ps(m8, _mm256_max_ps(_mm256_loadu_ps(v + i), _mm256_loadu_ps(v + i + 8)));
    __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m8, 1), _mm256_castps256_ps128(m8));
    m4 = _mm_max_ps(m4, _mm_shuffle_ps(m4, m4, _MM_SHUFFLE(1, 0, 3, 2)));
    m4 = _mm_max_ps(m4, _mm_shuffle_ps(m4, m4, 1));
    mx = _mm_cvtss_f32(m4);
    for (; i < n; i++) mx = v[i] > mx ? v[i] : mx;
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps(), shift = _mm256_set1_ps(mx);
    for (i = 0; i + 16 <= n; i += 16) {
        lo = _mm256_add_ps(lo, exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(v + i), shift)));
        hi = _mm256_add_ps(hi, exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(v + i + 8), shift)));
    }
    sum = reduce16_avx2(lo, hi);
#else
    for (i = 1; i < n; i++) mx = v[i] > mx ? v[i] : mx;
    i = 0;
#endif
    for (; i < n; i++) sum += exp((double)(v[i] - mx));
    return mx + (float)log(sum);
}

void ce__lstm_cell(const float *g, const float *c_prev, float *h, float *c, int H)
{
    int j = 0;
#ifdef MATVEC_AVX512
    for (; j + 16 <= H; j += 16) {
        __m512 i_g = sigmoid_avx512(_mm512_loadu_ps(g + j));
        __m512 f_g = sigmoid_avx512(_mm512_loadu_ps(g + H + j));
        __m512 g_g = tanh_avx512(_mm512_loadu_ps(g + 2 * H + j));
        __m512 o_g = sigmoid_avx512(_mm512_loadu_ps(g + 3 * H + j));
        __m512 cj = _mm512_fmadd_ps(f_g, _mm512_loadu_ps(c_prev + j), _mm512_mul_ps(i_g, g_g));
        _mm512_storeu_ps(c + j, cj);
        _mm512_storeu_ps(h + j, _mm512_mul_ps(o_g, tanh_avx512(cj)));
    }
#elif defined(MATVEC_AVX2)
    for (; j + 16 <= H; j += 16) { /* 16 at a time: the scalar tail starts where AVX-512's does */
        lstm8_avx2(g, c_prev, h, c, H, j);
        lstm8_avx2(g, c_prev, h, c, H, j + 8);
    }
#endif
    for (; j < H; j++) {
        float i_g = 1.0f / (1.0f + expf(-g[j]));
        float f_g = 1.0f / (1.0f + expf(-g[H + j]));
        float g_g = tanhf(g[2 * H + j]);
        float o_g = 1.0f / (1.0f + expf(-g[3 * H + j]));
        c[j] = f_g * c_prev[j] + i_g * g_g;
        h[j] = o_g * tanhf(c[j]);
    }
}

void ce__f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
#ifdef MATVEC_AVX512
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(
            dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(src + i))));
#elif defined(MATVEC_AVX2)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i,
                         _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(src + i))));
#endif
    for (; i < n; i++) dst[i] = half_to_float(src[i]);
}

/* ------------------------------------------------------------------ helpers */

/* IEEE binary16 -> binary32, exact (also subnormals, infinities, NaN). */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | mant << 13;
    } else if (exp != 0) {
        bits = sign | (exp + 112) << 23 | mant << 13;
    } else if (mant == 0) {
        bits = sign;
    } else {
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
