#!/usr/bin/python3
"""Step 4: the concept head, p(concept | image features), multi-label, on the paired images.

Labels: concept words in an image's text (Visual7W questions + true answers, the flowers'
captions) and the words of COCO classes the detector finds (score >= 0.5). Text names only
part of a picture, so a concept missing from an image's text is a down-weighted negative
(--neg-weight), not a hard one.

Data is held out by image (textproc.v7w_split): the photos of visual7w/exclude.tsv are
never used; the photos with five COCO captions are never trained on (half is v7w_dev, on
which settings are chosen; half, 'cal', measures the head against full caption labels and
fits calibrate.py); a tenth of the other Visual7W photos ('val') and of the flowers are
held out for validation with their Q&A / caption labels. coco_mini and flickr_mini are
never seen here.
--flip adds the features of the horizontally flipped training photos
(work/feat_<set>_flip.bin, "left" and "right" swapped in their labels).
--focus-weight W multiplies the loss of the people / activity / scene concepts of
FOCUS (issue 10) by W.
Writes work/head.pt and logs per-epoch losses and held-out mAP / precision@5.
"""
import argparse
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
# Issue 10's people, activity and scene words (all of them concepts).
FOCUS = """man woman boy girl child baby toddler people person jumping climbing running swimming
playing riding walking sitting standing snow water pool mountain playground street beach
ocean wave grass field dog""".split()


class Head(nn.Module):
    def __init__(self, n_in, n_out, hidden=512, dropout=0.3):
        super().__init__()
        self.fc1 = nn.Linear(n_in, hidden)
        self.fc2 = nn.Linear(hidden, n_out)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.fc1(self.drop(x)))))


def class_label_concepts(cmap):
    """{COCO class id: the concept indices its label words name}."""
    out = {}
    for cid, label in enumerate(textproc.COCO_LABELS_BY_ID):
        if label:
            out[cid] = [cmap.index[w] for w in (textproc.SYNONYMS.get(x, x) for x in textproc.label_words(label))
                        if w in cmap.index]
    return out


def image_texts():
    """{image file: [text, ...]}. Visual7W: each question with its true answer, the template
    words removed; flowers: each caption and the word "flower"."""
    texts = {}
    for split in ("train", "dev", "test"):
        for row in textproc.read_tsv(os.path.join(textproc.DATA, "images/visual7w", f"qa_{split}.tsv")):
            qa = textproc.tokenize(row["question"] + " " + row["answer"])
            texts.setdefault(row["image"], []).append(" ".join(w for w in qa if w not in QUESTION_WORDS))
    for row in textproc.read_tsv(os.path.join(textproc.DATA, "images/flowers/captions.tsv")):
        texts.setdefault(row["image"], []).append(row["caption"] + " flower")
    return texts


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


def head_report(P, Y, K):
    aps = [a for a in (average_precision(P[:, k], Y[:, k]) for k in range(K)
                       if Y[:, k].sum() >= 3) if a is not None]
    top5 = np.argsort(-P, axis=1)[:, :5]
    p5 = np.take_along_axis(Y, top5, axis=1).mean()
    return f"mAP {np.mean(aps):.3f} ({len(aps)} concepts) P@5 {p5:.3f}"


def soft_logloss(P, soft):
    """Mean binary cross-entropy of P against the fraction of captions naming each concept."""
    P = np.clip(P, 1e-6, 1 - 1e-6)
    return float(-(soft * np.log(P) + (1 - soft) * np.log(1 - P)).mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(os.path.dirname(__file__), "work"))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--neg-weight", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sets", default="visual7w,flowers")
    ap.add_argument("--flip", type=int, default=0, help="1: add the flipped training photos")
    ap.add_argument("--focus-weight", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--out", default="head.pt")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    cmap = textproc.work_concept_map(args.work)
    K = len(cmap.concepts)
    label_words_by_class = class_label_concepts(cmap)
    texts = image_texts()

    sets = []
    for name in args.sets.split(","):
        recs = features.read(os.path.join(args.work, f"feat_{name}.bin"))
        recs = recs[recs["ok"] == 1]
        names = [n.decode() for n in recs["name"]]
        if name == "visual7w":
            split = [textproc.v7w_split(n) for n in names]
        else:
            order = list(range(len(names)))
            random.Random(3).shuffle(order)
            held = set(order[: len(order) // 10])
            split = ["val" if i in held else "train" for i in range(len(names))]
        X = features.head_features(recs)
        Y = labels_for(names, recs, texts, cmap, label_words_by_class)
        tr = np.array([i for i, s in enumerate(split) if s == "train"])
        va = np.array([i for i, s in enumerate(split) if s == "val"])
        extra = None
        if args.flip:
            frecs = features.read(os.path.join(args.work, f"feat_{name}_flip.bin"))
            frecs = frecs[frecs["ok"] == 1]
            fnames = [n.decode() for n in frecs["name"]]
            keep = set(names[i] for i in tr)
            fi = [i for i, n in enumerate(fnames) if n in keep]
            frecs = frecs[np.array(fi)]
            fnames = [fnames[i] for i in fi]
            FY = labels_for(fnames, frecs, texts, cmap, label_words_by_class)
            left, right = cmap.index.get("left"), cmap.index.get("right")
            if left is not None and right is not None:
                FY[:, [left, right]] = FY[:, [right, left]]
            extra = (features.head_features(frecs), FY)
        sets.append((name, X, Y, tr, va, extra))
        counts = {k: split.count(k) for k in sorted(set(split))}
        print(f"{name}: {len(names)} images {counts}, {Y.sum(1).mean():.1f} positive concepts each"
              + (f", {len(extra[0])} flipped" if extra else ""), flush=True)

    # The 'cal' photos: full labels from their five COCO captions (fraction naming each
    # concept), for measuring the head as the decoder will use it.
    cal_refs = {}
    for row in textproc.read_tsv(os.path.join(textproc.DATA, "images/visual7w/coco_captions.tsv")):
        if textproc.v7w_split(row["image"]) == "cal":
            cal_refs.setdefault(row["image"], []).append(row["caption"])
    v7 = [st for st in sets if st[0] == "visual7w"]
    cal_X = cal_Y = None
    if v7:
        recs = features.read(os.path.join(args.work, "feat_visual7w.bin"))
        recs = recs[recs["ok"] == 1]
        ci = [i for i, n in enumerate(recs["name"]) if n.decode() in cal_refs]
        cal_X = features.head_features(recs[np.array(ci)])
        cal_Y = np.zeros((len(ci), K), np.float32)
        for j, i in enumerate(ci):
            caps = cal_refs[recs["name"][i].decode()]
            for c in caps:
                for k in cmap.indices(textproc.tokenize(c)):
                    cal_Y[j, k] += 1.0 / len(caps)

    Xtr = np.concatenate([X[tr] for _, X, _, tr, _, _ in sets] + [e[0] for *_, e in sets if e])
    Ytr = np.concatenate([Y[tr] for _, _, Y, tr, _, _ in sets] + [e[1] for *_, e in sets if e])
    mean = Xtr.mean(0)
    scale = 1.0 / (Xtr.std(0) + 1e-3)
    norm = lambda X: torch.from_numpy(((X - mean) * scale).astype(np.float32))  # noqa: E731
    Xt, Yt = norm(Xtr), torch.from_numpy(Ytr)
    cw = torch.ones(K)
    for w in FOCUS:
        if w in cmap.index:
            cw[cmap.index[w]] = args.focus_weight

    model = Head(Xt.shape[1], K, args.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-5)
    g = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(Xt), generator=g)
        total = 0.0
        for i in range(0, len(perm), 128):
            b = perm[i:i + 128]
            logits = model(Xt[b])
            w = (Yt[b] + args.neg_weight * (1 - Yt[b])) * cw
            loss = nn.functional.binary_cross_entropy_with_logits(logits, Yt[b], weight=w)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        if epoch % 5 == 4 or epoch == args.epochs - 1:
            model.eval()
            report = []
            with torch.no_grad():
                for name, X, Y, _, va, _ in sets:
                    P = torch.sigmoid(model(norm(X[va]))).numpy()
                    report.append(f"{name} " + head_report(P, Y[va], K))
                if cal_X is not None:
                    P = torch.sigmoid(model(norm(cal_X))).numpy()
                    report.append("cal (caption labels) " + head_report(P, (cal_Y > 0).astype(np.float32), K)
                                  + f" logloss {soft_logloss(P, cal_Y):.4f}")
            print(f"epoch {epoch} loss {total / len(Xt):.4f} | " + " | ".join(report), flush=True)

    torch.save({"model": model.state_dict(), "mean": mean, "scale": scale, "hidden": args.hidden,
                "args": vars(args)}, os.path.join(args.work, args.out))


if __name__ == "__main__":
    main()
