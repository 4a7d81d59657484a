#!/usr/bin/python3
"""Recovers a training work folder from a committed captioner.csw: work/vocab.json (the
word and concept vocabularies and the alias table exactly as exported), work/decoder.pt
(the LSTM decoder, fp16 weights as stored) and work/head_committed.pt (the concept head).

This lets the concept head be retrained and re-exported (train_concepts.py, calibrate.py,
export.py) against the committed decoder without retraining the decoder (91 min) or
rebuilding the vocabulary (a rerun of build_vocab.py gets 5195 words instead of the
committed 5194, see models/README.md). Re-exporting the decoder loses nothing: its
weights are already fp16-rounded, and export.py stores the LSTM's two biases as one sum.

usage: from_csw.py [--csw models/captioner.csw] [--work models/train/work]
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

import decoder as dec
from train_concepts import Head

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import csw  # noqa: E402


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--csw", default=os.path.join(here, "..", "captioner.csw"))
    ap.add_argument("--work", default=os.path.join(here, "work"))
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    t = csw.read(args.csw)

    def arr(name):
        dtype, dims, raw = t[name]
        np_dtype = {"float32": "<f4", "float16": "<f2", "int32": "<i4", "uint8": "u1"}[dtype]
        return np.frombuffer(raw, np_dtype).reshape(dims)

    def tens(name):
        return torch.from_numpy(arr(name).astype(np.float32).copy())

    def strings(name):
        return [s.decode("utf-8") for s in arr(name).tobytes().split(b"\0")[:-1]]

    n_words, n_concepts, emb, hidden, cond, feat_dim, head_hidden, ngram = (int(v) for v in arr("config/sizes"))
    words, concepts, alias = strings("vocab/words"), strings("concepts/words"), strings("concepts/alias")
    assert len(words) == n_words and len(concepts) == n_concepts
    with open(os.path.join(args.work, "vocab.json"), "w") as f:
        json.dump({"words": words, "concepts": concepts,
                   "alias": dict(zip(alias[0::2], alias[1::2]))}, f, indent=0)

    model = dec.Decoder(n_words, n_concepts, emb, hidden, cond)
    sd = {"cin.weight": tens("dec/cin_w"), "cin.bias": tens("dec/cin_b"),
          "init_h.weight": tens("dec/init_h_w"), "init_h.bias": tens("dec/init_h_b"),
          "init_c.weight": tens("dec/init_c_w"), "init_c.bias": tens("dec/init_c_b"),
          "emb.weight": tens("dec/emb"),
          "lstm.weight_ih_l0": tens("dec/w_ih"), "lstm.weight_hh_l0": tens("dec/w_hh"),
          "lstm.bias_ih_l0": tens("dec/b"), "lstm.bias_hh_l0": torch.zeros(4 * hidden),
          "out.weight": tens("dec/out_w"), "out.bias": tens("dec/out_b")}
    model.load_state_dict(sd)
    torch.save({"model": model.state_dict(), "args": {"emb": emb, "hidden": hidden, "cond": cond},
                "source": os.path.abspath(args.csw)}, os.path.join(args.work, "decoder.pt"))

    head = Head(feat_dim, n_concepts, head_hidden)
    head.load_state_dict({"fc1.weight": tens("head/w1"), "fc1.bias": tens("head/b1"),
                          "fc2.weight": tens("head/w2"), "fc2.bias": tens("head/b2")})
    alpha, gamma = (float(v) for v in arr("config/search"))
    torch.save({"model": head.state_dict(), "mean": arr("head/feat_mean").copy(),
                "scale": arr("head/feat_scale").copy(), "hidden": head_hidden, "gamma": gamma,
                "source": os.path.abspath(args.csw)}, os.path.join(args.work, "head_committed.pt"))
    print(f"{args.csw}: {n_words} words, {n_concepts} concepts, {len(alias) // 2} aliases, "
          f"decoder {emb}/{hidden}/{cond}, head {feat_dim}-{head_hidden}-{n_concepts}, "
          f"alpha {alpha}, gamma {gamma:.4f}")


if __name__ == "__main__":
    main()
