/*
 * Image loading: read the file, recognise the format by its first bytes (never by the
 * name), hand it to the JPEG or PNG decoder, then turn the pixels upright as the EXIF
 * Orientation says.
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
/* A JPEG or PNG under the pixel limit is far smaller than this; a bigger file is
 * refused before it is read into memory. */
#define MAX_FILE_BYTES ((off_t)1 << 30)

typedef enum { FMT_UNKNOWN, FMT_JPEG, FMT_PNG, FMT_OTHER } image_format;

static image_format sniff_format(const uint8_t *d, size_t n, const char **other_name);
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
    ce_decode_params params = {DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE};
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
    int rc;
    switch (sniff_format(data, size, &other)) {
    case FMT_JPEG: rc = ce__decode_jpeg(data, size, &params, out, &orientation, err); break;
    case FMT_PNG: rc = ce__decode_png(data, size, &params, out, &orientation, err); break;
    case FMT_OTHER:
        ce__image_error(err, "unsupported image format %s (only JPEG and PNG are read)", other);
        return -ENOTSUP;
    default:
        ce__image_error(err, "not a JPEG or PNG image (unrecognised content)");
        return -ENOTSUP;
    }
    if (rc < 0) {
        memset(out, 0, sizeof *out);
        return rc;
    }
    rc = apply_orientation(out, orientation, err);
    if (rc < 0) ce_image_free(out);
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
}

/* ------------------------------------------------------------------ helpers */

static int starts_with(const uint8_t *d, size_t n, const void *magic, size_t len)
{
    return n >= len && memcmp(d, magic, len) == 0;
}

/* JPEG needs only SOI (FF D8) so that a file cut right after it is reported as a
 * truncated JPEG rather than as "not an image"; PNG accepts a partial signature for
 * the same reason. Other well-known formats are named in the error. */
static image_format sniff_format(const uint8_t *d, size_t n, const char **other_name)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (starts_with(d, n, "\xff\xd8", 2)) return FMT_JPEG;
    if (n >= 4 && memcmp(d, png_sig, n < 8 ? n : 8) == 0) return FMT_PNG;

    if (starts_with(d, n, "GIF87a", 6) || starts_with(d, n, "GIF89a", 6)) *other_name = "GIF";
    else if (n >= 12 && starts_with(d, n, "RIFF", 4) && memcmp(d + 8, "WEBP", 4) == 0)
        *other_name = "WebP";
    else if (n >= 12 && memcmp(d + 4, "ftyp", 4) == 0 &&
             (memcmp(d + 8, "heic", 4) == 0 || memcmp(d + 8, "heix", 4) == 0 ||
              memcmp(d + 8, "mif1", 4) == 0 || memcmp(d + 8, "avif", 4) == 0))
        *other_name = "HEIF/AVIF";
    else if (starts_with(d, n, "II*\0", 4) || starts_with(d, n, "MM\0*", 4)) *other_name = "TIFF";
    else if (starts_with(d, n, "BM", 2) && n >= 26) *other_name = "BMP";
    else return FMT_UNKNOWN;
    return FMT_OTHER;
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
