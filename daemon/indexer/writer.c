/*
 * The writer: every change the pipeline makes to the index goes through here.
 *
 * Changes go into one open transaction (a batch), committed after batch_size changes or
 * batch_ms after the first: a kill loses at most the open batch, which the next scan
 * redoes (rows are keyed by path).
 *
 * The loop thread never sleeps on the database. The connection's busy timeout is
 * WRITER_BUSY_MS; when another writer holds the lock (BEGIN or COMMIT says -EBUSY), new
 * changes wait in order in a pending list and retry_timer tries again, backing off from
 * RETRY_MIN_MS to RETRY_MAX_MS, for up to RETRY_BUDGET_MS; past that the waiting changes
 * are dropped (logged, counted in write_errors; the next scan redoes them). While changes
 * wait, lookups on this connection do not see them, and the pump takes no new files once
 * WRITE_QUEUE_MAX of them wait. Only at cx_pipeline_free does a last attempt block, for
 * at most SHUTDOWN_BUSY_MS.
 *
 * A database server (PostgreSQL) can also go away: restarted, or the network cut. On a
 * shared index every change applied in the open batch is kept (batch) until its COMMIT
 * succeeds; when the connection is lost (-ECONNRESET: the transaction is gone) or cannot
 * be made (-ECONNREFUSED), the batch goes back to the front of the pending list and the
 * retry timer replays it, in order, for as long as the server stays away (changes are
 * idempotent: upserts and moves by path). Nothing is dropped for an absent server.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"

#define WRITER_BUSY_MS 20
#define RETRY_MIN_MS 50
#define RETRY_MAX_MS 1000
#define RETRY_BUDGET_MS 30000
#define SHUTDOWN_BUSY_MS 5000

enum op_kind { OP_ROW, OP_DELETE, OP_MOVE, OP_STAT, OP_META, OP_TEXT, OP_ENQUEUE, OP_DONE };

struct write_op {
    enum op_kind kind;
    capdb_image row;          /* OP_ROW (owned copies while pending) */
    int failed_row;           /* OP_ROW: a failure record (counts as failed) */
    int finish_claim;         /* OP_ROW: the row ends this node's claim on the shared queue:
                                 finished in the same op, so never without its row */
    char *a, *b;              /* OP_DELETE path; OP_MOVE from, to; OP_META key, value */
    int replace_target;       /* OP_MOVE: a file rename replaces what was there */
    int found_by_content;     /* OP_MOVE: for the log line */
    int64_t id;               /* OP_STAT, OP_TEXT */
    int64_t sidecar_mtime_ns; /* OP_TEXT (a: description, b: keywords) */
    struct stat st;           /* OP_STAT */
    int64_t size, mtime_ns;   /* OP_ENQUEUE (a: path); OP_DONE has only a */
    struct write_op *next;
};

static void submit(cx_pipeline *p, const write_op *op);
static int apply(cx_pipeline *p, const write_op *op);
static int connection_lost(int rc);
static void keep_in_batch(cx_pipeline *p, write_op *op);
static void replay_batch(cx_pipeline *p, const char *why);
static void drop_batch(cx_pipeline *p);
static int begin(cx_pipeline *p, int final);
static void drain(cx_pipeline *p);
static void give_up(cx_pipeline *p, const char *why);
static void write_failed(cx_pipeline *p);
static void arm_retry(cx_pipeline *p);
static void on_retry(uv_timer_t *t);
static void on_batch_timer(uv_timer_t *t);
static write_op *copy_op(const write_op *op);
static void free_op(write_op *op);
static char *dup_or_null(const char *s);

/* ------------------------------------------------------------------ life */

int cx__writer_init(cx_pipeline *p)
{
    capdb_set_busy_timeout(p->opt.db, WRITER_BUSY_MS);
    uv_timer_init(p->opt.loop, &p->batch_timer);
    uv_timer_init(p->opt.loop, &p->retry_timer);
    p->batch_timer.data = p->retry_timer.data = p;
    return 2;
}

void cx__writer_close(cx_pipeline *p, uv_close_cb closed)
{
    /* a last, blocking attempt for what waits on a lock: the loop is ending anyway */
    if (p->pending || p->in_tx) {
        capdb_set_busy_timeout(p->opt.db, SHUTDOWN_BUSY_MS);
        if (p->pending && begin(p, 1) == 0) drain(p);
        cx__writer_flush(p);
        if (p->in_tx) { /* still locked: the next scan redoes the batch */
            capdb_rollback(p->opt.db);
            p->in_tx = 0;
        }
        if (p->pending) give_up(p, "the database stayed locked while stopping");
    }
    uv_timer_stop(&p->retry_timer);
    uv_close((uv_handle_t *)&p->batch_timer, closed);
    uv_close((uv_handle_t *)&p->retry_timer, closed);
}

/* ------------------------------------------------------------------ the changes */

void cx__write_row(cx_pipeline *p, const capdb_image *row)
{
    write_op op = {
        .kind = OP_ROW, .row = *row, .finish_claim = cx__cluster_row_ends_claim(p, row->path)};
    submit(p, &op);
}

void cx__write_failure(cx_pipeline *p, const char *path, const struct stat *st,
                       uint64_t fingerprint, const char *error, const char *reason)
{
    write_op op = {
        .kind = OP_ROW,
        .failed_row = 1,
        .finish_claim = cx__cluster_row_ends_claim(p, path),
        .row =
            {
                .path = path,
                .device = (uint64_t)st->st_dev,
                .inode = (uint64_t)st->st_ino,
                .size = (int64_t)st->st_size,
                .mtime_ns = cx__mtime_ns(st),
                .fingerprint = fingerprint,
                .status = CAPDB_STATUS_FAILED,
                .error = error,
                .model_version = ce_model_version(p->opt.model),
                .format = cx_format_of(path),
                .reason = reason,
            },
    };
    submit(p, &op);
}

void cx__write_delete(cx_pipeline *p, const char *path)
{
    write_op op = {.kind = OP_DELETE, .a = (char *)path};
    submit(p, &op);
}

void cx__write_move(cx_pipeline *p, const char *from, const char *to, int replace_target,
                    int found_by_content)
{
    write_op op = {.kind = OP_MOVE,
                   .a = (char *)from,
                   .b = (char *)to,
                   .replace_target = replace_target,
                   .found_by_content = found_by_content};
    submit(p, &op);
}

void cx__write_text(cx_pipeline *p, int64_t id, const cm_text *text)
{
    write_op op = {.kind = OP_TEXT,
                   .id = id,
                   .a = (char *)text->description,
                   .b = (char *)text->keywords,
                   .sidecar_mtime_ns = text->sidecar_mtime_ns};
    submit(p, &op);
}

void cx__write_stat(cx_pipeline *p, int64_t id, const struct stat *st)
{
    write_op op = {.kind = OP_STAT, .id = id, .st = *st};
    submit(p, &op);
}

void cx__write_enqueue(cx_pipeline *p, const char *path, int64_t size, int64_t mtime_ns)
{
    write_op op = {.kind = OP_ENQUEUE, .a = (char *)path, .size = size, .mtime_ns = mtime_ns};
    submit(p, &op);
}

void cx__write_done(cx_pipeline *p, const char *path)
{
    write_op op = {.kind = OP_DONE, .a = (char *)path};
    submit(p, &op);
}

int cx__write_meta(cx_pipeline *p, const char *key, const char *value)
{
    write_op op = {.kind = OP_META, .a = (char *)key, .b = (char *)(value ? value : "")};
    submit(p, &op);
    return p->opt.stop_on_write_error && p->stats.write_errors > 0 ? -EIO : 0;
}

void cx__write_result(cx_pipeline *p, job *j)
{
    const char *path = j->path;
    struct stat now;
    if (lstat(path, &now) != 0 || now.st_ino != j->st.st_ino || now.st_dev != j->st.st_dev ||
        now.st_size != j->st.st_size || cx__mtime_ns(&now) != cx__mtime_ns(&j->st)) {
        /* changed or gone while the model ran: the result describes no file */
        if (lstat(path, &now) == 0) j->e->dirty = 1;
        return;
    }
    if (j->rc < 0) {
        cx_log(LOG_WARNING, "%s: %s; recorded failed", path, j->error);
        cx__write_failure(p, path, &j->st, j->fingerprint, j->error, cx_failure_reason(j->rc));
        return;
    }
    if (j->wrote_sidecar) p->stats.sidecars_written++;
    if (j->sidecar_error[0]) cx_log(LOG_WARNING, "writing the XMP sidecar: %s", j->sidecar_error);
    capdb_image row;
    cx_image_row(path, &j->st, j->fingerprint, &j->result, ce_model_version(p->opt.model), &row);
    cx__write_row(p, &row);
}

int cx__writer_flush(cx_pipeline *p)
{
    if (!p->in_tx) return 0;
    uv_timer_stop(&p->batch_timer);
    capdb_err err = {{0}, 0};
    int rc = capdb_commit(p->opt.db, &err);
    if (connection_lost(rc)) {
        replay_batch(p, err.msg);
        return -EBUSY;
    }
    if (rc == -EBUSY) {
        /* the transaction stays open; COMMIT is retried by the timer */
        if (!p->locked_since_ms) p->locked_since_ms = cx_now_ms();
        if (cx_now_ms() - p->locked_since_ms < RETRY_BUDGET_MS) {
            arm_retry(p);
            return rc;
        }
    }
    if (rc < 0) {
        cx_log(LOG_ERR, "committing %d index changes: %s (they are redone by the next scan)",
               p->tx_ops, err.msg);
        capdb_rollback(p->opt.db);
        write_failed(p);
    } else {
        /* after the "indexed" lines of its rows: a kill between the two loses them */
        if (p->tx_ops > 0)
            cx_log(LOG_DEBUG, "committed %d index change%s", p->tx_ops, p->tx_ops == 1 ? "" : "s");
        if (!p->pending) p->locked_since_ms = 0;
    }
    drop_batch(p); /* committed (or given up): nothing to replay */
    p->in_tx = 0;
    p->tx_ops = 0;
    return rc;
}

int cx__writer_backlog(const cx_pipeline *p) { return p->n_pending; }

int cx__writer_waiting(const cx_pipeline *p)
{
    return p->n_pending > 0 || (p->in_tx && p->locked_since_ms != 0);
}

/* ------------------------------------------------------------------ helpers */

/* Applies now when the lock is ours (or free), else keeps a copy in order. */
static void submit(cx_pipeline *p, const write_op *op)
{
    if (p->opt.stop_on_write_error && p->stats.write_errors > 0) return;
    if (!p->pending) {
        int rc = begin(p, 0);
        if (rc == 0 && apply(p, op) == 0) return;
        if (rc != 0 && rc != -EBUSY) return; /* logged and counted by begin */
        /* locked, or the server went away (the batch is back in pending): keep op after it */
    }
    write_op *copy = copy_op(op);
    if (!copy) {
        cx_log(LOG_ERR, "out of memory keeping an index change (redone by the next scan)");
        return;
    }
    if (p->pending_tail) p->pending_tail->next = copy;
    else p->pending = copy;
    p->pending_tail = copy;
    p->n_pending++;
    arm_retry(p);
}

/* 0, or -ECONNRESET when the server connection was lost: op is not applied and the
 * open batch is back in the pending list (replay_batch); the caller keeps op after it. */
static int apply(cx_pipeline *p, const write_op *op)
{
    capdb_err err = {{0}, 0};
    int64_t n = 0, replaced = 0;
    int rc = 0;
    switch (op->kind) {
    case OP_ROW:
        rc = capdb_upsert(p->opt.db, &op->row, &err);
        if (rc == 0 && op->finish_claim)
            rc = capdb_work_done(p->opt.db, p->cluster.node, op->row.path, &err);
        if (rc < 0) {
            cx_log(LOG_ERR, "%s %s: %s",
                   op->failed_row ? "recording the failure of" : "writing to the index",
                   op->row.path, err.msg);
        } else if (op->failed_row) {
            p->stats.failed++;
        } else {
            p->stats.indexed++;
            cx_log(LOG_DEBUG, "indexed %s: \"%s\" [%s]", op->row.path,
                   op->row.caption ? op->row.caption : "", op->row.tags ? op->row.tags : "");
        }
        break;
    case OP_DELETE:
        if ((rc = capdb_delete_path(p->opt.db, op->a, &n, &err)) < 0) {
            cx_log(LOG_ERR, "removing %s from the index: %s", op->a, err.msg);
        } else if (n > 0) {
            p->stats.removed += n;
            cx_log(LOG_INFO, "removed %s (%lld row%s)", op->a, (long long)n, n == 1 ? "" : "s");
        }
        break;
    case OP_MOVE:
        if (op->replace_target) rc = capdb_delete_path(p->opt.db, op->b, &replaced, &err);
        if (connection_lost(rc)) break;
        if ((rc = capdb_move_path(p->opt.db, op->a, op->b, &n, &err)) < 0) {
            cx_log(LOG_ERR, "moving %s to %s in the index: %s", op->a, op->b, err.msg);
        } else if (n > 0) {
            p->stats.moved += n;
            if (op->found_by_content)
                cx_log(LOG_INFO, "moved %s -> %s (found by content)", op->a, op->b);
            else
                cx_log(LOG_INFO, "moved %s -> %s (%lld row%s kept)", op->a, op->b, (long long)n,
                       n == 1 ? "" : "s");
        }
        break;
    case OP_STAT:
        if ((rc = capdb_update_stat(p->opt.db, op->id, (uint64_t)op->st.st_dev,
                                    (uint64_t)op->st.st_ino, (int64_t)op->st.st_size,
                                    cx__mtime_ns(&op->st), &err)) < 0)
            cx_log(LOG_ERR, "refreshing a file's stat in the index: %s", err.msg);
        break;
    case OP_META:
        if ((rc = capdb_meta_set(p->opt.db, op->a, op->b, &err)) < 0)
            cx_log(LOG_WARNING, "meta %s: %s", op->a, err.msg);
        break;
    case OP_TEXT:
        if ((rc = capdb_update_text(p->opt.db, op->id, op->a, op->b, op->sidecar_mtime_ns, &err)) <
            0)
            cx_log(LOG_ERR, "writing what people wrote to the index: %s", err.msg);
        break;
    case OP_ENQUEUE:
        rc = capdb_work_enqueue(p->opt.db, op->a, op->size, op->mtime_ns, &err);
        /* locked: another node's open batch is queueing the same file (both saw it) */
        if (rc == -EBUSY)
            cx_log(LOG_DEBUG, "%s: another node is queueing it right now", op->a);
        else if (rc < 0) cx_log(LOG_ERR, "queueing %s for the nodes: %s", op->a, err.msg);
        break;
    case OP_DONE:
        if ((rc = capdb_work_done(p->opt.db, p->cluster.node, op->a, &err)) < 0)
            cx_log(LOG_ERR, "finishing the claim on %s: %s", op->a, err.msg);
        break;
    }
    if (connection_lost(rc)) {
        replay_batch(p, err.msg);
        return -ECONNRESET;
    }
    /* the storage refuses every write from now on (a database server fails the one
     * statement, where SQLite fails the COMMIT): a write error, as at COMMIT */
    if (rc == -ENOSPC || rc == -EROFS || rc == -EACCES) write_failed(p);
    if (capdb_is_shared(p->opt.db)) keep_in_batch(p, copy_op(op));
    if (++p->tx_ops >= p->opt.settings->batch_size) cx__writer_flush(p);
    return 0;
}

/* 0 with a transaction open; -EBUSY when another writer holds the lock; else logged and
 * counted. final: the last attempt at shutdown (no timers). */
static int begin(cx_pipeline *p, int final)
{
    if (p->in_tx) return 0;
    if (p->opt.stop_on_write_error && p->stats.write_errors > 0) return -EIO;
    capdb_err err = {{0}, 0};
    int rc = capdb_begin(p->opt.db, &err);
    if (connection_lost(rc) && !final) {
        /* the server is away: wait for it as long as it takes (nothing is dropped) */
        if (!p->locked_since_ms) {
            p->locked_since_ms = cx_now_ms();
            cx_log(LOG_WARNING, "the index server is unreachable: %s; changes wait, retrying",
                   err.msg);
        }
        p->server_away = 1;
        return -EBUSY;
    }
    if (rc == -EBUSY && !final) {
        if (!p->locked_since_ms) p->locked_since_ms = cx_now_ms();
        if (cx_now_ms() - p->locked_since_ms < RETRY_BUDGET_MS) return -EBUSY;
    }
    if (rc < 0) {
        cx_log(LOG_ERR, "starting an index transaction: %s", err.msg);
        write_failed(p);
        return rc == -EBUSY ? -ETIMEDOUT : rc;
    }
    if (p->server_away) {
        cx_log(LOG_NOTICE, "the index server is back after %.1f s; %d waiting change%s replayed",
               (double)(cx_now_ms() - p->locked_since_ms) / 1000.0, p->n_pending,
               p->n_pending == 1 ? "" : "s");
        p->server_away = 0;
    }
    p->in_tx = 1;
    p->tx_ops = 0;
    if (!final)
        uv_timer_start(&p->batch_timer, on_batch_timer, (uint64_t)p->opt.settings->batch_ms, 0);
    return 0;
}

/* Applies the waiting changes in order while the lock is ours. */
static void drain(cx_pipeline *p)
{
    while (p->pending) {
        if (!p->in_tx) {
            int rc = begin(p, 0);
            if (rc == -EBUSY) {
                arm_retry(p);
                return;
            }
            if (rc < 0) {
                give_up(p, "the index could not be written");
                return;
            }
        }
        write_op *op = p->pending;
        p->pending = op->next;
        if (!p->pending) p->pending_tail = NULL;
        p->n_pending--;
        op->next = NULL;
        if (apply(p, op) < 0) {
            /* the batch went back to pending; op belongs after it, before the rest */
            write_op **link = &p->pending;
            while (*link && *link != p->pending_rest) link = &(*link)->next;
            op->next = *link;
            *link = op;
            if (!op->next) p->pending_tail = op;
            p->n_pending++;
            arm_retry(p);
            return;
        }
        free_op(op);
    }
    p->locked_since_ms = 0;
    p->retry_delay_ms = 0;
}

static void give_up(cx_pipeline *p, const char *why)
{
    if (p->n_pending > 0)
        cx_log(LOG_ERR, "%s: %d index change%s dropped (redone by the next scan)", why,
               p->n_pending, p->n_pending == 1 ? "" : "s");
    while (p->pending) {
        write_op *op = p->pending;
        p->pending = op->next;
        free_op(op);
    }
    p->pending_tail = NULL;
    p->n_pending = 0;
    p->locked_since_ms = 0;
    p->retry_delay_ms = 0;
}

/* The stop itself waits for the pump: callers may be walking the queues. */
static void write_failed(cx_pipeline *p)
{
    p->stats.write_errors++;
    if (p->opt.stop_on_write_error) cx__schedule(p);
}

static void arm_retry(cx_pipeline *p)
{
    if (uv_is_active((uv_handle_t *)&p->retry_timer) ||
        uv_is_closing((uv_handle_t *)&p->retry_timer))
        return;
    p->retry_delay_ms = p->retry_delay_ms ? p->retry_delay_ms * 2 : RETRY_MIN_MS;
    if (p->retry_delay_ms > RETRY_MAX_MS) p->retry_delay_ms = RETRY_MAX_MS;
    uv_timer_start(&p->retry_timer, on_retry, (uint64_t)p->retry_delay_ms, 0);
}

static void on_retry(uv_timer_t *t)
{
    cx_pipeline *p = t->data;
    if (p->in_tx && cx__writer_flush(p) == -EBUSY) return; /* re-armed */
    if (p->pending) {
        if (p->opt.stop_on_write_error && p->stats.write_errors > 0) give_up(p, "stopping");
        else drain(p);
        if (!p->pending && !p->in_tx) p->retry_delay_ms = 0;
    }
    cx__schedule(p);
}

static void on_batch_timer(uv_timer_t *t) { cx__writer_flush(t->data); }

static int connection_lost(int rc) { return rc == -ECONNRESET || rc == -ECONNREFUSED; }

/* A change applied in the open batch (a copy; NULL when out of memory: that one change
 * is then not replayable, which only matters if the server goes away before COMMIT). */
static void keep_in_batch(cx_pipeline *p, write_op *op)
{
    if (!op) return;
    op->next = NULL;
    if (p->batch_tail) p->batch_tail->next = op;
    else p->batch = op;
    p->batch_tail = op;
    p->n_batch++;
}

/* The transaction died with the connection: its changes go back to the front of the
 * pending list, in order; p->pending_rest marks where the older pending ones start. */
static void replay_batch(cx_pipeline *p, const char *why)
{
    if (!p->server_away)
        cx_log(LOG_WARNING,
               "lost the index server (%s): %d change%s of the open batch kept "
               "and replayed when it is back",
               why, p->n_batch, p->n_batch == 1 ? "" : "s");
    p->server_away = 1;
    capdb_rollback(p->opt.db);
    uv_timer_stop(&p->batch_timer);
    p->in_tx = 0;
    p->tx_ops = 0;
    if (!p->locked_since_ms) p->locked_since_ms = cx_now_ms();
    p->pending_rest = p->pending;
    if (p->batch) {
        p->batch_tail->next = p->pending;
        if (!p->pending) p->pending_tail = p->batch_tail;
        p->pending = p->batch;
        p->n_pending += p->n_batch;
    }
    p->batch = p->batch_tail = NULL;
    p->n_batch = 0;
    arm_retry(p);
}

static void drop_batch(cx_pipeline *p)
{
    while (p->batch) {
        write_op *op = p->batch;
        p->batch = op->next;
        free_op(op);
    }
    p->batch_tail = NULL;
    p->n_batch = 0;
}

static write_op *copy_op(const write_op *op)
{
    write_op *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    *c = *op;
    c->next = NULL;
    c->a = c->b = NULL;
    memset(&c->row, 0, sizeof c->row);
    int ok = 1;
    if (op->a) ok &= (c->a = strdup(op->a)) != NULL;
    if (op->b) ok &= (c->b = strdup(op->b)) != NULL;
    if (op->kind == OP_ROW) {
        c->row = op->row;
        c->row.path = dup_or_null(op->row.path);
        c->row.error = dup_or_null(op->row.error);
        c->row.caption = dup_or_null(op->row.caption);
        c->row.tags = dup_or_null(op->row.tags);
        c->row.model_version = dup_or_null(op->row.model_version);
        c->row.description = dup_or_null(op->row.description);
        c->row.keywords = dup_or_null(op->row.keywords);
        c->row.reason = dup_or_null(op->row.reason);
        c->row.format = dup_or_null(op->row.format);
        c->row.concepts = c->row.pooled = NULL;
        ok &= c->row.path != NULL;
        if (op->row.concepts && op->row.n_concepts > 0) {
            float *v = malloc(sizeof *v * (size_t)op->row.n_concepts);
            if (v) memcpy(v, op->row.concepts, sizeof *v * (size_t)op->row.n_concepts);
            c->row.concepts = v;
            ok &= v != NULL;
        }
        if (op->row.pooled && op->row.n_pooled > 0) {
            float *v = malloc(sizeof *v * (size_t)op->row.n_pooled);
            if (v) memcpy(v, op->row.pooled, sizeof *v * (size_t)op->row.n_pooled);
            c->row.pooled = v;
            ok &= v != NULL;
        }
    }
    if (!ok) {
        free_op(c);
        return NULL;
    }
    return c;
}

static void free_op(write_op *op)
{
    if (!op) return;
    free(op->a);
    free(op->b);
    if (op->kind == OP_ROW) {
        free((char *)op->row.path);
        free((char *)op->row.error);
        free((char *)op->row.caption);
        free((char *)op->row.tags);
        free((char *)op->row.model_version);
        free((char *)op->row.description);
        free((char *)op->row.keywords);
        free((char *)op->row.reason);
        free((char *)op->row.format);
        free((float *)op->row.concepts);
        free((float *)op->row.pooled);
    }
    free(op);
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }
