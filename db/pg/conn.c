/*
 * The PostgreSQL backend (several nodes, one library): connections and reconnects,
 * the statement runner, errors by SQLSTATE, transactions, metadata and counts. Rows
 * live in rows.c, the schema in schema.c, ranking in search.c, the work queue in work.c.
 *
 * The trust rule: what the server says decides by SQLSTATE, never by message text;
 * libpq's connection status decides "connection lost".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caputf8.h"
#include "pg.h"

/* The advisory lock nodes take while creating or migrating the schema ("CAPS"). */
#define MIGRATION_LOCK_KEY "1128354899"

static int connect_session(capdb *db, capdb_err *err);
static int check_version(capdb *db, int mode, capdb_err *err);
static int pg_fail(capdb *db, capdb_err *err, const PGresult *res, const char *what);
static void describe_target(const PGconn *conn, char *out, size_t size);
static void ignore_notice(void *arg, const char *message);
static void first_line(char *s);

int capdb_pg_open(const char *target, int mode, capdb **out, capdb_err *err)
{
    *out = NULL;
    char why[CAPDB_ERR_MAX];
    if (capdb__libpq_load(why, sizeof why) < 0) return capdb__fail(err, -ENOSYS, "%s", why);
    capdb *db = calloc(1, sizeof *db);
    if (db) db->pg = calloc(1, sizeof *db->pg);
    if (!db || !db->pg || !(db->path = strdup(target))) {
        if (db) free(db->pg);
        free(db);
        return capdb__fail(err, -ENOMEM, "out of memory");
    }
    db->backend = &capdb__pg_backend;
    db->readonly = mode == CAPDB_OPEN_READONLY;
    db->pg->lock_timeout_ms = 5000; /* as SQLite's busy timeout */
    int rc = connect_session(db, err);
    if (rc == 0) rc = check_version(db, mode, err);
    if (rc) {
        capdb_pg_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

void capdb_pg_close(capdb *db)
{
    if (!db) return;
    if (db->pg) PQfinish(db->pg->conn);
    free(db->pg);
    free(db->path);
    free(db);
}

void capdb_pg_set_busy_timeout(capdb *db, int ms)
{
    db->pg->lock_timeout_ms = ms > 0 ? ms : 0;
    char sql[64];
    snprintf(sql, sizeof sql, "SET lock_timeout = %d", db->pg->lock_timeout_ms);
    capdb__pg_exec(db, sql, NULL, NULL, "setting the lock timeout");
}

/* The server guards its own files; there is no file of ours to be damaged. */
int capdb_pg_damaged(capdb *db)
{
    (void)db;
    return 0;
}

int capdb_pg_schema_version(capdb *db)
{
    int code;
    PGresult *r = capdb__pg_run(db, "SELECT version FROM version", NULL, &code, NULL, "version");
    if (!r) return code;
    int v = PQntuples(r) == 1 ? (int)capdb__pg_get_int(r, 0, 0) : -EIO;
    PQclear(r);
    return v;
}

/* ------------------------------------------------------------------ transactions */

int capdb_pg_begin(capdb *db, capdb_err *err)
{
    if (db->pg->in_tx) return capdb__fail(err, -EINVAL, "a transaction is already open");
    int rc = capdb__pg_exec(db, "BEGIN", NULL, err, "starting a transaction");
    if (rc == 0) db->pg->in_tx = 1;
    return rc;
}

int capdb_pg_commit(capdb *db, capdb_err *err)
{
    int rc = capdb__pg_exec(db, "COMMIT", NULL, err, "committing");
    db->pg->in_tx = 0; /* committed, or (on error) rolled back by the server */
    db->pg->savepoints = 0;
    if (rc) db->model_version_seen[0] = '\0'; /* the batch's note went with it */
    return rc;
}

int capdb_pg_rollback(capdb *db)
{
    db->model_version_seen[0] = '\0'; /* a note written in the batch is undone with it */
    if (!db->pg->in_tx) return 0;
    db->pg->in_tx = 0;
    db->pg->savepoints = 0;
    if (PQstatus(db->pg->conn) != CONNECTION_OK) return 0; /* gone with the connection */
    return capdb__pg_exec(db, "ROLLBACK", NULL, NULL, "rolling back");
}

int capdb__pg_atomic_begin(capdb *db, capdb_err *err)
{
    if (!db->pg->in_tx) return capdb__pg_exec(db, "BEGIN", NULL, err, "starting a transaction");
    int rc = capdb__pg_exec(db, "SAVEPOINT capdb_op", NULL, err, "starting an operation");
    if (rc == 0) db->pg->savepoints++;
    return rc;
}

int capdb__pg_atomic_end(capdb *db, int ok, capdb_err *err)
{
    if (!db->pg->in_tx) {
        if (ok) return capdb__pg_exec(db, "COMMIT", NULL, err, "committing");
        capdb__pg_exec(db, "ROLLBACK", NULL, NULL, "rolling back");
        return 0;
    }
    if (db->pg->savepoints > 0) db->pg->savepoints--;
    if (PQstatus(db->pg->conn) != CONNECTION_OK) return ok ? -ECONNRESET : 0;
    if (!ok) capdb__pg_exec(db, "ROLLBACK TO SAVEPOINT capdb_op", NULL, NULL, "undoing");
    return capdb__pg_exec(db, "RELEASE SAVEPOINT capdb_op", NULL, ok ? err : NULL, "ending");
}

/* ------------------------------------------------------------------ metadata, counts */

int capdb_pg_meta_set(capdb *db, const char *key, const char *value, capdb_err *err)
{
    int oom = 0;
    char *k = capdb__pg_utf8(key, &oom), *v = capdb__pg_utf8(value ? value : "", &oom);
    pg_params p = {0};
    capdb__pg_text(&p, k);
    capdb__pg_text(&p, v);
    /* in a savepoint: a failure fails this write alone, not the caller's batch */
    int rc = oom ? capdb__fail(err, -ENOMEM, "out of memory") : capdb__pg_atomic_begin(db, err);
    if (rc == 0) {
        rc = capdb__pg_exec(db,
                            "INSERT INTO meta(key, value) VALUES($1, $2)"
                            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                            &p, err, "setting metadata");
        int end = rc == -ECONNRESET ? rc : capdb__pg_atomic_end(db, rc == 0, err);
        if (rc == 0) rc = end;
    }
    free(k);
    free(v);
    return rc;
}

int capdb_pg_meta_get(capdb *db, const char *key, char *value, size_t size, capdb_err *err)
{
    int oom = 0, code;
    char *k = capdb__pg_utf8(key, &oom);
    if (oom) return capdb__fail(err, -ENOMEM, "out of memory");
    pg_params p = {0};
    capdb__pg_text(&p, k);
    PGresult *r = capdb__pg_run(db, "SELECT value FROM meta WHERE key = $1", &p, &code, err,
                                "reading metadata");
    free(k);
    if (!r) return code;
    int found = PQntuples(r) > 0;
    if (found && size) snprintf(value, size, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return found;
}

int capdb_pg_counts_get(capdb *db, capdb_counts *out, capdb_err *err)
{
    memset(out, 0, sizeof *out);
    int code;
    /* the partial index on failed rows answers the second without a table scan; the size
     * is every table, index and TOAST of our schema */
    PGresult *r = capdb__pg_run(
        db,
        "SELECT (SELECT count(*) FROM images), (SELECT count(*) FROM images WHERE status = 1),"
        " (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
        "  JOIN pg_namespace n ON n.oid = c.relnamespace"
        "  WHERE n.nspname = 'capsearch' AND c.relkind = 'r')",
        NULL, &code, err, "counting images");
    if (!r) return code;
    out->total = capdb__pg_get_int(r, 0, 0);
    out->failed = capdb__pg_get_int(r, 0, 1);
    out->ok = out->total - out->failed;
    out->db_bytes = capdb__pg_get_int(r, 0, 2);
    PQclear(r);
    return 0;
}

/* ------------------------------------------------------------------ statements */

void capdb__pg_text(pg_params *p, const char *s)
{
    if (p->n >= CAPDB_PG_MAX_PARAMS) return;
    p->values[p->n] = s;
    p->lengths[p->n] = 0;
    p->formats[p->n] = 0;
    p->n++;
}

void capdb__pg_int(pg_params *p, int64_t v)
{
    if (p->n >= CAPDB_PG_MAX_PARAMS) return;
    snprintf(p->numbers[p->n], sizeof p->numbers[p->n], "%lld", (long long)v);
    capdb__pg_text(p, p->numbers[p->n]);
}

void capdb__pg_double(pg_params *p, double v)
{
    if (p->n >= CAPDB_PG_MAX_PARAMS) return;
    snprintf(p->numbers[p->n], sizeof p->numbers[p->n], "%.17g", v);
    capdb__pg_text(p, p->numbers[p->n]);
}

void capdb__pg_bytes(pg_params *p, const void *bytes, int length)
{
    if (p->n >= CAPDB_PG_MAX_PARAMS) return;
    p->values[p->n] = bytes;
    p->lengths[p->n] = length;
    p->formats[p->n] = 1;
    p->n++;
}

PGresult *capdb__pg_run(capdb *db, const char *sql, const pg_params *params, int *code,
                        capdb_err *err, const char *what)
{
    struct capdb_pg *pg = db->pg;
    if (PQstatus(pg->conn) != CONNECTION_OK) {
        if (pg->in_tx) {
            *code = capdb__fail(err, -ECONNRESET,
                                "%s: the connection to the database server was lost; the "
                                "open transaction is gone",
                                what);
            return NULL;
        }
        /* between transactions nothing is lost: connect again */
        if ((*code = connect_session(db, err)) != 0) return NULL;
    }
    /* without parameters the simple protocol, which (unlike PQexecParams) runs several
     * statements in one string: the schema's creation and migrations are such strings */
    PGresult *r = params && params->n ? PQexecParams(pg->conn, sql, params->n, NULL, params->values,
                                                     params->lengths, params->formats, 0)
                                      : PQexec(pg->conn, sql);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
    if (!pg->in_tx && !pg->savepoints && PQstatus(pg->conn) != CONNECTION_OK) {
        /* libpq learns that an idle connection died (a server restart) only when a
         * statement fails on it; outside a transaction nothing is lost: connect again
         * and run it once more */
        PQclear(r);
        if ((*code = connect_session(db, err)) != 0) return NULL;
        r = params && params->n ? PQexecParams(pg->conn, sql, params->n, NULL, params->values,
                                               params->lengths, params->formats, 0)
                                : PQexec(pg->conn, sql);
        st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
    }
    *code = pg_fail(db, err, r, what);
    PQclear(r);
    return NULL;
}

int capdb__pg_exec(capdb *db, const char *sql, const pg_params *params, capdb_err *err,
                   const char *what)
{
    int code;
    PGresult *r = capdb__pg_run(db, sql, params, &code, err, what);
    if (!r) return code;
    PQclear(r);
    return 0;
}

/* ------------------------------------------------------------------ results */

int64_t capdb__pg_get_int(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

double capdb__pg_get_double(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtod(PQgetvalue(r, row, col), NULL);
}

char *capdb__pg_get_text(const PGresult *r, int row, int col, int *oom)
{
    if (PQgetisnull(r, row, col)) return NULL;
    char *s = strdup(PQgetvalue(r, row, col));
    if (!s) *oom = 1;
    return s;
}

unsigned char *capdb__pg_get_bytes(const PGresult *r, int row, int col, size_t *length, int *oom)
{
    if (length) *length = 0;
    if (PQgetisnull(r, row, col)) return NULL;
    size_t n = 0;
    unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), &n);
    unsigned char *out = raw ? malloc(n + 1) : NULL;
    if (out) {
        memcpy(out, raw, n);
        out[n] = '\0';
        if (length) *length = n;
    } else {
        *oom = 1;
    }
    PQfreemem(raw);
    return out;
}

char *capdb__pg_utf8(const char *s, int *oom)
{
    if (!s) return NULL;
    size_t len = strlen(s);
    char *out = malloc(len * 3 + 1), *o = out; /* each bad byte may become 3 */
    if (!out) {
        *oom = 1;
        return NULL;
    }
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        uint32_t cp;
        int l = cu_utf8_decode(p, 4, &cp);
        if (l > 0) {
            memcpy(o, p, (size_t)l);
            o += l;
            p += l;
        } else {
            memcpy(o, "\xEF\xBF\xBD", 3); /* U+FFFD */
            o += 3;
            p++;
        }
    }
    *o = '\0';
    return out;
}

/* ------------------------------------------------------------------ helpers */

/* Connects (or connects again) and sets the session up: our schema first on the search
 * path, UTF-8, quiet notices (plainto_tsquery's "stop words only" would reach stderr),
 * the lock timeout, read-only transactions for readers. */
static int connect_session(capdb *db, capdb_err *err)
{
    struct capdb_pg *pg = db->pg;
    if (pg->conn) PQfinish(pg->conn);
    pg->conn = PQconnectdb(db->path);
    pg->in_tx = 0;
    pg->savepoints = 0;
    db->model_version_seen[0] = '\0'; /* a batch lost with the old connection took its note */
    if (!pg->conn) return capdb__fail(err, -ENOMEM, "out of memory");
    if (PQstatus(pg->conn) != CONNECTION_OK) {
        char msg[CAPDB_ERR_MAX];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(pg->conn));
        first_line(msg);
        return capdb__fail(err, -ECONNREFUSED, "cannot connect to the PostgreSQL server: %s", msg);
    }
    PQsetNoticeProcessor(pg->conn, ignore_notice, NULL);
    char sql[512];
    snprintf(sql, sizeof sql,
             "SET search_path = capsearch; SET client_encoding = 'UTF8';"
             " SET application_name = 'capsearch'; SET lock_timeout = %d;%s",
             pg->lock_timeout_ms, db->readonly ? " SET default_transaction_read_only = on;" : "");
    PGresult *r = PQexec(pg->conn, sql);
    int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    int code = ok ? 0 : pg_fail(db, err, r, "setting up the session");
    PQclear(r);
    return code;
}

/* Readers need the newest schema; a writer creates or migrates it in one transaction
 * under an advisory lock (nodes that start together wait for the first). A schema
 * "capsearch" without our version table belongs to someone else: refused, untouched. */
static int check_version(capdb *db, int mode, capdb_err *err)
{
    char where[256];
    describe_target(db->pg->conn, where, sizeof where);
    int code;
    PGresult *r = capdb__pg_run(db,
                                "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname ="
                                " 'capsearch'), to_regclass('capsearch.version') IS NOT NULL",
                                NULL, &code, err, "reading the schema");
    if (!r) return code;
    int has_schema = capdb__pg_get_int(r, 0, 0) > 0;
    int has_version = PQgetvalue(r, 0, 1)[0] == 't';
    PQclear(r);
    if (has_schema && !has_version)
        return capdb__fail(err, -EEXIST,
                           "%s has a schema \"capsearch\" that is not a capsearch index: left "
                           "untouched; give capsearch a database of its own",
                           where);
    if (mode == CAPDB_OPEN_READONLY) {
        if (!has_schema)
            return capdb__fail(err, -ENOENT,
                               "no capsearch index in %s (run capsearchd or 'capsearch index' "
                               "once to create it)",
                               where);
        int v = capdb_pg_schema_version(db);
        if (v < 0) return capdb__fail(err, -EIO, "%s: cannot read the schema version", where);
        if (v > CAPDB_PG_SCHEMA_LATEST)
            return capdb__fail(err, -EIO,
                               "%s has schema version %d, newer than this program knows (%d): "
                               "upgrade capsearch",
                               where, v, CAPDB_PG_SCHEMA_LATEST);
        if (v < CAPDB_PG_SCHEMA_LATEST)
            return capdb__fail(err, -EIO,
                               "%s has schema version %d (this program needs %d): run "
                               "capsearchd or 'capsearch index' once to upgrade it",
                               where, v, CAPDB_PG_SCHEMA_LATEST);
        return 0;
    }

    int rc = capdb_pg_begin(db, err);
    if (rc) return rc;
    rc = capdb__pg_exec(db, "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK_KEY ")", NULL, err,
                        "waiting for another node's migration");
    if (rc == 0)
        rc = capdb__pg_exec(db,
                            "CREATE SCHEMA IF NOT EXISTS capsearch;"
                            " CREATE TABLE IF NOT EXISTS capsearch.version(version integer"
                            " NOT NULL);"
                            " INSERT INTO capsearch.version SELECT 0 WHERE NOT EXISTS"
                            " (SELECT 1 FROM capsearch.version)",
                            NULL, err, "creating the schema");
    int v = rc == 0 ? capdb_pg_schema_version(db) : 0;
    if (rc == 0 && v < 0) rc = capdb__fail(err, -EIO, "%s: cannot read the schema version", where);
    if (rc == 0 && v > CAPDB_PG_SCHEMA_LATEST)
        rc = capdb__fail(err, -EIO,
                         "%s has schema version %d, newer than this program knows (%d): "
                         "upgrade capsearch",
                         where, v, CAPDB_PG_SCHEMA_LATEST);
    if (rc == 0 && v < CAPDB_PG_SCHEMA_LATEST)
        rc = capdb__pg_migrate(db, v, CAPDB_PG_SCHEMA_LATEST, err);
    if (rc == 0) return capdb_pg_commit(db, err);
    capdb_pg_rollback(db);
    return rc;
}

/* SQLSTATE classes (PostgreSQL manual, appendix A) to our codes. */
static int pg_fail(capdb *db, capdb_err *err, const PGresult *res, const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    int code = -EIO;
    /* The server gives every error of its own a SQLSTATE; a failed statement without one
     * is libpq's own report: the connection broke (its status may still say OK until
     * the next call). */
    if (PQstatus(db->pg->conn) != CONNECTION_OK || !state || !strncmp(state, "08", 2) ||
        !strcmp(state, "57P01") || !strcmp(state, "57P02") || !strcmp(state, "57P03")) {
        /* the transaction (if any) died with the connection */
        code = db->pg->in_tx ? -ECONNRESET : -ECONNREFUSED;
        db->pg->in_tx = 0;
        db->pg->savepoints = 0;
    } else if (state) {
        if (!strcmp(state, "53100")) code = -ENOSPC;      /* disk_full */
        else if (!strcmp(state, "53200")) code = -ENOMEM; /* out_of_memory */
        else if (!strcmp(state, "25006")) code = -EROFS;  /* read_only_sql_transaction */
        else if (!strcmp(state, "55P03") || !strcmp(state, "40P01") || /* lock, deadlock */
                 !strcmp(state, "40001"))                              /* serialization */
            code = -EBUSY;
        else if (!strncmp(state, "42501", 5) || !strncmp(state, "28", 2)) code = -EACCES;
        else if (!strncmp(state, "23", 2) || !strncmp(state, "22", 2)) code = -EINVAL;
        else if (!strcmp(state, "57014")) code = -ETIMEDOUT; /* query_canceled */
    }
    char msg[CAPDB_ERR_MAX];
    snprintf(msg, sizeof msg, "%s",
             res && *PQresultErrorMessage(res) ? PQresultErrorMessage(res)
                                               : PQerrorMessage(db->pg->conn));
    first_line(msg);
    return capdb__fail(err, code, "%s: %s", what, msg);
}

/* "database capsearch on /tmp/x" for messages: never the URI, which may hold a password. */
static void describe_target(const PGconn *conn, char *out, size_t size)
{
    const char *host = PQhost(conn);
    snprintf(out, size, "database %s on %s", PQdb(conn) ? PQdb(conn) : "?",
             host && *host ? host : "the local server");
}

static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static void first_line(char *s)
{
    char *nl = strchr(s, '\n');
    if (nl) *nl = '\0';
}

/* ------------------------------------------------------------------ the backend */

const capdb_backend capdb__pg_backend = {
    .name = "postgresql",
    .shared = 1,
    .open = capdb_pg_open,
    .close = capdb_pg_close,
    .set_busy_timeout = capdb_pg_set_busy_timeout,
    .damaged = capdb_pg_damaged,
    .schema_version = capdb_pg_schema_version,
    .begin = capdb_pg_begin,
    .commit = capdb_pg_commit,
    .rollback = capdb_pg_rollback,
    .upsert = capdb_pg_upsert,
    .delete_path = capdb_pg_delete_path,
    .move_path = capdb_pg_move_path,
    .update_stat = capdb_pg_update_stat,
    .update_text = capdb_pg_update_text,
    .get_row = capdb_pg_get_row,
    .lookup_path = capdb_pg_lookup_path,
    .find_by_fingerprint = capdb_pg_find_by_fingerprint,
    .foreach_path = capdb_pg_foreach_path,
    .meta_set = capdb_pg_meta_set,
    .meta_get = capdb_pg_meta_get,
    .counts_get = capdb_pg_counts_get,
    .search = capdb_pg_search,
    .get_pooled = capdb_pg_get_pooled,
    .foreach_count = capdb_pg_foreach_count,
    .foreach_failure = capdb_pg_foreach_failure,
    .work_enqueue = capdb_pg_work_enqueue,
    .work_claim = capdb_pg_work_claim,
    .work_done = capdb_pg_work_done,
    .work_release = capdb_pg_work_release,
    .work_renew = capdb_pg_work_renew,
    .node_heartbeat = capdb_pg_node_heartbeat,
    .foreach_node = capdb_pg_foreach_node,
    .work_counts = capdb_pg_work_counts,
};
