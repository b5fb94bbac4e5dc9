/* token_read_file and token_check of core/token.h: one reader for every token file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/token.h"

static char dir[512];

static int setup(void **state)
{
	(void)state;
	const char *base = getenv("RBEE_TEST_TMP");
	base = base && *base ? base : "/tmp";
	mkdir(base, 0755);
	snprintf(dir, sizeof(dir), "%s/token-XXXXXX", base);
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char path[600];
	snprintf(path, sizeof(path), "%s/t", dir);
	unlink(path);
	rmdir(dir);
	return 0;
}

/* Writes len bytes of body to DIR/t and reads it back through token_read_file. */
static int read_back(const char *body, size_t len, char **out, struct err *e)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/t", dir);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(body, 1, len, f), len);
	fclose(f);
	return token_read_file(path, 0, out, e);
}

static void test_trims_white_space(void **state)
{
	(void)state;
	static const char *const bodies[] = {"hf_abc", "hf_abc\n", "hf_abc\r\n", "  hf_abc \t\n\n",
					     "\nhf_abc"};
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		char *t = NULL;
		struct err e = {0};
		assert_int_equal(read_back(bodies[i], strlen(bodies[i]), &t, &e), 0);
		assert_string_equal(t, "hf_abc");
		free(t);
	}
}

static void test_refuses_bad_content(void **state)
{
	(void)state;
	static const struct {
		const char *body;
		size_t len;
		int code;
		const char *msg;
	} cases[] = {
	    {"", 0, ERR_INVALID, "the token is empty"},
	    {" \n\r\n", 4, ERR_INVALID, "the token is empty"},
	    {"two words\n", 10, ERR_INVALID, "space, control or non-ASCII"},
	    {"line1\nline2\n", 12, ERR_INVALID, "space, control or non-ASCII"},
	    {"caf\xc3\xa9", 5, ERR_INVALID, "space, control or non-ASCII"},
	    {"ab\0cd", 5, ERR_INVALID, "NUL byte"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *t = (char *)"unset";
		struct err e = {0};
		assert_int_equal(read_back(cases[i].body, cases[i].len, &t, &e), cases[i].code);
		assert_null(t);
		assert_non_null(strstr(e.msg, cases[i].msg));
		assert_non_null(strstr(e.msg, dir));
	}
}

static void test_caps(void **state)
{
	(void)state;
	char *big = malloc(CAP_TOKEN_FILE + 2);
	char *t = NULL;
	struct err e = {0};
	/* The longest token passes, with room for white space around it. */
	memset(big, 'a', CAP_TOKEN_LEN);
	big[CAP_TOKEN_LEN] = '\n';
	assert_int_equal(read_back(big, CAP_TOKEN_LEN + 1, &t, &e), 0);
	assert_int_equal(strlen(t), CAP_TOKEN_LEN);
	free(t);
	assert_int_equal(read_back(big, CAP_TOKEN_LEN + 1 - 1, &t, &e), 0);
	free(t);
	memset(big, 'a', CAP_TOKEN_LEN + 1);
	assert_int_equal(read_back(big, CAP_TOKEN_LEN + 1, &t, &e), ERR_TOO_LARGE);
	assert_null(t);
	assert_non_null(strstr(e.msg, "over 4096 bytes"));
	memset(big, ' ', CAP_TOKEN_FILE + 1);
	big[0] = 'a';
	assert_int_equal(read_back(big, CAP_TOKEN_FILE + 1, &t, &e), ERR_TOO_LARGE);
	assert_null(t);
	free(big);
}

static void test_missing_and_not_regular(void **state)
{
	(void)state;
	char path[600];
	char *t = NULL;
	struct err e = {0};
	snprintf(path, sizeof(path), "%s/absent", dir);
	assert_int_equal(token_read_file(path, 0, &t, &e), ERR_IO);
	assert_non_null(strstr(e.msg, "absent"));
	assert_null(t);
	/* Where a missing file means no token, it is not an error. */
	assert_int_equal(token_read_file(path, 1, &t, &e), 0);
	assert_null(t);
	assert_int_equal(token_read_file(dir, 1, &t, &e), ERR_IO);
	assert_non_null(strstr(e.msg, "not a regular file"));
	assert_null(t);
}

static void test_check(void **state)
{
	(void)state;
	struct err e = {0};
	assert_int_equal(token_check("tok", "RBEE_HIVE_TOKEN", &e), 0);
	assert_int_equal(token_check("", "RBEE_HIVE_TOKEN", &e), ERR_INVALID);
	assert_string_equal(e.msg, "RBEE_HIVE_TOKEN: the token is empty");
	assert_int_equal(token_check("a\rb", "X", &e), ERR_INVALID);
	assert_int_equal(token_check("a\x7f", "X", &e), ERR_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_trims_white_space),
	    cmocka_unit_test(test_refuses_bad_content),
	    cmocka_unit_test(test_caps),
	    cmocka_unit_test(test_missing_and_not_regular),
	    cmocka_unit_test(test_check),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
