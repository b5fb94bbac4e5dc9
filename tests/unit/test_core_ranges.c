/*
 * The one byte-range type and the done set: merge, cap, prefix, gaps, load
 * validation, and the sort-and-merge the catalog saves through.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/err.h"
#include "core/ranges.h"

static void assert_set(const struct rangeset *s, const uint64_t *pairs, size_t n)
{
	assert_int_equal(s->n, n);
	uint64_t bytes = 0;
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(s->r[i].start, pairs[2 * i]);
		assert_int_equal(s->r[i].end, pairs[2 * i + 1]);
		bytes += pairs[2 * i + 1] - pairs[2 * i];
	}
	assert_int_equal(s->bytes, bytes);
}

static void test_add_merges(void **state)
{
	(void)state;
	struct rangeset s;
	ranges_init(&s, 16);
	assert_int_equal(ranges_add(&s, 10, 20), 0);
	assert_int_equal(ranges_add(&s, 30, 40), 0);
	assert_int_equal(ranges_add(&s, 0, 5), 0);
	assert_set(&s, (uint64_t[]){0, 5, 10, 20, 30, 40}, 3);
	/* adjacent on both sides: bridges two ranges */
	assert_int_equal(ranges_add(&s, 20, 30), 0);
	assert_set(&s, (uint64_t[]){0, 5, 10, 40}, 2);
	/* overlapping, covering several */
	assert_int_equal(ranges_add(&s, 3, 50), 0);
	assert_set(&s, (uint64_t[]){0, 50}, 1);
	/* inside an existing range: no change */
	assert_int_equal(ranges_add(&s, 7, 9), 0);
	assert_set(&s, (uint64_t[]){0, 50}, 1);
	/* empty range: no-op */
	assert_int_equal(ranges_add(&s, 60, 60), 0);
	assert_set(&s, (uint64_t[]){0, 50}, 1);
	assert_int_equal(ranges_prefix(&s), 50);
	assert_true(ranges_complete(&s, 50));
	assert_false(ranges_complete(&s, 51));
	ranges_cleanup(&s);
}

static void test_add_cap(void **state)
{
	(void)state;
	struct rangeset s;
	ranges_init(&s, 2);
	assert_int_equal(ranges_add(&s, 0, 1), 0);
	assert_int_equal(ranges_add(&s, 4, 5), 0);
	assert_int_equal(ranges_add(&s, 8, 9), ERR_TOO_LARGE);
	assert_set(&s, (uint64_t[]){0, 1, 4, 5}, 2);
	/* a merge needs no new slot even at the cap */
	assert_int_equal(ranges_add(&s, 1, 4), 0);
	assert_set(&s, (uint64_t[]){0, 5}, 1);
	ranges_cleanup(&s);
}

static void test_prefix_and_gaps(void **state)
{
	(void)state;
	struct rangeset s;
	struct byte_range g[8];
	ranges_init(&s, 16);
	assert_int_equal(ranges_gaps(&s, 100, g, 8), 1);
	assert_int_equal(g[0].start, 0);
	assert_int_equal(g[0].end, 100);
	ranges_add(&s, 10, 20);
	ranges_add(&s, 50, 100);
	assert_int_equal(ranges_prefix(&s), 0);
	assert_int_equal(ranges_gaps(&s, 100, g, 8), 2);
	assert_int_equal(g[0].start, 0);
	assert_int_equal(g[0].end, 10);
	assert_int_equal(g[1].start, 20);
	assert_int_equal(g[1].end, 50);
	/* max smaller than the count: count still reported */
	assert_int_equal(ranges_gaps(&s, 100, g, 1), 2);
	ranges_add(&s, 0, 10);
	assert_int_equal(ranges_prefix(&s), 20);
	ranges_clear(&s);
	assert_int_equal(s.bytes, 0);
	assert_int_equal(ranges_prefix(&s), 0);
	ranges_cleanup(&s);
}

static void test_load_validates(void **state)
{
	(void)state;
	struct rangeset s;
	struct err e;
	ranges_init(&s, 4);
	const struct byte_range in[] = {{60, 80}, {0, 10}, {5, 20}, {80, 90}};
	assert_int_equal(ranges_load(&s, in, 4, 100, &e), 0);
	assert_set(&s, (uint64_t[]){0, 20, 60, 90}, 2);
	const struct byte_range past_end[] = {{0, 10}, {90, 101}};
	assert_int_equal(ranges_load(&s, past_end, 2, 100, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "does not fit"));
	assert_int_equal(s.n, 0);
	const struct byte_range empty[] = {{10, 10}};
	assert_int_equal(ranges_load(&s, empty, 1, 100, &e), ERR_INVALID);
	const struct byte_range many[] = {{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}};
	assert_int_equal(ranges_load(&s, many, 5, 100, &e), ERR_TOO_LARGE);
	assert_int_equal(s.n, 0);
	ranges_cleanup(&s);
}

static void test_merge_sorts_and_joins(void **state)
{
	(void)state;
	/* Unsorted, overlapping, adjacent (touching ends join) and contained. */
	struct byte_range r[] = {{70, 80}, {10, 20}, {15, 30}, {30, 40}, {72, 75}};
	assert_int_equal(ranges_merge(r, 5), 2);
	assert_true(r[0].start == 10 && r[0].end == 40);
	assert_true(r[1].start == 70 && r[1].end == 80);
	assert_int_equal(ranges_merge(r, 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_add_merges),
	    cmocka_unit_test(test_add_cap),
	    cmocka_unit_test(test_prefix_and_gaps),
	    cmocka_unit_test(test_load_validates),
	    cmocka_unit_test(test_merge_sorts_and_joins),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
