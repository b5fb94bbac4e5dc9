/* Range bookkeeping of the transfer engine: done sets, gaps, plans, stealing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/err.h"
#include "fetch/ranges.h"

#define MiB (1024ull * 1024ull)

static void assert_set(const struct xfer_rangeset *s, const uint64_t *pairs, size_t n)
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
	struct xfer_rangeset s;
	xfer_ranges_init(&s, 16);
	assert_int_equal(xfer_ranges_add(&s, 10, 20), 0);
	assert_int_equal(xfer_ranges_add(&s, 30, 40), 0);
	assert_int_equal(xfer_ranges_add(&s, 0, 5), 0);
	assert_set(&s, (uint64_t[]){0, 5, 10, 20, 30, 40}, 3);
	/* adjacent on both sides: bridges two ranges */
	assert_int_equal(xfer_ranges_add(&s, 20, 30), 0);
	assert_set(&s, (uint64_t[]){0, 5, 10, 40}, 2);
	/* overlapping, covering several */
	assert_int_equal(xfer_ranges_add(&s, 3, 50), 0);
	assert_set(&s, (uint64_t[]){0, 50}, 1);
	/* inside an existing range: no change */
	assert_int_equal(xfer_ranges_add(&s, 7, 9), 0);
	assert_set(&s, (uint64_t[]){0, 50}, 1);
	/* empty range: no-op */
	assert_int_equal(xfer_ranges_add(&s, 60, 60), 0);
	assert_set(&s, (uint64_t[]){0, 50}, 1);
	assert_int_equal(xfer_ranges_prefix(&s), 50);
	assert_true(xfer_ranges_complete(&s, 50));
	assert_false(xfer_ranges_complete(&s, 51));
	xfer_ranges_cleanup(&s);
}

static void test_add_cap(void **state)
{
	(void)state;
	struct xfer_rangeset s;
	xfer_ranges_init(&s, 2);
	assert_int_equal(xfer_ranges_add(&s, 0, 1), 0);
	assert_int_equal(xfer_ranges_add(&s, 4, 5), 0);
	assert_int_equal(xfer_ranges_add(&s, 8, 9), ERR_TOO_LARGE);
	assert_set(&s, (uint64_t[]){0, 1, 4, 5}, 2);
	/* a merge needs no new slot even at the cap */
	assert_int_equal(xfer_ranges_add(&s, 1, 4), 0);
	assert_set(&s, (uint64_t[]){0, 5}, 1);
	xfer_ranges_cleanup(&s);
}

static void test_prefix_and_gaps(void **state)
{
	(void)state;
	struct xfer_rangeset s;
	struct xfer_range g[8];
	xfer_ranges_init(&s, 16);
	assert_int_equal(xfer_ranges_gaps(&s, 100, g, 8), 1);
	assert_int_equal(g[0].start, 0);
	assert_int_equal(g[0].end, 100);
	xfer_ranges_add(&s, 10, 20);
	xfer_ranges_add(&s, 50, 100);
	assert_int_equal(xfer_ranges_prefix(&s), 0);
	assert_int_equal(xfer_ranges_gaps(&s, 100, g, 8), 2);
	assert_int_equal(g[0].start, 0);
	assert_int_equal(g[0].end, 10);
	assert_int_equal(g[1].start, 20);
	assert_int_equal(g[1].end, 50);
	/* max smaller than the count: count still reported */
	assert_int_equal(xfer_ranges_gaps(&s, 100, g, 1), 2);
	xfer_ranges_add(&s, 0, 10);
	assert_int_equal(xfer_ranges_prefix(&s), 20);
	xfer_ranges_clear(&s);
	assert_int_equal(s.bytes, 0);
	assert_int_equal(xfer_ranges_prefix(&s), 0);
	xfer_ranges_cleanup(&s);
}

static void test_load_validates(void **state)
{
	(void)state;
	struct xfer_rangeset s;
	struct err e;
	xfer_ranges_init(&s, 4);
	const struct xfer_range in[] = {{60, 80}, {0, 10}, {5, 20}, {80, 90}};
	assert_int_equal(xfer_ranges_load(&s, in, 4, 100, &e), 0);
	assert_set(&s, (uint64_t[]){0, 20, 60, 90}, 2);
	const struct xfer_range past_end[] = {{0, 10}, {90, 101}};
	assert_int_equal(xfer_ranges_load(&s, past_end, 2, 100, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "does not fit"));
	assert_int_equal(s.n, 0);
	const struct xfer_range empty[] = {{10, 10}};
	assert_int_equal(xfer_ranges_load(&s, empty, 1, 100, &e), ERR_INVALID);
	const struct xfer_range many[] = {{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}};
	assert_int_equal(xfer_ranges_load(&s, many, 5, 100, &e), ERR_TOO_LARGE);
	assert_int_equal(s.n, 0);
	xfer_ranges_cleanup(&s);
}

static void test_plan_split_and_steal(void **state)
{
	(void)state;
	struct xfer_rangeset done;
	struct xfer_plan p;
	int victim;
	xfer_ranges_init(&done, 16);
	xfer_plan_init(&p, 32, 1 * MiB);
	assert_int_equal(xfer_plan_reset(&p, &done, 64 * MiB), 0);
	assert_int_equal(xfer_plan_live(&p), 1);

	/* The first connection takes the whole unowned gap. */
	int a = xfer_plan_take(&p, 0, &victim);
	assert_true(a >= 0);
	assert_int_equal(victim, -1);
	assert_int_equal(p.s[a].pos, 0);
	assert_int_equal(p.s[a].end, 64 * MiB);

	/* The second steals the upper half; the first one's end shrinks. */
	int b = xfer_plan_take(&p, 1, &victim);
	assert_true(b >= 0 && b != a);
	assert_int_equal(victim, 0);
	assert_int_equal(p.s[a].end, 32 * MiB);
	assert_int_equal(p.s[b].pos, 32 * MiB);
	assert_int_equal(p.s[b].end, 64 * MiB);

	/* Progress on a: a third connection takes half of the largest remainder (b). */
	p.s[a].pos = 16 * MiB;
	int c = xfer_plan_take(&p, 2, &victim);
	assert_int_equal(victim, 1);
	assert_int_equal(p.s[c].pos, 48 * MiB);
	assert_int_equal(p.s[b].end, 48 * MiB);
	assert_int_equal(xfer_plan_remaining(&p), 16 * MiB + 16 * MiB + 16 * MiB);

	/* Below two minimum splits, nothing is worth stealing. */
	p.s[a].pos = p.s[a].end - MiB;
	p.s[b].pos = p.s[b].end - MiB;
	p.s[c].pos = p.s[c].end - 2 * MiB + 1;
	assert_int_equal(xfer_plan_take(&p, 3, &victim), -1);
	assert_int_equal(victim, -1);

	/* Exactly two minimum splits: split at the aligned midpoint. */
	p.s[c].pos = p.s[c].end - 2 * MiB;
	int d = xfer_plan_take(&p, 3, NULL);
	assert_true(d >= 0);
	assert_int_equal(p.s[d].pos, 63 * MiB);
	assert_int_equal(p.s[c].end, 63 * MiB);

	xfer_plan_finish(&p, a);
	assert_int_equal(xfer_plan_live(&p), 3);
	xfer_plan_cleanup(&p);
	xfer_ranges_cleanup(&done);
}

static void test_plan_split_aligned(void **state)
{
	(void)state;
	struct xfer_rangeset done;
	struct xfer_plan p;
	xfer_ranges_init(&done, 4);
	xfer_plan_init(&p, 8, 4096);
	assert_int_equal(xfer_plan_reset(&p, &done, 1000001), 0);
	int a = xfer_plan_take(&p, 0, NULL);
	int b = xfer_plan_take(&p, 1, NULL);
	assert_int_equal(p.s[b].pos % 4096, 0);
	assert_int_equal(p.s[a].end, p.s[b].pos);
	assert_int_equal(p.s[b].end, 1000001);
	xfer_plan_cleanup(&p);
	xfer_ranges_cleanup(&done);
}

static void test_plan_resume_from_ranges(void **state)
{
	(void)state;
	struct xfer_rangeset done;
	struct xfer_plan p;
	struct err e;
	xfer_ranges_init(&done, 16);
	xfer_plan_init(&p, 16, 1024);
	const struct xfer_range saved[] = {{0, 4000}, {10000, 20000}, {30000, 40000}};
	assert_int_equal(xfer_ranges_load(&done, saved, 3, 50000, &e), 0);
	assert_int_equal(xfer_plan_reset(&p, &done, 50000), 0);
	assert_int_equal(xfer_plan_live(&p), 3);
	assert_int_equal(xfer_plan_remaining(&p), 6000 + 10000 + 10000);
	/* Unowned segments go first, largest first. */
	int a = xfer_plan_take(&p, 0, NULL);
	assert_int_equal(p.s[a].end - p.s[a].pos, 10000);
	int b = xfer_plan_take(&p, 1, NULL);
	assert_int_equal(p.s[b].end - p.s[b].pos, 10000);
	int c = xfer_plan_take(&p, 2, NULL);
	assert_int_equal(p.s[c].pos, 4000);
	assert_int_equal(p.s[c].end, 10000);
	/* A connection that gives up returns its segment to the pool. */
	xfer_plan_release(&p, c);
	assert_int_equal(p.s[c].owner, XFER_SEG_NONE);
	assert_int_equal(xfer_plan_take(&p, 3, NULL), c);
	/* Writing the missing bytes completes the file. */
	xfer_ranges_add(&done, 4000, 10000);
	xfer_ranges_add(&done, 20000, 30000);
	assert_false(xfer_ranges_complete(&done, 50000));
	xfer_ranges_add(&done, 40000, 50000);
	assert_true(xfer_ranges_complete(&done, 50000));
	xfer_plan_cleanup(&p);
	xfer_ranges_cleanup(&done);
}

/* Pieces in file order: the front of the first gap, growing through the ramp. */
static void test_plan_pieces_in_order(void **state)
{
	(void)state;
	struct xfer_rangeset done;
	struct xfer_plan p;
	struct err e;
	xfer_ranges_init(&done, 16);
	xfer_plan_init(&p, 32, 1 * MiB);
	p.piece = 8 * MiB;
	p.ramp = 4;
	const struct xfer_range saved[] = {{0, 4 * MiB}};
	assert_int_equal(xfer_ranges_load(&done, saved, 1, 64 * MiB, &e), 0);
	assert_int_equal(xfer_plan_reset(&p, &done, 64 * MiB), 0);
	/* Ramp: 2, 4, 6, 8 MiB, back to back from the first missing byte. */
	uint64_t at = 4 * MiB;
	for (int k = 0; k < 4; k++) {
		int i = xfer_plan_take(&p, k, NULL);
		assert_true(i >= 0);
		assert_int_equal(p.s[i].pos, at);
		assert_int_equal(p.s[i].end - p.s[i].pos, (uint64_t)(k + 1) * 2 * MiB);
		at = p.s[i].end;
	}
	/* Then whole pieces; the last one takes a remainder under half a piece. */
	int i = xfer_plan_take(&p, 4, NULL);
	assert_int_equal(p.s[i].pos, at);
	assert_int_equal(p.s[i].end - p.s[i].pos, 8 * MiB);
	xfer_plan_finish(&p, i);
	for (int k = 5; k < 9; k++) {
		int j = xfer_plan_take(&p, k, NULL);
		assert_true(j >= 0);
		at = p.s[j].end;
	}
	assert_int_equal(at, 64 * MiB);
	/* Nothing unowned is left: the next taker steals half of the largest. */
	int victim = -1;
	int j = xfer_plan_take(&p, 9, &victim);
	assert_true(j >= 0);
	assert_true(victim >= 0);
	assert_int_equal(xfer_plan_remaining(&p), 60 * MiB - 8 * MiB);
	xfer_plan_cleanup(&p);
	xfer_ranges_cleanup(&done);
}

static void test_plan_cap(void **state)
{
	(void)state;
	struct xfer_rangeset done;
	struct xfer_plan p;
	xfer_ranges_init(&done, 16);
	xfer_plan_init(&p, 2, 1);
	xfer_ranges_add(&done, 10, 20);
	xfer_ranges_add(&done, 30, 40);
	/* three gaps, two slots */
	assert_int_equal(xfer_plan_reset(&p, &done, 50), ERR_TOO_LARGE);
	xfer_plan_cleanup(&p);
	/* with every slot owned, stealing has no slot left */
	xfer_plan_init(&p, 1, 1);
	xfer_ranges_clear(&done);
	assert_int_equal(xfer_plan_reset(&p, &done, 1 << 20), 0);
	assert_true(xfer_plan_take(&p, 0, NULL) >= 0);
	assert_int_equal(xfer_plan_take(&p, 1, NULL), -1);
	xfer_plan_cleanup(&p);
	xfer_ranges_cleanup(&done);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_merges),
		cmocka_unit_test(test_add_cap),
		cmocka_unit_test(test_prefix_and_gaps),
		cmocka_unit_test(test_load_validates),
		cmocka_unit_test(test_plan_split_and_steal),
		cmocka_unit_test(test_plan_split_aligned),
		cmocka_unit_test(test_plan_resume_from_ranges),
		cmocka_unit_test(test_plan_pieces_in_order),
		cmocka_unit_test(test_plan_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
