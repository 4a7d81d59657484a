/*
 * The network input's resize (engine/resize.c): the vector path gives the scalar loop's
 * bits, on images of every shape the loader can deliver (down- and upscaled, odd sides,
 * one pixel wide or high) and random content, and the last row's last pixels, where the
 * vector path's 4-byte gathers would run past the image, come out right too (run under
 * ASan, a read past the buffer is an error).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    /* exactly w * h * 3 bytes, as the decoders allocate: ASan sees any read past them */
    img.pixels = malloc((size_t)w * h * 3);
    float *a = malloc(sizeof(float) * CE_INPUT_SIZE * CE_INPUT_SIZE * 3);
    float *b = malloc(sizeof(float) * CE_INPUT_SIZE * CE_INPUT_SIZE * 3);
    if (!img.pixels || !a || !b) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
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
    free(img.pixels);
    free(a);
    free(b);
}

int main(void)
{
    static const int sides[] = {1, 2, 3, 5, 17, 150, 299, 300, 301, 333, 375, 500, 640, 1001};
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
