/*
 * SCAFFOLD: temporary -ENOSYS versions of the public engine functions so the other
 * parts link while the engine is written. Whoever implements a function deletes its
 * version here; when the file is empty it is deleted.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "capengine.h"

static int not_built(ce_err *err, const char *what)
{
    if (err) snprintf(err->msg, sizeof err->msg, "%s: not built yet", what);
    return -ENOSYS;
}

/* captioner and text side */
int ce_caption_run(ce_session *s, const ce_cnn_output *cnn, const ce_caption_options *opt,
                   ce_caption *out, ce_err *err)
{ (void)s; (void)cnn; (void)opt; (void)out; return not_built(err, "the captioner"); }
int ce_model_concept_count(const ce_model *model) { (void)model; return 0; }
const char *ce_model_concept_word(const ce_model *model, int index) { (void)model; (void)index; return NULL; }
int ce_text_concepts(const ce_model *model, const char *text, ce_concept_weight *out, int max)
{ (void)model; (void)text; (void)out; (void)max; return 0; }

/* captioner hooks (engine/internal.h) */
#include "internal.h"
int ce_captioner_open(const char *models_dir, ce_captioner **out, ce_err *err)
{ (void)models_dir; *out = NULL; if (err) snprintf(err->msg, sizeof err->msg, "no captioner yet"); return -ENOENT; }
void ce_captioner_close(ce_captioner *cap) { (void)cap; }
const char *ce_captioner_version(const ce_captioner *cap) { (void)cap; return "none"; }
int ce_captioner_scratch_new(const ce_captioner *cap, ce_captioner_scratch **out, ce_err *err)
{ (void)cap; (void)err; *out = NULL; return 0; }
void ce_captioner_scratch_free(ce_captioner_scratch *scratch) { (void)scratch; }
