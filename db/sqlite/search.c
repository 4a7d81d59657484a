/*
 * Search: user text -> safe FTS5 expression, fusion of bm25 with concept similarity,
 * and similar-image ranking over the pooled vectors.
 *
 * Text never reaches MATCH as syntax: our tokenizer cuts it into words and each word
 * becomes an FTS5 string literal, so quotes, *, ^, NEAR, AND/OR/NOT, parentheses and
 * "column:" filters are only ever searched as the words they contain.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caputf8.h"
#include "sqlite.h"


static void rank_function(const Fts5ExtensionApi *api, Fts5Context *fts, sqlite3_context *ctx,
                          int n_args, sqlite3_value **args);

static int search_text(capdb *db, const capdb_query *q, int limit, capdb_results *out,
                       capdb_err *err);
static int search_similar(capdb *db, const capdb_query *q, int limit, capdb_results *out,
                          capdb_err *err);
static int fts_candidates(capdb *db, const capdb_query *q, const char *all_words,
                          const char *any_word, int k, candidate_map *map, capdb_err *err);
static int fts_pass(capdb *db, const capdb_query *q, const char *expr, int k, candidate_map *map,
                    int *found, capdb_err *err);
static int concept_candidates(capdb *db, const capdb_query *q, candidate_map *map, capdb_err *err);
static int exact_concept_score(capdb *db, const capdb_query *q, candidate *c, capdb_err *err);
static int emit_hits(capdb *db, const capdb_query *q, capdb_highlighter *marker, scored *order,
                     size_t n, const candidate_map *map, int limit, capdb_results *out,
                     capdb_err *err);
static void filter_sql(const capdb_query *q, char *sql, size_t size, const char *id_column);
static int bind_filters(sqlite3_stmt *st, const capdb_query *q, char **lo, char **hi);

int capdb_sq_search(capdb *db, const capdb_query *q, capdb_results *out, capdb_err *err)
{
    memset(out, 0, sizeof *out);
    if (!q) return capdb__fail(err, -EINVAL, "no query");
    int limit = q->limit > 0 ? q->limit : 20;
    /* One read transaction: every statement of the search sees the same snapshot while
     * the daemon commits beside us. */
    int own_txn = sqlite3_get_autocommit(db->sql);
    if (own_txn && sqlite3_exec(db->sql, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return capdb__sqlfail(db, err, sqlite3_errcode(db->sql), "starting a search");
    int rc = q->pooled && q->n_pooled > 0 ? search_similar(db, q, limit, out, err)
                                          : search_text(db, q, limit, out, err);
    if (own_txn) sqlite3_exec(db->sql, "COMMIT", NULL, NULL, NULL);
    return rc;
}

/* ------------------------------------------------------------------ text + concepts */

/* The text score is the number of query words a row matches plus its BM25 squashed
 * into [0, 1) (rank_function). With concepts, both sides are scaled by their best candidate and added,
 * so a photo found only by what it shows still ranks, and one found by words and
 * concepts ranks above either alone. */
static int search_text(capdb *db, const capdb_query *q, int limit, capdb_results *out,
                       capdb_err *err)
{
    char **words;
    int n_words = capdb__query_words(q->text, &words, err);
    if (n_words < 0) return n_words;
    char *expr = capdb__fts_expression(words, n_words, " OR ");
    char *all = n_words > 1 ? capdb__fts_expression(words, n_words, " AND ") : NULL;
    capdb_highlighter *marker = NULL;
    int marker_rc = q->with_snippet ? capdb__highlighter_new(db->fts5, words, n_words, &marker) : 0;
    capdb__free_words(words, n_words);
    if (!expr || (n_words > 1 && !all) || marker_rc) {
        free(expr);
        free(all);
        capdb__highlighter_free(marker);
        if (marker_rc == -EIO)
            return capdb__fail(err, -EIO, "marking matched words: FTS5's tokenizer failed");
        return capdb__fail(err, -ENOMEM, "out of memory");
    }

    int fuse = q->concepts && q->n_concepts > 0;
    candidate_map map = {0};
    scored *order = NULL;
    size_t n = 0;
    int k = fuse && limit < CAPDB_FTS_CANDIDATES ? CAPDB_FTS_CANDIDATES : limit;
    int rc = fts_candidates(db, q, all, expr, k, &map, err);
    if (rc == 0 && fuse) rc = concept_candidates(db, q, &map, err);
    for (size_t i = 0; rc == 0 && fuse && i < map.cap; i++) {
        candidate *c = &map.slots[i];
        if (c->id && c->from_fts) rc = exact_concept_score(db, q, c, err);
    }
    if (rc == 0 && map.n && !(order = capdb__fuse(&map, fuse, &n)))
        rc = capdb__fail(err, -ENOMEM, "out of memory");
    if (rc == 0) rc = emit_hits(db, q, marker, order, n, &map, limit, out, err);
    free(order);
    free(map.slots);
    free(expr);
    free(all);
    capdb__highlighter_free(marker);
    if (rc) capdb_results_free(out);
    return rc;
}

/* The best k rows by capdb_rank. Rows with every word outrank rows with some, so when
 * k rows have them all, those are the answer and the (much longer) OR pass is skipped:
 * the same result either way, since the IDFs do not depend on the expression. */
static int fts_candidates(capdb *db, const capdb_query *q, const char *all_words,
                          const char *any_word, int k, candidate_map *map, capdb_err *err)
{
    int found = 0;
    if (all_words) {
        int rc = fts_pass(db, q, all_words, k, map, &found, err);
        if (rc || found >= k) return rc;
    }
    return fts_pass(db, q, any_word, k, map, &found, err);
}

/* Top k kept in a heap here rather than ORDER BY rank: FTS5 would sort every matching
 * row through SQLite's sorter, half the cost of the whole query. */
static int fts_pass(capdb *db, const capdb_query *q, const char *expr, int k, candidate_map *map,
                    int *found, capdb_err *err)
{
    char sql[1024], filters[512];
    filter_sql(q, filters, sizeof filters, "f.rowid");
    /* Column weights: caption > tags > path words. */
    snprintf(sql, sizeof sql,
             "SELECT f.rowid, capdb_rank(images_fts) FROM images_fts f"
             " WHERE images_fts MATCH ?1%s",
             filters);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return capdb__sqlfail(db, err, rc, "preparing the search");
    sqlite3_bind_text(st, 1, expr, -1, SQLITE_STATIC);
    char *lo = NULL, *hi = NULL;
    top_heap heap = {calloc((size_t)k, sizeof(scored)), 0, k};
    if (!heap.items || bind_filters(st, q, &lo, &hi) != 0) {
        sqlite3_finalize(st);
        free(heap.items);
        free(lo);
        free(hi);
        return capdb__fail(err, -ENOMEM, "out of memory");
    }
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW)
        capdb__heap_offer(&heap, -sqlite3_column_double(st, 1), sqlite3_column_int64(st, 0));
    rc = step == SQLITE_DONE ? 0 : capdb__sqlfail(db, err, step, "searching");
    sqlite3_finalize(st);
    free(lo);
    free(hi);
    for (int i = 0; rc == 0 && i < heap.n; i++) {
        candidate *c = capdb__map_get(map, heap.items[i].id);
        if (!c) {
            rc = capdb__fail(err, -ENOMEM, "out of memory");
            break;
        }
        /* words matched + BM25 squashed into [0, 1): "2.73" = both words, good fit */
        c->text = heap.items[i].score;
        c->from_fts = 1;
    }
    *found = heap.n;
    free(heap.items);
    return rc;
}

/* Each query concept is one index range, strongest images first. An image outside a
 * range's first CAPDB_POSTINGS_PER_CONCEPT gets only the other concepts' part: the ranking
 * of the strongest matches, the ones shown, is unaffected. */
static int concept_candidates(capdb *db, const capdb_query *q, candidate_map *map, capdb_err *err)
{
    for (int t = 0; t < q->n_concepts; t++) {
        float qw = q->concepts[t].weight;
        if (!(qw > 0)) continue;
        sqlite3_stmt *st;
        int rc = capdb__stmt(db, STMT_POSTINGS_TOP, &st, err);
        if (rc) return rc;
        sqlite3_bind_int(st, 1, q->concepts[t].index);
        sqlite3_bind_int(st, 2, CAPDB_POSTINGS_PER_CONCEPT);
        int step;
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            candidate *c = capdb__map_get(map, sqlite3_column_int64(st, 0));
            if (!c) {
                sqlite3_reset(st);
                return capdb__fail(err, -ENOMEM, "out of memory");
            }
            c->concept += qw * sqlite3_column_int(st, 1) / 255.0;
        }
        sqlite3_reset(st);
        if (step != SQLITE_DONE) return capdb__sqlfail(db, err, step, "reading concepts");
    }
    return 0;
}

/* Words matched: score the full stored concept vector, not just its postings. */
static int exact_concept_score(capdb *db, const capdb_query *q, candidate *c, capdb_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = capdb__stmt(db, STMT_CONCEPTS_OF, &st, err);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, c->id);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        const unsigned char *v = sqlite3_column_blob(st, 0);
        int n = sqlite3_column_bytes(st, 0);
        double s = 0;
        for (int t = 0; v && t < q->n_concepts; t++) {
            int idx = q->concepts[t].index;
            if (idx >= 0 && idx < n && q->concepts[t].weight > 0)
                s += q->concepts[t].weight * v[idx] / 255.0;
        }
        c->concept = s;
    } else if (step != SQLITE_DONE) {
        rc = capdb__sqlfail(db, err, step, "reading concepts");
    }
    sqlite3_reset(st);
    return rc;
}

/* Fills out with the best `limit` candidates, reading each row once. Candidates found
 * only by concept have not met the folder and date filters yet: checked here. The order
 * is sorted as far as it is read: `want` first, twice as many more each time filtered
 * rows use them up. */
static int emit_hits(capdb *db, const capdb_query *q, capdb_highlighter *marker, scored *order,
                     size_t n, const candidate_map *map, int limit, capdb_results *out,
                     capdb_err *err)
{
    if (n == 0) return 0;
    size_t want = n < (size_t)limit ? n : (size_t)limit;
    size_t sorted = capdb__sort_prefix(order, n, 0, want);
    out->hits = calloc(want, sizeof *out->hits);
    if (!out->hits) return capdb__fail(err, -ENOMEM, "out of memory");

    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n && (size_t)out->n < want; i++) {
        if (i == sorted) sorted = capdb__sort_prefix(order, n, sorted, 2 * sorted);
        const candidate *c = capdb__map_get((candidate_map *)map, order[i].id);
        sqlite3_stmt *st;
        if ((rc = capdb__stmt(db, STMT_ROW_FOR_HIT, &st, err))) break;
        sqlite3_bind_int64(st, 1, order[i].id);
        int step = sqlite3_step(st);
        if (step != SQLITE_ROW) {
            /* deleted since the candidate query: a reader racing the writer */
            if (step != SQLITE_DONE) rc = capdb__sqlfail(db, err, step, "reading a result");
            sqlite3_reset(st);
            continue;
        }
        const char *path = (const char *)sqlite3_column_text(st, 0);
        int64_t taken = sqlite3_column_int64(st, 3), mtime_ns = sqlite3_column_int64(st, 4);
        if (!c->from_fts && (sqlite3_column_int(st, 7) != CAPDB_STATUS_OK ||
                             !capdb__passes_filters(q, path, taken, mtime_ns))) {
            sqlite3_reset(st);
            continue;
        }
        capdb_hit *h = &out->hits[out->n++];
        const char *caption = (const char *)sqlite3_column_text(st, 1);
        const char *tags = (const char *)sqlite3_column_text(st, 2);
        h->id = order[i].id;
        h->score = order[i].score;
        h->path = strdup(path ? path : "");
        h->caption = caption ? strdup(caption) : NULL;
        h->tags = tags ? strdup(tags) : NULL;
        h->taken_time = taken;
        h->mtime_ns = mtime_ns;
        h->width = sqlite3_column_int(st, 5);
        h->height = sqlite3_column_int(st, 6);
        const char *description = (const char *)sqlite3_column_text(st, 8);
        const char *keywords = (const char *)sqlite3_column_text(st, 9);
        h->description = description ? strdup(description) : NULL;
        h->keywords = keywords ? strdup(keywords) : NULL;
        if ((description && !h->description) || (keywords && !h->keywords))
            rc = capdb__fail(err, -ENOMEM, "out of memory");
        sqlite3_reset(st);
        if (!h->path || (caption && !h->caption) || (tags && !h->tags))
            rc = capdb__fail(err, -ENOMEM, "out of memory");
        /* what highlight(images_fts, 0, char(1), char(2)) gives, from the caption */
        if (rc == 0 && marker && c->from_fts && h->caption &&
            !(h->snippet = capdb__highlight(marker, h->caption, "\x01", "\x02")))
            rc = capdb__fail(err, -ENOMEM, "out of memory");
    }
    return rc;
}

/* ------------------------------------------------------------------ similar images */

/* A scan over every stored pooled vector; the query is quantised like the stored ones
 * so the inner loop is an int8 dot product. Cosine ignores the per-vector scales. */
static int search_similar(capdb *db, const capdb_query *q, int limit, capdb_results *out,
                          capdb_err *err)
{
    int n = q->n_pooled;
    unsigned char *qblob = malloc((size_t)n + CAPDB_POOLED_HEADER);
    top_heap heap = {calloc((size_t)limit, sizeof(scored)), 0, limit};
    if (!qblob || !heap.items) {
        free(qblob);
        free(heap.items);
        return capdb__fail(err, -ENOMEM, "out of memory");
    }
    capdb__encode_pooled(q->pooled, n, qblob);
    float qnorm;
    memcpy(&qnorm, qblob + 4, 4);
    const int8_t *qv = (const int8_t *)(qblob + CAPDB_POOLED_HEADER);

    char sql[1024], filters[512];
    filter_sql(q, filters, sizeof filters, "v.image_id");
    snprintf(sql, sizeof sql,
             "SELECT v.image_id, v.pooled FROM vectors v"
             " WHERE v.pooled IS NOT NULL%s",
             filters);
    sqlite3_stmt *st = NULL;
    char *lo = NULL, *hi = NULL;
    int rc = sqlite3_prepare_v2(db->sql, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        rc = capdb__sqlfail(db, err, rc, "preparing the vector scan");
    } else if (bind_filters(st, q, &lo, &hi) != 0) {
        rc = capdb__fail(err, -ENOMEM, "out of memory");
    } else {
        int step;
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            const unsigned char *blob = sqlite3_column_blob(st, 1);
            if (sqlite3_column_bytes(st, 1) != n + CAPDB_POOLED_HEADER || qnorm == 0) continue;
            float norm;
            memcpy(&norm, blob + 4, 4);
            if (norm == 0) continue;
            int32_t dot = capdb__dot_i8(qv, (const int8_t *)(blob + CAPDB_POOLED_HEADER), n);
            capdb__heap_offer(&heap, dot / ((double)qnorm * norm), sqlite3_column_int64(st, 0));
        }
        rc = step == SQLITE_DONE ? 0 : capdb__sqlfail(db, err, step, "scanning vectors");
    }
    sqlite3_finalize(st);
    free(lo);
    free(hi);
    free(qblob);

    if (rc == 0) {
        /* emit_hits sorts the heap's items as it reads them */
        candidate_map map = {0};
        for (int i = 0; i < heap.n && rc == 0; i++) {
            candidate *c = capdb__map_get(&map, heap.items[i].id);
            if (!c) rc = capdb__fail(err, -ENOMEM, "out of memory");
            else c->from_fts = 1; /* filters already applied in the scan */
        }
        capdb_query plain = *q;
        plain.with_snippet = 0;
        if (rc == 0)
            rc = emit_hits(db, &plain, NULL, heap.items, (size_t)heap.n, &map, limit, out, err);
        free(map.slots);
    }
    free(heap.items);
    if (rc) capdb_results_free(out);
    return rc;
}


char *capdb__fts_expression(char *const *words, int n, const char *joiner)
{
    size_t size = 1, jlen = strlen(joiner);
    for (int i = 0; i < n; i++) size += 2 * strlen(words[i]) + 2 + jlen;
    char *expr = malloc(size), *o = expr;
    if (!expr) return NULL;
    for (int i = 0; i < n; i++) {
        if (i) memcpy(o, joiner, jlen), o += jlen;
        *o++ = '"';
        for (const char *c = words[i]; *c; c++) {
            if (*c == '"') *o++ = '"';
            *o++ = *c;
        }
        *o++ = '"';
    }
    *o = '\0';
    return expr;
}

/* ------------------------------------------------------------------ ranking function */

/* capdb_rank(fts), used as the query's FTS5 rank, over the columns weighted by
 * RANK_WEIGHTS (caption, tags, path words, description, keywords: what people wrote
 * ranks above what the model made):
 *   -(words matched + s / (1 + s)),  s = BM25 with b = 0 over the weighted columns.
 * Rows matching more of the query's words sort first; among them BM25 decides. b = 0
 * (no length normalisation) because captions are all about as long, and it spares
 * the per-row column-size lookup that dominates FTS5's own bm25() (12 ms against 2 ms
 * for 11k matching rows of 100k). IDF is computed once per query. */
#define RANK_K1 1.2
#define RANK_MAX_COLUMNS 5
static const double RANK_WEIGHTS[RANK_MAX_COLUMNS] = {4.0, 2.0, 1.0, 6.0, 5.0};

typedef struct {
    int n_phrases;
    double idf[CAPDB_MAX_QUERY_WORDS];
} rank_idf;

static int count_row(const Fts5ExtensionApi *api, Fts5Context *fts, void *ctx);

int capdb__register_functions(sqlite3 *sql, fts5_api **fts5)
{
    fts5_api *api = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(sql, "SELECT fts5(?1)", -1, &st, NULL) != SQLITE_OK) return -EIO;
    sqlite3_bind_pointer(st, 1, (void *)&api, "fts5_api_ptr", NULL);
    sqlite3_step(st);
    sqlite3_finalize(st);
    if (!api || api->iVersion < 2) return -EIO;
    *fts5 = api;
    return api->xCreateFunction(api, "capdb_rank", NULL, rank_function, NULL) == SQLITE_OK ? 0
                                                                                           : -EIO;
}

static void rank_function(const Fts5ExtensionApi *api, Fts5Context *fts, sqlite3_context *ctx,
                          int n_args, sqlite3_value **args)
{
    int n_phrases = api->xPhraseCount(fts);
    if (n_phrases > CAPDB_MAX_QUERY_WORDS) n_phrases = CAPDB_MAX_QUERY_WORDS;
    rank_idf *idf = api->xGetAuxdata(fts, 0);
    if (!idf) {
        idf = sqlite3_malloc(sizeof *idf);
        if (!idf) {
            sqlite3_result_error_nomem(ctx);
            return;
        }
        sqlite3_int64 rows = 0;
        api->xRowCount(fts, &rows);
        idf->n_phrases = n_phrases;
        for (int p = 0; p < n_phrases; p++) {
            sqlite3_int64 with = 0;
            api->xQueryPhrase(fts, p, &with, count_row);
            double v = log((rows - with + 0.5) / (with + 0.5));
            idf->idf[p] = v > 1e-6 ? v : 1e-6; /* very common words still count a little */
        }
        if (api->xSetAuxdata(fts, idf, sqlite3_free) != SQLITE_OK) {
            sqlite3_result_error_nomem(ctx);
            return;
        }
    }

    double weight[RANK_MAX_COLUMNS];
    for (int c = 0; c < RANK_MAX_COLUMNS; c++)
        weight[c] = c < n_args ? sqlite3_value_double(args[c]) : RANK_WEIGHTS[c];
    int hits[CAPDB_MAX_QUERY_WORDS][RANK_MAX_COLUMNS] = {{0}};
    int n_inst = 0;
    api->xInstCount(fts, &n_inst);
    for (int i = 0; i < n_inst; i++) {
        int p, c, off;
        if (api->xInst(fts, i, &p, &c, &off) == SQLITE_OK && p < n_phrases && c >= 0 &&
            c < RANK_MAX_COLUMNS)
            hits[p][c]++;
    }
    int matched = 0;
    double score = 0;
    for (int p = 0; p < n_phrases; p++) {
        double s = 0;
        for (int c = 0; c < RANK_MAX_COLUMNS; c++)
            if (hits[p][c]) s += weight[c] * hits[p][c] * (RANK_K1 + 1) / (hits[p][c] + RANK_K1);
        if (s > 0) matched++;
        score += idf->idf[p] * s;
    }
    sqlite3_result_double(ctx, -(matched + score / (1.0 + score)));
}

static int count_row(const Fts5ExtensionApi *api, Fts5Context *fts, void *ctx)
{
    (void)api;
    (void)fts;
    (*(sqlite3_int64 *)ctx)++;
    return SQLITE_OK;
}

/* ------------------------------------------------------------------ helpers */

/* Parameters ?3..?6: folder range and time window. */
static void filter_sql(const capdb_query *q, char *sql, size_t size, const char *id_column)
{
    int dir = q->under_dir && *q->under_dir;
    int time = q->has_since || q->has_until;
    sql[0] = '\0';
    if (!dir && !time) return;
    snprintf(sql, size,
             " AND %s IN (SELECT i.id FROM images i WHERE i.id = %s AND i.status = 0%s%s)",
             id_column, id_column, dir ? " AND i.path >= ?3 AND i.path < ?4" : "",
             time ? " AND (CASE WHEN i.taken_time != 0 THEN i.taken_time"
                    " ELSE i.mtime_ns / 1000000000 END) BETWEEN ?5 AND ?6"
                  : "");
}

static int bind_filters(sqlite3_stmt *st, const capdb_query *q, char **lo, char **hi)
{
    if (q->under_dir && *q->under_dir) {
        if (capdb__dir_bounds(q->under_dir, lo, hi) != 0) return -ENOMEM;
        sqlite3_bind_text(st, 3, *lo, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, *hi, -1, SQLITE_STATIC);
    }
    if (q->has_since || q->has_until) {
        sqlite3_bind_int64(st, 5, q->has_since ? q->since : INT64_MIN);
        sqlite3_bind_int64(st, 6, q->has_until ? q->until : INT64_MAX);
    }
    return 0;
}

