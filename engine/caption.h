/*
 * Private to the captioner (caption.c, text.c) and its tests: the loaded captioner and
 * the pieces of the pipeline that tests/caption drives one by one against the PyTorch
 * golden vectors.
 */
#ifndef CAPENGINE_CAPTION_INTERNAL_H
#define CAPENGINE_CAPTION_INTERNAL_H

#include <stdint.h>

#include "model.h"
#include "weights.h"

/* The concept head's input: pooled 1280 + mid_pooled 576 + class_max 91 + log(1 + boxes
 * per class with score >= 0.5) 91, the layout of models/train/features.py. */
#define CAPTION_FEAT_DIM (CE_POOLED_DIM + CE_MID_DIM + 2 * CE_NUM_CLASSES)

typedef struct {
    const char *word;
    int concept;
} caption_lookup;

#define CAPTION_MAX_COMPOUNDS 64
typedef struct {
    int first, second, whole; /* word indices */
} caption_compound;

struct ce_captioner {
    ce_weights *weights;
    char version[32];
    int text_only; /* vocabularies only: no network weights */
    int n_words, n_concepts, emb, hidden, cond, feat_dim, head_hidden, ngram_block;
    float length_alpha, cond_gamma;
    const char **words; /* n_words: 0 <pad>, 1 <eos>, 2 <unk> */
    char *word_storage;
    const char **concepts; /* n_concepts */
    char *concept_storage;
    const uint8_t *once;           /* n_words: 1 = at most once per caption */
    const int32_t *class_concepts; /* [91][2] COCO class -> concept index or -1 */
    /* Matrices: float16 in the mapped file, row-major [out][in] (matvec.h). Vectors:
     * float32 (widened once at open into `vectors`). */
    const uint16_t *head_w1, *head_w2, *cin_w, *init_h_w, *init_c_w, *emb_w, *w_ih, *w_hh, *out_w;
    /* The bfloat16 decoder (CE_OPEN_CNN_INT8; matvec.h): owned copies of w_ih's first emb
     * columns, w_hh and out_w, rows ce__bf16_cols() apart; NULL for the float16 one. */
    uint16_t *w_ih_bf16, *w_hh_bf16, *out_w_bf16;
    const float *feat_mean, *feat_scale, *head_b1, *head_b2, *cin_b, *init_h_b, *init_c_b;
    const float *lstm_b, *out_b;
    /* The concept completion (optional: complete_hidden 0 = none, the search stores the
     * head's probabilities): q = sigmoid(w2 relu(w1 p^gamma + b1) + b2), trained on caption
     * text (models/train/train_completion.py); q raised to the detector's scores is the
     * image's search vector (ce_caption.concepts). */
    int complete_hidden;
    const uint16_t *complete_w1, *complete_w2;
    float *complete_b1, *complete_b2; /* widened at open, owned */
    float *vectors;
    caption_lookup *lookup; /* concept words and aliases, sorted by word */
    int n_lookup;
    int32_t *word_concept; /* n_words: the concept a content word names, or -1 */
    uint8_t *object;       /* n_concepts: 1 = an object (COCO label, people, animals) */
    caption_compound compounds[CAPTION_MAX_COMPOUNDS]; /* "surf" "board" -> "surfboard" */
    int n_compounds;
    uint8_t *compound_second; /* n_words: 1 = the second word of a compound */
};

/* Grounded search: each word naming a concept (scope 0) or an object concept (scope 1)
 * gets weight * clamp(log(evidence / threshold), floor, ceiling) added to its
 * log-probability, and no concept is named twice. */
typedef struct {
    float weight, threshold, floor, ceiling;
    int scope;
} caption_grounding;
extern const caption_grounding caption_grounding_default;

/* text.c: the word -> concept table built from concepts/words and concepts/alias. */
int ce__caption_text_init(ce_captioner *cap, ce_err *err);
void ce__caption_text_free(ce_captioner *cap);
/* Concept index of one lowercase word (plural rules and aliases applied), or -1. */
int ce__caption_text_lookup(const ce_captioner *cap, const char *word);

/* caption.c: the stages of ce_caption_run. */
void ce__caption_head_features(const ce_cnn_output *cnn, float *features);
int ce__caption_concepts_from_features(const ce_captioner *cap, ce_captioner_scratch *s,
                                       const float *features, float *probs);
/* The search vector of a concept vector (n_concepts each): the completion of probs^gamma,
 * or probs itself when the model has no completion. */
void ce__caption_complete_concepts(const ce_captioner *cap, ce_captioner_scratch *s,
                                   const float *probs, float *search);
/* Beam search from a concept vector; first_logits (n_words, may be NULL) receives the raw
 * logits of the first step. Returns the token count written to tokens. */
int ce__caption_decode_concepts(const ce_captioner *cap, ce_captioner_scratch *s,
                                const float *concepts, int width, int max_len, int *tokens,
                                int *n_tokens, float *score, float *first_logits);

/* ce_caption_run with explicit grounding (weight 0 = the plain search of the golden). */
int ce__caption_run_grounded(ce_session *session, const ce_cnn_output *cnn,
                             const ce_caption_options *opt, const caption_grounding *g,
                             ce_caption *out, ce_err *err);
/* Grounded beam search from a concept vector and an evidence vector (n_concepts each);
 * raw receives the decoder's length-normalised log-probability of the result. */
int ce__caption_decode_grounded(const ce_captioner *cap, ce_captioner_scratch *s,
                                const float *concepts, const float *evidence,
                                const caption_grounding *g, int width, int max_len, int *tokens,
                                int *n_tokens, float *raw);
void ce__grounding_bias(const ce_captioner *cap, const caption_grounding *g, const float *evidence,
                        float *bias);
float ce__caption_confidence(const ce_captioner *cap, const float *evidence, const int *tokens,
                             int n, float raw);

#endif
