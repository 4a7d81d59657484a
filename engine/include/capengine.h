/*
 * capengine: the capsearch caption engine — the only public header of engine/.
 *
 * Pure computation: image decoding, the SSDLite-MobileNetV2 CNN, the visual-concept
 * head, the LSTM captioner with beam search, and the text side (query -> concepts).
 * No SQLite, no libuv, no global state beyond a loaded model — with one exception,
 * named as such: ce_set_blas_threads sets the process-wide count of the CNN's helper
 * threads.
 *
 * Threads: a ce_model is read-only once opened and may be shared by any number of
 * threads; each thread uses its own ce_session (scratch buffers).
 *
 * Errors: functions return 0 on success or a negative errno-style code (-EINVAL bad
 * input, -ENOMEM, -EIO, -ENOENT, -E2BIG image too large, -EBADMSG corrupt data,
 * -ENOTSUP unsupported format) and write a one-line message into `ce_err`.
 * Nothing in the engine calls exit() or abort() on bad input.
 */
#ifndef CAPENGINE_H
#define CAPENGINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CE_ERR_MAX 256
typedef struct {
    char msg[CE_ERR_MAX];
} ce_err;

/* ------------------------------------------------------------------ images */

/* 8-bit RGB, row-major, no padding: pixels[(y * width + x) * 3 + c]. */
#define CE_MAX_EXIF_TEXT 512

typedef struct {
    int width, height;
    uint8_t *pixels;
    int source_width, source_height;    /* size of the stored image before any downscaling,
                                          after EXIF orientation */
    int64_t taken_time;                 /* EXIF DateTimeOriginal as unix seconds (read as
                                          UTC), 0 = none */
    const char *format;                 /* what the content was, a static string: "JPEG",
                                          "PNG", "HEIF", "AVIF", "WebP", "TIFF", "RAW",
                                          "GIF" (NULL before a successful load) */
    char description[CE_MAX_EXIF_TEXT]; /* EXIF ImageDescription, else UserComment (valid
                                          UTF-8, trimmed; "" = none): what a person or
                                          their camera app wrote */
} ce_image;

typedef struct {
    int64_t max_pixels; /* refuse images whose header claims more (0 = default 100 MP) */
    int min_side;       /* decode at the smallest DCT scale whose sides both cover this
                             (0 = 300, the network input); 12 MP JPEGs never decode in full */
} ce_load_options;

/* Decodes JPEG, PNG, HEIC/HEIF, AVIF, WebP, TIFF (first page), camera RAW (embedded
 * preview or half-size decode) and GIF (first frame), detected by content, not by
 * extension; applies the orientation the file records (EXIF, HEIF irot/imir, TIFF
 * Orientation, RAW flip), converts grayscale / CMYK / 16-bit / alpha to 8-bit RGB (alpha
 * is composited over white). Truncated or corrupt files are errors. Images are
 * downscaled (JPEG by DCT scaling, WebP by libwebp's scaler, the others by an integer
 * box filter) so that both sides stay >= min_side. Errors include -ENOENT / -EACCES /
 * -EISDIR (file), -E2BIG (over max_pixels, checked on the header before decoding),
 * -EBADMSG (empty, truncated or corrupt), -ENOTSUP (a format not read). Free with
 * ce_image_free. */
int ce_image_load_file(const char *path, const ce_load_options *opt, ce_image *out, ce_err *err);
int ce_image_load_memory(const void *data, size_t size, const ce_load_options *opt, ce_image *out,
                         ce_err *err);
void ce_image_free(ce_image *img);

/* ------------------------------------------------------------------ model */

typedef struct ce_model ce_model;
typedef struct ce_session ce_session;

/* Directory holding ssdlite_mobilenet_v2_coco.csw and captioner.csw:
 * $CAPSEARCH_MODELS, else the install location, else the source tree's models/. */
const char *ce_default_models_dir(void);

/* Opens (mmaps) the backbone; the captioner is loaded too when present
 * (ce_model_has_captioner tells). CE_OPEN_TEXT_ONLY loads just what the text side
 * needs (the captioner's concept vocabulary), for searching without the backbone.
 * CE_OPEN_CNN_INT8 runs the CNN's 1x1 convolutions in int8 (AVX-512 VNNI and BF16: the CNN
 * about 1.7x faster, detections and captions slightly different, see the model card); the
 * version then says "-int8", so an index made with the other precision is captioned again.
 * -ENOTSUP where ce_cnn_int8_supported() is 0. */
enum { CE_OPEN_DEFAULT = 0, CE_OPEN_TEXT_ONLY = 1, CE_OPEN_CNN_INT8 = 2 };
/* 1 when this build and CPU can run CE_OPEN_CNN_INT8. */
int ce_cnn_int8_supported(void);
int ce_model_open(const char *models_dir, int flags, ce_model **out, ce_err *err);
void ce_model_close(ce_model *model);
int ce_model_has_captioner(const ce_model *model);
/* e.g. "ssdlite_mobilenet_v2_coco+cap-<hash>": stored with each indexed image. */
const char *ce_model_version(const ce_model *model);
/* 1 when a version string (as stored in an index) names the int8 CNN. */
int ce_version_is_int8(const char *version);

int ce_session_new(const ce_model *model, ce_session **out, ce_err *err);
void ce_session_free(ce_session *session);

/* ------------------------------------------------------------------ CNN */

#define CE_NUM_CLASSES 91  /* COCO ids, 0 = background */
#define CE_POOLED_DIM 1280 /* Conv_1, average-pooled */
#define CE_MID_DIM 576     /* expanded_conv_14 expansion, average-pooled */
#define CE_MAX_DETECTIONS 100

typedef struct {
    int class_id;      /* COCO id 1..90 */
    const char *label; /* "dog", "person", ... (static storage) */
    float score;
    float ymin, xmin, ymax, xmax; /* normalised to [0,1] of the image */
} ce_detection;

typedef struct {
    float pooled[CE_POOLED_DIM]; /* image vector (similar-image search, concept head) */
    float mid_pooled[CE_MID_DIM];
    float class_max[CE_NUM_CLASSES]; /* per class, max sigmoid score over all anchors */
    int n_detections;                /* after score threshold + per-class NMS, best first */
    ce_detection detections[CE_MAX_DETECTIONS];
} ce_cnn_output; /* inner feature maps: capengine_debug.h */

/* Runs the network on an image of any size (bilinear resize to 300x300 inside). */
int ce_cnn_run(ce_session *s, const ce_image *img, ce_cnn_output *out, ce_err *err);

/* Process-wide: the threads one image's CNN layers are split over, for every session of
 * the process (the engine's own helper threads, engine/parallel.c, on AVX-512 or AVX2
 * machines; 1 = no thread started; results are the same at any count). capsearchd and `capsearch index` use 1 per
 * worker; the CLI's caption, detect and similar use every core (tests/bench/peers). */
void ce_set_blas_threads(int n);

/* ------------------------------------------------------------------ captioner */

#define CE_MAX_CAPTION 256
#define CE_MAX_TAGS 16

typedef struct {
    const char *word; /* a concept word (static storage in the model) */
    float score;
} ce_tag;

typedef struct {
    char caption[CE_MAX_CAPTION]; /* "a dog running on a sandy beach" */
    float log_prob;               /* the decoder's log-probability of the caption over
                                        its length (words + end) */
    float confidence;             /* 0..1: how far to trust the caption (the decoder's
                                        geometric-mean word probability and the weakest
                                        image evidence among the concepts it names) */
    int n_tags;
    ce_tag tags[CE_MAX_TAGS]; /* detections' labels and top concepts, best first */
    int n_concepts;           /* ce_model_concept_count() */
    float *concepts;          /* the image's concept vector for search, 0..1: when the
                                        model has a completion, the head's probabilities
                                        completed by what captions name together, each
                                        COCO class's concepts at least the detector's best
                                        score for it (models/README.md); else the head's
                                        probabilities. Owned by the session, valid until
                                        the next call on it */
} ce_caption;

typedef struct {
    int beam_width;   /* 0 = default 3 */
    int max_length;   /* words, 0 = default 20 */
    int no_grounding; /* 1 = plain beam search, no penalty for words that
                                        name concepts the image gives no evidence for */
} ce_caption_options;

int ce_caption_run(ce_session *s, const ce_cnn_output *cnn, const ce_caption_options *opt,
                   ce_caption *out, ce_err *err);

/* ------------------------------------------------------------------ text side */

int ce_model_concept_count(const ce_model *model);
const char *ce_model_concept_word(const ce_model *model, int index);

/* Maps free text to concept weights (plurals, synonyms: "puppies" -> dog); fills up to
 * `max` (index, weight) pairs, returns how many. Used to search by concept vector. */
typedef struct {
    int index;
    float weight;
} ce_concept_weight;
int ce_text_concepts(const ce_model *model, const char *text, ce_concept_weight *out, int max);

#ifdef __cplusplus
}
#endif
#endif
