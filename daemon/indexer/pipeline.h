/*
 * Private to libcapindexer: the pipeline's state, shared by the files that each do one
 * of its jobs. Cross-file functions are named cx__* (the project rule: <lib>__ is
 * private to a library, <lib>_ is public).
 *
 *   pipeline.c   life (new / stop / free), the public operations, the pump
 *   queue.c      the two FIFO queues and the entry table that deduplicates them by path
 *   walk.c       the incremental folder walk that feeds the backlog queue
 *   stages.c     dispatch (stat + row lookup), hashing, the model job and its time limit
 *   row.c        image -> database row (shared with the stage benchmark)
 *   writer.c     every change to the index: batched transactions, lock retries by timer
 *   inflight.c   the crash marker ("the engine is reading these files")
 *   vanished.c   rows whose file is gone, once the pipeline is idle
 *   cluster.c    several nodes on a shared index: the work queue, claims, heartbeats
 *
 * Invariants:
 *  - a path has at most one entry; an entry is in exactly one state (E_*) and, while
 *    E_BACKLOG or E_URGENT, counted in n_backlog or n_urgent (stale FIFO items whose
 *    entry moved on are skipped when popped);
 *  - a job owns its entry (j->e) until job_finish, or until its time limit abandons it;
 *  - only the loop thread touches the database, the queues and this struct; a worker
 *    touches only its own job and session.
 */
#ifndef CAPINDEXER_PIPELINE_H
#define CAPINDEXER_PIPELINE_H

#include <dirent.h>
#include <sys/stat.h>

#include "capindexer.h"

#define MAX_INFLIGHT_META 65536
#define WALK_BUDGET 512     /* directory entries per loop iteration */
#define DISPATCH_BUDGET 256 /* queue decisions per loop iteration */
#define WRITE_QUEUE_MAX                                                                            \
    1024 /* changes waiting for a locked database before the
                                    pump stops taking new files */

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
    int state;          /* E_* */
    int dirty;          /* changed again while running: run once more */
    int attempt;        /* model starts that never completed (crash marker) */
    int force;          /* hash it even when size and mtime are unchanged */
    int text;           /* its sidecar changed: read people's text again */
    int claimed;        /* holds this node's claim on the shared queue (cluster.c) */
    struct entry *next; /* hash chain */
} entry;

enum { STAGE_HASH, STAGE_MODEL, STAGE_TEXT };

typedef struct job {
    cx_pipeline *p;
    entry *e;   /* NULL once abandoned */
    char *path; /* the job's own copy: workers read it */
    uv_work_t work;
    uv_timer_t timer;
    int stage;
    int slot; /* model slot, -1 none */
    ce_session *session;
    int abandoned;         /* passed its time limit; the worker result is dropped */
    int kept_slot_session; /* abandoned without a replacement session: the slot's
                                    own session stays with it until the worker returns */
    uint64_t started_ms;
    struct job *next; /* waiting_model list / in-flight list */

    /* the file as dispatched */
    struct stat st;
    capdb_file_state old; /* its row, id 0 = none */

    /* worker outputs */
    int rc;
    char error[CE_ERR_MAX];
    uint64_t fingerprint;
    int64_t max_pixels;
    int write_xmp; /* settings->write_xmp when the job started */
    int wrote_sidecar;
    char sidecar_error[CM_ERR_MAX];
    cx_image_result result; /* result.pooled: CE_POOLED_DIM floats, malloc'd */
} job;

typedef struct walk_dir {
    char *path;
    int urgent; /* files found go to the urgent queue (new folders) */
    struct walk_dir *next;
} walk_dir;

typedef struct prefix {
    char *path;
    struct prefix *next;
} prefix;

typedef struct write_op write_op; /* writer.c */

struct cx_pipeline {
    cx_pipeline_options opt;
    int workers;

    /* queue.c */
    fifo urgent, backlog;
    int64_t n_urgent, n_backlog; /* live entries in each queue */
    entry **table;
    size_t table_size, n_entries;

    /* stages.c */
    ce_session **sessions; /* one per model slot */
    int *slot_busy;
    int hash_busy, model_busy, hung;
    job *waiting_model, *waiting_model_tail;
    int n_waiting_model;
    job *running; /* model jobs, for the in-flight marker */

    /* walk.c, vanished.c */
    walk_dir *walk_stack;
    DIR *walk_dir_handle;
    char *walk_path;
    int walk_urgent;
    prefix *vanished;

    /* writer.c */
    uv_timer_t batch_timer; /* commits a batch batch_ms after its first change */
    uv_timer_t retry_timer; /* retries BEGIN / COMMIT on a locked database */
    int in_tx, tx_ops;
    write_op *pending, *pending_tail; /* changes waiting for the lock, in order */
    int n_pending;
    uint64_t locked_since_ms; /* 0 = not waiting for the lock */
    int retry_delay_ms;
    write_op *batch, *batch_tail; /* shared index: changes of the open batch, for replay */
    int n_batch;
    write_op *pending_rest; /* replay_batch: the first pending change older than the batch */
    int server_away;        /* the database server is unreachable (logged once) */

    /* cluster.c (active only on a shared index with opt.cluster) */
    struct {
        int active, role;
        capdb *db; /* its own connection: claims and heartbeats never wait for a batch */
        char node[256], host[256];
        int64_t started;
        int holding; /* claimed entries */
        uv_timer_t claim_timer, heartbeat_timer;
        int claim_failing, heartbeat_failing;
        struct {
            uint64_t ms;
            int64_t count;
        } samples[13]; /* one per heartbeat: a minute of model runs */
        int next_sample, n_samples;
    } cluster;

    /* pipeline.c */
    uv_idle_t idle;
    int handles_open;
    int was_busy, stopped;

    cx_stats stats;
};

/* ------------------------------------------------------------------ pipeline.c */

void cx__schedule(cx_pipeline *p);

/* ------------------------------------------------------------------ queue.c */

entry *cx__entry_find(cx_pipeline *p, const char *path);
entry *cx__entry_add(cx_pipeline *p, const char *path, int state);
void cx__entry_remove(cx_pipeline *p, entry *e);
void cx__fifo_push(fifo *q, const char *path);
char *cx__fifo_pop(fifo *q);
void cx__fifo_clear(fifo *q);

/* ------------------------------------------------------------------ walk.c */

/* Reads up to budget directory entries; returns how many it handled. */
int cx__walk_step(cx_pipeline *p, int budget);
void cx__walk_clear(cx_pipeline *p);

/* ------------------------------------------------------------------ stages.c */

/* lstat + row lookup; unchanged files end here, others go to hashing or the model. */
void cx__dispatch(cx_pipeline *p, entry *e);
void cx__start_model(cx_pipeline *p, job *j);
void cx__job_finish(job *j);

/* ------------------------------------------------------------------ writer.c */

int cx__writer_init(cx_pipeline *p); /* the two timers */
void cx__writer_close(cx_pipeline *p, uv_close_cb closed);
/* Each change is applied now inside the open batch, or, while the database is locked
 * by another writer, kept in order and applied when the retry timer gets the lock. */
void cx__write_row(cx_pipeline *p, const capdb_image *row);
void cx__write_failure(cx_pipeline *p, const char *path, const struct stat *st,
                       uint64_t fingerprint, const char *error, const char *reason);
void cx__write_text(cx_pipeline *p, int64_t id, const cm_text *text);
void cx__write_delete(cx_pipeline *p, const char *path);
void cx__write_move(cx_pipeline *p, const char *from, const char *to, int replace_target,
                    int found_by_content);
void cx__write_stat(cx_pipeline *p, int64_t id, const struct stat *st);
void cx__write_enqueue(cx_pipeline *p, const char *path, int64_t size, int64_t mtime_ns);
void cx__write_done(cx_pipeline *p, const char *path); /* finishes this node's claim */
int cx__write_meta(cx_pipeline *p, const char *key, const char *value);
/* The model's result for a job, unless the file changed while the model ran. */
void cx__write_result(cx_pipeline *p, job *j);
int cx__writer_flush(cx_pipeline *p);
int cx__writer_backlog(const cx_pipeline *p); /* changes waiting for the lock */
/* 1 while changes or a commit wait for another writer's lock (the retry timer runs). */
int cx__writer_waiting(const cx_pipeline *p);

/* ------------------------------------------------------------------ cluster.c */

/* Opens the coordination connection and starts the timers when opt.cluster is set and
 * the index is shared; 0 (and nothing started) otherwise. */
int cx__cluster_start(cx_pipeline *p, cx_err *err);
/* Gives back the claims still held and closes the timers (after the final commit). */
void cx__cluster_stop(cx_pipeline *p, uv_close_cb closed);
/* A job about to go to the model: on a shared index an unclaimed file is queued for
 * any node instead, and the job finished. 1 = handed off. */
int cx__cluster_hand_off(cx_pipeline *p, job *j);
/* A row for path is being written: 1 when it ends this node's claim (the entry's claim
 * moves to the row op: capdb_work_done right after the upsert, never without it). */
int cx__cluster_row_ends_claim(cx_pipeline *p, const char *path);
/* An entry is being removed: finishes its claim, if it holds one. */
void cx__cluster_entry_gone(cx_pipeline *p, entry *e);

/* ------------------------------------------------------------------ inflight.c */

void cx__write_inflight(cx_pipeline *p, int commit_now);
void cx__recover_inflight(cx_pipeline *p);

/* ------------------------------------------------------------------ vanished.c */

void cx__run_vanished(cx_pipeline *p);
void cx__vanished_clear(cx_pipeline *p);

/* ------------------------------------------------------------------ small helpers */

int64_t cx__mtime_ns(const struct stat *st);
int cx__same_file_state(const capdb_file_state *row, const struct stat *st);

#endif
