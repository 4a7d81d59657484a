/*
 * capweb: the capsearch web page and HTTP JSON API — the only public header of web/.
 *
 * An HTTP server (libmicrohttpd, one thread per connection, bounded) that reads the index
 * read-only and serves:
 *   GET /                    the page (HTML, CSS and JS compiled into the binary)
 *   GET /api/search?q=&limit=&offset=&dir=&since=&until=
 *   GET /api/images/{id}     GET /api/similar/{id}     GET /api/status
 *   GET /thumb/{id}?size=    JPEG thumbnail (cached by the image's fingerprint)
 *   GET /image/{id}          the original file, by the id of an indexed row only
 *   POST /login              token=... sets the session cookie (when a token is set)
 * Errors are JSON ({"error": "...", "status": N}) with the HTTP status.
 *
 * Security: a Host header must be "localhost", an IP literal or a name given in
 * allow_hosts (DNS rebinding); when a token is set every /api, /thumb and /image request
 * needs "Authorization: Bearer TOKEN" or the capsearch_token cookie; per-client request
 * rate and connection limits; no request body except /login's (1 KiB).
 */
#ifndef CAPWEB_H
#define CAPWEB_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct capweb capweb;

typedef struct {
    const char *db_path;    /* the index (opened read-only, per request thread) */
    const char *models_dir; /* for the text side (query -> concepts); NULL = default */
    const char *cache_dir;  /* thumbnails go under cache_dir/thumbs; NULL = none cached */
    /* Where to listen: an already listening socket (socket activation, or one the caller
     * bound), else host:port ("127.0.0.1:8377", "[::1]:0", "0.0.0.0:8377"). */
    int listen_fd; /* -1 = none */
    const char *listen;
    const char *token; /* NULL = no token needed */
    const char *const *allow_hosts;
    int n_allow_hosts;
    double rate_limit;   /* requests per second per client address; 0 = unlimited */
    int max_connections; /* 0 = 256 */
    int thumb_workers;   /* thumbnails decoded at once; 0 = the number of CPUs */
    int log_requests;    /* one line per request on stderr */
} capweb_config;

/* Starts the server (its threads run until capweb_stop). Returns 0, or a negative errno
 * code with a one-line message in err. Refuses (-EPERM) a listening address that is not
 * loopback when no token is set. */
#define CAPWEB_ERR_MAX 512
typedef struct {
    char msg[CAPWEB_ERR_MAX];
} capweb_err; /* as ce_err, capdb_err, cx_err */

int capweb_start(const capweb_config *cfg, capweb **out, capweb_err *err);
/* The bound TCP port (after ":0"), 0 for a UNIX socket. */
int capweb_port(const capweb *w);
/* 1 when the listening socket is loopback or a UNIX socket. */
int capweb_is_local(const capweb *w);
void capweb_stop(capweb *w);

#ifdef __cplusplus
}
#endif
#endif
