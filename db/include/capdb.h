/*
 * capdb: the capsearch index — the only public header of db/.
 *
 * Two backends behind one API, chosen by the target given to capdb_open:
 *  - SQLite, the embedded default (a file path): one writer (the daemon's loop thread,
 *    or `capsearch index`), any number of readers (WAL mode; readers open read-only with
 *    a busy timeout);
 *  - PostgreSQL (a libpq URI, "postgresql://..." or "postgres:///dbname"): one database
 *    that several capsearchd nodes on several machines fill at once, cooperating through
 *    its work queue ("Several nodes" below).
 * Both: schema with forward-only migrations and a version, upserts, deletes and moves by
 * path, full-text search over what people wrote / caption / tags / path words fused with
 * concept postings, similar-image search over pooled vectors. Knows nothing of pixels or
 * daemons.
 *
 * Errors: 0 on success, a negative errno-style code on failure (-ENOENT, -EINVAL,
 * -EBUSY locked, -EROFS read-only, -ENOSPC disk full, -EIO corrupt / other database
 * error, -ECONNREFUSED server unreachable, -ECONNRESET connection lost: the open
 * transaction is gone, retry it), with a one-line message in capdb_err.
 */
#ifndef CAPDB_H
#define CAPDB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CAPDB_ERR_MAX 256
typedef struct {
    char msg[CAPDB_ERR_MAX];
    int damaged; /* 1: SQLite said the file is corrupt or not a database */
} capdb_err;

typedef struct capdb capdb;

enum {
    CAPDB_OPEN_READONLY = 0, /* fails with -ENOENT when the file does not exist */
    CAPDB_OPEN_WRITE = 1,    /* creates the file, runs migrations */
};

/* Default location: $CAPSEARCH_DB, else the per-user database
 * ($XDG_DATA_HOME/capsearch/index.db) when it exists, else the system one
 * (/var/lib/capsearch/index.db) when it exists, else the per-user path. */
const char *capdb_default_path(char *buf, size_t size);

/* target: an SQLite file path, or a PostgreSQL URI (capdb_is_pg_target).
 * Refuses (-EEXIST, nothing changed in the file) an SQLite file that is neither empty
 * nor a capsearch index: another application's database is never taken over. A folder
 * given as the path, a read-only copy in a read-only folder (opened immutable) and a
 * missing file get their own clear messages. */
int capdb_open(const char *target, int mode, capdb **out, capdb_err *err);
void capdb_close(capdb *db);
/* For a process that opens an index to run one search and exits (the capsearch front):
 * gives SQLite's page cache one 2 MB block, a transparent huge page where the kernel
 * offers one, so that the few hundred pages a search reads cost one page fault rather
 * than one each (issue 14: 4.9 -> 3.9 ms CPU for a whole search process at 100k rows;
 * 4.4 without huge pages). Process-wide, for the process's life; call before the first
 * capdb_open. Returns 0, -ENOMEM, or -EBUSY when SQLite is already in use or the build
 * runs under AddressSanitizer (nothing changed: the cache allocates as before). */
int capdb_reserve_page_cache(void);
/* 1 when target selects the PostgreSQL backend ("postgresql://", "postgres://"). */
int capdb_is_pg_target(const char *target);
/* The target as messages may show it: a URI's password (user:PASSWORD@, password=)
 * replaced by "***". Returns buf. */
const char *capdb_target_display(const char *target, char *buf, size_t size);
/* "sqlite" or "postgresql". */
const char *capdb_backend_name(const capdb *db);
/* 1 when several processes on several machines may write this index at once
 * (PostgreSQL): the daemon then takes its work from the shared queue. */
int capdb_is_shared(const capdb *db);
/* How long a statement waits for another writer's lock before -EBUSY (default 5000 ms;
 * a writer on an event loop sets it short and retries from a timer). */
void capdb_set_busy_timeout(capdb *db, int ms);
/* How an SQLite index's pages are read: through a memory map (on, the default: for
 * long-lived processes and scans of every vector) or one pread(2) each (off: for a
 * process that runs one search and exits; it touches a few hundred pages once, and
 * mapping them, then tearing the map down, costs more than copying them: issue 14).
 * No effect on PostgreSQL. */
void capdb_map_pages(capdb *db, int on);
/* PRAGMA application_id of a capsearch index ("CAPS"); stamped by the writer. */
#define CAPDB_APPLICATION_ID 0x43415053

/* Health of the open index, for a long-running writer. Neither opens the file: closing
 * any other descriptor of it would drop the process's POSIX locks (SQLite's "How To
 * Corrupt", 2.2) and let another client delete the live WAL.
 * capdb_damaged: 1 once SQLite has reported SQLITE_CORRUPT or SQLITE_NOTADB on this
 * connection (decided by result code, never by message text), or the file's header,
 * read through SQLite's own descriptor, no longer says "SQLite format 3". */
int capdb_damaged(capdb *db);
int capdb_schema_version(capdb *db);  /* PRAGMA user_version */
#define CAPDB_SCHEMA_VERSION_LATEST 2 /* bumped by each migration */

/* Batches: everything between begin and commit is one transaction. */
int capdb_begin(capdb *db, capdb_err *err);
int capdb_commit(capdb *db, capdb_err *err);
int capdb_rollback(capdb *db);

/* ------------------------------------------------------------------ rows */

enum { CAPDB_STATUS_OK = 0, CAPDB_STATUS_FAILED = 1 };

/* What the indexer knows about a file on disk; enough to decide "unchanged". */
typedef struct {
    int64_t id; /* row id, 0 = not in the index */
    uint64_t device, inode;
    int64_t size;
    int64_t mtime_ns;
    uint64_t fingerprint; /* content hash (see daemon/), 0 = unknown */
    int status;
    char model_version[64];
    int64_t sidecar_mtime_ns; /* of the XMP sidecar read with it, 0 = none */
} capdb_file_state;

typedef struct {
    const char *path; /* absolute, any bytes but NUL (not necessarily UTF-8) */
    uint64_t device, inode;
    int64_t size, mtime_ns;
    uint64_t fingerprint;
    int width, height;
    int64_t taken_time;  /* unix seconds from EXIF, 0 = unknown */
    int status;          /* CAPDB_STATUS_* */
    const char *error;   /* failure reason when status is FAILED */
    const char *caption; /* may be NULL */
    const char *tags;    /* space-separated words, may be NULL */
    const char *model_version;
    const float *concepts; /* concept probabilities, n_concepts of them, may be NULL */
    int n_concepts;
    const float *pooled; /* pooled CNN vector, n_pooled of them, may be NULL */
    int n_pooled;
    const char *description;  /* what people wrote (EXIF/IPTC/XMP/sidecar), may be NULL */
    const char *keywords;     /* ... their keywords, '\n'-separated, may be NULL */
    int64_t sidecar_mtime_ns; /* of the sidecar read, 0 = none */
    const char *format;       /* "jpeg", "png", ... as decoded; may be NULL */
    const char *reason;       /* failure category when status is FAILED ("corrupt", "too large",
                                "unsupported", "unreadable", "time limit", "crashed") */
} capdb_image;

/* Inserts or replaces the row with this path (FTS and vectors kept in sync). */
int capdb_upsert(capdb *db, const capdb_image *img, capdb_err *err);
/* Deletes the row with this path, or every row under it when it names a directory
 * (path + "/" prefix). Sets *deleted to the number of rows removed. */
int capdb_delete_path(capdb *db, const char *path, int64_t *deleted, capdb_err *err);
/* Renames a file row, or every row under a directory, keeping captions and vectors. */
int capdb_move_path(capdb *db, const char *from, const char *to, int64_t *moved, capdb_err *err);
/* Refreshes the stat fields of a row whose bytes are unchanged (touch, cp of the same
 * content): date filters and the next start's "unchanged" test see the new mtime. */
int capdb_update_stat(capdb *db, int64_t id, uint64_t device, uint64_t inode, int64_t size,
                      int64_t mtime_ns, capdb_err *err);
/* Replaces what people wrote about a row (a changed sidecar: no model run). */
int capdb_update_text(capdb *db, int64_t id, const char *description, const char *keywords,
                      int64_t sidecar_mtime_ns, capdb_err *err);
/* One row by id, everything the index holds of it but the vectors (the web API's
 * /api/images/ID, /thumb, /image). Strings malloc'd (NULL when absent); free with
 * capdb_row_free. Returns 1 found, 0 no such row, < 0 error. */
typedef struct {
    int64_t id;
    char *path, *caption, *tags, *error, *model_version, *description, *keywords, *format;
    int64_t size, mtime_ns, taken_time, indexed_time;
    uint64_t fingerprint;
    int width, height, status;
} capdb_row;
int capdb_get_row(capdb *db, int64_t id, capdb_row *out, capdb_err *err);
void capdb_row_free(capdb_row *row);
/* Looks a path up; state->id = 0 when absent. */
int capdb_lookup_path(capdb *db, const char *path, capdb_file_state *state, capdb_err *err);
/* Finds an OK row with this fingerprint and size (a move whose inotify pair was split);
 * copies its path into path_out. Returns 1 found, 0 not found, < 0 error. */
int capdb_find_by_fingerprint(capdb *db, uint64_t fingerprint, int64_t size, char *path_out,
                              size_t path_size, capdb_err *err);
/* Calls fn for every indexed path under a prefix ("" = all), for the startup scan's
 * "vanished files" pass. Return non-zero from fn to stop. */
int capdb_foreach_path(capdb *db, const char *prefix, int (*fn)(void *ctx, const char *path),
                       void *ctx, capdb_err *err);

/* ------------------------------------------------------------------ metadata */

/* Key-value metadata. libcapdb itself writes "model_version" (of the newest indexed row);
 * the other keys belong to the programs that write them (capindexer.h: CX_META_*). */
int capdb_meta_set(capdb *db, const char *key, const char *value, capdb_err *err);
/* Returns 1 found (value copied), 0 absent, < 0 error. */
int capdb_meta_get(capdb *db, const char *key, char *value, size_t size, capdb_err *err);

typedef struct {
    int64_t total, ok, failed;
    int64_t db_bytes;
} capdb_counts;
int capdb_counts_get(capdb *db, capdb_counts *out, capdb_err *err);

/* ------------------------------------------------------------------ search */

typedef struct {
    const char *text; /* free user text; never reaches FTS5 MATCH unquoted */
    const struct capdb_concept_term {
        int index;
        float weight;
    } * concepts;
    int n_concepts;      /* the query mapped into concept space (may be 0) */
    const float *pooled; /* similar-image search: rank by this vector instead */
    int n_pooled;
    const char *under_dir; /* only paths under this folder, NULL = all */
    /* unix seconds on taken_time (else mtime), inclusive; may be negative (photos taken
     * before 1970): a bound applies only when its has_ flag is set */
    int64_t since, until;
    int has_since, has_until;
    int limit;        /* 0 = 20 */
    int with_snippet; /* fill snippet, matched words between \x01 and \x02 */
} capdb_query;

typedef struct {
    int64_t id;
    double score; /* higher is better */
    char *path;
    char *caption;
    char *tags;
    char *snippet;     /* caption with \x01 ... \x02 around matches, or NULL */
    char *description; /* what people wrote, or NULL */
    char *keywords;    /* their keywords ('\n'-separated), or NULL */
    int64_t taken_time, mtime_ns;
    int width, height;
} capdb_hit;

typedef struct {
    int n;
    capdb_hit *hits;
} capdb_results;

/* Ranks by a fusion of FTS5 bm25 (caption > tags > path words) and concept similarity;
 * or, when query->pooled is set, by cosine similarity of pooled CNN vectors.
 * Returns -EINVAL with a clear message for text that has no searchable words. */
int capdb_search(capdb *db, const capdb_query *query, capdb_results *out, capdb_err *err);
void capdb_results_free(capdb_results *res);

/* Loads the stored pooled vector of a path (for `capsearch similar` on an indexed file).
 * Returns 1 found, 0 absent, < 0 error. */
int capdb_get_pooled(capdb *db, const char *path, float *out, int n, capdb_err *err);

/* For `capsearch status`: fn(ctx, value, count) per format of the indexed images
 * (group = "format") or per reason of the failed ones (group = "reason"), most first;
 * rows without one come as "unknown". */
int capdb_foreach_count(capdb *db, const char *group,
                        int (*fn)(void *ctx, const char *value, int64_t count), void *ctx,
                        capdb_err *err);

/* Recent failures for `capsearch status`: calls fn for up to `limit` newest failed rows. */
int capdb_foreach_failure(capdb *db, int limit,
                          int (*fn)(void *ctx, const char *path, const char *error, int64_t when),
                          void *ctx, capdb_err *err);

/* ------------------------------------------------------------------ several nodes */

/* PostgreSQL only (SQLite answers -ENOTSUP): capsearchd nodes that see the same photo
 * folders share one queue of files to caption. A node that finds a new or changed file
 * enqueues it; a node with a free model claims queued files with SELECT ... FOR UPDATE
 * SKIP LOCKED, for a lease it renews by heartbeat. A node that dies stops renewing; its
 * claims are taken over when their lease runs out. Invariants:
 *  - a path is queued at most once; enqueueing a queued path again bumps its generation;
 *  - a claim is never handed to a second node while its lease runs;
 *  - capdb_work_done removes the item only if its generation is the one claimed (a file
 *    changed while it was being captioned is captioned again), and only for the node
 *    holding the claim. */
typedef struct {
    char *path;
    int64_t size, mtime_ns; /* as enqueued */
    int attempts;           /* claims of this item so far, this one included */
    char *taken_from;       /* the node whose lease ran out, or NULL */
} capdb_work_item;

/* Queues path (new or changed), or bumps its generation when already queued. */
int capdb_work_enqueue(capdb *db, const char *path, int64_t size, int64_t mtime_ns,
                       capdb_err *err);
/* Claims up to max items for node for lease_s seconds, oldest first. */
int capdb_work_claim(capdb *db, const char *node, int max, int lease_s, capdb_work_item **items,
                     int *n, capdb_err *err);
void capdb_work_items_free(capdb_work_item *items, int n);
/* Path done by node (call inside the transaction that writes its row). */
int capdb_work_done(capdb *db, const char *node, const char *path, capdb_err *err);
/* Gives back every claim of node (a clean stop): others may take them at once. */
int capdb_work_release(capdb *db, const char *node, capdb_err *err);

typedef struct {
    const char *name; /* unique per node: host name, or the configured node name */
    const char *role; /* "all", "scan" (watch and enqueue only), "caption" (claim only) */
    const char *host;
    int64_t pid;
    int64_t captioned;  /* files this node captioned since it started */
    double rate;        /* ... per second, over the last minute */
    int64_t claimed;    /* capdb_foreach_node: claims it holds now */
    int64_t started;    /* unix seconds */
    int64_t heartbeat;  /* capdb_foreach_node: unix seconds of its last heartbeat */
} capdb_node;
/* Renews node's lease on path for lease_s seconds: a node renews only the claims it is
 * still working on, so a claim it lost track of (its row written but the claim not
 * finished, a restart under the same name) runs out and is taken over. */
int capdb_work_renew(capdb *db, const char *node, const char *path, int lease_s,
                     capdb_err *err);
/* Records node's state for `capsearch status`. */
int capdb_node_heartbeat(capdb *db, const capdb_node *node, capdb_err *err);
/* Every node that ever sent a heartbeat, newest heartbeat first. */
int capdb_foreach_node(capdb *db, int (*fn)(void *ctx, const capdb_node *node), void *ctx,
                       capdb_err *err);

typedef struct {
    int64_t queued;  /* items no live lease holds */
    int64_t claimed; /* items under a live lease */
} capdb_work_counts;
int capdb_work_counts_get(capdb *db, capdb_work_counts *out, capdb_err *err);

#ifdef __cplusplus
}
#endif
#endif
