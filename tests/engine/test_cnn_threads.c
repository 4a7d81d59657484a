/*
 * One model shared by several threads, one session each (the daemon's pattern): every
 * thread must get exactly the single-threaded result, run after run. Then one session
 * whose layers are split over 2 and 3 threads (ce_set_blas_threads, the CLI's pattern):
 * the same result bit for bit (each output pixel is computed whole by one thread). Exit 77 without
 * the converted model or the photos.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capengine.h"

#define THREADS 3
#define ROUNDS 3
#define SKIP 77

static const char *const PHOTOS[] = {"dog", "horses", "person", "kite"};
#define N_PHOTOS (int)(sizeof PHOTOS / sizeof PHOTOS[0])

typedef struct {
    const ce_model *model;
    const ce_image *images;
    const ce_cnn_output *expected;
    int mismatches;
    int errors;
} job;

static int same(const ce_cnn_output *a, const ce_cnn_output *b)
{
    if (a->n_detections != b->n_detections) return 0;
    for (int i = 0; i < a->n_detections; i++) {
        const ce_detection *x = &a->detections[i], *y = &b->detections[i];
        if (x->class_id != y->class_id || x->score != y->score || x->ymin != y->ymin ||
            x->xmin != y->xmin || x->ymax != y->ymax || x->xmax != y->xmax)
            return 0;
    }
    return !memcmp(a->pooled, b->pooled, sizeof a->pooled) &&
           !memcmp(a->mid_pooled, b->mid_pooled, sizeof a->mid_pooled) &&
           !memcmp(a->class_max, b->class_max, sizeof a->class_max);
}

static void *worker(void *arg)
{
    job *j = arg;
    ce_err err;
    ce_session *s;
    if (ce_session_new(j->model, &s, &err) < 0) {
        j->errors++;
        return NULL;
    }
    ce_cnn_output *out = calloc(1, sizeof *out);
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < N_PHOTOS; i++) {
            if (ce_cnn_run(s, &j->images[i], out, &err) < 0) j->errors++;
            else if (!same(out, &j->expected[i])) j->mismatches++;
        }
    }
    free(out);
    ce_session_free(s);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_cnn_threads MODELS_DIR PHOTOS_DIR\n");
        return 2;
    }
    ce_err err;
    ce_model *model;
    int rc = ce_model_open(argv[1], 0, &model, &err);
    if (rc == -ENOENT) {
        printf("SKIP: %s\n", err.msg);
        return SKIP;
    }
    if (rc < 0) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        return 1;
    }
    ce_set_blas_threads(1); /* each worker runs its own sgemm calls, as in the daemon */
    ce_image images[N_PHOTOS];
    ce_cnn_output *expected = calloc(N_PHOTOS, sizeof *expected);
    ce_session *s;
    if (ce_session_new(model, &s, &err) < 0) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < N_PHOTOS; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.jpg", argv[2], PHOTOS[i]);
        if (ce_image_load_file(path, NULL, &images[i], &err) < 0) {
            printf("SKIP: %s\n", err.msg);
            return SKIP;
        }
        if (ce_cnn_run(s, &images[i], &expected[i], &err) < 0) {
            fprintf(stderr, "FAIL: %s: %s\n", path, err.msg);
            return 1;
        }
    }
    ce_session_free(s);

    pthread_t threads[THREADS];
    job jobs[THREADS];
    for (int t = 0; t < THREADS; t++) {
        jobs[t] = (job){model, images, expected, 0, 0};
        pthread_create(&threads[t], NULL, worker, &jobs[t]);
    }
    int bad = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        bad += jobs[t].mismatches + jobs[t].errors;
        if (jobs[t].mismatches || jobs[t].errors)
            fprintf(stderr, "thread %d: %d mismatches, %d errors\n", t, jobs[t].mismatches,
                    jobs[t].errors);
    }
    ce_cnn_output *out = calloc(1, sizeof *out);
    for (int n = 2; n <= 3; n++) {
        ce_set_blas_threads(n);
        if (ce_session_new(model, &s, &err) < 0) {
            fprintf(stderr, "FAIL: %s\n", err.msg);
            return 1;
        }
        for (int r = 0; r < ROUNDS; r++)
            for (int i = 0; i < N_PHOTOS; i++)
                if (ce_cnn_run(s, &images[i], out, &err) < 0 || !same(out, &expected[i])) {
                    fprintf(stderr, "%s split over %d threads: not the 1-thread result\n",
                            PHOTOS[i], n);
                    bad++;
                }
        ce_session_free(s);
    }
    ce_set_blas_threads(1);
    free(out);
    for (int i = 0; i < N_PHOTOS; i++) ce_image_free(&images[i]);
    free(expected);
    ce_model_close(model);
    printf("%s: %d threads x %d rounds x %d photos; one session split over 2 and 3 threads\n",
           bad ? "FAIL" : "PASS", THREADS, ROUNDS, N_PHOTOS);
    return bad ? 1 : 0;
}
