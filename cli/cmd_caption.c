/* SCAFFOLD: replaced by the issue that owns 'capsearch caption'. */
#include "cli.h"

int cmd_caption(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_error("'caption' is not built yet");
}
