/*
 * The reduced-precision decoder's products (matvec.h): x · wᵀ with bfloat16 weights and
 * bfloat16 inputs, float32 sums, for the LSTM steps of a model opened with
 * CE_OPEN_CNN_INT8.
 *
 * Why: every beam-search step reads the input, recurrent and output matrices (about
 * 8 MB) and makes M = beams products per weight. With float16 weights each 16 weights
 * take a load, a conversion and M FMAs; VDPBF16PS multiplies 32 bfloat16 pairs into 16
 * float32 lanes in one instruction, with no conversion, so the same step takes about
 * 0.6 of the time when the weights are in cache (measured on an AMD Zen 4: 5,194 x 512,
 * 3 beams, 0.15 against 0.25 ms). From memory both kernels wait on the same bytes.
 *
 * Precision: bfloat16 keeps 8 significant bits where float16 keeps 11, for weights and
 * for the inputs (embeddings, hidden state); products and sums stay float32. The
 * captions this changes are measured in the model card ("The optional int8 CNN").
 *
 * Layout: the converted matrices and inputs have rows padded with zeros to a multiple of
 * BF16_COLS, so the kernel has no tail and the padding adds nothing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lines.h"
#include "matvec.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define BF16_X86 1
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#endif

/* The loops over a block's rows and beams must be unrolled completely (matvec.c). */
#define UNROLL _Pragma("GCC unroll 4")
#define ROWS 4           /* weight rows per block */
#define BEAMS 4          /* x rows per block */
#define PREFETCH_ROWS 16 /* as matvec.c: the weights stream from L3 or memory */

int ce__bf16_decoder_supported(void)
{
#ifdef BF16_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

int ce__bf16_cols(int cols) { return (cols + BF16_COLS - 1) / BF16_COLS * BF16_COLS; }

#ifdef BF16_X86
/* n rows of float32 (stride ldx) -> bfloat16 rows of ce__bf16_cols(cols) (stride ldo),
 * rounded to nearest even, zeros past cols. */
static BF16_TARGET void to_bf16_rows(int n, int cols, const float *x, int ldx, uint16_t *out,
                                     int ldo)
{
    const int padded = ce__bf16_cols(cols);
    for (int b = 0; b < n; b++) {
        const float *xb = x + (size_t)b * ldx;
        uint16_t *ob = out + (size_t)b * ldo;
        for (int k = 0; k < padded; k += 16) {
            const int left = cols - k;
            const __mmask16 m = left >= 16 ? 0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
            const __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, xb + k));
            _mm256_storeu_si256((__m256i *)(void *)(ob + k), (__m256i)v);
        }
    }
}

/* One block: R weight rows against NB rows of x, all `cols` (a multiple of 32) columns:
 * lane i of acc[r][b] sums the pairs of columns 2i, 2i + 1 of every 32. */
/* clang-format misreads the unrolled loops after BF16_TARGET: */
/* clang-format off */
static inline __attribute__((always_inline)) BF16_TARGET void
block_bf16(const int R, const int NB, int cols, const uint16_t *x, int ldx, const uint16_t *w,
           int ldw, float *y, int ldy)
{
    __m512 acc[ROWS][BEAMS];
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int b = 0; b < NB; b++) acc[r][b] = _mm512_setzero_ps();
    for (int k = 0; k < cols; k += BF16_COLS) {
        __m512bh xv[BEAMS];
        UNROLL for (int b = 0; b < NB; b++)
            xv[b] = (__m512bh)_mm512_loadu_si512((const void *)(x + (size_t)b * ldx + k));
        UNROLL for (int r = 0; r < R; r++) {
            __builtin_prefetch(w + (size_t)(r + PREFETCH_ROWS) * ldw + k);
            const __m512bh wv = (__m512bh)_mm512_loadu_si512((const void *)(w + (size_t)r * ldw + k));
            UNROLL for (int b = 0; b < NB; b++) acc[r][b] = _mm512_dpbf16_ps(acc[r][b], wv, xv[b]);
        }
    }
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int b = 0; b < NB; b++) y[(size_t)b * ldy + r] += _mm512_reduce_add_ps(acc[r][b]);
}

static inline __attribute__((always_inline)) BF16_TARGET void
rows_bf16(const int NB, int rows, int cols, const uint16_t *x, int ldx, const uint16_t *w, int ldw,
          float *y, int ldy)
{
    int j = 0;
    for (; j + ROWS <= rows; j += ROWS)
        block_bf16(ROWS, NB, cols, x, ldx, w + (size_t)j * ldw, ldw, y + j, ldy);
    for (; j < rows; j++) block_bf16(1, NB, cols, x, ldx, w + (size_t)j * ldw, ldw, y + j, ldy);
}
/* clang-format on */

static BF16_TARGET void matmul_bf16(int n, int rows, int cols, const uint16_t *x, int ldx,
                                    const uint16_t *w, int ldw, float *y, int ldy)
{
    for (int b = 0; b < n; b += BEAMS) {
        const uint16_t *xb = x + (size_t)b * ldx;
        float *yb = y + (size_t)b * ldy;
        switch (n - b < BEAMS ? n - b : BEAMS) {
        case 1: rows_bf16(1, rows, cols, xb, ldx, w, ldw, yb, ldy); break;
        case 2: rows_bf16(2, rows, cols, xb, ldx, w, ldw, yb, ldy); break;
        case 3: rows_bf16(3, rows, cols, xb, ldx, w, ldw, yb, ldy); break;
        default: rows_bf16(4, rows, cols, xb, ldx, w, ldw, yb, ldy); break;
        }
    }
}
#endif

int ce__bf16_from_f16(const uint16_t *w, int rows, int cols, int ldw, uint16_t **out)
{
    *out = NULL;
#ifdef BF16_X86
    const int padded = ce__bf16_cols(cols);
    uint16_t *q = ce__alloc_lines(sizeof(uint16_t) * (size_t)rows * (size_t)padded);
    float *row = malloc(sizeof(float) * (size_t)cols);
    if (!q || !row) {
        free(q);
        free(row);
        return -ENOMEM;
    }
    for (int j = 0; j < rows; j++) {
        ce__f16_to_f32(w + (size_t)j * ldw, row, (size_t)cols);
        to_bf16_rows(1, cols, row, cols, q + (size_t)j * padded, padded);
    }
    free(row);
    *out = q;
    return 0;
#else
    (void)w, (void)rows, (void)cols, (void)ldw;
    return -ENOTSUP;
#endif
}

void ce__f32_to_bf16(int n, int cols, const float *x, int ldx, uint16_t *out, int ldo)
{
#ifdef BF16_X86
    to_bf16_rows(n, cols, x, ldx, out, ldo);
#else
    (void)n, (void)cols, (void)x, (void)ldx, (void)out, (void)ldo;
    abort(); /* never called where ce__bf16_decoder_supported() is 0 */
#endif
}

void ce__matmul_bf16(int n, int rows, int cols, const uint16_t *x, int ldx, const uint16_t *w,
                     int ldw, float *y, int ldy)
{
    if (n <= 0 || rows <= 0 || cols <= 0) return;
#ifdef BF16_X86
    matmul_bf16(n, rows, ce__bf16_cols(cols), x, ldx, w, ldw, y, ldy);
#else
    (void)x, (void)ldx, (void)w, (void)ldw, (void)y, (void)ldy;
    abort(); /* never called where ce__bf16_decoder_supported() is 0 */
#endif
}
