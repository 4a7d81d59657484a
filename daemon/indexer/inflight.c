/*
 * The crash marker: before the engine opens a file, its path is committed to the meta key
 * opt.inflight_key ("attempt<TAB>path" lines). A restart that finds a path there retries
 * it once, and records it failed the second time: a file that kills the process (a
 * decoder bug, the OOM killer) must not kill it in a loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"

/* The marker lists "attempt<TAB>path" lines of the files the engine is working on. */
void cx__write_inflight(cx_pipeline *p, int commit_now)
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
    cx__write_meta(p, p->opt.inflight_key, buf);
    free(buf);
    if (commit_now) cx__writer_flush(p);
}

void cx__recover_inflight(cx_pipeline *p)
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
                    cx_log(LOG_ERR,
                           "%s: the indexer died twice while reading it; recorded "
                           "failed (retried when the file changes)",
                           path);
                    cx__write_failure(p, path, &st, 0,
                                      "the indexer crashed or was killed twice "
                                      "while reading this file",
                                      "crashed");
                }
            } else {
                cx_log(LOG_NOTICE, "%s was being read when the indexer stopped; trying again",
                       path);
                cx_pipeline_submit(p, path, 1);
                entry *e = cx__entry_find(p, path);
                if (e) e->attempt = attempt;
            }
        }
    } else if (found < 0) {
        cx_log(LOG_WARNING, "reading %s: %s", p->opt.inflight_key, err.msg);
    }
    free(buf);
    cx__write_meta(p, p->opt.inflight_key, "");
    cx__writer_flush(p);
}
