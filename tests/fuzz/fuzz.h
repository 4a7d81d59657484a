/*
 * What every fuzz target defines: libFuzzer's entry point. The same files build two ways
 * (tests/fuzz/CMakeLists.txt): with clang's libFuzzer for bounded fuzzing runs, and with
 * replay_main.c under any compiler so that ctest replays the committed seeds and every
 * regression input in the normal (and the ASan) suite.
 *
 * A target calls fuzz_fail() when the code under test breaks a promise it makes (an error
 * without a message, an invariant of the result): libFuzzer records that input as a crash.
 */
#ifndef CAPSEARCH_FUZZ_H
#define CAPSEARCH_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define fuzz_fail(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "fuzz: %s:%d: ", __FILE__, __LINE__);                                      \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

#endif
