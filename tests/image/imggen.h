/*
 * Test image writers: JPEG (libjpeg) and PNG (libpng) into memory, hand-built EXIF
 * APP1 payloads, and small file helpers. Used by the image tests and the decode bench.
 * Every function aborts the test program (not the library under test) on failure.
 */
#ifndef IMGGEN_H
#define IMGGEN_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *data;
    size_t size;
} blob;

void blob_free(blob *b);

typedef struct {
    int quality; /* 0 = 95 */
    int progressive;
    int jpeg_space;      /* 0 = libjpeg's default for the input; else a J_COLOR_SPACE */
    int no_adobe_marker; /* CMYK without APP14: readers take the values as plain ink */
    const uint8_t *app1; /* optional APP1 payload ("Exif\0\0" + TIFF) */
    size_t app1_len;
    int luma_h, luma_v;   /* luma sampling factors; 0 = libjpeg's default (2x2, 4:2:0) */
    int restart_interval; /* MCUs between restart markers; 0 = none */
    int optimize;         /* optimised Huffman tables instead of the standard ones */
} jpeg_opts;

/* components: 1 (gray), 3 (RGB) or 4 (CMYK as stored, i.e. already inverted Adobe
 * style when the caller wants that). */
blob make_jpeg(const uint8_t *pixels, int w, int h, int components, const jpeg_opts *o);

/* color_type / bit_depth as libpng's; pixels in that layout (16-bit samples big-endian,
 * 2 bytes each). palette: n_palette RGB triples; trns: per-palette-entry alpha. */
typedef struct {
    int color_type, bit_depth, interlace;
    const uint8_t *palette;
    int n_palette;
    const uint8_t *trns;
    int n_trns;
    const uint8_t *exif; /* optional eXIf payload (TIFF, no "Exif\0\0") */
    size_t exif_len;
} png_opts;

blob make_png(const uint8_t *pixels, int w, int h, const png_opts *o);

/* "Exif\0\0" + TIFF with IFD0 {Orientation, DateTime?} and an Exif IFD
 * {DateTimeOriginal?}. orientation 0 = no tag; times NULL = no tag. Returns the length
 * written into buf (at least 256 bytes). */
size_t make_exif_app1(uint8_t *buf, int big_endian, int orientation, const char *datetime,
                      const char *datetime_original);

/* Solid-colour RGB image with a different colour in each quadrant:
 * q[0] top-left, q[1] top-right, q[2] bottom-left, q[3] bottom-right. */
uint8_t *quadrants(int w, int h, const uint8_t q[4][3]);

void write_file(const char *path, const void *data, size_t size);
blob read_file(const char *path);

#endif
