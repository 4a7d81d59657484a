/* SCAFFOLD: replaced by the issue that owns 'capsearch similar'. */
#include "cli.h"

int cmd_similar(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_error("'similar' is not built yet");
}
