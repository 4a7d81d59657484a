/*
 * The JSON endpoints. Results carry the fields of `capsearch --json` (score, path,
 * caption, tags, width, height, taken_time, mtime, description, keywords: cli/cli_util.c
 * print_json_hit), with
 * the row's id first; ranking is the CLI's: capdb_search with the query's words and the
 * text side's concepts (cli/cmd_search.c), or pooled vectors for similar images.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "capindexer.h"
#include "web_internal.h"

#define MAX_QUERY_CONCEPTS 32 /* as cli/cmd_search.c */
#define MAX_LIMIT 100
#define MAX_OFFSET 1000
#define MAX_QUERY_BYTES 10240
#define FAILURES_SHOWN 10

void reply_json(web_reply *r, int status, jbuf *b)
{
    if (b->oom) {
        jb_free(b);
        reply_error(r, 500, "out of memory");
        return;
    }
    r->status = status;
    r->type = "application/json";
    r->body = b->p ? b->p : strdup("{}");
    r->len = b->p ? b->len : 2;
    b->p = NULL;
    b->len = b->cap = 0;
}

void reply_error(web_reply *r, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jbuf b = {0};
    jb_puts(&b, "{\"error\":");
    jb_string(&b, msg);
    jb_printf(&b, ",\"status\":%d}\n", status);
    free(r->body);
    r->body = NULL;
    if (r->fd >= 0) { /* an error replaces a file reply */
    }
    r->status = status;
    r->type = "application/json";
    r->body = b.p;
    r->len = b.len;
    if (!r->body) { /* out of memory: a static-ish fallback */
        r->body = strdup("{\"error\":\"out of memory\",\"status\":500}\n");
        r->len = r->body ? strlen(r->body) : 0;
        r->status = 500;
    }
}

typedef struct {
    jbuf *b;
    int first;
} group_ctx;

static int put_group(void *ctx, const char *value, int64_t count)
{
    group_ctx *g = ctx;
    if (!g->first) jb_puts(g->b, ",");
    jb_string(g->b, value);
    jb_printf(g->b, ":%lld", (long long)count);
    g->first = 0;
    return 0;
}

void reply_db_error(web_reply *r, int rc, const capdb_err *err)
{
    int status = 500;
    if (rc == -ENOENT || rc == -EBUSY || rc == -ECONNREFUSED || rc == -ECONNRESET || err->damaged)
        status = 503; /* the index is away for now: try again later */
    else if (rc == -EINVAL) status = 400;
    reply_error(r, status, "%s", err->msg[0] ? err->msg : strerror(-rc));
}

static void put_hit(jbuf *b, const capdb_hit *h)
{
    jb_printf(b, "{\"id\":%lld,\"score\":%.6f,\"path\":", (long long)h->id, h->score);
    jb_string(b, h->path);
    jb_puts(b, ",\"caption\":");
    jb_string(b, h->caption);
    jb_puts(b, ",\"tags\":");
    jb_string(b, h->tags);
    jb_printf(b, ",\"width\":%d,\"height\":%d,\"taken_time\":", h->width, h->height);
    if (h->taken_time) jb_printf(b, "%lld", (long long)h->taken_time);
    else jb_puts(b, "null");
    jb_printf(b, ",\"mtime\":%lld,\"description\":", (long long)(h->mtime_ns / 1000000000));
    jb_string(b, h->description);
    jb_puts(b, ",\"keywords\":");
    jb_keywords(b, h->keywords);
    jb_puts(b, "}");
}

/* limit, offset, dir, since, until: shared by search and similar. 0 ok, -1 replied. */
static int common_args(web_arg_fn arg, void *ctx, capdb_query *q, int *limit, int *offset,
                       web_reply *r)
{
    const char *s;
    *limit = 20;
    *offset = 0;
    if ((s = arg(ctx, "limit"))) {
        int64_t v = web_parse_id(s);
        if (v < 1 || v > MAX_LIMIT) {
            reply_error(r, 400, "limit wants a number from 1 to %d", MAX_LIMIT);
            return -1;
        }
        *limit = (int)v;
    }
    if ((s = arg(ctx, "offset"))) {
        int64_t v = strcmp(s, "0") == 0 ? 0 : web_parse_id(s);
        if (v < 0 || v > MAX_OFFSET) {
            reply_error(r, 400, "offset wants a number from 0 to %d", MAX_OFFSET);
            return -1;
        }
        *offset = (int)v;
    }
    if ((s = arg(ctx, "dir")) && *s) {
        if (s[0] != '/' || strlen(s) > 4096) {
            reply_error(r, 400, "dir wants an absolute folder path");
            return -1;
        }
        q->under_dir = s;
    }
    static const char *const NAMES[2] = {"since", "until"};
    for (int i = 0; i < 2; i++) {
        if (!(s = arg(ctx, NAMES[i])) || !*s) continue;
        if (web_parse_date(s, i == 1, i == 0 ? &q->since : &q->until) != 0) {
            reply_error(r, 400,
                        "%s wants a date from 1800-01-01 to 9999-12-31 like 2024-07-31 "
                        "or 2024-07-31T18:30:00",
                        NAMES[i]);
            return -1;
        }
        if (i == 0) q->has_since = 1;
        else q->has_until = 1;
    }
    q->limit = *limit + *offset + 1; /* one more: is there a next page? */
    return 0;
}

/* Runs q and replies with the page [offset, offset + limit), leaving out row `exclude`. */
static void run_query(capweb *w, const capdb_query *q, const char *text, int limit, int offset,
                      int64_t exclude, web_reply *r)
{
    web_conn *c = NULL;
    capdb_err err = {{0}, 0};
    int rc = pool_get(&w->pool, &c, &err);
    if (rc < 0) {
        reply_db_error(r, rc, &err);
        return;
    }
    capdb_results res = {0};
    rc = capdb_search(conn_db(c), q, &res, &err);
    if (rc < 0) {
        pool_put(&w->pool, c, rc != -EINVAL);
        reply_db_error(r, rc, &err);
        return;
    }
    pool_put(&w->pool, c, 0);
    jbuf b = {0};
    jb_puts(&b, "{\"query\":");
    jb_string(&b, text);
    jb_printf(&b, ",\"offset\":%d,\"limit\":%d,\"results\":[", offset, limit);
    int seen = 0, shown = 0, more = 0;
    for (int i = 0; i < res.n; i++) {
        if (res.hits[i].id == exclude) continue;
        if (seen++ < offset) continue;
        if (shown == limit) {
            more = 1;
            break;
        }
        if (shown++) jb_puts(&b, ",");
        put_hit(&b, &res.hits[i]);
    }
    jb_printf(&b, "],\"count\":%d,\"more\":%s}\n", shown, more ? "true" : "false");
    capdb_results_free(&res);
    reply_json(r, 200, &b);
}

void api_search(capweb *w, web_arg_fn arg, void *ctx, web_reply *r)
{
    const char *text = arg(ctx, "q");
    if (!text || !*text) {
        reply_error(r, 400, "q is required: the words to search for");
        return;
    }
    if (strlen(text) > MAX_QUERY_BYTES) {
        reply_error(r, 400, "q is too long (at most %d bytes)", MAX_QUERY_BYTES);
        return;
    }
    capdb_query q = {.text = text};
    int limit, offset;
    if (common_args(arg, ctx, &q, &limit, &offset, r) < 0) return;
    struct capdb_concept_term terms[MAX_QUERY_CONCEPTS];
    if (w->text_model) {
        ce_concept_weight cw[MAX_QUERY_CONCEPTS];
        int n = ce_text_concepts(w->text_model, text, cw, MAX_QUERY_CONCEPTS);
        for (int i = 0; i < n; i++) {
            terms[i].index = cw[i].index;
            terms[i].weight = cw[i].weight;
        }
        q.concepts = terms;
        q.n_concepts = n > 0 ? n : 0;
    }
    run_query(w, &q, text, limit, offset, 0, r);
}

/* The row, or a reply (404 / 503). 1 found, 0 replied. */
static int get_row(capweb *w, int64_t id, web_row *row, web_reply *r)
{
    if (id <= 0) {
        reply_error(r, 400, "an image id is a positive number");
        return 0;
    }
    web_conn *c = NULL;
    capdb_err err = {{0}, 0};
    int rc = pool_get(&w->pool, &c, &err);
    if (rc == 0) rc = conn_row(c, id, row, &err);
    pool_put(&w->pool, c, rc < 0);
    if (rc < 0) reply_db_error(r, rc, &err);
    else if (rc == 0) reply_error(r, 404, "no image with id %lld", (long long)id);
    return rc > 0;
}

void api_image(capweb *w, int64_t id, web_reply *r)
{
    web_row row;
    if (!get_row(w, id, &row, r)) return;
    jbuf b = {0};
    jb_printf(&b, "{\"id\":%lld,\"path\":", (long long)row.id);
    jb_string(&b, row.path);
    jb_puts(&b, ",\"caption\":");
    jb_string(&b, row.caption);
    jb_puts(&b, ",\"tags\":");
    jb_string(&b, row.tags);
    jb_printf(&b, ",\"width\":%d,\"height\":%d,\"taken_time\":", row.width, row.height);
    if (row.taken_time) jb_printf(&b, "%lld", (long long)row.taken_time);
    else jb_puts(&b, "null");
    jb_printf(&b, ",\"mtime\":%lld,\"size\":%lld,\"fingerprint\":\"%016llx\",\"status\":\"%s\"",
              (long long)(row.mtime_ns / 1000000000), (long long)row.size,
              (unsigned long long)row.fingerprint, row.status == CAPDB_STATUS_OK ? "ok" : "failed");
    jb_puts(&b, ",\"error\":");
    jb_string(&b, row.error);
    jb_puts(&b, ",\"model_version\":");
    jb_string(&b, row.model_version);
    jb_puts(&b, ",\"format\":");
    jb_string(&b, row.format);
    jb_puts(&b, ",\"description\":");
    jb_string(&b, row.description);
    jb_puts(&b, ",\"keywords\":");
    jb_keywords(&b, row.keywords);
    jb_printf(&b,
              ",\"thumb\":\"/thumb/%lld\",\"image\":\"/image/%lld\",\"similar\":"
              "\"/api/similar/%lld\"}\n",
              (long long)id, (long long)id, (long long)id);
    row_free(&row);
    reply_json(r, 200, &b);
}

void api_similar(capweb *w, int64_t id, web_arg_fn arg, void *ctx, web_reply *r)
{
    web_row row;
    if (!get_row(w, id, &row, r)) return;
    capdb_query q = {0};
    int limit, offset;
    float *vec = malloc(CE_POOLED_DIM * sizeof *vec);
    if (!vec) {
        reply_error(r, 500, "out of memory");
    } else if (common_args(arg, ctx, &q, &limit, &offset, r) == 0) {
        web_conn *c = NULL;
        capdb_err err = {{0}, 0};
        int rc = pool_get(&w->pool, &c, &err);
        if (rc == 0) rc = capdb_get_pooled(conn_db(c), row.path, vec, CE_POOLED_DIM, &err);
        pool_put(&w->pool, c, rc < 0 && rc != -EINVAL);
        if (rc == 0 || rc == -EINVAL) {
            reply_error(r, 404,
                        "image %lld has no image vector (it failed, or was indexed "
                        "by another model)",
                        (long long)id);
        } else if (rc < 0) {
            reply_db_error(r, rc, &err);
        } else {
            q.pooled = vec;
            q.n_pooled = CE_POOLED_DIM;
            q.limit += 1; /* the image itself is among the best */
            run_query(w, &q, NULL, limit, offset, id, r);
        }
    }
    free(vec);
    row_free(&row);
}

/* ------------------------------------------------------------------ status */

static void meta(capdb *db, const char *key, char *buf, size_t size)
{
    capdb_err err;
    if (capdb_meta_get(db, key, buf, size, &err) != 1) buf[0] = '\0';
}

typedef struct {
    jbuf *b;
    int n;
} failure_ctx;

static int put_failure(void *ctx, const char *path, const char *error, int64_t when)
{
    failure_ctx *f = ctx;
    jb_puts(f->b, f->n++ ? ",{\"path\":" : "{\"path\":");
    jb_string(f->b, path);
    jb_puts(f->b, ",\"error\":");
    jb_string(f->b, error);
    jb_printf(f->b, ",\"time\":%lld}", (long long)when);
    return f->n >= FAILURES_SHOWN;
}

typedef struct {
    jbuf *b;
    int n;
    int64_t now;
} node_ctx;

/* A shared index: one object per node, as `capsearch status --json` prints them. */
static int put_node(void *ctx, const capdb_node *n)
{
    node_ctx *nc = ctx;
    jb_puts(nc->b, nc->n++ ? ",{\"name\":" : "{\"name\":");
    jb_string(nc->b, n->name);
    jb_puts(nc->b, ",\"role\":");
    jb_string(nc->b, n->role);
    jb_puts(nc->b, ",\"host\":");
    jb_string(nc->b, n->host);
    jb_printf(nc->b,
              ",\"pid\":%lld,\"rate\":%.3f,\"captioned\":%lld,\"claimed\":%lld,"
              "\"heartbeat_age\":%lld,\"started\":%lld}",
              (long long)n->pid, n->rate, (long long)n->captioned, (long long)n->claimed,
              (long long)(nc->now - n->heartbeat), (long long)n->started);
    return 0;
}

/* The object `capsearch status --json` prints (cli/cmd_status.c), same fields. */
void api_status(capweb *w, web_reply *r)
{
    web_conn *c = NULL;
    capdb_err err = {{0}, 0};
    int rc = pool_get(&w->pool, &c, &err);
    if (rc < 0) {
        reply_db_error(r, rc, &err);
        return;
    }
    capdb *db = conn_db(c);
    capdb_counts counts;
    rc = capdb_counts_get(db, &counts, &err);
    if (rc < 0) {
        pool_put(&w->pool, c, 1);
        reply_db_error(r, rc, &err);
        return;
    }
    char model[128], state[64], queue[32], indexed[32], last_error[512], roots[4096], buf[64];
    meta(db, "model_version", model, sizeof model);
    meta(db, CX_META_DAEMON_STATE, state, sizeof state);
    meta(db, CX_META_DAEMON_QUEUE, queue, sizeof queue);
    meta(db, CX_META_DAEMON_INDEXED, indexed, sizeof indexed);
    meta(db, CX_META_DAEMON_LAST_ERROR, last_error, sizeof last_error);
    meta(db, CX_META_DAEMON_ROOTS, roots, sizeof roots);
    meta(db, CX_META_DAEMON_PID, buf, sizeof buf);
    long pid = strtol(buf, NULL, 10);
    meta(db, CX_META_DAEMON_HEARTBEAT, buf, sizeof buf);
    long long beat = strtoll(buf, NULL, 10);
    long long age = beat > 0 ? (long long)time(NULL) - beat : -1;
    if (age < -1) age = 0;
    /* EPERM: alive but another user's (the system service) */
    int running =
        pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM) && strcmp(state, "stopped") != 0;

    jbuf b = {0};
    char shown[4096];
    jb_puts(&b, "{\"database\":");
    jb_string(&b, capdb_target_display(w->cfg.db_path, shown, sizeof shown));
    jb_printf(&b, ",\"db_bytes\":%lld,\"schema_version\":%d,\"model_version\":",
              (long long)counts.db_bytes, capdb_schema_version(db));
    jb_string(&b, model[0] ? model : NULL);
    jb_printf(&b, ",\"images\":{\"total\":%lld,\"ok\":%lld,\"failed\":%lld}",
              (long long)counts.total, (long long)counts.ok, (long long)counts.failed);
    /* the same groups as `capsearch status --json` */
    group_ctx g = {&b, 1};
    jb_puts(&b, ",\"formats\":{");
    capdb_foreach_count(db, "format", put_group, &g, &err);
    jb_puts(&b, "},\"failure_reasons\":{");
    g.first = 1;
    capdb_foreach_count(db, "reason", put_group, &g, &err);
    jb_puts(&b, "}");
    if (capdb_is_shared(db)) {
        capdb_work_counts wc = {0, 0};
        capdb_work_counts_get(db, &wc, &err);
        jb_printf(&b, ",\"queue\":{\"waiting\":%lld,\"claimed\":%lld},\"nodes\":[",
                  (long long)wc.queued, (long long)wc.claimed);
        node_ctx nc = {&b, 0, (int64_t)time(NULL)};
        capdb_foreach_node(db, put_node, &nc, &err);
        jb_puts(&b, "]");
    }
    jb_printf(&b, ",\"daemon\":{\"running\":%s,\"pid\":", running ? "true" : "false");
    if (pid > 0) jb_printf(&b, "%ld", pid);
    else jb_puts(&b, "null");
    jb_puts(&b, ",\"state\":");
    jb_string(&b, state[0] ? state : NULL);
    jb_printf(&b, ",\"queue\":%lld,\"indexed\":%lld,\"heartbeat_age\":", strtoll(queue, NULL, 10),
              strtoll(indexed, NULL, 10));
    if (age >= 0) jb_printf(&b, "%lld", age);
    else jb_puts(&b, "null");
    jb_puts(&b, ",\"roots\":[");
    int first = 1;
    for (char *p = roots, *nl; *p; p = nl ? nl + 1 : p + strlen(p)) {
        nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        if (*p) {
            if (!first) jb_puts(&b, ",");
            jb_string(&b, p);
            first = 0;
        }
        if (!nl) break;
    }
    jb_puts(&b, "],\"last_error\":");
    jb_string(&b, last_error[0] ? last_error : NULL);
    jb_puts(&b, "},\"failures\":[");
    failure_ctx f = {&b, 0};
    rc = capdb_foreach_failure(db, FAILURES_SHOWN, put_failure, &f, &err);
    pool_put(&w->pool, c, rc < 0);
    if (rc < 0) {
        jb_free(&b);
        reply_db_error(r, rc, &err);
        return;
    }
    jb_puts(&b, "]}\n");
    reply_json(r, 200, &b);
}
