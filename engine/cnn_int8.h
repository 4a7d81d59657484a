/*
 * Private to engine/: the optional int8 CNN's 1x1 convolutions (cnn_int8.c), for CPUs
 * with AVX-512 VNNI and BF16. cnn.c keeps the network and picks, per layer, int8 or
 * bfloat16; this file only knows matrices.
 *
 * The rule, stated once: weights are int8 with one scale per output channel (symmetric,
 * max |w| -> 127); inputs are quantized on the fly to uint8 with one scale s per pixel (its
 * cin values: max -> 255 when none is negative, else a zero point of 128 and
 * max |x| -> 127; q = round-to-even(x * (1/s)) + zero point, clamped to 0..255), so a
 * pixel's result does not depend on how a layer is split; products
 * are summed exactly in int32 and turned back into float once per output, before the
 * bias. Depthwise convolutions, activations and everything else stay float.
 *
 * bfloat16 (the projections, whose inputs lose most in int8: small values beside a
 * ReLU6-saturated 6 in the same pixel): weights and inputs rounded to bfloat16 (nearest
 * even), pairs multiplied and summed in float32 by VDPBF16PS, the bias added first as
 * the float kernel does.
 */
#ifndef CAPENGINE_CNN_INT8_H
#define CAPENGINE_CNN_INT8_H

#include <stdint.h>

#define CE_Q8_GROUP 48     /* pixels quantized at a time (4 tiles of 12) into a stack buffer */
#define CE_Q8_MAX_CIN 1280 /* inputs per pixel that buffer holds (the network's widest: 1280) */

typedef struct {
    /* [cout/32 blocks][cin4/4][32 outputs][4 inputs], cin padded to cin4 = 4k with zeros,
     * outputs past cout zero */
    const int8_t *w;
    const float *scale; /* [cout rounded up to 32]: max |w| / 127 of each output */
    const int32_t *sum; /* [cout rounded up to 32]: sum of each output's int8 weights */
    int cin, cin4, cout;
    void *owned; /* one allocation holding the three arrays */
} ce_q8_matrix;

typedef struct {
    /* [cout/32 blocks][cin2/2][32 outputs][2 inputs] bfloat16, cin padded to cin2 = 2k */
    const uint16_t *w;
    int cin, cin2, cout;
    void *owned;
} ce_bf16_matrix;

/* 1 when this CPU runs both kernels (AVX-512 F/BW/VL/VNNI/BF16), else 0. */
int ce__q8_supported(void);

/* Quantizes w [cin][cout] (row-major, float32). 0, -ENOMEM, or -EINVAL for
 * cin > CE_Q8_MAX_CIN (the kernels' stack buffers hold no more). */
int ce__q8_pack(const float *w, int cin, int cout, ce_q8_matrix *out);
void ce__q8_free(ce_q8_matrix *m);

/* out[p][o] = act(dequant(sum_i q(in[p][i]) * w8[i][o]) + b[o] (+ residual[p][o])) for
 * pixels [p0, p1): act is ReLU6 when relu6 (and no residual), else none. Same contract
 * as cnn.c's float path. */
void ce__q8_pointwise_range(const float *in, int p0, int p1, const ce_q8_matrix *m, const float *b,
                            int relu6, const float *residual, float *out);

/* The same for bfloat16. */
int ce__bf16_pack(const float *w, int cin, int cout, ce_bf16_matrix *out);
void ce__bf16_free(ce_bf16_matrix *m);
/* The same contract with the bfloat16 matrix. */
void ce__bf16_pointwise_range(const float *in, int p0, int p1, const ce_bf16_matrix *m,
                              const float *b, int relu6, const float *residual, float *out);

#endif
