/* How sizes, rates, times left, ages and bar lines are shown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cli/fmt.h"
#include "core/util.h"

static void test_sizes(void **state)
{
	(void)state;
	static const struct {
		uint64_t n;
		const char *want;
	} cases[] = {
	    {0, "0 B"},
	    {999, "999 B"},
	    {1000, "1.00 kB"},
	    {1234, "1.23 kB"},
	    {12345678, "12.3 MB"},
	    {123456789, "123 MB"},
	    {999499999, "999 MB"},
	    {999500000, "1.00 GB"},
	    {4368439584ULL, "4.37 GB"},
	    {UINT64_MAX, "18.4 EB"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[CLI_FMT_SHORT];
		fmt_size(buf, sizeof(buf), cases[i].n);
		assert_string_equal(buf, cases[i].want);
	}
}

static void test_rates(void **state)
{
	(void)state;
	char buf[CLI_FMT_SHORT];
	cli_fmt_rate(buf, sizeof(buf), 38500000.0);
	assert_string_equal(buf, "38.5 MB/s");
	cli_fmt_rate(buf, sizeof(buf), 0);
	assert_string_equal(buf, "0 B/s");
	cli_fmt_rate(buf, sizeof(buf), -1);
	assert_string_equal(buf, "-");
}

static void test_eta(void **state)
{
	(void)state;
	static const struct {
		long long s;
		const char *want;
	} cases[] = {
	    {-1, "--:--"},   {0, "0:00"},	{42, "0:42"},	   {61, "1:01"},
	    {3599, "59:59"}, {3600, "1:00:00"}, {3723, "1:02:03"}, {360000, ">99h"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[CLI_FMT_SHORT];
		cli_fmt_eta(buf, sizeof(buf), cases[i].s);
		assert_string_equal(buf, cases[i].want);
	}
}

static void test_age(void **state)
{
	(void)state;
	static const struct {
		long long s;
		const char *want;
	} cases[] = {
	    {-1, "-"},	     {2, "just now"},	       {42, "42s ago"},
	    {180, "3m ago"}, {5 * 3600 + 1, "5h ago"}, {2 * 86400 + 5, "2d ago"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[CLI_FMT_SHORT];
		cli_fmt_age(buf, sizeof(buf), cases[i].s);
		assert_string_equal(buf, cases[i].want);
	}
}

static void test_cols(void **state)
{
	(void)state;
	assert_int_equal(cli_fmt_cols("abc"), 3);
	assert_int_equal(cli_fmt_cols("\xc3\xa9t\xc3\xa9"), 3);
	assert_int_equal(cli_fmt_cols(""), 0);
}

static void test_bar_ascii(void **state)
{
	(void)state;
	char buf[512];
	struct cli_bar b = {
	    .name = "model.Q4_K_M.gguf",
	    .phase = "downloading",
	    .done = 500000000,
	    .total = 1000000000,
	    .rate_bps = 25000000,
	    .eta_s = 20,
	    .index = 1,
	    .count = 2,
	};
	size_t n = cli_bar_render(buf, sizeof(buf), &b, 100, 0);
	assert_int_equal(n, strlen(buf));
	assert_true(cli_fmt_cols(buf) <= 99);
	assert_non_null(strstr(buf, "model.Q4_K_M.gguf"));
	assert_non_null(strstr(buf, "1/2"));
	assert_non_null(strstr(buf, " 50%"));
	assert_non_null(strstr(buf, "500 MB/1.00 GB"));
	assert_non_null(strstr(buf, "25.0 MB/s"));
	assert_non_null(strstr(buf, "0:20"));
	/* Half of the bar is filled. */
	const char *open = strchr(buf, '['), *close = strchr(buf, ']');
	assert_non_null(open);
	assert_non_null(close);
	int hashes = 0, dashes = 0;
	for (const char *p = open + 1; p < close; p++) {
		hashes += *p == '#';
		dashes += *p == '-';
	}
	assert_true(hashes > 0);
	assert_true(hashes == dashes || hashes == dashes - 1);
}

static void test_bar_widths(void **state)
{
	(void)state;
	char buf[512];
	struct cli_bar b = {
	    .name = "a-very-long-directory-name/and-a-much-longer-file-name-00001-of-00003.gguf",
	    .done = 1,
	    .total = 3,
	    .rate_bps = -1,
	    .eta_s = -1,
	};
	for (int w = 1; w <= 200; w++) {
		cli_bar_render(buf, sizeof(buf), &b, w, 1);
		/* Never wider than the terminal minus its last column (wide enough for the
		 * numbers). */
		if (w >= 60)
			assert_true(cli_fmt_cols(buf) <= (size_t)w - 1);
	}
	cli_bar_render(buf, sizeof(buf), &b, 80, 1);
	/* A name cut at the head keeps its tail: the shard number matters. */
	assert_non_null(strstr(buf, "00003.gguf"));
	assert_non_null(strstr(buf, "\xe2\x80\xa6"));
	assert_non_null(strstr(buf, "--:--"));
	assert_non_null(strstr(buf, " 33%"));
}

static void test_bar_small_buffer(void **state)
{
	(void)state;
	char buf[16];
	struct cli_bar b = {.name = "x.gguf", .done = 5, .total = 10, .rate_bps = 1, .eta_s = 5};
	size_t n = cli_bar_render(buf, sizeof(buf), &b, 120, 1);
	assert_int_equal(n, strlen(buf));
	assert_true(n < sizeof(buf));
}

static void test_bar_finished_and_phase(void **state)
{
	(void)state;
	char buf[512];
	struct cli_bar b = {.name = "x.gguf",
			    .phase = "verifying",
			    .done = 10,
			    .total = 10,
			    .rate_bps = 5,
			    .eta_s = 0};
	cli_bar_render(buf, sizeof(buf), &b, 100, 0);
	assert_non_null(strstr(buf, "verifying"));
	assert_null(strstr(buf, "B/s"));
	b.finished = 1;
	b.done = 3;
	cli_bar_render(buf, sizeof(buf), &b, 100, 0);
	assert_non_null(strstr(buf, "100%"));
	assert_non_null(strstr(buf, "done"));
	assert_non_null(strstr(buf, "10 B/10 B"));
	assert_null(strchr(buf, '-'));
}

static void test_bar_unknown_total(void **state)
{
	(void)state;
	char buf[512];
	struct cli_bar b = {.name = "x", .done = 1234, .rate_bps = -1, .eta_s = -1};
	cli_bar_render(buf, sizeof(buf), &b, 100, 0);
	assert_non_null(strstr(buf, "  0%"));
	assert_non_null(strstr(buf, "1.23 kB/?"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sizes),
	    cmocka_unit_test(test_rates),
	    cmocka_unit_test(test_eta),
	    cmocka_unit_test(test_age),
	    cmocka_unit_test(test_cols),
	    cmocka_unit_test(test_bar_ascii),
	    cmocka_unit_test(test_bar_widths),
	    cmocka_unit_test(test_bar_small_buffer),
	    cmocka_unit_test(test_bar_finished_and_phase),
	    cmocka_unit_test(test_bar_unknown_total),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
