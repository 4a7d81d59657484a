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
 *   capsearch serve               the web page and the JSON API
 *
 * This program runs searches itself and hands every other command line, unchanged, to
 * capsearch-full (main.c), the whole program. Why two: a search is the command people
 * type most, and the libraries the other subcommands need (image decoders, the HTTP
 * server, Exempi, libuv, libsystemd: about forty shared objects with what they pull in)
 * cost a process more time to load than the search itself takes (issue 14: a whole
 * `capsearch "dog beach"` within 5 ms). This one links SQLite and the C library only
 * (ctest -R cli.front checks it), as git hands `git foo` to its git-foo.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define FULL_PROGRAM "capsearch-full"

static void exec_full(char **argv);

int main(int argc, char **argv)
{
    char **sub_argv = NULL;
    if (cli_route(argc, argv, &sub_argv) == CLI_CMD_SEARCH)
        return cmd_search(argc - (int)(sub_argv - argv), sub_argv);
    exec_full(argv);
    return EXIT_TROUBLE;
}

/* Runs capsearch-full in this process: the one beside this program when there is one (a
 * build tree, or an installation moved elsewhere), else the one `make install` put in
 * CAPSEARCH_LIBEXEC_DIR. argv stays as it is, so messages and exit status are the same
 * as if one program had read the command line. Returns only after printing why not. */
static void exec_full(char **argv)
{
    char self[PATH_MAX], beside[PATH_MAX + sizeof FULL_PROGRAM];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            snprintf(beside, sizeof beside, "%.*s/%s", (int)(slash - self), self, FULL_PROGRAM);
            execv(beside, argv);
            if (errno != ENOENT) {
                cli_error("cannot run %s: %s", beside, strerror(errno));
                return;
            }
        }
    }
    const char *installed = CAPSEARCH_LIBEXEC_DIR "/" FULL_PROGRAM;
    execv(installed, argv);
    cli_error("cannot run %s: %s (is capsearch installed completely?)", installed,
              strerror(errno));
}
