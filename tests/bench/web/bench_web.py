#!/usr/bin/env python3
"""Benchmark of `capsearch serve` on loopback: requests/s and p50/p99 latency of
/api/search on a 100k-row index (made by bench_query's generator), and of /thumb cold
(fresh cache: decode + resize + encode) and cached.

Usage: bench_web.py --capsearch PATH --bench-query PATH --photos DIR --models DIR
                    [--rows 100000] [--dir /tmp] [--clients 16] [--seconds 10]
"""
import argparse
import http.client
import os
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "web"))
from webfixture import Server  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--capsearch", required=True)
ap.add_argument("--bench-query", required=True)
ap.add_argument("--photos", required=True)
ap.add_argument("--models", required=True)
ap.add_argument("--rows", type=int, default=100000)
ap.add_argument("--dir", default="/tmp")
ap.add_argument("--clients", type=int, default=16)
ap.add_argument("--seconds", type=float, default=10)
ap.add_argument("--thumbs", type=int, default=60)
a = ap.parse_args()


def load(port, paths, clients, seconds=None, once=False):
    """Each client walks its share of paths (once) or cycles them for `seconds`."""
    lat, lock, errors = [], threading.Lock(), [0]
    end = time.time() + (seconds or 0)

    def run(n):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = paths[n::clients] if once else paths
        i = n
        while True:
            if once:
                if i - n >= len(mine):
                    break
                p = mine[i - n]
            else:
                if time.time() >= end:
                    break
                p = mine[i % len(mine)]
            i += 1
            t0 = time.perf_counter()
            c.request("GET", p)
            r = c.getresponse()
            r.read()
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)
                if r.status != 200:
                    errors[0] += 1
        c.close()

    t0 = time.time()
    ts = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.time() - t0
    lat.sort()
    n = len(lat)
    return n / wall, lat[n // 2] * 1e3, lat[min(n - 1, int(n * 0.99))] * 1e3, n, errors[0]


print(f"# capsearch serve benchmark ({os.cpu_count()} CPUs, load average "
      f"{os.getloadavg()[0]:.1f}; client and server share the machine)\n")
print("| endpoint | clients | requests | req/s | p50 ms | p99 ms | errors |")
print("|---|---|---|---|---|---|---|")
# search at 100k rows: bench_query builds (or reuses) DIR/bench-query-ROWS.db
subprocess.run([a.bench_query, "--capsearch", a.capsearch, "--rows", str(a.rows), "--runs", "10",
                "--dir", a.dir], check=True, stdout=subprocess.DEVNULL)
db = os.path.join(a.dir, f"bench-query-{a.rows}.db")
env = dict(os.environ, CAPSEARCH_MODELS=a.models, CAPSEARCH_DB=db)
srv = Server(a.capsearch, env, "--rate-limit", "0")
qs = ["dog+beach", "red+car", "kite", "a+man+riding+a+horse", "cat", "sunset+over+water",
      "two+people", "snow", "bird", "train+station"]
paths = [f"/api/search?q={q}&limit=20" for q in qs]
for c in (1, a.clients):
    rps, p50, p99, n, err = load(srv.port, paths, c, a.seconds)
    print(f"| /api/search, {a.rows} rows | {c} | {n} | {rps:.0f} | {p50:.1f} | {p99:.1f} | {err} |")
srv.stop()

# thumbnails: distinct photos (each copy's bytes differ, so fingerprints differ)
work = os.path.join(a.dir, "bench-web-thumbs")
shutil.rmtree(work, ignore_errors=True)
os.makedirs(os.path.join(work, "lib"))
names = sorted(f for f in os.listdir(a.photos) if f.endswith(".jpg"))
for i in range(a.thumbs):
    data = open(os.path.join(a.photos, names[i % len(names)]), "rb").read()
    open(os.path.join(work, "lib", f"p{i:04d}.jpg"), "wb").write(data + b"\0" * (i + 1))
env = dict(os.environ, CAPSEARCH_MODELS=a.models, CAPSEARCH_DB=os.path.join(work, "index.db"))
subprocess.run([a.capsearch, "index", "--quiet", os.path.join(work, "lib")], env=env, check=True)
srv = Server(a.capsearch, env, "--rate-limit", "0", "--cache-dir", os.path.join(work, "cache"))
st, r = srv.get_json("/api/search?q=dog+horse+kite+bird+giraffe+person+scream+a&limit=100")
ids = sorted({h["id"] for h in r["results"]})
tp = [f"/thumb/{i}?size=256" for i in ids]
c = os.cpu_count() or 2
rps, p50, p99, n, err = load(srv.port, tp, c, once=True)
print(f"| /thumb cold (decode+resize+encode, {len(ids)} photos) | {c} | {n} | {rps:.0f} | {p50:.1f} | {p99:.1f} | {err} |")
rps, p50, p99, n, err = load(srv.port, tp, a.clients, a.seconds)
print(f"| /thumb cached | {a.clients} | {n} | {rps:.0f} | {p50:.1f} | {p99:.1f} | {err} |")
srv.stop()
