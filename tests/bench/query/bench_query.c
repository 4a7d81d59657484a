/*
 * Query latency benchmark (a benchmark, not a test: it prints figures, asserts nothing).
 *
 *   bench_query --capsearch PATH [--rows 10000,100000,1000000] [--runs N] [--dir DIR]
 *               [--pg URI [--no-sqlite]]
 *
 * For each size it builds (once; kept while it holds that many rows) an index of
 * synthetic but realistic rows: captions made from word lists with a skewed
 * distribution (some subjects and places are common, like real photo libraries), tags,
 * path words, a 300-concept vector with postings and a 1280-d pooled vector. Every row is
 * made from its own number (seeded per row), so both backends and every size hold the
 * same rows, and a larger index is a smaller one plus more rows. Then it times `dog beach`:
 *   - in process, words only (capdb_search, what capsearch does without a model),
 *   - in process, words + the query's two concepts (the fusion path),
 *   - whole process: fork/exec of `capsearch --db TARGET dog beach`, output to /dev/null
 *     (wall time, and the child's CPU time, which a busy machine does not inflate), with
 *     what the process read: read(2)/pread(2) calls and bytes (its /proc/PID/io, read
 *     while it is a zombie) and page faults (a memory-mapped index reads by faulting),
 *   - in process, a similar-image scan over every pooled vector (fewer runs),
 * and prints one Markdown table of median and p99 latencies, a row per size and backend.
 *
 * Backends: SQLite, a file per size in --dir (bench-query-N.db); with --pg, also
 * PostgreSQL, one database (URI) rebuilt or grown to each size in turn (give the sizes
 * in increasing order: growing only appends). The PostgreSQL database must be empty or
 * one this program filled: it records its row count in the metadata key
 * "bench_query_rows", at every commit, so that an interrupted build resumes.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "capdb.h"

#define N_CONCEPTS 300
#define POOLED_DIM 1280

static const char *const SUBJECTS[] = {
    "man",
    "woman",
    "person",
    "dog",
    "cat",
    "child",
    "group of people",
    "car",
    "bird",
    "horse",
    "bus",
    "train",
    "boat",
    "bicycle",
    "motorcycle",
    "truck",
    "plane",
    "cow",
    "sheep",
    "elephant",
    "giraffe",
    "zebra",
    "bear",
    "surfer",
    "skier",
    "skateboarder",
    "kite",
    "pizza",
    "sandwich",
    "cake",
    "laptop",
    "teddy bear",
    "clock",
    "vase",
    "bench",
    "umbrella",
    "girl",
    "boy",
    "baby",
    "couple",
    "tennis player",
    "baseball player",
    "frisbee",
    "table",
    "bowl of fruit",
    "fire hydrant",
    "stop sign",
    "traffic light",
    "computer",
    "bed",
    "toilet",
    "sink",
    "refrigerator",
    "oven",
    "puppy",
    "kitten",
    "duck",
    "eagle",
    "swan",
    "deer",
};
static const char *const VERBS[] = {
    "standing",
    "sitting",
    "running",
    "walking",
    "playing",
    "lying",
    "riding a wave",
    "jumping",
    "eating",
    "looking at the camera",
    "parked",
    "flying",
    "resting",
    "waiting",
    "sleeping",
    "swimming",
    "holding an umbrella",
    "posing",
};
static const char *const PLACES[] = {
    "street",  "field",        "beach",       "park",  "kitchen",  "living room", "snow",
    "water",   "grass",        "road",        "city",  "table",    "bedroom",     "bathroom",
    "forest",  "mountain",     "lake",        "river", "sidewalk", "airport",     "station",
    "garden",  "yard",         "desert",      "farm",  "zoo",      "office",      "restaurant",
    "market",  "harbor",       "bridge",      "sky",   "ocean",    "hill",        "court",
    "stadium", "train tracks", "parking lot", "pool",  "sofa",
};
static const char *const ADJECTIVES[] = {
    "",      "",    "",      "large", "small", "white", "black", "brown", "red",
    "young", "old", "happy", "wet",   "busy",  "empty", "sunny", "snowy", "colorful",
};
static const char *const PREPOSITIONS[] = {"on", "in", "near", "at", "by", "across"};
static const char *const EVENTS[] = {
    "holiday",   "birthday", "wedding", "trip",  "weekend", "family", "garden", "hike",
    "christmas", "summer",   "camping", "party", "misc",    "phone",  "camera",
};
#define COUNT(a) ((int)(sizeof a / sizeof a[0]))
#define N_SUBJECTS COUNT(SUBJECTS)
#define N_PLACES COUNT(PLACES)

#define META_ROWS "bench_query_rows" /* rows 0 .. N-1 are in the index */
#define ROOT "/home/user/Pictures"   /* every synthetic path is under it */

typedef struct {
    double median, p99;
} figures;

/* What a whole search process read, medians over the runs. */
typedef struct {
    double read_calls, kib_read, page_faults;
} reads;

typedef struct {
    const char *name; /* "sqlite" or "postgresql", as capdb_backend_name says */
    int is_pg;
    const char *pg_uri;
} backend;

static int build(const char *target, const backend *be, int rows, double *seconds, int64_t *added);
static void make_row(int i, capdb_image *img, char *caption, char *tags, char *path,
                     float *concepts, float *pooled);
static int pg_vacuum_analyze(const char *uri);
static figures time_in_process(capdb *db, const capdb_query *q, int runs);
static figures time_whole_process(const char *capsearch, const char *target, int runs, figures *cpu,
                                  reads *read);
static int process_io(pid_t pid, double *read_calls, double *kib_read);
static void seed(uint64_t s);
static uint64_t rng(void);
static double uniform(void);
static int skewed(int n);
static double now_ms(void);
static int cmp_double(const void *a, const void *b);
static figures summarise(double *t, int n);
static int64_t parse_sizes(const char *s, int *sizes, int max);

static void usage(void)
{
    fprintf(stderr, "usage: bench_query --capsearch PATH [--rows 10000,100000,1000000]"
                    " [--runs N] [--dir DIR] [--pg URI [--no-sqlite]]\n");
}

int main(int argc, char **argv)
{
    const char *capsearch = NULL, *dir = ".", *pg_uri = NULL;
    int sizes[8] = {100000}, n_sizes = 1, runs = 200, with_sqlite = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--capsearch") && i + 1 < argc) capsearch = argv[++i];
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc)
            n_sizes = (int)parse_sizes(argv[++i], sizes, 8);
        else if (!strcmp(argv[i], "--pg") && i + 1 < argc) pg_uri = argv[++i];
        else if (!strcmp(argv[i], "--no-sqlite")) with_sqlite = 0;
        else {
            usage();
            return 2;
        }
    }
    if (!capsearch || n_sizes < 1 || runs < 10) {
        fprintf(stderr, "bench_query: --capsearch PATH is required; --runs at least 10\n");
        return 2;
    }
    if (pg_uri && !capdb_is_pg_target(pg_uri)) {
        fprintf(stderr, "bench_query: --pg wants a postgresql:// URI, not %s\n", pg_uri);
        return 2;
    }
    if (!with_sqlite && !pg_uri) {
        fprintf(stderr, "bench_query: --no-sqlite without --pg leaves nothing to measure\n");
        return 2;
    }
    backend backends[2];
    int n_backends = 0;
    if (with_sqlite) backends[n_backends++] = (backend){"sqlite", 0, NULL};
    if (pg_uri) backends[n_backends++] = (backend){"postgresql", 1, pg_uri};

    int sim_runs = runs / 10 < 5 ? 5 : runs / 10;
    printf("\nQuery `dog beach`, %d runs each (similar: %d), warm cache.\n\n", runs, sim_runs);
    /* "rows" stays the first column and the titles stay as they were: run_all.sh reads
     * the table by them. */
    printf("| rows | backend | DB size | in-process words median / p99 | in-process"
           " words+concepts median / p99 | whole process median / p99 | whole process CPU"
           " (user+sys) median / p99 | similar scan median / p99 | built in | whole process"
           " reads: calls / KiB / page faults |\n");
    printf("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    fflush(stdout);
    for (int s = 0; s < n_sizes; s++) {
        for (int b = 0; b < n_backends; b++) {
            const backend *be = &backends[b];
            char target[4096];
            if (be->is_pg) snprintf(target, sizeof target, "%s", be->pg_uri);
            else snprintf(target, sizeof target, "%s/bench-query-%d.db", dir, sizes[s]);
            double built = 0;
            int64_t added = 0;
            if (build(target, be, sizes[s], &built, &added) != 0) return 1;

            capdb *db;
            capdb_err err;
            if (capdb_open(target, CAPDB_OPEN_READONLY, &db, &err) != 0) {
                fprintf(stderr, "bench_query: %s\n", err.msg);
                return 1;
            }
            capdb_counts counts = {0};
            capdb_counts_get(db, &counts, &err);

            /* concept indices follow the word lists: subjects, then places */
            struct capdb_concept_term terms[2] = {{3, 1.0f}, {N_SUBJECTS + 2, 1.0f}};
            capdb_query words = {.text = "dog beach", .with_snippet = 1};
            capdb_query fused = words;
            fused.concepts = terms;
            fused.n_concepts = 2;
            static float qv[POOLED_DIM];
            seed(0); /* the same query vector for every size and backend */
            for (int i = 0; i < POOLED_DIM; i++) qv[i] = (float)uniform();
            capdb_query similar = {.pooled = qv, .n_pooled = POOLED_DIM};

            figures w = time_in_process(db, &words, runs);
            figures f = time_in_process(db, &fused, runs);
            figures sim = time_in_process(db, &similar, sim_runs);
            capdb_close(db);
            figures cpu;
            reads io;
            figures p = time_whole_process(capsearch, target, runs, &cpu, &io);
            char built_text[64] = "(kept)";
            if (added > 0)
                snprintf(built_text, sizeof built_text, "%.0f s, %lld rows (%.0f rows/s)", built,
                         (long long)added, added / built);
            printf("| %d | %s | %.0f MiB | %.2f / %.2f ms | %.2f / %.2f ms | %.2f / %.2f ms |"
                   " %.2f / %.2f ms | %.1f / %.1f ms | %s | %.0f / %.0f / %.0f |\n",
                   sizes[s], be->name, counts.db_bytes / 1048576.0, w.median, w.p99, f.median,
                   f.p99, p.median, p.p99, cpu.median, cpu.p99, sim.median, sim.p99, built_text,
                   io.read_calls, io.kib_read, io.page_faults);
            fflush(stdout);
        }
    }
    return 0;
}

static figures time_in_process(capdb *db, const capdb_query *q, int runs)
{
    double *t = malloc((size_t)runs * sizeof *t);
    capdb_err err;
    for (int i = -3; i < runs; i++) { /* three warm-up runs */
        capdb_results res;
        double t0 = now_ms();
        if (capdb_search(db, q, &res, &err) != 0) fprintf(stderr, "search: %s\n", err.msg);
        double dt = now_ms() - t0;
        if (i >= 0) t[i] = dt;
        capdb_results_free(&res);
    }
    figures f = summarise(t, runs);
    free(t);
    return f;
}

/* Wall time from fork to reaped child, and the child's CPU time: on a busy machine the
 * wall time includes waiting for a core, the CPU time does not. With PostgreSQL the
 * server's CPU time is not the child's: compare wall times across backends. */
static figures time_whole_process(const char *capsearch, const char *target, int runs, figures *cpu,
                                  reads *read)
{
    double *t = malloc((size_t)runs * sizeof *t);
    double *c = malloc((size_t)runs * sizeof *c);
    double *calls = calloc((size_t)runs, sizeof *calls), *kib = calloc((size_t)runs, sizeof *kib);
    double *faults = malloc((size_t)runs * sizeof *faults);
    for (int i = -3; i < runs; i++) {
        double t0 = now_ms();
        pid_t pid = fork();
        if (pid == 0) {
            int fd = open("/dev/null", O_WRONLY);
            dup2(fd, STDOUT_FILENO);
            execl(capsearch, capsearch, "--db", target, "dog", "beach", (char *)NULL);
            _exit(127);
        }
        /* exited but not reaped: its /proc/PID/io is still there */
        siginfo_t info;
        waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT);
        double dt = now_ms() - t0;
        if (i >= 0) process_io(pid, &calls[i], &kib[i]);
        int status = 0;
        struct rusage ru;
        wait4(pid, &status, 0, &ru);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fprintf(stderr, "bench_query: capsearch exited with status %d\n", status);
        if (i >= 0) {
            t[i] = dt;
            c[i] = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
                   (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
            faults[i] = (double)ru.ru_minflt + (double)ru.ru_majflt;
        }
    }
    figures f = summarise(t, runs);
    *cpu = summarise(c, runs);
    *read = (reads){summarise(calls, runs).median, summarise(kib, runs).median,
                    summarise(faults, runs).median};
    free(t);
    free(c);
    free(calls);
    free(kib);
    free(faults);
    return f;
}

/* read(2)-family calls and bytes of a finished, unreaped child (0 where unreadable). */
static int process_io(pid_t pid, double *read_calls, double *kib_read)
{
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/%d/io", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long long v;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "syscr: %lld", &v) == 1) *read_calls = (double)v;
        if (sscanf(line, "rchar: %lld", &v) == 1) *kib_read = v / 1024.0;
    }
    fclose(f);
    return 0;
}

/* How many of the benchmark's rows the index holds: the META_ROWS count when the index
 * holds exactly those rows, 0 when it is empty, -1 when it holds anything else. */
static int64_t rows_present(capdb *db)
{
    capdb_err err;
    capdb_counts counts = {0};
    char value[32];
    if (capdb_counts_get(db, &counts, &err) != 0) return -1;
    int found = capdb_meta_get(db, META_ROWS, value, sizeof value, &err);
    if (found < 0) return -1;
    if (found == 0) return counts.total == 0 ? 0 : -1;
    int64_t n = strtoll(value, NULL, 10);
    return n == counts.total && n == counts.ok ? n : -1;
}

/* Makes the index at target hold rows 0 .. rows-1 and nothing else: keeps it when it
 * does, appends the missing rows when it holds fewer of them (a smaller size, or an
 * interrupted build), else starts again: an SQLite file is removed, a PostgreSQL
 * database emptied of the benchmark's rows (and refused when it holds anything else).
 * *seconds: the time spent building, *added the rows it added (0: kept as it was). */
static int build(const char *target, const backend *be, int rows, double *seconds, int64_t *added)
{
    capdb *db;
    capdb_err err;
    int64_t have = 0;
    int rc = 0;
    *seconds = 0;
    *added = 0;
    if (!be->is_pg) {
        have = -1;
        if (capdb_open(target, CAPDB_OPEN_READONLY, &db, &err) == 0) {
            have = rows_present(db);
            capdb_close(db);
        }
        if (have == rows) return 0;
        if (have < 0 || have > rows) { /* no file, or one to make again */
            char side[4096 + 8];
            unlink(target);
            /* a WAL left beside a new file would be replayed into it */
            snprintf(side, sizeof side, "%s-wal", target);
            unlink(side);
            snprintf(side, sizeof side, "%s-shm", target);
            unlink(side);
            have = 0;
        }
    }

    double t0 = now_ms();
    if (capdb_open(target, CAPDB_OPEN_WRITE, &db, &err) != 0) {
        fprintf(stderr, "bench_query: %s\n", err.msg);
        return -1;
    }
    if (be->is_pg) {
        have = rows_present(db);
        if (have == rows) {
            capdb_close(db);
            return 0;
        }
        if (have < 0) {
            fprintf(stderr,
                    "bench_query: %s holds rows that are not this benchmark's: give an"
                    " empty database\n",
                    target);
            capdb_close(db);
            return -1;
        }
        if (have > rows) {
            fprintf(stderr, "bench_query: postgresql: emptying (%lld rows, %d wanted)...\n",
                    (long long)have, rows);
            int64_t deleted = 0;
            rc = capdb_begin(db, &err);
            if (rc == 0) rc = capdb_delete_path(db, ROOT, &deleted, &err);
            if (rc == 0) rc = capdb_meta_set(db, META_ROWS, "0", &err);
            if (rc == 0) rc = capdb_commit(db, &err);
            have = 0;
        }
    }
    fprintf(stderr, "bench_query: %s: building %s (rows %lld to %d)...\n", be->name,
            be->is_pg ? "the database" : target, (long long)have, rows);

    /* A daemon commits in batches too. PostgreSQL: 1000 rows per transaction, so that a
     * lost connection costs little and the count in META_ROWS moves often. */
    int batch = be->is_pg ? 1000 : 20000;
    static float concepts[N_CONCEPTS], pooled[POOLED_DIM];
    char caption[256], tags[256], path[256], count[32];
    double t_report = now_ms();
    if (rc == 0) rc = capdb_begin(db, &err);
    for (int i = (int)have; i < rows && rc == 0; i++) {
        capdb_image img;
        make_row(i, &img, caption, tags, path, concepts, pooled);
        rc = capdb_upsert(db, &img, &err);
        if (rc == 0 && ((i + 1) % batch == 0 || i + 1 == rows)) {
            snprintf(count, sizeof count, "%d", i + 1);
            rc = capdb_meta_set(db, META_ROWS, count, &err);
            if (rc == 0) rc = capdb_commit(db, &err);
            if (rc == 0 && i + 1 < rows) rc = capdb_begin(db, &err);
            if (now_ms() - t_report > 30000) { /* long builds say how far they are */
                double s = (now_ms() - t0) / 1000;
                fprintf(stderr, "bench_query: %s: %d rows, %.0f s, %.0f rows/s\n", be->name, i + 1,
                        s, (i + 1 - have) / s);
                t_report = now_ms();
            }
        }
    }
    if (rc != 0) {
        capdb_rollback(db);
        capdb_close(db);
        fprintf(stderr, "bench_query: %s\n", err.msg);
        return -1;
    }
    capdb_close(db);
    *seconds = (now_ms() - t0) / 1000;
    *added = rows - have;
    fprintf(stderr, "bench_query: %s: built in %.1f s\n", be->name, *seconds);
    /* After a bulk load: the planner's statistics and the visibility map as autovacuum
     * would leave them a minute later, so that it does not run during the timings. */
    if (be->is_pg) {
        double t1 = now_ms();
        if (pg_vacuum_analyze(target) != 0) return -1;
        fprintf(stderr, "bench_query: postgresql: VACUUM (ANALYZE) in %.1f s\n",
                (now_ms() - t1) / 1000);
    }
    return 0;
}

/* Row i of every benchmark index, the same whatever was built before it. */
static void make_row(int i, capdb_image *img, char *caption, char *tags, char *path,
                     float *concepts, float *pooled)
{
    seed((uint64_t)i + 1);
    int subj = skewed(N_SUBJECTS), place = skewed(N_PLACES), other = skewed(N_SUBJECTS);
    const char *adj = ADJECTIVES[rng() % COUNT(ADJECTIVES)];
    snprintf(caption, 256, "a %s%s%s %s %s the %s%s%s", adj, *adj ? " " : "", SUBJECTS[subj],
             VERBS[rng() % COUNT(VERBS)], PREPOSITIONS[rng() % COUNT(PREPOSITIONS)], PLACES[place],
             rng() % 3 == 0 ? " with a " : "", rng() % 3 == 0 ? SUBJECTS[other] : "");
    snprintf(tags, 256, "%s %s %s", SUBJECTS[subj], PLACES[place], SUBJECTS[other]);
    int year = 2005 + (int)(rng() % 20), month = 1 + (int)(rng() % 12);
    snprintf(path, 256, ROOT "/%d/%02d %s/IMG_%06d.jpg", year, month, EVENTS[rng() % COUNT(EVENTS)],
             i);

    memset(concepts, 0, N_CONCEPTS * sizeof *concepts);
    concepts[subj] = 0.5f + 0.5f * (float)uniform();
    concepts[N_SUBJECTS + place] = 0.3f + 0.7f * (float)uniform();
    concepts[other] += 0.2f * (float)uniform();
    for (int k = 0; k < 6; k++) concepts[rng() % N_CONCEPTS] += 0.15f * (float)uniform();
    for (int k = 0; k < POOLED_DIM; k++) pooled[k] = (float)(uniform() < 0.3 ? 0 : uniform() * 2.0);
    pooled[subj] += 4.0f;

    int64_t taken = (int64_t)(year - 1970) * 31556952 + (int64_t)(rng() % 31556952);
    *img = (capdb_image){.path = path,
                         .size = 2000000 + (int64_t)(rng() % 3000000),
                         .mtime_ns = taken * 1000000000LL,
                         .fingerprint = rng(),
                         .width = 4000,
                         .height = 3000,
                         .taken_time = taken,
                         .caption = caption,
                         .tags = tags,
                         .model_version = "bench",
                         .concepts = concepts,
                         .n_concepts = N_CONCEPTS,
                         .pooled = pooled,
                         .n_pooled = POOLED_DIM};
}

/* VACUUM (ANALYZE) of the whole database, through libpq: capdb has no call for it (the
 * backend's own tables are its business; this touches every table alike). */
static int pg_vacuum_analyze(const char *uri)
{
    PGconn *c = PQconnectdb(uri);
    int rc = 0;
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "bench_query: %s", PQerrorMessage(c));
        rc = -1;
    } else {
        PGresult *r = PQexec(c, "VACUUM (ANALYZE)");
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "bench_query: VACUUM (ANALYZE): %s", PQerrorMessage(c));
            rc = -1;
        }
        PQclear(r);
    }
    PQfinish(c);
    return rc;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

/* Fixed seeds: the same data every run. splitmix64 of s, so that neighbouring seeds
 * start far apart; xorshift never leaves 0, so 0 is avoided. */
static void seed(uint64_t s)
{
    uint64_t z = s + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    rng_state = z ? z : 0x9E3779B97F4A7C15ull;
}

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static double uniform(void) { return (double)(rng() >> 11) / 9007199254740992.0; }

/* Index in [0, n) with the front of the list far more likely: P(i < k) = sqrt(k / n). */
static int skewed(int n)
{
    double u = uniform();
    int i = (int)(n * u * u);
    return i < n ? i : n - 1;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static figures summarise(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    int p99 = (int)ceil(0.99 * n) - 1;
    return (figures){t[n / 2], t[p99 < 0 ? 0 : p99]};
}

static int64_t parse_sizes(const char *s, int *sizes, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1) return -1;
        sizes[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}
