/* SCAFFOLD: replaced by the foundation issue. */
#include "cli.h"
int cmd_status(int argc, char **argv) { (void)argc; (void)argv; return cli_error("status is not built yet"); }
