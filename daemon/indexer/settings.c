/*
 * What to index (roots, exclude globs, extensions) and the pipeline's limits; the filters
 * the walk, the watcher and the vanished pass apply. capsearchd's config file and
 * `capsearch index`'s flags both end up here.
 */
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "capindexer.h"

static const char *const DEFAULT_EXCLUDES[] = {".*", "@eaDir", ".git", "node_modules"};
/* Every format the engine reads (engine/image.c picks the decoder by content; these
 * only say which names are worth opening): JPEG, PNG, HEIC/HEIF, AVIF, WebP, TIFF, GIF
 * and the camera RAW extensions LibRaw reads. */
static const char *const DEFAULT_EXTENSIONS[] = {
    "jpg", "jpeg", "jpe", "png", "heic", "heif", "hif", "avif", "webp", "tif", "tiff", "gif",
    "dng", "cr2",  "cr3", "crw", "nef",  "nrw",  "arw", "srf",  "sr2",  "orf", "rw2",  "raf",
    "pef", "srw",  "x3f", "mrw", "3fr",  "erf",  "kdc", "mef",  "mos",  "iiq", "rwl"};

static int list_add(char ***list, int *n, const char *value);
static void list_free(char ***list, int *n);

void cx_settings_defaults(cx_settings *s)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    memset(s, 0, sizeof *s);
    s->workers = cores > 2 ? (int)(cores / 2) : 1;
    s->batch_size = 64;
    s->batch_ms = 1000;
    s->max_pixels = 100000000;
    s->time_limit_s = 60;
    s->queue_max = 10000;
    for (size_t i = 0; i < sizeof DEFAULT_EXCLUDES / sizeof *DEFAULT_EXCLUDES; i++)
        list_add(&s->excludes, &s->n_excludes, DEFAULT_EXCLUDES[i]);
    for (size_t i = 0; i < sizeof DEFAULT_EXTENSIONS / sizeof *DEFAULT_EXTENSIONS; i++)
        list_add(&s->extensions, &s->n_extensions, DEFAULT_EXTENSIONS[i]);
}

void cx_settings_free(cx_settings *s)
{
    list_free(&s->roots, &s->n_roots);
    list_free(&s->excludes, &s->n_excludes);
    list_free(&s->extensions, &s->n_extensions);
}

int cx_settings_add_root(cx_settings *s, const char *path, cx_err *err)
{
    if (path[0] != '/') return cx_fail(err, -EINVAL, "'%.200s' is not an absolute path", path);
    if (s->n_roots >= CX_MAX_LIST) return cx_fail(err, -EINVAL, "more than %d roots", CX_MAX_LIST);
    /* "/a/b/" and "/a/b" are the same root; keep "/" itself */
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof buf) return cx_fail(err, -ENAMETOOLONG, "path too long");
    memcpy(buf, path, n + 1);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = '\0';
    for (int i = 0; i < s->n_roots; i++)
        if (!strcmp(s->roots[i], buf)) return 0;
    return list_add(&s->roots, &s->n_roots, buf) < 0 ? cx_fail(err, -ENOMEM, "out of memory") : 0;
}

int cx_settings_add_exclude(cx_settings *s, const char *glob, cx_err *err)
{
    if (glob[0] == '\0') {
        list_free(&s->excludes, &s->n_excludes);
        return 0;
    }
    if (s->n_excludes >= CX_MAX_LIST)
        return cx_fail(err, -EINVAL, "more than %d globs", CX_MAX_LIST);
    return list_add(&s->excludes, &s->n_excludes, glob) < 0 ? cx_fail(err, -ENOMEM, "out of memory")
                                                            : 0;
}

int cx_settings_set_extensions(cx_settings *s, const char *value, cx_err *err)
{
    char **list = NULL;
    int n = 0;
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '.') p++;
        const char *start = p;
        while (*p && *p != ' ' && *p != ',' && *p != '\t') p++;
        size_t len = (size_t)(p - start);
        if (len == 0) continue;
        if (len > 16 || n >= 64) {
            list_free(&list, &n);
            return cx_fail(err, -EINVAL, "too many or too long (max 64 of 16 bytes)");
        }
        char ext[17];
        for (size_t i = 0; i < len; i++) {
            char c = start[i];
            ext[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        ext[len] = '\0';
        if (list_add(&list, &n, ext) < 0) {
            list_free(&list, &n);
            return cx_fail(err, -ENOMEM, "out of memory");
        }
    }
    if (n == 0) return cx_fail(err, -EINVAL, "empty list");
    list_free(&s->extensions, &s->n_extensions);
    s->extensions = list;
    s->n_extensions = n;
    return 0;
}

int cx_wants_dir(const cx_settings *s, const char *name, const char *path)
{
    for (int i = 0; i < s->n_excludes; i++) {
        const char *glob = s->excludes[i];
        const char *subject = strchr(glob, '/') ? path : name;
        if (fnmatch(glob, subject, 0) == 0) return 0;
    }
    return 1;
}

int cx_wants_file(const cx_settings *s, const char *name, const char *path)
{
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name || !cx_wants_dir(s, name, path)) return 0;
    for (int i = 0; i < s->n_extensions; i++)
        if (!strcasecmp(dot + 1, s->extensions[i])) return 1;
    return 0;
}

int cx_wants_path(const cx_settings *s, const char *path)
{
    /* the components below the root that holds it; a path under no root (indexed by
     * `capsearch index`) is judged on all its components but the first */
    size_t skip = 0;
    for (int i = 0; i < s->n_roots; i++) {
        size_t n = strlen(s->roots[i]);
        if (!strncmp(path, s->roots[i], n) && (path[n] == '/' || path[n] == '\0') && n > skip)
            skip = n;
    }
    const char *p = path + skip;
    while (*p) {
        while (*p == '/') p++;
        const char *end = strchr(p, '/');
        if (!*p) break;
        char name[NAME_MAX + 1];
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > NAME_MAX) return 0;
        memcpy(name, p, n);
        name[n] = '\0';
        if (end) {
            if (!cx_wants_dir(s, name, path)) return 0;
            p = end;
        } else {
            return cx_wants_file(s, name, path);
        }
    }
    return 0;
}

int cx_threadpool_size(int workers) { return 2 * (workers > 0 ? workers : 1) + 5; }

static int list_add(char ***list, int *n, const char *value)
{
    char *copy = strdup(value);
    char **bigger = realloc(*list, sizeof **list * (size_t)(*n + 1));
    if (!copy || !bigger) {
        free(copy);
        if (bigger) *list = bigger;
        return -ENOMEM;
    }
    bigger[(*n)++] = copy;
    *list = bigger;
    return 0;
}

static void list_free(char ***list, int *n)
{
    for (int i = 0; i < *n; i++) free((*list)[i]);
    free(*list);
    *list = NULL;
    *n = 0;
}
