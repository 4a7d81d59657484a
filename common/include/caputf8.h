/*
 * caputf8.h: UTF-8 decoding, once for the whole project (libcaputil). File names, weight
 * names, captions and queries are checked and split with this one definition of valid.
 */
#ifndef CAPUTF8_H
#define CAPUTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decodes the sequence at s, of which avail bytes may be read (a NUL-terminated string
 * may pass 4: a NUL byte ends any sequence). Returns its length 1..4 with *cp set, or 0
 * when the bytes there are not valid UTF-8: a stray continuation byte, a truncated
 * sequence, an overlong form, a surrogate, or a code point past U+10FFFF. */
int cu_utf8_decode(const unsigned char *s, size_t avail, uint32_t *cp);

#endif
