/*
 * capsearchd: watches photo folders and keeps the capsearch index in step with them.
 *
 * One libuv loop: the inotify watcher (daemon_watch.c) and the folder walk feed the
 * pipeline (pipeline.c in libcapindexer), whose workers run the engine; this file reads
 * the config, opens the database and the model, handles signals (SIGHUP reloads the
 * config, SIGTERM/SIGINT stop after the running images) and reports to systemd
 * (READY=1, STATUS=, WATCHDOG=1) and to `capsearch status` (the daemon.* meta keys).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "watch.h"
#include "config.h"

#define STATUS_INTERVAL_MS 2000
#define SHUTDOWN_GRACE_MS 20000
#define MAX_HUNG_WORKERS 4

typedef struct {
    int argc;
    char **argv;             /* kept: a reload applies the flags over the new file */
    const char *config_path; /* --config, or NULL for the default location */
    int once;                /* --once: scan the roots, wait for the queue, exit */

    uv_loop_t loop;
    cd_config cfg;
    capdb *db;
    ce_model *model;
    cx_pipeline *pipe;
    cd_watcher *watch;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t status_timer, grace_timer;
    uint64_t watchdog_usec;
    int stopping, exit_code;
    int64_t last_logged_runs;
    dev_t db_dev; /* the index file opened: another one there means it was */
    ino_t db_ino; /* deleted or replaced under us */
    int lock_fd;  /* flock'd PATH.capsearchd.lock: one daemon per index */
    int shared;   /* a PostgreSQL index that several nodes fill (no file, no lock) */
    char node[256];
    char inflight_key[300];
} daemon_state;

static int load_config(daemon_state *d, cd_config *cfg, cx_err *err);
static int apply_flags(cd_config *cfg, int argc, char **argv, daemon_state *d, cx_err *err);
static void print_usage(FILE *out);
static int open_database(daemon_state *d);
static int index_lost(daemon_state *d, char *why, size_t size);
static int open_server(daemon_state *d);
static int once_finished(daemon_state *d);
static int move_aside(const char *path, char *aside, size_t size);
static int take_daemon_lock(daemon_state *d);
static void on_signal(uv_signal_t *h, int signum);
static void reload(daemon_state *d);
static void on_status_timer(uv_timer_t *t);
static void publish_status(daemon_state *d, const char *state);
static void on_pipeline_idle(void *ctx);
static int on_walk_dir(void *ctx, const char *path);
static void on_walk_file(void *ctx, const char *path, int urgent);
static void begin_shutdown(daemon_state *d);
static void on_grace_timer(uv_timer_t *t);
static void finish(daemon_state *d);

int main(int argc, char **argv)
{
    daemon_state d;
    cx_err err = {{0}};
    memset(&d, 0, sizeof d);
    d.lock_fd = -1;
    d.argc = argc;
    d.argv = argv;
    cx_log_init("capsearchd", LOG_INFO);

    cd_config_defaults(&d.cfg);
    int rc = apply_flags(&d.cfg, argc, argv, &d, &err); /* --help, --config */
    if (rc > 0) return 0;
    if (rc == 0) {
        cd_config_free(&d.cfg);
        rc = load_config(&d, &d.cfg, &err);
    }
    if (rc < 0) {
        cx_log(LOG_ERR, "%s", err.msg);
        return 2;
    }
    cx_log_set_level(d.cfg.log_level);
    ce_set_blas_threads(1); /* throughput: one BLAS thread per worker */

    ce_err cerr = {{0}};
    const char *models = d.cfg.models_dir ? d.cfg.models_dir : ce_default_models_dir();
    int open_flags = CE_OPEN_DEFAULT;
    if (d.cfg.cnn_int8 && ce_cnn_int8_supported()) {
        open_flags = CE_OPEN_CNN_INT8;
    } else if (d.cfg.cnn_int8 && capdb_is_pg_target(d.cfg.db_path) && d.cfg.role != CX_ROLE_SCAN) {
        /* nodes captioning one index with two precisions would caption each other's
         * photos again and again (the model version differs) */
        cx_log(LOG_ERR, "cnn = int8: this CPU (or build) has no AVX-512 VNNI and BF16; on a "
                        "shared index every captioning node must use the same cnn");
        cd_config_free(&d.cfg);
        return 1;
    } else if (d.cfg.cnn_int8) {
        cx_log(LOG_WARNING, "cnn = int8: this CPU (or build) has no AVX-512 VNNI and BF16; "
                            "using the float CNN");
    }
    rc = ce_model_open(models, open_flags, &d.model, &cerr);
    if (rc < 0) {
        cx_log(LOG_ERR, "cannot load the model from %s: %s", models, cerr.msg);
        cd_config_free(&d.cfg);
        return 1;
    }
    cx_log(LOG_INFO, "model %s (%s)", ce_model_version(d.model),
           ce_model_has_captioner(d.model) ? "captions" : "detections only: tags, no captions");
    if (open_database(&d) < 0) {
        ce_model_close(d.model);
        cd_config_free(&d.cfg);
        return 1;
    }

    /* the pipeline's jobs must never wait for a pool thread (libuv reads this at the
     * pool's first use); a value the user set wins */
    char pool[16];
    snprintf(pool, sizeof pool, "%d", cx_threadpool_size(d.cfg.index.workers));
    setenv("UV_THREADPOOL_SIZE", pool, 0);
    uv_loop_init(&d.loop);
    /* several nodes: each its own crash marker, and its part in the shared queue */
    cx_cluster_options cluster = {
        .db_target = d.cfg.db_path, .node_name = d.node, .role = d.cfg.role};
    snprintf(d.inflight_key, sizeof d.inflight_key, "%s%s%s", CX_META_INFLIGHT_DAEMON,
             d.shared ? "." : "", d.shared ? d.node : "");
    cx_pipeline_options po = {
        .loop = &d.loop,
        .db = d.db,
        .model = d.model,
        .settings = &d.cfg.index,
        .inflight_key = d.inflight_key,
        .cluster = d.shared ? &cluster : NULL,
        .on_dir = on_walk_dir,
        .on_file = on_walk_file,
        .on_idle = on_pipeline_idle,
        .ctx = &d,
    };
    rc = cx_pipeline_new(&po, &d.pipe, &err);
    if (rc == 0) rc = cd_watch_new(&d.loop, d.pipe, &d.cfg, &d.watch, &err);
    if (rc < 0) {
        cx_log(LOG_ERR, "%s", err.msg);
        d.exit_code = 1;
    } else {
        uv_signal_init(&d.loop, &d.sig_term);
        uv_signal_init(&d.loop, &d.sig_int);
        uv_signal_init(&d.loop, &d.sig_hup);
        d.sig_term.data = d.sig_int.data = d.sig_hup.data = &d;
        uv_signal_start(&d.sig_term, on_signal, SIGTERM);
        uv_signal_start(&d.sig_int, on_signal, SIGINT);
        uv_signal_start(&d.sig_hup, on_signal, SIGHUP);
        uv_timer_init(&d.loop, &d.status_timer);
        uv_timer_init(&d.loop, &d.grace_timer);
        d.status_timer.data = d.grace_timer.data = &d;
        if (sd_watchdog_enabled(0, &d.watchdog_usec) <= 0) d.watchdog_usec = 0;
        uint64_t every = STATUS_INTERVAL_MS;
        if (d.watchdog_usec && d.watchdog_usec / 2000 < every) every = d.watchdog_usec / 2000 + 1;
        uv_timer_start(&d.status_timer, on_status_timer, 0, every);

        int captions_only = d.shared && d.cfg.role == CX_ROLE_CAPTION;
        if (captions_only)
            cx_log(LOG_INFO, "role caption: watching nothing; captioning what the nodes queue");
        else cd_watch_set_config(d.watch, &d.cfg);
        if (d.cfg.index.n_roots == 0 && !captions_only)
            cx_log(LOG_WARNING, "no folders to watch: add 'root = /path' to the config "
                                "and send SIGHUP (systemctl reload capsearchd)");
        cx_log(LOG_INFO, "started: %d root%s, %d worker%s, database %s", d.cfg.index.n_roots,
               d.cfg.index.n_roots == 1 ? "" : "s", d.cfg.index.workers,
               d.cfg.index.workers == 1 ? "" : "s",
               d.shared ? "on a PostgreSQL server (shared)" : d.cfg.db_path);
        sd_notify(0, "READY=1\nSTATUS=starting the scan");
        uv_run(&d.loop, UV_RUN_DEFAULT);
    }

    int hung = d.pipe ? cx_pipeline_hung(d.pipe) : 0;
    /* Freeing the watcher and the pipeline runs the loop (handles closing): none of our
     * callbacks may fire then (the status timer read the freed watcher: ASan, found by
     * the index-deleted fault test). */
    if (d.status_timer.loop) {
        uv_timer_stop(&d.status_timer);
        uv_timer_stop(&d.grace_timer);
        uv_signal_stop(&d.sig_term);
        uv_signal_stop(&d.sig_int);
        uv_signal_stop(&d.sig_hup);
    }
    if (d.watch) cd_watch_free(d.watch);
    if (d.pipe) cx_pipeline_free(d.pipe);
    cx_loop_close_handles(&d.loop);
    capdb_close(d.db);
    if (d.lock_fd >= 0) close(d.lock_fd); /* only after the last write */
    if (hung > 0) {
        /* a worker thread is stuck in the engine: joining it would hang forever */
        cx_log(LOG_WARNING, "%d worker%s still stuck in the engine; exiting without them", hung,
               hung == 1 ? "" : "s");
        _exit(d.exit_code);
    }
    uv_loop_close(&d.loop);
    ce_model_close(d.model);
    cd_config_free(&d.cfg);
    return d.exit_code;
}

/* ------------------------------------------------------------------ config */

static int load_config(daemon_state *d, cd_config *cfg, cx_err *err)
{
    char path[PATH_MAX];
    cd_config_defaults(cfg);
    const char *file = d->config_path ? d->config_path : cd_config_default_path(path, sizeof path);
    int rc = cd_config_load_file(cfg, file, err);
    if (rc == -ENOENT && !d->config_path) {
        /* no config at the default place: the per-user service watches ~/Pictures */
        const char *home = getenv("HOME");
        char pictures[PATH_MAX];
        if (geteuid() != 0 && home &&
            snprintf(pictures, sizeof pictures, "%s/Pictures", home) < (int)sizeof pictures &&
            access(pictures, R_OK) == 0)
            cd_config_set(cfg, "root", pictures, err);
        rc = 0;
    }
    if (rc == 0) rc = apply_flags(cfg, d->argc, d->argv, NULL, err);
    if (rc == 0 && !cfg->db_path) {
        char db[PATH_MAX];
        const char *state_dir = getenv("STATE_DIRECTORY"); /* systemd StateDirectory= */
        if (state_dir && state_dir[0] == '/' && !strchr(state_dir, ':'))
            snprintf(db, sizeof db, "%s/index.db", state_dir);
        else capdb_default_path(db, sizeof db);
        cfg->db_path = strdup(db);
        if (!cfg->db_path) rc = -ENOMEM;
    }
    if (rc < 0) cd_config_free(cfg);
    return rc;
}

static const struct option LONG_OPTIONS[] = {
    {"config", required_argument, NULL, 'c'},
    {"root", required_argument, NULL, 'r'},
    {"db", required_argument, NULL, 'd'},
    {"models", required_argument, NULL, 'm'},
    {"workers", required_argument, NULL, 10},
    {"exclude", required_argument, NULL, 'x'},
    {"extensions", required_argument, NULL, 'e'},
    {"batch-size", required_argument, NULL, 1},
    {"batch-ms", required_argument, NULL, 2},
    {"max-pixels", required_argument, NULL, 3},
    {"time-limit", required_argument, NULL, 4},
    {"log-level", required_argument, NULL, 5},
    {"queue-max", required_argument, NULL, 6},
    {"poll-interval", required_argument, NULL, 7},
    {"max-watches", required_argument, NULL, 8},
    {"debug-overflow-every", required_argument, NULL, 9},
    {"write-xmp", no_argument, NULL, 11},
    {"role", required_argument, NULL, 12},
    {"node", required_argument, NULL, 13},
    {"cnn", required_argument, NULL, 14},
    {"once", no_argument, NULL, 'o'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

/* Applies the flags onto cfg. With d set (the first pass) it only records --config and
 * --once and handles --help / --version (returns 1); the config file is read after. */
static int apply_flags(cd_config *cfg, int argc, char **argv, daemon_state *d, cx_err *err)
{
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "c:r:d:m:x:e:ohV", LONG_OPTIONS, NULL)) != -1) {
        const char *key = NULL;
        switch (c) {
        case 'c':
            if (d) d->config_path = optarg;
            continue;
        case 'o':
            if (d) d->once = 1;
            continue;
        case 'h': print_usage(stdout); return 1;
        case 'V': printf("capsearchd %s\n", CAPSEARCH_VERSION); return 1;
        case 'r': key = "root"; break;
        case 'd': key = "database"; break;
        case 'm': key = "models"; break;
        case 10: key = "workers"; break;
        case 11: key = "write_xmp"; break;
        case 12: key = "role"; break;
        case 13: key = "node"; break;
        case 14: key = "cnn"; break;
        case 'x': key = "exclude"; break;
        case 'e': key = "extensions"; break;
        case 1: key = "batch_size"; break;
        case 2: key = "batch_ms"; break;
        case 3: key = "max_pixels"; break;
        case 4: key = "time_limit"; break;
        case 5: key = "log_level"; break;
        case 6: key = "queue_max"; break;
        case 7: key = "poll_interval"; break;
        case 8: key = "max_watches"; break;
        case 9: key = "debug_overflow_every"; break;
        default:
            return cx_fail(err, -EINVAL, "unknown or incomplete option '%s' (see --help)",
                           argv[optind - 1]);
        }
        if (d) continue;
        char abs[PATH_MAX];
        const char *value = c == 11 ? "yes" : optarg;
        if (c == 'r' && optarg[0] != '/') { /* --root photos: relative to the cwd */
            if (!realpath(optarg, abs)) {
                int e = errno;
                return cx_fail(err, -e, "--root %s: %s", optarg, strerror(e));
            }
            value = abs;
        }
        int rc = cd_config_set(cfg, key, value, err);
        if (rc < 0) return rc;
    }
    if (optind < argc) {
        return cx_fail(err, -EINVAL, "unexpected argument '%s' (folders go after --root)",
                       argv[optind]);
    }
    return 0;
}

static void print_usage(FILE *out)
{
    fprintf(out,
            "Usage: capsearchd [OPTIONS]\n\n"
            "Watches photo folders and keeps the capsearch index up to date.\n\n"
            "  -c, --config FILE        config file (default /etc/capsearch/capsearchd.conf for\n"
            "                           root, else $XDG_CONFIG_HOME/capsearch/capsearchd.conf)\n"
            "  -r, --root DIR           watch DIR (repeatable; adds to the config's roots)\n"
            "  -d, --db PATH            index database\n"
            "  -m, --models DIR         model directory\n"
            "      --cnn PRECISION      float (default) or int8 (int8 CNN, bfloat16 decoder;\n"
            "                           AVX-512 VNNI + BF16: faster, captions slightly\n"
            "                           different)\n"
            "      --workers N          images captioned in parallel\n"
            "  -x, --exclude GLOB       skip matching names (repeatable)\n"
            "  -e, --extensions LIST    file extensions to index (\"jpg jpeg png\")\n"
            "      --batch-size N       results per database transaction\n"
            "      --batch-ms N         ... or at most this many milliseconds apart\n"
            "      --max-pixels N       larger images are recorded as failed\n"
            "      --time-limit SEC     per image; slower files are recorded as failed\n"
            "      --log-level LEVEL    debug, info, notice, warning, error\n"
            "      --queue-max N        files queued before the scan and watcher hold back\n"
            "      --poll-interval SEC  rescan period of folders that cannot be watched\n"
            "      --max-watches N      use at most N inotify watches (testing the limit)\n"
            "      --write-xmp          also write each caption into the image's XMP sidecar\n"
            "                           (never over what people wrote; see capsearchd(8))\n"
            "      --once               index the roots, then exit\n"
            "      --role ROLE          on a PostgreSQL index shared by several nodes: all\n"
            "                           (default), scan (watch and queue) or caption\n"
            "      --node NAME          this node's name among them (default: host name)\n"
            "  -h, --help, -V, --version\n\n"
            "Signals: SIGHUP reloads the config, SIGTERM stops after the running images.\n");
}

static int open_database(daemon_state *d)
{
    capdb_err err = {{0}, 0};
    d->shared = capdb_is_pg_target(d->cfg.db_path);
    if (d->shared) return open_server(d);
    char dir[PATH_MAX];
    /* the per-user location's folder may not exist yet */
    snprintf(dir, sizeof dir, "%s", d->cfg.db_path);
    for (char *slash = strchr(dir + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) break;
        *slash = '/';
    }
    int rc = capdb_open(d->cfg.db_path, CAPDB_OPEN_WRITE, &d->db, &err);
    if (rc < 0) cx_log(LOG_ERR, "cannot open the index %s: %s", d->cfg.db_path, err.msg);
    if (rc == 0 && take_daemon_lock(d) < 0) {
        capdb_close(d->db);
        d->db = NULL;
        return -EBUSY;
    }
    struct stat st;
    if (rc == 0 && stat(d->cfg.db_path, &st) == 0) {
        d->db_dev = st.st_dev;
        d->db_ino = st.st_ino;
    }
    return rc;
}

/* A shared index on a PostgreSQL server: no file and no lock (several nodes are the
 * point). A server that is not there yet (booting, restarting) is waited for, with
 * back-off, telling systemd why the start takes long; any other refusal (no such
 * database, a schema of another application, a newer schema) is final. */
static int open_server(daemon_state *d)
{
    if (d->cfg.node_name) snprintf(d->node, sizeof d->node, "%s", d->cfg.node_name);
    else if (gethostname(d->node, sizeof d->node - 1) != 0 || !d->node[0])
        snprintf(d->node, sizeof d->node, "node-%ld", (long)getpid());
    unsigned delay_s = 1;
    for (;;) {
        capdb_err err = {{0}, 0};
        int rc = capdb_open(d->cfg.db_path, CAPDB_OPEN_WRITE, &d->db, &err);
        if (rc == 0) {
            cx_log(LOG_INFO, "node %s on the shared index (PostgreSQL), role %s", d->node,
                   cx_role_name(d->cfg.role));
            return 0;
        }
        if (rc != -ECONNREFUSED || d->once) {
            cx_log(LOG_ERR, "cannot open the shared index: %s", err.msg);
            return rc;
        }
        cx_log(LOG_WARNING, "%s; retrying in %u s", err.msg, delay_s);
        char status[128];
        snprintf(status, sizeof status,
                 "EXTEND_TIMEOUT_USEC=%llu\nSTATUS=waiting for the index server",
                 (unsigned long long)(delay_s + 10) * 1000000ull);
        sd_notify(0, status);
        sleep(delay_s);
        if (delay_s < 30) delay_s *= 2;
    }
}

/* The index deleted, replaced or damaged under us: nothing written from now on would be
 * found again. Say why; a damaged file is moved aside (PATH.damaged, never over an
 * earlier one) with its -wal, and the -shm of a lost one removed, so that the next start
 * (systemd restarts us) creates a fresh index and its startup scan rebuilds it.
 *
 * The trust rule: this runs every STATUS_INTERVAL_MS beside a live SQLite connection, so
 * it never opens the database file (closing any descriptor of it drops every POSIX lock
 * the process holds on it, and the next client to close would delete our live WAL), and
 * it never decides from message text (a folder may be named "file is not a database"):
 * stat(2) for deleted / replaced, capdb_damaged() (SQLite's result codes, and the header
 * read through SQLite's own descriptor) for damaged. */
static int index_lost(daemon_state *d, char *why, size_t size)
{
    if (d->shared) return 0; /* the server keeps its own files */
    const char *path = d->cfg.db_path;
    char side[PATH_MAX + 16], aside[PATH_MAX + 32];
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT) return 0;
        snprintf(why, size, "the index %s was deleted", path);
        snprintf(side, sizeof side, "%s-wal", path);
        unlink(side); /* a stale WAL must never be replayed into a new index */
    } else if (st.st_dev != d->db_dev || st.st_ino != d->db_ino) {
        snprintf(why, size, "the index %s was replaced by another file", path);
        return 1; /* the new file and its -wal are someone else's */
    } else {
        if (!capdb_damaged(d->db)) return 0;
        int moved = move_aside(path, aside, sizeof aside);
        snprintf(why, size, "the index %s is damaged%s%s", path, moved ? "; moved to " : "",
                 moved ? aside : "");
        if (moved) {
            char wal_aside[PATH_MAX + 40];
            snprintf(side, sizeof side, "%s-wal", path);
            snprintf(wal_aside, sizeof wal_aside, "%s-wal", aside);
            rename(side, wal_aside); /* kept with its database, for forensics */
        }
    }
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    return 1;
}

/* Renames path to PATH.damaged, or PATH.damaged.N when that exists: link(2) refuses an
 * existing name, so an earlier backup is never overwritten. Returns 1 when moved. */
static int move_aside(const char *path, char *aside, size_t size)
{
    for (int n = 0; n < 100; n++) {
        if (n == 0) snprintf(aside, size, "%s.damaged", path);
        else snprintf(aside, size, "%s.damaged.%d", path, n);
        if (link(path, aside) == 0) return unlink(path) == 0;
        if (errno == EEXIST) continue;
        /* a file system without hard links: rename, after checking the name is free */
        struct stat st;
        if (lstat(aside, &st) == 0) continue;
        return rename(path, aside) == 0;
    }
    return 0;
}

/* One daemon per index: an flock(2) on PATH.capsearchd.lock, a file of its own (never a
 * descriptor of the database: see index_lost), held for the process's life and released
 * by the kernel when it dies, however it dies. `capsearch index` does not take it: it may
 * run beside the daemon, both writing through SQLite's locking. */
static int take_daemon_lock(daemon_state *d)
{
    char lock[PATH_MAX + 32];
    snprintf(lock, sizeof lock, "%s.capsearchd.lock", d->cfg.db_path);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        cx_log(LOG_ERR, "cannot create the lock file %s: %s", lock, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        cx_log(LOG_ERR,
               "another capsearchd%s%s already runs on the index %s: one daemon "
               "per index (stop it, or give this one another --db)",
               pid[0] ? " (pid " : "", pid[0] ? pid : "", d->cfg.db_path);
        close(fd);
        return -1;
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len)
        cx_log(LOG_WARNING, "cannot write the pid into %s", lock);
    d->lock_fd = fd;
    return 0;
}

/* ------------------------------------------------------------------ signals */

static void on_signal(uv_signal_t *h, int signum)
{
    daemon_state *d = h->data;
    if (signum == SIGHUP) {
        reload(d);
        return;
    }
    cx_log(LOG_NOTICE, "%s: stopping after the images being read", strsignal(signum));
    begin_shutdown(d);
}

/* Reads the config again; the roots are applied live, the rest at the next use. */
static void reload(daemon_state *d)
{
    cd_config fresh;
    cx_err err = {{0}};
    sd_notify(0, "RELOADING=1");
    if (load_config(d, &fresh, &err) < 0) {
        cx_log(LOG_ERR, "reload failed, keeping the old config: %s", err.msg);
        sd_notify(0, "READY=1");
        return;
    }
    if (strcmp(fresh.db_path, d->cfg.db_path))
        cx_log(LOG_WARNING, "reload: a new database path takes effect after a restart");
    if (fresh.index.workers != d->cfg.index.workers)
        cx_log(LOG_WARNING, "reload: a new worker count takes effect after a restart");
    if (fresh.cnn_int8 != d->cfg.cnn_int8)
        cx_log(LOG_WARNING, "reload: a new cnn precision takes effect after a restart");
    fresh.cnn_int8 = d->cfg.cnn_int8; /* what the running model is */
    free(fresh.db_path);
    fresh.db_path = d->cfg.db_path;
    d->cfg.db_path = NULL;
    fresh.index.workers = d->cfg.index.workers;
    /* the pipeline and watcher keep a pointer to d->cfg: swap contents in place */
    for (int i = 0; i < d->cfg.index.n_roots; i++) {
        int kept = 0;
        for (int k = 0; k < fresh.index.n_roots && !kept; k++)
            kept = !strcmp(d->cfg.index.roots[i], fresh.index.roots[k]);
        if (!kept)
            cx_log(LOG_NOTICE,
                   "no longer watching %s: its rows stay searchable until "
                   "'capsearch prune %s'",
                   d->cfg.index.roots[i], d->cfg.index.roots[i]);
    }
    cd_config old = d->cfg;
    d->cfg = fresh;
    cx_log_set_level(d->cfg.log_level);
    cd_watch_set_config(d->watch, &d->cfg);
    cd_config_free(&old);
    cx_log(LOG_NOTICE, "config reloaded: %d root%s", d->cfg.index.n_roots,
           d->cfg.index.n_roots == 1 ? "" : "s");
    sd_notify(0, "READY=1");
}

/* ------------------------------------------------------------------ status */

static void on_status_timer(uv_timer_t *t)
{
    daemon_state *d = t->data;
    char why[2 * PATH_MAX + 64];
    if (!d->stopping && index_lost(d, why, sizeof why)) {
        cx_log(LOG_CRIT, "%s: exiting; the next start builds a new index from the photos", why);
        d->exit_code = 1;
        begin_shutdown(d);
        return;
    }
    cx_stats st;
    cx_pipeline_stats(d->pipe, &st);
    publish_status(d, st.scanning ? "scanning" : "watching");
    if (d->once && d->shared && !d->stopping && once_finished(d)) {
        cx_log(LOG_INFO, "--once: everything indexed");
        begin_shutdown(d);
        return;
    }
    if (d->watchdog_usec) sd_notify(0, "WATCHDOG=1");
    int hung = cx_pipeline_hung(d->pipe);
    if (hung >= MAX_HUNG_WORKERS && !d->stopping) {
        cx_log(LOG_CRIT, "%d workers are stuck in the engine; restarting to get them back", hung);
        d->exit_code = 1;
        begin_shutdown(d);
    }
}

static void publish_status(daemon_state *d, const char *state)
{
    cx_stats st;
    cd_watch_stats ws;
    char buf[64], roots[8192];
    cx_pipeline_stats(d->pipe, &st);
    cd_watch_stats_get(d->watch, &ws);
    if (d->shared) goto notify; /* nodes report by heartbeat (the nodes table), not meta */
    snprintf(buf, sizeof buf, "%ld", (long)getpid());
    cx_pipeline_meta_set(d->pipe, CX_META_DAEMON_PID, buf);
    cx_pipeline_meta_set(d->pipe, CX_META_DAEMON_STATE, state);
    snprintf(buf, sizeof buf, "%lld", (long long)st.queued + st.in_flight);
    cx_pipeline_meta_set(d->pipe, CX_META_DAEMON_QUEUE, buf);
    snprintf(buf, sizeof buf, "%lld", (long long)(st.indexed + st.failed));
    cx_pipeline_meta_set(d->pipe, CX_META_DAEMON_INDEXED, buf);
    snprintf(buf, sizeof buf, "%lld", (long long)st.model_runs);
    cx_pipeline_meta_set(d->pipe, CX_META_DAEMON_MODEL_RUNS, buf);
    snprintf(buf, sizeof buf, "%lld", (long long)time(NULL));
    cx_pipeline_meta_set(d->pipe, CX_META_DAEMON_HEARTBEAT, buf);
    snprintf(buf, sizeof buf, "%d watched, %d polled", ws.watches, ws.unwatched);
    cx_pipeline_meta_set(d->pipe, CX_META_DAEMON_WATCHES, buf);
    cd_watch_roots_text(d->watch, roots, sizeof roots);
    cx_pipeline_meta_set(d->pipe, CX_META_DAEMON_ROOTS, roots);
    cx_pipeline_meta_set(d->pipe, CX_META_DAEMON_LAST_ERROR, cx_log_last_error());
    cx_pipeline_flush(d->pipe);

notify:;
    char status[256];
    snprintf(status, sizeof status, "STATUS=%s: indexed %lld, queued %lld%s", state,
             (long long)(st.indexed + st.failed), (long long)(st.queued + st.in_flight),
             ws.unwatched ? " (some folders polled: inotify watch limit)" : "");
    sd_notify(0, status);
    if (st.model_runs != d->last_logged_runs && !st.queued && !st.in_flight) {
        d->last_logged_runs = st.model_runs;
        cx_log(LOG_INFO,
               "model runs %lld: indexed %lld, failed %lld, moved %lld, removed %lld, "
               "unchanged %lld",
               (long long)st.model_runs, (long long)st.indexed, (long long)st.failed,
               (long long)st.moved, (long long)st.removed, (long long)st.unchanged);
    }
}

/* The walk enters a folder: watch it (the watcher is created after the pipeline). */
static int on_walk_dir(void *ctx, const char *path)
{
    daemon_state *d = ctx;
    return d->watch ? cd_watch_on_dir(d->watch, path) : 0;
}

static void on_walk_file(void *ctx, const char *path, int urgent)
{
    daemon_state *d = ctx;
    if (d->watch && !d->once) cd_watch_on_file(d->watch, path, urgent);
    else cx_pipeline_submit(d->pipe, path, urgent);
}

static void on_pipeline_idle(void *ctx)
{
    daemon_state *d = ctx;
    if (d->stopping) {
        finish(d);
        return;
    }
    publish_status(d, "watching");
    if (d->once && once_finished(d)) {
        cx_log(LOG_INFO, "--once: everything indexed");
        begin_shutdown(d);
    }
}

/* --once: done when this process is idle and, on a shared index, nothing it may still
 * have to caption waits in the queue (the status timer asks again meanwhile). */
static int once_finished(daemon_state *d)
{
    if (cx_pipeline_busy(d->pipe)) return 0;
    if (!d->shared) return 1;
    capdb_work_counts wc;
    capdb_err err = {{0}, 0};
    if (capdb_work_counts_get(d->db, &wc, &err) < 0) return 0;
    return wc.queued + wc.claimed == 0;
}

/* ------------------------------------------------------------------ shutdown */

static void begin_shutdown(daemon_state *d)
{
    if (d->stopping) return;
    d->stopping = 1;
    sd_notify(0, "STOPPING=1");
    cx_pipeline_stop(d->pipe);
    uv_timer_start(&d->grace_timer, on_grace_timer, SHUTDOWN_GRACE_MS, 0);
    if (!cx_pipeline_busy(d->pipe)) finish(d);
}

static void on_grace_timer(uv_timer_t *t)
{
    daemon_state *d = t->data;
    cx_log(LOG_WARNING, "images still in the engine after %d s; stopping without them",
           SHUTDOWN_GRACE_MS / 1000);
    finish(d);
}

static void finish(daemon_state *d)
{
    if (d->stopping == 2) return;
    d->stopping = 2;
    publish_status(d, "stopped");
    uv_stop(&d->loop);
}
