/*
 * HEIC/HEIF and AVIF decoding through libheif 1.15 (HEVC by libde265, AV1 by dav1d/aom,
 * whichever plugins Debian's libheif was built with).
 *
 * - The primary image is decoded, with its transformations applied by libheif: `irot`
 *   (rotation), `imir` (mirror) and `clap` (crop), in the order the file lists them. This
 *   is how iPhones store a portrait photo (landscape sensor tiles + irot), and HEIF says
 *   these properties, not the EXIF Orientation, are authoritative; so *orientation is
 *   always 1 and the EXIF block is read only for the date.
 * - Grid images (iPhones tile 512x512) are assembled by libheif; the ispe property gives
 *   the full size before any tile is decoded, and that is what max_pixels is checked
 *   against (both the untransformed and the transformed size). libheif's own limit is
 *   set to the same number of pixels.
 * - Alpha (an auxiliary alpha image) is composited over white; HDR / 10-bit images are
 *   delivered as 8-bit by libheif.
 * - Trust: libheif parses every box; we read only what its API returns and check sizes
 *   and strides before touching pixels. Rejections: not HEIF (-ENOTSUP), corrupt or
 *   truncated boxes or bitstream (-EBADMSG), a codec libheif lacks (-ENOTSUP), over
 *   max_pixels or libheif's security limits (-E2BIG), no memory (-ENOMEM).
 *
 * heif_init() is called once per process (libheif reference-counts it and loads its
 * plugins there); it is never undone, like libjpeg's static tables.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <libheif/heif.h>

#include "image.h"

/* An EXIF block larger than this is not read (it holds only tags and a thumbnail). */
#define MAX_EXIF_BYTES (1u << 20)

static int heif_code(struct heif_error e);
static void read_exif_time(const struct heif_image_handle *h, ce_image *img);
static void init_once(void);

static pthread_once_t g_init = PTHREAD_ONCE_INIT;

int ce__decode_heif(const uint8_t *data, size_t size, const ce_decode_params *params, ce_image *img,
                    int *orientation, ce_err *err)
{
    pthread_once(&g_init, init_once);
    struct heif_context *ctx = heif_context_alloc();
    if (!ctx) {
        ce__image_error(err, "out of memory starting libheif");
        return -ENOMEM;
    }
    /* libheif's limit is a side length whose square is the pixel limit */
    double side = ceil(sqrt((double)params->max_pixels));
    heif_context_set_maximum_image_size_limit(ctx, side > INT32_MAX ? INT32_MAX : (int)side);
    /* Grid tiles in this thread: the callers already decode several photos at once (the
     * daemon's workers), and each tile thread holds its own HEVC decoder, so tile threads
     * multiply peak memory (fuzz_heif went over 1 GB with them) for no throughput. */
    heif_context_set_max_decoding_threads(ctx, 0);

    struct heif_image_handle *handle = NULL;
    struct heif_image *himg = NULL;
    int rc = 0;
    struct heif_error e = heif_context_read_from_memory_without_copy(ctx, data, size, NULL);
    if (e.code == heif_error_Ok) e = heif_context_get_primary_image_handle(ctx, &handle);
    if (e.code != heif_error_Ok) {
        rc = heif_code(e);
        ce__image_error(err, "%s HEIF/AVIF: %s",
                        rc == -ENOTSUP ? "unsupported"
                        : rc == -E2BIG ? "too large"
                                       : "corrupt or truncated",
                        e.message);
        goto out;
    }
    const int iw = heif_image_handle_get_ispe_width(handle);
    const int ih = heif_image_handle_get_ispe_height(handle);
    const int tw = heif_image_handle_get_width(handle);
    const int th = heif_image_handle_get_height(handle);
    if ((rc = ce__image_check_size("HEIF", iw < 0 ? 0 : (uint64_t)iw, ih < 0 ? 0 : (uint64_t)ih,
                                   params, err)) < 0 ||
        (rc = ce__image_check_size("HEIF", tw < 0 ? 0 : (uint64_t)tw, th < 0 ? 0 : (uint64_t)th,
                                   params, err)) < 0)
        goto out;

    const int alpha = heif_image_handle_has_alpha_channel(handle);
    struct heif_decoding_options *opts = heif_decoding_options_alloc();
    if (!opts) {
        rc = -ENOMEM;
        ce__image_error(err, "out of memory starting libheif");
        goto out;
    }
    opts->ignore_transformations = 0;
    e = heif_decode_image(handle, &himg, heif_colorspace_RGB,
                          alpha ? heif_chroma_interleaved_RGBA : heif_chroma_interleaved_RGB, opts);
    heif_decoding_options_free(opts);
    if (e.code != heif_error_Ok) {
        rc = heif_code(e);
        ce__image_error(err, "%s HEIF/AVIF image data: %s",
                        rc == -ENOTSUP  ? "unsupported"
                        : rc == -ENOMEM ? "out of memory decoding"
                        : rc == -E2BIG  ? "too large"
                                        : "corrupt or truncated",
                        e.message);
        goto out;
    }
    int stride = 0;
    const uint8_t *px = heif_image_get_plane_readonly(himg, heif_channel_interleaved, &stride);
    const int w = heif_image_get_width(himg, heif_channel_interleaved);
    const int h = heif_image_get_height(himg, heif_channel_interleaved);
    if (!px || stride <= 0 || w <= 0 || h <= 0) {
        rc = -EBADMSG;
        ce__image_error(err, "corrupt HEIF/AVIF: libheif returned no pixels");
        goto out;
    }
    rc = ce__image_from_buffer(px, w, h, (size_t)stride, alpha ? 4 : 3, params, img, err);
    if (rc == 0) {
        read_exif_time(handle, img);
        *orientation = 1; /* libheif applied irot / imir */
    }
out:
    if (himg) heif_image_release(himg);
    if (handle) heif_image_handle_release(handle);
    heif_context_free(ctx);
    return rc;
}

/* ------------------------------------------------------------------ helpers */

static void init_once(void) { heif_init(NULL); }

static int heif_code(struct heif_error e)
{
    if (e.subcode == heif_suberror_Security_limit_exceeded) return -E2BIG;
    switch (e.code) {
    case heif_error_Ok: return 0;
    case heif_error_Memory_allocation_error: return -ENOMEM;
    case heif_error_Unsupported_filetype:
    case heif_error_Unsupported_feature: return -ENOTSUP;
    default: return -EBADMSG; /* Invalid_input, Decoder_plugin_error, ... */
    }
}

/* The Exif item holds a 4-byte offset to the TIFF header, usually "Exif\0\0" then TIFF.
 * Only the date is taken: the orientation there is superseded by irot/imir. */
static void read_exif_time(const struct heif_image_handle *h, ce_image *img)
{
    heif_item_id id;
    if (heif_image_handle_get_list_of_metadata_block_IDs(h, "Exif", &id, 1) < 1) return;
    size_t n = heif_image_handle_get_metadata_size(h, id);
    if (n < 4 || n > MAX_EXIF_BYTES) return;
    uint8_t *buf = malloc(n);
    if (!buf) return;
    struct heif_error e = heif_image_handle_get_metadata(h, id, buf);
    if (e.code == heif_error_Ok) {
        uint32_t skip =
            (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
        if (skip <= n - 4) {
            ce_exif exif;
            ce__exif_parse(buf + 4 + skip, n - 4 - skip, &exif);
            img->taken_time = exif.taken_time;
            memcpy(img->description, exif.description, sizeof img->description);
        }
    }
    free(buf);
}
