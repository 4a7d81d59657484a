/*
 * capmeta.h: libcapmeta — what people and other applications wrote about a photo, and
 * the captions capsearch writes back for them — the only public header of meta/.
 *
 * Reading (cm_read): the metadata embedded in the file, through XMPFiles (Exempi), which
 * reconciles EXIF ImageDescription / UserComment and IPTC caption / keywords into XMP,
 * plus the XMP sidecars IMG.ext.xmp and IMG.xmp that digiKam, Lightroom, darktable or
 * ExifTool write. Fields read, in precedence order (sidecar before embedded):
 *   description  dc:description, Iptc4xmpCore:AltTextAccessibility, exif:UserComment
 *   keywords     dc:subject, lr:hierarchicalSubject (each level), digiKam:TagsList
 * Text capsearch wrote itself (recorded in its own namespace, CM_NS) is never read back
 * as a person's.
 *
 * Writing (cm_write_sidecar): read-modify-write of the image's sidecar, atomically (a
 * temporary file in the same folder, then rename), keeping every other property. The
 * trust rule: only values capsearch wrote itself (known from CM_NS) are replaced; a
 * person's description, alt text, keywords or caption writer are never overwritten.
 *
 * Threads: cm_init once before any thread uses the library; then any thread may call the
 * rest (Exempi objects are per call). Errors: 0, or a negative errno with cm_err filled.
 */
#ifndef CAPMETA_H
#define CAPMETA_H

#include <stddef.h>
#include <stdint.h>

#define CM_NS "https://capsearch.dev/ns/xmp/1.0/" /* prefix capsearch */
#define CM_ERR_MAX 256
typedef struct {
    char msg[CM_ERR_MAX];
} cm_err;

#define CM_MAX_DESCRIPTION 2048
#define CM_MAX_KEYWORDS 4096
#define CM_ALT_TEXT_MAX 250 /* characters: IPTC 2021.1's advice for alt text */

typedef struct {
    char description[CM_MAX_DESCRIPTION]; /* "" = none */
    char keywords[CM_MAX_KEYWORDS];       /* '\n'-separated, each once; "" = none */
    int64_t sidecar_mtime_ns;             /* newest sidecar found, 0 = none */
} cm_text;

typedef struct {
    const char *caption;     /* the machine caption */
    const char *const *tags; /* its tags */
    int n_tags;
    const char *model_version; /* "ssdlite_...+cap-1a2b3c4d" */
    double confidence;         /* 0..1 */
} cm_caption;

/* Once per process, before threads. Returns 0 or -EIO. Each cm_init is paired with a
 * cm_terminate once no thread uses the library (Exempi counts them; the last one frees
 * its tables). */
int cm_init(void);
void cm_terminate(void);

/* What people wrote about image_path (out cleared first). A file without metadata is not
 * an error. Returns 0, or -errno for an unreadable sidecar (the embedded text is kept). */
int cm_read(const char *image_path, cm_text *out, cm_err *err);
/* The same from one XMP packet in memory (a sidecar's bytes; the fuzz target). */
int cm_read_packet(const char *packet, size_t len, cm_text *out, cm_err *err);

/* Writes the caption as alt text (Iptc4xmpCore:AltTextAccessibility, at most
 * CM_ALT_TEXT_MAX characters), as dc:description only when that is empty, the tags as
 * dc:subject and lr:hierarchicalSubject ("capsearch|tag"), photoshop:CaptionWriter, and
 * capsearch:modelVersion / capsearch:confidence, into IMG.xmp when only that exists, else
 * IMG.ext.xmp. written (may be NULL) receives the sidecar's path. */
int cm_write_sidecar(const char *image_path, const cm_caption *caption, char *written,
                     size_t written_size, cm_err *err);

/* 1 when path names an XMP sidecar (".xmp", any case). */
int cm_is_sidecar(const char *path);

#endif
