/*
 * The network input's resize (engine/resize.c): the vector path gives the scalar loop's
 * bits, on images of every shape the loader can deliver (down- and upscaled, odd sides,
 * one pixel wide or high) and random content. Each image ends at a page boundary with an
 * inaccessible page after it, so a gather that ran past the last row's last pixel (where
 * the vector path's 4-byte reads must stop) faults: ASan does not check gathers. 2500 wide
 * mixes groups read by byte permutation and gathered ones (AVX-512 VBMI), 4000 gathers all. Builds
 * without AVX-512 have no vector path: the test is skipped there (77).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cnn.h"

static int failures;

static uint32_t rng = 12345;
static uint32_t next_random(void)
{
    rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5;
    return rng;
}

static void check_size(int w, int h)
{
    ce_image img;
    memset(&img, 0, sizeof img);
    img.width = w, img.height = h;
    /* the pixels end where a PROT_NONE guard page begins */
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), bytes = (size_t)w * h * 3;
    const size_t span = (bytes + page - 1) / page * page;
    uint8_t *region = mmap(NULL, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    float *a = malloc(sizeof(float) * CE_INPUT_SIZE * CE_INPUT_SIZE * 3);
    float *b = malloc(sizeof(float) * CE_INPUT_SIZE * CE_INPUT_SIZE * 3);
    if (region == MAP_FAILED || mprotect(region + span, page, PROT_NONE) != 0 || !a || !b) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    img.pixels = region + (span - bytes);
    for (size_t i = 0; i < (size_t)w * h * 3; i++) img.pixels[i] = (uint8_t)next_random();
    ce__resize_input(NULL, &img, a);
    ce__resize_input_scalar(&img, b);
    size_t n = (size_t)CE_INPUT_SIZE * CE_INPUT_SIZE * 3;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            fprintf(stderr, "%dx%d: value %zu (row %zu) differs: %.9g vs scalar %.9g\n", w, h, i,
                    i / (CE_INPUT_SIZE * 3), a[i], b[i]);
            failures++;
            break;
        }
        if (a[i] < -1.0001f || a[i] > 1.0001f) { /* 255 * (2/255) - 1 rounds to 1 + 1 ulp */
            fprintf(stderr, "%dx%d: value %zu = %g outside [-1, 1] (beyond rounding)\n", w, h, i, a[i]);
            failures++;
            break;
        }
    }
    munmap(region, span + page);
    free(a);
    free(b);
}

int main(void)
{
#ifndef __AVX512F__
    printf("test_resize: this build has no vector resize (no AVX-512): skipped\n");
    return 77;
#endif
    static const int sides[] = {1,   2,   3,   5,   17,  150,  299,  300,
                                301, 333, 375, 500, 640, 1001, 2500, 4000};
    const int n = (int)(sizeof sides / sizeof *sides);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++) check_size(sides[i], sides[k]);
    check_size(4000, 3000);
    check_size(3000, 4000);
    if (failures) {
        fprintf(stderr, "test_resize: %d failures\n", failures);
        return 1;
    }
    printf("test_resize: vector and scalar resize agree on %d image shapes\n", n * n + 2);
    return 0;
}
