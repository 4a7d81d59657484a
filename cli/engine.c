/* The model and session of the image subcommands (caption, detect, similar). */
#include <unistd.h>

#include "cli.h"

int cli_open_engine(const char *models_dir, int open_flags, int need_captioner, ce_model **model,
                    ce_session **session)
{
    /* One image at a time: latency matters, so the CNN splits each layer over every core
     * (the engine's own helper threads, measured faster than one thread even on a loaded
     * 2-core machine: tests/bench/peers, 2 threads 0.46-0.79x ONNX Runtime). */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    ce_set_blas_threads(cores > 0 ? (int)cores : 1);
    ce_err err;
    if (ce_model_open(models_dir, open_flags, model, &err) < 0)
        return cli_error("cannot load the model: %s", err.msg);
    if (need_captioner && !ce_model_has_captioner(*model)) {
        ce_model_close(*model);
        return cli_error("the model directory has no captioner.csw");
    }
    if (ce_session_new(*model, session, &err) < 0) {
        ce_model_close(*model);
        return cli_error("%s", err.msg);
    }
    return 0;
}
