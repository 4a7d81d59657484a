/*
 * Private to engine/: the end of every 1x1 kernel's tile (cnn.c's float one, cnn_int8.c's
 * int8 and bfloat16 ones), written once. One pixel's 32-output block: the residual added,
 * else ReLU6 when asked, then stored through the masks of the layer's channels (halves: 1
 * when only the first 16 lanes exist). Always inlined, so the kernels' constant halves
 * and residual/relu6 tests fold as before.
 */
#ifndef CAPENGINE_STORE_ROW_H
#define CAPENGINE_STORE_ROW_H

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

static inline __attribute__((always_inline, target("avx512f"))) void
ce__store_row(const int halves, float *out, __m512 y0, __m512 y1, __mmask16 m0, __mmask16 m1,
              int relu6, const float *residual)
{
    if (residual) {
        y0 = _mm512_add_ps(y0, _mm512_maskz_loadu_ps(m0, residual));
        y1 = _mm512_add_ps(y1, _mm512_maskz_loadu_ps(m1, residual + 16));
    } else if (relu6) {
        const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
        y0 = _mm512_min_ps(_mm512_max_ps(y0, zero), six);
        y1 = _mm512_min_ps(_mm512_max_ps(y1, zero), six);
    }
    _mm512_mask_storeu_ps(out, m0, y0);
    if (halves == 2) _mm512_mask_storeu_ps(out + 16, m1, y1);
}
#endif

#endif
