#!/usr/bin/python3
"""Caption quality of the REAL `capsearch caption --json` on the validation sets:
BLEU-1..4 and CIDEr-D as the COCO caption toolkit computes them (metrics.py), object
hallucination after CHAIR (chair.py: CHAIR_s, CHAIR_i and the human ceiling), and the
distinct-caption ratio. Default sets: coco_mini and flickr_mini, reported side by side.
`--sets v7w_dev` scores the dev half of the Visual7W photos that have five COCO captions
(textproc.v7w_split: never trained on; the set on which settings are chosen; the photos of
visual7w/exclude.tsv are never used).

usage: eval_captions.py --capsearch BUILD/cli/capsearch [--models DIR] [--beam N]
                        [--sets coco_mini,flickr_mini] [--subset N] [--captions-out PREFIX]
                        [--min-bleu4 X --min-cider X --max-chair-s X]
Exit 0, or 1 when a --min-*/--max-* threshold is missed on any set, 77 when the data
folder is absent.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import chair  # noqa: E402
import metrics  # noqa: E402
import textproc  # noqa: E402

SETS = {
    "coco_mini": ("images/coco_mini", "captions.tsv"),
    "flickr_mini": ("images/flickr_mini", "captions.tsv"),
    "v7w_dev": ("images/visual7w", "coco_captions.tsv"),
}


def set_folder(data, name):
    return os.path.join(data, SETS[name][0])


def references(data, name):
    """{image file: [reference, ...]} of one set (v7w_dev: the dev half only)."""
    folder = set_folder(data, name)
    refs = {}
    for row in textproc.read_tsv(os.path.join(folder, SETS[name][1])):
        refs.setdefault(row["image"], []).append(row["caption"])
    if name == "v7w_dev":
        # Only the dev half (textproc.v7w_split): the other half calibrates the head, and
        # the photos of visual7w/exclude.tsv are never used.
        refs = {k: v for k, v in refs.items() if textproc.v7w_split(k) == "dev"}
    return refs


def run_captions(capsearch, models, beam, paths, cnn="float"):
    cmd = [capsearch, "caption", "--json", "--tags", "16", "--cnn", cnn]
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
    ch = chair.chair(hyps, toks)
    hs, hi = chair.human_ceiling(toks)
    distinct = len(set(" ".join(h) for h in hyps.values()))
    result = {"images": len(keys), "bleu1": b[0], "bleu2": b[1], "bleu3": b[2], "bleu4": b[3],
              "cider_d": c, "chair_s": ch["chair_s"], "chair_i": ch["chair_i"],
              "human_chair_s": hs, "human_chair_i": hi,
              "distinct": distinct, "distinct_ratio": distinct / len(keys) if keys else 0.0,
              "hallucinated": ch["hallucinated"]}
    conf = [captions[k]["confidence"] for k in keys if "confidence" in captions[k]]
    if len(conf) == len(keys) and keys:
        # Does the confidence separate good captions from bad ones? AUC of "no
        # hallucinated object" against the confidence, and its correlation with CIDEr-D.
        ok = [not (chair.objects(hyps[k]) - set().union(*(chair.objects(r) for r in toks[k]))) for k in keys]
        result["confidence_mean"] = sum(conf) / len(conf)
        result["confidence_auc_no_hallucination"] = auc(conf, ok)
        result["confidence_cider_pearson"] = pearson(conf, per)
    return result, dict(zip(keys, per))


def auc(scores, labels):
    pos = [s for s, l in zip(scores, labels) if l]
    neg = [s for s, l in zip(scores, labels) if not l]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def pearson(x, y):
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / (sxx * syy) ** 0.5 if sxx > 0 and syy > 0 else None


def summary_line(name, r):
    top = ", ".join(f"{k} {v}" for k, v in list(r["hallucinated"].items())[:6])
    line = (f"{name} ({r['images']} images): BLEU-1 {r['bleu1']:.3f}  BLEU-2 {r['bleu2']:.3f}  "
            f"BLEU-3 {r['bleu3']:.3f}  BLEU-4 {r['bleu4']:.3f}  CIDEr-D {r['cider_d']:.3f}  "
            f"CHAIR_s {r['chair_s']:.3f}  CHAIR_i {r['chair_i']:.3f}  "
            f"(humans {r['human_chair_s']:.3f} / {r['human_chair_i']:.3f})  "
            f"distinct {r['distinct']}/{r['images']} = {r['distinct_ratio']:.3f}")
    if "confidence_mean" in r:
        a = r["confidence_auc_no_hallucination"]
        p = r["confidence_cider_pearson"]
        line += (f"  confidence mean {r['confidence_mean']:.3f}, AUC(no hallucination) "
                 f"{a if a is None else round(a, 3)}, r(CIDEr-D) {p if p is None else round(p, 3)}")
    return line + f"\n  most hallucinated: {top}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--capsearch", required=True)
    ap.add_argument("--models", default=None)
    ap.add_argument("--beam", type=int, default=0)
    ap.add_argument("--cnn", default="float", choices=["float", "int8"], help="capsearch --cnn")
    ap.add_argument("--data", default=textproc.DATA)
    ap.add_argument("--sets", default="coco_mini,flickr_mini", help=f"comma-separated: {', '.join(SETS)}")
    ap.add_argument("--subset", type=int, default=0, help="first N images of each set only")
    ap.add_argument("--captions-out", default=None,
                    help="write per-image captions + CIDEr-D to PREFIX.<set>.json")
    ap.add_argument("--min-bleu4", type=float, default=None)
    ap.add_argument("--min-cider", type=float, default=None)
    ap.add_argument("--max-chair-s", type=float, default=None)
    args = ap.parse_args()

    sets = [s for s in args.sets.split(",") if s]
    for s in sets:
        if s not in SETS:
            sys.exit(f"unknown set {s!r}")
        if not os.path.isfile(os.path.join(set_folder(args.data, s), SETS[s][1])):
            print(f"skip: {set_folder(args.data, s)} absent")
            return 77
    if args.models and not os.path.isfile(os.path.join(args.models, "ssdlite_mobilenet_v2_coco.csw")):
        print("skip: no backbone weights (models/backbone/fetch_and_convert.sh)")
        return 77
    missed = False
    failed_any = False
    for s in sets:
        refs = references(args.data, s)
        names = sorted(refs)[: args.subset or None]
        refs = {k: refs[k] for k in names}
        folder = set_folder(args.data, s)
        captions = run_captions(args.capsearch, args.models, args.beam, [os.path.join(folder, n) for n in names],
                                args.cnn)
        failed = [k for k in names if k not in captions or "caption" not in captions[k]]
        result, per = score(captions, refs)
        result["set"] = s
        result["failed"] = len(failed)
        print(json.dumps(result))
        print(summary_line(s, result))
        sys.stdout.flush()
        if args.captions_out:
            with open(f"{args.captions_out}.{s}.json", "w") as f:
                json.dump({k: {"caption": captions[k].get("caption"), "tags": captions[k].get("tags"),
                               "confidence": captions[k].get("confidence"),
                               "cider_d": per.get(k), "refs": refs[k]} for k in names}, f, indent=1)
        if failed:
            print(f"{s}: {len(failed)} images failed: {failed[:5]}", file=sys.stderr)
            failed_any = True
        if args.min_bleu4 is not None and result["bleu4"] < args.min_bleu4:
            missed = True
        if args.min_cider is not None and result["cider_d"] < args.min_cider:
            missed = True
        if args.max_chair_s is not None and result["chair_s"] > args.max_chair_s:
            missed = True
    return 1 if missed or failed_any else 0


if __name__ == "__main__":
    sys.exit(main())
