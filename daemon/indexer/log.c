/*
 * One logging function for the daemon and `capsearch index`.
 *
 * Under systemd, stderr is connected to the journal and JOURNAL_STREAM holds its
 * "device:inode"; then each line starts with "<N>" (sd-daemon(3)) so the journal keeps
 * the priority. Elsewhere lines read "ident: level: message".
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capindexer.h"

static struct {
    char ident[32];
    int max_priority;
    int journal;
    char last_error[512];
} LOG = {"capsearch", LOG_INFO, 0, ""};

static const char *const LEVEL_NAMES[] = {
    "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug",
};

static int stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2) return 0;
    if (fstat(STDERR_FILENO, &st) != 0) return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void cx_log_init(const char *ident, int max_priority)
{
    snprintf(LOG.ident, sizeof LOG.ident, "%s", ident ? ident : "capsearch");
    LOG.max_priority = max_priority;
    LOG.journal = stderr_is_journal();
}

void cx_log_set_level(int max_priority) { LOG.max_priority = max_priority; }

void cx_log(int priority, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    if (priority < LOG_EMERG) priority = LOG_EMERG;
    if (priority > LOG_DEBUG) priority = LOG_DEBUG;
    char raw[2048];
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    /* one event, one line, no escape sequences: a file name holding a newline or an ESC
     * must neither split the line nor rewrite the reader's terminal */
    cu_printable(raw, msg, sizeof msg);
    if (priority <= LOG_ERR) {
        size_t n = strnlen(msg, sizeof LOG.last_error - 1);
        memcpy(LOG.last_error, msg, n);
        LOG.last_error[n] = '\0';
    }
    if (priority > LOG.max_priority) return;
    if (LOG.journal) fprintf(stderr, "<%d>%s\n", priority, msg);
    else fprintf(stderr, "%s: %s: %s\n", LOG.ident, LEVEL_NAMES[priority], msg);
}

int cx_log_parse_level(const char *name)
{
    if (!name) return -1;
    for (int i = 0; i <= LOG_DEBUG; i++)
        if (!strcmp(name, LEVEL_NAMES[i])) return i;
    if (!strcmp(name, "err")) return LOG_ERR;
    if (!strcmp(name, "warn")) return LOG_WARNING;
    if (name[0] >= '0' && name[0] <= '7' && name[1] == '\0') return name[0] - '0';
    return -1;
}

const char *cx_log_last_error(void) { return LOG.last_error; }

int cx_fail(cx_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}
