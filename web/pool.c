/*
 * Database handles for the request threads: a small free list of read-only connections,
 * each checked against the file now at the path (a replaced index — a new inode — or a
 * damaged one is closed and reopened, so the server follows `mv new.db index.db`).
 * Rows by id come from libcapdb (capdb_get_row): the schema has one owner.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "web_internal.h"

struct web_conn {
    capdb *db;
    dev_t dev;
    ino_t ino;
};

static void conn_close(web_conn *c)
{
    if (!c) return;
    capdb_close(c->db);
    free(c);
}

void pool_init(web_pool *p, const char *path)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
    p->path = path;
}

void pool_destroy(web_pool *p)
{
    for (int i = 0; i < p->n_idle; i++) conn_close(p->idle[i]);
    p->n_idle = 0;
    pthread_mutex_destroy(&p->lock);
}

__attribute__((format(printf, 3, 4))) static int fail(capdb_err *err, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return rc;
}

static int conn_open(const char *path, const struct stat *st, web_conn **out, capdb_err *err)
{
    web_conn *c = calloc(1, sizeof *c);
    if (!c) return fail(err, -ENOMEM, "out of memory");
    c->dev = st->st_dev;
    c->ino = st->st_ino;
    int rc = capdb_open(path, CAPDB_OPEN_READONLY, &c->db, err);
    if (rc < 0) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int pool_get(web_pool *p, web_conn **out, capdb_err *err)
{
    struct stat st;
    /* a database server has no file to replace under us: its connections stay good (a
     * lost one reconnects between statements; capdb) */
    if (capdb_is_pg_target(p->path)) memset(&st, 0, sizeof st);
    else if (stat(p->path, &st) != 0) {
        if (errno == ENOENT)
            return fail(err, -ENOENT,
                        "no index at %s (create one with 'capsearch index DIR', "
                        "or start capsearchd)",
                        p->path);
        return fail(err, -errno, "%s: %s", p->path, strerror(errno));
    }
    web_conn *stale[16];
    int n_stale = 0;
    web_conn *c = NULL;
    pthread_mutex_lock(&p->lock);
    while (p->n_idle > 0 && !c) {
        web_conn *t = p->idle[--p->n_idle];
        if (t->dev == st.st_dev && t->ino == st.st_ino) c = t;
        else stale[n_stale++] = t;
    }
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < n_stale; i++) conn_close(stale[i]);
    if (c && capdb_damaged(c->db)) {
        conn_close(c);
        c = NULL;
    }
    if (c) {
        *out = c;
        return 0;
    }
    return conn_open(p->path, &st, out, err);
}

void pool_put(web_pool *p, web_conn *c, int broken)
{
    if (!c) return;
    if (!broken) {
        pthread_mutex_lock(&p->lock);
        if (p->n_idle < (int)(sizeof p->idle / sizeof p->idle[0])) {
            p->idle[p->n_idle++] = c;
            c = NULL;
        }
        pthread_mutex_unlock(&p->lock);
    }
    conn_close(c);
}

capdb *conn_db(web_conn *c) { return c->db; }

int conn_row(web_conn *c, int64_t id, web_row *row, capdb_err *err)
{
    return capdb_get_row(c->db, id, row, err);
}

void row_free(web_row *row) { capdb_row_free(row); }
