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

#include "capprintable.h"
#include "caputf8.h"

int cu_printable_len(const char *text)
{
    uint32_t cp;
    int len = cu_utf8_decode((const unsigned char *)text, 4, &cp);
    if (len == 0 || cp < 0x20 || cp == 0x7f) return 0; /* invalid, C0, DEL */
    if (cp >= 0x80 && cp <= 0x9F) return 0;            /* C1 controls */
    return len;
}

void cu_fputs_printable(const char *s, FILE *out)
{
    while (s && *s) {
        int len = cu_printable_len(s);
        if (len == 0) {
            fputc('?', out);
            s++;
        } else {
            fwrite(s, 1, (size_t)len, out);
            s += len;
        }
    }
}

char *cu_printable(const char *s, char *buf, size_t size)
{
    size_t at = 0;
    if (size == 0) return buf;
    while (s && *s && at + 1 < size) {
        int len = cu_printable_len(s);
        if (len == 0) {
            buf[at++] = '?';
            s++;
        } else if (at + (size_t)len < size) {
            memcpy(buf + at, s, (size_t)len);
            at += (size_t)len;
            s += len;
        } else {
            break; /* never cut a character in two */
        }
    }
    buf[at] = '\0';
    return buf;
}
