/*
 * Which subcommand a command line asks for: shared by the two programs that read it,
 * `capsearch` (front.c: searches here, everything else handed to capsearch-full) and
 * capsearch-full (main.c: every subcommand).
 */
#include <string.h>

#include "cli.h"

const cli_subcommand_info CLI_SUBCOMMANDS[CLI_N_SUBCOMMANDS] = {
    [CLI_CMD_SEARCH] = {"search", "rank indexed images against a description (default)"},
    [CLI_CMD_STATUS] = {"status", "show the database, model and daemon state"},
    [CLI_CMD_CAPTION] = {"caption", "caption image files (no database needed)"},
    [CLI_CMD_DETECT] = {"detect", "list the objects the CNN detects in image files"},
    [CLI_CMD_SIMILAR] = {"similar", "find indexed images that look like an image"},
    [CLI_CMD_INDEX] = {"index", "index folders once, without the daemon"},
    [CLI_CMD_PRUNE] = {"prune", "remove rows of deleted files or of folders no longer watched"},
    [CLI_CMD_SERVE] = {"serve", "serve the photo search web page and the HTTP JSON API"},
};

static int first_operand(int argc, char **argv);

int cli_route(int argc, char **argv, char ***sub_argv)
{
    if (argc < 2) return CLI_ROUTE_USAGE;
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))
        return CLI_ROUTE_HELP;
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) return CLI_ROUTE_VERSION;
    *sub_argv = argv + 1;
    for (int i = 0; i < CLI_N_SUBCOMMANDS; i++)
        if (!strcmp(argv[1], CLI_SUBCOMMANDS[i].name)) return i;

    /* "capsearch --db X status": options before a subcommand's name are that subcommand's
     * options ("capsearch status --db X"); the subcommand accepts or refuses each. */
    int first = first_operand(argc, argv);
    if (first > 1 && first < argc) {
        for (int i = 0; i < CLI_N_SUBCOMMANDS; i++) {
            if (strcmp(argv[first], CLI_SUBCOMMANDS[i].name)) continue;
            char *name = argv[first];
            memmove(argv + 2, argv + 1, (size_t)(first - 1) * sizeof *argv);
            argv[1] = name;
            return i;
        }
    }

    /* Anything else is a query: "capsearch dog beach" == "capsearch search dog beach".
     * A query that happens to equal a subcommand name needs "capsearch search -- WORD". */
    argv[0] = (char *)"search";
    *sub_argv = argv;
    return CLI_CMD_SEARCH;
}

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
