/*
 * Terminal safety for text we did not write: file names (any bytes but NUL), captions,
 * tags, error messages and config text stored in the index.
 *
 * The rule, stated once: a byte reaches a terminal only as part of a valid UTF-8
 * character that is not a control character. C0 controls (ESC starts every escape
 * sequence), DEL, the C1 controls U+0080..U+009F (U+009B is a one-character CSI on some
 * terminals) and bytes that are not valid UTF-8 (a lone 0x9B is CSI in 8-bit mode) are
 * each shown as '?'. Every human-readable line of capsearch and capsearchd goes through
 * here; JSON output escapes control characters itself (cli_json_string).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "indexer.h"

int cx_printable_len(const char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    int len;
    uint32_t cp;
    if (s[0] < 0x80) return s[0] >= 0x20 && s[0] != 0x7f ? 1 : 0;
    else if ((s[0] & 0xE0) == 0xC0) { len = 2; cp = s[0] & 0x1F; }
    else if ((s[0] & 0xF0) == 0xE0) { len = 3; cp = s[0] & 0x0F; }
    else if ((s[0] & 0xF8) == 0xF0) { len = 4; cp = s[0] & 0x07; }
    else return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    static const uint32_t MIN_FOR_LEN[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < MIN_FOR_LEN[len] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return 0;
    if (cp >= 0x80 && cp <= 0x9F) return 0;                     /* C1 controls */
    return len;
}

void cx_fputs_printable(const char *s, FILE *out)
{
    while (s && *s) {
        int len = cx_printable_len(s);
        if (len == 0) {
            fputc('?', out);
            s++;
        } else {
            fwrite(s, 1, (size_t)len, out);
            s += len;
        }
    }
}

char *cx_printable(const char *s, char *buf, size_t size)
{
    size_t at = 0;
    if (size == 0) return buf;
    while (s && *s && at + 1 < size) {
        int len = cx_printable_len(s);
        if (len == 0) {
            buf[at++] = '?';
            s++;
        } else if (at + (size_t)len < size) {
            memcpy(buf + at, s, (size_t)len);
            at += (size_t)len;
            s += len;
        } else {
            break;                  /* never cut a character in two */
        }
    }
    buf[at] = '\0';
    return buf;
}
