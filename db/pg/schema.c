/*
 * The PostgreSQL schema and its forward-only migrations. MIGRATIONS[i] takes the
 * schema "capsearch" from version i to i + 1 (the one row of capsearch.version); never
 * edit a step once released, append one (and bump CAPDB_PG_SCHEMA_LATEST). conn.c runs
 * them in one transaction under an advisory lock, so nodes starting together migrate
 * once. tests/db runs every step from every older version.
 *
 * Invariants the rest of db/pg/ relies on (the same as SQLite's, sqlite/schema.c):
 *  - description and keywords are what people wrote, never our caption or tags; in the
 *    tsvector they carry weight A, above caption (B), tags (C) and path words (D);
 *  - images.tsv is computed by the server from the row (a generated column), and the
 *    GIN index on it holds exactly the rows with status 0;
 *  - vectors and postings rows exist only for images rows (ON DELETE CASCADE);
 *  - paths are bytea and compare bytewise, so "a directory's rows" is the range
 *    [dir + "/", dir + "0"), as in SQLite. No LIKE on paths.
 *  - work holds each path at most once (its primary key); nodes one row per node name.
 */
#include <errno.h>
#include <stdio.h>

#include "pg.h"

static const char *const MIGRATIONS[] = {
    /* 0 -> 1: the index, as SQLite's version 2. */
    "CREATE TABLE images("
    "  id bigserial PRIMARY KEY,"
    "  path bytea NOT NULL UNIQUE,"
    "  device bigint NOT NULL DEFAULT 0,"
    "  inode bigint NOT NULL DEFAULT 0,"
    "  size bigint NOT NULL DEFAULT 0,"
    "  mtime_ns bigint NOT NULL DEFAULT 0,"
    "  fingerprint bigint NOT NULL DEFAULT 0,"
    "  width integer NOT NULL DEFAULT 0,"
    "  height integer NOT NULL DEFAULT 0,"
    "  taken_time bigint NOT NULL DEFAULT 0,"
    "  status smallint NOT NULL DEFAULT 0,"
    "  error text,"
    "  caption text,"
    "  tags text,"
    "  path_words text,"
    "  model_version text,"
    "  indexed_time bigint NOT NULL DEFAULT 0,"
    "  description text,"
    "  keywords text,"
    "  sidecar_mtime_ns bigint NOT NULL DEFAULT 0,"
    "  format text,"
    "  reason text,"
    "  tsv tsvector GENERATED ALWAYS AS ("
    "    setweight(to_tsvector('english'::regconfig,"
    "              coalesce(description, '') || ' ' || coalesce(keywords, '')), 'A') ||"
    "    setweight(to_tsvector('english'::regconfig, coalesce(caption, '')), 'B') ||"
    "    setweight(to_tsvector('english'::regconfig, coalesce(tags, '')), 'C') ||"
    "    setweight(to_tsvector('english'::regconfig, coalesce(path_words, '')), 'D')) STORED);"
    "CREATE INDEX images_tsv ON images USING gin(tsv) WHERE status = 0;"
    "CREATE INDEX images_fingerprint ON images(fingerprint, size);"
    "CREATE INDEX images_failed ON images(indexed_time) WHERE status = 1;"
    "CREATE INDEX images_format ON images(format) WHERE status = 0;"
    "CREATE INDEX images_reason ON images(reason) WHERE status = 1;"
    "CREATE TABLE vectors("
    "  image_id bigint PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,"
    "  concepts bytea," /* one byte per concept: round(p * 255) */
    "  pooled bytea);"  /* float32 scale, float32 norm, int8 values (vectors.c) */
    "CREATE TABLE postings("
    "  concept smallint NOT NULL,"
    "  weight smallint NOT NULL," /* round(p * 255) */
    "  image_id bigint NOT NULL REFERENCES images(id) ON DELETE CASCADE,"
    "  PRIMARY KEY(concept, weight, image_id));"
    "CREATE INDEX postings_image ON postings(image_id);"
    "CREATE TABLE meta(key text PRIMARY KEY, value text);",

    /* 1 -> 2: several nodes, one library: the shared work queue and the nodes. */
    "CREATE TABLE work("
    "  path bytea PRIMARY KEY,"
    "  size bigint NOT NULL DEFAULT 0,"
    "  mtime_ns bigint NOT NULL DEFAULT 0,"
    "  generation bigint NOT NULL DEFAULT 1," /* bumped by each enqueue of a queued path */
    "  enqueued timestamptz NOT NULL DEFAULT now(),"
    "  claimed_by text,"               /* node name, NULL = never claimed */
    "  claimed_generation bigint,"     /* generation when claimed */
    "  lease_until timestamptz,"       /* NULL or past: free to claim */
    "  attempts integer NOT NULL DEFAULT 0);"
    "CREATE INDEX work_free ON work(enqueued);"
    "CREATE INDEX work_claimed_by ON work(claimed_by) WHERE claimed_by IS NOT NULL;"
    "CREATE TABLE nodes("
    "  name text PRIMARY KEY,"
    "  role text NOT NULL,"
    "  host text NOT NULL,"
    "  pid bigint NOT NULL,"
    "  captioned bigint NOT NULL DEFAULT 0,"
    "  rate double precision NOT NULL DEFAULT 0,"
    "  started timestamptz NOT NULL DEFAULT now(),"
    "  heartbeat timestamptz NOT NULL DEFAULT now());",
};
#define N_MIGRATIONS ((int)(sizeof MIGRATIONS / sizeof MIGRATIONS[0]))
_Static_assert(N_MIGRATIONS == CAPDB_PG_SCHEMA_LATEST, "one migration step per schema version");

int capdb__pg_migrate(capdb *db, int from, int to, capdb_err *err)
{
    if (from < 0 || to > N_MIGRATIONS || from > to)
        return capdb__fail(err, -EINVAL, "no migration from version %d to %d", from, to);
    for (int v = from; v < to; v++) {
        char what[64];
        snprintf(what, sizeof what, "migrating the schema to version %d", v + 1);
        int rc = capdb__pg_exec(db, MIGRATIONS[v], NULL, err, what);
        pg_params p = {0};
        capdb__pg_int(&p, v + 1);
        if (rc == 0) rc = capdb__pg_exec(db, "UPDATE version SET version = $1", &p, err, what);
        if (rc) return rc;
    }
    return 0;
}
