/*
 * capengine_debug.h: the CNN's inner tensors, for the golden tests, the benchmarks and
 * the training tools (models/tools/extract_features.c). Not the product's API: names
 * and points may change with the network.
 */
#ifndef CAPENGINE_DEBUG_H
#define CAPENGINE_DEBUG_H

#include "capengine.h"

/* Called by the forward pass at named points ("input", "conv0", "block0".."block16",
 * "fm0" (expanded_conv_14, 19x19x576), "fm1" (Conv_1, 10x10x1280), "fm2".."fm5",
 * "box_encodings", "class_logits") with the HWC tensor there. */
typedef void (*ce_cnn_tap_fn)(void *ctx, const char *name, const float *data, int h, int w, int c);

/* ce_cnn_run, calling tap (may be NULL) at each point. */
int ce_cnn_run_tapped(ce_session *s, const ce_image *img, ce_cnn_output *out, ce_cnn_tap_fn tap,
                      void *ctx, ce_err *err);

#endif
