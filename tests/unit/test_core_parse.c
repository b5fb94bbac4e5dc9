/* Unit tests of core/parse: bounded integers, sizes, repo paths, Hub names, revisions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/parse.h"

static void assert_msg_has(const struct err *e, const char *want)
{
	if (!strstr(e->msg, want))
		fail_msg("message '%s' lacks '%s'", e->msg, want);
}

static void test_u64(void **state)
{
	(void)state;
	uint64_t v = 7;
	struct err e = {0};
	assert_int_equal(parse_u64_str("0", 0, 10, &v, "n", &e), 0);
	assert_int_equal(v, 0);
	assert_int_equal(parse_u64_str("18446744073709551615", 0, UINT64_MAX, &v, "n", &e), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(parse_u64_str("00000000000000000042", 0, 100, &v, "n", &e), 0);
	assert_int_equal(v, 42);
	/* Exactly len bytes: the rest of the string is not looked at. */
	assert_int_equal(parse_u64("1234xyz", 4, 0, 10000, &v, "n", &e), 0);
	assert_int_equal(v, 1234);

	v = 7;
	assert_int_equal(parse_u64_str("18446744073709551616", 0, UINT64_MAX, &v, "n", &e),
			 ERR_INVALID);
	assert_msg_has(&e, "out of range");
	assert_int_equal(parse_u64_str("99999999999999999999", 0, UINT64_MAX, &v, "n", &e),
			 ERR_INVALID);
	assert_int_equal(parse_u64_str("000000000000000000001", 0, UINT64_MAX, &v, "n", &e),
			 ERR_INVALID);
	assert_msg_has(&e, "too long");
	assert_int_equal(parse_u64_str("", 0, 10, &v, "port", &e), ERR_INVALID);
	assert_string_equal(e.msg, "port: empty number");
	assert_int_equal(parse_u64_str(NULL, 0, 10, &v, "port", &e), ERR_INVALID);
	assert_int_equal(parse_u64_str("-1", 0, 10, &v, "port", &e), ERR_INVALID);
	assert_msg_has(&e, "not a decimal number");
	assert_int_equal(parse_u64_str("+1", 0, 10, &v, "n", &e), ERR_INVALID);
	assert_int_equal(parse_u64_str(" 1", 0, 10, &v, "n", &e), ERR_INVALID);
	assert_int_equal(parse_u64_str("1 ", 0, 10, &v, "n", &e), ERR_INVALID);
	assert_int_equal(parse_u64_str("0x10", 0, 100, &v, "n", &e), ERR_INVALID);
	assert_int_equal(parse_u64("1\0002", 3, 0, 1000, &v, "n", &e), ERR_INVALID);
	assert_int_equal(parse_u64_str("11", 0, 10, &v, "port", &e), ERR_INVALID);
	assert_string_equal(e.msg, "port: 11 is out of range [0, 10]");
	assert_int_equal(parse_u64_str("4", 5, 10, &v, "n", &e), ERR_INVALID);
	assert_int_equal(parse_u64_str("5", 5, 10, &v, "n", &e), 0);
	assert_int_equal(parse_u64_str("10", 5, 10, &v, "n", &e), 0);
	/* A failed parse leaves the output alone. */
	v = 7;
	assert_int_equal(parse_u64_str("x", 0, 10, &v, "n", NULL), ERR_INVALID);
	assert_int_equal(v, 7);
}

static void test_mode(void **state)
{
	(void)state;
	unsigned v = 1;
	struct err e = {0};
	assert_int_equal(parse_mode("644", &v, "mode", &e), 0);
	assert_int_equal(v, 0644);
	assert_int_equal(parse_mode("0600", &v, "mode", &e), 0);
	assert_int_equal(v, 0600);
	assert_int_equal(parse_mode("000", &v, "mode", &e), 0);
	assert_int_equal(v, 0);
	static const char *const bad[] = {"",	 "64",	"0o644", "6440",  "4755",
					  "abc", "648", " 644",	 "07777", NULL};
	for (size_t i = 0; bad[i]; i++)
		assert_int_equal(parse_mode(bad[i], &v, "mode", &e), ERR_INVALID);
	assert_int_equal(parse_mode(NULL, &v, "mode", &e), ERR_INVALID);
}

static void test_size(void **state)
{
	(void)state;
	uint64_t v;
	struct err e = {0};
	static const struct {
		const char *s;
		uint64_t want;
	} ok[] = {
	    {"0", 0},
	    {"1048576", 1048576},
	    {"512K", 512 * 1024},
	    {"512k", 512 * 1024},
	    {"40M", 40ULL << 20},
	    {"2G", 2ULL << 30},
	    {"3t", 3ULL << 40},
	    {"16777215T", 16777215ULL << 40},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(parse_size(ok[i].s, UINT64_MAX, &v, "size", &e), 0);
		assert_true(v == ok[i].want);
	}
	assert_int_equal(parse_size("16777216T", UINT64_MAX, &v, "size", &e), ERR_INVALID);
	assert_int_equal(parse_size("K", UINT64_MAX, &v, "size", &e), ERR_INVALID);
	assert_int_equal(parse_size("", UINT64_MAX, &v, "size", &e), ERR_INVALID);
	assert_int_equal(parse_size(NULL, UINT64_MAX, &v, "size", &e), ERR_INVALID);
	assert_int_equal(parse_size("1.5G", UINT64_MAX, &v, "size", &e), ERR_INVALID);
	assert_int_equal(parse_size("1KB", UINT64_MAX, &v, "size", &e), ERR_INVALID);
	assert_int_equal(parse_size("1X", UINT64_MAX, &v, "size", &e), ERR_INVALID);
	assert_int_equal(parse_size("-1M", UINT64_MAX, &v, "size", &e), ERR_INVALID);
	assert_int_equal(parse_size("2M", 1 << 20, &v, "limit", &e), ERR_INVALID);
	assert_msg_has(&e, "limit: 2M is over the maximum of 1048576");
	assert_int_equal(parse_size("1M", 1 << 20, &v, "limit", &e), 0);
}

static void path_ok(const char *p)
{
	struct err e = {0};
	if (path_check_repo(p, strlen(p), &e) != 0)
		fail_msg("path '%s' refused: %s", p, e.msg);
}

static void path_bad(const char *p, size_t len, const char *want)
{
	struct err e = {0};
	assert_int_equal(path_check_repo(p, len, &e), ERR_INVALID);
	assert_int_equal(e.code, ERR_INVALID);
	assert_msg_has(&e, want);
}

static void test_path(void **state)
{
	(void)state;
	path_ok("x.gguf");
	path_ok("sub/dir/x.Q4_K_M.gguf");
	path_ok("a b/c d.gguf");
	path_ok("..x/x..");
	path_ok(".hidden/.x");
	path_ok("caf\xc3\xa9.gguf");

	path_bad("", 0, "empty");
	path_bad(NULL, 0, "empty");
	path_bad("../x", 4, "'.' and '..'");
	path_bad("a/../x", 6, "'.' and '..'");
	path_bad("a/..", 4, "'.' and '..'");
	path_bad("a/./x", 5, "'.' and '..'");
	path_bad(".", 1, "'.' and '..'");
	path_bad("/etc/passwd", 11, "absolute");
	path_bad("a//b", 4, "empty component");
	path_bad("a/", 2, "empty component");
	path_bad("a\\b", 3, "backslash");
	path_bad("a\\..\\b", 6, "backslash");
	path_bad("a\x01"
		 "b",
		 3, "control character at byte 1");
	path_bad("a\x7f", 2, "control character at byte 1");
	path_bad("a\nb", 3, "control character");
	/* An embedded NUL is caught because the length is given. */
	path_bad("ab\0/../x", 8, "control character at byte 2");

	char longp[CAP_REPO_PATH_LEN + 2];
	memset(longp, 'a', sizeof(longp));
	assert_int_equal(path_check_repo(longp, CAP_REPO_PATH_LEN, NULL), 0);
	path_bad(longp, CAP_REPO_PATH_LEN + 1, "longer than");

	/* Depth: CAP_REPO_PATH_DEPTH components pass, one more fails. */
	char deep[CAP_REPO_PATH_DEPTH * 2 + 4];
	size_t n = 0;
	for (int i = 0; i < CAP_REPO_PATH_DEPTH; i++) {
		deep[n++] = 'd';
		deep[n++] = '/';
	}
	deep[n - 1] = '\0';
	path_ok(deep);
	deep[n - 1] = '/';
	deep[n++] = 'x';
	deep[n] = '\0';
	path_bad(deep, n, "deeper than");
}

static void test_hub_name(void **state)
{
	(void)state;
	struct err e = {0};
	static const char *const ok[] = {"TheBloke", "Llama-2-7B-GGUF", "a", "x_y.z", "1"};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		assert_int_equal(name_check_hub(ok[i], strlen(ok[i]), &e), 0);
	static const struct {
		const char *s;
		const char *want;
	} bad[] = {
	    {"", "empty"},
	    {"a b", "' ' is not allowed"},
	    {"a/b", "'/' is not allowed"},
	    {"a:b", "':' is not allowed"},
	    {"a..b", "'..'"},
	    {".a", "start or end"},
	    {"a.", "start or end"},
	    {"-a", "start or end"},
	    {"a-", "start or end"},
	    {"caf\xc3\xa9", "'?' is not allowed"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(name_check_hub(bad[i].s, strlen(bad[i].s), &e), ERR_INVALID);
		assert_msg_has(&e, bad[i].want);
	}
	assert_int_equal(name_check_hub("a\0b", 3, &e), ERR_INVALID);
	char longn[CAP_REPO_ID_LEN + 1];
	memset(longn, 'n', sizeof(longn));
	assert_int_equal(name_check_hub(longn, CAP_REPO_ID_LEN, &e), 0);
	assert_int_equal(name_check_hub(longn, CAP_REPO_ID_LEN + 1, &e), ERR_INVALID);
	assert_msg_has(&e, "longer than");
}

static void test_revision(void **state)
{
	(void)state;
	struct err e = {0};
	static const char *const ok[] = {"main", "v1.0", "refs/pr/1",
					 "0123456789abcdef0123456789abcdef01234567", "a.b"};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		assert_int_equal(revision_check(ok[i], strlen(ok[i]), &e), 0);
	static const struct {
		const char *s;
		const char *want;
	} bad[] = {
	    {"", "empty"},	{"/main", "must not start with '/'"},
	    {"a b", "byte 1"},	{"a\tb", "byte 1"},
	    {"a..b", "'..'"},	{"..", "'..'"},
	    {"a\\b", "byte 1"}, {"caf\xc3\xa9", "byte 3"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(revision_check(bad[i].s, strlen(bad[i].s), &e), ERR_INVALID);
		assert_msg_has(&e, bad[i].want);
	}
	assert_int_equal(revision_check("ma\0in", 5, &e), ERR_INVALID);
	char longr[CAP_REVISION_LEN + 1];
	memset(longr, 'r', sizeof(longr));
	assert_int_equal(revision_check(longr, CAP_REVISION_LEN, &e), 0);
	assert_int_equal(revision_check(longr, CAP_REVISION_LEN + 1, &e), ERR_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_u64),	     cmocka_unit_test(test_size),
	    cmocka_unit_test(test_mode),     cmocka_unit_test(test_path),
	    cmocka_unit_test(test_hub_name), cmocka_unit_test(test_revision),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
