/*
 * capindexer.h: libcapindexer, the scan-and-caption pipeline shared by capsearchd and
 * `capsearch index` — the only public header of daemon/indexer/.
 *
 *   log.c          one logging function (syslog priorities, journal-aware)
 *   printable.c    the terminal-safety rule for text we did not write
 *   fingerprint.c  a fast 64-bit content hash (XXH64) of a whole file
 *   settings.c     what to index (roots, filters) and the pipeline's limits
 *   pipeline.c     the pipeline's life and public operations; its parts, one job per
 *                  file: queue.c, walk.c, stages.c, row.c, writer.c, inflight.c,
 *                  vanished.c (private: pipeline.h)
 *
 * Threads: everything here runs on the libuv loop thread except the work callbacks
 * inside stages.c, which only touch their own job (path in, result struct out) and
 * their own ce_session. Only the loop thread touches the database.
 *
 * Errors: 0 on success, a negative errno on failure, with a one-line message in cx_err
 * (as ce_err in libcapengine and capdb_err in libcapdb).
 *
 * Process state: nothing here changes it. The pipeline runs hashing and model jobs on
 * libuv's thread pool, whose size is read from UV_THREADPOOL_SIZE at its first use: the
 * program sets it first (cx_threadpool_size() says how large it should be).
 */
#ifndef CAPINDEXER_H
#define CAPINDEXER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <syslog.h>
#include <uv.h>

#include "capdb.h"
#include "capprintable.h" /* cu_printable: every line a terminal shows */
#include "capengine.h"
#include "capmeta.h"

#define CX_ERR_MAX 512
typedef struct {
    char msg[CX_ERR_MAX];
} cx_err;
/* Fills err (printf-style) and returns code, a negative errno. */
int cx_fail(cx_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------------ meta keys */

/* The daemon's live state, written by capsearchd every few seconds and read by
 * `capsearch status` (capdb's meta table; libcapdb itself knows no daemon). */
#define CX_META_DAEMON_PID "daemon.pid"
#define CX_META_DAEMON_STATE "daemon.state"         /* scanning / watching / stopped */
#define CX_META_DAEMON_QUEUE "daemon.queue"         /* files waiting */
#define CX_META_DAEMON_INDEXED "daemon.indexed"     /* files done since start */
#define CX_META_DAEMON_HEARTBEAT "daemon.heartbeat" /* unix seconds */
#define CX_META_DAEMON_ROOTS "daemon.roots"         /* watched folders, one per line */
#define CX_META_DAEMON_LAST_ERROR "daemon.last_error"
#define CX_META_DAEMON_MODEL_RUNS "daemon.model_runs" /* images given to the engine */
#define CX_META_DAEMON_WATCHES "daemon.watches"       /* "N watched, M polled" */
/* Crash markers ("attempt<TAB>path" lines of the files in the engine, committed before
 * it opens them): one per kind of writer, so that `capsearch index` and a daemon beside
 * it never share one. */
#define CX_META_INFLIGHT_DAEMON "daemon.inflight"
#define CX_META_INFLIGHT_INDEX "index.inflight"

/* ------------------------------------------------------------------ logging */

/* ident prefixes every line when stderr is not the journal; messages less important than
 * max_priority (LOG_DEBUG .. LOG_EMERG) are dropped. */
void cx_log_init(const char *ident, int max_priority);
void cx_log_set_level(int max_priority);
void cx_log(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "debug", "info", "notice", "warning", "err"/"error", "crit"; -1 when unknown. */
int cx_log_parse_level(const char *name);
/* The newest message logged at LOG_ERR or worse ("" when none), for daemon.last_error. */
const char *cx_log_last_error(void);

/* ------------------------------------------------------------------ settings */

/* What to index and how hard: the pipeline reads it at each use, so a program may change
 * it between loop iterations (capsearchd does on SIGHUP). */
typedef struct {
    char **roots;
    int n_roots; /* absolute folders, no trailing '/' */
    char **excludes;
    int n_excludes; /* fnmatch globs on a name, or on the whole
                                                   path when the glob holds a '/' */
    char **extensions;
    int n_extensions;   /* lower case, no dot */
    int workers;        /* model runs in parallel */
    int batch_size;     /* results per write transaction */
    int batch_ms;       /* ... or this long after the first one */
    int64_t max_pixels; /* images whose header claims more are failures */
    int time_limit_s;   /* per image; a file that takes longer is recorded failed */
    int queue_max;      /* files waiting before the walk / watcher hold back */
    int write_xmp;      /* 1: write each caption into the image's XMP sidecar */
} cx_settings;

#define CX_MAX_LIST 1024 /* roots, excludes, extensions: at most this many each */

/* Defaults: half the cores as workers, batches of 64 or 1 s, 100 MP, 60 s, 10,000
 * queued; excludes .* @eaDir .git node_modules; extensions jpg jpeg jpe png. */
void cx_settings_defaults(cx_settings *s);
void cx_settings_free(cx_settings *s);
/* Adds an absolute folder ("/a/b/" == "/a/b"; a repeat is a no-op). */
int cx_settings_add_root(cx_settings *s, const char *path, cx_err *err);
/* Adds a glob; "" clears the list (defaults included). */
int cx_settings_add_exclude(cx_settings *s, const char *glob, cx_err *err);
/* Replaces the extensions by a list separated by spaces or commas ("jpg, png"). */
int cx_settings_set_extensions(cx_settings *s, const char *list, cx_err *err);

/* Name-level filters (name = last path component, path = the whole path). */
int cx_wants_dir(const cx_settings *s, const char *name, const char *path);
int cx_wants_file(const cx_settings *s, const char *name, const char *path);
/* Every component of path below its root passes the filters (used on rows of the index). */
int cx_wants_path(const cx_settings *s, const char *path);

/* Monotonic milliseconds (timings, back-off). */
uint64_t cx_now_ms(void);
/* Closes every handle still open on loop and runs it once so their close callbacks run:
 * what a program does before uv_loop_close. */
void cx_loop_close_handles(uv_loop_t *loop);

/* dir + "/" + name (no doubled '/'), malloc'd; NULL past PATH_MAX (logged) or out of
 * memory. */
char *cx_join_path(const char *dir, const char *name);

/* libuv threads the pipeline needs for `workers`: hashing + model jobs + a few abandoned
 * ones must never wait for a pool thread, or the time limit would count time queued. */
int cx_threadpool_size(int workers);

/* ------------------------------------------------------------------ fingerprint */

/* XXH64 of the whole file (seed 0). Returns 0 or -errno. */
int cx_fingerprint_file(const char *path, uint64_t *out);
uint64_t cx_xxh64(const void *data, size_t len, uint64_t seed);

/* ------------------------------------------------------------------ pipeline */

typedef struct cx_pipeline cx_pipeline;

typedef struct {
    int64_t queued;           /* waiting (both queues) */
    int64_t in_flight;        /* hashing or captioning right now */
    int64_t indexed;          /* rows written with a model result (ok) */
    int64_t failed;           /* rows written as failed */
    int64_t moved;            /* rows kept across a rename (no model run) */
    int64_t removed;          /* rows deleted */
    int64_t unchanged;        /* files skipped as unchanged */
    int64_t text_updates;     /* rows whose people's text was re-read (a sidecar changed) */
    int64_t sidecars_written; /* XMP sidecars written (write_xmp) */
    int64_t model_runs;       /* images handed to the engine */
    int64_t enqueued;         /* files queued for any node (a shared index) */
    int64_t seen;             /* files the walk found (progress total) */
    int scanning;             /* a walk is in progress */
    int64_t write_errors;     /* batches that could not start or commit (disk full, read-only,
                                locked past the retries): their changes wait for the next scan */
} cx_stats;

/* Several nodes on one shared index (capdb_is_shared): what this node does. */
enum { CX_ROLE_ALL = 0, CX_ROLE_SCAN = 1, CX_ROLE_CAPTION = 2 };
typedef struct {
    const char *db_target; /* the index's target, opened again for claims and heartbeats */
    const char *node_name; /* unique among the nodes (default: the host name) */
    int role;              /* CX_ROLE_*: scan = watch and queue only; caption = claim only */
} cx_cluster_options;
/* "all", "scan", "caption"; cx_role_parse returns -1 for anything else. */
const char *cx_role_name(int role);
int cx_role_parse(const char *name);

typedef struct {
    uv_loop_t *loop;
    capdb *db; /* opened for writing; the pipeline owns transactions */
    const ce_model *model;
    const cx_settings *settings; /* read at each use: the daemon swaps it on reload */
    const char *inflight_key;    /* meta key of the "model running on" marker
                                     (CX_META_INFLIGHT_*); a restart after a crash reads it */
    /* Called for each folder the walk enters (after the filters); return 0 to walk it.
     * The daemon adds its inotify watch here. NULL = walk everything wanted. */
    int (*on_dir)(void *ctx, const char *path);
    /* Called for each wanted file the walk finds; NULL = cx_pipeline_submit. The daemon
     * holds back files modified in the last seconds: they may still be being written. */
    void (*on_file)(void *ctx, const char *path, int urgent);
    /* Called when the queues are empty, nothing is in flight and no walk is running. */
    void (*on_idle)(void *ctx);
    void *ctx;
    /* 1: the first batch that cannot start or commit stops the pipeline (cx_pipeline_stop)
     * and no write waits on the database after it (`capsearch index`: better a clear error
     * now than minutes of retries per file). 0: carry on, the next scan redoes the work. */
    int stop_on_write_error;
    /* NULL: this process captions what it finds, whatever the index (`capsearch index`).
     * Set, on a shared index: the node's part in the shared work queue (cluster.c). */
    const cx_cluster_options *cluster;
} cx_pipeline_options;

int cx_pipeline_new(const cx_pipeline_options *opt, cx_pipeline **out, cx_err *err);
/* Stops, commits what is pending and frees; jobs still in workers must have finished
 * (cx_pipeline_busy() == 0) or be abandoned ones: those are waited for by the loop. */
void cx_pipeline_free(cx_pipeline *p);

/* A file appeared or changed (urgent: ahead of the walk backlog). */
void cx_pipeline_submit(cx_pipeline *p, const char *path, int urgent);
/* Its metadata changed (chmod, chown): look again even if size and mtime are the same
 * (a file recorded failed as unreadable becomes readable). Costs a hash, not a model run,
 * when the content is unchanged. */
void cx_pipeline_recheck(cx_pipeline *p, const char *path);
/* Its XMP sidecar (IMG.ext.xmp or IMG.xmp) changed: read what people wrote again (no
 * model run). */
void cx_pipeline_text_changed(cx_pipeline *p, const char *image_path);
/* A file or a folder (every row under it) is gone. */
void cx_pipeline_removed(cx_pipeline *p, const char *path);
/* A file or folder was renamed inside the watched trees: rows follow, no model run. */
void cx_pipeline_moved(cx_pipeline *p, const char *from, const char *to, int is_dir);
/* Walks a folder tree (incrementally, bounded by queue_max). With CX_SCAN_VANISHED, rows
 * under dir whose file is gone (or no longer wanted) are deleted once the pipeline is
 * idle, so that moves found by fingerprint happen first. CX_SCAN_URGENT: the files found
 * go ahead of the backlog (a folder that just arrived). */
enum { CX_SCAN_VANISHED = 1, CX_SCAN_URGENT = 2 };
void cx_pipeline_scan(cx_pipeline *p, const char *dir, int flags);
/* Commits the open write transaction now. */
int cx_pipeline_flush(cx_pipeline *p);
/* Writes a meta key inside the current batch. */
int cx_pipeline_meta_set(cx_pipeline *p, const char *key, const char *value);
void cx_pipeline_stats(const cx_pipeline *p, cx_stats *out);
/* Work still to do or running (0 = idle). */
int cx_pipeline_busy(const cx_pipeline *p);
/* Workers stuck past the time limit (their threads are still blocked). */
int cx_pipeline_hung(const cx_pipeline *p);
/* Stops taking new work (walks and queues are dropped; in-flight jobs still finish). */
void cx_pipeline_stop(cx_pipeline *p);

/* ------------------------------------------------------------------ image -> row */

/* What the engine made of one image, in the form the index stores (row.c). */
typedef struct {
    int width, height;
    int64_t taken_time;
    char caption[CE_MAX_CAPTION];
    char tags[1024]; /* space-separated words */
    float *concepts; /* n_concepts probabilities (malloc'd, may be NULL) */
    int n_concepts;
    float *pooled;    /* CE_POOLED_DIM (caller's buffer) */
    float confidence; /* of the caption, 0..1 */
    cm_text text;     /* what people wrote (cm_read) */
    char format[16];  /* "jpeg", "png", ... ("" = from the name) */
} cx_image_result;

/* After the CNN: with a captioner, the concept head and the caption search (caption,
 * tags, concepts); without one, the detections' labels as tags. Copies the pooled vector
 * into result->pooled (CE_POOLED_DIM floats, the caller's); result->concepts is malloc'd
 * (free it). The pipeline and the stage benchmark both call this. 0 or a negative errno. */
int cx_image_describe(ce_session *session, const ce_model *model, const ce_cnn_output *cnn,
                      cx_image_result *result, ce_err *err);
/* The format a file's name says ("jpeg", "png", "heif", ... or "other"), for status. */
const char *cx_format_of(const char *path);
/* The failure category of an engine error code ("corrupt", "too large", ...). */
const char *cx_failure_reason(int code);
/* The newest mtime of an image's XMP sidecars (IMG.ext.xmp, IMG.xmp), 0 when none. */
int64_t cx_sidecar_mtime(const char *image_path);
/* The failure category of an engine error code ("corrupt", "too large", ...). */
const char *cx_failure_reason(int code);
/* The newest mtime of an image's XMP sidecars (IMG.ext.xmp, IMG.xmp), 0 when none. */
int64_t cx_sidecar_mtime(const char *image_path);

/* The database row of a file and its description (pointers into path and result). */
void cx_image_row(const char *path, const struct stat *st, uint64_t fingerprint,
                  const cx_image_result *result, const char *model_version, capdb_image *row);

#endif
