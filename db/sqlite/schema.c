/*
 * The schema and its forward-only migrations. MIGRATIONS[i] takes a database from
 * PRAGMA user_version i to i + 1; never edit a step once released, append a new one
 * (and bump CAPDB_SCHEMA_VERSION_LATEST). tests/db runs every step from every older
 * version.
 *
 * Invariants the rest of db/ relies on:
 *  - description and keywords are what people wrote (EXIF, IPTC, XMP, sidecars), never
 *    our own caption or tags; searches rank them above ours (search.c RANK_WEIGHTS).
 *  - images_fts (external content over images) holds exactly the rows with status 0;
 *    the triggers below keep it so, whatever the writer does to images.
 *  - vectors and postings rows exist only for images rows, and postings only for
 *    concepts the image shows with probability above CAPDB_POSTING_MIN (rows.c).
 *  - paths compare bytewise (BINARY collation), so "a directory's rows" is the range
 *    [dir + "/", dir + "0"): '0' is the byte after '/'. No LIKE/GLOB on paths.
 */
#include <errno.h>
#include <stdio.h>

#include "sqlite.h"

static const char *const MIGRATIONS[] = {
    /* 0 -> 1: the first schema. */
    "CREATE TABLE images("
    "  id INTEGER PRIMARY KEY,"
    "  path TEXT NOT NULL UNIQUE,"
    "  device INTEGER NOT NULL DEFAULT 0,"
    "  inode INTEGER NOT NULL DEFAULT 0,"
    "  size INTEGER NOT NULL DEFAULT 0,"
    "  mtime_ns INTEGER NOT NULL DEFAULT 0,"
    "  fingerprint INTEGER NOT NULL DEFAULT 0,"
    "  width INTEGER NOT NULL DEFAULT 0,"
    "  height INTEGER NOT NULL DEFAULT 0,"
    "  taken_time INTEGER NOT NULL DEFAULT 0,"
    "  status INTEGER NOT NULL DEFAULT 0,"
    "  error TEXT,"
    "  caption TEXT,"
    "  tags TEXT,"
    "  path_words TEXT,"
    "  model_version TEXT,"
    "  indexed_time INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX images_fingerprint ON images(fingerprint, size);"
    "CREATE INDEX images_failed ON images(indexed_time) WHERE status = 1;"

    "CREATE VIRTUAL TABLE images_fts USING fts5(caption, tags, path_words,"
    "  content = 'images', content_rowid = 'id',"
    "  tokenize = 'porter unicode61 remove_diacritics 2');"
    /* Column weights for ORDER BY rank: caption > tags > path words. */
    "INSERT INTO images_fts(images_fts, rank) VALUES('rank', 'bm25(4.0, 2.0, 1.0)');"
    "CREATE TRIGGER images_fts_insert AFTER INSERT ON images WHEN new.status = 0 BEGIN"
    "  INSERT INTO images_fts(rowid, caption, tags, path_words)"
    "  VALUES(new.id, new.caption, new.tags, new.path_words);"
    "END;"
    "CREATE TRIGGER images_fts_delete AFTER DELETE ON images WHEN old.status = 0 BEGIN"
    "  INSERT INTO images_fts(images_fts, rowid, caption, tags, path_words)"
    "  VALUES('delete', old.id, old.caption, old.tags, old.path_words);"
    "END;"
    "CREATE TRIGGER images_fts_update AFTER UPDATE OF caption, tags, path_words, status"
    "  ON images BEGIN"
    "  INSERT INTO images_fts(images_fts, rowid, caption, tags, path_words)"
    "  SELECT 'delete', old.id, old.caption, old.tags, old.path_words WHERE old.status = 0;"
    "  INSERT INTO images_fts(rowid, caption, tags, path_words)"
    "  SELECT new.id, new.caption, new.tags, new.path_words WHERE new.status = 0;"
    "END;"

    "CREATE TABLE vectors("
    "  image_id INTEGER PRIMARY KEY,"
    "  concepts BLOB," /* one byte per concept: round(p * 255) */
    "  pooled BLOB);"  /* float32 scale, float32 norm, int8 values */
    /* A query's few concepts are an index range each, best weights first. */
    "CREATE TABLE postings("
    "  concept INTEGER NOT NULL,"
    "  weight INTEGER NOT NULL," /* round(p * 255) */
    "  image_id INTEGER NOT NULL,"
    "  PRIMARY KEY(concept, weight, image_id)) WITHOUT ROWID;"
    "CREATE INDEX postings_image ON postings(image_id);"
    "CREATE TRIGGER images_vectors_delete AFTER DELETE ON images BEGIN"
    "  DELETE FROM vectors WHERE image_id = old.id;"
    "  DELETE FROM postings WHERE image_id = old.id;"
    "END;"

    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;",

    /* 1 -> 2: what people wrote (description, keywords: searchable, ranked above our
     * caption), the sidecar's mtime (a changed sidecar re-reads the text, no model run),
     * the decoded format and the failure reason (status counts). The FTS table gains two
     * columns: it is rebuilt from the rows with status 0 (its invariant). */
    "ALTER TABLE images ADD COLUMN description TEXT;"
    "ALTER TABLE images ADD COLUMN keywords TEXT;"
    "ALTER TABLE images ADD COLUMN sidecar_mtime_ns INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE images ADD COLUMN format TEXT;"
    "ALTER TABLE images ADD COLUMN reason TEXT;"
    "DROP TRIGGER images_fts_insert;"
    "DROP TRIGGER images_fts_delete;"
    "DROP TRIGGER images_fts_update;"
    "DROP TABLE images_fts;"
    "CREATE VIRTUAL TABLE images_fts USING fts5(caption, tags, path_words, description, keywords,"
    "  content = 'images', content_rowid = 'id',"
    "  tokenize = 'porter unicode61 remove_diacritics 2');"
    "INSERT INTO images_fts(rowid, caption, tags, path_words, description, keywords)"
    "  SELECT id, caption, tags, path_words, description, keywords FROM images WHERE status = 0;"
    "CREATE TRIGGER images_fts_insert AFTER INSERT ON images WHEN new.status = 0 BEGIN"
    "  INSERT INTO images_fts(rowid, caption, tags, path_words, description, keywords)"
    "  VALUES(new.id, new.caption, new.tags, new.path_words, new.description, new.keywords);"
    "END;"
    "CREATE TRIGGER images_fts_delete AFTER DELETE ON images WHEN old.status = 0 BEGIN"
    "  INSERT INTO images_fts(images_fts, rowid, caption, tags, path_words, description, keywords)"
    "  VALUES('delete', old.id, old.caption, old.tags, old.path_words, old.description,"
    "         old.keywords);"
    "END;"
    "CREATE TRIGGER images_fts_update AFTER UPDATE OF caption, tags, path_words, description,"
    "  keywords, status ON images BEGIN"
    "  INSERT INTO images_fts(images_fts, rowid, caption, tags, path_words, description, keywords)"
    "  SELECT 'delete', old.id, old.caption, old.tags, old.path_words, old.description,"
    "         old.keywords WHERE old.status = 0;"
    "  INSERT INTO images_fts(rowid, caption, tags, path_words, description, keywords)"
    "  SELECT new.id, new.caption, new.tags, new.path_words, new.description, new.keywords"
    "  WHERE new.status = 0;"
    "END;"
    "CREATE INDEX images_format ON images(format) WHERE status = 0;"
    "CREATE INDEX images_reason ON images(reason) WHERE status = 1;",
};
#define N_MIGRATIONS ((int)(sizeof MIGRATIONS / sizeof MIGRATIONS[0]))
_Static_assert(N_MIGRATIONS == CAPDB_SCHEMA_VERSION_LATEST,
               "one migration step per schema version");

int capdb__migrate(sqlite3 *sql, int from, int to, capdb_err *err)
{
    if (from < 0 || to > N_MIGRATIONS || from > to)
        return capdb__fail(err, -EINVAL, "no migration from version %d to %d", from, to);
    for (int v = from; v < to; v++) {
        char *msg = NULL;
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", v + 1);
        int rc = sqlite3_exec(sql, MIGRATIONS[v], NULL, NULL, &msg);
        if (rc == SQLITE_OK) rc = sqlite3_exec(sql, pragma, NULL, NULL, &msg);
        if (rc != SQLITE_OK) {
            int code = capdb__fail(err, rc == SQLITE_FULL ? -ENOSPC : -EIO,
                                   "migrating the schema to version %d: %s", v + 1,
                                   msg ? msg : sqlite3_errstr(rc));
            sqlite3_free(msg);
            return code;
        }
    }
    return 0;
}
