/*
 * Image → database row: what the engine made of an image, in the form the index stores.
 * One place for it, used by the pipeline's model stage and by the stage benchmark
 * (tests/bench/index/bench_stages.c), so the benchmark measures what the daemon does.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "capindexer.h"

static size_t append_word(char *buf, size_t size, size_t used, const char *word);

int cx_image_describe(ce_session *session, const ce_model *model, const ce_cnn_output *cnn,
                      cx_image_result *r, ce_err *err)
{
    r->caption[0] = '\0';
    r->tags[0] = '\0';
    r->concepts = NULL;
    r->n_concepts = 0;
    memcpy(r->pooled, cnn->pooled, sizeof cnn->pooled);
    size_t used = 0;
    if (!ce_model_has_captioner(model)) {
        /* no captioner: the detections' labels, each once, are the tags */
        for (int i = 0; i < cnn->n_detections; i++) {
            const char *label = cnn->detections[i].label;
            int seen = !label;
            for (int k = 0; k < i && !seen; k++)
                seen = cnn->detections[k].label && !strcmp(cnn->detections[k].label, label);
            if (!seen) used = append_word(r->tags, sizeof r->tags, used, label);
        }
        return 0;
    }
    ce_caption cap;
    memset(&cap, 0, sizeof cap);
    int rc = ce_caption_run(session, cnn, NULL, &cap, err);
    if (rc < 0) return rc;
    snprintf(r->caption, sizeof r->caption, "%s", cap.caption);
    r->confidence = cap.confidence;
    for (int i = 0; i < cap.n_tags && i < CE_MAX_TAGS; i++)
        used = append_word(r->tags, sizeof r->tags, used, cap.tags[i].word);
    if (cap.n_concepts > 0 && cap.concepts) {
        r->concepts = malloc(sizeof *r->concepts * (size_t)cap.n_concepts);
        if (r->concepts) {
            memcpy(r->concepts, cap.concepts, sizeof *r->concepts * (size_t)cap.n_concepts);
            r->n_concepts = cap.n_concepts;
        }
    }
    return 0;
}

void cx_image_row(const char *path, const struct stat *st, uint64_t fingerprint,
                  const cx_image_result *r, const char *model_version, capdb_image *row)
{
    memset(row, 0, sizeof *row);
    row->path = path;
    row->device = (uint64_t)st->st_dev;
    row->inode = (uint64_t)st->st_ino;
    row->size = (int64_t)st->st_size;
    row->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    row->fingerprint = fingerprint;
    row->width = r->width;
    row->height = r->height;
    row->taken_time = r->taken_time;
    row->status = CAPDB_STATUS_OK;
    row->caption = r->caption[0] ? r->caption : NULL;
    row->tags = r->tags[0] ? r->tags : NULL;
    row->model_version = model_version;
    row->concepts = r->concepts;
    row->n_concepts = r->n_concepts;
    row->pooled = r->pooled;
    row->n_pooled = r->pooled ? CE_POOLED_DIM : 0;
    row->description = r->text.description[0] ? r->text.description : NULL;
    row->keywords = r->text.keywords[0] ? r->text.keywords : NULL;
    row->sidecar_mtime_ns = r->text.sidecar_mtime_ns;
    row->format = r->format[0] ? r->format : cx_format_of(path);
}

const char *cx_format_of(const char *path)
{
    static const struct {
        const char *ext, *format;
    } FORMATS[] = {
        {"jpg", "jpeg"},  {"jpeg", "jpeg"}, {"jpe", "jpeg"},  {"png", "png"},   {"heic", "heif"},
        {"heif", "heif"}, {"hif", "heif"},  {"avif", "avif"}, {"webp", "webp"}, {"tif", "tiff"},
        {"tiff", "tiff"}, {"gif", "gif"},   {"dng", "raw"},   {"cr2", "raw"},   {"cr3", "raw"},
        {"nef", "raw"},   {"arw", "raw"},   {"orf", "raw"},   {"rw2", "raw"},   {"raf", "raw"},
        {"pef", "raw"},   {"srw", "raw"},
    };
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    if (!dot) return "other";
    for (size_t i = 0; i < sizeof FORMATS / sizeof FORMATS[0]; i++)
        if (!strcasecmp(dot + 1, FORMATS[i].ext)) return FORMATS[i].format;
    return "other";
}

const char *cx_failure_reason(int code)
{
    switch (code) {
    case -EBADMSG: return "corrupt";
    case -E2BIG: return "too large";
    case -ENOTSUP: return "unsupported";
    case -ENOMEM: return "out of memory";
    case -ETIMEDOUT: return "time limit";
    default: return "unreadable";
    }
}

int64_t cx_sidecar_mtime(const char *image_path)
{
    char side[PATH_MAX + 8];
    struct stat st;
    int64_t newest = 0;
    snprintf(side, sizeof side, "%s.xmp", image_path);
    if (stat(side, &st) == 0) newest = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    const char *slash = strrchr(image_path, '/');
    const char *dot = strrchr(image_path, '.');
    if (dot && (!slash || dot > slash + 1)) {
        snprintf(side, sizeof side, "%.*s.xmp", (int)(dot - image_path), image_path);
        if (stat(side, &st) == 0) {
            int64_t m = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
            if (m > newest) newest = m;
        }
    }
    return newest;
}

/* Appends " word" (no space first); a word that does not fit is left out whole. */
static size_t append_word(char *buf, size_t size, size_t used, const char *word)
{
    int n = snprintf(buf + used, size - used, "%s%s", used ? " " : "", word);
    if (n < 0 || (size_t)n >= size - used) {
        buf[used] = '\0';
        return used;
    }
    return used + (size_t)n;
}
