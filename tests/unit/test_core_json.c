/* Unit tests of core/json: strict parsing and table-driven unpacking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/json.h"

static json_t *parse_ok(const char *s)
{
	json_t *v = NULL;
	struct err e = {0};
	if (json_parse_strict(s, strlen(s), CAP_REQUEST_BODY, &v, &e) != 0)
		fail_msg("'%s' refused: %s", s, e.msg);
	return v;
}

static void parse_bad(const char *s, size_t len, size_t max, int code, const char *want)
{
	json_t *v = (json_t *)1;
	struct err e = {0};
	assert_int_equal(json_parse_strict(s, len, max, &v, &e), code);
	assert_null(v);
	if (!strstr(e.msg, want))
		fail_msg("'%.40s': message '%s' lacks '%s'", s, e.msg, want);
}

static void test_parse(void **state)
{
	(void)state;
	json_t *v = parse_ok("{\"a\":1,\"b\":[true,null,\"x\"]}");
	assert_true(json_is_object(v));
	assert_int_equal(json_integer_value(json_object_get(v, "a")), 1);
	json_decref(v);
	v = parse_ok("\"just a string\"");
	assert_true(json_is_string(v));
	json_decref(v);
	v = parse_ok("42");
	assert_true(json_is_integer(v));
	json_decref(v);

	const char *dup = "{\"a\":1,\"a\":2}";
	parse_bad(dup, strlen(dup), 100, ERR_INVALID, "malformed JSON");
	const char *nested_dup = "{\"o\":{\"k\":1,\"k\":1}}";
	parse_bad(nested_dup, strlen(nested_dup), 100, ERR_INVALID, "malformed JSON");
	parse_bad("{\"a\":", 5, 100, ERR_INVALID, "malformed JSON at line 1");
	parse_bad("{} {}", 5, 100, ERR_INVALID, "malformed JSON");
	parse_bad("", 0, 100, ERR_INVALID, "malformed JSON");
	const char nul[] = "\"a\\u0000b\"";
	parse_bad(nul, strlen(nul), 100, ERR_INVALID, "malformed JSON");
	const char raw_nul[] = "{\"a\":\"x\0y\"}";
	parse_bad(raw_nul, sizeof(raw_nul) - 1, 100, ERR_INVALID, "malformed JSON");

	/* The byte cap: exactly max passes, one more is too large. */
	const char *doc = "[1,2,3]";
	v = NULL;
	assert_int_equal(json_parse_strict(doc, 7, 7, &v, NULL), 0);
	json_decref(v);
	parse_bad(doc, 7, 6, ERR_TOO_LARGE, "7 bytes is over the cap of 6");
}

static void test_depth(void **state)
{
	(void)state;
	/* CAP_JSON_DEPTH levels pass, one more fails. */
	char buf[4 * CAP_JSON_DEPTH + 8];
	for (int depth = CAP_JSON_DEPTH; depth <= CAP_JSON_DEPTH + 1; depth++) {
		size_t n = 0;
		for (int i = 0; i < depth; i++)
			buf[n++] = '[';
		for (int i = 0; i < depth; i++)
			buf[n++] = ']';
		json_t *v = NULL;
		struct err e = {0};
		int rc = json_parse_strict(buf, n, sizeof(buf), &v, &e);
		if (depth <= CAP_JSON_DEPTH) {
			assert_int_equal(rc, 0);
			json_decref(v);
		} else {
			assert_int_equal(rc, ERR_INVALID);
			assert_non_null(strstr(e.msg, "nested deeper than"));
			assert_null(v);
		}
	}
	/* Objects count as levels too. */
	char obj[16 * CAP_JSON_DEPTH];
	size_t n = 0;
	for (int i = 0; i <= CAP_JSON_DEPTH; i++)
		n += (size_t)sprintf(obj + n, "{\"k\":");
	n += (size_t)sprintf(obj + n, "1");
	for (int i = 0; i <= CAP_JSON_DEPTH; i++)
		obj[n++] = '}';
	parse_bad(obj, n, sizeof(obj), ERR_INVALID, "nested deeper than");
}

struct body {
	const char *operation;
	const char *model;
	json_int_t count;
	int flag;
	json_t *opts;
	json_t *list;
	json_t *any;
};

static int unpack(const char *text, struct body *b, struct err *e)
{
	const struct json_field fields[] = {
	    {"operation", JF_STRING, 1, &b->operation},
	    {"model", JF_STRING, 0, &b->model},
	    {"count", JF_INT, 0, &b->count},
	    {"flag", JF_BOOL, 0, &b->flag},
	    {"opts", JF_OBJECT, 0, &b->opts},
	    {"list", JF_ARRAY, 0, &b->list},
	    {"any", JF_ANY, 0, &b->any},
	};
	json_t *v = NULL;
	int rc = json_parse_strict(text, strlen(text), CAP_REQUEST_BODY, &v, e);
	if (rc)
		return rc;
	rc = json_unpack_fields(v, fields, sizeof(fields) / sizeof(fields[0]), "request body", e);
	/* The borrowed values die with the document; only the scalars are checked after. */
	json_decref(v);
	return rc;
}

static void test_unpack(void **state)
{
	(void)state;
	struct body b = {.count = -5, .flag = -1};
	struct err e = {0};
	assert_int_equal(unpack("{\"operation\":\"model_list\"}", &b, &e), 0);
	assert_null(b.model);
	assert_int_equal(b.count, -5); /* absent optional keys are left alone */
	assert_int_equal(b.flag, -1);

	b = (struct body){.count = -5};
	assert_int_equal(unpack("{\"operation\":\"x\",\"model\":null,\"count\":7,\"flag\":true,"
				"\"opts\":{},\"list\":[],\"any\":3.5}",
				&b, &e),
			 0);
	assert_null(b.model); /* null is absent */
	assert_int_equal(b.count, 7);
	assert_int_equal(b.flag, 1);
	assert_non_null(b.opts);
	assert_non_null(b.list);
	assert_non_null(b.any);

	static const struct {
		const char *text, *want;
	} bad[] = {
	    {"{\"operation\":\"x\",\"extra\":1}", "request body: unknown key 'extra'"},
	    {"{\"model\":\"a/b\"}", "request body: missing key 'operation'"},
	    {"{\"operation\":null}", "request body: missing key 'operation'"},
	    {"{\"operation\":5}", "request body: 'operation' must be a string"},
	    {"{\"operation\":\"x\",\"count\":\"7\"}", "'count' must be an integer"},
	    {"{\"operation\":\"x\",\"count\":7.0}", "'count' must be an integer"},
	    {"{\"operation\":\"x\",\"flag\":1}", "'flag' must be a boolean"},
	    {"{\"operation\":\"x\",\"opts\":[]}", "'opts' must be an object"},
	    {"{\"operation\":\"x\",\"list\":{}}", "'list' must be an array"},
	    {"[1]", "request body: expected a JSON object"},
	    {"\"x\"", "expected a JSON object"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(unpack(bad[i].text, &b, &e), ERR_INVALID);
		if (!strstr(e.msg, bad[i].want))
			fail_msg("%s: message '%s' lacks '%s'", bad[i].text, e.msg, bad[i].want);
	}
}

static void test_helpers(void **state)
{
	(void)state;
	json_t *o = json_object();
	json_set_str(o, "s", "v\"q");
	json_set_str(o, "n", NULL);
	json_set_int(o, "i", -3);
	char *s = json_dump_compact(o);
	assert_string_equal(s, "{\"s\":\"v\\\"q\",\"n\":null,\"i\":-3}");
	free(s);
	json_decref(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_depth),
	    cmocka_unit_test(test_unpack),
	    cmocka_unit_test(test_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
