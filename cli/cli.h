/*
 * The capsearch command line: one function per subcommand (cmd_*.c), the router both
 * programs share (dispatch.c), the search front `capsearch` (front.c), the whole program
 * `capsearch-full` (main.c) and the few helpers every subcommand shares (cli_util.c).
 *
 * Exit status everywhere, like grep: 0 found / done, 1 nothing matched, 2 error.
 */
#ifndef CAPSEARCH_CLI_H
#define CAPSEARCH_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "capdb.h"
#include "capengine.h"

enum { EXIT_MATCH = 0, EXIT_NO_MATCH = 1, EXIT_TROUBLE = 2 };

/* ------------------------------------------------------------------ dispatch.c */

/* The subcommands, in the order `capsearch --help` lists them. */
enum {
    CLI_CMD_SEARCH,
    CLI_CMD_STATUS,
    CLI_CMD_CAPTION,
    CLI_CMD_DETECT,
    CLI_CMD_SIMILAR,
    CLI_CMD_INDEX,
    CLI_CMD_PRUNE,
    CLI_CMD_SERVE,
    CLI_N_SUBCOMMANDS
};
typedef struct {
    const char *name, *summary;
} cli_subcommand_info;
extern const cli_subcommand_info CLI_SUBCOMMANDS[CLI_N_SUBCOMMANDS];

/* What a command line asks for: a CLI_CMD_* with *sub_argv set to the subcommand's
 * argv (argv[0] its name, "search" for a bare query; options given before the name are
 * moved after it), or one of these. */
enum { CLI_ROUTE_USAGE = -1, CLI_ROUTE_HELP = -2, CLI_ROUTE_VERSION = -3 };
int cli_route(int argc, char **argv, char ***sub_argv);

/* Subcommands: argv[0] is the subcommand name (or "search" for a bare query). */
int cmd_search(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_detect(int argc, char **argv);
int cmd_caption(int argc, char **argv);
int cmd_similar(int argc, char **argv);
int cmd_index(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* Prints "capsearch: <message>" to stderr; returns EXIT_TROUBLE for `return cli_error(...)`. */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* cli_error("%s", err->msg) for a database error, plus how to rebuild when SQLite said the
 * file is damaged (err->damaged: by result code, not message text). Returns EXIT_TROUBLE. */
int cli_db_error(const capdb_err *err);

/* Writes s as a JSON string literal (quotes included). Bytes that are not valid UTF-8
 * (file names may hold any) become U+FFFD so the output is always valid JSON. */
void cli_json_string(FILE *out, const char *s);

/* {"file":path,"error":msg} on its own line: a file caption / detect could not read. */
void cli_print_json_error(const char *path, const char *msg);

/* True when stdout is a terminal and NO_COLOR is unset: colour and progress bars. */
int cli_stdout_is_tty(void);
int cli_stderr_is_tty(void);

/* Parses a non-negative integer option value; returns -1 on garbage. */
long cli_parse_count(const char *s);

/* path made absolute against the working folder (not resolved: it may not exist);
 * malloc'd, NULL when out of memory. */
char *cli_absolute_path(const char *path);
/* path as the index stores it: symlinks resolved when it exists, else made absolute (a
 * file that is gone may still be indexed under the name given). malloc'd. */
char *cli_indexed_path(const char *path);

/* ------------------------------------------------------------------ results */

/* ------------------------------------------------------------------ options (options.c) */

/* Every option of every subcommand (ids above any short letter). */
enum {
    CLI_OPT_LIMIT = 256,
    CLI_OPT_JSON,
    CLI_OPT_PRINT0,
    CLI_OPT_DIR,
    CLI_OPT_SINCE,
    CLI_OPT_UNTIL,
    CLI_OPT_BEAM,
    CLI_OPT_MAX_LENGTH,
    CLI_OPT_TAGS,
    CLI_OPT_JOBS,
    CLI_OPT_QUIET,
    CLI_OPT_DRY_RUN,
    CLI_OPT_LISTEN,
    CLI_OPT_SOCKET,
    CLI_OPT_TOKEN_FILE,
    CLI_OPT_ALLOW_HOST,
    CLI_OPT_CACHE_DIR,
    CLI_OPT_RATE_LIMIT,
    CLI_OPT_MAX_CONNECTIONS,
    CLI_OPT_LOG,
    CLI_OPT_WRITE_XMP,
    CLI_OPT_DB,
    CLI_OPT_MODELS,
    CLI_OPT_CNN,
    CLI_OPT_HELP,
};
#define CLI_MAX_ALLOW_HOSTS 32
#define CLI_DEFAULT_TAGS 8

/* The parsed values (each subcommand reads the ones it takes). */
typedef struct {
    const char *db_path;      /* --db, NULL = capdb_default_path() */
    const char *models_dir;   /* --models, NULL = ce_default_models_dir() */
    char *under_dir;          /* --dir, made absolute (owned) */
    int dir_missing;          /* ... and no such folder exists (now) */
    int64_t since, until;     /* --since / --until, unix seconds (may be negative) */
    int has_since, has_until; /* ... each set only when given */
    int limit;                /* --limit, default 20 */
    int json, print0, quiet, dry_run, write_xmp;
    int beam, max_length; /* 0 = the engine's defaults */
    int tags;             /* default CLI_DEFAULT_TAGS */
    int jobs;             /* default: the cores */
    int open_flags;       /* --cnn int8: CE_OPEN_CNN_INT8, else CE_OPEN_DEFAULT */
    int cnn_given;        /* --cnn was given (index: else the index's own precision) */
    /* serve */
    const char *listen, *socket_path, *token_file, *cache_dir;
    const char *allow_hosts[CLI_MAX_ALLOW_HOSTS];
    int n_allow_hosts;
    int rate_limit;      /* requests/s per client, default 200, 0 = none */
    int max_connections; /* 0 = the server's default */
    int log_requests;
} cli_options;

void cli_options_init(cli_options *o);
void cli_options_free(cli_options *o);
/* Parses the options listed in accepted (0-terminated CLI_OPT_* ids; --help is always
 * taken) with getopt_long: options may follow operands. Returns the index of the first
 * operand, 0 after --help (the caller exits 0), or -1 after printing why (exit 2). */
int cli_parse_options(int argc, char **argv, const int *accepted, cli_options *o,
                      void (*usage)(FILE *out));
/* 1 when arg is an option of the table that takes its value as the next argument
 * ("--db", "-n"; not "--db=X"): how main() finds a subcommand's name after options. */
int cli_option_takes_value(const char *arg);
/* The help lines of the accepted options, in table order. */
void cli_print_options(FILE *out, const int *accepted);
/* The options search and similar take. */
#define CLI_SEARCH_OPTIONS                                                                         \
    CLI_OPT_LIMIT, CLI_OPT_JSON, CLI_OPT_PRINT0, CLI_OPT_DIR, CLI_OPT_SINCE, CLI_OPT_UNTIL,        \
        CLI_OPT_DB, CLI_OPT_MODELS

/* ------------------------------------------------------------------ the index */

/* Opens the index read-only: path from --db or the default. On failure prints why
 * (and, for a missing file, how to create one) and returns EXIT_TROUBLE. */
int cli_open_db(const char *db_path, capdb **out, char *resolved, size_t size);

/* Runs the query and prints the hits the way the options ask (text with highlighted
 * matches on a terminal, JSON Lines, or NUL-separated paths), leaving out the hit
 * whose path is `exclude` (may be NULL). Returns EXIT_MATCH, EXIT_NO_MATCH or
 * EXIT_TROUBLE. */
int cli_run_query(capdb *db, const capdb_query *q, const cli_options *o, const char *exclude);

/* Parses YYYY-MM-DD[THH:MM:SS] as UTC (EXIF times are stored that way) into unix
 * seconds, years 1800..9999 (negative before 1970); a bare date with end_of_day set means
 * its last second. 0 ok, -1 invalid. */
int cli_parse_date(const char *s, int end_of_day, int64_t *out);

/* Opens the model (models_dir NULL = the default; open_flags from --cnn) and one session
 * for the image subcommands, with the CNN's layers split over every core;
 * need_captioner: refuse a model folder without captioner.csw. Prints the error and
 * returns EXIT_TROUBLE on failure, 0 on success. */
int cli_open_engine(const char *models_dir, int open_flags, int need_captioner, ce_model **model,
                    ce_session **session);

#endif
