/* Internals of web/: shared by server.c (HTTP), api.c (JSON endpoints), files.c
 * (originals and thumbnails), pool.c (database handles) and json.c. */
#ifndef CAPWEB_INTERNAL_H
#define CAPWEB_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "capdb.h"
#include "capengine.h"
#include "capweb.h"

/* ------------------------------------------------------------------ JSON text */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} jbuf;

void jb_free(jbuf *b);
void jb_put(jbuf *b, const char *s, size_t n);
void jb_puts(jbuf *b, const char *s);
void jb_printf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string literal, as `capsearch --json` writes it (cli_json_string): invalid UTF-8
 * becomes U+FFFD, C0 and C1 controls are escaped. NULL writes null. */
void jb_string(jbuf *b, const char *s);
/* '\n'-separated keywords as a JSON array of strings. */
void jb_keywords(jbuf *b, const char *keywords);

/* ------------------------------------------------------------------ database handles */

/* One indexed row, by id (what /api/images, /thumb and /image need): libcapdb's. */
typedef capdb_row web_row;

typedef struct web_conn web_conn; /* a read-only capdb handle and the file it opened */

typedef struct {
    pthread_mutex_t lock;
    const char *path;
    web_conn *idle[16];
    int n_idle;
} web_pool;

void pool_init(web_pool *p, const char *path);
void pool_destroy(web_pool *p);
/* A handle on the current file at the path: reopened when the file was replaced (another
 * inode) or damaged. Returns 0, or -ENOENT / -EBUSY / -EIO... with a message in err. */
int pool_get(web_pool *p, web_conn **out, capdb_err *err);
void pool_put(web_pool *p, web_conn *c, int broken);
capdb *conn_db(web_conn *c);
/* 1 found, 0 no such row, < 0 error (message in err). Free with row_free. */
int conn_row(web_conn *c, int64_t id, web_row *row, capdb_err *err);
void row_free(web_row *row);

/* ------------------------------------------------------------------ the server */

struct capweb {
    capweb_config cfg;
    struct MHD_Daemon *mhd;
    int listen_fd, own_fd, port, local;
    ce_model *text_model; /* CE_OPEN_TEXT_ONLY, shared by all threads; may be NULL */
    web_pool pool;
    char *token;
    char **allow_hosts;
    char *cache_dir;
    /* thumbnails being decoded at once */
    pthread_mutex_t thumb_lock;
    pthread_cond_t thumb_cond;
    int thumb_busy;
    /* per-client token buckets */
    pthread_mutex_t rate_lock;
    struct rate_slot {
        unsigned char addr[16];
        double tokens, last;
        int used;
    } * rate;
};

/* A finished response: status, content type, body (owned) or fd, extra headers. */
typedef struct {
    int status;
    const char *type;
    char *body; /* malloc'd; or NULL with fd >= 0 */
    size_t len;
    int fd; /* file to send (owned), -1 = none */
    int64_t fd_size;
    char etag[96];
    const char *cache; /* Cache-Control; NULL = no-store */
    const char *extra_name, *extra_value;
} web_reply;

/* args: looks a query argument up (NULL when absent); ctx is the MHD connection. */
typedef const char *(*web_arg_fn)(void *ctx, const char *name);

void reply_error(web_reply *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void reply_json(web_reply *r, int status, jbuf *b); /* takes b's text */
/* A database error: 503 when missing / locked / damaged, 500 otherwise. */
void reply_db_error(web_reply *r, int rc, const capdb_err *err);

void api_search(capweb *w, web_arg_fn arg, void *ctx, web_reply *r);
void api_image(capweb *w, int64_t id, web_reply *r);
void api_similar(capweb *w, int64_t id, web_arg_fn arg, void *ctx, web_reply *r);
void api_status(capweb *w, web_reply *r);
/* if_none_match: the request's If-None-Match header or NULL. */
void file_image(capweb *w, int64_t id, const char *if_none_match, web_reply *r);
void file_thumb(capweb *w, int64_t id, web_arg_fn arg, void *ctx, const char *if_none_match,
                web_reply *r);

/* "123" -> 123; anything else (signs, spaces, leading zeros, > 2^53) -> -1. */
int64_t web_parse_id(const char *s);
/* YYYY-MM-DD[THH:MM:SS] as UTC, years 1800..9999, like `capsearch --since`. */
int web_parse_date(const char *s, int end_of_day, int64_t *out);

/* The page: files compiled in by embed.cmake. */
typedef struct {
    const char *name; /* "/", "/app.js", ... */
    const char *type;
    const unsigned char *data;
    size_t size;
} web_asset;
extern const web_asset web_assets[];
extern const int web_n_assets;

#endif
