/*
 * The common tail of the decoders that cannot scale while decoding (HEIF/AVIF, TIFF,
 * RAW, GIF): a decoded 8-bit RGB or RGBA buffer becomes the ce_image the network wants,
 * and the one pixel-limit check they all make on the header.
 *
 * - Alpha is composited over WHITE (what photo viewers show), in sRGB values as stored,
 *   as image_png.c does.
 * - Box (area-average) downscaling by the largest integer factor that keeps both sides
 *   >= min_side, the factor image_png.c uses; edge boxes average what they cover.
 * - Trust: the caller's buffer is w x h with rows `stride` bytes apart; w, h, stride
 *   come from a library that decoded them, and are checked for sign and overflow here
 *   anyway. Rejections: a non-positive size or a stride shorter than a row (-EBADMSG),
 *   channels other than 3 or 4 (-ENOTSUP), no memory (-ENOMEM).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

int ce__image_check_size(const char *format, uint64_t w, uint64_t h, const ce_decode_params *params,
                         ce_err *err)
{
    if (w == 0 || h == 0) {
        ce__image_error(err, "corrupt %s: its header gives a size of %llux%llu", format,
                        (unsigned long long)w, (unsigned long long)h);
        return -EBADMSG;
    }
    /* sides read from 32-bit fields: the product cannot overflow 64 bits */
    if (w > INT32_MAX || h > INT32_MAX || w * h > (uint64_t)params->max_pixels) {
        ce__image_error(err,
                        "%s is %llux%llu = %llu pixels, over the limit of %lld "
                        "(refused before decoding)",
                        format, (unsigned long long)w, (unsigned long long)h,
                        (unsigned long long)(w * h), (long long)params->max_pixels);
        return -E2BIG;
    }
    return 0;
}

int ce__image_from_buffer(const uint8_t *src, int w, int h, size_t stride, int channels,
                          const ce_decode_params *params, ce_image *img, ce_err *err)
{
    if (channels != 3 && channels != 4) {
        ce__image_error(err, "unsupported pixel layout (%d channels)", channels);
        return -ENOTSUP;
    }
    if (w <= 0 || h <= 0 || stride < (size_t)w * (size_t)channels) {
        ce__image_error(err, "corrupt image: decoded size %dx%d", w, h);
        return -EBADMSG;
    }
    const int min_side = params->min_side > 0 ? params->min_side : 1;
    int f = w / min_side < h / min_side ? w / min_side : h / min_side;
    if (f < 1) f = 1;
    const int ow = (w + f - 1) / f, oh = (h + f - 1) / f;
    uint8_t *dst = malloc((size_t)ow * (size_t)oh * 3);
    uint64_t *sums = calloc((size_t)ow * 3, sizeof *sums);
    if (!dst || !sums) {
        free(dst);
        free(sums);
        ce__image_error(err, "out of memory scaling a %dx%d image", w, h);
        return -ENOMEM;
    }
    for (int oy = 0; oy < oh; oy++) {
        const int y0 = oy * f, y1 = y0 + f < h ? y0 + f : h;
        memset(sums, 0, (size_t)ow * 3 * sizeof *sums);
        for (int y = y0; y < y1; y++) {
            const uint8_t *row = src + (size_t)y * stride;
            for (int x = 0; x < w; x++) {
                const uint8_t *p = row + (size_t)x * (size_t)channels;
                uint64_t *s = sums + (size_t)(x / f) * 3;
                if (channels == 4) {
                    const unsigned a = p[3];
                    for (int c = 0; c < 3; c++) s[c] += (p[c] * a + 255 * (255 - a) + 127) / 255;
                } else {
                    s[0] += p[0];
                    s[1] += p[1];
                    s[2] += p[2];
                }
            }
        }
        uint8_t *drow = dst + (size_t)oy * (size_t)ow * 3;
        const uint64_t box_h = (uint64_t)(y1 - y0);
        for (int ox = 0; ox < ow; ox++) {
            const int x0 = ox * f;
            const uint64_t box_w = (uint64_t)(x0 + f < w ? f : w - x0);
            const uint64_t n = box_w * box_h;
            for (int c = 0; c < 3; c++)
                drow[ox * 3 + c] = (uint8_t)((sums[ox * 3 + c] + n / 2) / n);
        }
    }
    free(sums);
    img->width = ow;
    img->height = oh;
    img->pixels = dst;
    img->source_width = w;
    img->source_height = h;
    return 0;
}
