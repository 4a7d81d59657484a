/*
 * Decode benchmark (figures, not a test): a 12 MP JPEG to >= 300 px with our loader,
 * against djpeg (libjpeg-turbo-progs) at 1/8 and at full size, plus the libjpeg knobs
 * our loader fixes (IDCT method, fancy upsampling) measured directly.
 *
 * The 12 MP file is made here: a darknet photo decoded in full, upscaled bilinearly to
 * 4000x3000 and written at quality 90 (4:2:0) into the build directory. Never committed.
 *
 * Reading the table: djpeg streams rows to its output, while an in-memory full-size
 * decode first-touches a fresh 36 MB buffer (about 16 ms of page faults measured here),
 * so "full size" in memory is slower than djpeg full size; at 1/8 the buffer is 560 KB
 * and the entropy decoding of the whole file is nearly all the time.
 *
 * Usage: bench_decode [PHOTO [WORK_DIR [RUNS]]]
 */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jpeglib.h>

#include "capengine.h"
#include "imggen.h"

extern char **environ;

#define BIG_W 4000
#define BIG_H 3000

typedef struct {
    const char *what;
    double median_ms, p90_ms;
    int out_w, out_h;
} row;

static double now_ms(void);
static double percentile(double *v, int n, double p);
static uint8_t *upscale(const ce_image *src, int w, int h);
static int run_djpeg(const char *scale, const char *path);
static void raw_decode(const blob *b, int scale_num, J_DCT_METHOD dct, int fancy, int *w, int *h);

int main(int argc, char **argv)
{
    const char *photo = argc > 1 ? argv[1] : CAPSEARCH_TEST_PHOTOS "/dog.jpg";
    const char *work = argc > 2 ? argv[2] : BENCH_WORK_DIR;
    const int runs = argc > 3 ? atoi(argv[3]) : 25;
    if (runs < 1) return 2;

    ce_image src;
    ce_err err;
    if (ce_image_load_file(photo, &(ce_load_options){.min_side = 1 << 20}, &src, &err) < 0) {
        fprintf(stderr,
                "bench_decode: %s: %s (fetch the photos with "
                "tests/data/fetch_photos.sh)\n",
                photo, err.msg);
        return 1;
    }
    uint8_t *big = upscale(&src, BIG_W, BIG_H);
    ce_image_free(&src);
    blob jpg = make_jpeg(big, BIG_W, BIG_H, 3, &(jpeg_opts){.quality = 90});
    free(big);
    char path[4096];
    snprintf(path, sizeof path, "%s/photo_12mp.jpg", work);
    write_file(path, jpg.data, jpg.size);
    char tiny_path[4096];
    snprintf(tiny_path, sizeof tiny_path, "%s/tiny.jpg", work);
    uint8_t tiny_px[16 * 16 * 3] = {0};
    blob tiny = make_jpeg(tiny_px, 16, 16, 3, NULL);
    write_file(tiny_path, tiny.data, tiny.size);
    blob_free(&tiny);

    enum { N_ROWS = 11 };
    row rows[N_ROWS] = {
        {"capsearch loader, min_side 300 (1/8 fast path + EXIF + file read)", 0, 0, 0, 0},
        {"capsearch loader, full size", 0, 0, 0, 0},
        {"djpeg -scale 1/8 (process, file, PPM to /dev/null)", 0, 0, 0, 0},
        {"djpeg full size (process, file, PPM to /dev/null)", 0, 0, 0, 0},
        {"djpeg on a 16x16 JPEG (process start-up alone)", 0, 0, 0, 0},
        {"libjpeg 1/8, ISLOW, fancy upsampling (in memory)", 0, 0, 0, 0},
        {"libjpeg 1/8, ISLOW, no fancy upsampling (in memory)", 0, 0, 0, 0},
        {"libjpeg 1/8, IFAST, fancy upsampling (in memory)", 0, 0, 0, 0},
        {"libjpeg full, ISLOW, fancy (in memory)", 0, 0, 0, 0},
        {"libjpeg full, IFAST, fancy (in memory)", 0, 0, 0, 0},
        {"libjpeg full, ISLOW, no fancy (in memory)", 0, 0, 0, 0},
    };
    /* Round-robin over the rows, so that load from other processes on a shared machine
     * spreads over all rows instead of skewing one. */
    double *t = malloc(sizeof(double) * (size_t)runs * N_ROWS);
    for (int i = -1; i < runs; i++) { /* i = -1: warm-up, not counted */
        for (int r = 0; r < N_ROWS; r++) {
            double t0 = now_ms();
            int w = 0, h = 0;
            ce_image im = {0};
            switch (r) {
            case 0:
            case 1: {
                ce_load_options o = {.min_side = r == 0 ? 300 : 1 << 20};
                if (ce_image_load_file(path, &o, &im, &err) < 0) {
                    fprintf(stderr, "bench_decode: %s\n", err.msg);
                    return 1;
                }
                w = im.width;
                h = im.height;
                ce_image_free(&im);
                break;
            }
            case 2:
            case 3:
                if (run_djpeg(r == 2 ? "1/8" : NULL, path) != 0) return 1;
                break;
            case 4:
                if (run_djpeg(NULL, tiny_path) != 0) return 1;
                break;
            case 5: raw_decode(&jpg, 1, JDCT_ISLOW, 1, &w, &h); break;
            case 6: raw_decode(&jpg, 1, JDCT_ISLOW, 0, &w, &h); break;
            case 7: raw_decode(&jpg, 1, JDCT_IFAST, 1, &w, &h); break;
            case 8: raw_decode(&jpg, 8, JDCT_ISLOW, 1, &w, &h); break;
            case 9: raw_decode(&jpg, 8, JDCT_IFAST, 1, &w, &h); break;
            case 10: raw_decode(&jpg, 8, JDCT_ISLOW, 0, &w, &h); break;
            }
            double dt = now_ms() - t0;
            if (i >= 0) t[r * runs + i] = dt;
            rows[r].out_w = w;
            rows[r].out_h = h;
        }
    }
    for (int r = 0; r < N_ROWS; r++) {
        rows[r].median_ms = percentile(t + r * runs, runs, 0.5);
        rows[r].p90_ms = percentile(t + r * runs, runs, 0.9);
    }
    free(t);

    printf("12 MP JPEG (%dx%d, q90 4:2:0, %zu bytes, from %s), %d runs each, 1 thread\n\n", BIG_W,
           BIG_H, jpg.size, photo, runs);
    printf("| decode | output | median ms | p90 ms |\n|---|---|---:|---:|\n");
    for (int r = 0; r < N_ROWS; r++) {
        char out[32] = "PPM";
        if (rows[r].out_w) snprintf(out, sizeof out, "%dx%d", rows[r].out_w, rows[r].out_h);
        else if (r == 2) snprintf(out, sizeof out, "%dx%d", BIG_W / 8, BIG_H / 8);
        else if (r == 3) snprintf(out, sizeof out, "%dx%d", BIG_W, BIG_H);
        else if (r == 4) snprintf(out, sizeof out, "16x16");
        printf("| %s | %s | %.2f | %.2f |\n", rows[r].what, out, rows[r].median_ms, rows[r].p90_ms);
    }
    blob_free(&jpg);
    return 0;
}

/* ------------------------------------------------------------------ helpers */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile. */
static double percentile(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int k = (int)(p * n + 0.999999) - 1;
    return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

static uint8_t *upscale(const ce_image *src, int w, int h)
{
    uint8_t *dst = malloc((size_t)w * (size_t)h * 3);
    if (!dst) exit(1);
    for (int y = 0; y < h; y++) {
        float fy = ((float)y + 0.5f) * (float)src->height / (float)h - 0.5f;
        if (fy < 0) fy = 0;
        int y0 = (int)fy, y1 = y0 + 1 < src->height ? y0 + 1 : y0;
        float ay = fy - (float)y0;
        for (int x = 0; x < w; x++) {
            float fx = ((float)x + 0.5f) * (float)src->width / (float)w - 0.5f;
            if (fx < 0) fx = 0;
            int x0 = (int)fx, x1 = x0 + 1 < src->width ? x0 + 1 : x0;
            float ax = fx - (float)x0;
            for (int c = 0; c < 3; c++) {
                const uint8_t *p = src->pixels;
                int sw = src->width;
                float top = p[(y0 * sw + x0) * 3 + c] * (1 - ax) + p[(y0 * sw + x1) * 3 + c] * ax;
                float bot = p[(y1 * sw + x0) * 3 + c] * (1 - ax) + p[(y1 * sw + x1) * 3 + c] * ax;
                dst[((size_t)y * (size_t)w + (size_t)x) * 3 + c] =
                    (uint8_t)(top * (1 - ay) + bot * ay + 0.5f);
            }
        }
    }
    return dst;
}

static int run_djpeg(const char *scale, const char *path)
{
    char *argv_scaled[] = {"djpeg",     "-scale",     (char *)scale, "-outfile",
                           "/dev/null", (char *)path, NULL};
    char *argv_full[] = {"djpeg", "-outfile", "/dev/null", (char *)path, NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, "djpeg", NULL, NULL, scale ? argv_scaled : argv_full, environ);
    if (rc != 0) {
        fprintf(stderr,
                "bench_decode: cannot run djpeg (apt-get install "
                "libjpeg-turbo-progs): %s\n",
                strerror(rc));
        return -1;
    }
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench_decode: djpeg failed\n");
        return -1;
    }
    return 0;
}

/* Plain libjpeg with the default (exiting) error handler: the file is our own. */
static void raw_decode(const blob *b, int scale_num, J_DCT_METHOD dct, int fancy, int *w, int *h)
{
    struct jpeg_decompress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_decompress(&c);
    jpeg_mem_src(&c, b->data, (unsigned long)b->size);
    jpeg_read_header(&c, TRUE);
    c.scale_num = (unsigned)scale_num;
    c.scale_denom = 8;
    c.dct_method = dct;
    c.do_fancy_upsampling = fancy ? TRUE : FALSE;
    c.out_color_space = JCS_RGB;
    jpeg_start_decompress(&c);
    size_t stride = (size_t)c.output_width * 3;
    uint8_t *px = malloc(stride * c.output_height);
    while (c.output_scanline < c.output_height) {
        JSAMPROW r = px + stride * c.output_scanline;
        jpeg_read_scanlines(&c, &r, 1);
    }
    jpeg_finish_decompress(&c);
    *w = (int)c.output_width;
    *h = (int)c.output_height;
    jpeg_destroy_decompress(&c);
    free(px);
}
