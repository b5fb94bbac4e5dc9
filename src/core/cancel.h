/*
 * cancel: a cancellation token shared between the thread that asks for a
 * cancel (HTTP handler, signal handler thread) and the threads doing the work
 * (job worker, transfer thread).
 *
 * Reference counted: cancel_new() returns one reference; cancel_ref() adds
 * one, cancel_unref() drops one and frees at zero. All functions are
 * thread-safe. Wake callbacks run at least once (twice at most, if added while the token fires), on
 * the thread that calls cancel_fire(), outside the token's lock; they must be quick and must not
 * block (typical: curl_multi_wakeup, or write to an eventfd). A callback added
 * after the token fired runs at once on the adding thread.
 */
#ifndef RBEE_CORE_CANCEL_H
#define RBEE_CORE_CANCEL_H

#define CANCEL_MAX_WATCHERS 16

struct cancel_token;
typedef void (*cancel_wake_fn)(void *arg);

struct cancel_token *cancel_new(void);
struct cancel_token *cancel_ref(struct cancel_token *t);
void cancel_unref(struct cancel_token *t);

/* Fires the token. Returns 1 if this call fired it, 0 if it already was. */
int cancel_fire(struct cancel_token *t);
int cancel_is_set(const struct cancel_token *t);

/*
 * Sleeps until the token fires or timeout_ms passes (negative: forever).
 * Returns 1 if the token is set, 0 on timeout.
 */
int cancel_wait(struct cancel_token *t, long timeout_ms);

/*
 * Registers a wake callback. Returns a handle > 0, or ERR_TOO_LARGE when
 * CANCEL_MAX_WATCHERS are registered. If the token has already fired, fn runs
 * now and the handle is still returned.
 */
int cancel_watch(struct cancel_token *t, cancel_wake_fn fn, void *arg);
/* Removes a callback; after return it will not be called. */
void cancel_unwatch(struct cancel_token *t, int handle);

#endif
