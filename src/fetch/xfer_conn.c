/*
 * The connection state machine of the transfer engine, on the transfer
 * thread: each hop's URL judged by the URL policy, requests started on
 * their piece of the plan, and each answer's end turned into the next
 * step (next piece, retry with backoff, redirect, URL refresh after 403,
 * restart as one whole-file request, or the end of the transfer).
 */
#include "fetch/xfer_internal.h"

#include <assert.h>
#include <errno.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"

/* URLs: the policy of core/url.h */

/*
 * Sets x->url after checking it as a hop from `from` (the previous URL, or
 * the origin; NULL for the origin itself), and whether the token may go
 * with it.
 */
int xfer_set_url(struct xfer *x, const char *url, const struct url_parts *from, struct err *e)
{
	struct url_parts p;
	int rc = url_parse(url, &p, e);
	if (rc == 0)
		rc = url_check_scheme(&p, e);
	if (rc == 0 && from && !url_same_origin(from, &p))
		rc = url_check_redirect(from, &p, x->base, e);
	if (rc < 0)
		return rc;
	free(x->url);
	x->url = xstrdup(url);
	x->cur = p;
	x->url_gen++;
	int at_origin = url_same_origin(&p, &x->origin);
	x->url_auth = x->token && at_origin;
	/* Through a proxy the peer is the proxy: its address says nothing of the target. */
	x->peer_check = !at_origin && !url_proxy_configured();
	return 0;
}

const char *xfer_host_for_log(const struct xfer *x, char *buf, size_t size)
{
	snprintf(buf, size, "%s", x->cur.host);
	return buf;
}

/* Forget everything written: the next bytes start a new generation at 0. */
/* The file starts over; every connection is stopped first, so no batch holds its old bytes. */
static void restart_from_zero(struct xfer *x)
{
	ranges_clear(&x->done);
	for (int i = 0; i < x->npeers; i++)
		ranges_clear(&x->peers[i].got);
	x->published_prefix = 0;
	pthread_mutex_lock(&x->lock);
	x->prefix = 0;
	x->gen++;
	pthread_cond_signal(&x->cond);
	pthread_mutex_unlock(&x->lock);
	atomic_store(&x->a_done, 0);
	xfer_post_snapshot(x);
}

void xfer_end(struct xfer *x, enum net_state st, int code, const char *fmt, ...)
{
	if (x->ended)
		return;
	x->ended = 1;
	x->end_state = st;
	err_clear(&x->end_err);
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		char msg[ERR_MSG_MAX];
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		err_set(&x->end_err, code, "%s", msg);
	}
}

/* Connection control (transfer thread) */

int xfer_busy(const struct xfer *x)
{
	int n = 0;
	for (int i = 0; i < x->nconn; i++)
		n += x->conns[i].st != C_IDLE;
	return n;
}

int xfer_busy_url(const struct xfer *x)
{
	int n = 0;
	for (int i = 0; i < x->nconn; i++)
		n += x->conns[i].st != C_IDLE && x->conns[i].src < 0;
	return n;
}

int xfer_url_room(const struct xfer *x)
{
	return xfer_busy_url(x) < (x->ramp_on ? x->ramp.want : 1);
}

void xfer_set_rcvbuf(struct xfer *x, int fd)
{
	if (x->rcvbuf > 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &x->rcvbuf, sizeof(x->rcvbuf)) != 0)
		log_msg(LOG_DEBUG, x->log_id, "SO_RCVBUF for %s: %s", x->dest, strerror(errno));
}

/* 1 when RCVBUF_CLIENT_BOUND carries RCVBUF_BDP_FACTOR times rate (bytes/s) over fd's path. */
static int rcvbuf_fits(int fd, double rate)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
	    len < offsetof(struct tcp_info, tcpi_min_rtt) + sizeof(ti.tcpi_min_rtt) ||
	    ti.tcpi_min_rtt == 0)
		return 0; /* not known: the kernel's buffer stays */
	return RCVBUF_BDP_FACTOR * rate * ti.tcpi_min_rtt / 1e6 <= RCVBUF_CLIENT_BOUND;
}

/*
 * At the end of a request of c on the URL, once the ramp found the client
 * the bottleneck: gives c's socket RCVBUF_CLIENT_BOUND where its path
 * allows, and every socket the transfer opens after that too. libcurl
 * names a transfer's socket only once a request on it has ended, and only
 * until the handle leaves the multi handle, which may close the socket:
 * so before xconn_stop.
 */
static void conn_bound_rcvbuf(struct xfer *x, struct xconn *c)
{
	curl_socket_t fd = CURL_SOCKET_BAD;
	if (!x->ramp.client_bound || c->src >= 0 || c->rcv_judged ||
	    curl_easy_getinfo(c->h, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK ||
	    fd == CURL_SOCKET_BAD)
		return;
	c->rcv_judged = 1;
	if (!rcvbuf_fits(fd, x->ramp.rate / x->ramp.want))
		return; /* a path too long for it: the kernel's buffer stays */
	if (!x->rcvbuf)
		log_msg(LOG_DEBUG, x->log_id, "transfer of %s: receive buffers of %d KiB", x->dest,
			RCVBUF_CLIENT_BOUND / 1024);
	x->rcvbuf = RCVBUF_CLIENT_BOUND;
	xfer_set_rcvbuf(x, fd);
}

void xconn_stop(struct xconn *c)
{
	xconn_flush(c); /* what it accepted is written before its request is gone */
	if (c->st == C_RUNNING)
		curl_multi_remove_handle(c->x->eng->multi, c->h);
	if (c->paused)
		c->x->eng->npaused--;
	c->paused = 0;
	c->st = C_IDLE;
}

/*
 * Starts a request for c: its own segment, or new work from the plan (which
 * may steal half of another connection's range). Leaves c idle when there is
 * nothing worth taking.
 */
void xconn_start(struct xfer *x, struct xconn *c)
{
	struct xfer_engine *eng = x->eng;
	char range[64];
	c->ranged = 0;
	c->wait_url = 0;
	if (x->size_known && !x->no_range) {
		if (c->seg < 0) {
			c->src = -1;
			c->seg = x->npeers ? xfer_peer_take(x, c)
					   : xfer_plan_take(&x->plan, c->idx, NULL);
		}
		if (c->seg < 0) {
			c->st = C_IDLE;
			return;
		}
		/* A connection's slot is one it owns: taking, stealing and finishing keep that. */
		assert((size_t)c->seg < x->plan.n && x->plan.s[c->seg].owner == c->idx);
		const struct xfer_seg *s = &x->plan.s[c->seg];
		c->ranged = 1;
		c->req_start = s->pos;
		c->req_last = s->end - 1;
		snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)c->req_start,
			 (unsigned long long)c->req_last);
	} else {
		/* Whole-file mode: one connection from byte 0. */
		c->seg = -1;
		c->src = -1;
		c->pos = 0;
		restart_from_zero(x);
	}
	if (!c->h)
		c->h = curl_easy_init();
	if (!c->h) {
		xfer_end(x, NET_FAILED, ERR_NOMEM, "cannot create a libcurl handle");
		return;
	}
	CURL *h = c->h;
	curl_easy_reset(h);
	/* A peer is asked for the bytes it holds, without the token; the owner named it. */
	const struct xpeer *peer = c->src >= 0 ? &x->peers[c->src] : NULL;
	curl_easy_setopt(h, CURLOPT_URL, peer ? peer->bytes_url : x->url);
	curl_easy_setopt(h, CURLOPT_PRIVATE, c);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, xconn_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, xconn_opensocket);
	curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, c);
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_BUFFERSIZE, (long)CURL_BUFFER);
	curl_easy_setopt(h, CURLOPT_USERAGENT, eng->user_agent);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)eng->cfg.stall_timeout_s);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
			 (long)(peer && eng->cfg.stall_timeout_s > PEER_STALL_S
				    ? PEER_STALL_S
				    : eng->cfg.stall_timeout_s));
	if (peer)
		curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	if (eng->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, eng->ca_file);
	if (c->ranged)
		curl_easy_setopt(h, CURLOPT_RANGE, range);
	/*
	 * The token goes through libcurl's bearer auth, never a raw header, and
	 * only when this URL is at the origin (scheme, host and port): redirects
	 * are followed here, one hop at a time, so each hop is judged on its own.
	 */
	if (x->url_auth && !peer && x->basic) {
		curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(h, CURLOPT_USERPWD, x->token);
	} else if (x->url_auth && !peer && x->aws_sigv4) {
		curl_easy_setopt(h, CURLOPT_AWS_SIGV4, x->aws_sigv4);
		curl_easy_setopt(h, CURLOPT_USERPWD, x->token);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->aws_headers);
	} else if (x->url_auth && !peer) {
		curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
		curl_easy_setopt(h, CURLOPT_XOAUTH2_BEARER, x->token);
	}
	c->url_gen = x->url_gen;
	c->checked = c->discard = c->hit_end = c->restart200 = c->bad_range = 0;
	c->io_errno = c->too_many_ranges = c->fail_code = 0;
	c->fail_msg[0] = '\0';
	c->discarded = 0;
	c->why[0] = c->errbuf[0] = '\0';
	if (curl_multi_add_handle(eng->multi, h) != CURLM_OK) {
		xfer_end(x, NET_FAILED, ERR_INTERNAL, "cannot add a transfer to libcurl");
		return;
	}
	c->st = C_RUNNING;
}

static long backoff_ms(const struct xfer_config *cfg, int fails)
{
	long d = cfg->retry_base_ms;
	for (int i = 1; i < fails && d < cfg->retry_max_ms; i++)
		d *= 2;
	if (d > cfg->retry_max_ms)
		d = cfg->retry_max_ms;
	/* Jitter of up to a half, so that connections do not retry in step. */
	return d / 2 + (long)(((uint64_t)rand() % (uint64_t)(d / 2 + 1)));
}

static void conn_retry(struct xfer *x, struct xconn *c, const char *why)
{
	const struct xfer_config *cfg = &x->eng->cfg;
	char host[256];
	c->fails++;
	if (c->fails > x->max_retries) {
		xfer_end(x, NET_FAILED, ERR_NETWORK, "%s from %s: gave up after %d tries", why,
			 xfer_host_for_log(x, host, sizeof(host)), c->fails);
		return;
	}
	long delay = backoff_ms(cfg, c->fails);
	curl_off_t ra = 0;
	if (curl_easy_getinfo(c->h, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0) {
		long ra_ms =
		    ra > cfg->retry_after_max_ms / 1000 ? cfg->retry_after_max_ms : (long)ra * 1000;
		if (ra_ms > delay)
			delay = ra_ms;
	}
	log_msg(LOG_INFO, x->log_id, "transfer of %s: %s from %s; retry %d in %ld ms", x->dest, why,
		xfer_host_for_log(x, host, sizeof(host)), c->fails, delay);
	c->st = C_WAIT;
	c->retry_at = now_ms() + delay;
}

static void conn_redirect(struct xfer *x, struct xconn *c, long code)
{
	char *loc = NULL;
	struct err e;
	curl_easy_getinfo(c->h, CURLINFO_REDIRECT_URL, &loc);
	if (!loc) {
		xfer_end(x, NET_FAILED, ERR_NETWORK, "HTTP %ld without a Location", code);
		return;
	}
	if (++x->redirects > CAP_XFER_REDIRECTS) {
		xfer_end(x, NET_FAILED, ERR_NETWORK, "more than %d redirects", CAP_XFER_REDIRECTS);
		return;
	}
	char *copy = xstrdup(loc); /* loc lives in the handle, which xconn_start resets */
	struct url_parts from = x->cur;
	err_clear(&e);
	if (xfer_set_url(x, copy, &from, &e) < 0) {
		xfer_end(x, NET_FAILED, e.code, "redirect refused: %s", e.msg);
		free(copy);
		return;
	}
	free(copy);
	xconn_start(x, c);
}

static void conn_forbidden(struct xfer *x, struct xconn *c)
{
	char host[256];
	if (c->url_gen != x->url_gen) {
		xconn_start(x, c); /* the URL was refreshed since this request left */
		return;
	}
	if (!x->refresh_fn) {
		xfer_end(x, NET_FAILED, ERR_FORBIDDEN, "HTTP 403 from %s",
			 xfer_host_for_log(x, host, sizeof(host)));
		return;
	}
	c->st = C_WAIT;
	c->wait_url = 1;
	c->retry_at = INT64_MAX;
	if (x->refreshing)
		return;
	if (x->written == x->written_at_refresh && x->refreshes >= CAP_XFER_REFRESHES) {
		xfer_end(x, NET_FAILED, ERR_FORBIDDEN,
			 "HTTP 403 from %s after %d URL refreshes without progress",
			 xfer_host_for_log(x, host, sizeof(host)), x->refreshes);
		return;
	}
	if (x->written != x->written_at_refresh)
		x->refreshes = 0;
	x->refreshes++;
	x->written_at_refresh = x->written;
	x->refreshing = 1;
	log_msg(LOG_INFO, x->log_id, "transfer of %s: HTTP 403 from %s, resolving the URL again",
		x->dest, xfer_host_for_log(x, host, sizeof(host)));
	pthread_mutex_lock(&x->lock);
	x->refresh_want = 1;
	pthread_cond_signal(&x->cond);
	pthread_mutex_unlock(&x->lock);
}

/* The 200-to-Range case: drop every range, go on with one whole-file request. */
static void xfer_restart_whole(struct xfer *x, struct xconn *c)
{
	log_msg(LOG_WARN, x->log_id,
		"transfer of %s: server ignored Range (200); starting the file over", x->dest);
	for (int i = 0; i < x->nconn; i++) {
		xconn_stop(&x->conns[i]);
		x->conns[i].seg = -1;
	}
	x->plan.n = 0;
	x->no_range = 1;
	xconn_start(x, c);
}

void xconn_done(struct xfer *x, struct xconn *c, CURLcode res)
{
	long code = 0;
	curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &code);
	conn_bound_rcvbuf(x, c);
	xconn_stop(c);
	if (x->ended || atomic_load(&x->cancel_req))
		return;
	if (c->src >= 0 && !c->io_errno && !c->too_many_ranges) {
		/* A peer gives exactly the bytes asked, or is dropped and its piece returns. */
		const struct xfer_seg *s = c->seg >= 0 ? &x->plan.s[c->seg] : NULL;
		int whole = code == 206 && (res == CURLE_OK || c->hit_end) && !c->fail_code &&
			    !c->bad_range && s && (c->hit_end || s->pos >= s->end);
		if (!whole) {
			char why[200];
			snprintf(why, sizeof(why), "%s",
				 c->fail_code	? c->fail_msg
				 : c->bad_range ? c->why
				 : res != CURLE_OK
				     ? (c->errbuf[0] ? c->errbuf : curl_easy_strerror(res))
				 : code != 206 ? "not a 206 answer"
					       : "the answer ended before the range");
			if (code != 206 && res == CURLE_OK)
				snprintf(why, sizeof(why), "HTTP %ld", code);
			xfer_peer_fail(x, c, why);
			x->url_room = xfer_url_room(x);
			xconn_start(x, c);
			return;
		}
		x->peers[c->src].conns--;
		c->src = -1;
	}
	if (c->fail_code) {
		xfer_end(x, NET_FAILED, c->fail_code, "%s", c->fail_msg);
		return;
	}
	if (c->io_errno) {
		xfer_end(x, NET_FAILED, c->io_errno == ENOSPC ? ERR_NOSPACE : ERR_IO,
			 "write %s: %s", x->dest, strerror(c->io_errno));
		return;
	}
	if (c->too_many_ranges) {
		xfer_end(x, NET_FAILED, ERR_TOO_LARGE, "%s: more than %d separate done ranges",
			 x->dest, CAP_XFER_RANGES);
		return;
	}
	if (c->restart200) {
		xfer_restart_whole(x, c);
		return;
	}
	if (c->bad_range) {
		conn_retry(x, c, c->why);
		return;
	}
	if (code >= 300 && code < 400) {
		conn_redirect(x, c, code);
		return;
	}
	if ((code == 200 || code == 206) && (res == CURLE_OK || c->hit_end)) {
		if (c->seg >= 0) {
			assert((size_t)c->seg < x->plan.n && x->plan.s[c->seg].owner == c->idx);
			const struct xfer_seg *s = &x->plan.s[c->seg];
			if (s->pos < s->end) {
				conn_retry(x, c, "connection closed before the range ended");
				return;
			}
			xfer_plan_finish(&x->plan, c->seg);
			c->seg = -1;
			/* Past what the ramp allows (it went back): this one rests. */
			if (x->npeers)
				x->url_room = xfer_url_room(x);
			else if (x->ramp_on && xfer_busy(x) >= x->ramp.want)
				return;
			xconn_start(x, c);
			return;
		}
		if (!x->size_known) {
			x->total = c->pos;
			xfer_end(x, NET_DONE, 0, NULL);
		} else if (c->pos < x->total) {
			conn_retry(x, c, "connection closed before the file ended");
		}
		return;
	}
	char why[200];
	if (code >= 400) {
		snprintf(why, sizeof(why), "HTTP %ld", code);
		if (code == 403) {
			conn_forbidden(x, c);
		} else if (code == 408 || code == 429 || code >= 500) {
			conn_retry(x, c, why);
		} else if (code == 416) {
			x->discard_partial = 1;
			xfer_end(x, NET_FAILED, ERR_NETWORK,
				 "HTTP 416 for bytes %llu-%llu: the remote file no longer matches "
				 "the partial; partial discarded",
				 (unsigned long long)c->req_start, (unsigned long long)c->req_last);
		} else {
			char host[256];
			int ecode = code == 404 || code == 410 ? ERR_NOT_FOUND
				    : code == 401	       ? ERR_UNAUTHORIZED
							       : ERR_NETWORK;
			xfer_end(x, NET_FAILED, ecode, "HTTP %ld from %s", code,
				 xfer_host_for_log(x, host, sizeof(host)));
		}
		return;
	}
	snprintf(why, sizeof(why), "%s",
		 c->errbuf[0]	   ? c->errbuf
		 : res != CURLE_OK ? curl_easy_strerror(res)
				   : "unexpected answer");
	if (code > 0 && code < 200) /* 1xx as a final answer: a broken server */
		snprintf(why, sizeof(why), "unexpected HTTP %ld", code);
	conn_retry(x, c, why);
}
