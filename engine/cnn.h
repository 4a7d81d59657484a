/*
 * Private to engine/: the SSDLite-MobileNetV2 backbone's parts (cnn.c, resize.c,
 * postprocess.c, model.c) and the hooks the golden tests and benchmarks use.
 */
#ifndef CAPENGINE_CNN_H
#define CAPENGINE_CNN_H

#include "capengine.h"
#include "capengine_debug.h"
#include "parallel.h"
#include "weights.h"

#define CE_INPUT_SIZE 300
#define CE_NUM_ANCHORS 1917
/* Detections below this score are not reported (class_max keeps every class). */
#define CE_SCORE_THRESHOLD 0.3f
/* Per-class non-maximum suppression, as the TF Object Detection API config of this model. */
#define CE_NMS_IOU 0.6f

/* ------------------------------------------------------------------ network (cnn.c) */

typedef struct cnn_net cnn_net;     /* weights: pointers into the mapped file */
typedef struct cnn_state cnn_state; /* per-session scratch buffers */

/* int8: the 1x1 convolutions also get int8 copies and run on them (cnn_int8.h);
 * -ENOTSUP where ce_cnn_int8_supported() is 0. */
int ce__cnn_net_build(const ce_weights *w, int int8, cnn_net **out, ce_err *err);
void ce__cnn_net_free(cnn_net *net);
int ce__cnn_state_new(const cnn_net *net, cnn_state **out, ce_err *err);
void ce__cnn_state_free(cnn_state *st);

/* Floating-point operations of one forward pass (multiply and add counted as 2), counted
 * from the architecture: convolutions, depthwise, bias, activations, residual adds. */
double ce__cnn_flops(void);

/* How model.c hands the network and the scratch to cnn.c (NULL when opened text-only). */
const cnn_net *ce__session_cnn_net(const ce_session *session);
cnn_state *ce__session_cnn(ce_session *session);

/* ------------------------------------------------------------------ input (resize.c) */

/* Bilinear resize to 300x300 exactly as TensorFlow's ResizeBilinear (align_corners and
 * half_pixel_centers false), then x * (2/255) - 1: out is 300*300*3 floats, HWC. Rows
 * are split over the pool's threads (NULL: the caller alone); the result is the same. */
void ce__resize_input(ce_pool *pool, const ce_image *img, float *out);
/* The same with the scalar loop only (test_resize compares the two). */
void ce__resize_input_scalar(const ce_image *img, float *out);

/* ------------------------------------------------------------------ output (postprocess.c) */

/* The SSD anchor grid (ymin, xmin, ymax, xmax), as the TF OD API's ssd_anchor_generator
 * builds it for this model. */
void ce__anchors_generate(float anchors[CE_NUM_ANCHORS][4]);

/* From the raw box encodings [1917][4] and class logits [1917][91]: class_max (sigmoid
 * scores), and the detections after the score threshold and per-class NMS. */
void ce__postprocess(const float *box_encodings, const float *class_logits,
                     const float anchors[CE_NUM_ANCHORS][4], const float box_scales[4],
                     ce_cnn_output *out);

/* COCO label of a class id 1..90, NULL for the ids COCO leaves unused. */
const char *ce__coco_label(int class_id);

#endif
