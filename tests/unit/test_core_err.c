/* Unit tests of core/err: the code table and the message helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/err.h"

static void test_table_complete(void **state)
{
	(void)state;
	/* Every code has a distinct name, a text and a real HTTP status. */
	for (int c = 0; c > -ERR__COUNT; c--) {
		const char *name = err_name(c);
		const char *text = err_text(c);
		int status = err_http_status(c);
		if (!name || !name[0] || !text || !text[0])
			fail_msg("code %d has no name or text", c);
		if (status < 200 || status > 599)
			fail_msg("code %d has status %d", c, status);
		if (c != ERR_INTERNAL && strcmp(name, "internal") == 0)
			fail_msg("code %d falls back to 'internal'", c);
		for (int d = 0; d > c; d--)
			if (strcmp(err_name(d), name) == 0)
				fail_msg("codes %d and %d share the name '%s'", d, c, name);
		for (const char *p = name; *p; p++)
			assert_true((*p >= 'a' && *p <= 'z') || *p == '_');
	}
	assert_string_equal(err_name(ERR_OK), "ok");
	assert_int_equal(err_http_status(ERR_OK), 200);
}

static void test_table_values(void **state)
{
	(void)state;
	static const struct {
		int code;
		const char *name;
		int status;
	} want[] = {
	    {ERR_INVALID, "bad_request", 400},
	    {ERR_NOT_FOUND, "not_found", 404},
	    {ERR_CONFLICT, "conflict", 409},
	    {ERR_TOO_LARGE, "too_large", 413},
	    {ERR_MEDIA, "unsupported_media_type", 415},
	    {ERR_UNPROCESSABLE, "unprocessable", 422},
	    {ERR_SHUTDOWN, "shutting_down", 503},
	    {ERR_UNAUTHORIZED, "unauthorized", 401},
	    {ERR_NOSPACE, "no_space", 507},
	    {ERR_DIGEST, "digest_mismatch", 502},
	    {ERR_CANCELLED, "cancelled", 409},
	    {ERR_TIMEOUT, "timeout", 504},
	    {ERR_GATED, "gated", 403},
	    {ERR_INTERNAL, "internal", 500},
	    {ERR_UNSUPPORTED, "not_implemented", 501},
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_string_equal(err_name(want[i].code), want[i].name);
		assert_int_equal(err_http_status(want[i].code), want[i].status);
	}
	/* Unknown codes read as internal errors. */
	assert_string_equal(err_name(1), "internal");
	assert_string_equal(err_name(-ERR__COUNT), "internal");
	assert_string_equal(err_name(-1000), "internal");
	assert_int_equal(err_http_status(42), 500);
}

static void test_set_prefix(void **state)
{
	(void)state;
	struct err e;
	err_clear(&e);
	assert_int_equal(e.code, 0);
	assert_string_equal(e.msg, "");
	assert_string_equal(err_msg(&e), "ok");

	assert_int_equal(err_set(&e, ERR_NOT_FOUND, "model '%s' is not here", "a/b"),
			 ERR_NOT_FOUND);
	assert_int_equal(e.code, ERR_NOT_FOUND);
	assert_string_equal(err_msg(&e), "model 'a/b' is not here");

	assert_int_equal(err_prefix(&e, "pull %d", 3), ERR_NOT_FOUND);
	assert_string_equal(e.msg, "pull 3: model 'a/b' is not here");

	/* A prefix on an empty message uses the code's default text. */
	err_clear(&e);
	e.code = ERR_TIMEOUT;
	err_prefix(&e, "resolve");
	assert_string_equal(e.msg, "resolve: timed out");

	/* Long messages are truncated, never overflowed. */
	char big[600];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	err_set(&e, ERR_INVALID, "%s", big);
	assert_int_equal(strlen(e.msg), ERR_MSG_MAX - 1);
	err_prefix(&e, "ctx");
	assert_int_equal(strlen(e.msg), ERR_MSG_MAX - 1);
	assert_true(strncmp(e.msg, "ctx: xxx", 8) == 0);

	/* NULL is allowed everywhere. */
	assert_int_equal(err_set(NULL, ERR_IO, "x"), ERR_IO);
	err_clear(NULL);
	assert_int_equal(err_prefix(NULL, "x"), ERR_INTERNAL);
	assert_string_equal(err_msg(NULL), "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table_complete),
	    cmocka_unit_test(test_table_values),
	    cmocka_unit_test(test_set_prefix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
