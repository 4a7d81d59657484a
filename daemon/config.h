/*
 * capsearchd's configuration: the indexer's settings (what to index, limits) plus what
 * only the daemon has (log level, database and model paths, the watcher's polling and
 * watch limit). Read from capsearchd.conf (config.c states the format), then the flags.
 */
#ifndef CAPSEARCHD_CONFIG_H
#define CAPSEARCHD_CONFIG_H

#include "capindexer.h"

typedef struct {
    cx_settings index;        /* roots, filters, workers, batches, limits */
    int log_level;            /* LOG_* */
    char *db_path;            /* NULL = capdb_default_path / the service default */
    char *models_dir;         /* NULL = ce_default_models_dir() */
    int cnn_int8;             /* cnn = int8: the int8 CNN (AVX-512 VNNI and BF16) */
    int poll_interval_s;      /* rescan of folders that could not be watched */
    int max_watches;          /* 0 = only the kernel's limit; N simulates a limit of N */
    int debug_overflow_every; /* 0 = off; N: every N inotify events act as IN_Q_OVERFLOW
                                 (the unread events are dropped), to test the rescan */
    /* several nodes on one PostgreSQL index (README "Several machines") */
    int role;        /* CX_ROLE_*: all (default), scan (watch and queue), caption (claim) */
    char *node_name; /* NULL = the host name; unique among the nodes */
} cd_config;

void cd_config_defaults(cd_config *cfg);
void cd_config_free(cd_config *cfg);
/* Parses "key = value" lines onto cfg (which holds the defaults or earlier values).
 * source names the text in messages ("FILE:LINE: ..."). Never reads past len. */
int cd_config_parse(cd_config *cfg, const char *text, size_t len, const char *source, cx_err *err);
int cd_config_load_file(cd_config *cfg, const char *path, cx_err *err);
/* Sets one key from a command-line flag, with the same checks as the file. */
int cd_config_set(cd_config *cfg, const char *key, const char *value, cx_err *err);
/* /etc/capsearch/capsearchd.conf for root, else $XDG_CONFIG_HOME/capsearch/capsearchd.conf */
const char *cd_config_default_path(char *buf, size_t size);

#endif
