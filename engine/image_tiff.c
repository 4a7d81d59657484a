/*
 * TIFF decoding through libtiff 4.5: the first page (directory 0) only.
 *
 * - libtiff's RGBA interface does the colour work: 1/2/4/8/16-bit gray and RGB (16-bit
 *   samples keep their high byte), palette, YCbCr (JPEG-in-TIFF), CMYK (InkSet CMYK,
 *   8-bit) and alpha, every compression libtiff was built with. Alpha is composited over
 *   white by the scaler (image_scale.c).
 * - Orientation: the pixels are fetched as stored (libtiff is told the file is top-left,
 *   so it flips nothing) and the Orientation tag is applied by image.c like an EXIF one;
 *   TIFF and EXIF use the same values 1..8. The tag and the dates are read by exif.c from
 *   the file itself: a TIFF file is the structure an EXIF block is.
 * - Errors and warnings go to per-file handlers (TIFFOpenOptions, libtiff >= 4.5), never
 *   to stderr and never through libtiff's process-wide handlers, which the daemon's
 *   worker threads would share. libtiff's single allocations are capped.
 * - Trust: the header's ImageWidth x ImageLength is checked against max_pixels before the
 *   w x h x 4 raster is allocated; all reads come from the memory buffer through
 *   bounds-checked callbacks. Rejections: a layout libtiff's RGBA interface cannot read
 *   (-ENOTSUP, e.g. 16-bit CMYK), corrupt or truncated (-EBADMSG), over the limit
 *   (-E2BIG), no memory (-ENOMEM).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tiffio.h>

#include "image.h"

/* No single libtiff allocation (strip, tile, tag array) may be larger than this. */
#define MAX_ALLOC_BYTES ((tmsize_t)256 << 20)

typedef struct {
    const uint8_t *data;
    size_t size, pos;
    int failed; /* libtiff reported an error */
    char msg[CE_ERR_MAX];
} tiff_src;

static tsize_t src_read(thandle_t h, tdata_t buf, tsize_t n);
static tsize_t src_write(thandle_t h, tdata_t buf, tsize_t n);
static toff_t src_seek(thandle_t h, toff_t off, int whence);
static int src_close(thandle_t h);
static toff_t src_size(thandle_t h);
static int src_map(thandle_t h, tdata_t *base, toff_t *size);
static void src_unmap(thandle_t h, tdata_t base, toff_t size);
/* fmt is libtiff's own printf format; the attribute lets the compiler check it as one */
__attribute__((format(printf, 4, 0)))
static int on_error(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap);
static int on_warning(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap);
static int read_raster(TIFF *tif, tiff_src *src, uint32_t w, uint32_t h,
                       const ce_decode_params *params, ce_image *img, ce_err *err);

int ce__decode_tiff(const uint8_t *data, size_t size, const ce_decode_params *params, ce_image *img,
                    int *orientation, ce_err *err)
{
    tiff_src src = {.data = data, .size = size};
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    if (!opts) {
        ce__image_error(err, "out of memory starting libtiff");
        return -ENOMEM;
    }
    TIFFOpenOptionsSetErrorHandlerExtR(opts, on_error, &src);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, on_warning, &src);
    TIFFOpenOptionsSetMaxSingleMemAlloc(opts, MAX_ALLOC_BYTES);
    /* "rm": read, never memory-map (the map callback refuses anyway) */
    TIFF *tif = TIFFClientOpenExt("image", "rm", &src, src_read, src_write, src_seek, src_close,
                                  src_size, src_map, src_unmap, opts);
    TIFFOpenOptionsFree(opts);
    if (!tif) {
        ce__image_error(err, "corrupt or truncated TIFF: %s",
                        src.msg[0] ? src.msg : "libtiff cannot open it");
        return -EBADMSG;
    }
    uint32_t w = 0, h = 0;
    TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w);
    TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h);
    int rc = ce__image_check_size("TIFF", w, h, params, err);
    if (rc == 0) rc = read_raster(tif, &src, w, h, params, img, err);
    TIFFClose(tif);
    if (rc < 0) return rc;

    ce_exif exif;
    ce__exif_parse(data, size, &exif);
    img->taken_time = exif.taken_time;
    memcpy(img->description, exif.description, sizeof img->description);
    *orientation = exif.orientation;
    return 0;
}

static int read_raster(TIFF *tif, tiff_src *src, uint32_t w, uint32_t h,
                       const ce_decode_params *params, ce_image *img, ce_err *err)
{
    char emsg[1024] = "";
    if (!TIFFRGBAImageOK(tif, emsg)) {
        ce__image_error(err, "unsupported TIFF layout: %s", emsg);
        return -ENOTSUP;
    }
    TIFFRGBAImage ri;
    if (!TIFFRGBAImageBegin(&ri, tif, 0, emsg)) {
        ce__image_error(err, "unsupported or corrupt TIFF: %s", emsg);
        return src->failed ? -EBADMSG : -ENOTSUP;
    }
    /* stored order: image.c applies the Orientation tag, rotations included */
    ri.req_orientation = ORIENTATION_TOPLEFT;
    ri.orientation = ORIENTATION_TOPLEFT;
    uint32_t *raster = malloc((size_t)w * (size_t)h * sizeof *raster);
    if (!raster) {
        TIFFRGBAImageEnd(&ri);
        ce__image_error(err, "out of memory decoding a %ux%u TIFF", w, h);
        return -ENOMEM;
    }
    int ok = TIFFRGBAImageGet(&ri, raster, w, h);
    TIFFRGBAImageEnd(&ri);
    if (!ok || src->failed) {
        free(raster);
        ce__image_error(err, "corrupt or truncated TIFF: %s",
                        src->msg[0] ? src->msg : "its image data cannot be read");
        return -EBADMSG;
    }
    /* ABGR words to R, G, B, A bytes, in place (same size, front to back) */
    uint8_t *bytes = (uint8_t *)raster;
    for (size_t i = 0, n = (size_t)w * h; i < n; i++) {
        uint32_t v = raster[i];
        bytes[4 * i + 0] = (uint8_t)TIFFGetR(v);
        bytes[4 * i + 1] = (uint8_t)TIFFGetG(v);
        bytes[4 * i + 2] = (uint8_t)TIFFGetB(v);
        bytes[4 * i + 3] = (uint8_t)TIFFGetA(v);
    }
    int rc = ce__image_from_buffer(bytes, (int)w, (int)h, (size_t)w * 4, 4, params, img, err);
    free(raster);
    return rc;
}

/* ------------------------------------------------------------------ helpers */

static tsize_t src_read(thandle_t h, tdata_t buf, tsize_t n)
{
    tiff_src *s = h;
    if (n <= 0) return 0;
    size_t left = s->size - s->pos, want = (size_t)n < left ? (size_t)n : left;
    memcpy(buf, s->data + s->pos, want);
    s->pos += want;
    return (tsize_t)want;
}

static tsize_t src_write(thandle_t h, tdata_t buf, tsize_t n)
{
    (void)h;
    (void)buf;
    (void)n;
    return -1;
}

static toff_t src_seek(thandle_t h, toff_t off, int whence)
{
    tiff_src *s = h;
    uint64_t base = whence == SEEK_CUR ? s->pos : whence == SEEK_END ? s->size : 0;
    if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END) return (toff_t)-1;
    /* a seek past the end is allowed (reads there return nothing) but clamped */
    uint64_t to = base + off < base ? UINT64_MAX : base + off;
    s->pos = to > s->size ? s->size : (size_t)to;
    return (toff_t)to;
}

static int src_close(thandle_t h)
{
    (void)h;
    return 0;
}

static toff_t src_size(thandle_t h) { return ((tiff_src *)h)->size; }

static int src_map(thandle_t h, tdata_t *base, toff_t *size)
{
    (void)h;
    (void)base;
    (void)size;
    return 0;
}

static void src_unmap(thandle_t h, tdata_t base, toff_t size)
{
    (void)h;
    (void)base;
    (void)size;
}

static int on_error(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap)
{
    (void)tif;
    (void)module;
    tiff_src *s = user;
    if (!s->failed) vsnprintf(s->msg, sizeof s->msg, fmt, ap);
    s->failed = 1;
    return 1; /* handled: nothing reaches libtiff's global handler or stderr */
}

static int on_warning(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap)
{
    (void)tif;
    (void)user;
    (void)module;
    (void)fmt;
    (void)ap;
    return 1;
}
