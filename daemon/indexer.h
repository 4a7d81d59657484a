/*
 * libcapindexer: the scan-and-caption pipeline shared by capsearchd and `capsearch index`.
 *
 *   log.c          one logging function (syslog priorities, journal-aware)
 *   config.c       capsearchd.conf parser + which files and folders are wanted
 *   fingerprint.c  a fast 64-bit content hash (XXH64) of a whole file
 *   pipeline.c     bounded queue -> uv_queue_work workers -> batched writer, and the
 *                  incremental folder walk that feeds it
 *
 * Threads: everything here runs on the libuv loop thread except the work callbacks
 * inside pipeline.c, which only touch their own job (path in, result struct out) and
 * their own ce_session. Only the loop thread touches the database.
 */
#ifndef CAPINDEXER_H
#define CAPINDEXER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <syslog.h>
#include <uv.h>

#include "capdb.h"
#include "capengine.h"

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

/* ------------------------------------------------------------------ terminal safety */

/* printable.c: bytes of the printable character at s (1..4), or 0 when the byte at s
 * must not reach a terminal (a control character or invalid UTF-8). */
int   cx_printable_len(const char *s);
/* Writes s with each unsafe byte as '?'. */
void  cx_fputs_printable(const char *s, FILE *out);
/* Copies s into buf (size > 0, always terminated, never cutting a character) with each
 * unsafe byte as '?'; returns buf. */
char *cx_printable(const char *s, char *buf, size_t size);

/* ------------------------------------------------------------------ config */

typedef struct {
    char **roots;           int n_roots;        /* absolute folders to watch / walk */
    char **excludes;        int n_excludes;     /* fnmatch globs on a name, or on the whole
                                                   path when the glob holds a '/' */
    char **extensions;      int n_extensions;   /* lower case, no dot */
    int workers;            /* model runs in parallel */
    int batch_size;         /* results per write transaction */
    int batch_ms;           /* ... or this long after the first one */
    int64_t max_pixels;     /* images whose header claims more are failures */
    int time_limit_s;       /* per image; a file that takes longer is recorded failed */
    int log_level;          /* LOG_* */
    char *db_path;          /* NULL = capdb_default_path / the service default */
    char *models_dir;       /* NULL = ce_default_models_dir() */
    int queue_max;          /* files waiting before the walk / watcher hold back */
    int poll_interval_s;    /* rescan of folders that could not be watched */
    int max_watches;        /* 0 = only the kernel's limit; N simulates a limit of N */
    int debug_overflow_every; /* 0 = off; N: every N inotify events act as IN_Q_OVERFLOW
                                 (the unread events are dropped), to test the rescan */
} cx_config;

#define CX_CONFIG_ERR_MAX 512

void cx_config_defaults(cx_config *cfg);
void cx_config_free(cx_config *cfg);
/* Parses "key = value" lines onto cfg (which holds the defaults or earlier values).
 * source names the text in messages ("FILE:LINE: ..."). Never reads past len. */
int  cx_config_parse(cx_config *cfg, const char *text, size_t len, const char *source,
                     char *err, size_t err_size);
int  cx_config_load_file(cx_config *cfg, const char *path, char *err, size_t err_size);
/* Sets one key from a command-line flag, with the same checks as the file. */
int  cx_config_set(cx_config *cfg, const char *key, const char *value,
                   char *err, size_t err_size);
/* /etc/capsearch/capsearchd.conf for root, else $XDG_CONFIG_HOME/capsearch/capsearchd.conf */
const char *cx_config_default_path(char *buf, size_t size);

/* Name-level filters (name = last path component, path = the whole path). */
int cx_config_wants_dir(const cx_config *cfg, const char *name, const char *path);
int cx_config_wants_file(const cx_config *cfg, const char *name, const char *path);
/* Every component of path below root passes the filters (used on rows of the index). */
int cx_config_wants_path(const cx_config *cfg, const char *path);

/* ------------------------------------------------------------------ fingerprint */

/* XXH64 of the whole file (seed 0). Returns 0 or -errno. */
int cx_fingerprint_file(const char *path, uint64_t *out);
uint64_t cx_xxh64(const void *data, size_t len, uint64_t seed);

/* ------------------------------------------------------------------ pipeline */

typedef struct cx_pipeline cx_pipeline;

typedef struct {
    int64_t queued;          /* waiting (both queues) */
    int64_t in_flight;       /* hashing or captioning right now */
    int64_t indexed;         /* rows written with a model result (ok) */
    int64_t failed;          /* rows written as failed */
    int64_t moved;           /* rows kept across a rename (no model run) */
    int64_t removed;         /* rows deleted */
    int64_t unchanged;       /* files skipped as unchanged */
    int64_t model_runs;      /* images handed to the engine */
    int64_t seen;            /* files the walk found (progress total) */
    int scanning;            /* a walk is in progress */
    int64_t write_errors;    /* batches that could not start or commit (disk full, read-only,
                                locked past the retries): their changes wait for the next scan */
} cx_stats;

typedef struct {
    uv_loop_t *loop;
    capdb *db;                    /* opened for writing; the pipeline owns transactions */
    const ce_model *model;
    const cx_config *cfg;         /* read at each use: the daemon swaps it on reload */
    const char *inflight_key;     /* meta key of the "model running on" marker, e.g.
                                     "daemon.inflight"; a restart after a crash reads it */
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
} cx_pipeline_options;

int  cx_pipeline_new(const cx_pipeline_options *opt, cx_pipeline **out, char *err, size_t err_size);
/* Commits what is pending and frees; jobs still in workers must have finished
 * (cx_pipeline_busy() == 0) or be abandoned ones: those are waited for by the loop. */
void cx_pipeline_free(cx_pipeline *p);

/* A file appeared or changed (urgent: ahead of the walk backlog). */
void cx_pipeline_submit(cx_pipeline *p, const char *path, int urgent);
/* Its metadata changed (chmod, chown): look again even if size and mtime are the same
 * (a file recorded failed as unreadable becomes readable). Costs a hash, not a model run,
 * when the content is unchanged. */
void cx_pipeline_recheck(cx_pipeline *p, const char *path);
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
int  cx_pipeline_flush(cx_pipeline *p);
/* Writes a meta key inside the current batch. */
int  cx_pipeline_meta_set(cx_pipeline *p, const char *key, const char *value);
void cx_pipeline_stats(const cx_pipeline *p, cx_stats *out);
/* Work still to do or running (0 = idle). */
int  cx_pipeline_busy(const cx_pipeline *p);
/* Workers stuck past the time limit (their threads are still blocked). */
int  cx_pipeline_hung(const cx_pipeline *p);
/* Stops taking new work (walks and queues are dropped; in-flight jobs still finish). */
void cx_pipeline_stop(cx_pipeline *p);

#endif
