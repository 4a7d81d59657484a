/*
 * The folder walk: depth first, incremental (WALK_BUDGET entries per loop iteration,
 * paused while the backlog holds queue_max files), never following symlinks. Folders go
 * through the settings' filters and the program's on_dir hook (capsearchd adds its
 * inotify watch there); files through the filters and on_file (or straight to the queue).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"

int cx__walk_step(cx_pipeline *p, int budget)
{
    int done = 0;
    const cx_settings *cfg = p->opt.settings;
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
                cx_log(e == ENOENT ? LOG_INFO : LOG_WARNING, "cannot read folder %s: %s%s", path,
                       strerror(e), e == EACCES ? " (its files are not indexed)" : "");
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
        char *child = cx_join_path(p->walk_path, de->d_name);
        if (!child) continue;
        unsigned char type = de->d_type;
        if (type == DT_UNKNOWN) {
            struct stat st;
            if (lstat(child, &st) == 0)
                type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_LNK;
        }
        if (type == DT_DIR && cx_wants_dir(cfg, de->d_name, child)) {
            walk_dir *d = malloc(sizeof *d);
            if (d) {
                d->path = child;
                d->urgent = p->walk_urgent;
                d->next = p->walk_stack;
                p->walk_stack = d;
                child = NULL;
            }
        } else if (type == DT_REG && cx_wants_file(cfg, de->d_name, child)) {
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

void cx__walk_clear(cx_pipeline *p)
{
    while (p->walk_stack) {
        walk_dir *d = p->walk_stack;
        p->walk_stack = d->next;
        free(d->path);
        free(d);
    }
    if (p->walk_dir_handle) closedir(p->walk_dir_handle);
    p->walk_dir_handle = NULL;
}
