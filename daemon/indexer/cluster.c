/*
 * Several nodes, one library (a shared index: capdb_is_shared): this node's part.
 *
 *   feeding (roles all, scan)   a file the pipeline would caption (new, changed, an
 *                               older model) is queued in the database instead
 *                               (cx__cluster_hand_off): any node may caption it;
 *   captioning (all, caption)   claim_timer claims queued files while this node has
 *                               free model slots (SKIP LOCKED: never one another live
 *                               node holds) and runs them through the pipeline as
 *                               urgent entries marked claimed; the writer finishes each
 *                               claim (OP_DONE) right after its row;
 *   heartbeat_timer             renews the leases of the entries this node still holds
 *                               and records its rate and role for `capsearch status`.
 *
 * A node that dies stops renewing; its claims are taken over once their lease runs out,
 * and the taker logs which files it took from which node. Claims and heartbeats use a
 * connection of their own, so they never wait for the writer's open batch.
 *
 * Invariants:
 *  - an entry with claimed = 1 holds a claim of this node; holding counts them;
 *  - a claim ends with the row it produced, in the same write (the row op carries it:
 *    a row that cannot be written never finishes its claim, so its lease runs out and
 *    the file is claimed again); a claimed entry that ends without a row (unchanged,
 *    gone) is finished by OP_DONE while the pipeline runs; at a stop the claims still held
 *    are given back instead, and whoever claims them again finds an unchanged row when
 *    the result was written.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pipeline.h"

#define CLAIM_PERIOD_MS 250
#define HEARTBEAT_MS 5000
#define LEASE_S 30
/* A file whose claims ended this many times without an answer (the node holding it was
 * killed each time) is recorded failed rather than handed out again. */
#define MAX_ATTEMPTS 3

static void on_claim(uv_timer_t *t);
static void on_heartbeat(uv_timer_t *t);
static void take(cx_pipeline *p, const capdb_work_item *item);
static double recent_rate(cx_pipeline *p);
static void claim_soon(cx_pipeline *p);

const char *cx_role_name(int role)
{
    switch (role) {
    case CX_ROLE_SCAN: return "scan";
    case CX_ROLE_CAPTION: return "caption";
    default: return "all";
    }
}

int cx_role_parse(const char *name)
{
    if (!strcmp(name, "all")) return CX_ROLE_ALL;
    if (!strcmp(name, "scan")) return CX_ROLE_SCAN;
    if (!strcmp(name, "caption")) return CX_ROLE_CAPTION;
    return -1;
}

/* ------------------------------------------------------------------ life */

int cx__cluster_start(cx_pipeline *p, cx_err *err)
{
    const cx_cluster_options *c = p->opt.cluster;
    if (!c || !capdb_is_shared(p->opt.db)) return 0;
    capdb_err derr = {{0}, 0};
    int rc = capdb_open(c->db_target, CAPDB_OPEN_WRITE, &p->cluster.db, &derr);
    if (rc < 0) return cx_fail(err, rc, "the coordination connection: %s", derr.msg);
    /* short: a heartbeat never stalls the loop on a row some writer holds */
    capdb_set_busy_timeout(p->cluster.db, 200);
    p->cluster.active = 1;
    p->cluster.role = c->role;
    p->cluster.started = (int64_t)time(NULL);
    snprintf(p->cluster.node, sizeof p->cluster.node, "%s", c->node_name);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    snprintf(p->cluster.host, sizeof p->cluster.host, "%s", host);
    uv_timer_init(p->opt.loop, &p->cluster.claim_timer);
    uv_timer_init(p->opt.loop, &p->cluster.heartbeat_timer);
    p->cluster.claim_timer.data = p->cluster.heartbeat_timer.data = p;
    p->handles_open += 2;
    on_heartbeat(&p->cluster.heartbeat_timer); /* be listed at once */
    uv_timer_start(&p->cluster.heartbeat_timer, on_heartbeat, HEARTBEAT_MS, HEARTBEAT_MS);
    if (c->role != CX_ROLE_SCAN)
        uv_timer_start(&p->cluster.claim_timer, on_claim, CLAIM_PERIOD_MS, CLAIM_PERIOD_MS);
    cx_log(LOG_INFO, "node %s (role %s) on a shared index: files are queued in the database%s",
           p->cluster.node, cx_role_name(c->role),
           c->role == CX_ROLE_SCAN ? " for the captioning nodes" : " and captioned by any node");
    return 0;
}

/* After the final commit: the claims still held go back to the queue at once. */
void cx__cluster_stop(cx_pipeline *p, uv_close_cb closed)
{
    if (!p->cluster.active) return;
    capdb_err err = {{0}, 0};
    if (capdb_work_release(p->cluster.db, p->cluster.node, &err) < 0)
        cx_log(LOG_WARNING,
               "giving back this node's claims: %s (they return when their "
               "lease runs out)",
               err.msg);
    capdb_node me = {.name = p->cluster.node,
                     .role = "stopped",
                     .host = p->cluster.host,
                     .pid = getpid(),
                     .captioned = p->stats.model_runs,
                     .started = p->cluster.started};
    capdb_node_heartbeat(p->cluster.db, &me, &err);
    uv_timer_stop(&p->cluster.claim_timer);
    uv_timer_stop(&p->cluster.heartbeat_timer);
    uv_close((uv_handle_t *)&p->cluster.claim_timer, closed);
    uv_close((uv_handle_t *)&p->cluster.heartbeat_timer, closed);
    capdb_close(p->cluster.db);
    p->cluster.db = NULL;
    p->cluster.active = 0;
}

/* ------------------------------------------------------------------ the two directions */

int cx__cluster_hand_off(cx_pipeline *p, job *j)
{
    if (!p->cluster.active || !j->e || j->e->claimed) return 0;
    cx__write_enqueue(p, j->path, (int64_t)j->st.st_size, cx__mtime_ns(&j->st));
    p->stats.enqueued++;
    cx__job_finish(j);
    return 1;
}

int cx__cluster_row_ends_claim(cx_pipeline *p, const char *path)
{
    if (!p->cluster.active) return 0;
    entry *e = cx__entry_find(p, path);
    if (!e || !e->claimed) return 0;
    e->claimed = 0;
    p->cluster.holding--;
    claim_soon(p);
    return 1;
}

void cx__cluster_entry_gone(cx_pipeline *p, entry *e)
{
    if (!e->claimed) return;
    e->claimed = 0;
    p->cluster.holding--;
    if (!p->stopped) cx__write_done(p, e->path);
    claim_soon(p);
}

/* ------------------------------------------------------------------ timers */

static void on_claim(uv_timer_t *t)
{
    cx_pipeline *p = t->data;
    if (p->stopped || cx__writer_waiting(p)) return; /* the database is away: hold on */
    /* enough to keep every model slot busy with a file or two hashed behind each */
    int want = 2 * p->workers + 2 - p->cluster.holding;
    if (want <= 0) return;
    capdb_work_item *items = NULL;
    int n = 0;
    capdb_err err = {{0}, 0};
    int rc = capdb_work_claim(p->cluster.db, p->cluster.node, want, LEASE_S, &items, &n, &err);
    if (rc < 0) {
        if (!p->cluster.claim_failing)
            cx_log(LOG_WARNING, "claiming queued files: %s (retrying)", err.msg);
        p->cluster.claim_failing = 1;
        return;
    }
    if (p->cluster.claim_failing) cx_log(LOG_INFO, "claiming queued files again");
    p->cluster.claim_failing = 0;
    for (int i = 0; i < n; i++) take(p, &items[i]);
    capdb_work_items_free(items, n);
}

static void on_heartbeat(uv_timer_t *t)
{
    cx_pipeline *p = t->data;
    capdb_node me = {
        .name = p->cluster.node,
        .role = cx_role_name(p->cluster.role),
        .host = p->cluster.host,
        .pid = getpid(),
        .captioned = p->stats.model_runs,
        .rate = recent_rate(p),
        .started = p->cluster.started,
    };
    capdb_err err = {{0}, 0};
    /* only the claims still being worked on: one lost track of must run out */
    for (size_t i = 0; i < p->table_size; i++)
        for (entry *e = p->table[i]; e; e = e->next)
            if (e->claimed) capdb_work_renew(p->cluster.db, p->cluster.node, e->path, LEASE_S, NULL);
    if (capdb_node_heartbeat(p->cluster.db, &me, &err) < 0) {
        if (!p->cluster.heartbeat_failing)
            cx_log(LOG_WARNING, "node heartbeat: %s (retrying every %d s)", err.msg,
                   HEARTBEAT_MS / 1000);
        p->cluster.heartbeat_failing = 1;
    } else {
        if (p->cluster.heartbeat_failing) cx_log(LOG_INFO, "node heartbeat: the database is back");
        p->cluster.heartbeat_failing = 0;
    }
}

/* ------------------------------------------------------------------ helpers */

static void take(cx_pipeline *p, const capdb_work_item *item)
{
    if (item->taken_from) {
        int same = !strcmp(item->taken_from, p->cluster.node);
        cx_log(LOG_NOTICE, "taking over %s from node %s%s: its lease ran out (attempt %d)",
               item->path, item->taken_from,
               same ? " (this node, before a restart)" : " (stopped, killed or cut off)",
               item->attempts);
    }
    if (item->attempts > MAX_ATTEMPTS) {
        /* every node that held it died on it: record it failed instead of a fourth try */
        struct stat st;
        if (lstat(item->path, &st) == 0) {
            cx_log(LOG_ERR, "%s: %d claims ended without an answer; recorded failed", item->path,
                   item->attempts - 1);
            cx__write_failure(p, item->path, &st, 0,
                              "the nodes captioning it stopped (crash or kill) every time",
                              "crashed");
        }
        cx__write_done(p, item->path);
        return;
    }
    entry *e = cx__entry_find(p, item->path);
    if (e && e->claimed) return; /* held already (a second claim after a lease slip) */
    cx_pipeline_submit(p, item->path, 1);
    e = cx__entry_find(p, item->path);
    if (!e) {
        cx_log(LOG_ERR, "out of memory taking %s (its lease will run out)", item->path);
        return;
    }
    e->claimed = 1;
    p->cluster.holding++;
}

/* A slot is about to free up: claim on the next loop iteration rather than at the next
 * tick (a node waiting up to CLAIM_PERIOD_MS per file ran at a third of its speed). */
static void claim_soon(cx_pipeline *p)
{
    if (p->stopped || p->cluster.role == CX_ROLE_SCAN) return;
    if (p->cluster.holding > p->workers) return; /* still enough in hand */
    uv_timer_start(&p->cluster.claim_timer, on_claim, 0, CLAIM_PERIOD_MS);
}

/* Captions per second over the last minute: heartbeats keep one sample each. */
static double recent_rate(cx_pipeline *p)
{
    enum { N = sizeof p->cluster.samples / sizeof p->cluster.samples[0] };
    uint64_t now = cx_now_ms();
    int i = p->cluster.next_sample;
    p->cluster.samples[i].ms = now;
    p->cluster.samples[i].count = p->stats.model_runs;
    p->cluster.next_sample = (i + 1) % N;
    if (p->cluster.n_samples < N) p->cluster.n_samples++;
    /* the oldest sample kept */
    int oldest = p->cluster.n_samples < N ? 0 : p->cluster.next_sample;
    uint64_t dt = now - p->cluster.samples[oldest].ms;
    if (dt == 0) return 0;
    return (double)(p->stats.model_runs - p->cluster.samples[oldest].count) * 1000.0 / (double)dt;
}
