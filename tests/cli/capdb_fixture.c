/*
 * Test helper: builds a real index database from a line-oriented description on stdin,
 * through libcapdb, the way the daemon writes one.
 *
 *   capdb_fixture DB < spec
 *
 * Lines (fields separated by TAB; \n \t \\ and \xHH escapes in every field):
 *   image  PATH  CAPTION  TAGS  TAKEN_UNIX  MTIME_UNIX  [CONCEPTS  [POOLED]]
 *          CONCEPTS: "i:p,i:p" (concept index and probability, vector of 16)
 *          POOLED: comma-separated floats, padded with zeros to 1280
 *   failed PATH  ERROR
 *   meta   KEY   VALUE
 *   delete PATH
 *   move   FROM  TO
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capdb.h"

#define MAX_FIELDS 8
#define N_CONCEPTS 16
/* Pooled vectors are padded with zeros to the CNN's size, so `similar` takes them. */
#define POOLED_DIM 1280

static int apply(capdb *db, char **f, int n, capdb_err *err);
static void unescape(char *s);

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: capdb_fixture DB < spec\n");
        return 2;
    }
    capdb *db;
    capdb_err err;
    if (capdb_open(argv[1], CAPDB_OPEN_WRITE, &db, &err) != 0) {
        fprintf(stderr, "capdb_fixture: %s\n", err.msg);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = capdb_begin(db, &err);
    while (rc == 0 && getline(&line, &cap, stdin) > 0) {
        lineno++;
        line[strcspn(line, "\n")] = '\0';
        if (!line[0] || line[0] == '#') continue;
        char *f[MAX_FIELDS] = {0};
        int n = 0;
        for (char *p = line; p && n < MAX_FIELDS; n++) {
            f[n] = p;
            p = strchr(p, '\t');
            if (p) *p++ = '\0';
        }
        for (int i = 0; i < n; i++) unescape(f[i]);
        if ((rc = apply(db, f, n, &err)) != 0)
            fprintf(stderr, "capdb_fixture: line %d: %s\n", lineno, err.msg);
    }
    free(line);
    if (rc == 0) rc = capdb_commit(db, &err);
    else capdb_rollback(db);
    capdb_close(db);
    return rc == 0 ? 0 : 1;
}

static int apply(capdb *db, char **f, int n, capdb_err *err)
{
    if (!strcmp(f[0], "image") && n >= 6) {
        float concepts[N_CONCEPTS] = {0};
        static float pooled[POOLED_DIM];
        int n_pooled = 0;
        memset(pooled, 0, sizeof pooled);
        for (char *p = n > 6 ? f[6] : NULL; p && *p;) {
            int idx = (int)strtol(p, &p, 10);
            if (*p++ != ':' || idx < 0 || idx >= N_CONCEPTS) break;
            concepts[idx] = strtof(p, &p);
            if (*p == ',') p++;
        }
        for (char *p = n > 7 ? f[7] : NULL; p && *p && n_pooled < POOLED_DIM;) {
            pooled[n_pooled++] = strtof(p, &p);
            if (*p == ',') p++;
            else break;
        }
        capdb_image img = {
            .path = f[1],
            .caption = f[2],
            .tags = f[3],
            .taken_time = strtoll(f[4], NULL, 10),
            .mtime_ns = strtoll(f[5], NULL, 10) * 1000000000LL,
            .size = 1000,
            .width = 640,
            .height = 480,
            .model_version = "fixture-1",
            .concepts = n > 6 ? concepts : NULL,
            .n_concepts = n > 6 ? N_CONCEPTS : 0,
            .pooled = n_pooled ? pooled : NULL,
            .n_pooled = n_pooled ? POOLED_DIM : 0,
        };
        return capdb_upsert(db, &img, err);
    }
    if (!strcmp(f[0], "failed") && n >= 3) {
        capdb_image img = {.path = f[1], .status = CAPDB_STATUS_FAILED, .error = f[2]};
        return capdb_upsert(db, &img, err);
    }
    if (!strcmp(f[0], "meta") && n >= 3) return capdb_meta_set(db, f[1], f[2], err);
    if (!strcmp(f[0], "delete") && n >= 2) return capdb_delete_path(db, f[1], NULL, err);
    if (!strcmp(f[0], "move") && n >= 3) return capdb_move_path(db, f[1], f[2], NULL, err);
    snprintf(err->msg, sizeof err->msg, "cannot read '%s' with %d fields", f[0], n);
    return -1;
}

static void unescape(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p != '\\' || !p[1]) {
            *o++ = *p;
            continue;
        }
        p++;
        if (*p == 'n') *o++ = '\n';
        else if (*p == 't') *o++ = '\t';
        else if (*p == 'x' && p[1] && p[2]) {
            char hex[3] = {p[1], p[2], 0};
            *o++ = (char)strtol(hex, NULL, 16);
            p += 2;
        } else *o++ = *p;
    }
    *o = '\0';
}
