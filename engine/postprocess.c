/*
 * From the predictors' raw outputs to detections, as the TF Object Detection API's SSD
 * post-processor does for this model: sigmoid class scores, box decoding against the
 * anchor grid (faster_rcnn box coder, scales 10, 10, 5, 5), boxes clipped to the image,
 * then per-class non-maximum suppression and the best CE_MAX_DETECTIONS overall.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cnn.h"

typedef struct {
    float score;
    int anchor;
} candidate;

static inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
static void decode_box(const float *enc, const float anchor[4], const float scales[4],
                       float box[4]);
static float iou(const float *a, const float *b);
static int by_score_desc(const void *a, const void *b);
static void keep_best(ce_cnn_output *out, const ce_detection *d);

void ce__postprocess(const float *box_encodings, const float *class_logits,
                     const float anchors[CE_NUM_ANCHORS][4], const float box_scales[4],
                     ce_cnn_output *out)
{
    const int n = CE_NUM_ANCHORS, k = CE_NUM_CLASSES;
    /* The sigmoid is monotonic: the best score of a class is the sigmoid of its best
     * logit, and only logits near or above logit(threshold) can pass it, so 91 + a few
     * sigmoids replace 1917 x 91. */
    float max_logit[CE_NUM_CLASSES];
    for (int c = 0; c < k; c++) max_logit[c] = -INFINITY;
    for (int a = 0; a < n; a++) {
        const float *l = class_logits + (size_t)a * k;
        for (int c = 0; c < k; c++) max_logit[c] = l[c] > max_logit[c] ? l[c] : max_logit[c];
    }
    for (int c = 0; c < k; c++) out->class_max[c] = sigmoid(max_logit[c]);
    const float logit_floor = logf(CE_SCORE_THRESHOLD / (1.0f - CE_SCORE_THRESHOLD)) - 1e-3f;

    out->n_detections = 0;
    candidate cand[CE_NUM_ANCHORS];
    float boxes[CE_NUM_ANCHORS][4];
    for (int c = 1; c < k; c++) {
        const char *label = ce__coco_label(c);
        if (!label || out->class_max[c] < CE_SCORE_THRESHOLD) continue;
        int m = 0;
        for (int a = 0; a < n; a++) {
            float l = class_logits[(size_t)a * k + c];
            if (l < logit_floor) continue;
            float s = sigmoid(l);
            if (s >= CE_SCORE_THRESHOLD) cand[m++] = (candidate){s, a};
        }
        qsort(cand, (size_t)m, sizeof *cand, by_score_desc);
        int kept = 0;
        for (int i = 0; i < m && kept < CE_MAX_DETECTIONS; i++) {
            float *b = boxes[kept];
            decode_box(box_encodings + (size_t)cand[i].anchor * 4, anchors[cand[i].anchor],
                       box_scales, b);
            for (int j = 0; j < 4; j++) b[j] = fminf(fmaxf(b[j], 0.0f), 1.0f);
            if (b[2] <= b[0] || b[3] <= b[1]) continue; /* nothing left inside the image */
            int suppressed = 0;
            for (int j = 0; j < kept && !suppressed; j++)
                suppressed = iou(b, boxes[j]) > CE_NMS_IOU;
            if (suppressed) continue;
            kept++;
            ce_detection d = {c, label, cand[i].score, b[0], b[1], b[2], b[3]};
            keep_best(out, &d);
        }
    }
}

/* Inserts into out->detections, which stays sorted best first and at most full. */
static void keep_best(ce_cnn_output *out, const ce_detection *d)
{
    int n = out->n_detections;
    if (n == CE_MAX_DETECTIONS && d->score <= out->detections[n - 1].score) return;
    int at = n < CE_MAX_DETECTIONS ? n : n - 1;
    while (at > 0 && out->detections[at - 1].score < d->score) {
        out->detections[at] = out->detections[at - 1];
        at--;
    }
    out->detections[at] = *d;
    if (n < CE_MAX_DETECTIONS) out->n_detections = n + 1;
}

static void decode_box(const float *enc, const float anchor[4], const float scales[4], float box[4])
{
    float ha = anchor[2] - anchor[0], wa = anchor[3] - anchor[1];
    float yca = anchor[0] + ha * 0.5f, xca = anchor[1] + wa * 0.5f;
    float yc = enc[0] / scales[0] * ha + yca;
    float xc = enc[1] / scales[1] * wa + xca;
    float h = expf(enc[2] / scales[2]) * ha;
    float w = expf(enc[3] / scales[3]) * wa;
    box[0] = yc - h * 0.5f;
    box[1] = xc - w * 0.5f;
    box[2] = yc + h * 0.5f;
    box[3] = xc + w * 0.5f;
}

static float iou(const float *a, const float *b)
{
    float ih = fminf(a[2], b[2]) - fmaxf(a[0], b[0]);
    float iw = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
    if (ih <= 0 || iw <= 0) return 0.0f;
    float inter = ih * iw;
    float uni = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    return uni > 0 ? inter / uni : 0.0f;
}

/* Ties keep anchor order, so the result does not depend on qsort's internals. */
static int by_score_desc(const void *a, const void *b)
{
    const candidate *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return x->anchor - y->anchor;
}

/* ------------------------------------------------------------------ anchors */

void ce__anchors_generate(float anchors[CE_NUM_ANCHORS][4])
{
    /* ssd_anchor_generator { num_layers: 6 min_scale: 0.2 max_scale: 0.95
     *   aspect_ratios: 1, 2, 0.5, 3, 0.3333 reduce_boxes_in_lowest_layer: true }
     * plus the interpolated scale sqrt(s_k * s_k+1) at aspect 1 on every layer but the
     * first, which has (0.1, 1), (0.2, 2), (0.2, 0.5). */
    static const int grid[6] = {19, 10, 5, 3, 2, 1};
    static const double ratios[5] = {1.0, 2.0, 0.5, 3.0, 0.3333};
    double scale[7];
    for (int i = 0; i < 6; i++) scale[i] = 0.2 + (0.95 - 0.2) * i / 5.0;
    scale[6] = 1.0;
    int at = 0;
    for (int layer = 0; layer < 6; layer++) {
        double s[6], r[6];
        int na = 0;
        if (layer == 0) {
            s[0] = 0.1, r[0] = 1.0;
            s[1] = scale[0], r[1] = 2.0;
            s[2] = scale[0], r[2] = 0.5;
            na = 3;
        } else {
            for (int i = 0; i < 5; i++) s[na] = scale[layer], r[na++] = ratios[i];
            s[na] = sqrt(scale[layer] * scale[layer + 1]), r[na++] = 1.0;
        }
        int g = grid[layer];
        for (int y = 0; y < g; y++) {
            for (int x = 0; x < g; x++) {
                double yc = (y + 0.5) / g, xc = (x + 0.5) / g;
                for (int a = 0; a < na; a++) {
                    double h = s[a] / sqrt(r[a]), w = s[a] * sqrt(r[a]);
                    anchors[at][0] = (float)(yc - 0.5 * h);
                    anchors[at][1] = (float)(xc - 0.5 * w);
                    anchors[at][2] = (float)(yc + 0.5 * h);
                    anchors[at][3] = (float)(xc + 0.5 * w);
                    at++;
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ labels */

static const char *const COCO_LABELS[CE_NUM_CLASSES] = {
    [1] = "person",         [2] = "bicycle",       [3] = "car",
    [4] = "motorcycle",     [5] = "airplane",      [6] = "bus",
    [7] = "train",          [8] = "truck",         [9] = "boat",
    [10] = "traffic light", [11] = "fire hydrant", [13] = "stop sign",
    [14] = "parking meter", [15] = "bench",        [16] = "bird",
    [17] = "cat",           [18] = "dog",          [19] = "horse",
    [20] = "sheep",         [21] = "cow",          [22] = "elephant",
    [23] = "bear",          [24] = "zebra",        [25] = "giraffe",
    [27] = "backpack",      [28] = "umbrella",     [31] = "handbag",
    [32] = "tie",           [33] = "suitcase",     [34] = "frisbee",
    [35] = "skis",          [36] = "snowboard",    [37] = "sports ball",
    [38] = "kite",          [39] = "baseball bat", [40] = "baseball glove",
    [41] = "skateboard",    [42] = "surfboard",    [43] = "tennis racket",
    [44] = "bottle",        [46] = "wine glass",   [47] = "cup",
    [48] = "fork",          [49] = "knife",        [50] = "spoon",
    [51] = "bowl",          [52] = "banana",       [53] = "apple",
    [54] = "sandwich",      [55] = "orange",       [56] = "broccoli",
    [57] = "carrot",        [58] = "hot dog",      [59] = "pizza",
    [60] = "donut",         [61] = "cake",         [62] = "chair",
    [63] = "couch",         [64] = "potted plant", [65] = "bed",
    [67] = "dining table",  [70] = "toilet",       [72] = "tv",
    [73] = "laptop",        [74] = "mouse",        [75] = "remote",
    [76] = "keyboard",      [77] = "cell phone",   [78] = "microwave",
    [79] = "oven",          [80] = "toaster",      [81] = "sink",
    [82] = "refrigerator",  [84] = "book",         [85] = "clock",
    [86] = "vase",          [87] = "scissors",     [88] = "teddy bear",
    [89] = "hair drier",    [90] = "toothbrush",
};

const char *ce__coco_label(int class_id)
{
    return class_id > 0 && class_id < CE_NUM_CLASSES ? COCO_LABELS[class_id] : NULL;
}
