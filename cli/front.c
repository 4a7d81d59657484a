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
 * This program runs searches itself and hands every other command line to capsearch-full
 * (main.c), the whole program. Why two: a search is the command people
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

/* Runs capsearch-full in this process, the first of: the one beside this program (a build
 * tree), the one where `make install` puts it relative to this program (an installation
 * under any prefix, or moved: bin/../libexec/capsearch), the one at the configured
 * CAPSEARCH_LIBEXEC_DIR. argv is passed on as cli_route left it (options given before a
 * subcommand's name moved after it, which capsearch-full reads the same way), so messages
 * and exit status are those of one program. Returns only after printing why not. */
static void exec_full(char **argv)
{
    char self[PATH_MAX], path[2 * PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self);
    char *slash = n > 0 && (size_t)n < sizeof self ? (self[n] = '\0', strrchr(self, '/')) : NULL;
    if (slash) {
        const char *relative[] = {".", CAPSEARCH_LIBEXEC_FROM_BIN};
        for (size_t i = 0; i < sizeof relative / sizeof *relative; i++) {
            snprintf(path, sizeof path, "%.*s/%s/%s", (int)(slash - self), self, relative[i],
                     FULL_PROGRAM);
            execv(path, argv);
            if (errno != ENOENT && errno != ENOTDIR) {
                cli_error("cannot run %s: %s", path, strerror(errno));
                return;
            }
        }
    }
    const char *installed = CAPSEARCH_LIBEXEC_DIR "/" FULL_PROGRAM;
    execv(installed, argv);
    cli_error("cannot run %s: %s (is capsearch installed completely?)", installed,
              strerror(errno));
}
