/*
 * The bfloat16 decoder products (engine/matvec_bf16.c) against plain C on random shapes,
 * the awkward ones included (1 row or beam, widths not a multiple of 32, row strides
 * wider than the rows, more than 4 beams):
 *   - the conversions round to nearest even, as a plain-C rounding of the same floats,
 *     and pad every row with zeros to ce__bf16_cols(cols);
 *   - ce__matmul_bf16 adds to y the sums of the rounded products, within float32
 *     rounding of a double reference over the same bfloat16 values.
 * Exit 77 (skip) where the CPU has no AVX-512 BF16.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "matvec.h"

static int failures;

static uint16_t bf16_of(float f);
static float float_of_bf16(uint16_t b);
static uint16_t random_half(void);
static void check(int ok, const char *what, int shape);

int main(void)
{
    if (!ce__bf16_decoder_supported()) {
        printf("SKIP: this CPU has no AVX-512 BF16\n");
        return 77;
    }
    srand(12345);
    for (int shape = 0; shape < 300; shape++) {
        const int n = 1 + rand() % 9, rows = 1 + rand() % 70, cols = 1 + rand() % 300;
        const int ldw = cols + rand() % 5, ldx = cols + rand() % 3, ldy = rows + rand() % 3;
        const int cp = ce__bf16_cols(cols);
        uint16_t *w16 = malloc(sizeof(uint16_t) * (size_t)rows * (size_t)ldw), *wb = NULL;
        float *x = malloc(sizeof(float) * (size_t)n * (size_t)ldx);
        uint16_t *xb = malloc(sizeof(uint16_t) * (size_t)n * (size_t)cp);
        float *y = malloc(sizeof(float) * (size_t)n * (size_t)ldy);
        float *y0 = malloc(sizeof(float) * (size_t)n * (size_t)ldy);
        float *row = malloc(sizeof(float) * (size_t)cols);
        for (size_t i = 0; i < (size_t)rows * (size_t)ldw; i++) w16[i] = random_half();
        for (size_t i = 0; i < (size_t)n * (size_t)ldx; i++)
            x[i] = (float)rand() / RAND_MAX * 4 - 2;
        for (size_t i = 0; i < (size_t)n * (size_t)ldy; i++)
            y[i] = y0[i] = (float)rand() / RAND_MAX;
        check(cp % BF16_COLS == 0 && cp >= cols && cp < cols + BF16_COLS, "padded width", shape);
        if (ce__bf16_from_f16(w16, rows, cols, ldw, &wb) < 0) {
            fprintf(stderr, "test_matvec_bf16: out of memory\n");
            return 1;
        }
        ce__f32_to_bf16(n, cols, x, ldx, xb, cp);

        int rounding_ok = 1, padding_ok = 1;
        for (int j = 0; j < rows; j++) {
            ce__f16_to_f32(w16 + (size_t)j * ldw, row, (size_t)cols);
            for (int k = 0; k < cp; k++) {
                uint16_t got = wb[(size_t)j * cp + k];
                if (k < cols) rounding_ok &= got == bf16_of(row[k]);
                else padding_ok &= got == 0;
            }
        }
        for (int b = 0; b < n; b++)
            for (int k = 0; k < cp; k++) {
                uint16_t got = xb[(size_t)b * cp + k];
                if (k < cols) rounding_ok &= got == bf16_of(x[(size_t)b * ldx + k]);
                else padding_ok &= got == 0;
            }
        check(rounding_ok, "round to nearest even", shape);
        check(padding_ok, "zero padding", shape);

        ce__matmul_bf16(n, rows, cols, xb, cp, wb, cp, y, ldy);
        int sums_ok = 1, untouched_ok = 1;
        for (int b = 0; b < n; b++)
            for (int j = 0; j < ldy; j++) {
                size_t at = (size_t)b * ldy + j;
                if (j >= rows) { /* the row stride's gap is not written */
                    untouched_ok &= y[at] == y0[at];
                    continue;
                }
                double sum = y0[at], magnitude = fabs(y0[at]);
                for (int k = 0; k < cols; k++) {
                    double p = (double)float_of_bf16(wb[(size_t)j * cp + k]) *
                               float_of_bf16(xb[(size_t)b * cp + k]);
                    sum += p;
                    magnitude += fabs(p);
                }
                /* float32 sums of up to 300 terms: a few units of 2^-24 per term */
                sums_ok &= fabs(y[at] - sum) <= 1e-6 * magnitude + 1e-30;
            }
        check(sums_ok, "sums", shape);
        check(untouched_ok, "row stride gap untouched", shape);
        free(w16), free(wb), free(x), free(xb), free(y), free(y0), free(row);
    }
    if (failures) {
        fprintf(stderr, "test_matvec_bf16: %d failures\n", failures);
        return 1;
    }
    printf("test_matvec_bf16: 300 shapes ok\n");
    return 0;
}

/* float -> bfloat16, round to nearest even (finite values). */
static uint16_t bf16_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float float_of_bf16(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* A finite float16 of either sign, magnitude about 2^-6 .. 2^1, as the weights are. */
static uint16_t random_half(void)
{
    uint16_t sign = (uint16_t)((rand() & 1) << 15), exp = (uint16_t)(9 + rand() % 7);
    return (uint16_t)(sign | exp << 10 | (rand() & 0x3FF));
}

static void check(int ok, const char *what, int shape)
{
    if (ok) return;
    failures++;
    fprintf(stderr, "FAIL %s, shape %d\n", what, shape);
}
