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

#include "cli.h"
#include "indexer.h"

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
        cx_fputs_printable(line, stderr);
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
              "  (the file and its -wal and -shm files) and rebuild it with 'capsearch index DIR...'\n"
              "  or by restarting capsearchd\n", stderr);
    return EXIT_TROUBLE;
}

/* Length of the valid UTF-8 sequence starting at s, or 0 when it is not one. */
static int utf8_sequence_length(const unsigned char *s)
{
    int len;
    uint32_t cp;
    if (s[0] < 0x80) return 1;
    else if ((s[0] & 0xE0) == 0xC0) { len = 2; cp = s[0] & 0x1F; }
    else if ((s[0] & 0xF0) == 0xE0) { len = 3; cp = s[0] & 0x0F; }
    else if ((s[0] & 0xF8) == 0xF0) { len = 4; cp = s[0] & 0x07; }
    else return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    /* reject overlong forms, surrogates and values past U+10FFFF */
    static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_len[len] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return 0;
    return len;
}

void cli_json_string(FILE *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    fputc('"', out);
    while (*p) {
        int len = utf8_sequence_length(p);
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
        case '"':  fputs("\\\"", out); break;
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

int cli_stdout_is_tty(void)
{
    return isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
}

int cli_stderr_is_tty(void)
{
    return isatty(STDERR_FILENO);
}

long cli_parse_count(const char *s)
{
    char *end;
    if (!s || !*s) return -1;
    long v = strtol(s, &end, 10);
    if (*end || v < 0) return -1;
    return v;
}

/* ------------------------------------------------------------------ search options */

enum { OPT_DB = 256, OPT_DIR, OPT_SINCE, OPT_UNTIL, OPT_MODELS };

static const struct option SEARCH_OPTIONS[] = {
    {"limit",  required_argument, NULL, 'n'},
    {"json",   no_argument,       NULL, 'j'},
    {"print0", no_argument,       NULL, '0'},
    {"db",     required_argument, NULL, OPT_DB},
    {"dir",    required_argument, NULL, OPT_DIR},
    {"since",  required_argument, NULL, OPT_SINCE},
    {"until",  required_argument, NULL, OPT_UNTIL},
    {"models", required_argument, NULL, OPT_MODELS},
    {"help",   no_argument,       NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static char *absolute_dir(const char *dir, int *missing);
static int stop_at_first(void *ctx, const char *path);

int cli_parse_search_options(int argc, char **argv, cli_search_options *o,
                             void (*usage)(FILE *out))
{
    memset(o, 0, sizeof *o);
    o->limit = 20;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "n:j0h", SEARCH_OPTIONS, NULL)) != -1) {
        long n;
        switch (c) {
        case 'n':
            n = cli_parse_count(optarg);
            if (n < 1 || n > 100000) {
                cli_error("--limit wants a number from 1 to 100000, not '%s'", optarg);
                return -1;
            }
            o->limit = (int)n;
            break;
        case 'j': o->json = 1; break;
        case '0': o->print0 = 1; break;
        case OPT_DB: o->db_path = optarg; break;
        case OPT_MODELS: o->models_dir = optarg; break;
        case OPT_DIR:
            free(o->under_dir);
            if (!(o->under_dir = absolute_dir(optarg, &o->dir_missing))) {
                cli_error("--dir %s: %s", optarg, errno == ENOTDIR ? "not a folder" : strerror(errno));
                return -1;
            }
            break;
        case OPT_SINCE:
        case OPT_UNTIL:
            if (cli_parse_date(optarg, c == OPT_UNTIL, c == OPT_SINCE ? &o->since : &o->until)) {
                cli_error("%s wants a date from 1800-01-01 to 9999-12-31 like 2024-07-31 or "
                          "2024-07-31T18:30:00, not '%s'", c == OPT_SINCE ? "--since" : "--until",
                          optarg);
                return -1;
            }
            if (c == OPT_SINCE) o->has_since = 1;
            else o->has_until = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            if (optopt && optopt < 256)
                cli_error("unknown option '-%c' (a query word starting with '-' goes after '--')",
                          optopt);
            else
                cli_error("unknown or incomplete option '%s' (a query word starting with '-' "
                          "goes after '--')", argv[optind - 1]);
            return -1;
        }
    }
    if (o->json && o->print0) {
        cli_error("--json and --print0 exclude each other");
        return -1;
    }
    return optind;
}

void cli_search_options_free(cli_search_options *o)
{
    free(o->under_dir);
    o->under_dir = NULL;
}

void cli_print_search_options_help(FILE *out)
{
    fputs("  -n, --limit N     show at most N results (default 20)\n"
          "  -j, --json        one JSON object per result (JSON Lines)\n"
          "  -0, --print0      print only paths, each followed by a NUL (for xargs -0)\n"
          "      --dir DIR     only images under DIR\n"
          "      --since DATE  only images taken (else modified) on or after DATE\n"
          "      --until DATE  ... on or before DATE (YYYY-MM-DD[THH:MM:SS], UTC)\n"
          "      --db PATH     the index database (default: $CAPSEARCH_DB, the per-user\n"
          "                    index, then /var/lib/capsearch/index.db)\n"
          "      --models DIR  model folder (default: $CAPSEARCH_MODELS or the installed one)\n"
          "  -h, --help        show this help\n", out);
}

/* --dir names a folder as the index stores it: absolute, symlinks resolved. A file is
 * refused (ENOTDIR). A folder that no longer exists stays a valid filter (its rows linger
 * until `capsearch prune`): *missing is set, and cli_run_query refuses it only when
 * nothing is indexed under it either, so that a typo is not answered "nothing found". */
static char *absolute_dir(const char *dir, int *missing)
{
    struct stat st;
    *missing = 0;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            errno = ENOTDIR;
            return NULL;
        }
        return realpath(dir, NULL);
    }
    if (errno != ENOENT) return NULL;
    *missing = 1;
    if (dir[0] == '/') return strdup(dir);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return NULL;
    size_t len = strlen(cwd) + strlen(dir) + 2;
    char *abs = malloc(len);
    if (abs) snprintf(abs, len, "%s/%s", cwd, dir);
    return abs;
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
    if (tm.tm_mday != d) return -1;   /* 2023-02-30 normalised into March */
    if (!has_time && end_of_day) t += 86399;
    *out = (int64_t)t;
    return 0;
}

/* ------------------------------------------------------------------ the index */

int cli_open_db(const char *db_path, capdb **out, char *resolved, size_t size)
{
    char buf[4096];
    const char *path = db_path ? db_path : capdb_default_path(buf, sizeof buf);
    if (resolved && size) snprintf(resolved, size, "%s", path);
    capdb_err err = {{0}, 0};
    int rc = capdb_open(path, CAPDB_OPEN_READONLY, out, &err);
    if (rc == -ENOENT)
        return cli_error("no index at %s\n"
                         "  create one with 'capsearch index DIR...', or start the daemon "
                         "(systemctl --user start capsearchd, or capsearchd)", path);
    if (rc < 0) return cli_db_error(&err);
    return 0;
}

/* ------------------------------------------------------------------ results */

static void print_text_hit(FILE *out, const capdb_hit *h, int color);
static void print_json_hit(FILE *out, const capdb_hit *h);
static void put_sanitised(FILE *out, const char *s, int markers, int color);

int cli_run_query(capdb *db, const capdb_query *q, const cli_search_options *o,
                  const char *exclude)
{
    capdb_results res;
    capdb_err err = {{0}, 0};
    if (o->dir_missing && q->under_dir) {
        int any = 0;
        if (capdb_foreach_path(db, q->under_dir, stop_at_first, &any, &err) < 0)
            return cli_db_error(&err);
        if (!any) return cli_error("--dir %s: no such folder, and nothing indexed under it",
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
            else cx_fputs_printable(h->path, stdout);
            fputc('\0', stdout);
        } else if (o->json) {
            print_json_hit(stdout, h);
        } else {
            print_text_hit(stdout, h, color);
        }
        shown++;
    }
    capdb_results_free(&res);
    if (fflush(stdout) != 0 || ferror(stdout)) return cli_error("writing results: %s", strerror(errno));
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
    fputc('\n', out);
}

/* Control bytes (a newline or an ESC in a file name) would forge lines or rewrite the
 * terminal: shown as '?' (printable.c states the rule). The snippet's \x01 / \x02
 * markers become bold on / off, or nothing. */
static void put_sanitised(FILE *out, const char *s, int markers, int color)
{
    while (*s) {
        int len = cx_printable_len(s);
        if (markers && *s == 0x01) { if (color) fputs("\033[1m", out); }
        else if (markers && *s == 0x02) { if (color) fputs("\033[0m", out); }
        else if (len > 0) { fwrite(s, 1, (size_t)len, out); s += len; continue; }
        else fputc('?', out);
        s++;
    }
}

static void print_json_hit(FILE *out, const capdb_hit *h)
{
    fprintf(out, "{\"score\":%.6f,\"path\":", h->score);
    cli_json_string(out, h->path);
    fputs(",\"caption\":", out);
    if (h->caption) cli_json_string(out, h->caption); else fputs("null", out);
    fputs(",\"tags\":", out);
    if (h->tags) cli_json_string(out, h->tags); else fputs("null", out);
    fprintf(out, ",\"width\":%d,\"height\":%d,\"taken_time\":", h->width, h->height);
    if (h->taken_time) fprintf(out, "%lld", (long long)h->taken_time); else fputs("null", out);
    fprintf(out, ",\"mtime\":%lld}\n", (long long)(h->mtime_ns / 1000000000));
}

int cli_open_engine(const char *models_dir, int need_captioner, ce_model **model,
                    ce_session **session)
{
    ce_err err;
    if (ce_model_open(models_dir, CE_OPEN_DEFAULT, model, &err) < 0)
        return cli_error("cannot load the model: %s", err.msg);
    if (need_captioner && !ce_model_has_captioner(*model)) {
        ce_model_close(*model);
        return cli_error("the model directory has no captioner.csw");
    }
    if (ce_session_new(*model, session, &err) < 0) {
        ce_model_close(*model);
        return cli_error("%s", err.msg);
    }
    return 0;
}
