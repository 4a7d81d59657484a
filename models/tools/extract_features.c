/*
 * extract_features: runs OUR C CNN over a list of images and writes the features the
 * captioner trains on, so that training and inference see identical numbers.
 *
 *   extract_features [--models DIR] [--grid GRID] [--crop CROP] LIST OUT
 *
 * LIST holds one image path per line. OUT is a binary file of fixed-size records
 * (read by models/train/features.py):
 *   header: "CAPFEAT1", u32 record count (patched at the end), u32 record bytes
 *   record: char name[128] (NUL padded), u32 ok (0 = image failed, features zero),
 *           f32 pooled[1280], f32 conv1_max[1280], f32 mid_pooled[576],
 *           f32 class_max[91], u32 n_det, then CE_MAX_DETECTIONS x
 *           { i32 class_id, f32 score, f32 ymin, xmin, ymax, xmax }
 * GRID (optional, for the spatial concept head): the Conv_1 map of every record in the
 * same order, f32 [10][10][1280] (HWC) each, zeros for a failed image; no header.
 * CROP (optional): records like OUT's, of the CNN run again on the crop around the
 * image's most confident person or animal detection (ok = 0 when there is none).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capengine.h"
#include "capengine_debug.h"

#define NAME_BYTES 128
#define CONV1_CELLS (10 * 10)

typedef struct {
    char name[NAME_BYTES];
    uint32_t ok;
    float pooled[CE_POOLED_DIM];
    float conv1_max[CE_POOLED_DIM];
    float mid_pooled[CE_MID_DIM];
    float class_max[CE_NUM_CLASSES];
    uint32_t n_det;
    struct {
        int32_t class_id;
        float score, ymin, xmin, ymax, xmax;
    } det[CE_MAX_DETECTIONS];
} record;

static int extract_one(ce_session *s, const char *path, record *rec, float *map, record *crop_rec,
                       ce_err *err);
static void fill_record(record *rec, const ce_cnn_output *cnn, const float *map);
static int subject_crop(const ce_image *img, const ce_cnn_output *cnn, ce_image *crop);
static const char *base_name(const char *path);

int main(int argc, char **argv)
{
    const char *models = NULL, *grid_path = NULL, *crop_path = NULL;
    int argi = 1;
    while (argc - argi > 2 && argv[argi][0] == '-') {
        if (strcmp(argv[argi], "--models") == 0) models = argv[argi + 1];
        else if (strcmp(argv[argi], "--grid") == 0) grid_path = argv[argi + 1];
        else if (strcmp(argv[argi], "--crop") == 0) crop_path = argv[argi + 1];
        else break;
        argi += 2;
    }
    if (argc - argi != 2) {
        fprintf(stderr,
                "usage: extract_features [--models DIR] [--grid GRID] [--crop CROP] LIST OUT\n");
        return 2;
    }
    FILE *list = fopen(argv[argi], "r");
    if (!list) {
        perror(argv[argi]);
        return 2;
    }
    FILE *out = fopen(argv[argi + 1], "wb");
    FILE *grid = grid_path ? fopen(grid_path, "wb") : NULL;
    FILE *crop = crop_path ? fopen(crop_path, "wb") : NULL;
    if (!out || (grid_path && !grid) || (crop_path && !crop)) {
        perror(!out ? argv[argi + 1] : grid_path && !grid ? grid_path : crop_path);
        if (out) fclose(out);
        fclose(list);
        return 2;
    }
    ce_set_blas_threads(1);
    ce_err err = {{0}};
    ce_model *model = NULL;
    ce_session *session = NULL;
    if (ce_model_open(models ? models : ce_default_models_dir(), CE_OPEN_DEFAULT, &model, &err) <
            0 ||
        ce_session_new(model, &session, &err) < 0) {
        fprintf(stderr, "extract_features: %s\n", err.msg);
        ce_model_close(model);
        fclose(list);
        fclose(out);
        return 2;
    }
    record *rec = malloc(sizeof *rec), *crop_rec = malloc(sizeof *crop_rec);
    float *map = malloc(sizeof(float) * CONV1_CELLS * CE_POOLED_DIM);
    int rc_crop_failed = 0;
    uint32_t count = 0, rec_bytes = (uint32_t)sizeof *rec, failed = 0;
    fwrite("CAPFEAT1", 1, 8, out);
    fwrite(&count, 4, 1, out);
    fwrite(&rec_bytes, 4, 1, out);
    if (crop) {
        fwrite("CAPFEAT1", 1, 8, crop);
        fwrite(&count, 4, 1, crop);
        fwrite(&rec_bytes, 4, 1, crop);
    }
    char line[4096];
    while (rec && crop_rec && map && fgets(line, sizeof line, list)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        if (extract_one(session, line, rec, map, crop ? crop_rec : NULL, &err) < 0) {
            fprintf(stderr, "extract_features: %s: %s\n", line, err.msg);
            failed++;
        }
        if (crop) fwrite(crop_rec, sizeof *crop_rec, 1, crop);
        fwrite(rec, sizeof *rec, 1, out);
        if (grid) fwrite(map, sizeof(float), CONV1_CELLS * CE_POOLED_DIM, grid);
        if (++count % 500 == 0) fprintf(stderr, "%u images\n", count);
    }
    fseek(out, 8, SEEK_SET);
    fwrite(&count, 4, 1, out);
    if (crop) {
        fseek(crop, 8, SEEK_SET);
        fwrite(&count, 4, 1, crop);
        if (ferror(crop) || fclose(crop) != 0) rc_crop_failed = 1;
    }
    int rc = ferror(out) || !rec || !crop_rec || !map || rc_crop_failed ? 2 : 0;
    if (fclose(out) != 0) rc = 2;
    if (grid && (ferror(grid) || fclose(grid) != 0)) rc = 2;
    fclose(list);
    free(rec);
    free(crop_rec);
    free(map);
    ce_session_free(session);
    ce_model_close(model);
    fprintf(stderr, "extract_features: %u images, %u failed\n", count, failed);
    return rc;
}

/* The Conv_1 map (10x10x1280, HWC) into ctx. */
static void keep_conv_1(void *ctx, const char *name, const float *data, int h, int w, int c)
{
    if (!strcmp(name, "fm1")) memcpy(ctx, data, sizeof(float) * (size_t)(h * w * c));
}

static int extract_one(ce_session *s, const char *path, record *rec, float *map, record *crop_rec,
                       ce_err *err)
{
    memset(rec, 0, sizeof *rec);
    memset(map, 0, sizeof(float) * CONV1_CELLS * CE_POOLED_DIM);
    const char *name = base_name(path);
    size_t len = strlen(name);
    memcpy(rec->name, name, len < NAME_BYTES - 1 ? len : NAME_BYTES - 1);
    if (crop_rec) *crop_rec = *rec;
    ce_image img;
    int rc = ce_image_load_file(path, NULL, &img, err);
    if (rc < 0) return rc;
    ce_cnn_output *cnn = calloc(1, sizeof *cnn);
    if (!cnn) {
        ce_image_free(&img);
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return -ENOMEM;
    }
    rc = ce_cnn_run_tapped(s, &img, cnn, keep_conv_1, map, err);
    if (rc == 0) fill_record(rec, cnn, map);
    else memset(map, 0, sizeof(float) * CONV1_CELLS * CE_POOLED_DIM); /* the tap may have run */
    ce_image crop;
    if (rc == 0 && crop_rec && subject_crop(&img, cnn, &crop) == 0) {
        /* The crop's own Conv_1 map goes to a scratch copy: map keeps the whole image's. */
        float *crop_map = malloc(sizeof(float) * CONV1_CELLS * CE_POOLED_DIM);
        ce_cnn_output *crop_cnn = calloc(1, sizeof *crop_cnn);
        ce_err crop_err = {{0}};
        if (!crop_map || !crop_cnn)
            fprintf(stderr, "extract_features: %s: crop: out of memory\n", path);
        else if (ce_cnn_run_tapped(s, &crop, crop_cnn, keep_conv_1, crop_map, &crop_err) < 0)
            fprintf(stderr, "extract_features: %s: crop: %s\n", path, crop_err.msg);
        else
            fill_record(crop_rec, crop_cnn, crop_map);
        free(crop_map);
        free(crop_cnn);
        free(crop.pixels);
    }
    ce_image_free(&img);
    free(cnn);
    return rc;
}

static void fill_record(record *rec, const ce_cnn_output *cnn, const float *map)
{
    rec->ok = 1;
    memcpy(rec->pooled, cnn->pooled, sizeof rec->pooled);
    memcpy(rec->mid_pooled, cnn->mid_pooled, sizeof rec->mid_pooled);
    memcpy(rec->class_max, cnn->class_max, sizeof rec->class_max);
    /* Max over the 10x10 cells: the strongest local evidence for each channel, which
       average pooling dilutes for small objects. */
    for (int ch = 0; ch < CE_POOLED_DIM; ch++) rec->conv1_max[ch] = map[ch];
    for (int cell = 1; cell < CONV1_CELLS; cell++)
        for (int ch = 0; ch < CE_POOLED_DIM; ch++)
            if (map[cell * CE_POOLED_DIM + ch] > rec->conv1_max[ch])
                rec->conv1_max[ch] = map[cell * CE_POOLED_DIM + ch];
    rec->n_det = (uint32_t)cnn->n_detections;
    for (int i = 0; i < cnn->n_detections; i++) {
        const ce_detection *d = &cnn->detections[i];
        rec->det[i].class_id = d->class_id;
        rec->det[i].score = d->score;
        rec->det[i].ymin = d->ymin;
        rec->det[i].xmin = d->xmin;
        rec->det[i].ymax = d->ymax;
        rec->det[i].xmax = d->xmax;
    }
}

/* The subject: the most confident detection of a person (COCO 1) or an animal (16..25),
 * score >= 0.3, its box grown by 15% a side; at least 32x32 pixels. */
static int subject_crop(const ce_image *img, const ce_cnn_output *cnn, ce_image *crop)
{
    const ce_detection *best = NULL;
    for (int i = 0; i < cnn->n_detections; i++) {
        const ce_detection *d = &cnn->detections[i];
        int subject = d->class_id == 1 || (d->class_id >= 16 && d->class_id <= 25);
        if (subject && d->score >= 0.3f && (!best || d->score > best->score)) best = d;
    }
    if (!best) return -1;
    float gy = 0.15f * (best->ymax - best->ymin), gx = 0.15f * (best->xmax - best->xmin);
    int x0 = (int)((best->xmin - gx) * img->width), x1 = (int)((best->xmax + gx) * img->width);
    int y0 = (int)((best->ymin - gy) * img->height), y1 = (int)((best->ymax + gy) * img->height);
    x0 = x0 < 0 ? 0 : x0;
    y0 = y0 < 0 ? 0 : y0;
    x1 = x1 > img->width ? img->width : x1;
    y1 = y1 > img->height ? img->height : y1;
    if (x1 - x0 < 32 || y1 - y0 < 32) return -1;
    *crop = *img;
    crop->width = x1 - x0;
    crop->height = y1 - y0;
    crop->pixels = malloc((size_t)crop->width * crop->height * 3);
    if (!crop->pixels) return -1;
    for (int y = 0; y < crop->height; y++)
        memcpy(crop->pixels + (size_t)y * crop->width * 3,
               img->pixels + ((size_t)(y0 + y) * img->width + x0) * 3, (size_t)crop->width * 3);
    return 0;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}
