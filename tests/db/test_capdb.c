/*
 * Unit tests for libcapdb on real database files in a temporary folder.
 * Usage: test_capdb [WORKDIR]
 *
 * With CAPSEARCH_TEST_PG set to a libpq URI (tests/pg/with_pg.sh sets it), the cases
 * that do not depend on the backend run a second time against that PostgreSQL
 * database, each on a fresh schema, followed by the PostgreSQL-only cases. The
 * database's schema "capsearch" is dropped and recreated freely: give it a throw-away
 * database.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capdb.h"
#include "internal.h"
#include "pg.h"

static int failures;
/* The PostgreSQL database under test, NULL while the SQLite cases run. */
static const char *pg_uri;
#define BACKEND (pg_uri ? "postgresql" : "sqlite")
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: [%s] CHECK failed: %s\n", __FILE__, __LINE__, BACKEND, #cond); \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)
#define CHECK_OK(expr)                                                                             \
    do {                                                                                           \
        capdb_err e_ = {{0}, 0};                                                                   \
        (void)e_;                                                                                  \
        int rc_ = (expr);                                                                          \
        if (rc_ < 0) {                                                                             \
            fprintf(stderr, "%s:%d: %s -> %d\n", __FILE__, __LINE__, #expr, rc_);                  \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static char workdir[1024];
static capdb_err err;

static void test_open_and_rows(void);
static void test_delete_and_move(void);
static void test_search_ranking(void);
static void test_query_safety(void);
static void test_fusion_and_similar(void);
static void test_filters(void);
static void test_migrations(void);
static void test_errors(void);
static void test_words(void);
static void test_sort_prefix(void);
static void test_highlight(void);
static void test_pg_migrations(void);
static void test_pg_foreign_schema(void);
static void test_pg_errors(void);
static void test_pg_bytes(void);
static void test_pg_batches(void);
static void test_pg_similar_scan(void);

/* The cases both backends must pass alike. */
static void run_shared(void)
{
    test_open_and_rows();
    test_delete_and_move();
    test_search_ranking();
    test_query_safety();
    test_fusion_and_similar();
    test_filters();
}

int main(int argc, char **argv)
{
    snprintf(workdir, sizeof workdir, "%s", argc > 1 ? argv[1] : "/tmp/capdb-test-XXXXXX");
    if (argc <= 1 && !mkdtemp(workdir)) return perror("mkdtemp"), 1;
    run_shared();
    test_migrations();
    test_errors();
    test_words();
    test_sort_prefix();
    test_highlight();
    const char *uri = getenv("CAPSEARCH_TEST_PG");
    if (uri && *uri) {
        pg_uri = uri;
        /* pg.h calls libpq through db/pg/libpq.h's table: filled here before the cases'
         * own connections use it (capdb_pg_open fills it for capdb's). */
        char why[256];
        if (capdb__libpq_load(why, sizeof why) < 0) {
            fprintf(stderr, "%s\n", why);
            return 1;
        }
        run_shared();
        test_pg_migrations();
        test_pg_foreign_schema();
        test_pg_errors();
        test_pg_bytes();
        test_pg_batches();
        test_pg_similar_scan();
    }
    if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
    else printf("all db checks passed (%s)\n", pg_uri ? "sqlite and postgresql" : "sqlite");
    return failures ? 1 : 0;
}

/* ------------------------------------------------------------------ helpers */

static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* Runs sql on the test database over a connection of its own (not capdb's). */
static void pg_sql(const char *sql)
{
    PGconn *c = PQconnectdb(pg_uri);
    PQsetNoticeProcessor(c, quiet, NULL);
    PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql) : NULL;
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
        exit(1);
    }
    PQclear(r);
    PQfinish(c);
}

/* The first value of a one-row query, as an integer. */
static long long pg_value(const char *sql)
{
    PGconn *c = PQconnectdb(pg_uri);
    PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql) : NULL;
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1) {
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
        exit(1);
    }
    long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return v;
}

/* The PostgreSQL database as if new: no schema "capsearch". */
static void pg_reset(void) { pg_sql("DROP SCHEMA IF EXISTS capsearch CASCADE"); }

/* A new, empty index: an SQLite file in workdir, or the PostgreSQL database with a
 * fresh schema. */
static capdb *fresh_db(const char *name)
{
    if (pg_uri) {
        pg_reset();
        capdb *db = NULL;
        if (capdb_open(pg_uri, CAPDB_OPEN_WRITE, &db, &err) != 0) {
            fprintf(stderr, "open %s (%s): %s\n", pg_uri, name, err.msg);
            exit(1);
        }
        return db;
    }
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", workdir, name);
    unlink(path);
    capdb *db = NULL;
    if (capdb_open(path, CAPDB_OPEN_WRITE, &db, &err) != 0) {
        fprintf(stderr, "open %s: %s\n", path, err.msg);
        exit(1);
    }
    return db;
}

static void put(capdb *db, const char *path, const char *caption, const char *tags)
{
    capdb_image img = {.path = path,
                       .size = 100,
                       .mtime_ns = 1700000000LL * 1000000000LL,
                       .caption = caption,
                       .tags = tags,
                       .model_version = "test-1"};
    if (capdb_upsert(db, &img, &err) != 0) {
        fprintf(stderr, "upsert %s: %s\n", path, err.msg);
        failures++;
    }
}

static int search(capdb *db, const char *text, capdb_results *res)
{
    capdb_query q = {.text = text, .with_snippet = 1};
    return capdb_search(db, &q, res, &err);
}

static int rank_of(const capdb_results *res, const char *path)
{
    for (int i = 0; i < res->n; i++)
        if (strcmp(res->hits[i].path, path) == 0) return i;
    return -1;
}

static int count_paths(void *ctx, const char *path)
{
    (void)path;
    (*(int *)ctx)++;
    return 0;
}

static int count_under(capdb *db, const char *prefix)
{
    int n = 0;
    CHECK(capdb_foreach_path(db, prefix, count_paths, &n, &err) == 0);
    return n;
}

/* ------------------------------------------------------------------ tests */

static void test_open_and_rows(void)
{
    capdb *db = fresh_db("rows.db");
    CHECK(capdb_schema_version(db) == CAPDB_SCHEMA_VERSION_LATEST);

    float pooled[16];
    for (int i = 0; i < 16; i++) pooled[i] = (float)i - 4.0f;
    capdb_image img = {.path = "/p/dog.jpg",
                       .device = 5,
                       .inode = 77,
                       .size = 1234,
                       .mtime_ns = 42,
                       .fingerprint = 0xfedcba9876543210ull,
                       .width = 640,
                       .height = 480,
                       .caption = "a dog on the beach",
                       .tags = "dog beach",
                       .model_version = "m-1",
                       .pooled = pooled,
                       .n_pooled = 16};
    CHECK(capdb_upsert(db, &img, &err) == 0);
    capdb_file_state st;
    CHECK(capdb_lookup_path(db, "/p/dog.jpg", &st, &err) == 0);
    CHECK(st.id > 0 && st.device == 5 && st.inode == 77 && st.size == 1234 && st.mtime_ns == 42);
    CHECK(st.fingerprint == 0xfedcba9876543210ull && st.status == CAPDB_STATUS_OK);
    CHECK(strcmp(st.model_version, "m-1") == 0);
    int64_t id = st.id;

    /* the upsert replaces, same row id, and FTS follows the new caption */
    img.caption = "a cat on a sofa";
    img.tags = "cat";
    CHECK(capdb_upsert(db, &img, &err) == 0);
    CHECK(capdb_lookup_path(db, "/p/dog.jpg", &st, &err) == 0 && st.id == id);
    capdb_results res;
    CHECK(search(db, "beach", &res) == 0 && res.n == 0);
    capdb_results_free(&res);
    CHECK(search(db, "sofa", &res) == 0 && res.n == 1);
    CHECK(res.n == 1 && strcmp(res.hits[0].snippet, "a cat on a \x01sofa\x02") == 0);
    CHECK(res.n == 1 && res.hits[0].width == 640 && res.hits[0].height == 480);
    capdb_results_free(&res);

    float back[16];
    CHECK(capdb_get_pooled(db, "/p/dog.jpg", back, 16, &err) == 1);
    for (int i = 0; i < 16; i++) CHECK(fabsf(back[i] - pooled[i]) <= 11.0f / 127 / 2 + 1e-6f);
    CHECK(capdb_get_pooled(db, "/p/dog.jpg", back, 15, &err) == -EINVAL);
    CHECK(capdb_get_pooled(db, "/p/none.jpg", back, 16, &err) == 0);

    CHECK(capdb_lookup_path(db, "/p/none.jpg", &st, &err) == 0 && st.id == 0);
    char found[256];
    CHECK(capdb_find_by_fingerprint(db, 0xfedcba9876543210ull, 1234, found, sizeof found, &err) ==
          1);
    CHECK(strcmp(found, "/p/dog.jpg") == 0);
    CHECK(capdb_find_by_fingerprint(db, 0xfedcba9876543210ull, 99, found, sizeof found, &err) == 0);

    /* a failure is recorded, not searchable, listed */
    capdb_image bad = {
        .path = "/p/broken dog.jpg", .status = CAPDB_STATUS_FAILED, .error = "truncated JPEG"};
    CHECK(capdb_upsert(db, &bad, &err) == 0);
    CHECK(search(db, "broken", &res) == 0 && res.n == 0);
    capdb_results_free(&res);
    capdb_counts c;
    CHECK(capdb_counts_get(db, &c, &err) == 0);
    CHECK(c.total == 2 && c.ok == 1 && c.failed == 1 && c.db_bytes > 0);

    /* a failed file that is fixed becomes searchable */
    bad.status = CAPDB_STATUS_OK;
    bad.caption = "a broken fence";
    CHECK(capdb_upsert(db, &bad, &err) == 0);
    CHECK(search(db, "fence", &res) == 0 && res.n == 1);
    capdb_results_free(&res);

    /* meta */
    char v[64];
    CHECK(capdb_meta_get(db, "model_version", v, sizeof v, &err) == 1 && strcmp(v, "m-1") == 0);
    CHECK(capdb_meta_set(db, "daemon.state", "watching", &err) == 0);
    CHECK(capdb_meta_set(db, "daemon.state", "scanning", &err) == 0);
    CHECK(capdb_meta_get(db, "daemon.state", v, sizeof v, &err) == 1 && strcmp(v, "scanning") == 0);
    CHECK(capdb_meta_get(db, "nope", v, sizeof v, &err) == 0);

    /* a rolled back batch leaves nothing */
    CHECK(capdb_begin(db, &err) == 0);
    put(db, "/p/ghost.jpg", "a ghost", NULL);
    CHECK(capdb_rollback(db) == 0);
    CHECK(capdb_lookup_path(db, "/p/ghost.jpg", &st, &err) == 0 && st.id == 0);
    CHECK(capdb_begin(db, &err) == 0);
    put(db, "/p/ghost.jpg", "a ghost", NULL);
    CHECK(capdb_commit(db, &err) == 0);
    CHECK(capdb_lookup_path(db, "/p/ghost.jpg", &st, &err) == 0 && st.id > 0);
    capdb_close(db);
    if (pg_uri) return;

    /* readers that may not create files in the folder need these to exist */
    char shm[1200];
    snprintf(shm, sizeof shm, "%s/rows.db-shm", workdir);
    CHECK(access(shm, F_OK) == 0);
    snprintf(shm, sizeof shm, "%s/rows.db-wal", workdir);
    CHECK(access(shm, F_OK) == 0);
}

static int fail_cb(void *ctx, const char *path, const char *error, int64_t when)
{
    (void)when;
    int *n = ctx;
    (*n)++;
    CHECK(strcmp(path, "/x/bad.jpg") == 0 && strcmp(error, "not an image") == 0);
    return 0;
}

/* deletes the row it is given: foreach must survive changes made from the callback */
static int delete_cb(void *ctx, const char *path)
{
    capdb *db = ctx;
    int64_t n = 0;
    CHECK(capdb_delete_path(db, path, &n, &err) == 0 && n == 1);
    return 0;
}

static void test_delete_and_move(void)
{
    capdb *db = fresh_db("paths.db");
    /* LIKE and GLOB metacharacters, and siblings that share a prefix */
    const char *paths[] = {"/p/a%_b/1.jpg", "/p/a%_b/sub/2.jpg", "/p/a%_bc/3.jpg", "/p/a%_b.jpg",
                           "/p/aX_b/4.jpg", "/p/a*[b]/5.jpg",    "/p/a/6.jpg",     "/p/ab/7.jpg"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        put(db, paths[i], "a red kite", "kite");
    CHECK(count_under(db, "") == 8);
    CHECK(count_under(db, "/p/a%_b") == 2);
    CHECK(count_under(db, "/p/a%_b/") == 2);
    CHECK(count_under(db, "/p/a") == 1);
    CHECK(count_under(db, "/p/a*[b]") == 1);

    int64_t n = -1;
    CHECK(capdb_delete_path(db, "/p/a%_b", &n, &err) == 0 && n == 2);
    CHECK(count_under(db, "") == 6);
    CHECK(capdb_delete_path(db, "/p/a%_b.jpg", &n, &err) == 0 && n == 1);
    CHECK(capdb_delete_path(db, "/p/a*[b]", &n, &err) == 0 && n == 1);
    CHECK(capdb_delete_path(db, "/p/nothing", &n, &err) == 0 && n == 0);
    CHECK(count_under(db, "") == 4);

    /* moves keep captions and vectors and update the path words */
    float pooled[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float concepts[3] = {0.9f, 0.0f, 0.3f};
    capdb_image img = {.path = "/m/old/dog.jpg",
                       .caption = "a dog",
                       .pooled = pooled,
                       .n_pooled = 8,
                       .concepts = concepts,
                       .n_concepts = 3};
    CHECK(capdb_upsert(db, &img, &err) == 0);
    put(db, "/m/old/deep/x.jpg", "a horse", NULL);
    put(db, "/m/target/old.jpg", "overwritten", NULL);
    CHECK(capdb_move_path(db, "/m/old", "/m/holiday snaps", &n, &err) == 0 && n == 2);
    capdb_file_state st;
    CHECK(capdb_lookup_path(db, "/m/old/dog.jpg", &st, &err) == 0 && st.id == 0);
    CHECK(capdb_lookup_path(db, "/m/holiday snaps/dog.jpg", &st, &err) == 0 && st.id > 0);
    CHECK(capdb_lookup_path(db, "/m/holiday snaps/deep/x.jpg", &st, &err) == 0 && st.id > 0);
    float back[8];
    CHECK(capdb_get_pooled(db, "/m/holiday snaps/dog.jpg", back, 8, &err) == 1);
    capdb_results res;
    CHECK(search(db, "holiday", &res) == 0 && res.n == 2);
    capdb_results_free(&res);
    CHECK(search(db, "dog", &res) == 0 && res.n == 1 &&
          strcmp(res.hits[0].path, "/m/holiday snaps/dog.jpg") == 0);
    capdb_results_free(&res);
    /* file move over an existing file replaces it */
    CHECK(capdb_move_path(db, "/m/holiday snaps/dog.jpg", "/m/target/old.jpg", &n, &err) == 0 &&
          n == 1);
    CHECK(search(db, "overwritten", &res) == 0 && res.n == 0);
    capdb_results_free(&res);
    CHECK(search(db, "dog", &res) == 0 && res.n == 1 &&
          strcmp(res.hits[0].path, "/m/target/old.jpg") == 0);
    capdb_results_free(&res);
    CHECK(capdb_move_path(db, "/m/target", "/m/target/inner", &n, &err) == -EINVAL);

    /* foreach with deletes from the callback; vectors and postings go with the rows */
    for (int i = 0; i < 1200; i++) {
        char p[64];
        snprintf(p, sizeof p, "/bulk/%04d.jpg", i);
        put(db, p, "bulk", NULL);
    }
    CHECK(capdb_foreach_path(db, "/bulk", delete_cb, db, &err) == 0);
    CHECK(count_under(db, "/bulk") == 0);
    CHECK(capdb_delete_path(db, "/", &n, &err) == 0 && n > 0);
    CHECK(count_under(db, "") == 0);
    capdb_counts c;
    CHECK(capdb_counts_get(db, &c, &err) == 0 && c.total == 0);

    capdb_image bad = {
        .path = "/x/bad.jpg", .status = CAPDB_STATUS_FAILED, .error = "not an image"};
    CHECK(capdb_upsert(db, &bad, &err) == 0);
    int nf = 0;
    CHECK(capdb_foreach_failure(db, 10, fail_cb, &nf, &err) == 0 && nf == 1);
    capdb_close(db);
}

static void test_search_ranking(void)
{
    capdb *db = fresh_db("rank.db");
    put(db, "/r/1.jpg", "a dog running on the beach", "dog beach");
    put(db, "/r/2.jpg", "a dog sleeping on a sofa", "dog sofa");
    put(db, "/r/3.jpg", "waves on a sandy beach", "beach");
    put(db, "/r/4.jpg", "a man riding a horse", "person horse");
    put(db, "/r/dog photos/5.jpg", "a red car", "car");
    put(db, "/r/6.jpg", "a parked truck", "dog");
    put(db, "/r/7.jpg", "two dogs playing", "dog");

    capdb_results res;
    CHECK(search(db, "dog beach", &res) == 0);
    CHECK(res.n >= 1 && strcmp(res.hits[0].path, "/r/1.jpg") == 0); /* both words first */
    for (int i = 1; i < res.n; i++) CHECK(res.hits[i - 1].score >= res.hits[i].score);
    capdb_results_free(&res);

    /* caption beats tags beats path words; plural stems */
    CHECK(search(db, "dog", &res) == 0);
    int in_caption = rank_of(&res, "/r/2.jpg"), in_tags = rank_of(&res, "/r/6.jpg"),
        in_path = rank_of(&res, "/r/dog photos/5.jpg");
    CHECK(in_caption >= 0 && in_tags > in_caption && in_path > in_tags);
    CHECK(rank_of(&res, "/r/7.jpg") >= 0);
    capdb_results_free(&res);

    /* stopwords do not match everything; alone, they are searched */
    CHECK(search(db, "the horse on a", &res) == 0 && res.n == 1);
    capdb_results_free(&res);
    /* (PostgreSQL's 'english' configuration leaves stopwords out of the tsvector
     * itself: there they find nothing) */
    CHECK(search(db, "on", &res) == 0 && res.n == (pg_uri ? 0 : 3));
    capdb_results_free(&res);
    CHECK(search(db, "DOGS", &res) == 0 && res.n == 5);
    capdb_results_free(&res);

    capdb_query q = {.text = "dog", .limit = 2};
    CHECK(capdb_search(db, &q, &res, &err) == 0 && res.n == 2);
    capdb_results_free(&res);
    capdb_close(db);
}

static void test_query_safety(void)
{
    capdb *db = fresh_db("safety.db");
    put(db, "/s/1.jpg", "a dog near the beach and not a cat", "dog");
    put(db, "/s/2.jpg", "caption of a kite", "kite");
    static const char *const hostile[] = {
        "\"dog",
        "dog\"",
        "\"\"\"",
        "dog*",
        "*",
        "^dog",
        "dog NEAR beach",
        "NEAR(dog beach)",
        "dog AND",
        "OR dog",
        "NOT",
        "-dog",
        "dog -cat",
        "(dog",
        "dog)",
        "((",
        "caption:dog",
        "caption : kite",
        "{caption tags}: dog",
        "dog'); DROP TABLE images; --",
        "a'b",
        "\\",
        "dog\tbeach\n",
        "chien\xC3\xA9",
        "\xFF\xFE dog",
        "\xC3",
        "\xE2\x80\x9C"
        "dog"
        "\xE2\x80\x9D",
        "🐕 dog",
        "ＤＯＧ",
    };
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        capdb_results res;
        int rc = search(db, hostile[i], &res);
        if (rc != 0 && rc != -EINVAL) {
            fprintf(stderr, "query %zu -> %d %s\n", i, rc, err.msg);
            failures++;
        }
        capdb_results_free(&res);
    }
    capdb_results res;
    CHECK(search(db, "caption:kite", &res) == 0 && res.n == 1); /* "caption" is a word */
    capdb_results_free(&res);
    CHECK(search(db, "NEAR", &res) == 0 && res.n == 1);
    capdb_results_free(&res);
    CHECK(search(db, "\"dog", &res) == 0 && res.n == 1);
    capdb_results_free(&res);
    CHECK(search(db, "ＤＯＧ", &res) == 0); /* fullwidth letters: a word, maybe no match */
    capdb_results_free(&res);
    CHECK(search(db, "", &res) == -EINVAL && strstr(err.msg, "no words"));
    CHECK(search(db, "  ** () \"\" ", &res) == -EINVAL);
    CHECK(search(db, "\xFF\xFE", &res) == -EINVAL);
    CHECK(search(db, NULL, &res) == -EINVAL);

    char big[10241];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK(search(db, big, &res) == 0 && res.n == 0);
    capdb_results_free(&res);
    for (size_t i = 0; i + 2 < sizeof big; i += 2) big[i] = (char)('a' + i % 26), big[i + 1] = ' ';
    CHECK(search(db, big, &res) == 0); /* 26 distinct words, duplicates dropped */
    capdb_results_free(&res);
    for (size_t i = 0; i + 3 < sizeof big; i += 3)
        big[i] = (char)('a' + i % 26), big[i + 1] = (char)('a' + i / 26 % 26), big[i + 2] = ' ';
    CHECK(search(db, big, &res) == -EINVAL && strstr(err.msg, "too long"));
    capdb_close(db);
}

static void test_fusion_and_similar(void)
{
    capdb *db = fresh_db("fusion.db");
    enum { NC = 10 };
    /* concept 3 = "dog" in this made-up vocabulary */
    float both[NC] = {0}, concept_only[NC] = {0}, text_only[NC] = {0}, neither[NC] = {0};
    both[3] = 0.9f;
    concept_only[3] = 0.95f;
    neither[5] = 0.8f;
    float pa[4] = {1, 0, 0, 0}, pb[4] = {0.9f, 0.1f, 0, 0}, pc[4] = {0, 1, 0, 0},
          pd[4] = {-1, 0, 0, 0};
    capdb_image imgs[] = {
        {.path = "/f/both.jpg",
         .caption = "a dog on grass",
         .concepts = both,
         .n_concepts = NC,
         .pooled = pa,
         .n_pooled = 4},
        {.path = "/f/concept.jpg",
         .caption = "an animal on grass",
         .concepts = concept_only,
         .n_concepts = NC,
         .pooled = pb,
         .n_pooled = 4},
        {.path = "/f/text.jpg",
         .caption = "a dog statue",
         .concepts = text_only,
         .n_concepts = NC,
         .pooled = pc,
         .n_pooled = 4},
        {.path = "/f/neither.jpg",
         .caption = "a bowl of fruit",
         .concepts = neither,
         .n_concepts = NC,
         .pooled = pd,
         .n_pooled = 4},
    };
    for (size_t i = 0; i < 4; i++) CHECK(capdb_upsert(db, &imgs[i], &err) == 0);

    struct capdb_concept_term terms[] = {{3, 1.0f}};
    capdb_query q = {.text = "dog", .concepts = terms, .n_concepts = 1};
    capdb_results res;
    CHECK(capdb_search(db, &q, &res, &err) == 0);
    CHECK(res.n == 3);
    CHECK(rank_of(&res, "/f/both.jpg") == 0);
    CHECK(rank_of(&res, "/f/concept.jpg") > 0 && rank_of(&res, "/f/text.jpg") > 0);
    CHECK(rank_of(&res, "/f/neither.jpg") == -1);
    CHECK(res.n == 3 && res.hits[rank_of(&res, "/f/concept.jpg")].snippet == NULL);
    capdb_results_free(&res);

    /* a query word no caption has: the concept still finds the photo */
    q.text = "puppy";
    CHECK(capdb_search(db, &q, &res, &err) == 0 && res.n == 2);
    CHECK(res.n == 2 && strcmp(res.hits[0].path, "/f/concept.jpg") == 0);
    capdb_results_free(&res);

    float qv[4] = {1, 0, 0, 0};
    capdb_query sq = {.pooled = qv, .n_pooled = 4, .limit = 3};
    CHECK(capdb_search(db, &sq, &res, &err) == 0 && res.n == 3);
    CHECK(res.n == 3 && strcmp(res.hits[0].path, "/f/both.jpg") == 0 &&
          strcmp(res.hits[1].path, "/f/concept.jpg") == 0 &&
          strcmp(res.hits[2].path, "/f/text.jpg") == 0);
    CHECK(res.n == 3 && fabs(res.hits[0].score - 1.0) < 1e-3 && res.hits[1].score < 1.0);
    capdb_results_free(&res);
    sq.under_dir = "/elsewhere";
    CHECK(capdb_search(db, &sq, &res, &err) == 0 && res.n == 0);
    capdb_results_free(&res);
    capdb_close(db);
}

static void test_filters(void)
{
    capdb *db = fresh_db("filters.db");
    capdb_image a = {.path = "/lib/2020/beach.jpg",
                     .caption = "a beach",
                     .taken_time = 1590000000,
                     .mtime_ns = 1700000000LL * 1000000000LL};
    capdb_image b = {.path = "/lib/2023/beach.jpg",
                     .caption = "a beach",
                     .mtime_ns = 1690000000LL * 1000000000LL};
    capdb_image c = {
        .path = "/lib/2023x/beach.jpg", .caption = "a beach", .taken_time = 1695000000};
    CHECK(capdb_upsert(db, &a, &err) == 0);
    CHECK(capdb_upsert(db, &b, &err) == 0);
    CHECK(capdb_upsert(db, &c, &err) == 0);
    capdb_results res;
    capdb_query q = {.text = "beach", .under_dir = "/lib/2023"};
    CHECK(capdb_search(db, &q, &res, &err) == 0 && res.n == 1 &&
          strcmp(res.hits[0].path, "/lib/2023/beach.jpg") == 0);
    capdb_results_free(&res);
    q.under_dir = "/lib/";
    CHECK(capdb_search(db, &q, &res, &err) == 0 && res.n == 3);
    capdb_results_free(&res);
    q.under_dir = NULL;
    q.since = 1600000000; /* taken time wins over mtime for a */
    q.has_since = 1;
    CHECK(capdb_search(db, &q, &res, &err) == 0 && res.n == 2 &&
          rank_of(&res, "/lib/2020/beach.jpg") < 0);
    capdb_results_free(&res);
    q.has_since = 0;
    q.until = 1692000000;
    q.has_until = 1;
    CHECK(capdb_search(db, &q, &res, &err) == 0 && res.n == 2 &&
          rank_of(&res, "/lib/2023x/beach.jpg") < 0);
    capdb_results_free(&res);
    capdb_close(db);
}

static void test_migrations(void)
{
    /* every older version, made by the real migration steps, opens and upgrades */
    for (int v = 0; v < CAPDB_SCHEMA_VERSION_LATEST; v++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/v%d.db", workdir, v);
        unlink(path);
        sqlite3 *raw;
        CHECK(sqlite3_open(path, &raw) == SQLITE_OK);
        CHECK(capdb__migrate(raw, 0, v, &err) == 0);
        if (v > 0) sqlite3_exec(raw, "CREATE TABLE IF NOT EXISTS unrelated(x)", NULL, NULL, NULL);
        else sqlite3_exec(raw, "PRAGMA user_version = 0", NULL, NULL, NULL); /* empty file */
        sqlite3_close(raw);

        capdb *db = NULL;
        CHECK(capdb_open(path, CAPDB_OPEN_READONLY, &db, &err) == -EIO);
        CHECK(strstr(err.msg, "schema version") != NULL);
        CHECK(capdb_open(path, CAPDB_OPEN_WRITE, &db, &err) == 0);
        if (!db) continue;
        CHECK(capdb_schema_version(db) == CAPDB_SCHEMA_VERSION_LATEST);
        put(db, "/v/dog.jpg", "a dog", NULL);
        capdb_close(db);
        CHECK(capdb_open(path, CAPDB_OPEN_READONLY, &db, &err) == 0);
        capdb_results res;
        CHECK(db && search(db, "dog", &res) == 0 && res.n == 1);
        capdb_results_free(&res);
        capdb_close(db);
    }
    /* another application's database (user_version 0 with tables, or a foreign
     * application_id) is refused and left as it was */
    const char *foreign_sql[] = {"CREATE TABLE contacts(name)",
                                 "PRAGMA application_id = 42; PRAGMA user_version = 1;"
                                 " CREATE TABLE images(x); CREATE TABLE meta(k, v)"};
    for (int f = 0; f < 2; f++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/foreign%d.db", workdir, f);
        unlink(path);
        sqlite3 *raw;
        CHECK(sqlite3_open(path, &raw) == SQLITE_OK);
        CHECK(sqlite3_exec(raw, foreign_sql[f], NULL, NULL, NULL) == SQLITE_OK);
        sqlite3_close(raw);
        capdb *db = NULL;
        CHECK(capdb_open(path, CAPDB_OPEN_WRITE, &db, &err) == -EEXIST);
        CHECK(strstr(err.msg, "another application") != NULL);
        CHECK(capdb_open(path, CAPDB_OPEN_READONLY, &db, &err) == -EEXIST);
        CHECK(db == NULL);
    }
    /* a newer database than we know is refused, not damaged */
    char path[1200];
    snprintf(path, sizeof path, "%s/future.db", workdir);
    unlink(path);
    sqlite3 *raw;
    CHECK(sqlite3_open(path, &raw) == SQLITE_OK);
    sqlite3_exec(raw, "PRAGMA user_version = 999", NULL, NULL, NULL);
    sqlite3_close(raw);
    capdb *db = NULL;
    CHECK(capdb_open(path, CAPDB_OPEN_WRITE, &db, &err) == -EIO && strstr(err.msg, "newer"));
    CHECK(capdb__migrate(NULL, 0, CAPDB_SCHEMA_VERSION_LATEST + 1, &err) == -EINVAL);
}

static void test_errors(void)
{
    char path[1200];
    capdb *db = NULL;
    snprintf(path, sizeof path, "%s/missing.db", workdir);
    CHECK(capdb_open(path, CAPDB_OPEN_READONLY, &db, &err) == -ENOENT && db == NULL);
    CHECK(strstr(err.msg, "missing.db") != NULL);

    snprintf(path, sizeof path, "%s/garbage.db", workdir);
    FILE *f = fopen(path, "w");
    for (int i = 0; f && i < 100; i++) fputs("this is not a database at all\n", f);
    if (f) fclose(f);
    CHECK(capdb_open(path, CAPDB_OPEN_READONLY, &db, &err) < 0 && db == NULL);
    CHECK(capdb_open(path, CAPDB_OPEN_WRITE, &db, &err) < 0 && db == NULL);

    /* read-only connections refuse writes with -EROFS */
    snprintf(path, sizeof path, "%s/rows.db", workdir);
    CHECK(capdb_open(path, CAPDB_OPEN_READONLY, &db, &err) == 0);
    if (db) {
        capdb_image img = {.path = "/p/new.jpg", .caption = "x"};
        CHECK(capdb_upsert(db, &img, &err) == -EROFS);
        CHECK(capdb_meta_set(db, "k", "v", &err) == -EROFS);
        capdb_close(db);
    }

    /* a second writer waits, then reports busy */
    capdb *w1 = fresh_db("busy.db"), *w2 = NULL;
    snprintf(path, sizeof path, "%s/busy.db", workdir);
    CHECK(capdb_open(path, CAPDB_OPEN_WRITE, &w2, &err) == 0);
    if (w2) {
        CHECK(capdb_begin(w1, &err) == 0);
        sqlite3_busy_timeout(w2->sql, 50);
        CHECK(capdb_begin(w2, &err) == -EBUSY);
        CHECK(capdb_commit(w1, &err) == 0);
        capdb_close(w2);
    }
    capdb_close(w1);

    char buf[512];
    setenv("CAPSEARCH_DB", "/some/where.db", 1);
    CHECK(strcmp(capdb_default_path(buf, sizeof buf), "/some/where.db") == 0);
    unsetenv("CAPSEARCH_DB");
    setenv("XDG_DATA_HOME", workdir, 1);
    char want[1200];
    snprintf(want, sizeof want, "%s/capsearch/index.db", workdir);
    capdb_default_path(buf, sizeof buf);
    CHECK(strcmp(buf, want) == 0 || strcmp(buf, "/var/lib/capsearch/index.db") == 0);
}

static void test_words(void)
{
    char *w = capdb__path_words("/home/u/Photos/2023 Beach-Trip/IMG_0042.JPG");
    CHECK(w && strcmp(w, "Photos 2023 Beach Trip IMG 0042") == 0);
    free(w);
    w = capdb__path_words("/x/caf\xC3\xA9/bad\xFFname.tar.gz");
    CHECK(w && strcmp(w, "x caf\xC3\xA9 bad name tar") == 0);
    free(w);
    w = capdb__path_words("noslash");
    CHECK(w && strcmp(w, "noslash") == 0);
    free(w);

    char **words;
    int n = capdb__query_words("The Dog, on the BEACH! dog \xFF\xC3(", &words, &err);
    CHECK(n == 2 && strcmp(words[0], "dog") == 0 && strcmp(words[1], "beach") == 0);
    char *e = capdb__fts_expression(words, n, " OR ");
    CHECK(e && strcmp(e, "\"dog\" OR \"beach\"") == 0);
    free(e);
    e = capdb__fts_expression(words, n, " AND ");
    CHECK(e && strcmp(e, "\"dog\" AND \"beach\"") == 0);
    free(e);
    capdb__free_words(words, n);
    n = capdb__query_words("on the", &words, &err);
    CHECK(n == 2);
    capdb__free_words(words, n);
    n = capdb__query_words("caf\xC3\xA9 na\xC3\xAFve \xE4\xB8\x8A\xE6\xB5\xB7", &words, &err);
    CHECK(n == 3 && strcmp(words[2], "\xE4\xB8\x8A\xE6\xB5\xB7") == 0);
    capdb__free_words(words, n);
    char *tricky[] = {(char *)"say\"hi"};
    e = capdb__fts_expression(tricky, 1, " OR ");
    CHECK(e && strcmp(e, "\"say\"\"hi\"") == 0);
    free(e);
}

/* ------------------------------------------------------------------ PostgreSQL only */

/* A connection to the test database that capdb_open did not set up: no version check,
 * no migration, so a test can build an older schema with the real migration steps and
 * write rows into it with the backend's own functions. Free with pg_bare_close. */
static capdb *pg_bare_open(void)
{
    capdb *db = calloc(1, sizeof *db);
    struct capdb_pg *pg = calloc(1, sizeof *pg);
    if (!db || !pg) exit(1);
    db->backend = &capdb__pg_backend;
    db->pg = pg;
    pg->conn = PQconnectdb(pg_uri);
    PGresult *r = PQexec(pg->conn, "SET search_path = capsearch");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "bare connection: %s", PQerrorMessage(pg->conn));
        exit(1);
    }
    PQclear(r);
    return db;
}

static void pg_bare_close(capdb *db)
{
    PQfinish(db->pg->conn);
    free(db->pg);
    free(db);
}

static void test_pg_migrations(void)
{
    /* every older version, made by the real migration steps, opens and upgrades, and
     * keeps what it held */
    for (int v = 0; v < CAPDB_PG_SCHEMA_LATEST; v++) {
        pg_reset();
        pg_sql("CREATE SCHEMA capsearch; CREATE TABLE capsearch.version(version integer NOT NULL);"
               " INSERT INTO capsearch.version VALUES(0)");
        capdb *bare = pg_bare_open();
        CHECK(capdb__pg_migrate(bare, 0, v, &err) == 0);
        float concepts[4] = {0, 0.8f, 0, 0}, pooled[4] = {1, 2, 3, 4};
        capdb_image old = {.path = "/v/old dog.jpg",
                           .caption = "an old dog",
                           .description = "Rex at ten",
                           .model_version = "m-0",
                           .concepts = concepts,
                           .n_concepts = 4,
                           .pooled = pooled,
                           .n_pooled = 4};
        if (v >= 1) CHECK(capdb_pg_upsert(bare, &old, &err) == 0);
        pg_bare_close(bare);

        capdb *db = NULL;
        CHECK(capdb_open(pg_uri, CAPDB_OPEN_READONLY, &db, &err) == -EIO);
        CHECK(strstr(err.msg, "schema version") != NULL);
        CHECK(capdb_open(pg_uri, CAPDB_OPEN_WRITE, &db, &err) == 0);
        if (!db) continue;
        CHECK(capdb_schema_version(db) == CAPDB_SCHEMA_VERSION_LATEST);
        put(db, "/v/dog.jpg", "a dog", NULL);
        capdb_work_counts wc;
        CHECK(capdb_work_counts_get(db, &wc, &err) == 0);
        capdb_close(db);
        CHECK(capdb_open(pg_uri, CAPDB_OPEN_READONLY, &db, &err) == 0);
        capdb_results res;
        CHECK(db && search(db, "dog", &res) == 0 && res.n == (v >= 1 ? 2 : 1));
        capdb_results_free(&res);
        if (db && v >= 1) {
            CHECK(search(db, "rex", &res) == 0 && res.n == 1 &&
                  strcmp(res.hits[0].path, "/v/old dog.jpg") == 0);
            capdb_results_free(&res);
            float back[4];
            CHECK(capdb_get_pooled(db, "/v/old dog.jpg", back, 4, &err) == 1);
            char mv[64];
            CHECK(capdb_meta_get(db, "model_version", mv, sizeof mv, &err) == 1);
        }
        capdb_close(db);
    }
    /* a newer schema than we know is refused, not touched */
    pg_sql("UPDATE capsearch.version SET version = 999");
    capdb *db = NULL;
    CHECK(capdb_open(pg_uri, CAPDB_OPEN_WRITE, &db, &err) == -EIO && strstr(err.msg, "newer"));
    CHECK(capdb_open(pg_uri, CAPDB_OPEN_READONLY, &db, &err) == -EIO && strstr(err.msg, "newer"));
    CHECK(pg_value("SELECT version FROM capsearch.version") == 999);
    CHECK(capdb__pg_migrate(NULL, 0, CAPDB_PG_SCHEMA_LATEST + 1, &err) == -EINVAL);
}

/* another application's schema "capsearch" (no version table) is refused and left as
 * it was */
static void test_pg_foreign_schema(void)
{
    pg_reset();
    pg_sql("CREATE SCHEMA capsearch; CREATE TABLE capsearch.contacts(name text);"
           " INSERT INTO capsearch.contacts VALUES('ann')");
    capdb *db = NULL;
    CHECK(capdb_open(pg_uri, CAPDB_OPEN_WRITE, &db, &err) == -EEXIST && db == NULL);
    CHECK(strstr(err.msg, "not a capsearch index") != NULL);
    CHECK(capdb_open(pg_uri, CAPDB_OPEN_READONLY, &db, &err) == -EEXIST && db == NULL);
    CHECK(pg_value("SELECT count(*) FROM capsearch.contacts") == 1);
    CHECK(pg_value("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                   " WHERE n.nspname = 'capsearch'") == 1);
    pg_reset();
}

static void test_pg_errors(void)
{
    /* no index yet: a reader is told how to make one, and nothing is created */
    pg_reset();
    capdb *db = NULL;
    CHECK(capdb_open(pg_uri, CAPDB_OPEN_READONLY, &db, &err) == -ENOENT && db == NULL);
    CHECK(strstr(err.msg, "no capsearch index") != NULL);
    CHECK(pg_value("SELECT count(*) FROM pg_namespace WHERE nspname = 'capsearch'") == 0);

    /* no server */
    CHECK(capdb_open("postgresql:///capsearch?host=/nonexistent", CAPDB_OPEN_WRITE, &db, &err) ==
              -ECONNREFUSED &&
          db == NULL);
    CHECK(strstr(err.msg, "cannot connect") != NULL);

    /* read-only connections refuse writes with -EROFS, and still search */
    db = fresh_db("readonly");
    put(db, "/ro/kite.jpg", "a kite", NULL);
    capdb_close(db);
    CHECK(capdb_open(pg_uri, CAPDB_OPEN_READONLY, &db, &err) == 0);
    if (db) {
        capdb_image img = {.path = "/p/new.jpg", .caption = "x"};
        CHECK(capdb_upsert(db, &img, &err) == -EROFS);
        CHECK(capdb_meta_set(db, "k", "v", &err) == -EROFS);
        int64_t n = 0;
        CHECK(capdb_delete_path(db, "/ro", &n, &err) == -EROFS && n == 0);
        capdb_results res;
        CHECK(search(db, "kite", &res) == 0 && res.n == 1);
        capdb_results_free(&res);
        capdb_close(db);
    }
}

/* Paths are any bytes but NUL; text that is not UTF-8 is stored with U+FFFD. */
static void test_pg_bytes(void)
{
    capdb *db = fresh_db("bytes");
    const char *latin1 = "/n/caf\xE9/\xFF\xFE sunset.jpg"; /* Latin-1 folder, junk bytes */
    const char *quotes = "/n/it's \\ \"odd\"/x.jpg";
    capdb_image img = {.path = latin1,
                       .caption = "a sunset over the sea",
                       .description = "Ferienhaus am See \xE4",
                       .keywords = "urlaub\n\xC3",
                       .tags = "sunset sea",
                       .error = "ignored for an OK row",
                       .format = "jpeg\xFF",
                       .model_version = "m\xFF"};
    CHECK(capdb_upsert(db, &img, &err) == 0);
    put(db, quotes, "an odd name", NULL);
    capdb_file_state st;
    CHECK(capdb_lookup_path(db, latin1, &st, &err) == 0 && st.id > 0);
    capdb_row row;
    CHECK(capdb_get_row(db, st.id, &row, &err) == 1);
    CHECK(row.path && strcmp(row.path, latin1) == 0);
    CHECK(row.description && strcmp(row.description, "Ferienhaus am See \xEF\xBF\xBD") == 0);
    CHECK(row.keywords && strcmp(row.keywords, "urlaub\n\xEF\xBF\xBD") == 0);
    CHECK(row.format && strcmp(row.format, "jpeg\xEF\xBF\xBD") == 0);
    CHECK(row.error == NULL && row.status == CAPDB_STATUS_OK);
    capdb_row_free(&row);
    CHECK(capdb_get_row(db, st.id + 1000, &row, &err) == 0);

    capdb_results res;
    capdb_query q = {.text = "ferienhaus", .under_dir = "/n/caf\xE9", .with_snippet = 1};
    CHECK(capdb_search(db, &q, &res, &err) == 0 && res.n == 1);
    CHECK(res.n == 1 && strcmp(res.hits[0].path, latin1) == 0 &&
          strcmp(res.hits[0].snippet, "a sunset over the sea") == 0 &&
          strcmp(res.hits[0].description, "Ferienhaus am See \xEF\xBF\xBD") == 0);
    capdb_results_free(&res);
    q.text = "odd";
    q.under_dir = "/n/it's \\ \"odd\"";
    CHECK(capdb_search(db, &q, &res, &err) == 0 && res.n == 1 &&
          strcmp(res.hits[0].path, quotes) == 0);
    capdb_results_free(&res);
    CHECK(count_under(db, "/n/caf\xE9") == 1);
    CHECK(count_under(db, "/n/caf") == 0);

    /* update_text sanitises too; update_stat keeps unsigned 64-bit values */
    CHECK(capdb_update_text(db, st.id, "Bucht \xFC", "", 7, &err) == 0);
    CHECK(capdb_update_stat(db, st.id, 0xffffffffffffff01ull, 0x8000000000000000ull, 9, 10, &err) ==
          0);
    CHECK(capdb_lookup_path(db, latin1, &st, &err) == 0 && st.device == 0xffffffffffffff01ull &&
          st.inode == 0x8000000000000000ull && st.size == 9 && st.mtime_ns == 10 &&
          st.sidecar_mtime_ns == 7);
    CHECK(capdb_get_row(db, st.id, &row, &err) == 1 && row.keywords == NULL &&
          strcmp(row.description, "Bucht \xEF\xBF\xBD") == 0);
    capdb_row_free(&row);

    /* moves and deletes by bytes */
    int64_t n = 0;
    CHECK(capdb_move_path(db, "/n/caf\xE9", "/n/\xC0\xC1", &n, &err) == 0 && n == 1);
    CHECK(capdb_lookup_path(db, "/n/\xC0\xC1/\xFF\xFE sunset.jpg", &st, &err) == 0 && st.id > 0);
    char found[256];
    CHECK(capdb_find_by_fingerprint(db, 0, 9, found, sizeof found, &err) == 1 &&
          strcmp(found, "/n/\xC0\xC1/\xFF\xFE sunset.jpg") == 0);
    CHECK(capdb_delete_path(db, "/n/it's \\ \"odd\"", &n, &err) == 0 && n == 1);
    CHECK(capdb_delete_path(db, "/n", &n, &err) == 0 && n == 1);

    /* failure reasons and formats, counted */
    capdb_image bad = {.path = "/n/bad.heic",
                       .status = CAPDB_STATUS_FAILED,
                       .error = "cut \xFF short",
                       .reason = "corrupt",
                       .format = "heif"};
    CHECK(capdb_upsert(db, &bad, &err) == 0);
    put(db, "/n/ok.jpg", "fine", NULL);
    capdb_file_state bs;
    CHECK(capdb_lookup_path(db, "/n/bad.heic", &bs, &err) == 0 && bs.status == CAPDB_STATUS_FAILED);
    CHECK(capdb_get_row(db, bs.id, &row, &err) == 1 && row.error &&
          strcmp(row.error, "cut \xEF\xBF\xBD short") == 0);
    capdb_row_free(&row);
    capdb_close(db);
}

static int count_cb(void *ctx, const char *value, int64_t count)
{
    char *out = ctx;
    size_t len = strlen(out);
    snprintf(out + len, 256 - len, "%s=%lld;", value, (long long)count);
    return 0;
}

/* Inside a caller's batch, an operation that fails (here: a lock held by another node)
 * fails alone, and the batch goes on; counts by format and reason. */
static void test_pg_batches(void)
{
    capdb *w1 = fresh_db("batches"), *w2 = NULL;
    /* the model version noted in a batch that is rolled back is noted again */
    capdb_image mv = {.path = "/b/mv.jpg", .caption = "noted", .model_version = "m-rolled"};
    CHECK(capdb_begin(w1, &err) == 0);
    CHECK(capdb_upsert(w1, &mv, &err) == 0);
    CHECK(capdb_rollback(w1) == 0);
    CHECK(capdb_upsert(w1, &mv, &err) == 0);
    char v[64] = "";
    CHECK(capdb_meta_get(w1, "model_version", v, sizeof v, &err) == 1 &&
          strcmp(v, "m-rolled") == 0);

    CHECK(capdb_open(pg_uri, CAPDB_OPEN_WRITE, &w2, &err) == 0);
    if (!w2) return;
    capdb_set_busy_timeout(w2, 50);
    CHECK(capdb_begin(w1, &err) == 0);
    put(w1, "/b/1.jpg", "held by the first", NULL);
    CHECK(capdb_begin(w2, &err) == 0);
    put(w2, "/b/0.jpg", "before", NULL);
    capdb_image img = {.path = "/b/1.jpg", .caption = "the second's"};
    CHECK(capdb_upsert(w2, &img, &err) == -EBUSY);
    put(w2, "/b/2.jpg", "after", NULL);
    int64_t n = 0;
    CHECK(capdb_move_path(w2, "/b/2.jpg", "/b/3.jpg", &n, &err) == 0 && n == 1);
    CHECK(capdb_commit(w2, &err) == 0);
    CHECK(capdb_commit(w1, &err) == 0);
    capdb_file_state st;
    CHECK(capdb_lookup_path(w1, "/b/0.jpg", &st, &err) == 0 && st.id > 0);
    CHECK(capdb_lookup_path(w1, "/b/3.jpg", &st, &err) == 0 && st.id > 0);
    CHECK(capdb_lookup_path(w1, "/b/1.jpg", &st, &err) == 0 && st.id > 0);
    capdb_results res;
    CHECK(search(w1, "first", &res) == 0 && res.n == 1);
    capdb_results_free(&res);
    /* a search inside a batch sees the batch */
    CHECK(capdb_begin(w2, &err) == 0);
    put(w2, "/b/4.jpg", "uncommitted", NULL);
    CHECK(search(w2, "uncommitted", &res) == 0 && res.n == 1);
    capdb_results_free(&res);
    CHECK(search(w1, "uncommitted", &res) == 0 && res.n == 0);
    capdb_results_free(&res);
    CHECK(capdb_rollback(w2) == 0);
    capdb_close(w2);

    capdb_image f1 = {.path = "/c/1", .status = CAPDB_STATUS_FAILED, .reason = "corrupt"};
    capdb_image f2 = {.path = "/c/2", .status = CAPDB_STATUS_FAILED, .reason = "corrupt"};
    capdb_image f3 = {.path = "/c/3", .status = CAPDB_STATUS_FAILED};
    capdb_image ok = {.path = "/c/4", .format = "png"};
    CHECK(capdb_upsert(w1, &f1, &err) == 0 && capdb_upsert(w1, &f2, &err) == 0 &&
          capdb_upsert(w1, &f3, &err) == 0 && capdb_upsert(w1, &ok, &err) == 0);
    char out[256] = "";
    CHECK(capdb_foreach_count(w1, "reason", count_cb, out, &err) == 0);
    CHECK(strcmp(out, "corrupt=2;unknown=1;") == 0);
    out[0] = '\0';
    CHECK(capdb_foreach_count(w1, "format", count_cb, out, &err) == 0);
    CHECK(strcmp(out, "unknown=4;png=1;") == 0);
    CHECK(capdb_foreach_count(w1, "size", count_cb, out, &err) == -EINVAL);
    capdb_close(w1);
}

/* The similar-image scan reads the vectors through a cursor, several FETCHes here. */
static void test_pg_similar_scan(void)
{
    enum { N = 5300, DIM = 16 };
    capdb *db = fresh_db("similar");
    CHECK(capdb_begin(db, &err) == 0);
    for (int i = 0; i < N; i++) {
        float v[DIM];
        for (int d = 0; d < DIM; d++) v[d] = (float)((i * 7 + d * 13) % 29) - 14.0f;
        char path[64];
        snprintf(path, sizeof path, "/sim/%s/%05d.jpg", i % 2 ? "odd" : "even", i);
        capdb_image img = {.path = path, .caption = "x", .pooled = v, .n_pooled = DIM};
        if (capdb_upsert(db, &img, &err) != 0) {
            fprintf(stderr, "upsert %s: %s\n", path, err.msg);
            failures++;
            break;
        }
    }
    CHECK(capdb_commit(db, &err) == 0);
    int target = 5123;
    float qv[DIM];
    for (int d = 0; d < DIM; d++) qv[d] = (float)((target * 7 + d * 13) % 29) - 14.0f;
    capdb_query q = {.pooled = qv, .n_pooled = DIM, .limit = 5};
    capdb_results res;
    CHECK(capdb_search(db, &q, &res, &err) == 0 && res.n == 5);
    /* vectors repeat every 29 rows: the best ones are the target's twins */
    for (int i = 0; i < res.n; i++) CHECK(fabs(res.hits[i].score - 1.0) < 1e-3);
    capdb_results_free(&res);
    q.under_dir = "/sim/odd";
    CHECK(capdb_search(db, &q, &res, &err) == 0 && res.n == 5);
    for (int i = 0; i < res.n; i++)
        CHECK(strncmp(res.hits[i].path, "/sim/odd/", 9) == 0 &&
              fabs(res.hits[i].score - 1.0) < 1e-3);
    capdb_results_free(&res);
    /* inside a batch: the cursor is closed after, the batch goes on */
    CHECK(capdb_begin(db, &err) == 0);
    CHECK(capdb_search(db, &q, &res, &err) == 0 && res.n == 5);
    capdb_results_free(&res);
    CHECK(capdb_search(db, &q, &res, &err) == 0 && res.n == 5);
    capdb_results_free(&res);
    put(db, "/sim/after.jpg", "after", NULL);
    CHECK(capdb_commit(db, &err) == 0);
    capdb_close(db);
}

/* capdb__sort_prefix, extended step by step as emit_hits does, gives exactly qsort's
 * order: random scores with many ties (the id breaks them), sizes around the steps. */
static void test_sort_prefix(void)
{
    unsigned state = 12345;
    for (size_t n = 0; n < 300; n += n < 40 ? 1 : 37) {
        for (int round = 0; round < 5; round++) {
            scored *a = malloc((n + 1) * sizeof *a), *b = malloc((n + 1) * sizeof *b);
            for (size_t i = 0; i < n; i++) {
                state = state * 1103515245u + 12345u;
                /* round 0: all equal; 1: 8 distinct values; 4: a quarter NaN; else: spread */
                double score = round == 0                             ? 1.0
                               : round == 1                           ? (state >> 16) % 8
                               : round == 4 && (state >> 20) % 4 == 0 ? NAN
                                                                      : (state >> 8) / 7.0;
                a[i] = b[i] = (scored){score, (int64_t)(n - i)};
            }
            qsort(b, n, sizeof *b, capdb__by_score_desc);
            size_t sorted = 0, step = 1 + (size_t)round * 3;
            while (sorted < n) {
                size_t got = capdb__sort_prefix(a, n, sorted, sorted + step);
                CHECK(got == (sorted + step < n ? sorted + step : n));
                sorted = got;
                step *= 2;
            }
            CHECK(capdb__sort_prefix(a, n, sorted, n + 5) == n);
            for (size_t i = 0; i < n; i++)
                CHECK(a[i].id == b[i].id && (a[i].score == b[i].score || isnan(b[i].score)));
            free(a);
            free(b);
        }
    }
}

/* The snippet marker gives what FTS5's own highlight() gives, row by row: stems, case,
 * diacritics, repeated and adjacent words, punctuation, words in tags only. */
static void test_highlight(void)
{
    static const char *const captions[] = {
        "a dog running on the beach",
        "Dogs and dogs: a DOG's day at the BEACHES",
        "two dogs running, a dog running",
        "caf\xC3\xA9 au lait pr\xC3\xA8s de la plage",
        "beach beach beach",
        "the dog-beach sign",
        "no match here",
        "a running dog runs past a runner",
        "na\xC3\xAFve dog\xE2\x80\x99s beaches",
        "\xE6\x97\xA5\xE6\x9C\xAC dog \xE7\x8A\xAC",
        "",
    };
    static const char *const queries[] = {
        "dog", "dog beach",    "dogs running", "running dog",         "cafe plage", "Beaches",
        "run", "\xE7\x8A\xAC", "naive",        "dog dog beach beach", "sign the",
    };
    capdb *db = fresh_db("highlight.db");
    char path[1200];
    for (size_t i = 0; i < sizeof captions / sizeof *captions; i++) {
        snprintf(path, sizeof path, "/h/%zu.jpg", i);
        put(db, path, captions[i], i == 6 ? "dog" : "tag");
    }
    capdb_close(db);
    snprintf(path, sizeof path, "%s/highlight.db", workdir);
    sqlite3 *sql = NULL;
    fts5_api *fts5 = NULL;
    CHECK(sqlite3_open_v2(path, &sql, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    CHECK(capdb__register_functions(sql, &fts5) == 0);
    int compared = 0;
    for (size_t qi = 0; qi < sizeof queries / sizeof *queries; qi++) {
        char **words;
        int n = capdb__query_words(queries[qi], &words, &err);
        CHECK(n > 0);
        if (n <= 0) continue;
        char *expr = capdb__fts_expression(words, n, " OR ");
        capdb_highlighter *marker = NULL;
        CHECK(capdb__highlighter_new(fts5, words, n, &marker) == 0);
        capdb__free_words(words, n);
        sqlite3_stmt *st = NULL;
        CHECK(sqlite3_prepare_v2(sql,
                                 "SELECT caption, highlight(images_fts, 0, char(1), char(2))"
                                 " FROM images_fts WHERE images_fts MATCH ?1",
                                 -1, &st, NULL) == SQLITE_OK);
        sqlite3_bind_text(st, 1, expr, -1, SQLITE_STATIC);
        while (marker && sqlite3_step(st) == SQLITE_ROW) {
            const char *caption = (const char *)sqlite3_column_text(st, 0);
            const char *want = (const char *)sqlite3_column_text(st, 1);
            char *got = capdb__highlight(marker, caption ? caption : "", "\x01", "\x02");
            CHECK(got && want && strcmp(got, want) == 0);
            if (got && want && strcmp(got, want) != 0)
                fprintf(stderr, "  query '%s': got '%s', FTS5 '%s'\n", queries[qi], got, want);
            free(got);
            compared++;
        }
        sqlite3_finalize(st);
        capdb__highlighter_free(marker);
        free(expr);
    }
    CHECK(compared >= 20);
    sqlite3_close(sql);
}
