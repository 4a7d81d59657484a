#!/usr/bin/python3
"""Step 5: match the concept head's output to what the decoder was trained on.

The decoder learned from noise-injected concept vectors built from caption text; the head
was trained with down-weighted negatives, so its probabilities run higher and spread over
more concepts. The decoder therefore sees head probabilities raised to a power gamma,
chosen (by bisection) so that the mean total mass of a conditioning vector on held-out
paired images (never coco_mini) equals that of the training vectors. Writes
work/calibration.json, read by export.py.
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
    args = ap.parse_args()
    torch.set_num_threads(2)

    with open(os.path.join(args.work, "vocab.json")) as f:
        vocab = json.load(f)
    cmap = textproc.ConceptMap(vocab["concepts"], vocab["words"][3:])
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
    idx = list(range(len(recs)))
    random.Random(3).shuffle(idx)        # the held-out tenth of train_concepts.py
    held = recs[np.array(sorted(idx[: len(idx) // 10]))]
    X = (features.head_features(held) - hck["mean"]) * hck["scale"]
    with torch.no_grad():
        P = torch.sigmoid(head(torch.from_numpy(X.astype(np.float32)))).numpy().astype(np.float64)

    mass = lambda g: float((P ** g).sum(1).mean())  # noqa: E731
    lo, hi = 0.25, 8.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mass(mid) > target else (lo, mid)
    gamma = (lo + hi) / 2
    print(f"training vectors: mean mass {target:.2f}; head on held-out images: {mass(1.0):.2f} "
          f"at gamma 1 -> gamma {gamma:.3f} gives {mass(gamma):.2f}")
    with open(os.path.join(args.work, "calibration.json"), "w") as f:
        json.dump({"gamma": gamma, "target_mass": target, "head_mass": mass(1.0)}, f)


if __name__ == "__main__":
    main()
