/*
 * make_heif OUT WIDTH HEIGHT [--avif] [--orientation N] [--exif-orientation N] [--quality Q]
 *
 * Writes a HEIC (x265) or AVIF (aom) the way an iPhone lays out a portrait photo: the
 * pixels stored as the sensor saw them and an irot/imir transformation (libheif's
 * encoder writes them from --orientation, EXIF numbering), plus an Exif block with a
 * DateTimeOriginal and its own Orientation tag (iPhones write both; readers must apply
 * irot and ignore the EXIF one). Displayed, the picture's quarters are red, green, blue
 * and white, whatever the orientation. Debian 12's heif-enc writes no irot from a
 * rotated JPEG, hence this generator, on libheif's own encoder API.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libheif/heif.h>

static void stored_of(int orientation, int sw, int sh, int dx, int dy, int *sx, int *sy);
static size_t exif_block(uint8_t *out, int orientation);

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: make_heif OUT W H [--avif] [--orientation N] "
                        "[--exif-orientation N] [--quality Q]\n");
        return 2;
    }
    const char *out = argv[1];
    const int dw = atoi(argv[2]), dh = atoi(argv[3]);
    int avif = 0, orientation = 1, exif_orientation = 0, quality = 80;
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--avif") == 0) avif = 1;
        else if (strcmp(argv[i], "--orientation") == 0 && i + 1 < argc)
            orientation = atoi(argv[++i]);
        else if (strcmp(argv[i], "--exif-orientation") == 0 && i + 1 < argc)
            exif_orientation = atoi(argv[++i]);
        else if (strcmp(argv[i], "--quality") == 0 && i + 1 < argc) quality = atoi(argv[++i]);
        else {
            fprintf(stderr, "make_heif: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (dw < 8 || dh < 8 || orientation < 1 || orientation > 8) return 2;
    const int swap = orientation >= 5;
    const int sw = swap ? dh : dw, sh = swap ? dw : dh;

    struct heif_image *img = NULL;
    struct heif_error e =
        heif_image_create(sw, sh, heif_colorspace_RGB, heif_chroma_interleaved_RGB, &img);
    if (e.code == heif_error_Ok) e = heif_image_add_plane(img, heif_channel_interleaved, sw, sh, 8);
    if (e.code != heif_error_Ok) return fprintf(stderr, "make_heif: %s\n", e.message), 1;
    int stride = 0;
    uint8_t *px = heif_image_get_plane(img, heif_channel_interleaved, &stride);
    static const uint8_t colours[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};
    for (int dy = 0; dy < dh; dy++) {
        for (int dx = 0; dx < dw; dx++) {
            int sx, sy;
            stored_of(orientation, sw, sh, dx, dy, &sx, &sy);
            memcpy(px + (size_t)sy * (size_t)stride + (size_t)sx * 3,
                   colours[(dy >= dh / 2) * 2 + (dx >= dw / 2)], 3);
        }
    }

    struct heif_context *ctx = heif_context_alloc();
    struct heif_encoder *enc = NULL;
    e = heif_context_get_encoder_for_format(
        ctx, avif ? heif_compression_AV1 : heif_compression_HEVC, &enc);
    if (e.code != heif_error_Ok) return fprintf(stderr, "make_heif: %s\n", e.message), 1;
    heif_encoder_set_lossy_quality(enc, quality);
    if (avif) heif_encoder_set_parameter(enc, "speed", "9");
    struct heif_encoding_options *opts = heif_encoding_options_alloc();
    opts->image_orientation = (enum heif_orientation)orientation;
    struct heif_image_handle *handle = NULL;
    e = heif_context_encode_image(ctx, img, enc, opts, &handle);
    if (e.code != heif_error_Ok) return fprintf(stderr, "make_heif: %s\n", e.message), 1;
    uint8_t exif[128];
    size_t n = exif_block(exif, exif_orientation ? exif_orientation : orientation);
    heif_context_add_exif_metadata(ctx, handle, exif, (int)n);
    e = heif_context_write_to_file(ctx, out);
    if (e.code != heif_error_Ok) return fprintf(stderr, "make_heif: %s\n", e.message), 1;
    heif_image_handle_release(handle);
    heif_encoding_options_free(opts);
    heif_encoder_release(enc);
    heif_image_release(img);
    heif_context_free(ctx);
    return 0;
}

/* The stored pixel shown at display (dx, dy): engine/image.c's table, stored size sw x sh. */
static void stored_of(int o, int sw, int sh, int dx, int dy, int *sx, int *sy)
{
    switch (o) {
    case 2: *sx = sw - 1 - dx, *sy = dy; break;
    case 3: *sx = sw - 1 - dx, *sy = sh - 1 - dy; break;
    case 4: *sx = dx, *sy = sh - 1 - dy; break;
    case 5: *sx = dy, *sy = dx; break;
    case 6: *sx = dy, *sy = sh - 1 - dx; break;
    case 7: *sx = sw - 1 - dy, *sy = sh - 1 - dx; break;
    case 8: *sx = sw - 1 - dy, *sy = dx; break;
    default: *sx = dx, *sy = dy;
    }
}

/* "Exif\0\0" + a little-endian TIFF: IFD0 {Orientation, ExifIFD}, Exif IFD
 * {DateTimeOriginal 2021:06:15 12:34:56}. */
static size_t exif_block(uint8_t *out, int orientation)
{
    static const char date[20] = "2021:06:15 12:34:56";
    uint8_t t[] = {
        'I',  'I',  42, 0, 8,  0, 0, 0, /* header, IFD0 at 8 */
        2,    0,                        /* IFD0: 2 entries */
        0x12, 0x01, 3,  0, 1,  0, 0, 0, (uint8_t)orientation,
        0,    0,    0, /* Orientation */
        0x69, 0x87, 4,  0, 1,  0, 0, 0, 38,
        0,    0,    0,     /* ExifIFD at 38 */
        0,    0,    0,  0, /* no IFD1 */
        1,    0,           /* Exif IFD at 38 */
        0x03, 0x90, 2,  0, 20, 0, 0, 0, 56,
        0,    0,    0, /* DateTimeOriginal at 56 */
        0,    0,    0,  0,
    };
    memcpy(out, "Exif\0\0", 6);
    memcpy(out + 6, t, sizeof t);
    memcpy(out + 6 + sizeof t, date, sizeof date);
    return 6 + sizeof t + sizeof date;
}
