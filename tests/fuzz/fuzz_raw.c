/*
 * Fuzz target: camera RAW (LibRaw): DNG and the other TIFF-based and own-header RAWs, preview and half-size paths.
 * ce__decode_raw on the input, then the whole loader (tests/fuzz/fuzz_decoder.h says
 * what is checked). Seeds: tests/fuzz/make_format_seeds.sh, made at test time.
 */
#include "fuzz_decoder.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_decoder(ce__decode_raw, data, size);
}
