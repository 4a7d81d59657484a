/*
 * The 1/8-scale JPEG fast path (engine/image_jpeg_eighth.c) against libjpeg-turbo itself:
 * every file it accepts must decode to libjpeg's bytes at scale 1/8, and every file
 * libjpeg refuses it must decline.
 *
 *   - generated files: 4:4:4, 4:2:2, 4:4:0, 4:2:0 and grayscale, qualities 20..100, standard
 *     and optimised Huffman tables, restart intervals of 1, 5 and 64 MCUs, sizes that
 *     leave partial MCUs (down to 1x1) and a textured image whose blocks hold many AC
 *     symbols: all accepted, all identical;
 *   - files it must decline (progressive, CMYK, RGB-coded, 4:1:1, 4:1:0): declined, and
 *     ce__decode_jpeg still decodes them through libjpeg;
 *   - what libjpeg passes over around the entropy-coded data (fill bytes before restart
 *     markers and EOI, stray bytes before EOI): accepted and identical;
 *   - damaged files (truncations, flipped and overwritten bytes, a 4 MP file cut short):
 *     declined or identical to libjpeg's output, never accepted where libjpeg fails;
 *   - real photos: every *.jpg of the folders named on the command line (the darknet
 *     sample photos in ctest), identical.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "capengine.h"
#include "image.h"
#include "imggen.h"

static int failures;

#define CHECK(cond, ...) check((cond), #cond, __FILE__, __LINE__, __VA_ARGS__)

static void check(int ok, const char *expr, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void check(int ok, const char *expr, const char *file, int line, const char *fmt, ...)
{
    if (ok) return;
    failures++;
    fprintf(stderr, "%s:%d: FAILED %s: ", file, line, expr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

enum { ACCEPTED, DECLINED, BOTH_FAILED };

/* Decodes data both ways. ACCEPTED: the fast path decoded it, identically to libjpeg;
 * DECLINED: it declined (libjpeg's result is then whatever it is); BOTH_FAILED: libjpeg
 * refused it and the fast path declined. Anything else is a failure, reported as `what`. */
static int compare(const uint8_t *data, size_t size, const char *what)
{
    ce_decode_params params = {.max_pixels = 1LL << 40, .min_side = 1, .libjpeg_only = 1};
    ce_image ref;
    memset(&ref, 0, sizeof ref);
    ce_err err;
    memset(&err, 0, sizeof err);
    int orientation;
    const int ref_rc = ce__decode_jpeg(data, size, &params, &ref, &orientation, &err);

    ce__jpeg_eighth fast;
    const int rc = ce__jpeg_decode_eighth(data, size, &fast);
    CHECK(rc == 0 || rc == 1, "%s: fast path returned %d", what, rc);
    int result = DECLINED;
    if (rc == 0) {
        CHECK(ref_rc == 0, "%s: accepted a file libjpeg refuses (%s)", what, err.msg);
        if (ref_rc == 0) {
            CHECK(fast.width == ref.width && fast.height == ref.height, "%s: %dx%d, libjpeg %dx%d",
                  what, fast.width, fast.height, ref.width, ref.height);
            if (fast.width == ref.width && fast.height == ref.height) {
                const size_t n = (size_t)ref.width * (size_t)ref.height * 3;
                size_t diff = 0, first = 0;
                for (size_t i = 0; i < n; i++)
                    if (fast.pixels[i] != ref.pixels[i] && !diff++) first = i;
                CHECK(diff == 0,
                      "%s: %zu of %zu bytes differ, first at pixel %zu channel %zu "
                      "(%d, libjpeg %d)",
                      what, diff, n, first / 3, first % 3, fast.pixels[first], ref.pixels[first]);
            }
        }
        free(fast.pixels);
        result = ACCEPTED;
    } else if (ref_rc != 0) {
        result = BOTH_FAILED;
    }
    free(ref.pixels);
    return result;
}

/* Smooth gradients, hard edges and noise: blocks with a few and with many AC symbols. */
static uint8_t *textured(int w, int h, int channels, uint32_t seed)
{
    uint8_t *px = malloc((size_t)w * (size_t)h * (size_t)channels);
    if (!px) abort();
    uint32_t s = seed;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < channels; c++) {
                s = s * 1664525u + 1013904223u;
                int v = (x * (c + 1) * 3 + y * 2) % 256;
                if ((x / 13 + y / 11) % 3 == 0) v = 255 - v;
                if (x > w / 2) v = (v + (int)(s >> 24) / 2) % 256; /* noisy right half */
                px[((size_t)y * (size_t)w + (size_t)x) * (size_t)channels + (size_t)c] = (uint8_t)v;
            }
    return px;
}

static void test_generated(void)
{
    static const struct {
        int h, v, channels;
        const char *name;
    } sampling[] = {{1, 1, 3, "4:4:4"},
                    {2, 1, 3, "4:2:2"},
                    {1, 2, 3, "4:4:0"},
                    {2, 2, 3, "4:2:0"},
                    {1, 1, 1, "gray"}};
    static const int sizes[][2] = {{1, 1}, {17, 9}, {203, 157}, {256, 128}, {385, 241}};
    static const int qualities[] = {20, 75, 95, 100};
    static const int restarts[] = {0, 1, 5, 64};
    int files = 0, accepted = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const int w = sizes[si][0], h = sizes[si][1];
        for (size_t m = 0; m < sizeof sampling / sizeof sampling[0]; m++) {
            uint8_t *px = textured(w, h, sampling[m].channels, (uint32_t)(si * 7 + m));
            for (size_t q = 0; q < sizeof qualities / sizeof qualities[0]; q++)
                for (size_t r = 0; r < sizeof restarts / sizeof restarts[0]; r++)
                    for (int opt = 0; opt < 2; opt++) {
                        jpeg_opts o = {.quality = qualities[q],
                                       .luma_h = sampling[m].channels == 3 ? sampling[m].h : 0,
                                       .luma_v = sampling[m].channels == 3 ? sampling[m].v : 0,
                                       .restart_interval = restarts[r],
                                       .optimize = opt};
                        blob b = make_jpeg(px, w, h, sampling[m].channels, &o);
                        char what[128];
                        snprintf(what, sizeof what, "%dx%d %s q%d restart %d%s", w, h,
                                 sampling[m].name, qualities[q], restarts[r],
                                 opt ? " optimised" : "");
                        const int res = compare(b.data, b.size, what);
                        CHECK(res == ACCEPTED, "%s: declined", what);
                        files++;
                        accepted += res == ACCEPTED;
                        blob_free(&b);
                    }
            free(px);
        }
    }
    printf("generated: %d of %d files accepted and identical to libjpeg at 1/8\n", accepted, files);
}

/* A 4 MP file, whose entropy-coded data passes through the decoder's 64 KB window many
 * times, with and without restart markers; then through the public path, where the
 * fast path's image carries the source size and EXIF. */
static void test_through_loader(void)
{
    uint8_t app1[512];
    const size_t app1_len = make_exif_app1(app1, 0, 6, "2021:06:01 10:00:00", NULL);
    uint8_t *px = textured(2400, 1800, 3, 42);
    jpeg_opts restarts = {.quality = 95, .restart_interval = 3000};
    blob r = make_jpeg(px, 2400, 1800, 3, &restarts);
    CHECK(compare(r.data, r.size, "2400x1800 q95, restart every 3000 MCUs") == ACCEPTED,
          "declined");
    blob_free(&r);
    jpeg_opts o = {.quality = 90, .app1 = app1, .app1_len = app1_len};
    blob b = make_jpeg(px, 2400, 1800, 3, &o);
    CHECK(b.size > 4 * 65536, "only %zu bytes", b.size);
    CHECK(compare(b.data, b.size, "2400x1800 q90") == ACCEPTED, "declined");
    ce_load_options opt = {.max_pixels = 50000000, .min_side = 224};
    ce_image im;
    ce_err err;
    int rc = ce_image_load_memory(b.data, b.size, &opt, &im, &err);
    CHECK(rc == 0, "rc %d: %s", rc, err.msg);
    if (rc == 0) {
        /* orientation 6 turns the 300x225 image: libjpeg's 1/8 size, rotated */
        CHECK(im.width == 225 && im.height == 300, "%dx%d", im.width, im.height);
        CHECK(im.source_width == 1800 && im.source_height == 2400, "source %dx%d", im.source_width,
              im.source_height);
        CHECK(im.taken_time == 1622541600, "taken %lld", (long long)im.taken_time);
        ce_image_free(&im);
    }
    free(px);
    blob_free(&b);
}

/* A copy of b with `insert` put before the byte at `at`. */
static blob spliced(const blob *b, size_t at, const uint8_t *insert, size_t n)
{
    blob out = {malloc(b->size + n), b->size + n};
    if (!out.data) abort();
    memcpy(out.data, b->data, at);
    memcpy(out.data + at, insert, n);
    memcpy(out.data + at + n, b->data + at, b->size - at);
    return out;
}

/* What libjpeg reads past without complaint around the entropy-coded data: fill bytes
 * before a restart marker or EOI, and stray bytes before EOI (its "extraneous data",
 * a warning image_jpeg.c lets pass). Accepted and identical, or declined; a large
 * file cut in the middle of its data is declined (libjpeg refuses it). */
static void test_around_the_data(void)
{
    uint8_t *px = textured(640, 480, 3, 7);
    jpeg_opts o = {.quality = 92, .restart_interval = 40};
    blob b = make_jpeg(px, 640, 480, 3, &o);
    static const uint8_t fill[] = {0xff, 0xff, 0xff};
    int rst_seen = 0;
    for (size_t i = b.size - 2; i > 2 && rst_seen < 3; i--) {
        if (b.data[i] != 0xff || b.data[i + 1] < 0xd0 || b.data[i + 1] > 0xd7) continue;
        blob f = spliced(&b, i, fill, sizeof fill);
        CHECK(compare(f.data, f.size, "fill bytes before a restart marker") == ACCEPTED,
              "declined");
        blob_free(&f);
        rst_seen++;
    }
    CHECK(rst_seen == 3, "only %d restart markers", rst_seen);
    blob f = spliced(&b, b.size - 2, fill, sizeof fill);
    CHECK(compare(f.data, f.size, "fill bytes before EOI") == ACCEPTED, "declined");
    blob_free(&f);
    static const uint8_t junk[] = {0x12, 0x34, 0x56, 0x00, 0x7f};
    f = spliced(&b, b.size - 2, junk, sizeof junk);
    CHECK(compare(f.data, f.size, "stray bytes before EOI") == ACCEPTED, "declined");
    blob_free(&f);
    uint8_t *many = calloc(70000, 1);
    if (!many) abort();
    f = spliced(&b, b.size - 2, many, 70000);
    CHECK(compare(f.data, f.size, "70,000 stray bytes before EOI") != BOTH_FAILED,
          "libjpeg refused it");
    blob_free(&f);
    free(many);
    blob_free(&b);

    jpeg_opts big = {.quality = 95};
    uint8_t *bpx = textured(2400, 1800, 3, 8);
    b = make_jpeg(bpx, 2400, 1800, 3, &big);
    for (int cut = 1; cut < 4; cut++) {
        char what[64];
        snprintf(what, sizeof what, "4 MP file cut at %d/4", cut);
        CHECK(compare(b.data, b.size * (size_t)cut / 4, what) == BOTH_FAILED,
              "libjpeg accepted it, or the fast path did");
    }
    blob_free(&b);
    free(bpx);
    free(px);
}

static void test_declined(void)
{
    uint8_t *rgb = textured(96, 64, 3, 1), *cmyk = textured(96, 64, 4, 2);
    struct {
        const char *what;
        jpeg_opts o;
        int channels;
    } cases[] = {
        {"progressive", {.progressive = 1}, 3},
        {"CMYK (Adobe APP14)", {0}, 4},
        {"RGB-coded (no colour transform)", {.jpeg_space = JCS_RGB}, 3},
        {"4:1:1", {.luma_h = 4, .luma_v = 1}, 3},
        {"4:1:0", {.luma_h = 4, .luma_v = 2}, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        blob b =
            make_jpeg(cases[i].channels == 4 ? cmyk : rgb, 96, 64, cases[i].channels, &cases[i].o);
        ce__jpeg_eighth fast;
        CHECK(ce__jpeg_decode_eighth(b.data, b.size, &fast) == 1, "%s: not declined",
              cases[i].what);
        ce_decode_params params = {.max_pixels = 1LL << 40, .min_side = 1, .libjpeg_only = 0};
        ce_image im;
        ce_err err;
        int orientation;
        int rc = ce__decode_jpeg(b.data, b.size, &params, &im, &orientation, &err);
        CHECK(rc == 0 && im.width == 12 && im.height == 8, "%s through libjpeg: rc %d %s",
              cases[i].what, rc, err.msg);
        if (rc == 0) free(im.pixels);
        blob_free(&b);
    }
    free(rgb);
    free(cmyk);
}

/* Truncations and corruptions of a few files: the promise holds for each. */
static void test_damaged(void)
{
    int cases = 0, accepted = 0, both_failed = 0;
    for (int variant = 0; variant < 4; variant++) {
        const int channels = variant == 3 ? 1 : 3;
        uint8_t *px = textured(120, 88, channels, (uint32_t)(100 + variant));
        jpeg_opts o = {.quality = 85,
                       .luma_h = variant == 1   ? 2
                                 : variant == 2 ? 1
                                                : 0,
                       .luma_v = variant == 1   ? 1
                                 : variant == 2 ? 1
                                                : 0,
                       .restart_interval = variant == 2 ? 3 : 0};
        blob b = make_jpeg(px, 120, 88, channels, &o);
        uint8_t *copy = malloc(b.size);
        if (!copy) abort();
        uint32_t s = 12345u + (uint32_t)variant;
        char what[96];
        for (size_t cut = 0; cut < b.size; cut += 1 + b.size / 97) {
            snprintf(what, sizeof what, "variant %d cut at %zu of %zu", variant, cut, b.size);
            const int res = compare(b.data, cut, what);
            cases++;
            accepted += res == ACCEPTED;
            both_failed += res == BOTH_FAILED;
        }
        for (int trial = 0; trial < 400; trial++) {
            memcpy(copy, b.data, b.size);
            const int edits = 1 + trial % 4;
            for (int e = 0; e < edits; e++) {
                s = s * 1664525u + 1013904223u;
                const size_t at = (size_t)(s >> 8) % b.size;
                s = s * 1664525u + 1013904223u;
                copy[at] = trial & 1 ? (uint8_t)(copy[at] ^ (1u << (s >> 29))) : (uint8_t)(s >> 24);
            }
            snprintf(what, sizeof what, "variant %d corruption %d", variant, trial);
            const int res = compare(copy, b.size, what);
            cases++;
            accepted += res == ACCEPTED;
            both_failed += res == BOTH_FAILED;
        }
        free(copy);
        free(px);
        blob_free(&b);
    }
    printf("damaged: %d files, %d accepted (identical to libjpeg), %d refused by libjpeg and "
           "declined, the rest declined\n",
           cases, accepted, both_failed);
}

static void test_photos(int argc, char **argv)
{
    int files = 0, accepted = 0;
    for (int a = 1; a < argc; a++) {
        DIR *dir = opendir(argv[a]);
        if (!dir) continue;
        struct dirent *e;
        while ((e = readdir(dir))) {
            const size_t n = strlen(e->d_name);
            if (n < 5 ||
                (strcasecmp(e->d_name + n - 4, ".jpg") && strcasecmp(e->d_name + n - 5, ".jpeg")))
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[a], e->d_name);
            blob b = read_file(path);
            const int res = compare(b.data, b.size, path);
            files++;
            accepted += res == ACCEPTED;
            blob_free(&b);
        }
        closedir(dir);
    }
    printf("photos: %d of %d accepted and identical to libjpeg at 1/8%s\n", accepted, files,
           files ? "" : " (no photo folder given)");
}

int main(int argc, char **argv)
{
    test_generated();
    test_through_loader();
    test_around_the_data();
    test_declined();
    test_damaged();
    test_photos(argc, argv);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all jpeg_eighth checks passed\n");
    return 0;
}
