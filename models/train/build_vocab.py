#!/usr/bin/python3
"""Step 1: word vocabulary and visual-concept vocabulary from the caption text corpora.

Writes work/vocab.json: {"words": [...], "concepts": [...], "alias": {word: concept}}.
Word ids: 0 <pad>, 1 <eos> (also the start token), 2 <unk>, then words by frequency.
"""
import argparse
import collections
import json
import os

import textproc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(os.path.dirname(__file__), "work"))
    ap.add_argument("--min-count", type=int, default=5)
    ap.add_argument("--concepts", type=int, default=800)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)

    groups = textproc.text_corpus()
    counts = collections.Counter()
    for caps in groups.values():
        for c in caps:
            counts.update(textproc.tokenize(c))
    words = [w for w, n in sorted(counts.items(), key=lambda x: (-x[1], x[0])) if n >= args.min_count]
    vocab = ["<pad>", "<eos>", "<unk>"] + words
    known = set(words)

    def canonical(w):
        if w in textproc.SYNONYMS:
            return textproc.SYNONYMS[w]
        for s in textproc.singulars(w):
            if s in known:
                return textproc.SYNONYMS.get(s, s)
        return w

    # Concepts ranked by how many images' captions mention them.
    df = collections.Counter()
    for caps in groups.values():
        seen = set()
        for c in caps:
            for t in textproc.tokenize(c):
                if t in known:
                    seen.add(canonical(t))
        df.update(seen)
    concepts = []
    for w, _ in sorted(df.items(), key=lambda x: (-x[1], x[0])):
        if len(concepts) >= args.concepts:
            break
        if w in textproc.STOPWORDS or len(w) < 2 or w.isdigit() or w not in known:
            continue
        concepts.append(w)
    for label in textproc.COCO_LABELS:
        for w in textproc.label_words(label):
            w = textproc.SYNONYMS.get(w, w)
            if w not in concepts:
                concepts.append(w)

    cmap = textproc.ConceptMap(concepts, words)
    with open(os.path.join(args.work, "vocab.json"), "w") as f:
        json.dump({"words": vocab, "concepts": concepts, "alias": cmap.alias}, f, indent=0)
    print(f"{len(groups)} images, {sum(len(c) for c in groups.values())} captions, "
          f"{len(vocab)} words, {len(concepts)} concepts, {len(cmap.alias)} aliases")


if __name__ == "__main__":
    main()
