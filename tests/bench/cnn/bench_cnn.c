/*
 * CNN benchmark (a program, not a test): latency of the SSDLite-MobileNetV2 engine
 *   cnn300  ce_cnn_run on a 300x300 image (network + post-processing)
 *   e2e12mp a 4000x3000 JPEG end to end: ce_image_load_file + ce_cnn_run
 * batch 1, with 1 and 2 BLAS threads: median and p90 latency, images/s and GFLOP/s
 * (FLOPs counted from the architecture by ce__cnn_flops()). Prints a table for people and
 * `RESULT name threads=N median_ms=.. p90_ms=.. images_per_s=.. gflops=..` lines for
 * tests/bench/peers/run.sh.
 *
 *   bench_cnn [--models DIR] [--photo JPG] [--iters N] [--warmup N] [--threads 1,2] [--profile]
 *             [--int8]
 *
 * --int8 times the optional int8 CNN (CE_OPEN_CNN_INT8) instead of the float one.
 *
 * The 12 MP JPEG is made once from a sample photo (upscaled, with a little noise so it
 * compresses like a real photo) in the bench's build folder.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jpeglib.h>

#include "capengine.h"
#include "cnn.h"

#define BIG_W 4000
#define BIG_H 3000

typedef struct {
    double median, p90, mean;
} stats;

static double cpu_ms(void);

/* Per-stage timing through the forward pass's taps. */
typedef struct {
    double last;
    int n;
    char names[64][16];
    double ms[64];
} profile;

static double now_ms(void);
static stats summarise(double *ms, int n);
static int make_big_jpeg(const char *photo, const char *out, ce_err *err);
static void on_tap(void *ctx, const char *name, const float *data, int h, int w, int c);

int main(int argc, char **argv)
{
    const char *models = NULL, *photo = CAPSEARCH_TEST_PHOTOS "/kite.jpg";
    const char *threads_arg = "1,2";
    int iters = 50, warmup = 5, want_profile = 0, open_flags = CE_OPEN_DEFAULT;
    static const struct option OPTIONS[] = {
        {"models", required_argument, NULL, 'm'},
        {"photo", required_argument, NULL, 'p'},
        {"iters", required_argument, NULL, 'n'},
        {"warmup", required_argument, NULL, 'w'},
        {"threads", required_argument, NULL, 't'},
        {"profile", no_argument, NULL, 'P'},
        {"int8", no_argument, NULL, 'i'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "", OPTIONS, NULL)) != -1) {
        switch (opt) {
        case 'm': models = optarg; break;
        case 'p': photo = optarg; break;
        case 'n': iters = atoi(optarg); break;
        case 'w': warmup = atoi(optarg); break;
        case 't': threads_arg = optarg; break;
        case 'P': want_profile = 1; break;
        case 'i': open_flags = CE_OPEN_CNN_INT8; break;
        default:
            fprintf(stderr,
                    "usage: bench_cnn [--models DIR] [--photo JPG] [--iters N] [--warmup N] "
                    "[--threads 1,2] [--profile] [--int8]\n");
            return 2;
        }
    }
    if (iters < 1) iters = 1;

    ce_err err;
    ce_model *model;
    if (ce_model_open(models ? models : ce_default_models_dir(), open_flags, &model, &err) < 0) {
        fprintf(stderr, "bench_cnn: %s\n", err.msg);
        return 1;
    }
    ce_session *s;
    if (ce_session_new(model, &s, &err) < 0) {
        fprintf(stderr, "bench_cnn: %s\n", err.msg);
        return 1;
    }
    const char *big = BENCH_WORK_DIR "/bench_12mp.jpg";
    if (make_big_jpeg(photo, big, &err) < 0) {
        fprintf(stderr, "bench_cnn: cannot make the 12 MP JPEG: %s\n", err.msg);
        return 1;
    }

    double flops = ce__cnn_flops();
    printf("network: ssdlite_mobilenet_v2_coco 300x300, %.3f GFLOP per image (counted)\n",
           flops / 1e9);
    printf("12 MP JPEG: %s (%dx%d)\n", big, BIG_W, BIG_H);
    printf("iterations: %d after %d warm-up\n\n", iters, warmup);
    /* cpu ms: CPU time of the whole process per image (all BLAS threads), median. On a
     * busy shared machine it shows the work done, where wall-clock latency also counts
     * the time the scheduler gave to others. */
    printf("| case    | threads | median ms | p90 ms | images/s | GFLOP/s | cpu ms/img |\n");
    printf("|---------|---------|-----------|--------|----------|---------|------------|\n");

    uint8_t *px = malloc(300 * 300 * 3);
    for (int i = 0; i < 300 * 300 * 3; i++) px[i] = (uint8_t)(i * 7 + (i / 900) * 13);
    ce_image small = {
        .width = 300, .height = 300, .pixels = px, .source_width = 300, .source_height = 300};
    ce_cnn_output *out = calloc(1, sizeof *out);
    double *ms = malloc(sizeof(double) * (size_t)iters);
    double *cpu = malloc(sizeof(double) * (size_t)iters);
    char results[4096] = "";
    size_t rlen = 0;

    for (const char *t = threads_arg; *t;) {
        int threads = atoi(t);
        ce_set_blas_threads(threads);
        for (int kind = 0; kind < 2; kind++) {
            for (int i = -warmup; i < iters; i++) {
                double t0 = now_ms(), c0 = cpu_ms();
                if (kind == 0) {
                    if (ce_cnn_run(s, &small, out, &err) < 0) goto fail;
                } else {
                    ce_image img;
                    if (ce_image_load_file(big, NULL, &img, &err) < 0) goto fail;
                    int rc = ce_cnn_run(s, &img, out, &err);
                    ce_image_free(&img);
                    if (rc < 0) goto fail;
                }
                if (i >= 0) ms[i] = now_ms() - t0, cpu[i] = cpu_ms() - c0;
            }
            stats st = summarise(ms, iters), ct = summarise(cpu, iters);
            const char *name = kind == 0 ? "cnn300" : "e2e12mp";
            double gflops = flops / (st.median / 1e3) / 1e9;
            printf("| %-7s | %7d | %9.2f | %6.2f | %8.1f | %7.2f | %10.2f |\n", name, threads,
                   st.median, st.p90, 1e3 / st.mean, gflops, ct.median);
            rlen += (size_t)snprintf(
                results + rlen, sizeof results - rlen,
                "RESULT %s threads=%d median_ms=%.3f p90_ms=%.3f images_per_s=%.2f "
                "gflops=%.3f flops=%.0f cpu_ms=%.3f\n",
                name, threads, st.median, st.p90, 1e3 / st.mean, gflops, flops, ct.median);
        }
        while (*t && *t != ',') t++;
        if (*t == ',') t++;
    }
    printf("\n%s", results);

    if (want_profile) {
        /* Where the time goes: median per-stage times at 1 and at 2 threads, side by side
         * (what does not get faster with the second thread is the serial part). */
        enum { RUNS = 21 };
        static profile runs[2][RUNS];
        for (int tc = 0; tc < 2; tc++) {
            ce_set_blas_threads(tc + 1);
            for (int r = 0; r < RUNS; r++) {
                runs[tc][r].last = now_ms();
                runs[tc][r].n = 0;
                if (ce_cnn_run_tapped(s, &small, out, on_tap, &runs[tc][r], &err) < 0) goto fail;
            }
        }
        printf("\nstage times (median of %d runs; each stage ends at the named tap):\n", RUNS);
        printf("  %-14s %9s %9s\n", "stage", "1 thread", "2 threads");
        double col[RUNS], total[2] = {0, 0};
        for (int k = 0; k < runs[0][0].n; k++) {
            double med[2];
            for (int tc = 0; tc < 2; tc++) {
                for (int r = 0; r < RUNS; r++) col[r] = runs[tc][r].ms[k];
                med[tc] = summarise(col, RUNS).median;
                total[tc] += med[tc];
            }
            printf("  %-14s %6.3f ms %6.3f ms\n", runs[0][0].names[k], med[0], med[1]);
        }
        printf("  %-14s %6.3f ms %6.3f ms\n", "sum", total[0], total[1]);
    }
    free(ms);
    free(cpu);
    free(out);
    free(px);
    ce_session_free(s);
    ce_model_close(model);
    return 0;
fail:
    fprintf(stderr, "bench_cnn: %s\n", err.msg);
    return 1;
}

static void on_tap(void *ctx, const char *name, const float *data, int h, int w, int c)
{
    (void)data, (void)h, (void)w, (void)c;
    profile *p = ctx;
    double t = now_ms();
    if (p->n < 64) {
        snprintf(p->names[p->n], sizeof p->names[0], "%s", name);
        p->ms[p->n++] = t - p->last;
    }
    p->last = t;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static stats summarise(double *ms, int n)
{
    stats st = {0, 0, 0};
    for (int i = 0; i < n; i++) st.mean += ms[i] / n;
    qsort(ms, (size_t)n, sizeof *ms, cmp_double);
    st.median = n % 2 ? ms[n / 2] : (ms[n / 2 - 1] + ms[n / 2]) / 2;
    int k = (int)(0.9 * (n - 1) + 0.5);
    st.p90 = ms[k];
    return st;
}

/* Upscales `photo` (nearest would make flat blocks: bilinear plus a little noise gives
 * the JPEG a photo's entropy) to 4000x3000 and writes it as a quality-90 JPEG. */
static int make_big_jpeg(const char *photo, const char *out, ce_err *err)
{
    FILE *probe = fopen(out, "rb");
    if (probe) {
        fclose(probe);
        return 0;
    }
    ce_load_options full = {.max_pixels = 0, .min_side = 100000};
    ce_image src;
    int rc = ce_image_load_file(photo, &full, &src, err);
    if (rc < 0) return rc;
    uint8_t *big = malloc((size_t)BIG_W * BIG_H * 3);
    if (!big) {
        ce_image_free(&src);
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return -ENOMEM;
    }
    uint32_t seed = 12345;
    for (int y = 0; y < BIG_H; y++) {
        double fy = (double)y * (src.height - 1) / (BIG_H - 1);
        int y0 = (int)fy, y1 = y0 + 1 < src.height ? y0 + 1 : y0;
        for (int x = 0; x < BIG_W; x++) {
            double fx = (double)x * (src.width - 1) / (BIG_W - 1);
            int x0 = (int)fx, x1 = x0 + 1 < src.width ? x0 + 1 : x0;
            for (int c = 0; c < 3; c++) {
                double a = src.pixels[((size_t)y0 * src.width + x0) * 3 + c];
                double b = src.pixels[((size_t)y0 * src.width + x1) * 3 + c];
                double d = src.pixels[((size_t)y1 * src.width + x0) * 3 + c];
                double e = src.pixels[((size_t)y1 * src.width + x1) * 3 + c];
                double v = (a + (b - a) * (fx - x0)) * (1 - (fy - y0)) +
                           (d + (e - d) * (fx - x0)) * (fy - y0);
                seed = seed * 1664525u + 1013904223u;
                v += (double)(seed >> 24) / 32.0 - 4.0;
                big[((size_t)y * BIG_W + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
    ce_image_free(&src);
    FILE *f = fopen(out, "wb");
    if (!f) {
        free(big);
        snprintf(err->msg, sizeof err->msg, "%s: %s", out, strerror(errno));
        return -errno;
    }
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    cinfo.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, f);
    cinfo.image_width = BIG_W;
    cinfo.image_height = BIG_H;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, 90, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = big + (size_t)cinfo.next_scanline * BIG_W * 3;
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    fclose(f);
    free(big);
    return 0;
}
