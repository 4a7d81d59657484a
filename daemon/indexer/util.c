/* Small helpers for the pipeline and the programs around it: time, loop handles, paths. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "capindexer.h"

static void close_handle(uv_handle_t *h, void *arg);

uint64_t cx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void cx_loop_close_handles(uv_loop_t *loop)
{
    uv_walk(loop, close_handle, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static void close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

char *cx_join_path(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    if (a + b + 2 > PATH_MAX) {
        cx_log(LOG_WARNING, "%s/%s: path too long, skipped", dir, name);
        return NULL;
    }
    char *s = malloc(a + b + 2);
    if (!s) return NULL;
    memcpy(s, dir, a);
    size_t at = a;
    if (a == 0 || dir[a - 1] != '/') s[at++] = '/';
    memcpy(s + at, name, b + 1);
    return s;
}
