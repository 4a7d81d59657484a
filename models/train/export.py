#!/usr/bin/python3
"""Step 5: export the trained captioner to models/captioner.csw (fp16) and the golden
vectors that tests/caption/test_golden.c checks the C inference against.

The golden vectors are computed by the PyTorch twins (decoder.Decoder, train_concepts.Head,
train_completion.Completion, decoder.beam_search) on the fp16-rounded weights, i.e. on exactly what the C code loads.
Inputs are synthetic (seeded), never data from ../shared/data.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

import decoder as dec
import textproc
from features import FEAT_DIM
from train_completion import Completion
from train_concepts import Head

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import csw  # noqa: E402

NGRAM_BLOCK = 3
LENGTH_ALPHA = 1.0
COND_GAMMA = 1.0
GOLDEN_WIDTHS = (1, 3, 5)
GOLDEN_MAX_LEN = 20


def strings(words):
    return b"".join(w.encode("utf-8") + b"\0" for w in words)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(here, "work"))
    ap.add_argument("--decoder", default="decoder.pt")
    ap.add_argument("--head", default="head.pt")
    ap.add_argument("--completion", default="completion.pt",
                    help="the concept completion (train_completion.py); 'none': leave it out")
    ap.add_argument("--out", default=os.path.join(here, "..", "captioner.csw"))
    ap.add_argument("--golden", default=os.path.join(here, "..", "..", "tests", "caption", "golden.csw"))
    ap.add_argument("--gamma", type=float, default=None,
                    help="conditioning sharpness (default: work/calibration.json, else 1)")
    ap.add_argument("--alpha", type=float, default=LENGTH_ALPHA)
    args = ap.parse_args()
    torch.manual_seed(4)
    if args.gamma is None:
        cal = os.path.join(args.work, "calibration.json")
        args.gamma = json.load(open(cal))["gamma"] if os.path.exists(cal) else COND_GAMMA
        print(f"conditioning gamma {args.gamma:.3f}")
    args.gamma = float(np.float32(args.gamma))    # what the C code reads back
    args.alpha = float(np.float32(args.alpha))

    with open(os.path.join(args.work, "vocab.json")) as f:
        vocab = json.load(f)
    words, concepts = vocab["words"], vocab["concepts"]
    dck = torch.load(os.path.join(args.work, args.decoder))
    a = dck["args"]
    model = dec.Decoder(len(words), len(concepts), a["emb"], a["hidden"], a["cond"])
    model.load_state_dict(dck["model"])
    hck = torch.load(os.path.join(args.work, args.head))
    head = Head(FEAT_DIM, len(concepts), hck["hidden"])
    head.load_state_dict(hck["model"])
    model.eval()
    head.eval()
    completion = None
    if args.completion != "none":
        cck = torch.load(os.path.join(args.work, args.completion))
        completion = Completion(len(concepts), cck["hidden"])
        completion.load_state_dict(cck["model"])
        completion.eval()

    # Round every weight to fp16 and use the rounded values from here on.
    with torch.no_grad():
        for m in (model, head) + ((completion,) if completion else ()):
            for p in m.parameters():
                p.copy_(p.half().float())

    def f16(name, t):
        t = t.detach().contiguous()
        return (name, "float16", list(t.shape), t.half().numpy().tobytes())

    def f32(name, arr):
        arr = np.ascontiguousarray(arr, np.float32)
        return (name, "float32", list(arr.shape), arr.tobytes())

    def i32(name, arr):
        arr = np.ascontiguousarray(arr, np.int32)
        return (name, "int32", list(arr.shape), arr.tobytes())

    cindex = {w: i for i, w in enumerate(concepts)}
    class_concepts = np.full((91, 2), -1, np.int32)
    for cid, label in enumerate(textproc.COCO_LABELS_BY_ID):
        ks = [cindex[w] for w in (textproc.SYNONYMS.get(x, x) for x in textproc.label_words(label)) if w in cindex]
        for j, k in enumerate(ks[:2]):
            class_concepts[cid, j] = k
    # Content words (those naming a concept) may appear once per caption.
    cmap = textproc.ConceptMap(concepts, words[3:])
    once = np.array([1 if i >= 3 and cmap.lookup_word(w) is not None else 0 for i, w in enumerate(words)], np.uint8)
    alias = []
    for w, c in sorted(vocab["alias"].items()):
        alias += [w, c]

    lstm = model.lstm
    tensors = [
        i32("config/sizes", [len(words), len(concepts), a["emb"], a["hidden"], a["cond"], FEAT_DIM,
                             hck["hidden"], NGRAM_BLOCK]),
        f32("config/search", [args.alpha, args.gamma]),
        ("vocab/words", "uint8", [len(strings(words))], strings(words)),
        ("vocab/once", "uint8", [len(once)], once.tobytes()),
        ("concepts/words", "uint8", [len(strings(concepts))], strings(concepts)),
        ("concepts/alias", "uint8", [len(strings(alias))], strings(alias)),
        i32("concepts/class_concepts", class_concepts),
        f32("head/feat_mean", hck["mean"]),
        f32("head/feat_scale", hck["scale"]),
        f16("head/w1", head.fc1.weight), f16("head/b1", head.fc1.bias),
        f16("head/w2", head.fc2.weight), f16("head/b2", head.fc2.bias),
        f16("dec/cin_w", model.cin.weight), f16("dec/cin_b", model.cin.bias),
        f16("dec/init_h_w", model.init_h.weight), f16("dec/init_h_b", model.init_h.bias),
        f16("dec/init_c_w", model.init_c.weight), f16("dec/init_c_b", model.init_c.bias),
        f16("dec/emb", model.emb.weight),
        f16("dec/w_ih", lstm.weight_ih_l0), f16("dec/w_hh", lstm.weight_hh_l0),
        # One bias: both torch biases are added, so the C code stores their (rounded) sum.
        f16("dec/b", (lstm.bias_ih_l0 + lstm.bias_hh_l0).half().float()),
        f16("dec/out_w", model.out.weight), f16("dec/out_b", model.out.bias),
    ]
    if completion:
        tensors += [f16("complete/w1", completion.fc1.weight), f16("complete/b1", completion.fc1.bias),
                    f16("complete/w2", completion.fc2.weight), f16("complete/b2", completion.fc2.bias)]
    with torch.no_grad():
        lstm.bias_ih_l0.copy_((lstm.bias_ih_l0 + lstm.bias_hh_l0).half().float())
        lstm.bias_hh_l0.zero_()
    csw.write(args.out, tensors)
    print(f"wrote {args.out}: {os.path.getsize(args.out) / 1e6:.1f} MB")

    # Golden vectors.
    rng = np.random.default_rng(5)
    std = 1.0 / hck["scale"]
    feats = np.maximum(0.0, hck["mean"] + std * rng.standard_normal((3, FEAT_DIM))).astype(np.float32)
    with torch.no_grad():
        xin = torch.from_numpy(((feats - hck["mean"]) * hck["scale"]).astype(np.float32))
        probs = torch.sigmoid(head(xin)).numpy()
    hand = np.zeros((2, len(concepts)), np.float32)
    for row, pairs in enumerate([{"dog": 0.9, "beach": 0.8, "running": 0.6, "sand": 0.3},
                                 {"man": 0.9, "horse": 0.85, "riding": 0.7, "field": 0.4}]):
        for w, p in pairs.items():
            if w in cindex:
                hand[row, cindex[w]] = p
    conds = np.concatenate([probs, hand]).astype(np.float32)
    gold = [f32("golden/features", feats), f32("golden/probs", probs), f32("golden/concepts", conds)]
    with torch.no_grad():
        x = torch.from_numpy(conds) ** args.gamma if args.gamma != 1.0 else torch.from_numpy(conds)
        c, state = model.start(x)
        logits, _ = model.step(c, state, torch.full((len(conds),), dec.EOS, dtype=torch.long))
    gold.append(f32("golden/first_logits", logits.numpy()))
    if completion:
        with torch.no_grad():
            gold.append(f32("golden/completed", torch.sigmoid(completion(x)).numpy()))
    for w in GOLDEN_WIDTHS:
        toks = np.full((len(conds), GOLDEN_MAX_LEN + 1), -1, np.int32)
        scores = np.zeros(len(conds), np.float32)
        for i in range(len(conds)):
            t, s = dec.beam_search(model, torch.from_numpy(conds[i]), w, GOLDEN_MAX_LEN,
                                   args.alpha, NGRAM_BLOCK, args.gamma, once)
            toks[i, :len(t)] = t
            scores[i] = s
            print(f"  width {w}: {' '.join(words[k] for k in t)}  ({s:.3f})")
        gold += [i32(f"golden/tokens_w{w}", toks), f32(f"golden/score_w{w}", scores)]
    csw.write(args.golden, gold)
    print(f"wrote {args.golden}: {os.path.getsize(args.golden) / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
