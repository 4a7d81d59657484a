#!/usr/bin/python3
"""Issue 10 §4: does the concept head get better with more of the picture as input?

Trains the committed head design (train_concepts.py: 512 hidden, 20 epochs, negatives at
weight 0.1, same data and split) with one input variant and prints the head's held-out
figures, so that variants can be compared without touching a validation set:

  base      the committed input (features.head_features: pooled Conv_1, pooled
            expanded_conv_14, per-class max score, log(1 + confident boxes))
  conv1max  + the per-channel maximum of Conv_1 over its 10x10 cells
  geom      + the box geometry of the subject (the most confident person or animal, score
            >= 0.3: area, aspect, centre, bottom edge) and of all persons (area, count)
  crop      + the pooled features of the CNN run again on the subject's crop (box grown by
            15% a side; zeros and a flag when there is none)
  mil       + a multiple-instance branch over the 10x10 Conv_1 cells (Fang et al. 2015):
            each cell through 1280-256-810, pooled by a smooth maximum (log-sum-exp, r = 5),
            added to the base head's logits

Printed: mAP / P@5 on the held-out Visual7W "val" photos and flowers (their Q&A / caption
labels); on the 230 Visual7W photos with five COCO captions (dev + cal, never trained on),
mAP against caption labels (a concept named by >= 2 of 5 captions), the mAP of the people /
activity / scene concepts (train_concepts.FOCUS), and the short-query proxy: P@10 of
eval/short_queries.txt when those 230 photos are ranked by the head's probabilities of the
query's concepts (the real search ranks by those almost alone: models/README.md).

Needs work/feat_{visual7w,flowers}.bin (extract_all.sh) and, for crop / geom / mil, the files
of `CROP=1 GRID=1 extract_all.sh` (work/crop_<set>.bin, work/grid_<set>.f32, 4 GB).
  compare_head_inputs.py --inputs base --seed 2
"""
import argparse
import os
import random
import sys
import time

import numpy as np
import torch
from torch import nn

import features
import textproc
from train_concepts import (FOCUS, Head, average_precision, class_label_concepts, head_report, image_texts,
                            labels_for)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "eval"))
from eval_search import read_queries, relevant  # noqa: E402

SUBJECT_SCORE = 0.3
CELLS, CELL_DIM = 100, features.POOLED


def is_subject(class_ids):
    """COCO person (1) or an animal (16..25)."""
    return (class_ids == 1) | ((class_ids >= 16) & (class_ids <= 25))


def box_geometry(rec):
    d = rec["det"][: rec["n_det"]]
    out = np.zeros(8, np.float32)
    subj = d[is_subject(d["class_id"]) & (d["score"] >= SUBJECT_SCORE)]
    if len(subj):
        y0, x0, y1, x1 = subj[np.argmax(subj["score"])]["box"]
        out[:6] = [1, (y1 - y0) * (x1 - x0), (y1 - y0) / max(x1 - x0, 1e-3), (y0 + y1) / 2, (x0 + x1) / 2, y1]
    pers = d[(d["class_id"] == 1) & (d["score"] >= SUBJECT_SCORE)]
    if len(pers):
        b = pers["box"]
        out[6] = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).sum()
        out[7] = np.log1p(len(pers))
    return out


def input_features(inputs, recs, crops):
    parts = [features.head_features(recs)]
    if inputs == "conv1max":
        parts.append(recs["conv1_max"])
    if inputs == "geom":
        parts.append(np.stack([box_geometry(r) for r in recs]))
    if inputs == "crop":
        ok = crops["ok"].astype(np.float32)[:, None]
        parts += [crops["pooled"] * ok, crops["mid"] * ok, ok]
    return np.concatenate(parts, axis=1).astype(np.float32)


class CaptionedPhotos:
    """The Visual7W photos with five COCO captions that no head trains on (splits dev and
    cal of textproc.v7w_split): their caption labels and the short-query proxy."""

    def __init__(self, names, split, cmap):
        refs = {}
        for row in textproc.read_tsv(os.path.join(textproc.DATA, "images/visual7w/coco_captions.tsv")):
            refs.setdefault(row["image"], []).append(row["caption"])
        self.cmap = cmap
        self.index = np.array([i for i, x in enumerate(names) if split[i] in ("dev", "cal") and x in refs])
        self.names = [names[i] for i in self.index]
        frac = np.zeros((len(self.index), len(cmap.concepts)), np.float32)
        for j, x in enumerate(self.names):
            for c in refs[x]:
                for k in cmap.indices(textproc.tokenize(c)):
                    frac[j, k] += 1.0 / len(refs[x])
        self.labels = (frac >= 0.4).astype(np.float32)  # named by >= 2 of 5 captions
        self.queries = read_queries(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                 "eval", "short_queries.txt"))
        self.refs = {x: refs[x] for x in self.names}

    def report(self, P):
        """P: (photos, K) concept scores in the order of self.names."""
        cmap, lab = self.cmap, self.labels
        out = ["captioned " + head_report(P, lab, len(cmap.concepts))]
        focus = [average_precision(P[:, cmap.index[w]], lab[:, cmap.index[w]])
                 for w in FOCUS if w in cmap.index and lab[:, cmap.index[w]].sum() >= 2]
        out.append(f"focus mAP {np.mean([a for a in focus if a is not None]):.3f}")
        p10 = []
        for q in self.queries:
            rel = relevant(q, self.refs)
            if rel:
                ks = cmap.indices(textproc.tokenize(q))
                top = np.argsort(-sum(P[:, k] for k in ks))[:10] if ks else []
                p10.append(sum(self.names[t] in rel for t in top) / 10)
        out.append(f"query proxy P@10 {np.mean(p10):.3f} ({len(p10)} queries)")
        return " | ".join(out)


class MILHead(nn.Module):
    """The base head's logits + a smooth maximum over the cells' own concept logits."""

    def __init__(self, n_in, K, cell_hidden=256, r=5.0):
        super().__init__()
        self.base = Head(n_in, K, 512)
        self.c1 = nn.Linear(CELL_DIM, cell_hidden)
        self.c2 = nn.Linear(cell_hidden, K)
        self.drop = nn.Dropout(0.3)
        self.r = r

    def forward(self, x, cells):
        s = self.c2(self.drop(torch.relu(self.c1(self.drop(cells)))))
        return self.base(x) + (torch.logsumexp(self.r * s, 1) - np.log(CELLS)) / self.r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "work"))
    ap.add_argument("--inputs", default="base", choices=["base", "conv1max", "geom", "crop", "mil"])
    ap.add_argument("--epochs", type=int, default=None, help="default 20 (mil: 10)")
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    epochs = args.epochs if args.epochs is not None else (10 if args.inputs == "mil" else 20)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    cmap = textproc.work_concept_map(args.work)
    K = len(cmap.concepts)
    label_words_by_class = class_label_concepts(cmap)
    texts = image_texts()

    # Both sets in one table (visual7w, then flowers), split as train_concepts.py splits them.
    X, Y, names, split, grids, is_v7w = [], [], [], [], [], []
    for name in ("visual7w", "flowers"):
        recs = features.read(os.path.join(args.work, f"feat_{name}.bin"))
        crops = (features.read(os.path.join(args.work, f"crop_{name}.bin"))
                 if args.inputs == "crop" else None)
        if crops is not None and not np.array_equal(crops["name"], recs["name"]):
            sys.exit(f"crop_{name}.bin does not list the photos of feat_{name}.bin (rerun extract_all.sh)")
        if args.inputs == "mil":
            grid = np.memmap(os.path.join(args.work, f"grid_{name}.f32"), np.float32, "r")
            if grid.size != len(recs) * CELLS * CELL_DIM:
                sys.exit(f"grid_{name}.f32 does not hold one map per photo of feat_{name}.bin")
            # float16 one set at a time: the two sets' float32 cells would take 4 GB more.
            grids.append(torch.from_numpy(np.asarray(grid.reshape(-1, CELLS, CELL_DIM), np.float16)))
        ok = recs["ok"] == 1
        n = [x.decode() for x in recs["name"]]
        if name == "visual7w":
            s = [textproc.v7w_split(x) for x in n]
        else:  # train_concepts.py: a tenth of the photos that loaded, by a fixed shuffle
            good = [i for i in range(len(n)) if ok[i]]
            order = list(range(len(good)))
            random.Random(3).shuffle(order)
            held = {good[j] for j in order[: len(good) // 10]}
            s = ["val" if i in held else "train" for i in range(len(n))]
        s = [x if ok[i] else "failed" for i, x in enumerate(s)]
        X.append(input_features(args.inputs, recs, crops))
        Y.append(labels_for(n, recs, texts, cmap, label_words_by_class))
        names += n
        split += s
        is_v7w += [name == "visual7w"] * len(n)
    X, Y = np.concatenate(X), np.concatenate(Y)
    is_v7w = np.array(is_v7w)
    tr = np.array([i for i, s in enumerate(split) if s == "train"])
    va = np.array([i for i, s in enumerate(split) if s == "val"])
    mean, scale = X[tr].mean(0), 1.0 / (X[tr].std(0) + 1e-3)
    Xn = torch.from_numpy(((X - mean) * scale).astype(np.float32))
    Yt = torch.from_numpy(Y)

    cells = None
    if args.inputs == "mil":
        t0 = time.time()
        cells = torch.cat(grids)  # float16, 2 GB
        sample = cells[torch.from_numpy(tr[::7])].float().reshape(-1, CELL_DIM)
        cmean, cscale = sample.mean(0), 1.0 / (sample.std(0) + 1e-3)
        del sample
        print(f"cells {tuple(cells.shape)} loaded in {time.time() - t0:.0f} s", flush=True)

    def logits(model, idx):
        idx = torch.as_tensor(idx)
        if cells is None:
            return model(Xn[idx])
        return model(Xn[idx], (cells[idx].float() - cmean) * cscale)

    captioned = CaptionedPhotos(names, split, cmap)
    ci = captioned.index

    model = MILHead(X.shape[1], K) if cells is not None else Head(X.shape[1], K, 512)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(epochs):
        model.train()
        perm = torch.from_numpy(tr)[torch.randperm(len(tr), generator=g)]
        for i in range(0, len(perm), 128):
            b = perm[i:i + 128]
            w = Yt[b] + 0.1 * (1 - Yt[b])
            loss = nn.functional.binary_cross_entropy_with_logits(logits(model, b), Yt[b], weight=w)
            opt.zero_grad()
            loss.backward()
            opt.step()

    model.eval()
    with torch.no_grad():
        Pv = torch.sigmoid(logits(model, va)).numpy()
        P = torch.sigmoid(logits(model, ci)).numpy()
    v = is_v7w[va]
    report = ["v7w val " + head_report(Pv[v], Y[va][v], K), "flowers val " + head_report(Pv[~v], Y[va][~v], K),
              captioned.report(P)]
    print(f"{args.inputs} seed {args.seed}: " + " | ".join(report), flush=True)


if __name__ == "__main__":
    main()
