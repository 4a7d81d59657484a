#!/usr/bin/python3
"""Is model B's caption quality different from model A's beyond noise? Paired bootstrap
over the images of one set (the same images resampled for both models, 2000 draws) of the
differences B - A in BLEU-4 (corpus), CIDEr-D (mean of the per-image values, document
frequencies of the whole set) and CHAIR_s.

Input: the per-set files that `eval_captions.py --captions-out PREFIX` writes
(PREFIX.<set>.json), one per model.

usage: compare_captions.py A.flickr_mini.json B.flickr_mini.json [--draws 2000]
Prints each difference with its 95% interval; "beyond noise" when the interval excludes 0.
"""
import argparse
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import chair  # noqa: E402
import metrics  # noqa: E402
import textproc  # noqa: E402


def per_image(path):
    with open(path) as f:
        d = json.load(f)
    keys = sorted(k for k, v in d.items() if v.get("caption") is not None)
    hyps = {k: textproc.tokenize(d[k]["caption"]) for k in keys}
    refs = {k: [textproc.tokenize(r) for r in d[k]["refs"]] for k in keys}
    _, cider = metrics.cider_d(hyps, refs)
    cider = dict(zip(keys, cider))
    hall = {k: bool(chair.objects(hyps[k]) - set().union(*(chair.objects(r) for r in refs[k]))) for k in keys}
    return hyps, refs, cider, hall


def stats(keys, hyps, refs, cider, hall):
    h = {str(i): hyps[k] for i, k in enumerate(keys)}
    r = {str(i): refs[k] for i, k in enumerate(keys)}
    return (metrics.bleu(h, r)[3], sum(cider[k] for k in keys) / len(keys),
            sum(hall[k] for k in keys) / len(keys))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--draws", type=int, default=2000)
    args = ap.parse_args()
    A, B = per_image(args.a), per_image(args.b)
    keys = sorted(set(A[0]) & set(B[0]))
    sa, sb = stats(keys, *A), stats(keys, *B)
    rng = random.Random(11)
    diffs = []
    for _ in range(args.draws):
        draw = [keys[rng.randrange(len(keys))] for _ in keys]
        da, db = stats(draw, *A), stats(draw, *B)
        diffs.append([y - x for x, y in zip(da, db)])
    print(f"{len(keys)} images: {args.a} -> {args.b}")
    for j, name in enumerate(("BLEU-4", "CIDEr-D", "CHAIR_s")):
        col = sorted(d[j] for d in diffs)
        lo, hi = col[int(0.025 * len(col))], col[int(0.975 * len(col)) - 1]
        verdict = "beyond noise" if lo > 0 or hi < 0 else "within noise"
        print(f"  {name}: {sa[j]:.3f} -> {sb[j]:.3f}  diff {sb[j] - sa[j]:+.3f}  95% [{lo:+.3f}, {hi:+.3f}]  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
