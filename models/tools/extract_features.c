/*
 * extract_features: runs OUR C CNN over a list of images and writes the features the
 * captioner trains on, so that training and inference see identical numbers.
 *
 *   extract_features [--models DIR] LIST OUT
 *
 * LIST holds one image path per line. OUT is a binary file of fixed-size records
 * (read by models/train/features.py):
 *   header: "CAPFEAT1", u32 record count (patched at the end), u32 record bytes
 *   record: char name[128] (NUL padded), u32 ok (0 = image failed, features zero),
 *           f32 pooled[1280], f32 conv1_max[1280], f32 mid_pooled[576],
 *           f32 class_max[91], u32 n_det, then CE_MAX_DETECTIONS x
 *           { i32 class_id, f32 score, f32 ymin, xmin, ymax, xmax }
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

static int extract_one(ce_session *s, const char *path, record *rec, float *map, ce_err *err);
static const char *base_name(const char *path);

int main(int argc, char **argv)
{
    const char *models = NULL;
    int argi = 1;
    if (argc > 2 && strcmp(argv[1], "--models") == 0) {
        models = argv[2];
        argi = 3;
    }
    if (argc - argi != 2) {
        fprintf(stderr, "usage: extract_features [--models DIR] LIST OUT\n");
        return 2;
    }
    FILE *list = fopen(argv[argi], "r");
    if (!list) {
        perror(argv[argi]);
        return 2;
    }
    FILE *out = fopen(argv[argi + 1], "wb");
    if (!out) {
        perror(argv[argi + 1]);
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
    record *rec = malloc(sizeof *rec);
    float *map = malloc(sizeof(float) * CONV1_CELLS * CE_POOLED_DIM);
    uint32_t count = 0, rec_bytes = (uint32_t)sizeof *rec, failed = 0;
    fwrite("CAPFEAT1", 1, 8, out);
    fwrite(&count, 4, 1, out);
    fwrite(&rec_bytes, 4, 1, out);
    char line[4096];
    while (rec && map && fgets(line, sizeof line, list)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        if (extract_one(session, line, rec, map, &err) < 0) {
            fprintf(stderr, "extract_features: %s: %s\n", line, err.msg);
            failed++;
        }
        fwrite(rec, sizeof *rec, 1, out);
        if (++count % 500 == 0) fprintf(stderr, "%u images\n", count);
    }
    fseek(out, 8, SEEK_SET);
    fwrite(&count, 4, 1, out);
    int rc = ferror(out) || !rec || !map ? 2 : 0;
    if (fclose(out) != 0) rc = 2;
    fclose(list);
    free(rec);
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

static int extract_one(ce_session *s, const char *path, record *rec, float *map, ce_err *err)
{
    memset(rec, 0, sizeof *rec);
    const char *name = base_name(path);
    size_t len = strlen(name);
    memcpy(rec->name, name, len < NAME_BYTES - 1 ? len : NAME_BYTES - 1);
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
    ce_image_free(&img);
    if (rc == 0) {
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
    free(cnn);
    return rc;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}
