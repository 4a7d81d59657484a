/*
 * capsearch [search] [OPTIONS] QUERY...: rank indexed images against a description.
 *
 * The words are searched in the captions, tags and path words (FTS5, bm25); when the
 * model's text side opens, the query is also mapped into concept space so a photo is
 * found by what it shows even when its caption misses the word.
 */
#include <stdlib.h>
#include <string.h>

#include "capengine.h"
#include "cli.h"

#define MAX_QUERY_CONCEPTS 32

/* The options this subcommand takes (rows of cli/options.c), for parsing and help. */
static const int ACCEPTED[] = {CLI_SEARCH_OPTIONS, 0};

static void usage(FILE *out);
static char *join_words(int argc, char **argv);
static int query_concepts(const char *models_dir, const char *text,
                          struct capdb_concept_term *terms);

int cmd_search(int argc, char **argv)
{
    cli_options o;
    cli_options_init(&o);
    int first = cli_parse_options(argc, argv, ACCEPTED, &o, usage);
    if (first <= 0) {
        cli_options_free(&o);
        return first == 0 ? EXIT_MATCH : EXIT_TROUBLE;
    }
    if (first >= argc) {
        cli_options_free(&o);
        usage(stderr);
        return EXIT_TROUBLE;
    }
    char *text = join_words(argc - first, argv + first);
    capdb_reserve_page_cache(); /* one search, then exit (capdb.h); a hint: never fails it */
    capdb *db = NULL;
    int rc = text ? cli_open_db(o.db_path, &db, NULL, 0) : cli_error("out of memory");
    /* one search, then exit: a few hundred pages, read once (capdb.h says why) */
    if (rc == 0) capdb_map_pages(db, 0);
    if (rc == 0) {
        struct capdb_concept_term terms[MAX_QUERY_CONCEPTS];
        capdb_query q = {
            .text = text,
            .concepts = terms,
            .n_concepts = query_concepts(o.models_dir, text, terms),
            .under_dir = o.under_dir,
            .since = o.since,
            .until = o.until,
            .has_since = o.has_since,
            .has_until = o.has_until,
            .limit = o.limit,
            .with_snippet = !o.print0 && !o.json,
        };
        rc = cli_run_query(db, &q, &o, NULL);
    }
    capdb_close(db);
    free(text);
    cli_options_free(&o);
    return rc;
}

static void usage(FILE *out)
{
    fputs("Usage: capsearch [search] [OPTIONS] QUERY...\n\n"
          "Rank indexed images against a description: capsearch dog on a beach\n"
          "Each result: score, path, caption (matched words in bold on a terminal).\n\n"
          "Options:\n",
          out);
    cli_print_options(out, ACCEPTED);
    fputs("\nExit status: 0 something matched, 1 nothing matched, 2 error.\n", out);
}

static char *join_words(int argc, char **argv)
{
    size_t len = 1;
    for (int i = 0; i < argc; i++) len += strlen(argv[i]) + 1;
    char *text = malloc(len), *o = text;
    if (!text) return NULL;
    for (int i = 0; i < argc; i++) {
        size_t l = strlen(argv[i]);
        memcpy(o, argv[i], l);
        o += l;
        *o++ = ' ';
    }
    if (o > text) o--;
    *o = '\0';
    return text;
}

/* The text side is an mmap of the captioner's vocabulary: cheap to open per query.
 * Without a model (not installed yet, or a broken one) the search is words only. */
static int query_concepts(const char *models_dir, const char *text,
                          struct capdb_concept_term *terms)
{
    ce_model *model = NULL;
    ce_err err;
    if (ce_model_open(models_dir ? models_dir : ce_default_models_dir(), CE_OPEN_TEXT_ONLY, &model,
                      &err) != 0)
        return 0;
    ce_concept_weight weights[MAX_QUERY_CONCEPTS];
    int n = ce_text_concepts(model, text, weights, MAX_QUERY_CONCEPTS);
    for (int i = 0; i < n; i++) {
        terms[i].index = weights[i].index;
        terms[i].weight = weights[i].weight;
    }
    ce_model_close(model);
    return n > 0 ? n : 0;
}
