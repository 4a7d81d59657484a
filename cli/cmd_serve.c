/*
 * capsearch serve [OPTIONS]: the web page and the HTTP JSON API (web/, libcapweb).
 *
 * Listens on 127.0.0.1:8377 unless told otherwise: --listen HOST:PORT, --socket PATH (a
 * UNIX socket), or a socket systemd passes (capsearch-web.socket). A listening address
 * beyond loopback needs --token-file. Runs until SIGTERM or SIGINT; tells systemd when it
 * is ready (Type=notify).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "capweb.h"
#include "cli.h"

#define MAX_ALLOW_HOSTS 32

static void usage(FILE *out)
{
    fputs("Usage: capsearch serve [OPTIONS]\n\n"
          "Serve the photo search page and the HTTP JSON API (GET /api/search?q=...,\n"
          "/api/images/ID, /api/similar/ID, /api/status, /thumb/ID, /image/ID).\n\n"
          "Options:\n"
          "      --listen HOST:PORT  address to listen on (default 127.0.0.1:8377; port 0\n"
          "                          picks a free one)\n"
          "      --socket PATH       listen on a UNIX socket instead\n"
          "      --token-file FILE   require this token (Authorization: Bearer, or the\n"
          "                          page's login); needed beyond loopback\n"
          "      --allow-host NAME   accept this Host header besides localhost and IP\n"
          "                          addresses (repeatable; DNS rebinding guard)\n"
          "      --db PATH           the index database (default as for search)\n"
          "      --models DIR        model folder for the query's concepts\n"
          "      --cache-dir DIR     thumbnail cache (default $CACHE_DIRECTORY, else\n"
          "                          $XDG_CACHE_HOME/capsearch)\n"
          "      --rate-limit N      requests per second per client address (default 200,\n"
          "                          0 = no limit)\n"
          "      --max-connections N connections at once (default 256)\n"
          "      --log               one line per request on stderr\n"
          "  -h, --help              show this help\n\n"
          "A socket passed by systemd (LISTEN_FDS) is used when present.\n", out);
}

static char *read_token(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        cli_error("--token-file %s: %s", path, strerror(errno));
        return NULL;
    }
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int toolong = !feof(f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) buf[--n] = '\0';
    if (toolong || n < 16 || strspn(buf, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                         "0123456789-._~+/=") != n) {
        cli_error("--token-file %s: want one line of 16 to 400 characters from A-Z a-z 0-9 "
                  "- . _ ~ + / = (e.g. from 'openssl rand -hex 32')", path);
        return NULL;
    }
    return strdup(buf);
}

static int unix_listen(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        cli_error("--socket %s: path too long", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            cli_error("--socket %s: exists and is not a socket", path);
            return -1;
        }
        unlink(path);                 /* a stale socket of an earlier run */
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 128) != 0) {
        cli_error("--socket %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static char *default_cache_dir(void)
{
    const char *sd = getenv("CACHE_DIRECTORY");     /* systemd CacheDirectory= */
    char buf[4096];
    if (sd && *sd) {
        snprintf(buf, sizeof buf, "%.*s", (int)strcspn(sd, ":"), sd);
    } else {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (xdg && xdg[0] == '/') snprintf(buf, sizeof buf, "%s/capsearch", xdg);
        else if (home && home[0] == '/') {
            snprintf(buf, sizeof buf, "%s/.cache", home);
            mkdir(buf, 0700);
            snprintf(buf, sizeof buf, "%s/.cache/capsearch", home);
        } else return NULL;
    }
    return strdup(buf);
}

int cmd_serve(int argc, char **argv)
{
    enum { O_LISTEN = 256, O_SOCKET, O_TOKEN, O_ALLOW, O_DB, O_MODELS, O_CACHE, O_RATE, O_MAXC, O_LOG };
    static const struct option OPTIONS[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"socket", required_argument, NULL, O_SOCKET},
        {"token-file", required_argument, NULL, O_TOKEN},
        {"allow-host", required_argument, NULL, O_ALLOW},
        {"db", required_argument, NULL, O_DB},
        {"models", required_argument, NULL, O_MODELS},
        {"cache-dir", required_argument, NULL, O_CACHE},
        {"rate-limit", required_argument, NULL, O_RATE},
        {"max-connections", required_argument, NULL, O_MAXC},
        {"log", no_argument, NULL, O_LOG},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *listen_addr = NULL, *socket_path = NULL, *token_file = NULL, *db_path = NULL;
    const char *allow[MAX_ALLOW_HOSTS];
    capweb_config cfg = {.listen_fd = -1, .rate_limit = 200};
    char *cache_dir = NULL;
    long n;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", OPTIONS, NULL)) != -1) {
        switch (c) {
        case O_LISTEN: listen_addr = optarg; break;
        case O_SOCKET: socket_path = optarg; break;
        case O_TOKEN: token_file = optarg; break;
        case O_DB: db_path = optarg; break;
        case O_MODELS: cfg.models_dir = optarg; break;
        case O_LOG: cfg.log_requests = 1; break;
        case O_CACHE:
            free(cache_dir);
            cache_dir = strdup(optarg);
            break;
        case O_ALLOW:
            if (cfg.n_allow_hosts == MAX_ALLOW_HOSTS) {
                free(cache_dir);
                return cli_error("at most %d --allow-host names", MAX_ALLOW_HOSTS);
            }
            allow[cfg.n_allow_hosts++] = optarg;
            break;
        case O_RATE:
        case O_MAXC:
            n = cli_parse_count(optarg);
            if (n < (c == O_RATE ? 0 : 1) || n > 100000) {
                free(cache_dir);
                return cli_error("--%s wants a number from %d to 100000, not '%s'",
                                 c == O_RATE ? "rate-limit" : "max-connections", c == O_RATE ? 0 : 1,
                                 optarg);
            }
            if (c == O_RATE) cfg.rate_limit = (double)n; else cfg.max_connections = (int)n;
            break;
        case 'h':
            free(cache_dir);
            usage(stdout);
            return EXIT_MATCH;
        default:
            free(cache_dir);
            if (optopt && optopt < 256) cli_error("unknown option '-%c'", optopt);
            else cli_error("unknown or incomplete option '%s'", argv[optind - 1]);
            usage(stderr);
            return EXIT_TROUBLE;
        }
    }
    if (optind != argc) {
        free(cache_dir);
        usage(stderr);
        return EXIT_TROUBLE;
    }
    if (listen_addr && socket_path) {
        free(cache_dir);
        return cli_error("--listen and --socket exclude each other");
    }
    cfg.allow_hosts = allow;
    char dbbuf[4096];
    cfg.db_path = db_path ? db_path : capdb_default_path(dbbuf, sizeof dbbuf);
    cfg.listen = listen_addr;
    if (!cache_dir) cache_dir = default_cache_dir();
    cfg.cache_dir = cache_dir;
    char *token = NULL;
    if (token_file && !(token = read_token(token_file))) {
        free(cache_dir);
        return EXIT_TROUBLE;
    }
    cfg.token = token;

    int activated = sd_listen_fds(1);
    if (activated > 1) {
        free(token);
        free(cache_dir);
        return cli_error("systemd passed %d sockets; capsearch-web.socket has one", activated);
    }
    if (activated == 1) cfg.listen_fd = SD_LISTEN_FDS_START;
    else if (socket_path && (cfg.listen_fd = unix_listen(socket_path)) < 0) {
        free(token);
        free(cache_dir);
        return EXIT_TROUBLE;
    }

    /* the server's threads inherit this mask: the signals reach sigwait below */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    capweb *w = NULL;
    char err[512];
    int rc = capweb_start(&cfg, &w, err, sizeof err);
    if (rc < 0) {
        if (cfg.listen_fd >= 0 && activated != 1) close(cfg.listen_fd);
        free(token);
        free(cache_dir);
        return cli_error("%s", err);
    }
    char where[600];
    if (activated == 1) snprintf(where, sizeof where, "the socket systemd passed (port %d)", capweb_port(w));
    else if (socket_path) snprintf(where, sizeof where, "unix:%s", socket_path);
    else {
        const char *a = listen_addr ? listen_addr : "127.0.0.1:8377";
        const char *colon = a[0] == '[' ? strchr(a, ']') + 1 : strrchr(a, ':');
        snprintf(where, sizeof where, "http://%.*s:%d/", (int)(colon - a), a, capweb_port(w));
    }
    fprintf(stderr, "capsearch serve: listening on %s (index %s%s)\n", where, cfg.db_path,
            token ? ", token required" : "");
    sd_notifyf(0, "READY=1\nSTATUS=serving on %s", where);

    int sig = 0;
    while (sigwait(&stop, &sig) == 0 && sig == SIGHUP) {
        /* nothing to reload: the index is reopened whenever its file is replaced */
    }
    sd_notify(0, "STOPPING=1");
    capweb_stop(w);
    if (socket_path && activated != 1) unlink(socket_path);
    free(token);
    free(cache_dir);
    return EXIT_MATCH;
}
