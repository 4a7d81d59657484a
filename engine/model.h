/*
 * Private to engine/: how the parts of the engine see each other.
 * The backbone half (weights.c, model.c, cnn.c, postprocess.c) and the captioner half
 * (caption.c and friends, text.c) meet only through the hooks below.
 */
#ifndef CAPENGINE_INTERNAL_H
#define CAPENGINE_INTERNAL_H

#include "capengine.h"

/* The captioner: concept vocabulary, concept head, LSTM decoder (caption.c). */
typedef struct ce_captioner ce_captioner;
typedef struct ce_captioner_scratch ce_captioner_scratch;

/* Loads <models_dir>/captioner.csw. Returns -ENOENT (quietly, message filled) when the
 * file is absent so that a model without a captioner still detects objects. flags are
 * ce_model_open's: CE_OPEN_TEXT_ONLY, just the vocabularies and the text side
 * (ce_text_concepts), for searching (captioning with such a captioner fails);
 * CE_OPEN_CNN_INT8, the reduced-precision model, whose decoder steps run in bfloat16
 * (matvec_bf16.c; -ENOTSUP where the CPU has no AVX-512 BF16). */
int ce__captioner_open(const char *models_dir, int flags, ce_captioner **out, ce_err *err);
void ce__captioner_close(ce_captioner *cap);
/* Short identity of the weights ("cap-1a2b3c4d", "cap-1a2b3c4d-bf16" for the bfloat16
 * decoder), part of ce_model_version(). */
const char *ce__captioner_version(const ce_captioner *cap);
int ce__captioner_scratch_new(const ce_captioner *cap, ce_captioner_scratch **out, ce_err *err);
void ce__captioner_scratch_free(ce_captioner_scratch *scratch);

/* Accessors the captioner uses to reach its own state through the public handles. */
const ce_captioner *ce__model_captioner(const ce_model *model);
ce_captioner_scratch *ce__session_captioner_scratch(ce_session *session);

#endif
