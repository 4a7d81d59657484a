/* Test image writers; see imggen.h. */
#include "imggen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

static void die(const char *what)
{
    fprintf(stderr, "imggen: %s\n", what);
    exit(99);
}

void blob_free(blob *b)
{
    free(b->data);
    b->data = NULL;
    b->size = 0;
}

blob make_jpeg(const uint8_t *pixels, int w, int h, int components, const jpeg_opts *o)
{
    static const jpeg_opts defaults = {0};
    if (!o) o = &defaults;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr); /* exits on error: fine for a test writer */
    jpeg_create_compress(&c);
    unsigned char *out = NULL;
    unsigned long out_size = 0;
    jpeg_mem_dest(&c, &out, &out_size);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = components;
    c.in_color_space = components == 1 ? JCS_GRAYSCALE : components == 4 ? JCS_CMYK : JCS_RGB;
    jpeg_set_defaults(&c);
    if (o->jpeg_space) jpeg_set_colorspace(&c, (J_COLOR_SPACE)o->jpeg_space);
    if (o->no_adobe_marker) c.write_Adobe_marker = FALSE;
    jpeg_set_quality(&c, o->quality ? o->quality : 95, TRUE);
    if (o->progressive) jpeg_simple_progression(&c);
    if (o->luma_h) {
        c.comp_info[0].h_samp_factor = o->luma_h;
        c.comp_info[0].v_samp_factor = o->luma_v;
    }
    c.restart_interval = (unsigned)o->restart_interval;
    c.optimize_coding = o->optimize ? TRUE : FALSE;
    jpeg_start_compress(&c, TRUE);
    if (o->app1) jpeg_write_marker(&c, JPEG_APP0 + 1, o->app1, (unsigned)o->app1_len);
    const size_t stride = (size_t)w * (size_t)components;
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + stride * c.next_scanline);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return (blob){out, out_size};
}

static void png_write_blob(png_structp png, png_bytep data, size_t len)
{
    blob *b = png_get_io_ptr(png);
    uint8_t *grown = realloc(b->data, b->size + len);
    if (!grown) die("out of memory");
    memcpy(grown + b->size, data, len);
    b->data = grown;
    b->size += len;
}

static void png_flush_nothing(png_structp png) { (void)png; }

blob make_png(const uint8_t *pixels, int w, int h, const png_opts *o)
{
    blob b = {NULL, 0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) die("png_create_write_struct");
    if (setjmp(png_jmpbuf(png))) die("libpng write error");
    png_set_write_fn(png, &b, png_write_blob, png_flush_nothing);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, o->bit_depth, o->color_type,
                 o->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (o->palette) {
        png_color pal[256];
        for (int i = 0; i < o->n_palette; i++) {
            pal[i].red = o->palette[3 * i];
            pal[i].green = o->palette[3 * i + 1];
            pal[i].blue = o->palette[3 * i + 2];
        }
        png_set_PLTE(png, info, pal, o->n_palette);
    }
    if (o->trns) png_set_tRNS(png, info, o->trns, o->n_trns, NULL);
    if (o->exif) png_set_eXIf_1(png, info, (png_uint_32)o->exif_len, (png_bytep)o->exif);
    png_write_info(png, info);
    const int channels = o->color_type == PNG_COLOR_TYPE_RGB          ? 3
                         : o->color_type == PNG_COLOR_TYPE_RGB_ALPHA  ? 4
                         : o->color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                                                                      : 1;
    const size_t rowbytes = ((size_t)w * (size_t)channels * (size_t)o->bit_depth + 7) / 8;
    png_bytep *rows = malloc((size_t)h * sizeof *rows);
    if (!rows) die("out of memory");
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)(pixels + rowbytes * (size_t)y);
    png_write_image(png, rows);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(rows);
    return b;
}

static void put16(uint8_t *p, int be, unsigned v)
{
    if (be) {
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
    } else {
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
    }
}

static void put32(uint8_t *p, int be, uint32_t v)
{
    if (be) {
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
    } else {
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
        p[2] = (uint8_t)(v >> 16);
        p[3] = (uint8_t)(v >> 24);
    }
}

static void put_entry(uint8_t *p, int be, unsigned tag, unsigned type, uint32_t count,
                      uint32_t value)
{
    put16(p, be, tag);
    put16(p + 2, be, type);
    put32(p + 4, be, count);
    if (type == 3 && count == 1) { /* SHORT inline: first two bytes of the field */
        memset(p + 8, 0, 4);
        put16(p + 8, be, value);
    } else {
        put32(p + 8, be, value);
    }
}

/* Layout (offsets in the TIFF): header 0..7, IFD0 at 8 (up to 3 entries), Exif IFD at
 * 60 (1 entry), strings at 100 and 120. */
size_t make_exif_app1(uint8_t *buf, int be, int orientation, const char *datetime,
                      const char *datetime_original)
{
    memset(buf, 0, 256);
    memcpy(buf, "Exif\0\0", 6);
    uint8_t *t = buf + 6;
    memcpy(t, be ? "MM" : "II", 2);
    put16(t + 2, be, 42);
    put32(t + 4, be, 8);
    int n = 0;
    uint8_t *e = t + 10;
    if (orientation) put_entry(e + 12 * n++, be, 0x0112, 3, 1, (uint32_t)orientation);
    if (datetime) {
        put_entry(e + 12 * n++, be, 0x0132, 2, 20, 100);
        memcpy(t + 100, datetime, strlen(datetime) + 1);
    }
    if (datetime_original) {
        put_entry(e + 12 * n++, be, 0x8769, 4, 1, 60);
        put16(t + 60, be, 1);
        put_entry(t + 62, be, 0x9003, 2, 20, 120);
        memcpy(t + 120, datetime_original, strlen(datetime_original) + 1);
    }
    put16(t + 8, be, (unsigned)n);
    /* next-IFD offset after the entries stays 0 */
    return 6 + 140;
}

uint8_t *quadrants(int w, int h, const uint8_t q[4][3])
{
    uint8_t *p = malloc((size_t)w * (size_t)h * 3);
    if (!p) die("out of memory");
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            memcpy(p + ((size_t)y * (size_t)w + (size_t)x) * 3, q[(y >= h / 2) * 2 + (x >= w / 2)],
                   3);
    return p;
}

void write_file(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) die(path);
}

blob read_file(const char *path)
{
    blob b = {NULL, 0};
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b.data = malloc(n > 0 ? (size_t)n : 1);
    if (!b.data || fread(b.data, 1, (size_t)n, f) != (size_t)n) die(path);
    b.size = (size_t)n;
    fclose(f);
    return b;
}
