/* JSON text for the API, and the small parsers of request values. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "web_internal.h"

void jb_free(jbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static int grow(jbuf *b, size_t more)
{
    if (b->oom) return -1;
    if (b->len + more + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void jb_put(jbuf *b, const char *s, size_t n)
{
    if (grow(b, n) < 0) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void jb_puts(jbuf *b, const char *s) { jb_put(b, s, strlen(s)); }

void jb_printf(jbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        jb_put(b, tmp, (size_t)n);
        return;
    }
    if (grow(b, (size_t)n) < 0) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s, or 0 (overlong, surrogate, > U+10FFFF). */
static int utf8_len(const unsigned char *s)
{
    int len;
    uint32_t cp;
    if (s[0] < 0x80) return 1;
    else if ((s[0] & 0xE0) == 0xC0) {
        len = 2;
        cp = s[0] & 0x1F;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3;
        cp = s[0] & 0x0F;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4;
        cp = s[0] & 0x07;
    } else return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    static const uint32_t MIN[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < MIN[len] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return 0;
    return len;
}

void jb_string(jbuf *b, const char *s)
{
    if (!s) {
        jb_puts(b, "null");
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    jb_put(b, "\"", 1);
    while (*p) {
        /* copy the longest run that needs no escape in one go */
        const unsigned char *run = p;
        while (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') p++;
        if (p > run) jb_put(b, (const char *)run, (size_t)(p - run));
        if (!*p) break;
        int len = utf8_len(p);
        if (len == 0) {
            jb_puts(b, "\\ufffd");
            p++;
        } else if (len == 2 && p[0] == 0xC2 && p[1] <= 0x9F) {
            jb_printf(b, "\\u%04x", p[1]); /* C1 controls (U+009B is CSI) */
            p += 2;
        } else if (len > 1) {
            jb_put(b, (const char *)p, (size_t)len);
            p += len;
        } else {
            switch (*p) {
            case '"': jb_puts(b, "\\\""); break;
            case '\\': jb_puts(b, "\\\\"); break;
            case '\n': jb_puts(b, "\\n"); break;
            case '\r': jb_puts(b, "\\r"); break;
            case '\t': jb_puts(b, "\\t"); break;
            default: jb_printf(b, "\\u%04x", *p);
            }
            p++;
        }
    }
    jb_put(b, "\"", 1);
}

int64_t web_parse_id(const char *s)
{
    if (!s || s[0] < '1' || s[0] > '9') return -1;
    int64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || p - s >= 16) return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

int web_parse_date(const char *s, int end_of_day, int64_t *out)
{
    int used = 0, y, mo, d, h = 0, mi = 0, sec = 0, has_time = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &used) != 3 || used != 10) return -1;
    if (s[used] == 'T' || s[used] == ' ') {
        int used2 = 0;
        if (sscanf(s + used + 1, "%2d:%2d:%2d%n", &h, &mi, &sec, &used2) != 3 || used2 != 8)
            return -1;
        used += 1 + used2;
        has_time = 1;
    }
    if (s[used] != '\0') return -1;
    static const int DAYS[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1800 || mo < 1 || mo > 12 || d < 1 || d > DAYS[mo - 1] || h < 0 || h > 23 || mi < 0 ||
        mi > 59 || sec < 0 || sec > 60)
        return -1;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    if (tm.tm_mday != d) return -1; /* 2023-02-30 normalised into March */
    if (!has_time && end_of_day) t += 86399;
    *out = (int64_t)t;
    return 0;
}

void jb_keywords(jbuf *b, const char *keywords)
{
    jb_puts(b, "[");
    int first = 1;
    for (const char *k = keywords; k && *k;) {
        const char *end = strchr(k, '\n');
        size_t n = end ? (size_t)(end - k) : strlen(k);
        char word[256];
        snprintf(word, sizeof word, "%.*s", (int)(n < sizeof word ? n : sizeof word - 1), k);
        if (!first) jb_puts(b, ",");
        jb_string(b, word);
        first = 0;
        k = end ? end + 1 : k + n;
    }
    jb_puts(b, "]");
}
