/*
 * fuzz_parse: the checked parsers of core/parse.h, the repo-path checker
 * first. The whole input (embedded NULs included, since the checkers take a
 * length) goes to path_check_repo, name_check_hub and revision_check; the
 * input as a C string to parse_u64 and parse_size.
 *
 * Each acceptance is checked against the rule the header documents, written
 * here a second way; each refusal must carry a clean message.
 */
#include <ctype.h>
#include <inttypes.h>

#include "fuzz.h"

#include "core/caps.h"
#include "core/err.h"
#include "core/parse.h"

static void check_repo_path(const char *p, size_t n)
{
	struct err e = {0};
	if (path_check_repo(p, n, &e) != 0) {
		FUZZ_CHECK(e.code == ERR_INVALID && fuzz_err_ok(&e));
		return;
	}
	FUZZ_CHECK(n >= 1 && n <= CAP_REPO_PATH_LEN);
	FUZZ_CHECK(p[0] != '/');
	size_t depth = 0, start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n) {
			unsigned char c = (unsigned char)p[i];
			FUZZ_CHECK(c >= 0x20 && c != 0x7f && c != '\\');
			if (c != '/')
				continue;
		}
		size_t len = i - start;
		FUZZ_CHECK(len > 0);
		FUZZ_CHECK(!(len == 1 && p[start] == '.'));
		FUZZ_CHECK(!(len == 2 && p[start] == '.' && p[start + 1] == '.'));
		depth++;
		start = i + 1;
	}
	FUZZ_CHECK(depth <= CAP_REPO_PATH_DEPTH);
}

static void check_hub_name(const char *s, size_t n)
{
	struct err e = {0};
	if (name_check_hub(s, n, &e) != 0) {
		FUZZ_CHECK(e.code == ERR_INVALID && fuzz_err_ok(&e));
		return;
	}
	FUZZ_CHECK(n >= 1 && n <= CAP_REPO_ID_LEN);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(isalnum((unsigned char)s[i]) || strchr("._-", s[i]) != NULL);
	FUZZ_CHECK(memchr(s, '\0', n) == NULL);
	FUZZ_CHECK(!strchr(".-", s[0]) && !strchr(".-", s[n - 1]));
	for (size_t i = 0; i + 1 < n; i++)
		FUZZ_CHECK(!(s[i] == '.' && s[i + 1] == '.'));
}

static void check_revision(const char *s, size_t n)
{
	struct err e = {0};
	if (revision_check(s, n, &e) != 0) {
		FUZZ_CHECK(e.code == ERR_INVALID && fuzz_err_ok(&e));
		return;
	}
	FUZZ_CHECK(n >= 1 && n <= CAP_REVISION_LEN && s[0] != '/');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		FUZZ_CHECK(c > 0x20 && c < 0x7f && c != '\\');
		FUZZ_CHECK(!(i + 1 < n && c == '.' && s[i + 1] == '.'));
	}
}

/* The value of n decimal digits, or 0 with *over set when it passes UINT64_MAX. */
static uint64_t digits_value(const char *s, size_t n, int *over)
{
	uint64_t v = 0;
	*over = 0;
	for (size_t i = 0; i < n; i++) {
		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(s[i] - '0'), &v))
			*over = 1;
	}
	return *over ? 0 : v;
}

static void check_numbers(const char *s, size_t n)
{
	struct err e = {0};
	uint64_t v = 0;
	int digits = n > 0;
	for (size_t i = 0; i < n; i++)
		digits = digits && isdigit((unsigned char)s[i]);
	int over = 0;
	uint64_t want = digits ? digits_value(s, n, &over) : 0;
	int rc = parse_u64(s, n, 0, UINT64_MAX, &v, "n", &e);
	if (rc == 0) {
		FUZZ_CHECK(digits && n <= 20 && !over && v == want);
		/* The bounds are inclusive on both ends. */
		FUZZ_CHECK(parse_u64(s, n, v, v, &v, "n", NULL) == 0 && v == want);
		if (v > 0)
			FUZZ_CHECK(parse_u64(s, n, 0, v - 1, &v, "n", NULL) == ERR_INVALID);
		if (v < UINT64_MAX)
			FUZZ_CHECK(parse_u64(s, n, v + 1, UINT64_MAX, &v, "n", NULL) ==
				   ERR_INVALID);
	} else {
		FUZZ_CHECK(rc == ERR_INVALID && fuzz_err_ok(&e));
		FUZZ_CHECK(!digits || n > 20 || over);
	}

	/* parse_size: digits with an optional K/M/G/T suffix (either case). */
	memset(&e, 0, sizeof(e));
	rc = parse_size(s, UINT64_MAX, &v, "size", &e);
	if (rc != 0) {
		FUZZ_CHECK(rc == ERR_INVALID && fuzz_err_ok(&e));
		return;
	}
	size_t m = strlen(s);
	unsigned shift = 0;
	const char *suf = m > 1 ? strchr("KkMmGgTt", s[m - 1]) : NULL;
	if (suf && s[m - 1]) {
		shift = 10 * (unsigned)(1 + (suf - "KkMmGgTt") / 2);
		m--;
	}
	FUZZ_CHECK(m >= 1 && m <= 20);
	for (size_t i = 0; i < m; i++)
		FUZZ_CHECK(isdigit((unsigned char)s[i]));
	uint64_t base = digits_value(s, m, &over);
	FUZZ_CHECK(!over && base <= (UINT64_MAX >> shift) && v == base << shift);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	check_repo_path(p, size);
	check_hub_name(p, size);
	check_revision(p, size);
	char *s = fuzz_cstr(data, size);
	check_numbers(s, strlen(s));
	free(s);
	return 0;
}
