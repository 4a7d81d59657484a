/*
 * The stages a file goes through after the queue, each a function of its own:
 *
 *   cx__dispatch (loop)    lstat + row lookup: unchanged → done; same bytes but an older
 *                          model or a crash retry → model; else → hash
 *   hash_work (worker)     XXH64 of the whole file
 *   hash_after (loop)      same bytes as its row → refresh the stat fields, done; same
 *                          bytes as a row whose file is gone → that row moves here, done;
 *                          else → model (or wait for a free model slot)
 *   model_work (worker)    decode → CNN → captioner, in the slot's own ce_session
 *   model_after (loop)     result → writer; the crash marker drops the file
 *   on_time_limit (loop)   the engine cannot be interrupted: the file is recorded failed
 *                          now, the slot gets a fresh session, the late result is dropped
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"

static void start_hash(cx_pipeline *p, job *j);
static void start_text(cx_pipeline *p, job *j);
static void text_work(uv_work_t *w);
static void text_after(uv_work_t *w, int status);
static void hash_work(uv_work_t *w);
static void hash_after(uv_work_t *w, int status);
static void model_work(uv_work_t *w);
static void model_after(uv_work_t *w, int status);
static void on_time_limit(uv_timer_t *t);
static void job_closed(uv_handle_t *h);
static void write_sidecar(job *j);

void cx__dispatch(cx_pipeline *p, entry *e)
{
    struct stat st;
    capdb_err err = {{0}, 0};
    capdb_file_state old;
    memset(&old, 0, sizeof old);
    int rc = capdb_lookup_path(p->opt.db, e->path, &old, &err);
    if (rc < 0) {
        cx_log(LOG_ERR, "looking up %s: %s", e->path, err.msg);
        old.id = 0;
    }
    if (lstat(e->path, &st) != 0) {
        if ((errno == ENOENT || errno == ENOTDIR) && old.id) cx_pipeline_removed(p, e->path);
        else if (errno != ENOENT && errno != ENOTDIR)
            cx_log(LOG_WARNING, "%s: %s", e->path, strerror(errno));
        cx__entry_remove(p, e);
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        cx__entry_remove(p, e);
        return;
    }
    const char *version = ce_model_version(p->opt.model);
    int same = old.id && cx__same_file_state(&old, &st);
    int current = old.status == CAPDB_STATUS_FAILED || !strcmp(old.model_version, version);
    int force = e->force;
    e->force = 0;
    int text = e->text || (same && cx_sidecar_mtime(e->path) != old.sidecar_mtime_ns);
    e->text = 0;
    if (same && current && e->attempt == 0 && !force && !text) {
        p->stats.unchanged++;
        cx__entry_remove(p, e);
        return;
    }
    job *j = calloc(1, sizeof *j);
    if (!j) {
        cx_log(LOG_ERR, "out of memory for %s", e->path);
        cx__entry_remove(p, e);
        return;
    }
    j->p = p;
    j->e = e;
    j->path = strdup(e->path);
    j->slot = -1;
    j->st = st;
    j->old = old;
    j->work.data = j;
    j->timer.data = j;
    uv_timer_init(p->opt.loop, &j->timer);
    if (!j->path) {
        cx_log(LOG_ERR, "out of memory for %s", e->path);
        cx__job_finish(j);
        return;
    }
    if (same && current && e->attempt == 0 && !force) {
        /* only its sidecar changed: what people wrote is read again, the caption kept */
        start_text(p, j);
    } else if (same && old.fingerprint && (!current || e->attempt > 0)) {
        /* same bytes, an older model (or a crash retry): caption again, no hashing */
        j->fingerprint = old.fingerprint;
        if (!cx__cluster_hand_off(p, j)) cx__start_model(p, j);
    } else {
        start_hash(p, j);
    }
}

static void start_text(cx_pipeline *p, job *j)
{
    j->stage = STAGE_TEXT;
    p->hash_busy++; /* light work: it shares the hashing slots */
    int rc = uv_queue_work(p->opt.loop, &j->work, text_work, text_after);
    if (rc < 0) {
        p->hash_busy--;
        cx_log(LOG_ERR, "queueing %s: %s", j->path, uv_strerror(rc));
        cx__job_finish(j);
    }
}

static void text_work(uv_work_t *w)
{
    job *j = w->data;
    cm_err err = {""};
    j->rc = cm_read(j->path, &j->result.text, &err);
    if (j->rc < 0) snprintf(j->error, sizeof j->error, "%s", err.msg);
}

static void text_after(uv_work_t *w, int status)
{
    job *j = w->data;
    cx_pipeline *p = j->p;
    p->hash_busy--;
    cx__schedule(p);
    if (status == 0 && !p->stopped && j->old.id) {
        if (j->rc < 0) cx_log(LOG_WARNING, "%s", j->error);
        cx__write_text(p, j->old.id, &j->result.text);
        p->stats.text_updates++;
        cx_log(LOG_INFO, "%s: people's text read again from its sidecar", j->path);
    }
    cx__job_finish(j);
}

static void start_hash(cx_pipeline *p, job *j)
{
    j->stage = STAGE_HASH;
    p->hash_busy++;
    int rc = uv_queue_work(p->opt.loop, &j->work, hash_work, hash_after);
    if (rc < 0) {
        p->hash_busy--;
        cx_log(LOG_ERR, "queueing %s: %s", j->path, uv_strerror(rc));
        cx__job_finish(j);
    }
}

static void hash_work(uv_work_t *w)
{
    job *j = w->data;
    j->rc = cx_fingerprint_file(j->path, &j->fingerprint);
}

static void hash_after(uv_work_t *w, int status)
{
    job *j = w->data;
    cx_pipeline *p = j->p;
    p->hash_busy--;
    cx__schedule(p);
    if (status < 0 || p->stopped) {
        cx__job_finish(j);
        return;
    }
    const char *path = j->path;
    if (j->rc < 0) {
        if (j->rc == -ENOENT) {
            if (j->old.id) cx_pipeline_removed(p, path);
        } else {
            char msg[300];
            snprintf(msg, sizeof msg, "cannot read: %s", strerror(-j->rc));
            cx__write_failure(p, path, &j->st, 0, msg, "unreadable");
        }
        cx__job_finish(j);
        return;
    }
    const char *version = ce_model_version(p->opt.model);
    if (j->old.id && j->old.fingerprint == j->fingerprint && j->e->attempt == 0 &&
        (j->old.status == CAPDB_STATUS_FAILED || !strcmp(j->old.model_version, version))) {
        /* touched, same bytes: keep the caption, refresh the stat fields (date filters
         * read mtime; the next start's quick "unchanged" test compares them) */
        if (!cx__same_file_state(&j->old, &j->st)) cx__write_stat(p, j->old.id, &j->st);
        p->stats.unchanged++;
        cx__job_finish(j);
        return;
    }
    char other[PATH_MAX];
    capdb_err err = {{0}, 0};
    int found = capdb_find_by_fingerprint(p->opt.db, j->fingerprint, (int64_t)j->st.st_size, other,
                                          sizeof other, &err);
    if (found < 0) cx_log(LOG_WARNING, "fingerprint lookup for %s: %s", path, err.msg);
    struct stat ost;
    if (found == 1 && strcmp(other, path) && lstat(other, &ost) != 0 && errno == ENOENT) {
        /* the same bytes left another path that is now gone: a move nobody paired; the
         * row exists (just found), so the move keeps its caption */
        if (j->old.id) cx__write_delete(p, path);
        cx__write_move(p, other, path, 0, 1);
        cx__job_finish(j);
        return;
    }
    if (cx__cluster_hand_off(p, j)) return; /* a shared index: any node captions it */
    if (p->model_busy - p->hung < p->workers) {
        cx__start_model(p, j);
    } else {
        j->next = NULL;
        if (p->waiting_model_tail) p->waiting_model_tail->next = j;
        else p->waiting_model = j;
        p->waiting_model_tail = j;
        p->n_waiting_model++;
    }
}

void cx__start_model(cx_pipeline *p, job *j)
{
    int slot = -1;
    for (int i = 0; i < p->workers; i++)
        if (!p->slot_busy[i]) {
            slot = i;
            break;
        }
    if (slot < 0) { /* callers check for a free slot; keep the job rather than lose it */
        j->next = p->waiting_model;
        p->waiting_model = j;
        if (!p->waiting_model_tail) p->waiting_model_tail = j;
        p->n_waiting_model++;
        return;
    }
    j->stage = STAGE_MODEL;
    j->slot = slot;
    j->session = p->sessions[slot];
    j->max_pixels = p->opt.settings->max_pixels;
    j->write_xmp = p->opt.settings->write_xmp;
    j->result.pooled = malloc(CE_POOLED_DIM * sizeof *j->result.pooled);
    if (!j->result.pooled) {
        cx_log(LOG_ERR, "out of memory for %s", j->path);
        cx__job_finish(j);
        return;
    }
    p->slot_busy[slot] = 1;
    p->model_busy++;
    p->stats.model_runs++;
    j->e->attempt++;
    j->next = p->running;
    p->running = j;
    cx__write_inflight(p, 1); /* durable before the engine opens the file */
    cx_log(LOG_DEBUG, "captioning %s", j->path);
    j->started_ms = cx_now_ms();
    int rc = uv_queue_work(p->opt.loop, &j->work, model_work, model_after);
    if (rc < 0) {
        cx_log(LOG_ERR, "queueing %s: %s", j->path, uv_strerror(rc));
        model_after(&j->work, rc);
        return;
    }
    uv_timer_start(&j->timer, on_time_limit, (uint64_t)p->opt.settings->time_limit_s * 1000, 0);
}

/* Worker thread: only j and its session are touched here. */
static void model_work(uv_work_t *w)
{
    job *j = w->data;
    ce_err err = {{0}};
    ce_image img;
    char exif_description[CE_MAX_EXIF_TEXT] = "";
    ce_load_options lo = {.max_pixels = j->max_pixels, .min_side = 0};
    j->rc = ce_image_load_file(j->path, &lo, &img, &err);
    if (j->rc == 0) {
        j->result.width = img.source_width;
        j->result.height = img.source_height;
        j->result.taken_time = img.taken_time;
        /* the decoder's verdict, by content: a WebP named .jpg counts as webp */
        if (img.format) {
            size_t k = 0;
            for (; img.format[k] && k + 1 < sizeof j->result.format; k++)
                j->result.format[k] =
                    (char)(img.format[k] >= 'A' && img.format[k] <= 'Z' ? img.format[k] + 32
                                                                        : img.format[k]);
            j->result.format[k] = '\0';
        }
        ce_cnn_output *cnn = calloc(1, sizeof *cnn);
        j->rc = cnn ? ce_cnn_run(j->session, &img, cnn, &err) : -ENOMEM;
        memcpy(exif_description, img.description, sizeof exif_description);
        ce_image_free(&img);
        if (j->rc == 0)
            j->rc = cx_image_describe(j->session, j->p->opt.model, cnn, &j->result, &err);
        free(cnn);
    }
    if (j->rc == 0) {
        /* what people wrote; an unreadable sidecar costs its text, not the image */
        cm_err merr = {""};
        cm_read(j->path, &j->result.text, &merr);
        /* XMP (sidecar, then embedded) first; the camera's EXIF text when XMP has none */
        if (!j->result.text.description[0] && exif_description[0])
            snprintf(j->result.text.description, sizeof j->result.text.description, "%s",
                     exif_description);
        if (j->write_xmp && j->result.caption[0]) write_sidecar(j);
    }
    if (j->rc < 0)
        snprintf(j->error, sizeof j->error, "%s", err.msg[0] ? err.msg : strerror(-j->rc));
}

static void model_after(uv_work_t *w, int status)
{
    job *j = w->data;
    cx_pipeline *p = j->p;
    uv_timer_stop(&j->timer);
    p->model_busy--;
    cx__schedule(p);
    if (j->abandoned) {
        /* its slot got a fresh session when it was abandoned; this one is ours to free */
        p->hung--;
        cx_log(LOG_NOTICE, "%s: the worker came back after %.0f s; result dropped", j->path,
               (double)(cx_now_ms() - j->started_ms) / 1000.0);
        if (j->kept_slot_session) p->slot_busy[j->slot] = 0;
        else ce_session_free(j->session); /* the slot got a fresh one */
        cx__job_finish(j);
        return;
    }
    p->slot_busy[j->slot] = 0;
    for (job **link = &p->running; *link; link = &(*link)->next)
        if (*link == j) {
            *link = j->next;
            break;
        }
    if (status < 0) {
        j->rc = status;
        snprintf(j->error, sizeof j->error, "%s", uv_strerror(status));
    }
    j->e->attempt = 0;
    if (!p->stopped || status == 0) cx__write_result(p, j);
    cx__write_inflight(p, 0);
    cx__job_finish(j);
}

/* The engine cannot be interrupted: the file is recorded failed now, its worker's slot
 * gets a fresh session, and the worker's eventual result is dropped. */
static void on_time_limit(uv_timer_t *t)
{
    job *j = t->data;
    cx_pipeline *p = j->p;
    char msg[128];
    snprintf(msg, sizeof msg, "took longer than the %d s time limit",
             p->opt.settings->time_limit_s);
    cx_log(LOG_WARNING, "%s: %s; recorded failed", j->path, msg);
    j->abandoned = 1;
    p->hung++;
    for (job **link = &p->running; *link; link = &(*link)->next)
        if (*link == j) {
            *link = j->next;
            break;
        }
    ce_session *fresh = NULL;
    ce_err err = {{0}};
    if (ce_session_new(p->opt.model, &fresh, &err) == 0) {
        p->sessions[j->slot] = fresh;
        p->slot_busy[j->slot] = 0;
    } else {
        /* no replacement: the slot stays busy until the worker returns */
        cx_log(LOG_ERR, "new engine session: %s", err.msg);
        j->kept_slot_session = 1;
    }
    j->e->attempt = 0;
    cx__write_failure(p, j->path, &j->st, j->fingerprint, msg, "time limit");
    cx__write_inflight(p, 1);
    /* its entry is done: later events for the file queue a new job */
    cx__entry_remove(p, j->e);
    j->e = NULL;
    cx__schedule(p);
}

void cx__job_finish(job *j)
{
    cx_pipeline *p = j->p;
    entry *e = j->e;
    if (e) {
        if (e->dirty && !p->stopped) {
            e->dirty = 0;
            e->state = E_URGENT;
            cx__fifo_push(&p->urgent, e->path);
            p->n_urgent++;
            cx__schedule(p);
        } else {
            cx__entry_remove(p, e);
        }
    }
    uv_close((uv_handle_t *)&j->timer, job_closed);
}

static void job_closed(uv_handle_t *h)
{
    job *j = h->data;
    free(j->result.concepts);
    free(j->result.pooled);
    free(j->path);
    free(j);
}

/* ------------------------------------------------------------------ small helpers */

int cx__same_file_state(const capdb_file_state *row, const struct stat *st)
{
    return row->device == (uint64_t)st->st_dev && row->inode == (uint64_t)st->st_ino &&
           row->size == (int64_t)st->st_size && row->mtime_ns == cx__mtime_ns(st);
}

int64_t cx__mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* Worker thread: the caption into the image's XMP sidecar (capmeta.h's trust rule). The
 * sidecar's new mtime goes into the row, so the write is not taken for a person's edit. */
static void write_sidecar(job *j)
{
    const char *tags[CE_MAX_TAGS];
    char words[sizeof j->result.tags];
    snprintf(words, sizeof words, "%s", j->result.tags);
    int n = 0;
    for (char *save = NULL, *t = strtok_r(words, " ", &save); t && n < CE_MAX_TAGS;
         t = strtok_r(NULL, " ", &save))
        tags[n++] = t;
    cm_caption c = {
        .caption = j->result.caption,
        .tags = tags,
        .n_tags = n,
        .model_version = ce_model_version(j->p->opt.model),
        .confidence = j->result.confidence,
    };
    cm_err err = {""};
    if (cm_write_sidecar(j->path, &c, NULL, 0, &err) == 0) {
        j->wrote_sidecar = 1;
        j->result.text.sidecar_mtime_ns = cx_sidecar_mtime(j->path);
    } else {
        snprintf(j->sidecar_error, sizeof j->sidecar_error, "%s", err.msg);
    }
}
