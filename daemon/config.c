/*
 * capsearchd.conf: one "key = value" per line, '#' starts a comment line, blank lines
 * ignored, a value may be wrapped in double quotes (to keep leading/trailing spaces).
 *
 *   root = /srv/photos          repeatable: each adds a watched folder
 *   exclude = *.tmp             repeatable: adds a glob; "exclude =" (empty) clears the list,
 *                               defaults included (.*, @eaDir, .git, node_modules)
 *   extensions = jpg jpeg png   replaces the list (spaces or commas between)
 *   workers, batch_size, batch_ms, max_pixels, time_limit, queue_max, poll_interval,
 *   max_watches, debug_overflow_every: integers
 *   log_level = info            debug info notice warning error crit
 *   database = PATH, models = DIR
 *
 * The parser is a fuzz target: it never reads past len, accepts any bytes, and every
 * error names the source and line.
 */
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "indexer.h"

#define MAX_LINE 4096
#define MAX_LIST 1024

typedef struct {
    const char *name;
    size_t offset;          /* of an int field in cx_config */
    long min, max;
} int_key;

static const int_key INT_KEYS[] = {
    {"workers",              offsetof(cx_config, workers),              1, 256},
    {"batch_size",           offsetof(cx_config, batch_size),           1, 100000},
    {"batch_ms",             offsetof(cx_config, batch_ms),             1, 600000},
    {"time_limit",           offsetof(cx_config, time_limit_s),         1, 86400},
    {"queue_max",            offsetof(cx_config, queue_max),            1, 10000000},
    {"poll_interval",        offsetof(cx_config, poll_interval_s),      1, 86400},
    {"max_watches",          offsetof(cx_config, max_watches),          0, INT_MAX},
    {"debug_overflow_every", offsetof(cx_config, debug_overflow_every), 0, INT_MAX},
};
#define N_INT_KEYS (sizeof INT_KEYS / sizeof INT_KEYS[0])

static const char *const DEFAULT_EXCLUDES[] = {".*", "@eaDir", ".git", "node_modules"};
static const char *const DEFAULT_EXTENSIONS[] = {"jpg", "jpeg", "jpe", "png"};

static int parse_line(cx_config *cfg, char *line, const char *source, int lineno,
                      char *err, size_t err_size);
static int set_key(cx_config *cfg, const char *key, const char *value,
                   char *msg, size_t msg_size);
static int list_add(char ***list, int *n, const char *value);
static void list_free(char ***list, int *n);
static int parse_extensions(cx_config *cfg, const char *value, char *msg, size_t msg_size);
static int parse_long(const char *s, long min, long max, long *out);
static char *trim(char *s);

/* ------------------------------------------------------------------ public */

void cx_config_defaults(cx_config *cfg)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    memset(cfg, 0, sizeof *cfg);
    cfg->workers = cores > 2 ? (int)(cores / 2) : 1;
    cfg->batch_size = 64;
    cfg->batch_ms = 1000;
    cfg->max_pixels = 100000000;
    cfg->time_limit_s = 60;
    cfg->log_level = LOG_INFO;
    cfg->queue_max = 10000;
    cfg->poll_interval_s = 300;
    for (size_t i = 0; i < sizeof DEFAULT_EXCLUDES / sizeof *DEFAULT_EXCLUDES; i++)
        list_add(&cfg->excludes, &cfg->n_excludes, DEFAULT_EXCLUDES[i]);
    for (size_t i = 0; i < sizeof DEFAULT_EXTENSIONS / sizeof *DEFAULT_EXTENSIONS; i++)
        list_add(&cfg->extensions, &cfg->n_extensions, DEFAULT_EXTENSIONS[i]);
}

void cx_config_free(cx_config *cfg)
{
    list_free(&cfg->roots, &cfg->n_roots);
    list_free(&cfg->excludes, &cfg->n_excludes);
    list_free(&cfg->extensions, &cfg->n_extensions);
    free(cfg->db_path);
    free(cfg->models_dir);
    cfg->db_path = cfg->models_dir = NULL;
}

int cx_config_parse(cx_config *cfg, const char *text, size_t len, const char *source,
                    char *err, size_t err_size)
{
    char line[MAX_LINE + 1];
    size_t pos = 0;
    int lineno = 0;
    if (!source) source = "config";
    while (pos < len) {
        size_t start = pos;
        while (pos < len && text[pos] != '\n') pos++;
        size_t n = pos - start;
        lineno++;
        if (pos < len) pos++;                      /* the '\n' */
        if (n > MAX_LINE) {
            snprintf(err, err_size, "%s:%d: line longer than %d bytes", source, lineno, MAX_LINE);
            return -EINVAL;
        }
        memcpy(line, text + start, n);
        line[n] = '\0';
        if (memchr(line, '\0', n)) {
            snprintf(err, err_size, "%s:%d: NUL byte in line", source, lineno);
            return -EINVAL;
        }
        int rc = parse_line(cfg, line, source, lineno, err, err_size);
        if (rc < 0) return rc;
    }
    return 0;
}

int cx_config_load_file(cx_config *cfg, const char *path, char *err, size_t err_size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        snprintf(err, err_size, "%s: %s", path, strerror(e));
        return -e;
    }
    size_t cap = 8192, len = 0;
    char *text = malloc(cap);
    int rc = 0;
    while (text) {
        size_t got = fread(text + len, 1, cap - len, f);
        len += got;
        if (len < cap) break;
        if (cap >= (size_t)16 << 20) {
            snprintf(err, err_size, "%s: larger than 16 MiB", path);
            rc = -EFBIG;
            break;
        }
        char *bigger = realloc(text, cap * 2);
        if (!bigger) { free(text); text = NULL; break; }
        text = bigger;
        cap *= 2;
    }
    if (!text) {
        snprintf(err, err_size, "%s: out of memory", path);
        rc = -ENOMEM;
    } else if (rc == 0 && ferror(f)) {
        snprintf(err, err_size, "%s: read error", path);
        rc = -EIO;
    }
    fclose(f);
    if (rc == 0) rc = cx_config_parse(cfg, text, len, path, err, err_size);
    free(text);
    return rc;
}

int cx_config_set(cx_config *cfg, const char *key, const char *value, char *err, size_t err_size)
{
    char msg[CX_CONFIG_ERR_MAX];
    int rc = set_key(cfg, key, value, msg, sizeof msg);
    if (rc < 0) snprintf(err, err_size, "--%s: %s", key, msg);
    return rc;
}

const char *cx_config_default_path(char *buf, size_t size)
{
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    if (geteuid() == 0 || (!xdg && !home))
        snprintf(buf, size, "/etc/capsearch/capsearchd.conf");
    else if (xdg && xdg[0] == '/')
        snprintf(buf, size, "%s/capsearch/capsearchd.conf", xdg);
    else
        snprintf(buf, size, "%s/.config/capsearch/capsearchd.conf", home);
    return buf;
}

int cx_config_wants_dir(const cx_config *cfg, const char *name, const char *path)
{
    for (int i = 0; i < cfg->n_excludes; i++) {
        const char *glob = cfg->excludes[i];
        const char *subject = strchr(glob, '/') ? path : name;
        if (fnmatch(glob, subject, 0) == 0) return 0;
    }
    return 1;
}

int cx_config_wants_file(const cx_config *cfg, const char *name, const char *path)
{
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name || !cx_config_wants_dir(cfg, name, path)) return 0;
    for (int i = 0; i < cfg->n_extensions; i++)
        if (!strcasecmp(dot + 1, cfg->extensions[i])) return 1;
    return 0;
}

int cx_config_wants_path(const cx_config *cfg, const char *path)
{
    /* the components below the root that holds it; a path under no root (indexed by
     * `capsearch index`) is judged on all its components but the first */
    size_t skip = 0;
    for (int i = 0; i < cfg->n_roots; i++) {
        size_t n = strlen(cfg->roots[i]);
        if (!strncmp(path, cfg->roots[i], n) && (path[n] == '/' || path[n] == '\0') && n > skip)
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
            if (!cx_config_wants_dir(cfg, name, path)) return 0;
            p = end;
        } else {
            return cx_config_wants_file(cfg, name, path);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ helpers */

static int parse_line(cx_config *cfg, char *line, const char *source, int lineno,
                      char *err, size_t err_size)
{
    char msg[CX_CONFIG_ERR_MAX];
    char *s = trim(line);
    if (*s == '\0' || *s == '#' || *s == ';') return 0;
    char *eq = strchr(s, '=');
    if (!eq) {
        snprintf(err, err_size, "%s:%d: expected 'key = value'", source, lineno);
        return -EINVAL;
    }
    *eq = '\0';
    char *key = trim(s), *value = trim(eq + 1);
    size_t vlen = strlen(value);
    if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
        value[vlen - 1] = '\0';
        value++;
    } else if (value[0] == '"') {
        snprintf(err, err_size, "%s:%d: unterminated quote", source, lineno);
        return -EINVAL;
    }
    int rc = set_key(cfg, key, value, msg, sizeof msg);
    if (rc < 0) snprintf(err, err_size, "%s:%d: %s", source, lineno, msg);
    return rc;
}

static int set_key(cx_config *cfg, const char *key, const char *value,
                   char *msg, size_t msg_size)
{
    long v;
    for (size_t i = 0; i < N_INT_KEYS; i++) {
        if (strcmp(key, INT_KEYS[i].name)) continue;
        if (parse_long(value, INT_KEYS[i].min, INT_KEYS[i].max, &v) < 0) {
            snprintf(msg, msg_size, "%s: expected an integer in %ld..%ld, got '%.64s'",
                     key, INT_KEYS[i].min, INT_KEYS[i].max, value);
            return -EINVAL;
        }
        *(int *)((char *)cfg + INT_KEYS[i].offset) = (int)v;
        return 0;
    }
    if (!strcmp(key, "max_pixels")) {
        if (parse_long(value, 1, LONG_MAX, &v) < 0) {
            snprintf(msg, msg_size, "max_pixels: expected a positive integer, got '%.64s'", value);
            return -EINVAL;
        }
        cfg->max_pixels = v;
        return 0;
    }
    if (!strcmp(key, "root")) {
        if (value[0] != '/') {
            snprintf(msg, msg_size, "root: '%.200s' is not an absolute path", value);
            return -EINVAL;
        }
        if (cfg->n_roots >= MAX_LIST) {
            snprintf(msg, msg_size, "root: more than %d roots", MAX_LIST);
            return -EINVAL;
        }
        /* "/a/b/" and "/a/b" are the same root; keep "/" itself */
        char buf[PATH_MAX];
        size_t n = strlen(value);
        if (n >= sizeof buf) {
            snprintf(msg, msg_size, "root: path too long");
            return -ENAMETOOLONG;
        }
        memcpy(buf, value, n + 1);
        while (n > 1 && buf[n - 1] == '/') buf[--n] = '\0';
        for (int i = 0; i < cfg->n_roots; i++)
            if (!strcmp(cfg->roots[i], buf)) return 0;
        return list_add(&cfg->roots, &cfg->n_roots, buf);
    }
    if (!strcmp(key, "exclude")) {
        if (value[0] == '\0') {
            list_free(&cfg->excludes, &cfg->n_excludes);
            return 0;
        }
        if (cfg->n_excludes >= MAX_LIST) {
            snprintf(msg, msg_size, "exclude: more than %d globs", MAX_LIST);
            return -EINVAL;
        }
        return list_add(&cfg->excludes, &cfg->n_excludes, value);
    }
    if (!strcmp(key, "extensions"))
        return parse_extensions(cfg, value, msg, msg_size);
    if (!strcmp(key, "log_level")) {
        int level = cx_log_parse_level(value);
        if (level < 0) {
            snprintf(msg, msg_size, "log_level: unknown level '%.64s' "
                     "(debug, info, notice, warning, error, crit)", value);
            return -EINVAL;
        }
        cfg->log_level = level;
        return 0;
    }
    if (!strcmp(key, "database") || !strcmp(key, "models")) {
        char **field = key[0] == 'd' ? &cfg->db_path : &cfg->models_dir;
        if (value[0] == '\0') {
            snprintf(msg, msg_size, "%s: empty path", key);
            return -EINVAL;
        }
        char *copy = strdup(value);
        if (!copy) return -ENOMEM;
        free(*field);
        *field = copy;
        return 0;
    }
    snprintf(msg, msg_size, "unknown key '%.64s'", key);
    return -EINVAL;
}

static int parse_extensions(cx_config *cfg, const char *value, char *msg, size_t msg_size)
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
            snprintf(msg, msg_size, "extensions: too many or too long (max 64 of 16 bytes)");
            list_free(&list, &n);
            return -EINVAL;
        }
        char ext[17];
        for (size_t i = 0; i < len; i++) {
            char c = start[i];
            ext[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        ext[len] = '\0';
        if (list_add(&list, &n, ext) < 0) {
            list_free(&list, &n);
            return -ENOMEM;
        }
    }
    if (n == 0) {
        snprintf(msg, msg_size, "extensions: empty list");
        return -EINVAL;
    }
    list_free(&cfg->extensions, &cfg->n_extensions);
    cfg->extensions = list;
    cfg->n_extensions = n;
    return 0;
}

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

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    if (!*s) return -1;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max) return -1;
    *out = v;
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\r') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = '\0';
    return s;
}
