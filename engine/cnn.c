/*
 * SSDLite-MobileNetV2 (COCO) forward pass, in the manner of llama2.c's run.c: a Weights
 * struct of pointers into the mapped .csw file, a RunState of scratch buffers owned by
 * the session, and forward() reading like the architecture.
 *
 * Activations are HWC float32 (channels innermost), so a 1x1 convolution is one sgemm
 * [H*W, Cin] x [Cin, Cout], and a depthwise convolution is a loop over channels that
 * the compiler vectorises. Batch norm is folded into the weights by the converter
 * (models/backbone/convert.py documents the tensor names and the folding).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Our own 1x1 kernels and the helper threads that split a layer: AVX-512, or AVX2 +
 * FMA (the same packed weights and the same order of operations per output, so both give
 * the same bits). Elsewhere OpenBLAS sgemm (blas.h), one thread. */
#if defined(__AVX512F__)
#include <immintrin.h>
#define CNN_AVX512 1
#define CNN_SIMD 1
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define CNN_AVX2 1
#define CNN_SIMD 1
#endif

#include "blas.h"
#include "cnn.h"
#include "cnn_int8.h"
#include "parallel.h"
#include "lines.h"
#include "prefetch.h"
#include "store_row.h"

/* ------------------------------------------------------------------ architecture */

#define N_BLOCKS 17
#define N_EXTRA 4
#define N_HEADS 6
#define CONV0_OUT 32
#define FEATURE_DIM 1280
#define MAX_CLASSES CE_NUM_CLASSES

/* The inverted-residual blocks: expansion factor, output channels, stride; one line per
 * stage. */
/* clang-format off */
static const struct { int t, c, s; } BLOCKS[N_BLOCKS] = {
    {1, 16, 1},
    {6, 24, 2}, {6, 24, 1},
    {6, 32, 2}, {6, 32, 1}, {6, 32, 1},
    {6, 64, 2}, {6, 64, 1}, {6, 64, 1}, {6, 64, 1},
    {6, 96, 1}, {6, 96, 1}, {6, 96, 1},
    {6, 160, 2}, {6, 160, 1}, {6, 160, 1},
    {6, 320, 1},
};
/* clang-format on */
/* The block whose expansion output (19x19x576, stride 16) is the first feature map:
 * "layer_15/expansion_output" in the TF OD API, expanded_conv_13/expand in the graph.
 * The API calls it mid_pooled (pooled), and "fm0" in capengine_debug.h (the map). */
#define FM0_BLOCK 13
/* SSDLite extra layers: 1x1 reduce channels, output channels (3x3 depthwise stride 2). */
static const struct {
    int mid, out;
} EXTRA[N_EXTRA] = {{256, 512}, {128, 256}, {128, 256}, {64, 128}};
/* Feature map sizes and anchors per cell of the six box predictors. */
static const int HEAD_SIZE[N_HEADS] = {19, 10, 5, 3, 2, 1};
static const int HEAD_CHANNELS[N_HEADS] = {576, 1280, 512, 256, 256, 128};
static const int HEAD_ANCHORS[N_HEADS] = {3, 6, 6, 6, 6, 6};

/* ------------------------------------------------------------------ weights and state */

typedef struct {
    const float *w, *b;
    /* 1x1 and the first conv on AVX-512 / AVX2: w repacked by blocks of 32 output channels,
     * [cout/32][cin][32], zero-padded past cout (weights read in order, no masks). */
    const float *packed;
    /* The int8 CNN's copy of a 1x1 (CE_OPEN_CNN_INT8; cnn_int8.h): int8, or bfloat16
     * for the projections; w == NULL in the copy not made. */
    ce_q8_matrix q8;
    ce_bf16_matrix bf16;
} conv; /* weights, bias (batch norm folded) */

typedef struct {
    int cin, cexp, cout, stride;
    conv expand; /* w == NULL when the expansion factor is 1 */
    conv dw, project;
} block;

typedef struct {
    int cin, mid, out;
    conv reduce, dw, expand;
} extra_layer;

typedef struct {
    conv box_dw, box_pw, cls_dw, cls_pw;
} head;

struct cnn_net {
    conv conv0; /* 3x3 stride 2, 3 -> 32, HWIO */
    block blocks[N_BLOCKS];
    conv conv1; /* 1x1, 320 -> 1280 */
    extra_layer extra[N_EXTRA];
    head heads[N_HEADS];
    float anchors[CE_NUM_ANCHORS][4];
    float box_scales[4];
    void *packs[64]; /* the `packed` (or int8 / bfloat16) copies, owned */
    int n_packs;
};

struct cnn_state {
    float *input;  /* 300x300x3 */
    float *cols;   /* im2col of the first conv: 150*150 x 27 (NULL on AVX-512: not needed) */
    float *x, *y;  /* block input / output (ping-pong) */
    float *e;      /* expansion output */
    float *d;      /* depthwise output */
    float *h;      /* predictor depthwise output */
    float *box;    /* [1917][4] box encodings */
    float *logits; /* [1917][91] class logits */
    ce_pool *pool; /* helpers for ce__threads() > 1 (AVX-512 build), else NULL */
    size_t max_e;  /* floats in e; 0 = no fused blocks (the portable build) */
};

/* ------------------------------------------------------------------ forward */

typedef struct {
    ce_cnn_tap_fn fn;
    void *ctx;
} tap;

static inline float relu6f(float v)
{
    /* Not fminf/fmaxf: their NaN rules keep them library calls; these compile to
     * min/max instructions and vectorise. */
    v = v > 0.0f ? v : 0.0f;
    return v < 6.0f ? v : 6.0f;
}

static void pointwise(ce_pool *pool, const float *in, int pixels, int cin, const conv *p, int cout,
                      int relu6, const float *residual, float *out);
static void dw_project(ce_pool *pool, const float *in, int h, int w, int c, int stride,
                       const conv *dw, const conv *pw, int cout, int relu6, const float *residual,
                       float *scratch, float *out, int *oh, int *ow);
static void depthwise_rows(const float *in, int row0, int h, int w, int c, int stride,
                           const conv *p, int pt, int pl, int oy0, int oy1, int ow, float *out);
static int same_pad_before(int in, int stride, int *out);
static int small_map_threaded(const cnn_state *st, const block *b, int h, int w);
static int fused_block(ce_pool *pool, const block *b, const float *x, int h, int w, float *ebuf,
                       size_t max_e, float *d, float *out, int *oh, int *ow);
static void conv3x3_first(ce_pool *pool, const float *in, const conv *p, float *cols, float *out);
static void run_head(const cnn_net *net, cnn_state *st, int k, const float *fm, int anchor0);
static void mean_pool(const float *in, int pixels, int c, float *out);
static void emit(const tap *t, const char *name, const float *data, int h, int w, int c);

/* Runs the network on the preprocessed input in st->input; fills box/logits and the
 * feature outputs of `out`. */
static void forward(const cnn_net *net, cnn_state *st, ce_cnn_output *out, const tap *t)
{
    char name[32];
    int h = CE_INPUT_SIZE / 2, w = CE_INPUT_SIZE / 2, c = CONV0_OUT;
    emit(t, "input", st->input, CE_INPUT_SIZE, CE_INPUT_SIZE, 3);

    conv3x3_first(st->pool, st->input, &net->conv0, st->cols, st->x);
    emit(t, "conv0", st->x, h, w, c);

    /* MobileNetV2: expand (1x1, ReLU6) -> depthwise 3x3 (ReLU6) -> project (1x1, linear),
     * with a residual add when the shape is kept. */
    for (int i = 0; i < N_BLOCKS; i++) {
        const block *b = &net->blocks[i];
        int oh, ow;
        if (b->expand.w && i != FM0_BLOCK && st->max_e && !small_map_threaded(st, b, h, w) &&
            fused_block(st->pool, b, st->x, h, w, st->e, st->max_e, st->d, st->y, &oh, &ow)) {
            float *tmp = st->x;
            st->x = st->y;
            st->y = tmp;
            h = oh, w = ow, c = b->cout;
            snprintf(name, sizeof name, "block%d", i);
            emit(t, name, st->x, h, w, c);
            continue;
        }
        const float *dw_in = st->x;
        if (b->expand.w) {
            pointwise(st->pool, st->x, h * w, b->cin, &b->expand, b->cexp, 1, NULL, st->e);
            dw_in = st->e;
        }
        if (i == FM0_BLOCK) {
            emit(t, "fm0", st->e, h, w, b->cexp);
            mean_pool(st->e, h * w, b->cexp, out->mid_pooled);
            run_head(net, st, 0, st->e, 0);
        }
        int keep = b->stride == 1 && b->cin == b->cout;
        dw_project(st->pool, dw_in, h, w, b->cexp, b->stride, &b->dw, &b->project, b->cout, 0,
                   keep ? st->x : NULL, st->d, st->y, &oh, &ow);
        float *tmp = st->x;
        st->x = st->y;
        st->y = tmp;
        h = oh, w = ow, c = b->cout;
        snprintf(name, sizeof name, "block%d", i);
        emit(t, name, st->x, h, w, c);
    }

    pointwise(st->pool, st->x, h * w, c, &net->conv1, FEATURE_DIM, 1, NULL, st->y);
    c = FEATURE_DIM;
    float *fm = st->y;
    emit(t, "fm1", fm, h, w, c);
    mean_pool(fm, h * w, c, out->pooled);
    int anchor0 = HEAD_SIZE[0] * HEAD_SIZE[0] * HEAD_ANCHORS[0];
    run_head(net, st, 1, fm, anchor0);
    anchor0 += h * w * HEAD_ANCHORS[1];

    /* SSDLite extra layers: 1x1 reduce -> depthwise 3x3 stride 2 -> 1x1 expand. */
    for (int k = 0; k < N_EXTRA; k++) {
        const extra_layer *x = &net->extra[k];
        pointwise(st->pool, fm, h * w, x->cin, &x->reduce, x->mid, 1, NULL, st->e);
        int oh, ow;
        float *next = fm == st->x ? st->y : st->x;
        dw_project(st->pool, st->e, h, w, x->mid, 2, &x->dw, &x->expand, x->out, 1, NULL, st->d,
                   next, &oh, &ow);
        fm = next;
        h = oh, w = ow, c = x->out;
        snprintf(name, sizeof name, "fm%d", k + 2);
        emit(t, name, fm, h, w, c);
        run_head(net, st, k + 2, fm, anchor0);
        anchor0 += h * w * HEAD_ANCHORS[k + 2];
    }
    emit(t, "box_encodings", st->box, CE_NUM_ANCHORS, 1, 4);
    emit(t, "class_logits", st->logits, CE_NUM_ANCHORS, 1, CE_NUM_CLASSES);
}

int ce_cnn_run_tapped(ce_session *s, const ce_image *img, ce_cnn_output *out, ce_cnn_tap_fn fn,
                      void *ctx, ce_err *err)
{
    ce_err scratch_err;
    if (!err) err = &scratch_err;
    const cnn_net *net = s ? ce__session_cnn_net(s) : NULL;
    cnn_state *st = s ? ce__session_cnn(s) : NULL;
    if (!net || !st) {
        snprintf(err->msg, sizeof err->msg, "the model was opened without the CNN (text only)");
        return -EINVAL;
    }
    if (!img || !img->pixels || img->width < 1 || img->height < 1) {
        snprintf(err->msg, sizeof err->msg, "empty image");
        return -EINVAL;
    }
#ifdef CNN_SIMD
    /* The helpers follow ce_set_blas_threads (1 in the daemon's workers: none). */
    if (ce__pool_size(st->pool) != ce__threads()) {
        ce__pool_free(st->pool);
        if (ce__pool_new(ce__threads(), &st->pool) < 0) st->pool = NULL; /* then serial */
    }
#endif
    tap t = {fn, ctx};
    ce__resize_input(st->pool, img, st->input);
    forward(net, st, out, &t);
    ce__postprocess(st->box, st->logits, net->anchors, net->box_scales, out);
    return 0;
}

int ce_cnn_run(ce_session *s, const ce_image *img, ce_cnn_output *out, ce_err *err)
{
    return ce_cnn_run_tapped(s, img, out, NULL, NULL, err);
}

/* ------------------------------------------------------------------ layers */

/* out[p][o] = act(sum_i in[p][i] * W[i][o] + b[o] (+ residual[p][o])).
 * Large outputs go through in chunks of pixels so that the bias / ReLU6 / residual pass
 * finds the sgemm's output still in cache instead of reading it back from memory. */
#define CHUNK_FLOATS (64 * 1024)

/* The 1x1 kernels read their packed weight rows (128 bytes per input channel) from L2,
 * once per tile of pixels: each is prefetched this many input channels ahead (CNN
 * 23.8 -> 21.7 ms at 1 thread, A/B runs of bench_cnn). */
#define PW_PREFETCH 8

#ifdef CNN_AVX512
/* The 1x1 kernel: 12 pixels x 32 output channels (two 16-lane halves, masked at the
 * layer's last channels), all cin inputs; each weight row W[i][o..o+32) is loaded once
 * and used for 12 pixels, each input broadcast once and used for 32 channels; 24
 * accumulators in registers (named one by one: as an array, GCC stored them back to the
 * stack on every step). Bias, ReLU6 or the residual are applied before the single store.
 * The last tile of a call, mr < 12 pixels, runs an instance for 4 or 8 pixels when that
 * covers it (`rows`, a constant at every call), repeating its last pixel up to `rows`
 * and storing only mr: a 10x10 map's 100 pixels cost 100, not 108, and a 5-row tile's
 * 50 cost 52, not 60. */
#define PW_MR 12
#define PW_REP(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)
static inline __attribute__((always_inline)) void
pw_tile(const int halves, const int rows, int mr, const float *restrict in, int cin,
        const float *restrict w, int cout, const float *restrict b, __mmask16 m0, __mmask16 m1,
        int relu6, const float *restrict residual, float *restrict out)
{
    const __m512 b0 = _mm512_maskz_loadu_ps(m0, b), b1 = _mm512_maskz_loadu_ps(m1, b + 16);
#define PW_INIT(r)                                                                                 \
    __m512 a##r##_0 = b0, a##r##_1 = b1;                                                           \
    __m256 h##r = _mm512_castps512_ps256(b1);                                                      \
    const float *restrict x##r = in + (size_t)((r) < mr ? (r) : mr - 1) * cin;
    PW_REP(PW_INIT)
#undef PW_INIT
    for (int i = 0; i < cin; i++) {
        ce__prefetch(w, (size_t)(i + PW_PREFETCH) * 32 * sizeof *w);
        if (halves > 1) ce__prefetch(w, ((size_t)(i + PW_PREFETCH) * 32 + 16) * sizeof *w);
        const __m512 w0 = _mm512_load_ps(w + (size_t)i * 32);
        const __m512 w1 = _mm512_load_ps(w + (size_t)i * 32 + 16);
        const __m256 w1h = _mm256_load_ps(w + (size_t)i * 32 + 16);
#define PW_FMA(r)                                                                                  \
    if ((r) < rows) {                                                                              \
        const __m512 v = _mm512_set1_ps(x##r[i]);                                                  \
        a##r##_0 = _mm512_fmadd_ps(v, w0, a##r##_0);                                               \
        if (halves == 2) a##r##_1 = _mm512_fmadd_ps(v, w1, a##r##_1);                              \
        if (halves == 3) h##r = _mm256_fmadd_ps(_mm512_castps512_ps256(v), w1h, h##r);             \
    }
        PW_REP(PW_FMA)
#undef PW_FMA
    }
#define PW_STORE(r)                                                                                \
    if (halves == 3) a##r##_1 = _mm512_zextps256_ps512(h##r);                                      \
    if ((r) < mr)                                                                                  \
        ce__store_row(halves > 1 ? 2 : 1, out + (size_t)(r)*cout, a##r##_0, a##r##_1, m0, m1,      \
                      relu6, residual ? residual + (size_t)(r)*cout : NULL);
    PW_REP(PW_STORE)
#undef PW_STORE
}
#undef PW_REP

/* The instance for mr pixels: 12, or 8 or 4 when that covers the call's last tile. */
static inline __attribute__((always_inline)) void
pw_tile_sized(const int halves, int mr, const float *in, int cin, const float *w, int cout,
              const float *b, __mmask16 m0, __mmask16 m1, int relu6, const float *residual,
              float *out)
{
    if (mr > 8) pw_tile(halves, 12, mr, in, cin, w, cout, b, m0, m1, relu6, residual, out);
    else if (mr > 4) pw_tile(halves, 8, mr, in, cin, w, cout, b, m0, m1, relu6, residual, out);
    else pw_tile(halves, 4, mr, in, cin, w, cout, b, m0, m1, relu6, residual, out);
}

static void pw_tile32(int mr, const float *in, int cin, const float *w, int cout, const float *b,
                      __mmask16 m0, __mmask16 m1, int relu6, const float *residual, float *out)
{
    pw_tile_sized(2, mr, in, cin, w, cout, b, m0, m1, relu6, residual, out);
}

/* The last block of a layer whose width leaves 24 channels or fewer: the second half
 * in 8 lanes (a 256-bit FMA, which a Zen 4 issues at twice the rate of a 512-bit one:
 * blocks 1 and 2, projecting to 24 channels, 1.39/1.18 -> 1.31/1.10 ms); 16 or fewer:
 * half the work. */
static void pw_tile24(int mr, const float *in, int cin, const float *w, int cout, const float *b,
                      __mmask16 m0, __mmask16 m1, int relu6, const float *residual, float *out)
{
    pw_tile_sized(3, mr, in, cin, w, cout, b, m0, m1, relu6, residual, out);
}

static void pw_tile16(int mr, const float *in, int cin, const float *w, int cout, const float *b,
                      __mmask16 m0, int relu6, const float *residual, float *out)
{
    pw_tile_sized(1, mr, in, cin, w, cout, b, m0, 0, relu6, residual, out);
}

/* One tile of mr pixels against the 32-channel block at w, of which `left` channels
 * (1..32 and more) are the layer's. */
static void pw_block(int mr, const float *x, int cin, const float *w, int cout, const float *b,
                     int left, int relu6, const float *r, float *y)
{
    __mmask16 m0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
    __mmask16 m1 = left >= 32  ? 0xFFFF
                   : left > 16 ? (__mmask16)((1u << (left - 16)) - 1)
                               : 0;
    if (m1 > 0xFF) pw_tile32(mr, x, cin, w, cout, b, m0, m1, relu6, r, y);
    else if (m1) pw_tile24(mr, x, cin, w, cout, b, m0, m1, relu6, r, y);
    else pw_tile16(mr, x, cin, w, cout, b, m0, relu6, r, y);
}
#endif

#ifdef CNN_AVX2
/* The 1x1 kernel on AVX2: 6 pixels x 16 output channels (one half of a packed 32-channel
 * block, two 8-lane quarters), all cin inputs: per input, 2 weight loads and 6 broadcasts
 * feed 12 FMAs into 12 accumulators (15 of the 16 registers). Same packed weights, and
 * per output the same operations in the same order as the AVX-512 kernel (bias, then
 * one FMA per input), so the two give identical results. A layer's last channels, when
 * fewer than 16, run only the quarters they need and are stored through a buffer. */
#define PW_MR 6
#define PW_REP(M) M(0) M(1) M(2) M(3) M(4) M(5)
static inline __attribute__((always_inline)) void
pw_half(const int quarters, const int full, int mr, const float *restrict in, int cin,
        const float *restrict w, int cout, const float *restrict b, int left, int relu6,
        const float *restrict residual, float *restrict out)
{
#define PW_INIT(r)                                                                                 \
    __m256 a##r##_0 = _mm256_loadu_ps(b), a##r##_1 = _mm256_loadu_ps(b + 8);                       \
    const float *restrict x##r = in + (size_t)((r) < mr ? (r) : mr - 1) * cin;
    PW_REP(PW_INIT)
#undef PW_INIT
    for (int i = 0; i < cin; i++) {
        ce__prefetch(w, (size_t)(i + PW_PREFETCH) * 32 * sizeof *w);
        const __m256 w0 = _mm256_load_ps(w + (size_t)i * 32);
        const __m256 w1 = quarters > 1 ? _mm256_load_ps(w + (size_t)i * 32 + 8) : w0;
#define PW_FMA(r)                                                                                  \
    {                                                                                              \
        const __m256 v = _mm256_broadcast_ss(x##r + i);                                            \
        a##r##_0 = _mm256_fmadd_ps(v, w0, a##r##_0);                                               \
        if (quarters > 1) a##r##_1 = _mm256_fmadd_ps(v, w1, a##r##_1);                             \
    }
        PW_REP(PW_FMA)
#undef PW_FMA
    }
    const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
    float edge[16];
#define PW_Q(r, q)                                                                                 \
    if (full) {                                                                                    \
        if (residual)                                                                              \
            a##r##_##q = _mm256_add_ps(a##r##_##q,                                                 \
                                       _mm256_loadu_ps(residual + (size_t)(r)*cout + 8 * (q)));    \
        else if (relu6) a##r##_##q = _mm256_min_ps(_mm256_max_ps(a##r##_##q, zero), six);          \
        _mm256_storeu_ps(out + (size_t)(r)*cout + 8 * (q), a##r##_##q);                            \
    } else if (quarters > (q)) {                                                                   \
        _mm256_storeu_ps(edge + 8 * (q), a##r##_##q);                                              \
    }
#define PW_STORE(r)                                                                                \
    if ((r) < mr) {                                                                                \
        PW_Q(r, 0) PW_Q(r, 1)                                                                      \
        for (int k = 0; !full && k < left; k++) {                                                  \
            float v = edge[k];                                                                     \
            if (residual) v += residual[(size_t)(r)*cout + k];                                     \
            else if (relu6) v = relu6f(v);                                                         \
            out[(size_t)(r)*cout + k] = v;                                                         \
        }                                                                                          \
    }
    PW_REP(PW_STORE)
#undef PW_STORE
#undef PW_Q
}
#undef PW_REP

/* One tile of mr pixels against the 32-channel block at w, of which `left` channels
 * (1..32 and more) are the layer's: its two halves in turn. */
static void pw_block(int mr, const float *x, int cin, const float *w, int cout, const float *b,
                     int left, int relu6, const float *r, float *y)
{
    for (int h = 0; h < 32 && h < left; h += 16) {
        int n = left - h;
        const float *rh = r ? r + h : NULL;
        if (n >= 16) {
            pw_half(2, 1, mr, x, cin, w + h, cout, b + h, 16, relu6, rh, y + h);
            continue;
        }
        float bias[16] = {0}; /* the kernel reads 16: the layer's, then zeros */
        memcpy(bias, b + h, sizeof(float) * (size_t)n);
        if (n > 8) pw_half(2, 0, mr, x, cin, w + h, cout, bias, n, relu6, rh, y + h);
        else pw_half(1, 0, mr, x, cin, w + h, cout, bias, n, relu6, rh, y + h);
    }
}
#endif

#ifdef CNN_SIMD

/* Pixels [p0, p1): columns in slices whose weights (cin x slice floats) stay in L2
 * while those pixels pass; within a slice, MR pixels at a time over all its 32-channel
 * blocks, so the MR input rows stay in L1. */
static void pointwise_range(const float *in, int p0, int p1, int cin, const conv *p, int cout,
                            int relu6, const float *residual, float *out)
{
    if (p->q8.w) {
        ce__q8_pointwise_range(in, p0, p1, &p->q8, p->b, relu6, residual, out);
        return;
    }
    if (p->bf16.w) {
        ce__bf16_pointwise_range(in, p0, p1, &p->bf16, p->b, relu6, residual, out);
        return;
    }
    int slice = (256 * 1024 / 4) / cin / 32 * 32;
    if (slice < 32) slice = 32;
    for (int o0 = 0; o0 < cout; o0 += slice) {
        int o1 = o0 + slice < cout ? o0 + slice : cout;
        for (int q = p0; q < p1; q += PW_MR) {
            int mr = p1 - q < PW_MR ? p1 - q : PW_MR;
            const float *x = in + (size_t)q * cin;
            const float *res = residual ? residual + (size_t)q * cout : NULL;
            for (int o = o0; o < o1; o += 32) {
                const float *w = p->packed + (size_t)(o / 32) * cin * 32, *b = p->b + o;
                const float *r = res ? res + o : NULL;
                pw_block(mr, x, cin, w, cout, b, o1 - o, relu6, r, out + (size_t)q * cout + o);
            }
        }
    }
}

typedef struct {
    const float *in, *residual;
    const conv *p;
    float *out;
    int pixels, per_task, cin, cout, relu6;
} pw_job;

static void pw_task(void *ctx, int t)
{
    const pw_job *j = ctx;
    int p0 = t * j->per_task, p1 = p0 + j->per_task < j->pixels ? p0 + j->per_task : j->pixels;
    pointwise_range(j->in, p0, p1, j->cin, j->p, j->cout, j->relu6, j->residual, j->out);
}

/* Split by pixels, a few tasks per thread (whole MR tiles) so that a thread the
 * scheduler delays leaves its share to the others. */
static void pointwise_simd(ce_pool *pool, const float *in, int pixels, int cin, const conv *p,
                           int cout, int relu6, const float *residual, float *out)
{
    int threads = ce__pool_size(pool);
    int tiles = (pixels + PW_MR - 1) / PW_MR;
    if (threads == 1 || tiles < 2 * threads || (double)pixels * cin * cout < 2e5) {
        pointwise_range(in, 0, pixels, cin, p, cout, relu6, residual, out);
        return;
    }
    int n_tasks = 4 * threads < tiles ? 4 * threads : tiles;
    int per_task = (tiles + n_tasks - 1) / n_tasks * PW_MR;
    pw_job j = {in, residual, p, out, pixels, per_task, cin, cout, relu6};
    ce__parallel_for(pool, (pixels + per_task - 1) / per_task, pw_task, &j);
}
#endif

static void pointwise(ce_pool *pool, const float *in, int pixels, int cin, const conv *p, int cout,
                      int relu6, const float *residual, float *out)
{
#ifdef CNN_SIMD
    pointwise_simd(pool, in, pixels, cin, p, cout, relu6, residual, out);
    return;
#endif
    (void)pool;
    int chunk = CHUNK_FLOATS / cout;
    if (chunk < 16) chunk = 16;
    const float *restrict b = p->b;
    for (int p0 = 0; p0 < pixels; p0 += chunk) {
        int n = pixels - p0 < chunk ? pixels - p0 : chunk;
        float *restrict o = out + (size_t)p0 * cout;
        ce__blas.sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, cout, cin, 1.0f,
                    in + (size_t)p0 * cin, cin, p->w, cout, 0.0f, o, cout);
        size_t total = (size_t)n * cout;
        if (residual) {
            const float *restrict r = residual + (size_t)p0 * cout;
            for (size_t i = 0; i < total; i += (size_t)cout)
                for (int k = 0; k < cout; k++) o[i + k] += b[k] + r[i + k];
        } else if (relu6) {
            for (size_t i = 0; i < total; i += (size_t)cout)
                for (int k = 0; k < cout; k++) o[i + k] = relu6f(o[i + k] + b[k]);
        } else {
            for (size_t i = 0; i < total; i += (size_t)cout)
                for (int k = 0; k < cout; k++) o[i + k] += b[k];
        }
    }
}

/* Depthwise then a 1x1 convolution, by tiles of output rows: each tile of the depthwise
 * output is consumed by the 1x1 while it is still in cache. The tiles go in bands (one
 * band per task): a band writes all its tiles' depthwise output to the same place, the
 * scratch rows of its first tile, so the stores hit lines already in cache; a scratch
 * that moved with the tile sent every store to a line last touched one image ago (CNN
 * depthwise 25-37 GFLOP/s in the network against 65-80 on a cached input). With helper
 * threads there are two bands per thread when there are enough tiles, else each 1x1 is
 * split. */
typedef struct {
    const float *in, *residual;
    const conv *dw, *pw;
    float *scratch, *out;
    int h, w, c, stride, cout, relu6, pt, pl, oh, ow, rows, band_tiles, tiles;
    ce_pool *inner;
} dwp_job;

static void dwp_band(void *ctx, int band)
{
    const dwp_job *j = ctx;
    int t0 = band * j->band_tiles,
        t1 = t0 + j->band_tiles < j->tiles ? t0 + j->band_tiles : j->tiles;
    float *d = j->scratch + (size_t)t0 * j->rows * j->ow * j->c;
    for (int t = t0; t < t1; t++) {
        int oy0 = t * j->rows, oy1 = oy0 + j->rows < j->oh ? oy0 + j->rows : j->oh;
        size_t at = (size_t)oy0 * j->ow;
        depthwise_rows(j->in, 0, j->h, j->w, j->c, j->stride, j->dw, j->pt, j->pl, oy0, oy1, j->ow,
                       d);
        pointwise(j->inner, d, (oy1 - oy0) * j->ow, j->c, j->pw, j->cout, j->relu6,
                  j->residual ? j->residual + at * j->cout : NULL, j->out + at * j->cout);
    }
}

static void dw_project(ce_pool *pool, const float *in, int h, int w, int c, int stride,
                       const conv *dw, const conv *pw, int cout, int relu6, const float *residual,
                       float *scratch, float *out, int *oh, int *ow)
{
    int pt = same_pad_before(h, stride, oh);
    int pl = same_pad_before(w, stride, ow);
    int rows = CHUNK_FLOATS / (*ow * c);
    if (rows < 1) rows = 1;
    int tiles = (*oh + rows - 1) / rows, threads = ce__pool_size(pool);
    if (threads > 1 && tiles < 2 * threads && *oh >= 2 * threads) {
        /* Few big tiles: smaller ones, one or more per thread. */
        rows = (*oh + 2 * threads - 1) / (2 * threads);
        tiles = (*oh + rows - 1) / rows;
    }
    int split_tiles = threads > 1 && tiles >= threads;
    int bands = split_tiles ? (tiles < 2 * threads ? tiles : 2 * threads) : 1;
    int band_tiles = (tiles + bands - 1) / bands;
    bands = (tiles + band_tiles - 1) / band_tiles;
    dwp_job j = {
        in,   residual, dw, pw, scratch, out, h,    w,          c,     stride,
        cout, relu6,    pt, pl, *oh,     *ow, rows, band_tiles, tiles, split_tiles ? NULL : pool};
    ce__parallel_for(split_tiles ? pool : NULL, bands, dwp_band, &j);
}

/* A whole inverted-residual block (expand 1x1 ReLU6 -> depthwise 3x3 ReLU6 -> project
 * 1x1, + residual) by bands of output rows, never materialising the expansion: each band
 * keeps a window of expanded input rows in `ebuf` (a few rows, in L2), slides it down
 * (the rows the next tile shares are moved, not recomputed) and expands only the new
 * rows. The expansion of the early blocks is 2 to 9 MB; written out and read back it
 * costs more than the arithmetic. Bands (one or more per thread) start afresh: only
 * their first window is recomputed. */
typedef struct {
    const block *b;
    const float *x;
    float *ebuf, *d, *out;
    int h, w, oh, ow, pt, pl, rows, band_rows, ebuf_floats;
} blk_job;

static void block_band(void *ctx, int t)
{
    const blk_job *j = ctx;
    const block *b = j->b;
    const int s = b->stride, w = j->w, ce = b->cexp, ci = b->cin;
    const float *residual = b->stride == 1 && b->cin == b->cout ? j->x : NULL;
    float *ebuf = j->ebuf + (size_t)t * j->ebuf_floats;
    int oy_a = t * j->band_rows, oy_b = oy_a + j->band_rows < j->oh ? oy_a + j->band_rows : j->oh;
    /* every tile's depthwise output goes to the band's first rows (see dw_project) */
    float *d = j->d + (size_t)oy_a * j->ow * ce;
    int have0 = 0, have1 = 0; /* ebuf holds expanded input rows [have0, have1) */
    for (int oy0 = oy_a; oy0 < oy_b; oy0 += j->rows) {
        int oy1 = oy0 + j->rows < oy_b ? oy0 + j->rows : oy_b;
        int n0 = oy0 * s - j->pt, n1 = (oy1 - 1) * s - j->pt + 3;
        n0 = n0 < 0 ? 0 : n0;
        n1 = n1 > j->h ? j->h : n1;
        if (n0 >= have0 && n0 < have1) {
            memmove(ebuf, ebuf + (size_t)(n0 - have0) * w * ce,
                    sizeof(float) * (size_t)(have1 - n0) * w * ce);
            have0 = n0;
        } else {
            have0 = have1 = n0;
        }
        pointwise(NULL, j->x + (size_t)have1 * w * ci, (n1 - have1) * w, ci, &b->expand, ce, 1,
                  NULL, ebuf + (size_t)(have1 - have0) * w * ce);
        have1 = n1;
        size_t at = (size_t)oy0 * j->ow;
        depthwise_rows(ebuf, have0, j->h, w, ce, s, &b->dw, j->pt, j->pl, oy0, oy1, j->ow, d);
        pointwise(NULL, d, (oy1 - oy0) * j->ow, ce, &b->project, b->cout, 0,
                  residual ? residual + at * b->cout : NULL, j->out + at * b->cout);
    }
}

/* The window of expanded rows a band holds: with the tile's depthwise output (about a
 * third of it) and the two 1x1 layers' weights it stays within a 1 MB L2. 384 KB rather
 * than 192: larger tiles leave fewer part-filled 12-pixel tiles and window slides (float
 * CNN at 1 thread faster in 6 of 6 alternating bench_cnn pairs, by 0.2-1.6 ms; int8 and 2
 * threads within noise). Same bits: every output takes the same products in the same
 * order whatever the tile. */
#define FUSED_WINDOW_FLOATS (384 * 1024 / 4)

/* Returns 0 when the bands' windows do not fit in ebuf (max_e floats): then the caller
 * runs the block layer by layer. */
static int fused_block(ce_pool *pool, const block *b, const float *x, int h, int w, float *ebuf,
                       size_t max_e, float *d, float *out, int *oh, int *ow)
{
    int pt = same_pad_before(h, b->stride, oh);
    int pl = same_pad_before(w, b->stride, ow);
    size_t row = (size_t)w * b->cexp;
    /* Output rows per tile: the window ((rows - 1) * stride + 3 input rows) near
     * FUSED_WINDOW_FLOATS. */
    int rows = (int)((FUSED_WINDOW_FLOATS / row - 3) / (size_t)b->stride + 1);
    if (rows < 1 || FUSED_WINDOW_FLOATS / row < 3) rows = 1;
    if (rows > *oh) rows = *oh;
    int threads = ce__pool_size(pool);
    int bands = threads == 1 ? 1 : 2 * threads < *oh ? 2 * threads : *oh;
    int band_rows = (*oh + bands - 1) / bands;
    bands = (*oh + band_rows - 1) / band_rows;
    size_t window = (size_t)((rows - 1) * b->stride + 3) * row;
    if (window * (size_t)bands > max_e) return 0;
    blk_job j = {b, x, ebuf, d, out, h, w, *oh, *ow, pt, pl, rows, band_rows, (int)window};
    ce__parallel_for(pool, bands, block_band, &j);
    return 1;
}

/* Whether a block runs layer by layer, not fused, because its expansion is small and
 * several threads share it. Fused, each band expands its own window of input rows, and
 * the windows of neighbouring bands overlap: on a 10x10 map cut into 4 bands, 18 input
 * rows are expanded for 10. An expansion of at most 1 MB stays in the caches anyway, so
 * the split by pixels costs no extra arithmetic (issue 14: CNN at 2 threads 10.8-11.7 ->
 * 9.9-10.1 ms on an AMD Zen 4, alternating runs). Same bits either way: every output
 * takes the same products in the same order (test_cnn_threads). */
#define SMALL_EXPANSION_BYTES (1 << 20)

static int small_map_threaded(const cnn_state *st, const block *b, int h, int w)
{
    return ce__pool_size(st->pool) > 1 &&
           (size_t)h * w * b->cexp * sizeof(float) <= SMALL_EXPANSION_BYTES;
}

/* TensorFlow "SAME" padding: output ceil(in / stride), the odd padding pixel after. */
static int same_pad_before(int in, int stride, int *out)
{
    *out = (in + stride - 1) / stride;
    int total = (*out - 1) * stride + 3 - in;
    return total > 0 ? total / 2 : 0;
}

/* Depthwise 3x3 with the folded batch norm and ReLU6, one output pixel at a time.
 * Channels go in blocks of a compile-time width so that the accumulators of all nine
 * taps stay in vector registers and each output is written once; the block of 64 gives
 * four independent FMA chains, enough to hide their latency. Taps that fall in the
 * padding are skipped per pixel, so the inner loops have no branches. */
static inline __attribute__((always_inline)) void
dw_block(const float *restrict in, int w, int c, const float *restrict wt, const float *restrict b,
         int iy0, int ix0, int ky0, int ky1, int kx0, int kx1, int c0, float *restrict o,
         const int cb)
{
    float acc[64];
    for (int k = 0; k < cb; k++) acc[k] = b[c0 + k];
    for (int ky = ky0; ky < ky1; ky++) {
        for (int kx = kx0; kx < kx1; kx++) {
            const float *restrict ip = in + ((size_t)(iy0 + ky) * w + ix0 + kx) * c + c0;
            const float *restrict wp = wt + (ky * 3 + kx) * c + c0;
            for (int k = 0; k < cb; k++) acc[k] += ip[k] * wp[k];
        }
    }
    for (int k = 0; k < cb; k++) o[c0 + k] = relu6f(acc[k]);
}

#ifdef CNN_SIMD
/* The interior of an output row (every output pixel whose three input columns are all
 * inside the image): one block of DW_LANES channels at a time, its (ky1 - ky0) x 3
 * weights held in registers for the whole row, DW_PX pixels per step so that their FMA
 * chains overlap. Per output it makes dw_block's operations in dw_block's order (bias,
 * then one FMA per tap, ky then kx; ReLU6 as max then min), so the two give the same
 * bits, as do the AVX-512 and the AVX2 width. ky0/ky1 are constants at every call. */
#ifdef CNN_AVX512
typedef __m512 dw_vec;
#define DW_LANES 16
#define dw_load _mm512_loadu_ps
#define dw_store _mm512_storeu_ps
#define dw_fma _mm512_fmadd_ps
#define dw_relu6(v) _mm512_min_ps(_mm512_max_ps((v), _mm512_setzero_ps()), _mm512_set1_ps(6.0f))
#else
typedef __m256 dw_vec;
#define DW_LANES 8
#define dw_load _mm256_loadu_ps
#define dw_store _mm256_storeu_ps
#define dw_fma _mm256_fmadd_ps
#define dw_relu6(v) _mm256_min_ps(_mm256_max_ps((v), _mm256_setzero_ps()), _mm256_set1_ps(6.0f))
#endif
#define DW_PX 4
#define DW_UNROLL _Pragma("GCC unroll 9")

static inline __attribute__((always_inline)) void
dw_interior(const int ky0, const int ky1, const int S, const float *restrict in, int w, int c,
            const float *restrict wt, const float *restrict b, int iy0, int pl, int ox0, int ox1,
            float *restrict out)
{
    for (int c0 = 0; c0 + DW_LANES <= c; c0 += DW_LANES) {
        dw_vec wk[9];
        DW_UNROLL for (int t = ky0 * 3; t < ky1 * 3; t++) wk[t] = dw_load(wt + (size_t)t * c + c0);
        const dw_vec bias = dw_load(b + c0);
        const float *row[3];
        DW_UNROLL for (int ky = ky0; ky < ky1; ky++) row[ky] = in + (size_t)(iy0 + ky) * w * c + c0;
        int ox = ox0;
        /* DW_PX pixels: the input columns they share are loaded once (6 for stride 1, 9
         * for stride 2, instead of 12); each column goes to every pixel that has it as
         * tap kx, so every accumulator still sees its taps in kx order. */
        for (; ox + DW_PX <= ox1; ox += DW_PX) {
            const size_t at = (size_t)(ox * S - pl) * c;
            dw_vec a[DW_PX];
            DW_UNROLL for (int q = 0; q < DW_PX; q++) a[q] = bias;
            DW_UNROLL for (int ky = ky0; ky < ky1; ky++) {
                const float *ip = row[ky] + at;
                DW_UNROLL for (int j = 0; j < (DW_PX - 1) * S + 3; j++) {
                    const dw_vec v = dw_load(ip);
                    ip += c;
                    DW_UNROLL for (int q = 0; q < DW_PX; q++) {
                        const int kx = j - q * S;
                        if (kx >= 0 && kx < 3) a[q] = dw_fma(v, wk[ky * 3 + kx], a[q]);
                    }
                }
            }
            float *o = out + (size_t)ox * c + c0;
            DW_UNROLL for (int q = 0; q < DW_PX; q++) dw_store(o + (size_t)q * c, dw_relu6(a[q]));
        }
        for (; ox < ox1; ox++) {
            const size_t at = (size_t)(ox * S - pl) * c;
            dw_vec a = bias;
            DW_UNROLL for (int ky = ky0; ky < ky1; ky++)
                DW_UNROLL for (int kx = 0; kx < 3; kx++)
                    a = dw_fma(dw_load(row[ky] + at + (size_t)kx * c), wk[ky * 3 + kx], a);
            dw_store(out + (size_t)ox * c + c0, dw_relu6(a));
        }
    }
}
#endif

/* One output pixel, all channels, its taps clipped to the image. */
static void dw_pixel(const float *in, int w, int c, const conv *p, int iy0, int ky0, int ky1,
                     int ix0, float *o)
{
    const float *restrict wt = p->w, *restrict b = p->b;
    int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = w - ix0 < 3 ? w - ix0 : 3;
    int c0 = 0;
    for (; c0 + 64 <= c; c0 += 64) dw_block(in, w, c, wt, b, iy0, ix0, ky0, ky1, kx0, kx1, c0, o, 64);
    for (; c0 + 16 <= c; c0 += 16) dw_block(in, w, c, wt, b, iy0, ix0, ky0, ky1, kx0, kx1, c0, o, 16);
    for (; c0 < c; c0++) dw_block(in, w, c, wt, b, iy0, ix0, ky0, ky1, kx0, kx1, c0, o, 1);
}

/* Output rows [oy0, oy1) of the depthwise convolution; `out` points at row oy0. `in`
 * holds input rows from row0 on. */
static void depthwise_rows(const float *in, int row0, int h, int w, int c, int stride,
                           const conv *p, int pt, int pl, int oy0, int oy1, int ow, float *out)
{
    /* interior output columns [ox_a, ox_b): ox * stride - pl >= 0 and + 2 <= w - 1 */
    int ox_a = (pl + stride - 1) / stride, ox_b = w - 3 + pl >= 0 ? (w - 3 + pl) / stride + 1 : 0;
    if (ox_b > ow) ox_b = ow;
    if (ox_a > ox_b) ox_a = ox_b = ow;
    for (int oy = oy0; oy < oy1; oy++) {
        int iy0 = oy * stride - pt;
        int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = h - iy0 < 3 ? h - iy0 : 3;
        float *orow = out + (size_t)(oy - oy0) * ow * c;
        int simd = 0;
#ifdef CNN_SIMD
        const int ry = iy0 - row0;
        const int wide = c - c % DW_LANES; /* channels the vector kernel covers */
        simd = wide > 0;
        /* the vector kernel's instances: stride 1 or 2, all three input rows or the
         * first / last one in the padding */
        const int kind = simd && (stride == 1 || stride == 2) ? (stride - 1) * 16 + ky0 * 4 + ky1 : -1;
#define DW_CASE(S, K0, K1)                                                                         \
    case ((S)-1) * 16 + (K0)*4 + (K1):                                                             \
        dw_interior(K0, K1, S, in, w, c, p->w, p->b, ry, pl, ox_a, ox_b, orow);                    \
        break;
        switch (kind) {
            DW_CASE(1, 0, 3)
            DW_CASE(1, 1, 3)
            DW_CASE(1, 0, 2)
            DW_CASE(1, 1, 2)
            DW_CASE(2, 0, 3)
            DW_CASE(2, 1, 3)
            DW_CASE(2, 0, 2)
            DW_CASE(2, 1, 2)
        default: simd = 0;
        }
#undef DW_CASE
        if (simd && wide < c) /* the last channels of the interior, one at a time */
            for (int ox = ox_a; ox < ox_b; ox++) {
                int ix0 = ox * stride - pl;
                for (int c0 = wide; c0 < c; c0++)
                    dw_block(in, w, c, p->w, p->b, ry, ix0, ky0, ky1, 0, 3, c0, orow + (size_t)ox * c, 1);
            }
#endif
        for (int ox = 0; ox < ow; ox++) {
            if (simd && ox == ox_a) ox = ox_b; /* done above */
            if (ox >= ow) break;
            dw_pixel(in, w, c, p, iy0 - row0, ky0, ky1, ox * stride - pl, orow + (size_t)ox * c);
        }
    }
}

/* The first layer, 3x3 stride 2 from 3 channels: im2col (by bands of rows over the
 * pool's threads) then one 1x1 convolution over the 27 columns (AVX-512: both in one,
 * conv0_tile below). */
#define CONV0_ROWS 15 /* output rows of conv0 per task (10 tasks for its 150 rows) */

#ifndef CNN_AVX512
typedef struct {
    const float *in;
    float *cols;
    int pt, pl, oh, ow;
} im2col_job;

static void im2col_rows(void *ctx, int task)
{
    const im2col_job *j = ctx;
    const int ih = CE_INPUT_SIZE, iw = CE_INPUT_SIZE;
    const int oy1 = (task + 1) * CONV0_ROWS < j->oh ? (task + 1) * CONV0_ROWS : j->oh;
    for (int oy = task * CONV0_ROWS; oy < oy1; oy++) {
        for (int ox = 0; ox < j->ow; ox++) {
            float *col = j->cols + ((size_t)oy * j->ow + ox) * 27;
            for (int ky = 0; ky < 3; ky++) {
                int iy = oy * 2 - j->pt + ky;
                for (int kx = 0; kx < 3; kx++) {
                    int ix = ox * 2 - j->pl + kx;
                    float *dst = col + (ky * 3 + kx) * 3;
                    if (iy < 0 || iy >= ih || ix < 0 || ix >= iw) {
                        dst[0] = dst[1] = dst[2] = 0.0f;
                    } else {
                        const float *src = j->in + ((size_t)iy * iw + ix) * 3;
                        dst[0] = src[0], dst[1] = src[1], dst[2] = src[2];
                    }
                }
            }
        }
    }
}
#endif

#ifdef CNN_AVX512
/* On AVX-512 without the im2col: a tile of 12 output pixels reads its 27 inputs straight
 * from the image (stride 2: the pixels' inputs lie 6 floats apart), in the columns' order
 * (ky, kx, channel), against the same packed weights: the FMAs of the 1x1 kernel over the
 * columns, in the same order, so the same bits. A pixel that reaches the padding (the
 * last row and column) takes zeros there, as its column did. */
typedef struct {
    const float *in;
    const conv *p;
    float *out;
    int pt, pl, oh, ow;
} conv0_job;

#define C0_MR 12
#define C0_REP(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)

/* Pixels [ox0, ox0 + 12) of output row oy, all inside the image. */
static void conv0_tile(const conv0_job *j, int oy, int ox0)
{
    const float *w = j->p->packed;
    const __m512 b0 = _mm512_loadu_ps(j->p->b), b1 = _mm512_loadu_ps(j->p->b + 16);
    const float *base =
        j->in + ((size_t)(oy * 2 - j->pt) * CE_INPUT_SIZE + (size_t)(ox0 * 2 - j->pl)) * 3;
#define C0_INIT(r) __m512 a##r##_0 = b0, a##r##_1 = b1;
    C0_REP(C0_INIT)
#undef C0_INIT
    for (int ky = 0; ky < 3; ky++)
        for (int kx = 0; kx < 3; kx++)
            for (int c = 0; c < 3; c++) {
                const int i = (ky * 3 + kx) * 3 + c;
                const __m512 w0 = _mm512_load_ps(w + i * 32), w1 = _mm512_load_ps(w + i * 32 + 16);
                const float *q = base + ((size_t)ky * CE_INPUT_SIZE + (size_t)kx) * 3 + c;
#define C0_FMA(r)                                                                                  \
    {                                                                                              \
        const __m512 v = _mm512_set1_ps(q[(r)*6]);                                                 \
        a##r##_0 = _mm512_fmadd_ps(v, w0, a##r##_0);                                               \
        a##r##_1 = _mm512_fmadd_ps(v, w1, a##r##_1);                                               \
    }
                C0_REP(C0_FMA)
#undef C0_FMA
            }
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
    float *o = j->out + ((size_t)oy * j->ow + (size_t)ox0) * CONV0_OUT;
#define C0_STORE(r)                                                                                \
    _mm512_storeu_ps(o + (r)*CONV0_OUT, _mm512_min_ps(_mm512_max_ps(a##r##_0, zero), six));        \
    _mm512_storeu_ps(o + (r)*CONV0_OUT + 16, _mm512_min_ps(_mm512_max_ps(a##r##_1, zero), six));
    C0_REP(C0_STORE)
#undef C0_STORE
}
#undef C0_REP

/* One output pixel, any position: inputs outside the image are zeros. */
static void conv0_pixel(const conv0_job *j, int oy, int ox)
{
    const float *w = j->p->packed;
    __m512 a0 = _mm512_loadu_ps(j->p->b), a1 = _mm512_loadu_ps(j->p->b + 16);
    for (int ky = 0; ky < 3; ky++)
        for (int kx = 0; kx < 3; kx++) {
            int iy = oy * 2 - j->pt + ky, ix = ox * 2 - j->pl + kx;
            int inside = iy >= 0 && iy < CE_INPUT_SIZE && ix >= 0 && ix < CE_INPUT_SIZE;
            for (int c = 0; c < 3; c++) {
                const int i = (ky * 3 + kx) * 3 + c;
                float x = inside ? j->in[((size_t)iy * CE_INPUT_SIZE + (size_t)ix) * 3 + c] : 0.0f;
                const __m512 v = _mm512_set1_ps(x);
                a0 = _mm512_fmadd_ps(v, _mm512_load_ps(w + i * 32), a0);
                a1 = _mm512_fmadd_ps(v, _mm512_load_ps(w + i * 32 + 16), a1);
            }
        }
    const __m512 zero = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
    float *o = j->out + ((size_t)oy * j->ow + (size_t)ox) * CONV0_OUT;
    _mm512_storeu_ps(o, _mm512_min_ps(_mm512_max_ps(a0, zero), six));
    _mm512_storeu_ps(o + 16, _mm512_min_ps(_mm512_max_ps(a1, zero), six));
}

static void conv0_rows(void *ctx, int task)
{
    const conv0_job *j = ctx;
    const int oy1 = (task + 1) * CONV0_ROWS < j->oh ? (task + 1) * CONV0_ROWS : j->oh;
    for (int oy = task * CONV0_ROWS; oy < oy1; oy++) {
        int rows_inside = oy * 2 - j->pt >= 0 && oy * 2 - j->pt + 2 < CE_INPUT_SIZE;
        int ox = 0;
        for (; rows_inside && ox + C0_MR <= j->ow && ox * 2 - j->pl >= 0 &&
               (ox + C0_MR - 1) * 2 - j->pl + 2 < CE_INPUT_SIZE;
             ox += C0_MR)
            conv0_tile(j, oy, ox);
        for (; ox < j->ow; ox++) conv0_pixel(j, oy, ox);
    }
}
#endif

static void conv3x3_first(ce_pool *pool, const float *in, const conv *p, float *cols, float *out)
{
    int pt, pl, oh, ow;
    pt = same_pad_before(CE_INPUT_SIZE, 2, &oh);
    pl = same_pad_before(CE_INPUT_SIZE, 2, &ow);
#ifdef CNN_AVX512
    (void)cols;
    conv0_job c = {in, p, out, pt, pl, oh, ow};
    ce__parallel_for(pool, (oh + CONV0_ROWS - 1) / CONV0_ROWS, conv0_rows, &c);
#else
    im2col_job j = {in, cols, pt, pl, oh, ow};
    ce__parallel_for(pool, (oh + CONV0_ROWS - 1) / CONV0_ROWS, im2col_rows, &j);
    pointwise(pool, cols, oh * ow, 27, p, CONV0_OUT, 1, NULL, out);
#endif
}

/* One box predictor: depthwise 3x3 (ReLU6) then a linear 1x1 for the box encodings and
 * another for the class logits, each pair by tiles of rows (dw_project). The 1x1 output
 * [H*W][A*n] is already the anchor order of the graph's reshape ((y*W + x)*A + a), so it
 * is written straight into place. */
static void run_head(const cnn_net *net, cnn_state *st, int k, const float *fm, int anchor0)
{
    const head *hd = &net->heads[k];
    int s = HEAD_SIZE[k], c = HEAD_CHANNELS[k], a = HEAD_ANCHORS[k], oh, ow;
    dw_project(st->pool, fm, s, s, c, 1, &hd->box_dw, &hd->box_pw, a * 4, 0, NULL, st->h,
               st->box + (size_t)anchor0 * 4, &oh, &ow);
    dw_project(st->pool, fm, s, s, c, 1, &hd->cls_dw, &hd->cls_pw, a * CE_NUM_CLASSES, 0, NULL,
               st->h, st->logits + (size_t)anchor0 * CE_NUM_CLASSES, &oh, &ow);
}

static void mean_pool(const float *in, int pixels, int c, float *out)
{
    for (int k = 0; k < c; k++) out[k] = 0.0f;
    for (int i = 0; i < pixels; i++)
        for (int k = 0; k < c; k++) out[k] += in[(size_t)i * c + k];
    for (int k = 0; k < c; k++) out[k] /= (float)pixels;
}

static void emit(const tap *t, const char *name, const float *data, int h, int w, int c)
{
    if (t && t->fn) t->fn(t->ctx, name, data, h, w, c);
}

/* ------------------------------------------------------------------ FLOPs */

static double conv_flops(int pixels, int cin, int cout, int taps)
{
    return (double)pixels * cout * (2.0 * cin * taps + 1.0); /* MACs + bias */
}

double ce__cnn_flops(void)
{
    double f = 0;
    int s = CE_INPUT_SIZE / 2, c = CONV0_OUT;
    f += conv_flops(s * s, 3, c, 9) + 2.0 * s * s * c; /* + ReLU6 (min, max) */
    for (int i = 0; i < N_BLOCKS; i++) {
        int cexp = c * BLOCKS[i].t, o = (s + BLOCKS[i].s - 1) / BLOCKS[i].s;
        if (BLOCKS[i].t != 1) f += conv_flops(s * s, c, cexp, 1) + 2.0 * s * s * cexp;
        f += conv_flops(o * o, 1, cexp, 9) + 2.0 * o * o * cexp;
        f += conv_flops(o * o, cexp, BLOCKS[i].c, 1);
        if (BLOCKS[i].s == 1 && c == BLOCKS[i].c) f += (double)o * o * c;
        s = o, c = BLOCKS[i].c;
    }
    f += conv_flops(s * s, c, FEATURE_DIM, 1) + 2.0 * s * s * FEATURE_DIM;
    c = FEATURE_DIM;
    for (int k = 0; k < N_EXTRA; k++) {
        int o = (s + 1) / 2;
        f += conv_flops(s * s, c, EXTRA[k].mid, 1) + 2.0 * s * s * EXTRA[k].mid;
        f += conv_flops(o * o, 1, EXTRA[k].mid, 9) + 2.0 * o * o * EXTRA[k].mid;
        f += conv_flops(o * o, EXTRA[k].mid, EXTRA[k].out, 1) + 2.0 * o * o * EXTRA[k].out;
        s = o, c = EXTRA[k].out;
    }
    for (int k = 0; k < N_HEADS; k++) {
        int p = HEAD_SIZE[k] * HEAD_SIZE[k], hc = HEAD_CHANNELS[k], a = HEAD_ANCHORS[k];
        f += 2 * (conv_flops(p, 1, hc, 9) + 2.0 * p * hc);
        f += conv_flops(p, hc, a * 4, 1) + conv_flops(p, hc, a * CE_NUM_CLASSES, 1);
    }
    return f;
}

/* ------------------------------------------------------------------ build / free */

static int get_conv(const ce_weights *wf, const char *prefix, int kind, int cin, int cout,
                    conv *out, ce_err *err);
static int pack_convs(cnn_net *net, int int8, ce_err *err);
enum { POINTWISE, DEPTHWISE, FULL3X3 };

int ce_cnn_int8_supported(void)
{
#ifdef CNN_AVX512
    return ce__q8_supported();
#else
    return 0; /* the int8 kernels sit in the AVX-512 build's 1x1 path */
#endif
}

int ce__cnn_net_build(const ce_weights *wf, int int8, cnn_net **out, ce_err *err)
{
    *out = NULL;
    if (int8 && !ce_cnn_int8_supported()) {
        snprintf(err->msg, sizeof err->msg,
                 "the int8 CNN needs a CPU with AVX-512 VNNI and BF16 and an AVX-512 build; "
                 "this one has not (use the float CNN)");
        return -ENOTSUP;
    }
    cnn_net *net = calloc(1, sizeof *net);
    if (!net) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return -ENOMEM;
    }
    char p[64];
    int rc = 0;
#ifndef CNN_SIMD
    rc = ce__blas_load(err); /* the portable 1x1 convolutions are OpenBLAS sgemm */
#endif
    if (rc == 0) rc = get_conv(wf, "mnv2/conv0", FULL3X3, 3, CONV0_OUT, &net->conv0, err);
    int cin = CONV0_OUT;
    for (int i = 0; rc == 0 && i < N_BLOCKS; i++) {
        block *b = &net->blocks[i];
        b->cin = cin, b->cexp = cin * BLOCKS[i].t, b->cout = BLOCKS[i].c, b->stride = BLOCKS[i].s;
        if (BLOCKS[i].t != 1) {
            snprintf(p, sizeof p, "mnv2/block%d/expand", i);
            rc = get_conv(wf, p, POINTWISE, b->cin, b->cexp, &b->expand, err);
        }
        snprintf(p, sizeof p, "mnv2/block%d/dw", i);
        if (rc == 0) rc = get_conv(wf, p, DEPTHWISE, b->cexp, b->cexp, &b->dw, err);
        snprintf(p, sizeof p, "mnv2/block%d/project", i);
        if (rc == 0) rc = get_conv(wf, p, POINTWISE, b->cexp, b->cout, &b->project, err);
        cin = b->cout;
    }
    if (rc == 0) rc = get_conv(wf, "mnv2/conv1", POINTWISE, cin, FEATURE_DIM, &net->conv1, err);
    cin = FEATURE_DIM;
    for (int k = 0; rc == 0 && k < N_EXTRA; k++) {
        extra_layer *x = &net->extra[k];
        x->cin = cin, x->mid = EXTRA[k].mid, x->out = EXTRA[k].out;
        snprintf(p, sizeof p, "extra/%d/reduce", k + 2);
        rc = get_conv(wf, p, POINTWISE, x->cin, x->mid, &x->reduce, err);
        snprintf(p, sizeof p, "extra/%d/dw", k + 2);
        if (rc == 0) rc = get_conv(wf, p, DEPTHWISE, x->mid, x->mid, &x->dw, err);
        snprintf(p, sizeof p, "extra/%d/expand", k + 2);
        if (rc == 0) rc = get_conv(wf, p, POINTWISE, x->mid, x->out, &x->expand, err);
        cin = x->out;
    }
    for (int k = 0; rc == 0 && k < N_HEADS; k++) {
        int c = HEAD_CHANNELS[k], a = HEAD_ANCHORS[k];
        snprintf(p, sizeof p, "head/%d/box/dw", k);
        rc = get_conv(wf, p, DEPTHWISE, c, c, &net->heads[k].box_dw, err);
        snprintf(p, sizeof p, "head/%d/box/pw", k);
        if (rc == 0) rc = get_conv(wf, p, POINTWISE, c, a * 4, &net->heads[k].box_pw, err);
        snprintf(p, sizeof p, "head/%d/cls/dw", k);
        if (rc == 0) rc = get_conv(wf, p, DEPTHWISE, c, c, &net->heads[k].cls_dw, err);
        snprintf(p, sizeof p, "head/%d/cls/pw", k);
        if (rc == 0)
            rc = get_conv(wf, p, POINTWISE, c, a * CE_NUM_CLASSES, &net->heads[k].cls_pw, err);
    }
    if (rc == 0) {
        const float *scales = ce__weights_f32(wf, "postprocess/box_scales", err, 1, 4);
        if (!scales) rc = -EBADMSG;
        else memcpy(net->box_scales, scales, sizeof net->box_scales);
    }
    if (rc == 0) rc = pack_convs(net, int8, err);
    if (rc < 0) {
        ce__cnn_net_free(net);
        return rc;
    }
    ce__anchors_generate(net->anchors);
    *out = net;
    return 0;
}

static int get_conv(const ce_weights *wf, const char *prefix, int kind, int cin, int cout,
                    conv *out, ce_err *err)
{
    char name[80];
    snprintf(name, sizeof name, "%s/w", prefix);
    if (kind == POINTWISE) out->w = ce__weights_f32(wf, name, err, 2, cin, cout);
    else if (kind == DEPTHWISE) out->w = ce__weights_f32(wf, name, err, 3, 3, 3, cout);
    else out->w = ce__weights_f32(wf, name, err, 4, 3, 3, cin, cout);
    if (!out->w) return -EBADMSG;
    snprintf(name, sizeof name, "%s/b", prefix);
    out->b = ce__weights_f32(wf, name, err, 1, cout);
    return out->b ? 0 : -EBADMSG;
}

/* How the int8 CNN runs a 1x1 (cnn_int8.h); the float network packs every one FLOAT. */
enum { FLOAT, INT8, BF16 };

/* The packed copy of one 1x1 (or the first conv's [27][32]) weight matrix, or instead its
 * int8 or bfloat16 copy when the int8 CNN asks for one. */
static int pack_one(cnn_net *net, conv *c, int cin, int cout, int precision, ce_err *err)
{
#ifdef CNN_SIMD
    if (net->n_packs == (int)(sizeof net->packs / sizeof *net->packs)) {
        snprintf(err->msg, sizeof err->msg, "too many CNN layers to pack");
        return -ENOMEM;
    }
    if (precision != FLOAT) { /* the reduced copy only: the float one would never be read */
        int rc = precision == INT8 ? ce__q8_pack(c->w, cin, cout, &c->q8)
                                   : ce__bf16_pack(c->w, cin, cout, &c->bf16);
        if (rc < 0) {
            snprintf(err->msg, sizeof err->msg, "%s packing the CNN's reduced-precision weights",
                     rc == -EINVAL ? "a layer too wide" : "out of memory");
            return rc;
        }
        net->packs[net->n_packs++] = precision == INT8 ? c->q8.owned : c->bf16.owned;
        return 0;
    }
    size_t blocks = (size_t)(cout + 31) / 32;
    float *p = ce__alloc_lines(blocks * (size_t)cin * 32 * sizeof(float));
    if (!p) {
        snprintf(err->msg, sizeof err->msg, "out of memory packing the CNN weights");
        return -ENOMEM;
    }
    for (size_t ob = 0; ob < blocks; ob++)
        for (int i = 0; i < cin; i++)
            for (int k = 0; k < 32; k++) {
                size_t o = ob * 32 + (size_t)k;
                p[(ob * (size_t)cin + (size_t)i) * 32 + (size_t)k] =
                    o < (size_t)cout ? c->w[(size_t)i * (size_t)cout + o] : 0.0f;
            }
    net->packs[net->n_packs++] = p;
    c->packed = p;
#else
    (void)net, (void)c, (void)cin, (void)cout, (void)precision, (void)err;
#endif
    return 0;
}

/* The int8 CNN's choice per layer, measured on the test photos against float
 * (test_cnn_int8): int8 everywhere, the class logits moved by up to 0.67 and the pooled
 * features kept a cosine of 0.9993; with the projections in bfloat16, 0.28 and 0.9999, for
 * 0.5 ms (10.1 -> 10.6 ms at 1 thread). The first conv (3 inputs, 2.5% of the arithmetic)
 * stays float. */
static int pack_convs(cnn_net *net, int int8, ce_err *err)
{
    const int q = int8 ? INT8 : FLOAT, proj = int8 ? BF16 : FLOAT;
    int rc = pack_one(net, &net->conv0, 27, CONV0_OUT, FLOAT, err);
    for (int i = 0; rc == 0 && i < N_BLOCKS; i++) {
        block *b = &net->blocks[i];
        if (b->expand.w) rc = pack_one(net, &b->expand, b->cin, b->cexp, q, err);
        if (rc == 0) rc = pack_one(net, &b->project, b->cexp, b->cout, proj, err);
    }
    if (rc == 0)
        rc = pack_one(net, &net->conv1, net->blocks[N_BLOCKS - 1].cout, FEATURE_DIM, q, err);
    for (int k = 0; rc == 0 && k < N_EXTRA; k++) {
        extra_layer *x = &net->extra[k];
        rc = pack_one(net, &x->reduce, x->cin, x->mid, q, err);
        if (rc == 0) rc = pack_one(net, &x->expand, x->mid, x->out, q, err);
    }
    for (int k = 0; rc == 0 && k < N_HEADS; k++) {
        int c = HEAD_CHANNELS[k], a = HEAD_ANCHORS[k];
        rc = pack_one(net, &net->heads[k].box_pw, c, a * 4, q, err);
        if (rc == 0) rc = pack_one(net, &net->heads[k].cls_pw, c, a * CE_NUM_CLASSES, q, err);
    }
    return rc;
}

void ce__cnn_net_free(cnn_net *net)
{
    if (!net) return;
    for (int i = 0; i < net->n_packs; i++) free(net->packs[i]);
    free(net);
}

/* The largest tensor each scratch buffer holds over the forward pass. */
static void plan_buffers(size_t *max_x, size_t *max_e, size_t *max_d)
{
    size_t s = CE_INPUT_SIZE / 2, c = CONV0_OUT;
    *max_x = s * s * c, *max_e = 0, *max_d = 0;
#define GROW(m, v)                                                                                 \
    do {                                                                                           \
        if ((v) > *(m)) *(m) = (v);                                                                \
    } while (0)
    for (int i = 0; i < N_BLOCKS; i++) {
        size_t cexp = c * (size_t)BLOCKS[i].t,
               o = (s + (size_t)BLOCKS[i].s - 1) / (size_t)BLOCKS[i].s;
        GROW(max_e, s * s * cexp);
        GROW(max_d, o * o * cexp);
        GROW(max_x, o * o * (size_t)BLOCKS[i].c);
        s = o, c = (size_t)BLOCKS[i].c;
    }
    GROW(max_x, s * s * FEATURE_DIM);
    for (int k = 0; k < N_EXTRA; k++) {
        size_t o = (s + 1) / 2;
        GROW(max_e, s * s * (size_t)EXTRA[k].mid);
        GROW(max_d, o * o * (size_t)EXTRA[k].mid);
        GROW(max_x, o * o * (size_t)EXTRA[k].out);
        s = o;
    }
#undef GROW
}

int ce__cnn_state_new(const cnn_net *net, cnn_state **out, ce_err *err)
{
    (void)net;
    *out = NULL;
    cnn_state *st = calloc(1, sizeof *st);
    if (!st) goto oom;
    const size_t half = (size_t)(CE_INPUT_SIZE / 2) * (CE_INPUT_SIZE / 2);
    size_t max_x, max_e, max_d;
    plan_buffers(&max_x, &max_e, &max_d);
    st->input = malloc(sizeof(float) * CE_INPUT_SIZE * CE_INPUT_SIZE * 3);
#ifndef CNN_AVX512
    st->cols = malloc(sizeof(float) * half * 27);
    if (!st->cols) goto oom;
#else
    (void)half;
#endif
    /* The maps on 64-byte lines (lines.h): every layer's channel count is a multiple of
     * 16, so each 16-lane load and store of a pixel is then within one cache line. */
    st->x = ce__alloc_lines(sizeof(float) * max_x);
    st->y = ce__alloc_lines(sizeof(float) * max_x);
    st->d = ce__alloc_lines(sizeof(float) * max_d);
    st->e = ce__alloc_lines(sizeof(float) * max_e);
#ifdef CNN_SIMD
    st->max_e = max_e;
#endif
    st->h = ce__alloc_lines(sizeof(float) * (size_t)19 * 19 * 576);
    st->box = malloc(sizeof(float) * CE_NUM_ANCHORS * 4);
    st->logits = malloc(sizeof(float) * CE_NUM_ANCHORS * CE_NUM_CLASSES);
    if (!st->input || !st->x || !st->y || !st->d || !st->e || !st->h || !st->box || !st->logits)
        goto oom;
    *out = st;
    return 0;
oom:
    ce__cnn_state_free(st);
    snprintf(err->msg, sizeof err->msg, "out of memory for CNN scratch buffers");
    return -ENOMEM;
}

void ce__cnn_state_free(cnn_state *st)
{
    if (!st) return;
    ce__pool_free(st->pool);
    free(st->input);
    free(st->cols);
    free(st->x);
    free(st->y);
    free(st->d);
    free(st->e);
    free(st->h);
    free(st->box);
    free(st->logits);
    free(st);
}
