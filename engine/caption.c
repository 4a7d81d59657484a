/*
 * The captioner: CNN features -> visual-concept probabilities -> LSTM decoder with beam
 * search. Weights come from models/captioner.csw, written by models/train/export.py; the
 * PyTorch twin of every computation here is models/train/decoder.py and
 * models/train/train_concepts.py (the concept head), and tests/caption checks both give the
 * same numbers.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caption.h"
#include "lines.h"
#include "matvec.h"
#include "model.h"
#include "weights.h"

#define CAPTIONER_FILE "captioner.csw"
#define MAX_BEAM 16
#define TOKEN_PAD 0
#define TOKEN_EOS 1
#define TOKEN_UNK 2
#define TAG_MIN_SCORE 0.25f

/* One live hypothesis of the beam search; its LSTM state lives in the scratch arrays. */
typedef struct {
    int tokens[CE_MAX_CAPTION];
    int n;
    float score; /* sum of log-probabilities plus grounding biases */
    float raw;   /* sum of the decoder's log-probabilities */
} hypothesis;

typedef struct {
    float score;
    int beam, token;
} candidate;

struct ce_captioner_scratch {
    const ce_captioner *cap;
    float *raw, *features, *hidden1, *probs, *cond, *cvec, *cond_gates;
    float *h, *c, *h_next, *c_next, *gates, *inputs, *logits;
    uint16_t *x_bf16; /* the bfloat16 decoder's input rows (MAX_BEAM x the wider of emb, hidden) */
    float *evidence, *bias; /* n_concepts, n_words: grounded search */
    float *search, *complete_h; /* n_concepts, complete_hidden: the completion */
    hypothesis *live, *next_live;
};

static int load_config(ce_captioner *cap, ce_err *err);
static int load_strings(const ce_weights *w, const char *name, int expect, const char ***out,
                        char **storage, ce_err *err);
static int load_vocabularies(ce_captioner *cap, ce_err *err);
static int load_tensors(ce_captioner *cap, ce_err *err);
static int load_completion(ce_captioner *cap, ce_err *err);
static int make_bf16_decoder(ce_captioner *cap, ce_err *err);
static void head_forward(const ce_captioner *cap, ce_captioner_scratch *s,
                         const ce_cnn_output *cnn);
static void set_condition(const ce_captioner *cap, ce_captioner_scratch *s, const float *concepts);
static void decoder_start(const ce_captioner *cap, ce_captioner_scratch *s);
static void lstm_cells(ce_captioner_scratch *s, int n, int H);
static void complete_condition(const ce_captioner *cap, ce_captioner_scratch *s, float *search);
static void decoder_step(const ce_captioner *cap, ce_captioner_scratch *s, int n_beams,
                         const int *tokens);
static int beam_search(const ce_captioner *cap, ce_captioner_scratch *s, int width, int max_len,
                       const float *bias, int *best, int *best_n, float *best_score,
                       float *best_raw);
static void mark_objects(ce_captioner *cap);
static void find_compounds(ce_captioner *cap);
static void concept_evidence(const ce_captioner *cap, const ce_cnn_output *cnn, const float *probs,
                             float *evidence);
static void raise_to_detections(const ce_captioner *cap, const ce_cnn_output *cnn, float *v);
static int blocked(const hypothesis *hyp, int token, int ngram, const uint8_t *once);
static int names_again(const ce_captioner *cap, const hypothesis *hyp, int token);
static int compound_of(const ce_captioner *cap, int first, int second);
static void log_softmax(float *v, int n);
static void two_layer_sigmoid(int n_in, const float *x, int n_hidden, const uint16_t *w1,
                              const float *b1, float *hidden, int n_out, const uint16_t *w2,
                              const float *b2, float *out);
static void sigmoid_inplace(float *v, int n);
static void fill_tags(const ce_captioner *cap, const ce_cnn_output *cnn, const float *probs,
                      ce_caption *out);
static void render_caption(const ce_captioner *cap, const int *tokens, int n, char *out,
                           size_t size);
static uint32_t fnv1a(uint32_t h, const void *data, size_t n);

/* ------------------------------------------------------------------ public */

/* The grounding the engine uses (chosen on Visual7W photos with COCO captions, never on
 * the validation sets: models/README.md, "Grounded decoding"). */
const caption_grounding caption_grounding_default = {
    .weight = 4.0f,
    .threshold = 0.7f,
    .floor = -4.0f,
    .ceiling = 0.2f,
    .scope = 1,
};

int ce_caption_run(ce_session *session, const ce_cnn_output *cnn, const ce_caption_options *opt,
                   ce_caption *out, ce_err *err)
{
    static const caption_grounding off = {0};
    return ce__caption_run_grounded(
        session, cnn, opt, opt && opt->no_grounding ? &off : &caption_grounding_default, out, err);
}

int ce__caption_run_grounded(ce_session *session, const ce_cnn_output *cnn,
                             const ce_caption_options *opt, const caption_grounding *g,
                             ce_caption *out, ce_err *err)
{
    ce_err scratch_err;
    if (!err) err = &scratch_err;
    ce_captioner_scratch *s = session ? ce__session_captioner_scratch(session) : NULL;
    if (!s || !cnn || !out) {
        snprintf(err->msg, sizeof err->msg,
                 s ? "caption: missing argument" : "caption: the model has no captioner");
        return s ? -EINVAL : -ENOENT;
    }
    const ce_captioner *cap = s->cap;
    int width = opt && opt->beam_width ? opt->beam_width : 3;
    int max_len = opt && opt->max_length ? opt->max_length : 20;
    if (width < 1 || width > MAX_BEAM || max_len < 1 || max_len > CE_MAX_CAPTION / 4) {
        snprintf(err->msg, sizeof err->msg, "caption: beam width must be 1..%d and length 1..%d",
                 MAX_BEAM, CE_MAX_CAPTION / 4);
        return -EINVAL;
    }
    memset(out, 0, sizeof *out);
    head_forward(cap, s, cnn);
    concept_evidence(cap, cnn, s->probs, s->evidence);
    const float *bias = NULL;
    if (g && g->weight != 0) {
        ce__grounding_bias(cap, g, s->evidence, s->bias);
        bias = s->bias;
    }
    set_condition(cap, s, s->probs);
    /* The search vector: what the evidence implies (the completion), and never less than
     * the detector's confidence in an object it found (a dog beside a car stays a dog
     * however rarely captions name the two together). Without a completion: the head's
     * probabilities as they are. */
    if (cap->complete_hidden) {
        complete_condition(cap, s, s->search);
        raise_to_detections(cap, cnn, s->search);
    } else {
        memcpy(s->search, s->probs, sizeof(float) * (size_t)cap->n_concepts);
    }
    decoder_start(cap, s);
    int tokens[CE_MAX_CAPTION], n = 0;
    float score = 0, raw = 0;
    beam_search(cap, s, width, max_len, bias, tokens, &n, &score, &raw);
    render_caption(cap, tokens, n, out->caption, sizeof out->caption);
    out->log_prob = raw;
    out->confidence = ce__caption_confidence(cap, s->evidence, tokens, n, raw);
    out->n_concepts = cap->n_concepts;
    out->concepts = s->search;
    fill_tags(cap, cnn, s->probs, out);
    return 0;
}

int ce__captioner_open(const char *models_dir, int flags, ce_captioner **out, ce_err *err)
{
    const int text_only = !!(flags & CE_OPEN_TEXT_ONLY);
    const int bf16 = !text_only && (flags & CE_OPEN_CNN_INT8);
    ce_err scratch_err;
    if (!err) err = &scratch_err;
    *out = NULL;
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", models_dir, CAPTIONER_FILE) >= sizeof path) {
        snprintf(err->msg, sizeof err->msg, "models directory path too long");
        return -ENAMETOOLONG;
    }
    ce_captioner *cap = calloc(1, sizeof *cap);
    if (!cap) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return -ENOMEM;
    }
    /* float16 tensors stay float16 in the mapping: matvec.c widens them as it goes. */
    int rc = ce__weights_open_flags(path, CE_WEIGHTS_SKIP_F16, &cap->weights, err);
    if (rc < 0) {
        free(cap);
        return rc;
    }
    if ((rc = load_config(cap, err)) < 0 || (rc = load_vocabularies(cap, err)) < 0 ||
        (!text_only && (rc = load_tensors(cap, err)) < 0) ||
        (!text_only && (rc = load_completion(cap, err)) < 0) ||
        (bf16 && (rc = make_bf16_decoder(cap, err)) < 0) ||
        (rc = ce__caption_text_init(cap, err)) < 0) {
        /* Prefix the message with the file name, truncating its end if need be. */
        const size_t prefix = sizeof CAPTIONER_FILE + 1;
        memmove(err->msg + prefix, err->msg, sizeof err->msg - prefix);
        err->msg[sizeof err->msg - 1] = 0;
        memcpy(err->msg, CAPTIONER_FILE ": ", prefix);
        ce__captioner_close(cap);
        return rc == -ENOENT ? -EBADMSG : rc;
    }
    cap->text_only = text_only;
    if (!text_only) {
        /* The concept each content word names (the words "once" marks), for grounding. */
        cap->word_concept = malloc(sizeof(int32_t) * (size_t)cap->n_words);
        cap->object = calloc((size_t)cap->n_concepts, 1);
        cap->compound_second = calloc((size_t)cap->n_words, 1);
        if (!cap->word_concept || !cap->object || !cap->compound_second) {
            ce__captioner_close(cap);
            snprintf(err->msg, sizeof err->msg, "out of memory");
            return -ENOMEM;
        }
        for (int t = 0; t < cap->n_words; t++)
            cap->word_concept[t] =
                t > TOKEN_UNK && cap->once[t] ? ce__caption_text_lookup(cap, cap->words[t]) : -1;
        mark_objects(cap);
        find_compounds(cap);
    }
    if (text_only) {
        /* The identity hashes every weight; the text side never reports it. */
        snprintf(cap->version, sizeof cap->version, "cap-text-only");
        *out = cap;
        return 0;
    }
    /* Hashed as float32 (float16 tensors widened), as when the file was converted at
     * open: the identity, and so every index's model version, stays what it was. */
    uint32_t h = 2166136261u;
    for (int i = 0; i < ce__weights_count(cap->weights); i++) {
        const ce_tensor *t = ce__weights_at(cap->weights, i);
        h = fnv1a(h, t->name, strlen(t->name));
        if (t->dtype != CE_DT_F16) {
            h = fnv1a(h, t->data, t->count * (t->dtype == CE_DT_U8 ? 1 : 4));
            continue;
        }
        float chunk[1024];
        for (size_t at = 0; at < t->count; at += 1024) {
            size_t n = t->count - at < 1024 ? t->count - at : 1024;
            ce__f16_to_f32((const uint16_t *)t->data + at, chunk, n);
            h = fnv1a(h, chunk, n * sizeof(float));
        }
    }
    snprintf(cap->version, sizeof cap->version, "cap-%08x%s", h, bf16 ? "-bf16" : "");
    if (bf16) {
        /* From here on the steps read the bfloat16 copies: the float16 pages of w_hh and
         * out_w (7 MB; w_ih's rows also hold the conditioning's columns) leave the
         * resident set, so the int8 model's daemon holds each matrix once. */
        const size_t H = (size_t)cap->hidden;
        ce__weights_release(cap->weights, cap->w_hh, sizeof(uint16_t) * 4 * H * H);
        ce__weights_release(cap->weights, cap->out_w, sizeof(uint16_t) * (size_t)cap->n_words * H);
    }
    *out = cap;
    return 0;
}

void ce__captioner_close(ce_captioner *cap)
{
    if (!cap) return;
    ce__caption_text_free(cap);
    free(cap->word_concept);
    free(cap->object);
    free(cap->compound_second);
    free(cap->words);
    free(cap->word_storage);
    free(cap->concepts);
    free(cap->concept_storage);
    free(cap->vectors);
    free(cap->complete_b1);
    free(cap->complete_b2);
    free(cap->w_ih_bf16);
    free(cap->w_hh_bf16);
    free(cap->out_w_bf16);
    ce__weights_close(cap->weights);
    free(cap);
}

const char *ce__captioner_version(const ce_captioner *cap) { return cap->version; }

int ce__captioner_scratch_new(const ce_captioner *cap, ce_captioner_scratch **out, ce_err *err)
{
    *out = NULL;
    if (cap->text_only) {
        snprintf(err->msg, sizeof err->msg, "the captioner was opened for text only");
        return -EINVAL;
    }
    ce_captioner_scratch *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    size_t H = (size_t)cap->hidden, V = (size_t)cap->n_words, B = MAX_BEAM;
    s->cap = cap;
    s->raw = ce__alloc_lines(sizeof(float) * (size_t)cap->feat_dim);
    s->features = ce__alloc_lines(sizeof(float) * (size_t)cap->feat_dim);
    s->cvec = ce__alloc_lines(sizeof(float) * (size_t)cap->cond);
    s->hidden1 = ce__alloc_lines(sizeof(float) * (size_t)cap->head_hidden);
    s->probs = ce__alloc_lines(sizeof(float) * (size_t)cap->n_concepts);
    s->cond = ce__alloc_lines(sizeof(float) * (size_t)cap->n_concepts);
    s->cond_gates = ce__alloc_lines(sizeof(float) * 4 * H);
    s->h = ce__alloc_lines(sizeof(float) * B * H);
    s->c = ce__alloc_lines(sizeof(float) * B * H);
    s->h_next = ce__alloc_lines(sizeof(float) * B * H);
    s->c_next = ce__alloc_lines(sizeof(float) * B * H);
    s->gates = ce__alloc_lines(sizeof(float) * B * 4 * H);
    s->inputs = ce__alloc_lines(sizeof(float) * B * (size_t)cap->emb);
    if (cap->w_ih_bf16) {
        int wide = cap->emb > cap->hidden ? cap->emb : cap->hidden;
        if (!(s->x_bf16 = ce__alloc_lines(sizeof(uint16_t) * B * (size_t)ce__bf16_cols(wide))))
            goto oom;
    }
    s->logits = ce__alloc_lines(sizeof(float) * B * V);
    s->live = malloc(sizeof(hypothesis) * B);
    s->next_live = malloc(sizeof(hypothesis) * B);
    s->evidence = ce__alloc_lines(sizeof(float) * (size_t)cap->n_concepts);
    s->bias = ce__alloc_lines(sizeof(float) * V);
    s->search = ce__alloc_lines(sizeof(float) * (size_t)cap->n_concepts);
    s->complete_h =
        ce__alloc_lines(sizeof(float) * (size_t)(cap->complete_hidden ? cap->complete_hidden : 1));
    if (!s->search || !s->complete_h || !s->evidence || !s->bias || !s->raw || !s->cvec ||
        !s->features || !s->hidden1 ||
        !s->probs || !s->cond || !s->cond_gates || !s->h || !s->c || !s->h_next || !s->c_next ||
        !s->gates || !s->inputs || !s->logits || !s->live || !s->next_live)
        goto oom;
    *out = s;
    return 0;
oom:
    ce__captioner_scratch_free(s);
    snprintf(err->msg, sizeof err->msg, "out of memory");
    return -ENOMEM;
}

void ce__captioner_scratch_free(ce_captioner_scratch *s)
{
    if (!s) return;
    free(s->raw);
    free(s->cvec);
    free(s->features);
    free(s->hidden1);
    free(s->probs);
    free(s->cond);
    free(s->cond_gates);
    free(s->h);
    free(s->c);
    free(s->h_next);
    free(s->c_next);
    free(s->gates);
    free(s->inputs);
    free(s->x_bf16);
    free(s->logits);
    free(s->live);
    free(s->next_live);
    free(s->evidence);
    free(s->bias);
    free(s->search);
    free(s->complete_h);
    free(s);
}

/* ------------------------------------------------------------------ pieces (also used by the golden test) */

int ce__caption_concepts_from_features(const ce_captioner *cap, ce_captioner_scratch *s,
                                       const float *features, float *probs)
{
    const int F = cap->feat_dim;
    for (int i = 0; i < F; i++)
        s->features[i] = (features[i] - cap->feat_mean[i]) * cap->feat_scale[i];
    two_layer_sigmoid(F, s->features, cap->head_hidden, cap->head_w1, cap->head_b1, s->hidden1,
                      cap->n_concepts, cap->head_w2, cap->head_b2, probs);
    return 0;
}

void ce__caption_complete_concepts(const ce_captioner *cap, ce_captioner_scratch *s,
                                   const float *probs, float *search)
{
    if (!cap->complete_hidden) {
        memcpy(search, probs, sizeof(float) * (size_t)cap->n_concepts);
        return;
    }
    set_condition(cap, s, probs);
    complete_condition(cap, s, search);
}

/* The completion of s->cond (set_condition's output): the text-trained completion learnt
 * from the same corrupted caption vectors as the decoder, so it reads what the decoder
 * reads. Needs a completion. */
static void complete_condition(const ce_captioner *cap, ce_captioner_scratch *s, float *search)
{
    const int K = cap->n_concepts;
    two_layer_sigmoid(K, s->cond, cap->complete_hidden, cap->complete_w1, cap->complete_b1,
                      s->complete_h, K, cap->complete_w2, cap->complete_b2, search);
}

/* out = sigmoid(w2 relu(w1 x + b1) + b2), the shape of the head and of the completion;
 * hidden: n_hidden floats of scratch. */
static void two_layer_sigmoid(int n_in, const float *x, int n_hidden, const uint16_t *w1,
                              const float *b1, float *hidden, int n_out, const uint16_t *w2,
                              const float *b2, float *out)
{
    memcpy(hidden, b1, sizeof(float) * (size_t)n_hidden);
    ce__matmul_f16(1, n_hidden, n_in, x, n_in, w1, n_in, hidden, n_hidden);
    for (int i = 0; i < n_hidden; i++) hidden[i] = hidden[i] > 0 ? hidden[i] : 0;
    memcpy(out, b2, sizeof(float) * (size_t)n_out);
    ce__matmul_f16(1, n_out, n_hidden, hidden, n_hidden, w2, n_hidden, out, n_out);
    sigmoid_inplace(out, n_out);
}

int ce__caption_decode_concepts(const ce_captioner *cap, ce_captioner_scratch *s,
                                const float *concepts, int width, int max_len, int *tokens,
                                int *n_tokens, float *score, float *first_logits)
{
    set_condition(cap, s, concepts);
    decoder_start(cap, s);
    if (first_logits) {
        /* The first step from the start token (leaves the start state in s->h, s->c). */
        int start = TOKEN_EOS;
        decoder_step(cap, s, 1, &start);
        memcpy(first_logits, s->logits, sizeof(float) * (size_t)cap->n_words);
    }
    float raw;
    return beam_search(cap, s, width, max_len, NULL, tokens, n_tokens, score, &raw);
}

int ce__caption_decode_grounded(const ce_captioner *cap, ce_captioner_scratch *s,
                                const float *concepts, const float *evidence,
                                const caption_grounding *g, int width, int max_len, int *tokens,
                                int *n_tokens, float *raw)
{
    ce__grounding_bias(cap, g, evidence, s->bias);
    set_condition(cap, s, concepts);
    decoder_start(cap, s);
    float score;
    return beam_search(cap, s, width, max_len, s->bias, tokens, n_tokens, &score, raw);
}

/* ------------------------------------------------------------------ loading */

static int load_config(ce_captioner *cap, ce_err *err)
{
    const ce_tensor *t = ce__weights_get(cap->weights, "config/sizes", CE_DT_I32, err, 1, 8);
    if (!t) return -EBADMSG;
    const int32_t *v = t->data;
    cap->n_words = v[0];
    cap->n_concepts = v[1];
    cap->emb = v[2];
    cap->hidden = v[3];
    cap->cond = v[4];
    cap->feat_dim = v[5];
    cap->head_hidden = v[6];
    cap->ngram_block = v[7];
    const ce_tensor *f = ce__weights_get(cap->weights, "config/search", CE_DT_F32, err, 1, 2);
    if (!f) return -EBADMSG;
    cap->length_alpha = ((const float *)f->data)[0];
    cap->cond_gamma = ((const float *)f->data)[1];
    if (cap->n_words < 4 || cap->n_concepts < 1 || cap->emb < 1 || cap->hidden < 1 ||
        cap->cond < 1 || cap->feat_dim != CAPTION_FEAT_DIM || cap->head_hidden < 1 ||
        cap->ngram_block < 0 || cap->n_words > 1000000 || cap->n_concepts > 100000 ||
        cap->hidden > 8192 || cap->emb > 8192 || cap->cond > 8192 || cap->head_hidden > 8192 ||
        !(cap->length_alpha >= 0 && cap->length_alpha <= 4) ||
        !(cap->cond_gamma > 0 && cap->cond_gamma <= 8)) {
        snprintf(err->msg, sizeof err->msg, "config/sizes out of range");
        return -EBADMSG;
    }
    return 0;
}

static int load_vocabularies(ce_captioner *cap, ce_err *err)
{
    int rc = load_strings(cap->weights, "vocab/words", cap->n_words, &cap->words,
                          &cap->word_storage, err);
    if (rc < 0) return rc;
    return load_strings(cap->weights, "concepts/words", cap->n_concepts, &cap->concepts,
                        &cap->concept_storage, err);
}

static int load_tensors(ce_captioner *cap, ce_err *err)
{
    const ce_weights *w = cap->weights;
    const int V = cap->n_words, K = cap->n_concepts, E = cap->emb, H = cap->hidden, C = cap->cond;
    const int F = cap->feat_dim, Hh = cap->head_hidden;
    const struct {
        const char *name;
        const uint16_t **to;
        int rows, cols;
    } matrices[] = {
        {"head/w1", &cap->head_w1, Hh, F},      {"head/w2", &cap->head_w2, K, Hh},
        {"dec/cin_w", &cap->cin_w, C, K},       {"dec/init_h_w", &cap->init_h_w, H, C},
        {"dec/init_c_w", &cap->init_c_w, H, C}, {"dec/emb", &cap->emb_w, V, E},
        {"dec/w_ih", &cap->w_ih, 4 * H, E + C}, {"dec/w_hh", &cap->w_hh, 4 * H, H},
        {"dec/out_w", &cap->out_w, V, H},
    };
    const struct {
        const char *name;
        const float **to;
        int n;
    } vectors[] = {
        {"head/b1", &cap->head_b1, Hh},      {"head/b2", &cap->head_b2, K},
        {"dec/cin_b", &cap->cin_b, C},       {"dec/init_h_b", &cap->init_h_b, H},
        {"dec/init_c_b", &cap->init_c_b, H}, {"dec/b", &cap->lstm_b, 4 * H},
        {"dec/out_b", &cap->out_b, V},
    };
    const int n_vectors = (int)(sizeof vectors / sizeof *vectors);
    for (size_t i = 0; i < sizeof matrices / sizeof *matrices; i++) {
        const ce_tensor *t = ce__weights_get(w, matrices[i].name, CE_DT_F16, err, 2,
                                             matrices[i].rows, matrices[i].cols);
        if (!t) return -EBADMSG;
        *matrices[i].to = t->data;
    }
    if (!(cap->feat_mean = ce__weights_f32(w, "head/feat_mean", err, 1, F)) ||
        !(cap->feat_scale = ce__weights_f32(w, "head/feat_scale", err, 1, F)))
        return -EBADMSG;
    size_t total = 0;
    for (int i = 0; i < n_vectors; i++) total += (size_t)vectors[i].n;
    if (!(cap->vectors = malloc(sizeof(float) * total))) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return -ENOMEM;
    }
    float *at = cap->vectors;
    for (int i = 0; i < n_vectors; i++) {
        const ce_tensor *t = ce__weights_get(w, vectors[i].name, CE_DT_F16, err, 1, vectors[i].n);
        if (!t) return -EBADMSG;
        ce__f16_to_f32(t->data, at, (size_t)vectors[i].n);
        *vectors[i].to = at;
        at += vectors[i].n;
    }
    const ce_tensor *once = ce__weights_get(w, "vocab/once", CE_DT_U8, err, 1, V);
    if (!once) return -EBADMSG;
    cap->once = once->data;
    const ce_tensor *cc =
        ce__weights_get(w, "concepts/class_concepts", CE_DT_I32, err, 2, CE_NUM_CLASSES, 2);
    if (!cc) return -EBADMSG;
    cap->class_concepts = cc->data;
    for (int i = 0; i < CE_NUM_CLASSES * 2; i++)
        if (cap->class_concepts[i] < -1 || cap->class_concepts[i] >= K) {
            snprintf(err->msg, sizeof err->msg, "concepts/class_concepts out of range");
            return -EBADMSG;
        }
    return 0;
}

/* The completion's four tensors, all or none: a file without them (older captioners,
 * test models) stores the head's probabilities for search. */
static int load_completion(ce_captioner *cap, ce_err *err)
{
    const ce_weights *w = cap->weights;
    const int K = cap->n_concepts;
    const ce_tensor *b1 = ce__weights_find(w, "complete/b1");
    if (!b1 && !ce__weights_find(w, "complete/w1") && !ce__weights_find(w, "complete/w2") &&
        !ce__weights_find(w, "complete/b2"))
        return 0;
    if (!b1 || b1->rank != 1 || b1->count < 1 || b1->count > 4096) {
        snprintf(err->msg, sizeof err->msg, "complete/b1 missing or not a vector of 1..4096");
        return -EBADMSG;
    }
    const int Hc = (int)b1->count;
    const ce_tensor *w1 = ce__weights_get(w, "complete/w1", CE_DT_F16, err, 2, Hc, K);
    const ce_tensor *w2 = w1 ? ce__weights_get(w, "complete/w2", CE_DT_F16, err, 2, K, Hc) : NULL;
    const ce_tensor *tb1 = w2 ? ce__weights_get(w, "complete/b1", CE_DT_F16, err, 1, Hc) : NULL;
    const ce_tensor *tb2 = tb1 ? ce__weights_get(w, "complete/b2", CE_DT_F16, err, 1, K) : NULL;
    if (!tb2) return -EBADMSG;
    cap->complete_b1 = malloc(sizeof(float) * (size_t)Hc);
    cap->complete_b2 = malloc(sizeof(float) * (size_t)K);
    if (!cap->complete_b1 || !cap->complete_b2) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return -ENOMEM;
    }
    ce__f16_to_f32(tb1->data, cap->complete_b1, (size_t)Hc);
    ce__f16_to_f32(tb2->data, cap->complete_b2, (size_t)K);
    cap->complete_w1 = w1->data;
    cap->complete_w2 = w2->data;
    cap->complete_hidden = Hc;
    return 0;
}

/* A uint8 tensor of `expect` NUL-terminated strings, back to back. */
static int load_strings(const ce_weights *w, const char *name, int expect, const char ***out,
                        char **storage, ce_err *err)
{
    const ce_tensor *t = ce__weights_find(w, name);
    if (!t || t->dtype != CE_DT_U8 || t->rank != 1) {
        snprintf(err->msg, sizeof err->msg, "%s missing or not a uint8 vector", name);
        return -EBADMSG;
    }
    *storage = malloc(t->count + 1);
    *out = calloc((size_t)expect, sizeof **out);
    if (!*storage || !*out) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return -ENOMEM;
    }
    memcpy(*storage, t->data, t->count);
    (*storage)[t->count] = 0;
    size_t pos = 0;
    for (int i = 0; i < expect; i++) {
        if (pos >= t->count) {
            snprintf(err->msg, sizeof err->msg, "%s holds fewer than %d strings", name, expect);
            return -EBADMSG;
        }
        (*out)[i] = *storage + pos;
        pos += strlen(*storage + pos) + 1;
    }
    if (pos != t->count) {
        snprintf(err->msg, sizeof err->msg, "%s holds more than %d strings", name, expect);
        return -EBADMSG;
    }
    return 0;
}

/* ------------------------------------------------------------------ concept head */

/* Features the head sees; the same layout as models/train/features.py head_features(). */
static void head_forward(const ce_captioner *cap, ce_captioner_scratch *s, const ce_cnn_output *cnn)
{
    ce__caption_head_features(cnn, s->raw);
    ce__caption_concepts_from_features(cap, s, s->raw, s->probs);
}

void ce__caption_head_features(const ce_cnn_output *cnn, float *f)
{
    memcpy(f, cnn->pooled, sizeof cnn->pooled);
    f += CE_POOLED_DIM;
    memcpy(f, cnn->mid_pooled, sizeof cnn->mid_pooled);
    f += CE_MID_DIM;
    memcpy(f, cnn->class_max, sizeof cnn->class_max);
    f += CE_NUM_CLASSES;
    /* How many confident boxes of each class: the evidence for "two", "group", "herd". */
    memset(f, 0, sizeof(float) * CE_NUM_CLASSES);
    int n = cnn->n_detections < CE_MAX_DETECTIONS ? cnn->n_detections : CE_MAX_DETECTIONS;
    for (int i = 0; i < n; i++) {
        int id = cnn->detections[i].class_id;
        if (id > 0 && id < CE_NUM_CLASSES && cnn->detections[i].score >= 0.5f) f[id] += 1.0f;
    }
    for (int i = 0; i < CE_NUM_CLASSES; i++) f[i] = logf(1.0f + f[i]);
}

/* ------------------------------------------------------------------ decoder */

/* The decoder sees the concept probabilities sharpened by gamma (1 = as they are). */
static void set_condition(const ce_captioner *cap, ce_captioner_scratch *s, const float *concepts)
{
    for (int i = 0; i < cap->n_concepts; i++) {
        float p = concepts[i] < 0 ? 0 : concepts[i] > 1 ? 1 : concepts[i];
        s->cond[i] = cap->cond_gamma == 1.0f ? p : powf(p, cap->cond_gamma);
    }
}

/* Computes the conditioning (constant over the steps) and the initial state of beam 0. */
static void decoder_start(const ce_captioner *cap, ce_captioner_scratch *s)
{
    const int K = cap->n_concepts, H = cap->hidden, C = cap->cond, E = cap->emb;
    float *cbuf = s->cvec;
    memcpy(cbuf, cap->cin_b, sizeof(float) * (size_t)C);
    ce__matmul_f16(1, C, K, s->cond, K, cap->cin_w, K, cbuf, C);
    for (int i = 0; i < C; i++) cbuf[i] = cbuf[i] > 0 ? cbuf[i] : 0;
    memcpy(s->h, cap->init_h_b, sizeof(float) * (size_t)H);
    ce__matmul_f16(1, H, C, cbuf, C, cap->init_h_w, C, s->h, H);
    memcpy(s->c, cap->init_c_b, sizeof(float) * (size_t)H);
    ce__matmul_f16(1, H, C, cbuf, C, cap->init_c_w, C, s->c, H);
    for (int i = 0; i < H; i++) {
        s->h[i] = tanhf(s->h[i]);
        s->c[i] = tanhf(s->c[i]);
    }
    /* The conditioning's share of the input gates: W_ih[:, E:] c + b, once per image. */
    memcpy(s->cond_gates, cap->lstm_b, sizeof(float) * 4 * (size_t)H);
    ce__matmul_f16(1, 4 * H, C, cbuf, C, cap->w_ih + E, E + C, s->cond_gates, 4 * H);
}

/* One LSTM step for n beams (states s->h/s->c rows) -> s->h_next/c_next and s->logits. */
static void decoder_step(const ce_captioner *cap, ce_captioner_scratch *s, int n, const int *tokens)
{
    const int H = cap->hidden, E = cap->emb, C = cap->cond, V = cap->n_words;
    for (int b = 0; b < n; b++) {
        ce__f16_to_f32(cap->emb_w + (size_t)tokens[b] * E, s->inputs + (size_t)b * E, (size_t)E);
        memcpy(s->gates + (size_t)b * 4 * H, s->cond_gates, sizeof(float) * 4 * (size_t)H);
    }
    for (int b = 0; b < n; b++)
        memcpy(s->logits + (size_t)b * V, cap->out_b, sizeof(float) * (size_t)V);
    /* All beams in one pass over each weight matrix (M = n). */
    if (cap->w_ih_bf16) {
        const int Ep = ce__bf16_cols(E), Hp = ce__bf16_cols(H);
        ce__f32_to_bf16(n, E, s->inputs, E, s->x_bf16, Ep);
        ce__matmul_bf16(n, 4 * H, E, s->x_bf16, Ep, cap->w_ih_bf16, Ep, s->gates, 4 * H);
        ce__f32_to_bf16(n, H, s->h, H, s->x_bf16, Hp);
        ce__matmul_bf16(n, 4 * H, H, s->x_bf16, Hp, cap->w_hh_bf16, Hp, s->gates, 4 * H);
        lstm_cells(s, n, H);
        ce__f32_to_bf16(n, H, s->h_next, H, s->x_bf16, Hp);
        ce__matmul_bf16(n, V, H, s->x_bf16, Hp, cap->out_w_bf16, Hp, s->logits, V);
        return;
    }
    ce__matmul_f16(n, 4 * H, E, s->inputs, E, cap->w_ih, E + C, s->gates, 4 * H);
    ce__matmul_f16(n, 4 * H, H, s->h, H, cap->w_hh, H, s->gates, 4 * H);
    lstm_cells(s, n, H);
    ce__matmul_f16(n, V, H, s->h_next, H, cap->out_w, H, s->logits, V);
}

static void lstm_cells(ce_captioner_scratch *s, int n, int H)
{
    for (int b = 0; b < n; b++)
        ce__lstm_cell(s->gates + (size_t)b * 4 * H, s->c + (size_t)b * H, s->h_next + (size_t)b * H,
                      s->c_next + (size_t)b * H, H);
}

/* The bfloat16 copies of the step matrices (caption.h); the float16 ones stay mapped for
 * the once-per-image products (the conditioning's columns of w_ih). */
static int make_bf16_decoder(ce_captioner *cap, ce_err *err)
{
    if (!ce__bf16_decoder_supported()) {
        snprintf(err->msg, sizeof err->msg, "the int8 model's decoder needs AVX-512 BF16");
        return -ENOTSUP;
    }
    const int H = cap->hidden, E = cap->emb, C = cap->cond, V = cap->n_words;
    int rc;
    if ((rc = ce__bf16_from_f16(cap->w_ih, 4 * H, E, E + C, &cap->w_ih_bf16)) < 0 ||
        (rc = ce__bf16_from_f16(cap->w_hh, 4 * H, H, H, &cap->w_hh_bf16)) < 0 ||
        (rc = ce__bf16_from_f16(cap->out_w, V, H, H, &cap->out_w_bf16)) < 0) {
        snprintf(err->msg, sizeof err->msg, "out of memory (the bfloat16 decoder)");
        return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------ grounding */

/* Words for people and animals that no COCO label names; with the concepts the COCO
 * labels name they are the "objects" the grounding may restrict itself to (scope 1). */
static const char *const extra_objects[] = {
    "man",     "woman",      "boy",     "girl",         "child",        "people",      "baby",
    "toddler", "player",     "skier",   "surfer",       "skateboarder", "snowboarder", "rider",
    "biker",   "bicyclist",  "cyclist", "motorcyclist", "climber",      "swimmer",     "crowd",
    "team",    "family",     "adult",   "teenager",     "worker",       "hiker",       "pedestrian",
    "cowboy",  "batter",     "catcher", "pitcher",      "animal",       "bull",        "vehicle",
    "bike",    "television", "phone",   "table",
};

/* Two-word spellings of an object word ("surf board", "skate board"): found in the
 * vocabulary at load time so that splitting a word does not dodge its grounding. */
static void find_compounds(ce_captioner *cap)
{
    cap->n_compounds = 0;
    for (int w = TOKEN_UNK + 1; w < cap->n_words && cap->n_compounds < CAPTION_MAX_COMPOUNDS; w++) {
        int c = cap->word_concept[w];
        if (c < 0 || !cap->object[c]) continue;
        const char *word = cap->words[w];
        size_t len = strlen(word);
        for (size_t cut = 3; cut + 3 <= len; cut++) {
            char first[64], second[64];
            if (cut >= sizeof first || len - cut >= sizeof second) break;
            memcpy(first, word, cut);
            first[cut] = 0;
            memcpy(second, word + cut, len - cut + 1);
            int a = -1, b = -1;
            for (int t = TOKEN_UNK + 1; t < cap->n_words && (a < 0 || b < 0); t++) {
                if (a < 0 && strcmp(cap->words[t], first) == 0) a = t;
                if (b < 0 && strcmp(cap->words[t], second) == 0) b = t;
            }
            if (a < 0 || b < 0 || cap->n_compounds == CAPTION_MAX_COMPOUNDS) continue;
            cap->compounds[cap->n_compounds++] = (caption_compound){a, b, w};
            cap->compound_second[b] = 1;
        }
    }
}

static void mark_objects(ce_captioner *cap)
{
    for (int k = 0; k < CE_NUM_CLASSES * 2; k++)
        if (cap->class_concepts[k] >= 0) cap->object[cap->class_concepts[k]] = 1;
    for (size_t i = 0; i < sizeof extra_objects / sizeof *extra_objects; i++) {
        int c = ce__caption_text_lookup(cap, extra_objects[i]);
        if (c >= 0) cap->object[c] = 1;
    }
}

/* Evidence for each concept: the head's probability, or the detector's best score for a
 * COCO class whose label names the concept, whichever is higher. */
static void concept_evidence(const ce_captioner *cap, const ce_cnn_output *cnn, const float *probs,
                             float *evidence)
{
    memcpy(evidence, probs, sizeof(float) * (size_t)cap->n_concepts);
    raise_to_detections(cap, cnn, evidence);
}

/* Each concept a COCO class names is at least the detector's best score for that class. */
static void raise_to_detections(const ce_captioner *cap, const ce_cnn_output *cnn, float *v)
{
    for (int k = 1; k < CE_NUM_CLASSES; k++)
        for (int j = 0; j < 2; j++) {
            int c = cap->class_concepts[2 * k + j];
            if (c >= 0 && cnn->class_max[k] > v[c]) v[c] = cnn->class_max[k];
        }
}

/* Per-word log-score offsets for the search: a word naming a concept gets
 * weight * clamp(log(evidence / threshold), floor, ceiling), so that an object the
 * picture gives little evidence for costs log-probability in proportion to how weak the
 * evidence is (ceiling > 0 also rewards confident ones). Other words: 0. */
void ce__grounding_bias(const ce_captioner *cap, const caption_grounding *g, const float *evidence,
                        float *bias)
{
    for (int t = 0; t < cap->n_words; t++) {
        int c = cap->word_concept[t];
        if (c < 0 || (g->scope == 1 && !cap->object[c])) {
            bias[t] = 0;
            continue;
        }
        float e = evidence[c] > 1e-6f ? evidence[c] : 1e-6f;
        float v = logf(e / g->threshold);
        v = v < g->floor ? g->floor : v > g->ceiling ? g->ceiling : v;
        bias[t] = g->weight * v;
    }
}

/* How far to trust a caption, in [0, 1]: the square root of the geometric mean of the
 * decoder's per-word probabilities (exp of the length-normalised log-probability) times
 * the weakest evidence among the objects the caption names (1 when it names none). */
float ce__caption_confidence(const ce_captioner *cap, const float *evidence, const int *tokens,
                             int n, float raw)
{
    float weakest = 1.0f;
    for (int i = 0; i < n; i++) {
        int c = cap->word_concept[tokens[i]];
        if (c >= 0 && cap->object[c] && evidence[c] < weakest) weakest = evidence[c];
    }
    float lm = expf(raw);
    float v = sqrtf(lm * weakest);
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

/* ------------------------------------------------------------------ beam search */

/* Orders candidates best first; ties go to the lower beam, then the lower token, so that
 * the result never depends on the sort algorithm (the PyTorch twin breaks ties alike). */
static int candidate_cmp(const void *pa, const void *pb)
{
    const candidate *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->beam != b->beam) return a->beam < b->beam ? -1 : 1;
    return (a->token > b->token) - (a->token < b->token);
}

/* Keeps `width` live hypotheses; one that emits <eos> is finished and scored by its
 * log-probability over length^alpha. At max_len only <eos> is allowed, so every search
 * ends within max_len + 1 steps. Returns the number of tokens of the best caption. */
static int beam_search(const ce_captioner *cap, ce_captioner_scratch *s, int width, int max_len,
                       const float *bias, int *best, int *best_n, float *best_score,
                       float *best_raw)
{
    const int H = cap->hidden, V = cap->n_words, keep = 2 * width;
    candidate pool[MAX_BEAM * 2 * MAX_BEAM];
    int tokens_in[MAX_BEAM];
    int n_live = 1, have_best = 0, n_finished = 0;
    float best_norm = -FLT_MAX;
    s->live[0].n = 0;
    s->live[0].score = 0;
    s->live[0].raw = 0;
    *best_n = 0;
    *best_score = 0;
    *best_raw = 0;
    for (int step = 0; step <= max_len && n_live > 0; step++) {
        for (int b = 0; b < n_live; b++)
            tokens_in[b] = s->live[b].n ? s->live[b].tokens[s->live[b].n - 1] : TOKEN_EOS;
        decoder_step(cap, s, n_live, tokens_in);
        int n_pool = 0;
        for (int b = 0; b < n_live; b++) {
            const hypothesis *hyp = &s->live[b];
            float *lp = s->logits + (size_t)b * V;
            log_softmax(lp, V);
            candidate top[2 * MAX_BEAM];
            int n_top = 0;
            for (int t = 0; t < V; t++) {
                if (t == TOKEN_PAD || t == TOKEN_UNK) continue;
                /* Most words cannot enter the top list: skip them before the costlier
                 * rules. Only the second word of a compound may gain score below. */
                if (n_top == keep && !(bias && cap->compound_second[t] && hyp->n > 0) &&
                    hyp->score + lp[t] + (bias ? bias[t] : 0.0f) <= top[n_top - 1].score)
                    continue;
                if (t == TOKEN_EOS
                        ? hyp->n == 0
                        : (hyp->n >= max_len || blocked(hyp, t, cap->ngram_block, cap->once)))
                    continue;
                if (bias && names_again(cap, hyp, t)) continue;
                float sc = hyp->score + lp[t] + (bias ? bias[t] : 0.0f);
                if (bias && cap->compound_second[t] && hyp->n > 0) {
                    int whole = compound_of(cap, hyp->tokens[hyp->n - 1], t);
                    if (whole >= 0) {
                        if (names_again(cap, hyp, whole)) continue;
                        sc += bias[whole];
                    }
                }
                if (n_top == keep && sc <= top[n_top - 1].score) continue;
                int at = n_top < keep ? n_top++ : keep - 1;
                while (at > 0 && top[at - 1].score < sc) {
                    top[at] = top[at - 1];
                    at--;
                }
                top[at] = (candidate){sc, b, t};
            }
            memcpy(pool + n_pool, top, sizeof(candidate) * (size_t)n_top);
            n_pool += n_top;
        }
        qsort(pool, (size_t)n_pool, sizeof *pool, candidate_cmp);
        int n_next = 0;
        for (int i = 0; i < n_pool && n_next < width; i++) {
            const hypothesis *from = &s->live[pool[i].beam];
            if (pool[i].token == TOKEN_EOS) {
                float len_norm = powf((float)(from->n + 1), cap->length_alpha);
                float norm = pool[i].score / len_norm;
                if (!have_best || norm > best_norm) {
                    have_best = 1;
                    best_norm = norm;
                    memcpy(best, from->tokens, sizeof(int) * (size_t)from->n);
                    *best_n = from->n;
                    *best_score = norm;
                    *best_raw =
                        (from->raw + s->logits[(size_t)pool[i].beam * V + TOKEN_EOS]) / len_norm;
                }
                n_finished++;
                continue;
            }
            hypothesis *to = &s->next_live[n_next];
            *to = *from;
            to->tokens[to->n++] = pool[i].token;
            to->score = pool[i].score;
            to->raw = from->raw + s->logits[(size_t)pool[i].beam * V + pool[i].token];
            /* h_next/c_next hold this step's states by old beam; h/c take them by new beam. */
            memcpy(s->h + (size_t)n_next * H, s->h_next + (size_t)pool[i].beam * H,
                   sizeof(float) * (size_t)H);
            memcpy(s->c + (size_t)n_next * H, s->c_next + (size_t)pool[i].beam * H,
                   sizeof(float) * (size_t)H);
            n_next++;
        }
        hypothesis *swap = s->live;
        s->live = s->next_live;
        s->next_live = swap;
        n_live = n_next;
        if (n_finished >= width) break;
    }
    return *best_n;
}

/* Grounded search only: a second word for a concept the caption names already ("a man on
 * a bicycle riding a bike"). */
static int names_again(const ce_captioner *cap, const hypothesis *hyp, int token)
{
    int c = cap->word_concept[token];
    if (c < 0) return 0;
    for (int i = 0; i < hyp->n; i++)
        if (cap->word_concept[hyp->tokens[i]] == c) return 1;
    return 0;
}

/* The one-word form of "first second", or -1. */
static int compound_of(const ce_captioner *cap, int first, int second)
{
    for (int i = 0; i < cap->n_compounds; i++)
        if (cap->compounds[i].first == first && cap->compounds[i].second == second)
            return cap->compounds[i].whole;
    return -1;
}

/* No immediate repetition, no second use of a content word ("a toilet and toilet"), and
 * no n-gram (n = ngram_block) that the caption holds already. */
static int blocked(const hypothesis *hyp, int token, int ngram, const uint8_t *once)
{
    if (hyp->n > 0 && hyp->tokens[hyp->n - 1] == token) return 1;
    if (once[token])
        for (int i = 0; i < hyp->n; i++)
            if (hyp->tokens[i] == token) return 1;
    if (ngram < 2 || hyp->n < ngram - 1) return 0;
    const int *tail = hyp->tokens + hyp->n - (ngram - 1);
    for (int start = 0; start + ngram <= hyp->n; start++) {
        if (hyp->tokens[start + ngram - 1] != token) continue;
        if (memcmp(hyp->tokens + start, tail, sizeof(int) * (size_t)(ngram - 1)) == 0) return 1;
    }
    return 0;
}

static void log_softmax(float *v, int n)
{
    float lse = ce__log_sum_exp(v, n);
    for (int i = 0; i < n; i++) v[i] -= lse;
}

static void sigmoid_inplace(float *v, int n)
{
    for (int i = 0; i < n; i++) v[i] = 1.0f / (1.0f + expf(-v[i]));
}

/* ------------------------------------------------------------------ output */

static int add_tag(ce_caption *out, const char *word, float score)
{
    for (int i = 0; i < out->n_tags; i++)
        if (strcmp(out->tags[i].word, word) == 0) {
            if (score > out->tags[i].score) out->tags[i].score = score;
            return 0;
        }
    if (out->n_tags == CE_MAX_TAGS) {
        int worst = 0;
        for (int i = 1; i < out->n_tags; i++)
            if (out->tags[i].score < out->tags[worst].score) worst = i;
        if (out->tags[worst].score >= score) return 0;
        out->tags[worst] = (ce_tag){word, score};
        return 0;
    }
    out->tags[out->n_tags++] = (ce_tag){word, score};
    return 0;
}

static int tag_cmp(const void *pa, const void *pb)
{
    const ce_tag *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return strcmp(a->word, b->word);
}

/* Detected objects by their labels, then the confident concepts, best first. */
static void fill_tags(const ce_captioner *cap, const ce_cnn_output *cnn, const float *probs,
                      ce_caption *out)
{
    int n = cnn->n_detections < CE_MAX_DETECTIONS ? cnn->n_detections : CE_MAX_DETECTIONS;
    for (int i = 0; i < n; i++)
        if (cnn->detections[i].label)
            add_tag(out, cnn->detections[i].label, cnn->detections[i].score);
    for (int k = 0; k < cap->n_concepts; k++)
        if (probs[k] >= TAG_MIN_SCORE) add_tag(out, cap->concepts[k], probs[k]);
    qsort(out->tags, (size_t)out->n_tags, sizeof *out->tags, tag_cmp);
}

/* Words joined by spaces, clitics ("'s", "n't") attached to the word before. */
static void render_caption(const ce_captioner *cap, const int *tokens, int n, char *out,
                           size_t size)
{
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        const char *w = cap->words[tokens[i]];
        int attach = w[0] == '\'' || strcmp(w, "n't") == 0;
        size_t need = strlen(w) + (len && !attach ? 1 : 0);
        if (len + need + 1 > size) break;
        if (len && !attach) out[len++] = ' ';
        memcpy(out + len, w, strlen(w) + 1);
        len += strlen(w);
    }
}

static uint32_t fnv1a(uint32_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}
