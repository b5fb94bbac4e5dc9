/* Clock and timed-wait helpers of core/util.h: deadlines on the monotonic clock. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <cmocka.h>

#include "core/util.h"

static int64_t ts_ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static void test_deadline_normalised(void **state)
{
	(void)state;
	static const long ms[] = {0, 1, 999, 1000, 1001, 1999, 2500, 86400000L};
	for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
		struct timespec before, dl, after;
		clock_gettime(CLOCK_MONOTONIC, &before);
		deadline_after_ms(&dl, ms[i]);
		clock_gettime(CLOCK_MONOTONIC, &after);
		assert_true(dl.tv_nsec >= 0 && dl.tv_nsec < 1000000000L);
		/* the deadline is ms after a moment between before and after */
		assert_true(ts_ns(&dl) >= ts_ns(&before) + (int64_t)ms[i] * 1000000);
		assert_true(ts_ns(&dl) <= ts_ns(&after) + (int64_t)ms[i] * 1000000);
	}
	/* a negative wait is no wait */
	struct timespec before, dl, after;
	clock_gettime(CLOCK_MONOTONIC, &before);
	deadline_after_ms(&dl, -5000);
	clock_gettime(CLOCK_MONOTONIC, &after);
	assert_true(ts_ns(&dl) >= ts_ns(&before) && ts_ns(&dl) <= ts_ns(&after));
}

/*
 * A timed wait on a condition variable from cond_init_monotonic with a
 * deadline from deadline_after_ms lasts about that long: with clocks that
 * disagree it would return at once (or after decades).
 */
static void test_timed_wait_lasts(void **state)
{
	(void)state;
	pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cv;
	cond_init_monotonic(&cv);
	pthread_mutex_lock(&m);
	struct timespec dl;
	int64_t t0 = now_ms();
	deadline_after_ms(&dl, 150);
	int rc = 0;
	while (rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&cv, &m, &dl);
	int64_t took = now_ms() - t0;
	pthread_mutex_unlock(&m);
	assert_true(took >= 140);
	assert_true(took < 5000);
	pthread_cond_destroy(&cv);
}

/* now_us and now_ms read the same clock: 50 ms asleep are 50 ms on both. */
static void test_now_us(void **state)
{
	(void)state;
	int64_t u0 = now_us(), m0 = now_ms();
	assert_true(u0 / 1000 - m0 >= -1 && u0 / 1000 - m0 <= 1);
	sleep_ms(50);
	int64_t du = now_us() - u0, dm = now_ms() - m0;
	assert_true(du >= 50000 && du < 5000000);
	assert_true(du / 1000 - dm >= -2 && du / 1000 - dm <= 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_deadline_normalised),
	    cmocka_unit_test(test_timed_wait_lasts),
	    cmocka_unit_test(test_now_us),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
