/*
 * The scan-and-caption pipeline (shared by capsearchd and `capsearch index`).
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
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "indexer.h"

#define MAX_INFLIGHT_META 65536
#define WALK_BUDGET 512          /* directory entries per loop iteration */
#define DISPATCH_BUDGET 256      /* queue decisions per loop iteration */
#define COMMIT_RETRIES 6         /* x the database's 5 s busy timeout */

/* ------------------------------------------------------------------ types */

typedef struct qitem {
    char *path;
    struct qitem *next;
} qitem;

typedef struct {
    qitem *head, *tail;
} fifo;

enum { E_BACKLOG, E_URGENT, E_RUNNING };

/* One per path waiting or running: the queues' deduplication. */
typedef struct entry {
    char *path;
    int state;                   /* E_* */
    int dirty;                   /* changed again while running: run once more */
    int attempt;                 /* model starts that never completed (crash marker) */
    int force;                   /* hash it even when size and mtime are unchanged */
    struct entry *next;          /* hash chain */
} entry;

enum { STAGE_HASH, STAGE_MODEL };

typedef struct job {
    cx_pipeline *p;
    entry *e;                    /* NULL once abandoned */
    char *path;                  /* the job's own copy: workers read it */
    uv_work_t work;
    uv_timer_t timer;
    int stage;
    int slot;                    /* model slot, -1 none */
    ce_session *session;
    int abandoned;               /* passed its time limit; the worker result is dropped */
    int kept_slot_session;       /* abandoned without a replacement session: the slot's
                                    own session stays with it until the worker returns */
    uint64_t started_ms;
    struct job *next;            /* waiting_model list / in-flight list */

    /* the file as dispatched */
    struct stat st;
    capdb_file_state old;        /* its row, id 0 = none */

    /* worker outputs */
    int rc;
    char error[CE_ERR_MAX];
    uint64_t fingerprint;
    int64_t max_pixels;
    int width, height;
    int64_t taken_time;
    char caption[CE_MAX_CAPTION];
    char tags[1024];
    float *concepts;
    int n_concepts;
    float *pooled;               /* CE_POOLED_DIM */
} job;

typedef struct walk_dir {
    char *path;
    int urgent;                  /* files found go to the urgent queue (new folders) */
    struct walk_dir *next;
} walk_dir;

typedef struct prefix {
    char *path;
    struct prefix *next;
} prefix;

struct cx_pipeline {
    cx_pipeline_options opt;
    int workers;

    fifo urgent, backlog;
    int64_t n_urgent, n_backlog;      /* live entries in each queue */
    entry **table;
    size_t table_size, n_entries;

    ce_session **sessions;            /* one per model slot */
    int *slot_busy;
    int hash_busy, model_busy, hung;
    job *waiting_model, *waiting_model_tail;
    int n_waiting_model;
    job *running;                     /* model jobs, for the in-flight marker */

    walk_dir *walk_stack;
    DIR *walk_dir_handle;
    char *walk_path;
    int walk_urgent;
    prefix *vanished;

    uv_idle_t idle;
    uv_timer_t batch_timer;
    int handles_open;
    int in_tx, tx_ops;
    int was_busy, stopped;

    cx_stats stats;
};

static void schedule(cx_pipeline *p);
static int  work_pending(const cx_pipeline *p);
static void on_idle(uv_idle_t *h);
static void pump(cx_pipeline *p);
static int  walk_step(cx_pipeline *p, int budget);
static void dispatch_path(cx_pipeline *p, entry *e);
static void start_hash(cx_pipeline *p, job *j);
static void hash_work(uv_work_t *w);
static void hash_after(uv_work_t *w, int status);
static void start_model(cx_pipeline *p, job *j);
static void model_work(uv_work_t *w);
static void model_after(uv_work_t *w, int status);
static void on_time_limit(uv_timer_t *t);
static void write_result(cx_pipeline *p, job *j);
static void record_failure(cx_pipeline *p, const char *path, const struct stat *st,
                           uint64_t fingerprint, const char *error);
static void job_finish(job *j);
static void run_vanished(cx_pipeline *p);
static void recover_inflight(cx_pipeline *p);
static void write_inflight(cx_pipeline *p, int commit_now);
static int  batch_begin(cx_pipeline *p);
static void write_failed(cx_pipeline *p);
static void batch_op_done(cx_pipeline *p);
static void on_batch_timer(uv_timer_t *t);
static entry *entry_find(cx_pipeline *p, const char *path);
static entry *entry_add(cx_pipeline *p, const char *path, int state);
static void entry_remove(cx_pipeline *p, entry *e);
static void fifo_push(fifo *q, const char *path);
static char *fifo_pop(fifo *q);
static void fifo_clear(fifo *q);
static int same_file_state(const capdb_file_state *row, const struct stat *st);
static int64_t mtime_ns(const struct stat *st);
static uint64_t now_ms(void);
static char *join_path(const char *dir, const char *name);

/* ------------------------------------------------------------------ lifetime */

int cx_pipeline_new(const cx_pipeline_options *opt, cx_pipeline **out, char *err, size_t err_size)
{
    *out = NULL;
    cx_pipeline *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, err_size, "out of memory");
        return -ENOMEM;
    }
    p->opt = *opt;
    p->workers = opt->cfg->workers > 0 ? opt->cfg->workers : 1;
    /* hashing + model jobs + a few abandoned ones must never wait for a pool thread,
     * or the time limit would count time spent queued; read at the pool's first use */
    char pool[16];
    snprintf(pool, sizeof pool, "%d", 2 * p->workers + 5);
    setenv("UV_THREADPOOL_SIZE", pool, 0);
    p->table_size = 1024;
    p->table = calloc(p->table_size, sizeof *p->table);
    p->sessions = calloc((size_t)p->workers, sizeof *p->sessions);
    p->slot_busy = calloc((size_t)p->workers, sizeof *p->slot_busy);
    if (!p->table || !p->sessions || !p->slot_busy) {
        snprintf(err, err_size, "out of memory");
        cx_pipeline_free(p);
        return -ENOMEM;
    }
    for (int i = 0; i < p->workers; i++) {
        ce_err cerr = {{0}};
        int rc = ce_session_new(opt->model, &p->sessions[i], &cerr);
        if (rc < 0) {
            snprintf(err, err_size, "engine session: %s", cerr.msg);
            cx_pipeline_free(p);
            return rc;
        }
    }
    uv_idle_init(opt->loop, &p->idle);
    uv_timer_init(opt->loop, &p->batch_timer);
    p->idle.data = p->batch_timer.data = p;
    p->handles_open = 2;
    recover_inflight(p);
    *out = p;
    return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
    cx_pipeline *p = h->data;
    p->handles_open--;
}

void cx_pipeline_free(cx_pipeline *p)
{
    if (!p) return;
    cx_pipeline_stop(p);
    cx_pipeline_flush(p);
    if (p->handles_open) {
        uv_close((uv_handle_t *)&p->idle, on_handle_closed);
        uv_close((uv_handle_t *)&p->batch_timer, on_handle_closed);
        while (p->handles_open > 0) uv_run(p->opt.loop, UV_RUN_ONCE);
    }
    /* a hung worker still points at p: leave p to the process exit */
    if (p->hung > 0) return;
    fifo_clear(&p->urgent);
    fifo_clear(&p->backlog);
    for (size_t i = 0; p->table && i < p->table_size; i++)
        while (p->table[i]) entry_remove(p, p->table[i]);
    for (int i = 0; p->sessions && i < p->workers; i++) ce_session_free(p->sessions[i]);
    while (p->walk_stack) {
        walk_dir *d = p->walk_stack;
        p->walk_stack = d->next;
        free(d->path);
        free(d);
    }
    if (p->walk_dir_handle) closedir(p->walk_dir_handle);
    free(p->walk_path);
    while (p->vanished) {
        prefix *v = p->vanished;
        p->vanished = v->next;
        free(v->path);
        free(v);
    }
    while (p->waiting_model) {
        job *j = p->waiting_model;
        p->waiting_model = j->next;
        free(j->pooled);
        free(j->path);
        free(j);
    }
    free(p->table);
    free(p->sessions);
    free(p->slot_busy);
    free(p);
}

void cx_pipeline_stop(cx_pipeline *p)
{
    p->stopped = 1;
    fifo_clear(&p->urgent);
    fifo_clear(&p->backlog);
    p->n_urgent = p->n_backlog = 0;
    for (size_t i = 0; i < p->table_size; i++) {
        entry **link = &p->table[i];
        while (*link) {
            entry *e = *link;
            if (e->state != E_RUNNING) entry_remove(p, e);
            else link = &e->next;
        }
    }
    while (p->walk_stack) {
        walk_dir *d = p->walk_stack;
        p->walk_stack = d->next;
        free(d->path);
        free(d);
    }
    if (p->walk_dir_handle) closedir(p->walk_dir_handle);
    p->walk_dir_handle = NULL;
    while (p->waiting_model) {
        job *j = p->waiting_model;
        p->waiting_model = j->next;
        p->n_waiting_model--;
        j->stage = -1;
        job_finish(j);
    }
    p->waiting_model_tail = NULL;
}

/* ------------------------------------------------------------------ public operations */

void cx_pipeline_submit(cx_pipeline *p, const char *path, int urgent)
{
    if (p->stopped) return;
    entry *e = entry_find(p, path);
    if (!e) {
        e = entry_add(p, path, urgent ? E_URGENT : E_BACKLOG);
        if (!e) {
            cx_log(LOG_ERR, "out of memory queueing %s", path);
            return;
        }
        fifo_push(urgent ? &p->urgent : &p->backlog, path);
        if (urgent) p->n_urgent++;
        else p->n_backlog++;
    } else if (e->state == E_RUNNING) {
        e->dirty = 1;
    } else if (e->state == E_BACKLOG && urgent) {
        /* jump the queue; the backlog item goes stale and is skipped when popped */
        e->state = E_URGENT;
        p->n_backlog--;
        p->n_urgent++;
        fifo_push(&p->urgent, path);
    }
    schedule(p);
}

void cx_pipeline_recheck(cx_pipeline *p, const char *path)
{
    cx_pipeline_submit(p, path, 1);
    entry *e = entry_find(p, path);
    if (e) e->force = 1;
}

void cx_pipeline_removed(cx_pipeline *p, const char *path)
{
    capdb_err err = {{0}, 0};
    int64_t n = 0;
    if (batch_begin(p) < 0) return;
    int rc = capdb_delete_path(p->opt.db, path, &n, &err);
    if (rc < 0) {
        cx_log(LOG_ERR, "removing %s from the index: %s", path, err.msg);
    } else if (n > 0) {
        p->stats.removed += n;
        cx_log(LOG_INFO, "removed %s (%lld row%s)", path, (long long)n, n == 1 ? "" : "s");
    }
    batch_op_done(p);
}

void cx_pipeline_moved(cx_pipeline *p, const char *from, const char *to, int is_dir)
{
    capdb_err err = {{0}, 0};
    int64_t n = 0, replaced = 0;
    if (batch_begin(p) < 0) return;
    /* a rename over an existing file replaces it */
    if (!is_dir) capdb_delete_path(p->opt.db, to, &replaced, &err);
    int rc = capdb_move_path(p->opt.db, from, to, &n, &err);
    if (rc < 0) {
        cx_log(LOG_ERR, "moving %s to %s in the index: %s", from, to, err.msg);
    } else if (n > 0) {
        p->stats.moved += n;
        cx_log(LOG_INFO, "moved %s -> %s (%lld row%s kept)", from, to, (long long)n,
               n == 1 ? "" : "s");
    }
    batch_op_done(p);
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
    schedule(p);
}

int cx_pipeline_flush(cx_pipeline *p)
{
    capdb_err err = {{0}, 0};
    if (!p->in_tx) return 0;
    uv_timer_stop(&p->batch_timer);
    int rc = 0;
    for (int attempt = 0; attempt < COMMIT_RETRIES; attempt++) {
        rc = capdb_commit(p->opt.db, &err);
        if (rc != -EBUSY) break;
        usleep(50 * 1000);
    }
    if (rc < 0) {
        cx_log(LOG_ERR, "committing %d index changes: %s (they are redone by the next scan)",
               p->tx_ops, err.msg);
        capdb_rollback(p->opt.db);
    }
    p->in_tx = 0;
    p->tx_ops = 0;
    if (rc < 0) write_failed(p);
    return rc;
}

int cx_pipeline_meta_set(cx_pipeline *p, const char *key, const char *value)
{
    capdb_err err = {{0}, 0};
    int rc = batch_begin(p);
    if (rc < 0) return rc;
    rc = capdb_meta_set(p->opt.db, key, value, &err);
    if (rc < 0) cx_log(LOG_WARNING, "meta %s: %s", key, err.msg);
    batch_op_done(p);
    return rc;
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
    return work_pending(p) || (!p->stopped && p->vanished);
}

/* Files waiting or running, or a walk in progress (the vanished pass waits for this). */
static int work_pending(const cx_pipeline *p)
{
    if (p->stopped) return p->hash_busy + p->model_busy - p->hung > 0;
    return p->n_urgent + p->n_backlog + p->n_waiting_model + p->hash_busy + p->model_busy -
           p->hung > 0 || p->walk_stack || p->walk_dir_handle;
}

int cx_pipeline_hung(const cx_pipeline *p)
{
    return p->hung;
}

/* ------------------------------------------------------------------ the pump */

static void schedule(cx_pipeline *p)
{
    if (!uv_is_active((uv_handle_t *)&p->idle) && !uv_is_closing((uv_handle_t *)&p->idle))
        uv_idle_start(&p->idle, on_idle);
}

static void on_idle(uv_idle_t *h)
{
    pump(h->data);
}

/* Does a bounded amount of queued work, then keeps the idle handle running only while
 * more can be done now: a loop waiting for workers must sleep, not spin. */
static void pump(cx_pipeline *p)
{
    if (p->opt.stop_on_write_error && p->stats.write_errors > 0 && !p->stopped) {
        cx_pipeline_stop(p);
        p->was_busy = 1;        /* on_idle must come even if nothing had started yet */
    }
    if (!p->stopped) {
        /* hashed jobs waiting for a model slot go first: their file is known new */
        while (p->waiting_model && p->model_busy - p->hung < p->workers) {
            job *j = p->waiting_model;
            p->waiting_model = j->next;
            if (!p->waiting_model) p->waiting_model_tail = NULL;
            p->n_waiting_model--;
            start_model(p, j);
        }
        int max_hash = p->workers + 1;
        for (int n = 0; n < DISPATCH_BUDGET; n++) {
            if (p->hash_busy >= max_hash || p->n_waiting_model >= 2 * p->workers) break;
            fifo *q = p->n_urgent > 0 ? &p->urgent : &p->backlog;
            int want = q == &p->urgent ? E_URGENT : E_BACKLOG;
            char *path = fifo_pop(q);
            if (!path) break;
            entry *e = entry_find(p, path);
            free(path);
            if (!e || e->state != want) continue;    /* stale: promoted or finished */
            if (want == E_URGENT) p->n_urgent--;
            else p->n_backlog--;
            e->state = E_RUNNING;
            dispatch_path(p, e);
        }
        if (p->n_backlog < p->opt.cfg->queue_max) walk_step(p, WALK_BUDGET);
    }
    if (!work_pending(p) && p->vanished && !p->stopped) run_vanished(p);
    int busy = cx_pipeline_busy(p);
    if (!busy) {
        cx_pipeline_flush(p);
        uv_idle_stop(&p->idle);
        if (p->was_busy && p->opt.on_idle) {
            p->was_busy = 0;
            p->opt.on_idle(p->opt.ctx);
        }
        return;
    }
    p->was_busy = 1;
    int can_walk = (p->walk_stack || p->walk_dir_handle) && p->n_backlog < p->opt.cfg->queue_max;
    int can_dispatch = (p->n_urgent + p->n_backlog > 0) && p->hash_busy < p->workers + 1 &&
                       p->n_waiting_model < 2 * p->workers;
    int can_model = p->waiting_model && p->model_busy - p->hung < p->workers;
    /* completions call schedule() again when a worker frees up */
    if (!can_walk && !can_dispatch && !can_model) uv_idle_stop(&p->idle);
}

/* Reads up to budget directory entries; returns how many it handled. */
static int walk_step(cx_pipeline *p, int budget)
{
    int done = 0;
    const cx_config *cfg = p->opt.cfg;
    while (done < budget && p->n_backlog < cfg->queue_max) {
        if (!p->walk_dir_handle) {
            walk_dir *d = p->walk_stack;
            if (!d) break;
            p->walk_stack = d->next;
            char *path = d->path;
            int urgent = d->urgent;
            free(d);
            if (p->opt.on_dir && p->opt.on_dir(p->opt.ctx, path) != 0) {
                free(path);
                continue;
            }
            DIR *dh = opendir(path);
            if (!dh) {
                int e = errno;
                cx_log(e == ENOENT ? LOG_INFO : LOG_WARNING, "cannot read folder %s: %s%s",
                       path, strerror(e), e == EACCES ? " (its files are not indexed)" : "");
                free(path);
                continue;
            }
            p->walk_dir_handle = dh;
            free(p->walk_path);
            p->walk_path = path;
            p->walk_urgent = urgent;
        }
        errno = 0;
        struct dirent *de = readdir(p->walk_dir_handle);
        if (!de) {
            if (errno) cx_log(LOG_WARNING, "reading folder %s: %s", p->walk_path, strerror(errno));
            closedir(p->walk_dir_handle);
            p->walk_dir_handle = NULL;
            continue;
        }
        done++;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char *child = join_path(p->walk_path, de->d_name);
        if (!child) continue;
        unsigned char type = de->d_type;
        if (type == DT_UNKNOWN) {
            struct stat st;
            if (lstat(child, &st) == 0)
                type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_LNK;
        }
        if (type == DT_DIR && cx_config_wants_dir(cfg, de->d_name, child)) {
            walk_dir *d = malloc(sizeof *d);
            if (d) {
                d->path = child;
                d->urgent = p->walk_urgent;
                d->next = p->walk_stack;
                p->walk_stack = d;
                child = NULL;
            }
        } else if (type == DT_REG && cx_config_wants_file(cfg, de->d_name, child)) {
            p->stats.seen++;
            if (p->opt.on_file) p->opt.on_file(p->opt.ctx, child, p->walk_urgent);
            else cx_pipeline_submit(p, child, p->walk_urgent);
        }
        /* symlinks are not followed: a link loop cannot trap the walk */
        free(child);
    }
    if (!p->walk_stack && !p->walk_dir_handle) p->stats.scanning = 0;
    return done;
}

/* ------------------------------------------------------------------ dispatch */

static void dispatch_path(cx_pipeline *p, entry *e)
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
        entry_remove(p, e);
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        entry_remove(p, e);
        return;
    }
    const char *version = ce_model_version(p->opt.model);
    int same = old.id && same_file_state(&old, &st);
    int current = old.status == CAPDB_STATUS_FAILED || !strcmp(old.model_version, version);
    int force = e->force;
    e->force = 0;
    if (same && current && e->attempt == 0 && !force) {
        p->stats.unchanged++;
        entry_remove(p, e);
        return;
    }
    job *j = calloc(1, sizeof *j);
    if (!j) {
        cx_log(LOG_ERR, "out of memory for %s", e->path);
        entry_remove(p, e);
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
        job_finish(j);
        return;
    }
    if (same && old.fingerprint && (!current || e->attempt > 0)) {
        /* same bytes, an older model (or a crash retry): caption again, no hashing */
        j->fingerprint = old.fingerprint;
        start_model(p, j);
    } else {
        start_hash(p, j);
    }
}

static void start_hash(cx_pipeline *p, job *j)
{
    j->stage = STAGE_HASH;
    p->hash_busy++;
    int rc = uv_queue_work(p->opt.loop, &j->work, hash_work, hash_after);
    if (rc < 0) {
        p->hash_busy--;
        cx_log(LOG_ERR, "queueing %s: %s", j->path, uv_strerror(rc));
        job_finish(j);
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
    schedule(p);
    if (status < 0 || p->stopped) {
        job_finish(j);
        return;
    }
    const char *path = j->path;
    if (j->rc < 0) {
        if (j->rc == -ENOENT) {
            if (j->old.id) cx_pipeline_removed(p, path);
        } else {
            char msg[300];
            snprintf(msg, sizeof msg, "cannot read: %s", strerror(-j->rc));
            record_failure(p, path, &j->st, 0, msg);
        }
        job_finish(j);
        return;
    }
    const char *version = ce_model_version(p->opt.model);
    if (j->old.id && j->old.fingerprint == j->fingerprint && j->e->attempt == 0 &&
        (j->old.status == CAPDB_STATUS_FAILED || !strcmp(j->old.model_version, version))) {
        /* touched, same bytes: keep the caption, refresh the stat fields (date filters
         * read mtime; the next start's quick "unchanged" test compares them) */
        if (!same_file_state(&j->old, &j->st) && batch_begin(p) == 0) {
            capdb_err err = {{0}, 0};
            if (capdb_update_stat(p->opt.db, j->old.id, (uint64_t)j->st.st_dev,
                                  (uint64_t)j->st.st_ino, (int64_t)j->st.st_size,
                                  mtime_ns(&j->st), &err) < 0)
                cx_log(LOG_ERR, "refreshing %s in the index: %s", path, err.msg);
            batch_op_done(p);
        }
        p->stats.unchanged++;
        job_finish(j);
        return;
    }
    char other[PATH_MAX];
    capdb_err err = {{0}, 0};
    int found = capdb_find_by_fingerprint(p->opt.db, j->fingerprint, (int64_t)j->st.st_size,
                                          other, sizeof other, &err);
    if (found < 0) cx_log(LOG_WARNING, "fingerprint lookup for %s: %s", path, err.msg);
    struct stat ost;
    if (found == 1 && strcmp(other, path) && lstat(other, &ost) != 0 && errno == ENOENT) {
        /* the same bytes left another path that is now gone: a move nobody paired */
        batch_begin(p);
        int64_t n = 0, dropped = 0;
        if (j->old.id) capdb_delete_path(p->opt.db, path, &dropped, &err);
        if (capdb_move_path(p->opt.db, other, path, &n, &err) < 0) {
            cx_log(LOG_ERR, "moving %s to %s in the index: %s", other, path, err.msg);
        } else {
            p->stats.moved += n;
            cx_log(LOG_INFO, "moved %s -> %s (found by content)", other, path);
        }
        batch_op_done(p);
        if (n > 0) {
            job_finish(j);
            return;
        }
    }
    if (p->model_busy - p->hung < p->workers) {
        start_model(p, j);
    } else {
        j->next = NULL;
        if (p->waiting_model_tail) p->waiting_model_tail->next = j;
        else p->waiting_model = j;
        p->waiting_model_tail = j;
        p->n_waiting_model++;
    }
}

static void start_model(cx_pipeline *p, job *j)
{
    int slot = -1;
    for (int i = 0; i < p->workers; i++)
        if (!p->slot_busy[i]) { slot = i; break; }
    if (slot < 0) {      /* callers check for a free slot; keep the job rather than lose it */
        j->next = p->waiting_model;
        p->waiting_model = j;
        if (!p->waiting_model_tail) p->waiting_model_tail = j;
        p->n_waiting_model++;
        return;
    }
    j->stage = STAGE_MODEL;
    j->slot = slot;
    j->session = p->sessions[slot];
    j->max_pixels = p->opt.cfg->max_pixels;
    j->pooled = malloc(CE_POOLED_DIM * sizeof *j->pooled);
    if (!j->pooled) {
        cx_log(LOG_ERR, "out of memory for %s", j->path);
        job_finish(j);
        return;
    }
    p->slot_busy[slot] = 1;
    p->model_busy++;
    p->stats.model_runs++;
    j->e->attempt++;
    j->next = p->running;
    p->running = j;
    write_inflight(p, 1);       /* durable before the engine opens the file */
    j->started_ms = now_ms();
    int rc = uv_queue_work(p->opt.loop, &j->work, model_work, model_after);
    if (rc < 0) {
        cx_log(LOG_ERR, "queueing %s: %s", j->path, uv_strerror(rc));
        model_after(&j->work, rc);
        return;
    }
    uv_timer_start(&j->timer, on_time_limit, (uint64_t)p->opt.cfg->time_limit_s * 1000, 0);
}

/* Worker thread: only j and its session are touched here. */
static void model_work(uv_work_t *w)
{
    job *j = w->data;
    const ce_model *model = j->p->opt.model;
    ce_err err = {{0}};
    ce_image img;
    ce_load_options lo = {.max_pixels = j->max_pixels, .min_side = 0};
    j->rc = ce_image_load_file(j->path, &lo, &img, &err);
    if (j->rc < 0) {
        snprintf(j->error, sizeof j->error, "%s", err.msg[0] ? err.msg : strerror(-j->rc));
        return;
    }
    j->width = img.source_width;
    j->height = img.source_height;
    j->taken_time = img.taken_time;
    ce_cnn_output *cnn = calloc(1, sizeof *cnn);
    if (!cnn) {
        ce_image_free(&img);
        j->rc = -ENOMEM;
        snprintf(j->error, sizeof j->error, "out of memory");
        return;
    }
    j->rc = ce_cnn_run(j->session, &img, cnn, &err);
    ce_image_free(&img);
    if (j->rc < 0) {
        snprintf(j->error, sizeof j->error, "%s", err.msg[0] ? err.msg : strerror(-j->rc));
        free(cnn);
        return;
    }
    memcpy(j->pooled, cnn->pooled, sizeof cnn->pooled);
    size_t used = 0;
    j->tags[0] = '\0';
    if (ce_model_has_captioner(model)) {
        ce_caption cap;
        memset(&cap, 0, sizeof cap);
        j->rc = ce_caption_run(j->session, cnn, NULL, &cap, &err);
        if (j->rc < 0) {
            snprintf(j->error, sizeof j->error, "%s", err.msg[0] ? err.msg : strerror(-j->rc));
            free(cnn);
            return;
        }
        snprintf(j->caption, sizeof j->caption, "%s", cap.caption);
        for (int i = 0; i < cap.n_tags && i < CE_MAX_TAGS; i++) {
            int n = snprintf(j->tags + used, sizeof j->tags - used, "%s%s", used ? " " : "",
                             cap.tags[i].word);
            if (n < 0 || (size_t)n >= sizeof j->tags - used) break;
            used += (size_t)n;
        }
        if (cap.n_concepts > 0 && cap.concepts) {
            j->concepts = malloc(sizeof *j->concepts * (size_t)cap.n_concepts);
            if (j->concepts) {
                memcpy(j->concepts, cap.concepts, sizeof *j->concepts * (size_t)cap.n_concepts);
                j->n_concepts = cap.n_concepts;
            }
        }
    } else {
        /* no captioner yet: the detections' labels are the tags */
        for (int i = 0; i < cnn->n_detections; i++) {
            const char *label = cnn->detections[i].label;
            if (!label) continue;
            int dup = 0;
            for (int k = 0; k < i; k++)
                if (cnn->detections[k].label && !strcmp(cnn->detections[k].label, label)) dup = 1;
            if (dup) continue;
            int n = snprintf(j->tags + used, sizeof j->tags - used, "%s%s", used ? " " : "", label);
            if (n < 0 || (size_t)n >= sizeof j->tags - used) break;
            used += (size_t)n;
        }
    }
    free(cnn);
}

static void model_after(uv_work_t *w, int status)
{
    job *j = w->data;
    cx_pipeline *p = j->p;
    uv_timer_stop(&j->timer);
    p->model_busy--;
    schedule(p);
    if (j->abandoned) {
        /* its slot got a fresh session when it was abandoned; this one is ours to free */
        p->hung--;
        cx_log(LOG_NOTICE, "%s: the worker came back after %.0f s; result dropped",
               j->path, (double)(now_ms() - j->started_ms) / 1000.0);
        if (j->kept_slot_session) p->slot_busy[j->slot] = 0;
        else ce_session_free(j->session);   /* the slot got a fresh one */
        job_finish(j);
        return;
    }
    p->slot_busy[j->slot] = 0;
    for (job **link = &p->running; *link; link = &(*link)->next)
        if (*link == j) { *link = j->next; break; }
    if (status < 0) {
        j->rc = status;
        snprintf(j->error, sizeof j->error, "%s", uv_strerror(status));
    }
    j->e->attempt = 0;
    if (!p->stopped || status == 0) write_result(p, j);
    write_inflight(p, 0);
    job_finish(j);
}

/* The engine cannot be interrupted: the file is recorded failed now, its worker's slot
 * gets a fresh session, and the worker's eventual result is dropped. */
static void on_time_limit(uv_timer_t *t)
{
    job *j = t->data;
    cx_pipeline *p = j->p;
    char msg[128];
    snprintf(msg, sizeof msg, "took longer than the %d s time limit", p->opt.cfg->time_limit_s);
    cx_log(LOG_WARNING, "%s: %s; recorded failed", j->path, msg);
    j->abandoned = 1;
    p->hung++;
    for (job **link = &p->running; *link; link = &(*link)->next)
        if (*link == j) { *link = j->next; break; }
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
    record_failure(p, j->path, &j->st, j->fingerprint, msg);
    write_inflight(p, 1);
    /* its entry is done: later events for the file queue a new job */
    entry_remove(p, j->e);
    j->e = NULL;
    schedule(p);
}

/* ------------------------------------------------------------------ writing */

static void write_result(cx_pipeline *p, job *j)
{
    const char *path = j->path;
    struct stat now;
    if (lstat(path, &now) != 0 || now.st_ino != j->st.st_ino || now.st_dev != j->st.st_dev ||
        now.st_size != j->st.st_size || mtime_ns(&now) != mtime_ns(&j->st)) {
        /* changed or gone while the model ran: the result describes no file */
        if (lstat(path, &now) == 0) j->e->dirty = 1;
        return;
    }
    if (j->rc < 0) {
        cx_log(LOG_WARNING, "%s: %s; recorded failed", path, j->error);
        record_failure(p, path, &j->st, j->fingerprint, j->error);
        return;
    }
    capdb_image img = {
        .path = path,
        .device = (uint64_t)j->st.st_dev,
        .inode = (uint64_t)j->st.st_ino,
        .size = (int64_t)j->st.st_size,
        .mtime_ns = mtime_ns(&j->st),
        .fingerprint = j->fingerprint,
        .width = j->width,
        .height = j->height,
        .taken_time = j->taken_time,
        .status = CAPDB_STATUS_OK,
        .caption = j->caption[0] ? j->caption : NULL,
        .tags = j->tags[0] ? j->tags : NULL,
        .model_version = ce_model_version(p->opt.model),
        .concepts = j->concepts,
        .n_concepts = j->n_concepts,
        .pooled = j->pooled,
        .n_pooled = CE_POOLED_DIM,
    };
    capdb_err err = {{0}, 0};
    if (batch_begin(p) < 0) return;
    int rc = capdb_upsert(p->opt.db, &img, &err);
    if (rc < 0) {
        cx_log(LOG_ERR, "writing %s to the index: %s", path, err.msg);
    } else {
        p->stats.indexed++;
        cx_log(LOG_DEBUG, "indexed %s: \"%s\" [%s]", path, j->caption, j->tags);
    }
    batch_op_done(p);
}

static void record_failure(cx_pipeline *p, const char *path, const struct stat *st,
                           uint64_t fingerprint, const char *error)
{
    capdb_image img = {
        .path = path,
        .device = (uint64_t)st->st_dev,
        .inode = (uint64_t)st->st_ino,
        .size = (int64_t)st->st_size,
        .mtime_ns = mtime_ns(st),
        .fingerprint = fingerprint,
        .status = CAPDB_STATUS_FAILED,
        .error = error,
        .model_version = ce_model_version(p->opt.model),
    };
    capdb_err err = {{0}, 0};
    if (batch_begin(p) < 0) return;
    if (capdb_upsert(p->opt.db, &img, &err) < 0)
        cx_log(LOG_ERR, "recording the failure of %s: %s", path, err.msg);
    else
        p->stats.failed++;
    batch_op_done(p);
}

static void job_closed(uv_handle_t *h)
{
    job *j = h->data;
    free(j->concepts);
    free(j->pooled);
    free(j->path);
    free(j);
}

static void job_finish(job *j)
{
    cx_pipeline *p = j->p;
    entry *e = j->e;
    if (e) {
        if (e->dirty && !p->stopped) {
            e->dirty = 0;
            e->state = E_URGENT;
            fifo_push(&p->urgent, e->path);
            p->n_urgent++;
            schedule(p);
        } else {
            entry_remove(p, e);
        }
    }
    uv_close((uv_handle_t *)&j->timer, job_closed);
}

/* Rows under the scanned prefixes whose file is gone or no longer wanted. Runs when the
 * pipeline is idle so that renames found by content have already moved their rows. */
typedef struct {
    char **paths;
    size_t n, cap;
} path_list;

static int collect_path(void *ctx, const char *path)
{
    path_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        char **bigger = realloc(l->paths, cap * sizeof *bigger);
        if (!bigger) return 1;
        l->paths = bigger;
        l->cap = cap;
    }
    l->paths[l->n] = strdup(path);
    if (l->paths[l->n]) l->n++;
    return 0;
}

static void run_vanished(cx_pipeline *p)
{
    while (p->vanished) {
        prefix *v = p->vanished;
        p->vanished = v->next;
        path_list l = {0};
        capdb_err err = {{0}, 0};
        struct stat st;
        if (stat(v->path, &st) != 0 || !S_ISDIR(st.st_mode)) {
            /* an unmounted or missing root: its rows stay until it comes back */
            cx_log(LOG_WARNING, "%s is not there; keeping its index rows", v->path);
        } else if (capdb_foreach_path(p->opt.db, v->path, collect_path, &l, &err) < 0) {
            cx_log(LOG_ERR, "listing indexed files under %s: %s", v->path, err.msg);
        } else {
            int64_t gone = 0;
            for (size_t i = 0; i < l.n; i++) {
                struct stat fst;
                int missing = lstat(l.paths[i], &fst) != 0 && (errno == ENOENT || errno == ENOTDIR);
                if (missing || !cx_config_wants_path(p->opt.cfg, l.paths[i])) {
                    cx_pipeline_removed(p, l.paths[i]);
                    gone++;
                }
            }
            cx_log(gone ? LOG_INFO : LOG_DEBUG, "%s: %zu indexed files checked, %lld gone",
                   v->path, l.n, (long long)gone);
        }
        for (size_t i = 0; i < l.n; i++) free(l.paths[i]);
        free(l.paths);
        free(v->path);
        free(v);
    }
    cx_pipeline_flush(p);
}

/* ------------------------------------------------------------------ crash marker */

/* The marker lists "attempt<TAB>path" lines of the files the engine is working on. */
static void write_inflight(cx_pipeline *p, int commit_now)
{
    if (!p->opt.inflight_key) return;
    char *buf = malloc(MAX_INFLIGHT_META);
    if (!buf) return;
    size_t used = 0;
    buf[0] = '\0';
    for (job *j = p->running; j; j = j->next) {
        if (strchr(j->path, '\n')) continue;
        int n = snprintf(buf + used, MAX_INFLIGHT_META - used, "%d\t%s\n", j->e->attempt, j->path);
        if (n < 0 || (size_t)n >= MAX_INFLIGHT_META - used) break;
        used += (size_t)n;
    }
    cx_pipeline_meta_set(p, p->opt.inflight_key, buf);
    free(buf);
    if (commit_now) cx_pipeline_flush(p);
}

static void recover_inflight(cx_pipeline *p)
{
    if (!p->opt.inflight_key) return;
    char *buf = malloc(MAX_INFLIGHT_META);
    capdb_err err = {{0}, 0};
    if (!buf) return;
    int found = capdb_meta_get(p->opt.db, p->opt.inflight_key, buf, MAX_INFLIGHT_META, &err);
    if (found == 1) {
        char *save = NULL;
        for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            char *tab = strchr(line, '\t');
            if (!tab) continue;
            int attempt = atoi(line);
            const char *path = tab + 1;
            struct stat st;
            if (attempt >= 2) {
                if (lstat(path, &st) == 0) {
                    cx_log(LOG_ERR, "%s: the indexer died twice while reading it; recorded "
                           "failed (retried when the file changes)", path);
                    record_failure(p, path, &st, 0, "the indexer crashed or was killed twice "
                                   "while reading this file");
                }
            } else {
                cx_log(LOG_NOTICE, "%s was being read when the indexer stopped; trying again", path);
                cx_pipeline_submit(p, path, 1);
                entry *e = entry_find(p, path);
                if (e) e->attempt = attempt;
            }
        }
    } else if (found < 0) {
        cx_log(LOG_WARNING, "reading %s: %s", p->opt.inflight_key, err.msg);
    }
    free(buf);
    cx_pipeline_meta_set(p, p->opt.inflight_key, "");
    cx_pipeline_flush(p);
}

/* ------------------------------------------------------------------ batches */

static int batch_begin(cx_pipeline *p)
{
    capdb_err err = {{0}, 0};
    if (p->in_tx) return 0;
    if (p->opt.stop_on_write_error && p->stats.write_errors > 0) return -EIO;
    int rc = 0;
    for (int attempt = 0; attempt < COMMIT_RETRIES; attempt++) {
        rc = capdb_begin(p->opt.db, &err);
        if (rc != -EBUSY) break;
        usleep(50 * 1000);
    }
    if (rc < 0) {
        cx_log(LOG_ERR, "starting an index transaction: %s", err.msg);
        write_failed(p);
        return rc;
    }
    p->in_tx = 1;
    p->tx_ops = 0;
    uv_timer_start(&p->batch_timer, on_batch_timer, (uint64_t)p->opt.cfg->batch_ms, 0);
    return 0;
}

/* The stop itself waits for pump(): callers of batch_begin may be walking the queues. */
static void write_failed(cx_pipeline *p)
{
    p->stats.write_errors++;
    if (p->opt.stop_on_write_error) schedule(p);
}

static void batch_op_done(cx_pipeline *p)
{
    if (++p->tx_ops >= p->opt.cfg->batch_size) cx_pipeline_flush(p);
}

static void on_batch_timer(uv_timer_t *t)
{
    cx_pipeline_flush(t->data);
}

/* ------------------------------------------------------------------ queues */

static size_t hash_path(const char *s)
{
    return (size_t)cx_xxh64(s, strlen(s), 0);
}

static entry *entry_find(cx_pipeline *p, const char *path)
{
    for (entry *e = p->table[hash_path(path) & (p->table_size - 1)]; e; e = e->next)
        if (!strcmp(e->path, path)) return e;
    return NULL;
}

static entry *entry_add(cx_pipeline *p, const char *path, int state)
{
    if (p->n_entries >= p->table_size) {
        size_t size = p->table_size * 2;
        entry **table = calloc(size, sizeof *table);
        if (table) {
            for (size_t i = 0; i < p->table_size; i++) {
                while (p->table[i]) {
                    entry *e = p->table[i];
                    p->table[i] = e->next;
                    size_t b = hash_path(e->path) & (size - 1);
                    e->next = table[b];
                    table[b] = e;
                }
            }
            free(p->table);
            p->table = table;
            p->table_size = size;
        }
    }
    entry *e = calloc(1, sizeof *e);
    if (!e || !(e->path = strdup(path))) {
        free(e);
        return NULL;
    }
    e->state = state;
    size_t b = hash_path(path) & (p->table_size - 1);
    e->next = p->table[b];
    p->table[b] = e;
    p->n_entries++;
    return e;
}

static void entry_remove(cx_pipeline *p, entry *e)
{
    for (entry **link = &p->table[hash_path(e->path) & (p->table_size - 1)]; *link;
         link = &(*link)->next) {
        if (*link == e) {
            *link = e->next;
            p->n_entries--;
            free(e->path);
            free(e);
            return;
        }
    }
}

static void fifo_push(fifo *q, const char *path)
{
    qitem *it = malloc(sizeof *it);
    if (!it || !(it->path = strdup(path))) {
        free(it);
        cx_log(LOG_ERR, "out of memory queueing %s", path);
        return;
    }
    it->next = NULL;
    if (q->tail) q->tail->next = it;
    else q->head = it;
    q->tail = it;
}

static char *fifo_pop(fifo *q)
{
    qitem *it = q->head;
    if (!it) return NULL;
    q->head = it->next;
    if (!q->head) q->tail = NULL;
    char *path = it->path;
    free(it);
    return path;
}

static void fifo_clear(fifo *q)
{
    char *path;
    while ((path = fifo_pop(q))) free(path);
}

/* ------------------------------------------------------------------ small helpers */

static int same_file_state(const capdb_file_state *row, const struct stat *st)
{
    return row->device == (uint64_t)st->st_dev && row->inode == (uint64_t)st->st_ino &&
           row->size == (int64_t)st->st_size && row->mtime_ns == mtime_ns(st);
}

static int64_t mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static char *join_path(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    if (a + b + 2 > PATH_MAX) {
        cx_log(LOG_WARNING, "%s/%s: path too long, skipped", dir, name);
        return NULL;
    }
    char *s = malloc(a + b + 2);
    if (!s) return NULL;
    memcpy(s, dir, a);
    size_t at = a;
    if (a == 0 || dir[a - 1] != '/') s[at++] = '/';
    memcpy(s + at, name, b + 1);
    return s;
}
