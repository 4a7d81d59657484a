/* Helpers shared by the capsearch subcommands. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capprintable.h"
#include "caputf8.h"
#include "cli.h"

int cli_error(const char *fmt, ...)
{
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fputs("capsearch: ", stderr);
    /* messages quote file names: line by line through the terminal-safety rule */
    for (char *line = msg, *end; line; line = end ? end + 1 : NULL) {
        end = strchr(line, '\n');
        if (end) *end = '\0';
        cu_fputs_printable(line, stderr);
        if (end) fputc('\n', stderr);
    }
    fputc('\n', stderr);
    return EXIT_TROUBLE;
}

int cli_db_error(const capdb_err *err)
{
    cli_error("%s", err->msg);
    if (err->damaged)
        fputs("  the index is damaged; it holds nothing the photos cannot give again: delete it\n"
              "  (the file and its -wal and -shm files) and rebuild it with 'capsearch index "
              "DIR...'\n"
              "  or by restarting capsearchd\n",
              stderr);
    return EXIT_TROUBLE;
}

void cli_json_string(FILE *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    fputc('"', out);
    while (*p) {
        uint32_t cp;
        int len = cu_utf8_decode(p, 4, &cp);
        if (len == 0) {
            fputs("\\ufffd", out);
            p++;
            continue;
        }
        if (len == 2 && p[0] == 0xC2 && p[1] <= 0x9F) {
            /* C1 controls: valid JSON raw, but U+009B is CSI to some terminals */
            fprintf(out, "\\u%04x", p[1]);
            p += 2;
            continue;
        }
        if (len > 1) {
            fwrite(p, 1, (size_t)len, out);
            p += len;
            continue;
        }
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (*p < 0x20) fprintf(out, "\\u%04x", *p);
            else fputc(*p, out);
        }
        p++;
    }
    fputc('"', out);
}

void cli_print_json_error(const char *path, const char *msg)
{
    fputs("{\"file\":", stdout);
    cli_json_string(stdout, path);
    fputs(",\"error\":", stdout);
    cli_json_string(stdout, msg);
    fputs("}\n", stdout);
}

int cli_stdout_is_tty(void) { return isatty(STDOUT_FILENO) && !getenv("NO_COLOR"); }

int cli_stderr_is_tty(void) { return isatty(STDERR_FILENO); }

long cli_parse_count(const char *s)
{
    char *end;
    if (!s || !*s) return -1;
    long v = strtol(s, &end, 10);
    if (*end || v < 0) return -1;
    return v;
}

char *cli_absolute_path(const char *path)
{
    if (path[0] == '/') return strdup(path);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return NULL;
    size_t len = strlen(cwd) + strlen(path) + 2;
    char *abs = malloc(len);
    if (abs) snprintf(abs, len, "%s/%s", cwd, path);
    return abs;
}

char *cli_indexed_path(const char *path)
{
    char *real = realpath(path, NULL);
    return real ? real : cli_absolute_path(path);
}

static int stop_at_first(void *ctx, const char *path)
{
    (void)path;
    *(int *)ctx = 1;
    return 1;
}

int cli_parse_date(const char *s, int end_of_day, int64_t *out)
{
    struct tm tm = {0};
    int used = 0, y, mo, d, h = 0, mi = 0, sec = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &used) != 3 || used != 10) return -1;
    int has_time = 0;
    if (s[used] == 'T' || s[used] == ' ') {
        int used2 = 0;
        if (sscanf(s + used + 1, "%2d:%2d:%2d%n", &h, &mi, &sec, &used2) != 3 || used2 != 8)
            return -1;
        used += 1 + used2;
        has_time = 1;
    }
    if (s[used] != '\0') return -1;
    static const int DAYS[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    /* EXIF dates from 1800 on are accepted (exif.c): scanned prints are older than 1970 */
    if (y < 1800 || mo < 1 || mo > 12 || d < 1 || d > DAYS[mo - 1] || h > 23 || mi > 59 ||
        sec > 60 || h < 0 || mi < 0 || sec < 0)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (tm.tm_mday != d) return -1; /* 2023-02-30 normalised into March */
    if (!has_time && end_of_day) t += 86399;
    *out = (int64_t)t;
    return 0;
}

/* ------------------------------------------------------------------ the index */

int cli_open_db(const char *db_path, capdb **out, char *resolved, size_t size)
{
    char buf[4096];
    const char *path = db_path ? db_path : capdb_default_path(buf, sizeof buf);
    if (resolved && size) capdb_target_display(path, resolved, size);
    capdb_err err = {{0}, 0};
    int rc = capdb_open(path, CAPDB_OPEN_READONLY, out, &err);
    if (rc == -ENOENT && !capdb_is_pg_target(path))
        return cli_error("no index at %s\n"
                         "  create one with 'capsearch index DIR...', or start the daemon "
                         "(systemctl --user start capsearchd, or capsearchd)",
                         path);
    if (rc < 0) return cli_db_error(&err);
    return 0;
}

/* ------------------------------------------------------------------ results */

static void print_text_hit(FILE *out, const capdb_hit *h, int color);
static void print_json_hit(FILE *out, const capdb_hit *h);
static void put_sanitised(FILE *out, const char *s, int markers, int color);

int cli_run_query(capdb *db, const capdb_query *q, const cli_options *o, const char *exclude)
{
    capdb_results res;
    capdb_err err = {{0}, 0};
    if (o->dir_missing && q->under_dir) {
        int any = 0;
        if (capdb_foreach_path(db, q->under_dir, stop_at_first, &any, &err) < 0)
            return cli_db_error(&err);
        if (!any)
            return cli_error("--dir %s: no such folder, and nothing indexed under it",
                             q->under_dir);
    }
    int rc = capdb_search(db, q, &res, &err);
    if (rc < 0) return cli_db_error(&err);
    int color = !o->json && !o->print0 && cli_stdout_is_tty();
    int print0_raw = !isatty(STDOUT_FILENO);
    int shown = 0;
    for (int i = 0; i < res.n && shown < o->limit; i++) {
        const capdb_hit *h = &res.hits[i];
        if (exclude && strcmp(h->path, exclude) == 0) continue;
        if (o->print0) {
            /* raw bytes for xargs -0; on a terminal, made safe like any other line */
            if (print0_raw) fputs(h->path, stdout);
            else cu_fputs_printable(h->path, stdout);
            fputc('\0', stdout);
        } else if (o->json) {
            print_json_hit(stdout, h);
        } else {
            print_text_hit(stdout, h, color);
        }
        shown++;
    }
    capdb_results_free(&res);
    if (fflush(stdout) != 0 || ferror(stdout))
        return cli_error("writing results: %s", strerror(errno));
    return shown ? EXIT_MATCH : EXIT_NO_MATCH;
}

/* "0.873  /photos/beach/dog.jpg  a dog running on the beach", matched words in bold
 * on a terminal. */
static void print_text_hit(FILE *out, const capdb_hit *h, int color)
{
    fprintf(out, "%6.3f  ", h->score);
    put_sanitised(out, h->path, 0, 0);
    const char *text = h->snippet ? h->snippet : h->caption;
    if (text && *text) {
        fputs("  ", out);
        put_sanitised(out, text, h->snippet != NULL, color);
    } else if (h->tags && *h->tags) {
        /* no caption (a model without the captioner): what was detected */
        fputs("  [", out);
        put_sanitised(out, h->tags, 0, 0);
        fputc(']', out);
    }
    if (h->description && *h->description) {
        /* what a person wrote, beside ours (marked: it is theirs, not the model's) */
        fputs("  \u2014 \u201c", out);
        put_sanitised(out, h->description, 0, 0);
        fputs("\u201d", out);
    }
    fputc('\n', out);
}

/* Control bytes (a newline or an ESC in a file name) would forge lines or rewrite the
 * terminal: shown as '?' (printable.c states the rule). The snippet's \x01 / \x02
 * markers become bold on / off, or nothing. */
static void put_sanitised(FILE *out, const char *s, int markers, int color)
{
    while (*s) {
        int len = cu_printable_len(s);
        if (markers && *s == 0x01) {
            if (color) fputs("\033[1m", out);
        } else if (markers && *s == 0x02) {
            if (color) fputs("\033[0m", out);
        } else if (len > 0) {
            fwrite(s, 1, (size_t)len, out);
            s += len;
            continue;
        } else fputc('?', out);
        s++;
    }
}

static void print_json_hit(FILE *out, const capdb_hit *h)
{
    fprintf(out, "{\"score\":%.6f,\"path\":", h->score);
    cli_json_string(out, h->path);
    fputs(",\"caption\":", out);
    if (h->caption) cli_json_string(out, h->caption);
    else fputs("null", out);
    fputs(",\"tags\":", out);
    if (h->tags) cli_json_string(out, h->tags);
    else fputs("null", out);
    fprintf(out, ",\"width\":%d,\"height\":%d,\"taken_time\":", h->width, h->height);
    if (h->taken_time) fprintf(out, "%lld", (long long)h->taken_time);
    else fputs("null", out);
    fprintf(out, ",\"mtime\":%lld,\"description\":", (long long)(h->mtime_ns / 1000000000));
    if (h->description) cli_json_string(out, h->description);
    else fputs("null", out);
    fputs(",\"keywords\":[", out);
    int first = 1;
    for (const char *k = h->keywords; k && *k;) {
        const char *end = strchr(k, '\n');
        size_t n = end ? (size_t)(end - k) : strlen(k);
        char word[256];
        snprintf(word, sizeof word, "%.*s", (int)(n < sizeof word ? n : sizeof word - 1), k);
        if (!first) fputc(',', out);
        cli_json_string(out, word);
        first = 0;
        k = end ? end + 1 : k + n;
    }
    fputs("]}\n", out);
}
