/*
 * Rows under the scanned prefixes whose file is gone or no longer wanted. The pass runs
 * when the pipeline is idle, so that renames found by content have already moved their
 * rows; a prefix that is not there at all (an unmounted disk) keeps its rows.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"

typedef struct {
    char **paths;
    size_t n, cap;
} path_list;

static int collect_path(void *ctx, const char *path);

void cx__run_vanished(cx_pipeline *p)
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
                if (missing || !cx_wants_path(p->opt.settings, l.paths[i])) {
                    cx_pipeline_removed(p, l.paths[i]);
                    gone++;
                }
            }
            cx_log(gone ? LOG_INFO : LOG_DEBUG, "%s: %zu indexed files checked, %lld gone", v->path,
                   l.n, (long long)gone);
        }
        for (size_t i = 0; i < l.n; i++) free(l.paths[i]);
        free(l.paths);
        free(v->path);
        free(v);
    }
    cx__writer_flush(p);
}

void cx__vanished_clear(cx_pipeline *p)
{
    while (p->vanished) {
        prefix *x = p->vanished;
        p->vanished = x->next;
        free(x->path);
        free(x);
    }
}

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
