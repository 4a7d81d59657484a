/*
 * The SQLite backend, the embedded default: connections, errors, transactions,
 * metadata and counts. Rows live in rows.c, the schema in schema.c, ranking in search.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sqlite.h"

/* Long enough for a daemon's batch commit to finish, short enough that a CLI user
 * is never left waiting silently. */
#define BUSY_TIMEOUT_MS 5000
/* Address space for the memory map of the database (a 1M-row index is ~3 GB). */
#define CAPDB_MMAP_BYTES_TEXT "4294967296"

static const char *const STMT_SQL[STMT__COUNT] = {
    [STMT_UPSERT] =
        "INSERT INTO images(path, device, inode, size, mtime_ns, fingerprint, width, height,"
        " taken_time, status, error, caption, tags, path_words, model_version, indexed_time,"
        " description, keywords, sidecar_mtime_ns, format, reason)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,"
        " ?18, ?19, ?20, ?21)"
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
    [STMT_VECTORS_PUT] =
        "INSERT OR REPLACE INTO vectors(image_id, concepts, pooled) VALUES(?1, ?2, ?3)",
    [STMT_VECTORS_DEL] = "DELETE FROM vectors WHERE image_id = ?1",
    [STMT_POSTINGS_DEL] = "DELETE FROM postings WHERE image_id = ?1",
    [STMT_POSTING_PUT] = "INSERT INTO postings(concept, weight, image_id) VALUES(?1, ?2, ?3)",
    [STMT_LOOKUP] = "SELECT id, device, inode, size, mtime_ns, fingerprint, status, model_version,"
                    " sidecar_mtime_ns FROM images WHERE path = ?1",
    [STMT_FIND_FP] =
        "SELECT path FROM images WHERE fingerprint = ?1 AND size = ?2 AND status = 0 LIMIT 1",
    [STMT_META_SET] = "INSERT INTO meta(key, value) VALUES(?1, ?2)"
                      " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [STMT_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [STMT_POSTINGS_TOP] = "SELECT image_id, weight FROM postings WHERE concept = ?1"
                          " ORDER BY weight DESC LIMIT ?2",
    [STMT_ROW_FOR_HIT] = "SELECT path, caption, tags, taken_time, mtime_ns, width, height, status,"
                         " description, keywords FROM images WHERE id = ?1",
    [STMT_CONCEPTS_OF] = "SELECT concepts FROM vectors WHERE image_id = ?1",
    [STMT_UPDATE_TEXT] = "UPDATE images SET description = ?2, keywords = ?3, sidecar_mtime_ns = ?4"
                         " WHERE id = ?1",
    [STMT_GET_ROW] = "SELECT path, size, mtime_ns, fingerprint, width, height, taken_time, status,"
                     " error, caption, tags, model_version, description, keywords, format,"
                     " indexed_time FROM images WHERE id = ?1",
    [STMT_UPDATE_STAT] =
        "UPDATE images SET device = ?2, inode = ?3, size = ?4, mtime_ns = ?5 WHERE id = ?1",
    [STMT_POOLED_OF_PATH] =
        "SELECT v.pooled FROM images i JOIN vectors v ON v.image_id = i.id WHERE i.path = ?1",
};

static int open_connection(capdb *db, const char *path, int flags, int immutable);
static int check_ours(capdb *db, capdb_err *err);
static int check_version(capdb *db, int mode, capdb_err *err);
static int make_parent_dirs(const char *path);
static int exec(capdb *db, const char *sql, capdb_err *err);

int capdb_sq_open(const char *path, int mode, capdb **out, capdb_err *err)
{
    *out = NULL;
    if (!path || !*path) return capdb__fail(err, -EINVAL, "no database path given");
    struct stat sb;
    int exists = stat(path, &sb) == 0;
    if (exists && S_ISDIR(sb.st_mode))
        return capdb__fail(err, -EISDIR,
                           "%s is a folder, not an index file (give the "
                           "database file, e.g. %s/index.db)",
                           path, path);
    if (exists && !S_ISREG(sb.st_mode))
        return capdb__fail(err, -EINVAL, "%s is not a regular file: not an index", path);
    if (mode == CAPDB_OPEN_READONLY && !exists)
        return capdb__fail(err, -ENOENT, "no index database at %s", path);
    if (mode == CAPDB_OPEN_WRITE && make_parent_dirs(path) != 0)
        return capdb__fail(err, -errno, "cannot create the folder of %s: %s", path,
                           strerror(errno));

    capdb *db = calloc(1, sizeof *db);
    if (!db || !(db->path = strdup(path))) {
        free(db);
        return capdb__fail(err, -ENOMEM, "out of memory");
    }
    db->backend = &capdb__sqlite_backend;
    db->readonly = mode == CAPDB_OPEN_READONLY;
    int flags = db->readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    int rc = open_connection(db, path, flags, 0);
    if (rc != SQLITE_OK) {
        int code = capdb__sqlfail(db, err, rc, path);
        capdb_sq_close(db);
        return code;
    }
    /* SQLite quietly opens a file it may not write read-only; every write would then fail
     * one by one (found by the read-only fault test). */
    if (!db->readonly && sqlite3_db_readonly(db->sql, "main") == 1) {
        capdb_sq_close(db);
        return capdb__fail(err, -EROFS,
                           "%s is read-only (file permissions or a read-only "
                           "file system): cannot write the index",
                           path);
    }
    /* A reader of a WAL index needs its -shm, or a folder where it can create one. A copy
     * in a read-only folder with no -shm has no live writer (a writer would have made
     * one): read it as an immutable file rather than refuse it. */
    if (db->readonly && capdb_sq_schema_version(db) < 0 &&
        (sqlite3_extended_errcode(db->sql) & 0xff) == SQLITE_CANTOPEN) {
        char shm[4096];
        snprintf(shm, sizeof shm, "%s-shm", path);
        if (access(shm, F_OK) != 0) {
            sqlite3_close(db->sql);
            db->sql = NULL;
            rc = open_connection(db, path, flags, 1);
            if (rc != SQLITE_OK) {
                int code = capdb__sqlfail(db, err, rc, path);
                capdb_sq_close(db);
                return code;
            }
        }
    }

    if (capdb__register_functions(db->sql, &db->fts5) != 0) {
        capdb_sq_close(db);
        return capdb__fail(err, -EIO, "this SQLite has no usable FTS5");
    }
    rc = check_ours(db, err);
    if (rc == 0) rc = check_version(db, mode, err);
    if (rc == 0 && !db->readonly) rc = exec(db, "PRAGMA synchronous = NORMAL", err);
    /* Pages are read through a memory map by default (capdb_map_pages says when not):
     * a scan of every vector then costs page-cache lookups, not a syscall and a copy a
     * page. The map only reads; writes still go through the WAL. */
    if (rc == 0) capdb_sq_map_pages(db, 1);
    if (rc != 0) {
        capdb_sq_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

void capdb_sq_close(capdb *db)
{
    if (!db) return;
    for (int i = 0; i < STMT__COUNT; i++) sqlite3_finalize(db->stmts[i]);
    /* the writer leaves a WAL of zero bytes (see check_version); a reader still open
     * makes this a no-op (busy), and its own close does nothing more */
    if (db->sql && !db->readonly && !db->damaged) {
        sqlite3_busy_timeout(db->sql, 100);
        sqlite3_exec(db->sql, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    }
    sqlite3_close(db->sql);
    free(db->path);
    free(db);
}

int capdb_sq_schema_version(capdb *db)
{
    sqlite3_stmt *st = NULL;
    int version = -1;
    if (sqlite3_prepare_v2(db->sql, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK) return -EIO;
    if (sqlite3_step(st) == SQLITE_ROW) version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return version;
}

void capdb_sq_set_busy_timeout(capdb *db, int ms) { sqlite3_busy_timeout(db->sql, ms); }

/* The page cache's block: one huge page, about 480 slots, as many pages as the default
 * cache_size (2000 KiB) holds anyway. A search reads 380 pages of a 100k-row index and
 * 590 of a 1M-row one; past the block SQLite recycles pages or allocates as before. Not
 * larger: SQLite links every slot into its free list when it starts, so the whole block
 * is touched (and, without huge pages, faulted page by page) at once. Where the kernel's
 * THP defrag setting is "madvise", that first touch may compact memory synchronously on
 * a fragmented machine; it falls back to small pages when it cannot. */
#define PAGE_CACHE_BLOCK (2u << 20)
#define HUGE_PAGE (2u << 20)

/* Under AddressSanitizer the pages stay separate malloc'd buffers, which it can watch. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

int capdb_reserve_page_cache(void)
{
#ifdef UNDER_ASAN
    return -EBUSY;
#else
    int header = 0;
    if (sqlite3_config(SQLITE_CONFIG_PCACHE_HDRSZ, &header) != SQLITE_OK) return -EBUSY;
    /* room to align the block to a huge page; the unused part is never touched */
    void *map = mmap(NULL, PAGE_CACHE_BLOCK + HUGE_PAGE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) return -ENOMEM;
    char *block = (char *)(((uintptr_t)map + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    madvise(block, PAGE_CACHE_BLOCK, MADV_HUGEPAGE); /* a hint: fine if refused */
    /* slots for the default page size; SQLite falls back to malloc for other sizes */
    int slot = 4096 + header;
    if (sqlite3_config(SQLITE_CONFIG_PAGECACHE, block, slot, (int)(PAGE_CACHE_BLOCK / slot)) !=
        SQLITE_OK) {
        munmap(map, PAGE_CACHE_BLOCK + HUGE_PAGE);
        return -EBUSY;
    }
    return 0; /* the block stays for the process's life, as SQLite requires */
#endif
}

void capdb_sq_map_pages(capdb *db, int on)
{
    exec(db, on ? "PRAGMA mmap_size = " CAPDB_MMAP_BYTES_TEXT : "PRAGMA mmap_size = 0", NULL);
}

int capdb_sq_damaged(capdb *db)
{
    if (db->damaged) return 1;
    /* The header through SQLite's own descriptor: no open(), no close(), no lock lost. */
    sqlite3_file *file = NULL;
    if (sqlite3_file_control(db->sql, "main", SQLITE_FCNTL_FILE_POINTER, &file) != SQLITE_OK ||
        !file || !file->pMethods)
        return 0;
    char head[16];
    int rc = file->pMethods->xRead(file, head, sizeof head, 0);
    if (rc == SQLITE_IOERR_SHORT_READ) return 0; /* empty: nothing written yet */
    if (rc == SQLITE_OK && memcmp(head, "SQLite format 3", 16) != 0) db->damaged = 1;
    return db->damaged;
}

/* ------------------------------------------------------------------ transactions */

int capdb_sq_begin(capdb *db, capdb_err *err)
{
    /* IMMEDIATE: take the write lock now, so a busy database fails here (after the busy
     * timeout) rather than in the middle of a batch. */
    return exec(db, "BEGIN IMMEDIATE", err);
}

int capdb_sq_commit(capdb *db, capdb_err *err) { return exec(db, "COMMIT", err); }

int capdb_sq_rollback(capdb *db)
{
    if (sqlite3_get_autocommit(db->sql)) return 0;
    return sqlite3_exec(db->sql, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
}

/* ------------------------------------------------------------------ metadata */

int capdb_sq_meta_set(capdb *db, const char *key, const char *value, capdb_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = capdb__stmt(db, STMT_META_SET, &st, err);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value ? value : "", -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : capdb__sqlfail(db, err, rc, "setting metadata");
}

int capdb_sq_meta_get(capdb *db, const char *key, char *value, size_t size, capdb_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = capdb__stmt(db, STMT_META_GET, &st, err);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    int found = 0;
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        if (size) snprintf(value, size, "%s", v ? v : "");
        found = 1;
    } else if (rc != SQLITE_DONE) {
        found = capdb__sqlfail(db, err, rc, "reading metadata");
    }
    sqlite3_reset(st);
    return found;
}

int capdb_sq_counts_get(capdb *db, capdb_counts *out, capdb_err *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        db->sql,
        /* the partial index on failed rows answers the second without a table scan */
        "SELECT (SELECT count(*) FROM images), (SELECT count(*) FROM images WHERE status = 1)", -1,
        &st, NULL);
    if (rc != SQLITE_OK) return capdb__sqlfail(db, err, rc, "counting images");
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->total = sqlite3_column_int64(st, 0);
        out->failed = sqlite3_column_int64(st, 1);
        out->ok = out->total - out->failed; /* status is 0 or 1 (rows.c) */
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) return capdb__sqlfail(db, err, rc, "counting images");

    /* The WAL holds committed pages not yet checkpointed: it is part of the size. */
    struct stat sb;
    char wal[4096];
    if (stat(db->path, &sb) == 0) out->db_bytes += sb.st_size;
    snprintf(wal, sizeof wal, "%s-wal", db->path);
    if (stat(wal, &sb) == 0) out->db_bytes += sb.st_size;
    return 0;
}

/* ------------------------------------------------------------------ default path */

/* ------------------------------------------------------------------ helpers */

int capdb__sqlfail(capdb *db, capdb_err *err, int rc, const char *what)
{
    int code;
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: code = -EBUSY; break;
    case SQLITE_READONLY: code = -EROFS; break;
    case SQLITE_FULL: code = -ENOSPC; break;
    case SQLITE_NOMEM: code = -ENOMEM; break;
    case SQLITE_PERM:
    case SQLITE_AUTH: code = -EACCES; break;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE: code = -EINVAL; break;
    default: code = -EIO; break;
    }
    /* The damage verdict comes from the result code, never from the message text: a
     * folder may be named "file is not a database". */
    if ((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB) {
        if (db) db->damaged = 1;
        if (err) err->damaged = 1;
    }
    const char *msg = db && db->sql ? sqlite3_errmsg(db->sql) : sqlite3_errstr(rc);
    return capdb__fail(err, code, "%s: %s", what, msg);
}

int capdb__stmt(capdb *db, enum capdb_stmt_id id, sqlite3_stmt **out, capdb_err *err)
{
    if (!db->stmts[id]) {
        int rc = sqlite3_prepare_v3(db->sql, STMT_SQL[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &db->stmts[id], NULL);
        if (rc != SQLITE_OK) return capdb__sqlfail(db, err, rc, "preparing a statement");
    }
    sqlite3_reset(db->stmts[id]);
    sqlite3_clear_bindings(db->stmts[id]);
    *out = db->stmts[id];
    return 0;
}

static int open_connection(capdb *db, const char *path, int flags, int immutable)
{
    int rc;
    if (immutable) {
        /* percent-encode the path: any byte but NUL may appear in a file name */
        size_t len = strlen(path);
        char *buf = malloc(len * 3 + 32);
        if (!buf) return SQLITE_NOMEM;
        char *o = buf + sprintf(buf, "file:");
        for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
            if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                *p == '/' || *p == '.' || *p == '-' || *p == '_')
                *o++ = (char)*p;
            else o += sprintf(o, "%%%02X", *p);
        }
        strcpy(o, "?immutable=1");
        rc = sqlite3_open_v2(buf, &db->sql, flags | SQLITE_OPEN_URI, NULL);
        free(buf);
    } else {
        rc = sqlite3_open_v2(path, &db->sql, flags, NULL);
    }
    if (rc != SQLITE_OK) return rc;
    sqlite3_extended_result_codes(db->sql, 1);
    sqlite3_busy_timeout(db->sql, BUSY_TIMEOUT_MS);
    return SQLITE_OK;
}

/* Ours: application_id CAPDB_APPLICATION_ID, or (indexes made before the stamp) a
 * user_version we know with our meta and images tables. Empty: no schema objects and
 * user_version 0. Anything else belongs to another application: refused before
 * anything (WAL mode, the migration, the stamp) touches it. */
static int check_ours(capdb *db, capdb_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        db->sql,
        "SELECT (SELECT application_id FROM pragma_application_id),"
        " (SELECT user_version FROM pragma_user_version),"
        " (SELECT count(*) FROM sqlite_schema),"
        " (SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN ('images', 'meta'))",
        -1, &st, NULL);
    if (rc != SQLITE_OK && ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED))
        return capdb__sqlfail(db, err, rc, "reading the index header"); /* -EBUSY */
    if (rc != SQLITE_OK) {
        if (err) err->damaged = (rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT;
        return capdb__fail(err, -EIO, "%s is not a capsearch database: %s", db->path,
                           sqlite3_errmsg(db->sql));
    }
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        int code = capdb__sqlfail(db, err, rc, "reading the index header");
        sqlite3_finalize(st);
        if (code == -EIO)
            return capdb__fail(err, -EIO, "%s is not a capsearch database: %s", db->path,
                               sqlite3_errmsg(db->sql));
        return code;
    }
    int app_id = sqlite3_column_int(st, 0), version = sqlite3_column_int(st, 1);
    int objects = sqlite3_column_int(st, 2), ours = sqlite3_column_int(st, 3);
    sqlite3_finalize(st);
    if (app_id == CAPDB_APPLICATION_ID) return 0;
    if (app_id == 0 && version == 0 && objects == 0) return 0; /* empty */
    if (app_id == 0 && version > 0 && ours == 2) return 0;     /* ours, unstamped */
    /* newer than we know: check_version refuses it, before anything is written */
    if (app_id == 0 && version > CAPDB_SCHEMA_VERSION_LATEST) return 0;
    return capdb__fail(err, -EEXIST,
                       "%s is an SQLite database of another application (application_id "
                       "%d, %d schema objects), not a capsearch index: left untouched; "
                       "give capsearch a path of its own",
                       db->path, app_id, objects);
}

/* Readers need the newest schema; the writer migrates (in one transaction, so a crash
 * mid-migration leaves the old version intact) and turns WAL on. */
static int check_version(capdb *db, int mode, capdb_err *err)
{
    int version = capdb_sq_schema_version(db);
    if (version < 0)
        return capdb__fail(err, -EIO, "%s is not a capsearch database: %s", db->path,
                           sqlite3_errmsg(db->sql));
    if (version > CAPDB_SCHEMA_VERSION_LATEST)
        return capdb__fail(err, -EIO,
                           "%s has schema version %d, newer than this program knows (%d): "
                           "upgrade capsearch",
                           db->path, version, CAPDB_SCHEMA_VERSION_LATEST);
    if (mode == CAPDB_OPEN_READONLY) {
        if (version < CAPDB_SCHEMA_VERSION_LATEST)
            return capdb__fail(err, -EIO,
                               "%s has schema version %d (this program needs %d): run "
                               "capsearchd or 'capsearch index' once to upgrade it",
                               db->path, version, CAPDB_SCHEMA_VERSION_LATEST);
        return 0;
    }

    int rc = exec(db, "PRAGMA journal_mode = WAL", err);
    if (rc) return rc;
    /* Keep -wal and -shm when the writer closes: a reader that cannot create files in
     * the folder (a user reading the system service's database) can open a WAL
     * database only when they exist. */
    int persist = 1;
    sqlite3_file_control(db->sql, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
    /* ... but empty: a process that opens the index while no writer has it open rebuilds
     * the WAL index by reading every frame of the WAL (a 67 MB WAL cost each `capsearch`
     * 17,000 preads, tests/bench/query); each checkpoint that restarts the WAL truncates
     * it, and the writer's close truncates it (capdb_close). */
    exec(db, "PRAGMA journal_size_limit = 0", NULL);
    int stamped = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->sql, "PRAGMA application_id", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            stamped = sqlite3_column_int(st, 0) == CAPDB_APPLICATION_ID;
        sqlite3_finalize(st);
    }
    if (version == CAPDB_SCHEMA_VERSION_LATEST && stamped) return 0;
    if ((rc = capdb_sq_begin(db, err))) return rc;
    /* Another writer may have migrated between our read and our lock. */
    version = capdb_sq_schema_version(db);
    if (version < CAPDB_SCHEMA_VERSION_LATEST)
        rc = capdb__migrate(db->sql, version, CAPDB_SCHEMA_VERSION_LATEST, err);
    if (rc == 0 && !stamped) {
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA application_id = %d", CAPDB_APPLICATION_ID);
        rc = exec(db, pragma, err);
    }
    if (rc == 0) return capdb_sq_commit(db, err);
    capdb_sq_rollback(db);
    return rc;
}

static int make_parent_dirs(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}

static int exec(capdb *db, const char *sql, capdb_err *err)
{
    int rc = sqlite3_exec(db->sql, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : capdb__sqlfail(db, err, rc, sql);
}

/* ------------------------------------------------------------------ the backend */

const capdb_backend capdb__sqlite_backend = {
    .name = "sqlite",
    .shared = 0,
    .open = capdb_sq_open,
    .close = capdb_sq_close,
    .set_busy_timeout = capdb_sq_set_busy_timeout,
    .map_pages = capdb_sq_map_pages,
    .damaged = capdb_sq_damaged,
    .schema_version = capdb_sq_schema_version,
    .begin = capdb_sq_begin,
    .commit = capdb_sq_commit,
    .rollback = capdb_sq_rollback,
    .upsert = capdb_sq_upsert,
    .delete_path = capdb_sq_delete_path,
    .move_path = capdb_sq_move_path,
    .update_stat = capdb_sq_update_stat,
    .update_text = capdb_sq_update_text,
    .get_row = capdb_sq_get_row,
    .lookup_path = capdb_sq_lookup_path,
    .find_by_fingerprint = capdb_sq_find_by_fingerprint,
    .foreach_path = capdb_sq_foreach_path,
    .meta_set = capdb_sq_meta_set,
    .meta_get = capdb_sq_meta_get,
    .counts_get = capdb_sq_counts_get,
    .search = capdb_sq_search,
    .get_pooled = capdb_sq_get_pooled,
    .foreach_count = capdb_sq_foreach_count,
    .foreach_failure = capdb_sq_foreach_failure,
    /* one machine, one writer: no shared work queue */
};
