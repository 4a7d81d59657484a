/*
 * Fuzz target: the XMP reader (meta/xmp.c cm_read_packet: Exempi's parser, then our
 * collection of descriptions and keywords). Promises checked: any bytes are refused or
 * read without a crash; what is read is NUL-terminated, valid UTF-8 without control
 * characters but newline and tab, one keyword per line.
 */
#include <string.h>

#include "capmeta.h"
#include "caputf8.h"
#include "fuzz.h"

static void check_text(const char *s, size_t cap, int lines)
{
    if (!memchr(s, '\0', cap)) fuzz_fail("text not terminated");
    uint32_t cp;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int n = cu_utf8_decode(p, 4, &cp);
        if (n == 0) fuzz_fail("invalid UTF-8 in '%s'", s);
        if (cp < 0x20 && !(lines && cp == '\n') && cp != '\t') fuzz_fail("control byte 0x%02x", cp);
        p += n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (cm_init() < 0) fuzz_fail("cm_init");
        ready = 1;
    }
    cm_text t;
    cm_err err = {""};
    if (cm_read_packet((const char *)data, size, &t, &err) == 0) {
        check_text(t.description, sizeof t.description, 1); /* may run over lines */
        check_text(t.keywords, sizeof t.keywords, 1);
        if (t.keywords[0] == '\n' || strstr(t.keywords, "\n\n")) fuzz_fail("an empty keyword");
    }
    return 0;
}
