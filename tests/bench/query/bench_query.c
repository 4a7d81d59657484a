/*
 * Query latency benchmark (a benchmark, not a test: it prints figures, asserts nothing).
 *
 *   bench_query --capsearch PATH [--rows 10000,100000,1000000] [--runs N] [--dir DIR]
 *
 * For each size it builds (once; reused while the row count matches) a database of
 * synthetic but realistic rows: captions made from word lists with a skewed
 * distribution (some subjects and places are common, like real photo libraries), tags,
 * path words, a 300-concept vector with postings and a 1280-d pooled vector. Then it
 * times `dog beach`:
 *   - in process, words only (capdb_search, what capsearch does without a model),
 *   - in process, words + the query's two concepts (the fusion path),
 *   - whole process: fork/exec of `capsearch --db DB dog beach`, output to /dev/null
 *     (wall time, and the child's CPU time, which a busy machine does not inflate),
 *   - in process, a similar-image scan over every pooled vector (fewer runs),
 * and prints a Markdown table of median and p99 latencies.
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

typedef struct {
    double median, p99;
} figures;

static int build(const char *path, int rows);
static figures time_in_process(capdb *db, const capdb_query *q, int runs);
static figures time_whole_process(const char *capsearch, const char *db_path, int runs,
                                  figures *cpu);
static uint64_t rng(void);
static double uniform(void);
static int skewed(int n);
static double now_ms(void);
static int cmp_double(const void *a, const void *b);
static figures summarise(double *t, int n);
static int64_t parse_sizes(const char *s, int *sizes, int max);

int main(int argc, char **argv)
{
    const char *capsearch = NULL, *dir = ".";
    int sizes[8] = {100000}, n_sizes = 1, runs = 200;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--capsearch") && i + 1 < argc) capsearch = argv[++i];
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc)
            n_sizes = (int)parse_sizes(argv[++i], sizes, 8);
        else {
            fprintf(stderr, "usage: bench_query --capsearch PATH [--rows 10000,100000,1000000]"
                            " [--runs N] [--dir DIR]\n");
            return 2;
        }
    }
    if (!capsearch || n_sizes < 1 || runs < 10) {
        fprintf(stderr, "bench_query: --capsearch PATH is required; --runs at least 10\n");
        return 2;
    }

    printf("\nQuery `dog beach`, %d runs each (similar: %d), warm page cache.\n\n", runs,
           runs / 10 < 5 ? 5 : runs / 10);
    printf("| rows | DB size | in-process words median / p99 | in-process words+concepts"
           " median / p99 | whole process median / p99 | whole process CPU (user+sys)"
           " median / p99 | similar scan median / p99 |\n");
    printf("|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int s = 0; s < n_sizes; s++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/bench-query-%d.db", dir, sizes[s]);
        if (build(path, sizes[s]) != 0) return 1;
        capdb *db;
        capdb_err err;
        if (capdb_open(path, CAPDB_OPEN_READONLY, &db, &err) != 0) {
            fprintf(stderr, "bench_query: %s\n", err.msg);
            return 1;
        }
        capdb_counts counts;
        capdb_counts_get(db, &counts, &err);

        /* concept indices follow the word lists: subjects, then places */
        struct capdb_concept_term terms[2] = {{3, 1.0f}, {N_SUBJECTS + 2, 1.0f}};
        capdb_query words = {.text = "dog beach", .with_snippet = 1};
        capdb_query fused = words;
        fused.concepts = terms;
        fused.n_concepts = 2;
        static float qv[POOLED_DIM];
        for (int i = 0; i < POOLED_DIM; i++) qv[i] = (float)uniform();
        capdb_query similar = {.pooled = qv, .n_pooled = POOLED_DIM};

        figures w = time_in_process(db, &words, runs);
        figures f = time_in_process(db, &fused, runs);
        figures sim = time_in_process(db, &similar, runs / 10 < 5 ? 5 : runs / 10);
        capdb_close(db);
        figures cpu;
        figures p = time_whole_process(capsearch, path, runs, &cpu);
        printf("| %d | %.0f MiB | %.2f / %.2f ms | %.2f / %.2f ms | %.2f / %.2f ms |"
               " %.2f / %.2f ms | %.1f / %.1f ms |\n",
               sizes[s], counts.db_bytes / 1048576.0, w.median, w.p99, f.median, f.p99, p.median,
               p.p99, cpu.median, cpu.p99, sim.median, sim.p99);
        fflush(stdout);
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
 * wall time includes waiting for a core, the CPU time does not. */
static figures time_whole_process(const char *capsearch, const char *db_path, int runs,
                                  figures *cpu)
{
    double *t = malloc((size_t)runs * sizeof *t);
    double *c = malloc((size_t)runs * sizeof *c);
    for (int i = -3; i < runs; i++) {
        double t0 = now_ms();
        pid_t pid = fork();
        if (pid == 0) {
            int fd = open("/dev/null", O_WRONLY);
            dup2(fd, STDOUT_FILENO);
            execl(capsearch, capsearch, "--db", db_path, "dog", "beach", (char *)NULL);
            _exit(127);
        }
        int status = 0;
        struct rusage ru;
        wait4(pid, &status, 0, &ru);
        double dt = now_ms() - t0;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fprintf(stderr, "bench_query: capsearch exited with status %d\n", status);
        if (i >= 0) {
            t[i] = dt;
            c[i] = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
                   (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
        }
    }
    figures f = summarise(t, runs);
    *cpu = summarise(c, runs);
    free(t);
    free(c);
    return f;
}

/* Builds the database unless one with this many rows is already there. */
static int build(const char *path, int rows)
{
    capdb *db;
    capdb_err err;
    capdb_counts counts = {0};
    if (capdb_open(path, CAPDB_OPEN_READONLY, &db, &err) == 0) {
        capdb_counts_get(db, &counts, &err);
        capdb_close(db);
        if (counts.ok == rows) return 0;
    }
    unlink(path);
    fprintf(stderr, "bench_query: building %s (%d rows)...\n", path, rows);
    double t0 = now_ms();
    if (capdb_open(path, CAPDB_OPEN_WRITE, &db, &err) != 0) {
        fprintf(stderr, "bench_query: %s\n", err.msg);
        return -1;
    }
    static float concepts[N_CONCEPTS], pooled[POOLED_DIM];
    int rc = capdb_begin(db, &err);
    for (int i = 0; i < rows && rc == 0; i++) {
        int subj = skewed(N_SUBJECTS), place = skewed(N_PLACES), other = skewed(N_SUBJECTS);
        const char *adj = ADJECTIVES[rng() % COUNT(ADJECTIVES)];
        char caption[256], tags[256], p[256];
        snprintf(caption, sizeof caption, "a %s%s%s %s %s the %s%s%s", adj, *adj ? " " : "",
                 SUBJECTS[subj], VERBS[rng() % COUNT(VERBS)],
                 PREPOSITIONS[rng() % COUNT(PREPOSITIONS)], PLACES[place],
                 rng() % 3 == 0 ? " with a " : "", rng() % 3 == 0 ? SUBJECTS[other] : "");
        snprintf(tags, sizeof tags, "%s %s %s", SUBJECTS[subj], PLACES[place], SUBJECTS[other]);
        int year = 2005 + (int)(rng() % 20), month = 1 + (int)(rng() % 12);
        snprintf(p, sizeof p, "/home/user/Pictures/%d/%02d %s/IMG_%06d.jpg", year, month,
                 EVENTS[rng() % COUNT(EVENTS)], i);

        memset(concepts, 0, sizeof concepts);
        concepts[subj] = 0.5f + 0.5f * (float)uniform();
        concepts[N_SUBJECTS + place] = 0.3f + 0.7f * (float)uniform();
        concepts[other] += 0.2f * (float)uniform();
        for (int k = 0; k < 6; k++) concepts[rng() % N_CONCEPTS] += 0.15f * (float)uniform();
        for (int k = 0; k < POOLED_DIM; k++)
            pooled[k] = (float)(uniform() < 0.3 ? 0 : uniform() * 2.0);
        pooled[subj] += 4.0f;

        int64_t taken = (int64_t)(year - 1970) * 31556952 + (int64_t)(rng() % 31556952);
        capdb_image img = {.path = p,
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
        rc = capdb_upsert(db, &img, &err);
        if (rc == 0 && i % 20000 == 19999) { /* a daemon commits in batches too */
            rc = capdb_commit(db, &err);
            if (rc == 0) rc = capdb_begin(db, &err);
        }
    }
    if (rc == 0) rc = capdb_commit(db, &err);
    capdb_close(db);
    if (rc != 0) {
        fprintf(stderr, "bench_query: %s\n", err.msg);
        return -1;
    }
    fprintf(stderr, "bench_query: built in %.1f s\n", (now_ms() - t0) / 1000);
    return 0;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull; /* fixed seed: same data every run */

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
