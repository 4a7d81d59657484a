#!/usr/bin/python3
"""Text -> image Recall@1/5/10 on coco_mini and flickr_mini through the REAL capsearch ranking.

For each set (--sets, default both), indexes its images into a temporary database with `capsearch index --db`, then
asks `capsearch --json --limit 10 --db` every reference caption; a query scores a hit at
k when its own image is among the first k results.

usage: eval_recall.py --capsearch BUILD/cli/capsearch [--models DIR] [--sets coco_mini,flickr_mini] [--subset N]
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
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import textproc  # noqa: E402
from eval_captions import SETS, references, set_folder  # noqa: E402
from eval_search import build_index, search  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--capsearch", required=True)
    ap.add_argument("--models", default=None)
    ap.add_argument("--data", default=textproc.DATA)
    ap.add_argument("--sets", default="coco_mini,flickr_mini")
    ap.add_argument("--subset", type=int, default=0, help="first N images only (collection and queries)")
    ap.add_argument("--min-r10", type=float, default=None)
    args = ap.parse_args()

    sets = [s for s in args.sets.split(",") if s]
    for s in sets:
        if s not in SETS or not os.path.isfile(os.path.join(set_folder(args.data, s), SETS[s][1])):
            print(f"skip: set {s} absent")
            return 77
    if args.models and not os.path.isfile(os.path.join(args.models, "ssdlite_mobilenet_v2_coco.csw")):
        print("skip: no backbone weights (models/backbone/fetch_and_convert.sh)")
        return 77
    models = ["--models", args.models] if args.models else []
    missed = False
    for s in sets:
        refs = references(args.data, s)
        names = sorted(refs)[: args.subset or None]
        tmp = tempfile.mkdtemp(prefix="capsearch-recall-")
        try:
            db = build_index(args.capsearch, models, set_folder(args.data, s), names, tmp)
            hits = {1: 0, 5: 0, 10: 0}
            queries = 0
            for n in names:
                for q in refs[n]:
                    ranked = search(args.capsearch, models, db, q)
                    queries += 1
                    for k in hits:
                        hits[k] += n in ranked[:k]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        result = {"set": s, "images": len(names), "queries": queries,
                  "r1": hits[1] / queries, "r5": hits[5] / queries, "r10": hits[10] / queries}
        print(json.dumps(result))
        print(f"text->image on {s} ({len(names)} images, {queries} queries): "
              f"R@1 {result['r1']:.3f}  R@5 {result['r5']:.3f}  R@10 {result['r10']:.3f}")
        sys.stdout.flush()
        if args.min_r10 is not None and result["r10"] < args.min_r10:
            missed = True
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
