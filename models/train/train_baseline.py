#!/usr/bin/python3
"""The baseline: a plain Show-and-Tell model (CNN features -> LSTM) trained end to end on
the paired images only (Visual7W question + answer text, flowers captions) - the same
images the concept head sees, and no text-only corpus.

So that the same C code runs and evaluates it, the image embedding has the captioner's
shape: features -> MLP -> sigmoid layer of n_concepts units -> Decoder. Here that layer
is a learned embedding, not concept words. Writes work/baseline_head.pt and
work/baseline_decoder.pt in the formats export.py reads.
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
from decoder import Decoder
from train_concepts import QUESTION_WORDS, Head

MAX_WORDS = 20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(os.path.dirname(__file__), "work"))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(6)
    random.seed(6)

    with open(os.path.join(args.work, "vocab.json")) as f:
        vocab = json.load(f)
    words, K = vocab["words"], len(vocab["concepts"])
    wid = {w: i for i, w in enumerate(words)}

    texts = {}
    for split in ("train", "dev", "test"):
        for row in textproc.read_tsv(os.path.join(textproc.DATA, "images/visual7w", f"qa_{split}.tsv")):
            texts.setdefault(row["image"], []).append(row["question"] + " " + row["answer"])
    for row in textproc.read_tsv(os.path.join(textproc.DATA, "images/flowers/captions.tsv")):
        texts.setdefault(row["image"], []).append(row["caption"])

    X, seqs = [], []
    for name in ("visual7w", "flowers"):
        recs = features.read(os.path.join(args.work, f"feat_{name}.bin"))
        recs = recs[recs["ok"] == 1]
        F = features.head_features(recs)
        for i, n in enumerate(n.decode() for n in recs["name"]):
            # As the concept head: never the exclude.tsv copies, nor the captioned dev/cal photos.
            if name == "visual7w" and textproc.v7w_split(n) in ("exclude", "dev", "cal"):
                continue
            for t in texts.get(n, []):
                toks = [w for w in textproc.tokenize(t) if w not in QUESTION_WORDS or name == "flowers"]
                if toks:
                    seqs.append(([wid.get(w, 2) for w in toks[:MAX_WORDS]], len(X)))
            X.append(F[i])
    X = np.stack(X)
    mean, scale = X.mean(0), 1.0 / (X.std(0) + 1e-3)
    Xt = torch.from_numpy(((X - mean) * scale).astype(np.float32))
    print(f"{len(X)} images, {len(seqs)} sentences", flush=True)

    head = Head(X.shape[1], K, 512)
    dec = Decoder(len(words), K, 128, args.hidden, 128)
    params = list(head.parameters()) + list(dec.parameters())
    opt = torch.optim.Adam(params, lr=args.lr)
    loss_fn = nn.CrossEntropyLoss(ignore_index=0)
    t0 = time.time()
    for epoch in range(args.epochs):
        head.train()
        dec.train()
        order = list(range(len(seqs)))
        random.shuffle(order)
        total, n = 0.0, 0
        for i in range(0, len(order), args.batch):
            idx = order[i:i + args.batch]
            L = max(len(seqs[j][0]) for j in idx) + 1
            tin = torch.zeros((len(idx), L), dtype=torch.long)
            tout = torch.zeros((len(idx), L), dtype=torch.long)
            for r, j in enumerate(idx):
                s = seqs[j][0]
                tin[r, 0] = 1
                tin[r, 1:len(s) + 1] = torch.tensor(s)
                tout[r, :len(s)] = torch.tensor(s)
                tout[r, len(s)] = 1
            emb = torch.sigmoid(head(Xt[[seqs[j][1] for j in idx]]))
            logits = dec(emb, tin)
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), tout.reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            total += loss.item()
            n += 1
        print(f"epoch {epoch} loss {total / n:.3f} {time.time() - t0:.0f}s", flush=True)
    torch.save({"model": head.state_dict(), "mean": mean, "scale": scale, "hidden": 512},
               os.path.join(args.work, "baseline_head.pt"))
    torch.save({"model": dec.state_dict(), "args": {"emb": 128, "hidden": args.hidden, "cond": 128}},
               os.path.join(args.work, "baseline_decoder.pt"))


if __name__ == "__main__":
    main()
