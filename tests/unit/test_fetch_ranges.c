/*
 * The transfer engine's work plan over a done set: pieces, stealing;
 * the Content-Range parser.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/err.h"
#include "fetch/ranges.h"

#define MiB (1024ull * 1024ull)

static void test_plan_split_and_steal(void **state)
{
	(void)state;
	struct rangeset done;
	struct xfer_plan p;
	int victim;
	ranges_init(&done, 16);
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
	ranges_cleanup(&done);
}

static void test_plan_split_aligned(void **state)
{
	(void)state;
	struct rangeset done;
	struct xfer_plan p;
	ranges_init(&done, 4);
	xfer_plan_init(&p, 8, 4096);
	assert_int_equal(xfer_plan_reset(&p, &done, 1000001), 0);
	int a = xfer_plan_take(&p, 0, NULL);
	int b = xfer_plan_take(&p, 1, NULL);
	assert_int_equal(p.s[b].pos % 4096, 0);
	assert_int_equal(p.s[a].end, p.s[b].pos);
	assert_int_equal(p.s[b].end, 1000001);
	xfer_plan_cleanup(&p);
	ranges_cleanup(&done);
}

static void test_plan_resume_from_ranges(void **state)
{
	(void)state;
	struct rangeset done;
	struct xfer_plan p;
	struct err e;
	ranges_init(&done, 16);
	xfer_plan_init(&p, 16, 1024);
	const struct byte_range saved[] = {{0, 4000}, {10000, 20000}, {30000, 40000}};
	assert_int_equal(ranges_load(&done, saved, 3, 50000, &e), 0);
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
	/* Writing the missing bytes completes the file. */
	ranges_add(&done, 4000, 10000);
	ranges_add(&done, 20000, 30000);
	assert_false(ranges_complete(&done, 50000));
	ranges_add(&done, 40000, 50000);
	assert_true(ranges_complete(&done, 50000));
	xfer_plan_cleanup(&p);
	ranges_cleanup(&done);
}

/* Pieces in file order: the front of the first gap, growing through the ramp. */
static void test_plan_pieces_in_order(void **state)
{
	(void)state;
	struct rangeset done;
	struct xfer_plan p;
	struct err e;
	ranges_init(&done, 16);
	xfer_plan_init(&p, 32, 1 * MiB);
	p.piece = 8 * MiB;
	p.ramp = 4;
	const struct byte_range saved[] = {{0, 4 * MiB}};
	assert_int_equal(ranges_load(&done, saved, 1, 64 * MiB, &e), 0);
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
	ranges_cleanup(&done);
}

/* A piece carved out of the middle of a gap, given back, and the steal that spares some owners. */
static void test_plan_take_at_release_steal(void **state)
{
	(void)state;
	struct rangeset done;
	struct xfer_plan p;
	int victim;
	ranges_init(&done, 16);
	xfer_plan_init(&p, 8, 1 * MiB);
	assert_int_equal(xfer_plan_reset(&p, &done, 64 * MiB), 0);

	/* [16, 32) of [0, 64): before and after stay unowned in slots of their own. */
	int a = xfer_plan_take_at(&p, 0, 16 * MiB, 32 * MiB, 0);
	assert_int_equal(a, 0);
	assert_int_equal(p.s[a].pos, 16 * MiB);
	assert_int_equal(p.s[a].end, 32 * MiB);
	assert_int_equal(p.s[a].owner, 0);
	assert_int_equal(xfer_plan_live(&p), 3);
	assert_int_equal(xfer_plan_remaining(&p), 64 * MiB);

	/* A piece at the front of a gap needs one more slot only. */
	int front = -1;
	for (size_t i = 0; i < p.n; i++)
		if (p.s[i].owner == XFER_SEG_NONE && p.s[i].pos == 0)
			front = (int)i;
	assert_true(front >= 0);
	int b = xfer_plan_take_at(&p, front, 0, 8 * MiB, 1);
	assert_int_equal(b, front);
	assert_int_equal(xfer_plan_live(&p), 4);

	/* Given back half done: what is left is unowned again, for anyone. */
	p.s[a].pos = 24 * MiB;
	xfer_plan_release(&p, a);
	assert_int_equal(p.s[a].owner, XFER_SEG_NONE);
	assert_int_equal(xfer_plan_remaining(&p), 56 * MiB);

	/* The steal skips the spared owner 1 and finds none other. */
	assert_int_equal(xfer_plan_steal(&p, 2, 1u << 1, &victim), -1);
	assert_int_equal(victim, -1);
	int c = xfer_plan_steal(&p, 2, 0, &victim);
	assert_true(c >= 0);
	assert_int_equal(victim, 1);
	assert_int_equal(p.s[b].end, 4 * MiB);

	/* A table without room leaves the plan as it was. */
	struct xfer_plan q;
	xfer_plan_init(&q, 2, 1 * MiB);
	assert_int_equal(xfer_plan_reset(&q, &done, 64 * MiB), 0);
	assert_int_equal(xfer_plan_take_at(&q, 0, 16 * MiB, 32 * MiB, 0), -1);
	assert_int_equal(xfer_plan_live(&q), 1);
	assert_int_equal(q.s[0].owner, XFER_SEG_NONE);
	assert_int_equal(q.s[0].end, 64 * MiB);
	xfer_plan_cleanup(&q);
	xfer_plan_cleanup(&p);
	ranges_cleanup(&done);
}

static void test_plan_cap(void **state)
{
	(void)state;
	struct rangeset done;
	struct xfer_plan p;
	ranges_init(&done, 16);
	xfer_plan_init(&p, 2, 1);
	ranges_add(&done, 10, 20);
	ranges_add(&done, 30, 40);
	/* three gaps, two slots */
	assert_int_equal(xfer_plan_reset(&p, &done, 50), ERR_TOO_LARGE);
	xfer_plan_cleanup(&p);
	/* with every slot owned, stealing has no slot left */
	xfer_plan_init(&p, 1, 1);
	ranges_clear(&done);
	assert_int_equal(xfer_plan_reset(&p, &done, 1 << 20), 0);
	assert_true(xfer_plan_take(&p, 0, NULL) >= 0);
	assert_int_equal(xfer_plan_take(&p, 1, NULL), -1);
	xfer_plan_cleanup(&p);
	ranges_cleanup(&done);
}

/* Parses a NUL-terminated value; asserts acceptance and returns the result. */
static struct xfer_content_range cr_ok(const char *v)
{
	struct xfer_content_range r;
	struct err e;
	err_clear(&e);
	int rc = xfer_content_range_parse(v, strlen(v), &r, &e);
	if (rc != 0)
		fail_msg("'%s' refused: %s", v, e.msg);
	assert_int_equal(e.code, 0);
	return r;
}

/* Asserts that exactly len bytes of v are refused with a message, and out is zeroed. */
static void cr_bad_len(const char *v, size_t len)
{
	struct xfer_content_range r;
	memset(&r, 0xa5, sizeof(r));
	struct err e;
	err_clear(&e);
	if (xfer_content_range_parse(v, len, &r, &e) != ERR_INVALID)
		fail_msg("'%.*s' accepted", (int)len, v);
	assert_int_equal(e.code, ERR_INVALID);
	assert_true(strncmp(e.msg, "Content-Range: ", 15) == 0);
	struct xfer_content_range zero;
	memset(&zero, 0, sizeof(zero));
	assert_memory_equal(&r, &zero, sizeof(r));
	/* Without a struct err the verdict is the same. */
	assert_int_equal(xfer_content_range_parse(v, len, &r, NULL), ERR_INVALID);
}

static void cr_bad(const char *v)
{
	cr_bad_len(v, strlen(v));
}

#define CR_BAD_ALL(list)                                                                           \
	do {                                                                                       \
		for (size_t i_ = 0; i_ < sizeof(list) / sizeof((list)[0]); i_++)                   \
			cr_bad((list)[i_]);                                                        \
	} while (0)

static void test_content_range_valid(void **state)
{
	(void)state;
	static const struct {
		const char *v;
		struct xfer_content_range want;
	} ok[] = {
	    {"bytes 0-0/1", {1, 1, 0, 0, 1}},
	    {"bytes 100-199/1000", {1, 1, 100, 199, 1000}},
	    {"bytes 42-42/*", {1, 0, 42, 42, 0}},
	    /* the unsatisfied form of a 416, for an empty file too */
	    {"bytes */5000", {0, 1, 0, 0, 5000}},
	    {"bytes */0", {0, 1, 0, 0, 0}},
	    /* range units are case-insensitive; leading zeros are digits */
	    {"Bytes 007-010/0100", {1, 1, 7, 10, 100}},
	    {"BYTES 0-1/2", {1, 1, 0, 1, 2}},
	    /* the largest values: B = T - 1 = UINT64_MAX - 1, 20 digits each */
	    {"bytes 18446744073709551614-18446744073709551614/18446744073709551615",
	     {1, 1, UINT64_MAX - 1, UINT64_MAX - 1, UINT64_MAX}},
	    {"bytes 0-18446744073709551614/*", {1, 0, 0, UINT64_MAX - 1, 0}},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct xfer_content_range r = cr_ok(ok[i].v);
		if (memcmp(&r, &ok[i].want, sizeof(r)) != 0)
			fail_msg("'%s': got %d %d %llu-%llu/%llu", ok[i].v, r.satisfied,
				 r.total_known, (unsigned long long)r.first,
				 (unsigned long long)r.last, (unsigned long long)r.total);
	}

	/* only len bytes count: what follows is not read */
	struct xfer_content_range r2;
	assert_int_equal(xfer_content_range_parse("bytes 1-2/3 trailing", 11, &r2, NULL), 0);
	assert_int_equal(r2.last, 2);
	assert_int_equal(r2.total, 3);
}

static void test_content_range_overflow(void **state)
{
	(void)state;
	/* UINT64_MAX + 1 in each place */
	cr_bad("bytes 18446744073709551616-18446744073709551617/18446744073709551618");
	cr_bad("bytes 0-18446744073709551616/*");
	cr_bad("bytes 0-1/18446744073709551616");
	cr_bad("bytes */18446744073709551616");
	cr_bad("bytes 99999999999999999999-99999999999999999999/*");
	/* a last byte of UINT64_MAX leaves no length (B + 1 overflows) */
	cr_bad("bytes 0-18446744073709551615/*");
	/* 21 digits, even if leading zeros keep the value small */
	cr_bad("bytes 000000000000000000001-2/3");
	/* longer than any valid value */
	char longv[200];
	memset(longv, '0', sizeof(longv));
	memcpy(longv, "bytes 1-2/", 10);
	cr_bad_len(longv, sizeof(longv));
	cr_bad_len(longv, XFER_CONTENT_RANGE_MAX + 1);
}

static void test_content_range_junk(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "",
	    "bytes",
	    "bytes ",
	    "bytes=0-1/2",  /* the request's form */
	    "octets 0-1/2", /* another unit */
	    "bytesx0-1/2",
	    "bytes 0-1",    /* no total */
	    "bytes 0/2",    /* no '-' */
	    "bytes 0-1/",   /* empty total */
	    "bytes -1/2",   /* empty first */
	    "bytes 0-/2",   /* empty last */
	    "bytes 0-1/2x", /* junk after */
	    "bytes 0-1/2/3",
	    "bytes 0-1-2/3",
	    "bytes 0x10-0x20/0x30",
	    "bytes 1e3-2e3/3e3",
	    "bytes */*", /* neither range nor total */
	    "bytes *-1/2",
	    "bytes 0-*/2",
	    "bytes **/2",
	    "bytes */",
	    "bytes 0-1/**",
	    "bytes 0,1-2/3", /* multipart lists are not a header value */
	    "bytes\t0-1/2",
	};
	CR_BAD_ALL(bad);
	/* an embedded NUL inside len is junk, wherever it is */
	cr_bad_len("bytes 0-1/2\0", 12);
	cr_bad_len("bytes 0\0-1/2", 12);
	cr_bad_len("byt\0s 0-1/2", 11);
	/* a control byte is refused and not echoed into the message */
	struct err e;
	struct xfer_content_range r;
	err_clear(&e);
	assert_int_equal(xfer_content_range_parse("bytes 0-1/2\x1b[", 13, &r, &e), ERR_INVALID);
	assert_null(strchr(e.msg, '\x1b'));
	assert_int_equal(xfer_content_range_parse(NULL, 0, &r, &e), ERR_INVALID);
}

static void test_content_range_spaces_and_signs(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    " bytes 0-1/2", "bytes  0-1/2",  "bytes 0 -1/2",	"bytes 0- 1/2", "bytes 0-1 /2",
	    "bytes 0-1/ 2", "bytes 0-1/2 ",  "bytes 0-1/2\r\n", "bytes -0-1/2", "bytes 0--1/2",
	    "bytes 0-1/-2", "bytes +0-1/2",  "bytes 0-+1/2",	"bytes 0-1/+2", "bytes */-1",
	    "bytes * /2",   "bytes -5-3/10",
	};
	CR_BAD_ALL(bad);
}

static void test_content_range_order(void **state)
{
	(void)state;
	/* B < A */
	cr_bad("bytes 10-9/100");
	cr_bad("bytes 1-0/*");
	cr_bad("bytes 18446744073709551614-0/18446744073709551615");
	/* B >= T */
	cr_bad("bytes 0-100/100");
	cr_bad("bytes 0-101/100");
	cr_bad("bytes 0-0/0");
	cr_bad("bytes 5-10/3");
	/* just inside */
	cr_ok("bytes 99-99/100");
	cr_ok("bytes 10-10/*");
}

/*
 * A simulated server for the ramp, in steps of 10 ms: the connections the
 * ramp starts with move bytes at once, each one it asks for later starts
 * moving join_ms after (its handshake and request); rate_of(n) is the
 * bytes/s n moving connections get, and the transfer thread is busy
 * us_per_mib for each MiB moved (0: its busy time is not known). What the
 * ramp did is
 * in the result: the count it settled on, when it first asked for max, and
 * when it settled.
 */
struct ramp_sim {
	int n;		 /* connections at the end */
	int64_t max_at;	 /* first time it asked for max, or -1 */
	int64_t settled; /* time it settled, or -1 */
	int64_t over_ms; /* time spent asking for more than it settled on */
	int client_bound;
};

static struct ramp_sim ramp_sim_busy(int max, double (*rate_of)(int), int64_t join_ms,
				     int64_t until_ms, double us_per_mib)
{
	struct ramp_sim out = {0, -1, -1, 0, 0};
	struct xfer_ramp r;
	uint64_t written = 0;
	double busy_us = 0;
	int64_t asked[64];
	int want = 0;
	xfer_ramp_init(&r, max, 0, 0);
	want = r.want;
	for (int i = 0; i < want; i++)
		asked[i] = -join_ms;
	for (int64_t t = 0; t <= until_ms; t += 10) {
		int moving = 0;
		for (int i = 0; i < want; i++)
			moving += t - asked[i] >= join_ms;
		int n = xfer_ramp_step(&r, t, written, moving, (int64_t)busy_us, NULL);
		assert_true(n >= 1 && n <= max);
		for (int i = want; i < n; i++)
			asked[i] = t;
		want = n;
		if (n == max && out.max_at < 0)
			out.max_at = t;
		if (r.settled && out.settled < 0)
			out.settled = t;
		if (!r.settled && n > XFER_RAMP_START)
			out.over_ms += 10;
		moving = 0;
		for (int i = 0; i < want; i++)
			moving += t - asked[i] >= join_ms;
		written += (uint64_t)(rate_of(moving) / 100.0);
		busy_us += rate_of(moving) / 100.0 / (double)MiB * us_per_mib;
	}
	assert_true(r.settled);
	out.n = want;
	out.client_bound = r.client_bound;
	return out;
}

static struct ramp_sim ramp_sim(int max, double (*rate_of)(int), int64_t join_ms, int64_t until_ms)
{
	return ramp_sim_busy(max, rate_of, join_ms, until_ms, 0);
}

static int ramp_run(int max, double (*rate_of)(int))
{
	return ramp_sim(max, rate_of, 0, 5000).n;
}

static double rate_capped(int n)
{
	return 40.0 * (double)MiB * n; /* each connection capped at 40 MiB/s */
}

static double rate_full(int n)
{
	(void)n;
	return 600.0 * (double)MiB; /* the path is full with any number */
}

static double rate_full_noisy(int n)
{
	return (double)MiB * (n <= 2 ? 600.0 : 700.0); /* full, a sixth more by chance */
}

static double rate_sat3(int n)
{
	return 50.0 * (double)MiB * (n < 3 ? n : 3); /* the link is full with three */
}

static double rate_sat4(int n)
{
	return 50.0 * (double)MiB * (n < 4 ? n : 4);
}

static double rate_full_at_one(int n)
{
	return (double)MiB * (n == 1 ? 500.0 : 520.0);
}

static void test_ramp_decisions(void **state)
{
	(void)state;
	/* A per-connection cap: every configured connection. */
	assert_int_equal(ramp_run(8, rate_capped), 8);
	assert_int_equal(ramp_run(6, rate_capped), 6);
	assert_int_equal(ramp_run(3, rate_capped), 3);
	/* A full path: 8 bought nothing over 2, back to 2, also with some noise. */
	assert_int_equal(ramp_run(8, rate_full), 2);
	assert_int_equal(ramp_run(8, rate_full_noisy), 2);
	/* A path full with three: three; with four, the rate doubled: all of them. */
	assert_int_equal(ramp_run(8, rate_sat3), 3);
	assert_int_equal(ramp_run(8, rate_sat4), 8);
	/* One or two configured: nothing to ramp. */
	assert_int_equal(ramp_run(1, rate_full_at_one), 1);
	assert_int_equal(ramp_run(2, rate_full), 2);
}

/*
 * How long the ramp takes. A capped server must get every connection
 * within two short measures: each 100 ms with fewer costs a 3 s transfer
 * about 3 % per missing quarter of its connections. A full path must not
 * keep the extra connections longer than one measure.
 */
static void test_ramp_quick(void **state)
{
	(void)state;
	int64_t one = XFER_RAMP_WARMUP_MS + XFER_RAMP_WINDOW_MS + 10;
	struct ramp_sim s = ramp_sim(8, rate_capped, 0, 5000);
	assert_true(s.max_at >= 0 && s.max_at <= one);
	assert_true(s.settled <= 2 * one);
	assert_true(s.max_at <= 250);
	s = ramp_sim(8, rate_full, 0, 5000);
	assert_int_equal(s.n, 2);
	assert_true(s.settled <= 2 * one);
	assert_true(s.over_ms <= one);
}

/*
 * New connections that take 300 ms to move their first byte (a handshake
 * and a request over a long path): the ramp waits for them before it
 * measures, and a capped server still gets them all.
 */
static void test_ramp_slow_joiners(void **state)
{
	(void)state;
	struct ramp_sim s = ramp_sim(8, rate_capped, 300, 5000);
	assert_int_equal(s.n, 8);
	s = ramp_sim(8, rate_full, 300, 5000);
	assert_int_equal(s.n, 2);
}

/* A server that never answers the extra connections: measured after the longest warm-up. */
static void test_ramp_refused(void **state)
{
	(void)state;
	struct xfer_ramp r;
	uint64_t written = 0;
	int n = 0;
	xfer_ramp_init(&r, 8, 0, 0);
	for (int64_t t = 0; t <= 5000; t += 10) {
		n = xfer_ramp_step(&r, t, written, 2, 0, NULL);
		written += (uint64_t)(80.0 * (double)MiB / 100.0); /* two connections' worth */
	}
	assert_true(r.settled);
	assert_int_equal(n, 2);
}

/*
 * The transfer thread as the bottleneck. A thread that moves at most 620
 * MiB/s is busy 97 % of the first window on a path that gives 600 MiB/s
 * to any number of connections: no trial, two connections, never eight.
 * The same thread on a capped server is busy 13 % with two: the trial
 * runs and keeps all eight. Busy half of the time, eight could at most
 * double the rate: the trial runs (and goes back to two on a full path);
 * busy 60 % on a link full with three, 1.67 times the rate could still
 * pay for a third connection: the trial runs and keeps three.
 */
static void test_ramp_busy_thread(void **state)
{
	(void)state;
	double bound = 1e6 / 620.0; /* us per MiB of a thread that moves 620 MiB/s */
	struct ramp_sim s = ramp_sim_busy(8, rate_full, 0, 5000, bound);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.max_at, -1);
	assert_int_equal(s.over_ms, 0);
	assert_true(s.client_bound);
	assert_true(s.settled >= 0 && s.settled <= XFER_RAMP_WARMUP_MS + XFER_RAMP_WINDOW_MS + 10);
	s = ramp_sim_busy(8, rate_capped, 0, 5000, bound);
	assert_int_equal(s.n, 8);
	assert_false(s.client_bound);
	s = ramp_sim_busy(8, rate_full, 0, 5000, 1e6 / 1200.0);
	assert_true(s.max_at >= 0);
	assert_int_equal(s.n, 2);
	assert_false(s.client_bound);
	s = ramp_sim_busy(8, rate_sat3, 0, 5000, 1e6 / (100.0 / 0.6));
	assert_true(s.max_at >= 0);
	assert_int_equal(s.n, 3);
}

static void test_ramp_timing(void **state)
{
	(void)state;
	struct xfer_ramp r;
	int64_t next = INT64_MAX;
	xfer_ramp_init(&r, 8, 1000, 0);
	assert_int_equal(r.want, 2);
	/* Before warm-up and window have passed nothing changes, and it says when to look. */
	assert_int_equal(xfer_ramp_step(&r, 1000 + XFER_RAMP_WARMUP_MS / 2, 10 * MiB, 2, 0, &next),
			 2);
	assert_int_equal(next, 1000 + XFER_RAMP_WARMUP_MS);
	/* Until both connections move, it waits, at most the longest warm-up. */
	next = INT64_MAX;
	assert_int_equal(xfer_ramp_step(&r, 1000 + XFER_RAMP_WARMUP_MS, 15 * MiB, 1, 0, &next), 2);
	assert_int_equal(next, 1000 + XFER_RAMP_WARMUP_MAX_MS);
	next = INT64_MAX;
	assert_int_equal(xfer_ramp_step(&r, 1000 + XFER_RAMP_WARMUP_MS + 5, 20 * MiB, 2, 0, &next),
			 2);
	int64_t open = 1000 + XFER_RAMP_WARMUP_MS + 5;
	assert_int_equal(next, open + XFER_RAMP_WINDOW_MS);
	/* The warm-up bytes do not count: the rate is 30 MiB over the window alone. */
	assert_int_equal(xfer_ramp_step(&r, open + XFER_RAMP_WINDOW_MS, 50 * MiB, 2, 0, NULL), 8);
	double want = 30.0 * MiB * 1000 / XFER_RAMP_WINDOW_MS;
	assert_true(r.start_rate > want * 0.99 && r.start_rate < want * 1.01);
	/* Settled: no deadline asked for any more. */
	r.settled = 1;
	next = INT64_MAX;
	assert_int_equal(xfer_ramp_step(&r, 99999, 99 * MiB, 8, 0, &next), 8);
	assert_int_equal(next, INT64_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_plan_split_and_steal),
	    cmocka_unit_test(test_plan_split_aligned),
	    cmocka_unit_test(test_plan_resume_from_ranges),
	    cmocka_unit_test(test_plan_pieces_in_order),
	    cmocka_unit_test(test_plan_cap),
	    cmocka_unit_test(test_plan_take_at_release_steal),
	    cmocka_unit_test(test_content_range_valid),
	    cmocka_unit_test(test_content_range_overflow),
	    cmocka_unit_test(test_content_range_junk),
	    cmocka_unit_test(test_content_range_spaces_and_signs),
	    cmocka_unit_test(test_content_range_order),
	    cmocka_unit_test(test_ramp_decisions),
	    cmocka_unit_test(test_ramp_quick),
	    cmocka_unit_test(test_ramp_slow_joiners),
	    cmocka_unit_test(test_ramp_refused),
	    cmocka_unit_test(test_ramp_busy_thread),
	    cmocka_unit_test(test_ramp_timing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
