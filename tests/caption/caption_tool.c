/*
 * Captions images under several decoding settings in one pass (the CNN runs once per
 * image): the tool behind models/eval/tune_grounding.py, which chooses the grounding
 * settings on Visual7W photos (never the validation sets). JSON Lines, one per image and
 * setting: file, setting index, caption, log_prob, confidence and the evidence of each
 * concept the caption names.
 *
 *   caption_tool MODELS_DIR "BEAM,WEIGHT,THRESHOLD,FLOOR,CEILING[,SCOPE];..." IMAGE...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caption.h"

#define MAX_SETTINGS 64

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: caption_tool MODELS_DIR "
                        "\"BEAM,WEIGHT,THRESHOLD,FLOOR,CEILING;...\" IMAGE...\n");
        return 2;
    }
    int beams[MAX_SETTINGS], n_set = 0;
    caption_grounding g[MAX_SETTINGS];
    char *spec = strdup(argv[2]), *save = NULL;
    for (char *tok = strtok_r(spec, ";", &save); tok && n_set < MAX_SETTINGS;
         tok = strtok_r(NULL, ";", &save)) {
        caption_grounding *x = &g[n_set];
        x->scope = 0;
        if (sscanf(tok, "%d,%f,%f,%f,%f,%d", &beams[n_set], &x->weight, &x->threshold, &x->floor,
                   &x->ceiling, &x->scope) < 5) {
            fprintf(stderr, "caption_tool: bad setting %s\n", tok);
            return 2;
        }
        n_set++;
    }
    free(spec);
    ce_err err = {{0}};
    ce_model *model;
    ce_session *session;
    if (ce_model_open(argv[1], 0, &model, &err) < 0 || ce_session_new(model, &session, &err) < 0) {
        fprintf(stderr, "caption_tool: %s\n", err.msg);
        return 1;
    }
    ce_set_blas_threads(1);
    ce_cnn_output *cnn = calloc(1, sizeof *cnn);
    ce_caption *out = calloc(1, sizeof *out);
    ce_captioner_scratch *s = ce__session_captioner_scratch(session);
    for (int i = 3; i < argc; i++) {
        ce_image img;
        if (ce_image_load_file(argv[i], NULL, &img, &err) < 0 ||
            ce_cnn_run(session, &img, cnn, &err) < 0) {
            fprintf(stderr, "caption_tool: %s: %s\n", argv[i], err.msg);
            continue;
        }
        ce_image_free(&img);
        for (int k = 0; k < n_set; k++) {
            ce_caption_options opt = {.beam_width = beams[k]};
            if (ce__caption_run_grounded(session, cnn, &opt, &g[k], out, &err) < 0) {
                fprintf(stderr, "caption_tool: %s\n", err.msg);
                return 1;
            }
            printf("{\"file\":\"%s\",\"setting\":%d,\"caption\":\"%s\",\"log_prob\":%.4f,"
                   "\"confidence\":%.4f}\n",
                   argv[i], k, out->caption, out->log_prob, out->confidence);
        }
    }
    (void)s;
    free(cnn);
    free(out);
    ce_session_free(session);
    ce_model_close(model);
    return 0;
}
