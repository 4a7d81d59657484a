#!/usr/bin/python3
"""Short-query search quality through the REAL capsearch: precision@10 of the committed
queries (short_queries.txt: 1-3 words; objects, people words, activities, scenes,
colour + object) on an index of the validation photos.

For each set, its photos are indexed with `capsearch index --db` into a temporary
database and every query is asked with `capsearch --json --limit 10 --db`. An image is
relevant to a query when at least 2 of its 5 references contain every query word
(stopwords such as "in", "on" dropped; light stemming: jumps/jumping/jumped -> jump,
dogs -> dog, men -> man). Queries with no relevant image in a set are left out of that
set's mean (the count is printed).

  P@10      = relevant among the first 10 / 10 (the usual definition; its ceiling is
              below 1 when a query has fewer than 10 relevant photos: printed beside it)
  P@10 cap  = relevant among the first 10 / min(10, relevant): 1.0 for a perfect ranking

usage: eval_search.py --capsearch BUILD/cli/capsearch [--models DIR] [--sets ...]
                      [--queries FILE] [--per-query] [--min-p10 X]
Exit 0 (1 when --min-p10 is missed on a set), 77 when the data folder is absent.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import textproc  # noqa: E402
from eval_captions import SETS, references, set_folder  # noqa: E402

IRREGULAR = {"men": "man", "women": "woman", "children": "child", "feet": "foot",
             "teeth": "tooth", "mice": "mouse", "geese": "goose", "ran": "run",
             "swam": "swim", "rode": "ride", "sat": "sit", "stood": "stand"}


def stem(w):
    """Light stemming: plural and verb endings off, doubled final consonant undone and a
    final e dropped, so that run/runs/running, ride/riding/rides and dog/dogs meet."""
    w = IRREGULAR.get(w, w)
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif w.endswith("sses"):
        w = w[:-2]
    elif len(w) > 5 and w.endswith("ing"):
        w = w[:-3]
    elif len(w) > 4 and w.endswith("ed"):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsaeiou":
        w = w[:-1]
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w


def query_words(q):
    return [stem(w) for w in textproc.tokenize(q) if w not in textproc.STOPWORDS]


def relevant(query, refs):
    """Images whose references (at least 2 of them) contain every query word."""
    words = set(query_words(query))
    out = set()
    for img, rs in refs.items():
        n = sum(words <= set(stem(w) for w in textproc.tokenize(r)) for r in rs)
        if n >= 2:
            out.add(img)
    return out


def read_queries(path):
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def build_index(capsearch, models, src, names, tmp):
    photos = os.path.join(tmp, "photos")
    os.mkdir(photos)
    for n in names:
        shutil.copyfile(os.path.join(src, n), os.path.join(photos, n))
    db = os.path.join(tmp, "index.db")
    proc = subprocess.run([capsearch, "index", "--db", db] + models + [photos], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"capsearch index failed ({proc.returncode}): {proc.stderr.strip()}")
    return db


def search(capsearch, models, db, q, limit=10):
    proc = subprocess.run([capsearch, "--json", "--limit", str(limit), "--db", db] + models + ["--", q],
                          capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        sys.exit(f"capsearch search failed ({proc.returncode}) for {q!r}: {proc.stderr.strip()}")
    return [os.path.basename(json.loads(line)["path"]) for line in proc.stdout.splitlines() if line]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--capsearch", required=True)
    ap.add_argument("--models", default=None)
    ap.add_argument("--data", default=textproc.DATA)
    ap.add_argument("--sets", default="coco_mini,flickr_mini")
    ap.add_argument("--queries", default=os.path.join(HERE, "short_queries.txt"))
    ap.add_argument("--per-query", action="store_true", help="print each query's hits")
    ap.add_argument("--cnn", default="float", choices=["float", "int8"], help="capsearch index --cnn")
    ap.add_argument("--min-p10", type=float, default=None)
    args = ap.parse_args()

    queries = read_queries(args.queries)
    sets = [s for s in args.sets.split(",") if s]
    for s in sets:
        if s not in SETS or not os.path.isfile(os.path.join(set_folder(args.data, s), SETS[s][1])):
            print(f"skip: set {s} absent")
            return 77
    if args.models and not os.path.isfile(os.path.join(args.models, "ssdlite_mobilenet_v2_coco.csw")):
        print("skip: no backbone weights (models/backbone/fetch_and_convert.sh)")
        return 77
    models = ["--models", args.models] if args.models else []
    missed = False
    for s in sets:
        refs = references(args.data, s)
        names = sorted(refs)
        tmp = tempfile.mkdtemp(prefix="capsearch-short-")
        try:
            db = build_index(args.capsearch, models + ["--cnn", args.cnn], set_folder(args.data, s),
                             names, tmp)
            p10 = []
            cap = []
            ceiling = []
            zero = []
            for q in queries:
                rel = relevant(q, refs)
                if not rel:
                    continue
                ranked = search(args.capsearch, models, db, q)[:10]
                hits = sum(r in rel for r in ranked)
                p10.append(hits / 10)
                cap.append(hits / min(10, len(rel)))
                ceiling.append(min(10, len(rel)) / 10)
                if hits == 0:
                    zero.append(q)
                if args.per_query:
                    print(f"  {s} {q!r}: {hits}/10 relevant ({len(rel)} relevant photos)")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        n = len(p10)
        result = {"set": s, "images": len(names), "queries": n, "skipped_no_relevant": len(queries) - n,
                  "p10": sum(p10) / n if n else 0.0, "p10_ceiling": sum(ceiling) / n if n else 0.0,
                  "p10_capped": sum(cap) / n if n else 0.0, "zero_hit_queries": zero}
        print(json.dumps(result))
        print(f"{s} short queries ({n} with a relevant photo among {len(names)}; {len(queries) - n} without): "
              f"P@10 {result['p10']:.3f} (ceiling {result['p10_ceiling']:.3f})  "
              f"P@10 capped {result['p10_capped']:.3f}  nothing relevant in the first 10: {len(zero)}")
        sys.stdout.flush()
        if args.min_p10 is not None and result["p10"] < args.min_p10:
            missed = True
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
