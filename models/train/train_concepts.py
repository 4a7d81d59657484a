#!/usr/bin/python3
"""Step 4: the concept head, p(concept | image features), multi-label, on the paired images.

Labels: concept words in an image's text (Visual7W questions + true answers, the flowers'
captions) and the words of COCO classes the detector finds (score >= 0.5). Text names only
part of a picture, so a concept missing from an image's text is a down-weighted negative
(--neg-weight), not a hard one. 10% of the Visual7W images (and of the flowers) are held
out for validation; coco_mini is never seen here.
Writes work/head.pt and logs per-epoch losses and held-out mAP / precision@5.
"""
import argparse
import json
import os
import random

import numpy as np
import torch
from torch import nn

import features
import textproc

DET_EVIDENCE = 0.5
# Words the Visual7W question templates use about every picture ("What color is...",
# "Where was the picture taken?"): they say nothing about what a photo shows.
QUESTION_WORDS = {"color", "picture", "photo", "image", "shown", "taken", "scene", "visible",
                  "seen", "time", "kind", "type", "many", "much", "number", "made", "day",
                  "daytime", "happening", "doing", "object", "item", "thing", "located", "used"}


class Head(nn.Module):
    def __init__(self, n_in, n_out, hidden=512, dropout=0.3):
        super().__init__()
        self.fc1 = nn.Linear(n_in, hidden)
        self.fc2 = nn.Linear(hidden, n_out)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.fc1(self.drop(x)))))


def labels_for(names, recs, texts, cmap, label_words_by_class):
    K = len(cmap.concepts)
    Y = np.zeros((len(names), K), np.float32)
    for i, name in enumerate(names):
        for text in texts.get(name, []):
            for c in cmap.indices(textproc.tokenize(text)):
                Y[i, c] = 1.0
        r = recs[i]
        for d in r["det"][: r["n_det"]]:
            if d["score"] >= DET_EVIDENCE:
                for c in label_words_by_class.get(int(d["class_id"]), []):
                    Y[i, c] = 1.0
    return Y


def average_precision(scores, labels):
    order = np.argsort(-scores)
    hits = labels[order]
    if hits.sum() == 0:
        return None
    prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((prec * hits).sum() / hits.sum())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(os.path.dirname(__file__), "work"))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--neg-weight", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sets", default="visual7w,flowers")
    ap.add_argument("--out", default="head.pt")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(2)

    with open(os.path.join(args.work, "vocab.json")) as f:
        vocab = json.load(f)
    cmap = textproc.ConceptMap(vocab["concepts"], vocab["words"][3:])
    K = len(cmap.concepts)
    label_words_by_class = {}
    for cid, label in enumerate(textproc.COCO_LABELS_BY_ID):
        if label:
            label_words_by_class[cid] = [cmap.index[w] for w in
                                         (textproc.SYNONYMS.get(x, x) for x in textproc.label_words(label))
                                         if w in cmap.index]

    # Text per image. Visual7W: the question and its true answer, template words removed.
    texts = {}
    for split in ("train", "dev", "test"):
        for row in textproc.read_tsv(os.path.join(textproc.DATA, "images/visual7w", f"qa_{split}.tsv")):
            qa = textproc.tokenize(row["question"] + " " + row["answer"])
            texts.setdefault(row["image"], []).append(" ".join(w for w in qa if w not in QUESTION_WORDS))
    for row in textproc.read_tsv(os.path.join(textproc.DATA, "images/flowers/captions.tsv")):
        texts.setdefault(row["image"], []).append(row["caption"] + " flower")

    sets = []
    for name in args.sets.split(","):
        recs = features.read(os.path.join(args.work, f"feat_{name}.bin"))
        recs = recs[recs["ok"] == 1]
        names = [n.decode() for n in recs["name"]]
        X = features.head_features(recs)
        Y = labels_for(names, recs, texts, cmap, label_words_by_class)
        idx = list(range(len(names)))
        random.Random(3).shuffle(idx)
        n_val = len(idx) // 10
        sets.append((name, X, Y, np.array(idx[n_val:]), np.array(idx[:n_val])))
        print(f"{name}: {len(names)} images, {Y.sum(1).mean():.1f} positive concepts each", flush=True)

    Xtr = np.concatenate([X[tr] for _, X, _, tr, _ in sets])
    Ytr = np.concatenate([Y[tr] for _, _, Y, tr, _ in sets])
    mean = Xtr.mean(0)
    scale = 1.0 / (Xtr.std(0) + 1e-3)
    norm = lambda X: torch.from_numpy(((X - mean) * scale).astype(np.float32))  # noqa: E731
    Xt, Yt = norm(Xtr), torch.from_numpy(Ytr)

    model = Head(Xt.shape[1], K, args.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-5)
    g = torch.Generator().manual_seed(2)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(Xt), generator=g)
        total = 0.0
        for i in range(0, len(perm), 128):
            b = perm[i:i + 128]
            logits = model(Xt[b])
            w = Yt[b] + args.neg_weight * (1 - Yt[b])
            loss = nn.functional.binary_cross_entropy_with_logits(logits, Yt[b], weight=w)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        if epoch % 5 == 4 or epoch == args.epochs - 1:
            model.eval()
            report = []
            with torch.no_grad():
                for name, X, Y, _, va in sets:
                    P = torch.sigmoid(model(norm(X[va]))).numpy()
                    aps = [a for a in (average_precision(P[:, k], Y[va][:, k]) for k in range(K)
                                       if Y[va][:, k].sum() >= 3) if a is not None]
                    top5 = np.argsort(-P, axis=1)[:, :5]
                    p5 = np.take_along_axis(Y[va], top5, axis=1).mean()
                    report.append(f"{name} mAP {np.mean(aps):.3f} ({len(aps)} concepts) P@5 {p5:.3f}")
            print(f"epoch {epoch} loss {total / len(Xt):.4f} | " + " | ".join(report), flush=True)

    torch.save({"model": model.state_dict(), "mean": mean, "scale": scale, "hidden": args.hidden,
                "args": vars(args)}, os.path.join(args.work, args.out))


if __name__ == "__main__":
    main()
