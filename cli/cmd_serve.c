/*
 * capsearch serve [OPTIONS]: the web page and the HTTP JSON API (web/, libcapweb).
 *
 * Listens on 127.0.0.1:8377 unless told otherwise: --listen HOST:PORT, --socket PATH (a
 * UNIX socket), or a socket systemd passes (capsearch-web.socket). A listening address
 * beyond loopback needs --token-file. Runs until SIGTERM or SIGINT; tells systemd when it
 * is ready (Type=notify).
 */
#include <errno.h>
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

/* The options serve takes (rows of the table in options.c). */
#define SERVE_OPTIONS                                                                              \
    CLI_OPT_LISTEN, CLI_OPT_SOCKET, CLI_OPT_TOKEN_FILE, CLI_OPT_ALLOW_HOST, CLI_OPT_DB,            \
        CLI_OPT_MODELS, CLI_OPT_CACHE_DIR, CLI_OPT_RATE_LIMIT, CLI_OPT_MAX_CONNECTIONS,            \
        CLI_OPT_LOG

/* The options this subcommand takes (rows of cli/options.c), for parsing and help. */
static const int ACCEPTED[] = {SERVE_OPTIONS, 0};

static void usage(FILE *out)
{
    fputs("Usage: capsearch serve [OPTIONS]\n\n"
          "Serve the photo search page and the HTTP JSON API (GET /api/search?q=...,\n"
          "/api/images/ID, /api/similar/ID, /api/status, /thumb/ID, /image/ID).\n\n",
          out);
    cli_print_options(out, ACCEPTED);
    fputs("\nA socket passed by systemd (LISTEN_FDS) is used when present.\n", out);
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
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    if (toolong || n < 16 ||
        strspn(buf, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                    "0123456789-._~+/=") != n) {
        cli_error("--token-file %s: want one line of 16 to 400 characters from A-Z a-z 0-9 "
                  "- . _ ~ + / = (e.g. from 'openssl rand -hex 32')",
                  path);
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
        unlink(path); /* a stale socket of an earlier run */
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
    const char *sd = getenv("CACHE_DIRECTORY"); /* systemd CacheDirectory= */
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
    cli_options o;
    cli_options_init(&o);
    int first = cli_parse_options(argc, argv, ACCEPTED, &o, usage);
    if (first <= 0) return first == 0 ? EXIT_MATCH : EXIT_TROUBLE;
    if (first != argc) {
        usage(stderr);
        return EXIT_TROUBLE;
    }
    const char *listen_addr = o.listen, *socket_path = o.socket_path;
    const char *token_file = o.token_file, *db_path = o.db_path;
    capweb_config cfg = {
        .listen_fd = -1,
        .rate_limit = (double)o.rate_limit,
        .max_connections = o.max_connections,
        .models_dir = o.models_dir,
        .log_requests = o.log_requests,
        .allow_hosts = o.allow_hosts,
        .n_allow_hosts = o.n_allow_hosts,
    };
    char *cache_dir = o.cache_dir ? strdup(o.cache_dir) : NULL;
    if (listen_addr && socket_path) {
        free(cache_dir);
        return cli_error("--listen and --socket exclude each other");
    }
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
    capweb_err err = {""};
    int rc = capweb_start(&cfg, &w, &err);
    if (rc < 0) {
        if (cfg.listen_fd >= 0 && activated != 1) close(cfg.listen_fd);
        free(token);
        free(cache_dir);
        return cli_error("%s", err.msg);
    }
    char where[600];
    if (activated == 1)
        snprintf(where, sizeof where, "the socket systemd passed (port %d)", capweb_port(w));
    else if (socket_path) snprintf(where, sizeof where, "unix:%s", socket_path);
    else {
        const char *a = listen_addr ? listen_addr : "127.0.0.1:8377";
        const char *colon = a[0] == '[' ? strchr(a, ']') + 1 : strrchr(a, ':');
        snprintf(where, sizeof where, "http://%.*s:%d/", (int)(colon - a), a, capweb_port(w));
    }
    char shown[4096];
    fprintf(stderr, "capsearch serve: listening on %s (index %s%s)\n", where,
            capdb_target_display(cfg.db_path, shown, sizeof shown),
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
