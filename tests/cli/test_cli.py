#!/usr/bin/env python3
"""CLI tests: the real `capsearch` binary against real index files built by
capdb_fixture (libcapdb). Usage: test_cli.py CAPSEARCH FIXTURE WORKDIR

With CAPSEARCH_TEST_PG set (tests/pg/with_pg.sh: the URI of a throw-away server's
database, CAPSEARCH_TEST_PG_DIR its folder) every index is a fresh PostgreSQL database
on that server instead of a file, and its URI goes wherever the file's path went. The
checks of SQLite files as files (mtime, junk bytes, WAL, the per-user default file) are
replaced by their PostgreSQL equivalents."""
import json
import os
import pty
import shutil
import subprocess
import sys
import time

CAPSEARCH, FIXTURE, WORK = (os.path.abspath(a) for a in sys.argv[1:4])
failures = 0
PG = os.environ.get("CAPSEARCH_TEST_PG")
if PG:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pg"))
    from pgserver import PgServer  # noqa: E402
    # the server with_pg.sh started (and stops): only its databases and psql are used here
    pg = PgServer(dir=os.environ["CAPSEARCH_TEST_PG_DIR"])


def pg_new_db(name):
    """A fresh, empty database on the test server (dropped first if there); its URI."""
    pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return pg.create_db(name)


def check(cond, what, detail=""):
    global failures
    if not cond:
        failures += 1
        print(f"FAIL: {what}\n{detail}", file=sys.stderr)


def run(*args, env_extra=None, db=None, stdin=None):
    env = dict(os.environ)
    env.pop("CAPSEARCH_DB", None)
    env["XDG_DATA_HOME"] = os.path.join(WORK, "xdg-empty")
    env["HOME"] = os.path.join(WORK, "home-empty")
    env["CAPSEARCH_MODELS"] = os.path.join(WORK, "no-models")
    if env_extra:
        env.update(env_extra)
    argv = [CAPSEARCH] + list(args)
    if db:
        at = 2 if args and args[0] in ("status", "similar", "search") else 1
        argv[at:at] = [b"--db", db] if isinstance(args[0], bytes) else ["--db", db]
    p = subprocess.run(argv, capture_output=True, env=env, timeout=60, input=stdin)
    check(p.returncode >= 0, f"{args!r} died from signal {-p.returncode}", p.stderr)
    return p


def make_db(name, spec):
    if PG:
        path = pg_new_db(name.replace(".db", ""))
    else:
        path = os.path.join(WORK, name)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.unlink(path + suffix)
    p = subprocess.run([FIXTURE, path], input=spec, capture_output=True)
    if p.returncode != 0:
        sys.exit(f"fixture failed: {p.stderr.decode(errors='replace')}")
    return path


# ------------------------------------------------------------------ the library
D2023, D2020 = 1690000000, 1590000000
SPEC = b"".join(line + b"\n" for line in [
    b"image\t/photos/beach/dog1.jpg\ta dog running on the beach\tdog beach\t%d\t%d\t3:0.9\t1,0,0,0" % (D2023, D2023),
    b"image\t/photos/home/dog2.jpg\ta dog sleeping on a sofa\tdog sofa\t%d\t%d\t3:0.8\t0.9,0.2,0,0" % (D2020, D2020),
    b"image\t/photos/beach/waves.jpg\twaves on a sandy beach\tbeach\t0\t%d\t\t0,1,0,0" % D2023,
    b"image\t/photos/horse.jpg\ta man riding a horse\tperson horse\t0\t%d\t\t0,0,1,0" % D2020,
    b"image\t/photos/odd\\x01name\\nx.jpg\ta kite in the sky\tkite\t0\t%d" % D2023,
    b"image\t/photos/caf\\xe9/not-utf8-\\xff.jpg\tan eagle on a branch\tbird\t0\t%d" % D2023,
    b"image\t/photos/100%%_real/kite.jpg\ta red kite\tkite\t0\t%d" % D2023,
    b"failed\t/photos/broken.jpg\ttruncated JPEG data",
    b"meta\tdaemon.roots\t/photos\\n/more photos",
])
LIB = make_db("lib.db", SPEC)

# ------------------------------------------------------------------ basics
p = run("--help")
check(p.returncode == 0 and b"Usage" in p.stdout, "--help")
p = run("--version")
check(p.returncode == 0 and p.stdout.startswith(b"capsearch "), "--version")
p = run("search", "--help")
check(p.returncode == 0 and b"--print0" in p.stdout, "search --help")

if not PG:
    p = run("dog", env_extra={"CAPSEARCH_DB": os.path.join(WORK, "missing.db")})
    check(p.returncode == 2 and b"capsearch index" in p.stderr and b"missing.db" in p.stderr,
          "missing database says how to create one", p.stderr)
    p = run("dog", db=os.path.join(WORK, "missing.db"))
    check(p.returncode == 2, "--db missing")
    junk = os.path.join(WORK, "junk.db")
    with open(junk, "wb") as f:
        f.write(b"not a database\n" * 500)
    p = run("dog", db=junk)
    check(p.returncode == 2 and p.stderr.startswith(b"capsearch: "), "junk database", p.stderr)
    mtime_before = os.stat(LIB).st_mtime_ns
else:
    # no index: a database without our schema says how to create one
    empty = pg_new_db("empty")
    p = run("dog", env_extra={"CAPSEARCH_DB": empty})
    check(p.returncode == 2 and b"capsearch index" in p.stderr and b"empty" in p.stderr,
          "a database without the index says how to create one", p.stderr)
    check(pg.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'capsearch'",
                  "empty").strip() == "0", "searching creates no schema")
    # no database at all: a clear error naming it
    p = run("dog", db=pg.uri("missing"))
    check(p.returncode == 2 and p.stderr.startswith(b"capsearch: ") and b"missing" in p.stderr,
          "--db of a database that does not exist", p.stderr)
    # no server: a socket folder with nothing listening
    os.makedirs(os.path.join(WORK, "no-server"), exist_ok=True)
    p = run("dog", db="postgresql:///capsearch?host=" + os.path.join(WORK, "no-server"))
    check(p.returncode == 2 and p.stderr.startswith(b"capsearch: "), "no server", p.stderr)
    # junk: a schema "capsearch" of someone else's is refused
    junk = pg_new_db("junk")
    pg.psql("CREATE SCHEMA capsearch; CREATE TABLE capsearch.images(x int)", "junk")
    p = run("dog", db=junk)
    check(p.returncode == 2 and p.stderr.startswith(b"capsearch: "), "a foreign schema", p.stderr)

    def pg_state(db="lib"):
        """Every row's version (xmin) of the index: a write of any kind changes it."""
        return pg.psql("SELECT (SELECT string_agg(id || ':' || xmin, ',' ORDER BY id) FROM"
                       " capsearch.images) || '|' || (SELECT string_agg(key || ':' || xmin,"
                       " ',' ORDER BY key) FROM capsearch.meta)", db)
    state_before = pg_state()

p = run("dog", "beach", db=LIB)
check(p.returncode == 0, "dog beach matches", p.stderr)
lines = p.stdout.decode(errors="replace").splitlines()
check(lines and "/photos/beach/dog1.jpg" in lines[0], "both words rank first", p.stdout)
check(b"\x1b[" not in p.stdout and b"\x01" not in p.stdout, "plain output when piped", p.stdout)
check(len(lines) == 3, "dog beach: 3 rows match a word", p.stdout)
scores = [float(l.split()[0]) for l in lines]
check(scores == sorted(scores, reverse=True), "scores descend", p.stdout)
if PG:
    check(pg_state() == state_before, "search does not write the database")
else:
    check(os.stat(LIB).st_mtime_ns == mtime_before, "search does not write the database")

p = run("search", "dog", "beach", db=LIB)
check(p.returncode == 0 and p.stdout.decode(errors="replace").splitlines() == lines,
      "'search' subcommand == bare query")
p = run("giraffe", db=LIB)
check(p.returncode == 1 and p.stdout == b"", "no match exits 1", p.stdout + p.stderr)
p = run("broken", db=LIB)
check(p.returncode == 1, "failed rows are not search results")

# ------------------------------------------------------------------ output formats
p = run("--limit", "1", "dog", db=LIB)
check(p.returncode == 0 and len(p.stdout.splitlines()) == 1, "--limit 1")
p = run("-n", "0", "dog", db=LIB)
check(p.returncode == 2, "--limit 0 rejected")
p = run("dog", "--json", db=LIB)
rows = [json.loads(l) for l in p.stdout.decode("utf-8").splitlines()]
check(p.returncode == 0 and len(rows) == 2 and rows[0]["path"] == "/photos/beach/dog1.jpg"
      and rows[0]["caption"] == "a dog running on the beach" and rows[0]["taken_time"] == D2023
      and rows[0]["width"] == 640, "--json rows", p.stdout)
p = run("--json", "eagle", db=LIB)
row = json.loads(p.stdout.decode("utf-8"))
check(row["path"] == "/photos/caf\ufffd/not-utf8-\ufffd.jpg", "JSON of a non-UTF-8 path", p.stdout)
p = run("-0", "kite", db=LIB)
check(p.returncode == 0 and sorted(p.stdout.split(b"\0")) ==
      sorted([b"", b"/photos/odd\x01name\nx.jpg", b"/photos/100%_real/kite.jpg"]),
      "-0 prints raw paths, NUL-separated", p.stdout)
p = run("kite", db=LIB)
check(b"odd?name?x.jpg" in p.stdout, "control bytes in paths are shown as ?", p.stdout)
p = run("--json", "-0", "kite", db=LIB)
check(p.returncode == 2, "--json with -0 rejected")

# snippets in bold on a terminal, not with NO_COLOR
def run_tty(*args, env_extra=None):
    master, slave = pty.openpty()
    env = dict(os.environ, CAPSEARCH_MODELS=os.path.join(WORK, "no-models"))
    env.pop("NO_COLOR", None)
    if env_extra:
        env.update(env_extra)
    proc = subprocess.Popen([CAPSEARCH] + list(args), stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=30)
    os.close(master)
    return proc.returncode, out

rc, out = run_tty("--db", LIB, "sofa")
check(rc == 0 and b"\x1b[1msofa\x1b[0m" in out, "matched word in bold on a terminal", out)
rc, out = run_tty("--db", LIB, "sofa", env_extra={"NO_COLOR": "1"})
check(rc == 0 and b"\x1b[" not in out, "NO_COLOR", out)

# ------------------------------------------------------------------ filters
p = run("--dir", "/photos/beach", "-0", "dog", db=LIB)
check(p.stdout == b"/photos/beach/dog1.jpg\0", "--dir", p.stdout)
p = run("--dir", "/photos/beach/", "-0", "beach", db=LIB)
check(sorted(p.stdout.split(b"\0")) == [b"", b"/photos/beach/dog1.jpg", b"/photos/beach/waves.jpg"],
      "--dir with a trailing slash", p.stdout)
p = run("--dir", "/photos/100%_real", "-0", "kite", db=LIB)
check(p.stdout == b"/photos/100%_real/kite.jpg\0", "--dir with LIKE metacharacters", p.stdout)
p = run("--dir", "/photos/100", "kite", db=LIB)
# not a prefix of /photos/100%_real: no such folder and nothing under it (issue 9.8)
check(p.returncode == 2 and b"nothing indexed under it" in p.stderr,
      "--dir is a folder, not a string prefix", p.stdout + p.stderr)
p = run("--since", "2021-01-01", "-0", "dog", db=LIB)
check(p.stdout == b"/photos/beach/dog1.jpg\0", "--since", p.stdout)
p = run("--until", "2020-05-20", "-0", "dog", db=LIB)
check(p.stdout == b"/photos/home/dog2.jpg\0", "--until a day includes that day", p.stdout)
p = run("--until", "2020-05-20T00:00:00", "dog", db=LIB)
check(p.returncode == 1, "--until with a time", p.stdout)
for bad in ["yesterday", "2023-13-01", "2023-02-30", "2023-1-1", "2023-01-01T25:00:00", ""]:
    p = run("--since", bad, "dog", db=LIB)
    check(p.returncode == 2 and b"--since" in p.stderr, f"bad date {bad!r} rejected", p.stderr)

# ------------------------------------------------------------------ query safety
hostile = [b'"dog', b'dog"', b"dog*", b"^dog", b"dog NEAR beach", b"NEAR(dog beach)",
           b"dog AND", b"OR dog", b"NOT", b"dog -cat", b"(dog", b"dog)", b"caption:dog",
           b"{caption tags}: dog", b"dog'); DROP TABLE images; --", b"dog\tbeach\n",
           b"\xff\xfe dog", b"\xe2\x80\x9cdog\xe2\x80\x9d", "🐕 dog".encode(),
           b"caf\xc3\xa9", b"dog%", b"x" * 10240, (b"word " * 2048)]
for q in hostile:
    p = run(b"--db", LIB.encode(), b"--", q)
    err = p.stderr.lower()
    check(p.returncode in (0, 1), f"query {q[:40]!r} searched literally (exit {p.returncode})", p.stderr)
    check(b"fts5" not in err and b"syntax" not in err and b"sql" not in err,
          f"query {q[:40]!r}: no SQL/FTS5 message", p.stderr)
p = run("--db", LIB, "caption:dog")
check(p.returncode == 0 and len(p.stdout.splitlines()) == 2, "caption:dog is the words caption, dog")
p = run("--db", LIB, "--", "-dog")
check(p.returncode == 0, "-- then a word starting with '-'", p.stderr)
p = run("--db", LIB, "-dog")
check(p.returncode == 2 and b"--" in p.stderr, "an option-looking word is explained", p.stderr)
for q in [b"", b"  ", b"*", b'""', b'"""', b"()", b"\\", b"%", b"_", b"\xc3", b"\xff\xfe",
          b"-- ++ !!"]:
    p = run(b"--db", LIB.encode(), b"--", q)
    check(p.returncode == 2 and b"no words" in p.stderr, f"no words in {q!r} -> clear error", p.stderr)
many = b" ".join(b"w%d" % i for i in range(40))
p = run(b"--db", LIB.encode(), many)
check(p.returncode == 2 and b"too long" in p.stderr, "too many words -> clear error", p.stderr)
p = run("--db", LIB, "the", "dog")
check(p.returncode == 0 and len(p.stdout.splitlines()) == 2, "stopwords dropped", p.stdout)
p = run("--db", LIB, "on")
if PG:
    # PostgreSQL's 'english' configuration leaves stopwords out of the tsvector itself,
    # so alone they find nothing there (as tests/db asserts): no match, not an error
    check(p.returncode == 1 and p.stdout == b"", "a stopword alone is searched (PG: no match)",
          p.stdout + p.stderr)
else:
    check(p.returncode == 0, "a stopword alone is searched", p.stdout)
p = run("--db", LIB, "DOGS")
check(p.returncode == 0 and len(p.stdout.splitlines()) == 2, "case and plurals", p.stdout)
p = run("--db", LIB)
check(p.returncode == 2, "no query is an error")
p = run("--db", LIB, "--models", "/nonexistent", "dog")
check(p.returncode == 0, "no model: text-only search", p.stderr)

# ------------------------------------------------------------------ similar
p = run("similar", "--db", LIB, "--json", "/photos/beach/dog1.jpg")
rows = [json.loads(l) for l in p.stdout.decode("utf-8").splitlines()]
check(p.returncode == 0 and rows and rows[0]["path"] == "/photos/home/dog2.jpg"
      and all(r["path"] != "/photos/beach/dog1.jpg" for r in rows) and len(rows) == 3,
      "similar uses the stored vector and leaves the image out", p.stdout + p.stderr)
p = run("similar", "--db", LIB, "--limit", "1", "-0", "/photos/beach/dog1.jpg")
check(p.stdout == b"/photos/home/dog2.jpg\0", "similar --limit 1", p.stdout)
p = run("similar", "--db", LIB, os.path.join(WORK, "no-such.jpg"))
check(p.returncode == 2 and b"no-such.jpg" in p.stderr, "similar on a missing file", p.stderr)
p = run("similar", "--db", LIB)
check(p.returncode == 2, "similar needs an image")

# ------------------------------------------------------------------ status
p = run("status", db=LIB)
out = p.stdout.decode(errors="replace")
# a shared (PostgreSQL) index lists its nodes and queue where a file names its daemon
check(p.returncode == 0 and "schema:    version 2" in out and "failures:  unknown 1" in out and "fixture-1" in out
      and "7 indexed, 1 failed" in out
      and ("queue:     0 waiting" in out and "nodes:     none yet" in out if PG else "not running" in out)
      and "/photos/broken.jpg: truncated JPEG data" in out and "/more photos" in out,
      "status text", out + p.stderr.decode(errors="replace"))
p = run("status", "--json", db=LIB)
st = json.loads(p.stdout)
check(st["schema_version"] == 2 and st["failure_reasons"] == {"unknown": 1} and st["images"] == {"total": 8, "ok": 7, "failed": 1}
      and st["daemon"]["running"] is False and st["failures"][0]["error"] == "truncated JPEG data"
      and st["daemon"]["roots"] == ["/photos", "/more photos"] and st["db_bytes"] > 0,
      "status --json", p.stdout)

now = int(time.time())
live = make_db("live.db", b"meta\tdaemon.pid\t%d\nmeta\tdaemon.state\twatching\n"
               b"meta\tdaemon.queue\t12\nmeta\tdaemon.indexed\t345\nmeta\tdaemon.heartbeat\t%d\n"
               b"meta\tdaemon.last_error\tcannot watch /x: No space left on device\n"
               % (os.getpid(), now - 3))
p = run("status", "--json", db=live)
st = json.loads(p.stdout)
d = st["daemon"]
check(d["running"] is True and d["pid"] == os.getpid() and d["state"] == "watching"
      and d["queue"] == 12 and d["indexed"] == 345 and 0 <= d["heartbeat_age"] < 60
      and "No space" in d["last_error"] and st["model_version"] is None, "status of a live daemon", p.stdout)
if PG:
    # the text shows the nodes (their heartbeats), not the meta keys of one daemon
    pg.psql("INSERT INTO capsearch.nodes(name, role, host, pid, captioned, rate)"
            f" VALUES('node-a', 'all', 'host-b', {os.getpid()}, 345, 1.5)", "live")
    p = run("status", db=live)
    out = p.stdout.decode(errors="replace")
    check(p.returncode == 0 and "nodes:     1" in out and "node-a" in out and "running" in out
          and f"pid {os.getpid()}" in out and "345 captioned" in out and "on host-b" in out
          and "No space" in out, "status text, live node", out)
    p = run("status", "--json", db=live)
    st = json.loads(p.stdout)
    check(st["queue"] == {"waiting": 0, "claimed": 0} and len(st["nodes"]) == 1
          and st["nodes"][0]["name"] == "node-a" and st["nodes"][0]["pid"] == os.getpid()
          and st["nodes"][0]["captioned"] == 345
          # -1: db/pg/work.c rounds the heartbeat's epoch (::bigint) rather than flooring
          # it, so a heartbeat this second's latter half reads as one second ahead
          and -1 <= st["nodes"][0]["heartbeat_age"] < 60,
          "status --json, live node", p.stdout)
else:
    p = run("status", db=live)
    check(b"running (pid %d), watching, 12 queued" % os.getpid() in p.stdout, "status text, live",
          p.stdout)
dead = subprocess.Popen(["true"])
dead.wait()
stale = make_db("stale.db", b"meta\tdaemon.pid\t%d\nmeta\tdaemon.state\twatching\n" % dead.pid)
p = run("status", "--json", db=stale)
check(json.loads(p.stdout)["daemon"]["running"] is False, "a dead pid is not running", p.stdout)
p = run("status", "--db", pg.uri("empty") if PG else os.path.join(WORK, "missing.db"))
check(p.returncode == 2 and b"capsearch index" in p.stderr, "status without a database", p.stderr)

# ------------------------------------------------------------------ a writer at work
# WAL (SQLite), MVCC (PostgreSQL): searching while the daemon holds a write transaction
# neither waits nor fails, and status reads the last committed state.
if PG:
    writer = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", LIB],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    writer.stdin.write("BEGIN;\nINSERT INTO capsearch.meta(key, value) VALUES('daemon.state',"
                       " 'scanning') ON CONFLICT(key) DO UPDATE SET value = excluded.value;\n"
                       "UPDATE capsearch.images SET caption = caption;\nSELECT 'ready';\n")
    writer.stdin.flush()
    check(writer.stdout.readline().strip() == "ready", "psql holds a write transaction")
else:
    import sqlite3
    writer = sqlite3.connect(LIB, isolation_level=None, timeout=1)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO meta(key, value) VALUES('daemon.state', 'scanning')"
                   " ON CONFLICT(key) DO UPDATE SET value = excluded.value")
t0 = time.monotonic()
p = run("dog", db=LIB)
check(p.returncode == 0 and time.monotonic() - t0 < 3, "search during a write transaction", p.stderr)
p = run("status", "--json", db=LIB)
check(p.returncode == 0 and json.loads(p.stdout)["daemon"]["state"] is None,
      "status reads the last committed state", p.stdout)
if PG:
    writer.stdin.write("COMMIT;\n")
    writer.stdin.close()
    check(writer.wait(30) == 0, "psql committed")
else:
    writer.execute("COMMIT")
    writer.close()
p = run("status", "--json", db=LIB)
check(json.loads(p.stdout)["daemon"]["state"] == "scanning", "status after the commit", p.stdout)

# ------------------------------------------------------------------ default database location
if not PG:  # a per-user file; PostgreSQL is only ever named (--db, CAPSEARCH_DB)
    xdg = os.path.join(WORK, "xdg")
    os.makedirs(os.path.join(xdg, "capsearch"), exist_ok=True)
    shutil.copy(LIB, os.path.join(xdg, "capsearch", "index.db"))
    p = run("dog", env_extra={"XDG_DATA_HOME": xdg})
    check(p.returncode == 0, "per-user database found via XDG_DATA_HOME", p.stderr)
p = run("dog", env_extra={"CAPSEARCH_DB": LIB, "XDG_DATA_HOME": "/nonexistent"})
check(p.returncode == 0, "CAPSEARCH_DB", p.stderr)

if failures:
    print(f"{failures} CLI check(s) failed", file=sys.stderr)
    sys.exit(1)
print("all CLI checks passed")
