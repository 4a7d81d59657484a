/*
 * Private to db/sqlite/: the SQLite backend's functions, one per capdb_backend entry
 * (internal.h); db/capdb.c reaches them only through capdb__sqlite_backend.
 */
#ifndef CAPDB_SQLITE_H
#define CAPDB_SQLITE_H

#include "internal.h"

/* conn.c */
int capdb_sq_open(const char *path, int mode, capdb **out, capdb_err *err);
void capdb_sq_close(capdb *db);
void capdb_sq_set_busy_timeout(capdb *db, int ms);
void capdb_sq_map_pages(capdb *db, int on);
int capdb_sq_damaged(capdb *db);
int capdb_sq_schema_version(capdb *db);
int capdb_sq_begin(capdb *db, capdb_err *err);
int capdb_sq_commit(capdb *db, capdb_err *err);
int capdb_sq_rollback(capdb *db);
int capdb_sq_meta_set(capdb *db, const char *key, const char *value, capdb_err *err);
int capdb_sq_meta_get(capdb *db, const char *key, char *value, size_t size, capdb_err *err);
int capdb_sq_counts_get(capdb *db, capdb_counts *out, capdb_err *err);

/* rows.c */
int capdb_sq_upsert(capdb *db, const capdb_image *img, capdb_err *err);
int capdb_sq_delete_path(capdb *db, const char *path, int64_t *deleted, capdb_err *err);
int capdb_sq_move_path(capdb *db, const char *from, const char *to, int64_t *moved,
                       capdb_err *err);
int capdb_sq_update_stat(capdb *db, int64_t id, uint64_t device, uint64_t inode, int64_t size,
                         int64_t mtime_ns, capdb_err *err);
int capdb_sq_update_text(capdb *db, int64_t id, const char *description, const char *keywords,
                         int64_t sidecar_mtime_ns, capdb_err *err);
int capdb_sq_get_row(capdb *db, int64_t id, capdb_row *out, capdb_err *err);
int capdb_sq_lookup_path(capdb *db, const char *path, capdb_file_state *state, capdb_err *err);
int capdb_sq_find_by_fingerprint(capdb *db, uint64_t fingerprint, int64_t size, char *path_out,
                                 size_t path_size, capdb_err *err);
int capdb_sq_foreach_path(capdb *db, const char *prefix,
                          int (*fn)(void *ctx, const char *path), void *ctx, capdb_err *err);
int capdb_sq_foreach_count(capdb *db, const char *group,
                           int (*fn)(void *ctx, const char *value, int64_t count), void *ctx,
                           capdb_err *err);
int capdb_sq_foreach_failure(capdb *db, int limit,
                             int (*fn)(void *ctx, const char *path, const char *error,
                                       int64_t when),
                             void *ctx, capdb_err *err);
int capdb_sq_get_pooled(capdb *db, const char *path, float *out, int n, capdb_err *err);

/* search.c */
int capdb_sq_search(capdb *db, const capdb_query *q, capdb_results *out, capdb_err *err);

#endif
