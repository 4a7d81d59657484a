/*
 * The inotify watcher: one raw inotify fd on a uv_poll handle, one watch per folder.
 *
 * Events → pipeline:
 *   IN_CLOSE_WRITE                           submitted (urgent) once quiet for
 *                                            CLOSE_SETTLE_MS: a writer that closes
 *                                            between chunks is decoded once, at the end
 *   IN_MOVED_TO (unpaired)                   file complete → submit (urgent)
 *   IN_CREATE of a file                      a hard link or a writer that never closes:
 *                                            submitted once its size and mtime settle
 *   IN_MOVED_FROM + IN_MOVED_TO (one cookie) rename → rows follow, no model run
 *   IN_MOVED_FROM alone, after a while       moved out of the trees → rows removed
 *   IN_DELETE                                rows removed (a folder: every row under it)
 *   IN_ATTRIB of a file                      looked at again (chmod made it readable)
 *   IN_CREATE / IN_MOVED_TO of a folder      watched and walked (files created before
 *                                            the watch existed are found by the walk)
 *   IN_Q_OVERFLOW                            events were lost → rescan every root
 * A folder that cannot be watched (the watch limit, ENOSPC) is logged once, naming
 * fs.inotify.max_user_watches, and rescanned every poll_interval instead.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "watch.h"

#define WATCH_MASK                                                                                 \
    (IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ATTRIB |            \
     IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)
#define MOVE_PAIR_MS 500     /* an IN_MOVED_FROM unpaired this long moved out */
#define SETTLE_MS 3000       /* a created file unchanged this long is complete */
#define CLOSE_SETTLE_MS 1000 /* ... a closed one (IN_CLOSE_WRITE) this long */
#define ROOT_RETRY_MS 30000  /* missing roots are looked for again */
#define MAX_SETTLING 100000

/* ------------------------------------------------------------------ types */

typedef struct watch {
    int wd;
    char *path;
    struct watch *next;
} watch;

typedef struct pending_move {
    uint32_t cookie;
    char *path;
    int is_dir;
    uint64_t when_ms;
    struct pending_move *next;
} pending_move;

typedef struct settling {
    char *path;
    int urgent; /* an event's file (else one the walk found) */
    int64_t size, mtime_ns;
    uint64_t since_ms; /* size and mtime unchanged since */
    int quiet_ms;      /* ... for this long: complete */
    struct settling *next;
} settling;

typedef struct root {
    char *configured;
    char *resolved; /* NULL while missing */
    struct root *next;
} root;

struct cd_watcher {
    uv_loop_t *loop;
    cx_pipeline *pipe;
    const cd_config *cfg;
    int fd;
    uv_poll_t poll;
    uv_timer_t timer; /* moves, settling files, missing roots, polling */
    int polling;      /* uv_poll started (off while the queue is full) */
    watch **table;
    size_t table_size;
    int n_watches;
    char **unwatched;
    int n_unwatched, cap_unwatched;
    int limit_logged;
    pending_move *moves;
    settling *settle;
    int n_settling;
    root *roots;
    uint64_t last_poll_ms, last_root_check_ms;
    int64_t events_since_overflow; /* debug_overflow_every */
    int handles_open;
};

static void on_readable(uv_poll_t *h, int status, int events);
static void handle_event(cd_watcher *w, const struct inotify_event *ev);
static void overflow(cd_watcher *w, const char *why);
static void sidecar_changed(cd_watcher *w, const char *sidecar);
static void on_timer(uv_timer_t *t);
static void expire_moves(cd_watcher *w, int all);
static void check_settling(cd_watcher *w);
static void poll_unwatched(cd_watcher *w);
static char *parent_of(const char *path);
static void check_roots(cd_watcher *w);
static void start_root(cd_watcher *w, root *r);
static int add_watch(cd_watcher *w, const char *path);
static void forget_watches_under(cd_watcher *w, const char *prefix, int rm);
static void rename_watches(cd_watcher *w, const char *from, const char *to);
static watch *watch_find(cd_watcher *w, int wd);
static void watch_put(cd_watcher *w, int wd, const char *path);
static void watch_del(cd_watcher *w, int wd);
static void unwatched_add(cd_watcher *w, const char *path);
static void unwatched_del(cd_watcher *w, const char *path);
static void settle_add(cd_watcher *w, const char *path, int urgent, int quiet_ms);
static void settle_del(cd_watcher *w, const char *path);
static int is_under(const char *path, const char *dir);
static void update_polling(cd_watcher *w);

/* ------------------------------------------------------------------ lifetime */

int cd_watch_new(uv_loop_t *loop, cx_pipeline *pipe, const cd_config *cfg, cd_watcher **out,
                 cx_err *err)
{
    *out = NULL;
    cd_watcher *w = calloc(1, sizeof *w);
    if (!w) return cx_fail(err, -ENOMEM, "out of memory");
    w->loop = loop;
    w->pipe = pipe;
    w->cfg = cfg;
    w->table_size = 1024;
    w->table = calloc(w->table_size, sizeof *w->table);
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (!w->table || w->fd < 0) {
        int e = w->fd < 0 ? errno : ENOMEM;
        cx_fail(err, -e, "inotify: %s%s", strerror(e),
                e == EMFILE ? " (fs.inotify.max_user_instances reached)" : "");
        if (w->fd >= 0) close(w->fd);
        free(w->table);
        free(w);
        return -e;
    }
    uv_poll_init(loop, &w->poll, w->fd);
    uv_timer_init(loop, &w->timer);
    w->poll.data = w->timer.data = w;
    w->handles_open = 2;
    update_polling(w);
    uv_timer_start(&w->timer, on_timer, 250, 250);
    w->last_poll_ms = w->last_root_check_ms = cx_now_ms();
    *out = w;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    cd_watcher *w = h->data;
    w->handles_open--;
}

void cd_watch_free(cd_watcher *w)
{
    if (!w) return;
    uv_close((uv_handle_t *)&w->poll, on_closed);
    uv_close((uv_handle_t *)&w->timer, on_closed);
    while (w->handles_open > 0) uv_run(w->loop, UV_RUN_ONCE);
    close(w->fd);
    for (size_t i = 0; i < w->table_size; i++)
        while (w->table[i]) watch_del(w, w->table[i]->wd);
    free(w->table);
    for (int i = 0; i < w->n_unwatched; i++) free(w->unwatched[i]);
    free(w->unwatched);
    while (w->moves) {
        pending_move *m = w->moves;
        w->moves = m->next;
        free(m->path);
        free(m);
    }
    while (w->settle) settle_del(w, w->settle->path);
    while (w->roots) {
        root *r = w->roots;
        w->roots = r->next;
        free(r->configured);
        free(r->resolved);
        free(r);
    }
    free(w);
}

/* ------------------------------------------------------------------ roots */

void cd_watch_set_config(cd_watcher *w, const cd_config *cfg)
{
    w->cfg = cfg;
    /* roots no longer configured: stop watching, keep their rows */
    for (root **link = &w->roots; *link;) {
        root *r = *link;
        int keep = 0;
        for (int i = 0; i < cfg->index.n_roots; i++)
            if (!strcmp(cfg->index.roots[i], r->configured)) keep = 1;
        if (keep) {
            link = &r->next;
            continue;
        }
        cx_log(LOG_NOTICE, "no longer watching %s (its rows stay in the index)", r->configured);
        if (r->resolved) forget_watches_under(w, r->resolved, 1);
        *link = r->next;
        free(r->configured);
        free(r->resolved);
        free(r);
    }
    for (int i = 0; i < cfg->index.n_roots; i++) {
        int known = 0;
        for (root *r = w->roots; r; r = r->next)
            if (!strcmp(cfg->index.roots[i], r->configured)) known = 1;
        if (known) continue;
        root *r = calloc(1, sizeof *r);
        if (!r || !(r->configured = strdup(cfg->index.roots[i]))) {
            free(r);
            cx_log(LOG_ERR, "out of memory adding root %s", cfg->index.roots[i]);
            continue;
        }
        r->next = w->roots;
        w->roots = r;
        start_root(w, r);
    }
    update_polling(w);
}

static void start_root(cd_watcher *w, root *r)
{
    char resolved[PATH_MAX];
    struct stat st;
    if (!realpath(r->configured, resolved)) {
        int e = errno;
        cx_log(LOG_WARNING, "root %s: %s%s; looking again every %d s", r->configured, strerror(e),
               e == ELOOP    ? " (symlink loop)"
               : e == ENOENT ? " (not mounted?)"
                             : "",
               ROOT_RETRY_MS / 1000);
        return;
    }
    if (stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode)) {
        cx_log(LOG_WARNING, "root %s is not a folder; looking again every %d s", r->configured,
               ROOT_RETRY_MS / 1000);
        return;
    }
    r->resolved = strdup(resolved);
    if (!r->resolved) return;
    cx_log(LOG_INFO, "watching %s%s%s", r->configured,
           strcmp(resolved, r->configured) ? " -> " : "",
           strcmp(resolved, r->configured) ? resolved : "");
    /* the walk calls cd_watch_on_dir for the root and every folder below: that adds the watches
     * before the files are listed, so nothing created meanwhile is missed */
    cx_pipeline_scan(w->pipe, r->resolved, CX_SCAN_VANISHED);
}

static void check_roots(cd_watcher *w)
{
    for (root *r = w->roots; r; r = r->next) {
        struct stat st;
        if (!r->resolved) {
            start_root(w, r);
        } else if (stat(r->resolved, &st) != 0) {
            cx_log(LOG_WARNING,
                   "root %s disappeared (unmounted?); its rows stay, looking "
                   "again every %d s",
                   r->configured, ROOT_RETRY_MS / 1000);
            forget_watches_under(w, r->resolved, 1);
            free(r->resolved);
            r->resolved = NULL;
        }
    }
}

void cd_watch_roots_text(const cd_watcher *w, char *buf, size_t size)
{
    size_t used = 0;
    if (size) buf[0] = '\0';
    for (root *r = w->roots; r; r = r->next) {
        int n =
            snprintf(buf + used, size - used, "%s%s\n", r->resolved ? r->resolved : r->configured,
                     r->resolved ? "" : " (missing)");
        if (n < 0 || (size_t)n >= size - used) break;
        used += (size_t)n;
    }
}

void cd_watch_stats_get(const cd_watcher *w, cd_watch_stats *out)
{
    memset(out, 0, sizeof *out);
    out->watches = w->n_watches;
    out->unwatched = w->n_unwatched;
}

/* ------------------------------------------------------------------ watches */

int cd_watch_on_dir(void *watcher, const char *path)
{
    cd_watcher *w = watcher;
    return add_watch(w, path) < 0 ? 1 : 0;
}

void cd_watch_on_file(void *watcher, const char *path, int urgent)
{
    cd_watcher *w = watcher;
    struct stat st;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (lstat(path, &st) == 0) {
        int64_t age_ms = ((int64_t)now.tv_sec - (int64_t)st.st_mtim.tv_sec) * 1000 +
                         ((int64_t)now.tv_nsec - (int64_t)st.st_mtim.tv_nsec) / 1000000;
        if (age_ms < SETTLE_MS && age_ms > -SETTLE_MS) {
            /* IN_CLOSE_WRITE submits it sooner if its writer is still at work */
            settle_add(w, path, urgent, SETTLE_MS);
            return;
        }
    }
    cx_pipeline_submit(w->pipe, path, urgent);
}

/* Returns 0 when watched or left to polling (walk it), < 0 when the folder must not be
 * walked (a loop: the same folder is already watched under another path). */
static int add_watch(cd_watcher *w, const char *path)
{
    int wd;
    int simulated = w->cfg->max_watches > 0 && w->n_watches >= w->cfg->max_watches;
    if (simulated) {
        wd = -1;
        errno = ENOSPC;
    } else {
        wd = inotify_add_watch(w->fd, path, WATCH_MASK);
    }
    if (wd < 0) {
        int e = errno;
        if (e == ENOSPC) {
            if (!w->limit_logged) {
                long limit = -1;
                FILE *f = fopen("/proc/sys/fs/inotify/max_user_watches", "r");
                if (f) {
                    if (fscanf(f, "%ld", &limit) != 1) limit = -1;
                    fclose(f);
                }
                cx_log(LOG_ERR,
                       "inotify watch limit reached at %d watches (%s%ld): %s and "
                       "other folders are rescanned every %d s instead; raise the limit with "
                       "'sysctl fs.inotify.max_user_watches=524288'",
                       w->n_watches,
                       simulated ? "simulated by max_watches; fs.inotify.max_user_watches = "
                                 : "fs.inotify.max_user_watches = ",
                       limit, path, w->cfg->poll_interval_s);
                w->limit_logged = 1;
            }
            unwatched_add(w, path);
            return 0;
        }
        if (e == ENOENT || e == ENOTDIR) return -1; /* gone already */
        cx_log(LOG_WARNING, "cannot watch %s: %s; it is rescanned every %d s instead", path,
               strerror(e), w->cfg->poll_interval_s);
        unwatched_add(w, path);
        return 0;
    }
    unwatched_del(w, path);
    watch *known = watch_find(w, wd);
    if (known && strcmp(known->path, path)) {
        struct stat st;
        /* one inode, two paths: a bind mount (or the old path of a renamed folder) */
        if (stat(known->path, &st) == 0) {
            cx_log(LOG_WARNING,
                   "%s is the same folder as %s (bind mount or loop); not "
                   "walking it twice",
                   path, known->path);
            return -1;
        }
        free(known->path);
        known->path = strdup(path);
        return 0;
    }
    if (!known) watch_put(w, wd, path);
    return 0;
}

static void forget_watches_under(cd_watcher *w, const char *prefix, int rm)
{
    for (size_t i = 0; i < w->table_size; i++) {
        watch *x = w->table[i];
        while (x) {
            watch *next = x->next;
            if (is_under(x->path, prefix)) {
                if (rm) inotify_rm_watch(w->fd, x->wd);
                watch_del(w, x->wd);
            }
            x = next;
        }
    }
    for (int i = 0; i < w->n_unwatched;) {
        if (is_under(w->unwatched[i], prefix)) unwatched_del(w, w->unwatched[i]);
        else i++;
    }
}

static void rename_watches(cd_watcher *w, const char *from, const char *to)
{
    size_t from_len = strlen(from), to_len = strlen(to);
    for (size_t i = 0; i < w->table_size; i++) {
        for (watch *x = w->table[i]; x; x = x->next) {
            if (!is_under(x->path, from)) continue;
            const char *rest = x->path + from_len;
            char *np = malloc(to_len + strlen(rest) + 1);
            if (!np) continue;
            memcpy(np, to, to_len);
            strcpy(np + to_len, rest);
            free(x->path);
            x->path = np;
        }
    }
    for (int i = 0; i < w->n_unwatched; i++) {
        if (!is_under(w->unwatched[i], from)) continue;
        const char *rest = w->unwatched[i] + from_len;
        char *np = malloc(to_len + strlen(rest) + 1);
        if (!np) continue;
        memcpy(np, to, to_len);
        strcpy(np + to_len, rest);
        free(w->unwatched[i]);
        w->unwatched[i] = np;
    }
}

/* ------------------------------------------------------------------ events */

static void on_readable(uv_poll_t *h, int status, int events)
{
    cd_watcher *w = h->data;
    (void)events;
    if (status < 0) {
        cx_log(LOG_ERR, "inotify poll: %s", uv_strerror(status));
        return;
    }
    _Alignas(struct inotify_event) char buf[64 * 1024];
    for (;;) {
        ssize_t n = read(w->fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) cx_log(LOG_ERR, "reading inotify: %s", strerror(errno));
            break;
        }
        if (n == 0) break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            int every = w->cfg->debug_overflow_every;
            if (every > 0 && ++w->events_since_overflow >= every) {
                /* testing knob: lose every event still unread, as the kernel would */
                w->events_since_overflow = 0;
                while (read(w->fd, buf, sizeof buf) > 0) {}
                overflow(w, "simulated by debug_overflow_every");
                n = 0;
                break;
            }
            handle_event(w, ev);
        }
        /* backpressure: a full queue stops reading; the kernel queues (or overflows) */
        cx_stats st;
        cx_pipeline_stats(w->pipe, &st);
        if (st.queued >= w->cfg->index.queue_max) break;
    }
    update_polling(w);
}

static void handle_event(cd_watcher *w, const struct inotify_event *ev)
{
    if (ev->mask & IN_Q_OVERFLOW) {
        overflow(w, "the kernel's event queue overflowed (fs.inotify.max_queued_events)");
        return;
    }
    watch *x = watch_find(w, ev->wd);
    if (ev->mask & IN_IGNORED) {
        if (x) watch_del(w, ev->wd);
        return;
    }
    if (!x) return;
    if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) {
        for (root *r = w->roots; r; r = r->next)
            if (r->resolved && !strcmp(r->resolved, x->path))
                cx_log(LOG_WARNING, "root %s was %s; its rows stay until it is back", x->path,
                       ev->mask & IN_UNMOUNT       ? "unmounted"
                       : ev->mask & IN_DELETE_SELF ? "deleted"
                                                   : "moved");
        return;
    }
    if (ev->len == 0 || !ev->name[0]) return;
    char *path = cx_join_path(x->path, ev->name);
    if (!path) return;
    int is_dir = (ev->mask & IN_ISDIR) != 0;
    const cd_config *cfg = w->cfg;
    int wanted = is_dir ? cx_wants_dir(&cfg->index, ev->name, path)
                        : cx_wants_file(&cfg->index, ev->name, path);
    if (!is_dir && !wanted && ev->name[0] != '.' && cm_is_sidecar(ev->name) &&
        (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE))) {
        /* IMG.jpg.xmp or IMG.xmp changed (written, renamed into place, removed): the text
         * of its image is read again. Hidden names are temporary files (ours included). */
        sidecar_changed(w, path);
        free(path);
        return;
    }

    if (ev->mask & IN_MOVED_FROM) {
        settle_del(w, path);
        pending_move *m = calloc(1, sizeof *m);
        if (m) {
            m->cookie = ev->cookie;
            m->path = path;
            m->is_dir = is_dir;
            m->when_ms = cx_now_ms();
            m->next = w->moves;
            w->moves = m;
            path = NULL;
        }
    } else if (ev->mask & IN_MOVED_TO) {
        pending_move *m = NULL;
        for (pending_move **link = &w->moves; *link; link = &(*link)->next) {
            if ((*link)->cookie == ev->cookie) {
                m = *link;
                *link = m->next;
                break;
            }
        }
        if (m && wanted) {
            cx_log(LOG_DEBUG, "rename %s -> %s", m->path, path);
            if (is_dir) rename_watches(w, m->path, path);
            cx_pipeline_moved(w->pipe, m->path, path, is_dir);
        } else if (m) {
            /* renamed to something not indexed (hidden, other extension) */
            if (is_dir) forget_watches_under(w, m->path, 1);
            cx_pipeline_removed(w->pipe, m->path);
        } else if (wanted) {
            /* from outside the watched trees, or the pair was split: the content
             * fingerprint still finds a row whose file is gone */
            if (is_dir) cx_pipeline_scan(w->pipe, path, CX_SCAN_URGENT);
            else cx_pipeline_submit(w->pipe, path, 1);
        }
        if (m) {
            free(m->path);
            free(m);
        }
    } else if (ev->mask & IN_CLOSE_WRITE) {
        if (wanted) settle_add(w, path, 1, CLOSE_SETTLE_MS);
    } else if (ev->mask & IN_CREATE) {
        if (is_dir && wanted) cx_pipeline_scan(w->pipe, path, CX_SCAN_URGENT);
        else if (!is_dir && wanted) settle_add(w, path, 1, SETTLE_MS);
    } else if (ev->mask & IN_ATTRIB) {
        if (!is_dir && wanted) cx_pipeline_recheck(w->pipe, path);
    } else if (ev->mask & IN_DELETE) {
        settle_del(w, path);
        if (is_dir) forget_watches_under(w, path, 0);
        cx_pipeline_removed(w->pipe, path);
    }
    free(path);
}

/* The images a sidecar belongs to: IMG.ext for IMG.ext.xmp; IMG.<any wanted extension>
 * for IMG.xmp. */
static void sidecar_changed(cd_watcher *w, const char *sidecar)
{
    size_t n = strlen(sidecar) - 4; /* without ".xmp" */
    char image[PATH_MAX];
    if (n >= sizeof image) return;
    memcpy(image, sidecar, n);
    image[n] = '\0';
    const char *slash = strrchr(image, '/');
    const char *name = slash ? slash + 1 : image;
    struct stat st;
    if (cx_wants_file(&w->cfg->index, name, image) && lstat(image, &st) == 0) {
        cx_pipeline_text_changed(w->pipe, image);
        return;
    }
    for (int i = 0; i < w->cfg->index.n_extensions; i++) {
        for (int upper = 0; upper < 2; upper++) {
            char candidate[PATH_MAX];
            char ext[32];
            snprintf(ext, sizeof ext, "%s", w->cfg->index.extensions[i]);
            for (char *c = ext; upper && *c; c++)
                *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
            if (snprintf(candidate, sizeof candidate, "%s.%s", image, ext) >= (int)sizeof candidate)
                continue;
            if (lstat(candidate, &st) == 0 && S_ISREG(st.st_mode))
                cx_pipeline_text_changed(w->pipe, candidate);
        }
    }
}

static void overflow(cd_watcher *w, const char *why)
{
    cx_log(LOG_WARNING, "inotify events were lost (%s); rescanning every root", why);
    expire_moves(w, 1);
    for (root *r = w->roots; r; r = r->next)
        if (r->resolved) cx_pipeline_scan(w->pipe, r->resolved, CX_SCAN_VANISHED);
}

/* ------------------------------------------------------------------ timers */

static void on_timer(uv_timer_t *t)
{
    cd_watcher *w = t->data;
    uint64_t now = cx_now_ms();
    expire_moves(w, 0);
    check_settling(w);
    if (now - w->last_root_check_ms >= ROOT_RETRY_MS) {
        w->last_root_check_ms = now;
        check_roots(w);
    }
    if (w->n_unwatched > 0 && now - w->last_poll_ms >= (uint64_t)w->cfg->poll_interval_s * 1000) {
        w->last_poll_ms = now;
        poll_unwatched(w);
    }
    update_polling(w);
}

static void expire_moves(cd_watcher *w, int all)
{
    uint64_t now = cx_now_ms();
    for (pending_move **link = &w->moves; *link;) {
        pending_move *m = *link;
        if (!all && now - m->when_ms < MOVE_PAIR_MS) {
            link = &m->next;
            continue;
        }
        *link = m->next;
        struct stat st;
        if (lstat(m->path, &st) != 0) {
            if (m->is_dir) forget_watches_under(w, m->path, 1);
            char *parent = w->n_unwatched > 0 ? parent_of(m->path) : NULL;
            if (parent) {
                /* it may have gone into a polled folder (no watch there, no IN_MOVED_TO):
                 * poll those now and let the parent's vanished pass, which runs once the
                 * pipeline is idle, remove only what the poll did not find by content */
                poll_unwatched(w);
                w->last_poll_ms = now;
                cx_pipeline_scan(w->pipe, parent, CX_SCAN_VANISHED);
                free(parent);
            } else {
                /* moved out of every watched tree: gone from our point of view */
                cx_pipeline_removed(w->pipe, m->path);
            }
        }
        free(m->path);
        free(m);
    }
}

static void check_settling(cd_watcher *w)
{
    uint64_t now = cx_now_ms();
    for (settling *s = w->settle; s;) {
        settling *next = s->next;
        struct stat st;
        if (lstat(s->path, &st) != 0) {
            settle_del(w, s->path);
        } else {
            int64_t mt = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
            if (mt != s->mtime_ns || st.st_size != s->size) {
                s->mtime_ns = mt;
                s->size = st.st_size;
                s->since_ms = now;
            } else if (now - s->since_ms >= (uint64_t)s->quiet_ms) {
                cx_pipeline_submit(w->pipe, s->path, s->urgent);
                settle_del(w, s->path);
            }
        }
        s = next;
    }
}

/* Folders without a watch: rescan the topmost ones (the walk covers the rest). */
/* The folder holding path (malloc'd), or NULL. */
static char *parent_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path) return NULL;
    return strndup(path, (size_t)(slash - path));
}

static void poll_unwatched(cd_watcher *w)
{
    int scanned = 0;
    for (int i = 0; i < w->n_unwatched; i++) {
        int covered = 0;
        for (int k = 0; k < w->n_unwatched && !covered; k++)
            if (k != i && is_under(w->unwatched[i], w->unwatched[k]) &&
                strcmp(w->unwatched[i], w->unwatched[k]))
                covered = 1;
        if (covered) continue;
        cx_pipeline_scan(w->pipe, w->unwatched[i], CX_SCAN_VANISHED);
        scanned++;
    }
    cx_log(LOG_DEBUG, "polled %d unwatched folder trees", scanned);
}

static void update_polling(cd_watcher *w)
{
    cx_stats st;
    cx_pipeline_stats(w->pipe, &st);
    int full = st.queued >= w->cfg->index.queue_max;
    if (w->polling && full) {
        uv_poll_stop(&w->poll);
        w->polling = 0;
        cx_log(LOG_DEBUG, "queue full (%lld): inotify reading paused", (long long)st.queued);
    } else if (!w->polling && st.queued < w->cfg->index.queue_max / 2 + 1) {
        uv_poll_start(&w->poll, UV_READABLE, on_readable);
        w->polling = 1;
    }
}

/* ------------------------------------------------------------------ tables */

static watch *watch_find(cd_watcher *w, int wd)
{
    for (watch *x = w->table[(size_t)wd & (w->table_size - 1)]; x; x = x->next)
        if (x->wd == wd) return x;
    return NULL;
}

static void watch_put(cd_watcher *w, int wd, const char *path)
{
    if ((size_t)w->n_watches >= w->table_size) {
        size_t size = w->table_size * 2;
        watch **table = calloc(size, sizeof *table);
        if (table) {
            for (size_t i = 0; i < w->table_size; i++) {
                while (w->table[i]) {
                    watch *x = w->table[i];
                    w->table[i] = x->next;
                    x->next = table[(size_t)x->wd & (size - 1)];
                    table[(size_t)x->wd & (size - 1)] = x;
                }
            }
            free(w->table);
            w->table = table;
            w->table_size = size;
        }
    }
    watch *x = malloc(sizeof *x);
    if (!x || !(x->path = strdup(path))) {
        free(x);
        inotify_rm_watch(w->fd, wd);
        return;
    }
    x->wd = wd;
    size_t b = (size_t)wd & (w->table_size - 1);
    x->next = w->table[b];
    w->table[b] = x;
    w->n_watches++;
}

static void watch_del(cd_watcher *w, int wd)
{
    for (watch **link = &w->table[(size_t)wd & (w->table_size - 1)]; *link; link = &(*link)->next) {
        if ((*link)->wd == wd) {
            watch *x = *link;
            *link = x->next;
            free(x->path);
            free(x);
            w->n_watches--;
            return;
        }
    }
}

static void unwatched_add(cd_watcher *w, const char *path)
{
    for (int i = 0; i < w->n_unwatched; i++)
        if (!strcmp(w->unwatched[i], path)) return;
    if (w->n_unwatched == w->cap_unwatched) {
        int cap = w->cap_unwatched ? w->cap_unwatched * 2 : 64;
        char **bigger = realloc(w->unwatched, sizeof *bigger * (size_t)cap);
        if (!bigger) return;
        w->unwatched = bigger;
        w->cap_unwatched = cap;
    }
    char *copy = strdup(path);
    if (copy) w->unwatched[w->n_unwatched++] = copy;
}

static void unwatched_del(cd_watcher *w, const char *path)
{
    for (int i = 0; i < w->n_unwatched; i++) {
        if (strcmp(w->unwatched[i], path)) continue;
        free(w->unwatched[i]);
        w->unwatched[i] = w->unwatched[--w->n_unwatched];
        return;
    }
}

/* Waits until the file's size and mtime stay the same for quiet_ms, then submits it.
 * A second event for a settling file restarts its wait, with the shorter quiet period. */
static void settle_add(cd_watcher *w, const char *path, int urgent, int quiet_ms)
{
    for (settling *s = w->settle; s; s = s->next) {
        if (!strcmp(s->path, path)) {
            s->urgent |= urgent;
            if (quiet_ms < s->quiet_ms) s->quiet_ms = quiet_ms;
            s->size = -1;
            s->since_ms = cx_now_ms();
            return;
        }
    }
    if (w->n_settling >= MAX_SETTLING) return; /* the next rescan finds it */
    settling *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return;
    }
    s->size = -1;
    s->urgent = urgent;
    s->quiet_ms = quiet_ms;
    s->since_ms = cx_now_ms();
    s->next = w->settle;
    w->settle = s;
    w->n_settling++;
}

static void settle_del(cd_watcher *w, const char *path)
{
    for (settling **link = &w->settle; *link; link = &(*link)->next) {
        if (!strcmp((*link)->path, path)) {
            settling *s = *link;
            *link = s->next;
            free(s->path);
            free(s);
            w->n_settling--;
            return;
        }
    }
}

/* ------------------------------------------------------------------ helpers */

static int is_under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return !strncmp(path, dir, n) && (path[n] == '\0' || path[n] == '/');
}
