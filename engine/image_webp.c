/*
 * WebP decoding through libwebp 1.2 (lossy VP8, lossless VP8L, extended VP8X with alpha,
 * EXIF and animation).
 *
 * - Still images are scaled by libwebp while decoding (its scaler works on the decoded
 *   rows, so a 12 MP photo never exists in full at 8 bits per channel x 3), to the size
 *   the integer factor of the other decoders gives: both sides >= min_side.
 * - Animated images: the first frame, composited on its canvas by WebPAnimDecoder
 *   (a first frame may cover only part of the canvas; the rest is transparent, then
 *   white), then box-downscaled.
 * - Alpha is composited over white. EXIF (the VP8X "EXIF" chunk, with or without the
 *   "Exif\0\0" prefix some writers add) gives the orientation and date.
 * - Trust: WebPGetFeatures reads the header and gives the canvas size, checked against
 *   max_pixels before anything image-sized is allocated. Rejections: not WebP or a
 *   feature libwebp lacks (-ENOTSUP), truncated or corrupt (-EBADMSG), over the limit
 *   (-E2BIG), no memory (-ENOMEM).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <webp/decode.h>
#include <webp/demux.h>

#include "image.h"

static int decode_still(const uint8_t *data, size_t size, const WebPBitstreamFeatures *f,
                        const ce_decode_params *params, ce_image *img, ce_err *err);
static int decode_first_frame(const uint8_t *data, size_t size, const ce_decode_params *params,
                              ce_image *img, ce_err *err);
static void read_exif(const uint8_t *data, size_t size, ce_exif *exif);
static int status_code(VP8StatusCode s);
static const char *status_text(VP8StatusCode s);

int ce__decode_webp(const uint8_t *data, size_t size, const ce_decode_params *params, ce_image *img,
                    int *orientation, ce_err *err)
{
    WebPBitstreamFeatures f;
    VP8StatusCode s = WebPGetFeatures(data, size, &f);
    if (s != VP8_STATUS_OK) {
        ce__image_error(err, "%s WebP: %s",
                        s == VP8_STATUS_UNSUPPORTED_FEATURE ? "unsupported"
                                                            : "corrupt or truncated",
                        status_text(s));
        return status_code(s);
    }
    int rc = ce__image_check_size("WebP", f.width < 0 ? 0 : (uint64_t)f.width,
                                  f.height < 0 ? 0 : (uint64_t)f.height, params, err);
    if (rc < 0) return rc;
    rc = f.has_animation ? decode_first_frame(data, size, params, img, err)
                         : decode_still(data, size, &f, params, img, err);
    if (rc < 0) return rc;
    ce_exif exif;
    read_exif(data, size, &exif);
    img->taken_time = exif.taken_time;
    memcpy(img->description, exif.description, sizeof img->description);
    *orientation = exif.orientation;
    return 0;
}

static int decode_still(const uint8_t *data, size_t size, const WebPBitstreamFeatures *f,
                        const ce_decode_params *params, ce_image *img, ce_err *err)
{
    WebPDecoderConfig config;
    if (!WebPInitDecoderConfig(&config)) {
        ce__image_error(err, "libwebp version mismatch");
        return -ENOTSUP;
    }
    const int w = f->width, h = f->height;
    const int min_side = params->min_side > 0 ? params->min_side : 1;
    int factor = w / min_side < h / min_side ? w / min_side : h / min_side;
    if (factor > 1) {
        config.options.use_scaling = 1;
        config.options.scaled_width = (w + factor - 1) / factor;
        config.options.scaled_height = (h + factor - 1) / factor;
    }
    const int channels = f->has_alpha ? 4 : 3;
    config.output.colorspace = f->has_alpha ? MODE_RGBA : MODE_RGB;
    VP8StatusCode s = WebPDecode(data, size, &config);
    if (s != VP8_STATUS_OK) {
        WebPFreeDecBuffer(&config.output);
        ce__image_error(err, "%s WebP: %s",
                        s == VP8_STATUS_UNSUPPORTED_FEATURE ? "unsupported"
                        : s == VP8_STATUS_OUT_OF_MEMORY     ? "out of memory decoding"
                                                            : "corrupt or truncated",
                        status_text(s));
        return status_code(s);
    }
    const WebPRGBABuffer *b = &config.output.u.RGBA;
    int rc = ce__image_from_buffer(b->rgba, config.output.width, config.output.height,
                                   (size_t)b->stride, channels, params, img, err);
    WebPFreeDecBuffer(&config.output);
    if (rc == 0) {
        img->source_width = w;
        img->source_height = h;
    }
    return rc;
}

static int decode_first_frame(const uint8_t *data, size_t size, const ce_decode_params *params,
                              ce_image *img, ce_err *err)
{
    WebPAnimDecoderOptions opts;
    if (!WebPAnimDecoderOptionsInit(&opts)) {
        ce__image_error(err, "libwebp version mismatch");
        return -ENOTSUP;
    }
    opts.color_mode = MODE_RGBA;
    opts.use_threads = 0;
    WebPData wd = {data, size};
    WebPAnimDecoder *dec = WebPAnimDecoderNew(&wd, &opts);
    if (!dec) {
        ce__image_error(err, "corrupt or truncated animated WebP (its frames cannot be read)");
        return -EBADMSG;
    }
    WebPAnimInfo info;
    uint8_t *rgba = NULL;
    int timestamp = 0;
    int rc;
    if (!WebPAnimDecoderGetInfo(dec, &info) || info.frame_count < 1 ||
        !WebPAnimDecoderGetNext(dec, &rgba, &timestamp) || !rgba) {
        ce__image_error(err, "corrupt or truncated animated WebP (its first frame cannot be "
                             "decoded)");
        rc = -EBADMSG;
    } else if ((rc = ce__image_check_size("WebP", info.canvas_width, info.canvas_height, params,
                                          err)) == 0) {
        rc = ce__image_from_buffer(rgba, (int)info.canvas_width, (int)info.canvas_height,
                                   (size_t)info.canvas_width * 4, 4, params, img, err);
    }
    WebPAnimDecoderDelete(dec);
    return rc;
}

/* ------------------------------------------------------------------ helpers */

static void read_exif(const uint8_t *data, size_t size, ce_exif *exif)
{
    exif->orientation = 1;
    exif->taken_time = 0;
    exif->description[0] = '\0';
    WebPData wd = {data, size};
    WebPDemuxer *demux = WebPDemux(&wd);
    if (!demux) return;
    WebPChunkIterator it;
    if ((WebPDemuxGetI(demux, WEBP_FF_FORMAT_FLAGS) & EXIF_FLAG) &&
        WebPDemuxGetChunk(demux, "EXIF", 1, &it)) {
        const uint8_t *p = it.chunk.bytes;
        size_t n = it.chunk.size;
        if (n >= 6 && memcmp(p, "Exif\0\0", 6) == 0) {
            p += 6;
            n -= 6;
        }
        ce__exif_parse(p, n, exif);
        WebPDemuxReleaseChunkIterator(&it);
    }
    WebPDemuxDelete(demux);
}

static int status_code(VP8StatusCode s)
{
    switch (s) {
    case VP8_STATUS_OK: return 0;
    case VP8_STATUS_OUT_OF_MEMORY: return -ENOMEM;
    case VP8_STATUS_UNSUPPORTED_FEATURE: return -ENOTSUP;
    default: return -EBADMSG;
    }
}

static const char *status_text(VP8StatusCode s)
{
    switch (s) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "a feature libwebp does not read";
    case VP8_STATUS_SUSPENDED: return "decoding suspended";
    case VP8_STATUS_USER_ABORT: return "decoding aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "the file ends early";
    default: return "unknown error";
    }
}
