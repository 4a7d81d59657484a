/*
 * Fuzz target: the capsearchd.conf parser (daemon/config.c) and the name filters that
 * use what it parsed (fnmatch globs, extensions). Promises checked: every error names the
 * source and line; a parsed config keeps its values in their documented ranges.
 */
#include <string.h>

#include "fuzz.h"
#include "config.h"

static const char *const NAMES[][2] = {
    {"IMG_0042.JPG", "/photos/2023/IMG_0042.JPG"},
    {"beach.png", "/photos/Beach Trip/beach.png"},
    {".hidden.jpg", "/photos/.hidden.jpg"},
    {"node_modules", "/photos/node_modules"},
    {"x.tmp", "/srv/a/b/c/x.tmp"},
    {"caf\xc3\xa9.jpeg", "/photos/caf\xc3\xa9.jpeg"},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) {
        cx_log_init("fuzz", LOG_CRIT);
        quiet = 1;
    }
    cd_config cfg;
    cd_config_defaults(&cfg);
    cx_err err = {""};
    int rc = cd_config_parse(&cfg, (const char *)data, size, "fuzz.conf", &err);
    if (rc < 0) {
        if (strncmp(err.msg, "fuzz.conf:", 10) != 0)
            fuzz_fail("error without source and line: '%s'", err.msg);
    } else {
        if (cfg.index.workers < 1 || cfg.index.batch_size < 1 || cfg.index.batch_ms < 1 ||
            cfg.index.queue_max < 1 || cfg.index.time_limit_s < 1 || cfg.poll_interval_s < 1 ||
            cfg.index.max_pixels < 1)
            fuzz_fail("a setting out of range after a successful parse");
        for (int i = 0; i < cfg.index.n_roots; i++)
            if (cfg.index.roots[i][0] != '/') fuzz_fail("relative root '%s'", cfg.index.roots[i]);
        for (int i = 0; i < cfg.index.n_extensions; i++)
            if (!cfg.index.extensions[i][0]) fuzz_fail("empty extension");
    }
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
        cx_wants_file(&cfg.index, NAMES[i][0], NAMES[i][1]);
        cx_wants_dir(&cfg.index, NAMES[i][0], NAMES[i][1]);
        cx_wants_path(&cfg.index, NAMES[i][1]);
    }
    cd_config_free(&cfg);
    return 0;
}
