#!/usr/bin/env python3
"""Storage and environment faults, through the real binaries (issue 6).

Each scenario breaks one thing a real machine breaks — the disk fills, another writer
holds the database, the database is read-only, deleted or damaged under the daemon, the
model file is missing or corrupt, an image claims billions of pixels — and checks what
the user sees (exit status and message text) and that nothing already indexed is lost.

Usage: test_faults.py --bin BUILD_DIR --models DIR --photos DIR --work DIR SCENARIO
Exit 0 pass, 1 fail, 77 skipped (no sample photos, or a scenario that needs root).
"""
import argparse
import os
import resource
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import zlib

PHOTOS = ["dog", "eagle", "giraffe", "horses", "kite", "person", "scream"]


class Failure(Exception):
    def __init__(self, what, detail=""):
        super().__init__(what + (("\n--- details ---\n" + detail) if detail else ""))


class Skip(Exception):
    pass


def expect(cond, what, detail=""):
    if not cond:
        raise Failure(what, detail)


# ------------------------------------------------------------------ helpers

class Env:
    def __init__(self, args, scenario):
        self.args = args
        self.capsearch = os.path.join(args.bin, "cli", "capsearch")
        self.capsearchd = os.path.join(args.bin, "daemon", "capsearchd")
        self.work = os.path.join(os.path.abspath(args.work), scenario)
        shutil.rmtree(self.work, ignore_errors=True)
        os.makedirs(self.work)
        self.mounts = []

    def cleanup(self):
        for m in reversed(self.mounts):
            subprocess.run(["umount", "-l", m], stderr=subprocess.DEVNULL)

    def run(self, *cmd, timeout=300, preexec=None):
        started = time.time()
        p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                           errors="replace", timeout=timeout, preexec_fn=preexec,
                           env=self.env())
        p.seconds = time.time() - started
        p.text = "$ %s\nexit %d after %.1f s\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(str(c) for c in cmd), p.returncode, p.seconds, p.stdout, p.stderr)
        if os.environ.get("FAULTS_VERBOSE"):
            print(p.text)
        expect(p.returncode >= 0, "killed by signal %d" % -p.returncode, p.text)
        for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer", "Segmentation"):
            expect(bad not in p.stderr, "sanitizer or crash report", p.text)
        return p

    def env(self):
        env = dict(os.environ)
        env["HOME"] = self.work
        env.pop("XDG_CONFIG_HOME", None)
        env.pop("XDG_DATA_HOME", None)
        env.pop("CAPSEARCH_DB", None)
        env.pop("JOURNAL_STREAM", None)
        env["CAPSEARCH_MODELS"] = self.args.models
        env["NO_COLOR"] = "1"
        return env

    def index(self, db, *dirs, **kw):
        return self.run(self.capsearch, "index", "--db", db, "--jobs", "2", *dirs, **kw)

    def photos_dir(self, name, copies=1):
        """A folder with `copies` copies of the sample photos (distinct bytes each, so
        that no copy is taken for a move of another)."""
        d = os.path.join(self.work, name)
        os.makedirs(d, exist_ok=True)
        for c in range(copies):
            for p in PHOTOS:
                data = open(os.path.join(self.args.photos, p + ".jpg"), "rb").read()
                out = os.path.join(d, "%s-%02d.jpg" % (p, c) if copies > 1 else p + ".jpg")
                # bytes after the JPEG's end marker: ignored by decoders, new fingerprint
                with open(out, "wb") as f:
                    f.write(data + (b"copy %d" % c if copies > 1 else b""))
        return d

    def mount_tmpfs(self, path, size, readonly=False):
        if os.geteuid() != 0:
            raise Skip("mounting a tmpfs needs root")
        os.makedirs(path, exist_ok=True)
        opts = "size=%s" % size + (",ro" if readonly else "")
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", path],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise Skip("cannot mount a tmpfs here: " + p.stderr.strip())
        self.mounts.append(path)

    def remount(self, path, opts):
        subprocess.run(["mount", "-o", "remount," + opts, path], check=True)


def rows(db):
    """{path: status} of every row, read with SQLite directly (not through our code)."""
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=30)
    try:
        return dict(con.execute("SELECT path, status FROM images").fetchall())
    finally:
        con.close()


def integrity(db):
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=30)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def expect_kept(before, db, what):
    after = rows(db)
    lost = [p for p in before if p not in after]
    expect(not lost, "%s: indexed rows lost: %s" % (what, lost[:5]))
    expect(integrity(db) == "ok", "%s: integrity_check: %s" % (what, integrity(db)))


def expect_search_finds(env, db, word, path_part):
    p = env.run(env.capsearch, "--db", db, word)
    expect(p.returncode == 0 and path_part in p.stdout,
           "searching '%s' should find %s" % (word, path_part), p.text)


class Daemon:
    def __init__(self, env, root, db):
        self.env, self.root, self.db = env, root, db
        self.log = os.path.join(env.work, "daemon.log")
        self.proc = None

    def start(self, wrapper=(), extra=()):
        cmd = list(wrapper) + [self.env.capsearchd, "--db", self.db, "--root", self.root,
                               "--workers", "2", "--batch-ms", "200", "--log-level", "info"]
        cmd += list(extra)
        logf = open(self.log, "a")
        env = self.env.env()
        if wrapper:  # LeakSanitizer cannot run under ptrace: the traced run checks no leaks
            env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=logf, env=env)
        logf.close()
        self.pid = self.proc.pid
        if wrapper:                 # strace ...: signals go to the daemon, its child
            children = "/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)
            deadline = time.time() + 30
            while time.time() < deadline:
                # strace may fork a short-lived helper first: the daemon is the child
                # that runs capsearchd
                kids = open(children).read().split() if os.path.exists(children) else []
                daemons = [k for k in kids if os.path.exists("/proc/%s/comm" % k) and
                           open("/proc/%s/comm" % k).read().strip() == "capsearchd"]
                if daemons:
                    self.pid = int(daemons[0])
                    break
                time.sleep(0.05)

    def log_text(self):
        return open(self.log, errors="replace").read()

    def wait_rows(self, n, timeout=180):
        deadline = time.time() + timeout
        while time.time() < deadline:
            expect(self.proc.poll() is None, "the daemon exited early (%s)" % self.proc.returncode,
                   self.log_text())
            try:
                if os.path.exists(self.db) and sum(1 for s in rows(self.db).values() if s == 0) >= n:
                    return
            except sqlite3.Error:
                pass
            time.sleep(0.3)
        raise Failure("the daemon did not index %d photos in %d s" % (n, timeout), self.log_text())

    def wait_exit(self, timeout):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failure("the daemon kept running %d s after its index was lost" % timeout,
                          self.log_text())
        self.expect_clean()
        return rc

    def expect_clean(self):
        for bad in ("Sanitizer", "runtime error:", "Segmentation"):
            expect(bad not in self.log_text(), "sanitizer or crash report from the daemon",
                   self.log_text())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                raise Failure("the daemon (pid %d, under %d) is gone: %s" % (
                    self.pid, self.proc.pid, subprocess.run(["ps", "-o", "pid,ppid,stat,comm", "--ppid",
                                                            str(self.proc.pid)], capture_output=True,
                                                           text=True).stdout[-3000:]),
                    self.log_text()[-2000:])
            try:
                rc = self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise Failure("the daemon did not stop within 60 s of SIGTERM", self.log_text())
            expect(rc == 0, "the daemon exited %d after SIGTERM" % rc, self.log_text())
            self.expect_clean()


# ------------------------------------------------------------------ scenarios

def scenario_disk_full(env):
    """The database's file system fills up during `capsearch index` (a 1 MiB tmpfs: the
    schema and first batch fit, 56 more photos do not)."""
    full = os.path.join(env.work, "small")
    env.mount_tmpfs(full, "1m")
    db = os.path.join(full, "index.db")
    first = env.photos_dir("first")
    p = env.index(db, first)
    expect(p.returncode == 0, "indexing 7 photos onto the empty tmpfs", p.text)
    before = rows(db)
    expect(len(before) == 7, "7 rows before the disk fills, got %d" % len(before))

    lib = env.photos_dir("library", copies=8)
    p = env.index(db, first, lib)
    expect(p.returncode == 2, "exit status 2 when the disk fills", p.text)
    expect("database or disk is full" in p.stderr, "the message says the disk is full", p.text)
    expect("could not write to %s" % db in p.stderr and "again" in p.stderr,
           "the message says what was not saved and what to do", p.text)
    expect(p.seconds < 60, "stops promptly (%.0f s)" % p.seconds, p.text)
    expect_kept(before, db, "after the disk filled")
    expect_search_finds(env, db, "dog", "/first/dog.jpg")

    env.remount(full, "size=64m")          # the user frees space
    p = env.index(db, first, lib)
    expect(p.returncode == 0, "indexing again once there is space", p.text)
    expect(len(rows(db)) == 7 + 56, "all 63 photos indexed after space was freed, got %d"
           % len(rows(db)), p.text)


def scenario_file_size_limit(env):
    """The same without root: RLIMIT_FSIZE stops the database growing (SIGXFSZ ignored,
    so writes fail with EFBIG as on a quota)."""
    db = os.path.join(env.work, "index.db")
    first = env.photos_dir("first")
    p = env.index(db, first)
    expect(p.returncode == 0, "first index", p.text)
    before = rows(db)
    biggest = max(os.path.getsize(db + s) for s in ("", "-wal", "-shm") if os.path.exists(db + s))
    limit = biggest + 16 * 1024

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    lib = env.photos_dir("library", copies=8)
    p = env.index(db, first, lib, preexec=limited)
    expect(p.returncode == 2, "exit status 2 when the file cannot grow", p.text)
    expect("could not write to %s" % db in p.stderr, "the message says the index was not written",
           p.text)
    expect_kept(before, db, "after the size limit")
    p = env.index(db, first, lib)
    expect(p.returncode == 0 and len(rows(db)) == 63, "all photos indexed without the limit", p.text)


def hold_write_lock(db, seconds, ready):
    con = sqlite3.connect(db, timeout=30, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('fault.test', 'held')")
    ready.set()
    time.sleep(seconds)
    con.execute("ROLLBACK")
    con.close()


def scenario_locked_wait(env):
    """Another writer holds a write transaction for 3 s: `capsearch index` waits for it."""
    db = os.path.join(env.work, "index.db")
    first = env.photos_dir("first")
    expect(env.index(db, first).returncode == 0, "first index")
    before = rows(db)
    ready = threading.Event()
    t = threading.Thread(target=hold_write_lock, args=(db, 3, ready))
    t.start()
    ready.wait()
    lib = env.photos_dir("library", copies=2)
    p = env.index(db, first, lib)
    t.join()
    expect(p.returncode == 0, "index waits for the other writer and succeeds", p.text)
    expect("locked" not in p.stderr, "no lock error after a short wait", p.text)
    expect_kept(before, db, "after waiting for the lock")
    expect(len(rows(db)) == 21, "21 rows, got %d" % len(rows(db)), p.text)


def scenario_locked_timeout(env):
    """Another writer never lets go: a clear error after the retries, nothing lost."""
    db = os.path.join(env.work, "index.db")
    first = env.photos_dir("first")
    expect(env.index(db, first).returncode == 0, "first index")
    before = rows(db)
    ready = threading.Event()
    t = threading.Thread(target=hold_write_lock, args=(db, 120, ready), daemon=True)
    t.start()
    ready.wait()
    lib = env.photos_dir("library")
    p = env.index(db, lib, timeout=110)
    expect(p.returncode == 2, "exit status 2 while another writer holds the lock", p.text)
    expect("database is locked" in p.stderr and "could not write" in p.stderr,
           "the message says the database is locked", p.text)
    expect(p.seconds < 100, "gives up within the retry budget (%.0f s)" % p.seconds, p.text)
    # searching still works beside the writer (WAL readers)
    expect_search_finds(env, db, "dog", "/first/dog.jpg")


def scenario_readonly(env):
    """The database on a read-only file system: searches work, indexing says why not."""
    db_dir = os.path.join(env.work, "ro")
    env.mount_tmpfs(db_dir, "64m")
    db = os.path.join(db_dir, "index.db")
    first = env.photos_dir("first")
    expect(env.index(db, first).returncode == 0, "first index")
    before = rows(db)
    env.remount(db_dir, "ro")
    expect_search_finds(env, db, "dog", "/first/dog.jpg")
    p = env.run(env.capsearch, "status", "--db", db)
    expect(p.returncode == 0 and "7 indexed" in p.stdout, "status on a read-only index", p.text)
    lib = env.photos_dir("library")
    p = env.index(db, lib)
    expect(p.returncode == 2, "exit status 2 indexing into a read-only database", p.text)
    expect("readonly" in p.stderr or "read-only" in p.stderr, "the message says read-only", p.text)
    expect(p.seconds < 60, "fails promptly (%.0f s)" % p.seconds, p.text)
    expect_kept(before, db, "read-only")


def scenario_db_deleted(env):
    """The index is deleted while capsearchd runs: the daemon says so and exits 1 (systemd
    restarts it); `capsearch` says how to create one; the next start rebuilds it."""
    lib = env.photos_dir("library")
    db = os.path.join(env.work, "db", "index.db")
    d = Daemon(env, lib, db)
    d.start()
    try:
        d.wait_rows(7)
        for s in ("", "-wal", "-shm"):
            if os.path.exists(db + s):
                os.unlink(db + s)
        rc = d.wait_exit(30)
        expect(rc == 1, "the daemon exits 1 when its index is deleted (got %s)" % rc, d.log_text())
        expect("was deleted" in d.log_text(), "the daemon log says the index was deleted",
               d.log_text())
        p = env.run(env.capsearch, "--db", db, "dog")
        expect(p.returncode == 2 and "no index at" in p.stderr and "capsearch index" in p.stderr,
               "capsearch says there is no index and how to create one", p.text)
        d.start()
        d.wait_rows(7)
        expect_search_finds(env, db, "dog", "/library/dog.jpg")
    finally:
        d.stop()


def scenario_db_corrupt(env):
    """The index file is overwritten with garbage while capsearchd runs: the daemon moves
    it aside and exits 1; the next start rebuilds. A damaged file met by `capsearch` gets
    an error that says how to rebuild."""
    lib = env.photos_dir("library")
    db = os.path.join(env.work, "db", "index.db")
    d = Daemon(env, lib, db)
    d.start()
    try:
        d.wait_rows(7)
        size = os.path.getsize(db)
        with open(db, "r+b") as f:
            f.write(b"\xde\xad\xbe\xef" * (size // 4))
        rc = d.wait_exit(30)
        expect(rc == 1, "the daemon exits 1 when its index is damaged (got %s)" % rc, d.log_text())
        expect("is damaged" in d.log_text() and os.path.exists(db + ".damaged"),
               "the daemon says the index is damaged and moves it aside", d.log_text())
        d.start()
        d.wait_rows(7)
        expect_search_finds(env, db, "dog", "/library/dog.jpg")
    finally:
        d.stop()

    garbage = os.path.join(env.work, "garbage.db")
    with open(garbage, "wb") as f:
        f.write(b"\xde\xad\xbe\xef" * 25000)
    for cmd in (["--db", garbage, "dog"], ["status", "--db", garbage],
                ["index", "--db", garbage, lib]):
        p = env.run(env.capsearch, *cmd)
        expect(p.returncode == 2, "exit status 2 on a damaged index", p.text)
        expect("not a database" in p.stderr and "rebuild" in p.stderr and "capsearch index" in p.stderr,
               "the message says the index is damaged and how to rebuild it", p.text)


def scenario_model_missing(env):
    """No model files: every command that needs the network says which file is missing."""
    empty = os.path.join(env.work, "no-models")
    os.makedirs(empty)
    db = os.path.join(env.work, "index.db")
    first = env.photos_dir("first")
    expect(env.index(db, first).returncode == 0, "first index")
    before = rows(db)
    photo = os.path.join(first, "dog.jpg")
    for cmd in ([env.capsearch, "index", "--db", db, "--models", empty, first],
                [env.capsearch, "detect", "--models", empty, photo],
                [env.capsearchd, "--db", db, "--models", empty, "--root", first, "--once"]):
        p = env.run(*cmd)
        expect(p.returncode in (1, 2), "non-zero exit without a model", p.text)
        expect("ssdlite_mobilenet_v2_coco.csw" in p.stderr, "the message names the missing file",
               p.text)
    expect_kept(before, db, "model missing")


def corrupt_models(env, name, damage):
    src = os.path.join(env.args.models, "ssdlite_mobilenet_v2_coco.csw")
    d = os.path.join(env.work, name)
    os.makedirs(d)
    data = bytearray(open(src, "rb").read())
    with open(os.path.join(d, "ssdlite_mobilenet_v2_coco.csw"), "wb") as f:
        f.write(damage(data))
    return d


def scenario_model_corrupt(env):
    """A truncated or damaged backbone file: a clear error, non-zero exit, no crash."""
    db = os.path.join(env.work, "index.db")
    first = env.photos_dir("first")
    expect(env.index(db, first).returncode == 0, "first index")
    before = rows(db)

    def bad_magic(b):
        b[0:8] = b"CSWEIGHX"
        return b

    def huge_count(b):
        b[12:16] = struct.pack("<I", 0xFFFFFFF0)
        return b

    cases = {
        "truncated": lambda b: b[:len(b) // 2],
        "header-only": lambda b: b[:20],
        "bad-magic": bad_magic,
        "tensor-count": huge_count,
        "empty": lambda b: b"",
    }
    photo = os.path.join(first, "dog.jpg")
    for name, damage in cases.items():
        models = corrupt_models(env, name, damage)
        for cmd in ([env.capsearch, "index", "--db", db, "--models", models, first],
                    [env.capsearch, "detect", "--models", models, photo]):
            p = env.run(*cmd)
            expect(p.returncode == 2, "%s model: exit status 2" % name, p.text)
            expect("ssdlite_mobilenet_v2_coco.csw" in p.stderr, "%s model: the message names "
                   "the file" % name, p.text)
    expect_kept(before, db, "model corrupt")


def png_claiming(width, height):
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body +
                struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\x00" + b"\x80" * 3 * 16
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", zlib.compress(row * 16)) + chunk(b"IEND", b""))


def jpeg_claiming(photo, width, height):
    data = bytearray(open(photo, "rb").read())
    i = 2
    while i + 9 < len(data):
        expect(data[i] == 0xFF, "walking the sample JPEG's markers")
        marker, seglen = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5:i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + seglen
    raise Failure("no SOF marker in the sample JPEG")


def scenario_huge_image(env):
    """Images whose headers claim billions of pixels are refused by the pixel limit before
    any pixel memory is taken; the rest of the folder is indexed."""
    lib = env.photos_dir("library")
    with open(os.path.join(lib, "huge.png"), "wb") as f:
        f.write(png_claiming(100000, 100000))
    with open(os.path.join(lib, "huge.jpg"), "wb") as f:
        f.write(jpeg_claiming(os.path.join(env.args.photos, "dog.jpg"), 65000, 65000))
    db = os.path.join(env.work, "index.db")

    def cap_memory():
        # 4 GiB of address space: decoding a claimed 10 G-pixel image would need 30 GiB
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    asan = b"__asan_init" in open(env.capsearch, "rb").read()     # ASan reserves terabytes
    p = env.index(db, lib, preexec=None if asan else cap_memory)
    expect(p.returncode == 0, "the folder is indexed despite the huge images", p.text)
    r = rows(db)
    expect(sum(1 for s in r.values() if s == 0) == 7, "the 7 photos indexed", p.text)
    for name in ("huge.png", "huge.jpg"):
        expect(r.get(os.path.join(lib, name)) == 1, "%s recorded as failed" % name, p.text)
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    errors = [e for (e,) in con.execute("SELECT error FROM images WHERE status = 1")]
    con.close()
    expect(len(errors) == 2 and all("over the limit" in e for e in errors),
           "the recorded reason is the pixel limit: %s" % errors)
    for name in ("huge.png", "huge.jpg"):
        p = env.run(env.capsearch, "detect", os.path.join(lib, name),
                    preexec=None if asan else cap_memory)
        expect(p.returncode == 2 and "over the limit" in p.stderr,
               "capsearch detect refuses %s by the pixel limit" % name, p.text)
    p = env.run(env.capsearch, "status", "--db", db)
    expect("over the limit" in p.stdout + p.stderr, "status lists the refused images", p.text)




# ------------------------------------------------------------------ issue 9: never lose the index

def with_exif_date(photo_bytes, when):
    """The JPEG with an APP1 Exif segment whose IFD0 DateTime and Exif DateTimeOriginal
    are `when` ("YYYY:MM:DD HH:MM:SS"), inserted after SOI (big-endian TIFF)."""
    value = when.encode() + b"\0"                               # 20 bytes, ASCII
    # TIFF header (8) | IFD0: 2 entries (2 + 24 + 4) | Exif IFD: 1 entry (2 + 12 + 4) | value
    ifd0 = 8
    exif_ifd = ifd0 + 2 + 2 * 12 + 4
    value_at = exif_ifd + 2 + 12 + 4
    tiff = b"MM\0\x2a" + struct.pack(">I", ifd0)
    tiff += struct.pack(">H", 2)
    tiff += struct.pack(">HHII", 0x0132, 2, len(value), value_at)
    tiff += struct.pack(">HHII", 0x8769, 4, 1, exif_ifd)
    tiff += struct.pack(">I", 0)
    tiff += struct.pack(">H", 1)
    tiff += struct.pack(">HHII", 0x9003, 2, len(value), value_at)
    tiff += struct.pack(">I", 0)
    tiff += value
    body = b"Exif\0\0" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
    assert photo_bytes[:2] == b"\xff\xd8"
    return photo_bytes[:2] + app1 + photo_bytes[2:]


def copy_photo(env, name, dest, extra=b""):
    data = open(os.path.join(env.args.photos, name + ".jpg"), "rb").read()
    with open(dest, "wb") as f:
        f.write(data + extra)


def sqlite_shell(db, sql):
    """The sqlite3 command-line shell (the one the man page names), as a user runs it."""
    return subprocess.run(["sqlite3", db, sql], capture_output=True, text=True, timeout=60)


def scenario_outside_reader(env):
    """Issue 9.1: the sqlite3 shell and `capsearch index` open and close the database over
    and over while the daemon indexes new photos; the daemon must never open the database
    file outside SQLite (closing such a descriptor drops SQLite's POSIX locks and lets the
    shell delete the live WAL). Every photo stays in the index through SIGTERM and kill -9."""
    if not shutil.which("sqlite3") or not shutil.which("strace"):
        raise Skip("needs the sqlite3 shell and strace")
    lib = env.photos_dir("library")
    other = env.photos_dir("other")
    db = os.path.join(env.work, "db", "index.db")
    trace = os.path.join(env.work, "trace")
    d = Daemon(env, lib, db)
    d.start(wrapper=["strace", "-f", "-qq", "-e", "trace=open,openat,creat", "-o", trace])
    try:
        d.wait_rows(7)
        time.sleep(5)                           # two status-timer rounds: the old fault
        arrived = []
        for round_ in range(6):
            for _ in range(3):
                p = sqlite_shell(db, "select count(*) from images")
                expect(p.returncode == 0, "the sqlite3 shell reads the index", p.stderr)
            if round_ == 2:
                expect(env.index(db, other).returncode == 0, "capsearch index beside the daemon")
            dest = os.path.join(lib, "new-%d.jpg" % round_)
            copy_photo(env, PHOTOS[round_ % len(PHOTOS)], dest, b"round %d" % round_)
            arrived.append(dest)
            expect(os.path.exists(db + "-wal"), "the -wal is still there under the daemon")
            time.sleep(2.5)
        d.wait_rows(7 + 7 + len(arrived))
        found = rows(db)
        expect(all(p in found for p in arrived), "every new photo is in the index", d.log_text())
        p = env.run(env.capsearch, "--db", db, "--json", "--limit", "50", "new")
        expect(p.returncode == 0 and all(os.path.basename(a) in p.stdout for a in arrived),
               "capsearch finds the new photos by their path words", p.text)
        d.stop()
        expect_kept(found, db, "SIGTERM after outside readers")
        opens = [l for l in open(trace, errors="replace")
                 if ('"%s"' % db) in l and "ENOENT" not in l]
        expect(len(opens) == 1, "the daemon opens the database file exactly once (SQLite's own "
               "open), never beside its connection: %d opens" % len(opens), "".join(opens))

        # kill -9 while outside readers come and go: committed work survives
        d.start()
        d.wait_rows(len(found))
        late = os.path.join(lib, "late.jpg")
        copy_photo(env, "dog", late, b"late")
        for _ in range(3):
            sqlite_shell(db, "select count(*) from images")
        d.wait_rows(len(found) + 1)
        time.sleep(1)
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        after = rows(db)
        expect(late in after and all(p in after for p in found),
               "kill -9: every indexed photo is still in the index")
        expect(integrity(db) == "ok", "integrity_check after kill -9")
    finally:
        d.stop()


def scenario_error_text_in_names(env):
    """Issue 9.2: folder names and config text holding SQLite's error strings never make the
    daemon call a healthy index damaged (it used to rename it away, in a restart loop)."""
    lib = os.path.join(env.work, "library")
    for name in ("file is not a database", "database disk image is malformed"):
        os.makedirs(os.path.join(lib, name, "deeper"))
        copy_photo(env, "dog", os.path.join(lib, name, "deeper", "dog.jpg"), name.encode())
    db = os.path.join(env.work, "db", "index.db")
    conf = os.path.join(env.work, "capsearchd.conf")
    with open(conf, "w") as f:
        f.write("root = %s\n" % lib)
    d = Daemon(env, lib, db)
    # one inotify watch only: the watch-limit error quotes the folder names
    d.start(extra=["--config", conf, "--max-watches", "1"])
    try:
        d.wait_rows(2)
        with open(conf, "a") as f:
            f.write("file is not a database = database disk image is malformed\n")
        d.proc.send_signal(signal.SIGHUP)
        time.sleep(6)
        expect(d.proc.poll() is None, "the daemon keeps running", d.log_text())
        expect("reload failed" in d.log_text(), "the bad config line is reported", d.log_text())
        expect(not os.path.exists(db + ".damaged"), "the index is not moved aside", d.log_text())
        expect(len(rows(db)) == 2 and integrity(db) == "ok", "the index is intact")
    finally:
        d.stop()


def scenario_dates_before_1970(env):
    """Issue 9.3: photos taken in 1965 and 1850 are found by --since/--until."""
    lib = os.path.join(env.work, "library")
    os.makedirs(lib)
    data = open(os.path.join(env.args.photos, "dog.jpg"), "rb").read()
    for name, when in (("dog1965.jpg", "1965:07:14 12:00:00"), ("dog1850.jpg", "1850:03:01 09:30:00"),
                       ("dog2020.jpg", "2020:01:01 10:00:00")):
        with open(os.path.join(lib, name), "wb") as f:
            f.write(with_exif_date(data, when))
    db = os.path.join(env.work, "index.db")
    expect(env.index(db, lib).returncode == 0, "index")

    def found(*opts):
        p = env.run(env.capsearch, "--db", db, "-0", *opts, "dog")
        expect(p.returncode in (0, 1), "search %s" % (opts,), p.text)
        return sorted(os.path.basename(x) for x in p.stdout.split("\0") if x)

    expect(found("--until", "1969-12-31") == ["dog1850.jpg", "dog1965.jpg"], "--until 1969-12-31")
    expect(found("--since", "1970-01-01") == ["dog2020.jpg"], "--since 1970-01-01 is a bound")
    expect(found("--since", "1900-01-01", "--until", "1999-12-31") == ["dog1965.jpg"],
           "--since 1900 --until 1999")
    expect(found("--until", "1850-12-31") == ["dog1850.jpg"], "--until 1850-12-31")
    expect(found() == ["dog1850.jpg", "dog1965.jpg", "dog2020.jpg"], "no bounds: all three")
    p = env.run(env.capsearch, "--db", db, "--since", "1799-12-31", "dog")
    expect(p.returncode == 2 and "1800" in p.stderr, "a date before 1800 is refused, saying why",
           p.text)


def scenario_foreign_db(env):
    """Issue 9.4: another application's SQLite file is refused and left byte for byte."""
    lib = env.photos_dir("library")
    foreign = os.path.join(env.work, "other-app.db")
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE contacts(name TEXT, phone TEXT)")
    con.execute("INSERT INTO contacts VALUES('Ada', '555-0100')")
    con.commit()
    con.close()
    before = open(foreign, "rb").read()
    p = env.index(foreign, lib)
    expect(p.returncode == 2 and "another application" in p.stderr,
           "capsearch index refuses a foreign database", p.text)
    p = env.run(env.capsearchd, "--db", foreign, "--root", lib, "--once")
    expect(p.returncode != 0 and "another application" in p.stderr, "capsearchd refuses it", p.text)
    p = env.run(env.capsearch, "--db", foreign, "dog")
    expect(p.returncode == 2 and "another application" in p.stderr, "search refuses it", p.text)
    expect(open(foreign, "rb").read() == before, "the foreign file is unchanged, byte for byte")
    expect(not os.path.exists(foreign + "-wal"), "no WAL was made for it")
    # an empty file and our own index are fine; ours carries our application_id
    empty = os.path.join(env.work, "empty.db")
    open(empty, "wb").close()
    expect(env.index(empty, lib).returncode == 0, "an empty file becomes an index")
    con = sqlite3.connect(empty)
    app_id = con.execute("PRAGMA application_id").fetchone()[0]
    con.close()
    expect(app_id == 0x43415053, "the index is stamped with capsearch's application_id")


def scenario_two_daemons(env):
    """Issue 9.5: a second daemon on the same index refuses to start; `capsearch index`
    still works beside the first."""
    lib = env.photos_dir("library")
    other = env.photos_dir("other")
    db = os.path.join(env.work, "db", "index.db")
    d = Daemon(env, lib, db)
    d.start()
    try:
        d.wait_rows(7)
        p = env.run(env.capsearchd, "--db", db, "--root", other, timeout=60)
        expect(p.returncode == 1 and "another capsearchd" in p.stderr and str(d.proc.pid) in p.stderr,
               "the second daemon refuses to start, naming the first", p.text)
        expect(d.proc.poll() is None, "the first daemon keeps running")
        expect(env.index(db, other).returncode == 0, "capsearch index works beside the daemon")
        expect(len(rows(db)) == 14, "both folders indexed")
    finally:
        d.stop()
    # the lock dies with its process: a new daemon starts at once
    d2 = Daemon(env, lib, db)
    d2.start()
    try:
        time.sleep(3)
        expect(d2.proc.poll() is None, "a daemon starts once the first has stopped", d2.log_text())
    finally:
        d2.stop()


def scenario_touch_refresh(env):
    """Issue 9.6: touch (same bytes) refreshes the stored mtime without a model run, so date
    filters see it; through `capsearch index` and through the daemon."""
    lib = env.photos_dir("library")
    db = os.path.join(env.work, "index.db")
    expect(env.index(db, lib).returncode == 0, "index")
    dog = os.path.join(lib, "giraffe.jpg")          # no EXIF date: mtime counts
    subprocess.run(["touch", "-d", "2001-05-05 12:00:00", dog], check=True)
    p = env.index(db, lib)
    expect(p.returncode == 0 and p.stdout.startswith("0 indexed"), "no model run for a touch", p.text)
    p = env.run(env.capsearch, "--db", db, "-0", "--until", "2001-12-31", "giraffe")
    expect(p.returncode == 0 and p.stdout.split("\0")[0] == dog,
           "--until 2001-12-31 finds the touched photo", p.text)
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    mtime = con.execute("SELECT mtime_ns FROM images WHERE path = ?", (dog,)).fetchone()[0]
    con.close()
    expect(mtime == os.stat(dog).st_mtime_ns, "the stored mtime is the file's")

    d = Daemon(env, lib, db)
    d.start()
    try:
        time.sleep(4)
        subprocess.run(["touch", "-d", "1999-09-09 09:00:00", dog], check=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            p = env.run(env.capsearch, "--db", db, "-0", "--until", "1999-12-31", "giraffe")
            if p.returncode == 0:
                break
            time.sleep(0.5)
        expect(p.returncode == 0 and p.stdout.split("\0")[0] == dog,
               "the daemon refreshes the mtime of a touched photo", p.text + d.log_text())
        p = env.run(env.capsearch, "status", "--db", db, "--json")
    finally:
        d.stop()
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    runs = con.execute("SELECT value FROM meta WHERE key = 'daemon.model_runs'").fetchone()
    con.close()
    expect(runs is not None and runs[0] == "0", "no model run for the touches: %s" % (runs,))


HOSTILE = "x\x1b[2J\x1b]0;PWNED\x07\u009b31m.jpg"


def scenario_hostile_names(env):
    """Issue 9.7: a file name holding terminal escapes reaches no output as an ESC byte:
    caption, detect, index failure lines, status, search, similar, --json."""
    lib = os.path.join(env.work, "library")
    os.makedirs(lib)
    good = os.path.join(lib, HOSTILE)
    copy_photo(env, "dog", good)
    bad = os.path.join(lib, "bad\x1b[31m\x9b.jpg".encode("utf-8", "surrogateescape").decode(
        "utf-8", "surrogateescape"))
    with open(bad, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a jpeg")
    db = os.path.join(env.work, "index.db")

    def run_bytes(*cmd):
        p = subprocess.run([os.fsencode(c) if isinstance(c, str) else c for c in cmd],
                           capture_output=True, timeout=300, env=env.env())
        for stream, data in (("stdout", p.stdout), ("stderr", p.stderr)):
            expect(b"\x1b" not in data and b"\x9b" not in data and b"\xc2\x9b" not in data,
                   "no escape byte on %s of %s" % (stream, cmd[1:3]), repr(data[:2000]))
        return p

    p = run_bytes(env.capsearch, "index", "--db", db, lib)
    expect(p.returncode == 0 and b"PWNED" in p.stderr + p.stdout or p.returncode == 0,
           "index", repr(p.stdout + p.stderr))
    for cmd in (["caption", good, bad], ["detect", good, bad], ["caption", "--json", good],
                ["status", "--db", db], ["status", "--db", db, "--json"], ["--db", db, "dog"],
                ["--db", db, "--json", "dog"], ["similar", "--db", db, good]):
        run_bytes(env.capsearch, *cmd)
    d = Daemon(env, lib, db)
    d.start()
    try:
        time.sleep(3)
        p = run_bytes(env.capsearch, "status", "--db", db)
        expect(b"running" in p.stdout, "status while the daemon runs", repr(p.stdout))
    finally:
        d.stop()
    log = open(d.log, "rb").read()
    expect(b"\x1b" not in log, "no ESC byte in the daemon's log", repr(log[-2000:]))


def scenario_unclear_errors(env):
    """Issue 9.8: clear messages for --db DIR, index FILE, a missing or file --dir, global
    options before a subcommand; a read-only copy without -shm in a read-only folder opens."""
    lib = env.photos_dir("library")
    db = os.path.join(env.work, "index.db")
    expect(env.index(db, lib).returncode == 0, "index")
    p = env.run(env.capsearch, "--db", env.work, "dog")
    expect(p.returncode == 2 and "is a folder" in p.stderr, "--db DIR says it is a folder", p.text)
    p = env.run(env.capsearch, "index", "--db", db, os.path.join(lib, "dog.jpg"))
    expect(p.returncode == 2 and "not a folder" in p.stderr and "caption" in p.stderr,
           "index FILE says it takes folders", p.text)
    p = env.run(env.capsearch, "--db", db, "status")
    expect(p.returncode == 0 and "7 indexed" in p.stdout, "--db before the subcommand", p.text)
    p = env.run(env.capsearch, "--db", db, "--dir", os.path.join(env.work, "nowhere"), "dog")
    expect(p.returncode == 2 and "no such folder" in p.stderr, "--dir of a missing folder", p.text)
    p = env.run(env.capsearch, "--db", db, "--dir", os.path.join(lib, "dog.jpg"), "dog")
    expect(p.returncode == 2 and "not a folder" in p.stderr, "--dir of a file", p.text)

    # a read-only copy of a finished index, without -wal/-shm, in a read-only folder
    ro = os.path.join(env.work, "ro")
    env.mount_tmpfs(ro, "64m")
    copy = os.path.join(ro, "index.db")
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    shutil.copyfile(db, copy)
    env.remount(ro, "ro")
    expect(not os.path.exists(copy + "-shm"), "the copy has no -shm")
    expect_search_finds(env, copy, "dog", "/library/dog.jpg")


def scenario_chunked_writer(env):
    """Issue 9.9: a writer that opens, appends and closes the file 20 times is decoded once,
    at the end, with no failure recorded."""
    lib = os.path.join(env.work, "library")
    os.makedirs(lib)
    copy_photo(env, "kite", os.path.join(lib, "kite.jpg"))
    db = os.path.join(env.work, "db", "index.db")
    d = Daemon(env, lib, db)
    d.start()
    try:
        d.wait_rows(1)
        data = open(os.path.join(env.args.photos, "dog.jpg"), "rb").read()
        dest = os.path.join(lib, "chunked.jpg")
        step = len(data) // 20 + 1
        for i in range(0, len(data), step):
            with open(dest, "ab") as f:
                f.write(data[i:i + step])
            time.sleep(0.15)
        d.wait_rows(2, timeout=60)
        time.sleep(1)
        expect(rows(db).get(dest) == 0, "the chunked file is indexed ok")
        expect("chunked.jpg" not in "".join(l for l in d.log_text().splitlines(True)
                                            if "recorded failed" in l),
               "no failure warnings for the chunks", d.log_text())
    finally:
        d.stop()


def scenario_prune(env):
    """Issue 9.9: rows of deleted files and of a folder no longer watched are removed by
    `capsearch prune`; nothing else is."""
    lib = env.photos_dir("library")
    sub = env.photos_dir(os.path.join("library", "old-root"))
    db = os.path.join(env.work, "index.db")
    expect(env.index(db, lib).returncode == 0, "index")
    expect(len(rows(db)) == 14, "both folders indexed")
    os.unlink(os.path.join(lib, "dog.jpg"))
    p = env.run(env.capsearch, "prune", "--db", db, "--dry-run")
    expect(p.returncode == 0 and p.stdout.strip() == os.path.join(lib, "dog.jpg"),
           "--dry-run lists the deleted file's row", p.text)
    expect(len(rows(db)) == 14, "--dry-run changes nothing")
    p = env.run(env.capsearch, "prune", "--db", db)
    expect(p.returncode == 0 and "1 row removed" in p.stdout, "prune removes one row", p.text)
    p = env.run(env.capsearch, "prune", "--db", db, sub)
    expect(p.returncode == 0 and "7 rows removed" in p.stdout, "prune DIR removes its rows", p.text)
    left = rows(db)
    expect(len(left) == 6 and not any(k.startswith(sub + "/") for k in left), "6 rows left")
    expect(integrity(db) == "ok", "integrity")


def scenario_move_into_polled(env):
    """Issue 9.9: a folder moved from a watched tree into a polled one (no watch left there:
    no IN_MOVED_TO) keeps its rows and captions: moved by content, no model run."""
    a = env.photos_dir("watched/album")
    watched = os.path.dirname(a)
    polled = os.path.join(env.work, "polled", "deeper")
    os.makedirs(polled)
    db = os.path.join(env.work, "db", "index.db")
    # two watches, taken by the root walked first (the last given) and its album; the
    # other root is polled, rarely: the move must not wait for (or race) the next poll
    d = Daemon(env, os.path.dirname(polled), db)
    d.start(extra=["--root", watched, "--max-watches", "2", "--poll-interval", "30"])
    try:
        d.wait_rows(7)
        time.sleep(2)
        expect("fs.inotify.max_user_watches" in d.log_text() and
               "%s and other folders are rescanned" % os.path.dirname(polled) in d.log_text(),
               "the root without the album is polled", d.log_text())

        def model_runs():
            con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=30)
            try:
                r = con.execute("SELECT value FROM meta WHERE key = 'daemon.model_runs'").fetchone()
                return int(r[0]) if r else -1
            finally:
                con.close()
        time.sleep(3)                            # a status round publishes model_runs
        runs = model_runs()
        dest = os.path.join(polled, "album")
        os.rename(a, dest)
        want = sorted(os.path.join(dest, p + ".jpg") for p in PHOTOS)
        deadline = time.time() + 20
        while time.time() < deadline:
            if sorted(k for k, v in rows(db).items() if v == 0) == want:
                break
            time.sleep(0.5)
        expect(sorted(rows(db)) == want, "the rows followed the folder into the polled tree: %s"
               % sorted(rows(db)), d.log_text())
        time.sleep(3)
        expect(model_runs() == runs, "no model run for the move (%d -> %d)" % (runs, model_runs()),
               d.log_text())
    finally:
        d.stop()


SCENARIOS = {
    "disk_full": scenario_disk_full,
    "file_size_limit": scenario_file_size_limit,
    "locked_wait": scenario_locked_wait,
    "locked_timeout": scenario_locked_timeout,
    "readonly": scenario_readonly,
    "db_deleted": scenario_db_deleted,
    "db_corrupt": scenario_db_corrupt,
    "model_missing": scenario_model_missing,
    "model_corrupt": scenario_model_corrupt,
    "huge_image": scenario_huge_image,
    "outside_reader": scenario_outside_reader,
    "error_text_in_names": scenario_error_text_in_names,
    "dates_before_1970": scenario_dates_before_1970,
    "foreign_db": scenario_foreign_db,
    "two_daemons": scenario_two_daemons,
    "touch_refresh": scenario_touch_refresh,
    "hostile_names": scenario_hostile_names,
    "unclear_errors": scenario_unclear_errors,
    "chunked_writer": scenario_chunked_writer,
    "prune": scenario_prune,
    "move_into_polled": scenario_move_into_polled,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="the build folder (cli/capsearch, daemon/capsearchd)")
    ap.add_argument("--models", required=True)
    ap.add_argument("--photos", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    args = ap.parse_args()
    if not all(os.path.exists(os.path.join(args.photos, p + ".jpg")) for p in PHOTOS):
        print("skipped: no sample photos in %s (tests/data/fetch_photos.sh)" % args.photos)
        return 77
    if not os.path.exists(os.path.join(args.models, "ssdlite_mobilenet_v2_coco.csw")):
        print("skipped: no backbone in %s (models/backbone/fetch_and_convert.sh)" % args.models)
        return 77
    env = Env(args, args.scenario)
    try:
        SCENARIOS[args.scenario](env)
    except Skip as e:
        print("skipped: %s" % e)
        return 77
    except Failure as e:
        print("FAIL %s: %s" % (args.scenario, e))
        return 1
    finally:
        env.cleanup()
    print("ok %s" % args.scenario)
    shutil.rmtree(env.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
