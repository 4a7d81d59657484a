/*
 * Words, shared by both backends: the query tokenizer (user text -> search words, never
 * syntax), the searchable words of a path, and a folder's byte range of paths.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caputf8.h"
#include "internal.h"

/* Path components that become searchable words: the file name and its two folders. */
#define PATH_WORD_COMPONENTS 3

static const char *const STOPWORDS[] = {
    "a",    "an",   "and",   "are",   "as",   "at", "be",  "by",   "for",  "from",
    "in",   "into", "is",    "it",    "its",  "of", "on",  "onto", "or",   "some",
    "that", "the",  "their", "there", "this", "to", "was", "were", "with",
};

static int is_word_codepoint(uint32_t cp);
static int is_stopword(const char *w);
static int utf8_length(const unsigned char *s);

int capdb__query_words(const char *text, char ***words_out, capdb_err *err)
{
    *words_out = NULL;
    if (!text) text = "";
    char **words = NULL;
    int n = 0, cap = 0, n_content = 0;
    const unsigned char *s = (const unsigned char *)text;
    while (*s) {
        /* skip to the start of a word; bytes that are not UTF-8 are dropped */
        uint32_t cp;
        int l = cu_utf8_decode(s, 4, &cp);
        if (l == 0 || !is_word_codepoint(cp)) {
            s += l ? l : 1;
            continue;
        }
        const unsigned char *start = s;
        while (*s && (l = cu_utf8_decode(s, 4, &cp)) > 0 && is_word_codepoint(cp)) s += l;
        size_t len = (size_t)(s - start);
        char *w = malloc(len + 1);
        if (!w) goto nomem;
        for (size_t i = 0; i < len; i++)
            w[i] = (char)(start[i] >= 'A' && start[i] <= 'Z' ? start[i] + 32 : start[i]);
        w[len] = '\0';
        int dup = 0;
        for (int i = 0; i < n && !dup; i++) dup = strcmp(words[i], w) == 0;
        if (dup) {
            free(w);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            char **nw = realloc(words, (size_t)cap * sizeof *words);
            if (!nw) {
                free(w);
                goto nomem;
            }
            words = nw;
        }
        words[n++] = w;
        if (!is_stopword(w) && ++n_content > CAPDB_MAX_QUERY_WORDS) {
            capdb__free_words(words, n);
            return capdb__fail(err, -EINVAL, "query too long: more than %d words",
                               CAPDB_MAX_QUERY_WORDS);
        }
    }
    if (n == 0) {
        free(words);
        return capdb__fail(err, -EINVAL, "query has no words to search for");
    }
    if (n_content > 0) {
        int k = 0;
        for (int i = 0; i < n; i++) {
            if (is_stopword(words[i])) free(words[i]);
            else words[k++] = words[i];
        }
        n = k;
    } else if (n > CAPDB_MAX_QUERY_WORDS) {
        capdb__free_words(words, n);
        return capdb__fail(err, -EINVAL, "query too long: more than %d words",
                           CAPDB_MAX_QUERY_WORDS);
    }
    *words_out = words;
    return n;
nomem:
    capdb__free_words(words, n);
    return capdb__fail(err, -ENOMEM, "out of memory");
}

void capdb__free_words(char **words, int n)
{
    for (int i = 0; i < n; i++) free(words[i]);
    free(words);
}

char *capdb__path_words(const char *path)
{
    size_t len = strlen(path);
    /* Start of the last PATH_WORD_COMPONENTS components. */
    size_t start = len;
    for (int seen = 0; start > 0; start--) {
        if (path[start - 1] == '/' && ++seen == PATH_WORD_COMPONENTS) break;
    }
    /* The extension says nothing about the picture. */
    size_t end = len;
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash + 1) && len - (size_t)(dot - path) <= 6)
        end = (size_t)(dot - path);

    char *out = malloc(end - start + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = start; i < end;) {
        const unsigned char *s = (const unsigned char *)path + i;
        int l = utf8_length(s);
        if (l == 1 && !((*s >= '0' && *s <= '9') || ((*s | 0x20) >= 'a' && (*s | 0x20) <= 'z')))
            l = 0;
        if (l == 0 || (size_t)l > end - i) {
            /* punctuation, separators and bytes that are not UTF-8 split words */
            if (o && out[o - 1] != ' ') out[o++] = ' ';
            i++;
            continue;
        }
        memcpy(out + o, s, (size_t)l);
        o += (size_t)l;
        i += (size_t)l;
    }
    while (o && out[o - 1] == ' ') o--;
    out[o] = '\0';
    return out;
}

int capdb__dir_bounds(const char *dir, char **lo, char **hi)
{
    size_t len = strlen(dir);
    while (len > 0 && dir[len - 1] == '/') len--;
    *lo = malloc(len + 2);
    *hi = malloc(len + 2);
    if (!*lo || !*hi) {
        free(*lo);
        free(*hi);
        return -ENOMEM;
    }
    memcpy(*lo, dir, len);
    memcpy(*hi, dir, len);
    (*lo)[len] = '/';
    (*hi)[len] = '0';
    (*lo)[len + 1] = (*hi)[len + 1] = '\0';
    return 0;
}

/* ------------------------------------------------------------------ helpers */

/* Letters and digits of any script. Without ICU this is an approximation that errs on
 * the side of "word": FTS5's own tokenizer splits whatever we keep inside the quotes. */
static int is_word_codepoint(uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
    if (cp < 0xC0) /* Latin-1 symbols, except ª ² ³ µ ¹ º ¼ ½ ¾ */
        return cp == 0xAA || cp == 0xB2 || cp == 0xB3 || cp == 0xB5 || cp == 0xB9 || cp == 0xBA ||
               (cp >= 0xBC && cp <= 0xBE);
    if (cp == 0xD7 || cp == 0xF7) return 0;     /* × ÷ */
    if (cp >= 0x2000 && cp <= 0x2BFF) return 0; /* punctuation, symbols */
    if (cp >= 0x3000 && cp <= 0x303F) return 0; /* CJK punctuation */
    if (cp >= 0xE000 && cp <= 0xF8FF) return 0; /* private use */
    if (cp >= 0xFE10 && cp <= 0xFE6F) return 0; /* vertical, small forms */
    if (cp == 0xFEFF) return 0;
    if ((cp >= 0xFF00 && cp <= 0xFF0F) || (cp >= 0xFF1A && cp <= 0xFF20) ||
        (cp >= 0xFF3B && cp <= 0xFF40) || (cp >= 0xFF5B && cp <= 0xFF65))
        return 0;                                 /* fullwidth punctuation */
    if (cp >= 0x1F000 && cp <= 0x1FAFF) return 0; /* emoji, pictographs */
    return 1;
}

static int is_stopword(const char *w)
{
    for (size_t i = 0; i < sizeof STOPWORDS / sizeof STOPWORDS[0]; i++)
        if (strcmp(STOPWORDS[i], w) == 0) return 1;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (1 for ASCII), 0 when it is not valid. */
static int utf8_length(const unsigned char *s)
{
    uint32_t cp;
    return cu_utf8_decode(s, 4, &cp);
}
