/* Unit tests of core/cancel: firing, timed waits, wake callbacks, cross-thread wake-up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>

#include "core/cancel.h"
#include "core/err.h"
#include "core/util.h"

static void test_fire(void **state)
{
	(void)state;
	struct cancel_token *t = cancel_new();
	assert_int_equal(cancel_is_set(t), 0);
	assert_int_equal(cancel_is_set(NULL), 0);
	assert_int_equal(cancel_fire(t), 1);
	assert_int_equal(cancel_is_set(t), 1);
	assert_int_equal(cancel_fire(t), 0);
	assert_int_equal(cancel_is_set(t), 1);
	cancel_unref(t);
	cancel_unref(NULL);
}

static void test_refcount(void **state)
{
	(void)state;
	struct cancel_token *t = cancel_new();
	assert_ptr_equal(cancel_ref(t), t);
	assert_null(cancel_ref(NULL));
	cancel_unref(t);
	/* Still alive: one reference left (ASan would flag a use after free). */
	assert_int_equal(cancel_fire(t), 1);
	cancel_unref(t);
}

static void test_wait_timeout(void **state)
{
	(void)state;
	struct cancel_token *t = cancel_new();
	int64_t t0 = now_ms();
	assert_int_equal(cancel_wait(t, 100), 0);
	int64_t dt = now_ms() - t0;
	assert_true(dt >= 95);
	assert_true(dt < 2000);
	t0 = now_ms();
	assert_int_equal(cancel_wait(t, 0), 0);
	assert_true(now_ms() - t0 < 1000);
	cancel_fire(t);
	t0 = now_ms();
	assert_int_equal(cancel_wait(t, 5000), 1);
	assert_int_equal(cancel_wait(t, -1), 1);
	assert_true(now_ms() - t0 < 1000);
	cancel_unref(t);
}

struct counter {
	atomic_int n;
};

static void bump(void *arg)
{
	struct counter *c = arg;
	atomic_fetch_add(&c->n, 1);
}

static void test_watch(void **state)
{
	(void)state;
	struct cancel_token *t = cancel_new();
	struct counter a = {0}, b = {0}, gone = {0};
	int ha = cancel_watch(t, bump, &a);
	int hb = cancel_watch(t, bump, &b);
	int hg = cancel_watch(t, bump, &gone);
	assert_true(ha > 0);
	assert_true(hb > 0 && hb != ha);
	assert_true(hg > 0 && hg != hb);
	cancel_unwatch(t, hg);
	cancel_unwatch(t, 0); /* no-op */
	cancel_unwatch(t, 9999);
	assert_int_equal(atomic_load(&a.n), 0);
	cancel_fire(t);
	assert_int_equal(atomic_load(&a.n), 1);
	assert_int_equal(atomic_load(&b.n), 1);
	assert_int_equal(atomic_load(&gone.n), 0);
	/* A second fire runs nothing. */
	cancel_fire(t);
	assert_int_equal(atomic_load(&a.n), 1);

	/* Added after the fire: runs at once, on this thread, and still gets a handle. */
	struct counter late = {0};
	int hl = cancel_watch(t, bump, &late);
	assert_true(hl > 0);
	assert_int_equal(atomic_load(&late.n), 1);
	cancel_unwatch(t, hl);
	cancel_unwatch(t, ha);
	cancel_unwatch(t, hb);
	cancel_unref(t);
}

static void test_watch_full(void **state)
{
	(void)state;
	struct cancel_token *t = cancel_new();
	struct counter c = {0};
	int h[CANCEL_MAX_WATCHERS];
	for (int i = 0; i < CANCEL_MAX_WATCHERS; i++) {
		h[i] = cancel_watch(t, bump, &c);
		assert_true(h[i] > 0);
	}
	assert_int_equal(cancel_watch(t, bump, &c), ERR_TOO_LARGE);
	/* Unwatching frees a slot for a new one. */
	cancel_unwatch(t, h[3]);
	h[3] = cancel_watch(t, bump, &c);
	assert_true(h[3] > 0);
	cancel_fire(t);
	assert_int_equal(atomic_load(&c.n), CANCEL_MAX_WATCHERS);
	cancel_unref(t);
}

struct waiter {
	struct cancel_token *t;
	int result;
	int64_t woke_ms;
};

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;
	w->result = cancel_wait(w->t, 10000);
	w->woke_ms = now_ms();
	return NULL;
}

static void *fire_thread(void *arg)
{
	sleep_ms(50);
	cancel_fire(arg);
	return NULL;
}

static void test_cross_thread(void **state)
{
	(void)state;
	/* A waiter on one thread is woken promptly by a fire from another. */
	struct cancel_token *t = cancel_new();
	struct waiter w = {.t = t, .result = -1};
	pthread_t tw, tf;
	assert_int_equal(pthread_create(&tw, NULL, wait_thread, &w), 0);
	sleep_ms(30);
	int64_t fired_at = now_ms();
	assert_int_equal(pthread_create(&tf, NULL, fire_thread, t), 0);
	pthread_join(tf, NULL);
	pthread_join(tw, NULL);
	assert_int_equal(w.result, 1);
	assert_true(w.woke_ms - fired_at < 2000);

	/* Unlimited wait also wakes. */
	struct cancel_token *t2 = cancel_new();
	struct counter c = {0};
	cancel_watch(t2, bump, &c);
	assert_int_equal(pthread_create(&tf, NULL, fire_thread, t2), 0);
	assert_int_equal(cancel_wait(t2, -1), 1);
	pthread_join(tf, NULL);
	assert_int_equal(atomic_load(&c.n), 1);
	cancel_unref(t2);
	cancel_unref(t);
}

struct slow {
	atomic_int started, finished;
};

static void slow_cb(void *arg)
{
	struct slow *s = arg;
	atomic_store(&s->started, 1);
	sleep_ms(150);
	atomic_store(&s->finished, 1);
}

static void *fire_now(void *arg)
{
	cancel_fire(arg);
	return NULL;
}

static void test_unwatch_waits_for_running_callback(void **state)
{
	(void)state;
	/* After cancel_unwatch returns, the callback's argument may be freed. */
	struct cancel_token *t = cancel_new();
	struct slow s = {0};
	int h = cancel_watch(t, slow_cb, &s);
	pthread_t tf;
	assert_int_equal(pthread_create(&tf, NULL, fire_now, t), 0);
	int64_t deadline = now_ms() + 5000;
	while (!atomic_load(&s.started) && now_ms() < deadline)
		sleep_ms(1);
	assert_int_equal(atomic_load(&s.started), 1);
	cancel_unwatch(t, h);
	assert_int_equal(atomic_load(&s.finished), 1);
	pthread_join(tf, NULL);
	cancel_unref(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fire),
	    cmocka_unit_test(test_refcount),
	    cmocka_unit_test(test_wait_timeout),
	    cmocka_unit_test(test_watch),
	    cmocka_unit_test(test_watch_full),
	    cmocka_unit_test(test_cross_thread),
	    cmocka_unit_test(test_unwatch_waits_for_running_callback),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
