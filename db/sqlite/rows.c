/*
 * Rows: upsert, delete and move by path, lookups, and the vector blobs beside them.
 * Every multi-statement change runs in a savepoint, so it is atomic on its own and
 * nests inside a caller's capdb_begin / capdb_commit batch.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "caputf8.h"
#include "sqlite.h"


static int savepoint(capdb *db, const char *sql, capdb_err *err);
static int put_vectors(capdb *db, int64_t id, const capdb_image *img, capdb_err *err);
static int delete_range(capdb *db, const char *dir, int64_t *deleted, capdb_err *err);

int capdb_sq_upsert(capdb *db, const capdb_image *img, capdb_err *err)
{
    if (!img || !img->path || !*img->path) return capdb__fail(err, -EINVAL, "upsert: no path");
    if (img->n_concepts < 0 || img->n_pooled < 0 || (img->n_concepts && !img->concepts) ||
        (img->n_pooled && !img->pooled))
        return capdb__fail(err, -EINVAL, "upsert: bad vector sizes");
    char *words = capdb__path_words(img->path);
    if (!words) return capdb__fail(err, -ENOMEM, "out of memory");

    int rc = savepoint(db, "SAVEPOINT upsert", err);
    if (rc) {
        free(words);
        return rc;
    }
    sqlite3_stmt *st = NULL;
    int64_t id = 0;
    rc = capdb__stmt(db, STMT_UPSERT, &st, err);
    if (rc == 0) {
        int ok = img->status == CAPDB_STATUS_OK;
        sqlite3_bind_text(st, 1, img->path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (int64_t)img->device);
        sqlite3_bind_int64(st, 3, (int64_t)img->inode);
        sqlite3_bind_int64(st, 4, img->size);
        sqlite3_bind_int64(st, 5, img->mtime_ns);
        sqlite3_bind_int64(st, 6, (int64_t)img->fingerprint);
        sqlite3_bind_int(st, 7, img->width);
        sqlite3_bind_int(st, 8, img->height);
        sqlite3_bind_int64(st, 9, img->taken_time);
        sqlite3_bind_int(st, 10, ok ? CAPDB_STATUS_OK : CAPDB_STATUS_FAILED);
        if (!ok) sqlite3_bind_text(st, 11, img->error ? img->error : "failed", -1, SQLITE_STATIC);
        if (img->caption) sqlite3_bind_text(st, 12, img->caption, -1, SQLITE_STATIC);
        if (img->tags) sqlite3_bind_text(st, 13, img->tags, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 14, words, -1, SQLITE_STATIC);
        if (img->model_version) sqlite3_bind_text(st, 15, img->model_version, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 16, (int64_t)time(NULL));
        if (img->description && *img->description)
            sqlite3_bind_text(st, 17, img->description, -1, SQLITE_STATIC);
        if (img->keywords && *img->keywords)
            sqlite3_bind_text(st, 18, img->keywords, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 19, img->sidecar_mtime_ns);
        if (img->format) sqlite3_bind_text(st, 20, img->format, -1, SQLITE_STATIC);
        if (!ok && img->reason) sqlite3_bind_text(st, 21, img->reason, -1, SQLITE_STATIC);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            id = sqlite3_column_int64(st, 0);
            step = sqlite3_step(st);
        }
        if (step != SQLITE_DONE) rc = capdb__sqlfail(db, err, step, "storing an image");
        sqlite3_reset(st);
    }
    if (rc == 0) rc = put_vectors(db, id, img, err);
    if (rc == 0 && img->status == CAPDB_STATUS_OK && img->model_version && *img->model_version &&
        strcmp(img->model_version, db->model_version_seen) != 0) {
        rc = capdb_sq_meta_set(db, "model_version", img->model_version, err);
        if (rc == 0)
            snprintf(db->model_version_seen, sizeof db->model_version_seen, "%s",
                     img->model_version);
    }
    free(words);
    if (rc) {
        savepoint(db, "ROLLBACK TO upsert", NULL);
        savepoint(db, "RELEASE upsert", NULL);
        return rc;
    }
    return savepoint(db, "RELEASE upsert", err);
}

int capdb_sq_update_stat(capdb *db, int64_t id, uint64_t device, uint64_t inode, int64_t size,
                      int64_t mtime_ns, capdb_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = capdb__stmt(db, STMT_UPDATE_STAT, &st, err);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)device);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)inode);
    sqlite3_bind_int64(st, 4, size);
    sqlite3_bind_int64(st, 5, mtime_ns);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : capdb__sqlfail(db, err, rc, "refreshing a file's stat");
}

static char *column_text(sqlite3_stmt *st, int i, int *oom)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    char *copy = t ? strdup((const char *)t) : NULL;
    if (t && !copy) *oom = 1;
    return copy;
}

int capdb_sq_get_row(capdb *db, int64_t id, capdb_row *row, capdb_err *err)
{
    memset(row, 0, sizeof *row);
    sqlite3_stmt *st = NULL;
    int rc = capdb__stmt(db, STMT_GET_ROW, &st, err);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    int step = sqlite3_step(st);
    if (step == SQLITE_DONE) {
        sqlite3_reset(st);
        return 0;
    }
    if (step != SQLITE_ROW) {
        rc = capdb__sqlfail(db, err, step, "reading an image row");
        sqlite3_reset(st);
        return rc;
    }
    int oom = 0;
    row->id = id;
    row->path = column_text(st, 0, &oom);
    row->size = sqlite3_column_int64(st, 1);
    row->mtime_ns = sqlite3_column_int64(st, 2);
    row->fingerprint = (uint64_t)sqlite3_column_int64(st, 3);
    row->width = sqlite3_column_int(st, 4);
    row->height = sqlite3_column_int(st, 5);
    row->taken_time = sqlite3_column_int64(st, 6);
    row->status = sqlite3_column_int(st, 7);
    row->error = column_text(st, 8, &oom);
    row->caption = column_text(st, 9, &oom);
    row->tags = column_text(st, 10, &oom);
    row->model_version = column_text(st, 11, &oom);
    row->description = column_text(st, 12, &oom);
    row->keywords = column_text(st, 13, &oom);
    row->format = column_text(st, 14, &oom);
    row->indexed_time = sqlite3_column_int64(st, 15);
    sqlite3_reset(st);
    if (oom || !row->path) {
        capdb_row_free(row);
        return capdb__fail(err, -ENOMEM, "out of memory");
    }
    return 1;
}

int capdb_sq_update_text(capdb *db, int64_t id, const char *description, const char *keywords,
                      int64_t sidecar_mtime_ns, capdb_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = capdb__stmt(db, STMT_UPDATE_TEXT, &st, err);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    if (description && *description) sqlite3_bind_text(st, 2, description, -1, SQLITE_STATIC);
    if (keywords && *keywords) sqlite3_bind_text(st, 3, keywords, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, sidecar_mtime_ns);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : capdb__sqlfail(db, err, rc, "updating what people wrote");
}

int capdb_sq_delete_path(capdb *db, const char *path, int64_t *deleted, capdb_err *err)
{
    int64_t n = 0;
    if (deleted) *deleted = 0;
    if (!path || !*path) return capdb__fail(err, -EINVAL, "delete: no path");
    int rc = savepoint(db, "SAVEPOINT del", err);
    if (rc) return rc;
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(db->sql, "DELETE FROM images WHERE path = ?1", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
    }
    if (rc == SQLITE_DONE) {
        n = sqlite3_changes64(db->sql);
        rc = delete_range(db, path, &n, err);
    } else {
        rc = capdb__sqlfail(db, err, rc, "deleting a path");
    }
    if (rc) {
        savepoint(db, "ROLLBACK TO del", NULL);
        savepoint(db, "RELEASE del", NULL);
        return rc;
    }
    if (deleted) *deleted = n;
    return savepoint(db, "RELEASE del", err);
}

/* A file rename moves one row; a directory rename moves every row under it. Whatever
 * the destination held is replaced, as rename(2) replaces it. */
int capdb_sq_move_path(capdb *db, const char *from, const char *to, int64_t *moved, capdb_err *err)
{
    if (moved) *moved = 0;
    if (!from || !to || !*from || !*to) return capdb__fail(err, -EINVAL, "move: no path");
    if (strcmp(from, to) == 0) return 0;
    size_t from_len = strlen(from);
    if (strncmp(to, from, from_len) == 0 && to[from_len] == '/')
        return capdb__fail(err, -EINVAL, "move: %s is inside %s", to, from);

    int rc = savepoint(db, "SAVEPOINT mv", err);
    if (rc) return rc;

    /* Collect first, update after: never modify the range a statement is walking. */
    int64_t *ids = NULL;
    char **paths = NULL;
    size_t n = 0, cap = 0;
    char *lo = NULL, *hi = NULL;
    sqlite3_stmt *st = NULL;
    if (capdb__dir_bounds(from, &lo, &hi) != 0) rc = capdb__fail(err, -ENOMEM, "out of memory");
    if (rc == 0) {
        int prc = sqlite3_prepare_v2(
            db->sql, "SELECT id, path FROM images WHERE path = ?1 OR (path >= ?2 AND path < ?3)",
            -1, &st, NULL);
        if (prc != SQLITE_OK) rc = capdb__sqlfail(db, err, prc, "finding rows to move");
    }
    if (rc == 0) {
        sqlite3_bind_text(st, 1, from, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, lo, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, hi, -1, SQLITE_STATIC);
        int step;
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                int64_t *ni = realloc(ids, cap * sizeof *ids);
                if (ni) ids = ni;
                char **np = realloc(paths, cap * sizeof *paths);
                if (np) paths = np;
                if (!ni || !np) break;
            }
            ids[n] = sqlite3_column_int64(st, 0);
            paths[n] = strdup((const char *)sqlite3_column_text(st, 1));
            if (!paths[n]) break;
            n++;
        }
        if (step == SQLITE_ROW) rc = capdb__fail(err, -ENOMEM, "out of memory");
        else if (step != SQLITE_DONE) rc = capdb__sqlfail(db, err, step, "finding rows to move");
    }
    sqlite3_finalize(st);
    st = NULL;

    if (rc == 0 && n > 0) rc = capdb_sq_delete_path(db, to, NULL, err);
    if (rc == 0 && n > 0) {
        int prc = sqlite3_prepare_v2(
            db->sql, "UPDATE images SET path = ?1, path_words = ?2 WHERE id = ?3", -1, &st, NULL);
        if (prc != SQLITE_OK) rc = capdb__sqlfail(db, err, prc, "moving rows");
    }
    size_t to_len = strlen(to);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *suffix = paths[i] + from_len;
        char *np = malloc(to_len + strlen(suffix) + 1);
        char *words =
            np ? (memcpy(np, to, to_len), strcpy(np + to_len, suffix), capdb__path_words(np))
               : NULL;
        if (!words) {
            rc = capdb__fail(err, -ENOMEM, "out of memory");
        } else {
            sqlite3_reset(st);
            sqlite3_bind_text(st, 1, np, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, words, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, ids[i]);
            int step = sqlite3_step(st);
            if (step != SQLITE_DONE) rc = capdb__sqlfail(db, err, step, "moving a row");
        }
        free(words);
        free(np);
    }
    sqlite3_finalize(st);
    for (size_t i = 0; i < n; i++) free(paths[i]);
    free(paths);
    free(ids);
    free(lo);
    free(hi);
    if (rc) {
        savepoint(db, "ROLLBACK TO mv", NULL);
        savepoint(db, "RELEASE mv", NULL);
        return rc;
    }
    if (moved) *moved = (int64_t)n;
    return savepoint(db, "RELEASE mv", err);
}

int capdb_sq_lookup_path(capdb *db, const char *path, capdb_file_state *state, capdb_err *err)
{
    memset(state, 0, sizeof *state);
    sqlite3_stmt *st = NULL;
    int rc = capdb__stmt(db, STMT_LOOKUP, &st, err);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        state->id = sqlite3_column_int64(st, 0);
        state->device = (uint64_t)sqlite3_column_int64(st, 1);
        state->inode = (uint64_t)sqlite3_column_int64(st, 2);
        state->size = sqlite3_column_int64(st, 3);
        state->mtime_ns = sqlite3_column_int64(st, 4);
        state->fingerprint = (uint64_t)sqlite3_column_int64(st, 5);
        state->status = sqlite3_column_int(st, 6);
        const char *mv = (const char *)sqlite3_column_text(st, 7);
        snprintf(state->model_version, sizeof state->model_version, "%s", mv ? mv : "");
        state->sidecar_mtime_ns = sqlite3_column_int64(st, 8);
    } else if (step != SQLITE_DONE) {
        rc = capdb__sqlfail(db, err, step, "looking up a path");
    }
    sqlite3_reset(st);
    return rc;
}

int capdb_sq_find_by_fingerprint(capdb *db, uint64_t fingerprint, int64_t size, char *path_out,
                              size_t path_size, capdb_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = capdb__stmt(db, STMT_FIND_FP, &st, err);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, (int64_t)fingerprint);
    sqlite3_bind_int64(st, 2, size);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        if (path_size)
            snprintf(path_out, path_size, "%s", (const char *)sqlite3_column_text(st, 0));
        rc = 1;
    } else if (step != SQLITE_DONE) {
        rc = capdb__sqlfail(db, err, step, "finding a fingerprint");
    }
    sqlite3_reset(st);
    return rc;
}

/* Pages through the paths in order, a batch at a time, so fn may change the table
 * (delete the row it was given) without disturbing a running statement. */
int capdb_sq_foreach_path(capdb *db, const char *prefix, int (*fn)(void *ctx, const char *path),
                       void *ctx, capdb_err *err)
{
    enum { BATCH = 512 };
    char *lo = NULL, *hi = NULL;
    int all = !prefix || !*prefix;
    if (!all && capdb__dir_bounds(prefix, &lo, &hi) != 0)
        return capdb__fail(err, -ENOMEM, "out of memory");
    sqlite3_stmt *st = NULL;
    int rc =
        sqlite3_prepare_v2(db->sql,
                           "SELECT path FROM images WHERE path > ?1 AND (?2 IS NULL OR"
                           " ((path >= ?2 AND path < ?3) OR path = ?4)) ORDER BY path LIMIT ?5",
                           -1, &st, NULL);
    if (rc != SQLITE_OK) {
        free(lo);
        free(hi);
        return capdb__sqlfail(db, err, rc, "listing paths");
    }
    char *batch[BATCH];
    char *last = strdup("");
    int stop = 0;
    rc = last ? 0 : capdb__fail(err, -ENOMEM, "out of memory");
    while (rc == 0 && !stop) {
        int n = 0, step = SQLITE_DONE;
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, last, -1, SQLITE_STATIC);
        if (!all) {
            sqlite3_bind_text(st, 2, lo, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, hi, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 4, prefix, -1, SQLITE_STATIC);
        }
        sqlite3_bind_int(st, 5, BATCH);
        while (n < BATCH && (step = sqlite3_step(st)) == SQLITE_ROW) {
            batch[n] = strdup((const char *)sqlite3_column_text(st, 0));
            if (!batch[n]) break;
            n++;
        }
        if (n < BATCH && step != SQLITE_DONE)
            rc = step == SQLITE_ROW ? capdb__fail(err, -ENOMEM, "out of memory")
                                    : capdb__sqlfail(db, err, step, "listing paths");
        sqlite3_reset(st);
        for (int i = 0; i < n; i++) {
            if (rc == 0 && !stop) stop = fn(ctx, batch[i]) != 0;
            if (i < n - 1) free(batch[i]);
        }
        free(last);
        last = n ? batch[n - 1] : NULL;
        if (n < BATCH) break;
    }
    free(last);
    sqlite3_finalize(st);
    free(lo);
    free(hi);
    return rc;
}

int capdb_sq_foreach_count(capdb *db, const char *group,
                        int (*fn)(void *ctx, const char *value, int64_t count), void *ctx,
                        capdb_err *err)
{
    const char *sql = capdb__count_sql(group);
    if (!sql) return capdb__fail(err, -EINVAL, "no count by '%s'", group);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return capdb__sqlfail(db, err, rc, "counting images");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (fn(ctx, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1))) break;
    int code =
        rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : capdb__sqlfail(db, err, rc, "counting images");
    sqlite3_finalize(st);
    return code;
}

int capdb_sq_foreach_failure(capdb *db, int limit,
                          int (*fn)(void *ctx, const char *path, const char *error, int64_t when),
                          void *ctx, capdb_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->sql,
                                "SELECT path, error, indexed_time FROM images WHERE status = 1"
                                " ORDER BY indexed_time DESC, id DESC LIMIT ?1",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) return capdb__sqlfail(db, err, rc, "listing failures");
    sqlite3_bind_int(st, 1, limit);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *e = (const char *)sqlite3_column_text(st, 1);
        if (fn(ctx, (const char *)sqlite3_column_text(st, 0), e ? e : "",
               sqlite3_column_int64(st, 2)))
            break;
    }
    rc = (step == SQLITE_ROW || step == SQLITE_DONE)
             ? 0
             : capdb__sqlfail(db, err, step, "listing failures");
    sqlite3_finalize(st);
    return rc;
}

int capdb_sq_get_pooled(capdb *db, const char *path, float *out, int n, capdb_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = capdb__stmt(db, STMT_POOLED_OF_PATH, &st, err);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        const void *blob = sqlite3_column_blob(st, 0);
        int bytes = sqlite3_column_bytes(st, 0);
        if (!blob) rc = 0;
        else if (capdb__decode_pooled(blob, bytes, out, n) != 0)
            rc = capdb__fail(err, -EINVAL, "stored vector has %d values, wanted %d",
                             bytes - CAPDB_POOLED_HEADER, n);
        else rc = 1;
    } else if (step != SQLITE_DONE) {
        rc = capdb__sqlfail(db, err, step, "reading a vector");
    }
    sqlite3_reset(st);
    return rc;
}

/* ------------------------------------------------------------------ helpers */

static int savepoint(capdb *db, const char *sql, capdb_err *err)
{
    int rc = sqlite3_exec(db->sql, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : capdb__sqlfail(db, err, rc, sql);
}

/* Full vectors as blobs for exact scoring and similar-image search, plus the image's
 * strongest concepts as postings so a query's concepts are an index lookup. */
static int put_vectors(capdb *db, int64_t id, const capdb_image *img, capdb_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = capdb__stmt(db, STMT_POSTINGS_DEL, &st, err);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    int step = sqlite3_step(st);
    if (step != SQLITE_DONE) return capdb__sqlfail(db, err, step, "clearing postings");

    int has_vectors = img->status == CAPDB_STATUS_OK && (img->n_concepts || img->n_pooled);
    if (!has_vectors) {
        if ((rc = capdb__stmt(db, STMT_VECTORS_DEL, &st, err))) return rc;
        sqlite3_bind_int64(st, 1, id);
        step = sqlite3_step(st);
        return step == SQLITE_DONE ? 0 : capdb__sqlfail(db, err, step, "clearing vectors");
    }

    unsigned char *concepts = img->n_concepts ? malloc((size_t)img->n_concepts) : NULL;
    unsigned char *pooled =
        img->n_pooled ? malloc((size_t)img->n_pooled + CAPDB_POOLED_HEADER) : NULL;
    capdb_posting *top = img->n_concepts ? malloc((size_t)img->n_concepts * sizeof *top) : NULL;
    int n_top = 0;
    if ((img->n_concepts && (!concepts || !top)) || (img->n_pooled && !pooled)) {
        rc = capdb__fail(err, -ENOMEM, "out of memory");
        goto out;
    }
    if (concepts) n_top = capdb__concept_bytes(img, concepts, top);
    if (pooled) capdb__encode_pooled(img->pooled, img->n_pooled, pooled);

    if ((rc = capdb__stmt(db, STMT_VECTORS_PUT, &st, err))) goto out;
    sqlite3_bind_int64(st, 1, id);
    if (concepts) sqlite3_bind_blob(st, 2, concepts, img->n_concepts, SQLITE_STATIC);
    if (pooled)
        sqlite3_bind_blob(st, 3, pooled, img->n_pooled + CAPDB_POOLED_HEADER, SQLITE_STATIC);
    step = sqlite3_step(st);
    sqlite3_reset(st);
    if (step != SQLITE_DONE) {
        rc = capdb__sqlfail(db, err, step, "storing vectors");
        goto out;
    }

    for (int i = 0; i < n_top && rc == 0; i++) {
        if ((rc = capdb__stmt(db, STMT_POSTING_PUT, &st, err))) break;
        sqlite3_bind_int(st, 1, top[i].index);
        sqlite3_bind_int(st, 2, top[i].weight);
        sqlite3_bind_int64(st, 3, id);
        step = sqlite3_step(st);
        if (step != SQLITE_DONE) rc = capdb__sqlfail(db, err, step, "storing postings");
    }
    sqlite3_reset(st);
out:
    free(concepts);
    free(pooled);
    free(top);
    return rc;
}

/* Deletes the rows under dir/, adding their count to *n. */
static int delete_range(capdb *db, const char *dir, int64_t *n, capdb_err *err)
{
    char *lo, *hi;
    if (capdb__dir_bounds(dir, &lo, &hi) != 0) return capdb__fail(err, -ENOMEM, "out of memory");
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->sql, "DELETE FROM images WHERE path >= ?1 AND path < ?2", -1,
                                &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, lo, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, hi, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
    }
    free(lo);
    free(hi);
    if (rc != SQLITE_DONE) return capdb__sqlfail(db, err, rc, "deleting a folder");
    *n += sqlite3_changes64(db->sql);
    return 0;
}


