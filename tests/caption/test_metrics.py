#!/usr/bin/python3
"""Metric code against hand-computed values (models/eval/metrics.py) and the tokeniser."""
import math
import os
import sys
import unittest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "models", "eval"))
sys.path.insert(0, os.path.join(ROOT, "models", "train"))
import chair  # noqa: E402
import eval_search  # noqa: E402
import metrics  # noqa: E402
import textproc  # noqa: E402


class Tokenizer(unittest.TestCase):
    def test_ptb_like(self):
        self.assertEqual(textproc.tokenize("A dog's toy, on the T-shirt. Isn't it?"),
                         ["a", "dog", "'s", "toy", "on", "the", "t-shirt", "isn't"[:2], "n't", "it"])


class Bleu(unittest.TestCase):
    def test_identical_is_one(self):
        s = metrics.bleu({1: "a dog on the beach".split()}, {1: ["a dog on the beach".split()]})
        for x in s:
            self.assertAlmostEqual(x, 1.0, places=7)

    def test_brevity_penalty_by_hand(self):
        # hyp "a dog" vs ref "a dog runs": p1 = 2/2, p2 = 1/1, c/r = 2/3 -> BP = e^(1 - 3/2)
        s = metrics.bleu({1: ["a", "dog"]}, {1: [["a", "dog", "runs"]]})
        bp = math.exp(1 - 1.5)
        self.assertAlmostEqual(s[0], bp, places=7)
        self.assertAlmostEqual(s[1], bp, places=7)
        # No trigram can exist: the toolkit's smoothing gives (1e-15 / 1e-9)^(1/3) * BP.
        self.assertAlmostEqual(s[2], bp * (1e-15 / 1e-9) ** (1 / 3), places=9)

    def test_clipping_and_closest_ref(self):
        # hyp "the the the the" vs refs "the cat" (len 2) and "the cat is here" (len 4):
        # closest length 4 -> no penalty; clipped unigram matches 1 of 4.
        s = metrics.bleu({1: ["the"] * 4}, {1: [["the", "cat"], ["the", "cat", "is", "here"]]})
        self.assertAlmostEqual(s[0], 0.25, places=7)

    def test_corpus_level_not_mean(self):
        hyps = {1: ["a", "b"], 2: ["c", "d", "e", "f"]}
        refs = {1: [["a", "b"]], 2: [["x", "y", "z", "w"]]}
        # unigrams: 2 correct of 6 guesses in the corpus, not the mean of 1 and 0
        self.assertAlmostEqual(metrics.bleu(hyps, refs)[0], 2 / 6, places=7)


class CiderD(unittest.TestCase):
    def test_two_images_by_hand(self):
        # Image 1 matches its only reference exactly: n=1 and n=2 cosine 1, n=3, 4 empty
        # -> (1 + 1 + 0 + 0) / 4 * 10 = 5. Image 2 shares nothing -> 0. Mean 2.5.
        hyps = {1: ["a", "b"], 2: ["c", "d"]}
        refs = {1: [["a", "b"]], 2: [["e", "f"]]}
        score, per = metrics.cider_d(hyps, refs)
        self.assertAlmostEqual(per[0], 5.0, places=7)
        self.assertAlmostEqual(per[1], 0.0, places=7)
        self.assertAlmostEqual(score, 2.5, places=7)

    def test_length_penalty(self):
        # Same words but the hypothesis has 1 bigram more than the reference:
        # penalty e^(-1/72) on every n.
        hyps = {1: ["a", "b", "c"], 2: ["x"]}
        refs = {1: [["a", "b"]], 2: [["y"]]}
        _, per = metrics.cider_d(hyps, refs)
        # n=1: hyp {a:l, b:l, c:l} (c has df 0 -> weight log2), ref {a:l, b:l}
        # cos = 2 l^2 / (sqrt(3) l * sqrt(2) l) = 2 / sqrt(6); n=2: {ab, bc} vs {ab} -> 1/sqrt(2)
        expect = (2 / math.sqrt(6) + 1 / math.sqrt(2)) / 4 * 10 * math.exp(-1 / 72)
        self.assertAlmostEqual(per[0], expect, places=7)

    def test_clipping(self):
        # Repeating a matching word cannot raise the score above the clean hypothesis.
        refs = {1: [["a", "dog", "on", "grass"]], 2: [["a", "cat"]]}
        clean, _ = metrics.cider_d({1: ["a", "dog", "on", "grass"], 2: ["a", "cat"]}, refs)
        gamed, _ = metrics.cider_d({1: ["dog", "dog", "dog", "dog"], 2: ["a", "cat"]}, refs)
        self.assertLess(gamed, clean)


class Chair(unittest.TestCase):
    def t(self, s):
        return textproc.tokenize(s)

    def test_objects_and_synonyms(self):
        self.assertEqual(chair.objects(self.t("Two men and a puppy near a bike")), {"person", "dog", "bicycle"})
        # two-word names first: a hot dog is food, a teddy bear is not a bear
        self.assertEqual(chair.objects(self.t("a hot dog and a teddy bear")), {"hot dog", "teddy bear"})
        # colour, not fruit; glasses are not a wine glass
        self.assertEqual(chair.objects(self.t("a boy in an orange shirt with glasses")), {"person"})
        self.assertEqual(chair.objects(self.t("a bowl of oranges")), {"bowl", "orange"})

    def test_by_hand(self):
        refs = {1: [self.t("a man on a horse"), self.t("a rider and his horse")],
                2: [self.t("a dog in the snow"), self.t("a puppy plays in snow")]}
        hyps = {1: self.t("a man riding a horse on a beach with a dog"),   # dog hallucinated
                2: self.t("a dog running in the snow")}                    # fine
        r = chair.chair(hyps, refs)
        self.assertAlmostEqual(r["chair_s"], 0.5)
        self.assertAlmostEqual(r["chair_i"], 1 / 4)   # person, horse, dog | dog
        self.assertEqual(r["hallucinated"], {"dog": 1})

    def test_human_ceiling(self):
        refs = {1: [self.t("a man and a dog"), self.t("a dog and a man"), self.t("a cat")]}
        # ref 0 vs {1,2}: fine; ref 1 vs {0,2}: fine; ref 2 vs {0,1}: cat hallucinated
        s, i = chair.human_ceiling(refs)
        self.assertAlmostEqual(s, 1 / 3)
        self.assertAlmostEqual(i, 1 / 5)


class ShortQueries(unittest.TestCase):
    def test_stemming(self):
        st = eval_search.stem
        self.assertEqual({st("jumps"), st("jumping"), st("jumped"), st("jump")}, {"jump"})
        self.assertEqual({st("running"), st("runs"), st("run")}, {"run"})
        self.assertEqual({st("riding"), st("rides"), st("ride")}, {st("ride")})
        self.assertEqual(st("dogs"), "dog")
        self.assertEqual(st("men"), "man")

    def test_relevance_needs_two_references(self):
        refs = {"a": ["A dog jumps in the snow", "dogs jumping", "a cat"],
                "b": ["A dog in snow", "a cat", "a bird"]}
        self.assertEqual(eval_search.relevant("dog in snow", refs), set())  # one reference each
        self.assertEqual(eval_search.relevant("dog jumping", refs), {"a"})

    def test_query_list(self):
        qs = eval_search.read_queries(os.path.join(ROOT, "models", "eval", "short_queries.txt"))
        self.assertGreaterEqual(len(qs), 50)
        self.assertTrue(all(1 <= len(q.split()) <= 3 for q in qs))
        self.assertEqual(len(qs), len(set(qs)))


if __name__ == "__main__":
    unittest.main()
