/* SCAFFOLD: replaced by the issue that owns 'capsearch index'. */
#include "cli.h"

int cmd_index(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_error("'index' is not built yet");
}
