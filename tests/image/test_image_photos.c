/*
 * The Debian darknet sample photos (real camera JPEGs with big-endian EXIF) decode at the
 * expected DCT scale, with the EXIF time, and their truncated halves are errors.
 * Usage: test_image_photos PHOTO_DIR (exits 77 = skipped when the photos are absent).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "capengine.h"
#include "imggen.h"

typedef struct {
    const char *name;
    int stored_w, stored_h; /* SOF size */
    int want_w, want_h;     /* at the smallest N/8 with both sides >= 300 */
    long long taken;        /* DateTimeOriginal, else DateTime, as UTC */
} photo;

static const photo PHOTOS[] = {
    {"dog", 768, 576, 480, 360, 1411142910},    /* 5/8, 2014:09:19 16:08:30 */
    {"eagle", 773, 512, 484, 320, 1374271062},  /* 5/8 */
    {"giraffe", 500, 500, 313, 313, 0},         /* 5/8, no EXIF */
    {"horses", 773, 512, 484, 320, 1365865370}, /* 5/8 */
    {"kite", 1352, 900, 507, 338, 1275827245},  /* 3/8, DateTimeOriginal 2010 (DateTime 2017) */
    {"person", 640, 424, 480, 318, 1365865176}, /* 6/8 */
    {"scream", 352, 448, 308, 392, 0},          /* 7/8, EXIF without a time */
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PHOTO_DIR\n", argv[0]);
        return 2;
    }
    int failures = 0, found = 0;
    for (size_t i = 0; i < sizeof PHOTOS / sizeof PHOTOS[0]; i++) {
        const photo *p = &PHOTOS[i];
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.jpg", argv[1], p->name);
        FILE *probe = fopen(path, "rb");
        if (!probe) continue;
        fclose(probe);
        found++;

        ce_image im;
        ce_err err = {""};
        int rc = ce_image_load_file(path, NULL, &im, &err);
        if (rc != 0 || im.width != p->want_w || im.height != p->want_h ||
            im.source_width != p->stored_w || im.source_height != p->stored_h ||
            im.taken_time != p->taken) {
            fprintf(stderr,
                    "%s: rc %d (%s) %dx%d from %dx%d taken %lld; want %dx%d from "
                    "%dx%d taken %lld\n",
                    p->name, rc, err.msg, im.width, im.height, im.source_width, im.source_height,
                    (long long)im.taken_time, p->want_w, p->want_h, p->stored_w, p->stored_h,
                    p->taken);
            failures++;
        }
        ce_image_free(&im);

        /* Full size on request. */
        rc = ce_image_load_file(path, &(ce_load_options){.min_side = 100000}, &im, &err);
        if (rc != 0 || im.width != p->stored_w || im.height != p->stored_h) {
            fprintf(stderr, "%s full size: rc %d %dx%d\n", p->name, rc, im.width, im.height);
            failures++;
        }
        ce_image_free(&im);

        blob b = read_file(path);
        rc = ce_image_load_memory(b.data, b.size / 2, NULL, &im, &err);
        if (rc != -EBADMSG) {
            fprintf(stderr, "%s cut at half: rc %d (%s), want -EBADMSG\n", p->name, rc, err.msg);
            failures++;
        }
        ce_image_free(&im);
        blob_free(&b);
    }
    if (found == 0) {
        fprintf(stderr, "no photos in %s (run tests/data/fetch_photos.sh %s): skipped\n", argv[1],
                argv[1]);
        return 77;
    }
    if (failures) return 1;
    printf("%d photos decoded as expected\n", found);
    return 0;
}
