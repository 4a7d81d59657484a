/*
 * Fuzz target: image decoding from memory (JPEG and PNG detected by content, EXIF inside
 * either), then the EXIF/TIFF parser on the raw input. Promises checked: a failure always
 * comes with a message; a success is a non-empty RGB image within the pixel limit; the
 * EXIF orientation is always 1..8.
 */
#include <string.h>

#include "capengine.h"
#include "fuzz.h"
#include "image.h"

/* Small enough that no input makes a run slow; the limit check itself is then fuzzed. */
#define FUZZ_MAX_PIXELS (4 * 1024 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
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
