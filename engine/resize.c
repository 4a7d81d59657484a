/*
 * The network's input: the graph's ResizeBilinear (align_corners = false,
 * half_pixel_centers = false, the legacy TensorFlow mapping src = dst * in / out) to
 * 300x300, then x * (2/255) - 1. The golden tests hold this to the original graph, so
 * the arithmetic follows TensorFlow's: coordinates and interpolation in double, the
 * result rounded to float, then the float scale and shift.
 */
#include <math.h>

#include "cnn.h"
#include "parallel.h"

typedef struct {
    int lo, hi;  /* source rows (or columns) */
    double frac; /* weight of hi */
} sample;

typedef struct {
    const ce_image *img;
    float *out;
    sample ys[CE_INPUT_SIZE], xs[CE_INPUT_SIZE];
} resize_job;

#define ROWS_PER_TASK 25 /* 12 tasks: a share for each thread, whoever is scheduled */

static void plan_axis(int in, sample *out);
static void resize_rows(void *ctx, int task);

void ce__resize_input(ce_pool *pool, const ce_image *img, float *out)
{
    resize_job j;
    j.img = img;
    j.out = out;
    plan_axis(img->height, j.ys);
    plan_axis(img->width, j.xs);
    ce__parallel_for(pool, (CE_INPUT_SIZE + ROWS_PER_TASK - 1) / ROWS_PER_TASK, resize_rows, &j);
}

static void resize_rows(void *ctx, int task)
{
    const resize_job *j = ctx;
    const float scale = 2.0f / 255.0f;
    const uint8_t *px = j->img->pixels;
    const size_t stride = (size_t)j->img->width * 3;
    const int y1 = (task + 1) * ROWS_PER_TASK < CE_INPUT_SIZE ? (task + 1) * ROWS_PER_TASK : CE_INPUT_SIZE;
    for (int y = task * ROWS_PER_TASK; y < y1; y++) {
        const uint8_t *top = px + (size_t)j->ys[y].lo * stride;
        const uint8_t *bottom = px + (size_t)j->ys[y].hi * stride;
        double fy = j->ys[y].frac;
        float *o = j->out + (size_t)y * CE_INPUT_SIZE * 3;
        for (int x = 0; x < CE_INPUT_SIZE; x++) {
            const int l = j->xs[x].lo * 3, r = j->xs[x].hi * 3;
            double fx = j->xs[x].frac;
            for (int c = 0; c < 3; c++) {
                double t = top[l + c] + (top[r + c] - top[l + c]) * fx;
                double b = bottom[l + c] + (bottom[r + c] - bottom[l + c]) * fx;
                float v = (float)(t + (b - t) * fy);
                o[x * 3 + c] = v * scale - 1.0f;
            }
        }
    }
}

static void plan_axis(int in, sample *out)
{
    double ratio = (double)in / CE_INPUT_SIZE;
    for (int i = 0; i < CE_INPUT_SIZE; i++) {
        double src = ratio * i;
        int lo = (int)floor(src);
        int hi = (int)ceil(src);
        if (hi > in - 1) hi = in - 1;
        out[i].lo = lo;
        out[i].hi = hi;
        out[i].frac = src - lo;
    }
}
