#!/usr/bin/python3
"""Caption quality of the REAL `capsearch caption --json` on coco_mini (or a subset):
BLEU-1..4 and CIDEr-D as the COCO caption toolkit computes them (metrics.py).

usage: eval_captions.py --capsearch BUILD/cli/capsearch [--models DIR] [--beam N]
                        [--subset N] [--captions-out FILE] [--min-bleu4 X --min-cider X]
Exit 0, or 1 when a --min-* threshold is missed, 77 when the data folder is absent.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import metrics  # noqa: E402
import textproc  # noqa: E402


def references(folder):
    refs = {}
    for row in textproc.read_tsv(os.path.join(folder, "captions.tsv")):
        refs.setdefault(row["image"], []).append(row["caption"])
    return refs


def run_captions(capsearch, models, beam, paths):
    cmd = [capsearch, "caption", "--json", "--tags", "16"]
    if models:
        cmd += ["--models", models]
    if beam:
        cmd += ["--beam", str(beam)]
    proc = subprocess.run(cmd + paths, capture_output=True, text=True)
    if proc.returncode not in (0, 2):
        sys.exit(f"capsearch caption failed ({proc.returncode}): {proc.stderr.strip()}")
    out = {}
    for line in proc.stdout.splitlines():
        row = json.loads(line)
        out[os.path.basename(row["file"])] = row
    return out


def score(captions, refs):
    keys = [k for k in sorted(refs) if k in captions and "caption" in captions[k]]
    hyps = {k: textproc.tokenize(captions[k]["caption"]) for k in keys}
    toks = {k: [textproc.tokenize(r) for r in refs[k]] for k in keys}
    b = metrics.bleu(hyps, toks)
    c, per = metrics.cider_d(hyps, toks)
    return {"images": len(keys), "bleu1": b[0], "bleu2": b[1], "bleu3": b[2], "bleu4": b[3],
            "cider_d": c}, dict(zip(keys, per))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--capsearch", required=True)
    ap.add_argument("--models", default=None)
    ap.add_argument("--beam", type=int, default=0)
    ap.add_argument("--data", default=textproc.DATA)
    ap.add_argument("--subset", type=int, default=0, help="first N images only")
    ap.add_argument("--captions-out", default=None, help="write per-image captions + CIDEr-D (JSON)")
    ap.add_argument("--min-bleu4", type=float, default=None)
    ap.add_argument("--min-cider", type=float, default=None)
    args = ap.parse_args()

    folder = os.path.join(args.data, "images", "coco_mini")
    if not os.path.isfile(os.path.join(folder, "captions.tsv")):
        print(f"skip: {folder} absent")
        return 77
    if args.models and not os.path.isfile(os.path.join(args.models, "ssdlite_mobilenet_v2_coco.csw")):
        print("skip: no backbone weights (models/backbone/fetch_and_convert.sh)")
        return 77
    refs = references(folder)
    names = sorted(refs)[: args.subset or None]
    refs = {k: refs[k] for k in names}
    captions = run_captions(args.capsearch, args.models, args.beam, [os.path.join(folder, n) for n in names])
    failed = [k for k in names if k not in captions or "caption" not in captions[k]]
    result, per = score(captions, refs)
    result["failed"] = len(failed)
    print(json.dumps(result))
    print(f"coco_mini ({result['images']} images): BLEU-1 {result['bleu1']:.3f}  BLEU-2 {result['bleu2']:.3f}  "
          f"BLEU-3 {result['bleu3']:.3f}  BLEU-4 {result['bleu4']:.3f}  CIDEr-D {result['cider_d']:.3f}")
    if args.captions_out:
        with open(args.captions_out, "w") as f:
            json.dump({k: {"caption": captions[k].get("caption"), "tags": captions[k].get("tags"),
                           "cider_d": per.get(k), "refs": refs[k]} for k in names}, f, indent=1)
    if failed:
        print(f"{len(failed)} images failed: {failed[:5]}", file=sys.stderr)
        return 1
    if args.min_bleu4 is not None and result["bleu4"] < args.min_bleu4:
        return 1
    if args.min_cider is not None and result["cider_d"] < args.min_cider:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
