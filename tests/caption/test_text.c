/*
 * The text side through the public API: queries map onto the captioner's concepts with
 * plurals and synonyms, the same mapping the training code used for captions.
 *
 *   test_text MODELS_DIR
 */
#include <stdio.h>
#include <string.h>

#include "capengine.h"

static int failures;

static int has_concept(const ce_model *m, const ce_concept_weight *w, int n, const char *word);
static void expect(const ce_model *m, const char *query, const char *const *words, int n_words);

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_text MODELS_DIR\n");
        return 2;
    }
    ce_err err = {{0}};
    ce_model *m = NULL;
    if (ce_model_open(argv[1], CE_OPEN_TEXT_ONLY, &m, &err) < 0) {
        fprintf(stderr, "test_text: %s\n", err.msg);
        return 1;
    }
    if (!ce_model_has_captioner(m) || ce_model_concept_count(m) < 100) {
        fprintf(stderr, "test_text: no captioner or too few concepts\n");
        return 1;
    }
    expect(m, "dog on beach", (const char *const[]){"dog", "beach"}, 2);
    expect(m, "Two PUPPIES on the sandy beach!",
           (const char *const[]){"dog", "sand", "beach", "two"}, 4);
    expect(m, "men riding bikes", (const char *const[]){"man", "riding", "bicycle"}, 3);
    expect(m, "kittens", (const char *const[]){"cat"}, 1);
    expect(m, "giraffes and zebras", (const char *const[]){"giraffe", "zebra"}, 2);
    expect(m, "snow-covered mountains", (const char *const[]){"snow", "mountain"}, 2);

    ce_concept_weight w[8];
    int n = ce_text_concepts(m, "the of and xqzzy", w, 8);
    if (n != 0) {
        fprintf(stderr, "FAIL: stopwords and unknown words gave %d concepts\n", n);
        failures++;
    }
    n = ce_text_concepts(m, "dog dogs puppy", w, 8);
    if (n != 1 || w[0].weight != 1.0f) {
        fprintf(stderr, "FAIL: one concept named three ways gave %d entries\n", n);
        failures++;
    }
    n = ce_text_concepts(m, "dog cat horse cow sheep", w, 2);
    if (n != 2) {
        fprintf(stderr, "FAIL: max 2 not respected (%d)\n", n);
        failures++;
    }
    if (ce_model_concept_word(m, -1) || ce_model_concept_word(m, ce_model_concept_count(m))) {
        fprintf(stderr, "FAIL: out-of-range concept index gave a word\n");
        failures++;
    }
    ce_model_close(m);
    return failures ? 1 : 0;
}

static void expect(const ce_model *m, const char *query, const char *const *words, int n_words)
{
    ce_concept_weight w[32];
    int n = ce_text_concepts(m, query, w, 32);
    for (int i = 0; i < n_words; i++)
        if (!has_concept(m, w, n, words[i])) {
            fprintf(stderr, "FAIL: '%s' does not map to concept '%s'\n", query, words[i]);
            failures++;
        }
}

static int has_concept(const ce_model *m, const ce_concept_weight *w, int n, const char *word)
{
    for (int i = 0; i < n; i++) {
        const char *c = ce_model_concept_word(m, w[i].index);
        if (c && strcmp(c, word) == 0) return 1;
    }
    return 0;
}
