/*
 * EXIF: the few fields capsearch uses, read from the TIFF structure a camera stores in
 * a JPEG's APP1 segment (or a PNG's eXIf chunk).
 *
 * TIFF layout: an 8-byte header ("II" little-endian or "MM" big-endian, the number 42,
 * the offset of IFD0), then IFDs: a 16-bit entry count, 12-byte entries (tag, type,
 * count, value-or-offset). Values of 4 bytes or less sit in the entry itself.
 * Orientation, DateTime and ImageDescription live in IFD0; DateTimeOriginal and
 * UserComment in the Exif sub-IFD that IFD0's tag 0x8769 points at. Text is kept only
 * when it is valid UTF-8 (ASCII included) without control characters; a UserComment
 * is kept only with the "ASCII" or the undefined (all-NUL) character code, never
 * "UNICODE" or "JIS".
 *
 * Every offset and count comes from the file and is untrusted: each read below goes
 * through read_bytes(), which checks it against the buffer. There is no recursion and
 * at most two IFDs are visited, so a looping IFD chain cannot hang us.
 */
#include <string.h>
#include <time.h>

#include "caputf8.h"
#include "image.h"

enum {
    TAG_ORIENTATION = 0x0112,
    TAG_DATETIME = 0x0132,
    TAG_EXIF_IFD = 0x8769,
    TAG_DATETIME_ORIGINAL = 0x9003,
    TAG_IMAGE_DESCRIPTION = 0x010E,
    TAG_USER_COMMENT = 0x9286,
};
enum { TYPE_ASCII = 2, TYPE_SHORT = 3, TYPE_LONG = 4, TYPE_UNDEFINED = 7 };

#define EXIF_TIME_LEN 19 /* "YYYY:MM:DD HH:MM:SS" */

typedef struct {
    const uint8_t *data;
    size_t size;
    int big_endian;
} tiff_buf;

typedef struct {
    uint32_t tag, type, count;
    size_t value_at; /* offset of the entry's 4-byte value field */
} ifd_entry;

static int read_bytes(const tiff_buf *t, size_t off, size_t len, const uint8_t **p);
static int read_u16(const tiff_buf *t, size_t off, uint32_t *v);
static int read_u32(const tiff_buf *t, size_t off, uint32_t *v);
static int ifd_count(const tiff_buf *t, uint32_t ifd, uint32_t *count);
static int ifd_get(const tiff_buf *t, uint32_t ifd, uint32_t index, ifd_entry *e);
static int entry_uint(const tiff_buf *t, const ifd_entry *e, uint32_t *v);
static int64_t entry_time(const tiff_buf *t, const ifd_entry *e);
static int64_t parse_exif_time(const uint8_t *s);
static void entry_text(const tiff_buf *t, const ifd_entry *e, int user_comment, char *out,
                       size_t size);

void ce__exif_parse(const uint8_t *tiff, size_t size, ce_exif *out)
{
    out->orientation = 1;
    out->taken_time = 0;
    out->description[0] = '\0';
    if (!tiff || size < 8) return;

    tiff_buf t = {tiff, size, 0};
    if (tiff[0] == 'I' && tiff[1] == 'I') t.big_endian = 0;
    else if (tiff[0] == 'M' && tiff[1] == 'M') t.big_endian = 1;
    else return;
    uint32_t magic, ifd0;
    if (!read_u16(&t, 2, &magic) || magic != 42 || !read_u32(&t, 4, &ifd0)) return;

    int64_t datetime = 0, original = 0;
    uint32_t exif_ifd = 0, n;
    ifd_entry e;
    if (ifd_count(&t, ifd0, &n)) {
        for (uint32_t i = 0; i < n && ifd_get(&t, ifd0, i, &e); i++) {
            uint32_t v;
            if (e.tag == TAG_ORIENTATION && entry_uint(&t, &e, &v) && v >= 1 && v <= 8)
                out->orientation = (int)v;
            else if (e.tag == TAG_DATETIME) datetime = entry_time(&t, &e);
            else if (e.tag == TAG_IMAGE_DESCRIPTION)
                entry_text(&t, &e, 0, out->description, sizeof out->description);
            else if (e.tag == TAG_EXIF_IFD && entry_uint(&t, &e, &v)) exif_ifd = v;
        }
    }
    if (exif_ifd && exif_ifd != ifd0 && ifd_count(&t, exif_ifd, &n)) {
        for (uint32_t i = 0; i < n && ifd_get(&t, exif_ifd, i, &e); i++) {
            if (e.tag == TAG_DATETIME_ORIGINAL) original = entry_time(&t, &e);
            else if (e.tag == TAG_USER_COMMENT && !out->description[0])
                entry_text(&t, &e, 1, out->description, sizeof out->description);
        }
    }
    out->taken_time = original ? original : datetime;
}

/* ------------------------------------------------------------------ helpers */

/* ASCII ImageDescription, or UNDEFINED UserComment (8-byte character code first). Empty
 * unless the bytes are valid UTF-8 without control characters; blanks trimmed. */
static void entry_text(const tiff_buf *t, const ifd_entry *e, int user_comment, char *out,
                       size_t size)
{
    out[0] = '\0';
    if (e->type != (user_comment ? TYPE_UNDEFINED : TYPE_ASCII) || e->count == 0) return;
    uint32_t off = 0;
    const uint8_t *p;
    if (e->count <= 4) off = (uint32_t)e->value_at;
    else if (!read_u32(t, e->value_at, &off)) return;
    if (!read_bytes(t, off, e->count, &p)) return;
    size_t n = e->count;
    if (user_comment) {
        static const uint8_t ASCII_CODE[8] = {'A', 'S', 'C', 'I', 'I', 0, 0, 0};
        static const uint8_t UNDEFINED_CODE[8] = {0};
        if (n < 8 || (memcmp(p, ASCII_CODE, 8) && memcmp(p, UNDEFINED_CODE, 8))) return;
        p += 8;
        n -= 8;
    }
    while (n && (p[n - 1] == 0 || p[n - 1] == ' ')) n--;
    while (n && *p == ' ') p++, n--;
    if (n == 0 || n >= size) return;
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        int len = cu_utf8_decode(p + i, n - i, &cp);
        if (len == 0 || cp < 0x20 || cp == 0x7f) return;
        i += (size_t)len;
    }
    memcpy(out, p, n);
    out[n] = '\0';
}

static int read_bytes(const tiff_buf *t, size_t off, size_t len, const uint8_t **p)
{
    if (off > t->size || len > t->size - off) return 0;
    *p = t->data + off;
    return 1;
}

static int read_u16(const tiff_buf *t, size_t off, uint32_t *v)
{
    const uint8_t *p;
    if (!read_bytes(t, off, 2, &p)) return 0;
    *v = t->big_endian ? (uint32_t)p[0] << 8 | p[1] : (uint32_t)p[1] << 8 | p[0];
    return 1;
}

static int read_u32(const tiff_buf *t, size_t off, uint32_t *v)
{
    const uint8_t *p;
    if (!read_bytes(t, off, 4, &p)) return 0;
    if (t->big_endian)
        *v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    else *v = (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
    return 1;
}

static int ifd_count(const tiff_buf *t, uint32_t ifd, uint32_t *count)
{
    return read_u16(t, ifd, count);
}

static int ifd_get(const tiff_buf *t, uint32_t ifd, uint32_t index, ifd_entry *e)
{
    size_t at = (size_t)ifd + 2 + (size_t)index * 12;
    const uint8_t *p;
    if (!read_bytes(t, at, 12, &p)) return 0;
    read_u16(t, at, &e->tag);
    read_u16(t, at + 2, &e->type);
    read_u32(t, at + 4, &e->count);
    e->value_at = at + 8;
    return 1;
}

/* SHORT or LONG, first value (in the entry itself). Some writers use LONG for
 * Orientation; accepting it costs nothing. */
static int entry_uint(const tiff_buf *t, const ifd_entry *e, uint32_t *v)
{
    if (e->count < 1) return 0;
    if (e->type == TYPE_SHORT) return read_u16(t, e->value_at, v);
    if (e->type == TYPE_LONG) return read_u32(t, e->value_at, v);
    return 0;
}

static int64_t entry_time(const tiff_buf *t, const ifd_entry *e)
{
    /* 20 bytes with the NUL, always stored at an offset; a few writers omit the NUL. */
    uint32_t off;
    const uint8_t *s;
    if (e->type != TYPE_ASCII || e->count < EXIF_TIME_LEN) return 0;
    if (!read_u32(t, e->value_at, &off) || !read_bytes(t, off, EXIF_TIME_LEN, &s)) return 0;
    return parse_exif_time(s);
}

/* "YYYY:MM:DD HH:MM:SS", read as UTC (EXIF stores local time without a zone in this
 * field; capsearch shows it back as written). Unknown dates ("0000:00:00 ...", blanks)
 * and impossible ones (Feb 30) give 0. */
static int64_t parse_exif_time(const uint8_t *s)
{
    static const char pattern[] = "dddd:dd:dd dd:dd:dd";
    int v[6] = {0}, field = 0;
    for (int i = 0; i < EXIF_TIME_LEN; i++) {
        if (pattern[i] == 'd') {
            if (s[i] < '0' || s[i] > '9') return 0;
            v[field] = v[field] * 10 + (s[i] - '0');
        } else {
            /* Some cameras write the date with '-' instead of ':'. */
            int ok = s[i] == pattern[i] || (i < 10 && s[i] == '-');
            if (!ok) return 0;
            field++;
        }
    }
    if (v[0] < 1800 || v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 ||
        v[5] > 60)
        return 0;
    struct tm tm = {0};
    tm.tm_year = v[0] - 1900;
    tm.tm_mon = v[1] - 1;
    tm.tm_mday = v[2];
    tm.tm_hour = v[3];
    tm.tm_min = v[4];
    tm.tm_sec = v[5];
    time_t when = timegm(&tm);
    if (tm.tm_mday != v[2]) return 0; /* timegm normalised an impossible day */
    return (int64_t)when;
}
