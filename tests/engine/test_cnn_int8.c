/*
 * The optional int8 CNN (CE_OPEN_CNN_INT8, engine/cnn_int8.c).
 *
 *   test_cnn_int8 MODELS_DIR PHOTOS_DIR
 *
 * 1. Both kernels (int8, bfloat16) against scalar models of their rules (cnn_int8.h) on
 *    random layers whose shapes hit every edge: inputs not a multiple of 2, 4 or 16,
 *    outputs ending in a 16- or 32-channel block or inside one, fewer than 12 pixels,
 *    negative and non-negative pixels, ReLU6 and residual. The int8 sums are exact, so
 *    the two agree to float rounding (1e-5 relative); bfloat16 products are exact in
 *    float and only the order of the float sums differs (1e-5 of the sum of |terms|).
 * 2. The network against the float one on the test photos: the same detections with
 *    score >= 0.5 both ways (same class, IoU >= 0.85, scores within 0.06); the best score
 *    of every class that reaches 0.1 in either within 0.5 in logits (0.12 at a score of
 *    0.5, where a logit moves a score most; measured 0.28 at worst, on scream.jpg); the
 *    pooled feature vectors at cosine >= 0.9995 (measured 0.99987 at worst).
 * 3. Bit-identical results with 1 and 3 helper threads (each pixel is quantized alone).
 * 4. The model version says "-int8".
 * Exit 0 pass, 1 fail, 77 skip (no AVX-512 VNNI and BF16, or no converted model or photos).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capengine.h"
#include "cnn_int8.h"

#define SKIP 77
#define MIN_SCORE 0.5f
#define SCORE_TOLERANCE 0.06f
#define MIN_IOU 0.85f
#define MIN_COSINE 0.9995
#define LOGIT_TOLERANCE 0.5

static const char *const PHOTOS[] = {"dog",  "eagle",  "giraffe", "horses",
                                     "kite", "person", "scream"};
#define N_PHOTOS (int)(sizeof PHOTOS / sizeof PHOTOS[0])

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static void check_kernel(void);
static void check_network(const char *models, const char *photos);

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_cnn_int8 MODELS_DIR PHOTOS_DIR\n");
        return 2;
    }
    if (!ce_cnn_int8_supported()) {
        printf("skip: this CPU or build has no AVX-512 VNNI and BF16\n");
        return SKIP;
    }
    check_kernel();
    check_network(argv[1], argv[2]);
    if (failures) return 1;
    printf("ok\n");
    return 0;
}

/* ------------------------------------------------------------------ 1. the kernel */

static float frand(unsigned *state, float lo, float hi)
{
    *state = *state * 1664525u + 1013904223u;
    return lo + (hi - lo) * (float)(*state >> 8) / (float)(1u << 24);
}

/* The rule of cnn_int8.h in plain C, with the packed weights' own int8 values. */
static void reference(const float *in, int pixels, int cin, const float *w, int cout,
                      const float *b, int relu6, const float *residual, float *out)
{
    for (int p = 0; p < pixels; p++) {
        const float *x = in + (size_t)p * cin;
        float mn = 0.0f, mx = 0.0f;
        for (int i = 0; i < cin; i++) mn = x[i] < mn ? x[i] : mn, mx = x[i] > mx ? x[i] : mx;
        int zero = mn >= 0.0f ? 0 : 128;
        float s = zero ? (-mn > mx ? -mn : mx) / 127.0f : mx / 255.0f;
        if (!(s > 0.0f)) s = 1.0f;
        for (int o = 0; o < cout; o++) {
            float wmax = 0.0f;
            for (int i = 0; i < cin; i++) wmax = fmaxf(wmax, fabsf(w[(size_t)i * cout + o]));
            float ws = wmax > 0.0f ? wmax / 127.0f : 1.0f;
            long long acc = 0;
            for (int i = 0; i < cin; i++) {
                long q = lrintf(x[i] * (1.0f / s)) + zero; /* the kernel's own rounding */
                q = q < 0 ? 0 : q > 255 ? 255 : q;
                float v = w[(size_t)i * cout + o] / ws;
                long qw = (long)(v < 0 ? v - 0.5f : v + 0.5f);
                acc += (q - zero) * qw;
            }
            float y = (float)acc * s * ws + b[o];
            if (residual) y += residual[(size_t)p * cout + o];
            else if (relu6) y = fminf(fmaxf(y, 0.0f), 6.0f);
            out[(size_t)p * cout + o] = y;
        }
    }
}

static float bf16_round(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    u &= 0xFFFF0000u;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The bfloat16 rule in plain C (sums in double); bound: 1e-5 of each output's sum of
 * |terms|, what float sums in another order can differ by. */
static void reference_bf16(const float *in, int pixels, int cin, const float *w, int cout,
                           const float *b, int relu6, const float *residual, float *out,
                           float *bound)
{
    for (int p = 0; p < pixels; p++)
        for (int o = 0; o < cout; o++) {
            double acc = b[o], mag = fabs(b[o]);
            for (int i = 0; i < cin; i++) {
                double t = (double)bf16_round(in[(size_t)p * cin + i]) *
                           bf16_round(w[(size_t)i * cout + o]);
                acc += t, mag += fabs(t);
            }
            float y = (float)acc;
            if (residual) y += residual[(size_t)p * cout + o];
            else if (relu6) y = fminf(fmaxf(y, 0.0f), 6.0f);
            out[(size_t)p * cout + o] = y;
            bound[(size_t)p * cout + o] = (float)(1e-5 * (1.0 + mag));
        }
}

static void check_kernel(void)
{
    static const struct {
        int pixels, cin, cout;
    } SHAPES[] = {{1, 3, 5},     {11, 27, 32},   {12, 16, 96},    {13, 24, 144},  {50, 96, 24},
                  {97, 144, 16}, {49, 576, 273}, {25, 1280, 546}, {7, 320, 1280}, {61, 13, 47}};
    unsigned seed = 12345;
    for (size_t k = 0; k < sizeof SHAPES / sizeof *SHAPES; k++) {
        int P = SHAPES[k].pixels, cin = SHAPES[k].cin, cout = SHAPES[k].cout;
        float *x = malloc(sizeof(float) * (size_t)P * cin);
        float *w = malloc(sizeof(float) * (size_t)cin * cout);
        float *b = malloc(sizeof(float) * (size_t)cout);
        float *res = malloc(sizeof(float) * (size_t)P * cout);
        float *got = malloc(sizeof(float) * (size_t)P * cout);
        float *want = malloc(sizeof(float) * (size_t)P * cout);
        for (int p = 0; p < P; p++) /* every third pixel non-negative (zero point 0) */
            for (int i = 0; i < cin; i++)
                x[(size_t)p * cin + i] = frand(&seed, p % 3 ? -3.0f : 0.0f, 6.0f);
        for (size_t i = 0; i < (size_t)cin * cout; i++) w[i] = frand(&seed, -0.5f, 0.5f);
        for (int o = 0; o < cout; o++) b[o] = frand(&seed, -1.0f, 1.0f);
        for (size_t i = 0; i < (size_t)P * cout; i++) res[i] = frand(&seed, -2.0f, 2.0f);
        ce_q8_matrix m;
        CHECK(ce__q8_pack(w, cin, cout, &m) == 0, "pack %dx%d", cin, cout);
        for (int mode = 0; mode < 3; mode++) { /* linear, ReLU6, residual */
            const float *r = mode == 2 ? res : NULL;
            ce__q8_pointwise_range(x, 0, P, &m, b, mode == 1, r, got);
            reference(x, P, cin, w, cout, b, mode == 1, r, want);
            double worst = 0.0;
            for (size_t i = 0; i < (size_t)P * cout; i++) {
                double d = fabs(got[i] - want[i]) / (1.0 + fabs(want[i]));
                worst = d > worst ? d : worst;
            }
            CHECK(worst < 1e-5, "kernel %d px x %d -> %d, mode %d: worst difference %g", P, cin,
                  cout, mode, worst);
        }
        /* a range that starts inside the layer: the same pixels, the same bits */
        if (P > 5) {
            ce__q8_pointwise_range(x, 0, P, &m, b, 1, NULL, want);
            memset(got, 0, sizeof(float) * (size_t)P * cout);
            ce__q8_pointwise_range(x, 5, P, &m, b, 1, NULL, got);
            CHECK(!memcmp(got + (size_t)5 * cout, want + (size_t)5 * cout,
                          sizeof(float) * (size_t)(P - 5) * cout),
                  "kernel %d px: a range starting at pixel 5 differs", P);
        }
        ce__q8_free(&m);

        ce_bf16_matrix h;
        float *bound = malloc(sizeof(float) * (size_t)P * cout);
        CHECK(ce__bf16_pack(w, cin, cout, &h) == 0, "bf16 pack %dx%d", cin, cout);
        for (int mode = 0; mode < 3; mode++) {
            const float *r = mode == 2 ? res : NULL;
            ce__bf16_pointwise_range(x, 0, P, &h, b, mode == 1, r, got);
            reference_bf16(x, P, cin, w, cout, b, mode == 1, r, want, bound);
            int bad = 0;
            for (size_t i = 0; i < (size_t)P * cout; i++) bad += fabsf(got[i] - want[i]) > bound[i];
            CHECK(!bad, "bf16 kernel %d px x %d -> %d, mode %d: %d outputs off", P, cin, cout, mode,
                  bad);
        }
        ce__bf16_free(&h);
        free(bound);
        free(x), free(w), free(b), free(res), free(got), free(want);
    }
}

/* ------------------------------------------------------------------ 2-4. the network */

static float iou(const ce_detection *a, const ce_detection *b)
{
    float h = fminf(a->ymax, b->ymax) - fmaxf(a->ymin, b->ymin);
    float w = fminf(a->xmax, b->xmax) - fmaxf(a->xmin, b->xmin);
    if (h <= 0 || w <= 0) return 0.0f;
    float inter = h * w;
    float ua =
        (a->ymax - a->ymin) * (a->xmax - a->xmin) + (b->ymax - b->ymin) * (b->xmax - b->xmin);
    return inter / (ua - inter);
}

static float logit(float p)
{
    p = fminf(fmaxf(p, 1e-6f), 1.0f - 1e-6f);
    return logf(p / (1.0f - p));
}

static double cosine(const float *a, const float *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++)
        ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : (aa == bb ? 1.0 : 0.0);
}

/* Every detection of `a` scoring >= MIN_SCORE has its twin in `b`. */
static void check_detections(const char *photo, const char *which, const ce_cnn_output *a,
                             const ce_cnn_output *b)
{
    for (int i = 0; i < a->n_detections; i++) {
        const ce_detection *d = &a->detections[i];
        if (d->score < MIN_SCORE) continue;
        int found = 0;
        for (int j = 0; j < b->n_detections && !found; j++) {
            const ce_detection *e = &b->detections[j];
            found = e->class_id == d->class_id && iou(d, e) >= MIN_IOU &&
                    fabsf(e->score - d->score) <= SCORE_TOLERANCE;
        }
        CHECK(found, "%s: %s detection %s %.3f has no twin in the other precision", photo, which,
              d->label, d->score);
    }
}

static void check_network(const char *models, const char *photos)
{
    ce_err err;
    ce_model *fm = NULL, *qm = NULL;
    if (ce_model_open(models, CE_OPEN_DEFAULT, &fm, &err) < 0 ||
        ce_model_open(models, CE_OPEN_CNN_INT8, &qm, &err) < 0) {
        printf("skip: %s\n", err.msg);
        ce_model_close(fm);
        exit(SKIP);
    }
    CHECK(strstr(ce_model_version(qm), "-int8") && !strstr(ce_model_version(fm), "int8"),
          "versions: float '%s', int8 '%s'", ce_model_version(fm), ce_model_version(qm));
    CHECK(ce_version_is_int8(ce_model_version(qm)) && !ce_version_is_int8(ce_model_version(fm)) &&
              ce_version_is_int8("ssdlite_mobilenet_v2_coco-int8") &&
              !ce_version_is_int8("ssdlite_mobilenet_v2_coco-int8x+cap-1") &&
              !ce_version_is_int8("other-int8+cap-1") && !ce_version_is_int8(NULL),
          "ce_version_is_int8");
    ce_session *fs, *qs;
    if (ce_session_new(fm, &fs, &err) < 0 || ce_session_new(qm, &qs, &err) < 0) {
        fprintf(stderr, "session: %s\n", err.msg);
        exit(1);
    }
    ce_cnn_output *f = calloc(1, sizeof *f), *q = calloc(1, sizeof *q), *q3 = calloc(1, sizeof *q3);
    int ran = 0;
    for (int i = 0; i < N_PHOTOS; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.jpg", photos, PHOTOS[i]);
        ce_image img = {0};
        if (ce_image_load_file(path, NULL, &img, &err) < 0) continue; /* absent: skipped */
        ce_set_blas_threads(1);
        CHECK(ce_cnn_run(fs, &img, f, &err) == 0, "%s: float: %s", PHOTOS[i], err.msg);
        CHECK(ce_cnn_run(qs, &img, q, &err) == 0, "%s: int8: %s", PHOTOS[i], err.msg);
        ce_set_blas_threads(3);
        CHECK(ce_cnn_run(qs, &img, q3, &err) == 0, "%s: int8, 3 threads: %s", PHOTOS[i], err.msg);
        ce_image_free(&img);
        ran++;

        check_detections(PHOTOS[i], "float", f, q);
        check_detections(PHOTOS[i], "int8", q, f);
        float worst = 0.0f;
        for (int c = 0; c < CE_NUM_CLASSES; c++)
            if (fmaxf(f->class_max[c], q->class_max[c]) >= 0.1f) /* a class that may show */
                worst = fmaxf(worst, fabsf(logit(f->class_max[c]) - logit(q->class_max[c])));
        CHECK(worst <= LOGIT_TOLERANCE, "%s: a class's best score moved by %.3f in logits",
              PHOTOS[i], worst);
        double cp = cosine(f->pooled, q->pooled, CE_POOLED_DIM);
        double cm = cosine(f->mid_pooled, q->mid_pooled, CE_MID_DIM);
        CHECK(cp >= MIN_COSINE && cm >= MIN_COSINE, "%s: pooled cosine %.4f, mid %.4f", PHOTOS[i],
              cp, cm);
        printf("%-8s class logits within %.3f, pooled cosine %.5f / %.5f\n", PHOTOS[i], worst, cp,
               cm);
        CHECK(q->n_detections == q3->n_detections &&
                  !memcmp(q->detections, q3->detections,
                          sizeof q->detections[0] * (size_t)q->n_detections) &&
                  !memcmp(q->pooled, q3->pooled, sizeof q->pooled) &&
                  !memcmp(q->class_max, q3->class_max, sizeof q->class_max),
              "%s: int8 with 3 threads differs from 1 thread", PHOTOS[i]);
    }
    ce_set_blas_threads(1);
    free(f), free(q), free(q3);
    ce_session_free(fs), ce_session_free(qs);
    ce_model_close(fm), ce_model_close(qm);
    if (!ran) {
        printf("skip: no test photos in %s\n", photos);
        exit(SKIP);
    }
}
