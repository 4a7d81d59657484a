/*
 * Originals and thumbnails, always found through the id of an indexed row: no path from
 * the request ever reaches the file system.
 *
 * /image/{id}: the file at the row's path (O_NOFOLLOW, regular files only), its type
 * sniffed from its first bytes, ETag from inode + size + mtime.
 * /thumb/{id}?size=N: the longest side fitted to 128, 256, 512 or 1024 (N rounded up);
 * decoded by the engine (DCT-scaled JPEG decode at the smallest scale that covers the
 * thumbnail, EXIF orientation applied), box-filtered down, encoded by libjpeg-turbo, and
 * cached as CACHE/thumbs/<fingerprint>-<size>-<N>.jpg: a re-indexed image gets a new
 * fingerprint and so a new thumbnail. A file whose size or mtime no longer match its row
 * (changed, not re-indexed yet) gets a fresh thumbnail that is not cached.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>

#include "web_internal.h"

#define THUMB_QUALITY 80
#define MAX_ORIGINAL_BYTES (512LL << 20)

static int open_original(const web_row *row, struct stat *st, web_reply *r)
{
    int fd = open(row->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            reply_error(r, 404,
                        "the file of image %lld is gone (it is removed from the index "
                        "when the daemon sees it)",
                        (long long)row->id);
        else if (e == ELOOP)
            reply_error(r, 403, "the file of image %lld is now a symbolic link",
                        (long long)row->id);
        else
            reply_error(r, e == EACCES ? 403 : 500, "cannot open the file of image %lld: %s",
                        (long long)row->id, strerror(e));
        return -1;
    }
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        reply_error(r, 403, "the file of image %lld is not a regular file", (long long)row->id);
        return -1;
    }
    return fd;
}

static int etag_matches(const char *if_none_match, const char *etag)
{
    if (!if_none_match) return 0;
    if (strcmp(if_none_match, "*") == 0) return 1;
    return strstr(if_none_match, etag) != NULL;
}

static const char *sniff_type(int fd)
{
    unsigned char h[12] = {0};
    ssize_t n = pread(fd, h, sizeof h, 0);
    if (n >= 3 && h[0] == 0xFF && h[1] == 0xD8 && h[2] == 0xFF) return "image/jpeg";
    if (n >= 8 && !memcmp(h, "\x89PNG\r\n\x1a\n", 8)) return "image/png";
    if (n >= 6 && (!memcmp(h, "GIF87a", 6) || !memcmp(h, "GIF89a", 6))) return "image/gif";
    if (n >= 12 && !memcmp(h, "RIFF", 4) && !memcmp(h + 8, "WEBP", 4)) return "image/webp";
    return NULL;
}

static int load_row(capweb *w, int64_t id, web_row *row, web_reply *r)
{
    if (id <= 0) {
        reply_error(r, 400, "an image id is a positive number");
        return 0;
    }
    web_conn *c = NULL;
    capdb_err err = {{0}, 0};
    int rc = pool_get(&w->pool, &c, &err);
    if (rc == 0) rc = conn_row(c, id, row, &err);
    pool_put(&w->pool, c, rc < 0);
    if (rc < 0) reply_db_error(r, rc, &err);
    else if (rc == 0) reply_error(r, 404, "no image with id %lld", (long long)id);
    return rc > 0;
}

void file_image(capweb *w, int64_t id, const char *if_none_match, web_reply *r)
{
    web_row row;
    if (!load_row(w, id, &row, r)) return;
    struct stat st;
    int fd = open_original(&row, &st, r);
    row_free(&row);
    if (fd < 0) return;
    const char *type = sniff_type(fd);
    snprintf(r->etag, sizeof r->etag, "\"i%llx-%llx-%llx\"", (unsigned long long)st.st_ino,
             (unsigned long long)st.st_size,
             (unsigned long long)((int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec));
    r->cache = "private, no-cache";
    if (etag_matches(if_none_match, r->etag)) {
        close(fd);
        r->status = 304;
        return;
    }
    r->status = 200;
    r->type = type ? type : "application/octet-stream";
    if (!type) {
        r->extra_name = "Content-Disposition";
        r->extra_value = "attachment";
    }
    r->fd = fd;
    r->fd_size = st.st_size;
}

/* ------------------------------------------------------------------ thumbnails */

static int thumb_bucket(const char *s)
{
    static const int SIZES[] = {128, 256, 512, 1024};
    if (!s) return 256;
    int64_t v = web_parse_id(s);
    if (v < 16 || v > 1024) return -1;
    for (size_t i = 0; i < sizeof SIZES / sizeof SIZES[0]; i++)
        if (v <= SIZES[i]) return SIZES[i];
    return -1;
}

/* Area average of the source pixels under each destination pixel (downscale only). */
static uint8_t *box_resize(const ce_image *img, int ow, int oh)
{
    uint8_t *out = malloc((size_t)ow * (size_t)oh * 3);
    uint32_t *acc = calloc((size_t)ow * 3, sizeof *acc);
    int *x0 = malloc(((size_t)ow + 1) * sizeof *x0);
    if (!out || !acc || !x0) {
        free(out);
        free(acc);
        free(x0);
        return NULL;
    }
    int w = img->width, h = img->height;
    for (int x = 0; x <= ow; x++) x0[x] = (int)((int64_t)x * w / ow);
    for (int oy = 0; oy < oh; oy++) {
        int y0 = (int)((int64_t)oy * h / oh), y1 = (int)((int64_t)(oy + 1) * h / oh);
        if (y1 <= y0) y1 = y0 + 1;
        memset(acc, 0, (size_t)ow * 3 * sizeof *acc);
        for (int y = y0; y < y1; y++) {
            const uint8_t *row = img->pixels + (size_t)y * (size_t)w * 3;
            for (int ox = 0; ox < ow; ox++) {
                int a = x0[ox], b = x0[ox + 1] > a ? x0[ox + 1] : a + 1;
                uint32_t s0 = 0, s1 = 0, s2 = 0;
                for (int x = a; x < b; x++) {
                    s0 += row[x * 3];
                    s1 += row[x * 3 + 1];
                    s2 += row[x * 3 + 2];
                }
                acc[ox * 3] += s0;
                acc[ox * 3 + 1] += s1;
                acc[ox * 3 + 2] += s2;
            }
        }
        uint8_t *o = out + (size_t)oy * (size_t)ow * 3;
        for (int ox = 0; ox < ow; ox++) {
            int a = x0[ox], b = x0[ox + 1] > a ? x0[ox + 1] : a + 1;
            uint32_t n = (uint32_t)(b - a) * (uint32_t)(y1 - y0);
            for (int c = 0; c < 3; c++) o[ox * 3 + c] = (uint8_t)((acc[ox * 3 + c] + n / 2) / n);
        }
    }
    free(acc);
    free(x0);
    return out;
}

static int encode_jpeg(const uint8_t *rgb, int w, int h, unsigned char **out, unsigned long *size)
{
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    cinfo.err = jpeg_std_error(&jerr); /* compressing our own buffer: no error path */
    jpeg_create_compress(&cinfo);
    *out = NULL;
    *size = 0;
    jpeg_mem_dest(&cinfo, out, size);
    cinfo.image_width = (JDIMENSION)w;
    cinfo.image_height = (JDIMENSION)h;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, THUMB_QUALITY, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)cinfo.next_scanline * (size_t)w * 3);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return *out ? 0 : -ENOMEM;
}

static void thumb_enter(capweb *w)
{
    pthread_mutex_lock(&w->thumb_lock);
    while (w->thumb_busy >= w->cfg.thumb_workers) pthread_cond_wait(&w->thumb_cond, &w->thumb_lock);
    w->thumb_busy++;
    pthread_mutex_unlock(&w->thumb_lock);
}

static void thumb_leave(capweb *w)
{
    pthread_mutex_lock(&w->thumb_lock);
    w->thumb_busy--;
    pthread_cond_signal(&w->thumb_cond);
    pthread_mutex_unlock(&w->thumb_lock);
}

/* Decodes the original and makes the JPEG; 0 ok, or replied. */
static int make_thumb(capweb *w, const web_row *row, int bucket, unsigned char **jpg,
                      unsigned long *jpg_size, int *cacheable, web_reply *r)
{
    struct stat st;
    int fd = open_original(row, &st, r);
    if (fd < 0) return -1;
    *cacheable = row->fingerprint != 0 && st.st_size == row->size &&
                 (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec == row->mtime_ns;
    if (st.st_size == 0 || st.st_size > MAX_ORIGINAL_BYTES) {
        close(fd);
        reply_error(r, 415, "cannot make a thumbnail of image %lld: the file is %s",
                    (long long)row->id, st.st_size ? "too large" : "empty");
        return -1;
    }
    void *data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (data == MAP_FAILED) {
        reply_error(r, 500, "cannot read the file of image %lld: %s", (long long)row->id,
                    strerror(errno));
        return -1;
    }
    /* the smallest DCT scale whose short side still gives the long side `bucket` */
    int lo = row->width < row->height ? row->width : row->height;
    int hi = row->width < row->height ? row->height : row->width;
    ce_load_options opt = {
        .min_side = lo > 0 && hi > 0 ? (int)(((int64_t)bucket * lo + hi - 1) / hi) : bucket};
    if (opt.min_side < 1) opt.min_side = 1;
    ce_image img = {0};
    ce_err err = {{0}};
    thumb_enter(w);
    int rc = ce_image_load_memory(data, (size_t)st.st_size, &opt, &img, &err);
    munmap(data, (size_t)st.st_size);
    if (rc < 0) {
        thumb_leave(w);
        reply_error(r, rc == -ENOMEM ? 500 : 415, "cannot make a thumbnail of image %lld: %s",
                    (long long)row->id, err.msg);
        return -1;
    }
    int ow = img.width, oh = img.height;
    if (ow > bucket || oh > bucket) {
        if (ow >= oh) {
            oh = (int)(((int64_t)oh * bucket + ow / 2) / ow);
            ow = bucket;
        } else {
            ow = (int)(((int64_t)ow * bucket + oh / 2) / oh);
            oh = bucket;
        }
        if (ow < 1) ow = 1;
        if (oh < 1) oh = 1;
    }
    uint8_t *px = ow == img.width && oh == img.height ? img.pixels : box_resize(&img, ow, oh);
    rc = px ? encode_jpeg(px, ow, oh, jpg, jpg_size) : -ENOMEM;
    if (px != img.pixels) free(px);
    ce_image_free(&img);
    thumb_leave(w);
    if (rc < 0) {
        reply_error(r, 500, "out of memory");
        return -1;
    }
    return 0;
}

static void cache_store(const char *path, const unsigned char *data, size_t size)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) return;
    int ok = fchmod(fd, 0644) == 0 && write(fd, data, size) == (ssize_t)size;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) unlink(tmp);
}

void file_thumb(capweb *w, int64_t id, web_arg_fn arg, void *ctx, const char *if_none_match,
                web_reply *r)
{
    int bucket = thumb_bucket(arg(ctx, "size"));
    if (bucket < 0) {
        reply_error(r, 400, "size wants a number from 16 to 1024");
        return;
    }
    web_row row;
    if (!load_row(w, id, &row, r)) return;
    char key[80], path[4200] = "";
    snprintf(key, sizeof key, "%016llx-%llx-%d", (unsigned long long)row.fingerprint,
             (unsigned long long)row.size, bucket);
    snprintf(r->etag, sizeof r->etag, "\"t%s\"", key);
    r->cache = "private, max-age=3600";
    if (row.fingerprint && etag_matches(if_none_match, r->etag)) {
        row_free(&row);
        r->status = 304;
        return;
    }
    if (w->cache_dir && row.fingerprint) {
        snprintf(path, sizeof path, "%s/thumbs/%s.jpg", w->cache_dir, key);
        /* only while the original is still the file that was indexed */
        struct stat orig, st;
        int same =
            lstat(row.path, &orig) == 0 && S_ISREG(orig.st_mode) && orig.st_size == row.size &&
            (int64_t)orig.st_mtim.tv_sec * 1000000000LL + orig.st_mtim.tv_nsec == row.mtime_ns;
        int fd = same ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
        if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
            row_free(&row);
            r->status = 200;
            r->type = "image/jpeg";
            r->fd = fd;
            r->fd_size = st.st_size;
            r->extra_name = "X-Thumb-Cache";
            r->extra_value = "hit";
            return;
        }
        if (fd >= 0) close(fd);
    }
    unsigned char *jpg = NULL;
    unsigned long jpg_size = 0;
    int cacheable = 0;
    if (make_thumb(w, &row, bucket, &jpg, &jpg_size, &cacheable, r) == 0) {
        if (cacheable && path[0]) cache_store(path, jpg, jpg_size);
        if (!cacheable) {
            r->etag[0] = '\0';
            r->cache = NULL;
        }
        r->status = 200;
        r->type = "image/jpeg";
        r->body = malloc(jpg_size ? jpg_size : 1);
        if (r->body) {
            memcpy(r->body, jpg, jpg_size);
            r->len = jpg_size;
        } else {
            reply_error(r, 500, "out of memory");
        }
        r->extra_name = "X-Thumb-Cache";
        r->extra_value = cacheable && path[0] ? "miss" : "bypass";
    }
    free(jpg);
    row_free(&row);
}
