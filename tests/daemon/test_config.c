/*
 * capsearchd.conf parser and path filters (daemon/config.c), plus the XXH64 fingerprint
 * against the reference values. The random-bytes part runs the parser on 20,000
 * deterministic inputs (mutated valid configs and noise): under ASan/UBSan it is the
 * cheap cousin of the fuzz target.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

static void test_valid(void);
static void test_errors(void);
static void test_filters(void);
static void test_fingerprint(void);
static void test_random(void);

int main(void)
{
    cx_log_init("config_test", LOG_CRIT);
    test_valid();
    test_errors();
    test_filters();
    test_fingerprint();
    test_random();
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    puts("config_test: all passed");
    return 0;
}

static void test_valid(void)
{
    cd_config c;
    cx_err err = {""};
    const char *text = "# comment\n"
                       "\n"
                       "root = /srv/photos/\n"
                       "root=/home/a/Pictures\r\n"
                       "root = /srv/photos\n" /* duplicate after normalising */
                       "  exclude = *.tmp  \n"
                       "extensions = JPG, .png heic\n"
                       "workers = 3\n"
                       "batch_size=10\n"
                       "max_pixels = 5000000\n"
                       "log_level = debug\n"
                       "database = \" /tmp/with space.db\"\n"
                       "cnn = int8\n"
                       "max_watches = 7"; /* no final newline */
    cd_config_defaults(&c);
    int rc = cd_config_parse(&c, text, strlen(text), "t.conf", &err);
    CHECK(rc == 0, "valid config refused: %s", err.msg);
    CHECK(c.index.n_roots == 2, "roots: %d", c.index.n_roots);
    CHECK(c.index.n_roots == 2 && !strcmp(c.index.roots[0], "/srv/photos"), "root 0: %s",
          c.index.roots[0]);
    CHECK(c.index.n_excludes == 5, "excludes: %d (4 defaults + 1)", c.index.n_excludes);
    CHECK(c.index.n_extensions == 3 && !strcmp(c.index.extensions[0], "jpg") &&
              !strcmp(c.index.extensions[1], "png"),
          "extensions");
    CHECK(c.index.workers == 3 && c.index.batch_size == 10 && c.index.max_pixels == 5000000,
          "numbers");
    CHECK(c.log_level == LOG_DEBUG, "log level");
    CHECK(c.db_path && !strcmp(c.db_path, " /tmp/with space.db"), "quoted db path: %s", c.db_path);
    CHECK(c.max_watches == 7, "max_watches");
    CHECK(c.cnn_int8 == 1, "cnn = int8");
    cd_config_free(&c);

    cd_config_defaults(&c);
    rc = cd_config_parse(&c, "cnn = int8\ncnn = float\n", 22, "t", &err);
    CHECK(rc == 0 && c.cnn_int8 == 0, "a later cnn = float wins");
    cd_config_free(&c);

    cd_config_defaults(&c);
    rc = cd_config_parse(&c, "exclude =\n", 10, "t", &err);
    CHECK(rc == 0 && c.index.n_excludes == 0, "empty exclude clears the defaults");
    cd_config_free(&c);
}

static void test_errors(void)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"root = /a\n\nnope = 1\n", "t.conf:3: unknown key 'nope'"},
        {"workers = 0\n", "t.conf:1: workers: expected an integer in 1..256"},
        {"workers = 12abc\n", "t.conf:1: workers"},
        {"workers = 99999999999999999999\n", "t.conf:1: workers"},
        {"root = photos\n", "t.conf:1: root: 'photos' is not an absolute path"},
        {"log_level = chatty\n", "t.conf:1: log_level: unknown level"},
        {"just text\n", "t.conf:1: expected 'key = value'"},
        {"database = \"/x\n", "t.conf:1: unterminated quote"},
        {"extensions = , ,\n", "t.conf:1: extensions: empty list"},
        {"max_pixels = -5\n", "t.conf:1: max_pixels"},
        {"cnn = fast\n", "t.conf:1: cnn: expected float or int8, got 'fast'"},
        {"a = b\0c\n", "t.conf:1: NUL byte"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cd_config c;
        cx_err err = {""};
        cd_config_defaults(&c);
        size_t len = strlen(cases[i].text);
        if (strstr(cases[i].want, "NUL")) len = 8;
        int rc = cd_config_parse(&c, cases[i].text, len, "t.conf", &err);
        CHECK(rc < 0, "case %zu accepted", i);
        CHECK(strstr(err.msg, cases[i].want) != NULL, "case %zu: got '%s', want '%s'", i, err.msg,
              cases[i].want);
        cd_config_free(&c);
    }
    /* an overlong line is an error, not a silent truncation */
    size_t n = 10000;
    char *big = malloc(n);
    memset(big, 'x', n);
    memcpy(big, "root = /", 8);
    cd_config c;
    cx_err err = {""};
    cd_config_defaults(&c);
    CHECK(cd_config_parse(&c, big, n, "t.conf", &err) < 0 && strstr(err.msg, "t.conf:1:"),
          "long line: %s", err.msg);
    cd_config_free(&c);
    free(big);
}

static void test_filters(void)
{
    cd_config c;
    cx_err err = {""};
    cd_config_defaults(&c);
    cd_config_set(&c, "root", "/p", &err);
    cd_config_set(&c, "exclude", "/p/private/*", &err);
    CHECK(cx_wants_file(&c.index, "a.JPG", "/p/a.JPG"), "upper-case extension");
    CHECK(!cx_wants_file(&c.index, "a.txt", "/p/a.txt"), "other extension");
    CHECK(!cx_wants_file(&c.index, ".a.jpg", "/p/.a.jpg"), "hidden file");
    CHECK(!cx_wants_file(&c.index, "jpg", "/p/jpg"), "no extension");
    CHECK(!cx_wants_dir(&c.index, "@eaDir", "/p/@eaDir"), "@eaDir");
    CHECK(!cx_wants_dir(&c.index, "node_modules", "/p/x/node_modules"), "node_modules");
    CHECK(cx_wants_path(&c.index, "/p/x/y/a.jpg"), "plain path");
    CHECK(!cx_wants_path(&c.index, "/p/x/.git/a.jpg"), "under .git");
    CHECK(!cx_wants_path(&c.index, "/p/private/a.jpg"), "path glob");
    CHECK(cx_wants_path(&c.index, "/home/.hidden-root-parent/q/a.jpg") == 0,
          "outside the roots every component counts");
    cd_config_free(&c);
}

static void test_fingerprint(void)
{
    /* reference values of XXH64 with seed 0 */
    CHECK(cx_xxh64("", 0, 0) == 0xEF46DB3751D8E999ULL, "xxh64('')");
    CHECK(cx_xxh64("a", 1, 0) == 0xD24EC4F1A98C6E5BULL, "xxh64('a')");
    CHECK(cx_xxh64("abc", 3, 0) == 0x44BC2CF5AD770999ULL, "xxh64('abc')");
    const char *q = "Nobody inspects the spammish repetition";
    CHECK(cx_xxh64(q, strlen(q), 0) == 0xFBCEA83C8A378BF1ULL, "xxh64(long)");
    /* the file hash streams in chunks: same as hashing the bytes at once */
    char path[] = "/tmp/capsearch-fp-XXXXXX";
    int fd = mkstemp(path);
    size_t n = 600000;
    unsigned char *buf = malloc(n);
    for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)(i * 2654435761u >> 13);
    FILE *f = fdopen(fd, "wb");
    fwrite(buf, 1, n, f);
    fclose(f);
    uint64_t h = 0;
    CHECK(cx_fingerprint_file(path, &h) == 0 && h == cx_xxh64(buf, n, 0), "file hash");
    remove(path);
    free(buf);
    CHECK(cx_fingerprint_file("/nonexistent/x.jpg", &h) < 0, "missing file");
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_random(void)
{
    static const char seed[] = "root = /srv/photos\nexclude = *.tmp\nextensions = jpg png\n"
                               "workers = 2\nlog_level = info\ndatabase = \"/x y\"\n";
    char buf[512];
    for (int iter = 0; iter < 20000; iter++) {
        size_t len;
        if (iter % 2) {
            len = rng() % sizeof buf;
            for (size_t i = 0; i < len; i++) buf[i] = (char)(rng() & 0xFF);
        } else {
            len = sizeof seed - 1;
            memcpy(buf, seed, len);
            for (int m = 0; m < 4; m++) buf[rng() % len] = (char)(rng() & 0xFF);
            len = rng() % (len + 1);
        }
        /* exact-size heap copy: ASan catches any read past len */
        char *text = malloc(len ? len : 1);
        memcpy(text, buf, len);
        cd_config c;
        cx_err err = {""};
        cd_config_defaults(&c);
        int rc = cd_config_parse(&c, text, len, "fuzz", &err);
        CHECK(rc == 0 || strncmp(err.msg, "fuzz:", 5) == 0, "error without a location: %s",
              err.msg);
        for (int i = 0; i < c.index.n_roots; i++) cx_wants_path(&c.index, c.index.roots[i]);
        cd_config_free(&c);
        free(text);
    }
}
