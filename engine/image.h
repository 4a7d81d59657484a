/*
 * Private to engine/: the pieces of image loading (image.c dispatches by content to
 * image_jpeg.c / image_png.c, then applies the EXIF orientation that exif.c read).
 * ce__exif_parse is declared here so that tests and the fuzz target can reach it.
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
} ce_exif;

/* Resolved ce_load_options. */
typedef struct {
    int64_t max_pixels;
    int min_side;
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
int ce__decode_png(const uint8_t *data, size_t size, const ce_decode_params *params, ce_image *img,
                   int *orientation, ce_err *err);

/* The message helper all image files share (err may be NULL). */
void ce__image_error(ce_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
