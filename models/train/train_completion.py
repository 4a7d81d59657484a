#!/usr/bin/python3
"""Step 4b: the concept completion, trained on caption text only (issue 10 §6).

The concept head sees a photo through ~5.5k partially labelled Visual7W scenes; the caption
corpus knows what everyday photos hold together (a boy in a pool is swimming or jumping, a
dog in snow is running) from 18.8k images with five captions each. The completion learns
that: from a concept vector that looks like the head's output it predicts the fraction of
an image's captions naming each concept,

    q = sigmoid(W2 relu(W1 x + b1) + b2),   x = p^gamma (the decoder's conditioning),

trained exactly as the decoder's conditioning is: each caption group's concept fractions
corrupted by decoder.noisy_concepts (true concepts dropped and rescaled, false ones added,
background noise), the group's own fractions as the target (binary cross-entropy).
The search stores q, not p (engine/caption.c: ce_caption.concepts), so a query word
finds photos whose evidence implies it; tags, grounding and the decoder keep p.

Held out: every caption group that shares a caption with a Visual7W photo of
visual7w/coco_captions.tsv (so that compare_head_inputs.py-style figures on those photos
stay honest), and 1% of the rest for the validation loss. coco_mini and flickr_mini are
not in the corpus (textproc.text_corpus).
Writes work/completion.pt. --report HEAD.pt then prints, for the head's probabilities p and
their completion q on the 230 captioned Visual7W photos (never trained on by either), the
figures of compare_head_inputs.py (caption-label mAP, people/activity/scene mAP, the
short-query proxy), and for the mixtures (p + q) / 2 and sqrt(p q).
"""
import argparse
import json
import os
import random
import time

import numpy as np
import torch
from torch import nn

import features
import textproc
from decoder import noisy_concepts


class Completion(nn.Module):
    def __init__(self, K, hidden=512, dropout=0.2):
        super().__init__()
        self.fc1 = nn.Linear(K, hidden)
        self.fc2 = nn.Linear(hidden, K)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.fc1(x))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(os.path.dirname(__file__), "work"))
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="completion.pt")
    ap.add_argument("--report", default=None, help="a head checkpoint (e.g. head_committed.pt)")
    ap.add_argument("--report-only", action="store_true", help="no training: report on work/OUT")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    rng = np.random.default_rng(1)

    cmap = textproc.work_concept_map(args.work)
    K = len(cmap.concepts)
    if args.report_only:
        ck = torch.load(os.path.join(args.work, args.out))
        model = Completion(K, ck["hidden"])
        model.load_state_dict(ck["model"])
        model.eval()
        return report(args, model, cmap)

    held_captions = set()
    path = os.path.join(textproc.DATA, "images/visual7w/coco_captions.tsv")
    if os.path.isfile(path):
        held_captions = {row["caption"].strip().lower() for row in textproc.read_tsv(path)}
    groups = textproc.text_corpus()
    keys = sorted(k for k, caps in groups.items()
                  if not any(c.strip().lower() in held_captions for c in caps))
    random.Random(1).shuffle(keys)
    n_val = len(keys) // 100
    print(f"{len(groups)} caption groups; {len(groups) - len(keys)} held out (captioned Visual7W "
          f"photos), {n_val} for validation, {len(keys) - n_val} for training", flush=True)

    def fractions(caps):
        toks = [textproc.tokenize(c) for c in caps]
        soft = np.zeros(K, np.float32)
        for t in toks:
            for c in cmap.indices(t):
                soft[c] += 1.0 / len(toks)
        return soft

    soft = np.stack([fractions(groups[k]) for k in keys])
    val, train = soft[:n_val], soft[n_val:]
    df = (train > 0).sum(0) + 1.0
    df_probs = df / df.sum()
    val_x = torch.from_numpy(noisy_concepts(val, df_probs, np.random.default_rng(2)))
    val_y, train_y = torch.from_numpy(val), torch.from_numpy(train)

    model = Completion(K, args.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.functional.binary_cross_entropy_with_logits
    for epoch in range(args.epochs):
        model.train()
        t0, total = time.time(), 0.0
        perm = rng.permutation(len(train))
        for i in range(0, len(perm), args.batch):
            b = perm[i:i + args.batch]
            x = torch.from_numpy(noisy_concepts(train[b], df_probs, rng))
            loss = loss_fn(model(x), train_y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        model.eval()
        with torch.no_grad():
            vl = loss_fn(model(val_x), val_y).item()
            base = loss_fn(torch.logit(val_x.clamp(1e-4, 1 - 1e-4)), val_y).item()
        print(f"epoch {epoch} train loss {total / len(train):.5f} val loss {vl:.5f} "
              f"(the noisy input itself: {base:.5f}) {time.time() - t0:.0f} s", flush=True)
    torch.save({"model": model.state_dict(), "hidden": args.hidden, "args": vars(args)},
               os.path.join(args.work, args.out))
    if args.report:
        report(args, model, cmap)


def report(args, model, cmap):
    from compare_head_inputs import CaptionedPhotos
    from train_concepts import Head

    hck = torch.load(os.path.join(args.work, args.report))
    head = Head(features.FEAT_DIM, len(cmap.concepts), hck["hidden"])
    head.load_state_dict(hck["model"])
    head.eval()
    gamma = hck.get("gamma")
    if gamma is None:  # a head of train_concepts.py: calibrate.py's gamma
        with open(os.path.join(args.work, "calibration.json")) as f:
            gamma = json.load(f)["gamma"]
    recs = features.read(os.path.join(args.work, "feat_visual7w.bin"))
    names = [n.decode() for n in recs["name"]]
    split = [textproc.v7w_split(n) if recs["ok"][i] == 1 else "failed" for i, n in enumerate(names)]
    photos = CaptionedPhotos(names, split, cmap)
    with torch.no_grad():
        x = (features.head_features(recs[photos.index]) - hck["mean"]) * hck["scale"]
        P = torch.sigmoid(head(torch.from_numpy(x.astype(np.float32)))).numpy()
        Q = torch.sigmoid(model(torch.from_numpy(P.clip(0, 1) ** gamma))).numpy()
    # The detector's own score for the concepts a COCO class names (the grounding's evidence).
    D = np.zeros_like(P)
    cm = recs[photos.index]["class_max"]
    for cid, label in enumerate(textproc.COCO_LABELS_BY_ID):
        for w in (textproc.SYNONYMS.get(x, x) for x in textproc.label_words(label) if label):
            if w in cmap.index:
                D[:, cmap.index[w]] = np.maximum(D[:, cmap.index[w]], cm[:, cid])
    for name, V in (("head p", P), ("completion q", Q), ("(p + q) / 2", (P + Q) / 2), ("sqrt(p q)", np.sqrt(P * Q)),
                    ("max(p, q)", np.maximum(P, Q)), ("max(q, det)", np.maximum(Q, D)),
                    ("max(p, det)", np.maximum(P, D))):
        print(f"{name:13} {photos.report(V)}", flush=True)


if __name__ == "__main__":
    main()
