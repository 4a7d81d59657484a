/*
 * What the per-format fuzz targets (fuzz_heif.c, fuzz_webp.c, fuzz_tiff.c, fuzz_raw.c,
 * fuzz_gif.c) share: one decoder called directly on the input (so the fuzzer stays in that
 * format whatever the magic bytes become), then the whole loader on the same input, with
 * the promises of engine/image.h checked: a failure is negative and has a message; a
 * success is a non-empty RGB image within the pixel limit, its buffer as large as its
 * sides, and an orientation 1..8; nothing stays allocated either way (ASan's leak check).
 */
#ifndef CAPSEARCH_FUZZ_DECODER_H
#define CAPSEARCH_FUZZ_DECODER_H

#include <string.h>

#include "capengine.h"
#include "fuzz.h"
#include "image.h"

/* Small enough that no input makes a run slow; the limit check itself is then fuzzed. */
#define FUZZ_MAX_PIXELS (4 * 1024 * 1024)

typedef int (*fuzz_decoder_fn)(const uint8_t *, size_t, const ce_decode_params *, ce_image *, int *,
                               ce_err *);

static void fuzz_check_image(const ce_image *img, const char *what)
{
    if (img->width <= 0 || img->height <= 0 || !img->pixels)
        fuzz_fail("%s: decoded an empty image (%dx%d)", what, img->width, img->height);
    if ((int64_t)img->width * img->height > FUZZ_MAX_PIXELS)
        fuzz_fail("%s: decoded %dx%d, over the %d pixel limit", what, img->width, img->height,
                  FUZZ_MAX_PIXELS);
    size_t last = ((size_t)img->width * (size_t)img->height - 1) * 3;
    volatile uint8_t sink = img->pixels[last + 2];
    (void)sink;
}

static inline int fuzz_decoder(fuzz_decoder_fn decode, const uint8_t *data, size_t size)
{
    /* the low bit of the size picks the downscale path: scaled, or none */
    ce_decode_params params = {FUZZ_MAX_PIXELS, size & 1 ? 16 : 1, 0};
    ce_image img;
    memset(&img, 0, sizeof img);
    ce_err err;
    memset(&err, 0, sizeof err);
    int orientation = 1;
    int rc = decode(data, size, &params, &img, &orientation, &err);
    if (rc == 0) {
        fuzz_check_image(&img, "decoder");
        if (orientation < 1 || orientation > 8)
            fuzz_fail("orientation %d out of 1..8", orientation);
        ce_image_free(&img);
    } else if (rc > 0 || !err.msg[0]) {
        fuzz_fail("decoder returned %d with no message", rc);
    }

    ce_load_options opt = {.max_pixels = FUZZ_MAX_PIXELS, .min_side = size & 1 ? 16 : 1};
    memset(&err, 0, sizeof err);
    rc = ce_image_load_memory(data, size, &opt, &img, &err);
    if (rc == 0) {
        fuzz_check_image(&img, "loader");
        if (!img.format) fuzz_fail("loaded an image without naming its format");
        ce_image_free(&img);
    } else if (rc > 0 || !err.msg[0]) {
        fuzz_fail("ce_image_load_memory returned %d with no message", rc);
    }
    return 0;
}

#endif
