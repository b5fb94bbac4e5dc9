/*
 * cli_answer: reading the daemon's JSON answers and events. Each reader
 * takes the one field name docs/api.md defines ("gguf.architecture" looks
 * inside the object "gguf"); a field that is absent or null reads as
 * absent, so the caller shows a dash.
 */
#ifndef RBEE_CLI_ANSWER_H
#define RBEE_CLI_ANSWER_H

#include <jansson.h>
#include <stdint.h>

/* The value of key in o, or NULL when o is not an object or key is absent or null. */
json_t *cli_jget(const json_t *o, const char *key);
/* The same, as a string (NULL unless a string). */
const char *cli_jstr(const json_t *o, const char *key);
/* The same, as a non-negative integer (a real is truncated); 0 when found, else -1. */
int cli_juint(const json_t *o, const char *key, uint64_t *out);

#endif
