/*
 * The transfer engine's public API: engine and transfer lifecycle. See
 * xfer.h for the threads and who owns what, xfer_internal.h for the locks
 * and the other files of the engine.
 */
#include "fetch/xfer_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cancel.h"
#include "core/log.h"
#include "core/util.h"

/* Public API */

int xfer_engine_new(const struct xfer_config *cfg, struct xfer_engine **out, struct err *e)
{
	static const struct xfer_config defaults = {0};
	if (!cfg)
		cfg = &defaults;
	curl_mem_init(); /* libcurl and the process's memory rules, once */
	struct xfer_engine *eng = xcalloc(1, sizeof(*eng));
	eng->cfg = *cfg;
	struct xfer_config *c = &eng->cfg;
	if (c->connections <= 0)
		c->connections = XFER_DEFAULT_CONNECTIONS;
	if (c->connections > CAP_XFER_CONNECTIONS) {
		free(eng);
		return err_set(e, ERR_INVALID, "connections: %d is over the limit of %d",
			       cfg->connections, CAP_XFER_CONNECTIONS);
	}
	if (!c->split_threshold)
		c->split_threshold = XFER_DEFAULT_SPLIT_THRESHOLD;
	if (!c->min_split)
		c->min_split = XFER_DEFAULT_MIN_SPLIT;
	if (!c->piece_size)
		c->piece_size = XFER_DEFAULT_PIECE_SIZE;
	if (c->piece_size < c->min_split)
		c->piece_size = c->min_split;
	if (c->stall_timeout_s <= 0)
		c->stall_timeout_s = XFER_DEFAULT_STALL_TIMEOUT_S;
	if (c->max_retries <= 0)
		c->max_retries = XFER_DEFAULT_MAX_RETRIES;
	if (c->retry_base_ms <= 0)
		c->retry_base_ms = XFER_DEFAULT_RETRY_BASE_MS;
	if (c->retry_max_ms <= 0)
		c->retry_max_ms = XFER_DEFAULT_RETRY_MAX_MS;
	if (c->retry_max_ms < c->retry_base_ms)
		c->retry_max_ms = c->retry_base_ms;
	if (c->retry_after_max_ms <= 0)
		c->retry_after_max_ms = XFER_DEFAULT_RETRY_AFTER_MAX_MS;
	if (!c->flush_bytes)
		c->flush_bytes = XFER_DEFAULT_FLUSH_BYTES;
	if (c->flush_ms <= 0)
		c->flush_ms = XFER_DEFAULT_FLUSH_MS;
	if (!c->max_unknown_size)
		c->max_unknown_size = CAP_UNKNOWN_SIZE_DEFAULT;
	eng->user_agent =
	    cfg->user_agent ? xstrdup(cfg->user_agent) : xstrdup("rbee-hive/" RBEE_VERSION);
	eng->ca_file = cfg->ca_file ? xstrdup(cfg->ca_file) : NULL;
	c->user_agent = eng->user_agent;
	c->ca_file = eng->ca_file;
	pthread_mutex_init(&eng->lock, NULL);
	eng->multi = curl_multi_init();
	if (!eng->multi) {
		err_set(e, ERR_NOMEM, "cannot create a libcurl multi handle");
		goto fail;
	}
	curl_multi_setopt(eng->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
	eng->tokens_at = now_ms();
	int prc = pthread_create(&eng->thread, NULL, xfer_engine_main, eng);
	if (prc != 0) {
		err_set(e, ERR_INTERNAL, "cannot start the transfer thread: %s", strerror(prc));
		goto fail;
	}
	eng->thread_started = 1;
	*out = eng;
	return 0;
fail:
	if (eng->multi)
		curl_multi_cleanup(eng->multi);
	pthread_mutex_destroy(&eng->lock);
	free(eng->user_agent);
	free(eng->ca_file);
	free(eng);
	return e ? e->code : ERR_INTERNAL;
}

void xfer_engine_free(struct xfer_engine *eng)
{
	if (!eng)
		return;
	pthread_mutex_lock(&eng->lock);
	eng->stopping = 1;
	pthread_mutex_unlock(&eng->lock);
	curl_multi_wakeup(eng->multi);
	if (eng->thread_started)
		pthread_join(eng->thread, NULL);
	curl_multi_cleanup(eng->multi);
	pthread_mutex_destroy(&eng->lock);
	free(eng->user_agent);
	free(eng->ca_file);
	free(eng);
}

static void xfer_wake(void *arg)
{
	struct xfer *x = arg;
	atomic_store(&x->cancel_req, 1);
	pthread_mutex_lock(&x->lock);
	if (!x->eng_gone)
		curl_multi_wakeup(x->eng->multi);
	pthread_mutex_unlock(&x->lock);
}

static void xfer_release(struct xfer *x)
{
	if (x->fd >= 0)
		close(x->fd);
	if (x->dir_fd >= 0)
		close(x->dir_fd);
	if (x->cancel)
		cancel_unref(x->cancel);
	ranges_cleanup(&x->done);
	xfer_plan_cleanup(&x->plan);
	if (x->poller_started)
		xfer_peers_stop(x);
	xfer_peers_free(x);
	free(x->conns);
	free(x->snap);
	free(x->url);
	if (x->token)
		explicit_bzero(x->token, strlen(x->token));
	free(x->token);
	free(x->aws_sigv4);
	curl_slist_free_all(x->aws_headers);
	free(x->dest);
	free(x->name);
	free(x->rename_to);
	free(x->log_id);
	pthread_mutex_destroy(&x->lock);
	pthread_cond_destroy(&x->cond);
	pthread_cond_destroy(&x->save_cond);
	pthread_cond_destroy(&x->sync_cond);
	pthread_cond_destroy(&x->done_cond);
	free(x);
}

int xfer_start(struct xfer_engine *eng, const struct xfer_request *req, struct xfer **out,
	       struct err *e)
{
	int rc;
	*out = NULL;
	if (req->fd < 0 || req->dir_fd < 0 || !req->name || !*req->name || strchr(req->name, '/'))
		return err_set(
		    e, ERR_INVALID,
		    "transfer needs the partial's descriptor, its folder's and its name");
	if (req->rename_to && (!*req->rename_to || strchr(req->rename_to, '/')))
		return err_set(e, ERR_INVALID, "rename_to '%.80s' is not a name in the folder",
			       req->rename_to);
	if (req->sha256 && req->sha256[0] && !sha256_hex_valid(req->sha256))
		return err_set(e, ERR_INVALID,
			       "expected sha256 '%.80s' is not 64 lowercase hex digits",
			       req->sha256);
	if (req->git_sha1 && req->git_sha1[0] &&
	    (!is_hex_lower(req->git_sha1, GITBLOB_HEX_LEN) || !req->size_known))
		return err_set(e, ERR_INVALID,
			       "expected git blob sha1 '%.80s' needs 40 lowercase hex digits and a "
			       "known size",
			       req->git_sha1);
	if (req->auth_token && strlen(req->auth_token) > CAP_TOKEN_LEN)
		return err_set(e, ERR_TOO_LARGE, "auth token is longer than %d bytes",
			       CAP_TOKEN_LEN);
	if (req->resume && (!req->resume->load || !req->resume->save || !req->resume->discard))
		return err_set(e, ERR_INVALID, "resume ops need load, save and discard");
	const char *label = req->label && *req->label ? req->label : req->name;
	if (strlen(label) >= sizeof(((struct xfer *)0)->key))
		return err_set(e, ERR_TOO_LARGE, "destination path is too long");

	struct xfer *x = xcalloc(1, sizeof(*x));
	x->eng = eng;
	x->fd = fcntl(req->fd, F_DUPFD_CLOEXEC, 0);
	x->dir_fd = fcntl(req->dir_fd, F_DUPFD_CLOEXEC, 0);
	pthread_mutex_init(&x->lock, NULL);
	cond_init_monotonic(&x->cond);
	cond_init_monotonic(&x->save_cond);
	cond_init_monotonic(&x->sync_cond);
	cond_init_monotonic(&x->done_cond);
	x->token = req->auth_token && *req->auth_token ? xstrdup(req->auth_token) : NULL;
	x->basic = req->auth_basic;
	x->max_retries = req->max_retries > 0 ? req->max_retries : eng->cfg.max_retries;
	if (req->aws_sigv4) {
		x->aws_sigv4 = xstrdup(req->aws_sigv4);
		/*
		 * libcurl 7.88 signs no payload hash of its own (the store then
		 * refuses every request): the header is set here and signed with
		 * the rest. A GET has no body to hash.
		 */
		x->aws_headers = curl_slist_append(NULL, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
		if (!x->aws_headers)
			abort(); /* out of memory, as xmalloc */
	}
	x->dest = xstrdup(label);
	x->name = xstrdup(req->name);
	x->rename_to = req->rename_to ? xstrdup(req->rename_to) : NULL;
	x->rename_sha = !x->rename_to && req->rename_to_sha256;
	x->log_id = req->log_id ? xstrdup(req->log_id) : NULL;
	if (req->sha256 && req->sha256[0])
		memcpy(x->want_sha, req->sha256, SHA256_HEX_LEN + 1);
	if (req->git_sha1 && req->git_sha1[0])
		memcpy(x->want_git, req->git_sha1, GITBLOB_HEX_LEN + 1);
	snprintf(x->key, sizeof(x->key), "%s", x->want_sha[0] ? x->want_sha : x->dest);
	x->size_known = req->size_known;
	x->total = req->size_known ? req->size : 0;
	/* Only the empty file has that digest: its size is known without asking anyone. */
	if (!x->size_known && strcmp(x->want_sha, SHA256_EMPTY) == 0)
		x->size_known = 1;
	x->limit = eng->cfg.max_unknown_size;
	atomic_store(&x->a_total, x->total);
	if (req->resume) {
		x->resume = *req->resume;
		x->has_resume = 1;
	}
	int fresh = x->has_resume && x->resume.save_fresh;
	x->snap_step = fresh ? FRESH_SAVE_STEP : eng->cfg.flush_bytes;
	x->unsaved_max = fresh ? UNSAVED_FRESH_STEPS * (uint64_t)FRESH_SAVE_STEP
			       : UNSAVED_FLUSH_STEPS * (uint64_t)eng->cfg.flush_bytes;
	x->refresh_fn = req->refresh_url;
	x->refresh_arg = req->refresh_arg;
	x->progress_fn = req->on_progress;
	x->progress_arg = req->progress_arg;
	x->cancel = req->cancel ? cancel_ref(req->cancel) : NULL;
	x->purge_req = req->purge_on_cancel ? 1 : 0;
	x->nconn = x->size_known && x->total >= eng->cfg.split_threshold ? eng->cfg.connections : 1;
	x->conns = xcalloc((size_t)x->nconn, sizeof(*x->conns));
	for (int i = 0; i < x->nconn; i++)
		x->conns[i] = (struct xconn){.x = x, .idx = i, .seg = -1, .src = -1};
	ranges_init(&x->done, CAP_XFER_RANGES);
	xfer_plan_init(&x->plan, CAP_XFER_RANGES + CAP_XFER_CONNECTIONS, eng->cfg.min_split);
	x->plan.piece = eng->cfg.piece_size;
	/* The first pieces grow for the connections that start together (see xfer_ramp). */
	x->plan.ramp = (unsigned)(x->nconn < XFER_RAMP_START ? x->nconn : XFER_RAMP_START);
	x->snap = xcalloc(CAP_XFER_RANGES, sizeof(*x->snap));
	if (x->fd < 0 || x->dir_fd < 0) {
		rc = err_set(e, ERR_INVALID, "%s: bad descriptor: %s", x->dest, strerror(errno));
		goto fail;
	}

	/*
	 * The origin, and the class of its address, bound every hop; url itself
	 * is the first hop when the caller got it from a redirect (a CDN URL).
	 */
	rc = url_parse(req->origin ? req->origin : req->url, &x->origin, e);
	if (rc < 0)
		goto fail;
	x->base = url_host_net(x->origin.host);
	rc = xfer_set_url(x, req->url, &x->origin, e);
	if (rc < 0)
		goto fail;
	x->url_gen = 0;
	rc = xfer_prepare_file(x, e);
	if (rc < 0) {
		if (x->done.bytes == 0)
			xfer_remove_partial(x); /* nothing of value in it */
		goto fail;
	}
	x->published_prefix = 0;
	x->prefix = ranges_prefix(&x->done);
	atomic_store(&x->a_done, x->done.bytes);
	rc = xfer_peers_start(x, req, e);
	if (rc < 0)
		goto fail;

	pthread_mutex_lock(&eng->lock);
	if (eng->count >= CAP_XFER_ACTIVE) {
		rc = err_set(e, ERR_TOO_LARGE, "more than %d transfers at once", CAP_XFER_ACTIVE);
		pthread_mutex_unlock(&eng->lock);
		goto fail;
	}
	eng->count++;
	pthread_mutex_unlock(&eng->lock);

	int prc = pthread_create(&x->helper, NULL, xfer_helper_main, x);
	if (prc != 0) {
		pthread_mutex_lock(&eng->lock);
		eng->count--;
		pthread_mutex_unlock(&eng->lock);
		rc = err_set(e, ERR_INTERNAL, "cannot start a transfer helper: %s", strerror(prc));
		goto fail;
	}
	x->helper_started = 1;
	if (x->cancel) {
		int w = cancel_watch(x->cancel, xfer_wake, x);
		x->watch = w > 0 ? w : 0;
		if (w < 0)
			log_msg(LOG_WARN, x->log_id,
				"cancel token has too many watchers; cancel "
				"is checked between transfer steps only");
		if (cancel_is_set(x->cancel))
			atomic_store(&x->cancel_req, 1);
	}
	/*
	 * Checked in the same critical section as the enqueue: the engine thread
	 * exits only after it has read stopping together with an empty queue.
	 */
	pthread_mutex_lock(&eng->lock);
	if (eng->stopping) {
		eng->count--;
		pthread_mutex_unlock(&eng->lock);
		if (x->watch > 0)
			cancel_unwatch(x->cancel, x->watch);
		pthread_mutex_lock(&x->lock);
		x->net = NET_FAILED;
		err_set(&x->net_err, ERR_SHUTDOWN, "the transfer engine is stopping");
		x->eng_gone = 1;
		pthread_cond_signal(&x->cond);
		pthread_mutex_unlock(&x->lock);
		pthread_join(x->helper, NULL);
		rc = err_set(e, ERR_SHUTDOWN, "the transfer engine is stopping");
		goto fail;
	}
	if (eng->queue_tail)
		eng->queue_tail->next = x;
	else
		eng->queue_head = x;
	eng->queue_tail = x;
	pthread_mutex_unlock(&eng->lock);
	curl_multi_wakeup(eng->multi);
	*out = x;
	return 0;
fail:
	xfer_release(x);
	return rc;
}

void xfer_cancel(struct xfer *x, int purge)
{
	if (!x)
		return;
	if (purge)
		atomic_store(&x->purge_req, 1);
	xfer_wake(x);
}

int xfer_wait(struct xfer *x, long timeout_ms)
{
	pthread_mutex_lock(&x->lock);
	if (timeout_ms < 0) {
		while (!x->finished)
			pthread_cond_wait(&x->done_cond, &x->lock);
	} else {
		struct timespec dl;
		deadline_after_ms(&dl, timeout_ms);
		while (!x->finished) {
			if (pthread_cond_timedwait(&x->done_cond, &x->lock, &dl) == ETIMEDOUT)
				break;
		}
	}
	int fin = x->finished;
	pthread_mutex_unlock(&x->lock);
	return fin;
}

void xfer_progress(struct xfer *x, struct xfer_progress *p)
{
	p->bytes_done = atomic_load(&x->a_done);
	p->total = atomic_load(&x->a_total);
	p->hashed = atomic_load(&x->a_hashed);
	p->from_peers = atomic_load(&x->a_from_peers);
	p->rate_bps = (double)atomic_load(&x->a_rate);
	p->connections = atomic_load(&x->a_conns);
	p->finished = atomic_load(&x->a_finished);
}

int xfer_result(struct xfer *x, struct err *e, char sha256_out[SHA256_HEX_LEN + 1])
{
	pthread_mutex_lock(&x->lock);
	int rc;
	if (!x->finished) {
		rc = err_set(e, ERR_CONFLICT, "transfer of %s has not finished", x->dest);
	} else {
		rc = x->result;
		if (e)
			*e = x->res_err;
		if (rc == 0 && sha256_out)
			memcpy(sha256_out, x->got_sha, SHA256_HEX_LEN + 1);
	}
	pthread_mutex_unlock(&x->lock);
	return rc;
}

void xfer_free(struct xfer *x)
{
	if (!x)
		return;
	if (!xfer_wait(x, 0))
		xfer_cancel(x, 0);
	if (x->helper_started)
		pthread_join(x->helper, NULL);
	xfer_release(x);
}
