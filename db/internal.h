/*
 * Private to db/: the connection struct and the backend table every public function
 * dispatches through, the error helper, and what both backends share (the query
 * tokenizer, path words, vector encodings, ranking pieces). Tests include it to reach
 * the migration steps and the tokenizer.
 *
 * Invariants:
 *  - capdb.c is the only caller of a backend's functions, always through db->backend;
 *  - a backend reports errors as negative errno codes with a message (capdb.h), and
 *    -ECONNRESET only for "the server connection was lost; the open transaction is
 *    gone" (PostgreSQL): the caller may retry everything since its capdb_begin.
 */
#ifndef CAPDB_INTERNAL_H
#define CAPDB_INTERNAL_H

#include <sqlite3.h>

#include "capdb.h"

/* ------------------------------------------------------------------ backends */

/* One entry per public capdb_* function that touches the database; the arguments are
 * the public ones. An entry may be NULL when the backend has no such thing (SQLite has
 * no shared work queue): capdb.c then answers -ENOTSUP. */
typedef struct capdb_backend {
    const char *name; /* "sqlite", "postgresql" */
    int shared;       /* several processes on several machines write it at once */
    int (*open)(const char *target, int mode, capdb **out, capdb_err *err);
    void (*close)(capdb *db);
    void (*set_busy_timeout)(capdb *db, int ms);
    void (*map_pages)(capdb *db, int on); /* NULL: nothing to choose */
    int (*damaged)(capdb *db);
    int (*schema_version)(capdb *db);
    int (*begin)(capdb *db, capdb_err *err);
    int (*commit)(capdb *db, capdb_err *err);
    int (*rollback)(capdb *db);
    int (*upsert)(capdb *db, const capdb_image *img, capdb_err *err);
    int (*delete_path)(capdb *db, const char *path, int64_t *deleted, capdb_err *err);
    int (*move_path)(capdb *db, const char *from, const char *to, int64_t *moved, capdb_err *err);
    int (*update_stat)(capdb *db, int64_t id, uint64_t device, uint64_t inode, int64_t size,
                       int64_t mtime_ns, capdb_err *err);
    int (*update_text)(capdb *db, int64_t id, const char *description, const char *keywords,
                       int64_t sidecar_mtime_ns, capdb_err *err);
    int (*get_row)(capdb *db, int64_t id, capdb_row *out, capdb_err *err);
    int (*lookup_path)(capdb *db, const char *path, capdb_file_state *state, capdb_err *err);
    int (*find_by_fingerprint)(capdb *db, uint64_t fingerprint, int64_t size, char *path_out,
                               size_t path_size, capdb_err *err);
    int (*foreach_path)(capdb *db, const char *prefix, int (*fn)(void *ctx, const char *path),
                        void *ctx, capdb_err *err);
    int (*meta_set)(capdb *db, const char *key, const char *value, capdb_err *err);
    int (*meta_get)(capdb *db, const char *key, char *value, size_t size, capdb_err *err);
    int (*counts_get)(capdb *db, capdb_counts *out, capdb_err *err);
    int (*search)(capdb *db, const capdb_query *query, capdb_results *out, capdb_err *err);
    int (*get_pooled)(capdb *db, const char *path, float *out, int n, capdb_err *err);
    int (*foreach_count)(capdb *db, const char *group,
                         int (*fn)(void *ctx, const char *value, int64_t count), void *ctx,
                         capdb_err *err);
    int (*foreach_failure)(capdb *db, int limit,
                           int (*fn)(void *ctx, const char *path, const char *error,
                                     int64_t when),
                           void *ctx, capdb_err *err);
    /* several nodes (capdb.h "Several nodes"); NULL in a backend that is not shared */
    int (*work_enqueue)(capdb *db, const char *path, int64_t size, int64_t mtime_ns,
                        capdb_err *err);
    int (*work_claim)(capdb *db, const char *node, int max, int lease_s, capdb_work_item **items,
                      int *n, capdb_err *err);
    int (*work_done)(capdb *db, const char *node, const char *path, capdb_err *err);
    int (*work_release)(capdb *db, const char *node, capdb_err *err);
    int (*work_renew)(capdb *db, const char *node, const char *path, int lease_s,
                      capdb_err *err);
    int (*node_heartbeat)(capdb *db, const capdb_node *node, capdb_err *err);
    int (*foreach_node)(capdb *db, int (*fn)(void *ctx, const capdb_node *node), void *ctx,
                        capdb_err *err);
    int (*work_counts)(capdb *db, capdb_work_counts *out, capdb_err *err);
} capdb_backend;

extern const capdb_backend capdb__sqlite_backend; /* sqlite/conn.c */
extern const capdb_backend capdb__pg_backend;     /* pg/conn.c */

/* ------------------------------------------------------------------ the connection */

/* SQLite: statements prepared once per connection (hot paths of the indexer and CLI). */
enum capdb_stmt_id {
    STMT_UPSERT,
    STMT_VECTORS_PUT,
    STMT_VECTORS_DEL,
    STMT_POSTINGS_DEL,
    STMT_POSTING_PUT,
    STMT_LOOKUP,
    STMT_FIND_FP,
    STMT_META_SET,
    STMT_META_GET,
    STMT_POSTINGS_TOP,
    STMT_ROW_FOR_HIT,
    STMT_CONCEPTS_OF,
    STMT_POOLED_OF_PATH,
    STMT_UPDATE_STAT,
    STMT_UPDATE_TEXT,
    STMT_GET_ROW,
    STMT__COUNT
};

struct capdb_pg; /* pg/pg.h */

struct capdb {
    const capdb_backend *backend;
    int readonly;
    char *path;                  /* SQLite: the file; PostgreSQL: the conninfo as given */
    char model_version_seen[64]; /* last model_version written to meta */
    int damaged;                 /* SQLite: SQLITE_CORRUPT / SQLITE_NOTADB seen (sticky) */
    /* SQLite */
    sqlite3 *sql;
    sqlite3_stmt *stmts[STMT__COUNT];
    fts5_api *fts5; /* the connection's FTS5, for the highlighter's tokenizer */
    /* PostgreSQL */
    struct capdb_pg *pg;
};

/* Fills err (printf-style) and returns code (a negative errno). */
int capdb__fail(capdb_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------------ SQLite (sqlite/) */

/* Maps an SQLite result code to a negative errno and fills err with "what: sqlite says". */
int capdb__sqlfail(capdb *db, capdb_err *err, int rc, const char *what);
/* The cached statement, reset and unbound, ready to bind. */
int capdb__stmt(capdb *db, enum capdb_stmt_id id, sqlite3_stmt **out, capdb_err *err);
/* Registers capdb_rank(), the FTS5 ranking function searches use, on a connection;
 * *fts5 is the connection's FTS5 API. */
int capdb__register_functions(sqlite3 *sql, fts5_api **fts5);
/* Marks a query's words in a caption as FTS5's highlight() does (sqlite/highlight.c):
 * one highlighter per search, made from the query's words. */
typedef struct capdb_highlighter capdb_highlighter;
/* 0, -ENOMEM, or -EIO when FTS5 has not the index's tokenizer. */
int capdb__highlighter_new(fts5_api *fts5, char *const *words, int n_words,
                           capdb_highlighter **out);
/* The text with each coalesced run of phrase instances between open and close;
 * malloc'd, NULL when out of memory. */
char *capdb__highlight(capdb_highlighter *h, const char *text, const char *open,
                       const char *close);
void capdb__highlighter_free(capdb_highlighter *h);
/* Migrations: step i takes a database from user_version i to i + 1. */
int capdb__migrate(sqlite3 *sql, int from, int to, capdb_err *err);
/* The FTS5 MATCH expression for words: "w1" JOINER "w2" ... (each a string literal;
 * joiner " OR " or " AND "). */
char *capdb__fts_expression(char *const *words, int n, const char *joiner);

/* ------------------------------------------------------------------ words.c */

/* The rows under a directory are the byte range [dir "/", dir "0") (sqlite/schema.c
 * states why): both bounds malloc'd. Trailing slashes are ignored, so "/" and
 * "/photos/" work. 0, or -ENOMEM with nothing allocated. */
int capdb__dir_bounds(const char *dir, char **lo, char **hi);

/* The path's searchable words ("/photos/2023 Beach/IMG_0042.jpg" ->
 * "photos 2023 Beach IMG 0042"), valid UTF-8: caller frees. */
char *capdb__path_words(const char *path);

/* Splits user text into search words: runs of letters and digits of valid UTF-8, at
 * most CAPDB_MAX_QUERY_WORDS distinct, English stopwords dropped unless nothing else is
 * left. Returns the count (> 0) with *words an array of malloc'd strings (free with
 * capdb__free_words), or -EINVAL with a message. */
#define CAPDB_MAX_QUERY_WORDS 32
int capdb__query_words(const char *text, char ***words, capdb_err *err);
void capdb__free_words(char **words, int n);

/* ------------------------------------------------------------------ vectors.c */

/* Vector blobs. Concepts: one byte per concept, round(p * 255). Pooled: float32 scale,
 * float32 L2 norm of the int8 values, then int8 values (x ~= q * scale). */
#define CAPDB_POOLED_HEADER 8
void capdb__encode_pooled(const float *x, int n, unsigned char *blob);
/* The similar-image scans' inner loop (vectors.c is built with -O3 for it). */
int32_t capdb__dot_i8(const int8_t *a, const int8_t *b, int n);
int capdb__decode_pooled(const void *blob, int bytes, float *out, int n);

/* Concepts shown with at least this probability get a posting (a search entry); an
 * image has at most CAPDB_POSTINGS_PER_IMAGE, its strongest. */
#define CAPDB_POSTING_MIN 0.05f
#define CAPDB_POSTINGS_PER_IMAGE 32
typedef struct {
    int index;
    int weight; /* round(p * 255) */
} capdb_posting;
/* Fills bytes (img->n_concepts of them) and top (room for img->n_concepts), strongest
 * first; returns how many postings to store. */
int capdb__concept_bytes(const capdb_image *img, unsigned char *bytes, capdb_posting *top);

/* ------------------------------------------------------------------ rank.c */

/* The statement of capdb_foreach_count for group ("format", "reason"): the same SQL on
 * both backends, fixed text (the column is never taken from the caller); NULL for any
 * other group. */
const char *capdb__count_sql(const char *group);

/* Candidates taken from each side of a search before fusing. */
#define CAPDB_FTS_CANDIDATES 200
#define CAPDB_POSTINGS_PER_CONCEPT 1000

typedef struct {
    int64_t id;           /* 0 = empty slot */
    double text, concept; /* text score (higher better), sum of query * image weights */
    int from_fts;         /* matched the words (and the filters, checked in SQL) */
} candidate;

typedef struct {
    candidate *slots;
    size_t cap, n;
} candidate_map;

typedef struct {
    double score;
    int64_t id;
} scored;

typedef struct {
    scored *items; /* min-heap on score: items[0] is the worst kept */
    int n, cap;
} top_heap;

/* The slot of id, added when absent; NULL when out of memory. */
candidate *capdb__map_get(candidate_map *m, int64_t id);
void capdb__heap_offer(top_heap *h, double score, int64_t id);
/* qsort comparator: score descending, then id ascending (a stable answer). */
int capdb__by_score_desc(const void *a, const void *b);
/* The folder and date filters of q, for a candidate found by concept only. */
int capdb__passes_filters(const capdb_query *q, const char *path, int64_t taken, int64_t mtime_ns);
/* The fused scores of a search's candidates (text and concept sides each scaled by their
 * best and added; text alone when there are no concepts): a malloc'd array of map->n in
 * no particular order, or NULL when out of memory or empty (*n = 0). */
scored *capdb__fuse(const candidate_map *map, int with_concepts, size_t *n);
/* Puts the best `need` of order[0..n) first, sorted by capdb__by_score_desc, given that
 * order[0..sorted) already holds the best `sorted`, sorted; returns the new sorted count
 * (min(need, n)). A search shows 20 of a few thousand candidates: selecting them costs
 * a fraction of sorting all (issue 14), and the order shown is the same. */
size_t capdb__sort_prefix(scored *order, size_t n, size_t sorted, size_t need);

#endif
