/*
 * Private to engine/: the captioner's inner loops (matvec.c): products of a few float32
 * rows with a float16 weight matrix, the LSTM cell and the softmax normaliser. The weights stay float16 in the mapped file
 * (half the bytes a step streams, shared between processes); each one is widened to
 * float32 exactly (every float16 is a float32) and accumulated in float32, so the results
 * differ from a float32 sgemm over the converted weights only in the order of the sums.
 */
#ifndef CAPENGINE_MATVEC_H
#define CAPENGINE_MATVEC_H

#include <stddef.h>
#include <stdint.h>

/* y[b][j] += sum_k x[b][k] * w[j][k] for b < n, j < rows, k < cols: n rows of x (row
 * stride ldx floats) times the transpose of w (rows x cols float16, row stride ldw), added
 * into y (row stride ldy). Any n >= 0; no alignment needed. */
void ce__matmul_f16(int n, int rows, int cols, const float *x, int ldx, const uint16_t *w, int ldw,
                    float *y, int ldy);
/* log(sum_i exp(v[i])), n >= 1, with the maximum taken out first (never overflows). */
float ce__log_sum_exp(const float *v, int n);
/* One LSTM cell on gate pre-activations g = [i f g o] (4 x H): c = sigmoid(f) c_prev +
 * sigmoid(i) tanh(g), h = sigmoid(o) tanh(c). */
void ce__lstm_cell(const float *gates, const float *c_prev, float *h, float *c, int H);
/* dst[i] = the float32 value of the float16 src[i]. */
void ce__f16_to_f32(const uint16_t *src, float *dst, size_t n);

/* The bfloat16 products of the reduced-precision decoder (matvec_bf16.c): AVX-512 BF16
 * only, ce__bf16_decoder_supported() says where. bfloat16 rows are padded with zeros to
 * ce__bf16_cols(cols) values; `ld` strides count values, not bytes. */
#define BF16_COLS 32
int ce__bf16_decoder_supported(void);
int ce__bf16_cols(int cols);
/* A malloc'd (free()) bfloat16 copy of rows x cols of the float16 matrix w (row stride ldw),
 * rows ce__bf16_cols(cols) apart, each value rounded to nearest even. -ENOMEM, or
 * -ENOTSUP off x86-64. */
int ce__bf16_from_f16(const uint16_t *w, int rows, int cols, int ldw, uint16_t **out);
/* n rows of cols floats (stride ldx) -> bfloat16 rows of ce__bf16_cols(cols) (stride ldo). */
void ce__f32_to_bf16(int n, int cols, const float *x, int ldx, uint16_t *out, int ldo);
/* y[b][j] += sum_k x[b][k] * w[j][k], as ce__matmul_f16, over bfloat16 x and w made by
 * the two functions above (padding included: the sums run over ce__bf16_cols(cols)). */
void ce__matmul_bf16(int n, int rows, int cols, const uint16_t *x, int ldx, const uint16_t *w,
                     int ldw, float *y, int ldy);

#endif
