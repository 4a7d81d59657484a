/*
 * The caption of a result with the query's words marked, exactly as FTS5's
 * highlight(images_fts, 0, open, close) marks them, without running the query again.
 *
 * Why not highlight(): it is an auxiliary function, so each result needed its own
 * "MATCH ?1 AND rowid = ?2" statement, which parses the expression and seeks every
 * term's doclist again; for 20 results that was a third of a whole search (issue 14:
 * 0.7 of 2.6 ms at 100k rows, more in a fresh process). Marking needs only the
 * caption's tokens: the query's phrases are tokenised once per search and each caption
 * once, by the index's own tokenizer (FTS5's, so stemming and case folding are FTS5's).
 *
 * Invariant, held by the db.unit test against highlight() itself: the token positions
 * are those FTS5 indexes (colocated tokens take none), a phrase instance is a run of
 * consecutive tokens equal to the phrase's, and instances that share a token are
 * coalesced into one marked run (FTS5's CInstIter); touching ones are not.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite.h"

/* The tokenizer of images_fts (schema.c: tokenize = 'porter unicode61 remove_diacritics
 * 2'): "porter" wrapping the rest. */
#define TOKENIZER_NAME "porter"
static const char *const TOKENIZER_ARGS[] = {"unicode61", "remove_diacritics", "2"};

typedef struct {
    char *text; /* the token as the tokenizer gives it (folded, stemmed) */
    int size;
    int start, end; /* byte range in the tokenised text */
} token;

typedef struct {
    token *items;
    int n, cap;
    int failed; /* out of memory */
} token_list;

struct capdb_highlighter {
    fts5_tokenizer api;
    Fts5Tokenizer *tokenizer;
    token_list *phrases; /* one per query word, each its tokens */
    int n_phrases;
};

static int tokenize(capdb_highlighter *h, int flags, const char *text, token_list *out);
static int collect_token(void *ctx, int flags, const char *text, int size, int start, int end);
static int phrase_at(const token_list *doc, int at, const token_list *phrase);
static void free_tokens(token_list *list);
static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n);

int capdb__highlighter_new(fts5_api *fts5, char *const *words, int n_words, capdb_highlighter **out)
{
    *out = NULL;
    capdb_highlighter *h = calloc(1, sizeof *h);
    if (!h) return -ENOMEM;
    void *user_data = NULL;
    if (!fts5 || fts5->xFindTokenizer(fts5, TOKENIZER_NAME, &user_data, &h->api) != SQLITE_OK ||
        h->api.xCreate(user_data, (const char **)TOKENIZER_ARGS,
                       (int)(sizeof TOKENIZER_ARGS / sizeof *TOKENIZER_ARGS),
                       &h->tokenizer) != SQLITE_OK) {
        free(h);
        return -EIO;
    }
    h->phrases = calloc(n_words > 0 ? (size_t)n_words : 1, sizeof *h->phrases);
    if (!h->phrases) {
        capdb__highlighter_free(h);
        return -ENOMEM;
    }
    h->n_phrases = n_words;
    for (int i = 0; i < n_words; i++) {
        int rc = tokenize(h, FTS5_TOKENIZE_QUERY, words[i], &h->phrases[i]);
        if (rc) {
            capdb__highlighter_free(h);
            return rc;
        }
    }
    *out = h;
    return 0;
}

char *capdb__highlight(capdb_highlighter *h, const char *text, const char *open, const char *close)
{
    token_list doc = {0};
    if (tokenize(h, FTS5_TOKENIZE_DOCUMENT, text, &doc) != 0) {
        free_tokens(&doc);
        return NULL;
    }
    size_t len = 0, cap = 0, open_len = strlen(open), close_len = strlen(close);
    char *buf = NULL;
    int copied = 0, ok = 1; /* bytes of text already in buf */
    for (int at = 0; ok && at < doc.n; at++) {
        /* the run of coalesced instances that starts here, if any */
        int last = -1;
        for (int p = 0; p < h->n_phrases; p++)
            if (phrase_at(&doc, at, &h->phrases[p]) && at + h->phrases[p].n - 1 > last)
                last = at + h->phrases[p].n - 1;
        if (last < 0) continue;
        for (int k = at + 1; k <= last; k++)
            for (int p = 0; p < h->n_phrases; p++)
                if (phrase_at(&doc, k, &h->phrases[p]) && k + h->phrases[p].n - 1 > last)
                    last = k + h->phrases[p].n - 1;
        ok = append(&buf, &len, &cap, text + copied, (size_t)(doc.items[at].start - copied)) &&
             append(&buf, &len, &cap, open, open_len) &&
             append(&buf, &len, &cap, text + doc.items[at].start,
                    (size_t)(doc.items[last].end - doc.items[at].start)) &&
             append(&buf, &len, &cap, close, close_len);
        copied = doc.items[last].end;
        at = last;
    }
    if (ok) ok = append(&buf, &len, &cap, text + copied, strlen(text + copied) + 1);
    free_tokens(&doc);
    if (!ok) {
        free(buf);
        return NULL;
    }
    return buf;
}

void capdb__highlighter_free(capdb_highlighter *h)
{
    if (!h) return;
    for (int i = 0; h->phrases && i < h->n_phrases; i++) free_tokens(&h->phrases[i]);
    free(h->phrases);
    if (h->tokenizer) h->api.xDelete(h->tokenizer);
    free(h);
}

/* ------------------------------------------------------------------ helpers */

static int tokenize(capdb_highlighter *h, int flags, const char *text, token_list *out)
{
    int rc = h->api.xTokenize(h->tokenizer, out, flags, text, (int)strlen(text), collect_token);
    if (out->failed) return -ENOMEM;
    return rc == SQLITE_OK ? 0 : -EIO;
}

/* FTS5 keeps at most this many bytes of a token, in the index and in queries alike
 * (FTS5_MAX_TOKEN_SIZE in fts5Int.h). */
#define FTS5_TOKEN_BYTES 32768

/* Positions are FTS5's: a colocated token (a synonym at the same place) takes none. */
static int collect_token(void *ctx, int flags, const char *text, int size, int start, int end)
{
    token_list *list = ctx;
    if (flags & FTS5_TOKEN_COLOCATED) return SQLITE_OK;
    if (size > FTS5_TOKEN_BYTES) size = FTS5_TOKEN_BYTES;
    if (list->n == list->cap) {
        int cap = list->cap ? 2 * list->cap : 32;
        token *items = realloc(list->items, (size_t)cap * sizeof *items);
        if (!items) {
            list->failed = 1;
            return SQLITE_NOMEM;
        }
        list->items = items;
        list->cap = cap;
    }
    char *copy = malloc((size_t)size + 1);
    if (!copy) {
        list->failed = 1;
        return SQLITE_NOMEM;
    }
    memcpy(copy, text, (size_t)size);
    copy[size] = '\0';
    list->items[list->n++] = (token){copy, size, start, end};
    return SQLITE_OK;
}

/* An empty phrase (a word the tokenizer drops) matches nowhere, as in FTS5. */
static int phrase_at(const token_list *doc, int at, const token_list *phrase)
{
    if (phrase->n == 0 || at + phrase->n > doc->n) return 0;
    for (int i = 0; i < phrase->n; i++) {
        const token *a = &doc->items[at + i], *b = &phrase->items[i];
        if (a->size != b->size || memcmp(a->text, b->text, (size_t)a->size) != 0) return 0;
    }
    return 1;
}

static void free_tokens(token_list *list)
{
    for (int i = 0; i < list->n; i++) free(list->items[i].text);
    free(list->items);
    *list = (token_list){0};
}

static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (n == 0) return 1; /* buf may still be NULL */
    if (*len + n > *cap) {
        size_t want = *cap ? *cap : 128;
        while (want < *len + n) want *= 2;
        char *grown = realloc(*buf, want);
        if (!grown) return 0;
        *buf = grown;
        *cap = want;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    return 1;
}
