#!/usr/bin/env python3
"""Load: 60 concurrent keep-alive clients on loopback against a real `capsearch serve`
(searches, image rows, similar, status, thumbnails, originals, the page); every request
must succeed (2xx/304) and the server must stay up. Bounded: 60 x 25 requests.

Usage: test_load.py CAPSEARCH PHOTOS_DIR MODELS_DIR WORKDIR
"""
import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from webfixture import Server, build_index, check, finish, run_index  # noqa: E402

CLIENTS, PER_CLIENT = 60, 25
capsearch, photos, models, work = sys.argv[1:5]
lib, env = build_index(capsearch, photos, models, work)
run_index(capsearch, env, lib)
# the rate limit is per client address and every client here is 127.0.0.1
srv = Server(capsearch, env, "--cache-dir", os.path.join(work, "cache"), "--rate-limit", "0")
st, r = srv.get_json("/api/search?q=dog+horse+kite+bird+giraffe+person&limit=50")
ids = [h["id"] for h in r["results"]]
check(len(ids) >= 5, "fixture: the photos are indexed", r)
queries = ["dog", "horse", "kite", "bird+on+a+field", "giraffe", "person", "dog%20beach", "a"]
failures, latencies, lock = [], [], threading.Lock()
start = threading.Barrier(CLIENTS)


def client(n):
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    start.wait()
    for i in range(PER_CLIENT):
        k = (n * PER_CLIENT + i) % 7
        id_ = ids[(n + i) % len(ids)]
        path = [f"/api/search?q={queries[(n + i) % len(queries)]}", f"/api/images/{id_}",
                f"/api/similar/{id_}?limit=5", "/api/status", f"/thumb/{id_}?size=256",
                f"/image/{id_}", "/"][k]
        t0 = time.time()
        try:
            c.request("GET", path)
            resp = c.getresponse()
            body = resp.read()
            ok = resp.status in (200, 304) and (not path.startswith("/api") or json.loads(body))
            if resp.getheader("Connection", "").lower() == "close":
                c.close()
        except Exception as e:       # noqa: BLE001 (any failure is the test's finding)
            ok, resp = False, None
            body = repr(e).encode()
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        with lock:
            latencies.append(time.time() - t0)
            if not ok:
                failures.append((path, resp.status if resp else None, body[:100]))
    c.close()


t0 = time.time()
threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
wall = time.time() - t0
latencies.sort()
n = len(latencies)
print(f"{n} requests from {CLIENTS} clients in {wall:.1f} s: {n / wall:.0f} req/s, "
      f"p50 {latencies[n // 2] * 1e3:.1f} ms, p99 {latencies[int(n * 0.99)] * 1e3:.1f} ms")
check(n == CLIENTS * PER_CLIENT, f"all {CLIENTS * PER_CLIENT} requests answered")
check(not failures, "no failed request", failures[:5])
check(srv.alive(), "server alive after the load")
check(srv.stop() == 0, "clean exit after the load")
finish()
