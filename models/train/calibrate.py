#!/usr/bin/python3
"""Step 5: match the concept head's output to what the decoder was trained on.

The decoder learned from noise-injected concept vectors built from caption text; the head
was trained with down-weighted negatives, so its probabilities run higher and spread over
more concepts. The decoder therefore sees head probabilities raised to a power gamma,
chosen (by bisection) so that the mean total mass of a conditioning vector on held-out
paired images (the 'val' photos of textproc.v7w_split; never coco_mini or flickr_mini)
equals that of the training vectors. Writes work/calibration.json, read by export.py.

--per-concept L (issue 10, per-concept calibration): before gamma, each concept's logit
gets a shift d_k (folded into the head's output bias, so the C engine loads the file
unchanged) that makes the head's mean probability for that concept on the held-out
Visual7W photos equal the concept's mean in the decoder's training vectors built from
the COCO caption text (Visual7W photos are COCO photos): the Q&A labels name colours and
counts far more often, and people or scenes less often, than captions do. L scales the
shifts (0 = off). Writes the calibrated head to work/<--out> (head_cal.pt).
"""
import argparse
import json
import os
import random

import numpy as np
import torch

import features
import textproc
from decoder import noisy_concepts
from train_concepts import Head


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(os.path.dirname(__file__), "work"))
    ap.add_argument("--head", default="head.pt")
    ap.add_argument("--per-concept", type=float, default=0.0)
    ap.add_argument("--max-shift", type=float, default=4.0)
    ap.add_argument("--target", choices=("noisy", "soft"), default="noisy",
                    help="per-concept target: the decoder's noisy training vectors or the caption fractions")
    ap.add_argument("--out", default="head_cal.pt")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cmap = textproc.work_concept_map(args.work)
    K = len(cmap.concepts)

    groups = textproc.text_corpus()
    keys = sorted(groups)
    random.Random(7).shuffle(keys)
    soft = np.zeros((2000, K), np.float32)
    for i, k in enumerate(keys[:2000]):
        toks = [textproc.tokenize(c) for c in groups[k]]
        for t in toks:
            for c in cmap.indices(t):
                soft[i, c] += 1.0 / len(toks)
    df = (soft > 0).sum(0) + 1.0
    train_vecs = noisy_concepts(soft, df / df.sum(), np.random.default_rng(7))
    target = float(train_vecs.sum(1).mean())

    hck = torch.load(os.path.join(args.work, args.head))
    head = Head(features.FEAT_DIM, K, hck["hidden"])
    head.load_state_dict(hck["model"])
    head.eval()
    recs = features.read(os.path.join(args.work, "feat_visual7w.bin"))
    recs = recs[recs["ok"] == 1]
    split = [textproc.v7w_split(n.decode()) for n in recs["name"]]
    held = recs[np.array([i for i, s in enumerate(split) if s == "val"])]
    X = (features.head_features(held) - hck["mean"]) * hck["scale"]
    with torch.no_grad():
        Z = head(torch.from_numpy(X.astype(np.float32))).numpy().astype(np.float64)

    shift = np.zeros(K)
    if args.per_concept:
        coco = [k for k in sorted(groups) if k.startswith("coco:")]
        csoft = np.zeros((len(coco), K), np.float32)
        for i, k in enumerate(coco):
            toks = [textproc.tokenize(c) for c in groups[k]]
            for t in toks:
                for c in cmap.indices(t):
                    csoft[i, c] += 1.0 / len(toks)
        if args.target == "noisy":
            target_k = noisy_concepts(csoft, df / df.sum(), np.random.default_rng(8)).mean(0).astype(np.float64)
        else:       # the fraction of an image's captions that name the concept
            target_k = csoft.mean(0).astype(np.float64)
        lo_d, hi_d = np.full(K, -12.0), np.full(K, 12.0)
        for _ in range(60):
            mid = (lo_d + hi_d) / 2
            m = (1 / (1 + np.exp(-(Z + mid)))).mean(0)
            lo_d, hi_d = np.where(m < target_k, mid, lo_d), np.where(m < target_k, hi_d, mid)
        shift = np.clip(args.per_concept * (lo_d + hi_d) / 2, -args.max_shift, args.max_shift)
        order = np.argsort(shift)
        fmt = lambda ids: ", ".join(f"{cmap.concepts[k]} {shift[k]:+.2f}" for k in ids)  # noqa: E731
        print(f"per-concept shifts x{args.per_concept}: mean {shift.mean():+.2f}; lowest {fmt(order[:12])}; "
              f"highest {fmt(order[::-1][:12])}")
        for w in ("man", "woman", "boy", "girl", "child", "people", "dog", "snow", "water", "pool",
                  "jumping", "climbing", "running", "swimming", "horse", "surfboard"):
            if w in cmap.index:
                print(f"  {w}: shift {shift[cmap.index[w]]:+.2f}")
    with torch.no_grad():
        head.fc2.bias.add_(torch.from_numpy(shift.astype(np.float32)))
    P = 1 / (1 + np.exp(-(Z + shift)))
    hck = dict(hck, model=head.state_dict(), per_concept=args.per_concept)
    torch.save(hck, os.path.join(args.work, args.out))

    mass = lambda g: float((P ** g).sum(1).mean())  # noqa: E731
    lo, hi = 0.25, 8.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mass(mid) > target else (lo, mid)
    gamma = (lo + hi) / 2
    print(f"training vectors: mean mass {target:.2f}; head on held-out images: {mass(1.0):.2f} "
          f"at gamma 1 -> gamma {gamma:.3f} gives {mass(gamma):.2f}")
    with open(os.path.join(args.work, "calibration.json"), "w") as f:
        json.dump({"gamma": gamma, "target_mass": target, "head_mass": mass(1.0),
                   "per_concept": args.per_concept, "head": args.out}, f)


if __name__ == "__main__":
    main()
