/*
 * JPEG decoding at 1/8 scale for baseline files: the fast path of image_jpeg.c for
 * camera photos (a 12 MP photo is wanted at 500x375, i.e. libjpeg's scale 1/8).
 *
 * Why not libjpeg-turbo alone: at 1/8 a luma pixel is its block's DC coefficient, yet
 * every AC symbol must still be Huffman-decoded to find where the next block starts.
 * libjpeg-turbo decodes them one at a time, each a table lookup whose result the next
 * lookup waits for; that chain is nearly all of its 28 ms on a 3 MB photo. Here the AC
 * symbols of a block whose values are not needed are skipped several per lookup: a
 * table indexed by the next SKIP_BITS bits says how many bits the whole symbols in them
 * take (codes and extra bits), how far they move in the block, and whether one of them
 * was the end of block.
 *
 * Contract: the pixels are exactly libjpeg-turbo's for the same file with scale 1/8,
 * JDCT_ISLOW and fancy upsampling requested (what image_jpeg.c asks), that is
 *   - luma and 4:4:4 / 4:2:2 / 4:4:0 chroma: jpeg_idct_1x1, (DC * q + 4) >> 3 through
 *     libjpeg's IDCT range-limit table; 4:2:2 and 4:4:0 chroma repeated (at 1/8 libjpeg
 *     turns fancy upsampling off);
 *   - 4:2:0 chroma: the 2x2 reduced IDCT (libjpeg scales chroma up in the IDCT rather
 *     than upsampling it), so these blocks are decoded in full;
 *   - jdcolor.c's YCbCr -> RGB tables; grayscale repeated into R, G and B.
 * tests/image/test_jpeg_eighth.c and the fuzz_image target hold it to libjpeg's bits.
 *
 * Trust rule: it accepts only what it fully understands and DECLINES everything else,
 * leaving the file to libjpeg (which then decodes it, or refuses it with its own
 * message). Declined: frames other than SOF0/SOF1 (progressive, lossless, arithmetic,
 * 12-bit), component counts other than 1 and 3, an Adobe APP14 marker or components
 * named R, G, B (colour transforms), sampling other than 4:4:4, 4:2:2, 4:4:0, 4:2:0, a
 * scan other than one interleaved sequential scan of every component in frame order,
 * missing or invalid tables, a code not in its table, data that runs out before the
 * last block, a restart marker out of order, anything but EOI after the scan, and any
 * marker this file does not know. So a file it accepts is one libjpeg accepts too.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

#define FAST_BITS 9  /* codes up to this long decode in one lookup */
#define SKIP_BITS 12 /* window of the AC skip table: 4096 entries, 8 KB (11..14 within noise) */
#define WINDOW_BYTES (64 * 1024) /* unstuffed entropy-coded bytes held at a time */
#define AHEAD_BYTES 8192    /* held ahead of the reader at each MCU: one reads at most ~1.6 KB */
#define PAD_BYTES 4096      /* zeros after a segment's last byte, for the same reason */
#define MAX_DIMENSION 65500 /* libjpeg's JPEG_MAX_DIMENSION */
#define IDCT_Z_LIMIT 2048   /* |dequantised coefficient| of a 2x2 IDCT block: see idct_2x2 */

/* A skip entry: bits 0-4 the bits its whole symbols take, 5-10 how many coefficients
 * they move by (at most 63), bit 11 set when the last of them is the end of block. */
#define SKIP_EOB (1u << 11)

typedef struct {
    uint16_t fast[1 << FAST_BITS]; /* (length << 8) | symbol; 0: longer than FAST_BITS */
    int32_t maxcode[18];           /* largest code of each length; -1 when none */
    int32_t valoffset[18];         /* symbols[code + valoffset[len]] */
    uint8_t symbols[256];
    uint16_t *skip; /* AC tables of DC-only components: entries as above */
    int defined;
} huff_table;

typedef struct {
    int id, h, v, quant;    /* from SOF */
    int dc_table, ac_table; /* from SOS */
    int scale;              /* pixels per block side at 1/8: 1, or 2 for 4:2:0 chroma */
    int blocks_w, blocks_h; /* blocks across and down, padded to whole MCUs */
    int plane_w;            /* pixels per plane row: blocks_w * scale */
    uint8_t *plane;         /* the component at 1/8, blocks_h * scale rows */
    uint16_t q[64];         /* its quantisation table, natural order, latched at SOS */
    int pred;               /* DC predictor */
} component;

typedef struct {
    const uint8_t *p; /* next byte to load, in decoder.window */
    uint64_t bits;    /* unread bits, most significant first */
    int count;        /* how many of them are valid: 56..63 after a refill */
} bit_reader;

typedef struct {
    const uint8_t *data;
    size_t size, pos;
    huff_table dc[4], ac[4];
    uint16_t quant[4][64];
    int quant_defined[4];
    component comp[3];
    int ncomp, width, height, hmax, vmax;
    int restart_interval;
    int saw_sof;
    const uint8_t *exif;
    size_t exif_size;
    /* The current entropy-coded segment (up to the next marker), unstuffed, a window of
     * it at a time: window[0] is its byte window_base, `filled` bytes are valid, and
     * when segment_done they are its last, followed by PAD_BYTES of zeros. */
    uint8_t *window;
    size_t window_base, filled;
    int segment_done, marker; /* marker: the one that ended it; -1 the file's end */
} decoder;

enum { DECLINE = 1 };

static int read_header(decoder *d);
static int decode_scan(decoder *d);
static int decode_mcu(decoder *d, bit_reader *br, int mcu_x, int mcu_y);
static void to_rgb(const decoder *d, uint8_t *rgb, int w, int h);
static int build_huff(huff_table *t, const uint8_t counts[16], const uint8_t *symbols, int n,
                      int is_dc);
static int build_skip(huff_table *t);
static void fill_window(decoder *d);
static int idct_2x2(const int16_t coef[64], const uint16_t q[64], uint8_t *out, int stride);
static inline uint8_t range_limit(int v);

/* Zigzag position -> natural position, with libjpeg's 16 extra entries so that a run
 * past the end of a damaged block lands on coefficient 63 as it does there. */
static const uint8_t natural_order[64 + 16] = {
    0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,  12, 19, 26, 33,
    40, 48, 41, 34, 27, 20, 13, 6,  7,  14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36,
    29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54,
    47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63};

int ce__jpeg_decode_eighth(const uint8_t *data, size_t size, ce__jpeg_eighth *out)
{
    decoder *d = calloc(1, sizeof *d);
    if (!d) return -ENOMEM;
    d->data = data;
    d->size = size;
    int rc = read_header(d);
    if (rc == 0) rc = decode_scan(d);
    if (rc == 0) {
        const int w = (d->width + 7) / 8, h = (d->height + 7) / 8;
        out->pixels = malloc((size_t)w * (size_t)h * 3);
        if (out->pixels) {
            to_rgb(d, out->pixels, w, h);
            out->width = w;
            out->height = h;
            out->exif = d->exif;
            out->exif_size = d->exif_size;
        } else {
            rc = -ENOMEM;
        }
    }
    for (int i = 0; i < 4; i++) free(d->ac[i].skip);
    for (int c = 0; c < 3; c++) free(d->comp[c].plane);
    free(d->window);
    free(d);
    return rc;
}

/* ------------------------------------------------------------------ markers */

static unsigned be16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }

static int read_dqt(decoder *d, const uint8_t *p, size_t n)
{
    while (n > 0) {
        const int precision = p[0] >> 4, id = p[0] & 15;
        const size_t need = 1 + (precision ? 128 : 64);
        if (precision > 1 || id > 3 || n < need) return DECLINE;
        for (int i = 0; i < 64; i++) {
            const unsigned v = precision ? be16(p + 1 + 2 * i) : p[1 + i];
            /* libjpeg keeps quantisers in 16-bit signed ints; past 2047 its 2x2 IDCT's
             * int arithmetic could overflow. Real tables stay far below. */
            if (v == 0 || v > 2047) return DECLINE;
            d->quant[id][natural_order[i]] = (uint16_t)v;
        }
        d->quant_defined[id] = 1;
        p += need;
        n -= need;
    }
    return 0;
}

static int read_dht(decoder *d, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (n < 17) return DECLINE;
        const int is_ac = p[0] >> 4, id = p[0] & 15;
        if (is_ac > 1 || id > 3) return DECLINE;
        int total = 0;
        for (int i = 0; i < 16; i++) total += p[1 + i];
        if (total > 256 || n < 17 + (size_t)total) return DECLINE;
        huff_table *t = is_ac ? &d->ac[id] : &d->dc[id];
        free(t->skip); /* a redefinition before the scan: its skip table is built later */
        t->skip = NULL;
        if (build_huff(t, p + 1, p + 17, total, !is_ac)) return DECLINE;
        p += 17 + total;
        n -= 17 + (size_t)total;
    }
    return 0;
}

static int read_sof(decoder *d, const uint8_t *p, size_t n)
{
    if (d->saw_sof || n < 6 || p[0] != 8) return DECLINE;
    d->saw_sof = 1;
    d->height = (int)be16(p + 1);
    d->width = (int)be16(p + 3);
    d->ncomp = p[5];
    if (d->width < 1 || d->height < 1 || d->width > MAX_DIMENSION || d->height > MAX_DIMENSION)
        return DECLINE;
    if ((d->ncomp != 1 && d->ncomp != 3) || n != 6 + 3 * (size_t)d->ncomp) return DECLINE;
    for (int c = 0; c < d->ncomp; c++) {
        component *k = &d->comp[c];
        k->id = p[6 + 3 * c];
        k->h = p[7 + 3 * c] >> 4;
        k->v = p[7 + 3 * c] & 15;
        k->quant = p[8 + 3 * c];
        if (k->quant > 3) return DECLINE;
        for (int o = 0; o < c; o++)
            if (d->comp[o].id == k->id) return DECLINE;
    }
    if (d->ncomp == 1) {
        if (d->comp[0].h != 1 || d->comp[0].v != 1) return DECLINE;
    } else {
        /* 4:4:4, 4:2:2, 4:4:0 or 4:2:0: chroma 1x1, luma 1x1, 2x1, 1x2 or 2x2 */
        const component *y = &d->comp[0];
        for (int c = 1; c < 3; c++)
            if (d->comp[c].h != 1 || d->comp[c].v != 1) return DECLINE;
        if (y->h < 1 || y->v < 1 || y->h > 2 || y->v > 2) return DECLINE;
        if (d->comp[0].id == 'R' && d->comp[1].id == 'G' && d->comp[2].id == 'B') return DECLINE;
    }
    d->hmax = d->comp[0].h;
    d->vmax = d->comp[0].v;
    return 0;
}

static int read_sos(decoder *d, const uint8_t *p, size_t n)
{
    if (!d->saw_sof || n < 1 || p[0] != d->ncomp || n != 4 + 2 * (size_t)d->ncomp) return DECLINE;
    for (int c = 0; c < d->ncomp; c++) {
        component *k = &d->comp[c];
        if (p[1 + 2 * c] != k->id) return DECLINE; /* every component, in frame order */
        k->dc_table = p[2 + 2 * c] >> 4;
        k->ac_table = p[2 + 2 * c] & 15;
        if (k->dc_table > 3 || k->ac_table > 3) return DECLINE;
        if (!d->dc[k->dc_table].defined || !d->ac[k->ac_table].defined) return DECLINE;
        if (!d->quant_defined[k->quant]) return DECLINE;
        memcpy(k->q, d->quant[k->quant], sizeof k->q);
    }
    const uint8_t *s = p + 1 + 2 * d->ncomp; /* Ss, Se, Ah/Al of a sequential scan */
    if (s[0] != 0 || s[1] != 63 || s[2] != 0) return DECLINE;
    return 0;
}

/* Walks the markers from SOI to the scan; d->pos ends on the first entropy-coded byte. */
static int read_header(decoder *d)
{
    const uint8_t *data = d->data;
    if (d->size < 4 || data[0] != 0xff || data[1] != 0xd8) return DECLINE;
    size_t pos = 2;
    int saw_adobe = 0;
    for (;;) {
        if (pos + 4 > d->size || data[pos] != 0xff) return DECLINE;
        while (pos + 4 <= d->size && data[pos + 1] == 0xff) pos++; /* fill bytes */
        if (pos + 4 > d->size) return DECLINE;
        const int marker = data[pos + 1];
        const size_t len = be16(data + pos + 2);
        if (len < 2 || pos + 2 + len > d->size) return DECLINE;
        const uint8_t *p = data + pos + 4;
        const size_t n = len - 2;
        int rc = 0;
        if (marker == 0xc0 || marker == 0xc1) {
            rc = read_sof(d, p, n);
        } else if (marker == 0xc4) {
            rc = read_dht(d, p, n);
        } else if (marker == 0xdb) {
            rc = read_dqt(d, p, n);
        } else if (marker == 0xdd) {
            if (n != 2) return DECLINE;
            d->restart_interval = (int)be16(p);
        } else if (marker == 0xda) {
            rc = read_sos(d, p, n);
            if (rc == 0 && saw_adobe) rc = DECLINE;
            d->pos = pos + 2 + len;
            return rc;
        } else if (marker >= 0xe0 && marker <= 0xef) {
            if (marker == 0xe1 && !d->exif && n >= 6 && memcmp(p, "Exif\0\0", 6) == 0) {
                d->exif = p + 6;
                d->exif_size = n - 6;
            }
            if (marker == 0xee && n >= 5 && memcmp(p, "Adobe", 5) == 0) saw_adobe = 1;
        } else if (marker != 0xfe) { /* COM is skipped; anything else is libjpeg's */
            return DECLINE;
        }
        if (rc) return rc;
        pos += 2 + len;
    }
}

/* ------------------------------------------------------------------ the scan */

static int decode_scan(decoder *d)
{
    const int interleaved = d->ncomp > 1;
    const int mcus_w =
        interleaved ? (d->width + 8 * d->hmax - 1) / (8 * d->hmax) : (d->width + 7) / 8;
    const int mcus_h =
        interleaved ? (d->height + 8 * d->vmax - 1) / (8 * d->vmax) : (d->height + 7) / 8;
    for (int c = 0; c < d->ncomp; c++) {
        component *k = &d->comp[c];
        /* libjpeg: chroma of 4:2:0 is scaled up by a 2x2 IDCT instead of upsampled */
        k->scale = (c > 0 && d->hmax == 2 && d->vmax == 2) ? 2 : 1;
        k->blocks_w = mcus_w * k->h;
        k->blocks_h = mcus_h * k->v;
        k->plane_w = k->blocks_w * k->scale;
        k->plane = malloc((size_t)k->plane_w * (size_t)(k->blocks_h * k->scale));
        if (!k->plane) return -ENOMEM;
        if (k->scale == 1 && !d->ac[k->ac_table].skip) {
            int rc = build_skip(&d->ac[k->ac_table]);
            if (rc) return rc;
        }
    }
    d->window = malloc(WINDOW_BYTES + PAD_BYTES);
    if (!d->window) return -ENOMEM;

    const long total = (long)mcus_w * mcus_h;
    const long interval = d->restart_interval > 0 ? d->restart_interval : total;
    long done = 0;
    for (int restart = 0; done < total; restart++) {
        d->window_base = d->filled = 0;
        d->segment_done = 0;
        fill_window(d);
        bit_reader br = {.p = d->window, .bits = 0, .count = 0};
        for (int c = 0; c < d->ncomp; c++) d->comp[c].pred = 0;
        const long end = done + interval < total ? done + interval : total;
        for (; done < end; done++) {
            if (!d->segment_done) {
                const size_t at = (size_t)(br.p - d->window);
                if (d->filled - at < AHEAD_BYTES) { /* slide the window */
                    memmove(d->window, br.p, d->filled - at);
                    d->window_base += at;
                    d->filled -= at;
                    br.p = d->window;
                    fill_window(d);
                }
            }
            if (decode_mcu(d, &br, (int)(done % mcus_w), (int)(done / mcus_w))) return DECLINE;
            /* Past the segment's end libjpeg would be reading the marker's zeros. Until the
             * window holds the end, AHEAD_BYTES were ahead of this MCU: it cannot be there. */
            if (d->segment_done) {
                const size_t at = (size_t)(br.p - d->window);
                if ((d->window_base + at) * 8 - (size_t)br.count > (d->window_base + d->filled) * 8)
                    return DECLINE;
            }
        }
        /* The interval's data ended over a window before its marker: libjpeg would skip
         * those bytes as extraneous data; rare enough to leave to it. */
        if (!d->segment_done) return DECLINE;
        if (done < total && d->marker != 0xd0 + (restart & 7)) return DECLINE;
        if (done == total && d->marker != 0xd9) return DECLINE; /* EOI, nothing else */
    }
    return 0;
}

/* Unstuffs entropy-coded bytes from d->pos into the window until it is full or the
 * segment ends: FF 00 (and FF FF.. 00, which libjpeg also reads so) is one FF byte, FF
 * followed by anything else the marker that ends the segment, and d->pos moves past it. */
static void fill_window(decoder *d)
{
    const uint8_t *p = d->data + d->pos, *end = d->data + d->size;
    uint8_t *out = d->window + d->filled, *const out_end = d->window + WINDOW_BYTES;
    while (out < out_end && !d->segment_done) {
        const size_t room = (size_t)(out_end - out), avail = (size_t)(end - p);
        const size_t n = room < avail ? room : avail;
        const uint8_t *ff = n ? memchr(p, 0xff, n) : NULL;
        if (!ff) {
            memcpy(out, p, n);
            out += n;
            p += n;
            if (p == end) d->segment_done = 1, d->marker = -1;
            continue;
        }
        memcpy(out, p, (size_t)(ff - p)); /* ff < p + room: one byte of room is left */
        out += ff - p;
        const uint8_t *q = ff + 1;
        while (q < end && *q == 0xff) q++;
        if (q == end) {
            p = end;
            d->segment_done = 1, d->marker = -1;
        } else if (*q == 0) {
            *out++ = 0xff;
            p = q + 1;
        } else {
            p = q + 1;
            d->segment_done = 1, d->marker = *q;
        }
    }
    d->filled = (size_t)(out - d->window);
    d->pos = (size_t)(p - d->data);
    if (d->segment_done) memset(out, 0, PAD_BYTES);
}

/* ------------------------------------------------------------------ bits and codes */

static inline uint64_t load_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}

/* Tops the reader up to 56..63 bits: one unaligned load, no branch (AHEAD_BYTES of the
 * segment or its PAD_BYTES of zeros follow, so the load never runs past the window). */
static inline void refill(bit_reader *br)
{
    br->bits |= load_be64(br->p) >> br->count;
    br->p += (63 - br->count) >> 3;
    br->count |= 56;
}

static inline void consume(bit_reader *br, int n)
{
    br->bits <<= n;
    br->count -= n;
}

/* The next n (1..16) bits as a signed coefficient (JPEG's EXTEND). */
static inline int take_signed(bit_reader *br, int n)
{
    const int v = (int)(br->bits >> (64 - n));
    consume(br, n);
    return v < (1 << (n - 1)) ? v - (1 << n) + 1 : v;
}

/* The next symbol of table t, or -1 for a code that is not in it. Needs a refill
 * before: codes are at most 16 bits. */
static inline int decode_symbol(bit_reader *br, const huff_table *t)
{
    const unsigned e = t->fast[br->bits >> (64 - FAST_BITS)];
    if (e) {
        consume(br, (int)(e >> 8));
        return (int)(e & 0xff);
    }
    for (int len = FAST_BITS + 1; len <= 16; len++) {
        const int32_t code = (int32_t)(br->bits >> (64 - len));
        if (code <= t->maxcode[len]) {
            consume(br, len);
            return t->symbols[code + t->valoffset[len]];
        }
    }
    return -1;
}

/* One block's DC: the predictor moves by the coded difference; libjpeg stores the sum
 * as a 16-bit coefficient. */
static inline int decode_dc(bit_reader *br, component *k, const huff_table *t, int *dc)
{
    refill(br);
    const int s = decode_symbol(br, t);
    if (s < 0) return 1;
    if (s) k->pred += take_signed(br, s);
    if (k->pred > (1 << 20) || k->pred < -(1 << 20)) return 1; /* no real file gets here */
    *dc = (int16_t)k->pred;
    return 0;
}

/* The AC symbols of a block whose pixel is its DC alone: skipped, several at a time. */
static inline int skip_ac(bit_reader *br, const huff_table *t)
{
    int k = 1;
    while (k < 64) {
        refill(br);
        const unsigned e = t->skip[br->bits >> (64 - SKIP_BITS)];
        const int adv = (int)(e >> 5) & 63;
        if ((e & 31) && k + adv <= 63) {
            consume(br, (int)(e & 31));
            k += adv;
            if (e & SKIP_EOB) return 0;
            continue;
        }
        /* near the block's end, or a symbol longer than the window: one at a time */
        const int sym = decode_symbol(br, t);
        if (sym < 0) return 1;
        const int r = sym >> 4, s = sym & 15;
        if (s) {
            consume(br, s);
            k += r + 1;
        } else if (r == 15) {
            k += 16;
        } else {
            return 0;
        }
    }
    return 0;
}

/* A block decoded in full (the 4:2:0 chroma), into natural order. *z_or: the OR of
 * the dequantised magnitudes |coefficient * q|, which is below a power of two exactly
 * when each of them is. */
static inline int read_ac(bit_reader *br, const huff_table *t, const uint16_t q[64],
                          int16_t coef[64], int *z_or)
{
    int magnitudes = 0;
    for (int k = 1; k < 64; k++) {
        refill(br);
        const int sym = decode_symbol(br, t);
        if (sym < 0) return 1;
        const int r = sym >> 4, s = sym & 15;
        if (s) {
            k += r;
            const int at = natural_order[k], v = take_signed(br, s);
            coef[at] = (int16_t)v;
            magnitudes |= (v < 0 ? -v : v) * q[at];
        } else if (r == 15) {
            k += 15;
        } else {
            break;
        }
    }
    *z_or |= magnitudes;
    return 0;
}

static int decode_mcu(decoder *d, bit_reader *br, int mcu_x, int mcu_y)
{
    for (int c = 0; c < d->ncomp; c++) {
        component *k = &d->comp[c];
        const huff_table *dct = &d->dc[k->dc_table], *act = &d->ac[k->ac_table];
        for (int by = 0; by < k->v; by++) {
            for (int bx = 0; bx < k->h; bx++) {
                const int x = mcu_x * k->h + bx, y = mcu_y * k->v + by;
                int dc;
                if (decode_dc(br, k, dct, &dc)) return 1;
                if (k->scale == 1) {
                    if (skip_ac(br, act)) return 1;
                    /* jpeg_idct_1x1: the block's mean, (DC * q + 4) >> 3 */
                    const int v = (dc * k->q[0] + 4) >> 3;
                    k->plane[(size_t)y * (size_t)k->plane_w + (size_t)x] = range_limit(v);
                } else {
                    int16_t coef[64] = {0};
                    coef[0] = (int16_t)dc;
                    int z_or = (dc < 0 ? -dc : dc) * k->q[0];
                    if (read_ac(br, act, k->q, coef, &z_or)) return 1;
                    /* the range in which libjpeg's two 2x2 IDCTs agree (see idct_2x2) */
                    if (z_or >= IDCT_Z_LIMIT) return 1;
                    if (idct_2x2(coef, k->q,
                                 k->plane + (size_t)(2 * y) * (size_t)k->plane_w + 2 * x,
                                 k->plane_w))
                        return 1;
                }
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ tables */

/* Canonical codes from the 16 counts, refused as libjpeg refuses them: more than 256
 * symbols, a code of all ones (the counts overflow their length), a DC size over 15. */
static int build_huff(huff_table *t, const uint8_t counts[16], const uint8_t *symbols, int n,
                      int is_dc)
{
    memset(t->fast, 0, sizeof t->fast);
    memcpy(t->symbols, symbols, (size_t)n);
    if (is_dc)
        for (int i = 0; i < n; i++)
            if (symbols[i] > 15) return 1;
    int32_t code = 0;
    int k = 0;
    for (int len = 1; len <= 16; len++) {
        const int count = counts[len - 1];
        if (code + count >= (int32_t)1 << len) return 1; /* checked before any is stored */
        t->valoffset[len] = k - code;
        for (int i = 0; i < count; i++, k++, code++) {
            if (len <= FAST_BITS) {
                const int shift = FAST_BITS - len;
                for (int f = 0; f < 1 << shift; f++)
                    t->fast[(code << shift) | f] = (uint16_t)(len << 8 | symbols[k]);
            }
        }
        t->maxcode[len] = count ? code - 1 : -1;
        code <<= 1;
    }
    t->maxcode[17] = INT32_MAX;
    t->defined = 1;
    return 0;
}

/* For every SKIP_BITS-bit window: the whole AC symbols at its start, up to and
 * including an end of block, as long as they move at most 63 coefficients. */
static int build_skip(huff_table *t)
{
    t->skip = malloc(sizeof(uint16_t) << SKIP_BITS);
    if (!t->skip) return -ENOMEM;
    for (uint32_t w = 0; w < 1u << SKIP_BITS; w++) {
        int pos = 0, adv = 0, eob = 0;
        for (;;) {
            int sym = -1, len;
            for (len = 1; len <= 16 && pos + len <= SKIP_BITS; len++) {
                const int32_t code = (int32_t)((w >> (SKIP_BITS - pos - len)) & ((1u << len) - 1));
                if (code <= t->maxcode[len]) {
                    sym = t->symbols[code + t->valoffset[len]];
                    break;
                }
            }
            if (sym < 0) break; /* not whole in the window (or not a code) */
            const int r = sym >> 4, s = sym & 15;
            if (s == 0 && r != 15) {
                pos += len;
                eob = 1;
                break;
            }
            const int step = s ? r + 1 : 16;
            if (pos + len + s > SKIP_BITS || adv + step > 63) break;
            pos += len + s;
            adv += step;
        }
        t->skip[w] = (uint16_t)(pos | adv << 5 | (eob ? SKIP_EOB : 0));
    }
    return 0;
}

/* libjpeg's post-IDCT range limit (jdmaster.c's table, indexed by value & 1023): the
 * value, wrapped into -512..511 as that index wraps it, plus 128, clamped to 0..255. */
static inline uint8_t range_limit(int v)
{
    const int wrapped = ((v + 512) & 1023) - 512 + 128;
    return (uint8_t)(wrapped < 0 ? 0 : wrapped > 255 ? 255 : wrapped);
}

/* ------------------------------------------------------------------ pixels */

/* libjpeg's 2x2 reduced IDCT (13-bit constants, 2 bits kept between passes): only
 * rows and columns 0, 1, 3, 5, 7 of the coefficients reach a 2x2 output. libjpeg-turbo
 * has two of them that agree only within a range: jidctred.c (int and 64-bit arithmetic,
 * output through the wrapping range-limit table) and the SSE2 one x86-64 uses (16-bit
 * dequantisation and odd pass-1 results, 32-bit sums, saturated output). The caller
 * passes only blocks whose dequantised coefficients are below IDCT_Z_LIMIT: then every
 * pass-1 result is within +-21430 and every sum within 32 bits, so both compute exactly
 * this. An output beyond -512..511 (where the two would part) returns 1; a real photo
 * stays far inside all of it. A column or row whose odd terms are all zero takes the
 * short way both take (the full formula's value). */
static int idct_2x2(const int16_t coef[64], const uint16_t q[64], uint8_t *out, int stride)
{
    enum { CONST_BITS = 13, PASS1_BITS = 2 };
    const int32_t c1 = 29692, c3 = -10426, c5 = 6967, c7 = -5906;
    static const int cols[5] = {0, 1, 3, 5, 7};
    int32_t ws[16];
    for (int i = 0; i < 5; i++) {
        const int col = cols[i];
        const int16_t *in = coef + col;
        const uint16_t *qc = q + col;
        const int32_t z0 = in[0] * qc[0];
        if ((in[8] | in[24] | in[40] | in[56]) == 0) {
            ws[col] = ws[8 + col] = z0 * (1 << PASS1_BITS);
            continue;
        }
        const int shift = CONST_BITS - PASS1_BITS + 2;
        const int32_t even = z0 * (1 << (CONST_BITS + 2));
        const int32_t odd =
            in[56] * qc[56] * c7 + in[40] * qc[40] * c5 + in[24] * qc[24] * c3 + in[8] * qc[8] * c1;
        ws[col] = (even + odd + (1 << (shift - 1))) >> shift;
        ws[8 + col] = (even - odd + (1 << (shift - 1))) >> shift;
    }
    int bad = 0;
    for (int row = 0; row < 2; row++) {
        const int32_t *w = ws + 8 * row;
        int left, right;
        if ((w[1] | w[3] | w[5] | w[7]) == 0) {
            left = right = (w[0] + (1 << (PASS1_BITS + 2))) >> (PASS1_BITS + 3);
        } else {
            const int shift = CONST_BITS + PASS1_BITS + 3 + 2;
            const int32_t even = w[0] * (1 << (CONST_BITS + 2));
            const int32_t odd = w[7] * c7 + w[5] * c5 + w[3] * c3 + w[1] * c1;
            left = (even + odd + (1 << (shift - 1))) >> shift;
            right = (even - odd + (1 << (shift - 1))) >> shift;
        }
        bad |= (unsigned)(left + 512) > 1023 || (unsigned)(right + 512) > 1023;
        uint8_t *o = out + (size_t)row * (size_t)stride;
        o[0] = range_limit(left);
        o[1] = range_limit(right);
    }
    return bad;
}

/* jdcolor.c's ycc_rgb_convert: 16-bit fixed point, tables rounded as libjpeg rounds them. */
static void to_rgb(const decoder *d, uint8_t *rgb, int w, int h)
{
    if (d->ncomp == 1) {
        const component *g = &d->comp[0];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                const uint8_t v = g->plane[(size_t)y * (size_t)g->plane_w + (size_t)x];
                uint8_t *o = rgb + ((size_t)y * (size_t)w + (size_t)x) * 3;
                o[0] = o[1] = o[2] = v;
            }
        return;
    }
    enum { SCALEBITS = 16 };
    const int32_t half = 1 << (SCALEBITS - 1);
    const int32_t fix_cr_r = 91881, fix_cb_b = 116130, fix_cr_g = 46802, fix_cb_g = 22554;
    int cr_r[256], cb_b[256];
    int32_t cr_g[256], cb_g[256];
    for (int i = 0; i < 256; i++) {
        const int32_t x = i - 128;
        cr_r[i] = (fix_cr_r * x + half) >> SCALEBITS;
        cb_b[i] = (fix_cb_b * x + half) >> SCALEBITS;
        cr_g[i] = -fix_cr_g * x;
        cb_g[i] = -fix_cb_g * x + half;
    }
    const component *Y = &d->comp[0], *Cb = &d->comp[1], *Cr = &d->comp[2];
    /* 4:2:2 and 4:4:0 chroma is repeated across / down (libjpeg's h2v1_upsample and
     * int_upsample); 4:2:0 chroma came out of its 2x2 IDCT at full size */
    const int hshift = Cb->scale == 2 ? 0 : d->hmax - 1, vshift = Cb->scale == 2 ? 0 : d->vmax - 1;
    for (int y = 0; y < h; y++) {
        const uint8_t *py = Y->plane + (size_t)y * (size_t)Y->plane_w;
        const uint8_t *pb = Cb->plane + (size_t)(y >> vshift) * (size_t)Cb->plane_w;
        const uint8_t *pr = Cr->plane + (size_t)(y >> vshift) * (size_t)Cr->plane_w;
        uint8_t *o = rgb + (size_t)y * (size_t)w * 3;
        for (int x = 0; x < w; x++) {
            const int yy = py[x], cb = pb[x >> hshift], cr = pr[x >> hshift];
            const int r = yy + cr_r[cr];
            const int g = yy + (int)((cb_g[cb] + cr_g[cr]) >> SCALEBITS);
            const int b = yy + cb_b[cb];
            o[3 * x + 0] = (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
            o[3 * x + 1] = (uint8_t)(g < 0 ? 0 : g > 255 ? 255 : g);
            o[3 * x + 2] = (uint8_t)(b < 0 ? 0 : b > 255 ? 255 : b);
        }
    }
}
