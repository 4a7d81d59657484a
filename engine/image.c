/*
 * Image loading: read the file, recognise the format by its first bytes (never by the
 * name), hand it to its decoder (image_<format>.c), then turn the pixels upright as the
 * decoder's orientation (EXIF, TIFF tag, RAW flip; HEIF is turned by libheif) says.
 *
 * Sniffing trusts nothing: every read below checks the length first. Camera RAW files
 * are mostly TIFF inside (DNG, CR2, NEF, ARW, PEF...), so a TIFF header goes to LibRaw
 * when IFD0 says it is one (a DNGVersion tag, a CFA or LinearRaw photometric, or SubIFDs
 * beside a camera Make, which scanners and editors do not write) or its header is
 * CR2's; everything else TIFF goes to libtiff. ISO-BMFF files go by their brands: AVIF,
 * HEIF (HEIC), Canon CR3 (RAW); any other (MP4 video, QuickTime) is "not an image".
 *
 * Files are read with open/fstat/read into memory rather than mmap: the daemon loads
 * files that other programs may still be writing or truncating, and a truncated mapping
 * would kill the process with SIGBUS instead of giving a "truncated file" error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"

#define DEFAULT_MAX_PIXELS (100LL * 1000 * 1000)
#define DEFAULT_MIN_SIDE 300
/* An image under the pixel limit (RAW files included) is far smaller than this; a bigger file is
 * refused before it is read into memory. */
#define MAX_FILE_BYTES ((off_t)1 << 30)

typedef int (*decoder)(const uint8_t *, size_t, const ce_decode_params *, ce_image *, int *,
                       ce_err *);

static const struct {
    const char *name;
    decoder decode;
} FORMATS[] = {
    [CE__FMT_JPEG] = {"JPEG", ce__decode_jpeg}, [CE__FMT_PNG] = {"PNG", ce__decode_png},
    [CE__FMT_HEIF] = {"HEIF", ce__decode_heif}, [CE__FMT_AVIF] = {"AVIF", ce__decode_heif},
    [CE__FMT_WEBP] = {"WebP", ce__decode_webp}, [CE__FMT_TIFF] = {"TIFF", ce__decode_tiff},
    [CE__FMT_RAW] = {"RAW", ce__decode_raw},    [CE__FMT_GIF] = {"GIF", ce__decode_gif},
};

static int bmff_brand(const uint8_t *d, size_t n);
static int tiff_is_raw(const uint8_t *d, size_t n);
static int read_whole_file(const char *path, uint8_t **data, size_t *size, ce_err *err);
static int apply_orientation(ce_image *img, int orientation, ce_err *err);

int ce_image_load_file(const char *path, const ce_load_options *opt, ce_image *out, ce_err *err)
{
    memset(out, 0, sizeof *out);
    if (!path) {
        ce__image_error(err, "no path given");
        return -EINVAL;
    }
    uint8_t *data = NULL;
    size_t size = 0;
    int rc = read_whole_file(path, &data, &size, err);
    if (rc < 0) return rc;
    rc = ce_image_load_memory(data, size, opt, out, err);
    free(data);
    return rc;
}

int ce_image_load_memory(const void *data, size_t size, const ce_load_options *opt, ce_image *out,
                         ce_err *err)
{
    memset(out, 0, sizeof *out);
    ce_decode_params params = {DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, 0};
    if (opt) {
        if (opt->max_pixels < 0 || opt->min_side < 0) {
            ce__image_error(err, "invalid load options (max_pixels %lld, min_side %d)",
                            (long long)opt->max_pixels, opt->min_side);
            return -EINVAL;
        }
        if (opt->max_pixels > 0) params.max_pixels = opt->max_pixels;
        if (opt->min_side > 0) params.min_side = opt->min_side;
    }
    if (size == 0) {
        ce__image_error(err, "empty file (0 bytes): not an image");
        return -EBADMSG;
    }
    if (!data) {
        ce__image_error(err, "no data given");
        return -EINVAL;
    }

    const char *other = NULL;
    int orientation = 1;
    ce__format fmt = ce__sniff_format(data, size, &other);
    if (fmt == CE__FMT_OTHER) {
        ce__image_error(err, "unsupported image format %s", other);
        return -ENOTSUP;
    }
    if (fmt == CE__FMT_UNKNOWN) {
        ce__image_error(err, "not an image capsearch reads (unrecognised content)");
        return -ENOTSUP;
    }
    int rc = FORMATS[fmt].decode(data, size, &params, out, &orientation, err);
    if (rc < 0) {
        memset(out, 0, sizeof *out);
        return rc;
    }
    rc = apply_orientation(out, orientation, err);
    if (rc < 0) ce_image_free(out);
    else out->format = FORMATS[fmt].name;
    return rc;
}

void ce_image_free(ce_image *img)
{
    if (!img) return;
    free(img->pixels);
    memset(img, 0, sizeof *img);
}

void ce__image_error(ce_err *err, const char *fmt, ...)
{
    if (!err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    /* one line: libraries' messages (libheif's) may end in a newline */
    size_t n = strlen(err->msg);
    while (n > 0 && (err->msg[n - 1] == '\n' || err->msg[n - 1] == ' ')) err->msg[--n] = '\0';
    for (char *p = err->msg; *p; p++)
        if (*p == '\n') *p = ' ';
}

/* ------------------------------------------------------------------ helpers */

static int starts_with(const uint8_t *d, size_t n, const void *magic, size_t len)
{
    return n >= len && memcmp(d, magic, len) == 0;
}

/* JPEG needs only SOI (FF D8) so that a file cut right after it is reported as a
 * truncated JPEG rather than as "not an image"; PNG accepts a partial signature for
 * the same reason. */
ce__format ce__sniff_format(const uint8_t *d, size_t n, const char **name)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (starts_with(d, n, "\xff\xd8", 2)) return CE__FMT_JPEG;
    if (n >= 4 && memcmp(d, png_sig, n < 8 ? n : 8) == 0) return CE__FMT_PNG;
    if (starts_with(d, n, "GIF87a", 6) || starts_with(d, n, "GIF89a", 6)) return CE__FMT_GIF;
    if (n >= 12 && starts_with(d, n, "RIFF", 4) && memcmp(d + 8, "WEBP", 4) == 0)
        return CE__FMT_WEBP;
    if (n >= 12 && memcmp(d + 4, "ftyp", 4) == 0) return (ce__format)bmff_brand(d, n);
    /* RAW formats with their own headers: Fujifilm RAF, Minolta MRW, Sigma X3F, Canon CRW,
     * Olympus ORF and Panasonic RW2 (TIFF-like with their own magic numbers) */
    if (starts_with(d, n, "FUJIFILMCCD-RAW", 15) || starts_with(d, n, "\0MRM", 4) ||
        starts_with(d, n, "FOVb", 4) || (n >= 14 && memcmp(d + 6, "HEAPCCDR", 8) == 0) ||
        starts_with(d, n, "IIRO", 4) || starts_with(d, n, "IIRS", 4) ||
        starts_with(d, n, "MMOR", 4) || starts_with(d, n, "IIU\0", 4))
        return CE__FMT_RAW;
    if (starts_with(d, n, "II*\0", 4) || starts_with(d, n, "MM\0*", 4))
        return tiff_is_raw(d, n) ? CE__FMT_RAW : CE__FMT_TIFF;
    if (starts_with(d, n, "BM", 2) && n >= 26) {
        *name = "BMP";
        return CE__FMT_OTHER;
    }
    return CE__FMT_UNKNOWN;
}

static int brand_is(const uint8_t *b, const char *const *list)
{
    for (; *list; list++)
        if (memcmp(b, *list, 4) == 0) return 1;
    return 0;
}

/* ftyp: box size, "ftyp", major brand, minor version, compatible brands to the box end.
 * A HEVC brand as the major one means HEIC; otherwise (the structural "mif1"/"msf1")
 * an "avif" among the compatible brands means AVIF, as libavif and libheif write it. */
static int bmff_brand(const uint8_t *d, size_t n)
{
    static const char *const avif[] = {"avif", "avis", NULL};
    static const char *const hevc[] = {"heic", "heix", "hevc", "hevx", "heim",
                                       "heis", "hevm", "hevs", NULL};
    static const char *const heif[] = {"mif1", "msf1", "mif2", NULL};
    const uint8_t *major = d + 8;
    if (memcmp(major, "crx ", 4) == 0) return CE__FMT_RAW; /* Canon CR3 */
    if (brand_is(major, avif)) return CE__FMT_AVIF;
    if (brand_is(major, hevc)) return CE__FMT_HEIF;
    uint32_t box = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
    size_t end = box < n ? box : n;
    int any_heif = brand_is(major, heif), any_avif = 0;
    for (size_t at = 16; at + 4 <= end; at += 4) {
        any_avif |= brand_is(d + at, avif);
        any_heif |= brand_is(d + at, hevc) || brand_is(d + at, heif);
    }
    return any_avif ? CE__FMT_AVIF : any_heif ? CE__FMT_HEIF : CE__FMT_UNKNOWN;
}

/* Reads IFD0's tags (bounded: at most 512 entries, each inside the buffer). */
static int tiff_is_raw(const uint8_t *d, size_t n)
{
    if (n < 16) return 0;
    const int be = d[0] == 'M';
    if (d[8] == 'C' && d[9] == 'R') return 1; /* Canon CR2 */
#define U16(p) (be ? (uint32_t)(p)[0] << 8 | (p)[1] : (uint32_t)(p)[1] << 8 | (p)[0])
#define U32(p)                                                                                     \
    (be ? (uint32_t)(p)[0] << 24 | (uint32_t)(p)[1] << 16 | (uint32_t)(p)[2] << 8 | (p)[3]         \
        : (uint32_t)(p)[3] << 24 | (uint32_t)(p)[2] << 16 | (uint32_t)(p)[1] << 8 | (p)[0])
    uint32_t ifd = U32(d + 4);
    if (ifd < 8 || (size_t)ifd + 2 > n) return 0;
    uint32_t count = U16(d + ifd);
    if (count > 512) count = 512;
    int make = 0, subifds = 0;
    for (uint32_t i = 0; i < count; i++) {
        size_t at = (size_t)ifd + 2 + (size_t)i * 12;
        if (at + 12 > n) break;
        uint32_t tag = U16(d + at), type = U16(d + at + 2);
        if (tag == 50706) return 1; /* DNGVersion */
        if (tag == 271) make = 1;
        if (tag == 330) subifds = 1;
        if (tag == 262 && type == 3) {
            uint32_t photometric = U16(d + at + 8);
            if (photometric == 32803 || photometric == 34892) return 1; /* CFA, LinearRaw */
        }
    }
#undef U16
#undef U32
    return make && subifds;
}

static int read_whole_file(const char *path, uint8_t **data, size_t *size, ce_err *err)
{
    /* O_NONBLOCK: opening a FIFO must not hang the caller; it is refused below. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        ce__image_error(err, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        ce__image_error(err, "cannot stat %s: %s", path, strerror(e));
        close(fd);
        return -e;
    }
    if (S_ISDIR(st.st_mode)) {
        ce__image_error(err, "%s is a directory, not an image file", path);
        close(fd);
        return -EISDIR;
    }
    if (!S_ISREG(st.st_mode)) {
        ce__image_error(err, "%s is not a regular file", path);
        close(fd);
        return -EINVAL;
    }
    if (st.st_size > MAX_FILE_BYTES) {
        ce__image_error(err, "%s is too large (%lld bytes; at most %lld)", path,
                        (long long)st.st_size, (long long)MAX_FILE_BYTES);
        close(fd);
        return -E2BIG;
    }
    size_t want = (size_t)st.st_size;
    uint8_t *buf = malloc(want ? want : 1);
    if (!buf) {
        ce__image_error(err, "out of memory reading %s (%zu bytes)", path, want);
        close(fd);
        return -ENOMEM;
    }
    /* A file that shrinks while being read gives fewer bytes: the decoder then reports
     * it as truncated. One that grows is read as it was when stat'ed. */
    size_t got = 0;
    while (got < want) {
        ssize_t r = read(fd, buf + got, want - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            ce__image_error(err, "cannot read %s: %s", path, strerror(e));
            free(buf);
            close(fd);
            return -e;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    *data = buf;
    *size = got;
    return 0;
}

/* EXIF orientation: how the stored pixels must be transformed for display. For each
 * displayed pixel (dx, dy) the source pixel is sx = ax*dx + bx*dy + cx (likewise sy),
 * with the coefficients below for stored size w x h. */
static int apply_orientation(ce_image *img, int orientation, ce_err *err)
{
    if (orientation < 2 || orientation > 8) return 0;
    const int w = img->width, h = img->height;
    const int swap = orientation >= 5;
    const int dw = swap ? h : w, dh = swap ? w : h;
    /* sx = x0 + dx*x_dx + dy*x_dy, sy = y0 + dx*y_dx + dy*y_dy */
    int x0 = 0, x_dx = 0, x_dy = 0, y0 = 0, y_dx = 0, y_dy = 0;
    switch (orientation) {
    case 2:
        x0 = w - 1;
        x_dx = -1;
        y_dy = 1;
        break; /* mirror horizontal */
    case 3:
        x0 = w - 1;
        x_dx = -1;
        y0 = h - 1;
        y_dy = -1;
        break; /* rotate 180 */
    case 4:
        x_dx = 1;
        y0 = h - 1;
        y_dy = -1;
        break; /* mirror vertical */
    case 5:
        x_dy = 1;
        y_dx = 1;
        break; /* transpose */
    case 6:
        x_dy = 1;
        y0 = h - 1;
        y_dx = -1;
        break; /* rotate 90 CW */
    case 7:
        x0 = w - 1;
        x_dy = -1;
        y0 = h - 1;
        y_dx = -1;
        break; /* transverse */
    case 8:
        x0 = w - 1;
        x_dy = -1;
        y_dx = 1;
        break; /* rotate 90 CCW */
    }
    uint8_t *dst = malloc((size_t)w * (size_t)h * 3);
    if (!dst) {
        ce__image_error(err, "out of memory rotating a %dx%d image", w, h);
        return -ENOMEM;
    }
    for (int dy = 0; dy < dh; dy++) {
        uint8_t *drow = dst + (size_t)dy * (size_t)dw * 3;
        for (int dx = 0; dx < dw; dx++) {
            int sx = x0 + dx * x_dx + dy * x_dy;
            int sy = y0 + dx * y_dx + dy * y_dy;
            const uint8_t *s = img->pixels + ((size_t)sy * (size_t)w + (size_t)sx) * 3;
            drow[dx * 3 + 0] = s[0];
            drow[dx * 3 + 1] = s[1];
            drow[dx * 3 + 2] = s[2];
        }
    }
    free(img->pixels);
    img->pixels = dst;
    img->width = dw;
    img->height = dh;
    if (swap) {
        int t = img->source_width;
        img->source_width = img->source_height;
        img->source_height = t;
    }
    return 0;
}
