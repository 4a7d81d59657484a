/* SCAFFOLD: replaced by the foundation issue. */
#include "cli.h"
int cmd_search(int argc, char **argv) { (void)argc; (void)argv; return cli_error("search is not built yet"); }
