/*
 * The scan-and-caption pipeline (shared by capsearchd and `capsearch index`): its life,
 * its public operations and the pump that moves work along. Each stage lives in its own
 * file (pipeline.h lists them).
 *
 *   submit / walk ─► two FIFO queues (urgent: events; backlog: the walk), deduplicated
 *        │             by path; the walk pauses while the backlog holds queue_max files
 *        ▼ dispatch (loop thread): lstat + row lookup; unchanged → done
 *   hash job (worker): XXH64 of the file
 *        ▼ (loop) same content as the row → done; same content as a row whose file is
 *          gone → the row moves here, no model
 *   model job (worker, its own ce_session): decode → CNN → captioner, under a time limit
 *        ▼ (loop) batched writer: one transaction per batch_size writes or batch_ms
 *
 * Crash safety: every change is a single-statement SQLite write inside a transaction, so
 * a kill at any moment loses at most the open batch, which the next scan redoes (rows are
 * keyed by path: no duplicates). Before the engine sees a file its path is committed to the
 * meta key opt.inflight_key with an attempt count; a restart finding a path there requeues
 * it once, and records it failed the second time (it crashed the process twice).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"

static int work_pending(const cx_pipeline *p);
static void on_idle(uv_idle_t *h);
static void pump(cx_pipeline *p);
static void on_handle_closed(uv_handle_t *h);

/* ------------------------------------------------------------------ lifetime */

int cx_pipeline_new(const cx_pipeline_options *opt, cx_pipeline **out, cx_err *err)
{
    *out = NULL;
    cx_pipeline *p = calloc(1, sizeof *p);
    if (!p) return cx_fail(err, -ENOMEM, "out of memory");
    p->opt = *opt;
    if (cm_init() < 0) { /* before the workers: Exempi's one-time set-up */
        free(p);
        return cx_fail(err, -EIO, "the XMP library (Exempi) failed to initialise");
    }
    p->workers = opt->settings->workers > 0 ? opt->settings->workers : 1;
    p->table_size = 1024;
    p->table = calloc(p->table_size, sizeof *p->table);
    p->sessions = calloc((size_t)p->workers, sizeof *p->sessions);
    p->slot_busy = calloc((size_t)p->workers, sizeof *p->slot_busy);
    if (!p->table || !p->sessions || !p->slot_busy) {
        cx_pipeline_free(p);
        return cx_fail(err, -ENOMEM, "out of memory");
    }
    for (int i = 0; i < p->workers; i++) {
        ce_err cerr = {{0}};
        int rc = ce_session_new(opt->model, &p->sessions[i], &cerr);
        if (rc < 0) {
            cx_pipeline_free(p);
            return cx_fail(err, rc, "engine session: %s", cerr.msg);
        }
    }
    uv_idle_init(opt->loop, &p->idle);
    p->idle.data = p;
    p->handles_open = 1 + cx__writer_init(p);
    int rc = cx__cluster_start(p, err);
    if (rc < 0) {
        cx_pipeline_free(p);
        return rc;
    }
    cx__recover_inflight(p);
    *out = p;
    return 0;
}

void cx_pipeline_free(cx_pipeline *p)
{
    if (!p) return;
    cx_pipeline_stop(p); /* empties the queues, the walk, waiting jobs */
    cx__writer_flush(p);
    if (p->handles_open) {
        uv_close((uv_handle_t *)&p->idle, on_handle_closed);
        cx__writer_close(p, on_handle_closed);
        cx__cluster_stop(p, on_handle_closed);
        while (p->handles_open > 0) uv_run(p->opt.loop, UV_RUN_ONCE);
    }
    /* a hung worker still points at p: leave p to the process exit */
    if (p->hung > 0) return;
    cm_terminate(); /* paired with cx_pipeline_new's cm_init */
    for (size_t i = 0; p->table && i < p->table_size; i++)
        while (p->table[i]) cx__entry_remove(p, p->table[i]);
    for (int i = 0; p->sessions && i < p->workers; i++) ce_session_free(p->sessions[i]);
    free(p->walk_path);
    cx__vanished_clear(p);
    free(p->table);
    free(p->sessions);
    free(p->slot_busy);
    free(p);
}

void cx_pipeline_stop(cx_pipeline *p)
{
    p->stopped = 1;
    cx__fifo_clear(&p->urgent);
    cx__fifo_clear(&p->backlog);
    p->n_urgent = p->n_backlog = 0;
    for (size_t i = 0; i < p->table_size; i++) {
        entry **link = &p->table[i];
        while (*link) {
            entry *e = *link;
            if (e->state != E_RUNNING) cx__entry_remove(p, e);
            else link = &e->next;
        }
    }
    cx__walk_clear(p);
    while (p->waiting_model) {
        job *j = p->waiting_model;
        p->waiting_model = j->next;
        p->n_waiting_model--;
        j->stage = -1;
        cx__job_finish(j);
    }
    p->waiting_model_tail = NULL;
}

static void on_handle_closed(uv_handle_t *h)
{
    cx_pipeline *p = h->data;
    p->handles_open--;
}

/* ------------------------------------------------------------------ public operations */

void cx_pipeline_submit(cx_pipeline *p, const char *path, int urgent)
{
    if (p->stopped) return;
    entry *e = cx__entry_find(p, path);
    if (!e) {
        e = cx__entry_add(p, path, urgent ? E_URGENT : E_BACKLOG);
        if (!e) {
            cx_log(LOG_ERR, "out of memory queueing %s", path);
            return;
        }
        cx__fifo_push(urgent ? &p->urgent : &p->backlog, path);
        if (urgent) p->n_urgent++;
        else p->n_backlog++;
    } else if (e->state == E_RUNNING) {
        e->dirty = 1;
    } else if (e->state == E_BACKLOG && urgent) {
        /* jump the queue; the backlog item goes stale and is skipped when popped */
        e->state = E_URGENT;
        p->n_backlog--;
        p->n_urgent++;
        cx__fifo_push(&p->urgent, path);
    }
    cx__schedule(p);
}

void cx_pipeline_recheck(cx_pipeline *p, const char *path)
{
    cx_pipeline_submit(p, path, 1);
    entry *e = cx__entry_find(p, path);
    if (e) e->force = 1;
}

void cx_pipeline_text_changed(cx_pipeline *p, const char *image_path)
{
    cx_pipeline_submit(p, image_path, 1);
    entry *e = cx__entry_find(p, image_path);
    if (e) e->text = 1;
}

void cx_pipeline_removed(cx_pipeline *p, const char *path) { cx__write_delete(p, path); }

void cx_pipeline_moved(cx_pipeline *p, const char *from, const char *to, int is_dir)
{
    /* a rename over an existing file replaces it */
    cx__write_move(p, from, to, !is_dir, 0);
    /* whatever the rows said, look at what is there now: unchanged files cost a stat */
    if (is_dir) cx_pipeline_scan(p, to, CX_SCAN_URGENT);
    else cx_pipeline_submit(p, to, 1);
}

void cx_pipeline_scan(cx_pipeline *p, const char *dir, int flags)
{
    int vanished = flags & CX_SCAN_VANISHED;
    if (p->stopped) return;
    walk_dir *d = malloc(sizeof *d);
    char *copy = strdup(dir);
    if (!d || !copy) {
        free(d);
        free(copy);
        cx_log(LOG_ERR, "out of memory scanning %s", dir);
        return;
    }
    d->path = copy;
    d->urgent = (flags & CX_SCAN_URGENT) != 0;
    d->next = p->walk_stack;
    p->walk_stack = d;
    p->stats.scanning = 1;
    /* A scan is work even when it finds nothing to do (an empty folder, only symlinks):
     * on_idle must still follow it, or `capsearch index` would wait for it forever. */
    p->was_busy = 1;
    if (vanished) {
        for (prefix *v = p->vanished; v; v = v->next)
            if (!strcmp(v->path, dir)) vanished = 0;
        prefix *v = vanished ? malloc(sizeof *v) : NULL;
        if (v && (v->path = strdup(dir))) {
            v->next = p->vanished;
            p->vanished = v;
        } else {
            free(v);
        }
    }
    cx__schedule(p);
}

int cx_pipeline_flush(cx_pipeline *p) { return cx__writer_flush(p); }

int cx_pipeline_meta_set(cx_pipeline *p, const char *key, const char *value)
{
    return cx__write_meta(p, key, value);
}

void cx_pipeline_stats(const cx_pipeline *p, cx_stats *out)
{
    *out = p->stats;
    out->queued = p->n_urgent + p->n_backlog + p->n_waiting_model;
    out->in_flight = p->hash_busy + p->model_busy;
    out->scanning = p->walk_stack != NULL || p->walk_dir_handle != NULL;
}

int cx_pipeline_busy(const cx_pipeline *p)
{
    /* changes waiting for another writer's lock are work too: idle only once they are in */
    return work_pending(p) || (!p->stopped && p->vanished) || cx__writer_waiting(p);
}

/* Files waiting or running, or a walk in progress (the vanished pass waits for this). */
static int work_pending(const cx_pipeline *p)
{
    if (p->stopped) return p->hash_busy + p->model_busy - p->hung > 0;
    return p->n_urgent + p->n_backlog + p->n_waiting_model + p->hash_busy + p->model_busy -
                   p->hung >
               0 ||
           p->walk_stack || p->walk_dir_handle;
}

int cx_pipeline_hung(const cx_pipeline *p) { return p->hung; }

/* ------------------------------------------------------------------ the pump */

void cx__schedule(cx_pipeline *p)
{
    if (!uv_is_active((uv_handle_t *)&p->idle) && !uv_is_closing((uv_handle_t *)&p->idle))
        uv_idle_start(&p->idle, on_idle);
}

static void on_idle(uv_idle_t *h) { pump(h->data); }

/* Does a bounded amount of queued work, then keeps the idle handle running only while
 * more can be done now: a loop waiting for workers must sleep, not spin. */
static void pump(cx_pipeline *p)
{
    if (p->opt.stop_on_write_error && p->stats.write_errors > 0 && !p->stopped) {
        cx_pipeline_stop(p);
        p->was_busy = 1; /* on_idle must come even if nothing had started yet */
    }
    if (!p->stopped) {
        /* hashed jobs waiting for a model slot go first: their file is known new */
        while (p->waiting_model && p->model_busy - p->hung < p->workers) {
            job *j = p->waiting_model;
            p->waiting_model = j->next;
            if (!p->waiting_model) p->waiting_model_tail = NULL;
            p->n_waiting_model--;
            cx__start_model(p, j);
        }
        int max_hash = p->workers + 1;
        for (int n = 0; n < DISPATCH_BUDGET; n++) {
            if (p->hash_busy >= max_hash || p->n_waiting_model >= 2 * p->workers) break;
            if (cx__writer_backlog(p) >= WRITE_QUEUE_MAX) break; /* locked: hold back */
            fifo *q = p->n_urgent > 0 ? &p->urgent : &p->backlog;
            int want = q == &p->urgent ? E_URGENT : E_BACKLOG;
            char *path = cx__fifo_pop(q);
            if (!path) break;
            entry *e = cx__entry_find(p, path);
            free(path);
            if (!e || e->state != want) continue; /* stale: promoted or finished */
            if (want == E_URGENT) p->n_urgent--;
            else p->n_backlog--;
            e->state = E_RUNNING;
            cx__dispatch(p, e);
        }
        if (p->n_backlog < p->opt.settings->queue_max) cx__walk_step(p, WALK_BUDGET);
    }
    if (!work_pending(p) && p->vanished && !p->stopped) cx__run_vanished(p);
    int busy = cx_pipeline_busy(p);
    if (!busy) {
        cx__writer_flush(p);
        uv_idle_stop(&p->idle);
        if (cx__writer_waiting(p)) return; /* the commit met a lock: the retry timer is back */
        if (p->was_busy && p->opt.on_idle) {
            p->was_busy = 0;
            p->opt.on_idle(p->opt.ctx);
        }
        return;
    }
    p->was_busy = 1;
    int can_walk =
        (p->walk_stack || p->walk_dir_handle) && p->n_backlog < p->opt.settings->queue_max;
    int can_dispatch = (p->n_urgent + p->n_backlog > 0) && p->hash_busy < p->workers + 1 &&
                       p->n_waiting_model < 2 * p->workers;
    int can_model = p->waiting_model && p->model_busy - p->hung < p->workers;
    /* completions call cx__schedule() again when a worker frees up */
    if (!can_walk && !can_dispatch && !can_model) uv_idle_stop(&p->idle);
}
