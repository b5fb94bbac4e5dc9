#include "core/cancel.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "core/err.h"
#include "core/util.h"

struct cancel_watcher {
	int handle; /* 0: free slot */
	cancel_wake_fn fn;
	void *arg;
};

struct cancel_token {
	atomic_int refs;
	atomic_int fired;
	pthread_mutex_t lock; /* guards watchers, next_handle, running */
	pthread_cond_t cond;
	int next_handle;
	int running; /* handle whose callback is running now, or 0 */
	struct cancel_watcher watchers[CANCEL_MAX_WATCHERS];
};

struct cancel_token *cancel_new(void)
{
	struct cancel_token *t = xcalloc(1, sizeof(*t));
	atomic_init(&t->refs, 1);
	atomic_init(&t->fired, 0);
	pthread_mutex_init(&t->lock, NULL);
	cond_init_monotonic(&t->cond);
	t->next_handle = 1;
	return t;
}

struct cancel_token *cancel_ref(struct cancel_token *t)
{
	if (t)
		atomic_fetch_add(&t->refs, 1);
	return t;
}

void cancel_unref(struct cancel_token *t)
{
	if (!t || atomic_fetch_sub(&t->refs, 1) != 1)
		return;
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->cond);
	free(t);
}

int cancel_fire(struct cancel_token *t)
{
	int expected = 0;
	if (!atomic_compare_exchange_strong(&t->fired, &expected, 1))
		return 0;
	pthread_mutex_lock(&t->lock);
	pthread_cond_broadcast(&t->cond);
	/* Run each callback with the lock released, so it may take other locks. */
	for (int i = 0; i < CANCEL_MAX_WATCHERS; i++) {
		struct cancel_watcher w = t->watchers[i];
		if (!w.handle)
			continue;
		t->running = w.handle;
		pthread_mutex_unlock(&t->lock);
		w.fn(w.arg);
		pthread_mutex_lock(&t->lock);
		t->running = 0;
		pthread_cond_broadcast(&t->cond);
	}
	pthread_mutex_unlock(&t->lock);
	return 1;
}

int cancel_is_set(const struct cancel_token *t)
{
	return t && atomic_load(&((struct cancel_token *)t)->fired);
}

int cancel_wait(struct cancel_token *t, long timeout_ms)
{
	pthread_mutex_lock(&t->lock);
	if (timeout_ms < 0) {
		while (!atomic_load(&t->fired))
			pthread_cond_wait(&t->cond, &t->lock);
	} else {
		struct timespec dl;
		deadline_after_ms(&dl, timeout_ms);
		while (!atomic_load(&t->fired)) {
			if (pthread_cond_timedwait(&t->cond, &t->lock, &dl) == ETIMEDOUT)
				break;
		}
	}
	int set = atomic_load(&t->fired);
	pthread_mutex_unlock(&t->lock);
	return set;
}

int cancel_watch(struct cancel_token *t, cancel_wake_fn fn, void *arg)
{
	pthread_mutex_lock(&t->lock);
	int slot = -1;
	for (int i = 0; i < CANCEL_MAX_WATCHERS; i++) {
		if (!t->watchers[i].handle) {
			slot = i;
			break;
		}
	}
	if (slot < 0) {
		pthread_mutex_unlock(&t->lock);
		return ERR_TOO_LARGE;
	}
	int h = t->next_handle++;
	t->watchers[slot] = (struct cancel_watcher){h, fn, arg};
	pthread_mutex_unlock(&t->lock);
	/*
	 * If the token fired before we registered, cancel_fire() may have passed
	 * this slot already: run the callback here. It may then run twice, which
	 * wake callbacks tolerate by contract (they only wake).
	 */
	if (atomic_load(&t->fired))
		fn(arg);
	return h;
}

void cancel_unwatch(struct cancel_token *t, int handle)
{
	if (handle <= 0)
		return;
	pthread_mutex_lock(&t->lock);
	for (int i = 0; i < CANCEL_MAX_WATCHERS; i++) {
		if (t->watchers[i].handle == handle)
			t->watchers[i].handle = 0;
	}
	/* Wait out a callback that is running now, so arg may be freed after. */
	while (t->running == handle)
		pthread_cond_wait(&t->cond, &t->lock);
	pthread_mutex_unlock(&t->lock);
}
