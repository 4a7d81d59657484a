#!/usr/bin/python3
"""Chooses the grounded-search settings on v7w_dev (the dev half of the Visual7W photos with five COCO
captions, textproc.v7w_split) -- never on coco_mini or flickr_mini. Runs the C
engine (tests/caption/caption_tool: the CNN once per image, then each setting) and prints
BLEU-4, CIDEr-D, CHAIR_s/CHAIR_i, distinct captions and how well the confidence separates
hallucination-free captions (AUC) for each setting.

usage: tune_grounding.py --tool BUILD/tests/caption/caption_tool [--models DIR]
                         [--settings "BEAM,WEIGHT,THRESHOLD,FLOOR,CEILING;..."] [--sets v7w_dev]
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import textproc  # noqa: E402
from eval_captions import references, score, set_folder  # noqa: E402

DEFAULT = ("3,0,0.3,-4,0;3,0.5,0.3,-4,0;3,1,0.3,-4,0;3,2,0.3,-4,0;3,1,0.1,-4,0;3,1,0.5,-4,0;"
           "3,1,0.3,-8,0;3,1,0.3,-4,0.5;5,1,0.3,-4,0;5,2,0.3,-4,0")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--models", default=os.path.join(HERE, ".."))
    ap.add_argument("--data", default=textproc.DATA)
    ap.add_argument("--sets", default="v7w_dev")
    ap.add_argument("--settings", default=DEFAULT)
    args = ap.parse_args()
    settings = [s for s in args.settings.split(";") if s]
    for name in args.sets.split(","):
        refs = references(args.data, name)
        names = sorted(refs)
        folder = set_folder(args.data, name)
        proc = subprocess.run([args.tool, args.models, ";".join(settings)] + [os.path.join(folder, n) for n in names],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"caption_tool failed: {proc.stderr}")
        by = [dict() for _ in settings]
        for line in proc.stdout.splitlines():
            row = json.loads(line)
            by[row["setting"]][os.path.basename(row["file"])] = row
        for i, st in enumerate(settings):
            r, _ = score(by[i], refs)
            print(f"{name} [{st}] BLEU-4 {r['bleu4']:.3f} CIDEr-D {r['cider_d']:.3f} CHAIR_s {r['chair_s']:.3f} "
                  f"CHAIR_i {r['chair_i']:.3f} distinct {r['distinct_ratio']:.3f} "
                  f"conf AUC {r.get('confidence_auc_no_hallucination') or 0:.3f} r(CIDEr) "
                  f"{r.get('confidence_cider_pearson') or 0:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
