/*
 * JPEG decoding through libjpeg-turbo (libjpeg 6.2 API).
 *
 * - Downscaling happens in the DCT domain: libjpeg-turbo can run the inverse DCT at
 *   N/8 of the size (N = 1..8), which skips most of the work. We pick the smallest N
 *   whose output still has both sides >= min_side, so a 12 MP photo decodes at 1/8.
 * - At 1/8 (every camera photo) image_jpeg_eighth.c decodes baseline files itself, to
 *   libjpeg-turbo's exact bytes but faster; a file it declines comes to libjpeg here.
 * - libjpeg's default error handler prints and calls exit(). Ours records the message
 *   and longjmp()s back to decode_run(). Warnings that mean the data is damaged
 *   (premature end of file, bad Huffman code, lost sync...) are errors too: otherwise a
 *   truncated file decodes "successfully" as an image whose lower half is gray.
 * - Colour: libjpeg converts YCbCr, RGB and grayscale to RGB itself; CMYK and YCCK are
 *   fetched as CMYK and converted here. Files with an Adobe APP14 marker (Photoshop and
 *   everything that copies it) store CMYK inverted (255 = no ink), the others plain.
 * - Untrusted input: the header's pixel count is checked against max_pixels before any
 *   image-sized allocation, and progressive files with absurd numbers of scans (a known
 *   CPU-exhaustion trick) are refused through the progress monitor.
 *
 * setjmp rules: everything decode_run() changes after setjmp() lives in the jpeg_job
 * that its caller owns, so nothing it reads after longjmp() is an indeterminate local.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "image.h"

/* Real encoders write at most a few dozen scans; libjpeg-turbo's own tools cap at 500. */
#define MAX_SCANS 500

typedef struct {
    struct jpeg_error_mgr pub; /* first: libjpeg hands us a pointer to it */
    jmp_buf jump;
    int code; /* negative errno of the failure */
    char msg[JMSG_LENGTH_MAX + 64];
} jpeg_failure;

typedef struct {
    struct jpeg_decompress_struct cinfo;
    jpeg_failure fail;
    struct jpeg_progress_mgr progress;
    const uint8_t *data;
    size_t size;
    const ce_decode_params *params;
    uint8_t *pixels;   /* the result, owned until handed to the caller */
    uint8_t *cmyk_row; /* scratch for CMYK/YCCK files */
    int width, height;
    int source_width, source_height;
    ce_exif exif;
} jpeg_job;

static int decode_run(jpeg_job *job);
static int decode_eighth(const uint8_t *data, size_t size, int w, int h, ce_image *img,
                         int *orientation, ce_err *err);
static int sof_size(const uint8_t *d, size_t n, int *w, int *h);
static int choose_scale(int w, int h, int min_side);
static void read_exif(jpeg_job *job);
static void cmyk_to_rgb(const uint8_t *cmyk, uint8_t *rgb, int n, int inverted);
static void on_error_exit(j_common_ptr cinfo);
static void on_message(j_common_ptr cinfo, int msg_level);
static void on_progress(j_common_ptr cinfo);
static void fail_now(j_common_ptr cinfo, int code);

int ce__decode_jpeg(const uint8_t *data, size_t size, const ce_decode_params *params, ce_image *img,
                    int *orientation, ce_err *err)
{
    /* The header limit is checked before libjpeg sees the file, so that a bare header
     * claiming 30000x30000 is "too large" rather than "truncated". */
    int w = 0, h = 0;
    const int have_size = sof_size(data, size, &w, &h);
    if (have_size && (int64_t)w * h > params->max_pixels) {
        ce__image_error(err,
                        "JPEG is %dx%d = %lld pixels, over the limit of %lld "
                        "(refused before decoding)",
                        w, h, (long long)w * h, (long long)params->max_pixels);
        return -E2BIG;
    }

    /* A camera photo wanted at 1/8: the fast path, unless it declines the file. */
    if (have_size && w > 0 && h > 0 && !params->libjpeg_only &&
        choose_scale(w, h, params->min_side) == 1) {
        int rc = decode_eighth(data, size, w, h, img, orientation, err);
        if (rc <= 0) return rc;
    }

    jpeg_job *job = calloc(1, sizeof *job);
    if (!job) {
        ce__image_error(err, "out of memory");
        return -ENOMEM;
    }
    job->data = data;
    job->size = size;
    job->params = params;
    int rc = decode_run(job);
    jpeg_destroy_decompress(&job->cinfo);
    free(job->cmyk_row);
    if (rc < 0) {
        ce__image_error(err, "%s", job->fail.msg);
        free(job->pixels);
    } else {
        img->width = job->width;
        img->height = job->height;
        img->pixels = job->pixels;
        img->source_width = job->source_width;
        img->source_height = job->source_height;
        img->taken_time = job->exif.taken_time;
        memcpy(img->description, job->exif.description, sizeof img->description);
        *orientation = job->exif.orientation;
    }
    free(job);
    return rc;
}

static int decode_run(jpeg_job *job)
{
    struct jpeg_decompress_struct *cinfo = &job->cinfo;
    cinfo->err = jpeg_std_error(&job->fail.pub);
    job->fail.pub.error_exit = on_error_exit;
    job->fail.pub.emit_message = on_message;
    if (setjmp(job->fail.jump)) return job->fail.code;

    jpeg_create_decompress(cinfo);
    job->progress.progress_monitor = on_progress;
    cinfo->progress = &job->progress;
    jpeg_mem_src(cinfo, job->data, (unsigned long)job->size);
    jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(cinfo, TRUE);

    int64_t pixels = (int64_t)cinfo->image_width * cinfo->image_height;
    if (pixels > job->params->max_pixels) {
        job->fail.code = -E2BIG;
        snprintf(job->fail.msg, sizeof job->fail.msg,
                 "JPEG is %ux%u = %lld pixels, over the limit of %lld (refused before "
                 "decoding)",
                 cinfo->image_width, cinfo->image_height, (long long)pixels,
                 (long long)job->params->max_pixels);
        return job->fail.code;
    }
    job->source_width = (int)cinfo->image_width;
    job->source_height = (int)cinfo->image_height;
    read_exif(job);

    const int cmyk = cinfo->jpeg_color_space == JCS_CMYK || cinfo->jpeg_color_space == JCS_YCCK;
    cinfo->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    cinfo->scale_num =
        (unsigned)choose_scale(job->source_width, job->source_height, job->params->min_side);
    cinfo->scale_denom = 8;
    /* ISLOW, the accurate IDCT: below 8/8 libjpeg uses its reduced-size IDCTs whatever
     * the method, and at full size IFAST was within noise (~5%) in tests/bench/decode.
     * Fancy (triangle-filter) chroma upsampling keeps colour edges clean for the
     * network and cost nothing measurable at 1/8 there. */
    cinfo->dct_method = JDCT_ISLOW;
    cinfo->do_fancy_upsampling = TRUE;
    jpeg_start_decompress(cinfo);

    job->width = (int)cinfo->output_width;
    job->height = (int)cinfo->output_height;
    const size_t stride = (size_t)job->width * 3;
    job->pixels = malloc(stride * (size_t)job->height);
    if (cmyk) job->cmyk_row = malloc((size_t)job->width * 4);
    if (!job->pixels || (cmyk && !job->cmyk_row)) {
        job->fail.code = -ENOMEM;
        snprintf(job->fail.msg, sizeof job->fail.msg, "out of memory for a %dx%d image", job->width,
                 job->height);
        return job->fail.code;
    }
    while (cinfo->output_scanline < cinfo->output_height) {
        uint8_t *dst = job->pixels + stride * cinfo->output_scanline;
        JSAMPROW row = cmyk ? job->cmyk_row : dst;
        if (jpeg_read_scanlines(cinfo, &row, 1) != 1) {
            /* Only a suspending data source returns 0 lines; ours never suspends. */
            job->fail.code = -EBADMSG;
            snprintf(job->fail.msg, sizeof job->fail.msg, "JPEG decoder stalled");
            return job->fail.code;
        }
        if (cmyk) cmyk_to_rgb(job->cmyk_row, dst, job->width, cinfo->saw_Adobe_marker);
    }
    jpeg_finish_decompress(cinfo);
    return 0;
}

/* image_jpeg_eighth.c's result as a ce_image; 1 when it declined the file. */
static int decode_eighth(const uint8_t *data, size_t size, int w, int h, ce_image *img,
                         int *orientation, ce_err *err)
{
    ce__jpeg_eighth out;
    int rc = ce__jpeg_decode_eighth(data, size, &out);
    if (rc == -ENOMEM) ce__image_error(err, "out of memory decoding JPEG");
    if (rc != 0) return rc;
    ce_exif exif = {.orientation = 1, .taken_time = 0, .description = ""};
    if (out.exif) ce__exif_parse(out.exif, out.exif_size, &exif);
    img->width = out.width;
    img->height = out.height;
    img->pixels = out.pixels;
    img->source_width = w; /* the frame header's, as sof_size read it */
    img->source_height = h;
    img->taken_time = exif.taken_time;
    memcpy(img->description, exif.description, sizeof img->description);
    *orientation = exif.orientation;
    return 0;
}

/* ------------------------------------------------------------------ helpers */

/* Walks the marker segments up to the first SOFn; 1 and the frame size when found. */
static int sof_size(const uint8_t *d, size_t n, int *w, int *h)
{
    size_t pos = 2; /* after SOI */
    while (pos + 4 <= n) {
        if (d[pos] != 0xff) return 0;
        uint8_t marker = d[pos + 1];
        if (marker == 0xff) { /* fill byte */
            pos++;
            continue;
        }
        if (marker == 0x01 || (marker >= 0xd0 && marker <= 0xd8)) { /* no length */
            pos += 2;
            continue;
        }
        if (marker == 0xda || marker == 0xd9) return 0; /* SOS / EOI before any SOF */
        size_t len = (size_t)d[pos + 2] << 8 | d[pos + 3];
        if (len < 2) return 0;
        int is_sof =
            marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 && marker != 0xcc;
        if (is_sof) {
            if (pos + 9 > n || len < 7) return 0;
            *h = d[pos + 5] << 8 | d[pos + 6];
            *w = d[pos + 7] << 8 | d[pos + 8];
            return 1;
        }
        pos += 2 + len;
    }
    return 0;
}

/* libjpeg's output size at N/8 is ceil(side * N / 8). */
static int choose_scale(int w, int h, int min_side)
{
    for (int n = 1; n < 8; n++) {
        int64_t sw = ((int64_t)w * n + 7) / 8, sh = ((int64_t)h * n + 7) / 8;
        if (sw >= min_side && sh >= min_side) return n;
    }
    return 8;
}

static void read_exif(jpeg_job *job)
{
    job->exif.orientation = 1;
    job->exif.taken_time = 0;
    job->exif.description[0] = '\0';
    for (jpeg_saved_marker_ptr m = job->cinfo.marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 &&
            memcmp(m->data, "Exif\0\0", 6) == 0) {
            ce__exif_parse(m->data + 6, m->data_length - 6, &job->exif);
            return;
        }
    }
}

/* Naive CMYK -> RGB (no colour profile): R = (1-C)(1-K) and so on. */
static void cmyk_to_rgb(const uint8_t *cmyk, uint8_t *rgb, int n, int inverted)
{
    for (int i = 0; i < n; i++) {
        unsigned c = cmyk[4 * i], m = cmyk[4 * i + 1], y = cmyk[4 * i + 2], k = cmyk[4 * i + 3];
        if (!inverted) {
            c = 255 - c;
            m = 255 - m;
            y = 255 - y;
            k = 255 - k;
        }
        rgb[3 * i + 0] = (uint8_t)((c * k + 127) / 255);
        rgb[3 * i + 1] = (uint8_t)((m * k + 127) / 255);
        rgb[3 * i + 2] = (uint8_t)((y * k + 127) / 255);
    }
}

static void on_error_exit(j_common_ptr cinfo)
{
    int code;
    switch (cinfo->err->msg_code) {
    case JERR_OUT_OF_MEMORY: code = -ENOMEM; break;
    case JERR_BAD_PRECISION:      /* 12-bit JPEG */
    case JERR_CONVERSION_NOTIMPL: /* colour space we cannot turn into RGB */
    case JERR_NOT_COMPILED: code = -ENOTSUP; break;
    default: code = -EBADMSG;
    }
    fail_now(cinfo, code);
}

/* Warnings that do not damage the pixels; every other warning is fatal. Extraneous
 * bytes before a marker are typically padding some cameras leave before EOI; data
 * damage behind it would raise one of the fatal warnings as well. */
static void on_message(j_common_ptr cinfo, int msg_level)
{
    if (msg_level >= 0) return; /* trace messages */
    switch (cinfo->err->msg_code) {
    case JWRN_ADOBE_XFORM:
    case JWRN_JFIF_MAJOR:
    case JWRN_BOGUS_ICC:
    case JWRN_EXTRANEOUS_DATA: cinfo->err->num_warnings++; return;
    default: fail_now(cinfo, -EBADMSG);
    }
}

static void on_progress(j_common_ptr cinfo)
{
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > MAX_SCANS) {
        jpeg_failure *f = (jpeg_failure *)cinfo->err;
        f->code = -EBADMSG;
        snprintf(f->msg, sizeof f->msg, "JPEG has over %d scans: refused", MAX_SCANS);
        longjmp(f->jump, 1);
    }
}

static void fail_now(j_common_ptr cinfo, int code)
{
    jpeg_failure *f = (jpeg_failure *)cinfo->err;
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    f->code = code;
    const char *what = code == -ENOTSUP  ? "unsupported JPEG"
                       : code == -ENOMEM ? "out of memory decoding JPEG"
                                         : "corrupt or truncated JPEG";
    snprintf(f->msg, sizeof f->msg, "%s: %s", what, text);
    longjmp(f->jump, 1);
}
