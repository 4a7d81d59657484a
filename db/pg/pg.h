/*
 * Private to db/pg/: the PostgreSQL backend's connection state, its statement runner
 * and result readers, and its functions, one per capdb_backend entry (internal.h).
 *
 * Everything capsearch keeps lives in the schema "capsearch" of the database named by
 * the URI (search_path is set to it), so a database shared with other applications is
 * never touched outside it.
 *
 * Invariants:
 *  - every public operation that runs inside a caller's transaction runs in a
 *    savepoint (capdb__pg_atomic_*): a failed statement (a lock timeout, a constraint)
 *    then fails that operation alone, as in SQLite, instead of aborting the batch;
 *  - the connection is re-established only between transactions: a connection lost
 *    inside one is reported as -ECONNRESET (the batch is gone; the caller replays it);
 *  - paths are bytea (file names are any bytes but NUL, not necessarily UTF-8); every
 *    text value sent is valid UTF-8 (capdb__pg_utf8), as a UTF8 database requires.
 */
#ifndef CAPDB_PG_H
#define CAPDB_PG_H

#include "libpq.h" /* libpq by its own names, loaded on first use */

#include "internal.h"

/* Schema versions of the PostgreSQL backend (its own sequence; schema.c). */
#define CAPDB_PG_SCHEMA_LATEST 2

struct capdb_pg {
    PGconn *conn;
    int in_tx;          /* between capdb_begin and capdb_commit / capdb_rollback */
    int lock_timeout_ms; /* capdb_set_busy_timeout, re-applied after a reconnect */
    int savepoints;     /* nesting depth of capdb__pg_atomic_begin */
};

/* ------------------------------------------------------------------ statements */

#define CAPDB_PG_MAX_PARAMS 40

/* One statement's parameters, in order ($1, $2, ...). Text parameters are sent as text,
 * bytea ones in binary; integers as their decimal text. */
typedef struct {
    int n;
    const char *values[CAPDB_PG_MAX_PARAMS];
    int lengths[CAPDB_PG_MAX_PARAMS];
    int formats[CAPDB_PG_MAX_PARAMS];
    char numbers[CAPDB_PG_MAX_PARAMS][24];
} pg_params;

/* Appends a parameter. NULL text is SQL NULL; text must be valid UTF-8. */
void capdb__pg_text(pg_params *p, const char *s);
void capdb__pg_int(pg_params *p, int64_t v);
void capdb__pg_double(pg_params *p, double v);
void capdb__pg_bytes(pg_params *p, const void *bytes, int length); /* bytea; NULL = SQL NULL */
#define capdb__pg_path(p, path) capdb__pg_bytes((p), (path), (int)strlen(path))

/* Runs sql with params (may be NULL). Returns the result (PGRES_COMMAND_OK or
 * PGRES_TUPLES_OK; PQclear it), or NULL with *code a negative errno and err filled with
 * "what: the server says". Reconnects first when the connection was lost between
 * transactions. */
PGresult *capdb__pg_run(capdb *db, const char *sql, const pg_params *params, int *code,
                        capdb_err *err, const char *what);
/* capdb__pg_run for statements whose result is not needed: 0 or a negative errno. */
int capdb__pg_exec(capdb *db, const char *sql, const pg_params *params, capdb_err *err,
                   const char *what);

/* An operation of several statements, atomic on its own and nested inside a caller's
 * capdb_begin batch: SAVEPOINT inside a transaction, else BEGIN ... COMMIT. end with
 * ok = 0 undoes it (ROLLBACK TO / ROLLBACK). */
int capdb__pg_atomic_begin(capdb *db, capdb_err *err);
int capdb__pg_atomic_end(capdb *db, int ok, capdb_err *err);

/* ------------------------------------------------------------------ results */

int64_t capdb__pg_get_int(const PGresult *r, int row, int col);          /* NULL = 0 */
double capdb__pg_get_double(const PGresult *r, int row, int col);        /* NULL = 0 */
char *capdb__pg_get_text(const PGresult *r, int row, int col, int *oom); /* NULL = NULL */
/* A bytea column (text result format: \x hex), unescaped, NUL-terminated; *length
 * (may be NULL) without the NUL. NULL for SQL NULL, or with *oom set. */
unsigned char *capdb__pg_get_bytes(const PGresult *r, int row, int col, size_t *length,
                                   int *oom);

/* A copy of s with every byte that is not valid UTF-8 replaced by U+FFFD; NULL for NULL
 * (and when out of memory, with *oom set). */
char *capdb__pg_utf8(const char *s, int *oom);

/* Migrations: step i takes the schema from version i to i + 1 (schema.c). Runs inside
 * the caller's transaction. */
int capdb__pg_migrate(capdb *db, int from, int to, capdb_err *err);

/* ------------------------------------------------------------------ the backend's entries */

/* conn.c */
int capdb_pg_open(const char *target, int mode, capdb **out, capdb_err *err);
void capdb_pg_close(capdb *db);
void capdb_pg_set_busy_timeout(capdb *db, int ms);
int capdb_pg_damaged(capdb *db);
int capdb_pg_schema_version(capdb *db);
int capdb_pg_begin(capdb *db, capdb_err *err);
int capdb_pg_commit(capdb *db, capdb_err *err);
int capdb_pg_rollback(capdb *db);
int capdb_pg_meta_set(capdb *db, const char *key, const char *value, capdb_err *err);
int capdb_pg_meta_get(capdb *db, const char *key, char *value, size_t size, capdb_err *err);
int capdb_pg_counts_get(capdb *db, capdb_counts *out, capdb_err *err);

/* rows.c */
int capdb_pg_upsert(capdb *db, const capdb_image *img, capdb_err *err);
int capdb_pg_delete_path(capdb *db, const char *path, int64_t *deleted, capdb_err *err);
int capdb_pg_move_path(capdb *db, const char *from, const char *to, int64_t *moved,
                       capdb_err *err);
int capdb_pg_update_stat(capdb *db, int64_t id, uint64_t device, uint64_t inode, int64_t size,
                         int64_t mtime_ns, capdb_err *err);
int capdb_pg_update_text(capdb *db, int64_t id, const char *description, const char *keywords,
                         int64_t sidecar_mtime_ns, capdb_err *err);
int capdb_pg_get_row(capdb *db, int64_t id, capdb_row *out, capdb_err *err);
int capdb_pg_lookup_path(capdb *db, const char *path, capdb_file_state *state, capdb_err *err);
int capdb_pg_find_by_fingerprint(capdb *db, uint64_t fingerprint, int64_t size, char *path_out,
                                 size_t path_size, capdb_err *err);
int capdb_pg_foreach_path(capdb *db, const char *prefix,
                          int (*fn)(void *ctx, const char *path), void *ctx, capdb_err *err);
int capdb_pg_foreach_count(capdb *db, const char *group,
                           int (*fn)(void *ctx, const char *value, int64_t count), void *ctx,
                           capdb_err *err);
int capdb_pg_foreach_failure(capdb *db, int limit,
                             int (*fn)(void *ctx, const char *path, const char *error,
                                       int64_t when),
                             void *ctx, capdb_err *err);
int capdb_pg_get_pooled(capdb *db, const char *path, float *out, int n, capdb_err *err);

/* search.c */
int capdb_pg_search(capdb *db, const capdb_query *q, capdb_results *out, capdb_err *err);

/* work.c */
int capdb_pg_work_enqueue(capdb *db, const char *path, int64_t size, int64_t mtime_ns,
                          capdb_err *err);
int capdb_pg_work_claim(capdb *db, const char *node, int max, int lease_s,
                        capdb_work_item **items, int *n, capdb_err *err);
int capdb_pg_work_done(capdb *db, const char *node, const char *path, capdb_err *err);
int capdb_pg_work_release(capdb *db, const char *node, capdb_err *err);
int capdb_pg_work_renew(capdb *db, const char *node, const char *path, int lease_s,
                        capdb_err *err);
int capdb_pg_node_heartbeat(capdb *db, const capdb_node *node, capdb_err *err);
int capdb_pg_foreach_node(capdb *db, int (*fn)(void *ctx, const capdb_node *node), void *ctx,
                          capdb_err *err);
int capdb_pg_work_counts(capdb *db, capdb_work_counts *out, capdb_err *err);

#endif
