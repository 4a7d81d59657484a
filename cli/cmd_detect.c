/* SCAFFOLD: replaced by the issue that owns 'capsearch detect'. */
#include "cli.h"

int cmd_detect(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_error("'detect' is not built yet");
}
