#!/usr/bin/python3
"""`capsearch caption` end to end on the Debian sample photos: a caption and tags per
image, JSON Lines with --json, --beam honoured, a bad file reported while the others are
still captioned (exit 2); a captioner file whose concept completion is incomplete is refused
with a message naming the tensor, one without a completion still captions. Skips (77)
without the backbone weights or the photos.

usage: test_cli.py CAPSEARCH MODELS_DIR PHOTOS_DIR
"""
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
import csw  # noqa: E402


def main():
    capsearch, models, photos = sys.argv[1:4]
    if not os.path.isfile(os.path.join(models, "ssdlite_mobilenet_v2_coco.csw")):
        print("skip: no backbone weights (models/backbone/fetch_and_convert.sh)")
        return 77
    dog, horses = os.path.join(photos, "dog.jpg"), os.path.join(photos, "horses.jpg")
    if not (os.path.isfile(dog) and os.path.isfile(horses)):
        print("skip: no sample photos (tests/data/fetch_photos.sh)")
        return 77
    failures = []

    def check(ok, what):
        if not ok:
            failures.append(what)
            print("FAIL:", what)

    run = subprocess.run([capsearch, "caption", "--json", "--models", models, dog, horses],
                         capture_output=True, text=True)
    check(run.returncode == 0, f"exit {run.returncode}: {run.stderr}")
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    check(len(rows) == 2, "one JSON line per image")
    for row in rows:
        words = row.get("caption", "").split()
        check(3 <= len(words) <= 20, f"caption length: {row}")
        check(all(w.isascii() and w.strip() for w in words), f"caption words: {row}")
        check(len(row.get("tags", [])) >= 1, f"tags: {row}")
        check(all(0 <= t["score"] <= 1 for t in row.get("tags", [])), f"tag scores: {row}")
        print(os.path.basename(row["file"]), "->", row.get("caption"), [t["word"] for t in row.get("tags", [])][:6])
    if len(rows) == 2:
        dog_tags = [t["word"] for t in rows[0]["tags"]]
        horse_tags = [t["word"] for t in rows[1]["tags"]]
        check("dog" in dog_tags, f"dog.jpg tagged dog: {dog_tags}")
        check("horse" in horse_tags, f"horses.jpg tagged horse: {horse_tags}")
        # The caption must name something the tags found (dog.jpg: a dog, a bicycle, a car).
        top = set(dog_tags[:3])
        check(any(w.rstrip("s") in top for w in rows[0]["caption"].split()),
              f"dog.jpg caption names one of {sorted(top)}: {rows[0]['caption']}")

    text = subprocess.run([capsearch, "caption", "--beam", "1", "--models", models, dog],
                          capture_output=True, text=True)
    check(text.returncode == 0 and text.stdout.startswith(dog + ": ") and "tags:" in text.stdout,
          f"text output: {text.stdout!r} {text.stderr!r}")

    with tempfile.NamedTemporaryFile(suffix=".jpg") as bad:
        bad.write(b"\xff\xd8\xff\xe0 not really a jpeg")
        bad.flush()
        mixed = subprocess.run([capsearch, "caption", "--json", "--models", models, bad.name, dog, "/nonexistent.jpg"],
                               capture_output=True, text=True)
        check(mixed.returncode == 2, f"bad files give exit 2, got {mixed.returncode}")
        rows = [json.loads(line) for line in mixed.stdout.splitlines()]
        check(len(rows) == 3 and "error" in rows[0] and "caption" in rows[1] and "error" in rows[2],
              f"errors reported per file, the good one captioned: {rows}")
        check(bad.name in mixed.stderr and "/nonexistent.jpg" in mixed.stderr, "errors name the files")

    usage = subprocess.run([capsearch, "caption", "--beam", "0", dog], capture_output=True, text=True)
    check(usage.returncode == 2, "--beam 0 refused")
    usage = subprocess.run([capsearch, "caption", "--cnn", "fp16", dog], capture_output=True, text=True)
    check(usage.returncode == 2 and "--cnn wants float or int8, not 'fp16'" in usage.stderr,
          f"--cnn fp16 refused by name: {usage.returncode} {usage.stderr!r}")

    # The optional int8 CNN, end to end: caption, detect and index (its model version);
    # a CPU without AVX-512 VNNI and BF16 gets a clear refusal instead.
    q = subprocess.run([capsearch, "caption", "--json", "--cnn", "int8", "--models", models, dog],
                       capture_output=True, text=True)
    if q.returncode != 0 and "AVX-512 VNNI and BF16" in q.stderr:
        print(f"note: no int8 CNN here ({q.stderr.strip()})")
    else:
        row = json.loads(q.stdout) if q.returncode == 0 else {}
        check("dog" in [t["word"] for t in row.get("tags", [])],
              f"caption --cnn int8 tags dog.jpg dog: {q.returncode} {q.stdout!r} {q.stderr!r}")
        d = subprocess.run([capsearch, "detect", "--json", "--cnn", "int8", "--models", models, dog],
                           capture_output=True, text=True)
        check(d.returncode == 0 and any(x["label"] == "dog" for x in json.loads(d.stdout)["detections"]),
              f"detect --cnn int8 finds the dog: {d.returncode} {d.stderr!r}")
        with tempfile.TemporaryDirectory() as tmp:
            os.mkdir(os.path.join(tmp, "photos"))
            shutil.copyfile(dog, os.path.join(tmp, "photos", "dog.jpg"))
            db = os.path.join(tmp, "index.db")
            i = subprocess.run([capsearch, "index", "--quiet", "--cnn", "int8", "--models", models,
                                "--db", db, os.path.join(tmp, "photos")], capture_output=True, text=True)
            s = subprocess.run([capsearch, "status", "--json", "--db", db], capture_output=True, text=True)
            version = json.loads(s.stdout).get("model_version", "") if s.returncode == 0 else ""
            check(i.returncode == 0 and "-int8+" in version,
                  f"index --cnn int8 stores an -int8 model version: {i.returncode} {i.stderr!r} {version!r}")
            # without --cnn, index keeps the index's precision: the new photo in int8, the
            # old one not captioned again
            shutil.copyfile(os.path.join(os.path.dirname(dog), "kite.jpg"),
                            os.path.join(tmp, "photos", "kite.jpg"))
            again = subprocess.run([capsearch, "index", "--models", models, "--db", db,
                                    os.path.join(tmp, "photos")], capture_output=True, text=True)
            con = sqlite3.connect(db)
            versions = [r[0] for r in con.execute("SELECT model_version FROM images")]
            con.close()
            check(again.returncode == 0 and "1 indexed" in again.stderr + again.stdout
                  and "1 unchanged" in again.stderr + again.stdout
                  and len(versions) == 2 and all("-int8+" in v for v in versions),
                  f"index without --cnn follows the index: {again.stderr!r} {versions}")

    # The completion's tensors are all or none (engine/caption.c load_completion).
    tensors = csw.read(os.path.join(models, "captioner.csw"))
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(os.path.join(models, "ssdlite_mobilenet_v2_coco.csw"),
                        os.path.join(tmp, "ssdlite_mobilenet_v2_coco.csw"))
        for drop, ok in (("complete/b2", False), ("complete/", True)):
            kept = [(n, t, d, raw) for n, (t, d, raw) in tensors.items() if not n.startswith(drop)]
            csw.write(os.path.join(tmp, "captioner.csw"), kept)
            r = subprocess.run([capsearch, "caption", "--models", tmp, dog], capture_output=True, text=True)
            if ok:
                check(r.returncode == 0 and r.stdout.startswith(dog + ": "),
                      f"a captioner without a completion still captions: {r.returncode} {r.stderr!r}")
            else:
                check(r.returncode != 0 and "complete/b2" in r.stderr,
                      f"a completion without complete/b2 is refused by name: {r.returncode} {r.stderr!r}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
