/*
 * capsearch caption [--json] [--beam N] [--max-length N] [--tags N] [--models DIR] [--cnn P] IMAGE...
 *
 * Captions image files with the CNN + concept head + LSTM, and lists the top tags
 * (detected objects and visual concepts). Needs no database or daemon. A file that cannot
 * be read is reported and skipped; the exit status is then 2, else 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capengine.h"
#include "cli.h"
#include "capindexer.h"

/* The options this subcommand takes (rows of cli/options.c), for parsing and help. */
static const int ACCEPTED[] = {CLI_OPT_JSON,
                               CLI_OPT_BEAM,
                               CLI_OPT_MAX_LENGTH,
                               CLI_OPT_TAGS,
                               CLI_OPT_WRITE_XMP,
                               CLI_OPT_MODELS,
                               CLI_OPT_CNN,
                               0};

static void usage(FILE *out);
static void print_text(const char *path, const ce_caption *c, int n_tags, const char *sidecar);
static void print_json(const char *path, const ce_caption *c, int n_tags, const char *sidecar);
static int write_sidecar(const char *path, const ce_caption *c, int n_tags, const char *version,
                         char *written, size_t size);

int cmd_caption(int argc, char **argv)
{
    cli_options o;
    cli_options_init(&o);
    int first = cli_parse_options(argc, argv, ACCEPTED, &o, usage);
    if (first <= 0) return first == 0 ? EXIT_MATCH : EXIT_TROUBLE;
    if (first >= argc) {
        usage(stderr);
        return EXIT_TROUBLE;
    }
    ce_caption_options copt;
    memset(&copt, 0, sizeof copt);
    copt.beam_width = o.beam;
    copt.max_length = o.max_length;
    int json = o.json, n_tags = o.tags;

    ce_err err;
    ce_model *model;
    ce_session *session;
    if (cli_open_engine(o.models_dir, o.open_flags, 1, &model, &session) != 0) return EXIT_TROUBLE;

    ce_cnn_output *cnn = calloc(1, sizeof *cnn);
    ce_caption *cap = calloc(1, sizeof *cap);
    if (!cnn || !cap) {
        free(cnn);
        free(cap);
        ce_session_free(session);
        ce_model_close(model);
        return cli_error("out of memory");
    }
    int failed = 0;
    if (o.write_xmp && cm_init() < 0) {
        cli_error("the XMP library (Exempi) failed to start");
        o.write_xmp = 0;
        failed = 1;
    }
    for (int i = first; i < argc; i++) {
        const char *path = argv[i];
        ce_image img;
        int rc = ce_image_load_file(path, NULL, &img, &err);
        if (rc == 0) {
            rc = ce_cnn_run(session, &img, cnn, &err);
            ce_image_free(&img);
        }
        if (rc == 0) rc = ce_caption_run(session, cnn, &copt, cap, &err);
        if (rc < 0) {
            failed = 1;
            cli_error("%s: %s", path, err.msg);
            if (json) cli_print_json_error(path, err.msg);
            continue;
        }
        char sidecar[4096] = "";
        if (o.write_xmp &&
            write_sidecar(path, cap, n_tags, ce_model_version(model), sidecar, sizeof sidecar) < 0)
            failed = 1;
        if (json) print_json(path, cap, n_tags, sidecar);
        else print_text(path, cap, n_tags, sidecar);
        fflush(stdout);
    }
    free(cnn);
    free(cap);
    ce_session_free(session);
    ce_model_close(model);
    if (o.write_xmp) cm_terminate();
    return failed ? EXIT_TROUBLE : EXIT_MATCH;
}

static void usage(FILE *out)
{
    fputs("Usage: capsearch caption [OPTIONS] IMAGE...\n\n"
          "Describes each image in a sentence and lists its top tags (detected objects and\n"
          "visual concepts with their scores).\n\n",
          out);
    cli_print_options(out, ACCEPTED);
    fputs("\nExit status: 0 every file captioned, 2 a file could not be read.\n", out);
}

static void print_text(const char *path, const ce_caption *c, int n_tags, const char *sidecar)
{
    cu_fputs_printable(path, stdout);
    fputs(": ", stdout);
    cu_fputs_printable(c->caption, stdout);
    putchar('\n');
    if (n_tags > 0 && c->n_tags > 0) {
        fputs("  tags:", stdout);
        for (int i = 0; i < c->n_tags && i < n_tags; i++) {
            putchar(' ');
            cu_fputs_printable(c->tags[i].word, stdout);
            printf(" (%.2f)%s", c->tags[i].score, i + 1 < c->n_tags && i + 1 < n_tags ? "," : "");
        }
        putchar('\n');
    }
    if (sidecar[0]) {
        fputs("  written to ", stdout);
        cu_fputs_printable(sidecar, stdout);
        putchar('\n');
    }
}

/* The caption and the shown tags into the image's XMP sidecar (capmeta.h's trust rule:
 * nothing a person wrote is replaced). Prints why and returns -1 on failure. */
static int write_sidecar(const char *path, const ce_caption *c, int n_tags, const char *version,
                         char *written, size_t size)
{
    const char *tags[CE_MAX_TAGS];
    int n = 0;
    for (int i = 0; i < c->n_tags && i < n_tags && n < CE_MAX_TAGS; i++)
        tags[n++] = c->tags[i].word;
    cm_caption mc = {.caption = c->caption,
                     .tags = tags,
                     .n_tags = n,
                     .model_version = version,
                     .confidence = c->confidence};
    cm_err err = {""};
    if (cm_write_sidecar(path, &mc, written, size, &err) < 0) {
        written[0] = '\0';
        cli_error("%s", err.msg);
        return -1;
    }
    return 0;
}

static void print_json(const char *path, const ce_caption *c, int n_tags, const char *sidecar)
{
    fputs("{\"file\":", stdout);
    cli_json_string(stdout, path);
    fputs(",\"caption\":", stdout);
    cli_json_string(stdout, c->caption);
    printf(",\"log_prob\":%.4f,\"confidence\":%.4f,\"tags\":[", c->log_prob, c->confidence);
    for (int i = 0; i < c->n_tags && i < n_tags; i++) {
        printf("%s{\"word\":", i ? "," : "");
        cli_json_string(stdout, c->tags[i].word);
        printf(",\"score\":%.4f}", c->tags[i].score);
    }
    fputs("]", stdout);
    if (sidecar[0]) {
        fputs(",\"sidecar\":", stdout);
        cli_json_string(stdout, sidecar);
    }
    fputs("}\n", stdout);
}
