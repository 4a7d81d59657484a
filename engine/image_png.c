/*
 * PNG decoding through libpng 1.6.
 *
 * - All PNG flavours become 8-bit RGB: palette and low-bit gray are expanded, 16-bit
 *   samples are scaled to 8 bits, gray is copied to R, G and B, and alpha (an alpha
 *   channel or a tRNS chunk) is composited over WHITE, the background photo viewers
 *   show, without gamma correction (done in sRGB values as stored).
 * - Memory stays bounded for big files: non-interlaced images are read row by row into
 *   a box (area-average) downscaler with an integer factor chosen like the JPEG DCT
 *   scale (the largest that keeps both sides >= min_side), so only one source row and
 *   one row of sums are held. Interlaced (Adam7) images need the whole image before any
 *   row is final; they are read in full (within max_pixels) and then downscaled.
 * - max_pixels is checked on the IHDR chunk before libpng is even started.
 * - libpng's default error handler prints to stderr; ours records the message and
 *   longjmp()s back to decode_run(). Warnings (bad ancillary chunks) are ignored.
 *
 * setjmp rules: everything decode_run() changes after setjmp() lives in the png_job
 * that its caller owns, so nothing it reads after longjmp() is an indeterminate local.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "image.h"

/* Ancillary chunks (iCCP, text, eXIf) larger than this are refused by libpng. */
#define MAX_CHUNK_BYTES (8u << 20)

typedef struct {
    png_structp png;
    png_infop info;
    const uint8_t *data;
    size_t size, pos;
    const ce_decode_params *params;
    int code;         /* negative errno of the failure */
    int alloc_failed; /* png_alloc returned NULL */
    char msg[CE_ERR_MAX];
    /* Source rows after libpng's transforms: RGB or RGBA, 8 bits. */
    uint32_t src_w, src_h;
    int channels;
    uint8_t *rows;       /* one row, or the whole image when interlaced */
    png_bytep *row_ptrs; /* interlaced only */
    /* Box downscaler: factor x factor source pixels per output pixel. */
    int factor;
    int out_w, out_h;
    uint64_t *sums;   /* one output row of R, G, B sums */
    uint8_t *rgb_row; /* one composited source row */
    uint8_t *pixels;  /* the result, owned until handed to the caller */
    ce_exif exif;
} png_job;

static int decode_run(png_job *job);
static int ihdr_size(const uint8_t *d, size_t n, uint32_t *w, uint32_t *h);
static int chunk_past_end(const uint8_t *d, size_t n, char type[5]);
static void set_transforms(png_job *job);
static void push_row(png_job *job, uint32_t y, const uint8_t *src);
static void read_exif(png_job *job);
static void on_read(png_structp png, png_bytep dst, size_t len);
static png_voidp png_alloc(png_structp png, png_alloc_size_t size);
static void png_release(png_structp png, png_voidp p);
static void on_error(png_structp png, png_const_charp msg);
static void on_warning(png_structp png, png_const_charp msg);

int ce__decode_png(const uint8_t *data, size_t size, const ce_decode_params *params, ce_image *img,
                   int *orientation, ce_err *err)
{
    uint32_t w, h;
    /* unsigned: two 32-bit sides can exceed INT64_MAX (found by fuzzing) */
    if (ihdr_size(data, size, &w, &h) && (uint64_t)w * h > (uint64_t)params->max_pixels) {
        ce__image_error(err,
                        "PNG is %ux%u = %llu pixels, over the limit of %lld "
                        "(refused before decoding)",
                        w, h, (unsigned long long)w * h, (long long)params->max_pixels);
        return -E2BIG;
    }
    /* libpng 1.6.39 allocates an eXIf chunk's claimed length before reading it, whatever
     * png_set_chunk_malloc_max says: a 70-byte file claimed 700 MB (found by fuzzing).
     * The whole file is in memory, so a chunk longer than what is left is refused here. */
    char chunk[5];
    if (chunk_past_end(data, size, chunk)) {
        ce__image_error(err,
                        "corrupt or truncated PNG: a %s chunk runs past the end of the "
                        "file",
                        chunk);
        return -EBADMSG;
    }

    png_job *job = calloc(1, sizeof *job);
    if (!job) {
        ce__image_error(err, "out of memory");
        return -ENOMEM;
    }
    job->data = data;
    job->size = size;
    job->params = params;
    job->exif.orientation = 1;
    int rc = decode_run(job);
    if (job->png) png_destroy_read_struct(&job->png, job->info ? &job->info : NULL, NULL);
    free(job->rows);
    free(job->row_ptrs);
    free(job->sums);
    free(job->rgb_row);
    if (rc < 0) {
        ce__image_error(err, "%s", job->msg);
        free(job->pixels);
    } else {
        img->width = job->out_w;
        img->height = job->out_h;
        img->pixels = job->pixels;
        img->source_width = (int)job->src_w;
        img->source_height = (int)job->src_h;
        img->taken_time = job->exif.taken_time;
        memcpy(img->description, job->exif.description, sizeof img->description);
        *orientation = job->exif.orientation;
    }
    free(job);
    return rc;
}

static int fail(png_job *job, int code, const char *what)
{
    job->code = code;
    snprintf(job->msg, sizeof job->msg, "%s", what);
    return code;
}

static int decode_run(png_job *job)
{
    /* our allocator records a failed allocation: "out of memory" is then known by fact,
     * not guessed from the words of libpng's message */
    job->png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, job, on_error, on_warning, job,
                                        png_alloc, png_release);
    if (!job->png) return fail(job, -ENOMEM, "out of memory starting libpng");
    job->info = png_create_info_struct(job->png);
    if (!job->info) return fail(job, -ENOMEM, "out of memory starting libpng");
    if (setjmp(png_jmpbuf(job->png))) return job->code;

    png_set_read_fn(job->png, job, on_read);
    png_set_chunk_malloc_max(job->png, MAX_CHUNK_BYTES);
    png_read_info(job->png, job->info);

    job->src_w = png_get_image_width(job->png, job->info);
    job->src_h = png_get_image_height(job->png, job->info);
    int64_t pixels = (int64_t)job->src_w * job->src_h;
    if (pixels > job->params->max_pixels) {
        snprintf(job->msg, sizeof job->msg,
                 "PNG is %ux%u = %lld pixels, over the limit "
                 "of %lld (refused before decoding)",
                 job->src_w, job->src_h, (long long)pixels, (long long)job->params->max_pixels);
        return job->code = -E2BIG;
    }
    set_transforms(job);
    int passes = png_set_interlace_handling(job->png);
    png_read_update_info(job->png, job->info);
    job->channels = png_get_channels(job->png, job->info);
    size_t rowbytes = png_get_rowbytes(job->png, job->info);
    if ((job->channels != 3 && job->channels != 4) ||
        rowbytes != (size_t)job->src_w * (size_t)job->channels)
        return fail(job, -ENOTSUP, "unsupported PNG layout after conversion");

    const uint32_t min_side = (uint32_t)job->params->min_side;
    uint32_t f = job->src_w / min_side < job->src_h / min_side ? job->src_w / min_side
                                                               : job->src_h / min_side;
    job->factor = f > 1 ? (int)f : 1;
    job->out_w = (int)((job->src_w + (uint32_t)job->factor - 1) / (uint32_t)job->factor);
    job->out_h = (int)((job->src_h + (uint32_t)job->factor - 1) / (uint32_t)job->factor);

    const size_t out_stride = (size_t)job->out_w * 3;
    job->pixels = malloc(out_stride * (size_t)job->out_h);
    job->sums = calloc(out_stride, sizeof *job->sums);
    job->rgb_row = malloc((size_t)job->src_w * 3);
    job->rows = malloc(passes > 1 ? rowbytes * job->src_h : rowbytes);
    if (passes > 1) job->row_ptrs = malloc(job->src_h * sizeof *job->row_ptrs);
    if (!job->pixels || !job->sums || !job->rgb_row || !job->rows ||
        (passes > 1 && !job->row_ptrs)) {
        snprintf(job->msg, sizeof job->msg, "out of memory decoding a %ux%u PNG", job->src_w,
                 job->src_h);
        return job->code = -ENOMEM;
    }

    if (passes > 1) {
        for (uint32_t y = 0; y < job->src_h; y++) job->row_ptrs[y] = job->rows + rowbytes * y;
        png_read_image(job->png, job->row_ptrs);
        for (uint32_t y = 0; y < job->src_h; y++) push_row(job, y, job->row_ptrs[y]);
    } else {
        for (uint32_t y = 0; y < job->src_h; y++) {
            png_read_row(job->png, job->rows, NULL);
            push_row(job, y, job->rows);
        }
    }
    /* Reading to IEND checks the trailing checksums: a file cut after the last row is
     * still reported as truncated. It also picks up an eXIf chunk placed after IDAT. */
    png_read_end(job->png, job->info);
    read_exif(job);
    return 0;
}

/* ------------------------------------------------------------------ helpers */

/* IHDR is the first chunk, at a fixed place after the 8-byte signature. */
static int ihdr_size(const uint8_t *d, size_t n, uint32_t *w, uint32_t *h)
{
    if (n < 24 || memcmp(d + 12, "IHDR", 4) != 0) return 0;
    *w = (uint32_t)d[16] << 24 | (uint32_t)d[17] << 16 | (uint32_t)d[18] << 8 | d[19];
    *h = (uint32_t)d[20] << 24 | (uint32_t)d[21] << 16 | (uint32_t)d[22] << 8 | d[23];
    return 1;
}

/* Walks the chunks up to IEND; returns 1 (type set, printable) when one claims more bytes
 * than the file has left. A file that just ends between chunks is left to libpng. */
static int chunk_past_end(const uint8_t *d, size_t n, char type[5])
{
    size_t pos = 8;
    while (n >= pos + 8) {
        uint32_t len = (uint32_t)d[pos] << 24 | (uint32_t)d[pos + 1] << 16 |
                       (uint32_t)d[pos + 2] << 8 | d[pos + 3];
        if (memcmp(d + pos + 4, "IEND", 4) == 0) return 0;
        if ((uint64_t)len + 12 > n - pos) {
            for (int i = 0; i < 4; i++) {
                uint8_t c = d[pos + 4 + i];
                type[i] = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ? (char)c : '?';
            }
            type[4] = '\0';
            return 1;
        }
        pos += (size_t)len + 12;
    }
    return 0;
}

static void set_transforms(png_job *job)
{
    png_structp png = job->png;
    png_infop info = job->info;
    int color_type = png_get_color_type(png, info);
    int bit_depth = png_get_bit_depth(png, info);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    if (bit_depth == 16) png_set_scale_16(png);
    if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
}

/* Composites source row y over white and adds it to the box sums; emits an output row
 * when the box is complete (or the image ends). Edge boxes average what they cover. */
static void push_row(png_job *job, uint32_t y, const uint8_t *src)
{
    const uint32_t w = job->src_w;
    const int f = job->factor;
    uint8_t *rgb = job->factor == 1 ? job->pixels + (size_t)y * w * 3 : job->rgb_row;
    if (job->channels == 4) {
        for (uint32_t x = 0; x < w; x++) {
            unsigned a = src[4 * x + 3];
            for (int c = 0; c < 3; c++)
                rgb[3 * x + c] = (uint8_t)((src[4 * x + c] * a + 255 * (255 - a) + 127) / 255);
        }
    } else {
        memcpy(rgb, src, (size_t)w * 3);
    }
    if (f == 1) return;

    uint64_t *sums = job->sums;
    for (int ox = 0; ox < job->out_w; ox++) {
        uint32_t x0 = (uint32_t)ox * (uint32_t)f;
        uint32_t x1 = x0 + (uint32_t)f < w ? x0 + (uint32_t)f : w;
        uint32_t r = 0, g = 0, b = 0;
        for (uint32_t x = x0; x < x1; x++) {
            r += rgb[3 * x];
            g += rgb[3 * x + 1];
            b += rgb[3 * x + 2];
        }
        sums[3 * ox] += r;
        sums[3 * ox + 1] += g;
        sums[3 * ox + 2] += b;
    }
    const uint32_t oy = y / (uint32_t)f;
    if ((y + 1) % (uint32_t)f != 0 && y + 1 != job->src_h) return;

    const uint64_t box_h = y + 1 - oy * (uint32_t)f;
    uint8_t *dst = job->pixels + (size_t)oy * (size_t)job->out_w * 3;
    for (int ox = 0; ox < job->out_w; ox++) {
        uint32_t x0 = (uint32_t)ox * (uint32_t)f;
        uint64_t box_w = x0 + (uint32_t)f < w ? (uint32_t)f : w - x0;
        uint64_t n = box_w * box_h;
        for (int c = 0; c < 3; c++) {
            dst[3 * ox + c] = (uint8_t)((sums[3 * ox + c] + n / 2) / n);
            sums[3 * ox + c] = 0;
        }
    }
}

static void read_exif(png_job *job)
{
#ifdef PNG_eXIf_SUPPORTED
    png_uint_32 len = 0;
    png_bytep exif = NULL;
    if (png_get_eXIf_1(job->png, job->info, &len, &exif) && exif)
        ce__exif_parse(exif, len, &job->exif);
#else
    (void)job;
#endif
}

static void on_read(png_structp png, png_bytep dst, size_t len)
{
    png_job *job = png_get_io_ptr(png);
    if (len > job->size - job->pos) {
        job->code = -EBADMSG;
        png_error(png, "premature end of data");
    }
    memcpy(dst, job->data + job->pos, len);
    job->pos += len;
}

static png_voidp png_alloc(png_structp png, png_alloc_size_t size)
{
    png_voidp p = malloc(size);
    if (!p) {
        png_job *job = png_get_mem_ptr(png);
        if (job) job->alloc_failed = 1;
    }
    return p;
}

static void png_release(png_structp png, png_voidp p)
{
    (void)png;
    free(p);
}

static void on_error(png_structp png, png_const_charp msg)
{
    png_job *job = png_get_error_ptr(png);
    if (job->code == 0) job->code = job->alloc_failed ? -ENOMEM : -EBADMSG;
    snprintf(job->msg, sizeof job->msg, "%s PNG: %s",
             job->code == -ENOMEM ? "out of memory decoding" : "corrupt or truncated", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}
