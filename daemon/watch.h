/*
 * capsearchd's inotify watcher (watch.c): recursive watches over the roots on the
 * libuv loop, feeding the pipeline. Private to capsearchd.
 */
#ifndef CAPSEARCHD_WATCH_H
#define CAPSEARCHD_WATCH_H

#include "config.h"

typedef struct cd_watcher cd_watcher;

typedef struct {
    int watches;   /* folders watched */
    int unwatched; /* folders polled instead (watch limit, errors) */
} cd_watch_stats;

int cd_watch_new(uv_loop_t *loop, cx_pipeline *pipe, const cd_config *cfg, cd_watcher **out,
                 cx_err *err);
/* Stops reading events and frees (runs the loop until its handles are closed). */
void cd_watch_free(cd_watcher *w);
/* The config changed (or was first loaded): roots added are watched and scanned, roots
 * removed stop being watched (their rows stay in the index). */
void cd_watch_set_config(cd_watcher *w, const cd_config *cfg);
/* The pipeline's on_dir hook: watches a folder the walk enters. */
int cd_watch_on_dir(void *watcher, const char *path);
/* The pipeline's on_file hook: a file the walk found is submitted, or, when modified in
 * the last seconds (perhaps still being written), submitted once it has settled. */
void cd_watch_on_file(void *watcher, const char *path, int urgent);
void cd_watch_stats_get(const cd_watcher *w, cd_watch_stats *out);
/* Roots, resolved, one per line (for daemon.roots). */
void cd_watch_roots_text(const cd_watcher *w, char *buf, size_t size);

#endif
