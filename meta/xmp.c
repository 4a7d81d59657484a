/*
 * Reading and writing XMP with Exempi (capmeta.h states what is read, what is written and
 * the trust rule). Every rejection is named:
 *   - a sidecar larger than MAX_SIDECAR_BYTES, or that Exempi cannot parse, is skipped
 *     when reading and refused (-EBADMSG) when writing: a file we cannot read back whole
 *     is never replaced;
 *   - text that is not valid UTF-8 is dropped (Exempi hands back what the file holds);
 *   - a keyword longer than MAX_KEYWORD bytes, or one with control characters, is dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <exempi/xmp.h>
#include <exempi/xmpconsts.h>

#include "capmeta.h"
#include "caputf8.h"

#define MAX_SIDECAR_BYTES (4 << 20)
#define MAX_KEYWORD 200
#define NS_DIGIKAM "http://www.digikam.org/ns/1.0/"
#define HIERARCHY_PREFIX "capsearch|"

/* What capsearch wrote earlier, as recorded in its namespace. */
typedef struct {
    char alt_text[CM_MAX_DESCRIPTION];
    char description[CM_MAX_DESCRIPTION];
    char subjects[CM_MAX_KEYWORDS]; /* '\n'-separated */
} ours;

static void collect(XmpPtr x, cm_text *t);
static void read_ours(XmpPtr x, ours *o);
static int get_text(XmpPtr x, const char *ns, const char *name, char *out, size_t size);
static int get_item(XmpPtr x, const char *ns, const char *name, int i, char *out, size_t size);
static int count_items(XmpPtr x, const char *ns, const char *name);
static void add_keyword(cm_text *t, const char *word, size_t len);
static int has_line(const char *lines, const char *word, size_t len);
static int valid_text(const char *s);
static XmpPtr load_sidecar(const char *path, int64_t *mtime_ns, int *status);
static void sidecar_paths(const char *image, char *with_ext, char *without_ext, size_t size);
static void cut_characters(const char *s, size_t max_chars, char *out, size_t size);
static int write_atomically(const char *path, const char *data, size_t len, cm_err *err);
static int fail(cm_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------------ public */

int cm_init(void)
{
    if (!xmp_init()) return -EIO;
    XmpStringPtr prefix = xmp_string_new();
    xmp_register_namespace(CM_NS, "capsearch", prefix);
    xmp_register_namespace(NS_DIGIKAM, "digiKam", prefix);
    /* Exempi 2.6 knows lr: by name but has not registered it: every lookup would throw */
    xmp_register_namespace(NS_LIGHTROOM, "lr", prefix);
    xmp_string_free(prefix);
    return 0;
}

void cm_terminate(void) { xmp_terminate(); }

int cm_is_sidecar(const char *path)
{
    size_t n = strlen(path);
    return n > 4 && !strcasecmp(path + n - 4, ".xmp");
}

int cm_read(const char *image_path, cm_text *out, cm_err *err)
{
    memset(out, 0, sizeof *out);
    char with_ext[4096], without_ext[4096];
    sidecar_paths(image_path, with_ext, without_ext, sizeof with_ext);
    int rc = 0;
    /* sidecars first: where Lightroom and digiKam write; they win over embedded text */
    const char *sidecars[2] = {with_ext, without_ext};
    for (int i = 0; i < 2; i++) {
        if (!sidecars[i][0] || (i == 1 && !strcmp(sidecars[0], sidecars[1]))) continue;
        int64_t mtime = 0;
        int status = 0;
        XmpPtr x = load_sidecar(sidecars[i], &mtime, &status);
        if (status < 0 && status != -ENOENT)
            rc = fail(err, status, "%s: %s", sidecars[i], strerror(-status));
        if (!x) continue;
        if (mtime > out->sidecar_mtime_ns) out->sidecar_mtime_ns = mtime;
        collect(x, out);
        xmp_free(x);
    }
    XmpFilePtr f = xmp_files_open_new(image_path, XMP_OPEN_READ);
    if (f) {
        XmpPtr x = xmp_files_get_new_xmp(f);
        if (x) {
            collect(x, out);
            xmp_free(x);
        }
        xmp_files_close(f, XMP_CLOSE_NOOPTION);
        xmp_files_free(f);
    }
    return rc;
}

int cm_read_packet(const char *packet, size_t len, cm_text *out, cm_err *err)
{
    memset(out, 0, sizeof *out);
    XmpPtr x = xmp_new(packet, len);
    if (!x) return fail(err, -EBADMSG, "not an XMP packet (Exempi error %d)", xmp_get_error());
    collect(x, out);
    xmp_free(x);
    return 0;
}

int cm_write_sidecar(const char *image_path, const cm_caption *c, char *written,
                     size_t written_size, cm_err *err)
{
    char with_ext[4096], without_ext[4096];
    sidecar_paths(image_path, with_ext, without_ext, sizeof with_ext);
    struct stat st;
    const char *target = with_ext;
    if (lstat(with_ext, &st) != 0 && without_ext[0] && lstat(without_ext, &st) == 0)
        target = without_ext; /* the existing IMG.xmp */
    if (written && written_size) snprintf(written, written_size, "%s", target);

    int64_t mtime = 0;
    int status = 0;
    XmpPtr x = load_sidecar(target, &mtime, &status);
    if (!x && status != -ENOENT)
        return fail(err, status < 0 ? status : -EBADMSG, "%s: %s; left as it is", target,
                    status == -EBADMSG ? "not XMP Exempi can read" : strerror(-status));
    if (!x) x = xmp_new_empty();
    if (!x) return fail(err, -ENOMEM, "out of memory");
    ours o;
    read_ours(x, &o);

    char alt[CM_MAX_DESCRIPTION];
    cut_characters(c->caption ? c->caption : "", CM_ALT_TEXT_MAX, alt, sizeof alt);
    char current[CM_MAX_DESCRIPTION];
    /* alt text and description: ours to replace only when empty or what we wrote */
    get_text(x, NS_IPTC4XMP, "AltTextAccessibility", current, sizeof current);
    if (alt[0] && (!current[0] || !strcmp(current, o.alt_text))) {
        xmp_set_localized_text(x, NS_IPTC4XMP, "AltTextAccessibility", "", "x-default", alt, 0);
        xmp_set_property(x, CM_NS, "altText", alt, 0);
    }
    get_text(x, NS_DC, "description", current, sizeof current);
    if (alt[0] && (!current[0] || !strcmp(current, o.description))) {
        xmp_set_localized_text(x, NS_DC, "description", "", "x-default", alt, 0);
        xmp_set_property(x, CM_NS, "description", alt, 0);
    }
    /* keywords: drop the ones we added last time, add ours unless a person has them */
    char item[CM_MAX_DESCRIPTION];
    /* (array items are addressed by path, "subject[3]": delete from the end) */
    for (int i = count_items(x, NS_DC, "subject"); i >= 1; i--) {
        if (!get_item(x, NS_DC, "subject", i, item, sizeof item)) continue;
        if (!has_line(o.subjects, item, strlen(item))) continue;
        char path[32];
        snprintf(path, sizeof path, "subject[%d]", i);
        xmp_delete_property(x, NS_DC, path);
    }
    for (int i = count_items(x, NS_LIGHTROOM, "hierarchicalSubject"); i >= 1; i--) {
        if (!get_item(x, NS_LIGHTROOM, "hierarchicalSubject", i, item, sizeof item)) continue;
        if (strncmp(item, HIERARCHY_PREFIX, strlen(HIERARCHY_PREFIX))) continue;
        char path[48];
        snprintf(path, sizeof path, "hierarchicalSubject[%d]", i);
        xmp_delete_property(x, NS_LIGHTROOM, path);
    }
    xmp_delete_property(x, CM_NS, "subjects");
    for (int i = 0; i < c->n_tags; i++) {
        const char *tag = c->tags[i];
        if (!tag || !*tag || !valid_text(tag)) continue;
        int human = 0;
        for (int k = count_items(x, NS_DC, "subject"); k >= 1 && !human; k--)
            human = get_item(x, NS_DC, "subject", k, item, sizeof item) && !strcmp(item, tag);
        if (!human) {
            xmp_append_array_item(x, NS_DC, "subject", XMP_PROP_VALUE_IS_ARRAY, tag, 0);
            xmp_append_array_item(x, CM_NS, "subjects", XMP_PROP_VALUE_IS_ARRAY, tag, 0);
        }
        char hier[MAX_KEYWORD + 16];
        snprintf(hier, sizeof hier, HIERARCHY_PREFIX "%s", tag);
        xmp_append_array_item(x, NS_LIGHTROOM, "hierarchicalSubject", XMP_PROP_VALUE_IS_ARRAY, hier,
                              0);
    }
    /* the caption writer: ours when empty or ours already */
    char writer[256];
    snprintf(writer, sizeof writer, "capsearch %s", c->model_version ? c->model_version : "");
    XmpStringPtr s = xmp_string_new();
    int have = xmp_get_property(x, NS_PHOTOSHOP, "CaptionWriter", s, NULL);
    if (!have || !strncmp(xmp_string_cstr(s), "capsearch", 9))
        xmp_set_property(x, NS_PHOTOSHOP, "CaptionWriter", writer, 0);
    xmp_set_property(x, CM_NS, "modelVersion", c->model_version ? c->model_version : "", 0);
    char conf[32];
    snprintf(conf, sizeof conf, "%.4f", c->confidence);
    xmp_set_property(x, CM_NS, "confidence", conf, 0);

    int rc;
    if (!xmp_serialize(x, s, XMP_SERIAL_OMITPACKETWRAPPER, 1))
        rc = fail(err, -EIO, "%s: Exempi could not serialise the XMP", target);
    else rc = write_atomically(target, xmp_string_cstr(s), xmp_string_len(s), err);
    xmp_string_free(s);
    xmp_free(x);
    return rc;
}

/* ------------------------------------------------------------------ reading */

/* Adds x's human text to t: the first description found wins (callers read the most
 * trusted source first), keywords accumulate. */
static void collect(XmpPtr x, cm_text *t)
{
    ours o;
    read_ours(x, &o);
    char text[CM_MAX_DESCRIPTION];
    if (!t->description[0]) {
        if (get_text(x, NS_DC, "description", text, sizeof text) && strcmp(text, o.description))
            snprintf(t->description, sizeof t->description, "%s", text);
        else if (get_text(x, NS_IPTC4XMP, "AltTextAccessibility", text, sizeof text) &&
                 strcmp(text, o.alt_text))
            snprintf(t->description, sizeof t->description, "%s", text);
        else if (get_text(x, NS_EXIF, "UserComment", text, sizeof text))
            snprintf(t->description, sizeof t->description, "%s", text);
    }
    int n = count_items(x, NS_DC, "subject");
    for (int i = 1; i <= n; i++)
        if (get_item(x, NS_DC, "subject", i, text, sizeof text) &&
            !has_line(o.subjects, text, strlen(text)))
            add_keyword(t, text, strlen(text));
    /* hierarchies ("Places|Norway|Oslo", "Pets/Rex"): every level is a keyword */
    const struct {
        const char *ns, *name;
        char sep;
    } HIERARCHIES[] = {
        {NS_LIGHTROOM, "hierarchicalSubject", '|'},
        {NS_DIGIKAM, "TagsList", '/'},
    };
    for (size_t h = 0; h < sizeof HIERARCHIES / sizeof HIERARCHIES[0]; h++) {
        n = count_items(x, HIERARCHIES[h].ns, HIERARCHIES[h].name);
        for (int i = 1; i <= n; i++) {
            if (!get_item(x, HIERARCHIES[h].ns, HIERARCHIES[h].name, i, text, sizeof text))
                continue;
            if (!strncmp(text, HIERARCHY_PREFIX, strlen(HIERARCHY_PREFIX))) continue;
            for (const char *p = text; *p;) {
                const char *end = strchr(p, HIERARCHIES[h].sep);
                size_t len = end ? (size_t)(end - p) : strlen(p);
                add_keyword(t, p, len);
                p = end ? end + 1 : p + len;
            }
        }
    }
}

static void read_ours(XmpPtr x, ours *o)
{
    memset(o, 0, sizeof *o);
    XmpStringPtr s = xmp_string_new();
    if (xmp_get_property(x, CM_NS, "altText", s, NULL))
        snprintf(o->alt_text, sizeof o->alt_text, "%s", xmp_string_cstr(s));
    if (xmp_get_property(x, CM_NS, "description", s, NULL))
        snprintf(o->description, sizeof o->description, "%s", xmp_string_cstr(s));
    xmp_string_free(s);
    int n = count_items(x, CM_NS, "subjects");
    size_t used = 0;
    char item[CM_MAX_DESCRIPTION];
    for (int i = 1; i <= n; i++) {
        if (!get_item(x, CM_NS, "subjects", i, item, sizeof item)) continue;
        int w =
            snprintf(o->subjects + used, sizeof o->subjects - used, "%s%s", used ? "\n" : "", item);
        if (w < 0 || (size_t)w >= sizeof o->subjects - used) break;
        used += (size_t)w;
    }
}

/* A Lang Alt's x-default (or a simple property), valid UTF-8 only. 1 when found. */
static int get_text(XmpPtr x, const char *ns, const char *name, char *out, size_t size)
{
    out[0] = '\0';
    XmpStringPtr lang = xmp_string_new(), value = xmp_string_new();
    uint32_t options = 0;
    int ok = xmp_get_localized_text(x, ns, name, "", "x-default", lang, value, &options);
    if (!ok) ok = xmp_get_property(x, ns, name, value, &options) && XMP_IS_PROP_SIMPLE(options);
    /* cut to size at a character boundary: a byte cut could split one (found by fuzz_xmp) */
    if (ok && valid_text(xmp_string_cstr(value))) cut_characters(xmp_string_cstr(value), SIZE_MAX, out, size);
    /* other control characters become spaces (a newline or a tab may stay: descriptions
     * run over lines); cameras fill ImageDescription with spaces: blank is no text */
    for (char *c = out; *c; c++)
        if ((unsigned char)*c < 0x20 && *c != '\n' && *c != '\t') *c = ' ';
    size_t n = strlen(out);
    while (n && (out[n - 1] == ' ' || out[n - 1] == '\t' || out[n - 1] == '\n')) out[--n] = '\0';
    size_t lead = strspn(out, " \t\n");
    if (lead) memmove(out, out + lead, strlen(out + lead) + 1);
    xmp_string_free(lang);
    xmp_string_free(value);
    return out[0] != '\0';
}

static int get_item(XmpPtr x, const char *ns, const char *name, int i, char *out, size_t size)
{
    out[0] = '\0';
    XmpStringPtr value = xmp_string_new();
    if (xmp_get_array_item(x, ns, name, i, value, NULL) && valid_text(xmp_string_cstr(value)))
        cut_characters(xmp_string_cstr(value), SIZE_MAX, out, size);
    xmp_string_free(value);
    return out[0] != '\0';
}

/* Items of an array property (1-based in XMP paths); 0 when absent. */
static int count_items(XmpPtr x, const char *ns, const char *name)
{
    enum { MAX_ITEMS = 10000 };
    XmpStringPtr value = xmp_string_new();
    int n = 0;
    while (n < MAX_ITEMS && xmp_get_array_item(x, ns, name, n + 1, value, NULL)) n++;
    xmp_string_free(value);
    return n;
}

static void add_keyword(cm_text *t, const char *word, size_t len)
{
    while (len && (*word == ' ' || *word == '\t')) word++, len--;
    while (len && (word[len - 1] == ' ' || word[len - 1] == '\t')) len--;
    if (len == 0 || len > MAX_KEYWORD || memchr(word, '\n', len)) return;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)word[i] < 0x20) return;
    if (has_line(t->keywords, word, len)) return;
    size_t used = strlen(t->keywords);
    if (used + len + 2 > sizeof t->keywords) return;
    if (used) t->keywords[used++] = '\n';
    memcpy(t->keywords + used, word, len);
    t->keywords[used + len] = '\0';
}

static int has_line(const char *lines, const char *word, size_t len)
{
    for (const char *p = lines; *p;) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && !strncasecmp(p, word, len)) return 1;
        p = end ? end + 1 : p + n;
    }
    return 0;
}

static int valid_text(const char *s)
{
    uint32_t cp;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int n = cu_utf8_decode(p, 4, &cp);
        if (n == 0) return 0;
        p += n;
    }
    return 1;
}

/* NULL with *status -ENOENT (no sidecar), -EFBIG, -EBADMSG or -errno. */
static XmpPtr load_sidecar(const char *path, int64_t *mtime_ns, int *status)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0) {
        *status = -errno;
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        *status = -EINVAL;
        close(fd);
        return NULL;
    }
    if (st.st_size > MAX_SIDECAR_BYTES) {
        *status = -EFBIG;
        close(fd);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    ssize_t got = buf ? read(fd, buf, (size_t)st.st_size) : -1;
    close(fd);
    if (got != st.st_size) {
        free(buf);
        *status = buf ? -EIO : -ENOMEM;
        return NULL;
    }
    XmpPtr x = got > 0 ? xmp_new(buf, (size_t)got) : xmp_new_empty();
    free(buf);
    *status = x ? 0 : -EBADMSG;
    *mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    return x;
}

/* IMG.jpg -> IMG.jpg.xmp and IMG.xmp ("" when the name has no extension). */
static void sidecar_paths(const char *image, char *with_ext, char *without_ext, size_t size)
{
    snprintf(with_ext, size, "%s.xmp", image);
    without_ext[0] = '\0';
    const char *slash = strrchr(image, '/');
    const char *dot = strrchr(image, '.');
    if (dot && (!slash || dot > slash + 1))
        snprintf(without_ext, size, "%.*s.xmp", (int)(dot - image), image);
}

/* At most max_chars code points of s, never cutting one in two. */
static void cut_characters(const char *s, size_t max_chars, char *out, size_t size)
{
    size_t at = 0, chars = 0;
    uint32_t cp;
    const unsigned char *p = (const unsigned char *)s;
    while (*p && chars < max_chars) {
        int n = cu_utf8_decode(p, 4, &cp);
        if (n == 0) break;
        if (at + (size_t)n + 1 > size) break;
        memcpy(out + at, p, (size_t)n);
        at += (size_t)n;
        p += n;
        chars++;
    }
    out[at] = '\0';
}

static int write_atomically(const char *path, const char *data, size_t len, cm_err *err)
{
    char tmp[4200];
    const char *slash = strrchr(path, '/');
    int dir_len = slash ? (int)(slash - path + 1) : 0;
    snprintf(tmp, sizeof tmp, "%.*s.%s.capsearch-XXXXXX", dir_len, path, slash ? slash + 1 : path);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return fail(err, -errno, "%s: cannot create a file beside it: %s", path, strerror(errno));
    struct stat st;
    fchmod(fd, lstat(path, &st) == 0 ? (st.st_mode & 07777) : 0644);
    size_t done = 0;
    int rc = 0;
    while (done < len && rc == 0) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0) rc = -errno;
        else done += (size_t)n;
    }
    if (rc == 0 && fsync(fd) != 0) rc = -errno;
    if (close(fd) != 0 && rc == 0) rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0) rc = -errno;
    if (rc < 0) {
        unlink(tmp);
        return fail(err, rc, "%s: %s", path, strerror(-rc));
    }
    return 0;
}

static int fail(cm_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}
