/*
 * Opening the model files and making per-thread sessions. A ce_model is read-only once
 * opened (shared by all threads); a ce_session owns every buffer one thread writes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnn.h"
#include "model.h"
#include "parallel.h"
#include "weights.h"

#define BACKBONE_FILE "ssdlite_mobilenet_v2_coco.csw"
#define BACKBONE_NAME "ssdlite_mobilenet_v2_coco"

struct ce_model {
    ce_weights *backbone; /* NULL when opened text-only */
    cnn_net *cnn;
    ce_captioner *captioner; /* NULL when absent */
    char version[160];
};

struct ce_session {
    const ce_model *model;
    cnn_state *cnn; /* NULL when the model has no backbone */
    ce_captioner_scratch *captioner;
};

const char *ce_default_models_dir(void)
{
    const char *env = getenv("CAPSEARCH_MODELS");
    if (env && *env) return env;
    if (access(CAPSEARCH_INSTALL_MODELS_DIR "/" BACKBONE_FILE, R_OK) == 0)
        return CAPSEARCH_INSTALL_MODELS_DIR;
    return CAPSEARCH_SOURCE_MODELS_DIR;
}

int ce_model_open(const char *models_dir, int flags, ce_model **out, ce_err *err)
{
    ce_err scratch_err;
    if (!err) err = &scratch_err;
    *out = NULL;
    if (!models_dir) models_dir = ce_default_models_dir();
    if (flags & ~(CE_OPEN_TEXT_ONLY | CE_OPEN_CNN_INT8)) {
        snprintf(err->msg, sizeof err->msg, "unknown model open flags %#x", (unsigned)flags);
        return -EINVAL;
    }
    ce_model *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return -ENOMEM;
    }
    int rc;
    if (!(flags & CE_OPEN_TEXT_ONLY)) {
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", models_dir, BACKBONE_FILE) >=
            sizeof path) {
            snprintf(err->msg, sizeof err->msg, "models directory path too long");
            rc = -ENAMETOOLONG;
            goto fail;
        }
        rc = ce__weights_open(path, &m->backbone, err);
        if (rc == -ENOENT) {
            snprintf(err->msg, sizeof err->msg,
                     "%.160s not found (run models/backbone/fetch_and_convert.sh, or set "
                     "CAPSEARCH_MODELS)",
                     path);
            goto fail;
        }
        if (rc < 0) goto fail;
        if ((rc = ce__cnn_net_build(m->backbone, !!(flags & CE_OPEN_CNN_INT8), &m->cnn, err)) < 0)
            goto fail;
    }
    rc = ce__captioner_open(models_dir, flags, &m->captioner, err);
    if (rc == -ENOENT) {
        m->captioner = NULL;
        err->msg[0] = 0;
    } else if (rc < 0) {
        goto fail;
    }
    const char *precision = m->cnn && (flags & CE_OPEN_CNN_INT8) ? "-int8" : "";
    if (m->captioner)
        snprintf(m->version, sizeof m->version, "%s%s+%s", BACKBONE_NAME, precision,
                 ce__captioner_version(m->captioner));
    else snprintf(m->version, sizeof m->version, "%s%s", BACKBONE_NAME, precision);
    *out = m;
    return 0;
fail:
    ce_model_close(m);
    return rc;
}

void ce_model_close(ce_model *model)
{
    if (!model) return;
    if (model->captioner) ce__captioner_close(model->captioner);
    ce__cnn_net_free(model->cnn);
    ce__weights_close(model->backbone);
    free(model);
}

int ce_model_has_captioner(const ce_model *model) { return model->captioner != NULL; }
const char *ce_model_version(const ce_model *model) { return model->version; }

int ce_version_is_int8(const char *version)
{
    /* BACKBONE_NAME, then "-int8" when so, then "+captioner" or nothing */
    size_t n = strlen(BACKBONE_NAME);
    return version && !strncmp(version, BACKBONE_NAME, n) && !strncmp(version + n, "-int8", 5) &&
           (version[n + 5] == '\0' || version[n + 5] == '+');
}
const ce_captioner *ce__model_captioner(const ce_model *model) { return model->captioner; }

int ce_session_new(const ce_model *model, ce_session **out, ce_err *err)
{
    ce_err scratch_err;
    if (!err) err = &scratch_err;
    *out = NULL;
    ce_session *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return -ENOMEM;
    }
    s->model = model;
    int rc = 0;
    if (model->cnn && (rc = ce__cnn_state_new(model->cnn, &s->cnn, err)) < 0) goto fail;
    if (model->captioner && model->cnn && /* text-only models caption nothing */
        (rc = ce__captioner_scratch_new(model->captioner, &s->captioner, err)) < 0)
        goto fail;
    *out = s;
    return 0;
fail:
    ce_session_free(s);
    return rc;
}

void ce_session_free(ce_session *session)
{
    if (!session) return;
    if (session->captioner) ce__captioner_scratch_free(session->captioner);
    ce__cnn_state_free(session->cnn);
    free(session);
}

ce_captioner_scratch *ce__session_captioner_scratch(ce_session *session)
{
    return session->captioner;
}
cnn_state *ce__session_cnn(ce_session *session) { return session->cnn; }
const cnn_net *ce__session_cnn_net(const ce_session *session) { return session->model->cnn; }

/* Our own helpers (parallel.h); OpenBLAS, where the portable path loads it, keeps one
 * thread (blas.h). */
void ce_set_blas_threads(int n) { ce__set_threads(n); }
