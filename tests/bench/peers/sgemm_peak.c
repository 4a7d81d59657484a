/* Measures the machine's practical float32 limit: OpenBLAS cblas_sgemm on large square
 * matrices, with 1 and 2 threads (or the counts given). Dev tooling for
 * tests/bench/peers/run.sh: the peers table compares every CNN's GFLOP/s against it.
 *
 * usage: sgemm_peak [N] [THREADS...]   (default N = 2048, threads 1 2)
 * prints `RESULT sgemm threads=T n=N gflops=G` per thread count (best of the repeats). */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { REPEATS = 7 };

static int parse_positive(const char *s, int *out);
static double best_gflops(int n, const float *a, const float *b, float *c);
static double now_s(void);

int main(int argc, char **argv)
{
    int n = 2048;
    if (argc > 1 && parse_positive(argv[1], &n) != 0) {
        fprintf(stderr, "sgemm_peak: bad size '%s'\n", argv[1]);
        return 2;
    }
    int default_threads[] = {1, 2};
    int nthreads = argc > 2 ? argc - 2 : 2;

    size_t count = (size_t)n * (size_t)n;
    float *a = malloc(count * sizeof *a);
    float *b = malloc(count * sizeof *b);
    float *c = malloc(count * sizeof *c);
    if (!a || !b || !c) {
        fprintf(stderr, "sgemm_peak: %s\n", strerror(ENOMEM));
        free(a), free(b), free(c);
        return 1;
    }
    /* Values in [-1, 1): no denormals, no overflow, nothing sgemm could shortcut. */
    unsigned x = 12345u;
    for (size_t i = 0; i < count; i++) {
        x = x * 1664525u + 1013904223u;
        a[i] = (float)(x >> 8) / 8388608.0f - 1.0f;
        x = x * 1664525u + 1013904223u;
        b[i] = (float)(x >> 8) / 8388608.0f - 1.0f;
    }

    int rc = 0;
    for (int i = 0; i < nthreads; i++) {
        int threads = default_threads[i % 2];
        if (argc > 2 && parse_positive(argv[i + 2], &threads) != 0) {
            fprintf(stderr, "sgemm_peak: bad thread count '%s'\n", argv[i + 2]);
            rc = 2;
            break;
        }
        openblas_set_num_threads(threads);
        printf("RESULT sgemm threads=%d n=%d gflops=%.2f\n", threads, n, best_gflops(n, a, b, c));
        fflush(stdout);
    }
    free(a), free(b), free(c);
    return rc;
}

/* Best, not median: the peak is what the cores can do when nothing else runs on them. */
static double best_gflops(int n, const float *a, const float *b, float *c)
{
    double flops = 2.0 * (double)n * (double)n * (double)n;
    double best = 0.0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    for (int r = 0; r < REPEATS; r++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        double g = flops / (now_s() - t0) / 1e9;
        if (g > best) best = g;
    }
    return best;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int parse_positive(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 1 || v > 65536) return -EINVAL;
    *out = (int)v;
    return 0;
}
