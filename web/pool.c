/*
 * Database handles for the request threads: a small free list of read-only connections,
 * each checked against the file now at the path (a replaced index — a new inode — or a
 * damaged one is closed and reopened, so the server follows `mv new.db index.db`).
 *
 * Rows by id: capdb.h has no "row by id" call yet, so each handle also holds one
 * read-only SQLite connection with one prepared SELECT on the images table (schema
 * version 1 columns). It never writes and never opens the file outside SQLite.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "web_internal.h"

#define BUSY_TIMEOUT_MS 2000

struct web_conn {
    capdb *db;
    sqlite3 *sql;
    sqlite3_stmt *row;
    dev_t dev;
    ino_t ino;
};

static void conn_close(web_conn *c)
{
    if (!c) return;
    sqlite3_finalize(c->row);
    sqlite3_close(c->sql);
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
    int s = sqlite3_open_v2(path, &c->sql, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (s == SQLITE_OK) {
        sqlite3_busy_timeout(c->sql, BUSY_TIMEOUT_MS);
        s = sqlite3_prepare_v3(c->sql,
                               "SELECT path, size, mtime_ns, fingerprint, width, height,"
                               " taken_time, status, error, caption, tags, model_version"
                               " FROM images WHERE id = ?1",
                               -1, SQLITE_PREPARE_PERSISTENT, &c->row, NULL);
    }
    if (s != SQLITE_OK) {
        rc = s == SQLITE_BUSY ? -EBUSY : -EIO;
        fail(err, rc, "%s: %s", path, c->sql ? sqlite3_errmsg(c->sql) : sqlite3_errstr(s));
        conn_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

int pool_get(web_pool *p, web_conn **out, capdb_err *err)
{
    struct stat st;
    if (stat(p->path, &st) != 0) {
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

static char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}

int conn_row(web_conn *c, int64_t id, web_row *row, capdb_err *err)
{
    memset(row, 0, sizeof *row);
    sqlite3_reset(c->row);
    sqlite3_bind_int64(c->row, 1, id);
    int s = sqlite3_step(c->row);
    if (s == SQLITE_DONE) {
        sqlite3_reset(c->row);
        return 0;
    }
    if (s != SQLITE_ROW) {
        int rc = s == SQLITE_BUSY ? -EBUSY : -EIO;
        err->damaged = s == SQLITE_CORRUPT || s == SQLITE_NOTADB;
        snprintf(err->msg, sizeof err->msg, "reading image %lld: %s", (long long)id,
                 sqlite3_errmsg(c->sql));
        sqlite3_reset(c->row);
        return rc;
    }
    row->id = id;
    row->path = col_text(c->row, 0);
    row->size = sqlite3_column_int64(c->row, 1);
    row->mtime_ns = sqlite3_column_int64(c->row, 2);
    row->fingerprint = (uint64_t)sqlite3_column_int64(c->row, 3);
    row->width = sqlite3_column_int(c->row, 4);
    row->height = sqlite3_column_int(c->row, 5);
    row->taken_time = sqlite3_column_int64(c->row, 6);
    row->status = sqlite3_column_int(c->row, 7);
    row->error = col_text(c->row, 8);
    row->caption = col_text(c->row, 9);
    row->tags = col_text(c->row, 10);
    row->model_version = col_text(c->row, 11);
    sqlite3_reset(c->row);
    if (!row->path) {
        row_free(row);
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return -ENOMEM;
    }
    return 1;
}

void row_free(web_row *row)
{
    free(row->path);
    free(row->caption);
    free(row->tags);
    free(row->error);
    free(row->model_version);
    memset(row, 0, sizeof *row);
}
