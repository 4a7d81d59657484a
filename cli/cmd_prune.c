/*
 * capsearch prune [--db PATH] [--dry-run] [DIR...]
 *
 * Removes rows the daemon no longer looks after:
 *   without DIR   rows whose file is gone (deleted while no daemon watched it)
 *   with DIR...   every row under each DIR, whether its files exist or not: the rows of a
 *                 root taken out of capsearchd.conf stay searchable until pruned
 * Never touches a photo. Safe beside a running capsearchd: both write through SQLite's
 * locking, one short transaction per PRUNE_BATCH rows.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "capindexer.h"

#define PRUNE_BATCH 500

typedef struct {
    char **paths;
    size_t n, cap;
    int oom;
} path_list;

static int collect_missing(void *ctx, const char *path);
static int delete_rows(capdb *db, char **paths, size_t n, int64_t *removed, capdb_err *err);
/* The options this subcommand takes (rows of cli/options.c), for parsing and help. */
static const int ACCEPTED[] = {CLI_OPT_DB, CLI_OPT_DRY_RUN, 0};

static void usage(FILE *out);

int cmd_prune(int argc, char **argv)
{
    cli_options o;
    cli_options_init(&o);
    int first = cli_parse_options(argc, argv, ACCEPTED, &o, usage);
    if (first <= 0) return first == 0 ? EXIT_MATCH : EXIT_TROUBLE;
    const char *db_path = o.db_path;
    int dry_run = o.dry_run;

    char db_buf[PATH_MAX];
    if (!db_path) db_path = capdb_default_path(db_buf, sizeof db_buf);
    capdb *db = NULL;
    capdb_err err = {{0}, 0};
    struct stat sb;
    if (!capdb_is_pg_target(db_path) && stat(db_path, &sb) != 0)
        return cli_error("prune: no index at %s", db_path);
    if (capdb_open(db_path, dry_run ? CAPDB_OPEN_READONLY : CAPDB_OPEN_WRITE, &db, &err) < 0)
        return cli_db_error(&err);

    path_list targets = {0};
    int rc = 0;
    if (first == argc) {
        /* rows whose file is gone */
        rc = capdb_foreach_path(db, "", collect_missing, &targets, &err);
        if (rc == 0 && targets.oom) {
            rc = -ENOMEM;
            snprintf(err.msg, sizeof err.msg, "out of memory");
        }
    } else {
        for (int i = first; i < argc && rc == 0; i++) {
            char *abs = cli_indexed_path(argv[i]);
            if (!abs) {
                rc = -ENOMEM;
                snprintf(err.msg, sizeof err.msg, "out of memory");
                break;
            }
            if (targets.n == targets.cap) {
                size_t cap = targets.cap ? targets.cap * 2 : 16;
                char **grown = realloc(targets.paths, cap * sizeof *grown);
                if (!grown) {
                    free(abs);
                    rc = -ENOMEM;
                    break;
                }
                targets.paths = grown;
                targets.cap = cap;
            }
            targets.paths[targets.n++] = abs;
        }
    }

    int64_t removed = 0;
    if (rc == 0 && dry_run) {
        for (size_t i = 0; i < targets.n; i++) {
            cu_fputs_printable(targets.paths[i], stdout);
            putchar('\n');
        }
    } else if (rc == 0) {
        for (size_t at = 0; at < targets.n && rc == 0; at += PRUNE_BATCH) {
            size_t n = targets.n - at < PRUNE_BATCH ? targets.n - at : PRUNE_BATCH;
            rc = delete_rows(db, targets.paths + at, n, &removed, &err);
        }
    }
    for (size_t i = 0; i < targets.n; i++) free(targets.paths[i]);
    free(targets.paths);
    capdb_close(db);
    if (rc < 0) return cli_db_error(&err);
    if (!dry_run) printf("%lld row%s removed\n", (long long)removed, removed == 1 ? "" : "s");
    return EXIT_MATCH;
}

/* ------------------------------------------------------------------ helpers */

static int collect_missing(void *ctx, const char *path)
{
    path_list *l = ctx;
    struct stat st;
    if (lstat(path, &st) == 0 || (errno != ENOENT && errno != ENOTDIR)) return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        char **grown = realloc(l->paths, cap * sizeof *grown);
        if (!grown) {
            l->oom = 1;
            return 1;
        }
        l->paths = grown;
        l->cap = cap;
    }
    if (!(l->paths[l->n] = strdup(path))) {
        l->oom = 1;
        return 1;
    }
    l->n++;
    return 0;
}

/* One transaction: each path is a file row or a folder (every row under it). */
static int delete_rows(capdb *db, char **paths, size_t n, int64_t *removed, capdb_err *err)
{
    int rc = capdb_begin(db, err);
    for (size_t i = 0; i < n && rc == 0; i++) {
        int64_t gone = 0;
        rc = capdb_delete_path(db, paths[i], &gone, err);
        *removed += gone;
    }
    if (rc == 0) return capdb_commit(db, err);
    capdb_rollback(db);
    return rc;
}

static void usage(FILE *out)
{
    fputs("Usage: capsearch prune [OPTIONS] [DIR...]\n\n"
          "Removes index rows: without DIR, the rows whose file no longer exists; with DIR,\n"
          "every row under each DIR (a folder no longer watched). Photos are never touched.\n\n",
          out);
    cli_print_options(out, ACCEPTED);
}
