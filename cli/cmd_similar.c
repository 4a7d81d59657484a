/*
 * capsearch similar [OPTIONS] IMAGE: indexed images that look like IMAGE, by cosine
 * similarity of the CNN's pooled vectors. An indexed IMAGE uses its stored vector;
 * any other file is run through the network first.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capengine.h"
#include "cli.h"

/* The options this subcommand takes (rows of cli/options.c), for parsing and help. */
static const int ACCEPTED[] = {CLI_SEARCH_OPTIONS, 0};

static void usage(FILE *out);
static int image_vector(capdb *db, const char *path, const char *models_dir, float *vec);

int cmd_similar(int argc, char **argv)
{
    cli_options o;
    cli_options_init(&o);
    int first = cli_parse_options(argc, argv, ACCEPTED, &o, usage);
    if (first <= 0) {
        cli_options_free(&o);
        return first == 0 ? EXIT_MATCH : EXIT_TROUBLE;
    }
    if (argc - first != 1) {
        cli_options_free(&o);
        usage(stderr);
        return EXIT_TROUBLE;
    }
    char *path = cli_indexed_path(argv[first]);
    float *vec = malloc(CE_POOLED_DIM * sizeof *vec);
    capdb *db = NULL;
    int rc = path && vec ? cli_open_db(o.db_path, &db, NULL, 0) : cli_error("out of memory");
    if (rc == 0) rc = image_vector(db, path, o.models_dir, vec);
    if (rc == 0) {
        capdb_query q = {
            .pooled = vec,
            .n_pooled = CE_POOLED_DIM,
            .under_dir = o.under_dir,
            .since = o.since,
            .until = o.until,
            .has_since = o.has_since,
            .has_until = o.has_until,
            .limit = o.limit + 1, /* the image itself is among the best */
        };
        rc = cli_run_query(db, &q, &o, path);
    }
    capdb_close(db);
    free(vec);
    free(path);
    cli_options_free(&o);
    return rc;
}

static void usage(FILE *out)
{
    fputs("Usage: capsearch similar [OPTIONS] IMAGE\n\n"
          "Indexed images that look like IMAGE (cosine similarity of CNN image vectors),\n"
          "best first; IMAGE itself is left out. IMAGE need not be indexed.\n\n"
          "Options:\n",
          out);
    cli_print_options(out, ACCEPTED);
    fputs("\nExit status: 0 something found, 1 nothing found, 2 error.\n", out);
}

static int image_vector(capdb *db, const char *path, const char *models_dir, float *vec)
{
    capdb_err dberr = {{0}, 0};
    int found = capdb_get_pooled(db, path, vec, CE_POOLED_DIM, &dberr);
    if (found == 1) return 0;
    if (found < 0 && found != -EINVAL) return cli_error("%s", dberr.msg);
    /* not indexed (or indexed by another model generation): compute it */
    if (access(path, R_OK) != 0) return cli_error("%s: %s", path, strerror(errno));

    ce_model *model = NULL;
    ce_session *session = NULL;
    if (cli_open_engine(models_dir, CE_OPEN_DEFAULT, 0, &model, &session) != 0) return EXIT_TROUBLE;
    ce_image img = {0};
    ce_cnn_output *cnn = calloc(1, sizeof *cnn);
    ce_err err = {{0}};
    int rc = cnn ? ce_image_load_file(path, NULL, &img, &err) : -ENOMEM;
    if (rc == 0) rc = ce_cnn_run(session, &img, cnn, &err);
    if (rc == 0) memcpy(vec, cnn->pooled, CE_POOLED_DIM * sizeof *vec);
    ce_image_free(&img);
    ce_session_free(session);
    ce_model_close(model);
    free(cnn);
    if (rc == -ENOMEM && !err.msg[0]) return cli_error("out of memory");
    if (rc < 0) return cli_error("%s: %s", path, err.msg);
    return 0;
}
