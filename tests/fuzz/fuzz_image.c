/*
 * Fuzz target: image decoding from memory (JPEG and PNG detected by content, EXIF inside
 * either), then the EXIF/TIFF parser on the raw input. Promises checked: a failure always
 * comes with a message; a success is a non-empty RGB image within the pixel limit; the
 * EXIF orientation is always 1..8; and the JPEG 1/8 fast path either declines a file or
 * decodes it to exactly libjpeg's pixels (never accepting one libjpeg refuses).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "capengine.h"
#include "fuzz.h"
#include "image.h"

/* Small enough that no input makes a run slow; the limit check itself is then fuzzed. */
#define FUZZ_MAX_PIXELS (4 * 1024 * 1024)

static void check_jpeg_eighth(const uint8_t *data, size_t size)
{
    if (size < 2 || data[0] != 0xff || data[1] != 0xd8) return;
    ce_decode_params params = {FUZZ_MAX_PIXELS, 1, 1};
    ce_image ref;
    memset(&ref, 0, sizeof ref);
    ce_err err;
    memset(&err, 0, sizeof err);
    int orientation;
    const int ref_rc = ce__decode_jpeg(data, size, &params, &ref, &orientation, &err);
    if (ref_rc == -E2BIG) return; /* the loader never hands the fast path such a file */
    ce__jpeg_eighth fast;
    const int rc = ce__jpeg_decode_eighth(data, size, &fast);
    if (rc == 0) {
        if (ref_rc != 0) fuzz_fail("1/8 fast path accepted a JPEG libjpeg refuses: %s", err.msg);
        if (fast.width != ref.width || fast.height != ref.height)
            fuzz_fail("1/8 fast path %dx%d, libjpeg %dx%d", fast.width, fast.height, ref.width,
                      ref.height);
        if (memcmp(fast.pixels, ref.pixels, (size_t)ref.width * (size_t)ref.height * 3) != 0)
            fuzz_fail("1/8 fast path pixels differ from libjpeg's");
        free(fast.pixels);
    } else if (rc != 1) {
        fuzz_fail("1/8 fast path returned %d", rc);
    }
    free(ref.pixels);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_jpeg_eighth(data, size);

    /* the low bit of the size picks the downscale path: DCT / box scaling, or none */
    ce_load_options opt = {.max_pixels = FUZZ_MAX_PIXELS, .min_side = size & 1 ? 16 : 1};
    ce_image img;
    ce_err err;
    memset(&err, 0, sizeof err);
    int rc = ce_image_load_memory(data, size, &opt, &img, &err);
    if (rc == 0) {
        if (img.width <= 0 || img.height <= 0 || !img.pixels)
            fuzz_fail("decoded an empty image (%dx%d)", img.width, img.height);
        if ((int64_t)img.width * img.height > FUZZ_MAX_PIXELS)
            fuzz_fail("decoded %dx%d, over the %d pixel limit", img.width, img.height,
                      FUZZ_MAX_PIXELS);
        /* read the last pixel: the buffer must be as large as the sides say */
        size_t last = ((size_t)img.width * (size_t)img.height - 1) * 3;
        volatile uint8_t sink = img.pixels[last + 2];
        (void)sink;
        ce_image_free(&img);
    } else if (rc > 0 || !err.msg[0]) {
        fuzz_fail("ce_image_load_memory returned %d with no message", rc);
    }

    ce_exif exif;
    ce__exif_parse(data, size, &exif);
    if (exif.orientation < 1 || exif.orientation > 8)
        fuzz_fail("EXIF orientation %d out of 1..8", exif.orientation);
    return 0;
}
