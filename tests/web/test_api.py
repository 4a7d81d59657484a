#!/usr/bin/env python3
"""The JSON API, thumbnails and originals through a real `capsearch serve` on loopback,
against a real index of real photos (compared with what the CLI prints for the same
index), plus the security rules and the faults: bad ids, path traversal, hostile
queries, huge requests, a missing, locked or replaced database.

With CAPSEARCH_TEST_PG set (tests/pg/with_pg.sh) the index is a PostgreSQL database
(webfixture.index_db); the faults of files become those of databases: no schema yet,
a table locked by another session, the schema replaced or dropped under the server,
the database server restarted.

Usage: test_api.py CAPSEARCH PHOTOS_DIR MODELS_DIR WORKDIR   (exit 77: photos or model absent)
"""
import json
import os
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from webfixture import (PG, Server, build_index, check, finish, index_db, pg, pg_load,  # noqa: E402
                        pg_tool, run_index)

capsearch, photos, models, work = sys.argv[1:5]
lib, env = build_index(capsearch, photos, models, work)


def exif_rotated(src, dst):
    """src with an EXIF APP1 saying Orientation 6 (rotate 90 degrees clockwise)."""
    data = open(src, "rb").read()
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">H", 1) + \
        struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + b"\x00\x00\x00\x00"
    app1 = b"Exif\x00\x00" + tiff
    open(dst, "wb").write(data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:])


exif_rotated(os.path.join(photos, "dog.jpg"), os.path.join(lib, "rotated.jpg"))
open(os.path.join(lib, "broken.jpg"), "wb").write(b"\xff\xd8\xff\xe0 not really a jpeg")
hostile_name = os.path.join(lib, "kite \x1b[31m\"quote\\.jpg")
shutil.copy(os.path.join(photos, "kite.jpg"), hostile_name)
run_index(capsearch, env, lib)
cache = os.path.join(work, "cache")
srv = Server(capsearch, env, "--cache-dir", cache)


def cli_json(*args):
    p = subprocess.run([capsearch, *args], env=env, capture_output=True)
    return [json.loads(l) for l in p.stdout.decode().splitlines() if l.strip()]


# ------------------------------------------------------------------ search
st, res = srv.get_json("/api/search?q=dog&limit=50")
# Three photos hold a dog: dog.jpg, its rotated copy, and person.jpg (a dog beside the woman
# and her horse); the two upright ones come first.
dog_photos = {os.path.join(lib, n) for n in ("dog.jpg", "person.jpg")}
check(st == 200 and {h["path"] for h in res["results"][:2]} == dog_photos,
      "search dog: the two photos with an upright dog first", res)
cli = cli_json("--json", "--limit", "50", "dog")
api = [{k: v for k, v in h.items() if k != "id"} for h in res["results"]]
check(api == cli, "search results and fields equal `capsearch --json` (same ranking)",
      f"\napi={api}\ncli={cli}")
check(all(isinstance(h["id"], int) and h["id"] > 0 for h in res["results"]), "every hit has its row id")
for q in ["horse", "kite", "bird on a field", "DOGS"]:
    st, r = srv.get_json("/api/search?q=" + q.replace(" ", "+") + "&limit=20")
    c = cli_json("--json", "--limit", "20", q)
    check(st == 200 and [{k: v for k, v in h.items() if k != "id"} for h in r["results"]] == c,
          f"search {q!r} equals the CLI")
allids = [h["id"] for h in res["results"]]
pages = [srv.get_json(f"/api/search?q=dog&limit=1&offset={i}")[1] for i in range(len(allids) + 1)]
check(len(allids) >= 2 and [h["id"] for p in pages for h in p["results"]] == allids and
      [p["more"] for p in pages] == [True] * (len(allids) - 1) + [False, False],
      "limit/offset pages follow the ranking; 'more' says when a next page exists", pages)
st, r = srv.get_json("/api/search?q=dog&dir=" + os.path.join(work, "nowhere"))
check(st == 200 and r["results"] == [], "dir filter: nothing outside the folder")
st, r = srv.get_json("/api/search?q=dog&dir=" + lib)
check(st == 200 and len(r["results"]) > 0, "dir filter: the library folder")
st, r = srv.get_json("/api/search?q=dog&since=9000-01-01")
check(st == 200 and r["results"] == [], "since in the future: nothing")
st, r = srv.get_json("/api/search?q=dog&until=2100-01-01&since=1800-01-01")
check(st == 200 and len(r["results"]) == len(res["results"]), "a wide date range keeps everything")
for bad in ["/api/search", "/api/search?q=", "/api/search?q=dog&limit=0", "/api/search?q=dog&limit=101",
            "/api/search?q=dog&limit=-1", "/api/search?q=dog&limit=abc", "/api/search?q=dog&offset=99999",
            "/api/search?q=dog&since=2024-02-30", "/api/search?q=dog&until=yesterday",
            "/api/search?q=dog&dir=relative/path", "/api/search?q=" + "x" * 20000]:
    st, r = srv.get_json(bad)
    check(st == 400 and isinstance(r.get("error"), str) and r.get("status") == 400,
          f"{bad[:60]} -> 400 with a JSON error", (st, r))

hostile = [b'"dog', b'dog"', b"dog*", b"^dog", b"dog NEAR beach", b"NEAR(dog beach)",
           b"dog AND", b"OR dog", b"NOT", b"dog -cat", b"(dog", b"dog)", b"caption:dog",
           b"{caption tags}: dog", b"dog'); DROP TABLE images; --", b"dog\tbeach\n",
           b"\xff\xfe dog", b"\xe2\x80\x9cdog\xe2\x80\x9d", "🐕 dog".encode(),
           b"caf\xc3\xa9", b"dog%", b"x" * 10240, (b"word " * 2000)]
no_words = [b"*", b'""', b"()", b"\\", b"%", b"_", b"\xc3", b"-- ++ !!"]
from urllib.parse import quote_from_bytes  # noqa: E402
for q in hostile + no_words:
    st, h, body = srv.request("GET", "/api/search?q=" + quote_from_bytes(q, safe=""))
    low = body.lower()
    ok = st in (200, 400) if q in no_words else st in (200, 400)
    try:
        j = json.loads(body)
    except ValueError:
        j = None
    check(ok and j is not None and b"fts5" not in low and b"syntax" not in low and b"sqlite" not in low,
          f"hostile query {q[:30]!r}: {st}, JSON, no SQL text", body[:200])
    if q in no_words:
        check(st == 400, f"no words in {q!r} -> 400", body[:200])
check(srv.alive(), "the server survived the hostile queries")

# ------------------------------------------------------------------ images, similar
byname = {}
# "rotated" finds rotated.jpg by its file name (the model reads the sideways dog as a cat).
st, r = srv.get_json("/api/search?q=dog+horse+kite+bird+giraffe+person+sheep+rotated&limit=100")
for h in r["results"]:
    byname[os.path.basename(h["path"])] = h
for h in r["results"]:
    st, img = srv.get_json(f"/api/images/{h['id']}")
    check(st == 200 and all(img[k] == h[k] for k in ("path", "caption", "tags", "width", "height",
                                                     "taken_time", "mtime")),
          f"/api/images/{h['id']} agrees with the search hit", (img, h))
dog = byname["dog.jpg"]
st, sim = srv.get_json(f"/api/similar/{dog['id']}?limit=20")
cli = cli_json("similar", "--json", "--limit", "20", dog["path"])
check(st == 200 and [{k: v for k, v in x.items() if k != "id"} for x in sim["results"]] == cli,
      "/api/similar equals `capsearch similar --json`", (sim, cli))
check(all(x["id"] != dog["id"] for x in sim["results"]), "similar leaves the image itself out")
st, status = srv.get_json("/api/status")
cs = cli_json("status", "--json")[0]
check(st == 200 and status["images"] == cs["images"] and status["images"]["failed"] == 1 and
      status["failures"] == cs["failures"] and set(status) == set(cs) and
      status["daemon"] == cs["daemon"], "/api/status equals `capsearch status --json`", (status, cs))
broken_id = None
st, r = srv.get_json("/api/search?q=broken")
for x in r["results"]:
    broken_id = x["id"]
hostile_hit = byname.get(os.path.basename(hostile_name))
check(hostile_hit is not None and hostile_hit["path"] == hostile_name,
      "a name with ESC, quote and backslash comes back exactly (valid JSON)")

bad_ids = ["0", "-1", "abc", "1e3", "01", "%20" + str(dog["id"]), "99999999", "9" * 30,
           str(dog["id"]) + "x", str(dog["id"]) + "/", ""]
for base in ["/api/images/", "/api/similar/", "/thumb/", "/image/"]:
    for b in bad_ids:
        st, h, body = srv.request("GET", base + b)
        try:
            j = json.loads(body)
        except ValueError:
            j = None
        check(st in (400, 404) and j and j["status"] == st, f"{base}{b} -> {st} JSON error", body[:100])

traversal = ["/image/../../../../etc/passwd", "/image/..%2F..%2F..%2Fetc%2Fpasswd",
             "/image/%2e%2e/%2e%2e/etc/passwd", "/image//etc/passwd", "/image/%2Fetc%2Fpasswd",
             f"/image/{dog['id']}/../../../../etc/passwd", "/thumb/..%2f..%2fetc%2fpasswd",
             "/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/etc/passwd",
             "http://127.0.0.1/etc/passwd", "/image/1%00../../etc/passwd", "/app.js/../../etc/passwd",
             "/image/" + "%2e%2e%2f" * 20 + "etc/passwd"]
for t in traversal:
    st, h, body = srv.request("GET", t)
    check(st in (400, 404) and b"root:" not in body, f"traversal {t[:50]} -> {st}, no file", body[:80])

# ------------------------------------------------------------------ originals
st, h, body = srv.request("GET", f"/image/{dog['id']}")
check(st == 200 and body == open(dog["path"], "rb").read() and h["content-type"] == "image/jpeg",
      "/image/ID: the original's bytes, image/jpeg")
etag = h.get("etag")
st, h2, body = srv.request("GET", f"/image/{dog['id']}", {"If-None-Match": etag})
check(etag and st == 304 and body == b"", "/image/ID: If-None-Match -> 304")
st, h, body = srv.request("HEAD", f"/image/{dog['id']}")
check(st == 200 and body == b"", "HEAD /image/ID: headers only")

# ------------------------------------------------------------------ thumbnails
def jpeg_size(data):
    i = 2
    while i < len(data):
        if data[i] != 0xFF:
            return None
        m = data[i + 1]
        ln = struct.unpack(">H", data[i + 2:i + 4])[0]
        if m in (0xC0, 0xC1, 0xC2):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + ln
    return None


st, h, t1 = srv.request("GET", f"/thumb/{dog['id']}?size=256")
check(st == 200 and h["content-type"] == "image/jpeg" and h.get("x-thumb-cache") == "miss" and
      jpeg_size(t1) == (256, 192), "thumbnail: a 256x192 JPEG of the 768x576 photo, made now",
      (st, h, jpeg_size(t1)))
st, h, t2 = srv.request("GET", f"/thumb/{dog['id']}?size=256")
check(st == 200 and h.get("x-thumb-cache") == "hit" and t2 == t1, "thumbnail: the second is cached")
check(any(f.endswith("-256.jpg") for f in os.listdir(os.path.join(cache, "thumbs"))),
      "thumbnail cache file under the cache dir")
st, h3, _ = srv.request("GET", f"/thumb/{dog['id']}?size=256", {"If-None-Match": h["etag"]})
check(st == 304, "thumbnail: If-None-Match -> 304")
st, h, t = srv.request("GET", f"/thumb/{dog['id']}?size=100")
check(st == 200 and jpeg_size(t) == (128, 96), "size=100 rounds up to 128", jpeg_size(t))
for bad in ["0", "5", "2000", "-3", "big"]:
    st, h, _ = srv.request("GET", f"/thumb/{dog['id']}?size={bad}")
    check(st == 400, f"thumb size={bad} -> 400")
rot = byname.get("rotated.jpg")
st, h, t = srv.request("GET", f"/thumb/{rot['id']}?size=256") if rot else (0, {}, b"")
check(rot and st == 200 and jpeg_size(t) == (192, 256), "EXIF orientation 6: the thumbnail is portrait",
      jpeg_size(t))
if broken_id:
    st, h, body = srv.request("GET", f"/thumb/{broken_id}")
    check(st == 415 and json.loads(body)["status"] == 415, "a failed (corrupt) file: 415 JSON", body)
# invalidated by the fingerprint: new content under the same name, re-indexed
shutil.copy(os.path.join(photos, "horses.jpg"), dog["path"])
run_index(capsearch, env, lib)
st, h, t3 = srv.request("GET", f"/thumb/{dog['id']}?size=256")
check(st == 200 and h.get("x-thumb-cache") == "miss" and t3 != t1,
      "re-indexed content: a new thumbnail (new fingerprint, new ETag)", h)
shutil.copy(os.path.join(photos, "giraffe.jpg"), dog["path"])   # changed, not re-indexed
st, h, t4 = srv.request("GET", f"/thumb/{dog['id']}?size=256")
check(st == 200 and h.get("x-thumb-cache") == "bypass" and t4 != t3,
      "changed on disk, not re-indexed: a fresh thumbnail, not cached", h)
shutil.copy(os.path.join(photos, "dog.jpg"), dog["path"])
run_index(capsearch, env, lib)
os.unlink(byname["eagle.jpg"]["path"])
st, r = srv.get_json(f"/image/{byname['eagle.jpg']['id']}")
check(st == 404 and "gone" in r["error"], "a deleted file: 404 JSON", r)
os.symlink("/etc/passwd", byname["eagle.jpg"]["path"])
st, h, body = srv.request("GET", f"/image/{byname['eagle.jpg']['id']}")
check(st == 403 and b"root:" not in body, "a file replaced by a symlink is not followed", body[:80])
os.unlink(byname["eagle.jpg"]["path"])

# ------------------------------------------------------------------ HTTP rules
st, h, body = srv.request("GET", "/api/status", {"Host": "evil.example"})
check(st == 403, "Host evil.example -> 403 (DNS rebinding)")
for host in [f"localhost:{srv.port}", "127.0.0.1", f"[::1]:{srv.port}", "LOCALHOST."]:
    st, h, body = srv.request("GET", "/api/status", {"Host": host})
    check(st == 200, f"Host {host} -> 200", st)
for m in ["DELETE", "PUT", "OPTIONS"]:
    st, h, body = srv.request(m, "/api/status")
    check(st == 405, f"{m} -> 405")
st, h, body = srv.request("POST", "/api/search?q=dog", body=b"x" * 5000)
check(st in (405, 413), "a body where none is taken -> refused", st)
st, h, body = srv.request("GET", "/", {})
check(st == 200 and b"<title>capsearch</title>" in body and "default-src 'none'" in
      h.get("content-security-policy", ""), "the page, with a strict CSP")
for asset in ["/app.js", "/style.css", "/favicon.svg"]:
    st, h, body = srv.request("GET", asset)
    check(st == 200 and len(body) > 50, f"{asset} served from the binary")
st, h, body = srv.request("GET", "/nothing")
check(st == 404 and json.loads(body)["status"] == 404, "unknown path -> 404 JSON")


def raw(data, read=True):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    try:
        s.sendall(data)
        out = b""
        while read:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            out += chunk
        return out
    except (BrokenPipeError, ConnectionResetError):
        return b""
    finally:
        s.close()


out = raw(b"GET /api/search?q=" + b"a" * 200000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
check(out == b"" or out.split(b" ")[1] in (b"414", b"431", b"400"), "a 200 kB URL is refused", out[:60])
out = raw(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * 200000 + b"\r\n\r\n")
check(out == b"" or out.split(b" ")[1] in (b"431", b"400", b"413"), "a 200 kB header is refused", out[:60])
out = raw(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000000\r\n\r\n" + b"t" * 100000)
check(out == b"" or out.split(b" ")[1] in (b"413", b"404"), "a 100 MB body is refused", out[:60])
out = raw(b"garbage\r\n\r\n")
check(out == b"" or out.split(b" ")[1] == b"400", "garbage request line -> 400", out[:60])
check(srv.alive(), "the server survived the huge requests")
srv.stop()

# ------------------------------------------------------------------ token, rate limit
tok = os.path.join(work, "token")
open(tok, "w").write("s3cret-token-0123456789abcdef\n")
t = Server(capsearch, env, "--token-file", tok, "--rate-limit", "5")
st, h, body = t.request("GET", "/api/status")
check(st == 401 and "bearer" in h.get("www-authenticate", "").lower(), "token set: no token -> 401")
st, h, body = t.request("GET", "/image/1")
check(st == 401, "token set: /image needs it too")
st, h, body = t.request("GET", "/api/status", {"Authorization": "Bearer s3cret-token-0123456789abcdef"})
check(st == 200, "bearer token -> 200")
st, h, body = t.request("GET", "/api/status", {"Authorization": "Bearer s3cret-token-0123456789abcdeX"})
check(st == 401, "wrong bearer token -> 401")
st, h, body = t.request("POST", "/login", {"Content-Type": "application/x-www-form-urlencoded"}, b"token=nope")
check(st == 401 and "set-cookie" not in h, "wrong login -> 401, no cookie")
st, h, body = t.request("POST", "/login", {"Content-Type": "application/x-www-form-urlencoded"},
                        b"token=s3cret-token-0123456789abcdef")
cookie = h.get("set-cookie", "")
check(st == 200 and "HttpOnly" in cookie and "SameSite=Strict" in cookie, "login sets an HttpOnly cookie", h)
st, h, body = t.request("GET", "/api/status", {"Cookie": cookie.split(";")[0]})
check(st == 200, "the cookie -> 200")
codes = [t.request("GET", "/favicon.svg")[0] for _ in range(40)]
st, h, _ = t.request("GET", "/favicon.svg")
check(429 in codes and codes[0] == 200, "--rate-limit 5: a burst gets 429", codes)
time.sleep(1.2)
check(t.request("GET", "/favicon.svg")[0] == 200, "the bucket refills")
t.stop()
p = subprocess.run([capsearch, "serve", "--listen", "0.0.0.0:0"], env=env, capture_output=True, timeout=30)
check(p.returncode == 2 and b"token" in p.stderr, "beyond loopback without a token: refused", p.stderr)
t = Server(capsearch, env, "--listen", "0.0.0.0:0", "--token-file", tok)  # last --listen wins
check(t.alive(), "beyond loopback with a token: serves")
st, h, body = t.request("GET", "/api/status")
check(st == 401, "... and asks for it")
t.stop()
open(os.path.join(work, "badtoken"), "w").write("short\n")
p = subprocess.run([capsearch, "serve", "--token-file", os.path.join(work, "badtoken")], env=env,
                   capture_output=True, timeout=30)
check(p.returncode == 2 and b"16" in p.stderr, "a weak token file is refused", p.stderr)

# ------------------------------------------------------------------ missing, locked, replaced index
db = env["CAPSEARCH_DB"]
if PG:  # no such database on the server, and no server at all: JSON errors, no crash
    os.makedirs(os.path.join(work, "no-server"), exist_ok=True)
    for what, uri in [("no such database", pg.uri("nosuchdb")),
                      ("no database server", "postgresql:///x?host=" + os.path.join(work, "no-server"))]:
        n = Server(capsearch, dict(env, CAPSEARCH_DB=uri))
        st, r = n.get_json("/api/search?q=dog")
        check(st in (500, 503) and isinstance(r.get("error"), str) and n.alive(),
              f"{what}: a JSON error, server alive", (st, r))
        n.stop()
later = index_db(work, "later") if PG else os.path.join(work, "later.db")
menv = dict(env, CAPSEARCH_DB=later)
m = Server(capsearch, menv)
st, r = m.get_json("/api/search?q=dog")
if PG:  # an empty database: no schema yet
    check(st == 503 and "capsearch index" in r["error"], "no index yet: 503 with how to make one", r)
else:
    check(st == 503 and "no index" in r["error"], "missing index: 503 with how to make one", r)
st, r = m.get_json("/api/status")
check(st == 503, "missing index: status 503")
if PG:
    pg_load("index", "later")
else:
    shutil.copy(db, later)
st, r = m.get_json("/api/search?q=dog")
check(st == 200 and r["results"], "the index appears: served without a restart", r)
m.stop()

# socket activation (capsearch-web.socket): systemd's own tool binds and passes the fd
sa = shutil.which("systemd-socket-activate")
check(sa is not None, "systemd-socket-activate present (Debian's systemd package)")
if sa:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    free = probe.getsockname()[1]
    probe.close()
    act = subprocess.Popen([sa, "-l", f"127.0.0.1:{free}", capsearch, "serve", "--db",
                            later], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    body = b""
    for _ in range(50):
        try:
            c = socket.create_connection(("127.0.0.1", free), timeout=20)
            c.sendall(b"GET /api/status HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                body += chunk
            c.close()
            break
        except OSError:
            time.sleep(0.2)
    check(body.startswith(b"HTTP/1.") and b" 200 " in body.split(b"\r\n")[0] and b'"images"' in body,
          "socket activation: serves on the passed socket", body[:200])
    act.terminate()
    act.wait(10)

if PG:
    # locked: another session holds the images table in ACCESS EXCLUSIVE mode (as a
    # migration would); the search waits for the lock timeout, then a JSON error
    locked = index_db(work, "locked")
    pg_load("index", "locked")
    locker = subprocess.Popen([pg_tool("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                               "-d", locked], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    locker.stdin.write("BEGIN;\nLOCK TABLE capsearch.images IN ACCESS EXCLUSIVE MODE;\n"
                       "SELECT 'ready';\n")
    locker.stdin.flush()
    check(locker.stdout.readline().strip() == "ready", "psql holds the lock")
else:
    # locked: another process holds the index in exclusive locking mode (taken before the
    # server's first connection, as WAL readers otherwise never wait)
    locked = os.path.join(work, "locked.db")
    shutil.copy(db, locked)
    locker = sqlite3.connect(locked, timeout=1, isolation_level=None)
    locker.execute("PRAGMA locking_mode=EXCLUSIVE")
    locker.execute("BEGIN EXCLUSIVE")
    locker.execute("INSERT INTO meta(key, value) VALUES('web.test', 'x')")
    locker.execute("COMMIT")     # exclusive locking mode: the lock stays after commit
ls = Server(capsearch, dict(env, CAPSEARCH_DB=locked))
t0 = time.time()
st, r = ls.get_json("/api/search?q=kite")
took = time.time() - t0
if PG:
    # lock_timeout (SQLSTATE 55P03) is "busy": 503, and the server's message names the lock
    check(st == 503 and took < 15 and "lock" in r.get("error", ""),
          f"locked table: a 503 JSON error after the lock timeout ({took:.1f} s)", r)
else:
    # 503 is the aim; capdb_open reports a lock met while reading the header as -EIO ("not a
    # capsearch database: database is locked", db/capdb.c check_ours), which becomes a 500
    check(st in (500, 503) and took < 15 and "locked" in r.get("error", ""),
          f"locked index: a JSON error naming the lock after the busy timeout ({took:.1f} s)", r)
check(ls.alive(), "locked index: server alive")
if PG:
    locker.stdin.write("COMMIT;\n")
    locker.stdin.close()
    locker.wait(30)
else:
    locker.close()
st, r = ls.get_json("/api/search?q=kite")
check(st == 200 and r["results"], "lock released: 200 again", r)
ls.stop()

s = Server(capsearch, env)
st, r = s.get_json("/api/search?q=dog")
check(st == 200 and r["results"], "before the replacement")
# replaced: a new index (only horses) moved over the old one while the server runs
newlib = os.path.join(work, "newlib")
os.makedirs(newlib)
shutil.copy(os.path.join(photos, "horses.jpg"), newlib)
nenv = dict(env, CAPSEARCH_DB=index_db(work, "new"))
run_index(capsearch, nenv, newlib)
if PG:
    # the new index's schema swapped in for the old one in one transaction, under the
    # server's open connections
    pg_load("new", "index", before="ALTER SCHEMA capsearch RENAME TO capsearch_old;")
else:
    # as the daemon moves a damaged index: the file with its -wal and -shm (a WAL left
    # behind would be read as the new file's: SQLite's "How To Corrupt" 2.5)
    for sfx in ("", "-wal", "-shm"):
        if os.path.exists(db + sfx):
            os.replace(db + sfx, db + ".old" + sfx)
    os.replace(nenv["CAPSEARCH_DB"], db)
st, r = s.get_json("/api/search?q=horse")
check(st == 200 and [h["path"] for h in r["results"]] == [os.path.join(newlib, "horses.jpg")],
      "a replaced index: the new file's rows are served", r)
st, r = s.get_json("/api/status")
check(st == 200 and r["images"]["total"] == 1, "a replaced index: status counts the new file", r)
if PG:
    # the database server restarted under the running server: its pooled connections
    # are cut; the server connects again
    pg.restart()
    replies = [s.get_json("/api/search?q=horse") for _ in range(3)]
    check([st for st, _ in replies] == [200, 200, 200],
          "the database server restarted: searches are served", replies)
    check(s.alive(), "the database server restarted: server alive")
    pg.psql("DROP SCHEMA capsearch CASCADE", "index")  # the index dropped
else:
    with open(db, "r+b") as f:     # a damaged replacement
        f.seek(0)
        f.write(b"this is not an sqlite file at all" * 4)
st, r = s.get_json("/api/search?q=horse")
check(st in (500, 503) and isinstance(r.get("error"), str), "a damaged index: a JSON error", r)
check(s.alive(), "a damaged index: server alive")
rc = s.stop()
check(rc == 0, "SIGTERM: clean exit 0", rc)
finish()
