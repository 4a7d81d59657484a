"""BLEU-1..4 and CIDEr-D computed the way the COCO caption evaluation toolkit
(pycocoevalcap: bleu_scorer.py, cider_scorer.py in ciderD) computes them.

Inputs are already-tokenised word lists (models/train/textproc.tokenize: lowercase,
PTB-style, punctuation removed). hyps: {id: [tokens]}, refs: {id: [[tokens], ...]}.
"""
import math
from collections import Counter, defaultdict


def ngrams(tokens, n):
    """Counter of all k-grams, k = 1..n (pycocoevalcap precook)."""
    counts = Counter()
    for k in range(1, n + 1):
        for i in range(len(tokens) - k + 1):
            counts[tuple(tokens[i:i + k])] += 1
    return counts


def bleu(hyps, refs, n=4):
    """Corpus BLEU-1..n with the brevity penalty from the closest reference length
    (ties: the shorter one), as BleuScorer.compute_score(option='closest')."""
    tiny, small = 1e-15, 1e-9
    testlen = reflen = 0
    guess = [0] * n
    correct = [0] * n
    for key in hyps:
        hyp = hyps[key]
        maxref = Counter()
        for r in refs[key]:
            for g, c in ngrams(r, n).items():
                maxref[g] = max(maxref[g], c)
        lens = [len(r) for r in refs[key]]
        testlen += len(hyp)
        reflen += min((abs(l - len(hyp)), l) for l in lens)[1]
        for g, c in ngrams(hyp, n).items():
            correct[len(g) - 1] += min(maxref.get(g, 0), c)
        for k in range(n):
            guess[k] += max(0, len(hyp) - k)
    scores = []
    prod = 1.0
    for k in range(n):
        prod *= (correct[k] + tiny) / (guess[k] + small)
        scores.append(prod ** (1.0 / (k + 1)))
    ratio = (testlen + tiny) / (reflen + small)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


def cider_d(hyps, refs, n=4, sigma=6.0):
    """CIDEr-D: tf-idf n-gram vectors (df over the evaluated set's references), clipped
    hypothesis counts, Gaussian length penalty (length = the bigram count, as in the
    toolkit), mean over n = 1..4 and over references, x10; averaged over images."""
    keys = list(hyps)
    df = defaultdict(float)
    for key in keys:
        for g in set(g for r in refs[key] for g in ngrams(r, n)):
            df[g] += 1
    log_n = math.log(float(len(keys)))

    def vec(tokens):
        v = [defaultdict(float) for _ in range(n)]
        norm = [0.0] * n
        length = 0
        for g, tf in ngrams(tokens, n).items():
            k = len(g) - 1
            v[k][g] = float(tf) * (log_n - math.log(max(1.0, df[g])))
            norm[k] += v[k][g] ** 2
            if k == 1:
                length += tf
        return v, [math.sqrt(x) for x in norm], length

    def sim(vh, vr, nh, nr, lh, lr):
        delta = float(lh - lr)
        val = [0.0] * n
        for k in range(n):
            for g in vh[k]:
                val[k] += min(vh[k][g], vr[k].get(g, 0.0)) * vr[k].get(g, 0.0)
            if nh[k] != 0 and nr[k] != 0:
                val[k] /= nh[k] * nr[k]
            val[k] *= math.e ** (-(delta ** 2) / (2 * sigma ** 2))
        return val

    per_image = []
    for key in keys:
        vh, nh, lh = vec(hyps[key])
        total = [0.0] * n
        for r in refs[key]:
            vr, nr, lr = vec(r)
            total = [a + b for a, b in zip(total, sim(vh, vr, nh, nr, lh, lr))]
        per_image.append(sum(total) / n / len(refs[key]) * 10.0)
    return sum(per_image) / len(per_image), per_image
