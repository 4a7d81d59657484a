/*
 * capsearch index [--db PATH] [--models DIR] [--cnn P] [--jobs N] DIR...
 *
 * Runs the daemon's scan-and-caption pipeline (libcapindexer) once over the folders:
 * unchanged files are skipped, moved ones keep their rows, vanished ones are removed.
 * A progress bar on a terminal, a summary at the end. Safe while capsearchd runs: both
 * write through SQLite's locking (busy timeout, retried batches).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "capindexer.h"

typedef struct {
    uv_loop_t loop;
    cx_pipeline *pipe;
    uv_timer_t progress;
    uv_signal_t sigint;
    int tty, interrupted;
    double started;
} index_run;

/* The options this subcommand takes (rows of cli/options.c), for parsing and help. */
static const int ACCEPTED[] = {
    CLI_OPT_DB, CLI_OPT_MODELS, CLI_OPT_CNN, CLI_OPT_JOBS, CLI_OPT_QUIET, CLI_OPT_WRITE_XMP, 0};

static void usage(FILE *out);
static int index_is_int8(capdb *db);
static void on_progress(uv_timer_t *t);
static void draw_progress(index_run *r, int final);
static void on_idle(void *ctx);
static void on_sigint(uv_signal_t *h, int signum);

int cmd_index(int argc, char **argv)
{
    cli_options o;
    cli_options_init(&o);
    int first = cli_parse_options(argc, argv, ACCEPTED, &o, usage);
    if (first <= 0) return first == 0 ? EXIT_MATCH : EXIT_TROUBLE;
    if (first >= argc) return cli_error("index: which folders? (capsearch index DIR...)");
    const char *db_path = o.db_path, *models = o.models_dir;
    int quiet = o.quiet;

    cx_settings cfg;
    cx_settings_defaults(&cfg);
    cx_err err = {{0}};
    for (int i = first; i < argc; i++) {
        char abs[PATH_MAX];
        struct stat st;
        if (!realpath(argv[i], abs) || stat(abs, &st) != 0) {
            int e = errno;
            cx_settings_free(&cfg);
            return cli_error("index: %s: %s", argv[i], strerror(e));
        }
        if (!S_ISDIR(st.st_mode)) {
            cx_settings_free(&cfg);
            return cli_error("index: %s is a file, not a folder: 'capsearch index' takes folders "
                             "(index its folder, or caption one file with 'capsearch caption')",
                             argv[i]);
        }
        if (cx_settings_add_root(&cfg, abs, &err) < 0) {
            cx_settings_free(&cfg);
            return cli_error("index: %s", err.msg);
        }
    }
    cfg.workers = o.jobs;
    cfg.write_xmp = o.write_xmp;
    /* the pipeline's jobs must never wait for a pool thread (read at its first use) */
    char pool[16];
    snprintf(pool, sizeof pool, "%d", cx_threadpool_size(cfg.workers));
    setenv("UV_THREADPOOL_SIZE", pool, 0);
    cx_log_init("capsearch", quiet ? LOG_ERR : LOG_WARNING);
    ce_set_blas_threads(1); /* throughput: one BLAS thread per job */

    char db_buf[PATH_MAX];
    if (!db_path) db_path = capdb_default_path(db_buf, sizeof db_buf);
    capdb *db = NULL;
    capdb_err derr = {{0}, 0};
    if (capdb_open(db_path, CAPDB_OPEN_WRITE, &db, &derr) < 0) {
        cx_settings_free(&cfg);
        return cli_db_error(&derr);
    }
    /* Without --cnn, the precision the index was captioned with: a float run over an int8
     * index (or back) would caption every photo again. */
    int open_flags = o.open_flags;
    if (!o.cnn_given && index_is_int8(db)) {
        if (!ce_cnn_int8_supported()) {
            capdb_close(db);
            cx_settings_free(&cfg);
            return cli_error(
                "index: %s was captioned with the int8 CNN, which this machine cannot "
                "run (it needs AVX-512 VNNI and BF16); '--cnn float' captions it again "
                "with the float CNN",
                db_path);
        }
        open_flags = CE_OPEN_CNN_INT8;
    }
    ce_model *model = NULL;
    ce_err cerr = {{0}};
    if (!models) models = ce_default_models_dir();
    if (ce_model_open(models, open_flags, &model, &cerr) < 0) {
        capdb_close(db);
        cx_settings_free(&cfg);
        return cli_error("index: cannot load the model from %s: %s", models, cerr.msg);
    }

    index_run r;
    memset(&r, 0, sizeof r);
    r.tty = cli_stderr_is_tty() && !quiet;
    r.started = (double)cx_now_ms() / 1000.0;
    uv_loop_init(&r.loop);
    cx_pipeline_options po = {
        .loop = &r.loop,
        .db = db,
        .model = model,
        .settings = &cfg,
        .inflight_key = CX_META_INFLIGHT_INDEX,
        .on_idle = on_idle,
        .ctx = &r,
        .stop_on_write_error = 1,
    };
    int rc = cx_pipeline_new(&po, &r.pipe, &err);
    if (rc == 0) {
        uv_timer_init(&r.loop, &r.progress);
        uv_signal_init(&r.loop, &r.sigint);
        r.progress.data = r.sigint.data = &r;
        if (r.tty) uv_timer_start(&r.progress, on_progress, 200, 200);
        uv_signal_start(&r.sigint, on_sigint, SIGINT);
        for (int i = 0; i < cfg.n_roots; i++)
            cx_pipeline_scan(r.pipe, cfg.roots[i], CX_SCAN_VANISHED);
        uv_run(&r.loop, UV_RUN_DEFAULT);
    }

    cx_stats st;
    memset(&st, 0, sizeof st);
    int hung = 0;
    if (r.pipe) {
        cx_pipeline_stats(r.pipe, &st);
        hung = cx_pipeline_hung(r.pipe);
        if (r.tty) draw_progress(&r, 1);
        cx_pipeline_free(r.pipe);
    }
    cx_loop_close_handles(&r.loop);
    capdb_close(db);
    /* A worker stuck past the time limit still reads the model: unmapping it, or the
     * exit handlers freeing OpenBLAS, would crash that thread (found under valgrind).
     * As the daemon does, exit around it. */
    if (!hung) {
        uv_loop_close(&r.loop);
        ce_model_close(model);
    }
    cx_settings_free(&cfg);
    int code;
    if (rc < 0) {
        code = cli_error("index: %s", err.msg);
    } else {
        double secs = (double)cx_now_ms() / 1000.0 - r.started;
        if (!quiet)
            printf("%s%lld indexed, %lld failed, %lld moved, %lld removed, %lld unchanged "
                   "in %.1f s (%.1f images/s)\n",
                   st.write_errors ? "stopped, not all saved: "
                   : r.interrupted ? "interrupted: "
                                   : "",
                   (long long)st.indexed, (long long)st.failed, (long long)st.moved,
                   (long long)st.removed, (long long)st.unchanged, secs,
                   secs > 0 ? (double)st.model_runs / secs : 0.0);
        char shown[PATH_MAX];
        if (st.write_errors > 0)
            code = cli_error("index: stopped: could not write to %s (see above); the images "
                             "indexed before are kept, run 'capsearch index' again once it "
                             "is writable",
                             capdb_target_display(db_path, shown, sizeof shown));
        else if (r.interrupted) code = EXIT_TROUBLE;
        else
            code = st.failed > 0 && st.indexed == 0 && st.moved == 0 && st.unchanged == 0
                       ? EXIT_TROUBLE
                       : EXIT_MATCH;
    }
    if (hung) {
        fflush(NULL);
        _exit(code);
    }
    return code;
}

static void usage(FILE *out)
{
    fputs("Usage: capsearch index [OPTIONS] DIR...\n\n"
          "Indexes the images under each DIR once, without the daemon: new and changed\n"
          "files are captioned, moved ones keep their captions, deleted ones are removed.\n\n",
          out);
    cli_print_options(out, ACCEPTED);
}

static void on_idle(void *ctx)
{
    index_run *r = ctx;
    uv_stop(&r->loop);
}

static void on_sigint(uv_signal_t *h, int signum)
{
    index_run *r = h->data;
    (void)signum;
    if (r->interrupted) return;
    /* finish the images in the engine, drop the queue; the next run goes on from here */
    r->interrupted = 1;
    cx_pipeline_stop(r->pipe);
}

/* 1 when the index's rows were last captioned by the int8 CNN (its model version). */
static int index_is_int8(capdb *db)
{
    char version[256] = "";
    capdb_err err = {{0}, 0};
    if (capdb_meta_get(db, "model_version", version, sizeof version, &err) < 0) return 0;
    return ce_version_is_int8(version);
}

static void on_progress(uv_timer_t *t) { draw_progress(t->data, 0); }

/* "  123/4567  [=====>        ]  3.2 img/s  ETA 0:23:10" on one rewritten line. */
static void draw_progress(index_run *r, int final)
{
    cx_stats st;
    cx_pipeline_stats(r->pipe, &st);
    int64_t done = st.indexed + st.failed + st.moved + st.unchanged;
    int64_t total = done + st.queued + st.in_flight;
    if (total < st.seen) total = st.seen;
    double elapsed = (double)cx_now_ms() / 1000.0 - r->started;
    double rate = elapsed > 0 ? (double)st.model_runs / elapsed : 0;
    int width = 30, filled = total > 0 ? (int)((double)width * (double)done / (double)total) : 0;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '=' : i == filled ? '>' : ' ';
    bar[width] = '\0';
    char eta[32] = "--:--";
    int64_t left = st.queued + st.in_flight;
    if (rate > 0 && !st.scanning) {
        long s = (long)((double)left / rate);
        snprintf(eta, sizeof eta, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    }
    fprintf(stderr, "\r\033[K%7lld/%lld%s [%s] %5.1f img/s  ETA %s", (long long)done,
            (long long)total, st.scanning ? "+" : "", bar, rate, final ? "0:00:00" : eta);
    if (final) fputc('\n', stderr);
    fflush(stderr);
}
