/*
 * capsearchd's inotify watcher (daemon_watch.c): recursive watches over the roots on the
 * libuv loop, feeding the pipeline. Private to capsearchd.
 */
#ifndef CAPSEARCHD_WATCH_H
#define CAPSEARCHD_WATCH_H

#include "indexer.h"

typedef struct dw_watcher dw_watcher;

typedef struct {
    int watches;            /* folders watched */
    int unwatched;          /* folders polled instead (watch limit, errors) */
    int missing_roots;      /* configured roots that are not there (unmounted?) */
    int64_t overflows;      /* IN_Q_OVERFLOW (real or simulated) */
    int64_t events;
} dw_stats;

int  dw_new(uv_loop_t *loop, cx_pipeline *pipe, const cx_config *cfg, dw_watcher **out,
            char *err, size_t err_size);
/* Stops reading events and frees (runs the loop until its handles are closed). */
void dw_free(dw_watcher *w);
/* The config changed (or was first loaded): roots added are watched and scanned, roots
 * removed stop being watched (their rows stay in the index). */
void dw_set_config(dw_watcher *w, const cx_config *cfg);
/* The pipeline's on_dir hook: watches a folder the walk enters. */
int  dw_on_dir(void *watcher, const char *path);
/* The pipeline's on_file hook: a file the walk found is submitted, or, when modified in
 * the last seconds (perhaps still being written), submitted once it has settled. */
void dw_on_file(void *watcher, const char *path, int urgent);
void dw_get_stats(const dw_watcher *w, dw_stats *out);
/* Roots, resolved, one per line (for daemon.roots). */
void dw_roots_text(const dw_watcher *w, char *buf, size_t size);

#endif
