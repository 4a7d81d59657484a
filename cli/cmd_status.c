/*
 * capsearch status [--json] [--db PATH]: the database, the model that indexed it, how
 * many images it holds, the latest failures, and whether the daemon is alive (from the
 * meta keys capsearchd writes every few seconds; see capdb.h). On a shared index
 * (PostgreSQL), the nodes instead: each one's role, rate and claims, and the backlog.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "capindexer.h"

#define FAILURES_SHOWN 10
/* A live daemon refreshes its heartbeat every few seconds. */
#define HEARTBEAT_STALE_S 120

#define MAX_GROUPS 32
typedef struct {
    int n;
    char names[MAX_GROUPS][32];
    int64_t counts[MAX_GROUPS];
} group_counts;

typedef struct {
    char path[4096];
    int schema_version;
    char model_version[128];
    capdb_counts counts;
    /* the daemon */
    long pid;
    int running;
    char state[64], queue[32], indexed[32], last_error[512], roots[4096];
    int64_t heartbeat_age; /* seconds, -1 = never */
    group_counts formats;  /* indexed images per format */
    group_counts reasons;  /* failed images per reason */
} status_info;

typedef struct {
    int n;
    char *paths[FAILURES_SHOWN], *errors[FAILURES_SHOWN];
    int64_t when[FAILURES_SHOWN];
} failure_list;

/* A shared index: the nodes that sent a heartbeat, newest first, and the queue. */
#define NODES_SHOWN 64
typedef struct {
    int shared, n;
    capdb_node nodes[NODES_SHOWN]; /* strings below */
    char names[NODES_SHOWN][80], roles[NODES_SHOWN][16], hosts[NODES_SHOWN][80];
    capdb_work_counts work;
} node_list;
static node_list g_nodes; /* large: static, filled once per run */

/* The options this subcommand takes (rows of cli/options.c), for parsing and help. */
static const int ACCEPTED[] = {CLI_OPT_JSON, CLI_OPT_DB, 0};

static void usage(FILE *out);
static int gather(capdb *db, status_info *st, failure_list *fl);
static void print_text(const status_info *st, const failure_list *fl);
static void print_json(const status_info *st, const failure_list *fl);
static int collect_failure(void *ctx, const char *path, const char *error, int64_t when);
static int collect_group(void *ctx, const char *value, int64_t count);
static void print_groups(const char *label, const group_counts *g);
static void print_groups_json(const char *key, const group_counts *g);
static void meta(capdb *db, const char *key, char *buf, size_t size);
static int collect_node(void *ctx, const capdb_node *node);
static void print_nodes_text(const node_list *nl);
static void print_nodes_json(const node_list *nl);
static void human_size(int64_t bytes, char *buf, size_t size);

int cmd_status(int argc, char **argv)
{
    cli_options o;
    cli_options_init(&o);
    int first = cli_parse_options(argc, argv, ACCEPTED, &o, usage);
    if (first <= 0) return first == 0 ? EXIT_MATCH : EXIT_TROUBLE;
    if (first != argc) {
        usage(stderr);
        return EXIT_TROUBLE;
    }
    const char *db_path = o.db_path;
    int json = o.json;

    status_info st = {0};
    failure_list fl = {0};
    capdb *db = NULL;
    int rc = cli_open_db(db_path, &db, st.path, sizeof st.path);
    if (rc == 0) rc = gather(db, &st, &fl);
    if (rc == 0) {
        if (json) print_json(&st, &fl);
        else print_text(&st, &fl);
        if (fflush(stdout) != 0) rc = cli_error("writing status: %s", strerror(errno));
    }
    for (int i = 0; i < fl.n; i++) {
        free(fl.paths[i]);
        free(fl.errors[i]);
    }
    capdb_close(db);
    return rc;
}

static void usage(FILE *out)
{
    fputs("Usage: capsearch status [OPTIONS]\n\n"
          "Show the index database, its schema and model versions, image counts, recent\n"
          "failures, and whether capsearchd is running.\n\n",
          out);
    cli_print_options(out, ACCEPTED);
}

static int gather(capdb *db, status_info *st, failure_list *fl)
{
    capdb_err err = {{0}, 0};
    st->schema_version = capdb_schema_version(db);
    if (capdb_counts_get(db, &st->counts, &err) < 0 ||
        capdb_foreach_failure(db, FAILURES_SHOWN, collect_failure, fl, &err) < 0 ||
        capdb_foreach_count(db, "format", collect_group, &st->formats, &err) < 0 ||
        capdb_foreach_count(db, "reason", collect_group, &st->reasons, &err) < 0)
        return cli_db_error(&err);
    if (capdb_is_shared(db)) {
        g_nodes.shared = 1;
        if (capdb_foreach_node(db, collect_node, &g_nodes, &err) < 0 ||
            capdb_work_counts_get(db, &g_nodes.work, &err) < 0)
            return cli_db_error(&err);
    }
    meta(db, "model_version", st->model_version, sizeof st->model_version);
    meta(db, CX_META_DAEMON_STATE, st->state, sizeof st->state);
    meta(db, CX_META_DAEMON_QUEUE, st->queue, sizeof st->queue);
    meta(db, CX_META_DAEMON_INDEXED, st->indexed, sizeof st->indexed);
    meta(db, CX_META_DAEMON_LAST_ERROR, st->last_error, sizeof st->last_error);
    meta(db, CX_META_DAEMON_ROOTS, st->roots, sizeof st->roots);

    char buf[64];
    meta(db, CX_META_DAEMON_PID, buf, sizeof buf);
    st->pid = strtol(buf, NULL, 10);
    meta(db, CX_META_DAEMON_HEARTBEAT, buf, sizeof buf);
    long long beat = strtoll(buf, NULL, 10);
    st->heartbeat_age = beat > 0 ? (int64_t)time(NULL) - beat : -1;
    if (st->heartbeat_age < -1) st->heartbeat_age = 0; /* clock skew */
    /* EPERM: alive but another user's (the system service) */
    int alive = st->pid > 0 && (kill((pid_t)st->pid, 0) == 0 || errno == EPERM);
    st->running = alive && strcmp(st->state, "stopped") != 0;
    return 0;
}

static void print_text(const status_info *st, const failure_list *fl)
{
    char size[32];
    human_size(st->counts.db_bytes, size, sizeof size);
    char text[4096];
    printf("database:  %s (%s)\n", cu_printable(st->path, text, sizeof text), size);
    printf("schema:    version %d\n", st->schema_version);
    printf("model:     %s\n", st->model_version[0]
                                  ? cu_printable(st->model_version, text, sizeof text)
                                  : "(nothing indexed yet)");
    printf("images:    %lld indexed, %lld failed\n", (long long)st->counts.ok,
           (long long)st->counts.failed);
    print_groups("formats:   ", &st->formats);
    print_groups("failures:  ", &st->reasons);
    if (g_nodes.shared) {
        print_nodes_text(&g_nodes);
    } else if (st->running) {
        printf("daemon:    running (pid %ld), %s", st->pid,
               st->state[0] ? cu_printable(st->state, text, sizeof text) : "state unknown");
        if (st->queue[0]) printf(", %s queued", cu_printable(st->queue, text, sizeof text));
        if (st->indexed[0])
            printf(", %s indexed since start", cu_printable(st->indexed, text, sizeof text));
        if (st->heartbeat_age >= 0) printf(", heartbeat %llds ago", (long long)st->heartbeat_age);
        if (st->heartbeat_age > HEARTBEAT_STALE_S) printf(" (stalled?)");
        putchar('\n');
    } else {
        printf("daemon:    not running\n");
    }
    if (st->roots[0]) {
        printf("watching:  ");
        for (const char *p = st->roots; *p;) {
            if (*p == '\n') {
                if (p[1]) fputs("\n           ", stdout);
                p++;
                continue;
            }
            int len = cu_printable_len(p);
            if (len == 0) {
                putchar('?');
                p++;
            } else {
                fwrite(p, 1, (size_t)len, stdout);
                p += len;
            }
        }
        putchar('\n');
    }
    if (st->last_error[0])
        printf("last error: %s\n", cu_printable(st->last_error, text, sizeof text));
    if (fl->n) {
        printf("recent failures:\n");
        for (int i = 0; i < fl->n; i++) {
            char when[32] = "";
            time_t t = (time_t)fl->when[i];
            struct tm tm;
            if (t && localtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
            printf("  %s  ", when);
            cu_fputs_printable(fl->paths[i], stdout);
            fputs(": ", stdout);
            cu_fputs_printable(fl->errors[i], stdout);
            putchar('\n');
        }
    }
}

static void print_json(const status_info *st, const failure_list *fl)
{
    fputs("{\"database\":", stdout);
    cli_json_string(stdout, st->path);
    printf(",\"db_bytes\":%lld,\"schema_version\":%d,\"model_version\":",
           (long long)st->counts.db_bytes, st->schema_version);
    if (st->model_version[0]) cli_json_string(stdout, st->model_version);
    else fputs("null", stdout);
    printf(",\"images\":{\"total\":%lld,\"ok\":%lld,\"failed\":%lld}", (long long)st->counts.total,
           (long long)st->counts.ok, (long long)st->counts.failed);
    print_groups_json("formats", &st->formats);
    print_groups_json("failure_reasons", &st->reasons);
    print_nodes_json(&g_nodes);
    printf(",\"daemon\":{\"running\":%s,\"pid\":", st->running ? "true" : "false");
    if (st->pid > 0) printf("%ld", st->pid);
    else fputs("null", stdout);
    fputs(",\"state\":", stdout);
    if (st->state[0]) cli_json_string(stdout, st->state);
    else fputs("null", stdout);
    printf(",\"queue\":%lld,\"indexed\":%lld,\"heartbeat_age\":", strtoll(st->queue, NULL, 10),
           strtoll(st->indexed, NULL, 10));
    if (st->heartbeat_age >= 0) printf("%lld", (long long)st->heartbeat_age);
    else fputs("null", stdout);
    fputs(",\"roots\":[", stdout);
    const char *p = st->roots;
    for (int first = 1; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len) {
            char root[4096];
            snprintf(root, sizeof root, "%.*s", (int)len, p);
            if (!first) putchar(',');
            cli_json_string(stdout, root);
            first = 0;
        }
        p += len + (nl ? 1 : 0);
    }
    fputs("],\"last_error\":", stdout);
    if (st->last_error[0]) cli_json_string(stdout, st->last_error);
    else fputs("null", stdout);
    fputs("},\"failures\":[", stdout);
    for (int i = 0; i < fl->n; i++) {
        fputs(i ? ",{\"path\":" : "{\"path\":", stdout);
        cli_json_string(stdout, fl->paths[i]);
        fputs(",\"error\":", stdout);
        cli_json_string(stdout, fl->errors[i]);
        printf(",\"time\":%lld}", (long long)fl->when[i]);
    }
    fputs("]}\n", stdout);
}

static int collect_failure(void *ctx, const char *path, const char *error, int64_t when)
{
    failure_list *fl = ctx;
    if (fl->n >= FAILURES_SHOWN) return 1;
    fl->paths[fl->n] = strdup(path);
    fl->errors[fl->n] = strdup(error);
    fl->when[fl->n] = when;
    if (!fl->paths[fl->n] || !fl->errors[fl->n]) {
        free(fl->paths[fl->n]);
        free(fl->errors[fl->n]);
        return 1;
    }
    fl->n++;
    return 0;
}

static int collect_node(void *ctx, const capdb_node *node)
{
    node_list *nl = ctx;
    if (nl->n >= NODES_SHOWN) return 1;
    int i = nl->n++;
    snprintf(nl->names[i], sizeof nl->names[i], "%s", node->name);
    snprintf(nl->roles[i], sizeof nl->roles[i], "%s", node->role);
    snprintf(nl->hosts[i], sizeof nl->hosts[i], "%s", node->host);
    nl->nodes[i] = *node;
    nl->nodes[i].name = nl->names[i];
    nl->nodes[i].role = nl->roles[i];
    nl->nodes[i].host = nl->hosts[i];
    return 0;
}

/* A node whose heartbeat is older than this is shown as gone (heartbeats every 5 s). */
#define NODE_STALE_S 30

static void print_nodes_text(const node_list *nl)
{
    char a[128], b[128], c[128];
    printf("queue:     %lld waiting, %lld being captioned\n", (long long)nl->work.queued,
           (long long)nl->work.claimed);
    if (nl->n == 0) {
        printf("nodes:     none yet (start capsearchd with this --db on each machine)\n");
        return;
    }
    printf("nodes:     %d\n", nl->n);
    int64_t now = (int64_t)time(NULL);
    for (int i = 0; i < nl->n; i++) {
        const capdb_node *n = &nl->nodes[i];
        int64_t age = now - n->heartbeat;
        const char *state = !strcmp(n->role, "stopped") ? "stopped"
                            : age > NODE_STALE_S        ? "gone (no heartbeat)"
                                                        : "running";
        printf("  %-16s %-7s %-22s pid %-7lld %6.2f photos/s  %lld captioned, %lld claimed, "
               "heartbeat %llds ago\n",
               cu_printable(n->name, a, sizeof a), cu_printable(n->role, b, sizeof b), state,
               (long long)n->pid, n->rate, (long long)n->captioned, (long long)n->claimed,
               (long long)(age < 0 ? 0 : age));
        (void)c;
        if (n->host[0] && strcmp(n->host, n->name))
            printf("  %-16s on %s\n", "", cu_printable(n->host, c, sizeof c));
    }
}

static void print_nodes_json(const node_list *nl)
{
    if (!nl->shared) return;
    printf(",\"queue\":{\"waiting\":%lld,\"claimed\":%lld},\"nodes\":[", (long long)nl->work.queued,
           (long long)nl->work.claimed);
    int64_t now = (int64_t)time(NULL);
    for (int i = 0; i < nl->n; i++) {
        const capdb_node *n = &nl->nodes[i];
        fputs(i ? ",{\"name\":" : "{\"name\":", stdout);
        cli_json_string(stdout, n->name);
        fputs(",\"role\":", stdout);
        cli_json_string(stdout, n->role);
        fputs(",\"host\":", stdout);
        cli_json_string(stdout, n->host);
        printf(",\"pid\":%lld,\"rate\":%.3f,\"captioned\":%lld,\"claimed\":%lld,"
               "\"heartbeat_age\":%lld,\"started\":%lld}",
               (long long)n->pid, n->rate, (long long)n->captioned, (long long)n->claimed,
               (long long)(now - n->heartbeat), (long long)n->started);
    }
    putchar(']');
}

static void meta(capdb *db, const char *key, char *buf, size_t size)
{
    capdb_err err;
    if (capdb_meta_get(db, key, buf, size, &err) != 1) buf[0] = '\0';
}

static void human_size(int64_t bytes, char *buf, size_t size)
{
    static const char *const UNITS[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 4) v /= 1024, u++;
    snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", v, UNITS[u]);
}

static int collect_group(void *ctx, const char *value, int64_t count)
{
    group_counts *g = ctx;
    if (g->n == MAX_GROUPS) return 1;
    snprintf(g->names[g->n], sizeof g->names[g->n], "%s", value ? value : "unknown");
    g->counts[g->n++] = count;
    return 0;
}

/* "formats:   jpeg 120, png 3" (nothing when there are none) */
static void print_groups(const char *label, const group_counts *g)
{
    if (!g->n) return;
    fputs(label, stdout);
    for (int i = 0; i < g->n; i++) {
        char name[64];
        printf("%s%s %lld", i ? ", " : "", cu_printable(g->names[i], name, sizeof name),
               (long long)g->counts[i]);
    }
    putchar('\n');
}

static void print_groups_json(const char *key, const group_counts *g)
{
    printf(",\"%s\":{", key);
    for (int i = 0; i < g->n; i++) {
        if (i) putchar(',');
        cli_json_string(stdout, g->names[i]);
        printf(":%lld", (long long)g->counts[i]);
    }
    putchar('}');
}
