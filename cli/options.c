/*
 * The capsearch option table: every option of every subcommand, once, with its short
 * letter, its value, its check and its help line. A subcommand lists the options it takes
 * (CLI_OPT_* ids); cli_parse_options parses only those, and cli_print_options prints
 * their help in table order. One letter means one thing everywhere: -j is --json, -n is
 * --limit, -m is --models, -d is --db; worker counts (--jobs) have no short letter.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

typedef struct {
    int id;            /* CLI_OPT_* */
    const char *name;  /* long name */
    int letter;        /* short letter, 0 = none */
    const char *value; /* the value's name in the help, NULL = a flag */
    const char *help;
} cli_option;

static const cli_option OPTIONS[] = {
    {CLI_OPT_LIMIT, "limit", 'n', "N", "show at most N results (default 20)"},
    {CLI_OPT_JSON, "json", 'j', NULL, "one JSON object per line (JSON Lines)"},
    {CLI_OPT_PRINT0, "print0", '0', NULL,
     "print only paths, each followed by a NUL (for xargs -0)"},
    {CLI_OPT_DIR, "dir", 0, "DIR", "only images under DIR"},
    {CLI_OPT_SINCE, "since", 0, "DATE", "only images taken (else modified) on or after DATE"},
    {CLI_OPT_UNTIL, "until", 0, "DATE",
     "... on or before DATE (YYYY-MM-DD[THH:MM:SS], UTC, from 1800)"},
    {CLI_OPT_BEAM, "beam", 'b', "N", "beam width of the caption search, 1..16 (default 3)"},
    {CLI_OPT_MAX_LENGTH, "max-length", 'l', "N", "longest caption in words, 1..64 (default 20)"},
    {CLI_OPT_TAGS, "tags", 't', "N", "tags to show, 0..16 (default 8)"},
    {CLI_OPT_JOBS, "jobs", 0, "N", "images captioned in parallel, 1..256 (default: the cores)"},
    {CLI_OPT_QUIET, "quiet", 'q', NULL, "no progress bar, no summary"},
    {CLI_OPT_WRITE_XMP, "write-xmp", 0, NULL,
     "also write each caption into the image's XMP sidecar\n"
     "(IMG.ext.xmp; never over what people wrote)"},
    {CLI_OPT_DRY_RUN, "dry-run", 0, NULL, "list what would be removed, change nothing"},
    {CLI_OPT_LISTEN, "listen", 0, "HOST:PORT",
     "address to listen on (default 127.0.0.1:8377; port 0\n"
     "picks a free one)"},
    {CLI_OPT_SOCKET, "socket", 0, "PATH", "listen on a UNIX socket instead"},
    {CLI_OPT_TOKEN_FILE, "token-file", 0, "FILE",
     "require this token (Authorization: Bearer, or the\n"
     "page's login); needed beyond loopback"},
    {CLI_OPT_ALLOW_HOST, "allow-host", 0, "NAME",
     "accept this Host header besides localhost and IP\n"
     "addresses (repeatable; DNS rebinding guard)"},
    {CLI_OPT_CACHE_DIR, "cache-dir", 0, "DIR",
     "thumbnail cache (default $CACHE_DIRECTORY, else\n"
     "$XDG_CACHE_HOME/capsearch)"},
    {CLI_OPT_RATE_LIMIT, "rate-limit", 0, "N",
     "requests per second per client address (default 200,\n"
     "0 = no limit)"},
    {CLI_OPT_MAX_CONNECTIONS, "max-connections", 0, "N", "connections at once (default 256)"},
    {CLI_OPT_LOG, "log", 0, NULL, "one line per request on stderr"},
    {CLI_OPT_DB, "db", 'd', "PATH",
     "the index database (default: $CAPSEARCH_DB, the per-user\n"
     "index, then /var/lib/capsearch/index.db)"},
    {CLI_OPT_MODELS, "models", 'm', "DIR",
     "model folder (default: $CAPSEARCH_MODELS or the installed one)"},
    {CLI_OPT_CNN, "cnn", 0, "PRECISION",
     "the model's arithmetic: float or int8 (int8 CNN and\n"
     "bfloat16 decoder; CPUs with AVX-512 VNNI and BF16: CNN\n"
     "about 1.7x faster, captions slightly different).\n"
     "index: default what the index was made with"},
    {CLI_OPT_HELP, "help", 'h', NULL, "show this help"},
};
#define N_OPTIONS ((int)(sizeof OPTIONS / sizeof OPTIONS[0]))

static int takes(const int *accepted, int id);
static int set_value(cli_options *o, const cli_option *opt, const char *value);
static char *absolute_dir(const char *dir, int *missing);

void cli_options_init(cli_options *o)
{
    memset(o, 0, sizeof *o);
    o->limit = 20;
    o->tags = CLI_DEFAULT_TAGS;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    o->jobs = cores > 0 ? (int)cores : 1;
    o->rate_limit = 200;
}

void cli_options_free(cli_options *o)
{
    free(o->under_dir);
    o->under_dir = NULL;
}

int cli_parse_options(int argc, char **argv, const int *accepted, cli_options *o,
                      void (*usage)(FILE *out))
{
    struct option longs[N_OPTIONS + 1];
    char shorts[2 * N_OPTIONS + 2];
    int n_long = 0, n_short = 0;
    shorts[n_short++] = ':'; /* first: a missing value is reported as ':' */
    for (int i = 0; i < N_OPTIONS; i++) {
        if (!takes(accepted, OPTIONS[i].id)) continue;
        longs[n_long++] =
            (struct option){OPTIONS[i].name, OPTIONS[i].value ? required_argument : no_argument,
                            NULL, OPTIONS[i].id};
        if (OPTIONS[i].letter) {
            shorts[n_short++] = (char)OPTIONS[i].letter;
            if (OPTIONS[i].value) shorts[n_short++] = ':';
        }
    }
    longs[n_long] = (struct option){NULL, 0, NULL, 0};
    shorts[n_short] = '\0';

    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        const cli_option *opt = NULL;
        for (int i = 0; i < N_OPTIONS && !opt; i++)
            if (takes(accepted, OPTIONS[i].id) &&
                (c == OPTIONS[i].id || (OPTIONS[i].letter && c == OPTIONS[i].letter)))
                opt = &OPTIONS[i];
        if (c == '?' || c == ':' || !opt) {
            const char *what = argv[optind - 1];
            if (c == ':')
                cli_error("%s: option '%s' needs a value (see 'capsearch %s --help')", argv[0],
                          what, argv[0]);
            else if (optopt && optopt < 256)
                cli_error("%s: unknown option '-%c' (see 'capsearch %s --help'; a word starting "
                          "with '-' goes after '--')",
                          argv[0], optopt, argv[0]);
            else
                cli_error("%s: unknown option '%s' (see 'capsearch %s --help'; a word starting "
                          "with '-' goes after '--')",
                          argv[0], what, argv[0]);
            return -1;
        }
        if (opt->id == CLI_OPT_HELP) {
            usage(stdout);
            return 0;
        }
        if (set_value(o, opt, optarg) < 0) return -1;
    }
    if (o->json && o->print0) {
        cli_error("--json and --print0 exclude each other");
        return -1;
    }
    return optind;
}

int cli_option_takes_value(const char *arg)
{
    for (int i = 0; i < N_OPTIONS; i++) {
        if (!OPTIONS[i].value) continue;
        if (arg[0] == '-' && arg[1] == '-' && !strcmp(arg + 2, OPTIONS[i].name)) return 1;
        if (arg[0] == '-' && OPTIONS[i].letter && arg[1] == OPTIONS[i].letter && !arg[2]) return 1;
    }
    return 0;
}

void cli_print_options(FILE *out, const int *accepted)
{
    for (int i = 0; i < N_OPTIONS; i++) {
        const cli_option *opt = &OPTIONS[i];
        if (!takes(accepted, opt->id)) continue;
        char left[64];
        snprintf(left, sizeof left, "%c%c%c --%s%s%s", opt->letter ? '-' : ' ',
                 opt->letter ? opt->letter : ' ', opt->letter ? ',' : ' ', opt->name,
                 opt->value ? " " : "", opt->value ? opt->value : "");
        fprintf(out, "  %-22s", left);
        if (strlen(left) >= 22) fprintf(out, "\n%24s", ""); /* a long name: help below */
        for (const char *h = opt->help; *h; h++) {          /* continuation lines align */
            fputc(*h, out);
            if (*h == '\n') fprintf(out, "%24s", "");
        }
        fputc('\n', out);
    }
}

/* ------------------------------------------------------------------ helpers */

static int takes(const int *accepted, int id)
{
    if (id == CLI_OPT_HELP) return 1;
    for (const int *a = accepted; *a; a++)
        if (*a == id) return 1;
    return 0;
}

/* Checks and stores one value; prints why and returns -1 when it is refused. */
static int set_value(cli_options *o, const cli_option *opt, const char *value)
{
    long n;
    switch (opt->id) {
    case CLI_OPT_LIMIT:
        n = cli_parse_count(value);
        if (n < 1 || n > 100000) {
            cli_error("--limit wants a number from 1 to 100000, not '%s'", value);
            return -1;
        }
        o->limit = (int)n;
        return 0;
    case CLI_OPT_BEAM:
    case CLI_OPT_MAX_LENGTH:
    case CLI_OPT_TAGS:
    case CLI_OPT_JOBS: {
        long lo = opt->id == CLI_OPT_TAGS ? 0 : 1;
        long hi = opt->id == CLI_OPT_BEAM         ? 16
                  : opt->id == CLI_OPT_MAX_LENGTH ? 64
                  : opt->id == CLI_OPT_TAGS       ? CE_MAX_TAGS
                                                  : 256;
        n = cli_parse_count(value);
        if (n < lo || n > hi) {
            cli_error("--%s must be %ld..%ld, not '%s'", opt->name, lo, hi, value);
            return -1;
        }
        if (opt->id == CLI_OPT_BEAM) o->beam = (int)n;
        else if (opt->id == CLI_OPT_MAX_LENGTH) o->max_length = (int)n;
        else if (opt->id == CLI_OPT_TAGS) o->tags = (int)n;
        else o->jobs = (int)n;
        return 0;
    }
    case CLI_OPT_RATE_LIMIT:
    case CLI_OPT_MAX_CONNECTIONS: {
        long lo = opt->id == CLI_OPT_RATE_LIMIT ? 0 : 1;
        n = cli_parse_count(value);
        if (n < lo || n > 100000) {
            cli_error("--%s wants a number from %ld to 100000, not '%s'", opt->name, lo, value);
            return -1;
        }
        if (opt->id == CLI_OPT_RATE_LIMIT) o->rate_limit = (int)n;
        else o->max_connections = (int)n;
        return 0;
    }
    case CLI_OPT_ALLOW_HOST:
        if (o->n_allow_hosts == CLI_MAX_ALLOW_HOSTS) {
            cli_error("at most %d --allow-host names", CLI_MAX_ALLOW_HOSTS);
            return -1;
        }
        o->allow_hosts[o->n_allow_hosts++] = value;
        return 0;
    case CLI_OPT_LISTEN: o->listen = value; return 0;
    case CLI_OPT_SOCKET: o->socket_path = value; return 0;
    case CLI_OPT_TOKEN_FILE: o->token_file = value; return 0;
    case CLI_OPT_CACHE_DIR: o->cache_dir = value; return 0;
    case CLI_OPT_LOG: o->log_requests = 1; return 0;
    case CLI_OPT_JSON: o->json = 1; return 0;
    case CLI_OPT_PRINT0: o->print0 = 1; return 0;
    case CLI_OPT_QUIET: o->quiet = 1; return 0;
    case CLI_OPT_DRY_RUN: o->dry_run = 1; return 0;
    case CLI_OPT_WRITE_XMP: o->write_xmp = 1; return 0;
    case CLI_OPT_DB: o->db_path = value; return 0;
    case CLI_OPT_MODELS: o->models_dir = value; return 0;
    case CLI_OPT_CNN:
        o->cnn_given = 1;
        if (!strcmp(value, "float")) o->open_flags = CE_OPEN_DEFAULT;
        else if (!strcmp(value, "int8")) o->open_flags = CE_OPEN_CNN_INT8;
        else {
            cli_error("--cnn wants float or int8, not '%s'", value);
            return -1;
        }
        return 0;
    case CLI_OPT_DIR:
        free(o->under_dir);
        if (!(o->under_dir = absolute_dir(value, &o->dir_missing))) {
            cli_error("--dir %s: %s", value, errno == ENOTDIR ? "not a folder" : strerror(errno));
            return -1;
        }
        return 0;
    case CLI_OPT_SINCE:
    case CLI_OPT_UNTIL: {
        int since = opt->id == CLI_OPT_SINCE;
        if (cli_parse_date(value, !since, since ? &o->since : &o->until)) {
            cli_error("--%s wants a date from 1800-01-01 to 9999-12-31 like 2024-07-31 or "
                      "2024-07-31T18:30:00, not '%s'",
                      opt->name, value);
            return -1;
        }
        if (since) o->has_since = 1;
        else o->has_until = 1;
        return 0;
    }
    }
    return 0;
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
    return cli_absolute_path(dir);
}
