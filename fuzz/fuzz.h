/*
 * fuzz: what every libFuzzer target of fuzz/ shares. A target is one file
 * fuzz_<name>.c defining LLVMFuzzerTestOneInput; it feeds the input to one
 * parser and checks invariants of what the parser accepted with FUZZ_CHECK,
 * which aborts (libFuzzer then saves the input as a crash artifact).
 */
#ifndef RBEE_FUZZ_FUZZ_H
#define RBEE_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__,       \
				#cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/*
 * The input as a NUL-terminated string, for parsers that take one. An
 * embedded NUL ends the string early, as it would in a C caller. The caller
 * frees it.
 */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* Splits the input at its first NUL byte: the text before it and the rest (or NULL). */
static inline const uint8_t *fuzz_split(const uint8_t *data, size_t size, size_t *first)
{
	const uint8_t *nul = memchr(data, 0, size);
	*first = nul ? (size_t)(nul - data) : size;
	return nul ? nul + 1 : NULL;
}

/*
 * An error a parser filled: a code, and a message that can go into a log
 * line and a JSON error body as it is: not empty, no control characters,
 * valid UTF-8 (jansson refuses anything else, and the daemon's error answer
 * is built with it).
 */
static inline int fuzz_err_ok(const struct err *e)
{
	if (e->code >= 0 || e->msg[0] == '\0')
		return 0;
	for (const unsigned char *p = (const unsigned char *)e->msg; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return 0;
	json_t *j = json_string(e->msg);
	int ok = j != NULL;
	json_decref(j);
	return ok;
}

#endif
