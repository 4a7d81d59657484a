/*
 * Golden test of the CNN against the original TF.js graph (tests/reference/).
 *
 *   cnn_golden check MODELS_DIR REF_DIR PHOTOS_DIR   compare every REF_DIR/NAME.ref
 *                                                   with the engine on PHOTOS_DIR/NAME.jpg
 *   cnn_golden dump-pixels IMAGE.jpg OUT.rgb         the decoded pixels the reference
 *                                                   script feeds the graph
 *
 * Both sides start from the same pixels: a full-size libjpeg decode (islow IDCT, the
 * library defaults) done here, independent of the engine's own loader, so the test also
 * covers our resize against the graph's ResizeBilinear.
 *
 * Checks: every sampled map within 1e-3 of the map's max magnitude, the same
 * detections (class), scores within 0.01, boxes IoU >= 0.98; the generated anchors
 * against the graph's. Exit 0 pass, 1 fail, 77 skip (no model or photos).
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "capengine.h"
#include "cnn.h"
#include "weights.h"

#define MAP_TOLERANCE 1e-3
#define SCORE_TOLERANCE 0.01
#define MIN_IOU 0.98
#define SKIP 77

typedef struct {
    char name[64];
    uint32_t h, w, c, count;
    float max_abs;
    float *values;
} ref_record;

typedef struct {
    ref_record *records;
    int n;
} reference;

/* What the tap callback compares as the forward pass runs. */
typedef struct {
    const reference *ref;
    int failures;
    int checked;
} tap_ctx;

static int decode_jpeg(const char *path, ce_image *img);
static int load_reference(const char *path, reference *ref);
static void free_reference(reference *ref);
static const ref_record *find(const reference *ref, const char *name);
static void on_tap(void *ctx, const char *name, const float *data, int h, int w, int c);
static int compare_vector(const char *what, const ref_record *r, const float *ours, int n);
static int compare_detections(const ref_record *r, const ce_cnn_output *out);
static int check_anchors(const char *models_dir);
static int check_image(ce_session *s, const char *ref_path, const char *jpg_path);

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "dump-pixels")) {
        ce_image img;
        if (decode_jpeg(argv[2], &img) < 0) return 1;
        FILE *f = fopen(argv[3], "wb");
        uint32_t dims[2] = {(uint32_t)img.width, (uint32_t)img.height};
        int ok = f && fwrite(dims, sizeof dims, 1, f) == 1 &&
                 fwrite(img.pixels, 3, (size_t)img.width * img.height, f) ==
                     (size_t)img.width * img.height;
        if (f && fclose(f) != 0) ok = 0;
        free(img.pixels);
        if (!ok) fprintf(stderr, "cnn_golden: cannot write %s\n", argv[3]);
        return ok ? 0 : 1;
    }
    if (argc != 5 || strcmp(argv[1], "check")) {
        fprintf(stderr, "usage: cnn_golden check MODELS_DIR REF_DIR PHOTOS_DIR\n"
                        "       cnn_golden dump-pixels IMAGE.jpg OUT.rgb\n");
        return 2;
    }
    const char *models = argv[2], *refs = argv[3], *photos = argv[4];
    ce_err err;
    ce_model *model;
    int rc = ce_model_open(models, 0, &model, &err);
    if (rc == -ENOENT) {
        printf("SKIP: %s\n", err.msg);
        return SKIP;
    }
    if (rc < 0) {
        fprintf(stderr, "FAIL: open model: %s\n", err.msg);
        return 1;
    }
    ce_session *s;
    if (ce_session_new(model, &s, &err) < 0) {
        fprintf(stderr, "FAIL: session: %s\n", err.msg);
        return 1;
    }
    int failures = check_anchors(models);
    static const char *const NAMES[] = {"dog", "eagle", "giraffe", "horses", "person", "kite"};
    int ran = 0;
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
        char ref_path[4096], jpg_path[4096];
        snprintf(ref_path, sizeof ref_path, "%s/%s.ref", refs, NAMES[i]);
        snprintf(jpg_path, sizeof jpg_path, "%s/%s.jpg", photos, NAMES[i]);
        FILE *probe = fopen(ref_path, "rb");
        if (!probe) continue;
        fclose(probe);
        probe = fopen(jpg_path, "rb");
        if (!probe) {
            printf("SKIP: %s missing (run tests/data/fetch_photos.sh %s)\n", jpg_path, photos);
            ce_session_free(s);
            ce_model_close(model);
            return SKIP;
        }
        fclose(probe);
        failures += check_image(s, ref_path, jpg_path);
        ran++;
    }
    ce_session_free(s);
    ce_model_close(model);
    if (ran == 0) {
        fprintf(stderr, "FAIL: no reference files in %s\n", refs);
        return 1;
    }
    printf("%s: %d images, %d failures\n", failures ? "FAIL" : "PASS", ran, failures);
    return failures ? 1 : 0;
}

static int check_image(ce_session *s, const char *ref_path, const char *jpg_path)
{
    reference ref;
    if (load_reference(ref_path, &ref) < 0) {
        fprintf(stderr, "FAIL: cannot read %s\n", ref_path);
        return 1;
    }
    ce_image img;
    if (decode_jpeg(jpg_path, &img) < 0) {
        free_reference(&ref);
        return 1;
    }
    ce_cnn_output *out = calloc(1, sizeof *out);
    tap_ctx t = {&ref, 0, 0};
    ce_err err;
    int failures = 0;
    if (ce_cnn_run_tapped(s, &img, out, on_tap, &t, &err) < 0) {
        fprintf(stderr, "FAIL: %s: %s\n", jpg_path, err.msg);
        failures = 1;
    } else {
        failures = t.failures;
        const ref_record *r;
        if ((r = find(&ref, "pooled")))
            failures += compare_vector("pooled", r, out->pooled, CE_POOLED_DIM);
        if ((r = find(&ref, "mid_pooled")))
            failures += compare_vector("mid_pooled", r, out->mid_pooled, CE_MID_DIM);
        if ((r = find(&ref, "class_max")))
            failures += compare_vector("class_max", r, out->class_max, CE_NUM_CLASSES);
        if ((r = find(&ref, "detections"))) failures += compare_detections(r, out);
        else failures++;
        printf("%s: %d maps checked, %d detections, %s\n", jpg_path, t.checked, out->n_detections,
               failures ? "FAIL" : "ok");
    }
    free(out);
    free(img.pixels);
    free_reference(&ref);
    return failures;
}

static void on_tap(void *ctx, const char *name, const float *data, int h, int w, int c)
{
    tap_ctx *t = ctx;
    const ref_record *r = find(t->ref, name);
    if (!r) return;
    if (r->h != (uint32_t)h || r->w != (uint32_t)w || r->c != (uint32_t)c) {
        printf("  %-14s shape %dx%dx%d, reference %ux%ux%u\n", name, h, w, c, r->h, r->w, r->c);
        t->failures++;
        return;
    }
    uint64_t total = (uint64_t)h * w * c;
    double worst = 0, max_abs = 0;
    for (uint64_t i = 0; i < total; i++) max_abs = fmax(max_abs, fabs(data[i]));
    for (uint32_t k = 0; k < r->count; k++) {
        uint64_t idx = total <= 1024 ? k : ((uint64_t)k * 2654435761u) % total;
        worst = fmax(worst, fabs(data[idx] - r->values[k]));
    }
    double scale = r->max_abs > 0 ? r->max_abs : 1;
    double rel = worst / scale, rel_max = fabs(max_abs - r->max_abs) / scale;
    int bad = rel > MAP_TOLERANCE || rel_max > MAP_TOLERANCE;
    printf("  %-14s %4dx%-4dx%-5d max|x| %9.4f  max diff / max|x| %.2e%s\n", name, h, w, c,
           r->max_abs, rel, bad ? "  FAIL" : "");
    t->failures += bad;
    t->checked++;
}

static int compare_vector(const char *what, const ref_record *r, const float *ours, int n)
{
    if (r->count != (uint32_t)n) {
        printf("  %-14s %d values, reference %u  FAIL\n", what, n, r->count);
        return 1;
    }
    double worst = 0, scale = r->max_abs > 0 ? r->max_abs : 1;
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs(ours[i] - r->values[i]));
    int bad = worst / scale > MAP_TOLERANCE;
    printf("  %-14s %d values  max diff / max|x| %.2e%s\n", what, n, worst / scale,
           bad ? "  FAIL" : "");
    return bad;
}

static double box_iou(const float *a, const float *b)
{
    double ih = fmin(a[2], b[2]) - fmax(a[0], b[0]), iw = fmin(a[3], b[3]) - fmax(a[1], b[1]);
    if (ih <= 0 || iw <= 0) return 0;
    double inter = ih * iw;
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter);
}

/* Every reference detection must have a partner of the same class with a close score
 * and box, and the other way round; a detection whose score lies within the tolerance
 * of the threshold may be missing on either side. */
static int compare_detections(const ref_record *r, const ce_cnn_output *out)
{
    int failures = 0, n_ref = (int)r->h;
    int used[CE_MAX_DETECTIONS] = {0};
    double worst_score = 0, worst_iou = 1;
    for (int i = 0; i < n_ref; i++) {
        const float *d = r->values + 6 * i;
        int best = -1;
        double best_iou = 0;
        for (int j = 0; j < out->n_detections; j++) {
            const ce_detection *o = &out->detections[j];
            if (used[j] || o->class_id != (int)d[0]) continue;
            float box[4] = {o->ymin, o->xmin, o->ymax, o->xmax};
            double v = box_iou(box, d + 2);
            if (v > best_iou) best_iou = v, best = j;
        }
        if (best < 0) {
            if (d[1] >= CE_SCORE_THRESHOLD + SCORE_TOLERANCE) {
                printf("  detection %s %.3f missing  FAIL\n", ce__coco_label((int)d[0]), d[1]);
                failures++;
            }
            continue;
        }
        used[best] = 1;
        double ds = fabs(out->detections[best].score - d[1]);
        worst_score = fmax(worst_score, ds);
        worst_iou = fmin(worst_iou, best_iou);
        if (ds > SCORE_TOLERANCE || best_iou < MIN_IOU) {
            printf("  detection %s score %.4f vs %.4f, IoU %.4f  FAIL\n", ce__coco_label((int)d[0]),
                   out->detections[best].score, d[1], best_iou);
            failures++;
        }
    }
    for (int j = 0; j < out->n_detections; j++) {
        if (!used[j] && out->detections[j].score >= CE_SCORE_THRESHOLD + SCORE_TOLERANCE) {
            printf("  extra detection %s %.3f  FAIL\n", out->detections[j].label,
                   out->detections[j].score);
            failures++;
        }
    }
    printf("  detections     %d vs reference %d; worst score diff %.2e, worst IoU %.5f\n",
           out->n_detections, n_ref, worst_score, worst_iou);
    return failures;
}

static int check_anchors(const char *models_dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/ssdlite_mobilenet_v2_coco.csw", models_dir);
    ce_err err;
    ce_weights *w;
    if (ce__weights_open(path, &w, &err) < 0) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        return 1;
    }
    const float *graph = ce__weights_f32(w, "postprocess/anchors", &err, 2, CE_NUM_ANCHORS, 4);
    static float ours[CE_NUM_ANCHORS][4];
    ce__anchors_generate(ours);
    double worst = graph ? 0 : INFINITY;
    for (int i = 0; graph && i < CE_NUM_ANCHORS * 4; i++)
        worst = fmax(worst, fabs(ours[i / 4][i % 4] - graph[i]));
    ce__weights_close(w);
    printf("anchors: max diff from the graph's %.2e%s\n", worst, worst > 1e-5 ? "  FAIL" : "");
    return worst > 1e-5;
}

/* ------------------------------------------------------------------ files */

static int load_reference(const char *path, reference *ref)
{
    memset(ref, 0, sizeof *ref);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    for (;;) {
        uint32_t len;
        if (fread(&len, 4, 1, f) != 1) break;
        ref_record r = {0};
        if (len >= sizeof r.name || fread(r.name, 1, len, f) != len) goto bad;
        uint32_t hdr[3];
        if (fread(hdr, 4, 3, f) != 3 || fread(&r.max_abs, 4, 1, f) != 1 ||
            fread(&r.count, 4, 1, f) != 1)
            goto bad;
        r.h = hdr[0], r.w = hdr[1], r.c = hdr[2];
        if (r.count > 1u << 20) goto bad;
        r.values = malloc(sizeof(float) * (r.count ? r.count : 1));
        if (!r.values || fread(r.values, 4, r.count, f) != r.count) {
            free(r.values);
            goto bad;
        }
        ref_record *grown = realloc(ref->records, sizeof *grown * (size_t)(ref->n + 1));
        if (!grown) {
            free(r.values);
            goto bad;
        }
        ref->records = grown;
        ref->records[ref->n++] = r;
    }
    fclose(f);
    return 0;
bad:
    fclose(f);
    free_reference(ref);
    return -1;
}

static void free_reference(reference *ref)
{
    for (int i = 0; i < ref->n; i++) free(ref->records[i].values);
    free(ref->records);
    memset(ref, 0, sizeof *ref);
}

static const ref_record *find(const reference *ref, const char *name)
{
    for (int i = 0; i < ref->n; i++)
        if (!strcmp(ref->records[i].name, name)) return &ref->records[i];
    return NULL;
}

struct jpeg_fail {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
};

static void on_jpeg_error(j_common_ptr cinfo)
{
    longjmp(((struct jpeg_fail *)cinfo->err)->jump, 1);
}

static int decode_jpeg(const char *path, ce_image *img)
{
    memset(img, 0, sizeof *img);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cnn_golden: %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct jpeg_decompress_struct cinfo;
    struct jpeg_fail jerr;
    cinfo.err = jpeg_std_error(&jerr.mgr);
    jerr.mgr.error_exit = on_jpeg_error;
    if (setjmp(jerr.jump)) {
        fprintf(stderr, "cnn_golden: %s: not a readable JPEG\n", path);
        jpeg_destroy_decompress(&cinfo);
        fclose(f);
        free(img->pixels);
        img->pixels = NULL;
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, f);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    img->width = (int)cinfo.output_width;
    img->height = (int)cinfo.output_height;
    img->pixels = malloc((size_t)img->width * img->height * 3);
    if (!img->pixels) longjmp(jerr.jump, 1);
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = img->pixels + (size_t)cinfo.output_scanline * img->width * 3;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    fclose(f);
    img->source_width = img->width;
    img->source_height = img->height;
    return 0;
}
