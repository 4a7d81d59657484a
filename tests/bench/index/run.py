#!/usr/bin/env python3
"""End-to-end indexing benchmark: camera-sized photos through `capsearch index` and through
the real capsearchd, per-stage latency, daemon peak RSS, database bytes per image.

usage: run.py --build BUILD_DIR [--quick] [--count N] [--workers N] [--stage-photos N]
              [--models DIR] [--cnn float|int8] [--results FILE]

  --quick           100 photos, 30 for the stage timings (a fast sanity run)
  --count N         photos to index (default 1000)
  --workers N       model runs in parallel, for both the CLI (--jobs) and the daemon
                    (--workers); default: the number of CPUs
  --stage-photos N  photos timed stage by stage (default 200)
  --models DIR      the model folder (default $CAPSEARCH_MODELS, else models/ of the
                    source tree); with a captioner.csw there, captions are timed too
  --cnn int8        the optional int8 CNN everywhere (capsearch --cnn, capsearchd --cnn,
                    bench_stages --cnn); default float
  --results FILE    append the RESULT lines there too (tests/bench/run_all.sh reads them)

Prints a Markdown section on stdout, progress on stderr. Needs, built in BUILD_DIR:
capsearch, capsearchd, make_photos and bench_stages (tests/bench/index/CMakeLists.txt),
and the darknet sample photos (tests/data/fetch_photos.sh) at CAPSEARCH_TEST_PHOTOS.

The photos are made once into BUILD_DIR/tests/bench/index/work/photos (never committed)
and kept while make_photos.c is unchanged. Every run indexes them into fresh databases.
"""
import argparse
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
POLL_S = 0.2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--count", type=int)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--stage-photos", type=int)
    ap.add_argument("--models", default=os.environ.get("CAPSEARCH_MODELS") or
                    os.path.join(ROOT, "models"))
    ap.add_argument("--results")
    ap.add_argument("--cnn", default="float", choices=["float", "int8"])
    args = ap.parse_args()
    count = args.count or (100 if args.quick else 1000)
    stage_photos = args.stage_photos or (30 if args.quick else 200)
    build = os.path.abspath(args.build)
    bins = {
        "capsearch": os.path.join(build, "cli", "capsearch"),
        "capsearchd": os.path.join(build, "daemon", "capsearchd"),
        "make_photos": os.path.join(build, "tests", "bench", "index", "make_photos"),
        "bench_stages": os.path.join(build, "tests", "bench", "index", "bench_stages"),
    }
    for name, path in bins.items():
        if not os.access(path, os.X_OK):
            sys.exit(f"index bench: {path} is not built (cmake --build {build} --target {name})")
    work = os.path.join(build, "tests", "bench", "index", "work")
    os.makedirs(work, exist_ok=True)

    photos = make_photos(bins["make_photos"], cmake_cache(build, "CAPSEARCH_TEST_PHOTOS"),
                         work, count)
    root, files = photo_root(photos, count)
    sizes = [os.path.getsize(f) for f in files]
    results = []

    log(f"one-shot: capsearch index --jobs {args.workers}, {len(files)} photos")
    oneshot = run_oneshot(bins["capsearch"], args.models, work, root, args.workers, args.cnn)
    results.append("RESULT index mode=oneshot " + kv(oneshot))

    log(f"daemon: capsearchd --workers {args.workers}, {len(files)} photos")
    daemon = run_daemon(bins["capsearchd"], args.models, work, root, args.workers, len(files),
                        args.cnn)
    results.append("RESULT index mode=daemon " + kv(daemon))

    log(f"stages: bench_stages on {min(stage_photos, len(files))} photos")
    stages_out = subprocess.run(
        [bins["bench_stages"], "--db", os.path.join(work, "stages.db"),
         "--models", args.models, "--cnn", args.cnn, "--limit", str(stage_photos), root],
        check=False, capture_output=True, text=True)
    sys.stderr.write(stages_out.stderr)
    stages_table = [l for l in stages_out.stdout.splitlines() if not l.startswith("RESULT")]
    results += [l for l in stages_out.stdout.splitlines() if l.startswith("RESULT")]

    print_section(len(files), sizes, args.workers, oneshot, daemon, stages_table,
                  stages_out.returncode, model_version(daemon["db"]))
    for r in results:
        print(r)
    if args.results:
        with open(args.results, "a") as f:
            f.write("\n".join(results) + "\n")
    return 0 if oneshot["ok"] > 0 and daemon["ok"] > 0 else 1


# ------------------------------------------------------------------ photos

def make_photos(tool, sources, work, count):
    """Makes the missing photos (two generators in parallel); a changed make_photos.c
    throws the old ones away."""
    fetch = os.path.join(ROOT, "tests", "data", "fetch_photos.sh")
    subprocess.run([fetch, sources], check=True, stdout=sys.stderr)
    photos = os.path.join(work, "photos")
    stamp = os.path.join(work, "photos.generator")
    with open(os.path.join(HERE, "make_photos.c"), "rb") as f:
        version = hashlib.sha256(f.read()).hexdigest()
    old = open(stamp).read().strip() if os.path.exists(stamp) else ""
    if old != version and os.path.isdir(photos):
        log("make_photos.c changed: making the photos again")
        shutil.rmtree(photos)
    os.makedirs(photos, exist_ok=True)
    with open(stamp, "w") as f:
        f.write(version + "\n")
    half = count // 2
    t0 = time.monotonic()
    procs = [subprocess.Popen(["nice", "-n", "10", tool, sources, photos, str(first), str(n)])
             for first, n in ((0, half), (half, count - half)) if n > 0]
    if any(p.wait() != 0 for p in procs):
        sys.exit("index bench: make_photos failed")
    log(f"photos ready in {time.monotonic() - t0:.0f} s")
    return photos


def photo_root(photos, count):
    """The folder to index and its photos: photos/ itself when it holds just the first
    `count` photos' folders, else photos-COUNT/ holding hard links to them (a run with
    fewer photos than were made for an earlier one)."""
    wanted = [f"d{i:02d}" for i in range((count + 99) // 100)]
    files = []
    for d in wanted:
        p = os.path.join(photos, d)
        files += sorted(os.path.join(p, f) for f in os.listdir(p)
                        if f.endswith(".jpg") and not f.startswith("."))
    files = files[:count]
    if len(files) != count:
        sys.exit(f"index bench: expected {count} photos under {photos}, found {len(files)}")
    if sorted(d for d in os.listdir(photos) if d.startswith("d")) == wanted and count % 100 == 0:
        return photos, files
    root = photos.rstrip("/") + f"-{count}"
    if os.path.isdir(root):
        shutil.rmtree(root)
    linked = []
    for f in files:
        dest = os.path.join(root, os.path.basename(os.path.dirname(f)), os.path.basename(f))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.link(f, dest)
        linked.append(dest)
    return root, linked


# ------------------------------------------------------------------ runs

def run_oneshot(capsearch, models, work, root, workers, cnn):
    db = fresh_db(work, "oneshot.db")
    load0 = loadavg()
    t0 = time.monotonic()
    with open(os.path.join(work, "oneshot.log"), "w") as out:
        proc = subprocess.Popen([capsearch, "index", "--db", db, "--models", models,
                                 "--cnn", cnn, "--jobs", str(workers), root],
                                stdout=out, stderr=subprocess.STDOUT)
        # wait4: the child's own CPU time and peak RSS
        _, status, ru = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    with open(os.path.join(work, "oneshot.log")) as f:
        log("capsearch index: " + f.read().strip()[-2000:])
    ok, failed = count_rows(db)
    return {"ok": ok, "failed": failed, "workers": workers, "wall_s": wall,
            "images_per_s": ok / wall,
            "cpu_s_per_image": (ru.ru_utime + ru.ru_stime) / max(ok, 1),
            "rss_kb": ru.ru_maxrss, "exit": proc.returncode, "load_before": load0,
            "load_after": loadavg(), "db": db}


def run_daemon(capsearchd, models, work, root, workers, expected, cnn):
    """Starts capsearchd on a fresh database with the photos' folder as its only root and
    polls the database until every photo has its row; then reads the daemon's peak RSS
    (VmHWM) and CPU time from /proc, and stops it with SIGTERM."""
    db = fresh_db(work, "daemon.db")
    conf = os.path.join(work, "capsearchd.conf")
    with open(conf, "w") as f:
        f.write("# benchmark: roots, database and workers come from the command line\n")
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    load0 = loadavg()
    t0 = time.monotonic()
    daemon_log = open(os.path.join(work, "capsearchd.log"), "w")
    proc = subprocess.Popen([capsearchd, "--config", conf, "--root", root, "--db", db,
                             "--models", models, "--cnn", cnn, "--workers", str(workers),
                             "--log-level", "warning"],
                            stdout=subprocess.DEVNULL, stderr=daemon_log, env=env)
    first_row = None
    done = None
    timeout = max(600.0, expected * 2.0)
    hwm_kb = rss_kb = 0
    cpu = float("nan")
    try:
        while True:
            time.sleep(POLL_S)
            if proc.poll() is not None:
                break
            ok, failed = count_rows(db)
            if ok + failed > 0 and first_row is None:
                first_row = time.monotonic() - t0
            if ok + failed >= expected:
                done = time.monotonic() - t0
                break
            if time.monotonic() - t0 > timeout:
                log(f"capsearchd: only {ok + failed} of {expected} rows after {timeout:.0f} s")
                break
        if proc.poll() is None:
            hwm_kb, rss_kb = proc_status_kb(proc.pid, "VmHWM"), proc_status_kb(proc.pid, "VmRSS")
            cpu = proc_cpu_s(proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        daemon_log.close()
    with open(daemon_log.name) as f:
        tail = f.read()[-2000:]
    if tail:
        log("capsearchd said: " + tail)
    ok, failed = count_rows(db)
    wall = done if done else float("nan")
    checkpoint(db)
    return {"ok": ok, "failed": failed, "workers": workers, "wall_s": wall,
            "images_per_s": ok / done if done else 0.0, "first_row_s": first_row or float("nan"),
            "cpu_s_per_image": cpu / max(ok, 1), "vmhwm_kb": hwm_kb, "vmrss_kb": rss_kb,
            "exit": proc.returncode, "load_before": load0, "load_after": loadavg(), "db": db,
            "db_bytes": file_bytes(db)}


# ------------------------------------------------------------------ helpers

def fresh_db(work, name):
    db = os.path.join(work, name)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    return db


def count_rows(db):
    """(ok, failed) rows, read as capsearch status does: a read-only WAL reader."""
    if not os.path.exists(db):
        return 0, 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            rows = dict(con.execute("SELECT status, count(*) FROM images GROUP BY status"))
        finally:
            con.close()
    except sqlite3.Error:
        return 0, 0                    # not created yet, or the schema is being written
    return rows.get(0, 0), rows.get(1, 0)


def checkpoint(db):
    """Moves the WAL's pages into the database file, so that its size is the data's."""
    try:
        con = sqlite3.connect(db, timeout=10)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
    except sqlite3.Error as e:
        log(f"checkpoint of {db}: {e}")


def model_version(db):
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        row = con.execute("SELECT model_version FROM images WHERE status = 0 LIMIT 1").fetchone()
        con.close()
        return row[0] if row else "?"
    except sqlite3.Error:
        return "?"


def proc_status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def proc_cpu_s(pid):
    """utime + stime of every thread of the process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def file_bytes(path):
    return os.path.getsize(path) if os.path.exists(path) else 0


def cmake_cache(build, key):
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return os.path.join(build, "testdata", "photos")


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def kv(d):
    out = []
    for k, v in d.items():
        if k == "db":
            continue
        out.append(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(out)


def log(msg):
    print(f"index bench: {msg}", file=sys.stderr, flush=True)


def fmt(v, spec):
    return "n/a" if v is None or v != v else format(v, spec)


def print_section(n, sizes, workers, oneshot, daemon, stages_table, stages_rc, version):
    mean_mb = sum(sizes) / len(sizes) / 1e6
    print(f"### Indexing {n} camera-sized photos\n")
    print(f"{n} JPEG photos, 4000×3000 (one in five 3000×4000), quality 90, with EXIF, "
          f"{mean_mb:.2f} MB on average ({sum(sizes) / 1e9:.2f} GB), made by "
          "`tests/bench/index/make_photos` from the 7 darknet sample photos (crop, mirror, "
          "colour, noise), 100 per folder; warm page cache. Model: "
          f"`{version}`. Fresh database for each run; {workers} workers "
          "(one BLAS thread each).\n")
    print("| run | wall s | images/s | CPU s / image | CPU-bound images/s on "
          f"{workers} free cores | peak RSS MB | load avg before → after |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for label, r, rss in (("`capsearch index DIR` (one-shot)", oneshot, oneshot["rss_kb"]),
                          ("`capsearchd` (daemon, until every row is written)", daemon,
                           daemon["vmhwm_kb"])):
        cpu = r["cpu_s_per_image"]
        ideal = workers / cpu if cpu == cpu and cpu > 0 else None
        failed = f" ({r['failed']} failed)" if r["failed"] else ""
        print(f"| {label}{failed} | {fmt(r['wall_s'], '.1f')} | {fmt(r['images_per_s'], '.1f')} "
              f"| {fmt(cpu, '.3f')} | {fmt(ideal, '.1f')} | {rss / 1024:.0f} "
              f"| {r['load_before']:.2f} → {r['load_after']:.2f} |")
    rows = daemon["ok"] + daemon["failed"]
    per = daemon["db_bytes"] / rows if rows else None
    print(f"\nimages/s = photos ÷ wall time (the daemon's from its start to the last row "
          f"committed; first row after {fmt(daemon['first_row_s'], '.1f')} s). CPU-bound rate "
          f"= {workers} ÷ CPU seconds per photo (all threads of the process): what the "
          "machine gives with nothing else running. Peak RSS: the daemon's VmHWM, the "
          "CLI's ru_maxrss.\n")
    print(f"Database after the daemon's run (WAL checkpointed): {daemon['db_bytes'] / 1e6:.2f} MB "
          f"for {rows} rows = **{fmt(per and per / 1024, '.1f')} KiB per image** (caption, "
          "tags, path words, FTS5 index, pooled CNN vector, concept postings).\n")
    print("Per-stage latency (`bench_stages`: the daemon worker's calls, one by one, one "
          "thread):\n")
    if stages_rc != 0:
        print(f"(bench_stages failed with exit status {stages_rc})\n")
    for line in stages_table:
        print(line)
    print()


if __name__ == "__main__":
    sys.exit(main())
