"""Shared by the web tests: a real index of the sample photos (made by `capsearch index`
with the real model) and a real `capsearch serve` process on a loopback port.

With CAPSEARCH_TEST_PG set (tests/pg/with_pg.sh: a throw-away PostgreSQL server, its
folder in CAPSEARCH_TEST_PG_DIR) each index is a fresh database on that server, named
by its URI wherever a file's path went (index_db, CAPSEARCH_DB, --db)."""
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

SKIP = 77
failures = []
PG = os.environ.get("CAPSEARCH_TEST_PG")
pg = None
if PG:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pg"))
    from pgserver import PgServer  # noqa: E402
    # the server with_pg.sh started and stops: here only its databases, psql and pg_dump
    pg = PgServer(dir=os.environ["CAPSEARCH_TEST_PG_DIR"])


def index_db(work, name):
    """Where an index called name goes: WORK/name.db, or (PostgreSQL) the URI of a fresh,
    empty database name."""
    if not PG:
        return os.path.join(work, name + ".db")
    pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return pg.create_db(name)


def pg_tool(name):
    return os.path.join(pg._bin, name)


def pg_load(src, dst, before="", after=""):
    """Copies database src's index (pg_dump) into database dst in one transaction, with
    the SQL before and after it in the same transaction."""
    dump = subprocess.run([pg_tool("pg_dump"), "-d", pg.uri(src), "--no-owner"],
                          capture_output=True, text=True, check=True).stdout
    r = subprocess.run([pg_tool("psql"), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-d",
                        pg.uri(dst)], input=before + "\n" + dump + "\n" + after,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"loading {src} into {dst}: {r.stderr.strip()}")


def check(cond, what, detail=""):
    if cond:
        print("ok:", what)
    else:
        print("FAIL:", what, detail if detail else "")
        failures.append(what)


def finish():
    print(f"{len(failures)} failure(s)")
    sys.exit(1 if failures else 0)


def build_index(capsearch, photos, models, work, names=("dog", "horses", "kite", "eagle", "giraffe", "person")):
    for n in names:
        p = os.path.join(photos, n + ".jpg")
        if not os.path.exists(p) or os.path.getsize(p) == 0:
            print(f"skip: no sample photo {n}.jpg in {photos}")
            sys.exit(SKIP)
    if not os.path.exists(os.path.join(models, "ssdlite_mobilenet_v2_coco.csw")):
        print(f"skip: no CNN weights in {models}")
        sys.exit(SKIP)
    shutil.rmtree(work, ignore_errors=True)
    lib = os.path.join(work, "lib")
    os.makedirs(lib)
    for n in names:
        shutil.copy(os.path.join(photos, n + ".jpg"), lib)
    env = dict(os.environ, CAPSEARCH_MODELS=models, CAPSEARCH_DB=index_db(work, "index"))
    return lib, env


def run_index(capsearch, env, *dirs):
    p = subprocess.run([capsearch, "index", "--quiet", "--jobs", "1", *dirs], env=env,
                       capture_output=True)
    if p.returncode != 0:
        print("FAIL: capsearch index", p.stderr.decode(errors="replace"))
        sys.exit(1)


class Server:
    def __init__(self, capsearch, env, *args):
        self.args = [capsearch, "serve", "--listen", "127.0.0.1:0", *args]
        self.proc = subprocess.Popen(self.args, env=env, stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL)
        line = self.proc.stderr.readline().decode(errors="replace")
        while line and "listening on" not in line:
            print("serve:", line.rstrip())
            line = self.proc.stderr.readline().decode(errors="replace")
        m = re.search(r"http://\S+:(\d+)/", line)
        if not m:
            self.proc.kill()
            raise RuntimeError("capsearch serve did not start: " + line)
        self.port = int(m.group(1))

    def request(self, method, target, headers=None, body=None, timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            h = {"Host": f"127.0.0.1:{self.port}"}
            h.update(headers or {})
            for k, v in h.items():
                if v is not None:
                    c.putheader(k, v)
            if body is not None:
                c.putheader("Content-Length", str(len(body)))
            c.endheaders(body)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def get_json(self, target, headers=None):
        status, h, data = self.request("GET", target, headers)
        try:
            return status, json.loads(data)
        except ValueError:
            return status, {"_raw": data}

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        return self.proc.returncode
