/*
 * image_probe FILE...: loads each file through the engine's public loader and prints one
 * JSON line: {"path", "rc", "error"} on failure, or {"path", "rc": 0, "format", "width",
 * "height", "source_width", "source_height", "taken_time", "quadrants"} where quadrants
 * is the mean RGB of the top-left, top-right, bottom-left and bottom-right quarter of the
 * decoded (oriented) image. test_formats.py reads it to check orientation and colour.
 * Options: --min-side N, --max-pixels N (ce_load_options). Exit 0 always.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capengine.h"

static void print_json_string(const char *s);
static void quadrant_mean(const ce_image *img, int qx, int qy, double rgb[3]);

int main(int argc, char **argv)
{
    ce_load_options opt = {0, 0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--min-side") == 0 && i + 1 < argc) {
            opt.min_side = atoi(argv[++i]);
            continue;
        }
        if (strcmp(argv[i], "--max-pixels") == 0 && i + 1 < argc) {
            opt.max_pixels = atoll(argv[++i]);
            continue;
        }
        ce_image img;
        ce_err err = {{0}};
        int rc = ce_image_load_file(argv[i], &opt, &img, &err);
        printf("{\"path\": ");
        print_json_string(argv[i]);
        printf(", \"rc\": %d", rc);
        if (rc < 0) {
            printf(", \"error\": ");
            print_json_string(err.msg);
            printf("}\n");
            continue;
        }
        printf(", \"format\": \"%s\", \"width\": %d, \"height\": %d, \"source_width\": %d, "
               "\"source_height\": %d, \"taken_time\": %lld, \"quadrants\": [",
               img.format ? img.format : "", img.width, img.height, img.source_width,
               img.source_height, (long long)img.taken_time);
        for (int q = 0; q < 4; q++) {
            double m[3];
            quadrant_mean(&img, q % 2, q / 2, m);
            printf("%s[%.0f, %.0f, %.0f]", q ? ", " : "", m[0], m[1], m[2]);
        }
        printf("]}\n");
        ce_image_free(&img);
    }
    return 0;
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f) printf("\\u%04x", *p);
        else putchar(*p);
    }
    putchar('"');
}

/* The middle half of each quarter, so that edge blending does not blur the answer. */
static void quadrant_mean(const ce_image *img, int qx, int qy, double rgb[3])
{
    const int w = img->width, h = img->height;
    const int x0 = qx * w / 2 + w / 8, x1 = qx * w / 2 + 3 * w / 8;
    const int y0 = qy * h / 2 + h / 8, y1 = qy * h / 2 + 3 * h / 8;
    double sum[3] = {0, 0, 0};
    long n = 0;
    for (int y = y0; y <= y1 && y < h; y++)
        for (int x = x0; x <= x1 && x < w; x++, n++)
            for (int c = 0; c < 3; c++) sum[c] += img->pixels[((size_t)y * w + x) * 3 + c];
    for (int c = 0; c < 3; c++) rgb[c] = n ? sum[c] / (double)n : 0;
}
