#include "cli/answer.h"

#include <stdio.h>
#include <string.h>

json_t *cli_jget(const json_t *o, const char *key)
{
	const char *dot = strchr(key, '.');
	json_t *v;
	if (dot) {
		char head[64];
		snprintf(head, sizeof(head), "%.*s", (int)(dot - key), key);
		v = json_object_get(json_object_get(o, head), dot + 1);
	} else {
		v = json_object_get(o, key);
	}
	return v && !json_is_null(v) ? v : NULL;
}

const char *cli_jstr(const json_t *o, const char *key)
{
	return json_string_value(cli_jget(o, key));
}

int cli_juint(const json_t *o, const char *key, uint64_t *out)
{
	json_t *v = cli_jget(o, key);
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = (uint64_t)json_integer_value(v);
		return 0;
	}
	if (json_is_real(v) && json_real_value(v) >= 0) {
		*out = (uint64_t)json_real_value(v);
		return 0;
	}
	return -1;
}
