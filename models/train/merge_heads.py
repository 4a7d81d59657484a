#!/usr/bin/python3
"""Merges concept heads trained on the same data (same feature standardisation) into one
head whose logits are the mean of theirs: the hidden layers side by side, the output
weights divided by their number. The result has the ordinary Head shape (hidden = the sum),
so calibrate.py, export.py and the C engine take it as any other head.

usage: merge_heads.py --out head_ens.pt head_a.pt head_b.pt ...   (work/ relative)
"""
import argparse
import os

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(os.path.dirname(__file__), "work"))
    ap.add_argument("--out", required=True)
    ap.add_argument("heads", nargs="+")
    args = ap.parse_args()
    cks = [torch.load(os.path.join(args.work, h)) for h in args.heads]
    for ck in cks[1:]:
        if not (np.array_equal(ck["mean"], cks[0]["mean"]) and np.array_equal(ck["scale"], cks[0]["scale"])):
            raise SystemExit("heads differ in their feature standardisation (trained on other data)")
    n = len(cks)
    sd = {"fc1.weight": torch.cat([ck["model"]["fc1.weight"] for ck in cks], 0),
          "fc1.bias": torch.cat([ck["model"]["fc1.bias"] for ck in cks], 0),
          "fc2.weight": torch.cat([ck["model"]["fc2.weight"] for ck in cks], 1) / n,
          "fc2.bias": sum(ck["model"]["fc2.bias"] for ck in cks) / n}
    out = dict(cks[0], model=sd, hidden=int(sd["fc1.bias"].shape[0]), members=list(args.heads))
    torch.save(out, os.path.join(args.work, args.out))
    print(f"{args.out}: {n} heads, hidden {out['hidden']}")


if __name__ == "__main__":
    main()
