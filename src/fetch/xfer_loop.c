/*
 * The engine's transfer thread: the loop around curl_multi_perform and
 * curl_multi_poll, the rate cap's token bucket, and per-transfer
 * housekeeping (activation, progress, flush deadlines, the hand-off of a
 * transfer that ended to its helper).
 */
#include "fetch/xfer_internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/cancel.h"
#include "core/log.h"
#include "core/util.h"

/*
 * Refills the bucket (at most a tenth of a second's worth, so a pause
 * cannot be followed by a burst) and resumes paused connections while
 * tokens last. Unpausing may run the write callback at once.
 */
static void rate_refill(struct xfer_engine *eng, int64_t now)
{
	double limit = (double)eng->cfg.limit_rate;
	double cap = limit / 10 > RATE_BURST_MIN ? limit / 10 : RATE_BURST_MIN;
	eng->tokens += limit * (double)(now - eng->tokens_at) / 1000.0;
	if (eng->tokens > cap)
		eng->tokens = cap;
	eng->tokens_at = now;
	for (struct xfer *x = eng->active; x && eng->npaused > 0 && eng->tokens > 0; x = x->next) {
		for (int i = 0; i < x->nconn && eng->tokens > 0; i++) {
			struct xconn *c = &x->conns[i];
			if (!c->paused)
				continue;
			c->paused = 0;
			eng->npaused--;
			curl_easy_pause(c->h, CURLPAUSE_CONT);
		}
	}
}

/* Per-transfer housekeeping (transfer thread) */

static void xfer_activate(struct xfer_engine *eng, struct xfer *x)
{
	x->next = eng->active;
	eng->active = x;
	eng->nactive++;
	int64_t now = now_ms();
	x->flush_at = now + eng->cfg.flush_ms;
	x->rate_at = now;
	x->progress_at = now;
	x->published_prefix = ranges_prefix(&x->done);
	if (x->size_known) {
		if (xfer_plan_reset(&x->plan, &x->done, x->total) < 0) {
			xfer_end(x, NET_FAILED, ERR_TOO_LARGE, "%s: too many missing ranges",
				 x->dest);
			return;
		}
		if (ranges_complete(&x->done, x->total)) {
			xfer_end(x, NET_DONE, 0, NULL);
			return;
		}
	}
	if (x->npeers)
		xfer_peers_update(x, now);
	x->url_room = 1;
	xconn_start(x, &x->conns[0]);
}

/*
 * 1 while a whole-file answer is still open. Its end, not the count of
 * bytes, finishes the file: a server that goes on past the expected size
 * is caught by the write callback, whether the extra bytes come with the
 * last expected ones or after them.
 */
static int whole_file_open(const struct xfer *x)
{
	for (int i = 0; i < x->nconn; i++)
		if (x->conns[i].st == C_RUNNING && x->conns[i].seg < 0)
			return 1;
	return 0;
}

static void xfer_service(struct xfer *x, int64_t now, int64_t *next_deadline)
{
	struct xfer_engine *eng = x->eng;
	if (atomic_load(&x->cancel_req) && !x->ended) {
		xfer_end(x, NET_CANCELLED, ERR_CANCELLED, "transfer of %s cancelled", x->dest);
		return;
	}
	if (x->ended)
		return;
	if (x->npeers)
		xfer_peers_update(x, now);
	if (x->refreshing && atomic_load(&x->refresh_done)) {
		struct err e;
		char url[CAP_URL_LEN];
		int rc;
		atomic_store(&x->refresh_done, 0);
		x->refreshing = 0;
		pthread_mutex_lock(&x->lock);
		rc = x->refresh_rc;
		e = x->refresh_err;
		memcpy(url, x->refresh_url, sizeof(url));
		pthread_mutex_unlock(&x->lock);
		if (rc == 0) {
			err_clear(&e);
			rc = xfer_set_url(x, url, &x->origin, &e);
		}
		if (rc < 0) {
			xfer_end(x, NET_FAILED, rc, "resolving the URL again after 403: %s",
				 err_msg(&e));
			return;
		}
		x->redirects = 0;
		for (int i = 0; i < x->nconn; i++) {
			if (x->conns[i].st == C_WAIT && x->conns[i].wait_url)
				xconn_start(x, &x->conns[i]);
		}
	}
	int busy = 0, moving = 0;
	for (int i = 0; i < x->nconn && !x->ended; i++) {
		struct xconn *c = &x->conns[i];
		if (c->st == C_WAIT && !c->wait_url && c->retry_at <= now)
			xconn_start(x, c);
		if (c->st == C_WAIT && !c->wait_url && c->retry_at < *next_deadline)
			*next_deadline = c->retry_at;
		busy += c->st != C_IDLE;
		moving += c->moved && c->src < 0; /* the ramp judges the URL's connections */
	}
	/*
	 * Until the first answer with content, one connection finds the final
	 * URL (redirects) and whether Range works; then the rest join in, each
	 * stealing half of the largest range. Whole-file mode has one
	 * connection, restarted by xconn_done only.
	 */
	int ranged = x->size_known && !x->no_range;
	/*
	 * With peers the ramp measures and counts the connections to the URL
	 * only: those to peers come on top (at most PEER_CONNS each), or a CDN
	 * that gains nothing from more connections would also hold back the
	 * pieces the peers have.
	 */
	uint64_t ramp_bytes = x->npeers ? x->url_bytes : x->written;
	if (ranged && x->url_settled && !x->ramp_on) {
		xfer_ramp_init(&x->ramp, x->nconn, now, ramp_bytes);
		x->ramp_on = 1;
	}
	int allowed = x->ramp_on ? x->ramp.want : 1;
	if (x->ramp_on && !x->ramp.settled) {
		int was = allowed;
		/* The client's busy time: all but the engine's waits for the network. */
		int64_t busy_us = now_us() - x->eng->started_us - x->eng->net_wait_us;
		allowed = xfer_ramp_step(&x->ramp, now, ramp_bytes, moving, busy_us, next_deadline);
		if (allowed != was || x->ramp.settled)
			log_msg(LOG_DEBUG, x->log_id,
				"transfer of %s: %d connections (%.0f MiB/s with %d, the "
				"client busy %.0f%% of the measure)",
				x->dest, allowed, x->ramp.rate / 1048576.0, was,
				x->ramp.busy * 100.0);
	}
	if (!ranged)
		allowed = 1;
	int counted = x->npeers ? xfer_busy_url(x) : busy;
	for (int i = 0; ranged && i < x->nconn && !x->ended; i++) {
		struct xconn *c = &x->conns[i];
		if (c->st != C_IDLE)
			continue;
		if (xfer_plan_live(&x->plan) == 0)
			break;
		x->url_room = counted < allowed;
		if (!x->url_room && !x->npeers)
			break;
		xconn_start(x, c);
		if (c->st == C_IDLE)
			break;
		busy++;
		counted += c->src < 0;
	}
	if (x->ended)
		return;
	if (x->size_known && ranges_complete(&x->done, x->total) && !whole_file_open(x)) {
		xfer_end(x, NET_DONE, 0, NULL);
		return;
	}
	/* Pieces another hive is fetching are awaited from it; a silent one's are taken. */
	int awaited = x->npeers && xfer_peers_awaited(x, now);
	if (awaited && now + PEER_POLL_MS < *next_deadline)
		*next_deadline = now + PEER_POLL_MS;
	if (busy == 0 && !awaited) {
		xfer_end(x, NET_FAILED, ERR_INTERNAL, "%s: transfer stalled with no work planned",
			 x->dest);
		return;
	}
	if (x->held && !xfer_saves_behind(x)) {
		/* The save caught up: go on (the write callback may hold again). */
		x->held = 0;
		for (int i = 0; i < x->nconn; i++) {
			struct xconn *c = &x->conns[i];
			if (!c->paused || c->st != C_RUNNING)
				continue;
			c->paused = 0;
			eng->npaused--;
			curl_easy_pause(c->h, CURLPAUSE_CONT);
		}
	}
	xfer_publish_prefix(x, 0);
	if (x->written - x->flushed_written >= x->snap_step ||
	    (now >= x->flush_at && x->written != x->flushed_written))
		xfer_post_snapshot(x);
	if (x->flush_at < *next_deadline)
		*next_deadline = x->flush_at;
	atomic_store(&x->a_done, x->done.bytes);
	atomic_store(&x->a_conns, busy);
	if (now - x->rate_at >= PROGRESS_MS) {
		double inst =
		    (double)(x->written - x->rate_written) * 1000.0 / (double)(now - x->rate_at);
		x->rate = x->rate == 0 ? inst : 0.8 * x->rate + 0.2 * inst;
		x->rate_at = now;
		x->rate_written = x->written;
		atomic_store(&x->a_rate, (uint64_t)x->rate);
	}
	if (x->progress_fn && now - x->progress_at >= PROGRESS_MS) {
		struct xfer_progress p;
		x->progress_at = now;
		xfer_progress(x, &p);
		x->progress_fn(x->progress_arg, &p);
	}
}

/* Stops every connection and hands the transfer to its helper for the end. */
static void xfer_detach(struct xfer_engine *eng, struct xfer *x)
{
	for (int i = 0; i < x->nconn; i++) {
		xconn_stop(&x->conns[i]);
		if (x->conns[i].h)
			curl_easy_cleanup(x->conns[i].h);
		x->conns[i].h = NULL;
		free(x->conns[i].batch);
		x->conns[i].batch = NULL;
	}
	if (x->cancel && x->watch > 0)
		cancel_unwatch(x->cancel, x->watch);
	x->watch = 0;
	atomic_store(&x->a_done, x->done.bytes);
	atomic_store(&x->a_conns, 0);
	atomic_store(&x->a_rate, 0);
	if (x->end_state != NET_DONE && !x->discard_partial)
		xfer_post_snapshot(x);
	pthread_mutex_lock(&x->lock);
	x->net = x->end_state;
	x->net_err = x->end_err;
	x->final_total = x->total;
	x->prefix = ranges_prefix(&x->done);
	x->discard_req = x->discard_partial;
	x->eng_gone = 1;
	pthread_cond_signal(&x->cond);
	pthread_cond_signal(&x->save_cond);
	pthread_cond_signal(&x->sync_cond);
	pthread_mutex_unlock(&x->lock);
	pthread_mutex_lock(&eng->lock);
	eng->count--;
	pthread_mutex_unlock(&eng->lock);
	eng->nactive--;
}

void *xfer_engine_main(void *arg)
{
	struct xfer_engine *eng = arg;
	eng->started_us = now_us();
	for (;;) {
		pthread_mutex_lock(&eng->lock);
		struct xfer *q = eng->queue_head;
		eng->queue_head = eng->queue_tail = NULL;
		int stopping = eng->stopping;
		pthread_mutex_unlock(&eng->lock);
		while (q) {
			struct xfer *nx = q->next;
			xfer_activate(eng, q);
			q = nx;
		}
		if (eng->cfg.limit_rate)
			rate_refill(eng, now_ms());
		int running = 0;
		curl_multi_perform(eng->multi, &running);
		/* Nothing accepted waits past the return: not the hasher, and not a request's end.
		 */
		xfer_flush_all(eng);
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(eng->multi, &left))) {
			if (m->msg != CURLMSG_DONE)
				continue;
			char *priv = NULL;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
			struct xconn *c = (struct xconn *)(void *)priv;
			if (c && c->st == C_RUNNING)
				xconn_done(c->x, c, m->data.result);
		}
		int64_t now = now_ms();
		int64_t deadline = now + PROGRESS_MS;
		struct xfer **pp = &eng->active;
		while (*pp) {
			struct xfer *x = *pp;
			if (stopping)
				xfer_end(x, NET_CANCELLED, ERR_CANCELLED,
					 "transfer of %s cancelled: shutting down", x->dest);
			xfer_service(x, now, &deadline);
			if (x->ended) {
				*pp = x->next;
				xfer_detach(eng, x);
			} else {
				pp = &x->next;
			}
		}
		if (stopping && !eng->active)
			break;
		if (eng->npaused > 0 && deadline > now + RATE_PAUSED_POLL_MS)
			deadline = now + RATE_PAUSED_POLL_MS;
		int timeout = deadline > now ? (int)(deadline - now) : 0;
		int64_t wait_from = eng->npaused ? 0 : now_us();
		curl_multi_poll(eng->multi, NULL, 0, timeout, NULL);
		if (wait_from)
			eng->net_wait_us += now_us() - wait_from;
	}
	return NULL;
}
