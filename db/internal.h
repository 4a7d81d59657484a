/*
 * Private to db/: the connection struct, error helpers, the migration list and the
 * query tokenizer. Tests include it to reach the migration steps and the tokenizer.
 */
#ifndef CAPDB_INTERNAL_H
#define CAPDB_INTERNAL_H

#include <sqlite3.h>

#include "capdb.h"

/* Statements prepared once per connection (hot paths of the indexer and the CLI). */
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

struct capdb {
    sqlite3 *sql;
    int readonly;
    char *path;
    sqlite3_stmt *stmts[STMT__COUNT];
    char model_version_seen[64]; /* last model_version written to meta */
    int damaged;                 /* SQLITE_CORRUPT / SQLITE_NOTADB seen (sticky) */
};

/* Fills err (printf-style) and returns code (a negative errno). */
int capdb__fail(capdb_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Maps an SQLite result code to a negative errno and fills err with "what: sqlite says". */
int capdb__sqlfail(capdb *db, capdb_err *err, int rc, const char *what);
/* The cached statement, reset and unbound, ready to bind. */
int capdb__stmt(capdb *db, enum capdb_stmt_id id, sqlite3_stmt **out, capdb_err *err);

/* Registers capdb_rank(), the FTS5 ranking function searches use, on a connection. */
int capdb__register_functions(sqlite3 *sql);

/* Migrations: step i takes a database from user_version i to i + 1. */
int capdb__migrate(sqlite3 *sql, int from, int to, capdb_err *err);

/* The rows under a directory are the byte range [dir "/", dir "0") (schema.c states
 * why): both bounds malloc'd. Trailing slashes are ignored, so "/" and "/photos/" work.
 * 0, or -ENOMEM with nothing allocated. */
int capdb__dir_bounds(const char *dir, char **lo, char **hi);

/* The path's searchable words ("/photos/2023 Beach/IMG_0042.jpg" ->
 * "photos 2023 Beach IMG 0042"): caller frees. */
char *capdb__path_words(const char *path);

/* Splits user text into search words: runs of letters and digits of valid UTF-8, at
 * most CAPDB_MAX_QUERY_WORDS distinct, English stopwords dropped unless nothing else is
 * left. Returns the count (> 0) with *words an array of malloc'd strings (free with
 * capdb__free_words), or -EINVAL with a message. */
#define CAPDB_MAX_QUERY_WORDS 32
int capdb__query_words(const char *text, char ***words, capdb_err *err);
void capdb__free_words(char **words, int n);
/* The FTS5 MATCH expression for words: "w1" JOINER "w2" ... (each a string literal;
 * joiner " OR " or " AND "). */
char *capdb__fts_expression(char *const *words, int n, const char *joiner);

/* Vector blobs. Concepts: one byte per concept, round(p * 255). Pooled: float32 scale,
 * float32 L2 norm of the int8 values, then int8 values (x ~= q * scale). */
#define CAPDB_POOLED_HEADER 8
void capdb__encode_pooled(const float *x, int n, unsigned char *blob);
int capdb__decode_pooled(const void *blob, int bytes, float *out, int n);

#endif
