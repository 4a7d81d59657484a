/*
 * Several nodes, one library: the shared work queue and the nodes' heartbeats
 * (capdb.h "Several nodes" states the contract and its invariants).
 *
 * A claim is a lease: claimed_by, the generation it saw, and lease_until. Nodes pick
 * free items with FOR UPDATE SKIP LOCKED, so two nodes never wait on, or take, the same
 * item; a node renews its leases with every heartbeat, so only a node that stopped
 * (killed, hung, cut off) loses them, and the next claim after lease_until takes the
 * item over, naming the previous holder (taken_from) for the log.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg.h"

int capdb_pg_work_enqueue(capdb *db, const char *path, int64_t size, int64_t mtime_ns,
                          capdb_err *err)
{
    if (!path || !*path) return capdb__fail(err, -EINVAL, "enqueue: no path");
    pg_params p = {0};
    capdb__pg_path(&p, path);
    capdb__pg_int(&p, size);
    capdb__pg_int(&p, mtime_ns);
    /* The same file seen again by another node's watch or scan is not new work: only a
     * changed stat bumps the generation (and so outlives a claim taken before it). Two
     * statements, not INSERT ... ON CONFLICT DO UPDATE: that one locks the queued row
     * even when it changes nothing, and the node finishing that file would wait for our
     * batch to commit. */
    int rc = capdb__pg_atomic_begin(db, err);
    if (rc) return rc;
    rc = capdb__pg_exec(db,
                        "INSERT INTO work(path, size, mtime_ns) VALUES($1, $2, $3)"
                        " ON CONFLICT(path) DO NOTHING",
                        &p, err, "queueing a file");
    if (rc == 0)
        rc = capdb__pg_exec(db,
                            "UPDATE work SET size = $2, mtime_ns = $3,"
                            " generation = generation + 1"
                            " WHERE path = $1 AND (size <> $2 OR mtime_ns <> $3)",
                            &p, err, "queueing a changed file");
    int end = capdb__pg_atomic_end(db, rc == 0, err);
    return rc ? rc : end;
}

int capdb_pg_work_claim(capdb *db, const char *node, int max, int lease_s, capdb_work_item **items,
                        int *n, capdb_err *err)
{
    *items = NULL;
    *n = 0;
    if (!node || !*node || max <= 0 || lease_s <= 0)
        return capdb__fail(err, -EINVAL, "claim: no node name, count or lease");
    int oom = 0;
    char *name = capdb__pg_utf8(node, &oom);
    if (oom) return capdb__fail(err, -ENOMEM, "out of memory");
    pg_params p = {0};
    capdb__pg_text(&p, name);
    capdb__pg_int(&p, max);
    capdb__pg_int(&p, lease_s);
    int code;
    /* one statement, so it is its own transaction when none is open */
    PGresult *r =
        capdb__pg_run(db,
                      "WITH picked AS ("
                      "  SELECT path, claimed_by AS previous FROM work"
                      "  WHERE lease_until IS NULL OR lease_until < now()"
                      "  ORDER BY enqueued LIMIT $2 FOR UPDATE SKIP LOCKED)"
                      " UPDATE work w SET claimed_by = $1, claimed_generation = w.generation,"
                      "  lease_until = now() + make_interval(secs => $3), attempts = w.attempts + 1"
                      " FROM picked WHERE w.path = picked.path"
                      " RETURNING w.path, w.size, w.mtime_ns, w.attempts, picked.previous",
                      &p, &code, err, "claiming queued files");
    free(name);
    if (!r) return code;
    int rows = PQntuples(r);
    capdb_work_item *out = rows ? calloc((size_t)rows, sizeof *out) : NULL;
    if (rows && !out) {
        PQclear(r);
        return capdb__fail(err, -ENOMEM, "out of memory");
    }
    for (int i = 0; i < rows; i++) {
        out[i].path = (char *)capdb__pg_get_bytes(r, i, 0, NULL, &oom);
        out[i].size = capdb__pg_get_int(r, i, 1);
        out[i].mtime_ns = capdb__pg_get_int(r, i, 2);
        out[i].attempts = (int)capdb__pg_get_int(r, i, 3);
        out[i].taken_from = capdb__pg_get_text(r, i, 4, &oom);
    }
    PQclear(r);
    if (oom) {
        /* the claims stand; their lease runs out and another claim takes them */
        capdb_work_items_free(out, rows);
        return capdb__fail(err, -ENOMEM, "out of memory");
    }
    *items = out;
    *n = rows;
    return 0;
}

int capdb_pg_work_done(capdb *db, const char *node, const char *path, capdb_err *err)
{
    int oom = 0;
    char *name = capdb__pg_utf8(node, &oom);
    if (oom) return capdb__fail(err, -ENOMEM, "out of memory");
    pg_params p = {0};
    capdb__pg_text(&p, name);
    capdb__pg_path(&p, path);
    int rc = capdb__pg_atomic_begin(db, err);
    /* queued again while we worked (the file changed): free it for one more run */
    if (rc == 0)
        rc = capdb__pg_exec(db,
                            "WITH gone AS (DELETE FROM work WHERE path = $2 AND claimed_by = $1"
                            "  AND generation = claimed_generation RETURNING path)"
                            " UPDATE work SET claimed_by = NULL, lease_until = NULL"
                            " WHERE path = $2 AND claimed_by = $1"
                            "  AND NOT EXISTS (SELECT 1 FROM gone)",
                            &p, err, "finishing a queued file");
    free(name);
    int end = rc == 0 || rc != -ECONNRESET ? capdb__pg_atomic_end(db, rc == 0, err) : rc;
    return rc ? rc : end;
}

int capdb_pg_work_release(capdb *db, const char *node, capdb_err *err)
{
    int oom = 0;
    char *name = capdb__pg_utf8(node, &oom);
    if (oom) return capdb__fail(err, -ENOMEM, "out of memory");
    pg_params p = {0};
    capdb__pg_text(&p, name);
    int rc = capdb__pg_exec(db,
                            "UPDATE work SET claimed_by = NULL, lease_until = NULL"
                            " WHERE claimed_by = $1",
                            &p, err, "giving back claims");
    free(name);
    return rc;
}

int capdb_pg_node_heartbeat(capdb *db, const capdb_node *node, capdb_err *err)
{
    int oom = 0;
    char *name = capdb__pg_utf8(node->name, &oom);
    char *role = capdb__pg_utf8(node->role ? node->role : "all", &oom);
    char *host = capdb__pg_utf8(node->host ? node->host : "", &oom);
    int rc = oom ? capdb__fail(err, -ENOMEM, "out of memory") : 0;
    pg_params p = {0};
    capdb__pg_text(&p, name);
    capdb__pg_text(&p, role);
    capdb__pg_text(&p, host);
    capdb__pg_int(&p, node->pid);
    capdb__pg_int(&p, node->captioned);
    capdb__pg_double(&p, node->rate);
    capdb__pg_int(&p, node->started);
    if (rc == 0)
        rc = capdb__pg_exec(db,
                            "INSERT INTO nodes(name, role, host, pid, captioned, rate, started,"
                            " heartbeat) VALUES($1, $2, $3, $4, $5, $6, to_timestamp($7), now())"
                            " ON CONFLICT(name) DO UPDATE SET role = excluded.role,"
                            " host = excluded.host, pid = excluded.pid,"
                            " captioned = excluded.captioned, rate = excluded.rate,"
                            " started = excluded.started, heartbeat = now()",
                            &p, err, "recording the node");
    free(name);
    free(role);
    free(host);
    return rc;
}

int capdb_pg_work_renew(capdb *db, const char *node, const char *path, int lease_s,
                        capdb_err *err)
{
    int oom = 0;
    char *name = capdb__pg_utf8(node, &oom);
    if (oom) return capdb__fail(err, -ENOMEM, "out of memory");
    pg_params p = {0};
    capdb__pg_text(&p, name);
    capdb__pg_path(&p, path);
    capdb__pg_int(&p, lease_s);
    /* a row our own writer is finishing right now is locked by it: skipped, not waited
     * for (a wait across our two connections would never end) */
    int rc = capdb__pg_exec(db,
                            "UPDATE work SET lease_until = now() + make_interval(secs => $3)"
                            " WHERE path IN (SELECT path FROM work WHERE path = $2"
                            "  AND claimed_by = $1 FOR UPDATE SKIP LOCKED)",
                            &p, err, "renewing a lease");
    free(name);
    return rc;
}

int capdb_pg_foreach_node(capdb *db, int (*fn)(void *ctx, const capdb_node *node), void *ctx,
                          capdb_err *err)
{
    int code;
    PGresult *r = capdb__pg_run(
        db,
        "SELECT n.name, n.role, n.host, n.pid, n.captioned, n.rate,"
        " floor(extract(epoch FROM n.started))::bigint,"
        " floor(extract(epoch FROM n.heartbeat))::bigint,"
        " (SELECT count(*) FROM work w WHERE w.claimed_by = n.name AND w.lease_until > now())"
        " FROM nodes n ORDER BY n.heartbeat DESC, n.name",
        NULL, &code, err, "listing nodes");
    if (!r) return code;
    for (int i = 0; i < PQntuples(r); i++) {
        capdb_node node = {
            .name = PQgetvalue(r, i, 0),
            .role = PQgetvalue(r, i, 1),
            .host = PQgetvalue(r, i, 2),
            .pid = capdb__pg_get_int(r, i, 3),
            .captioned = capdb__pg_get_int(r, i, 4),
            .rate = capdb__pg_get_double(r, i, 5),
            .started = capdb__pg_get_int(r, i, 6),
            .heartbeat = capdb__pg_get_int(r, i, 7),
            .claimed = capdb__pg_get_int(r, i, 8),
        };
        if (fn(ctx, &node)) break;
    }
    PQclear(r);
    return 0;
}

int capdb_pg_work_counts(capdb *db, capdb_work_counts *out, capdb_err *err)
{
    int code;
    PGresult *r = capdb__pg_run(db,
                                "SELECT count(*) FILTER (WHERE lease_until IS NULL OR"
                                " lease_until < now()), count(*) FILTER (WHERE lease_until >="
                                " now()) FROM work",
                                NULL, &code, err, "counting queued files");
    if (!r) return code;
    out->queued = capdb__pg_get_int(r, 0, 0);
    out->claimed = capdb__pg_get_int(r, 0, 1);
    PQclear(r);
    return 0;
}
