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
 *   write_xmp = no              yes: each caption also goes into the image's XMP sidecar
 *   database = PATH, models = DIR
 *                               PATH may be a PostgreSQL URI (postgresql://...): a
 *                               shared index that several nodes fill
 *   cnn = float                 int8: the CNN's 1x1 convolutions in int8 and the decoder's
 *                               steps in bfloat16 (AVX-512 VNNI and BF16 CPUs; elsewhere a
 *                               warning and float, or on a shared index an error)
 *   role = all                  on a shared index: all, scan (watch and queue only) or
 *                               caption (caption what the nodes queue; watch nothing)
 *   node = NAME                 this node's name among them (default: the host name)
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

#include "config.h"

#define MAX_LINE 4096

typedef struct {
    const char *name;
    size_t offset; /* of an int field in cd_config */
    long min, max;
} int_key;

static const int_key INT_KEYS[] = {
    {"workers", offsetof(cd_config, index.workers), 1, 256},
    {"batch_size", offsetof(cd_config, index.batch_size), 1, 100000},
    {"batch_ms", offsetof(cd_config, index.batch_ms), 1, 600000},
    {"time_limit", offsetof(cd_config, index.time_limit_s), 1, 86400},
    {"queue_max", offsetof(cd_config, index.queue_max), 1, 10000000},
    {"poll_interval", offsetof(cd_config, poll_interval_s), 1, 86400},
    {"max_watches", offsetof(cd_config, max_watches), 0, INT_MAX},
    {"debug_overflow_every", offsetof(cd_config, debug_overflow_every), 0, INT_MAX},
};
#define N_INT_KEYS (sizeof INT_KEYS / sizeof INT_KEYS[0])

static int parse_line(cd_config *cfg, char *line, const char *source, int lineno, cx_err *err);
static int set_key(cd_config *cfg, const char *key, const char *value, cx_err *err);
static int parse_long(const char *s, long min, long max, long *out);
static char *trim(char *s);

/* ------------------------------------------------------------------ public */

void cd_config_defaults(cd_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cx_settings_defaults(&cfg->index);
    cfg->log_level = LOG_INFO;
    cfg->poll_interval_s = 300;
}

void cd_config_free(cd_config *cfg)
{
    cx_settings_free(&cfg->index);
    free(cfg->db_path);
    free(cfg->node_name);
    cfg->node_name = NULL;
    free(cfg->models_dir);
    cfg->db_path = cfg->models_dir = NULL;
}

int cd_config_parse(cd_config *cfg, const char *text, size_t len, const char *source, cx_err *err)
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
        if (pos < len) pos++; /* the '\n' */
        if (n > MAX_LINE) {
            return cx_fail(err, -EINVAL, "%s:%d: line longer than %d bytes", source, lineno,
                           MAX_LINE);
        }
        memcpy(line, text + start, n);
        line[n] = '\0';
        if (memchr(line, '\0', n)) {
            return cx_fail(err, -EINVAL, "%s:%d: NUL byte in line", source, lineno);
        }
        int rc = parse_line(cfg, line, source, lineno, err);
        if (rc < 0) return rc;
    }
    return 0;
}

int cd_config_load_file(cd_config *cfg, const char *path, cx_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return cx_fail(err, -e, "%s: %s", path, strerror(e));
    }
    size_t cap = 8192, len = 0;
    char *text = malloc(cap);
    int rc = 0;
    while (text) {
        size_t got = fread(text + len, 1, cap - len, f);
        len += got;
        if (len < cap) break;
        if (cap >= (size_t)16 << 20) {
            rc = cx_fail(err, -EFBIG, "%s: larger than 16 MiB", path);
            break;
        }
        char *bigger = realloc(text, cap * 2);
        if (!bigger) {
            free(text);
            text = NULL;
            break;
        }
        text = bigger;
        cap *= 2;
    }
    if (!text) {
        rc = cx_fail(err, -ENOMEM, "%s: out of memory", path);
    } else if (rc == 0 && ferror(f)) {
        rc = cx_fail(err, -EIO, "%s: read error", path);
    }
    fclose(f);
    if (rc == 0) rc = cd_config_parse(cfg, text, len, path, err);
    free(text);
    return rc;
}

int cd_config_set(cd_config *cfg, const char *key, const char *value, cx_err *err)
{
    cx_err inner;
    int rc = set_key(cfg, key, value, &inner);
    if (rc < 0) cx_fail(err, rc, "--%s: %s", key, inner.msg);
    return rc;
}

const char *cd_config_default_path(char *buf, size_t size)
{
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    if (geteuid() == 0 || (!xdg && !home)) snprintf(buf, size, "/etc/capsearch/capsearchd.conf");
    else if (xdg && xdg[0] == '/') snprintf(buf, size, "%s/capsearch/capsearchd.conf", xdg);
    else snprintf(buf, size, "%s/.config/capsearch/capsearchd.conf", home);
    return buf;
}

/* ------------------------------------------------------------------ helpers */

static int parse_line(cd_config *cfg, char *line, const char *source, int lineno, cx_err *err)
{
    char *s = trim(line);
    if (*s == '\0' || *s == '#' || *s == ';') return 0;
    char *eq = strchr(s, '=');
    if (!eq) { return cx_fail(err, -EINVAL, "%s:%d: expected 'key = value'", source, lineno); }
    *eq = '\0';
    char *key = trim(s), *value = trim(eq + 1);
    size_t vlen = strlen(value);
    if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
        value[vlen - 1] = '\0';
        value++;
    } else if (value[0] == '"') {
        return cx_fail(err, -EINVAL, "%s:%d: unterminated quote", source, lineno);
    }
    cx_err inner;
    int rc = set_key(cfg, key, value, &inner);
    if (rc < 0) cx_fail(err, rc, "%s:%d: %s", source, lineno, inner.msg);
    return rc;
}

static int set_key(cd_config *cfg, const char *key, const char *value, cx_err *err)
{
    long v;
    int rc;
    for (size_t i = 0; i < N_INT_KEYS; i++) {
        if (strcmp(key, INT_KEYS[i].name)) continue;
        if (parse_long(value, INT_KEYS[i].min, INT_KEYS[i].max, &v) < 0)
            return cx_fail(err, -EINVAL, "%s: expected an integer in %ld..%ld, got '%.64s'", key,
                           INT_KEYS[i].min, INT_KEYS[i].max, value);
        *(int *)((char *)cfg + INT_KEYS[i].offset) = (int)v;
        return 0;
    }
    if (!strcmp(key, "max_pixels")) {
        if (parse_long(value, 1, LONG_MAX, &v) < 0)
            return cx_fail(err, -EINVAL, "max_pixels: expected a positive integer, got '%.64s'",
                           value);
        cfg->index.max_pixels = v;
        return 0;
    }
    if (!strcmp(key, "root") || !strcmp(key, "exclude") || !strcmp(key, "extensions")) {
        cx_err inner;
        if (!strcmp(key, "root")) rc = cx_settings_add_root(&cfg->index, value, &inner);
        else if (!strcmp(key, "exclude")) rc = cx_settings_add_exclude(&cfg->index, value, &inner);
        else rc = cx_settings_set_extensions(&cfg->index, value, &inner);
        if (rc < 0) cx_fail(err, rc, "%s: %s", key, inner.msg);
        return rc;
    }
    if (!strcmp(key, "write_xmp")) {
        if (!strcmp(value, "yes") || !strcmp(value, "true") || !strcmp(value, "1"))
            cfg->index.write_xmp = 1;
        else if (!strcmp(value, "no") || !strcmp(value, "false") || !strcmp(value, "0"))
            cfg->index.write_xmp = 0;
        else return cx_fail(err, -EINVAL, "write_xmp: expected yes or no, got '%.64s'", value);
        return 0;
    }
    if (!strcmp(key, "log_level")) {
        int level = cx_log_parse_level(value);
        if (level < 0)
            return cx_fail(err, -EINVAL,
                           "log_level: unknown level '%.64s' "
                           "(debug, info, notice, warning, error, crit)",
                           value);
        cfg->log_level = level;
        return 0;
    }
    if (!strcmp(key, "cnn")) {
        if (!strcmp(value, "float")) cfg->cnn_int8 = 0;
        else if (!strcmp(value, "int8")) cfg->cnn_int8 = 1;
        else return cx_fail(err, -EINVAL, "cnn: expected float or int8, got '%.64s'", value);
        return 0;
    }
    if (!strcmp(key, "role")) {
        int role = cx_role_parse(value);
        if (role < 0)
            return cx_fail(err, -EINVAL, "role: expected all, scan or caption, got '%.64s'",
                           value);
        cfg->role = role;
        return 0;
    }
    if (!strcmp(key, "node")) {
        /* a name other nodes and `capsearch status` show: printable, no spaces */
        if (!value[0] || strlen(value) > 64)
            return cx_fail(err, -EINVAL, "node: expected a name of 1 to 64 characters");
        for (const char *c = value; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '-' || *c == '_' || *c == '.'))
                return cx_fail(err, -EINVAL,
                               "node: '%.64s' has a character other than letters, digits, "
                               "'-', '_' and '.'",
                               value);
        char *copy = strdup(value);
        if (!copy) return cx_fail(err, -ENOMEM, "out of memory");
        free(cfg->node_name);
        cfg->node_name = copy;
        return 0;
    }
    if (!strcmp(key, "database") || !strcmp(key, "models")) {
        char **field = key[0] == 'd' ? &cfg->db_path : &cfg->models_dir;
        if (value[0] == '\0') return cx_fail(err, -EINVAL, "%s: empty path", key);
        char *copy = strdup(value);
        if (!copy) return cx_fail(err, -ENOMEM, "out of memory");
        free(*field);
        *field = copy;
        return 0;
    }
    return cx_fail(err, -EINVAL, "unknown key '%.64s'", key);
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
