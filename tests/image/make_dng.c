/*
 * make_dng OUT WIDTH HEIGHT [--preview PW PH] [--orientation N]
 *
 * Writes a small but complete DNG 1.4 with libtiff, because no Debian 12 tool writes a
 * camera RAW (ImageMagick and LibRaw only read them): a 16-bit RGGB Bayer mosaic
 * (PhotometricInterpretation CFA) whose four quarters are red, green, blue and white,
 * with the DNG tags LibRaw needs (DNGVersion, UniqueCameraModel, CFA pattern, colour
 * matrix, as-shot neutral, white level) and the Orientation tag. With --preview the DNG
 * is laid out as cameras do: IFD0 a JPEG preview of the same picture
 * (NewSubFileType 1), the mosaic in a SubIFD. The tests use it for RAW through the real
 * binaries (tests/image/test_formats.py) and the benchmark for a 12 MP RAW.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tiffio.h>

static void set_array(TIFF *tif, uint32_t tag, int count, const void *values);
static void quarter_rgb(int x, int y, int w, int h, int rgb[3]);
static int write_mosaic(TIFF *tif, int w, int h, int orientation, int is_main);
static int write_preview(TIFF *tif, int w, int h, int orientation);

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: make_dng OUT W H [--preview PW PH] [--orientation N]\n");
        return 2;
    }
    const char *out = argv[1];
    int w = atoi(argv[2]), h = atoi(argv[3]), pw = 0, ph = 0, orientation = 1;
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--preview") == 0 && i + 2 < argc) {
            pw = atoi(argv[++i]);
            ph = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--orientation") == 0 && i + 1 < argc) {
            orientation = atoi(argv[++i]);
        } else {
            fprintf(stderr, "make_dng: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (w < 2 || h < 2 || w % 2 || h % 2) {
        fprintf(stderr, "make_dng: sides must be even and >= 2\n");
        return 2;
    }
    TIFF *tif = TIFFOpen(out, "w");
    if (!tif) return 1;
    int rc;
    if (pw > 0) {
        uint64_t sub = 0;
        TIFFSetField(tif, TIFFTAG_SUBIFD, 1, &sub);
        rc = write_preview(tif, pw, ph, orientation) || write_mosaic(tif, w, h, orientation, 0);
    } else {
        rc = write_mosaic(tif, w, h, orientation, 1);
    }
    TIFFClose(tif);
    return rc;
}

static void common_tags(TIFF *tif, int orientation)
{
    static const uint8_t version[4] = {1, 4, 0, 0}, backward[4] = {1, 1, 0, 0};
    set_array(tif, TIFFTAG_DNGVERSION, 4, version);
    set_array(tif, TIFFTAG_DNGBACKWARDVERSION, 4, backward);
    TIFFSetField(tif, TIFFTAG_UNIQUECAMERAMODEL, "capsearch make_dng");
    TIFFSetField(tif, TIFFTAG_MAKE, "capsearch");
    TIFFSetField(tif, TIFFTAG_MODEL, "make_dng");
    TIFFSetField(tif, TIFFTAG_ORIENTATION, (uint16_t)orientation);
    TIFFSetField(tif, TIFFTAG_SOFTWARE, "capsearch tests/image/make_dng.c");
    /* XYZ(D65) -> camera: sRGB's inverse matrix, so the camera "is" linear sRGB */
    static const float xyz_to_cam[9] = {3.2406f, -1.5372f, -0.4986f, -0.9689f, 1.8758f,
                                        0.0415f, 0.0557f,  -0.2040f, 1.0570f};
    static const float neutral[3] = {1, 1, 1};
    set_array(tif, TIFFTAG_COLORMATRIX1, 9, xyz_to_cam);
    TIFFSetField(tif, TIFFTAG_CALIBRATIONILLUMINANT1, (uint16_t)21); /* D65 */
    set_array(tif, TIFFTAG_ASSHOTNEUTRAL, 3, neutral);
}

static int write_preview(TIFF *tif, int w, int h, int orientation)
{
    TIFFSetField(tif, TIFFTAG_SUBFILETYPE, FILETYPE_REDUCEDIMAGE);
    TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, (uint32_t)w);
    TIFFSetField(tif, TIFFTAG_IMAGELENGTH, (uint32_t)h);
    TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, 8);
    TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, 3);
    TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    /* a baseline JPEG in one strip, tables included, as cameras store their preview */
    TIFFSetField(tif, TIFFTAG_COMPRESSION, COMPRESSION_JPEG);
    TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_YCBCR);
    TIFFSetField(tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
    TIFFSetField(tif, TIFFTAG_JPEGTABLESMODE, 0);
    TIFFSetField(tif, TIFFTAG_JPEGQUALITY, 90);
    TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, (uint32_t)h);
    common_tags(tif, orientation);
    uint8_t *row = malloc((size_t)w * 3);
    if (!row) return 1;
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            int rgb[3];
            quarter_rgb(x, y, w, h, rgb);
            for (int c = 0; c < 3; c++) row[3 * x + c] = rgb[c] ? 255 : 0;
        }
        if (TIFFWriteScanline(tif, row, (uint32_t)y, 0) < 0) return free(row), 1;
    }
    free(row);
    return TIFFWriteDirectory(tif) ? 0 : 1;
}

static int write_mosaic(TIFF *tif, int w, int h, int orientation, int is_main)
{
    TIFFSetField(tif, TIFFTAG_SUBFILETYPE, 0);
    TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, (uint32_t)w);
    TIFFSetField(tif, TIFFTAG_IMAGELENGTH, (uint32_t)h);
    TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, 16);
    TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, 1);
    TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, 32803); /* CFA */
    TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(tif, TIFFTAG_COMPRESSION, COMPRESSION_NONE);
    TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, (uint32_t)16);
    static const uint16_t dim[2] = {2, 2};
    static const uint8_t rggb[4] = {0, 1, 1, 2};
    set_array(tif, TIFFTAG_CFAREPEATPATTERNDIM, 2, dim);
    set_array(tif, TIFFTAG_CFAPATTERN, 4, rggb);
    static const uint32_t white = 65535;
    set_array(tif, TIFFTAG_WHITELEVEL, 1, &white);
    if (is_main) common_tags(tif, orientation);
    uint16_t *row = malloc((size_t)w * 2);
    if (!row) return 1;
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            int rgb[3];
            quarter_rgb(x, y, w, h, rgb);
            int c = rggb[(y % 2) * 2 + x % 2];
            row[x] = (uint16_t)rgb[c];
        }
        if (TIFFWriteScanline(tif, row, (uint32_t)y, 0) < 0) return free(row), 1;
    }
    free(row);
    return TIFFWriteDirectory(tif) ? 0 : 1;
}

/* ------------------------------------------------------------------ helpers */

/* Quarters: top-left red, top-right green, bottom-left blue, bottom-right white; a
 * 16-bit linear value. */
static void quarter_rgb(int x, int y, int w, int h, int rgb[3])
{
    static const int colours[4][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1, 1, 1}};
    const int *c = colours[(y >= h / 2) * 2 + (x >= w / 2)];
    for (int i = 0; i < 3; i++) rgb[i] = c[i] ? 50000 : 0;
}

/* libtiff takes some arrays with a count and some without (fixed-size tags). */
static void set_array(TIFF *tif, uint32_t tag, int count, const void *values)
{
    const TIFFField *f = TIFFFieldWithTag(tif, tag);
    if (f && TIFFFieldPassCount(f)) TIFFSetField(tif, tag, count, values);
    else TIFFSetField(tif, tag, values);
}
