#!/usr/bin/python3
"""Is model B's short-query P@10 different from model A's beyond noise? Paired bootstrap
over the queries (2000 draws) of the difference in mean P@10, per set, from the
`eval_search.py --per-query` output of each model (saved to a file).

usage: compare_search.py A_search.txt B_search.txt [--draws 2000]
"""
import argparse
import random
import re
import sys

LINE = re.compile(r"^  (\S+) '(.*)': (\d+)/10 relevant")


def read(path):
    out = {}
    with open(path) as f:
        for line in f:
            m = LINE.match(line)
            if m:
                out.setdefault(m.group(1), {})[m.group(2)] = int(m.group(3)) / 10
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--draws", type=int, default=2000)
    args = ap.parse_args()
    A, B = read(args.a), read(args.b)
    rng = random.Random(11)
    for s in sorted(set(A) & set(B)):
        qs = sorted(set(A[s]) & set(B[s]))
        d = [B[s][q] - A[s][q] for q in qs]
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        boots = sorted(mean([d[rng.randrange(len(d))] for _ in d]) for _ in range(args.draws))
        lo, hi = boots[int(0.025 * len(boots))], boots[int(0.975 * len(boots)) - 1]
        verdict = "beyond noise" if lo > 0 or hi < 0 else "within noise"
        print(f"{s} ({len(qs)} queries): P@10 {mean([A[s][q] for q in qs]):.3f} -> {mean([B[s][q] for q in qs]):.3f}"
              f"  diff {mean(d):+.3f}  95% [{lo:+.3f}, {hi:+.3f}]  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
