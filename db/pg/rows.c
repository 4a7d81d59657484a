/*
 * Rows (PostgreSQL): upsert, delete and move by path, lookups, and the vector blobs
 * beside them; the same contract as sqlite/rows.c.
 *
 * Every multi-statement change runs through capdb__pg_atomic_*, so it is atomic on its
 * own and nests inside a caller's capdb_begin / capdb_commit batch. A single-statement
 * write is atomic anyway, but inside a caller's batch it too runs in a savepoint
 * (write_one): a failed statement aborts the whole PostgreSQL transaction, and the
 * failure of one operation must not take the batch with it (pg.h).
 *
 * Operations never nest atomic sections of their own (a move deletes through
 * delete_rows, not capdb_pg_delete_path): outside a batch, capdb__pg_atomic_begin is a
 * BEGIN, and a second BEGIN would be a no-op whose COMMIT ends the outer one early.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pg.h"

static int write_one(capdb *db, const char *sql, const pg_params *p, capdb_err *err,
                     const char *what);
static int delete_rows(capdb *db, const char *path, int64_t *n, capdb_err *err);
static int put_vectors(capdb *db, int64_t id, const capdb_image *img, capdb_err *err);
static int note_model_version(capdb *db, const char *version, const char *as_given, capdb_err *err);
static char *text_array(char *const *items, size_t n);
static char *int_array(const int64_t *values, size_t n);

/* Text columns of an upsert, made valid UTF-8 (capdb__pg_utf8) in this order. */
enum { T_ERROR, T_CAPTION, T_TAGS, T_MODEL, T_DESCRIPTION, T_KEYWORDS, T_FORMAT, T_REASON, T__N };

int capdb_pg_upsert(capdb *db, const capdb_image *img, capdb_err *err)
{
    if (!img || !img->path || !*img->path) return capdb__fail(err, -EINVAL, "upsert: no path");
    if (img->n_concepts < 0 || img->n_pooled < 0 || (img->n_concepts && !img->concepts) ||
        (img->n_pooled && !img->pooled))
        return capdb__fail(err, -EINVAL, "upsert: bad vector sizes");
    int ok = img->status == CAPDB_STATUS_OK;
    /* NULL where SQLite binds nothing: no error on a good row, empty text as none */
    const char *raw[T__N] = {
        [T_ERROR] = ok           ? NULL
                    : img->error ? img->error
                                 : "failed",
        [T_CAPTION] = img->caption,
        [T_TAGS] = img->tags,
        [T_MODEL] = img->model_version,
        [T_DESCRIPTION] = img->description && *img->description ? img->description : NULL,
        [T_KEYWORDS] = img->keywords && *img->keywords ? img->keywords : NULL,
        [T_FORMAT] = img->format,
        [T_REASON] = ok ? NULL : img->reason,
    };
    char *text[T__N];
    int oom = 0;
    for (int i = 0; i < T__N; i++) text[i] = capdb__pg_utf8(raw[i], &oom);
    char *words = capdb__path_words(img->path);
    int rc = oom || !words ? capdb__fail(err, -ENOMEM, "out of memory") : 0;

    if (rc == 0) rc = capdb__pg_atomic_begin(db, err);
    if (rc) {
        for (int i = 0; i < T__N; i++) free(text[i]);
        free(words);
        return rc;
    }
    pg_params p = {0};
    capdb__pg_path(&p, img->path);
    capdb__pg_int(&p, (int64_t)img->device); /* unsigned 64-bit kept as bigint, as SQLite */
    capdb__pg_int(&p, (int64_t)img->inode);
    capdb__pg_int(&p, img->size);
    capdb__pg_int(&p, img->mtime_ns);
    capdb__pg_int(&p, (int64_t)img->fingerprint);
    capdb__pg_int(&p, img->width);
    capdb__pg_int(&p, img->height);
    capdb__pg_int(&p, img->taken_time);
    capdb__pg_int(&p, ok ? CAPDB_STATUS_OK : CAPDB_STATUS_FAILED);
    capdb__pg_text(&p, text[T_ERROR]);
    capdb__pg_text(&p, text[T_CAPTION]);
    capdb__pg_text(&p, text[T_TAGS]);
    capdb__pg_text(&p, words);
    capdb__pg_text(&p, text[T_MODEL]);
    capdb__pg_int(&p, (int64_t)time(NULL));
    capdb__pg_text(&p, text[T_DESCRIPTION]);
    capdb__pg_text(&p, text[T_KEYWORDS]);
    capdb__pg_int(&p, img->sidecar_mtime_ns);
    capdb__pg_text(&p, text[T_FORMAT]);
    capdb__pg_text(&p, text[T_REASON]);
    int code;
    PGresult *r = capdb__pg_run(
        db,
        "INSERT INTO images(path, device, inode, size, mtime_ns, fingerprint, width, height,"
        " taken_time, status, error, caption, tags, path_words, model_version, indexed_time,"
        " description, keywords, sidecar_mtime_ns, format, reason)"
        " VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,"
        " $18, $19, $20, $21)"
        " ON CONFLICT(path) DO UPDATE SET device = excluded.device, inode = excluded.inode,"
        " size = excluded.size, mtime_ns = excluded.mtime_ns,"
        " fingerprint = excluded.fingerprint, width = excluded.width,"
        " height = excluded.height, taken_time = excluded.taken_time,"
        " status = excluded.status, error = excluded.error, caption = excluded.caption,"
        " tags = excluded.tags, path_words = excluded.path_words,"
        " model_version = excluded.model_version, indexed_time = excluded.indexed_time,"
        " description = excluded.description, keywords = excluded.keywords,"
        " sidecar_mtime_ns = excluded.sidecar_mtime_ns, format = excluded.format,"
        " reason = excluded.reason"
        " RETURNING id",
        &p, &code, err, "storing an image");
    int64_t id = 0;
    if (!r) rc = code;
    else if (PQntuples(r) != 1) rc = capdb__fail(err, -EIO, "storing an image: no row id");
    else id = capdb__pg_get_int(r, 0, 0);
    PQclear(r);

    if (rc == 0) rc = put_vectors(db, id, img, err);
    if (rc == 0 && ok && text[T_MODEL] && *text[T_MODEL] &&
        strcmp(img->model_version, db->model_version_seen) != 0)
        rc = note_model_version(db, text[T_MODEL], img->model_version, err);
    for (int i = 0; i < T__N; i++) free(text[i]);
    free(words);
    if (rc) {
        capdb__pg_atomic_end(db, 0, NULL);
        return rc;
    }
    return capdb__pg_atomic_end(db, 1, err);
}

int capdb_pg_update_stat(capdb *db, int64_t id, uint64_t device, uint64_t inode, int64_t size,
                         int64_t mtime_ns, capdb_err *err)
{
    pg_params p = {0};
    capdb__pg_int(&p, id);
    capdb__pg_int(&p, (int64_t)device);
    capdb__pg_int(&p, (int64_t)inode);
    capdb__pg_int(&p, size);
    capdb__pg_int(&p, mtime_ns);
    return write_one(db,
                     "UPDATE images SET device = $2, inode = $3, size = $4, mtime_ns = $5"
                     " WHERE id = $1",
                     &p, err, "refreshing a file's stat");
}

int capdb_pg_get_row(capdb *db, int64_t id, capdb_row *row, capdb_err *err)
{
    memset(row, 0, sizeof *row);
    pg_params p = {0};
    capdb__pg_int(&p, id);
    int code;
    PGresult *r =
        capdb__pg_run(db,
                      "SELECT path, size, mtime_ns, fingerprint, width, height, taken_time, status,"
                      " error, caption, tags, model_version, description, keywords, format,"
                      " indexed_time FROM images WHERE id = $1",
                      &p, &code, err, "reading an image row");
    if (!r) return code;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return 0;
    }
    int oom = 0;
    row->id = id;
    row->path = (char *)capdb__pg_get_bytes(r, 0, 0, NULL, &oom);
    row->size = capdb__pg_get_int(r, 0, 1);
    row->mtime_ns = capdb__pg_get_int(r, 0, 2);
    row->fingerprint = (uint64_t)capdb__pg_get_int(r, 0, 3);
    row->width = (int)capdb__pg_get_int(r, 0, 4);
    row->height = (int)capdb__pg_get_int(r, 0, 5);
    row->taken_time = capdb__pg_get_int(r, 0, 6);
    row->status = (int)capdb__pg_get_int(r, 0, 7);
    row->error = capdb__pg_get_text(r, 0, 8, &oom);
    row->caption = capdb__pg_get_text(r, 0, 9, &oom);
    row->tags = capdb__pg_get_text(r, 0, 10, &oom);
    row->model_version = capdb__pg_get_text(r, 0, 11, &oom);
    row->description = capdb__pg_get_text(r, 0, 12, &oom);
    row->keywords = capdb__pg_get_text(r, 0, 13, &oom);
    row->format = capdb__pg_get_text(r, 0, 14, &oom);
    row->indexed_time = capdb__pg_get_int(r, 0, 15);
    PQclear(r);
    if (oom || !row->path) {
        capdb_row_free(row);
        return capdb__fail(err, -ENOMEM, "out of memory");
    }
    return 1;
}

int capdb_pg_update_text(capdb *db, int64_t id, const char *description, const char *keywords,
                         int64_t sidecar_mtime_ns, capdb_err *err)
{
    int oom = 0;
    char *d = capdb__pg_utf8(description && *description ? description : NULL, &oom);
    char *k = capdb__pg_utf8(keywords && *keywords ? keywords : NULL, &oom);
    pg_params p = {0};
    capdb__pg_int(&p, id);
    capdb__pg_text(&p, d);
    capdb__pg_text(&p, k);
    capdb__pg_int(&p, sidecar_mtime_ns);
    int rc = oom ? capdb__fail(err, -ENOMEM, "out of memory")
                 : write_one(db,
                             "UPDATE images SET description = $2, keywords = $3,"
                             " sidecar_mtime_ns = $4 WHERE id = $1",
                             &p, err, "updating what people wrote");
    free(d);
    free(k);
    return rc;
}

/* The file row and the rows under it as a folder, in one statement; the vectors and
 * postings go with them (ON DELETE CASCADE). */
int capdb_pg_delete_path(capdb *db, const char *path, int64_t *deleted, capdb_err *err)
{
    if (deleted) *deleted = 0;
    if (!path || !*path) return capdb__fail(err, -EINVAL, "delete: no path");
    int64_t n = 0;
    int rc = db->pg->in_tx ? capdb__pg_atomic_begin(db, err) : 0;
    if (rc) return rc;
    rc = delete_rows(db, path, &n, err);
    if (db->pg->in_tx) {
        if (rc) capdb__pg_atomic_end(db, 0, NULL);
        else rc = capdb__pg_atomic_end(db, 1, err);
    }
    if (rc == 0 && deleted) *deleted = n;
    return rc;
}

/* A file rename moves one row; a directory rename moves every row under it. Whatever
 * the destination held is replaced, as rename(2) replaces it. The new paths are made
 * by the server (to || the old path's rest), their words here: one UPDATE for the lot. */
int capdb_pg_move_path(capdb *db, const char *from, const char *to, int64_t *moved, capdb_err *err)
{
    if (moved) *moved = 0;
    if (!from || !to || !*from || !*to) return capdb__fail(err, -EINVAL, "move: no path");
    if (strcmp(from, to) == 0) return 0;
    size_t from_len = strlen(from), to_len = strlen(to);
    if (strncmp(to, from, from_len) == 0 && to[from_len] == '/')
        return capdb__fail(err, -EINVAL, "move: %s is inside %s", to, from);

    char *lo = NULL, *hi = NULL;
    if (capdb__dir_bounds(from, &lo, &hi) != 0) return capdb__fail(err, -ENOMEM, "out of memory");
    int rc = capdb__pg_atomic_begin(db, err);
    if (rc) {
        free(lo);
        free(hi);
        return rc;
    }

    /* Collect first (ids and the new paths' words), then delete what the destination
     * held, then update: the rows are locked from the first statement on. */
    pg_params p = {0};
    capdb__pg_path(&p, from);
    capdb__pg_path(&p, lo);
    capdb__pg_path(&p, hi);
    int code;
    PGresult *r = capdb__pg_run(db,
                                "SELECT id, path FROM images WHERE path = $1 OR"
                                " (path >= $2 AND path < $3) FOR UPDATE",
                                &p, &code, err, "finding rows to move");
    size_t n = r ? (size_t)PQntuples(r) : 0;
    int64_t *ids = n ? calloc(n, sizeof *ids) : NULL;
    char **words = n ? calloc(n, sizeof *words) : NULL;
    if (!r) rc = code;
    else if (n && (!ids || !words)) rc = capdb__fail(err, -ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int oom = 0;
        size_t len = 0;
        char *old = (char *)capdb__pg_get_bytes(r, (int)i, 1, &len, &oom);
        char *np = old && len >= from_len ? malloc(to_len + len - from_len + 1) : NULL;
        if (np) {
            memcpy(np, to, to_len);
            memcpy(np + to_len, old + from_len, len - from_len + 1);
            words[i] = capdb__path_words(np);
        }
        ids[i] = capdb__pg_get_int(r, (int)i, 0);
        if (!words[i]) rc = capdb__fail(err, -ENOMEM, "out of memory");
        free(np);
        free(old);
    }
    PQclear(r);

    if (rc == 0 && n > 0) {
        int64_t replaced = 0;
        rc = delete_rows(db, to, &replaced, err);
    }
    char *id_list = NULL, *word_list = NULL;
    if (rc == 0 && n > 0) {
        id_list = int_array(ids, n);
        word_list = text_array(words, n);
        if (!id_list || !word_list) rc = capdb__fail(err, -ENOMEM, "out of memory");
    }
    if (rc == 0 && n > 0) {
        pg_params u = {0};
        capdb__pg_path(&u, to);
        capdb__pg_int(&u, (int64_t)from_len + 1);
        capdb__pg_text(&u, id_list);
        capdb__pg_text(&u, word_list);
        rc = capdb__pg_exec(db,
                            "UPDATE images i SET path = $1 || substring(i.path FROM $2::int),"
                            " path_words = t.words"
                            " FROM unnest($3::bigint[], $4::text[]) AS t(id, words)"
                            " WHERE i.id = t.id",
                            &u, err, "moving rows");
    }
    free(id_list);
    free(word_list);
    for (size_t i = 0; words && i < n; i++) free(words[i]);
    free(words);
    free(ids);
    free(lo);
    free(hi);
    if (rc) {
        capdb__pg_atomic_end(db, 0, NULL);
        return rc;
    }
    rc = capdb__pg_atomic_end(db, 1, err);
    if (rc == 0 && moved) *moved = (int64_t)n;
    return rc;
}

int capdb_pg_lookup_path(capdb *db, const char *path, capdb_file_state *state, capdb_err *err)
{
    memset(state, 0, sizeof *state);
    pg_params p = {0};
    capdb__pg_path(&p, path);
    int code;
    PGresult *r = capdb__pg_run(db,
                                "SELECT id, device, inode, size, mtime_ns, fingerprint, status,"
                                " model_version, sidecar_mtime_ns FROM images WHERE path = $1",
                                &p, &code, err, "looking up a path");
    if (!r) return code;
    if (PQntuples(r) > 0) {
        state->id = capdb__pg_get_int(r, 0, 0);
        state->device = (uint64_t)capdb__pg_get_int(r, 0, 1);
        state->inode = (uint64_t)capdb__pg_get_int(r, 0, 2);
        state->size = capdb__pg_get_int(r, 0, 3);
        state->mtime_ns = capdb__pg_get_int(r, 0, 4);
        state->fingerprint = (uint64_t)capdb__pg_get_int(r, 0, 5);
        state->status = (int)capdb__pg_get_int(r, 0, 6);
        snprintf(state->model_version, sizeof state->model_version, "%s",
                 PQgetisnull(r, 0, 7) ? "" : PQgetvalue(r, 0, 7));
        state->sidecar_mtime_ns = capdb__pg_get_int(r, 0, 8);
    }
    PQclear(r);
    return 0;
}

int capdb_pg_find_by_fingerprint(capdb *db, uint64_t fingerprint, int64_t size, char *path_out,
                                 size_t path_size, capdb_err *err)
{
    pg_params p = {0};
    capdb__pg_int(&p, (int64_t)fingerprint);
    capdb__pg_int(&p, size);
    int code;
    PGresult *r = capdb__pg_run(db,
                                "SELECT path FROM images WHERE fingerprint = $1 AND size = $2"
                                " AND status = 0 LIMIT 1",
                                &p, &code, err, "finding a fingerprint");
    if (!r) return code;
    int rc = 0;
    if (PQntuples(r) > 0) {
        int oom = 0;
        char *path = (char *)capdb__pg_get_bytes(r, 0, 0, NULL, &oom);
        if (!path) rc = capdb__fail(err, -ENOMEM, "out of memory");
        else if (path_size) snprintf(path_out, path_size, "%s", path);
        if (path) rc = 1;
        free(path);
    }
    PQclear(r);
    return rc;
}

/* Pages through the paths in order, a batch at a time, so fn may change the table
 * (delete the row it was given) between batches and within one. Each page is one
 * index range scan from the last path seen: the file row named by prefix itself comes
 * first (it sorts before prefix + "/"), then the folder's range. */
int capdb_pg_foreach_path(capdb *db, const char *prefix, int (*fn)(void *ctx, const char *path),
                          void *ctx, capdb_err *err)
{
    enum { BATCH = 512 };
    char *lo = NULL, *hi = NULL;
    int all = !prefix || !*prefix;
    if (!all && capdb__dir_bounds(prefix, &lo, &hi) != 0)
        return capdb__fail(err, -ENOMEM, "out of memory");
    int rc = 0, stop = 0, code;
    /* "/a" itself; "/a/" (a name no file has) would lie in its own range */
    if (!all && prefix[strlen(prefix) - 1] != '/') {
        pg_params p = {0};
        capdb__pg_path(&p, prefix);
        PGresult *r = capdb__pg_run(db, "SELECT 1 FROM images WHERE path = $1", &p, &code, err,
                                    "listing paths");
        if (!r) rc = code;
        else if (PQntuples(r) > 0) stop = fn(ctx, prefix) != 0;
        PQclear(r);
    }
    char *last = strdup("");
    if (rc == 0 && !last) rc = capdb__fail(err, -ENOMEM, "out of memory");
    while (rc == 0 && !stop) {
        pg_params p = {0};
        capdb__pg_path(&p, last);
        capdb__pg_int(&p, BATCH);
        if (!all) {
            capdb__pg_path(&p, lo);
            capdb__pg_path(&p, hi);
        }
        PGresult *r = capdb__pg_run(
            db,
            all ? "SELECT path FROM images WHERE path > $1 ORDER BY path LIMIT $2"
                : "SELECT path FROM images WHERE path > $1 AND path >= $3 AND path < $4"
                  " ORDER BY path LIMIT $2",
            &p, &code, err, "listing paths");
        if (!r) {
            rc = code;
            break;
        }
        int n = PQntuples(r);
        char *batch[BATCH];
        int got = 0, oom = 0;
        for (; got < n && got < BATCH; got++) {
            batch[got] = (char *)capdb__pg_get_bytes(r, got, 0, NULL, &oom);
            if (!batch[got]) break;
        }
        PQclear(r);
        if (got < n) rc = capdb__fail(err, -ENOMEM, "out of memory");
        for (int i = 0; i < got; i++) {
            if (rc == 0 && !stop) stop = fn(ctx, batch[i]) != 0;
            if (i < got - 1) free(batch[i]);
        }
        if (got) {
            free(last);
            last = batch[got - 1];
        }
        if (n < BATCH) break;
    }
    free(last);
    free(lo);
    free(hi);
    return rc;
}

int capdb_pg_foreach_count(capdb *db, const char *group,
                           int (*fn)(void *ctx, const char *value, int64_t count), void *ctx,
                           capdb_err *err)
{
    const char *sql = capdb__count_sql(group);
    if (!sql) return capdb__fail(err, -EINVAL, "no count by '%s'", group);
    int code;
    PGresult *r = capdb__pg_run(db, sql, NULL, &code, err, "counting images");
    if (!r) return code;
    for (int i = 0; i < PQntuples(r); i++)
        if (fn(ctx, PQgetvalue(r, i, 0), capdb__pg_get_int(r, i, 1))) break;
    PQclear(r);
    return 0;
}

int capdb_pg_foreach_failure(capdb *db, int limit,
                             int (*fn)(void *ctx, const char *path, const char *error,
                                       int64_t when),
                             void *ctx, capdb_err *err)
{
    pg_params p = {0};
    if (limit >= 0) capdb__pg_int(&p, limit);
    else capdb__pg_text(&p, NULL); /* LIMIT NULL: all, as SQLite's negative LIMIT */
    int code;
    PGresult *r = capdb__pg_run(db,
                                "SELECT path, error, indexed_time FROM images WHERE status = 1"
                                " ORDER BY indexed_time DESC, id DESC LIMIT $1",
                                &p, &code, err, "listing failures");
    if (!r) return code;
    int rc = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        int oom = 0;
        char *path = (char *)capdb__pg_get_bytes(r, i, 0, NULL, &oom);
        if (!path) {
            rc = capdb__fail(err, -ENOMEM, "out of memory");
            break;
        }
        int stop = fn(ctx, path, PQgetisnull(r, i, 1) ? "" : PQgetvalue(r, i, 1),
                      capdb__pg_get_int(r, i, 2));
        free(path);
        if (stop) break;
    }
    PQclear(r);
    return rc;
}

int capdb_pg_get_pooled(capdb *db, const char *path, float *out, int n, capdb_err *err)
{
    pg_params p = {0};
    capdb__pg_path(&p, path);
    int code;
    PGresult *r = capdb__pg_run(db,
                                "SELECT v.pooled FROM images i JOIN vectors v"
                                " ON v.image_id = i.id WHERE i.path = $1",
                                &p, &code, err, "reading a vector");
    if (!r) return code;
    int rc = 0;
    if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)) {
        int oom = 0;
        size_t bytes = 0;
        unsigned char *blob = capdb__pg_get_bytes(r, 0, 0, &bytes, &oom);
        if (!blob) rc = capdb__fail(err, -ENOMEM, "out of memory");
        else if (capdb__decode_pooled(blob, (int)bytes, out, n) != 0)
            rc = capdb__fail(err, -EINVAL, "stored vector has %d values, wanted %d",
                             (int)bytes - CAPDB_POOLED_HEADER, n);
        else rc = 1;
        free(blob);
    }
    PQclear(r);
    return rc;
}

/* ------------------------------------------------------------------ helpers */

/* One write statement; in a caller's batch inside a savepoint, so that its failure
 * fails this operation alone. */
static int write_one(capdb *db, const char *sql, const pg_params *p, capdb_err *err,
                     const char *what)
{
    int in_batch = db->pg->in_tx;
    int rc = in_batch ? capdb__pg_atomic_begin(db, err) : 0;
    if (rc) return rc;
    rc = capdb__pg_exec(db, sql, p, err, what);
    if (in_batch) {
        if (rc) capdb__pg_atomic_end(db, 0, NULL);
        else rc = capdb__pg_atomic_end(db, 1, err);
    }
    return rc;
}

/* Deletes the row path and the rows under path/ (no atomic section of its own: the
 * caller's), adding their count to *n. */
static int delete_rows(capdb *db, const char *path, int64_t *n, capdb_err *err)
{
    char *lo, *hi;
    if (capdb__dir_bounds(path, &lo, &hi) != 0) return capdb__fail(err, -ENOMEM, "out of memory");
    pg_params p = {0};
    capdb__pg_path(&p, path);
    capdb__pg_path(&p, lo);
    capdb__pg_path(&p, hi);
    int code;
    PGresult *r = capdb__pg_run(db,
                                "DELETE FROM images WHERE path = $1 OR"
                                " (path >= $2 AND path < $3)",
                                &p, &code, err, "deleting a path");
    free(lo);
    free(hi);
    if (!r) return code;
    *n += strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return 0;
}

/* Full vectors as blobs for exact scoring and similar-image search, plus the image's
 * strongest concepts as postings so a query's concepts are an index lookup. Two
 * statements: the old postings go first (a posting kept with the same weight would
 * otherwise collide with its replacement inside one statement). */
static int put_vectors(capdb *db, int64_t id, const capdb_image *img, capdb_err *err)
{
    int has_vectors = img->status == CAPDB_STATUS_OK && (img->n_concepts || img->n_pooled);
    pg_params p = {0};
    capdb__pg_int(&p, id);
    int rc = capdb__pg_exec(db,
                            has_vectors ? "DELETE FROM postings WHERE image_id = $1"
                                        : "WITH p AS (DELETE FROM postings WHERE image_id = $1)"
                                          " DELETE FROM vectors WHERE image_id = $1",
                            &p, err, has_vectors ? "clearing postings" : "clearing vectors");
    if (rc || !has_vectors) return rc;

    unsigned char *concepts = img->n_concepts ? malloc((size_t)img->n_concepts) : NULL;
    unsigned char *pooled =
        img->n_pooled ? malloc((size_t)img->n_pooled + CAPDB_POOLED_HEADER) : NULL;
    capdb_posting *top = img->n_concepts ? malloc((size_t)img->n_concepts * sizeof *top) : NULL;
    int n_top = 0;
    /* "{c1,c2,...}" and "{w1,w2,...}": at most CAPDB_POSTINGS_PER_IMAGE small numbers */
    char cs[CAPDB_POSTINGS_PER_IMAGE * 12 + 3], ws[CAPDB_POSTINGS_PER_IMAGE * 4 + 3];
    if ((img->n_concepts && (!concepts || !top)) || (img->n_pooled && !pooled)) {
        rc = capdb__fail(err, -ENOMEM, "out of memory");
        goto out;
    }
    if (concepts) n_top = capdb__concept_bytes(img, concepts, top);
    if (pooled) capdb__encode_pooled(img->pooled, img->n_pooled, pooled);
    size_t co = 0, wo = 0;
    cs[co++] = ws[wo++] = '{';
    for (int i = 0; i < n_top; i++) {
        co += (size_t)snprintf(cs + co, sizeof cs - co, "%s%d", i ? "," : "", top[i].index);
        wo += (size_t)snprintf(ws + wo, sizeof ws - wo, "%s%d", i ? "," : "", top[i].weight);
    }
    snprintf(cs + co, sizeof cs - co, "}");
    snprintf(ws + wo, sizeof ws - wo, "}");

    pg_params v = {0};
    capdb__pg_int(&v, id);
    capdb__pg_bytes(&v, concepts, img->n_concepts);
    capdb__pg_bytes(&v, pooled, img->n_pooled + CAPDB_POOLED_HEADER);
    capdb__pg_text(&v, cs);
    capdb__pg_text(&v, ws);
    rc = capdb__pg_exec(db,
                        "WITH v AS (INSERT INTO vectors(image_id, concepts, pooled)"
                        " VALUES($1, $2, $3) ON CONFLICT(image_id) DO UPDATE"
                        " SET concepts = excluded.concepts, pooled = excluded.pooled)"
                        " INSERT INTO postings(concept, weight, image_id)"
                        " SELECT c, w, $1 FROM unnest($4::smallint[], $5::smallint[]) AS t(c, w)",
                        &v, err, "storing vectors");
out:
    free(concepts);
    free(pooled);
    free(top);
    return rc;
}

/* meta "model_version" := version (libcapdb's key: of the newest indexed row), written
 * once per connection and version, as SQLite does. Unlike SQLite, other nodes write it
 * too, each from inside its batch, and a batch holds what it wrote until it commits:
 * nodes starting together would wait on one another's batches for a note. So the
 * writers of this key take a transaction-level advisory lock without waiting, and one
 * that does not get it leaves the note to the holder (and tries again with its next
 * upsert). One statement: nothing is written, nor locked, when the value is already
 * ours. */
#define MODEL_VERSION_LOCK_KEY "1128354900" /* "CAPS" + 1; conn.c has "CAPS" */
static int note_model_version(capdb *db, const char *version, const char *as_given, capdb_err *err)
{
    pg_params p = {0};
    capdb__pg_text(&p, version);
    int code;
    PGresult *r = capdb__pg_run(
        db,
        "WITH cur AS (SELECT value = $1 AS same FROM meta WHERE key = 'model_version'),"
        " ins AS (INSERT INTO meta(key, value) SELECT 'model_version', $1"
        "  WHERE CASE WHEN EXISTS(SELECT 1 FROM cur WHERE same) THEN false"
        "   ELSE pg_try_advisory_xact_lock(" MODEL_VERSION_LOCK_KEY ") END"
        "  ON CONFLICT(key) DO UPDATE SET value = excluded.value RETURNING 1)"
        " SELECT EXISTS(SELECT 1 FROM cur WHERE same) OR EXISTS(SELECT 1 FROM ins)",
        &p, &code, err, "setting the model version");
    if (!r) return code;
    if (PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't')
        snprintf(db->model_version_seen, sizeof db->model_version_seen, "%s", as_given);
    PQclear(r);
    return 0;
}

/* An array literal of text: {"a b","c"} with " and \ escaped; malloc'd. */
static char *text_array(char *const *items, size_t n)
{
    size_t size = 3;
    for (size_t i = 0; i < n; i++) size += 2 * strlen(items[i]) + 3;
    char *out = malloc(size), *o = out;
    if (!out) return NULL;
    *o++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i) *o++ = ',';
        *o++ = '"';
        for (const char *c = items[i]; *c; c++) {
            if (*c == '"' || *c == '\\') *o++ = '\\';
            *o++ = *c;
        }
        *o++ = '"';
    }
    *o++ = '}';
    *o = '\0';
    return out;
}

/* An array literal of integers: {1,2,3}; malloc'd. */
static char *int_array(const int64_t *values, size_t n)
{
    size_t size = n * 21 + 3, o = 0;
    char *out = malloc(size);
    if (!out) return NULL;
    out[o++] = '{';
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(out + o, size - o, "%s%lld", i ? "," : "", (long long)values[i]);
    snprintf(out + o, size - o, "}");
    return out;
}
