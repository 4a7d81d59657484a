#!/usr/bin/python3
"""Step 2: train the LSTM decoder on caption text with noise-injected concept vectors.

Each caption is conditioned on its image's concept vector (fraction of that image's
captions that name each concept), corrupted by decoder.noisy_concepts so that it looks
like the concept head's output on a photo. Text only: no image is needed here.
Writes work/decoder.pt after every epoch and logs to stdout.

--init CKPT continues training a saved decoder (e.g. the committed one, recovered by
from_csw.py) instead of starting from random weights. --drop-weight W (issue 10 §2)
multiplies the loss of every target word whose concept the noise dropped from the
conditioning vector by W, so the decoder is taught less to name what the concept vector
does not support (1 = off). The validation loss is always the plain, unweighted one.
"""
import argparse
import json
import os
import random
import time

import numpy as np
import torch
from torch import nn

import textproc
from decoder import Decoder, noisy_concepts

MAX_WORDS = 20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(os.path.dirname(__file__), "work"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--emb", type=int, default=256)
    ap.add_argument("--cond", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-batches", type=int, default=0, help="stop early (timing runs)")
    ap.add_argument("--init", default=None, help="start from this checkpoint (work/ relative)")
    ap.add_argument("--drop-weight", type=float, default=1.0)
    ap.add_argument("--lr-floor", type=float, default=0.05)
    ap.add_argument("--keep-epochs", type=int, default=0, help="1: also save <out>.epochN")
    ap.add_argument("--out", default="decoder.pt")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    random.seed(1)

    with open(os.path.join(args.work, "vocab.json")) as f:
        vocab = json.load(f)
    words, concepts = vocab["words"], vocab["concepts"]
    wid = {w: i for i, w in enumerate(words)}
    cmap = textproc.ConceptMap(concepts, words[3:])
    K = len(concepts)

    groups = textproc.text_corpus()
    keys = sorted(groups)
    random.Random(1).shuffle(keys)
    n_val = len(keys) // 100
    val_keys, train_keys = keys[:n_val], keys[n_val:]

    def encode(keyset):
        seqs, conds = [], []
        for k in keyset:
            toks = [textproc.tokenize(c) for c in groups[k]]
            soft = np.zeros(K, np.float32)
            for t in toks:
                for c in cmap.indices(t):
                    soft[c] += 1.0 / len(toks)
            ci = len(conds)
            conds.append(soft)
            for t in toks:
                if t:
                    seqs.append(([wid.get(w, 2) for w in t[:MAX_WORDS]], ci))
        return seqs, np.stack(conds)

    train, train_soft = encode(train_keys)
    val, val_soft = encode(val_keys)
    df = (train_soft > 0).sum(0) + 1.0
    df_probs = df / df.sum()
    print(f"train {len(train)} captions / {len(train_keys)} images, val {len(val)}", flush=True)

    model = Decoder(len(words), K, args.emb, args.hidden, args.cond)
    if args.init:
        ck = torch.load(os.path.join(args.work, args.init))
        model.load_state_dict(ck["model"])
        print(f"initialised from {args.init}", flush=True)
    # word id -> concept index (-1: none), for --drop-weight
    word_concept = torch.tensor([-1 if i < 3 or cmap.lookup_word(w) is None else cmap.lookup_word(w)
                                 for i, w in enumerate(words)])
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss(ignore_index=0)
    total = args.epochs * (len(train) // args.batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(args.lr_floor, 1.0 - s / max(1, total)))

    def batches(seqs, shuffle):
        order = list(range(len(seqs)))
        if shuffle:
            random.shuffle(order)
        # Sort within chunks by length so padding stays small, then shuffle the batches.
        out = []
        for i in range(0, len(order), args.batch * 50):
            chunk = sorted(order[i:i + args.batch * 50], key=lambda j: len(seqs[j][0]))
            out += [chunk[j:j + args.batch] for j in range(0, len(chunk), args.batch)]
        if shuffle:
            random.shuffle(out)
        return out

    def tensors(seqs, soft, idx, noise):
        L = max(len(seqs[j][0]) for j in idx) + 1
        tin = np.zeros((len(idx), L), np.int64)
        tout = np.zeros((len(idx), L), np.int64)
        for r, j in enumerate(idx):
            s = seqs[j][0]
            tin[r, 0] = 1
            tin[r, 1:len(s) + 1] = s
            tout[r, :len(s)] = s
            tout[r, len(s)] = 1
        cond = soft[[seqs[j][1] for j in idx]]
        dropped = np.zeros(cond.shape, bool)
        if noise:
            cond, dropped = noisy_concepts(cond, df_probs, rng, return_dropped=True)
        return torch.from_numpy(cond), torch.from_numpy(tin), torch.from_numpy(tout), torch.from_numpy(dropped)

    step = 0
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        run = 0.0
        for bi, idx in enumerate(batches(train, True)):
            x, tin, tout, dropped = tensors(train, train_soft, idx, True)
            logits = model(x, tin)
            if args.drop_weight != 1.0:
                wc = word_concept[tout]                                   # (B, L)
                hit = (wc >= 0) & torch.gather(dropped, 1, wc.clamp(min=0))
                w = torch.where(hit, torch.tensor(args.drop_weight), torch.tensor(1.0)) * (tout > 0)
                nll = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tout.reshape(-1),
                                                  reduction="none")
                loss = (nll * w.reshape(-1)).sum() / w.sum()
            else:
                loss = loss_fn(logits.reshape(-1, logits.shape[-1]), tout.reshape(-1))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            step += 1
            run = 0.98 * run + 0.02 * loss.item() if bi else loss.item()
            if step % 50 == 0:
                print(f"epoch {epoch} step {step}/{total} loss {run:.3f} {time.time() - t0:.0f}s", flush=True)
            if args.max_batches and step >= args.max_batches:
                break
        model.eval()
        with torch.no_grad():
            vl, vn = 0.0, 0
            for idx in batches(val, False):
                x, tin, tout, _ = tensors(val, val_soft, idx, True)
                logits = model(x, tin)
                n = int((tout > 0).sum())
                vl += loss_fn(logits.reshape(-1, logits.shape[-1]), tout.reshape(-1)).item() * n
                vn += n
        print(f"epoch {epoch} val loss {vl / vn:.3f} ppl {np.exp(vl / vn):.1f} {time.time() - t0:.0f}s", flush=True)
        torch.save({"model": model.state_dict(), "args": vars(args), "epoch": epoch,
                    "n_words": len(words), "n_concepts": K},
                   os.path.join(args.work, args.out))
        if args.keep_epochs:
            torch.save({"model": model.state_dict(), "args": vars(args), "epoch": epoch,
                        "n_words": len(words), "n_concepts": K},
                       os.path.join(args.work, f"{args.out}.epoch{epoch}"))
        if args.max_batches and step >= args.max_batches:
            break


if __name__ == "__main__":
    main()
