#!/usr/bin/env python3
"""What people wrote about their photos, in and out (issue 12), through the real binaries,
with ExifTool as the independent reader and writer of the metadata.

Usage: test_metadata.py --bin BUILD_DIR --models DIR --photos DIR --work DIR SCENARIO
Exit 0 pass, 1 fail, 77 skipped (no ExifTool, no sample photos or no backbone).
"""
import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time


class Failure(Exception):
    pass


class Skip(Exception):
    pass


def expect(cond, what, detail=""):
    if not cond:
        raise Failure(what + (("\n--- details ---\n" + detail) if detail else ""))


class Env:
    def __init__(self, args, scenario):
        self.args = args
        self.capsearch = os.path.join(args.bin, "cli", "capsearch")
        self.capsearchd = os.path.join(args.bin, "daemon", "capsearchd")
        self.work = os.path.join(os.path.abspath(args.work), scenario)
        shutil.rmtree(self.work, ignore_errors=True)
        os.makedirs(self.work)
        self.db = os.path.join(self.work, "index.db")

    def env(self):
        env = dict(os.environ, HOME=self.work, CAPSEARCH_MODELS=self.args.models)
        for k in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "CAPSEARCH_DB", "JOURNAL_STREAM"):
            env.pop(k, None)
        return env

    def run(self, *cmd, timeout=300):
        p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                           errors="replace", timeout=timeout, env=self.env())
        p.text = "$ %s\nexit %d\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(str(c) for c in cmd), p.returncode, p.stdout, p.stderr)
        for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer", "Segmentation",
                    "Unregistered schema"):
            expect(bad not in p.stderr, "sanitizer, crash or Exempi error report", p.text)
        return p

    def photo(self, name, dest):
        shutil.copyfile(os.path.join(self.args.photos, name + ".jpg"), dest)
        return dest

    def search(self, *words):
        p = self.run(self.capsearch, "--db", self.db, "--json", "--limit", "50", *words)
        expect(p.returncode in (0, 1), "search %s" % (words,), p.text)
        return [json.loads(l) for l in p.stdout.splitlines() if l.strip()]


def exiftool(*args):
    p = subprocess.run(["exiftool", "-q", "-q"] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=120)
    return p


def exif_json(path):
    p = subprocess.run(["exiftool", "-j", "-G1", "-struct", path], capture_output=True,
                       text=True, timeout=120)
    expect(p.returncode == 0, "exiftool reads %s" % path, p.stderr)
    return json.loads(p.stdout)[0]


def model_runs(db):
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=30)
    try:
        r = con.execute("SELECT value FROM meta WHERE key = 'daemon.model_runs'").fetchone()
        return int(r[0]) if r else -1
    finally:
        con.close()


# ------------------------------------------------------------------ scenarios

def scenario_read_embedded(env):
    """EXIF ImageDescription, IPTC caption and keywords, and embedded XMP become searchable
    and are shown beside our caption; our own caption still finds the photo."""
    lib = os.path.join(env.work, "lib")
    os.makedirs(lib)
    a = env.photo("dog", os.path.join(lib, "a.jpg"))
    b = env.photo("eagle", os.path.join(lib, "b.jpg"))
    c = env.photo("kite", os.path.join(lib, "c.jpg"))
    expect(exiftool("-overwrite_original", "-EXIF:ImageDescription=Biscuit guarding the van",
                    a).returncode == 0, "exiftool writes EXIF")
    expect(exiftool("-overwrite_original", "-IPTC:Caption-Abstract=Harriet above the estuary",
                    "-IPTC:Keywords=birdwatching", "-IPTC:Keywords=Norfolk", b).returncode == 0,
           "exiftool writes IPTC")
    expect(exiftool("-overwrite_original", "-XMP-dc:Description=Grandad's kite festival",
                    "-XMP-dc:Subject=Brighton", "-XMP-lr:HierarchicalSubject=Trips|Summer 2019",
                    c).returncode == 0, "exiftool writes XMP")
    p = env.run(env.capsearch, "index", "--db", env.db, "--jobs", "2", lib)
    expect(p.returncode == 0, "index", p.text)
    for word, path, field in (("Biscuit", a, "description"), ("estuary", b, "description"),
                              ("Norfolk", b, "keywords"), ("birdwatching", b, "keywords"),
                              ("Brighton", c, "keywords"), ("Trips", c, "keywords"),
                              ("festival", c, "description")):
        hits = env.search(word)
        expect(hits and hits[0]["path"] == path, "'%s' finds %s first" % (word, path), str(hits))
        expect(field == "description" and word in (hits[0]["description"] or "") or
               field == "keywords" and any(word in k for k in hits[0]["keywords"]),
               "the %s holds '%s'" % (field, word), str(hits[0]))
    hits = env.search("Summer", "2019")
    expect(hits and hits[0]["path"] == c, "a hierarchy level is a keyword", str(hits))
    p = env.run(env.capsearch, "--db", env.db, "Harriet")
    expect(p.returncode == 0 and "Harriet above the estuary" in p.stdout,
           "the text result shows what people wrote beside the caption", p.text)
    p = env.run(env.capsearch, "status", "--db", env.db, "--json")
    st = json.loads(p.stdout)
    expect(st["formats"] == {"jpeg": 3}, "status counts per format", p.text)


def scenario_read_sidecars(env):
    """Sidecars written by ExifTool as digiKam and Lightroom would (IMG.jpg.xmp, IMG.xmp) are
    read; the sidecar's text wins over the embedded one."""
    lib = os.path.join(env.work, "lib")
    os.makedirs(lib)
    a = env.photo("horses", os.path.join(lib, "a.jpg"))
    b = env.photo("giraffe", os.path.join(lib, "IMG_0042.jpg"))
    exiftool("-overwrite_original", "-EXIF:ImageDescription=embedded words", a)
    expect(exiftool("-o", a + ".xmp", "-XMP-dc:Description=Ponies at Dartmoor",
                    "-XMP-digiKam:TagsList=Animals/Ponies", "-XMP-dc:Subject=Dartmoor")
           .returncode == 0, "exiftool writes IMG.jpg.xmp")
    expect(exiftool("-o", os.path.join(lib, "IMG_0042.xmp"),
                    "-XMP-lr:HierarchicalSubject=Zoo|Chester", "-XMP-dc:Subject=Gerald",
                    "-XMP-iptcCore:AltTextAccessibility=A tall giraffe eating leaves").returncode == 0,
           "exiftool writes IMG.xmp")
    expect(env.run(env.capsearch, "index", "--db", env.db, lib).returncode == 0, "index")
    hits = env.search("Dartmoor")
    expect(hits and hits[0]["path"] == a and hits[0]["description"] == "Ponies at Dartmoor",
           "IMG.jpg.xmp is read, its description before the embedded one", str(hits))
    expect("Ponies" in hits[0]["keywords"] and "Animals" in hits[0]["keywords"],
           "digiKam:TagsList levels are keywords", str(hits[0]))
    hits = env.search("Chester")
    expect(hits and hits[0]["path"] == b and "Gerald" in hits[0]["keywords"]
           and hits[0]["description"] == "A tall giraffe eating leaves",
           "IMG.xmp is read (lr:hierarchicalSubject, alt text)", str(hits))


def scenario_write_back(env):
    """capsearch caption --write-xmp writes a sidecar ExifTool reads back: alt text,
    description only when empty, subjects, hierarchical subjects, caption writer, our model
    version and confidence; a person's description and keywords survive ten cycles."""
    lib = os.path.join(env.work, "lib")
    os.makedirs(lib)
    a = env.photo("dog", os.path.join(lib, "a.jpg"))
    b = env.photo("eagle", os.path.join(lib, "b.jpg"))
    p = env.run(env.capsearch, "caption", "--write-xmp", "--json", a)
    expect(p.returncode == 0, "caption --write-xmp", p.text)
    out = json.loads(p.stdout)
    expect(out.get("sidecar") == a + ".xmp" and os.path.exists(a + ".xmp"), "the sidecar is named",
           p.text)
    x = exif_json(a + ".xmp")
    caption = out["caption"]
    tags = [t["word"] for t in out["tags"]]
    expect(x.get("XMP-iptcCore:AltTextAccessibility") == caption, "alt text", str(x))
    expect(x.get("XMP-dc:Description") == caption, "an empty description gets the caption", str(x))
    subj = x.get("XMP-dc:Subject")
    subj = subj if isinstance(subj, list) else [subj]
    expect(all(t in subj for t in tags), "tags as dc:subject", str(x))
    hier = x.get("XMP-lr:HierarchicalSubject")
    hier = hier if isinstance(hier, list) else [hier]
    expect(all("capsearch|" + t in hier for t in tags), "tags as lr:hierarchicalSubject", str(x))
    expect(str(x.get("XMP-photoshop:CaptionWriter", "")).startswith("capsearch "), "caption writer",
           str(x))
    expect(any(k.endswith(":ModelVersion") for k in x) and any(k.endswith(":Confidence") for k in x),
           "our namespace: model version and confidence", str(x))
    if len(caption) > 250:
        raise Failure("alt text longer than 250 characters")

    # a person's text, written the way digiKam would, then ten cycles of ours
    expect(exiftool("-o", b + ".xmp", "-XMP-dc:Description=Our eagle, Ziggy, at the falconry day",
                    "-XMP-dc:Subject=Ziggy", "-XMP-iptcCore:AltTextAccessibility=Ziggy the eagle",
                    "-XMP-photoshop:CaptionWriter=Ann").returncode == 0, "a human sidecar")
    for cycle in range(10):
        p = env.run(env.capsearch, "caption", "--write-xmp", b)
        expect(p.returncode == 0, "caption --write-xmp, cycle %d" % cycle, p.text)
        db = os.path.join(env.work, "cycle%d.db" % cycle)
        p = env.run(env.capsearch, "index", "--write-xmp", "--db", db, lib)
        expect(p.returncode == 0, "index --write-xmp, cycle %d" % cycle, p.text)
    x = exif_json(b + ".xmp")
    expect(x.get("XMP-dc:Description") == "Our eagle, Ziggy, at the falconry day",
           "the person's description survives ten cycles", str(x))
    expect(x.get("XMP-iptcCore:AltTextAccessibility") == "Ziggy the eagle", "their alt text too",
           str(x))
    expect(x.get("XMP-photoshop:CaptionWriter") == "Ann", "their caption writer too", str(x))
    subj = x.get("XMP-dc:Subject")
    subj = subj if isinstance(subj, list) else [subj]
    expect("Ziggy" in subj and len(subj) == len(set(subj)),
           "their keyword stays, ours are not repeated (%s)" % subj, str(x))
    # and our words never come back as a person's
    env.db = os.path.join(env.work, "cycle9.db")
    hits = env.search("Ziggy")
    expect(hits and hits[0]["path"] == b and hits[0]["keywords"] == ["Ziggy"],
           "only the person's keyword is read back as theirs", str(hits))

    bad = env.photo("kite", os.path.join(lib, "c.jpg"))
    with open(bad + ".xmp", "wb") as f:
        f.write(b"\x00\xff<x:xmpmeta not really")
    before = open(bad + ".xmp", "rb").read()
    p = env.run(env.capsearch, "caption", "--write-xmp", bad)
    expect(p.returncode == 2 and "left as it is" in p.stderr, "an unreadable sidecar is refused",
           p.text)
    expect(open(bad + ".xmp", "rb").read() == before, "... and left byte for byte")


def scenario_daemon(env):
    """capsearchd --write-xmp writes sidecars without re-triggering itself; a person's edit
    of a sidecar re-reads the text without a model run."""
    lib = os.path.join(env.work, "lib")
    os.makedirs(lib)
    photos = [env.photo(n, os.path.join(lib, n + ".jpg")) for n in ("dog", "eagle", "giraffe")]
    log = open(os.path.join(env.work, "daemon.log"), "w")
    d = subprocess.Popen([env.capsearchd, "--db", env.db, "--root", lib, "--workers", "2",
                          "--batch-ms", "200", "--write-xmp", "--log-level", "info"],
                         stdout=log, stderr=subprocess.STDOUT, env=env.env())
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not all(os.path.exists(p + ".xmp") for p in photos):
            time.sleep(0.3)
        expect(all(os.path.exists(p + ".xmp") for p in photos), "the daemon writes the sidecars",
               open(log.name).read())
        time.sleep(5)                                     # its own sidecar events settle
        runs = model_runs(env.db)
        expect(runs == 3, "one model run per photo, none for our own writes (%d)" % runs,
               open(log.name).read())
        expect(exiftool("-overwrite_original", "-XMP-dc:Description=Rufus on holiday in Wales",
                        photos[0] + ".xmp").returncode == 0, "a person edits the sidecar")
        deadline = time.time() + 30
        hits = []
        while time.time() < deadline:
            hits = env.search("Rufus")
            if hits:
                break
            time.sleep(0.5)
        expect(hits and hits[0]["path"] == photos[0], "the edit is searchable",
               open(log.name).read())
        time.sleep(3)
        expect(model_runs(env.db) == 3, "no model run for the edit", open(log.name).read())
        expect("read again from its sidecar" in open(log.name).read(), "the log says so")
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait(60)
        log.close()
    expect(d.returncode == 0, "the daemon stops cleanly", open(log.name).read())


SCENARIOS = {
    "read_embedded": scenario_read_embedded,
    "read_sidecars": scenario_read_sidecars,
    "write_back": scenario_write_back,
    "daemon": scenario_daemon,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--photos", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    args = ap.parse_args()
    if not shutil.which("exiftool"):
        print("skipped: no exiftool (libimage-exiftool-perl)")
        return 77
    if not os.path.exists(os.path.join(args.photos, "dog.jpg")):
        print("skipped: no sample photos")
        return 77
    if not os.path.exists(os.path.join(args.models, "ssdlite_mobilenet_v2_coco.csw")):
        print("skipped: no backbone")
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
    print("ok %s" % args.scenario)
    shutil.rmtree(env.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
