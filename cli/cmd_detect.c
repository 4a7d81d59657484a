/*
 * capsearch detect [--json] [--models DIR] [--cnn P] IMAGE...
 *
 * Runs the CNN on each file and prints its COCO detections: label, score and box.
 * Needs no database or daemon. A file that cannot be read is reported and skipped;
 * the exit status is then 2, else 0 when anything was detected and 1 when nothing was.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capengine.h"
#include "cli.h"
#include "capindexer.h"

/* The options this subcommand takes (rows of cli/options.c), for parsing and help. */
static const int ACCEPTED[] = {CLI_OPT_JSON, CLI_OPT_MODELS, CLI_OPT_CNN, 0};

static void usage(FILE *out);
static void print_text(const char *path, const ce_image *img, const ce_cnn_output *o);
static void print_json(const char *path, const ce_image *img, const ce_cnn_output *o);

int cmd_detect(int argc, char **argv)
{
    cli_options o;
    cli_options_init(&o);
    int first = cli_parse_options(argc, argv, ACCEPTED, &o, usage);
    if (first <= 0) return first == 0 ? EXIT_MATCH : EXIT_TROUBLE;
    if (first >= argc) {
        usage(stderr);
        return EXIT_TROUBLE;
    }
    int json = o.json;

    ce_err err;
    ce_model *model;
    ce_session *session;
    if (cli_open_engine(o.models_dir, o.open_flags, 0, &model, &session) != 0) return EXIT_TROUBLE;

    ce_cnn_output *out = calloc(1, sizeof *out);
    if (!out) {
        ce_session_free(session);
        ce_model_close(model);
        return cli_error("out of memory");
    }
    int status = EXIT_NO_MATCH, failed = 0;
    for (int i = first; i < argc; i++) {
        const char *path = argv[i];
        ce_image img;
        int rc = ce_image_load_file(path, NULL, &img, &err);
        if (rc == 0) {
            rc = ce_cnn_run(session, &img, out, &err);
            if (rc == 0) {
                if (json) print_json(path, &img, out);
                else print_text(path, &img, out);
                if (out->n_detections > 0) status = EXIT_MATCH;
            }
            ce_image_free(&img);
        }
        if (rc < 0) {
            failed = 1;
            cli_error("%s: %s", path, err.msg);
            if (json) cli_print_json_error(path, err.msg);
        }
    }
    fflush(stdout);
    free(out);
    ce_session_free(session);
    ce_model_close(model);
    return failed ? EXIT_TROUBLE : status;
}

static void usage(FILE *out)
{
    fputs("Usage: capsearch detect [OPTIONS] IMAGE...\n\n"
          "Lists the objects the CNN (SSDLite-MobileNetV2, 80 COCO classes) finds in each\n"
          "image: label, score, and box in pixels (left,top - right,bottom); with --json the\n"
          "boxes are normalised to 0..1.\n\n",
          out);
    cli_print_options(out, ACCEPTED);
    fputs("\nExit status: 0 something detected, 1 nothing detected, 2 a file could not be read.\n",
          out);
}

static void print_text(const char *path, const ce_image *img, const ce_cnn_output *o)
{
    /* Boxes are fractions of the image; show them in the stored image's pixels. */
    double w = img->source_width > 0 ? img->source_width : img->width;
    double h = img->source_height > 0 ? img->source_height : img->height;
    cu_fputs_printable(path, stdout);
    printf(": %d object%s\n", o->n_detections, o->n_detections == 1 ? "" : "s");
    for (int i = 0; i < o->n_detections; i++) {
        const ce_detection *d = &o->detections[i];
        char from[32], to[32];
        snprintf(from, sizeof from, "%.0f,%.0f", d->xmin * w, d->ymin * h);
        snprintf(to, sizeof to, "%.0f,%.0f", d->xmax * w, d->ymax * h);
        printf("  %-14s %5.3f  %11s - %s\n", d->label, d->score, from, to);
    }
}

static void print_json(const char *path, const ce_image *img, const ce_cnn_output *o)
{
    fputs("{\"file\":", stdout);
    cli_json_string(stdout, path);
    printf(",\"width\":%d,\"height\":%d,\"detections\":[",
           img->source_width > 0 ? img->source_width : img->width,
           img->source_height > 0 ? img->source_height : img->height);
    for (int i = 0; i < o->n_detections; i++) {
        const ce_detection *d = &o->detections[i];
        printf("%s{\"label\":", i ? "," : "");
        cli_json_string(stdout, d->label);
        printf(",\"class_id\":%d,\"score\":%.4f,\"box\":{\"xmin\":%.4f,\"ymin\":%.4f,"
               "\"xmax\":%.4f,\"ymax\":%.4f}}",
               d->class_id, d->score, d->xmin, d->ymin, d->xmax, d->ymax);
    }
    fputs("]}\n", stdout);
}
