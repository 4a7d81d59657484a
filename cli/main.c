/*
 * capsearch: find photos by describing them.
 *
 *   capsearch QUERY...            ranked text search (the default subcommand)
 *   capsearch status              database, model and daemon state
 *   capsearch caption IMAGE...    caption files now, no daemon or database needed
 *   capsearch detect IMAGE...     the CNN's object detections
 *   capsearch similar IMAGE       images that look alike
 *   capsearch index DIR...        index folders once, without the daemon
 *   capsearch prune [DIR...]      remove rows of deleted files, or of whole folders
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subcommand;

static const subcommand SUBCOMMANDS[] = {
    {"search", cmd_search, "rank indexed images against a description (default)"},
    {"status", cmd_status, "show the database, model and daemon state"},
    {"caption", cmd_caption, "caption image files (no database needed)"},
    {"detect", cmd_detect, "list the objects the CNN detects in image files"},
    {"similar", cmd_similar, "find indexed images that look like an image"},
    {"index", cmd_index, "index folders once, without the daemon"},
    {"prune", cmd_prune, "remove rows of deleted files or of folders no longer watched"},
    {"serve", cmd_serve, "serve the photo search web page and the HTTP JSON API"},
};
#define N_SUBCOMMANDS (sizeof SUBCOMMANDS / sizeof SUBCOMMANDS[0])

/* The index of the first argument that is neither an option nor an option's value
 * (argc when none), by the option table. */
static int first_operand(int argc, char **argv)
{
    int i = 1;
    while (i < argc && argv[i][0] == '-' && argv[i][1] != '\0') {
        if (!strcmp(argv[i], "--")) return i + 1 < argc ? i + 1 : argc;
        i += cli_option_takes_value(argv[i]) ? 2 : 1;
    }
    return i < argc ? i : argc;
}

static void print_usage(FILE *out)
{
    fprintf(out, "Usage: capsearch [OPTIONS] QUERY...\n"
                 "       capsearch SUBCOMMAND [OPTIONS] [ARGS...]\n\n"
                 "Find photos by describing them: capsearch \"dog on beach\"\n\n"
                 "Subcommands:\n");
    for (size_t i = 0; i < N_SUBCOMMANDS; i++)
        fprintf(out, "  %-8s %s\n", SUBCOMMANDS[i].name, SUBCOMMANDS[i].summary);
    fprintf(out, "\nRun 'capsearch SUBCOMMAND --help' for a subcommand's options.\n"
                 "Exit status: 0 matched, 1 nothing matched, 2 error.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return EXIT_TROUBLE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        print_usage(stdout);
        return EXIT_MATCH;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("capsearch %s\n", CAPSEARCH_VERSION);
        return EXIT_MATCH;
    }
    for (size_t i = 0; i < N_SUBCOMMANDS; i++)
        if (!strcmp(argv[1], SUBCOMMANDS[i].name)) return SUBCOMMANDS[i].run(argc - 1, argv + 1);

    /* "capsearch --db X status": options before a subcommand's name are that subcommand's
     * options ("capsearch status --db X"); the subcommand accepts or refuses each. */
    int first = first_operand(argc, argv);
    if (first > 1 && first < argc) {
        for (size_t i = 0; i < N_SUBCOMMANDS; i++) {
            if (strcmp(argv[first], SUBCOMMANDS[i].name)) continue;
            char *name = argv[first];
            memmove(argv + 2, argv + 1, (size_t)(first - 1) * sizeof *argv);
            argv[1] = name;
            return SUBCOMMANDS[i].run(argc - 1, argv + 1);
        }
    }

    /* Anything else is a query: "capsearch dog beach" == "capsearch search dog beach".
     * A query that happens to equal a subcommand name needs "capsearch search -- WORD". */
    argv[0] = (char *)"search";
    return cmd_search(argc, argv);
}
