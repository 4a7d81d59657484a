/*
 * Fuzz target: the capsearchd.conf parser (daemon/config.c) and the name filters that
 * use what it parsed (fnmatch globs, extensions). Promises checked: every error names the
 * source and line; a parsed config keeps its values in their documented ranges.
 */
#include <string.h>

#include "fuzz.h"
#include "indexer.h"

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
    cx_config cfg;
    cx_config_defaults(&cfg);
    char err[CX_CONFIG_ERR_MAX] = "";
    int rc = cx_config_parse(&cfg, (const char *)data, size, "fuzz.conf", err, sizeof err);
    if (rc < 0) {
        if (strncmp(err, "fuzz.conf:", 10) != 0)
            fuzz_fail("error without source and line: '%s'", err);
    } else {
        if (cfg.workers < 1 || cfg.batch_size < 1 || cfg.batch_ms < 1 || cfg.queue_max < 1 ||
            cfg.time_limit_s < 1 || cfg.poll_interval_s < 1 || cfg.max_pixels < 1)
            fuzz_fail("a setting out of range after a successful parse");
        for (int i = 0; i < cfg.n_roots; i++)
            if (cfg.roots[i][0] != '/') fuzz_fail("relative root '%s'", cfg.roots[i]);
        for (int i = 0; i < cfg.n_extensions; i++)
            if (!cfg.extensions[i][0]) fuzz_fail("empty extension");
    }
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
        cx_config_wants_file(&cfg, NAMES[i][0], NAMES[i][1]);
        cx_config_wants_dir(&cfg, NAMES[i][0], NAMES[i][1]);
        cx_config_wants_path(&cfg, NAMES[i][1]);
    }
    cx_config_free(&cfg);
    return 0;
}
