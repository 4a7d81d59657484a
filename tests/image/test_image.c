/*
 * Image loading: generated JPEGs and PNGs of every flavour, EXIF orientation and time,
 * DCT downscaling, and bad input (each a clear error, never a crash; run under ASan).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>

#include "capengine.h"
#include "image.h"
#include "imggen.h"

static int failures;
static char tmpdir[64];

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

static const uint8_t QUAD[4][3] = {{220, 30, 30}, {30, 200, 40}, {40, 50, 210}, {240, 240, 240}};

/* Pixel (x, y) is within tol of rgb on every channel. */
static int near(const ce_image *im, int x, int y, const uint8_t rgb[3], int tol)
{
    const uint8_t *p = im->pixels + ((size_t)y * (size_t)im->width + (size_t)x) * 3;
    for (int c = 0; c < 3; c++)
        if (abs(p[c] - rgb[c]) > tol) {
            fprintf(stderr, "  pixel (%d,%d) = %d,%d,%d, want %d,%d,%d +-%d\n", x, y, p[0], p[1],
                    p[2], rgb[0], rgb[1], rgb[2], tol);
            return 0;
        }
    return 1;
}

/* The centres of the four quadrants of im are q[0..3] (TL, TR, BL, BR). */
static int quadrants_are(const ce_image *im, const uint8_t *q0, const uint8_t *q1,
                         const uint8_t *q2, const uint8_t *q3, int tol)
{
    int w = im->width, h = im->height;
    return near(im, w / 4, h / 4, q0, tol) && near(im, 3 * w / 4, h / 4, q1, tol) &&
           near(im, w / 4, 3 * h / 4, q2, tol) && near(im, 3 * w / 4, 3 * h / 4, q3, tol);
}

static int load(const blob *b, const ce_load_options *opt, ce_image *im, ce_err *err)
{
    int rc = ce_image_load_memory(b->data, b->size, opt, im, err);
    if (rc == 0 && (!im->pixels || im->width <= 0 || im->height <= 0)) return -1000;
    if (rc < 0 && (im->pixels || err->msg[0] == '\0')) return -1001; /* no message / leak */
    return rc;
}

/* ------------------------------------------------------------------ JPEG */

static void test_jpeg_rgb(void)
{
    uint8_t *px = quadrants(64, 48, QUAD);
    blob b = make_jpeg(px, 64, 48, 3, NULL);
    ce_image im;
    ce_err err = {""};
    int rc = load(&b, NULL, &im, &err);
    CHECK(rc == 0, "rc %d: %s", rc, err.msg);
    if (rc == 0) {
        CHECK(im.width == 64 && im.height == 48, "%dx%d", im.width, im.height);
        CHECK(im.source_width == 64 && im.source_height == 48, "source %dx%d", im.source_width,
              im.source_height);
        CHECK(im.taken_time == 0, "taken %lld", (long long)im.taken_time);
        CHECK(quadrants_are(&im, QUAD[0], QUAD[1], QUAD[2], QUAD[3], 8), "colours");
    }
    ce_image_free(&im);
    CHECK(im.pixels == NULL, "free clears");
    ce_image_free(&im); /* twice is harmless */
    blob_free(&b);
    free(px);
}

static void test_jpeg_gray(void)
{
    uint8_t px[40 * 30];
    memset(px, 77, sizeof px);
    blob b = make_jpeg(px, 40, 30, 1, NULL);
    ce_image im;
    ce_err err = {""};
    int rc = load(&b, NULL, &im, &err);
    CHECK(rc == 0, "gray rc %d: %s", rc, err.msg);
    if (rc == 0) {
        static const uint8_t g[3] = {77, 77, 77};
        CHECK(im.width == 40 && im.height == 30 && near(&im, 20, 15, g, 2), "gray to RGB");
    }
    ce_image_free(&im);
    blob_free(&b);
}

/* libjpeg writes CMYK files with an Adobe APP14 marker, so (like Photoshop) we store the
 * values inverted: 255 = no ink. Stored (255,128,64,255) is RGB (255,128,64); K=128
 * halves it. Both the CMYK and the YCCK encodings. */
static void test_jpeg_cmyk(void)
{
    static const int spaces[2] = {JCS_CMYK, JCS_YCCK};
    for (int s = 0; s < 2; s++) {
        uint8_t px[32 * 16 * 4];
        for (int i = 0; i < 32 * 16; i++) {
            int right = (i % 32) >= 16;
            px[4 * i + 0] = 255;
            px[4 * i + 1] = 128;
            px[4 * i + 2] = 64;
            px[4 * i + 3] = right ? 128 : 255;
        }
        jpeg_opts o = {.jpeg_space = spaces[s]};
        blob b = make_jpeg(px, 32, 16, 4, &o);
        ce_image im;
        ce_err err = {""};
        int rc = load(&b, NULL, &im, &err);
        CHECK(rc == 0, "%s rc %d: %s", s ? "YCCK" : "CMYK", rc, err.msg);
        if (rc == 0) {
            static const uint8_t full[3] = {255, 128, 64}, half[3] = {128, 64, 32};
            CHECK(im.width == 32 && im.height == 16, "%dx%d", im.width, im.height);
            CHECK(near(&im, 4, 8, full, 6) && near(&im, 27, 8, half, 6), "%s colours",
                  s ? "YCCK" : "CMYK");
        }
        ce_image_free(&im);
        blob_free(&b);
    }
}

/* CMYK without an Adobe marker holds plain ink amounts: ink (0,127,191,0) is RGB
 * (255,128,64). */
static void test_jpeg_cmyk_plain(void)
{
    uint8_t px[16 * 16 * 4];
    for (int i = 0; i < 16 * 16; i++) {
        px[4 * i + 0] = 0;
        px[4 * i + 1] = 127;
        px[4 * i + 2] = 191;
        px[4 * i + 3] = 0;
    }
    blob b = make_jpeg(px, 16, 16, 4, &(jpeg_opts){.jpeg_space = JCS_CMYK, .no_adobe_marker = 1});
    CHECK(b.size > 20 && memmem(b.data, b.size, "Adobe", 5) == NULL, "writer left out APP14");
    ce_image im;
    ce_err err = {""};
    int rc = load(&b, NULL, &im, &err);
    static const uint8_t want[3] = {255, 128, 64};
    CHECK(rc == 0 && near(&im, 8, 8, want, 6), "plain CMYK rc %d %s", rc, err.msg);
    ce_image_free(&im);
    blob_free(&b);
}

/* 12 MP decodes at 1/8 (500x375), never in full; min_side picks other scales. */
static void test_jpeg_scale(void)
{
    uint8_t *px = quadrants(4000, 3000, QUAD);
    blob b = make_jpeg(px, 4000, 3000, 3, &(jpeg_opts){.quality = 85});
    free(px);
    ce_image im;
    ce_err err = {""};
    int rc = load(&b, NULL, &im, &err);
    CHECK(rc == 0, "12 MP rc %d: %s", rc, err.msg);
    if (rc == 0) {
        CHECK(im.width == 500 && im.height == 375, "12 MP at 1/8: %dx%d", im.width, im.height);
        CHECK(im.source_width == 4000 && im.source_height == 3000, "source %dx%d", im.source_width,
              im.source_height);
        CHECK(quadrants_are(&im, QUAD[0], QUAD[1], QUAD[2], QUAD[3], 8), "12 MP colours");
    }
    ce_image_free(&im);

    /* 3000 * N/8 >= 1000 needs N = 3: 1500x1125. */
    rc = load(&b, &(ce_load_options){.min_side = 1000}, &im, &err);
    CHECK(rc == 0 && im.width == 1500 && im.height == 1125, "min_side 1000: rc %d %dx%d", rc,
          im.width, im.height);
    ce_image_free(&im);
    blob_free(&b);

    /* Progressive 800x600: 600 * N/8 >= 300 at N = 4: 400x300. */
    px = quadrants(800, 600, QUAD);
    b = make_jpeg(px, 800, 600, 3, &(jpeg_opts){.progressive = 1});
    free(px);
    rc = load(&b, NULL, &im, &err);
    CHECK(rc == 0 && im.width == 400 && im.height == 300, "progressive: rc %d %dx%d (%s)", rc,
          im.width, im.height, err.msg);
    if (rc == 0)
        CHECK(quadrants_are(&im, QUAD[0], QUAD[1], QUAD[2], QUAD[3], 8), "progressive colours");
    ce_image_free(&im);
    blob_free(&b);
}

/* ------------------------------------------------------------------ EXIF */

/* Orientation 6 (little-endian EXIF) and 8 (big-endian) on a JPEG, with the quadrant
 * colours checked where the EXIF spec says they end up. */
static void test_exif_jpeg(void)
{
    uint8_t *px = quadrants(64, 32, QUAD);
    for (int k = 0; k < 2; k++) {
        const int orientation = k ? 8 : 6, be = k;
        uint8_t app1[256];
        size_t n =
            make_exif_app1(app1, be, orientation, "2019:01:02 03:04:05", "2021:06:15 14:30:00");
        blob b = make_jpeg(px, 64, 32, 3, &(jpeg_opts){.app1 = app1, .app1_len = n});
        ce_image im;
        ce_err err = {""};
        int rc = load(&b, NULL, &im, &err);
        CHECK(rc == 0, "orientation %d rc %d: %s", orientation, rc, err.msg);
        if (rc == 0) {
            CHECK(im.width == 32 && im.height == 64, "orientation %d: %dx%d", orientation, im.width,
                  im.height);
            CHECK(im.source_width == 32 && im.source_height == 64, "source %dx%d", im.source_width,
                  im.source_height);
            CHECK(im.taken_time == 1623767400, "DateTimeOriginal wins: %lld",
                  (long long)im.taken_time);
            if (orientation == 6) /* rotate 90 clockwise */
                CHECK(quadrants_are(&im, QUAD[2], QUAD[0], QUAD[3], QUAD[1], 8), "rot 6");
            else /* rotate 90 counter-clockwise */
                CHECK(quadrants_are(&im, QUAD[1], QUAD[3], QUAD[0], QUAD[2], 8), "rot 8");
        }
        ce_image_free(&im);
        blob_free(&b);
    }
    free(px);
}

/* All eight orientations, exactly, on a lossless PNG with an eXIf chunk. The expected
 * layout comes straight from the EXIF spec's table of where the stored 0th row and
 * 0th column are displayed. */
static void test_exif_all_orientations(void)
{
    enum { T, B, L, R };
    static const int row0[9] = {0, T, T, B, B, L, R, R, L};
    static const int col0[9] = {0, L, R, R, L, T, T, B, B};
    const int w = 5, h = 3;
    uint8_t px[5 * 3 * 3];
    for (int i = 0; i < w * h; i++) {
        px[3 * i] = (uint8_t)(i * 10);
        px[3 * i + 1] = (uint8_t)(i * 3);
        px[3 * i + 2] = 7;
    }
    for (int o = 1; o <= 8; o++) {
        uint8_t app1[256];
        size_t n = make_exif_app1(app1, o % 2, o, "2020:02:29 12:00:00", NULL);
        png_opts po = {
            .color_type = PNG_COLOR_TYPE_RGB, .bit_depth = 8, .exif = app1 + 6, .exif_len = n - 6};
        blob b = make_png(px, w, h, &po);
        ce_image im;
        ce_err err = {""};
        int rc = load(&b, NULL, &im, &err);
        CHECK(rc == 0, "orientation %d: rc %d %s", o, rc, err.msg);
        if (rc == 0) {
            int swap = row0[o] == L || row0[o] == R;
            int dw = swap ? h : w, dh = swap ? w : h;
            CHECK(im.width == dw && im.height == dh, "orientation %d: %dx%d", o, im.width,
                  im.height);
            CHECK(im.taken_time == 1582977600, "DateTime: %lld", (long long)im.taken_time);
            int bad = 0;
            for (int y = 0; y < h && im.width == dw; y++)
                for (int x = 0; x < w; x++) {
                    int dx, dy;
                    if (!swap) {
                        dy = row0[o] == T ? y : dh - 1 - y;
                        dx = col0[o] == L ? x : dw - 1 - x;
                    } else {
                        dx = row0[o] == L ? y : dw - 1 - y;
                        dy = col0[o] == T ? x : dh - 1 - x;
                    }
                    bad += memcmp(im.pixels + ((size_t)dy * (size_t)dw + (size_t)dx) * 3,
                                  px + ((size_t)y * (size_t)w + (size_t)x) * 3, 3) != 0;
                }
            CHECK(bad == 0, "orientation %d: %d pixels misplaced", o, bad);
        }
        ce_image_free(&im);
        blob_free(&b);
    }
}

/* The parser directly: values, both byte orders, and every truncation and many byte
 * corruptions of a valid block (the parser must stay in bounds: ASan checks). */
static void test_exif_parser(void)
{
    for (int be = 0; be < 2; be++) {
        uint8_t app1[256];
        size_t n = make_exif_app1(app1, be, 3, "2019:01:02 03:04:05", NULL);
        ce_exif ex;
        ce__exif_parse(app1 + 6, n - 6, &ex);
        CHECK(ex.orientation == 3 && ex.taken_time == 1546398245, "be=%d: %d %lld", be,
              ex.orientation, (long long)ex.taken_time);

        n = make_exif_app1(app1, be, 9, "0000:00:00 00:00:00", "2019:02:30 00:00:00");
        ce__exif_parse(app1 + 6, n - 6, &ex);
        CHECK(ex.orientation == 1 && ex.taken_time == 0, "invalid values ignored: %d %lld",
              ex.orientation, (long long)ex.taken_time);

        n = make_exif_app1(app1, be, 6, "2019:01:02 03:04:05", "2021:06:15 14:30:00");
        for (size_t len = 0; len < n - 6; len++) {
            uint8_t *copy = malloc(len ? len : 1); /* exact size so ASan sees overruns */
            memcpy(copy, app1 + 6, len);
            ce__exif_parse(copy, len, &ex);
            CHECK(ex.orientation >= 1 && ex.orientation <= 8, "prefix %zu", len);
            free(copy);
        }
        uint32_t seed = 12345;
        for (int iter = 0; iter < 5000; iter++) {
            uint8_t *copy = malloc(n - 6);
            memcpy(copy, app1 + 6, n - 6);
            for (int k = 0; k < 3; k++) {
                seed = seed * 1103515245u + 12345u;
                size_t at = (seed >> 8) % (n - 6);
                seed = seed * 1103515245u + 12345u;
                copy[at] = (uint8_t)(seed >> 16);
            }
            ce__exif_parse(copy, n - 6, &ex);
            CHECK(ex.orientation >= 1 && ex.orientation <= 8, "mutation %d", iter);
            free(copy);
        }
    }
    ce_exif ex;
    ce__exif_parse(NULL, 0, &ex);
    CHECK(ex.orientation == 1 && ex.taken_time == 0, "empty");
}

/* ------------------------------------------------------------------ PNG */

static void test_png_flavours(void)
{
    ce_image im;
    ce_err err = {""};
    int rc;

    /* RGBA over white: a = 0 white, 255 unchanged, 128 halfway. */
    uint8_t rgba[4 * 4] = {255, 0, 0, 0, 255, 0, 0, 255, 255, 0, 0, 128, 10, 20, 30, 255};
    blob b =
        make_png(rgba, 4, 1, &(png_opts){.color_type = PNG_COLOR_TYPE_RGB_ALPHA, .bit_depth = 8});
    rc = load(&b, NULL, &im, &err);
    CHECK(rc == 0, "RGBA rc %d %s", rc, err.msg);
    if (rc == 0) {
        static const uint8_t want[12] = {255, 255, 255, 255, 0, 0, 255, 127, 127, 10, 20, 30};
        CHECK(im.width == 4 && im.height == 1 && memcmp(im.pixels, want, 12) == 0,
              "alpha over white: %d,%d,%d", im.pixels[6], im.pixels[7], im.pixels[8]);
    }
    ce_image_free(&im);
    blob_free(&b);

    /* 16-bit RGB, big-endian samples: 0xffff -> 255, 0x8080 -> 128, 0 -> 0. */
    uint8_t rgb16[6] = {0xff, 0xff, 0x80, 0x80, 0x00, 0x00};
    b = make_png(rgb16, 1, 1, &(png_opts){.color_type = PNG_COLOR_TYPE_RGB, .bit_depth = 16});
    rc = load(&b, NULL, &im, &err);
    CHECK(rc == 0 && im.pixels[0] == 255 && im.pixels[1] == 128 && im.pixels[2] == 0,
          "16-bit rc %d %s", rc, err.msg);
    ce_image_free(&im);
    blob_free(&b);

    /* 16-bit gray + alpha. */
    uint8_t ga16[4] = {0x40, 0x40, 0xff, 0xff};
    b = make_png(ga16, 1, 1, &(png_opts){.color_type = PNG_COLOR_TYPE_GRAY_ALPHA, .bit_depth = 16});
    rc = load(&b, NULL, &im, &err);
    CHECK(rc == 0 && im.pixels[0] == 64 && im.pixels[1] == 64 && im.pixels[2] == 64,
          "16-bit gray+alpha rc %d %s", rc, err.msg);
    ce_image_free(&im);
    blob_free(&b);

    /* Palette with a transparent entry. */
    static const uint8_t pal[6] = {200, 10, 10, 0, 0, 255};
    static const uint8_t trns[2] = {255, 0};
    uint8_t idx[2] = {0, 1};
    b = make_png(idx, 2, 1,
                 &(png_opts){.color_type = PNG_COLOR_TYPE_PALETTE,
                             .bit_depth = 8,
                             .palette = pal,
                             .n_palette = 2,
                             .trns = trns,
                             .n_trns = 2});
    rc = load(&b, NULL, &im, &err);
    if (rc == 0) {
        static const uint8_t want[6] = {200, 10, 10, 255, 255, 255};
        CHECK(memcmp(im.pixels, want, 6) == 0, "palette + tRNS");
    } else {
        CHECK(0, "palette rc %d %s", rc, err.msg);
    }
    ce_image_free(&im);
    blob_free(&b);

    /* 1-bit gray: 0b10100000 -> 255, 0, 255, 0. */
    uint8_t bits[1] = {0xa0};
    b = make_png(bits, 4, 1, &(png_opts){.color_type = PNG_COLOR_TYPE_GRAY, .bit_depth = 1});
    rc = load(&b, NULL, &im, &err);
    CHECK(rc == 0 && im.pixels[0] == 255 && im.pixels[3] == 0 && im.pixels[6] == 255 &&
              im.pixels[11] == 0,
          "1-bit gray rc %d %s", rc, err.msg);
    ce_image_free(&im);
    blob_free(&b);

    /* 8-bit gray + alpha. */
    uint8_t ga[2] = {100, 0};
    b = make_png(ga, 1, 1, &(png_opts){.color_type = PNG_COLOR_TYPE_GRAY_ALPHA, .bit_depth = 8});
    rc = load(&b, NULL, &im, &err);
    CHECK(rc == 0 && im.pixels[0] == 255, "gray+alpha transparent -> white, rc %d", rc);
    ce_image_free(&im);
    blob_free(&b);
}

/* A 2000x1000 PNG decodes row by row into a 3x box average (667x334), exactly equal to
 * a reference computed here; the interlaced file gives the same result. */
static void test_png_downscale(void)
{
    const int w = 2000, h = 1000, f = 3, ow = 667, oh = 334;
    uint8_t *px = malloc((size_t)w * h * 3);
    uint32_t seed = 1;
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        seed = seed * 1664525u + 1013904223u;
        px[i] = (uint8_t)(seed >> 24);
    }
    uint8_t *want = malloc((size_t)ow * oh * 3);
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
            for (int c = 0; c < 3; c++) {
                unsigned sum = 0, n = 0;
                for (int y = oy * f; y < oy * f + f && y < h; y++)
                    for (int x = ox * f; x < ox * f + f && x < w; x++, n++)
                        sum += px[((size_t)y * w + x) * 3 + c];
                want[((size_t)oy * ow + ox) * 3 + c] = (uint8_t)((sum + n / 2) / n);
            }
    for (int interlace = 0; interlace < 2; interlace++) {
        blob b = make_png(
            px, w, h,
            &(png_opts){.color_type = PNG_COLOR_TYPE_RGB, .bit_depth = 8, .interlace = interlace});
        ce_image im;
        ce_err err = {""};
        int rc = load(&b, NULL, &im, &err);
        CHECK(rc == 0, "interlace %d rc %d %s", interlace, rc, err.msg);
        if (rc == 0) {
            CHECK(im.width == ow && im.height == oh && im.source_width == w &&
                      im.source_height == h,
                  "interlace %d: %dx%d", interlace, im.width, im.height);
            CHECK(im.width == ow && memcmp(im.pixels, want, (size_t)ow * oh * 3) == 0,
                  "interlace %d: box average differs", interlace);
        }
        ce_image_free(&im);
        blob_free(&b);
    }
    free(want);
    free(px);
}

/* ------------------------------------------------------------------ bad input */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return ~c;
}

static void expect_error(const blob *b, int want, const char *what, const char *msg_part)
{
    ce_image im;
    ce_err err = {""};
    int rc = load(b, NULL, &im, &err);
    CHECK(rc == want, "%s: rc %d (%s), want %d", what, rc, err.msg, want);
    if (msg_part) CHECK(strstr(err.msg, msg_part) != NULL, "%s: message '%s'", what, err.msg);
    ce_image_free(&im);
}

static void test_bombs(void)
{
    /* Bare JPEG header: SOI + SOF0 claiming 30000x30000, nothing else. */
    uint8_t sof[] = {0xff, 0xd8, 0xff, 0xc0, 0, 17,   8, 0x75, 0x30, 0x75, 0x30,
                     3,    1,    0x22, 0,    2, 0x11, 1, 3,    0x11, 1};
    expect_error(&(blob){sof, sizeof sof}, -E2BIG, "JPEG header 30000x30000", "30000x30000");

    /* A real JPEG (all tables, scan data) with its SOF patched to 30000x30000. */
    uint8_t *px = quadrants(16, 16, QUAD);
    blob b = make_jpeg(px, 16, 16, 3, NULL);
    free(px);
    for (size_t i = 2; i + 9 < b.size; i++)
        if (b.data[i] == 0xff && b.data[i + 1] == 0xc0) {
            b.data[i + 5] = 0x75;
            b.data[i + 6] = 0x30;
            b.data[i + 7] = 0x75;
            b.data[i + 8] = 0x30;
            break;
        }
    expect_error(&b, -E2BIG, "patched JPEG 30000x30000", "over the limit");
    blob_free(&b);

    /* PNG signature + IHDR 30000x30000 only. */
    uint8_t png[8 + 25] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    put_be32(png + 8, 13);
    memcpy(png + 12, "IHDR", 4);
    put_be32(png + 16, 30000);
    put_be32(png + 20, 30000);
    png[24] = 8;
    png[25] = 2;
    png[26] = 0;
    png[27] = 0;
    png[28] = 0;
    put_be32(png + 29, crc32_of(png + 12, 17));
    expect_error(&(blob){png, sizeof png}, -E2BIG, "PNG header 30000x30000", "30000x30000");

    /* max_pixels option. */
    px = quadrants(64, 48, QUAD);
    b = make_jpeg(px, 64, 48, 3, NULL);
    free(px);
    ce_image im;
    ce_err err = {""};
    int rc = load(&b, &(ce_load_options){.max_pixels = 3000}, &im, &err);
    CHECK(rc == -E2BIG, "max_pixels 3000 on 64x48: rc %d", rc);
    rc = load(&b, &(ce_load_options){.max_pixels = 3072}, &im, &err);
    CHECK(rc == 0, "max_pixels 3072 on 64x48: rc %d", rc);
    ce_image_free(&im);
    rc = load(&b, &(ce_load_options){.min_side = -1}, &im, &err);
    CHECK(rc == -EINVAL, "negative min_side: rc %d", rc);
    blob_free(&b);
}

/* Every strict prefix of a JPEG or PNG is an error (a truncated file never decodes as a
 * partly gray image), and corrupted bytes never crash. */
static void test_truncated_and_corrupt(void)
{
    uint8_t *px = quadrants(48, 40, QUAD);
    blob files[3] = {
        make_jpeg(px, 48, 40, 3, NULL),
        make_jpeg(px, 48, 40, 3, &(jpeg_opts){.progressive = 1}),
        make_png(px, 48, 40, &(png_opts){.color_type = PNG_COLOR_TYPE_RGB, .bit_depth = 8}),
    };
    free(px);
    for (int k = 0; k < 3; k++) {
        blob *f = &files[k];
        expect_error(&(blob){f->data, f->size / 2}, -EBADMSG, "cut at half", "truncated");
        int wrong = 0;
        for (size_t len = 1; len < f->size; len++) {
            uint8_t *copy = malloc(len);
            memcpy(copy, f->data, len);
            ce_image im;
            ce_err err = {""};
            int rc = load(&(blob){copy, len}, NULL, &im, &err);
            if (rc != -EBADMSG && !(len < 4 && rc == -ENOTSUP)) {
                if (wrong++ < 3)
                    fprintf(stderr, "  file %d prefix %zu: rc %d %s\n", k, len, rc, err.msg);
            }
            ce_image_free(&im);
            free(copy);
        }
        CHECK(wrong == 0, "file %d: %d prefixes not reported as corrupt", k, wrong);

        uint32_t seed = 99u + (uint32_t)k;
        int decoded = 0, errors = 0, other = 0;
        for (int iter = 0; iter < 400; iter++) {
            uint8_t *copy = malloc(f->size);
            memcpy(copy, f->data, f->size);
            for (int n = 0; n < 4; n++) {
                seed = seed * 1103515245u + 12345u;
                size_t at = 2 + (seed >> 8) % (f->size - 2);
                seed = seed * 1103515245u + 12345u;
                copy[at] = (uint8_t)(seed >> 16);
            }
            ce_image im;
            ce_err err = {""};
            int rc = load(&(blob){copy, f->size}, NULL, &im, &err);
            if (rc == 0) decoded++;
            else if (rc == -EBADMSG || rc == -ENOTSUP || rc == -E2BIG) errors++;
            else other++;
            ce_image_free(&im);
            free(copy);
        }
        CHECK(other == 0, "file %d corrupted: %d decoded, %d errors, %d unexpected", k, decoded,
              errors, other);
        blob_free(f);
    }

    uint8_t garbage[300];
    for (size_t i = 0; i < sizeof garbage; i++) garbage[i] = (uint8_t)(i * 37 + 11);
    expect_error(&(blob){garbage, sizeof garbage}, -ENOTSUP, "garbage", "unrecognised content");
    garbage[0] = 0xff;
    garbage[1] = 0xd8;
    expect_error(&(blob){garbage, sizeof garbage}, -EBADMSG, "SOI + garbage", "JPEG");
    /* a GIF header with nothing after it: read by the GIF decoder, which finds no image */
    uint8_t gif[32] = "GIF89a";
    expect_error(&(blob){gif, sizeof gif}, -EBADMSG, "GIF header only", "GIF");
    uint8_t bmp[32] = "BM";
    expect_error(&(blob){bmp, sizeof bmp}, -ENOTSUP, "BMP", "BMP");
    expect_error(&(blob){garbage, 0}, -EBADMSG, "zero bytes", "empty");
}

/* ------------------------------------------------------------------ files */

static void path_in_tmp(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", tmpdir, name);
}

static void test_files(void)
{
    char path[128];
    ce_image im;
    ce_err err = {""};
    int rc;

    /* A PNG named .jpg loads as the PNG it is. */
    uint8_t *px = quadrants(20, 10, QUAD);
    blob b = make_png(px, 20, 10, &(png_opts){.color_type = PNG_COLOR_TYPE_RGB, .bit_depth = 8});
    free(px);
    path_in_tmp(path, sizeof path, "really-a-png.jpg");
    write_file(path, b.data, b.size);
    blob_free(&b);
    rc = ce_image_load_file(path, NULL, &im, &err);
    CHECK(rc == 0 && im.width == 20 && im.height == 10 && near(&im, 2, 2, QUAD[0], 0),
          "PNG named .jpg: rc %d %s", rc, err.msg);
    ce_image_free(&im);

    path_in_tmp(path, sizeof path, "empty.jpg");
    write_file(path, "", 0);
    rc = ce_image_load_file(path, NULL, &im, &err);
    CHECK(rc == -EBADMSG && strstr(err.msg, "empty"), "zero-byte file: rc %d %s", rc, err.msg);

    path_in_tmp(path, sizeof path, "missing.jpg");
    rc = ce_image_load_file(path, NULL, &im, &err);
    CHECK(rc == -ENOENT && strstr(err.msg, "missing.jpg"), "missing: rc %d %s", rc, err.msg);

    rc = ce_image_load_file(tmpdir, NULL, &im, &err);
    CHECK(rc == -EISDIR && strstr(err.msg, "directory"), "directory: rc %d %s", rc, err.msg);

    rc = ce_image_load_file("/dev/null", NULL, &im, &err);
    CHECK(rc == -EINVAL && strstr(err.msg, "regular"), "/dev/null: rc %d %s", rc, err.msg);

    /* Unreadable: root reads anything, so check as an unprivileged user in a child. */
    path_in_tmp(path, sizeof path, "secret.jpg");
    write_file(path, "\xff\xd8\xff", 3);
    chmod(path, 0);
    chmod(tmpdir, 0755);
    pid_t pid = fork();
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(3);
        ce_err cerr = {""};
        int crc = ce_image_load_file(path, NULL, &im, &cerr);
        _exit(crc == -EACCES && strstr(cerr.msg, "ermission") ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "unreadable file: child status %d",
          status);
    unlink(path);

    /* A file that is a truncated JPEG, as the daemon may meet one mid-copy. */
    px = quadrants(64, 64, QUAD);
    b = make_jpeg(px, 64, 64, 3, NULL);
    free(px);
    path_in_tmp(path, sizeof path, "half.jpg");
    write_file(path, b.data, b.size / 2);
    blob_free(&b);
    rc = ce_image_load_file(path, NULL, &im, &err);
    CHECK(rc == -EBADMSG && strstr(err.msg, "truncated"), "half file: rc %d %s", rc, err.msg);

    rc = ce_image_load_file(NULL, NULL, &im, &err);
    CHECK(rc == -EINVAL, "NULL path");
}

/* ------------------------------------------------------------------ CR3 boxes */

/* Appends box `type` holding `payload` (n bytes) at out + *at; returns its offset. */
static size_t put_box(uint8_t *out, size_t *at, const char *type, const void *payload, size_t n)
{
    const size_t start = *at, size = 8 + n;
    out[start] = (uint8_t)(size >> 24), out[start + 1] = (uint8_t)(size >> 16);
    out[start + 2] = (uint8_t)(size >> 8), out[start + 3] = (uint8_t)size;
    memcpy(out + start + 4, type, 4);
    if (n) memcpy(out + start + 8, payload, n);
    *at += size;
    return start;
}

/* A CR3's box tree as LibRaw walks it (ftyp; moov with Canon's uuid and a trak down to
 * stsd / CRAW; XMP and preview uuids; mdat), with no image in it: LibRaw rejects it, but
 * the box check in engine/image_raw.c must let it through, and must stop the broken
 * variants (sizes that do not move forward, or that run past their container) before
 * LibRaw 0.20, which loops forever on some of them. */
static size_t make_cr3_tree(uint8_t *out, int broken)
{
    static const uint8_t canon[16] = {0x85, 0xc0, 0xb6, 0x87, 0x82, 0x0f, 0x11, 0xe0,
                                      0x81, 0x11, 0xf4, 0xce, 0x46, 0x2b, 0x6a, 0x48};
    static const uint8_t preview[16] = {0xea, 0xf4, 0x2b, 0x5e, 0x1c, 0x98, 0x4b, 0x88,
                                        0xb9, 0xfb, 0xb7, 0xdc, 0x40, 0x6e, 0x4d, 0x16};
    static const uint8_t xmp[16] = {0xbe, 0x7a, 0xcf, 0xcb, 0x97, 0xa9, 0x42, 0xe8,
                                    0x9c, 0x71, 0x99, 0x94, 0x91, 0xe3, 0xaf, 0xac};
    uint8_t inner[1024], leaf[128] = {0};
    size_t at = 0, n;
    put_box(out, &at, "ftyp", "crx \0\0\0\1crx isom", 16);

    /* moov { uuid Canon { CNCV, CMT1 }, trak { mdia { minf { stbl { stsd { CRAW } } } } } } */
    uint8_t canon_box[256];
    size_t cn = 0;
    memcpy(canon_box, canon, 16);
    cn = 16;
    put_box(canon_box, &cn, "CNCV", "CanonCR3_001/00.09.00/00.00.00", 30);
    size_t cmt1 = put_box(canon_box, &cn, "CMT1", leaf, 16);
    if (broken == 1) canon_box[cmt1 + 3] = 4; /* a size below its 8-byte header */
    uint8_t craw[128], stsd[160], stbl[192], minf[224], mdia[256], trak[288];
    size_t k = 82;
    memset(craw, 0, sizeof craw);
    put_box(craw, &k, "CMP1", leaf, 16);
    size_t s = 8;
    memset(stsd, 0, 8);
    stsd[7] = 1;
    put_box(stsd, &s, "CRAW", craw, k);
    size_t t = 0;
    put_box(stbl, &t, "stsd", stsd, s);
    size_t u = 0;
    put_box(minf, &u, "stbl", stbl, t);
    size_t v = 0;
    put_box(mdia, &v, "minf", minf, u);
    size_t w = 0;
    put_box(trak, &w, "mdia", mdia, v);
    n = 0;
    put_box(inner, &n, "uuid", canon_box, cn);
    size_t trak_at = put_box(inner, &n, "trak", trak, w);
    if (broken == 2) memset(inner + trak_at + 8, 0, 4); /* mdia of size 0 inside trak */
    if (broken == 3) inner[trak_at + 8 + 3] += 64;      /* mdia runs past trak */
    put_box(out, &at, "moov", inner, n);

    uint8_t u_xmp[64], u_prv[64];
    memcpy(u_xmp, xmp, 16);
    memcpy(u_xmp + 16, "<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?>", 32);
    put_box(out, &at, "uuid", u_xmp, 48);
    memcpy(u_prv, preview, 16);
    memset(u_prv + 16, 0, 8);
    size_t pn = 24;
    put_box(u_prv, &pn, "PRVW", leaf, 16);
    put_box(out, &at, "uuid", u_prv, pn);
    size_t mdat = put_box(out, &at, "mdat", leaf, 64);
    if (broken == 4) { /* the fuzzed file's end: a 64-bit size of 0 */
        out[mdat + 3] = 1;
        memset(out + mdat + 8, 0, 8);
    }
    return at;
}

static void test_cr3_boxes(void)
{
    static uint8_t file[4096];
    for (int broken = 0; broken <= 4; broken++) {
        blob b = {file, make_cr3_tree(file, broken)};
        ce_image im;
        ce_err err = {{0}};
        memset(&im, 0, sizeof im);
        int rc = load(&b, NULL, &im, &err);
        int ours = strstr(err.msg, "a box's size") != NULL;
        CHECK(rc < 0, "broken %d: rc %d", broken, rc);
        if (broken) CHECK(rc == -EBADMSG && ours, "broken %d: rc %d: %s", broken, rc, err.msg);
        else CHECK(!ours, "a well-formed box tree refused: %s", err.msg);
        ce_image_free(&im);
    }
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/capsearch-image-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 99;
    }
    test_jpeg_rgb();
    test_jpeg_gray();
    test_jpeg_cmyk();
    test_jpeg_cmyk_plain();
    test_jpeg_scale();
    test_exif_jpeg();
    test_exif_all_orientations();
    test_exif_parser();
    test_png_flavours();
    test_png_downscale();
    test_bombs();
    test_truncated_and_corrupt();
    test_files();
    test_cr3_boxes();

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("image tests passed\n");
    return 0;
}
