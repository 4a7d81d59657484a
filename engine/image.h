/*
 * Private to engine/: the pieces of image loading (image.c dispatches by content to
 * image_jpeg.c (image_jpeg_eighth.c is its 1/8 fast path) / image_png.c / image_heif.c /
 * image_webp.c / image_tiff.c / image_raw.c / image_gif.c, then applies the orientation
 * the decoder reported; exif.c reads EXIF, image_scale.c is the box downscaler of the
 * decoders that cannot scale while decoding).
 * ce__exif_parse and the decoders are declared here so that tests and the fuzz targets
 * can reach them.
 */
#ifndef CAPENGINE_IMAGE_INTERNAL_H
#define CAPENGINE_IMAGE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "capengine.h"

typedef struct {
    int orientation;    /* EXIF Orientation 1..8; 1 (as stored) when absent or invalid */
    int64_t taken_time; /* DateTimeOriginal, else DateTime, as unix seconds read as UTC;
                             0 = none */
    char description[CE_MAX_EXIF_TEXT]; /* ImageDescription, else an ASCII / UTF-8
                                           UserComment; "" = none */
} ce_exif;

/* Resolved ce_load_options. */
typedef struct {
    int64_t max_pixels;
    int min_side;
    int libjpeg_only; /* tests: JPEG through libjpeg even where the 1/8 fast path applies */
} ce_decode_params;

/* Reads the TIFF structure that starts at `tiff` (after a JPEG APP1's "Exif\0\0", or a
 * PNG eXIf chunk's payload). Never fails: anything malformed or out of bounds is
 * ignored and leaves the defaults (orientation 1, no time). */
void ce__exif_parse(const uint8_t *tiff, size_t size, ce_exif *out);

/* Decoders. On success they fill img->width/height/pixels (8-bit RGB as stored, not yet
 * oriented), img->source_width/height (the stored size), img->taken_time and
 * *orientation. On failure nothing is left allocated and img is untouched. */
int ce__decode_jpeg(const uint8_t *data, size_t size, const ce_decode_params *params, ce_image *img,
                    int *orientation, ce_err *err);
/* The 1/8-scale fast path of ce__decode_jpeg (image_jpeg_eighth.c): the pixels libjpeg
 * gives at scale 1/8, for the baseline files it fully understands. 0: decoded (pixels
 * malloc'd, exif points into data or is NULL); 1: declined, libjpeg must decode (or
 * refuse) the file; -ENOMEM. */
typedef struct {
    uint8_t *pixels; /* width x height RGB */
    int width, height;
    const uint8_t *exif; /* the first APP1 "Exif\0\0" payload after that prefix */
    size_t exif_size;
} ce__jpeg_eighth;
int ce__jpeg_decode_eighth(const uint8_t *data, size_t size, ce__jpeg_eighth *out);
int ce__decode_png(const uint8_t *data, size_t size, const ce_decode_params *params, ce_image *img,
                   int *orientation, ce_err *err);
/* HEIC/HEIF and AVIF: libheif applies irot/imir itself, so *orientation is always 1. */
int ce__decode_heif(const uint8_t *data, size_t size, const ce_decode_params *params, ce_image *img,
                    int *orientation, ce_err *err);
int ce__decode_webp(const uint8_t *data, size_t size, const ce_decode_params *params, ce_image *img,
                    int *orientation, ce_err *err);
int ce__decode_tiff(const uint8_t *data, size_t size, const ce_decode_params *params, ce_image *img,
                    int *orientation, ce_err *err);
int ce__decode_raw(const uint8_t *data, size_t size, const ce_decode_params *params, ce_image *img,
                   int *orientation, ce_err *err);
int ce__decode_gif(const uint8_t *data, size_t size, const ce_decode_params *params, ce_image *img,
                   int *orientation, ce_err *err);

/* What image.c recognises from the first bytes. CE__FMT_OTHER: a format we name but do
 * not read (BMP); *name is set for it. */
typedef enum {
    CE__FMT_UNKNOWN,
    CE__FMT_JPEG,
    CE__FMT_PNG,
    CE__FMT_HEIF,
    CE__FMT_AVIF,
    CE__FMT_WEBP,
    CE__FMT_TIFF,
    CE__FMT_RAW,
    CE__FMT_GIF,
    CE__FMT_OTHER,
} ce__format;
ce__format ce__sniff_format(const uint8_t *d, size_t n, const char **name);

/* Hands a decoded 8-bit buffer to img: RGB (channels 3) or RGBA with straight alpha
 * (channels 4, composited over white), rows `stride` bytes apart, box-downscaled by the
 * largest integer factor that keeps both sides >= params->min_side. Sets img->width,
 * height, pixels, source_width, source_height; the source stays the caller's. */
int ce__image_from_buffer(const uint8_t *src, int w, int h, size_t stride, int channels,
                          const ce_decode_params *params, ce_image *img, ce_err *err);

/* The header check every decoder makes before it allocates anything image-sized. */
int ce__image_check_size(const char *format, uint64_t w, uint64_t h, const ce_decode_params *params,
                         ce_err *err);

/* The message helper all image files share (err may be NULL). */
void ce__image_error(ce_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
