/*
 * Camera RAW decoding through LibRaw 0.20 (libraw_r, the thread-safe build): DNG, CR2,
 * CR3, NEF, ARW, ORF, RW2, RAF, PEF and the other formats LibRaw knows.
 *
 * - The embedded preview first: cameras store a full-size or near-full-size JPEG (or an
 *   RGB bitmap) beside the sensor data, already demosaiced, white-balanced and tone-
 *   mapped by the camera. It is used when both its sides are >= min_side (300 for the
 *   network); it is oriented by the RAW's flip (the preview is stored like the sensor).
 * - Otherwise a half-size decode: LibRaw's half_size mode takes each 2x2 Bayer block as
 *   one pixel (no demosaicing), camera white balance, 8-bit sRGB output (a full decode
 *   only when half the sensor would be under min_side); LibRaw applies the flip itself
 *   there, so *orientation is 1.
 * - Trust: LibRaw parses the container; the sensor size it reports (raw_width x
 *   raw_height) is checked against max_pixels before anything is unpacked, and the
 *   preview's size before it is decoded. LibRaw's data-error and memory-error callbacks,
 *   which print to stderr by default, are ours and only mark the decode as failed.
 *   Rejections: truncated or corrupt, or a camera LibRaw does not know (-EBADMSG: image.c
 *   already saw a RAW signature, and LibRaw reports a truncated DNG as "unsupported", so
 *   the two cannot be told apart), over the limit (-E2BIG), no memory (-ENOMEM).
 * - LibRaw 0.20's CR3 parser walks the ISO BMFF boxes with no check that a box's size
 *   moves it forward: a box of size 0 inside the file, or of 64-bit size 0, loops
 *   forever (a 592-byte file found by fuzz_heif). So before LibRaw sees a CR3, every box
 *   of every container it descends into must have a size of at least its header that
 *   ends inside its parent, at most 32 deep; otherwise -EBADMSG.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <libraw.h>

#include "image.h"

typedef struct {
    int data_error; /* LibRaw called the data-error callback: a truncated or bad file */
    int mem_error;
} raw_job;

static int try_preview(libraw_data_t *lr, const ce_decode_params *params, ce_image *img,
                       int *orientation);
static int half_size(libraw_data_t *lr, raw_job *job, const ce_decode_params *params, ce_image *img,
                     ce_err *err);
static int bmff_boxes_sane(const uint8_t *d, size_t n, int depth);
static int flip_to_orientation(int flip);
static int raw_code(int rc);
static void on_data_error(void *data, const char *file, const int offset);
static void on_mem_error(void *data, const char *file, const char *where);

int ce__decode_raw(const uint8_t *data, size_t size, const ce_decode_params *params, ce_image *img,
                   int *orientation, ce_err *err)
{
    raw_job job = {0, 0};
    if (size >= 8 && memcmp(data + 4, "ftyp", 4) == 0 && !bmff_boxes_sane(data, size, 0)) {
        ce__image_error(err, "corrupt CR3: a box's size is smaller than its header or runs "
                             "past its container");
        return -EBADMSG;
    }
    libraw_data_t *lr = libraw_init(LIBRAW_OPTIONS_NONE);
    if (!lr) {
        ce__image_error(err, "out of memory starting LibRaw");
        return -ENOMEM;
    }
    libraw_set_dataerror_handler(lr, on_data_error, &job);
    libraw_set_memerror_handler(lr, on_mem_error, &job);
    /* LibRaw only reads the buffer; its API is not const-correct */
    int rc = libraw_open_buffer(lr, (void *)(uintptr_t)data, size);
    if (rc != LIBRAW_SUCCESS) {
        /* the content is a RAW by its signature (image.c): LibRaw refusing it means a
         * damaged file (a truncated DNG reads as "unsupported") or a camera it does not
         * know; either way the file is not readable as it is */
        int code = raw_code(rc) == -ENOTSUP ? -EBADMSG : raw_code(rc);
        ce__image_error(err,
                        "corrupt or truncated RAW, or one from a camera LibRaw %s does not "
                        "know: %s",
                        libraw_version(), libraw_strerror(rc));
        libraw_close(lr);
        return code;
    }
    const int w = lr->sizes.width, h = lr->sizes.height, flip = lr->sizes.flip;
    rc = ce__image_check_size("RAW", lr->sizes.raw_width, lr->sizes.raw_height, params, err);
    if (rc == 0) {
        rc = try_preview(lr, params, img, orientation);
        if (rc == 0) {
            img->source_width = w; /* image.c turns these with the pixels */
            img->source_height = h;
        } else {
            /* a failed unpack_thumb leaves LibRaw unable to unpack: start again */
            libraw_recycle(lr);
            rc = libraw_open_buffer(lr, (void *)(uintptr_t)data, size);
            rc = rc == LIBRAW_SUCCESS ? half_size(lr, &job, params, img, err) : raw_code(rc);
            if (rc == 0) {
                /* the full sensor size, turned as LibRaw turned the pixels */
                img->source_width = flip & 4 ? h : w;
                img->source_height = flip & 4 ? w : h;
            }
            *orientation = 1;
        }
    }
    if (rc == 0) img->taken_time = (int64_t)lr->other.timestamp;
    libraw_close(lr);
    return rc;
}

/* 0 when the preview was decoded into img; negative (any reason) to fall back. */
static int try_preview(libraw_data_t *lr, const ce_decode_params *params, ce_image *img,
                       int *orientation)
{
    if (libraw_unpack_thumb(lr) != LIBRAW_SUCCESS) return -ENOENT;
    const libraw_thumbnail_t *t = &lr->thumbnail;
    if (!t->thumb || t->tlength == 0) return -ENOENT;
    const int min_side = params->min_side > 0 ? params->min_side : 1;
    ce_image tmp;
    memset(&tmp, 0, sizeof tmp);
    int rc = -ENOENT, ignored = 1;
    if (t->tformat == LIBRAW_THUMBNAIL_JPEG) {
        rc = ce__decode_jpeg((const uint8_t *)t->thumb, t->tlength, params, &tmp, &ignored, NULL);
    } else if (t->tformat == LIBRAW_THUMBNAIL_BITMAP && t->tcolors == 3 &&
               (uint64_t)t->twidth * t->theight * 3 <= t->tlength &&
               ce__image_check_size("RAW preview", t->twidth, t->theight, params, NULL) == 0) {
        rc = ce__image_from_buffer((const uint8_t *)t->thumb, t->twidth, t->theight,
                                   (size_t)t->twidth * 3, 3, params, &tmp, NULL);
    }
    if (rc < 0) return rc;
    if (tmp.source_width < min_side || tmp.source_height < min_side) {
        ce_image_free(&tmp);
        return -ENOENT; /* too small for the network: decode the sensor data */
    }
    *img = tmp;
    *orientation = flip_to_orientation(lr->sizes.flip);
    return 0;
}

static int half_size(libraw_data_t *lr, raw_job *job, const ce_decode_params *params, ce_image *img,
                     ce_err *err)
{
    /* a sensor so small that half of it is under min_side is decoded in full */
    const int min_side = params->min_side > 0 ? params->min_side : 1;
    const int short_side = lr->sizes.width < lr->sizes.height ? lr->sizes.width : lr->sizes.height;
    lr->params.half_size = short_side / 2 >= min_side;
    lr->params.use_camera_wb = 1;
    lr->params.output_bps = 8;
    lr->params.output_color = 1; /* sRGB */
    int rc = libraw_unpack(lr);
    if (rc == LIBRAW_SUCCESS && !job->data_error) rc = libraw_dcraw_process(lr);
    if (rc != LIBRAW_SUCCESS || job->data_error || job->mem_error) {
        int code = job->mem_error ? -ENOMEM : rc != LIBRAW_SUCCESS ? raw_code(rc) : -EBADMSG;
        if (code == -ENOTSUP) code = -EBADMSG; /* it opened: its data is what is wrong */
        ce__image_error(err, "%s RAW: %s",
                        code == -ENOMEM ? "out of memory decoding" : "corrupt or truncated",
                        rc != LIBRAW_SUCCESS ? libraw_strerror(rc) : "bad sensor data");
        return code;
    }
    int mrc = 0;
    libraw_processed_image_t *pi = libraw_dcraw_make_mem_image(lr, &mrc);
    if (!pi) {
        ce__image_error(err, "RAW: %s", libraw_strerror(mrc));
        return mrc == LIBRAW_UNSUFFICIENT_MEMORY ? -ENOMEM : -EBADMSG;
    }
    if (pi->type != LIBRAW_IMAGE_BITMAP || pi->colors != 3 || pi->bits != 8 ||
        (size_t)pi->width * pi->height * 3 > pi->data_size) {
        int colors = pi->colors, bits = pi->bits; /* read before the image is freed */
        libraw_dcraw_clear_mem(pi);
        ce__image_error(err, "unsupported RAW: LibRaw gave an image of %d colours, %d bits", colors,
                        bits);
        return -ENOTSUP;
    }
    rc = ce__image_from_buffer(pi->data, pi->width, pi->height, (size_t)pi->width * 3, 3, params,
                               img, err);
    libraw_dcraw_clear_mem(pi);
    return rc;
}

/* ------------------------------------------------------------------ helpers */

/* dcraw's flip: 3 = 180 degrees, 5 = 90 counter-clockwise, 6 = 90 clockwise; EXIF's
 * values for the same turns are 3, 8, 6. Mirrored flips do not occur in cameras. */
/* The containers LibRaw's parseCR3 descends into, and the bytes before their first child
 * (stsd: version, flags and entry count; CRAW: its sample description). Of the uuid
 * boxes only Canon's (children after the uuid) and the preview's (after the uuid and 8
 * more bytes) hold boxes; others, such as XMP's, hold text. */
static const struct {
    char type[5];
    int skip;
} BMFF_CONTAINERS[] = {
    {"dinf", 0}, {"edts", 0}, {"fiin", 0}, {"ipro", 0}, {"iprp", 0}, {"mdia", 0},
    {"meco", 0}, {"mere", 0}, {"mfra", 0}, {"minf", 0}, {"moof", 0}, {"moov", 0},
    {"mvex", 0}, {"paen", 0}, {"schi", 0}, {"sinf", 0}, {"skip", 0}, {"stbl", 0},
    {"strk", 0}, {"tapt", 0}, {"traf", 0}, {"trak", 0}, {"stsd", 8}, {"CRAW", 82},
};
static const uint8_t UUID_CANON[16] = {0x85, 0xc0, 0xb6, 0x87, 0x82, 0x0f, 0x11, 0xe0,
                                       0x81, 0x11, 0xf4, 0xce, 0x46, 0x2b, 0x6a, 0x48};
static const uint8_t UUID_PREVIEW[16] = {0xea, 0xf4, 0x2b, 0x5e, 0x1c, 0x98, 0x4b, 0x88,
                                         0xb9, 0xfb, 0xb7, 0xdc, 0x40, 0x6e, 0x4d, 0x16};

/* Where the children of box b (header bytes, box bytes in all) start, or 0 for a leaf. */
static size_t bmff_children(const uint8_t *b, size_t header, uint64_t box)
{
    if (memcmp(b + 4, "uuid", 4) == 0) {
        if (box < header + 16) return 0;
        if (memcmp(b + header, UUID_CANON, 16) == 0) return header + 16;
        if (memcmp(b + header, UUID_PREVIEW, 16) == 0) return header + 24;
        return 0;
    }
    for (size_t c = 0; c < sizeof BMFF_CONTAINERS / sizeof *BMFF_CONTAINERS; c++)
        if (memcmp(b + 4, BMFF_CONTAINERS[c].type, 4) == 0)
            return header + (size_t)BMFF_CONTAINERS[c].skip;
    return 0;
}

/* Every box of d[0, n) and of the containers above, recursively: a 32-bit size of at
 * least 8 (or 1 and a 64-bit size of at least 16) ending inside n; size 0 ("to the end")
 * only for the file's last top-level box. */
static int bmff_boxes_sane(const uint8_t *d, size_t n, int depth)
{
    if (depth > 32) return 0;
    size_t at = 0;
    while (n - at >= 8) {
        const uint8_t *b = d + at;
        uint64_t box = (uint64_t)b[0] << 24 | (uint64_t)b[1] << 16 | (uint64_t)b[2] << 8 | b[3];
        size_t header = 8;
        if (box == 1) {
            if (n - at < 16) return 0;
            box = 0;
            for (int i = 8; i < 16; i++) box = box << 8 | b[i];
            header = 16;
        } else if (box == 0) {
            if (depth > 0) return 0;
            box = n - at;
        }
        if (box < header || box > n - at) return 0;
        const size_t first = bmff_children(b, header, box);
        if (first && first <= box && !bmff_boxes_sane(b + first, (size_t)box - first, depth + 1))
            return 0;
        at += (size_t)box;
    }
    return 1;
}

static int flip_to_orientation(int flip)
{
    switch (flip) {
    case 3: return 3;
    case 5: return 8;
    case 6: return 6;
    default: return 1;
    }
}

static int raw_code(int rc)
{
    switch (rc) {
    case LIBRAW_SUCCESS: return 0;
    case LIBRAW_FILE_UNSUPPORTED:
    case LIBRAW_REQUEST_FOR_NONEXISTENT_IMAGE: return -ENOTSUP;
    case LIBRAW_UNSUFFICIENT_MEMORY: return -ENOMEM;
    case LIBRAW_TOO_BIG: return -E2BIG;
    default: return -EBADMSG; /* IO error, data error, cancelled, out of order */
    }
}

static void on_data_error(void *data, const char *file, const int offset)
{
    (void)file;
    (void)offset;
    ((raw_job *)data)->data_error = 1;
}

static void on_mem_error(void *data, const char *file, const char *where)
{
    (void)file;
    (void)where;
    ((raw_job *)data)->mem_error = 1;
}
