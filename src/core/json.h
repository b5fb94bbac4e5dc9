/*
 * json: strict helpers over jansson. Input from the network is parsed with
 * duplicate keys rejected, a byte cap and a nesting cap, and objects are
 * unpacked against a table of expected fields: an unknown key, a missing
 * required key or a wrong type is an error that names the key.
 */
#ifndef RBEE_CORE_JSON_H
#define RBEE_CORE_JSON_H

#include <jansson.h>
#include <stddef.h>

struct err;

/*
 * Parses len bytes (at most max_len) as one JSON value. Rejects duplicate
 * keys, NUL bytes in strings and nesting deeper than CAP_JSON_DEPTH.
 * *out receives a new reference. Returns 0, ERR_TOO_LARGE or ERR_INVALID.
 */
int json_parse_strict(const char *buf, size_t len, size_t max_len, json_t **out, struct err *e);

enum json_field_type {
	JF_STRING, /* out: const char ** (borrowed from the object) */
	JF_INT,	   /* out: json_int_t * */
	JF_BOOL,   /* out: int * */
	JF_OBJECT, /* out: json_t ** (borrowed) */
	JF_ARRAY,  /* out: json_t ** (borrowed) */
	JF_ANY,	   /* out: json_t ** (borrowed) */
};

struct json_field {
	const char *name;
	enum json_field_type type;
	int required;
	void *out; /* left untouched when an optional key is absent or null */
};

/*
 * Unpacks obj against fields[0..n). what names the object in errors
 * ("request body"). Unknown keys are errors. Returns 0 or ERR_INVALID.
 */
int json_unpack_fields(json_t *obj, const struct json_field *fields, size_t n, const char *what,
		       struct err *e);

/* Compact serialization; the caller frees the string with free(). */
char *json_dump_compact(const json_t *v);

/* Sets obj[key] to a new string, or to null when s is NULL. */
void json_set_str(json_t *obj, const char *key, const char *s);
void json_set_int(json_t *obj, const char *key, long long v);

#endif
