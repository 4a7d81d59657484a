/*
 * The HTTP side: libmicrohttpd (one thread per connection, bounded), the checks every
 * request passes (method, Host header, rate, token), routing, and the response headers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "web_internal.h"

#define LOGIN_BODY_MAX 1024
#define RATE_SLOTS 4096
#define MEMORY_PER_CONNECTION (32 * 1024) /* request line + headers: larger gets 414/431 */
#define PER_IP_CONNECTIONS 64
#define CONNECTION_TIMEOUT_S 30

static const char CSP[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

typedef struct {
    int started;
    char body[LOGIN_BODY_MAX + 1];
    size_t body_len;
    double t0;
    int status;
    int refused; /* answered from the headers alone */
} request;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------ checks */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int host_allowed(const capweb *w, const char *host)
{
    if (!host) return 1; /* HTTP/1.0 without Host: no browser sends that */
    char name[256];
    size_t len = strlen(host);
    if (len == 0 || len >= sizeof name) return 0;
    memcpy(name, host, len + 1);
    /* drop ":port"; keep "[v6]" whole */
    char *colon = strrchr(name, ':');
    char *bracket = strrchr(name, ']');
    if (colon && (!bracket || colon > bracket)) *colon = '\0';
    for (char *p = name; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    size_t n = strlen(name);
    if (n > 0 && name[n - 1] == '.') name[--n] = '\0';
    if (!strcmp(name, "localhost")) return 1;
    /* an IP literal cannot be re-bound by an attacker's DNS */
    unsigned char buf[16];
    if (inet_pton(AF_INET, name, buf) == 1) return 1;
    if (n > 2 && name[0] == '[' && name[n - 1] == ']') {
        name[n - 1] = '\0';
        if (inet_pton(AF_INET6, name + 1, buf) == 1) return 1;
        name[n - 1] = ']';
    }
    for (int i = 0; i < w->cfg.n_allow_hosts; i++)
        if (!strcmp(name, w->allow_hosts[i])) return 1;
    return 0;
}

/* Token bucket per client address (a direct-mapped table: a colliding address takes the
 * slot over with a full bucket, so the table stays bounded). */
static int rate_ok(capweb *w, struct MHD_Connection *conn)
{
    if (w->cfg.rate_limit <= 0) return 1;
    unsigned char addr[16] = {0};
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            memcpy(addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        else if (sa->sa_family == AF_INET6)
            memcpy(addr, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
    }
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++) h = (h ^ addr[i]) * 16777619u;
    double t = now_s(), burst = w->cfg.rate_limit * 2 > 20 ? w->cfg.rate_limit * 2 : 20;
    pthread_mutex_lock(&w->rate_lock);
    struct rate_slot *s = &w->rate[h % RATE_SLOTS];
    if (!s->used || memcmp(s->addr, addr, 16) != 0) {
        memcpy(s->addr, addr, 16);
        s->tokens = burst;
        s->last = t;
        s->used = 1;
    }
    s->tokens = fmin(burst, s->tokens + (t - s->last) * w->cfg.rate_limit);
    s->last = t;
    int ok = s->tokens >= 1;
    if (ok) s->tokens -= 1;
    pthread_mutex_unlock(&w->rate_lock);
    return ok;
}

/* Constant time in the length of what is compared. */
static int token_equal(const char *a, const char *b)
{
    if (!a || !b) return 0;
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < lb; i++) diff |= (unsigned char)(a[i < la ? i : 0] ^ b[i]);
    return diff == 0;
}

static int authorised(const capweb *w, struct MHD_Connection *conn)
{
    if (!w->token) return 1;
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0 && token_equal(auth + 7, w->token)) return 1;
    const char *cookie = MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, "capsearch_token");
    return token_equal(cookie, w->token);
}

/* ------------------------------------------------------------------ replies */

static const char *arg_of(void *ctx, const char *name)
{
    return MHD_lookup_connection_value(ctx, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, request *rq, web_reply *r, int html)
{
    struct MHD_Response *resp;
    if (r->fd >= 0 && r->status == 200) {
        resp = MHD_create_response_from_fd64((uint64_t)r->fd_size, r->fd);
        r->fd = -1; /* MHD closes it */
    } else {
        if (r->fd >= 0) close(r->fd);
        r->fd = -1;
        resp = MHD_create_response_from_buffer(r->body ? r->len : 0, r->body ? r->body : (void *)"",
                                               r->body ? MHD_RESPMEM_MUST_FREE
                                                       : MHD_RESPMEM_PERSISTENT);
        r->body = NULL;
    }
    if (!resp) {
        free(r->body);
        return MHD_NO;
    }
    if (r->type && r->status != 304) MHD_add_response_header(resp, "Content-Type", r->type);
    int ok = r->status == 200 || r->status == 304;
    MHD_add_response_header(resp, "Cache-Control", ok && r->cache ? r->cache : "no-store");
    if (ok && r->etag[0]) MHD_add_response_header(resp, "ETag", r->etag);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Cross-Origin-Resource-Policy", "same-origin");
    if (html) MHD_add_response_header(resp, "Content-Security-Policy", CSP);
    if (r->extra_name) MHD_add_response_header(resp, r->extra_name, r->extra_value);
    if (r->status == 429) MHD_add_response_header(resp, "Retry-After", "1");
    if (r->status == 401)
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"capsearch\"");
    if (r->status == 405) MHD_add_response_header(resp, "Allow", "GET, HEAD");
    rq->status = r->status;
    enum MHD_Result res = MHD_queue_response(conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return res;
}

static int serve_asset(const char *url, web_reply *r)
{
    if (!strcmp(url, "/index.html")) url = "/";
    for (int i = 0; i < web_n_assets; i++) {
        if (strcmp(url, web_assets[i].name)) continue;
        r->status = 200;
        r->type = web_assets[i].type;
        r->body = malloc(web_assets[i].size + 1);
        if (!r->body) {
            reply_error(r, 500, "out of memory");
            return 1;
        }
        memcpy(r->body, web_assets[i].data, web_assets[i].size);
        r->len = web_assets[i].size;
        r->cache = "no-cache";
        return 1;
    }
    return 0;
}

/* "/api/images/12" with prefix "/api/images/" -> 12; 0 when the prefix differs, -1 bad id */
static int64_t id_after(const char *url, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(url, prefix, n) != 0) return 0;
    int64_t id = web_parse_id(url + n);
    return id > 0 ? id : -1;
}

static void route(capweb *w, struct MHD_Connection *conn, const char *url, request *rq, int post,
                  web_reply *r)
{
    if (post) {
        if (strcmp(url, "/login") != 0) {
            reply_error(r, 405, "only GET and HEAD here");
            return;
        }
        if (!w->token) {
            reply_error(r, 404, "no token is set: no login needed");
            return;
        }
        rq->body[rq->body_len] = '\0';
        char *v = strncmp(rq->body, "token=", 6) == 0 ? rq->body + 6 : NULL;
        if (v) {
            char *amp = strchr(v, '&');
            if (amp) *amp = '\0';
            for (char *p = v; *p; p++)
                if (*p == '+') *p = ' ';
            MHD_http_unescape(v);
        }
        if (!v || !token_equal(v, w->token)) {
            reply_error(r, 401, "wrong token");
            return;
        }
        jbuf b = {0};
        jb_puts(&b, "{\"ok\":true}\n");
        reply_json(r, 200, &b);
        static char cookie[600]; /* the same for every login: built once under a lock */
        static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
        pthread_mutex_lock(&lock);
        snprintf(cookie, sizeof cookie,
                 "capsearch_token=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000",
                 w->token);
        pthread_mutex_unlock(&lock);
        r->extra_name = "Set-Cookie";
        r->extra_value = cookie;
        return;
    }
    if (serve_asset(url, r)) return;
    int api = !strncmp(url, "/api/", 5),
        files = !strncmp(url, "/thumb/", 7) || !strncmp(url, "/image/", 7);
    if ((api || files) && !authorised(w, conn)) {
        reply_error(r, 401,
                    "this server needs its token (Authorization: Bearer TOKEN, or log "
                    "in on the page)");
        return;
    }
    const char *inm = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "If-None-Match");
    int64_t id;
    if (!strcmp(url, "/api/search")) api_search(w, arg_of, conn, r);
    else if (!strcmp(url, "/api/status")) api_status(w, r);
    else if ((id = id_after(url, "/api/images/"))) api_image(w, id, r);
    else if ((id = id_after(url, "/api/similar/"))) api_similar(w, id, arg_of, conn, r);
    else if ((id = id_after(url, "/thumb/"))) file_thumb(w, id, arg_of, conn, inm, r);
    else if ((id = id_after(url, "/image/"))) file_image(w, id, inm, r);
    else reply_error(r, 404, "no such page or endpoint");
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    (void)version;
    capweb *w = cls;
    request *rq = *con_cls;
    int post = !strcmp(method, MHD_HTTP_METHOD_POST);
    web_reply r = {.fd = -1};
    if (!rq) {
        /* the headers are in: everything that does not need a body is decided now, before
         * any body is read (a refused request's body never is) */
        if (!(rq = calloc(1, sizeof *rq))) return MHD_NO;
        rq->t0 = now_s();
        *con_cls = rq;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
        int has_body = (cl && strcmp(cl, "0") != 0) || te;
        if (!post && strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
            reply_error(&r, 405, "only GET and HEAD here");
        else if (!host_allowed(w, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host")))
            reply_error(&r, 403,
                        "Host header not allowed (DNS rebinding guard): use localhost, "
                        "an IP address, or a name given to --allow-host");
        else if (!rate_ok(w, conn)) reply_error(&r, 429, "too many requests from this address");
        else if (strlen(url) > 2048) reply_error(&r, 414, "URL too long");
        else if (post && strcmp(url, "/login") != 0) reply_error(&r, 405, "only GET and HEAD here");
        else if (has_body && (!post || !cl || strtoull(cl, NULL, 10) > LOGIN_BODY_MAX))
            reply_error(&r, 413,
                        "request body too large (only POST /login takes one, up to %d "
                        "bytes, with a Content-Length)",
                        LOGIN_BODY_MAX);
        else return MHD_YES;
        rq->refused = 1;
        return send_reply(conn, rq, &r, 0);
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rq->refused) return MHD_YES;                               /* MHD discards the rest */
        if (!post || rq->body_len + n > LOGIN_BODY_MAX) return MHD_NO; /* lied about its size */
        memcpy(rq->body + rq->body_len, upload_data, n);
        rq->body_len += n;
        return MHD_YES;
    }
    if (rq->refused) return MHD_YES;
    route(w, conn, url, rq, post, &r);
    return send_reply(conn, rq, &r, r.type && !strncmp(r.type, "text/html", 9));
}

/* As MHD's own %-decoding, except that %00 stays as it is: a NUL would cut the path or a
 * value short ("/image/1%00/../x" must not read as "/image/1"). */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    char *o = s;
    for (const char *p = s; *p; p++) {
        int hi, lo;
        if (*p == '%' && (hi = hexval(p[1])) >= 0 && (lo = hexval(p[2])) >= 0 && (hi | lo)) {
            *o++ = (char)(hi * 16 + lo);
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return (size_t)(o - s);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode why)
{
    (void)conn;
    capweb *w = cls;
    request *rq = *con_cls;
    if (!rq) return;
    if (w->cfg.log_requests)
        fprintf(stderr, "capsearch serve: %d %.1f ms%s\n", rq->status, (now_s() - rq->t0) * 1e3,
                why == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (not completed)");
    free(rq);
    *con_cls = NULL;
}

/* ------------------------------------------------------------------ listening */

static int bind_listen(const char *listen_addr, capweb_err *err)
{
    char host[256];
    const char *port;
    if (listen_addr[0] == '[') {
        const char *end = strchr(listen_addr, ']');
        if (!end || end[1] != ':' || (size_t)(end - listen_addr) >= sizeof host) goto bad;
        snprintf(host, sizeof host, "%.*s", (int)(end - listen_addr - 1), listen_addr + 1);
        port = end + 2;
    } else {
        const char *colon = strrchr(listen_addr, ':');
        if (!colon || (size_t)(colon - listen_addr) >= sizeof host) goto bad;
        snprintf(host, sizeof host, "%.*s", (int)(colon - listen_addr), listen_addr);
        port = colon + 1;
    }
    if (!*port || strspn(port, "0123456789") != strlen(port) || atoi(port) > 65535) goto bad;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *ai = NULL;
    int g = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
    if (g != 0) {
        snprintf(err->msg, sizeof err->msg, "--listen %s: %s", listen_addr, gai_strerror(g));
        return -EINVAL;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    int one = 1, rc = 0;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
        rc = -errno;
        snprintf(err->msg, sizeof err->msg, "--listen %s: %s", listen_addr, strerror(errno));
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd >= 0 ? fd : rc;
bad:
    snprintf(err->msg, sizeof err->msg,
             "--listen wants HOST:PORT (127.0.0.1:8377, [::1]:8377), not '%s'", listen_addr);
    return -EINVAL;
}

/* loopback or UNIX: 1; the bound TCP port into *port */
static int socket_is_local(int fd, int *port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    *port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return 0;
    if (ss.ss_family == AF_UNIX) return 1;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)&ss;
        *port = ntohs(in->sin_port);
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)&ss;
        *port = ntohs(in6->sin6_port);
        const unsigned char *a = in6->sin6_addr.s6_addr;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return 1;
        return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && a[12] == 127;
    }
    return 0;
}

int capweb_start(const capweb_config *cfg, capweb **out, capweb_err *err)
{
    *out = NULL;
    capweb *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return -ENOMEM;
    }
    w->cfg = *cfg;
    w->listen_fd = -1;
    if (!w->cfg.max_connections) w->cfg.max_connections = 256;
    if (w->cfg.thumb_workers <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        w->cfg.thumb_workers = n > 0 ? (int)n : 1;
    }
    pthread_mutex_init(&w->thumb_lock, NULL);
    pthread_cond_init(&w->thumb_cond, NULL);
    pthread_mutex_init(&w->rate_lock, NULL);
    pool_init(&w->pool, cfg->db_path);
    int rc = 0;
    w->rate = calloc(RATE_SLOTS, sizeof *w->rate);
    w->allow_hosts = calloc((size_t)cfg->n_allow_hosts + 1, sizeof *w->allow_hosts);
    if (!w->rate || !w->allow_hosts) rc = -ENOMEM;
    for (int i = 0; rc == 0 && i < cfg->n_allow_hosts; i++) {
        if (!(w->allow_hosts[i] = strdup(cfg->allow_hosts[i]))) rc = -ENOMEM;
        else
            for (char *p = w->allow_hosts[i]; *p; p++)
                if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    }
    if (rc == 0 && cfg->token && !(w->token = strdup(cfg->token))) rc = -ENOMEM;
    if (rc == 0 && cfg->cache_dir) {
        size_t n = strlen(cfg->cache_dir) + 16;
        if (!(w->cache_dir = malloc(n))) rc = -ENOMEM;
        else {
            char sub[4200];
            snprintf(w->cache_dir, n, "%s", cfg->cache_dir);
            snprintf(sub, sizeof sub, "%s/thumbs", cfg->cache_dir);
            mkdir(cfg->cache_dir, 0700);
            if (mkdir(sub, 0700) != 0 && errno != EEXIST) {
                fprintf(stderr, "capsearch serve: %s: %s; thumbnails are not cached\n", sub,
                        strerror(errno));
                free(w->cache_dir);
                w->cache_dir = NULL;
            }
        }
    }
    if (rc == -ENOMEM) snprintf(err->msg, sizeof err->msg, "out of memory");
    if (rc == 0) {
        ce_err cerr;
        if (ce_model_open(cfg->models_dir ? cfg->models_dir : ce_default_models_dir(),
                          CE_OPEN_TEXT_ONLY, &w->text_model, &cerr) != 0) {
            fprintf(stderr, "capsearch serve: no text model (%s): searching words only\n",
                    cerr.msg);
            w->text_model = NULL;
        }
        if (cfg->listen_fd >= 0) {
            w->listen_fd = cfg->listen_fd;
        } else {
            rc = bind_listen(cfg->listen ? cfg->listen : "127.0.0.1:8377", err);
            if (rc >= 0) {
                w->listen_fd = rc;
                w->own_fd = 1;
                rc = 0;
            }
        }
    }
    if (rc == 0) {
        w->local = socket_is_local(w->listen_fd, &w->port);
        if (!w->local && !w->token) {
            snprintf(err->msg, sizeof err->msg,
                     "listening beyond loopback needs a token (--token-file FILE)");
            rc = -EPERM;
        }
    }
    if (rc == 0) {
        w->mhd =
            MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                                 MHD_USE_AUTO | MHD_USE_ERROR_LOG,
                             0, NULL, NULL, handle, w, MHD_OPTION_LISTEN_SOCKET,
                             (MHD_socket)w->listen_fd, MHD_OPTION_CONNECTION_LIMIT,
                             (unsigned)w->cfg.max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                             (unsigned)PER_IP_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
                             (unsigned)CONNECTION_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                             (size_t)MEMORY_PER_CONNECTION, MHD_OPTION_NOTIFY_COMPLETED, completed,
                             w, MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL, MHD_OPTION_END);
        if (!w->mhd) {
            snprintf(err->msg, sizeof err->msg, "cannot start the HTTP server (libmicrohttpd)");
            rc = -EIO;
        }
    }
    if (rc < 0) {
        capweb_stop(w);
        return rc;
    }
    *out = w;
    return 0;
}

int capweb_port(const capweb *w) { return w->port; }
int capweb_is_local(const capweb *w) { return w->local; }

void capweb_stop(capweb *w)
{
    if (!w) return;
    if (w->mhd) MHD_stop_daemon(w->mhd); /* closes the listening socket */
    else if (w->own_fd && w->listen_fd >= 0) close(w->listen_fd);
    pool_destroy(&w->pool);
    ce_model_close(w->text_model);
    for (int i = 0; w->allow_hosts && i < w->cfg.n_allow_hosts; i++) free(w->allow_hosts[i]);
    free(w->allow_hosts);
    free(w->rate);
    free(w->token);
    free(w->cache_dir);
    pthread_mutex_destroy(&w->thumb_lock);
    pthread_cond_destroy(&w->thumb_cond);
    pthread_mutex_destroy(&w->rate_lock);
    free(w);
}
