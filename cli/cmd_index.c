/*
 * capsearch index [--db PATH] [--models DIR] [--jobs N] DIR...
 *
 * Runs the daemon's scan-and-caption pipeline (libcapindexer) once over the folders:
 * unchanged files are skipped, moved ones keep their rows, vanished ones are removed.
 * A progress bar on a terminal, a summary at the end. Safe while capsearchd runs: both
 * write through SQLite's locking (busy timeout, retried batches).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "indexer.h"

typedef struct {
    uv_loop_t loop;
    cx_pipeline *pipe;
    uv_timer_t progress;
    uv_signal_t sigint;
    int tty, interrupted;
    double started;
} index_run;

static void on_progress(uv_timer_t *t);
static void draw_progress(index_run *r, int final);
static void on_idle(void *ctx);
static void on_sigint(uv_signal_t *h, int signum);
static double now_s(void);
static void close_handle(uv_handle_t *h, void *arg);

int cmd_index(int argc, char **argv)
{
    static const struct option options[] = {
        {"db", required_argument, NULL, 'd'},
        {"models", required_argument, NULL, 'm'},
        {"jobs", required_argument, NULL, 'j'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *db_path = NULL, *models = NULL;
    long jobs = sysconf(_SC_NPROCESSORS_ONLN);
    int quiet = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:m:j:qh", options, NULL)) != -1) {
        switch (c) {
        case 'd': db_path = optarg; break;
        case 'm': models = optarg; break;
        case 'j':
            jobs = cli_parse_count(optarg);
            if (jobs < 1 || jobs > 256) return cli_error("--jobs: expected 1..256, got '%s'", optarg);
            break;
        case 'q': quiet = 1; break;
        case 'h':
            printf("Usage: capsearch index [--db PATH] [--models DIR] [--jobs N] [--quiet] DIR...\n\n"
                   "Indexes the images under each DIR once, without the daemon: new and changed\n"
                   "files are captioned, moved ones keep their captions, deleted ones are removed.\n");
            return EXIT_MATCH;
        default:
            return cli_error("index: unknown option (see 'capsearch index --help')");
        }
    }
    if (optind >= argc) return cli_error("index: which folders? (capsearch index DIR...)");
    if (jobs < 1) jobs = 1;

    cx_config cfg;
    cx_config_defaults(&cfg);
    char err[CX_CONFIG_ERR_MAX];
    for (int i = optind; i < argc; i++) {
        char abs[PATH_MAX];
        struct stat st;
        if (!realpath(argv[i], abs) || stat(abs, &st) != 0) {
            int e = errno;
            cx_config_free(&cfg);
            return cli_error("index: %s: %s", argv[i], strerror(e));
        }
        if (!S_ISDIR(st.st_mode)) {
            cx_config_free(&cfg);
            return cli_error("index: %s is a file, not a folder: 'capsearch index' takes folders "
                             "(index its folder, or caption one file with 'capsearch caption')",
                             argv[i]);
        }
        if (cx_config_set(&cfg, "root", abs, err, sizeof err) < 0) {
            cx_config_free(&cfg);
            return cli_error("index: %s", err);
        }
    }
    cfg.workers = (int)jobs;
    cx_log_init("capsearch", quiet ? LOG_ERR : LOG_WARNING);
    ce_set_blas_threads(1);         /* throughput: one BLAS thread per job */

    char db_buf[PATH_MAX];
    if (!db_path) db_path = capdb_default_path(db_buf, sizeof db_buf);
    ce_model *model = NULL;
    ce_err cerr = {{0}};
    if (!models) models = ce_default_models_dir();
    if (ce_model_open(models, CE_OPEN_DEFAULT, &model, &cerr) < 0) {
        cx_config_free(&cfg);
        return cli_error("index: cannot load the model from %s: %s", models, cerr.msg);
    }
    capdb *db = NULL;
    capdb_err derr = {{0}, 0};
    if (capdb_open(db_path, CAPDB_OPEN_WRITE, &db, &derr) < 0) {
        ce_model_close(model);
        cx_config_free(&cfg);
        return cli_db_error(&derr);
    }

    index_run r;
    memset(&r, 0, sizeof r);
    r.tty = cli_stderr_is_tty() && !quiet;
    r.started = now_s();
    uv_loop_init(&r.loop);
    cx_pipeline_options po = {
        .loop = &r.loop,
        .db = db,
        .model = model,
        .cfg = &cfg,
        .inflight_key = "index.inflight",
        .on_idle = on_idle,
        .ctx = &r,
        .stop_on_write_error = 1,
    };
    int rc = cx_pipeline_new(&po, &r.pipe, err, sizeof err);
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
    uv_walk(&r.loop, close_handle, NULL);
    uv_run(&r.loop, UV_RUN_NOWAIT);
    capdb_close(db);
    /* A worker stuck past the time limit still reads the model: unmapping it, or the
     * exit handlers freeing OpenBLAS, would crash that thread (found under valgrind).
     * As the daemon does, exit around it. */
    if (!hung) {
        uv_loop_close(&r.loop);
        ce_model_close(model);
    }
    cx_config_free(&cfg);
    int code;
    if (rc < 0) {
        code = cli_error("index: %s", err);
    } else {
        double secs = now_s() - r.started;
        if (!quiet)
            printf("%s%lld indexed, %lld failed, %lld moved, %lld removed, %lld unchanged "
                   "in %.1f s (%.1f images/s)\n",
                   st.write_errors ? "stopped, not all saved: " : r.interrupted ? "interrupted: " : "",
                   (long long)st.indexed, (long long)st.failed, (long long)st.moved,
                   (long long)st.removed, (long long)st.unchanged, secs,
                   secs > 0 ? (double)st.model_runs / secs : 0.0);
        if (st.write_errors > 0)
            code = cli_error("index: stopped: could not write to %s (see above); the images "
                             "indexed before are kept, run 'capsearch index' again once it "
                             "is writable", db_path);
        else if (r.interrupted)
            code = EXIT_TROUBLE;
        else
            code = st.failed > 0 && st.indexed == 0 && st.moved == 0 && st.unchanged == 0
                       ? EXIT_TROUBLE : EXIT_MATCH;
    }
    if (hung) {
        fflush(NULL);
        _exit(code);
    }
    return code;
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

static void on_progress(uv_timer_t *t)
{
    draw_progress(t->data, 0);
}

/* "  123/4567  [=====>        ]  3.2 img/s  ETA 0:23:10" on one rewritten line. */
static void draw_progress(index_run *r, int final)
{
    cx_stats st;
    cx_pipeline_stats(r->pipe, &st);
    int64_t done = st.indexed + st.failed + st.moved + st.unchanged;
    int64_t total = done + st.queued + st.in_flight;
    if (total < st.seen) total = st.seen;
    double elapsed = now_s() - r->started;
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

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}
