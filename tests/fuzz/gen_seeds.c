/*
 * Writes the committed seed corpora of the fuzz targets: small, valid (or nearly valid)
 * inputs of each kind, so that fuzzing starts deep inside each parser instead of at
 * its magic bytes. Nothing comes from real photos or data sets.
 *
 * Usage: fuzz_gen_seeds DIR   (writes DIR/image, DIR/weights, DIR/query, DIR/config;
 *        tests/fuzz/README.md says how the committed corpus/ was made)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <png.h>

#include "imggen.h"

static void image_seeds(const char *dir);
static void weights_seeds(const char *dir);
static void text_seeds(const char *dir, const char *const *texts, size_t n);
static void save(const char *dir, const char *name, const void *data, size_t size);
static void subdir(char *out, size_t size, const char *root, const char *name);

static const char *const QUERIES[] = {
    "dog on beach",
    "Two PEOPLE riding horses",
    "\"quoted\" AND OR NOT NEAR(a b) col:dog* ^start - x + y",
    "caf\xc3\xa9 na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x90\x95 dogs",
    "the of a an",
    "kite\n/photos/odd\n\x08\x60\x09\x7f",
    "beach\n/photos/2023 Beach/\n",
    "sky\n\n\x0a\x50\xff\x40\x03\x20",
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty twentyone twentytwo twentythree "
    "twentyfour twentyfive twentysix twentyseven twentyeight twentynine thirty thirtyone "
    "thirtytwo thirtythree",
    "\xff\xfe bad \xc3 utf8 \xed\xa0\x80 surrogate",
};

static const char *const CONFIGS[] = {
    "# capsearchd.conf\nroot = /srv/photos\nroot = /home/me/Pictures\nexclude = *.tmp\n"
    "extensions = jpg jpeg png\nworkers = 2\nbatch_size = 64\nbatch_ms = 1000\n",
    "max_pixels = 50000000\ntime_limit = 30\nqueue_max = 5000\npoll_interval = 60\n"
    "max_watches = 100\ndebug_overflow_every = 0\nlog_level = debug\n",
    "database = \"/var/lib/capsearch/index.db\"\nmodels = /usr/share/capsearch/models\n",
    "exclude =\nexclude = */cache/*\nexclude = [a-z]*.JPG\nextensions = JPG, Png,jpe\n",
    "  root   =   \"/photos/with spaces  \"  \n\n# comment\n\t\nlog_level = warning\n",
    "workers = 0\n",
    "root = relative/path\n",
    "unknown_key = 1\n",
    "root = \"/unterminated\n",
    "extensions =\n",
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    char dir[4096];
    mkdir(argv[1], 0755);
    subdir(dir, sizeof dir, argv[1], "image");
    image_seeds(dir);
    subdir(dir, sizeof dir, argv[1], "weights");
    weights_seeds(dir);
    subdir(dir, sizeof dir, argv[1], "query");
    text_seeds(dir, QUERIES, sizeof QUERIES / sizeof QUERIES[0]);
    subdir(dir, sizeof dir, argv[1], "config");
    text_seeds(dir, CONFIGS, sizeof CONFIGS / sizeof CONFIGS[0]);
    return 0;
}

/* ------------------------------------------------------------------ images */

static void image_seeds(const char *dir)
{
    static const uint8_t q[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {250, 250, 250}};
    const int w = 24, h = 16;
    uint8_t *rgb = quadrants(w, h, q);
    uint8_t gray[24 * 16], cmyk[24 * 16 * 4];
    for (int i = 0; i < w * h; i++) {
        gray[i] = rgb[i * 3];
        for (int c = 0; c < 3; c++) cmyk[i * 4 + c] = (uint8_t)(255 - rgb[i * 3 + c]);
        cmyk[i * 4 + 3] = 255;
    }
    uint8_t app1[512];
    blob b;

    b = make_jpeg(rgb, w, h, 3, &(jpeg_opts){.quality = 50});
    save(dir, "rgb.jpg", b.data, b.size);
    blob_free(&b);
    b = make_jpeg(rgb, w, h, 3, &(jpeg_opts){.quality = 50, .progressive = 1});
    save(dir, "progressive.jpg", b.data, b.size);
    blob_free(&b);
    b = make_jpeg(gray, w, h, 1, &(jpeg_opts){.quality = 50});
    save(dir, "gray.jpg", b.data, b.size);
    blob_free(&b);
    b = make_jpeg(cmyk, w, h, 4, &(jpeg_opts){.quality = 50, .jpeg_space = JCS_YCCK});
    save(dir, "ycck.jpg", b.data, b.size);
    blob_free(&b);
    size_t n = make_exif_app1(app1, 0, 6, "2021:07:04 12:30:00", "2021:07:04 12:29:59");
    b = make_jpeg(rgb, w, h, 3, &(jpeg_opts){.quality = 50, .app1 = app1, .app1_len = n});
    save(dir, "exif_le_rot6.jpg", b.data, b.size);
    blob_free(&b);
    /* the TIFF structure alone: the EXIF parser runs on the raw input too */
    save(dir, "exif_le.tiff", app1 + 6, n - 6);
    n = make_exif_app1(app1, 1, 8, NULL, "1999:12:31 23:59:59");
    b = make_jpeg(rgb, w, h, 3, &(jpeg_opts){.quality = 50, .app1 = app1, .app1_len = n});
    save(dir, "exif_be_rot8.jpg", b.data, b.size);
    blob_free(&b);
    save(dir, "exif_be.tiff", app1 + 6, n - 6);

    b = make_png(rgb, w, h, &(png_opts){.color_type = PNG_COLOR_TYPE_RGB, .bit_depth = 8});
    save(dir, "rgb.png", b.data, b.size);
    blob_free(&b);
    b = make_png(rgb, w, h,
                 &(png_opts){.color_type = PNG_COLOR_TYPE_RGB, .bit_depth = 8, .interlace = 1});
    save(dir, "interlaced.png", b.data, b.size);
    blob_free(&b);
    uint8_t ga16[24 * 16 * 4];
    for (int i = 0; i < w * h; i++) {
        ga16[i * 4] = gray[i];
        ga16[i * 4 + 1] = 0x80;
        ga16[i * 4 + 2] = (uint8_t)(i & 0xff);
        ga16[i * 4 + 3] = 0x7f;
    }
    b = make_png(ga16, w, h, &(png_opts){.color_type = PNG_COLOR_TYPE_GRAY_ALPHA, .bit_depth = 16});
    save(dir, "gray_alpha16.png", b.data, b.size);
    blob_free(&b);
    static const uint8_t palette[4 * 3] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9};
    static const uint8_t trns[2] = {0, 128};
    uint8_t idx[24 * 16];
    for (int i = 0; i < w * h; i++) idx[i] = (uint8_t)(i % 4);
    b = make_png(idx, w, h,
                 &(png_opts){.color_type = PNG_COLOR_TYPE_PALETTE,
                             .bit_depth = 8,
                             .palette = palette,
                             .n_palette = 4,
                             .trns = trns,
                             .n_trns = 2});
    save(dir, "palette_trns.png", b.data, b.size);
    blob_free(&b);
    n = make_exif_app1(app1, 0, 3, "2020:02:29 00:00:00", NULL);
    b = make_png(
        rgb, w, h,
        &(png_opts){
            .color_type = PNG_COLOR_TYPE_RGB, .bit_depth = 8, .exif = app1 + 6, .exif_len = n - 6});
    save(dir, "exif_rot3.png", b.data, b.size);
    blob_free(&b);
    free(rgb);
}

/* ------------------------------------------------------------------ weight files */

typedef struct {
    uint8_t *b;
    size_t n, cap;
} buf;

typedef struct {
    const char *name;
    int dtype, rank;
    uint32_t dims[4];
    const void *data;
    size_t nbytes;
} tensor;

static void put(buf *o, const void *p, size_t n);
static void put16(buf *o, uint16_t v);
static void put32(buf *o, uint32_t v);
static void put64(buf *o, uint64_t v);
static buf build(const tensor *t, int n);

static void weights_seeds(const char *dir)
{
    static const float f32[6] = {1, 2, 3, 4, 5, 6.5f};
    static const uint16_t f16[4] = {0x3C00, 0xC000, 0x0001, 0x7C00};
    static const int32_t i32[2] = {7, -1};
    static const uint8_t u8[8] = {'d', 'o', 'g', 0, 'c', 'a', 't', 0};
    const tensor all[] = {
        {"conv/weights", 0, 2, {2, 3}, f32, sizeof f32},
        {"conv/half", 1, 1, {4}, f16, sizeof f16},
        {"config/ids", 2, 1, {2}, i32, sizeof i32},
        {"vocab", 3, 1, {8}, u8, sizeof u8},
        {"scalar", 0, 0, {0}, f32, 4},
    };
    buf b = build(all, 5);
    save(dir, "every_dtype.csw", b.b, b.n);
    free(b.b);
    b = build(all, 1);
    save(dir, "one_tensor.csw", b.b, b.n);
    free(b.b);
    const tensor empty_dims[] = {{"empty", 0, 3, {4, 0, 2}, NULL, 0}, {"f16", 1, 1, {4}, f16, 8}};
    b = build(empty_dims, 2);
    save(dir, "empty_tensor.csw", b.b, b.n);
    free(b.b);
    b = build(NULL, 0);
    save(dir, "no_tensors.csw", b.b, b.n);
    free(b.b);
}

static buf build(const tensor *t, int n)
{
    size_t dir = 0;
    for (int i = 0; i < n; i++) dir += 2 + strlen(t[i].name) + 2 + 4 * (size_t)t[i].rank + 16;
    size_t data_offset = (24 + dir + 63) / 64 * 64, at = data_offset;
    size_t offsets[8];
    for (int i = 0; i < n; i++) {
        offsets[i] = at;
        at = (at + t[i].nbytes + 63) / 64 * 64;
    }
    buf o = {0};
    put(&o, "CSWEIGHT", 8);
    put32(&o, 1);
    put32(&o, (uint32_t)n);
    put64(&o, data_offset);
    for (int i = 0; i < n; i++) {
        put16(&o, (uint16_t)strlen(t[i].name));
        put(&o, t[i].name, strlen(t[i].name));
        uint8_t dr[2] = {(uint8_t)t[i].dtype, (uint8_t)t[i].rank};
        put(&o, dr, 2);
        for (int d = 0; d < t[i].rank; d++) put32(&o, t[i].dims[d]);
        put64(&o, offsets[i]);
        put64(&o, t[i].nbytes);
    }
    static const uint8_t zeros[64];
    if (n == 0) put(&o, zeros, data_offset - o.n);
    for (int i = 0; i < n; i++) {
        put(&o, zeros, offsets[i] - o.n);
        if (t[i].nbytes) put(&o, t[i].data, t[i].nbytes);
    }
    return o;
}

static void put(buf *o, const void *p, size_t n)
{
    if (o->n + n > o->cap) {
        o->cap = (o->n + n) * 2;
        o->b = realloc(o->b, o->cap);
        if (!o->b) abort();
    }
    memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void put16(buf *o, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(o, b, 2);
}

static void put32(buf *o, uint32_t v)
{
    put16(o, (uint16_t)v);
    put16(o, (uint16_t)(v >> 16));
}

static void put64(buf *o, uint64_t v)
{
    put32(o, (uint32_t)v);
    put32(o, (uint32_t)(v >> 32));
}

/* ------------------------------------------------------------------ files */

static void text_seeds(const char *dir, const char *const *texts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "seed%02zu.txt", i);
        save(dir, name, texts[i], strlen(texts[i]));
    }
}

static void save(const char *dir, const char *name, const void *data, size_t size)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_file(path, data, size);
}

static void subdir(char *out, size_t size, const char *root, const char *name)
{
    snprintf(out, size, "%s/%s", root, name);
    mkdir(out, 0755);
}
