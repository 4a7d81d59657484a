/*
 * The helper threads of parallel.h. One job at a time per pool (a session is used by one
 * thread): the caller publishes (fn, ctx, n_tasks) under the mutex with a new generation
 * number; every thread, the caller included, claims tasks from an atomic counter until
 * none is left; the caller then waits until every claimed task has finished. The counter
 * carries the generation in its high half, so a helper late from one job can never
 * claim a task of the next with the old job's function.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "parallel.h"

#define MAX_THREADS 16
#define SPIN 20000 /* polls of the generation before sleeping (a few tens of us) */

struct ce_pool {
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    int n_helpers;
    pthread_t helpers[MAX_THREADS];
    atomic_uint generation; /* written under lock, with the job */
    int stop;
    ce_task_fn *fn;
    void *ctx;
    int n_tasks;
    atomic_ullong claim; /* generation << 32 | next task to claim */
    atomic_int finished; /* tasks of the current job finished */
};

static atomic_int threads = 1;

int ce__threads(void) { return atomic_load(&threads); }
void ce__set_threads(int n)
{
    atomic_store(&threads, n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n);
}

/* Claims and runs tasks of job `gen` until none is left. */
static void run_tasks(ce_pool *p, unsigned gen, ce_task_fn *fn, void *ctx, int n_tasks)
{
    unsigned long long v = atomic_load(&p->claim);
    for (;;) {
        if ((unsigned)(v >> 32) != gen || (int)(v & 0xFFFFFFFFu) >= n_tasks) return;
        if (!atomic_compare_exchange_weak(&p->claim, &v, v + 1)) continue;
        fn(ctx, (int)(v & 0xFFFFFFFFu));
        v = atomic_load(&p->claim);
        if (atomic_fetch_add(&p->finished, 1) + 1 == n_tasks) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
    }
}

static void *helper(void *arg)
{
    ce_pool *p = arg;
    unsigned seen = 0;
    for (;;) {
        for (int i = 0; i < SPIN && atomic_load(&p->generation) == seen; i++)
            __builtin_ia32_pause();
        pthread_mutex_lock(&p->lock);
        while (atomic_load(&p->generation) == seen && !p->stop)
            pthread_cond_wait(&p->wake, &p->lock);
        int stop = p->stop, n_tasks = p->n_tasks;
        ce_task_fn *fn = p->fn;
        void *ctx = p->ctx;
        seen = atomic_load(&p->generation);
        pthread_mutex_unlock(&p->lock);
        if (stop) return NULL;
        run_tasks(p, seen, fn, ctx, n_tasks);
    }
}

int ce__pool_new(int n, ce_pool **out)
{
    *out = NULL;
    if (n <= 1) return 0;
    ce_pool *p = calloc(1, sizeof *p);
    if (!p) return -ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 0; i < n - 1 && i < MAX_THREADS - 1; i++) {
        if (pthread_create(&p->helpers[i], NULL, helper, p) != 0) break;
        p->n_helpers++;
    }
    *out = p;
    return 0;
}

void ce__pool_free(ce_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_helpers; i++) pthread_join(p->helpers[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

int ce__pool_size(const ce_pool *p) { return p ? p->n_helpers + 1 : 1; }

void ce__parallel_for(ce_pool *p, int n_tasks, ce_task_fn *fn, void *ctx)
{
    if (n_tasks <= 0) return;
    if (!p || p->n_helpers == 0 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t);
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->finished, 0);
    unsigned gen = atomic_fetch_add(&p->generation, 1) + 1;
    atomic_store(&p->claim, (unsigned long long)gen << 32);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    run_tasks(p, gen, fn, ctx, n_tasks);
    if (atomic_load(&p->finished) < n_tasks) {
        for (int i = 0; i < SPIN && atomic_load(&p->finished) < n_tasks; i++)
            __builtin_ia32_pause();
        pthread_mutex_lock(&p->lock);
        while (atomic_load(&p->finished) < n_tasks) pthread_cond_wait(&p->done, &p->lock);
        pthread_mutex_unlock(&p->lock);
    }
}
