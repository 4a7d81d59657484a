#!/usr/bin/python3
"""Text -> image Recall@1/5/10 on coco_mini through the REAL capsearch ranking.

Indexes the coco_mini images into a temporary database with `capsearch index --db`, then
asks `capsearch --json --limit 10 --db` every reference caption; a query scores a hit at
k when its own image is among the first k results.

usage: eval_recall.py --capsearch BUILD/cli/capsearch [--models DIR] [--subset N]
Exit 0 (1 when --min-r10 is missed), 77 when the data folder is absent.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import textproc  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--capsearch", required=True)
    ap.add_argument("--models", default=None)
    ap.add_argument("--data", default=textproc.DATA)
    ap.add_argument("--subset", type=int, default=0, help="first N images only (collection and queries)")
    ap.add_argument("--min-r10", type=float, default=None)
    args = ap.parse_args()

    src = os.path.join(args.data, "images", "coco_mini")
    if not os.path.isfile(os.path.join(src, "captions.tsv")):
        print(f"skip: {src} absent")
        return 77
    if args.models and not os.path.isfile(os.path.join(args.models, "ssdlite_mobilenet_v2_coco.csw")):
        print("skip: no backbone weights (models/backbone/fetch_and_convert.sh)")
        return 77
    refs = {}
    for row in textproc.read_tsv(os.path.join(src, "captions.tsv")):
        refs.setdefault(row["image"], []).append(row["caption"])
    names = sorted(refs)[: args.subset or None]

    models = ["--models", args.models] if args.models else []
    tmp = tempfile.mkdtemp(prefix="capsearch-recall-")
    try:
        photos = os.path.join(tmp, "photos")
        os.mkdir(photos)
        for n in names:
            shutil.copyfile(os.path.join(src, n), os.path.join(photos, n))
        db = os.path.join(tmp, "index.db")
        proc = subprocess.run([args.capsearch, "index", "--db", db] + models + [photos],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"capsearch index failed ({proc.returncode}): {proc.stderr.strip()}")
        hits = {1: 0, 5: 0, 10: 0}
        queries = 0
        for n in names:
            for q in refs[n]:
                proc = subprocess.run([args.capsearch, "--json", "--limit", "10", "--db", db] + models + ["--", q],
                                      capture_output=True, text=True)
                if proc.returncode not in (0, 1):
                    sys.exit(f"capsearch search failed ({proc.returncode}) for {q!r}: {proc.stderr.strip()}")
                ranked = [os.path.basename(json.loads(line)["path"]) for line in proc.stdout.splitlines() if line]
                queries += 1
                for k in hits:
                    hits[k] += n in ranked[:k]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"images": len(names), "queries": queries,
              "r1": hits[1] / queries, "r5": hits[5] / queries, "r10": hits[10] / queries}
    print(json.dumps(result))
    print(f"text->image on coco_mini ({len(names)} images, {queries} queries): "
          f"R@1 {result['r1']:.3f}  R@5 {result['r5']:.3f}  R@10 {result['r10']:.3f}")
    if args.min_r10 is not None and result["r10"] < args.min_r10:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
