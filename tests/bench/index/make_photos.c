/*
 * Camera-sized photos for the indexing benchmark (a generator, not a test):
 *
 *   make_photos SRC_DIR OUT_DIR FIRST COUNT
 *
 * writes photos FIRST .. FIRST+COUNT-1 as OUT_DIR/dNN/photo_NNNN.jpg (100 per folder, as
 * a camera or a phone lays them out), each 4000x3000 (every fifth one 3000x4000) JPEG,
 * quality 90, 4:2:0, with an EXIF block (orientation 1, DateTimeOriginal). Photo i is
 * made from sample photo i % n of SRC_DIR (the darknet photos: tests/data/fetch_photos.sh)
 * with its own random crop, mirror, colour balance and exposure, so that no two files
 * are alike (distinct fingerprints, distinct pixels), then upscaled bilinearly with
 * sensor-like noise: a smooth upscale compresses to a third of a real photo's size, and
 * the decoder's time follows the compressed size.
 *
 * Files already there are kept (the benchmark caches them between runs); each is written
 * to a temporary name and renamed, so an interrupted run leaves no partial photo.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capengine.h"
#include "imggen.h"

#define LONG_SIDE 4000
#define SHORT_SIDE 3000
#define PER_FOLDER 100
#define MAX_SOURCES 64
/* +-NOISE per sample: about 3 MB per file on average, as a 12 MP camera's q90 JPEG */
#define NOISE 12.0f

typedef struct {
    uint64_t s;
} rng;

static int load_sources(const char *dir, ce_image *src, int max);
static uint8_t *render(const ce_image *src, int w, int h, rng *r);
static uint64_t next(rng *r);
static double uniform(rng *r, double lo, double hi);
static int cmp_str(const void *a, const void *b);

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: make_photos SRC_DIR OUT_DIR FIRST COUNT\n");
        return 2;
    }
    const char *src_dir = argv[1], *out_dir = argv[2];
    int first = atoi(argv[3]), count = atoi(argv[4]);
    if (first < 0 || count < 0 || first + count > 100 * PER_FOLDER) {
        fprintf(stderr, "make_photos: FIRST and COUNT must stay within 0..%d\n", 100 * PER_FOLDER);
        return 2;
    }
    static ce_image src[MAX_SOURCES];
    int n_src = load_sources(src_dir, src, MAX_SOURCES);
    if (n_src <= 0) {
        fprintf(stderr, "make_photos: no JPEG photos in %s (run tests/data/fetch_photos.sh %s)\n",
                src_dir, src_dir);
        return 1;
    }
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "make_photos: %s: %s\n", out_dir, strerror(errno));
        return 1;
    }

    int made = 0;
    for (int i = first; i < first + count; i++) {
        char folder[4096], path[4200], tmp[4300];
        snprintf(folder, sizeof folder, "%s/d%02d", out_dir, i / PER_FOLDER);
        snprintf(path, sizeof path, "%s/photo_%04d.jpg", folder, i);
        struct stat st;
        if (stat(path, &st) == 0 && st.st_size > 0) continue;
        if (mkdir(folder, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "make_photos: %s: %s\n", folder, strerror(errno));
            return 1;
        }
        rng r = {.s = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1)};
        int portrait = i % 5 == 4;
        int w = portrait ? SHORT_SIDE : LONG_SIDE, h = portrait ? LONG_SIDE : SHORT_SIDE;
        uint8_t *px = render(&src[i % n_src], w, h, &r);
        if (!px) {
            fprintf(stderr, "make_photos: out of memory\n");
            return 1;
        }
        /* Taken one photo a minute from 2024-06-01, as a camera's sequence would be. */
        char when[32];
        int minutes = i;
        snprintf(when, sizeof when, "2024:06:%02d %02d:%02d:00", 1 + minutes / (24 * 60) % 28,
                 minutes / 60 % 24, minutes % 60);
        uint8_t exif[512];
        size_t exif_len = make_exif_app1(exif, i % 2, 1, when, when);
        blob jpg =
            make_jpeg(px, w, h, 3, &(jpeg_opts){.quality = 90, .app1 = exif, .app1_len = exif_len});
        free(px);
        snprintf(tmp, sizeof tmp, "%s/.photo_%04d.jpg.tmp", folder, i);
        write_file(tmp, jpg.data, jpg.size);
        blob_free(&jpg);
        if (rename(tmp, path) != 0) {
            fprintf(stderr, "make_photos: %s: %s\n", path, strerror(errno));
            return 1;
        }
        made++;
    }
    for (int k = 0; k < n_src; k++) ce_image_free(&src[k]);
    fprintf(stderr, "make_photos: %d made, %d already there (%s, photos %d..%d)\n", made,
            count - made, out_dir, first, first + count - 1);
    return 0;
}

/* Every *.jpg of dir at full size, in name order (the same photo i on every machine). */
static int load_sources(const char *dir, ce_image *src, int max)
{
    DIR *d = opendir(dir);
    if (!d) return -errno;
    char *names[MAX_SOURCES];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        size_t len = strlen(e->d_name);
        if (len > 4 && !strcmp(e->d_name + len - 4, ".jpg")) names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    int loaded = 0;
    for (int k = 0; k < n; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        ce_err err;
        if (ce_image_load_file(path, &(ce_load_options){.min_side = 1 << 20}, &src[loaded], &err) ==
            0)
            loaded++;
        else fprintf(stderr, "make_photos: skipping %s: %s\n", path, err.msg);
        free(names[k]);
    }
    return loaded;
}

/* A random crop of the source with the output's aspect (55-100% of the largest such
 * crop), maybe mirrored, per-channel gains and an exposure shift, bilinear to w x h, plus
 * +-NOISE per sample. */
static uint8_t *render(const ce_image *src, int w, int h, rng *r)
{
    double aspect = (double)w / h;
    double cw = src->width, ch = cw / aspect;
    if (ch > src->height) ch = src->height, cw = ch * aspect;
    double scale = uniform(r, 0.55, 1.0);
    cw *= scale, ch *= scale;
    double x0 = uniform(r, 0, src->width - cw), y0 = uniform(r, 0, src->height - ch);
    int mirror = (int)(next(r) & 1);
    double exposure = uniform(r, -20, 20);
    double gain[3];
    for (int c = 0; c < 3; c++) gain[c] = uniform(r, 0.85, 1.15);

    uint8_t *out = malloc((size_t)w * h * 3);
    int *xi = malloc(sizeof *xi * (size_t)w);
    float *xf = malloc(sizeof *xf * (size_t)w);
    if (!out || !xi || !xf) {
        free(out), free(xi), free(xf);
        return NULL;
    }
    for (int x = 0; x < w; x++) {
        double sx = x0 + (mirror ? w - 1 - x : x) * (cw - 1) / (w - 1);
        if (sx > src->width - 1.001) sx = src->width - 1.001;
        xi[x] = (int)sx;
        xf[x] = (float)(sx - xi[x]);
    }
    uint32_t noise = (uint32_t)next(r);
    const int stride = src->width * 3;
    for (int y = 0; y < h; y++) {
        double sy = y0 + (double)y * (ch - 1) / (h - 1);
        if (sy > src->height - 1.001) sy = src->height - 1.001;
        int yi = (int)sy;
        float fy = (float)(sy - yi);
        const uint8_t *row0 = src->pixels + (size_t)yi * stride, *row1 = row0 + stride;
        uint8_t *o = out + (size_t)y * w * 3;
        for (int x = 0; x < w; x++) {
            const uint8_t *a = row0 + xi[x] * 3, *b = row1 + xi[x] * 3;
            float fx = xf[x];
            for (int c = 0; c < 3; c++) {
                float top = a[c] + (a[c + 3] - a[c]) * fx;
                float bottom = b[c] + (b[c + 3] - b[c]) * fx;
                noise = noise * 1664525u + 1013904223u;
                float v = (top + (bottom - top) * fy) * (float)gain[c] + (float)exposure +
                          (float)(noise >> 24) / (128.0f / NOISE) - NOISE;
                o[x * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
    free(xi);
    free(xf);
    return out;
}

/* splitmix64 */
static uint64_t next(rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform(rng *r, double lo, double hi)
{
    return lo + (hi - lo) * (double)(next(r) >> 11) / 9007199254740992.0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}
