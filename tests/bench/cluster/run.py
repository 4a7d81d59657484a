#!/usr/bin/env python3
"""Several nodes, one index: indexing throughput with 1, 2 and 3 capsearchd processes on
one PostgreSQL server, beside one capsearchd on SQLite in the same run (a benchmark: it
prints figures, asserts nothing).

usage: run.py --build BUILD_DIR [--count N] [--models DIR] [--photos DIR]

Each configuration indexes the same N photos (copies of the sample photos, distinct
bytes each) from a fresh index: the photos are in place before the nodes start, so the
nodes' startup scans find them, queue them once and share the captioning. Every node
runs one model worker (--workers 1): the machine's cores, not the nodes, bound the
total, so "per core" against the SQLite run shows what the coordination costs
(queueing, claims with SKIP LOCKED, leases, a second connection per node).

The PostgreSQL server is a throw-away one (tests/pg/pgserver.py), on a Unix socket.
"""
import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "pg"))
from pgserver import PgServer  # noqa: E402

PHOTOS = ["dog", "eagle", "giraffe", "horses", "kite", "person", "scream"]


def make_photos(src, folder, n):
    os.makedirs(folder, exist_ok=True)
    data = {p: open(os.path.join(src, p + ".jpg"), "rb").read() for p in PHOTOS}
    for i in range(n):
        name = PHOTOS[i % len(PHOTOS)]
        with open(os.path.join(folder, "%s-%05d.jpg" % (name, i)), "wb") as f:
            f.write(data[name] + b"bench %d" % i)  # after the JPEG's end: a new fingerprint


def run_config(args, label, db, n_nodes, count_rows, photos, work):
    env = dict(os.environ, CAPSEARCH_MODELS=args.models, HOME=work)
    for k in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "CAPSEARCH_DB", "JOURNAL_STREAM"):
        env.pop(k, None)
    procs, logs = [], []
    started = time.monotonic()
    cpu_before = os.times()
    for i in range(n_nodes):
        log = open(os.path.join(work, "%s-node%d.log" % (label, i)), "w")
        logs.append(log)
        procs.append(subprocess.Popen(
            [os.path.join(args.build, "daemon", "capsearchd"), "--db", db, "--root", photos,
             "--workers", "1", "--node", "node%d" % i, "--log-level", "notice"],
            stdout=log, stderr=subprocess.STDOUT, env=env))
    deadline = started + 1800
    rows = 0
    while time.monotonic() < deadline:
        rows = count_rows()
        if rows >= args.count or any(p.poll() is not None for p in procs):
            break
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
    cpu_after = os.times()
    for log in logs:
        log.close()
    cpu = (cpu_after.children_user + cpu_after.children_system) - \
          (cpu_before.children_user + cpu_before.children_system)
    return rows, elapsed, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--models", default=os.environ.get("CAPSEARCH_MODELS") or
                    os.path.join(ROOT, "models"))
    ap.add_argument("--photos", default=None, help="the sample photos (dog.jpg, ...)")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    src = args.photos or os.path.join(args.build, "testdata", "photos")
    work = tempfile.mkdtemp(prefix="capsearch-bench-cluster.")
    photos = os.path.join(work, "photos")
    make_photos(src, photos, args.count)
    results = []
    try:
        # the peer: one daemon on the embedded SQLite index, one model worker
        dbfile = os.path.join(work, "index.db")

        def sqlite_rows():
            if not os.path.exists(dbfile):
                return 0
            try:
                con = sqlite3.connect("file:%s?mode=ro" % dbfile, uri=True, timeout=5)
                try:
                    return con.execute("SELECT count(*) FROM images").fetchone()[0]
                finally:
                    con.close()
            except sqlite3.Error:
                return 0
        print("sqlite, 1 node ...", file=sys.stderr)
        results.append(("SQLite", 1) + run_config(args, "sqlite", dbfile, 1, sqlite_rows,
                                                  photos, work))
        with PgServer() as pg:
            for n in (1, 2, 3):
                name = "bench%d" % n
                uri = pg.create_db(name)

                def pg_rows(name=name):
                    try:
                        return int(pg.psql("SELECT count(*) FROM capsearch.images",
                                           dbname=name).strip() or 0)
                    except RuntimeError:
                        return 0  # the schema is not there yet
                print("postgresql, %d node%s ..." % (n, "s" if n > 1 else ""), file=sys.stderr)
                results.append(("PostgreSQL", n) + run_config(args, name, uri, n, pg_rows,
                                                              photos, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cores = os.cpu_count() or 1
    base = results[0][3] and results[0][2] / results[0][3]  # SQLite: rows / wall s
    print("### Indexing with several nodes (%d photos, %d cores, one model worker per node)\n"
          % (args.count, cores))
    print("| index | nodes | photos indexed | wall s | photos/s | CPU s per photo | "
          "photos/s vs SQLite 1 node |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for backend, n, rows, elapsed, cpu in results:
        rate = rows / elapsed if elapsed else 0
        print("| %s | %d | %d | %.1f | %.2f | %.3f | %.2f |" % (
            backend, n, rows, elapsed, rate, cpu / rows if rows else 0,
            rate / base if base else 0))
    print("\nIdeal scaling is min(nodes, cores) = %s against one node; the CPU seconds per "
          "photo (all node processes together) show the coordination's own cost." %
          ", ".join(str(min(n, cores)) for n in (1, 2, 3)))


if __name__ == "__main__":
    main()
