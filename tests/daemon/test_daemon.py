#!/usr/bin/env python3
"""Integration tests for capsearchd: the real daemon process on real temporary folders,
real inotify, the real model and a real SQLite index.

    test_daemon.py --bin DIR --photos DIR SCENARIO

Each scenario starts capsearchd (and restarts or kills it where the scenario says so),
changes files the way users and programs do, and checks the index with SQLite and with
`capsearch` searches. Exit 0 pass, 1 fail, 77 skipped (no sample photos or no model).
Test images are re-encoded from the Debian darknet sample photos (djpeg/cjpeg) and made
distinct by bytes after the JPEG end marker, which decoders ignore.
"""
import argparse
import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

SKIP = 77
PHOTOS = ["dog", "eagle", "giraffe", "horses", "kite", "person", "scream"]


class Failure(Exception):
    pass


# ------------------------------------------------------------------ the daemon under test

class Daemon:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.root = os.path.join(work, "photos")
        self.db = os.path.join(work, "index.db")
        self.log = os.path.join(work, "daemon.log")
        self.proc = None
        self.preexec = None         # e.g. drop to another user before exec
        self.env_extra = {}
        os.makedirs(self.root, exist_ok=True)

    def start(self, *extra, root=True, wait=True):
        cmd = [os.path.join(self.args.bin, "daemon", "capsearchd"), "--db", self.db,
               "--workers", "2", "--batch-ms", "200", "--poll-interval", "1",
               "--log-level", "debug", "--time-limit", "120"]
        if root:
            cmd += ["--root", self.root]
        cmd += list(extra)
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        env["HOME"] = self.work         # no stray user config; readable by any user
        env.pop("XDG_CONFIG_HOME", None)
        env.update(self.env_extra)
        logf = open(self.log, "a")
        logf.write("==== start: %s\n" % " ".join(cmd))
        logf.flush()
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=logf, env=env,
                                     preexec_fn=self.preexec)
        logf.close()
        if wait:
            started = time.time()
            self.wait(lambda: self.meta("daemon.pid") == str(self.proc.pid), 60,
                      "the daemon to publish its pid")
            print("  daemon pid %d up in %.1f s" % (self.proc.pid, time.time() - started))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failure("the daemon did not stop within 60 s of SIGTERM")
        if self.proc.returncode != 0:
            raise Failure("the daemon exited with %d after SIGTERM" % self.proc.returncode)

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def sql(self, query, params=()):
        if not os.path.exists(self.db):
            return []
        con = sqlite3.connect("file:%s?mode=ro" % self.db, uri=True, timeout=30)
        try:
            return con.execute(query, params).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []
            raise
        finally:
            con.close()

    def meta(self, key):
        rows = self.sql("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def model_runs(self):
        """The daemon's model-run counter, once it has published its settled value."""
        time.sleep(2.5)           # the status timer writes daemon.* every 2 s
        return int(self.meta("daemon.model_runs") or 0)

    def rows(self, under=None):
        q = "SELECT path, status, error, caption, tags FROM images"
        rows = self.sql(q)
        if under:
            rows = [r for r in rows if r[0].startswith(under + "/")]
        return {r[0]: r for r in rows}

    def wait(self, cond, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc is not None and not self.alive():
                raise Failure("the daemon died (exit %s) while waiting for %s"
                              % (self.proc.returncode, what))
            if cond():
                return
            time.sleep(0.2)
        raise Failure("timed out after %d s waiting for %s" % (timeout, what))

    def wait_indexed(self, paths, timeout, status=0):
        paths = set(paths)

        def done():
            rows = self.rows()
            return all(p in rows and rows[p][1] == status for p in paths)
        try:
            self.wait(done, timeout, "%d files to be indexed" % len(paths))
        except Failure as e:
            rows = self.rows()
            missing = [p for p in sorted(paths) if p not in rows or rows[p][1] != status]
            raise Failure("%s: %d of %d files not indexed (status %d), e.g. %s"
                          % (e, len(missing), len(paths), status, missing[:3]))

    def wait_gone(self, paths, timeout):
        paths = set(paths)
        self.wait(lambda: not (paths & set(self.rows())), timeout,
                  "%d rows to be removed" % len(paths))

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def search(self, *words, under=None):
        cmd = [os.path.join(self.args.bin, "cli", "capsearch"), "--db", self.db, "-n", "100000",
               "-0"]
        if under:
            cmd += ["--dir", under]
        out = subprocess.run(cmd + ["--"] + list(words), capture_output=True, timeout=120)
        if out.returncode not in (0, 1):
            raise Failure("capsearch search failed: %s" % out.stderr.decode(errors="replace"))
        return set(p.decode() for p in out.stdout.split(b"\0") if p)


# ------------------------------------------------------------------ test images

class Images:
    """Small JPEGs re-encoded from the sample photos; variant n of photo k is unique."""

    def __init__(self, photos_dir, work):
        self.base = {}
        for name in PHOTOS:
            src = os.path.join(photos_dir, name + ".jpg")
            for scale, gray in (("1/4", False), ("1/8", True)):
                cmd = "djpeg -scale %s %s %s | cjpeg -quality 85" % (
                    scale, "-grayscale" if gray else "", src)
                data = subprocess.run(["sh", "-c", cmd], capture_output=True, check=True).stdout
                self.base["%s%s" % (name, "-gray" if gray else "")] = data
        self.names = sorted(self.base)
        self.counter = 0

    def write(self, path, kind=None):
        """Writes a unique image; returns the base name it came from."""
        self.counter += 1
        kind = kind or self.names[self.counter % len(self.names)]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".part~"
        with open(path, "wb") as f:
            f.write(self.base[kind] + b"capsearch-test-%d" % self.counter)
        del tmp
        return kind

    def bytes_of(self, kind):
        self.counter += 1
        return self.base[kind] + b"capsearch-test-%d" % self.counter


# ------------------------------------------------------------------ scenarios

def scenario_index200(args, d, img):
    """200 images copied in (nested folders) → all indexed and searchable; a concurrent
    `capsearch index` of another folder into the same database succeeds."""
    d.start()
    staging = os.path.join(d.work, "staging")
    kinds = {}
    for i in range(200):
        p = os.path.join(staging, "album%d" % (i % 5), "img%03d.jpg" % i)
        kinds[p] = img.write(p)
    # copy in with cp -r, as a user would: folders arrive with their files in them
    subprocess.run(["cp", "-r"] + [os.path.join(staging, x) for x in sorted(os.listdir(staging))]
                   + [d.root], check=True)
    expected = {p.replace(staging, d.root): k for p, k in kinds.items()}
    other = os.path.join(d.work, "other")
    for i in range(10):
        img.write(os.path.join(other, "o%d.jpg" % i), "horses")
    cli = subprocess.run([os.path.join(args.bin, "cli", "capsearch"), "index", "--db", d.db,
                          "--jobs", "1", other], capture_output=True, timeout=300)
    if cli.returncode != 0:
        raise Failure("capsearch index beside the daemon failed: %s" % cli.stderr.decode())
    d.wait_indexed(expected, 600)
    rows = d.rows()
    if len([p for p in rows if p.startswith(other + "/")]) != 10:
        raise Failure("capsearch index rows missing")
    # the same pixels give the same tags; each kind is found by its first tag
    by_kind = {}
    for p, k in expected.items():
        by_kind.setdefault(k, set()).add(p)
    searched = 0
    for k, paths in sorted(by_kind.items()):
        tags = {rows[p][4] for p in paths}
        if len(tags) != 1:
            raise Failure("variants of %s got different tags: %s" % (k, tags))
        tag = (tags.pop() or "").split()
        if not tag:
            continue
        found = d.search(tag[0], under=d.root)
        if not paths <= found:
            raise Failure("search '%s' misses %d %s images" % (tag[0], len(paths - found), k))
        searched += 1
    if searched < 5:
        raise Failure("only %d image kinds had tags to search" % searched)
    if d.model_runs() != 200:
        raise Failure("expected 200 model runs, got %s" % d.meta("daemon.model_runs"))
    d.stop()
    if d.meta("daemon.state") != "stopped":
        raise Failure("daemon.state after SIGTERM is %r" % d.meta("daemon.state"))


def scenario_slow_write(args, d, img):
    """A file written slowly in chunks is captioned once, after it is complete."""
    d.start()
    d.wait(lambda: d.meta("daemon.state") == "watching", 60, "the initial scan")
    runs0 = d.model_runs()
    data = img.bytes_of("dog")
    path = os.path.join(d.root, "slow.jpg")
    chunks = 12
    with open(path, "wb") as f:
        for i in range(chunks):
            f.write(data[i * len(data) // chunks:(i + 1) * len(data) // chunks])
            f.flush()
            time.sleep(0.4)
            if path in d.rows():
                raise Failure("the half-written file was indexed after chunk %d" % (i + 1))
    d.wait_indexed([path], 120)
    runs = d.model_runs()
    if runs - runs0 != 1:
        raise Failure("expected exactly 1 model run for the slow file, got %d" % (runs - runs0))
    # a hard link appears without IN_CLOSE_WRITE: it is picked up once it settles
    link = os.path.join(d.root, "linked.jpg")
    os.link(path, link)
    d.wait_indexed([link], 60)
    d.stop()


def scenario_rename(args, d, img):
    """Renames of files and folder trees keep captions without model runs; moves while the
    daemon is down are found by content; deletes remove rows and search hits."""
    files = []
    for i in range(4):
        files.append(os.path.join(d.root, "trip", "day%d" % (i % 2), "p%d.jpg" % i))
        img.write(files[-1], "horses" if i % 2 else "dog")
    files.append(os.path.join(d.root, "single.jpg"))
    img.write(files[-1], "giraffe")
    d.start()
    d.wait_indexed(files, 300)
    before = d.rows()
    runs0 = d.model_runs()

    # a file rename
    new_single = os.path.join(d.root, "renamed.jpg")
    os.rename(files[4], new_single)
    # a folder tree rename
    new_trip = os.path.join(d.root, "holiday")
    os.rename(os.path.join(d.root, "trip"), new_trip)
    moved = {f.replace(os.path.join(d.root, "trip"), new_trip): f for f in files[:4]}
    moved[new_single] = files[4]
    d.wait_indexed(moved, 60)
    d.wait_gone(files, 60)
    after = d.rows()
    for new, old in moved.items():
        if after[new][3:] != before[old][3:]:
            raise Failure("%s lost its caption/tags on rename" % new)
    # into a folder created after the start, and a rename of that folder right away
    fresh = os.path.join(new_trip, "fresh")
    os.mkdir(fresh)
    dest = os.path.join(fresh, "p0.jpg")
    os.rename(os.path.join(new_trip, "day0", "p0.jpg"), dest)
    os.rename(fresh, os.path.join(new_trip, "fresh2"))
    dest = os.path.join(new_trip, "fresh2", "p0.jpg")
    d.wait_indexed([dest], 60)
    runs = d.model_runs()
    if runs != runs0:
        raise Failure("renames re-ran the model: %d runs before, %d after" % (runs0, runs))

    # moved while the daemon is down: the startup scan pairs them by fingerprint
    d.stop()
    offline = os.path.join(d.root, "offline.jpg")
    os.rename(new_single, offline)
    d.start()
    d.wait_indexed([offline], 120)
    d.wait_gone([new_single], 60)
    if d.rows()[offline][3:] != before[files[4]][3:]:
        raise Failure("an offline move lost its tags")
    if d.model_runs() != 0:
        raise Failure("an offline move re-ran the model (%s runs)" % d.meta("daemon.model_runs"))

    # deletes: a file, a tree, and a file moved out of the watched folders
    tag = (d.rows()[offline][4] or "giraffe").split()[0]
    os.unlink(offline)
    shutil.rmtree(os.path.join(new_trip, "day1"))
    outside = os.path.join(d.work, "outside.jpg")
    os.rename(dest, outside)
    gone = [offline, dest] + [m for m in moved if "/day1/" in m]
    d.wait_gone(gone, 60)
    if offline in d.search(tag, under=d.root):
        raise Failure("a deleted file is still found by search")
    d.stop()


def scenario_bad_files(args, d, img):
    """Zero-byte, truncated, not-an-image and 30000x30000 files → failed rows, daemon alive."""
    d.start()
    good = img.bytes_of("dog")
    bad = {}
    bad["zero.jpg"] = b""
    bad["truncated.jpg"] = good[:len(good) // 2]
    bad["text.jpg"] = b"this is not an image at all\n" * 10
    bad["huge.jpg"] = huge_jpeg(good)
    bad["huge.png"] = huge_png()
    bad["garbage.png"] = b"\x89PNG\r\n\x1a\n" + os.urandom(3000)
    for name, data in bad.items():
        with open(os.path.join(d.root, name), "wb") as f:
            f.write(data)
    paths = [os.path.join(d.root, n) for n in bad]
    d.wait_indexed(paths, 120, status=1)
    rows = d.rows()
    for p in paths:
        if not rows[p][2]:
            raise Failure("%s failed without an error message" % p)
        print("  %s: %s" % (os.path.basename(p), rows[p][2]))
    if not d.alive():
        raise Failure("the daemon died on bad files")
    # failed files are not retried until they change ...
    runs = d.model_runs()
    d.stop()
    d.start()
    d.wait(lambda: d.meta("daemon.state") == "watching", 60, "the restart scan")
    if d.model_runs() != 0:
        raise Failure("failed files were retried without a change")
    # ... and are retried when they do
    with open(os.path.join(d.root, "zero.jpg"), "wb") as f:
        f.write(img.bytes_of("dog"))
    d.wait_indexed([os.path.join(d.root, "zero.jpg")], 60)
    del runs
    d.stop()


def scenario_time_limit(args, d, img):
    """An image slower than the per-image time limit (a 28000x28000 PNG: about 6 s of
    inflate in a release build here, 15 s under ASan, with a 2 s limit) is recorded failed;
    the slot gets a fresh session and the next files are indexed while the old worker is
    still busy. The margins go both ways: the PNG must outlast the limit on a fast machine,
    and the next photo must beat it under ASan on a loaded one, beside the stuck worker
    (with a 1 s limit it once did not: 2026-12-02)."""
    d.start("--time-limit", "2", "--max-pixels", "1000000000", "--workers", "1")
    slow = os.path.join(d.root, "slow.png")
    big_png(slow, 28000, 28000)
    d.wait_indexed([slow], 120, status=1)
    err = d.rows()[slow][2] or ""
    if "time limit" not in err:
        raise Failure("the slow image failed for another reason: %r" % err)
    good = os.path.join(d.root, "after.jpg")
    img.write(good, "dog")
    d.wait_indexed([good], 120)
    d.wait(lambda: "came back" in d.log_text(), 300, "the stuck worker to return")
    d.stop()


def big_png(path, width, height):
    """A valid RGB PNG of the given size (all grey), written in streamed rows."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    z = zlib.compressobj(9)
    row = b"\0" + b"\x80" * (3 * width)
    parts = [z.compress(row) for _ in range(height)]
    parts.append(z.flush())
    with open(path + ".tmp", "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", b"".join(parts)))
        f.write(chunk(b"IEND", b""))
    os.rename(path + ".tmp", path)


def scenario_crash_marker(args, d, img):
    """A file that was in the engine when the process died is retried once; a file in the
    engine at two deaths in a row is recorded failed and not retried."""
    a = os.path.join(d.root, "a.jpg")
    b = os.path.join(d.root, "b.jpg")
    img.write(a, "dog")
    img.write(b, "kite")
    d.start("--once", wait=False)
    if d.proc.wait(300) != 0:
        raise Failure("capsearchd --once exited with %d" % d.proc.returncode)
    d.proc = None
    d.wait_indexed([a, b], 1)
    with open(b, "ab") as f:          # changed: it must be looked at again
        f.write(b"x")
    con = sqlite3.connect(d.db, timeout=30)
    con.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('daemon.inflight', ?)",
                ("2\t%s\n1\t%s\n" % (a, b),))
    con.commit()
    con.close()
    d.start()
    d.wait_indexed([a], 60, status=1)
    d.wait_indexed([b], 60, status=0)
    if "crashed" not in (d.rows()[a][2] or ""):
        raise Failure("the crash-looping file's error does not say so: %r" % d.rows()[a][2])
    d.stop()


def scenario_cnn_int8(args, d, img):
    """cnn = int8 (here --cnn int8): a library captioned by the float CNN is captioned again
    by the int8 one at the next start, its rows then carry the "-int8" model version, and
    back. A CPU without AVX-512 VNNI and BF16 gets a warning and the float CNN."""
    paths = [os.path.join(d.root, n) for n in ("a.jpg", "b.jpg")]
    img.write(paths[0], "dog")
    img.write(paths[1], "kite")

    def once(*extra):
        d.start("--once", *extra, wait=False)
        if d.proc.wait(300) != 0:
            raise Failure("capsearchd --once %s exited with %d" % (" ".join(extra), d.proc.returncode))
        d.proc = None
        return {r[0]: r[1] for r in d.sql("SELECT path, model_version FROM images")}

    plain = once()
    if sorted(plain) != sorted(paths) or any("int8" in v for v in plain.values()):
        raise Failure("float run: %r" % plain)
    quick = once("--cnn", "int8")
    if "has no AVX-512 VNNI and BF16" in d.log_text():
        if quick != plain:
            raise Failure("without VNNI and BF16 the float CNN stays: %r" % quick)
        print("  no int8 CNN on this CPU: warned, float kept")
        return
    if any("-int8+" not in v for v in quick.values()):   # written only by a new caption
        raise Failure("int8 run: %r" % quick)
    if once() != plain:
        raise Failure("back to float: the float version again")


def scenario_burst(args, d, img, count, kill):
    """count files created in a burst → none lost; with kill, the daemon is killed -9 in
    the middle and restarted: no duplicates, nothing missing, integrity ok."""
    d.start()
    d.wait(lambda: d.meta("daemon.state") == "watching", 60, "the initial scan")
    paths = []
    started = time.time()
    half_done, resume = threading.Event(), threading.Event()

    def writer():
        for i in range(count):
            if i == count // 2:
                half_done.set()
                if kill:
                    resume.wait(600)
            p = os.path.join(d.root, "burst%02d" % (i % 20), "b%05d.jpg" % i)
            img.write(p)
            paths.append(p)
            if kill and i > count // 2:
                time.sleep(0.002)   # the restart happens while files keep coming
    t = threading.Thread(target=writer)
    t.start()
    if kill:
        # half the files written and some indexed: kill -9 in the middle of the work,
        # write more while it is down, restart while the burst goes on
        half_done.wait(600)
        d.wait(lambda: len(d.rows()) >= 10, 600, "the first files indexed")
        d.kill9()
        print("  killed -9 with %d rows indexed, %d files written" % (len(d.rows()), len(paths)))
        d.proc = None
        resume.set()
        time.sleep(0.5)
        d.start()
        print("  restarted with %d files written" % len(paths))
    t.join()
    print("  %d files written in %.1f s" % (count, time.time() - started))
    d.wait_indexed(paths, max(600, count // 2))
    print("  all indexed after %.1f s" % (time.time() - started))
    check_consistent(d, paths)
    d.stop()


def scenario_overflow(args, d, img):
    """Lost inotify events (simulated every 25 events, and a real kernel queue overflow
    with fs.inotify.max_queued_events lowered when running as root) → rescan, all indexed."""
    d.start("--debug-overflow-every", "25")
    paths = []
    for i in range(150):
        p = os.path.join(d.root, "ov%d" % (i % 3), "f%03d.jpg" % i)
        img.write(p)
        paths.append(p)
    d.wait_indexed(paths, 600)
    if "events were lost" not in d.log_text():
        raise Failure("no overflow was logged")
    d.stop()

    knob = "/proc/sys/fs/inotify/max_queued_events"
    if os.geteuid() != 0 or not os.access(knob, os.W_OK):
        print("  not root: the real kernel overflow is not exercised")
        return
    with open(knob) as f:
        saved = f.read().strip()
    try:
        with open(knob, "w") as f:
            f.write("16")
        d.start()     # the inotify instance takes the limit when it is created
    finally:
        with open(knob, "w") as f:
            f.write(saved)
    os.kill(d.proc.pid, signal.SIGSTOP)     # nobody reads: the kernel queue overflows
    more = []
    for i in range(100):
        p = os.path.join(d.root, "ov1", "k%03d.jpg" % i)   # watched: events queue up
        img.write(p)
        more.append(p)
    os.kill(d.proc.pid, signal.SIGCONT)
    d.wait_indexed(paths + more, 600)
    if "event queue overflowed" not in d.log_text():
        raise Failure("the kernel overflow was not logged")
    d.stop()


def scenario_watch_limit(args, d, img):
    """With room for 3 watches, the other folders are polled: everything is still indexed,
    changes in unwatched folders are picked up, and the log names the sysctl."""
    deep = d.root
    paths = []
    for level in range(8):
        deep = os.path.join(deep, "level%d" % level)
        p = os.path.join(deep, "before.jpg")
        img.write(p)
        paths.append(p)
    d.start("--max-watches", "3")
    d.wait_indexed(paths, 300)
    log = d.log_text()
    if "fs.inotify.max_user_watches" not in log:
        raise Failure("the watch limit was not logged with the sysctl name")
    added = []
    deep = d.root
    for level in range(8):
        deep = os.path.join(deep, "level%d" % level)
        p = os.path.join(deep, "after.jpg")
        img.write(p)
        added.append(p)
    newdir = os.path.join(deep, "newdir", "x.jpg")
    img.write(newdir)
    d.wait_indexed(added + [newdir], 120)
    os.unlink(paths[-1])
    d.wait_gone([paths[-1]], 60)
    d.stop()


def scenario_reload(args, d, img):
    """SIGHUP re-reads the config: a root added is scanned and watched, a root removed is
    no longer watched."""
    a, b = d.root, os.path.join(d.work, "second")
    fa, fb = os.path.join(a, "a.jpg"), os.path.join(b, "b.jpg")
    img.write(fa, "dog")
    img.write(fb, "eagle")
    conf = os.path.join(d.work, "capsearchd.conf")
    with open(conf, "w") as f:
        f.write("# test\nroot = %s\nworkers = 1\n" % a)
    d.start("--config", conf, root=False)
    d.wait_indexed([fa], 120)
    with open(conf, "w") as f:
        f.write("root = %s\nroot = %s\n" % (a, b))
    d.proc.send_signal(signal.SIGHUP)
    d.wait_indexed([fb], 120)
    fb2 = os.path.join(b, "b2.jpg")
    img.write(fb2, "kite")
    d.wait_indexed([fb2], 60)
    with open(conf, "w") as f:
        f.write("root = %s\n" % b)
    d.proc.send_signal(signal.SIGHUP)
    d.wait(lambda: "config reloaded: 1 root" in d.log_text(), 30, "the second reload")
    fa2 = os.path.join(a, "a2.jpg")
    img.write(fa2, "kite")
    time.sleep(4)
    if fa2 in d.rows():
        raise Failure("a file in a removed root was indexed")
    # a bad config keeps the old one
    with open(conf, "w") as f:
        f.write("root = %s\nworkers = lots\n" % b)
    d.proc.send_signal(signal.SIGHUP)
    d.wait(lambda: "reload failed" in d.log_text(), 30, "the bad reload to be refused")
    if "capsearchd.conf:2:" not in d.log_text():
        raise Failure("the config error does not name file and line")
    d.stop()


def scenario_odd_roots(args, d, img):
    """A root that is a symlink loop, a root that is not there yet (unmounted), and a
    symlink loop inside a root are logged, not fatal; the missing root is picked up when
    it appears; the rows of a root that disappears are kept."""
    loop_root = os.path.join(d.work, "looproot")
    os.symlink(loop_root, loop_root)
    missing = os.path.join(d.work, "later")
    os.symlink(d.root, os.path.join(d.root, "up"))        # a loop if links were followed
    a = os.path.join(d.root, "sub", "a.jpg")
    img.write(a, "dog")
    d.start("--root", loop_root, "--root", missing)
    d.wait_indexed([a], 120)
    log = d.log_text()
    if "symlink loop" not in log or "not mounted?" not in log:
        raise Failure("the symlink-loop root and the missing root were not both logged")
    os.mkdir(missing)
    m = os.path.join(missing, "m.jpg")
    img.write(m, "kite")
    d.wait_indexed([m], 90)          # roots are looked for again every 30 s
    d.stop()
    # the root vanishes while the daemon is down (an unmounted disk): rows stay
    away = d.root + "-unmounted"
    os.rename(d.root, away)
    d.start("--root", missing)
    d.wait(lambda: d.meta("daemon.state") == "watching", 60, "the scan")
    time.sleep(3)
    if a not in d.rows():
        raise Failure("the rows of an unmounted root were deleted")
    d.stop()


def scenario_permissions(args, d, img):
    """Unreadable folders and files are logged (and the files recorded failed), never
    fatal, and a file made readable (chmod) is indexed; the daemon runs as an unprivileged
    user (nobody) for this, so it needs root."""
    if os.geteuid() != 0:
        print("skip: needs root to run the daemon as another user")
        sys.exit(SKIP)
    ok = os.path.join(d.root, "ok.jpg")
    secret_dir = os.path.join(d.root, "secret")
    hidden_file = os.path.join(secret_dir, "s.jpg")
    locked = os.path.join(d.root, "locked.jpg")
    img.write(ok, "dog")
    img.write(hidden_file, "kite")
    img.write(locked, "horses")
    os.chmod(secret_dir, 0o700)
    os.chmod(locked, 0o600)
    for p in (d.work, d.root):
        os.chmod(p, 0o777)

    def drop():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    d.preexec = drop
    d.start()
    d.wait_indexed([ok], 120)
    d.wait_indexed([locked], 60, status=1)
    err = d.rows()[locked][2] or ""
    if "ermission" not in err:
        raise Failure("the unreadable file's error does not say so: %r" % err)
    d.wait(lambda: "cannot read folder %s: Permission denied" % secret_dir in d.log_text(),
           30, "the unreadable folder to be logged")
    if not d.alive():
        raise Failure("the daemon died on permission errors")
    os.chmod(locked, 0o644)          # fixed: IN_ATTRIB has it looked at again
    d.wait_indexed([locked], 60)
    d.stop()


def scenario_priority(args, d, img):
    """A file that arrives while the startup scan's backlog is being worked through is
    indexed ahead of that backlog."""
    backlog = []
    for i in range(250):
        p = os.path.join(d.root, "old%d" % (i % 4), "o%03d.jpg" % i)
        img.write(p)
        os.utime(p, (time.time() - 3600, time.time() - 3600))   # a library, not new files
        backlog.append(p)
    d.start("--workers", "1")
    d.wait(lambda: len(d.rows()) >= 5, 300, "the backlog to start")
    fresh = os.path.join(d.root, "old0", "fresh.jpg")
    img.write(fresh, "giraffe")
    left = len(backlog) - len(d.rows())
    d.wait_indexed([fresh], 120)
    ids = dict(d.sql("SELECT path, id FROM images"))
    later = [p for p in backlog if p in ids and ids[p] > ids[fresh]]
    not_yet = [p for p in backlog if p not in ids]
    print("  fresh file indexed with %d of the %d backlog files left then still to go"
          % (len(later) + len(not_yet), left))
    # IN_CLOSE_WRITE settles for 1 s (a writer may close between chunks): the backlog
    # goes on meanwhile, but the fresh file must not wait for even half of it
    if left > 50 and len(later) + len(not_yet) < left // 2:
        raise Failure("the new file waited behind the backlog")
    d.wait_indexed(backlog, 600)
    d.stop()


def scenario_notify(args, d, img):
    """The sd_notify protocol as systemd sees it (a NOTIFY_SOCKET of our own): READY=1,
    STATUS= with the counts, WATCHDOG=1 pings at the WATCHDOG_USEC pace, RELOADING=1 on
    SIGHUP, STOPPING=1 on SIGTERM."""
    import socket
    sock_path = os.path.join(d.work, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.2)
    f = os.path.join(d.root, "n.jpg")
    img.write(f, "dog")
    d.env_extra = {"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "2000000"}
    d.start(wait=False)
    d.env_extra = {}
    got = []

    def drain(seconds):
        end = time.time() + seconds
        while time.time() < end:
            try:
                got.append(sock.recv(4096).decode())
            except socket.timeout:
                pass
    drain(6)
    d.wait_indexed([f], 60)
    d.proc.send_signal(signal.SIGHUP)
    drain(1.5)
    d.proc.send_signal(signal.SIGTERM)
    d.proc.wait(60)
    drain(0.5)
    sock.close()
    text = "\n".join(got)
    for want in ("READY=1", "WATCHDOG=1", "RELOADING=1", "STOPPING=1", "STATUS=watching: indexed 1, queued 0"):
        if want not in text:
            raise Failure("no %r among the notifications: %r" % (want, got[:8]))
    pings = sum(m.count("WATCHDOG=1") for m in got)
    if pings < 4:
        raise Failure("only %d watchdog pings in ~8 s with WatchdogSec=2" % pings)


def scenario_cli_index(args, d, img):
    """`capsearch index` (the same pipeline, once): new files indexed, a rerun touches
    nothing, renames keep rows without model runs, deletes are removed, bad input fails."""
    exe = [os.path.join(args.bin, "cli", "capsearch"), "index", "--db", d.db, "--jobs", "2"]

    def run(*extra, want_rc=0):
        r = subprocess.run(exe + list(extra), capture_output=True, timeout=600)
        out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
        if r.returncode != want_rc:
            raise Failure("capsearch index %s: exit %d (wanted %d): %s"
                          % (" ".join(extra), r.returncode, want_rc, out))
        return out
    # nothing to do must still finish (it once waited forever for a busy period that
    # never began): an empty folder, and one holding only symlinks (not followed)
    empty = os.path.join(d.work, "empty")
    links = os.path.join(d.work, "links")
    os.makedirs(empty)
    os.makedirs(links)
    os.symlink(os.path.join(args.photos, "dog.jpg"), os.path.join(links, "dog.jpg"))
    for folder in (empty, links):
        out = run(folder)
        if "0 indexed, 0 failed" not in out:
            raise Failure("nothing to index in %s: %s" % (folder, out))
    files = []
    for i in range(12):
        files.append(os.path.join(d.root, "y%d" % (i % 3), "c%02d.jpg" % i))
        img.write(files[-1])
    with open(os.path.join(d.root, "broken.jpg"), "wb") as f:
        f.write(b"not a jpeg")
    out = run(d.root)
    if "12 indexed, 1 failed" not in out:
        raise Failure("first run: %s" % out)
    out = run(d.root)
    if "0 indexed, 0 failed, 0 moved, 0 removed, 13 unchanged" not in out:
        raise Failure("second run re-did work: %s" % out)
    os.rename(files[0], files[0] + ".moved.jpg")
    os.rename(os.path.join(d.root, "y1"), os.path.join(d.root, "y1-renamed"))
    os.unlink(files[2])
    out = run(d.root)
    if "0 indexed, 0 failed, 5 moved, 1 removed" not in out:
        raise Failure("moves/deletes: %s" % out)
    run("--jobs", "0", d.root, want_rc=2)
    run(os.path.join(d.work, "no-such-folder"), want_rc=2)
    run(want_rc=2)
    if len(d.rows()) != 12:
        raise Failure("expected 12 rows, got %d" % len(d.rows()))


def scenario_config_errors(args, d, img):
    """Bad configs and flags are refused with the file and line, exit status 2."""
    conf = os.path.join(d.work, "bad.conf")
    cases = [
        ("root = /tmp\n\nbogus_key = 1\n", "bad.conf:3: unknown key"),
        ("workers = 0\n", "bad.conf:1: workers"),
        ("root = relative/path\n", "not an absolute path"),
        ("log_level = loud\n", "unknown level"),
        ("just words\n", "expected 'key = value'"),
        ("root = \"/unterminated\n", "unterminated quote"),
    ]
    exe = os.path.join(args.bin, "daemon", "capsearchd")
    for text, want in cases:
        with open(conf, "w") as f:
            f.write(text)
        r = subprocess.run([exe, "--config", conf, "--db", d.db], capture_output=True, timeout=60)
        err = r.stderr.decode(errors="replace")
        if r.returncode != 2 or want not in err:
            raise Failure("config %r: exit %d, stderr %r (wanted %r)" % (text, r.returncode, err, want))
    r = subprocess.run([exe, "--workers", "-3", "--db", d.db], capture_output=True, timeout=60)
    if r.returncode != 2:
        raise Failure("--workers -3 accepted")
    r = subprocess.run([exe, "--config", os.path.join(d.work, "missing.conf")],
                       capture_output=True, timeout=60)
    if r.returncode != 2 or "missing.conf" not in r.stderr.decode():
        raise Failure("a missing --config file is not an error")


# ------------------------------------------------------------------ helpers

def check_consistent(d, paths):
    rows = d.sql("SELECT path, status FROM images")
    names = [r[0] for r in rows]
    if len(names) != len(set(names)):
        raise Failure("duplicate rows")
    want = set(paths)
    have = set(names)
    if want - have:
        raise Failure("%d files missing from the index" % len(want - have))
    stale = [p for p in have if not os.path.exists(p)]
    if stale:
        raise Failure("%d rows for files that do not exist, e.g. %s" % (len(stale), stale[:2]))
    failed = [r[0] for r in rows if r[1] != 0 and r[0] in want]
    if failed:
        raise Failure("%d files failed, e.g. %s" % (len(failed), failed[:2]))
    ok = d.sql("PRAGMA integrity_check")
    if ok != [("ok",)]:
        raise Failure("integrity_check: %s" % ok[:3])
    fts = d.sql("SELECT count(*) FROM images_fts")
    if fts and fts[0][0] != len(names):
        raise Failure("FTS has %d rows for %d images" % (fts[0][0], len(names)))


def huge_jpeg(data):
    """The same JPEG with its frame header claiming 30000 x 30000 pixels."""
    b = bytearray(data)
    i = 2
    while i + 9 < len(b):
        if b[i] != 0xFF:
            raise Failure("unexpected JPEG layout")
        marker = b[i + 1]
        length = struct.unpack(">H", b[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            b[i + 5:i + 9] = struct.pack(">HH", 30000, 30000)
            return bytes(b)
        i += 2 + length
    raise Failure("no SOF marker found")


def huge_png():
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


SCENARIOS = {
    "index200": scenario_index200,
    "slow_write": scenario_slow_write,
    "rename": scenario_rename,
    "bad_files": scenario_bad_files,
    "crash_marker": scenario_crash_marker,
    "cnn_int8": scenario_cnn_int8,
    "time_limit": scenario_time_limit,
    "kill9": lambda a, d, i: scenario_burst(a, d, i, 400, True),
    "burst5000": lambda a, d, i: scenario_burst(a, d, i, 5000, False),
    "kill9_burst5000": lambda a, d, i: scenario_burst(a, d, i, 5000, True),
    "overflow": scenario_overflow,
    "watch_limit": scenario_watch_limit,
    "reload": scenario_reload,
    "config_errors": scenario_config_errors,
    "cli_index": scenario_cli_index,
    "notify": scenario_notify,
    "priority": scenario_priority,
    "permissions": scenario_permissions,
    "odd_roots": scenario_odd_roots,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="the build directory")
    ap.add_argument("--photos", required=True, help="the darknet sample photos")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    args = ap.parse_args()

    if not all(os.path.exists(os.path.join(args.photos, p + ".jpg")) for p in PHOTOS):
        print("skip: no sample photos in %s (tests/data/fetch_photos.sh)" % args.photos)
        return SKIP
    if not shutil.which("djpeg") or not shutil.which("cjpeg"):
        print("skip: djpeg/cjpeg (libjpeg-turbo-progs) not installed")
        return SKIP
    models = os.environ.get("CAPSEARCH_MODELS") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "models")
    if not os.path.exists(os.path.join(models, "ssdlite_mobilenet_v2_coco.csw")):
        print("skip: no converted backbone in %s (models/backbone/fetch_and_convert.sh)" % models)
        return SKIP

    work = tempfile.mkdtemp(prefix="capsearchd-%s-" % args.scenario)
    d = Daemon(args, work)
    rc = 1
    try:
        img = Images(args.photos, work)
        started = time.time()
        SCENARIOS[args.scenario](args, d, img)
        log = d.log_text() if os.path.exists(d.log) else ""
        for bad in ("Sanitizer", "runtime error:", "LeakSanitizer"):
            if bad in log:
                raise Failure("the daemon log reports a sanitizer problem (%s)" % bad)
        print("PASS %s (%.1f s)" % (args.scenario, time.time() - started))
        rc = 0
    except Failure as e:
        print("FAIL %s: %s" % (args.scenario, e))
    finally:
        if d.alive():
            d.proc.kill()
            d.proc.wait()
        if rc != 0 and os.path.exists(d.log):
            lines = d.log_text().splitlines()
            print("---- daemon log (last 40 lines of %d) ----" % len(lines))
            print("\n".join(lines[-40:]))
        if args.keep or rc != 0:
            print("kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
