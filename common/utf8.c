/* UTF-8 decoding (caputf8.h states what counts as valid). */
#include "caputf8.h"

int cu_utf8_decode(const unsigned char *s, size_t avail, uint32_t *cp)
{
    static const uint32_t MIN_FOR_LEN[5] = {0, 0, 0x80, 0x800, 0x10000};
    int len;
    uint32_t c;
    if (avail == 0) return 0;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    } else if ((s[0] & 0xE0) == 0xC0) {
        len = 2;
        c = s[0] & 0x1F;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3;
        c = s[0] & 0x0F;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4;
        c = s[0] & 0x07;
    } else return 0;
    if (avail < (size_t)len) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < MIN_FOR_LEN[len] || (c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF) return 0;
    *cp = c;
    return len;
}
