/*
 * capsearch-full: the whole capsearch program, every subcommand. `capsearch` itself
 * (front.c) runs searches and hands every other command line to this one unchanged.
 *
 *   capsearch QUERY...            ranked text search (the default subcommand)
 *   capsearch status              database, model and daemon state
 *   capsearch caption IMAGE...    caption files now, no daemon or database needed
 *   capsearch detect IMAGE...     the CNN's object detections
 *   capsearch similar IMAGE       images that look alike
 *   capsearch index DIR...        index folders once, without the daemon
 *   capsearch prune [DIR...]      remove rows of deleted files, or of whole folders
 */
#include <stdio.h>

#include "cli.h"

/* Indexed by CLI_CMD_* (cli.h); the names and summaries are in dispatch.c. */
static int (*const RUN[CLI_N_SUBCOMMANDS])(int argc, char **argv) = {
    [CLI_CMD_SEARCH] = cmd_search,   [CLI_CMD_STATUS] = cmd_status, [CLI_CMD_CAPTION] = cmd_caption,
    [CLI_CMD_DETECT] = cmd_detect,   [CLI_CMD_SIMILAR] = cmd_similar, [CLI_CMD_INDEX] = cmd_index,
    [CLI_CMD_PRUNE] = cmd_prune,     [CLI_CMD_SERVE] = cmd_serve,
};

static void print_usage(FILE *out)
{
    fprintf(out, "Usage: capsearch [OPTIONS] QUERY...\n"
                 "       capsearch SUBCOMMAND [OPTIONS] [ARGS...]\n\n"
                 "Find photos by describing them: capsearch \"dog on beach\"\n\n"
                 "Subcommands:\n");
    for (int i = 0; i < CLI_N_SUBCOMMANDS; i++)
        fprintf(out, "  %-8s %s\n", CLI_SUBCOMMANDS[i].name, CLI_SUBCOMMANDS[i].summary);
    fprintf(out, "\nRun 'capsearch SUBCOMMAND --help' for a subcommand's options.\n"
                 "Exit status: 0 matched, 1 nothing matched, 2 error.\n");
}

int main(int argc, char **argv)
{
    char **sub_argv = NULL;
    int route = cli_route(argc, argv, &sub_argv);
    switch (route) {
    case CLI_ROUTE_USAGE: print_usage(stderr); return EXIT_TROUBLE;
    case CLI_ROUTE_HELP: print_usage(stdout); return EXIT_MATCH;
    case CLI_ROUTE_VERSION: printf("capsearch %s\n", CAPSEARCH_VERSION); return EXIT_MATCH;
    default: return RUN[route](argc - (int)(sub_argv - argv), sub_argv);
    }
}
