/*
 * GIF decoding through giflib 5.2: the first frame only.
 *
 * - DGifSlurp() is not used: it reads every frame of an animation into memory (a hostile
 *   file can claim thousands of full-screen frames). Records are read one by one up to
 *   the first image; the rest of the file is never looked at.
 * - The first frame is drawn on the logical screen (it may cover only part of it, and
 *   may lie partly outside; what lies outside is clipped). Pixels not covered, and the
 *   Graphics Control Extension's transparent colour, are white, as transparency is for
 *   every other format. Interlaced frames are de-interlaced.
 * - Trust: the logical screen and the frame sizes are checked against max_pixels before
 *   the canvas is allocated; colour indices beyond the colour map are clamped to its
 *   last entry; a frame without any colour map is refused. Rejections: not GIF
 *   (-ENOTSUP), truncated or corrupt, or no image in the file (-EBADMSG), over the limit
 *   (-E2BIG), no memory (-ENOMEM).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <gif_lib.h>

#include "image.h"

typedef struct {
    const uint8_t *data;
    size_t size, pos;
} gif_src;

static int read_first_frame(GifFileType *gif, const ce_decode_params *params, ce_image *img,
                            ce_err *err);
static int draw_frame(GifFileType *gif, int transparent, uint8_t *canvas, int cw, int ch,
                      ce_err *err);
static int gif_code(int error);
static const char *gif_text(int error);
static int on_read(GifFileType *gif, GifByteType *buf, int n);

int ce__decode_gif(const uint8_t *data, size_t size, const ce_decode_params *params, ce_image *img,
                   int *orientation, ce_err *err)
{
    gif_src src = {data, size, 0};
    int error = 0;
    GifFileType *gif = DGifOpen(&src, on_read, &error);
    if (!gif) {
        ce__image_error(err, "corrupt or truncated GIF: %s", gif_text(error));
        return gif_code(error);
    }
    int rc = read_first_frame(gif, params, img, err);
    DGifCloseFile(gif, &error);
    if (rc == 0) *orientation = 1; /* GIF has no orientation and no EXIF */
    return rc;
}

static int read_first_frame(GifFileType *gif, const ce_decode_params *params, ce_image *img,
                            ce_err *err)
{
    int transparent = -1;
    for (;;) {
        GifRecordType type;
        if (DGifGetRecordType(gif, &type) == GIF_ERROR) break;
        if (type == TERMINATE_RECORD_TYPE) {
            ce__image_error(err, "corrupt GIF: the file holds no image");
            return -EBADMSG;
        }
        if (type == EXTENSION_RECORD_TYPE) {
            int code = 0;
            GifByteType *ext = NULL;
            if (DGifGetExtension(gif, &code, &ext) == GIF_ERROR) break;
            if (code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4)
                transparent = (ext[1] & 1) ? ext[4] : -1;
            while (ext) {
                if (DGifGetExtensionNext(gif, &ext) == GIF_ERROR) goto failed;
            }
            continue;
        }
        if (type != IMAGE_DESC_RECORD_TYPE) continue;
        if (DGifGetImageDesc(gif) == GIF_ERROR) break;

        const GifImageDesc *d = &gif->Image;
        /* a logical screen of 0x0 (some writers) is the frame's own size */
        int cw = gif->SWidth > 0 ? gif->SWidth : d->Left + d->Width;
        int ch = gif->SHeight > 0 ? gif->SHeight : d->Top + d->Height;
        int rc = ce__image_check_size("GIF", (uint64_t)cw, (uint64_t)ch, params, err);
        if (rc == 0)
            rc = ce__image_check_size("GIF frame", (uint64_t)d->Width, (uint64_t)d->Height, params,
                                      err);
        if (rc < 0) return rc;
        uint8_t *canvas = malloc((size_t)cw * (size_t)ch * 3);
        if (!canvas) {
            ce__image_error(err, "out of memory decoding a %dx%d GIF", cw, ch);
            return -ENOMEM;
        }
        memset(canvas, 255, (size_t)cw * (size_t)ch * 3);
        rc = draw_frame(gif, transparent, canvas, cw, ch, err);
        if (rc == 0)
            rc = ce__image_from_buffer(canvas, cw, ch, (size_t)cw * 3, 3, params, img, err);
        free(canvas);
        return rc;
    }
failed:
    ce__image_error(err, "corrupt or truncated GIF: %s", gif_text(gif->Error));
    return gif_code(gif->Error);
}

static int draw_frame(GifFileType *gif, int transparent, uint8_t *canvas, int cw, int ch,
                      ce_err *err)
{
    const GifImageDesc *d = &gif->Image;
    const ColorMapObject *map = d->ColorMap ? d->ColorMap : gif->SColorMap;
    if (!map || map->ColorCount < 1 || !map->Colors) {
        ce__image_error(err, "corrupt GIF: the first frame has no colour map");
        return -EBADMSG;
    }
    GifPixelType *line = malloc((size_t)d->Width);
    if (!line) {
        ce__image_error(err, "out of memory decoding a GIF");
        return -ENOMEM;
    }
    /* interlaced rows arrive in four passes: every 8th from 0, every 8th from 4, every
     * 4th from 2, every 2nd from 1 */
    static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
    const int passes = d->Interlace ? 4 : 1;
    for (int p = 0; p < passes; p++) {
        for (int r = d->Interlace ? start[p] : 0; r < d->Height; r += d->Interlace ? step[p] : 1) {
            if (DGifGetLine(gif, line, d->Width) == GIF_ERROR) {
                free(line);
                ce__image_error(err, "corrupt or truncated GIF: %s", gif_text(gif->Error));
                return gif_code(gif->Error) == -ENOTSUP ? -EBADMSG : gif_code(gif->Error);
            }
            const int y = d->Top + r;
            if (y < 0 || y >= ch) continue;
            uint8_t *row = canvas + (size_t)y * (size_t)cw * 3;
            for (int c = 0; c < d->Width; c++) {
                const int x = d->Left + c;
                if (x >= cw || line[c] == transparent) continue;
                int i = line[c] < map->ColorCount ? line[c] : map->ColorCount - 1;
                row[3 * x + 0] = map->Colors[i].Red;
                row[3 * x + 1] = map->Colors[i].Green;
                row[3 * x + 2] = map->Colors[i].Blue;
            }
        }
    }
    free(line);
    return 0;
}

/* ------------------------------------------------------------------ helpers */

static int gif_code(int error)
{
    switch (error) {
    case D_GIF_ERR_NOT_GIF_FILE: return -ENOTSUP;
    case D_GIF_ERR_NOT_ENOUGH_MEM: return -ENOMEM;
    default: return -EBADMSG;
    }
}

static const char *gif_text(int error)
{
    const char *s = GifErrorString(error);
    return s ? s : "unknown error";
}

static int on_read(GifFileType *gif, GifByteType *buf, int n)
{
    gif_src *s = gif->UserData;
    if (n <= 0) return 0;
    size_t left = s->size - s->pos, want = (size_t)n < left ? (size_t)n : left;
    memcpy(buf, s->data + s->pos, want);
    s->pos += want;
    return (int)want;
}
