/*
 * Per-stage latency of indexing one photo (a benchmark, not a test): the calls one
 * capsearchd worker and its writer make for each new file (daemon/pipeline.c), timed one
 * by one on one core (one BLAS thread, as each daemon worker runs):
 *
 *   hash      cx_fingerprint_file: XXH64 of the whole file (the pipeline's hash job)
 *   decode    ce_image_load_file: JPEG at the smallest DCT scale >= 300 px, EXIF
 *   cnn       ce_cnn_run: resize to 300x300, SSDLite-MobileNetV2, anchors + NMS
 *   caption   ce_caption_run: concept head + LSTM beam search ("n/a" without captioner.csw;
 *             the pipeline then stores the detections' labels as tags)
 *   database  capdb_lookup_path + capdb_upsert, plus each batch's commit shared by its
 *             photos (batches of --batch, 64 as the daemon's batch_size default)
 *
 *   bench_stages --db PATH [--models DIR] [--cnn float|int8] [--limit N] [--batch N] DIR
 *
 * DIR is walked for *.jpg (sorted, the first --limit of them); PATH is created afresh.
 * Prints a Markdown table and `RESULT stage name=S n=N median_ms=.. p90_ms=.. mean_ms=..
 * cpu_ms=..` lines (read by tests/bench/index/run.py). cpu_ms is the thread's CPU time
 * per photo (mean): on a shared machine the wall-clock figures also count the time the
 * scheduler gave to other processes, the CPU time does not.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "capdb.h"
#include "capengine.h"
#include "capindexer.h"

enum { ST_HASH, ST_DECODE, ST_CNN, ST_CAPTION, ST_DB, N_STAGES };
static const char *const STAGE_NAMES[N_STAGES] = {"hash", "decode", "cnn", "caption", "database"};
static const char *const STAGE_WHAT[N_STAGES] = {
    "read + XXH64 fingerprint of the whole file",
    "JPEG decode (DCT-scaled to >= 300 px) + EXIF",
    "CNN: resize, SSDLite-MobileNetV2, post-processing",
    "concepts + LSTM beam search",
    "SQLite lookup + upsert (FTS5, vectors) + shared commit",
};

typedef struct {
    char **paths;
    int n, cap;
} path_list;

static int walk(const char *dir, path_list *list);
static int index_one(const char *path, ce_session *s, const ce_model *model, capdb *db,
                     double ms[N_STAGES], double cpu[N_STAGES], char *msg, size_t msg_size);
static double now_ms(void);
static double cpu_ms(void);
static int cmp_str(const void *a, const void *b);
static int cmp_double(const void *a, const void *b);
static double percentile(const double *sorted, int n, double p);

int main(int argc, char **argv)
{
    const char *db_path = NULL, *models = NULL;
    int limit = 200, batch = 64, open_flags = CE_OPEN_DEFAULT;
    static const struct option OPTIONS[] = {
        {"db", required_argument, NULL, 'd'},    {"models", required_argument, NULL, 'm'},
        {"limit", required_argument, NULL, 'n'}, {"batch", required_argument, NULL, 'b'},
        {"cnn", required_argument, NULL, 'c'},   {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "", OPTIONS, NULL)) != -1) {
        switch (opt) {
        case 'd': db_path = optarg; break;
        case 'm': models = optarg; break;
        case 'n': limit = atoi(optarg); break;
        case 'b': batch = atoi(optarg); break;
        case 'c':
            if (!strcmp(optarg, "int8")) open_flags = CE_OPEN_CNN_INT8;
            else if (strcmp(optarg, "float")) goto usage;
            break;
        default: goto usage;
        }
    }
    if (!db_path || optind != argc - 1 || limit < 1 || batch < 1) goto usage;

    path_list list = {0};
    if (walk(argv[optind], &list) < 0 || list.n == 0) {
        fprintf(stderr, "bench_stages: no *.jpg under %s\n", argv[optind]);
        return 1;
    }
    qsort(list.paths, (size_t)list.n, sizeof *list.paths, cmp_str);
    int n = list.n < limit ? list.n : limit;

    ce_err err;
    ce_model *model;
    if (ce_model_open(models ? models : ce_default_models_dir(), open_flags, &model, &err) < 0) {
        fprintf(stderr, "bench_stages: %s\n", err.msg);
        return 1;
    }
    ce_session *s;
    if (ce_session_new(model, &s, &err) < 0) {
        fprintf(stderr, "bench_stages: %s\n", err.msg);
        return 1;
    }
    ce_set_blas_threads(1);
    for (const char *suffix = ""; suffix; suffix = *suffix ? NULL : "-wal") {
        char p[4200];
        snprintf(p, sizeof p, "%s%s", db_path, suffix);
        unlink(p);
    }
    capdb *db;
    capdb_err derr;
    if (capdb_open(db_path, CAPDB_OPEN_WRITE, &db, &derr) < 0) {
        fprintf(stderr, "bench_stages: %s: %s\n", db_path, derr.msg);
        return 1;
    }

    double *ms[N_STAGES];
    for (int k = 0; k < N_STAGES; k++) ms[k] = calloc((size_t)n, sizeof(double));
    double *total = calloc((size_t)n, sizeof(double));
    double cpu_sum[N_STAGES + 1] = {0};
    int has_captioner = ce_model_has_captioner(model), failed = 0;
    char msg[512];
    capdb_begin(db, &derr);
    int batch_first = 0;
    /* i = -1: one untimed photo (rolled back) page-faults the weights and the buffers. */
    for (int i = -1; i < n; i++) {
        double row[N_STAGES] = {0}, cpu[N_STAGES] = {0};
        if (index_one(list.paths[i < 0 ? 0 : i], s, model, db, row, cpu, msg, sizeof msg) < 0) {
            fprintf(stderr, "bench_stages: %s\n", msg);
            failed++;
        }
        if (i < 0) {
            capdb_rollback(db);
            capdb_begin(db, &derr);
            continue;
        }
        for (int k = 0; k < N_STAGES; k++) ms[k][i] = row[k], cpu_sum[k] += cpu[k];
        if (i - batch_first + 1 == batch || i == n - 1) {
            double t0 = now_ms(), c0 = cpu_ms();
            if (capdb_commit(db, &derr) < 0) {
                fprintf(stderr, "bench_stages: commit: %s\n", derr.msg);
                return 1;
            }
            double share = (now_ms() - t0) / (i - batch_first + 1);
            cpu_sum[ST_DB] += cpu_ms() - c0;
            for (int j = batch_first; j <= i; j++) ms[ST_DB][j] += share;
            batch_first = i + 1;
            if (i < n - 1) capdb_begin(db, &derr);
        }
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < N_STAGES; k++) total[i] += ms[k][i];
    for (int k = 0; k < N_STAGES; k++) cpu_sum[N_STAGES] += cpu_sum[k];

    capdb_counts counts = {0};
    capdb_counts_get(db, &counts, &derr);
    capdb_close(db);

    printf("%d photos from %s, 1 thread, warm page cache, model %s%s\n\n", n, argv[optind],
           ce_model_version(model), has_captioner ? "" : " (no captioner: detections as tags)");
    printf("| stage | what | median ms | p90 ms | mean ms | CPU ms (mean) |\n"
           "|---|---|---:|---:|---:|---:|\n");
    char results[4096] = "";
    size_t rlen = 0;
    for (int k = 0; k <= N_STAGES; k++) {
        double *v = k < N_STAGES ? ms[k] : total;
        const char *name = k < N_STAGES ? STAGE_NAMES[k] : "total";
        double mean = 0;
        for (int i = 0; i < n; i++) mean += v[i] / n;
        qsort(v, (size_t)n, sizeof *v, cmp_double);
        if (k == ST_CAPTION && !has_captioner) {
            printf("| %s | %s | n/a | n/a | n/a | n/a |\n", name, STAGE_WHAT[k]);
            continue;
        }
        double cpu = cpu_sum[k] / n;
        printf("| %s | %s | %.2f | %.2f | %.2f | %.2f |\n", name,
               k < N_STAGES ? STAGE_WHAT[k]
                            : "one photo, all stages (1000 / CPU ms = images/s per free core)",
               percentile(v, n, 0.5), percentile(v, n, 0.9), mean, cpu);
        rlen += (size_t)snprintf(
            results + rlen, sizeof results - rlen,
            "RESULT stage name=%s n=%d median_ms=%.3f p90_ms=%.3f mean_ms=%.3f cpu_ms=%.3f\n", name,
            n, percentile(v, n, 0.5), percentile(v, n, 0.9), mean, cpu);
    }
    printf("\n%sRESULT stages photos=%d failed=%d captioner=%d db_bytes=%lld\n", results, n, failed,
           has_captioner, (long long)counts.db_bytes);

    for (int k = 0; k < N_STAGES; k++) free(ms[k]);
    free(total);
    for (int i = 0; i < list.n; i++) free(list.paths[i]);
    free(list.paths);
    ce_session_free(s);
    ce_model_close(model);
    return failed == n ? 1 : 0;
usage:
    fprintf(stderr, "usage: bench_stages --db PATH [--models DIR] [--cnn float|int8] [--limit N] "
                    "[--batch N] DIR\n");
    return 2;
}

/* The pipeline's work for one new file, stage by stage (daemon/pipeline.c model_work and
 * write_result). Stages not reached keep 0 ms. */
static int index_one(const char *path, ce_session *s, const ce_model *model, capdb *db,
                     double ms[N_STAGES], double cpu[N_STAGES], char *msg, size_t msg_size)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        snprintf(msg, msg_size, "%s: %s", path, strerror(errno));
        return -errno;
    }
    double t = now_ms(), c = cpu_ms();
    uint64_t fp = 0;
    int rc = cx_fingerprint_file(path, &fp);
    ms[ST_HASH] = now_ms() - t, cpu[ST_HASH] = cpu_ms() - c;
    if (rc < 0) {
        snprintf(msg, msg_size, "%s: %s", path, strerror(-rc));
        return rc;
    }

    ce_err err = {{0}};
    ce_image img;
    t = now_ms(), c = cpu_ms();
    rc = ce_image_load_file(path, &(ce_load_options){.max_pixels = 100000000}, &img, &err);
    ms[ST_DECODE] = now_ms() - t, cpu[ST_DECODE] = cpu_ms() - c;
    if (rc < 0) {
        snprintf(msg, msg_size, "%s: %s", path, err.msg);
        return rc;
    }

    ce_cnn_output *cnn = calloc(1, sizeof *cnn);
    if (!cnn) {
        ce_image_free(&img);
        snprintf(msg, msg_size, "out of memory");
        return -ENOMEM;
    }
    t = now_ms(), c = cpu_ms();
    rc = ce_cnn_run(s, &img, cnn, &err);
    ms[ST_CNN] = now_ms() - t, cpu[ST_CNN] = cpu_ms() - c;
    if (rc < 0) {
        snprintf(msg, msg_size, "%s: %s", path, err.msg);
        goto done;
    }

    /* the pipeline's own code from here on (row.c): what the daemon stores */
    float pooled[CE_POOLED_DIM];
    cx_image_result result = {.width = img.source_width,
                              .height = img.source_height,
                              .taken_time = img.taken_time,
                              .pooled = pooled};
    t = now_ms(), c = cpu_ms();
    rc = cx_image_describe(s, model, cnn, &result, &err);
    ms[ST_CAPTION] = ce_model_has_captioner(model) ? now_ms() - t : 0;
    cpu[ST_CAPTION] = ce_model_has_captioner(model) ? cpu_ms() - c : 0;
    if (rc < 0) {
        snprintf(msg, msg_size, "%s: %s", path, err.msg);
        goto done;
    }
    capdb_image row;
    cx_image_row(path, &st, fp, &result, ce_model_version(model), &row);
    capdb_err derr = {{0}, 0};
    capdb_file_state state;
    t = now_ms(), c = cpu_ms();
    rc = capdb_lookup_path(db, path, &state, &derr);
    if (rc == 0) rc = capdb_upsert(db, &row, &derr);
    ms[ST_DB] = now_ms() - t, cpu[ST_DB] = cpu_ms() - c;
    if (rc < 0) snprintf(msg, msg_size, "%s: %s", path, derr.msg);
    free(result.concepts);
done:
    ce_image_free(&img);
    free(cnn);
    return rc;
}

static int walk(const char *dir, path_list *list)
{
    DIR *d = opendir(dir);
    if (!d) return -errno;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0) continue;
        size_t len = strlen(e->d_name);
        if (S_ISDIR(st.st_mode)) {
            walk(path, list);
        } else if (len > 4 && !strcmp(e->d_name + len - 4, ".jpg")) {
            if (list->n == list->cap) {
                list->cap = list->cap ? list->cap * 2 : 256;
                char **grown = realloc(list->paths, sizeof *grown * (size_t)list->cap);
                if (!grown) break;
                list->paths = grown;
            }
            list->paths[list->n++] = strdup(path);
        }
    }
    closedir(d);
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* This thread's CPU time: with one BLAS thread, all the work of a stage. */
static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank on a sorted array. */
static double percentile(const double *sorted, int n, double p)
{
    int k = (int)(p * (n - 1) + 0.5);
    return sorted[k < 0 ? 0 : k >= n ? n - 1 : k];
}
