#include "core/json.h"

#include <stdlib.h>
#include <string.h>

#include "core/caps.h"
#include "core/err.h"

static int json_depth_ok(const json_t *v, int depth)
{
	if (depth > CAP_JSON_DEPTH)
		return 0;
	if (json_is_object(v)) {
		const char *k;
		json_t *c;
		json_object_foreach((json_t *)v, k, c)
		{
			if (!json_depth_ok(c, depth + 1))
				return 0;
		}
	} else if (json_is_array(v)) {
		size_t i;
		json_t *c;
		json_array_foreach(v, i, c)
		{
			if (!json_depth_ok(c, depth + 1))
				return 0;
		}
	}
	return 1;
}

int json_parse_strict(const char *buf, size_t len, size_t max_len, json_t **out, struct err *e)
{
	*out = NULL;
	if (len > max_len)
		return err_set(e, ERR_TOO_LARGE,
			       "JSON document of %zu bytes is over the cap of %zu", len, max_len);
	json_error_t je;
	json_t *v = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
	if (!v)
		return err_set(e, ERR_INVALID, "malformed JSON at line %d column %d: %s", je.line,
			       je.column, je.text);
	if (!json_depth_ok(v, 1)) {
		json_decref(v);
		return err_set(e, ERR_INVALID, "JSON nested deeper than %d levels", CAP_JSON_DEPTH);
	}
	*out = v;
	return 0;
}

static const char *const json_type_names[] = {
    [JF_STRING] = "a string",  [JF_INT] = "an integer", [JF_BOOL] = "a boolean",
    [JF_OBJECT] = "an object", [JF_ARRAY] = "an array", [JF_ANY] = "a value",
};

static int json_type_ok(const json_t *v, enum json_field_type t)
{
	switch (t) {
	case JF_STRING: return json_is_string(v);
	case JF_INT: return json_is_integer(v);
	case JF_BOOL: return json_is_boolean(v);
	case JF_OBJECT: return json_is_object(v);
	case JF_ARRAY: return json_is_array(v);
	case JF_ANY: return 1;
	}
	return 0;
}

int json_unpack_fields(json_t *obj, const struct json_field *fields, size_t n, const char *what,
		       struct err *e)
{
	if (!json_is_object(obj))
		return err_set(e, ERR_INVALID, "%s: expected a JSON object", what);
	const char *key;
	json_t *val;
	json_object_foreach(obj, key, val)
	{
		size_t i;
		for (i = 0; i < n; i++)
			if (strcmp(fields[i].name, key) == 0)
				break;
		if (i == n)
			return err_set(e, ERR_INVALID, "%s: unknown key '%.64s'", what, key);
	}
	for (size_t i = 0; i < n; i++) {
		const struct json_field *f = &fields[i];
		json_t *v = json_object_get(obj, f->name);
		if (!v || json_is_null(v)) {
			if (f->required)
				return err_set(e, ERR_INVALID, "%s: missing key '%s'", what,
					       f->name);
			continue;
		}
		if (!json_type_ok(v, f->type))
			return err_set(e, ERR_INVALID, "%s: '%s' must be %s", what, f->name,
				       json_type_names[f->type]);
		switch (f->type) {
		case JF_STRING: *(const char **)f->out = json_string_value(v); break;
		case JF_INT: *(json_int_t *)f->out = json_integer_value(v); break;
		case JF_BOOL: *(int *)f->out = json_is_true(v); break;
		default: *(json_t **)f->out = v; break;
		}
	}
	return 0;
}

char *json_dump_compact(const json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (!s)
		abort();
	return s;
}

void json_set_str(json_t *obj, const char *key, const char *s)
{
	json_object_set_new(obj, key, s ? json_string(s) : json_null());
}

void json_set_int(json_t *obj, const char *key, long long v)
{
	json_object_set_new(obj, key, json_integer(v));
}
