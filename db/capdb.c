/*
 * libcapdb's front: every public function, dispatched to the backend of the connection
 * (internal.h capdb_backend), plus what needs no backend (the default path, freeing
 * results, the error helper).
 *
 * The target decides the backend once, at capdb_open: a libpq URI is PostgreSQL,
 * anything else is an SQLite file path (a file may not be named "postgresql://...":
 * such a path is a URI by definition, as it is to libpq).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* A backend that lacks an entry answers -ENOTSUP with the entry's name. */
#define CALL(db, entry, err, ...)                                                                  \
    ((db)->backend->entry                                                                          \
         ? (db)->backend->entry(db, __VA_ARGS__)                                                   \
         : capdb__fail(err, -ENOTSUP, "%s: not available with %s", #entry, (db)->backend->name))

/* ------------------------------------------------------------------ connections */

int capdb_is_pg_target(const char *target)
{
    return target &&
           (strncmp(target, "postgresql://", 13) == 0 || strncmp(target, "postgres://", 11) == 0);
}

int capdb_open(const char *target, int mode, capdb **out, capdb_err *err)
{
    *out = NULL;
    if (err) err->damaged = 0;
    if (!target || !*target) return capdb__fail(err, -EINVAL, "no database path given");
    const capdb_backend *be =
        capdb_is_pg_target(target) ? &capdb__pg_backend : &capdb__sqlite_backend;
    return be->open(target, mode, out, err);
}

void capdb_close(capdb *db)
{
    if (db) db->backend->close(db);
}

const char *capdb_target_display(const char *target, char *buf, size_t size)
{
    if (!size) return buf;
    snprintf(buf, size, "%s", target ? target : "");
    if (!capdb_is_pg_target(buf)) return buf;
    /* scheme://user:PASSWORD@host... : the userinfo ends at the first '@' before the path */
    char *auth = strstr(buf, "://") + 3;
    char *at = strchr(auth, '@'), *slash = strchr(auth, '/');
    char *colon = strchr(auth, ':');
    if (at && (!slash || at < slash) && colon && colon < at) {
        size_t tail = strlen(at) + 1;
        if ((size_t)(colon + 4 - buf) + tail <= size) {
            memmove(colon + 4, at, tail);
            memcpy(colon + 1, "***", 3);
        }
    }
    /* ...?password=SECRET&... */
    for (char *p = strstr(buf, "password="); p; p = strstr(p + 1, "password=")) {
        if (p != buf && p[-1] != '?' && p[-1] != '&') continue;
        char *value = p + 9, *end = value + strcspn(value, "&");
        size_t tail = strlen(end) + 1;
        if ((size_t)(value + 3 - buf) + tail > size) break;
        memmove(value + 3, end, tail);
        memcpy(value, "***", 3);
    }
    return buf;
}

const char *capdb_backend_name(const capdb *db) { return db->backend->name; }
int capdb_is_shared(const capdb *db) { return db->backend->shared; }
void capdb_set_busy_timeout(capdb *db, int ms) { db->backend->set_busy_timeout(db, ms); }

void capdb_map_pages(capdb *db, int on)
{
    if (db->backend->map_pages) db->backend->map_pages(db, on);
}
int capdb_damaged(capdb *db) { return db->backend->damaged(db); }
int capdb_schema_version(capdb *db) { return db->backend->schema_version(db); }

int capdb_begin(capdb *db, capdb_err *err) { return db->backend->begin(db, err); }
int capdb_commit(capdb *db, capdb_err *err) { return db->backend->commit(db, err); }
int capdb_rollback(capdb *db) { return db->backend->rollback(db); }

/* ------------------------------------------------------------------ rows */

int capdb_upsert(capdb *db, const capdb_image *img, capdb_err *err)
{
    return db->backend->upsert(db, img, err);
}

int capdb_delete_path(capdb *db, const char *path, int64_t *deleted, capdb_err *err)
{
    return db->backend->delete_path(db, path, deleted, err);
}

int capdb_move_path(capdb *db, const char *from, const char *to, int64_t *moved, capdb_err *err)
{
    return db->backend->move_path(db, from, to, moved, err);
}

int capdb_update_stat(capdb *db, int64_t id, uint64_t device, uint64_t inode, int64_t size,
                      int64_t mtime_ns, capdb_err *err)
{
    return db->backend->update_stat(db, id, device, inode, size, mtime_ns, err);
}

int capdb_update_text(capdb *db, int64_t id, const char *description, const char *keywords,
                      int64_t sidecar_mtime_ns, capdb_err *err)
{
    return db->backend->update_text(db, id, description, keywords, sidecar_mtime_ns, err);
}

int capdb_get_row(capdb *db, int64_t id, capdb_row *out, capdb_err *err)
{
    return db->backend->get_row(db, id, out, err);
}

int capdb_lookup_path(capdb *db, const char *path, capdb_file_state *state, capdb_err *err)
{
    return db->backend->lookup_path(db, path, state, err);
}

int capdb_find_by_fingerprint(capdb *db, uint64_t fingerprint, int64_t size, char *path_out,
                              size_t path_size, capdb_err *err)
{
    return db->backend->find_by_fingerprint(db, fingerprint, size, path_out, path_size, err);
}

int capdb_foreach_path(capdb *db, const char *prefix, int (*fn)(void *ctx, const char *path),
                       void *ctx, capdb_err *err)
{
    return db->backend->foreach_path(db, prefix, fn, ctx, err);
}

/* ------------------------------------------------------------------ metadata, counts */

int capdb_meta_set(capdb *db, const char *key, const char *value, capdb_err *err)
{
    return db->backend->meta_set(db, key, value, err);
}

int capdb_meta_get(capdb *db, const char *key, char *value, size_t size, capdb_err *err)
{
    return db->backend->meta_get(db, key, value, size, err);
}

int capdb_counts_get(capdb *db, capdb_counts *out, capdb_err *err)
{
    return db->backend->counts_get(db, out, err);
}

int capdb_foreach_count(capdb *db, const char *group,
                        int (*fn)(void *ctx, const char *value, int64_t count), void *ctx,
                        capdb_err *err)
{
    return db->backend->foreach_count(db, group, fn, ctx, err);
}

int capdb_foreach_failure(capdb *db, int limit,
                          int (*fn)(void *ctx, const char *path, const char *error, int64_t when),
                          void *ctx, capdb_err *err)
{
    return db->backend->foreach_failure(db, limit, fn, ctx, err);
}

/* ------------------------------------------------------------------ search */

int capdb_search(capdb *db, const capdb_query *query, capdb_results *out, capdb_err *err)
{
    return db->backend->search(db, query, out, err);
}

int capdb_get_pooled(capdb *db, const char *path, float *out, int n, capdb_err *err)
{
    return db->backend->get_pooled(db, path, out, n, err);
}

/* ------------------------------------------------------------------ several nodes */

int capdb_work_enqueue(capdb *db, const char *path, int64_t size, int64_t mtime_ns, capdb_err *err)
{
    return CALL(db, work_enqueue, err, path, size, mtime_ns, err);
}

int capdb_work_claim(capdb *db, const char *node, int max, int lease_s, capdb_work_item **items,
                     int *n, capdb_err *err)
{
    *items = NULL;
    *n = 0;
    return CALL(db, work_claim, err, node, max, lease_s, items, n, err);
}

void capdb_work_items_free(capdb_work_item *items, int n)
{
    for (int i = 0; i < n; i++) {
        free(items[i].path);
        free(items[i].taken_from);
    }
    free(items);
}

int capdb_work_done(capdb *db, const char *node, const char *path, capdb_err *err)
{
    return CALL(db, work_done, err, node, path, err);
}

int capdb_work_release(capdb *db, const char *node, capdb_err *err)
{
    return CALL(db, work_release, err, node, err);
}

int capdb_work_renew(capdb *db, const char *node, const char *path, int lease_s,
                     capdb_err *err)
{
    return CALL(db, work_renew, err, node, path, lease_s, err);
}

int capdb_node_heartbeat(capdb *db, const capdb_node *node, capdb_err *err)
{
    return CALL(db, node_heartbeat, err, node, err);
}

int capdb_foreach_node(capdb *db, int (*fn)(void *ctx, const capdb_node *node), void *ctx,
                       capdb_err *err)
{
    return CALL(db, foreach_node, err, fn, ctx, err);
}

int capdb_work_counts_get(capdb *db, capdb_work_counts *out, capdb_err *err)
{
    memset(out, 0, sizeof *out);
    return CALL(db, work_counts, err, out, err);
}

/* ------------------------------------------------------------------ no backend needed */

const char *capdb_default_path(char *buf, size_t size)
{
    const char *env = getenv("CAPSEARCH_DB");
    if (env && *env) {
        snprintf(buf, size, "%s", env);
        return buf;
    }
    const char *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    if (xdg && *xdg == '/') snprintf(buf, size, "%s/capsearch/index.db", xdg);
    else snprintf(buf, size, "%s/.local/share/capsearch/index.db", home && *home ? home : "");
    if (access(buf, F_OK) == 0) return buf;
    static const char SYSTEM_DB[] = "/var/lib/capsearch/index.db";
    if (access(SYSTEM_DB, F_OK) == 0) snprintf(buf, size, "%s", SYSTEM_DB);
    return buf;
}

int capdb__fail(capdb_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void capdb_row_free(capdb_row *row)
{
    free(row->path);
    free(row->caption);
    free(row->tags);
    free(row->error);
    free(row->model_version);
    free(row->description);
    free(row->keywords);
    free(row->format);
    memset(row, 0, sizeof *row);
}

void capdb_results_free(capdb_results *res)
{
    if (!res) return;
    for (int i = 0; i < res->n; i++) {
        free(res->hits[i].path);
        free(res->hits[i].caption);
        free(res->hits[i].tags);
        free(res->hits[i].snippet);
        free(res->hits[i].description);
        free(res->hits[i].keywords);
    }
    free(res->hits);
    res->hits = NULL;
    res->n = 0;
}
