/*
 * Fuzz target: the search path of capdb_search — the query tokenizer, the FTS5 MATCH
 * expression built from user text, the folder filter and concept terms — on an in-memory
 * index of a few rows. The input is "text\nfolder\nconcept bytes": line 1 the user's
 * words, line 2 (optional) the --dir folder, the rest (optional) (index, weight) byte
 * pairs. Promises checked: user text never reaches FTS5 as syntax (any error other than
 * "no words" / "too long" is a failure: an FTS5 syntax error means the quoting leaked);
 * results respect the limit and the folder; a snippet is exactly what FTS5's own
 * highlight() makes of that row (sqlite/highlight.c marks words without it).
 */
#include <errno.h>
#include <string.h>

#include "capdb.h"
#include "internal.h"
#include "fuzz.h"

#define N_CONCEPTS 32
#define MAX_TERMS 16

static capdb *open_index(void);
static void check_snippet(capdb *db, const char *text, const capdb_hit *hit);

static const struct {
    const char *path, *caption, *tags;
} ROWS[] = {
    {"/photos/2023 Beach/IMG_0042.jpg", "a dog running on a sandy beach", "dog beach sand"},
    {"/photos/2023 Beach/IMG_0043.jpg", "two people riding horses", "person horse"},
    {"/photos/caf\xc3\xa9/na\xc3\xafve \"quoted\".png", "a \"quoted\" caf\xc3\xa9 sign", "sign"},
    {"/photos/\xe6\x97\xa5\xe6\x9c\xac/1.jpg", "\xe6\x97\xa5\xe6\x9c\xac \xe3\x81\xae photo", NULL},
    {"/photos/odd/AND OR NOT NEAR.jpg", "a kite in the sky near the sea", "kite"},
    {"/photos/odd/x*y^z.jpg", NULL, NULL},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static capdb *db;
    if (!db && !(db = open_index())) fuzz_fail("cannot build the in-memory index");

    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *dir = memchr(buf, '\n', size), *concepts = NULL;
    size_t n_concept_bytes = 0;
    if (dir) {
        *dir++ = '\0';
        concepts = strchr(dir, '\n');
        if (concepts) {
            *concepts++ = '\0';
            n_concept_bytes = size - (size_t)(concepts - buf);
        }
    }
    struct capdb_concept_term terms[MAX_TERMS];
    int n_terms = 0;
    for (size_t i = 0; i + 1 < n_concept_bytes && n_terms < MAX_TERMS; i += 2) {
        terms[n_terms].index = (int)(unsigned char)concepts[i] - 8; /* some out of range */
        terms[n_terms].weight = ((int)(unsigned char)concepts[i + 1] - 64) / 64.0f;
        n_terms++;
    }
    capdb_query q = {
        .text = buf,
        .concepts = terms,
        .n_concepts = n_terms,
        .under_dir = dir && *dir ? dir : NULL,
        .limit = 1 + (int)(size % 4),
        .with_snippet = (int)(size & 1),
    };
    capdb_results res;
    capdb_err err = {{0}, 0};
    int rc = capdb_search(db, &q, &res, &err);
    if (rc < 0) {
        int words_problem =
            rc == -EINVAL && (strstr(err.msg, "no words") || strstr(err.msg, "too long"));
        if (!words_problem) fuzz_fail("capdb_search: %d %s", rc, err.msg);
    } else {
        if (res.n < 0 || res.n > q.limit) fuzz_fail("%d hits for limit %d", res.n, q.limit);
        size_t dlen = q.under_dir ? strlen(q.under_dir) : 0;
        while (dlen > 0 && q.under_dir[dlen - 1] == '/') dlen--;
        for (int i = 0; i < res.n; i++) {
            const char *p = res.hits[i].path;
            if (!p) fuzz_fail("hit %d has no path", i);
            if (q.under_dir && (strncmp(p, q.under_dir, dlen) != 0 || p[dlen] != '/'))
                fuzz_fail("hit %s is not under %s", p, q.under_dir);
            if (res.hits[i].snippet) check_snippet(db, buf, &res.hits[i]);
        }
        capdb_results_free(&res);
    }
    free(buf);
    return 0;
}

/* A fresh in-memory index; the rows' concept vectors favour a different concept each. */
static capdb *open_index(void)
{
    capdb *db = NULL;
    capdb_err err = {{0}, 0};
    if (capdb_open(":memory:", CAPDB_OPEN_WRITE, &db, &err) < 0) {
        fprintf(stderr, "fuzz_query: %s\n", err.msg);
        return NULL;
    }
    for (size_t r = 0; r < sizeof ROWS / sizeof ROWS[0]; r++) {
        float concepts[N_CONCEPTS];
        for (int c = 0; c < N_CONCEPTS; c++)
            concepts[c] = (float)((c * 7 + (int)r * 13) % 10) / 10.0f;
        concepts[r] = 1.0f;
        capdb_image img = {
            .path = ROWS[r].path,
            .inode = r + 1,
            .size = 1000,
            .mtime_ns = (int64_t)(1600000000 + r * 86400) * 1000000000,
            .width = 640,
            .height = 480,
            .taken_time = r % 2 ? 0 : 1600000000 + (int64_t)r * 3600,
            .status = CAPDB_STATUS_OK,
            .caption = ROWS[r].caption,
            .tags = ROWS[r].tags,
            .model_version = "fuzz",
            .concepts = concepts,
            .n_concepts = N_CONCEPTS,
        };
        if (capdb_upsert(db, &img, &err) < 0) {
            fprintf(stderr, "fuzz_query: %s\n", err.msg);
            capdb_close(db);
            return NULL;
        }
    }
    return db;
}

/* The snippet against highlight(images_fts, 0, char(1), char(2)) of the same row. */
static void check_snippet(capdb *db, const char *text, const capdb_hit *hit)
{
    char **words;
    capdb_err err = {{0}, 0};
    int n = capdb__query_words(text, &words, &err);
    if (n <= 0) fuzz_fail("a snippet for words that do not parse");
    char *expr = capdb__fts_expression(words, n, " OR ");
    capdb__free_words(words, n);
    sqlite3_stmt *st = NULL;
    if (!expr || sqlite3_prepare_v2(db->sql,
                                    "SELECT highlight(images_fts, 0, char(1), char(2))"
                                    " FROM images_fts WHERE images_fts MATCH ?1 AND rowid = ?2",
                                    -1, &st, NULL) != SQLITE_OK)
        fuzz_fail("preparing highlight(): %s", sqlite3_errmsg(db->sql));
    sqlite3_bind_text(st, 1, expr, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, hit->id);
    const char *want =
        sqlite3_step(st) == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    if (!want || strcmp(want, hit->snippet) != 0)
        fuzz_fail("snippet '%s', highlight() '%s'", hit->snippet, want ? want : "(none)");
    sqlite3_finalize(st);
    free(expr);
}
