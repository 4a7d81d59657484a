/*
 * The text side: free text -> concept indices, with the same tokenisation, plural rules
 * and synonyms (exported as concepts/alias) that training used for captions
 * (models/train/textproc.py), so that "puppies on the sand" lands on dog and sand.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caption.h"

#define MAX_WORD 64

static int lookup_cmp(const void *pa, const void *pb);
static int find_exact(const ce_captioner *cap, const char *word);
static int add_weight(ce_concept_weight *out, int n, int max, int concept);

int ce_model_concept_count(const ce_model *model)
{
    const ce_captioner *cap = model ? ce__model_captioner(model) : NULL;
    return cap ? cap->n_concepts : 0;
}

const char *ce_model_concept_word(const ce_model *model, int index)
{
    const ce_captioner *cap = model ? ce__model_captioner(model) : NULL;
    if (!cap || index < 0 || index >= cap->n_concepts) return NULL;
    return cap->concepts[index];
}

int ce_text_concepts(const ce_model *model, const char *text, ce_concept_weight *out, int max)
{
    const ce_captioner *cap = model ? ce__model_captioner(model) : NULL;
    if (!cap || !text || !out || max <= 0) return 0;
    int n = 0;
    const char *p = text;
    while (*p) {
        char word[MAX_WORD];
        size_t len = 0;
        while (*p && !(isalnum((unsigned char)*p) || *p == '-')) p++;
        while (*p && (isalnum((unsigned char)*p) || *p == '-')) {
            if (len + 1 < sizeof word) word[len++] = (char)tolower((unsigned char)*p);
            p++;
        }
        while (len && word[len - 1] == '-') len--;
        word[len] = 0;
        char *w = word;
        while (*w == '-') w++;
        if (!*w) continue;
        int c = ce__caption_text_lookup(cap, w);
        if (c >= 0) {
            n = add_weight(out, n, max, c);
        } else if (strchr(w, '-')) {
            /* "snow-covered" -> snow, covered */
            for (char *part = strtok(w, "-"); part; part = strtok(NULL, "-"))
                if ((c = ce__caption_text_lookup(cap, part)) >= 0) n = add_weight(out, n, max, c);
        }
    }
    return n;
}

int ce__caption_text_lookup(const ce_captioner *cap, const char *word)
{
    int c = find_exact(cap, word);
    if (c >= 0) return c;
    /* The plural rules of textproc.singulars(), for words the alias table lacks. */
    size_t len = strlen(word);
    char stem[MAX_WORD + 2];
    if (len >= MAX_WORD) return -1;
    if (len > 4 && strcmp(word + len - 3, "ies") == 0) {
        snprintf(stem, sizeof stem, "%.*sy", (int)(len - 3), word);
        if ((c = find_exact(cap, stem)) >= 0) return c;
    }
    if (len > 3 && strcmp(word + len - 2, "es") == 0) {
        snprintf(stem, sizeof stem, "%.*s", (int)(len - 2), word);
        if ((c = find_exact(cap, stem)) >= 0) return c;
    }
    if (len > 3 && word[len - 1] == 's' && word[len - 2] != 's') {
        snprintf(stem, sizeof stem, "%.*s", (int)(len - 1), word);
        if ((c = find_exact(cap, stem)) >= 0) return c;
    }
    return -1;
}

int ce__caption_text_init(ce_captioner *cap, ce_err *err)
{
    const ce_tensor *alias = ce__weights_find(cap->weights, "concepts/alias");
    if (!alias || alias->dtype != CE_DT_U8 || alias->rank != 1 ||
        (alias->count && ((const char *)alias->data)[alias->count - 1] != 0)) {
        snprintf(err->msg, sizeof err->msg, "concepts/alias missing or not NUL-terminated strings");
        return -EBADMSG;
    }
    const char *a = alias->data;
    int n_strings = 0;
    for (size_t i = 0; i < alias->count; i++) n_strings += a[i] == 0;
    if (n_strings % 2) {
        snprintf(err->msg, sizeof err->msg, "concepts/alias holds an odd number of strings");
        return -EBADMSG;
    }
    cap->lookup = malloc(sizeof *cap->lookup * (size_t)(cap->n_concepts + n_strings / 2));
    if (!cap->lookup) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return -ENOMEM;
    }
    cap->n_lookup = 0;
    for (int k = 0; k < cap->n_concepts; k++)
        cap->lookup[cap->n_lookup++] = (caption_lookup){cap->concepts[k], k};
    qsort(cap->lookup, (size_t)cap->n_lookup, sizeof *cap->lookup, lookup_cmp);
    /* Aliases point at concept words: resolve them against the sorted concept table. */
    int n_concepts_sorted = cap->n_lookup;
    for (size_t pos = 0; pos < alias->count;) {
        const char *from = a + pos;
        pos += strlen(from) + 1;
        const char *to = a + pos;
        pos += strlen(to) + 1;
        caption_lookup key = {to, 0};
        const caption_lookup *hit =
            bsearch(&key, cap->lookup, (size_t)n_concepts_sorted, sizeof *cap->lookup, lookup_cmp);
        if (!hit) {
            snprintf(err->msg, sizeof err->msg, "alias '%s' points at unknown concept '%s'", from,
                     to);
            return -EBADMSG;
        }
        cap->lookup[cap->n_lookup++] = (caption_lookup){from, hit->concept};
    }
    qsort(cap->lookup, (size_t)cap->n_lookup, sizeof *cap->lookup, lookup_cmp);
    return 0;
}

void ce__caption_text_free(ce_captioner *cap)
{
    free(cap->lookup);
    cap->lookup = NULL;
}

static int lookup_cmp(const void *pa, const void *pb)
{
    const caption_lookup *a = pa, *b = pb;
    return strcmp(a->word, b->word);
}

static int find_exact(const ce_captioner *cap, const char *word)
{
    caption_lookup key = {word, 0};
    const caption_lookup *hit =
        bsearch(&key, cap->lookup, (size_t)cap->n_lookup, sizeof *cap->lookup, lookup_cmp);
    return hit ? hit->concept : -1;
}

/* Each concept once, weight 1: a query names a thing or it does not. */
static int add_weight(ce_concept_weight *out, int n, int max, int concept)
{
    for (int i = 0; i < n; i++)
        if (out[i].index == concept) return n;
    if (n < max) out[n++] = (ce_concept_weight){concept, 1.0f};
    return n;
}
