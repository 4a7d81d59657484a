/*
 * capsearch caption [--json] [--beam N] [--max-length N] [--tags N] [--models DIR] IMAGE...
 *
 * Captions image files with the CNN + concept head + LSTM, and lists the top tags
 * (detected objects and visual concepts). Needs no database or daemon. A file that cannot
 * be read is reported and skipped; the exit status is then 2, else 0.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capengine.h"
#include "cli.h"
#include "indexer.h"

#define DEFAULT_SHOWN_TAGS 8

static void usage(FILE *out);
static void print_text(const char *path, const ce_caption *c, int n_tags);
static void print_json(const char *path, const ce_caption *c, int n_tags);
static void print_json_error(const char *path, const char *msg);

int cmd_caption(int argc, char **argv)
{
    static const struct option OPTIONS[] = {
        {"json", no_argument, NULL, 'j'},
        {"beam", required_argument, NULL, 'b'},
        {"max-length", required_argument, NULL, 'l'},
        {"tags", required_argument, NULL, 't'},
        {"models", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int json = 0, n_tags = DEFAULT_SHOWN_TAGS;
    ce_caption_options copt;
    memset(&copt, 0, sizeof copt);
    const char *models_dir = NULL;
    int opt;
    long v;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "jb:l:t:m:h", OPTIONS, NULL)) != -1) {
        switch (opt) {
        case 'j': json = 1; break;
        case 'b':
            if ((v = cli_parse_count(optarg)) < 1 || v > 16) return cli_error("--beam must be 1..16");
            copt.beam_width = (int)v;
            break;
        case 'l':
            if ((v = cli_parse_count(optarg)) < 1 || v > 64) return cli_error("--max-length must be 1..64");
            copt.max_length = (int)v;
            break;
        case 't':
            if ((v = cli_parse_count(optarg)) < 0 || v > CE_MAX_TAGS)
                return cli_error("--tags must be 0..%d", CE_MAX_TAGS);
            n_tags = (int)v;
            break;
        case 'm': models_dir = optarg; break;
        case 'h': usage(stdout); return EXIT_MATCH;
        default: usage(stderr); return EXIT_TROUBLE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_TROUBLE;
    }

    ce_err err;
    ce_model *model;
    ce_session *session;
    if (cli_open_engine(models_dir, 1, &model, &session) != 0) return EXIT_TROUBLE;
    /* One image at a time: latency matters, so BLAS may use every core. */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    ce_set_blas_threads(cores > 0 ? (int)cores : 1);

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
    for (int i = optind; i < argc; i++) {
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
            if (json) print_json_error(path, err.msg);
            continue;
        }
        if (json) print_json(path, cap, n_tags);
        else print_text(path, cap, n_tags);
        fflush(stdout);
    }
    free(cnn);
    free(cap);
    ce_session_free(session);
    ce_model_close(model);
    return failed ? EXIT_TROUBLE : EXIT_MATCH;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: capsearch caption [--json] [--beam N] [--models DIR] IMAGE...\n\n"
            "Describes each image in a sentence and lists its top tags (detected objects and\n"
            "visual concepts with their scores).\n\n"
            "  --json           one JSON object per file (JSON Lines)\n"
            "  --beam N         beam width, 1..16 (default 3)\n"
            "  --max-length N   longest caption in words, 1..64 (default 20)\n"
            "  --tags N         tags to show, 0..%d (default %d)\n"
            "  --models DIR     model directory (default: $CAPSEARCH_MODELS or the installed one)\n\n"
            "Exit status: 0 every file captioned, 2 a file could not be read.\n",
            CE_MAX_TAGS, DEFAULT_SHOWN_TAGS);
}

static void print_text(const char *path, const ce_caption *c, int n_tags)
{
    cx_fputs_printable(path, stdout);
    fputs(": ", stdout);
    cx_fputs_printable(c->caption, stdout);
    putchar('\n');
    if (n_tags > 0 && c->n_tags > 0) {
        fputs("  tags:", stdout);
        for (int i = 0; i < c->n_tags && i < n_tags; i++) {
            putchar(' ');
            cx_fputs_printable(c->tags[i].word, stdout);
            printf(" (%.2f)%s", c->tags[i].score, i + 1 < c->n_tags && i + 1 < n_tags ? "," : "");
        }
        putchar('\n');
    }
}

static void print_json(const char *path, const ce_caption *c, int n_tags)
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
    fputs("]}\n", stdout);
}

static void print_json_error(const char *path, const char *msg)
{
    fputs("{\"file\":", stdout);
    cli_json_string(stdout, path);
    fputs(",\"error\":", stdout);
    cli_json_string(stdout, msg);
    fputs("}\n", stdout);
}
