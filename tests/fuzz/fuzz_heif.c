/*
 * Fuzz target: HEIC/HEIF and AVIF (libheif): boxes, grids, irot/imir, Exif item.
 * ce__decode_heif on the input, then the whole loader (tests/fuzz/fuzz_decoder.h says
 * what is checked). Seeds: tests/fuzz/make_format_seeds.sh, made at test time.
 */
#include "fuzz_decoder.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_decoder(ce__decode_heif, data, size);
}
