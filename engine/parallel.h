/*
 * Private to engine/: a session's helper threads for splitting one layer of one image
 * (parallel.c). ce_set_blas_threads(n) sets how many threads a forward pass uses (the
 * caller plus n - 1 helpers); at 1, no thread is ever started and ce__parallel_for runs
 * the tasks in order on the caller.
 *
 * Helpers spin briefly for the next layer, then sleep on a condition variable: on a
 * loaded machine a helper that is not scheduled costs the caller its share of the
 * tasks, never a busy wait, because the caller takes any task not yet claimed.
 */
#ifndef CAPENGINE_PARALLEL_H
#define CAPENGINE_PARALLEL_H

typedef struct ce_pool ce_pool;
typedef void ce_task_fn(void *ctx, int task);

/* The thread count ce_set_blas_threads set (>= 1). */
int ce__threads(void);
void ce__set_threads(int n);

/* A pool of n - 1 helpers; *out = NULL (and 0) for n <= 1. */
int ce__pool_new(int n, ce_pool **out);
void ce__pool_free(ce_pool *pool);
int ce__pool_size(const ce_pool *pool); /* threads including the caller; 1 for NULL */
/* fn(ctx, t) for every t in [0, n_tasks), each exactly once, on the caller and the
 * helpers; returns when all are done. pool may be NULL. */
void ce__parallel_for(ce_pool *pool, int n_tasks, ce_task_fn *fn, void *ctx);

#endif
