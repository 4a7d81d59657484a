/*
 * capprintable.h: terminal safety for text we did not write (libcaputil, printable.c
 * states the rule): file names, captions, tags, messages.
 */
#ifndef CAPPRINTABLE_H
#define CAPPRINTABLE_H

#include <stddef.h>
#include <stdio.h>

/* Bytes of the printable character at s (1..4), or 0 when the byte at s
 * must not reach a terminal (a control character or invalid UTF-8). */
int cu_printable_len(const char *s);
/* Writes s with each unsafe byte as '?'. */
void cu_fputs_printable(const char *s, FILE *out);
/* Copies s into buf (size > 0, always terminated, never cutting a character) with each
 * unsafe byte as '?'; returns buf. */
char *cu_printable(const char *s, char *buf, size_t size);

#endif
