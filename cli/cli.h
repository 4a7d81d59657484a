/*
 * The capsearch command line: one function per subcommand (cmd_*.c), a dispatcher
 * (main.c) and the few helpers every subcommand shares (cli_util.c).
 *
 * Exit status everywhere, like grep: 0 found / done, 1 nothing matched, 2 error.
 */
#ifndef CAPSEARCH_CLI_H
#define CAPSEARCH_CLI_H

#include <stdio.h>

enum { EXIT_MATCH = 0, EXIT_NO_MATCH = 1, EXIT_TROUBLE = 2 };

/* Subcommands: argv[0] is the subcommand name (or "search" for a bare query). */
int cmd_search(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_detect(int argc, char **argv);
int cmd_caption(int argc, char **argv);
int cmd_similar(int argc, char **argv);
int cmd_index(int argc, char **argv);

/* Prints "capsearch: <message>" to stderr; returns EXIT_TROUBLE for `return cli_error(...)`. */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Writes s as a JSON string literal (quotes included). Bytes that are not valid UTF-8
 * (file names may hold any) become U+FFFD so the output is always valid JSON. */
void cli_json_string(FILE *out, const char *s);

/* True when stdout is a terminal and NO_COLOR is unset: colour and progress bars. */
int cli_stdout_is_tty(void);
int cli_stderr_is_tty(void);

/* Parses a non-negative integer option value; returns -1 on garbage. */
long cli_parse_count(const char *s);

#endif
