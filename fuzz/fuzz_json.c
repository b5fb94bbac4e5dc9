/*
 * fuzz_json: the strict JSON helpers of core/json.h, as every request body
 * and Hub answer meets them: json_parse_strict with the request body cap,
 * then json_unpack_fields against a table with one field of each type.
 *
 * Invariants: an accepted document nests at most CAP_JSON_DEPTH deep, holds
 * no string with a NUL, and its compact dump parses back to the same dump.
 * An unpack that succeeds saw only known keys, every required key and the
 * right types, and wrote exactly what the object holds.
 */
#include "fuzz.h"

#include "core/caps.h"
#include "core/err.h"
#include "core/json.h"

static int depth_of(json_t *v)
{
	int d = 0;
	const char *k;
	json_t *c;
	size_t i;
	if (json_is_object(v)) {
		json_object_foreach(v, k, c)
		{
			int cd = depth_of(c);
			d = cd > d ? cd : d;
		}
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, c)
		{
			int cd = depth_of(c);
			d = cd > d ? cd : d;
		}
	} else if (json_is_string(v)) {
		FUZZ_CHECK(strlen(json_string_value(v)) == json_string_length(v));
	}
	return d + 1;
}

static void check_unpack(json_t *v)
{
	const char *op = NULL;
	json_int_t n = -7;
	int flag = -7;
	json_t *obj = NULL, *arr = NULL, *any = NULL;
	const struct json_field fields[] = {
	    {"operation", JF_STRING, 1, &op}, {"n", JF_INT, 0, &n},
	    {"flag", JF_BOOL, 0, &flag},      {"obj", JF_OBJECT, 0, &obj},
	    {"arr", JF_ARRAY, 0, &arr},	      {"any", JF_ANY, 0, &any},
	};
	const size_t nf = sizeof(fields) / sizeof(fields[0]);
	struct err e = {0};
	int rc = json_unpack_fields(v, fields, nf, "request body", &e);
	if (rc != 0) {
		FUZZ_CHECK(rc == ERR_INVALID && e.code == ERR_INVALID && fuzz_err_ok(&e));
		return;
	}
	FUZZ_CHECK(json_is_object(v));
	const char *key;
	json_t *val;
	json_object_foreach(v, key, val)
	{
		size_t i = 0;
		while (i < nf && strcmp(fields[i].name, key) != 0)
			i++;
		FUZZ_CHECK(i < nf);
	}
	json_t *o = json_object_get(v, "operation");
	FUZZ_CHECK(json_is_string(o) && op == json_string_value(o));
	json_t *jn = json_object_get(v, "n");
	FUZZ_CHECK(json_is_null(jn) || jn == NULL ? n == -7 : n == json_integer_value(jn));
	json_t *jf = json_object_get(v, "flag");
	FUZZ_CHECK(json_is_null(jf) || jf == NULL ? flag == -7 : flag == json_is_true(jf));
	json_t *jo = json_object_get(v, "obj");
	FUZZ_CHECK(json_is_null(jo) || jo == NULL ? obj == NULL : obj == jo && json_is_object(jo));
	json_t *ja = json_object_get(v, "arr");
	FUZZ_CHECK(json_is_null(ja) || ja == NULL ? arr == NULL : arr == ja && json_is_array(ja));
	json_t *jy = json_object_get(v, "any");
	FUZZ_CHECK(json_is_null(jy) || jy == NULL ? any == NULL : any == jy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *v = NULL, *v2 = NULL;
	struct err e = {0};
	int rc = json_parse_strict((const char *)data, size, CAP_REQUEST_BODY, &v, &e);
	if (rc != 0) {
		FUZZ_CHECK(v == NULL);
		FUZZ_CHECK((rc == ERR_INVALID || rc == ERR_TOO_LARGE) && e.code == rc);
		FUZZ_CHECK(fuzz_err_ok(&e));
		return 0;
	}
	FUZZ_CHECK(v != NULL && size <= CAP_REQUEST_BODY);
	FUZZ_CHECK(depth_of(v) <= CAP_JSON_DEPTH);

	/* A dump may be longer than its input ("0.1" dumps as 0.10000000000000001). */
	char *dump = json_dump_compact(v);
	if (strlen(dump) <= CAP_REQUEST_BODY) {
		FUZZ_CHECK(json_parse_strict(dump, strlen(dump), CAP_REQUEST_BODY, &v2, NULL) == 0);
		char *dump2 = json_dump_compact(v2);
		FUZZ_CHECK(strcmp(dump, dump2) == 0);
		FUZZ_CHECK(json_equal(v, v2));
		free(dump2);
		json_decref(v2);
	}
	free(dump);

	check_unpack(v);
	json_decref(v);
	return 0;
}
