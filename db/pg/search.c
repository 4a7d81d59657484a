/*
 * Search (PostgreSQL): user text -> tsquery values, the text score fused with concept
 * similarity, and similar-image ranking over the pooled vectors; the same contract as
 * sqlite/search.c, and the same fusion (rank.c).
 *
 * Text never becomes tsquery syntax: our tokenizer (words.c) cuts it into words and each
 * word is its own parameter of plainto_tsquery('english', $n), which only ever reads it
 * as plain words. The query is the OR of those; "matches more query words first" is the
 * count of per-word matches added to the rank.
 *
 * Every statement of a search sees one snapshot (a REPEATABLE READ READ ONLY
 * transaction of its own, or the caller's open one) while other nodes commit beside us.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg.h"

/* Pooled vectors fetched per round trip of the similar-image scan: a million rows never
 * land in one PGresult. */
#define SIMILAR_FETCH 5000
#define STR_(x) #x
#define STR(x) STR_(x)
/* Hit rows read per round trip at first; doubled while concept-only candidates fail the
 * filters, up to the most. */
#define HITS_CHUNK_MIN 64
#define HITS_CHUNK_MAX 4096

/* ts_rank's weights {D, C, B, A}: path words, tags, caption, what people wrote (the
 * tsvector's labels, schema.c), as SQLite's caption 4 : tags 2 : path 1 with people's
 * words above them. */
#define RANK_WEIGHTS "'{0.16666667, 0.33333334, 0.6666667, 1.0}'::float4[]"
#define HEADLINE_OPTIONS "'StartSel=' || chr(1) || ', StopSel=' || chr(2) || ', HighlightAll=true'"

typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} strbuf;

typedef struct {
    char **words; /* the query's words, valid UTF-8 */
    int n;
} query_words;

static int search_text(capdb *db, const capdb_query *q, const query_words *w, int limit,
                       capdb_results *out, capdb_err *err);
static int search_similar(capdb *db, const capdb_query *q, int limit, capdb_results *out,
                          capdb_err *err);
static int text_candidates(capdb *db, const capdb_query *q, const query_words *w, int k,
                           const char *joiner, candidate_map *map, int *found, capdb_err *err);
static int concept_candidates(capdb *db, const capdb_query *q, candidate_map *map, capdb_err *err);
static int exact_concept_scores(capdb *db, const capdb_query *q, candidate_map *map,
                                capdb_err *err);
static int emit_hits(capdb *db, const capdb_query *q, const query_words *w, scored *order,
                     size_t n, candidate_map *map, int limit, capdb_results *out, capdb_err *err);
static int scan_pooled(const PGresult *r, const int8_t *qv, float qnorm, int n, int8_t *buf,
                       top_heap *heap);
static void sb_add(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_tsquery(strbuf *b, const query_words *w, int first, const char *joiner);
static void sb_filters(strbuf *b, pg_params *p, const capdb_query *q, const char *alias,
                       const char *lo, const char *hi);
static int id_array(strbuf *b, const int64_t *ids, size_t n);
static int hex_to_bytes(const char *hex, size_t hex_len, unsigned char *out, size_t n);

int capdb_pg_search(capdb *db, const capdb_query *q, capdb_results *out, capdb_err *err)
{
    memset(out, 0, sizeof *out);
    if (!q) return capdb__fail(err, -EINVAL, "no query");
    int limit = q->limit > 0 ? q->limit : 20;
    int similar = q->pooled && q->n_pooled > 0;
    query_words w = {NULL, 0};
    if (!similar) {
        w.n = capdb__query_words(q->text, &w.words, err);
        if (w.n < 0) return w.n;
    }
    /* One snapshot for every statement of the search, as SQLite's one read transaction;
     * inside the caller's transaction, the caller's. */
    int own_txn = !db->pg->in_tx;
    int rc = own_txn ? capdb__pg_exec(db, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", NULL,
                                      err, "starting a search")
                     : 0;
    if (rc == 0)
        rc = similar ? search_similar(db, q, limit, out, err)
                     : search_text(db, q, &w, limit, out, err);
    if (own_txn && PQstatus(db->pg->conn) == CONNECTION_OK) {
        int end = capdb__pg_exec(db, rc == 0 ? "COMMIT" : "ROLLBACK", NULL, rc == 0 ? err : NULL,
                                 "ending a search");
        if (rc == 0 && end) {
            rc = end;
            capdb_results_free(out);
        }
    }
    capdb__free_words(w.words, w.n);
    return rc;
}

/* ------------------------------------------------------------------ text + concepts */

/* The text score is the number of query words a row matches plus its ts_rank s squashed
 * into [0, 1) as s / (1 + s). With concepts, both sides are scaled by their best
 * candidate and added (capdb__fuse), so a photo found only by what it shows still ranks,
 * and one found by words and concepts ranks above either alone. */
static int search_text(capdb *db, const capdb_query *q, const query_words *w, int limit,
                       capdb_results *out, capdb_err *err)
{
    int fuse = q->concepts && q->n_concepts > 0;
    candidate_map map = {0};
    scored *order = NULL;
    size_t n = 0;
    int k = fuse && limit < CAPDB_FTS_CANDIDATES ? CAPDB_FTS_CANDIDATES : limit;
    /* Rows with every word outrank rows with some, so when k rows have them all, those
     * are the answer and the (much longer) OR pass is skipped: the same result either
     * way, since the score does not depend on the pass. */
    int found = 0, rc = 0;
    if (w->n > 1) rc = text_candidates(db, q, w, k, " && ", &map, &found, err);
    if (rc == 0 && found < k) rc = text_candidates(db, q, w, k, " || ", &map, &found, err);
    if (rc == 0 && fuse) rc = concept_candidates(db, q, &map, err);
    if (rc == 0 && fuse) rc = exact_concept_scores(db, q, &map, err);
    if (rc == 0 && map.n && !(order = capdb__fuse(&map, fuse, &n)))
        rc = capdb__fail(err, -ENOMEM, "out of memory");
    if (rc == 0) rc = emit_hits(db, q, w, order, n, &map, limit, out, err);
    free(order);
    free(map.slots);
    if (rc) capdb_results_free(out);
    return rc;
}

/* The best k OK rows that match the words (joiner " || ": any; " && ": all) and the
 * filters, by words matched + squashed rank; *found: how many. The GIN index (partial:
 * status = 0) finds the matches; the sort of them by score is the server's. */
static int text_candidates(capdb *db, const capdb_query *q, const query_words *w, int k,
                           const char *joiner, candidate_map *map, int *found, capdb_err *err)
{
    pg_params p = {0};
    for (int i = 0; i < w->n; i++) capdb__pg_text(&p, w->words[i]);
    strbuf sql = {0};
    sb_add(&sql, "SELECT id, m + s / (1 + s) AS score FROM (SELECT id, ");
    for (int i = 0; i < w->n; i++)
        sb_add(&sql, "%s(tsv @@ plainto_tsquery('english', $%d))::int", i ? " + " : "", i + 1);
    sb_add(&sql, " AS m, ts_rank(" RANK_WEIGHTS ", tsv, ");
    sb_tsquery(&sql, w, 1, " || ");
    sb_add(&sql, ") AS s FROM images WHERE status = 0 AND tsv @@ ");
    sb_tsquery(&sql, w, 1, joiner);
    char *lo = NULL, *hi = NULL;
    if (q->under_dir && *q->under_dir && capdb__dir_bounds(q->under_dir, &lo, &hi) != 0)
        sql.oom = 1;
    sb_filters(&sql, &p, q, "images", lo, hi);
    capdb__pg_int(&p, k);
    sb_add(&sql, ") t ORDER BY score DESC, id LIMIT $%d", p.n);
    int rc = 0, code;
    PGresult *r = NULL;
    if (sql.oom) rc = capdb__fail(err, -ENOMEM, "out of memory");
    else if (!(r = capdb__pg_run(db, sql.s, &p, &code, err, "searching"))) rc = code;
    *found = r ? PQntuples(r) : 0;
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        candidate *c = capdb__map_get(map, capdb__pg_get_int(r, i, 0));
        if (!c) {
            rc = capdb__fail(err, -ENOMEM, "out of memory");
            break;
        }
        /* words matched + rank squashed into [0, 1): "2.73" = both words, good fit */
        c->text = capdb__pg_get_double(r, i, 1);
        c->from_fts = 1;
    }
    PQclear(r);
    free(sql.s);
    free(lo);
    free(hi);
    return rc;
}

/* Each query concept is one index range of postings, strongest images first, all of
 * them in one round trip. An image outside a range's first CAPDB_POSTINGS_PER_CONCEPT
 * gets only the other concepts' part: the ranking of the strongest matches, the ones
 * shown, is unaffected. */
static int concept_candidates(capdb *db, const capdb_query *q, candidate_map *map, capdb_err *err)
{
    int64_t *idx = calloc((size_t)q->n_concepts + 1, sizeof *idx);
    double *weight = calloc((size_t)q->n_concepts + 1, sizeof *weight);
    size_t n = 0;
    for (int t = 0; idx && weight && t < q->n_concepts; t++) {
        float qw = q->concepts[t].weight;
        if (!(qw > 0)) continue;
        idx[n] = q->concepts[t].index;
        weight[n++] = qw;
    }
    strbuf list = {0};
    int rc = !idx || !weight || id_array(&list, idx, n) != 0
                 ? capdb__fail(err, -ENOMEM, "out of memory")
                 : 0;
    PGresult *r = NULL;
    if (rc == 0 && n > 0) {
        pg_params p = {0};
        capdb__pg_text(&p, list.s);
        capdb__pg_int(&p, CAPDB_POSTINGS_PER_CONCEPT);
        int code;
        r = capdb__pg_run(db,
                          "SELECT t.ord, p.image_id, p.weight"
                          " FROM unnest($1::int[]) WITH ORDINALITY AS t(concept, ord)"
                          " CROSS JOIN LATERAL (SELECT image_id, weight FROM postings"
                          "  WHERE concept = t.concept ORDER BY weight DESC, image_id DESC"
                          "  LIMIT $2) p",
                          &p, &code, err, "reading concepts");
        if (!r) rc = code;
    }
    for (int i = 0; rc == 0 && r && i < PQntuples(r); i++) {
        int64_t ord = capdb__pg_get_int(r, i, 0);
        candidate *c = capdb__map_get(map, capdb__pg_get_int(r, i, 1));
        if (!c) {
            rc = capdb__fail(err, -ENOMEM, "out of memory");
        } else if (ord >= 1 && (size_t)ord <= n) {
            c->concept += weight[ord - 1] * (double)capdb__pg_get_int(r, i, 2) / 255.0;
        }
    }
    PQclear(r);
    free(list.s);
    free(idx);
    free(weight);
    return rc;
}

/* Words matched: score the full stored concept vector, not just its postings. */
static int exact_concept_scores(capdb *db, const capdb_query *q, candidate_map *map, capdb_err *err)
{
    int64_t *ids = calloc(map->n ? map->n : 1, sizeof *ids);
    size_t n = 0;
    for (size_t i = 0; ids && i < map->cap; i++)
        if (map->slots[i].id && map->slots[i].from_fts) ids[n++] = map->slots[i].id;
    strbuf list = {0};
    int rc = !ids || id_array(&list, ids, n) != 0 ? capdb__fail(err, -ENOMEM, "out of memory") : 0;
    free(ids);
    if (rc || n == 0) {
        free(list.s);
        return rc;
    }
    pg_params p = {0};
    capdb__pg_text(&p, list.s);
    int code;
    PGresult *r = capdb__pg_run(db,
                                "SELECT image_id, concepts FROM vectors"
                                " WHERE image_id = ANY($1::bigint[])",
                                &p, &code, err, "reading concepts");
    free(list.s);
    if (!r) return code;
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        int oom = 0;
        size_t len = 0;
        unsigned char *v = capdb__pg_get_bytes(r, i, 1, &len, &oom);
        if (oom) {
            rc = capdb__fail(err, -ENOMEM, "out of memory");
            break;
        }
        double s = 0;
        for (int t = 0; v && t < q->n_concepts; t++) {
            int idx = q->concepts[t].index;
            if (idx >= 0 && (size_t)idx < len && q->concepts[t].weight > 0)
                s += q->concepts[t].weight * v[idx] / 255.0;
        }
        free(v);
        candidate *c = capdb__map_get(map, capdb__pg_get_int(r, i, 0));
        if (!c) rc = capdb__fail(err, -ENOMEM, "out of memory");
        else c->concept = s;
    }
    PQclear(r);
    return rc;
}

typedef struct {
    int64_t id;
    int row;
} id_row;

static int by_id(const void *a, const void *b)
{
    const id_row *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Fills out with the best `limit` candidates in the fused order, reading their rows a
 * chunk at a time (one statement per chunk). Candidates found only by concept have not
 * met the folder and date filters, nor status OK, yet: checked here. w is NULL for a
 * similar-image search (no snippets). */
static int emit_hits(capdb *db, const capdb_query *q, const query_words *w, scored *order,
                     size_t n, candidate_map *map, int limit, capdb_results *out, capdb_err *err)
{
    if (n == 0) return 0;
    size_t want = n < (size_t)limit ? n : (size_t)limit;
    out->hits = calloc(want, sizeof *out->hits);
    int64_t *chunk = malloc((n < HITS_CHUNK_MAX ? n : HITS_CHUNK_MAX) * sizeof *chunk);
    int64_t *texts = malloc((n < HITS_CHUNK_MAX ? n : HITS_CHUNK_MAX) * sizeof *texts);
    id_row *rows = malloc((n < HITS_CHUNK_MAX ? n : HITS_CHUNK_MAX) * sizeof *rows);
    int snippets = w && q->with_snippet;
    int rc = out->hits && chunk && texts && rows ? 0 : capdb__fail(err, -ENOMEM, "out of memory");
    size_t next = 0, size = HITS_CHUNK_MIN;
    while (rc == 0 && next < n && (size_t)out->n < want) {
        /* the next chunk of the order: at least what is still missing */
        size_t missing = want - (size_t)out->n;
        if (size < missing) size = missing;
        if (size > HITS_CHUNK_MAX) size = HITS_CHUNK_MAX;
        size_t m = n - next < size ? n - next : size, n_texts = 0;
        capdb__sort_prefix(order, n, next, next + m); /* the best first, sorted as read */
        for (size_t i = 0; i < m; i++) {
            chunk[i] = order[next + i].id;
            const candidate *c = capdb__map_get(map, chunk[i]);
            if (snippets && c && c->from_fts) texts[n_texts++] = chunk[i];
        }
        strbuf ids = {0}, with_snippet = {0}, sql = {0};
        id_array(&ids, chunk, m);
        id_array(&with_snippet, texts, n_texts);
        pg_params p = {0};
        capdb__pg_text(&p, ids.s);
        sb_add(&sql, "SELECT id, path, caption, tags, taken_time, mtime_ns, width, height, status,"
                     " description, keywords, ");
        if (snippets && n_texts) {
            capdb__pg_text(&p, with_snippet.s);
            for (int i = 0; i < w->n; i++) capdb__pg_text(&p, w->words[i]);
            sb_add(&sql, "CASE WHEN id = ANY($2::bigint[]) THEN ts_headline('english', caption, ");
            sb_tsquery(&sql, w, 3, " || ");
            sb_add(&sql, ", " HEADLINE_OPTIONS ") END");
        } else {
            sb_add(&sql, "NULL");
        }
        sb_add(&sql, " FROM images WHERE id = ANY($1::bigint[])");
        PGresult *r = NULL;
        int code;
        if (ids.oom || with_snippet.oom || sql.oom) rc = capdb__fail(err, -ENOMEM, "out of memory");
        else if (!(r = capdb__pg_run(db, sql.s, &p, &code, err, "reading results"))) rc = code;
        free(ids.s);
        free(with_snippet.s);
        free(sql.s);
        int n_rows = r ? PQntuples(r) : 0;
        for (int i = 0; i < n_rows; i++) rows[i] = (id_row){capdb__pg_get_int(r, i, 0), i};
        if (n_rows) qsort(rows, (size_t)n_rows, sizeof *rows, by_id);

        for (size_t i = 0; rc == 0 && i < m && (size_t)out->n < want; i++) {
            id_row key = {chunk[i], 0};
            const id_row *found = bsearch(&key, rows, (size_t)n_rows, sizeof *rows, by_id);
            if (!found) continue; /* deleted since the candidate query (another snapshot) */
            int row = found->row, oom = 0;
            const candidate *c = capdb__map_get(map, chunk[i]);
            if (!c) {
                rc = capdb__fail(err, -ENOMEM, "out of memory");
                break;
            }
            char *path = (char *)capdb__pg_get_bytes(r, row, 1, NULL, &oom);
            int64_t taken = capdb__pg_get_int(r, row, 4), mtime_ns = capdb__pg_get_int(r, row, 5);
            if (path && !c->from_fts &&
                (capdb__pg_get_int(r, row, 8) != CAPDB_STATUS_OK ||
                 !capdb__passes_filters(q, path, taken, mtime_ns))) {
                free(path);
                continue;
            }
            capdb_hit *h = &out->hits[out->n++];
            h->id = chunk[i];
            h->score = order[next + i].score;
            h->path = path;
            h->caption = capdb__pg_get_text(r, row, 2, &oom);
            h->tags = capdb__pg_get_text(r, row, 3, &oom);
            h->taken_time = taken;
            h->mtime_ns = mtime_ns;
            h->width = (int)capdb__pg_get_int(r, row, 6);
            h->height = (int)capdb__pg_get_int(r, row, 7);
            h->description = capdb__pg_get_text(r, row, 9, &oom);
            h->keywords = capdb__pg_get_text(r, row, 10, &oom);
            if (snippets && c->from_fts) h->snippet = capdb__pg_get_text(r, row, 11, &oom);
            if (oom || !h->path) rc = capdb__fail(err, -ENOMEM, "out of memory");
        }
        PQclear(r);
        next += m;
        size *= 2;
    }
    free(chunk);
    free(texts);
    free(rows);
    return rc;
}

/* ------------------------------------------------------------------ similar images */

/* A scan over every stored pooled vector, through a cursor SIMILAR_FETCH rows at a
 * time; the query is quantised like the stored ones so the inner loop is an int8 dot
 * product. Cosine ignores the per-vector scales. Vectors exist only for OK rows
 * (rows.c), so without filters the images table is not read.
 * A BINARY cursor: FETCH without parameters goes through the simple protocol
 * (capdb__pg_run), where the cursor's format decides, and the vectors arrive as their
 * bytes, half the size of their hex text and nothing to decode (the transfer is most of
 * the scan's time). scan_pooled reads either format (PQfformat). */
static int search_similar(capdb *db, const capdb_query *q, int limit, capdb_results *out,
                          capdb_err *err)
{
    int n = q->n_pooled;
    unsigned char *qblob = malloc((size_t)n + CAPDB_POOLED_HEADER);
    int8_t *buf = malloc((size_t)n + CAPDB_POOLED_HEADER);
    top_heap heap = {calloc((size_t)limit, sizeof(scored)), 0, limit};
    if (!qblob || !buf || !heap.items) {
        free(qblob);
        free(buf);
        free(heap.items);
        return capdb__fail(err, -ENOMEM, "out of memory");
    }
    capdb__encode_pooled(q->pooled, n, qblob);
    float qnorm;
    memcpy(&qnorm, qblob + 4, 4);
    const int8_t *qv = (const int8_t *)(qblob + CAPDB_POOLED_HEADER);

    pg_params p = {0};
    strbuf sql = {0};
    capdb__pg_int(&p, (int64_t)n + CAPDB_POOLED_HEADER);
    int filtered = (q->under_dir && *q->under_dir) || q->has_since || q->has_until;
    sb_add(&sql,
           "DECLARE capdb_similar BINARY NO SCROLL CURSOR FOR SELECT v.image_id, v.pooled"
           " FROM vectors v%s WHERE v.pooled IS NOT NULL AND length(v.pooled) = $1",
           filtered ? " JOIN images i ON i.id = v.image_id" : "");
    char *lo = NULL, *hi = NULL;
    if (filtered) sb_add(&sql, " AND i.status = 0");
    if (q->under_dir && *q->under_dir && capdb__dir_bounds(q->under_dir, &lo, &hi) != 0)
        sql.oom = 1;
    sb_filters(&sql, &p, q, "i", lo, hi);
    int rc = sql.oom ? capdb__fail(err, -ENOMEM, "out of memory")
                     : capdb__pg_exec(db, sql.s, &p, err, "starting the vector scan");
    int declared = rc == 0;
    free(sql.s);
    free(lo);
    free(hi);
    while (rc == 0 && qnorm != 0) {
        int code, got;
        PGresult *r = capdb__pg_run(db, "FETCH " STR(SIMILAR_FETCH) " FROM capdb_similar", NULL,
                                    &code, err, "scanning vectors");
        if (!r) {
            rc = code;
            break;
        }
        got = PQntuples(r);
        rc = scan_pooled(r, qv, qnorm, n, buf, &heap);
        PQclear(r);
        if (rc) rc = capdb__fail(err, rc, "out of memory");
        if (got < SIMILAR_FETCH) break;
    }
    /* the caller's transaction lives on: leave no cursor in it */
    if (declared && PQstatus(db->pg->conn) == CONNECTION_OK) {
        int closed =
            capdb__pg_exec(db, "CLOSE capdb_similar", NULL, rc ? NULL : err, "ending the scan");
        if (rc == 0) rc = closed;
    }
    free(qblob);
    free(buf);

    if (rc == 0) {
        /* emit_hits sorts the heap's items as it reads them */
        candidate_map map = {0};
        for (int i = 0; i < heap.n && rc == 0; i++) {
            candidate *c = capdb__map_get(&map, heap.items[i].id);
            if (!c) rc = capdb__fail(err, -ENOMEM, "out of memory");
            else c->from_fts = 1; /* filters already applied in the scan */
        }
        if (rc == 0) rc = emit_hits(db, q, NULL, heap.items, (size_t)heap.n, &map, limit, out, err);
        free(map.slots);
    }
    free(heap.items);
    if (rc) capdb_results_free(out);
    return rc;
}

/* Offers every vector of one FETCH to the heap. Binary columns (the BINARY cursor):
 * int8 big-endian and the blob's bytes as they are. Text (should the cursor's format
 * not reach us): "\x" + hex, decoded into buf without a copy per row, or the escape
 * format through libpq's decoder. 0, or -ENOMEM. */
static int scan_pooled(const PGresult *r, const int8_t *qv, float qnorm, int n, int8_t *buf,
                       top_heap *heap)
{
    size_t bytes = (size_t)n + CAPDB_POOLED_HEADER;
    int binary = PQfformat(r, 0) == 1 && PQfformat(r, 1) == 1;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *v = PQgetvalue(r, i, 1);
        size_t len = (size_t)PQgetlength(r, i, 1);
        const int8_t *blob = buf;
        int64_t id;
        if (binary) {
            if (len != bytes || PQgetlength(r, i, 0) != 8) continue;
            const unsigned char *b = (const unsigned char *)PQgetvalue(r, i, 0);
            uint64_t u = 0;
            for (int k = 0; k < 8; k++) u = u << 8 | b[k];
            id = (int64_t)u;
            blob = (const int8_t *)v;
        } else {
            id = capdb__pg_get_int(r, i, 0);
            if (len == 2 + 2 * bytes && v[0] == '\\' && v[1] == 'x') {
                if (hex_to_bytes(v + 2, len - 2, (unsigned char *)buf, bytes) != 0) continue;
            } else {
                size_t got = 0;
                unsigned char *raw = PQunescapeBytea((const unsigned char *)v, &got);
                if (!raw) return -ENOMEM;
                if (got == bytes) memcpy(buf, raw, bytes);
                PQfreemem(raw);
                if (got != bytes) continue;
            }
        }
        float norm;
        memcpy(&norm, blob + 4, 4);
        if (norm == 0) continue;
        int32_t dot = capdb__dot_i8(qv, blob + CAPDB_POOLED_HEADER, n);
        capdb__heap_offer(heap, dot / ((double)qnorm * norm), id);
    }
    return 0;
}


/* ------------------------------------------------------------------ helpers */

static void sb_add(strbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int len = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (len < 0) {
            b->oom = 1;
            return;
        }
        if (b->s && b->n + (size_t)len < b->cap) {
            b->n += (size_t)len;
            return;
        }
        size_t cap = b->cap ? b->cap : 256;
        while (cap <= b->n + (size_t)len) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

/* (plainto_tsquery('english', $first) || ...): the words' tsqueries joined by " || "
 * (any) or " && " (all), parameters first, first + 1, ... */
static void sb_tsquery(strbuf *b, const query_words *w, int first, const char *joiner)
{
    sb_add(b, "(");
    for (int i = 0; i < w->n; i++)
        sb_add(b, "%splainto_tsquery('english', $%d)", i ? joiner : "", first + i);
    sb_add(b, ")");
}

/* The folder range and the time window of q on alias's columns, their parameters
 * appended to p. */
static void sb_filters(strbuf *b, pg_params *p, const capdb_query *q, const char *alias,
                       const char *lo, const char *hi)
{
    if (q->under_dir && *q->under_dir && lo && hi) {
        capdb__pg_path(p, lo);
        capdb__pg_path(p, hi);
        sb_add(b, " AND %s.path >= $%d AND %s.path < $%d", alias, p->n - 1, alias, p->n);
    }
    if (q->has_since || q->has_until) {
        capdb__pg_int(p, q->has_since ? q->since : INT64_MIN);
        capdb__pg_int(p, q->has_until ? q->until : INT64_MAX);
        sb_add(b,
               " AND (CASE WHEN %s.taken_time != 0 THEN %s.taken_time"
               " ELSE %s.mtime_ns / 1000000000 END) BETWEEN $%d AND $%d",
               alias, alias, alias, p->n - 1, p->n);
    }
}

/* An array literal of integers, {1,2,3}, into b (emptied first). 0, or -ENOMEM. */
static int id_array(strbuf *b, const int64_t *ids, size_t n)
{
    b->n = 0;
    sb_add(b, "{");
    for (size_t i = 0; i < n; i++) sb_add(b, "%s%lld", i ? "," : "", (long long)ids[i]);
    sb_add(b, "}");
    return b->oom ? -ENOMEM : 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int hex_to_bytes(const char *hex, size_t hex_len, unsigned char *out, size_t n)
{
    if (hex_len != 2 * n) return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return -EINVAL;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}
