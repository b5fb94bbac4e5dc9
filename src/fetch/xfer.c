/*
 * The transfer engine. See xfer.h for the threads and who owns what.
 *
 * Locks: eng->lock guards the engine's queue, count and stopping flag.
 * x->lock guards the hand-off fields between the transfer thread and the
 * transfer's helper thread (the block marked "x->lock" in struct xfer) and
 * the result fields read by xfer_wait/xfer_result. No lock is held across
 * libcurl, disk or callback calls, except that curl_multi_wakeup (a write on
 * a socketpair) is called under x->lock so that it cannot race the engine's
 * exit. Progress counters are atomics written by the transfer thread only.
 */
#include "fetch/xfer.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "core/cancel.h"
#include "core/caps.h"
#include "core/gitblob.h"
#include "core/log.h"
#include "core/url.h"
#include "core/sha256.h"
#include "core/util.h"

#define HASH_CHUNK (512 * 1024)
#define PREFIX_PUBLISH_STEP (1024 * 1024)
#define DISCARD_BODY_MAX (64 * 1024)
#define CURL_BUFFER (128 * 1024)
#define PROGRESS_MS 250
/* The helper starts writeback of the hashed prefix in steps of this size, so
 * the fdatasync before a resume save has little left to do. */
#define WRITEBACK_STEP (4u << 20)

enum conn_state { C_IDLE = 0, C_RUNNING, C_WAIT };

enum net_state { NET_RUNNING = 0, NET_DONE, NET_FAILED, NET_CANCELLED };

struct xfer;

/* One connection slot of a transfer; owned by the transfer thread. */
struct xconn {
	struct xfer *x;
	int idx;
	CURL *h;
	enum conn_state st;
	int seg;           /* plan slot, or -1 in whole-file mode */
	uint64_t pos;      /* next byte in whole-file mode */
	int ranged;        /* the request carried a Range */
	uint64_t req_start;
	uint64_t req_last;
	int url_gen;       /* x->url_gen this request used */
	int wait_url;      /* C_WAIT until a refreshed URL arrives */
	int paused;        /* paused by the rate cap */
	int64_t retry_at;
	int fails;         /* consecutive failures without progress */
	/* set by the write callback for the current request */
	int checked;
	int discard;
	uint64_t discarded;
	int hit_end;
	int restart200;
	int bad_range;
	int io_errno;
	int too_many_ranges;
	int fail_code; /* the answer ends the whole transfer with fail_msg */
	char fail_msg[ERR_MSG_MAX];
	char why[160];
	char errbuf[CURL_ERROR_SIZE];
};

struct xfer {
	struct xfer_engine *eng;
	struct xfer *next; /* engine queue, then active list */

	/* Immutable after xfer_start. */
	struct url_parts origin;
	enum url_net base; /* the class of the origin's address: no hop may go further in */
	char *token;
	char *dest; /* the label of the partial, for messages */
	char *name; /* the partial in dir_fd */
	int dir_fd;
	char *rename_to;
	int rename_sha;
	char *log_id;
	char key[4096];
	char want_sha[SHA256_HEX_LEN + 1];
	char want_git[GITBLOB_HEX_LEN + 1];
	int size_known;
	uint64_t limit; /* bytes accepted in whole-file mode */
	struct xfer_resume_ops resume;
	int has_resume;
	xfer_refresh_fn refresh_fn;
	void *refresh_arg;
	xfer_progress_fn progress_fn;
	void *progress_arg;
	struct cancel_token *cancel;
	int watch;
	int fd;
	int nconn;

	/* Transfer thread only. */
	char *url;
	struct url_parts cur; /* url's origin */
	int url_gen;
	int url_auth;   /* the current URL is at the origin: the token goes along */
	int peer_check; /* the current URL is elsewhere: its address is checked on connect */
	int url_settled;
	int redirects;
	uint64_t total;
	struct xconn *conns;
	struct xfer_rangeset done;
	struct xfer_plan plan;
	int no_range;
	int refreshing;
	int refreshes;
	uint64_t written_at_refresh;
	uint64_t written; /* monotonic bytes written, for rate and flushes */
	uint64_t flushed_written;
	int64_t flush_at;
	uint64_t published_prefix;
	int64_t rate_at;
	uint64_t rate_written;
	double rate;
	int64_t progress_at;
	int ended;
	enum net_state end_state;
	struct err end_err;
	int discard_partial;

	/* Progress snapshot: written by the transfer and helper threads, read by anyone. */
	_Atomic uint64_t a_done;
	_Atomic uint64_t a_total;
	_Atomic uint64_t a_hashed;
	_Atomic uint64_t a_rate;
	atomic_int a_conns;
	atomic_int a_finished;
	atomic_int cancel_req;
	atomic_int purge_req;
	atomic_int refresh_done;

	/* x->lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;      /* wakes the helper */
	pthread_cond_t done_cond; /* wakes xfer_wait */
	uint64_t prefix;
	unsigned gen;
	int eng_gone;
	enum net_state net;
	struct err net_err;
	uint64_t final_total;
	int discard_req;
	struct xfer_range *snap;
	size_t snap_n;
	int snap_pending;
	int refresh_want;
	int refresh_rc;
	struct err refresh_err;
	char refresh_url[CAP_URL_LEN];
	int finished;
	int result;
	struct err res_err;
	char got_sha[SHA256_HEX_LEN + 1];

	pthread_t helper;
	int helper_started;
};

struct xfer_engine {
	struct xfer_config cfg;
	char *user_agent;
	char *ca_file;
	CURLM *multi;
	pthread_t thread;
	int thread_started;

	pthread_mutex_t lock; /* guards queue_head, queue_tail, count, stopping */
	struct xfer *queue_head;
	struct xfer *queue_tail;
	int count;
	int stopping;

	/* Transfer thread only. */
	struct xfer *active;
	int nactive;
	/* The rate cap: a token bucket over every connection of the engine. */
	double tokens;
	int64_t tokens_at;
	int npaused;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* URLs: the policy of core/url.h */

/*
 * Sets x->url after checking it as a hop from `from` (the previous URL, or
 * the origin; NULL for the origin itself), and whether the token may go
 * with it.
 */
static int xfer_set_url(struct xfer *x, const char *url, const struct url_parts *from,
			struct err *e)
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

static const char *xfer_host_for_log(const struct xfer *x, char *buf, size_t size)
{
	snprintf(buf, size, "%s", x->cur.host);
	return buf;
}

/* Hand-offs to the helper thread (transfer thread side) */

static void publish_prefix(struct xfer *x, int force)
{
	uint64_t p = xfer_ranges_prefix(&x->done);
	if (!force && p < x->published_prefix + PREFIX_PUBLISH_STEP &&
	    !(x->size_known && p == x->total))
		return;
	if (p == x->published_prefix && !force)
		return;
	x->published_prefix = p;
	pthread_mutex_lock(&x->lock);
	x->prefix = p;
	pthread_cond_signal(&x->cond);
	pthread_mutex_unlock(&x->lock);
}

/* Snapshot of the done ranges for the helper to fdatasync and save. */
static void post_snapshot(struct xfer *x)
{
	if (!x->has_resume || !x->size_known)
		return;
	pthread_mutex_lock(&x->lock);
	memcpy(x->snap, x->done.r, x->done.n * sizeof(*x->snap));
	x->snap_n = x->done.n;
	x->snap_pending = 1;
	pthread_cond_signal(&x->cond);
	pthread_mutex_unlock(&x->lock);
	x->flushed_written = x->written;
	x->flush_at = now_ms() + x->eng->cfg.flush_ms;
}

/* Forget everything written: the next bytes start a new generation at 0. */
static void restart_from_zero(struct xfer *x)
{
	xfer_ranges_clear(&x->done);
	x->published_prefix = 0;
	pthread_mutex_lock(&x->lock);
	x->prefix = 0;
	x->gen++;
	pthread_cond_signal(&x->cond);
	pthread_mutex_unlock(&x->lock);
	atomic_store(&x->a_done, 0);
	post_snapshot(x);
}

static void xfer_end(struct xfer *x, enum net_state st, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void xfer_end(struct xfer *x, enum net_state st, int code, const char *fmt, ...)
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

/* Write path (transfer thread, inside curl_multi_perform) */

/*
 * A whole-file answer's announced length, before its first byte: it must be
 * the expected size, or for a file of unknown size fit the cap and the disk.
 * Returns 1 to go on; 0 with c->fail_code set.
 */
static int conn_check_length(struct xconn *c)
{
	struct xfer *x = c->x;
	curl_off_t cl = -1;
	char host[256];
	if (curl_easy_getinfo(c->h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) != CURLE_OK || cl < 0)
		return 1;
	xfer_host_for_log(x, host, sizeof(host));
	if (x->size_known && (uint64_t)cl != x->total) {
		c->fail_code = ERR_DIGEST;
		snprintf(c->fail_msg, sizeof(c->fail_msg),
			 "%s announces %lld bytes for %s, expected %llu", host, (long long)cl, x->dest,
			 (unsigned long long)x->total);
		return 0;
	}
	if (x->size_known)
		return 1;
	if ((uint64_t)cl > x->limit) {
		c->fail_code = ERR_TOO_LARGE;
		snprintf(c->fail_msg, sizeof(c->fail_msg),
			 "%s announces %lld bytes, more than the %llu allowed for a size not "
			 "known in advance (serve --max-unknown-size), for %s",
			 host, (long long)cl, (unsigned long long)x->limit, x->dest);
		return 0;
	}
	struct statvfs vfs;
	if (fstatvfs(x->fd, &vfs) == 0 &&
	    (uint64_t)cl > (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize) {
		c->fail_code = ERR_NOSPACE;
		snprintf(c->fail_msg, sizeof(c->fail_msg),
			 "not enough free space for %s: %s announces %lld bytes, %llu available",
			 x->dest, host, (long long)cl,
			 (unsigned long long)vfs.f_bavail * (unsigned long long)vfs.f_frsize);
		return 0;
	}
	return 1;
}

/* Judges the response before its first body byte is accepted. Returns 1 to accept. */
static int conn_check(struct xconn *c)
{
	struct xfer *x = c->x;
	long code = 0;
	curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &code);
	c->checked = 1;
	if (code == 206) {
		struct curl_header *hd = NULL;
		struct xfer_content_range cr;
		struct err ce;
		if (!c->ranged) {
			snprintf(c->why, sizeof(c->why), "206 answer to a request without Range");
			c->bad_range = 1;
			return 0;
		}
		if (curl_easy_header(c->h, "Content-Range", 0, CURLH_HEADER, -1, &hd) != CURLHE_OK) {
			snprintf(c->why, sizeof(c->why), "206 without a Content-Range");
			c->bad_range = 1;
			return 0;
		}
		err_clear(&ce);
		if (xfer_content_range_parse(hd->value, strlen(hd->value), &cr, &ce) < 0 ||
		    !cr.satisfied) {
			snprintf(c->why, sizeof(c->why), "206 with an invalid %s",
				 ce.code ? err_msg(&ce) : "Content-Range: no range, only a total");
			c->bad_range = 1;
			return 0;
		}
		if (cr.first != c->req_start || cr.last > c->req_last ||
		    (cr.total_known && cr.total != x->total)) {
			char total[24] = "*";
			if (cr.total_known)
				snprintf(total, sizeof(total), "%llu", (unsigned long long)cr.total);
			snprintf(c->why, sizeof(c->why),
				 "Content-Range %llu-%llu/%s does not match the request "
				 "bytes=%llu-%llu of %llu",
				 (unsigned long long)cr.first, (unsigned long long)cr.last, total,
				 (unsigned long long)c->req_start, (unsigned long long)c->req_last,
				 (unsigned long long)x->total);
			c->bad_range = 1;
			return 0;
		}
		x->url_settled = 1;
		return 1;
	}
	if (code == 200) {
		if (c->ranged) {
			/* The server ignored Range: start this file over from 0. */
			c->restart200 = 1;
			return 0;
		}
		if (!conn_check_length(c))
			return 0;
		x->url_settled = 1;
		return 1;
	}
	c->discard = 1;
	return 1;
}

static size_t conn_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct xconn *c = arg;
	struct xfer *x = c->x;
	size_t n = size * nmemb;
	if (atomic_load_explicit(&x->cancel_req, memory_order_relaxed) || x->ended)
		return 0;
	if (!c->checked && !conn_check(c))
		return 0;
	if (c->discard) {
		c->discarded += n;
		return c->discarded > DISCARD_BODY_MAX ? 0 : n;
	}
	if (x->eng->cfg.limit_rate) {
		/* Out of tokens: libcurl keeps this chunk and stops reading the socket. */
		if (x->eng->tokens <= 0) {
			c->paused = 1;
			x->eng->npaused++;
			return CURL_WRITEFUNC_PAUSE;
		}
		x->eng->tokens -= (double)n;
	}
	uint64_t pos, end;
	if (c->seg >= 0) {
		pos = x->plan.s[c->seg].pos;
		end = x->plan.s[c->seg].end;
	} else {
		pos = c->pos;
		end = x->size_known ? x->total : x->limit;
	}
	size_t w = n;
	if (end <= pos)
		w = 0;
	else if ((uint64_t)w > end - pos)
		w = (size_t)(end - pos);
	size_t off = 0;
	while (off < w) {
		ssize_t r = pwrite(x->fd, data + off, w - off, (off_t)(pos + off));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			c->io_errno = r < 0 ? errno : EIO;
			return 0;
		}
		off += (size_t)r;
	}
	if (w > 0) {
		if (xfer_ranges_add(&x->done, pos, pos + w) < 0) {
			c->too_many_ranges = 1;
			return 0;
		}
		if (c->seg >= 0)
			x->plan.s[c->seg].pos = pos + w;
		else
			c->pos = pos + w;
		x->written += w;
		c->fails = 0;
		atomic_store_explicit(&x->a_done, x->done.bytes, memory_order_relaxed);
		/*
		 * Hand-offs from here, not only from the loop: at loopback speed
		 * one curl_multi_perform can move tens of MiB per connection, and
		 * the hasher and the resume saves must not wait for it to return.
		 */
		publish_prefix(x, 0);
		if (x->written - x->flushed_written >= x->eng->cfg.flush_bytes)
			post_snapshot(x);
	}
	if (w < n && c->seg < 0) {
		/* Past the whole file: the server's file is not the one expected. */
		char host[256];
		xfer_host_for_log(x, host, sizeof(host));
		c->fail_code = x->size_known ? ERR_DIGEST : ERR_TOO_LARGE;
		if (x->size_known)
			snprintf(c->fail_msg, sizeof(c->fail_msg),
				 "%s sent more than the expected %llu bytes for %s", host,
				 (unsigned long long)x->total, x->dest);
		else
			snprintf(c->fail_msg, sizeof(c->fail_msg),
				 "%s sent more than %llu bytes, the most for a size not known in "
				 "advance (serve --max-unknown-size), for %s",
				 host, (unsigned long long)x->limit, x->dest);
		return 0;
	}
	if (w < n) {
		c->hit_end = 1; /* the range was stolen or shortened: this request is done */
		return 0;
	}
	return n;
}

/*
 * Opens the socket of a new connection, after checking the address the
 * name resolved to: a hop away from the origin may not reach an address more
 * internal than the origin's (a public Hub redirecting into this machine or
 * its network). Runs on the transfer thread, inside libcurl.
 */
static curl_socket_t conn_opensocket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct xconn *c = arg;
	struct xfer *x = c->x;
	struct err e;
	err_clear(&e);
	if (!x->peer_check)
		return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	curl_socket_t fd = url_open_checked_socket((int)purpose, a, x->base, x->cur.host, &e);
	if (fd == CURL_SOCKET_BAD && e.code == ERR_FORBIDDEN) {
		c->fail_code = e.code;
		snprintf(c->fail_msg, sizeof(c->fail_msg), "%s", e.msg);
	}
	return fd;
}

/* Connection control (transfer thread) */

static void conn_stop(struct xconn *c)
{
	if (c->st == C_RUNNING)
		curl_multi_remove_handle(c->x->eng->multi, c->h);
	if (c->paused)
		c->x->eng->npaused--;
	c->paused = 0;
	c->st = C_IDLE;
}

/*
 * Refills the bucket (at most a tenth of a second's worth, so a pause
 * cannot be followed by a burst) and resumes paused connections while
 * tokens last. Unpausing may run the write callback at once.
 */
static void rate_refill(struct xfer_engine *eng, int64_t now)
{
	double limit = (double)eng->cfg.limit_rate;
	double cap = limit / 10 > 65536 ? limit / 10 : 65536;
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

/*
 * Starts a request for c: its own segment, or new work from the plan (which
 * may steal half of another connection's range). Leaves c idle when there is
 * nothing worth taking.
 */
static void conn_start(struct xfer *x, struct xconn *c)
{
	struct xfer_engine *eng = x->eng;
	char range[64];
	c->ranged = 0;
	c->wait_url = 0;
	if (x->size_known && !x->no_range) {
		if (c->seg < 0)
			c->seg = xfer_plan_take(&x->plan, c->idx, NULL);
		if (c->seg < 0) {
			c->st = C_IDLE;
			return;
		}
		const struct xfer_seg *s = &x->plan.s[c->seg];
		c->ranged = 1;
		c->req_start = s->pos;
		c->req_last = s->end - 1;
		snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)c->req_start,
			 (unsigned long long)c->req_last);
	} else {
		/* Whole-file mode: one connection from byte 0. */
		c->seg = -1;
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
	curl_easy_setopt(h, CURLOPT_URL, x->url);
	curl_easy_setopt(h, CURLOPT_PRIVATE, c);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, conn_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, conn_opensocket);
	curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, c);
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_BUFFERSIZE, (long)CURL_BUFFER);
	curl_easy_setopt(h, CURLOPT_USERAGENT, eng->user_agent);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)eng->cfg.stall_timeout_s);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)eng->cfg.stall_timeout_s);
	if (eng->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, eng->ca_file);
	if (c->ranged)
		curl_easy_setopt(h, CURLOPT_RANGE, range);
	/*
	 * The token goes through libcurl's bearer auth, never a raw header, and
	 * only when this URL is at the origin (scheme, host and port): redirects
	 * are followed here, one hop at a time, so each hop is judged on its own.
	 */
	if (x->url_auth) {
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
	if (c->fails > cfg->max_retries) {
		xfer_end(x, NET_FAILED, ERR_NETWORK, "%s from %s: gave up after %d tries", why,
			 xfer_host_for_log(x, host, sizeof(host)), c->fails);
		return;
	}
	long delay = backoff_ms(cfg, c->fails);
	curl_off_t ra = 0;
	if (curl_easy_getinfo(c->h, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0) {
		long ra_ms = ra > cfg->retry_after_max_ms / 1000 ? cfg->retry_after_max_ms
								 : (long)ra * 1000;
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
	char *copy = xstrdup(loc); /* loc lives in the handle, which conn_start resets */
	struct url_parts from = x->cur;
	err_clear(&e);
	if (xfer_set_url(x, copy, &from, &e) < 0) {
		xfer_end(x, NET_FAILED, e.code, "redirect refused: %s", e.msg);
		free(copy);
		return;
	}
	free(copy);
	conn_start(x, c);
}

static void conn_forbidden(struct xfer *x, struct xconn *c)
{
	char host[256];
	if (c->url_gen != x->url_gen) {
		conn_start(x, c); /* the URL was refreshed since this request left */
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
		conn_stop(&x->conns[i]);
		x->conns[i].seg = -1;
	}
	x->plan.n = 0;
	x->no_range = 1;
	conn_start(x, c);
}

static void conn_done(struct xfer *x, struct xconn *c, CURLcode res)
{
	long code = 0;
	curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &code);
	conn_stop(c);
	if (x->ended || atomic_load(&x->cancel_req))
		return;
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
			const struct xfer_seg *s = &x->plan.s[c->seg];
			if (s->pos < s->end) {
				conn_retry(x, c, "connection closed before the range ended");
				return;
			}
			xfer_plan_finish(&x->plan, c->seg);
			c->seg = -1;
			conn_start(x, c);
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
		 c->errbuf[0] ? c->errbuf : res != CURLE_OK ? curl_easy_strerror(res)
							    : "unexpected answer");
	if (code > 0 && code < 200) /* 1xx as a final answer: a broken server */
		snprintf(why, sizeof(why), "unexpected HTTP %ld", code);
	conn_retry(x, c, why);
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
	x->published_prefix = xfer_ranges_prefix(&x->done);
	if (x->size_known) {
		if (xfer_plan_reset(&x->plan, &x->done, x->total) < 0) {
			xfer_end(x, NET_FAILED, ERR_TOO_LARGE, "%s: too many missing ranges",
				 x->dest);
			return;
		}
		if (xfer_ranges_complete(&x->done, x->total)) {
			xfer_end(x, NET_DONE, 0, NULL);
			return;
		}
	}
	conn_start(x, &x->conns[0]);
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
				conn_start(x, &x->conns[i]);
		}
	}
	int busy = 0;
	for (int i = 0; i < x->nconn && !x->ended; i++) {
		struct xconn *c = &x->conns[i];
		if (c->st == C_WAIT && !c->wait_url && c->retry_at <= now)
			conn_start(x, c);
		if (c->st == C_WAIT && !c->wait_url && c->retry_at < *next_deadline)
			*next_deadline = c->retry_at;
		busy += c->st != C_IDLE;
	}
	/*
	 * Until the first answer with content, one connection finds the final
	 * URL (redirects) and whether Range works; then the rest join in, each
	 * stealing half of the largest range. Whole-file mode has one
	 * connection, restarted by conn_done only.
	 */
	int ranged = x->size_known && !x->no_range;
	int allowed = ranged && x->url_settled ? x->nconn : 1;
	for (int i = 0; ranged && i < x->nconn && busy < allowed && !x->ended; i++) {
		struct xconn *c = &x->conns[i];
		if (c->st != C_IDLE)
			continue;
		if (xfer_plan_live(&x->plan) == 0)
			break;
		conn_start(x, c);
		if (c->st == C_IDLE)
			break;
		busy++;
	}
	if (x->ended)
		return;
	if (x->size_known && xfer_ranges_complete(&x->done, x->total) && !whole_file_open(x)) {
		xfer_end(x, NET_DONE, 0, NULL);
		return;
	}
	if (busy == 0) {
		xfer_end(x, NET_FAILED, ERR_INTERNAL, "%s: transfer stalled with no work planned",
			 x->dest);
		return;
	}
	publish_prefix(x, 0);
	if (x->written - x->flushed_written >= eng->cfg.flush_bytes ||
	    (now >= x->flush_at && x->written != x->flushed_written))
		post_snapshot(x);
	if (x->flush_at < *next_deadline)
		*next_deadline = x->flush_at;
	atomic_store(&x->a_done, x->done.bytes);
	atomic_store(&x->a_conns, busy);
	if (now - x->rate_at >= PROGRESS_MS) {
		double inst = (double)(x->written - x->rate_written) * 1000.0 /
			      (double)(now - x->rate_at);
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
		conn_stop(&x->conns[i]);
		if (x->conns[i].h)
			curl_easy_cleanup(x->conns[i].h);
		x->conns[i].h = NULL;
	}
	if (x->cancel && x->watch > 0)
		cancel_unwatch(x->cancel, x->watch);
	x->watch = 0;
	atomic_store(&x->a_done, x->done.bytes);
	atomic_store(&x->a_conns, 0);
	atomic_store(&x->a_rate, 0);
	if (x->end_state != NET_DONE && !x->discard_partial)
		post_snapshot(x);
	pthread_mutex_lock(&x->lock);
	x->net = x->end_state;
	x->net_err = x->end_err;
	x->final_total = x->total;
	x->prefix = xfer_ranges_prefix(&x->done);
	x->discard_req = x->discard_partial;
	x->eng_gone = 1;
	pthread_cond_signal(&x->cond);
	pthread_mutex_unlock(&x->lock);
	pthread_mutex_lock(&eng->lock);
	eng->count--;
	pthread_mutex_unlock(&eng->lock);
	eng->nactive--;
}

static void *engine_main(void *arg)
{
	struct xfer_engine *eng = arg;
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
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(eng->multi, &left))) {
			if (m->msg != CURLMSG_DONE)
				continue;
			char *priv = NULL;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
			struct xconn *c = (struct xconn *)(void *)priv;
			if (c && c->st == C_RUNNING)
				conn_done(c->x, c, m->data.result);
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
		if (eng->npaused > 0 && deadline > now + 5)
			deadline = now + 5;
		int timeout = deadline > now ? (int)(deadline - now) : 0;
		curl_multi_poll(eng->multi, NULL, 0, timeout, NULL);
	}
	return NULL;
}

/* Helper thread: hashing, durable flushes, URL refresh, the end */

static int helper_save(struct xfer *x, const struct xfer_range *r, size_t n)
{
	/* The bytes must be on disk before the catalog says they are. */
	if (fdatasync(x->fd) < 0) {
		log_msg(LOG_WARN, x->log_id, "fdatasync %s: %s", x->dest, strerror(errno));
		return ERR_IO;
	}
	return x->resume.save(x->resume.arg, x->key, atomic_load(&x->a_total), r, n);
}

/* Removes the partial's name, unless another file has taken it meanwhile. */
static void remove_partial(struct xfer *x)
{
	if (!same_file_at(x->dir_fd, x->name, x->fd))
		return;
	if (unlinkat(x->dir_fd, x->name, 0) < 0 && errno != ENOENT)
		log_msg(LOG_WARN, x->log_id, "unlink %s: %s", x->dest, strerror(errno));
}

static void helper_discard(struct xfer *x)
{
	remove_partial(x);
	if (x->has_resume)
		x->resume.discard(x->resume.arg, x->key);
}

static void helper_finish(struct xfer *x, struct sha256 *h, struct gitblob *g,
			  uint64_t hashed, int hash_err)
{
	struct err e;
	char sha[SHA256_HEX_LEN + 1] = "";
	int rc = 0;
	err_clear(&e);
	pthread_mutex_lock(&x->lock);
	enum net_state net = x->net;
	struct err net_err = x->net_err;
	uint64_t total = x->final_total;
	int discard = x->discard_req;
	pthread_mutex_unlock(&x->lock);
	int purge = atomic_load(&x->purge_req);

	if (net == NET_DONE) {
		if (hash_err) {
			rc = err_set(&e, ERR_IO, "reading back %s: %s", x->dest, strerror(hash_err));
		} else if (x->size_known && hashed != x->total) {
			rc = err_set(&e, ERR_DIGEST, "size mismatch for %s: expected %llu bytes, got %llu",
				     x->dest, (unsigned long long)x->total,
				     (unsigned long long)hashed);
		} else {
			sha256_final_hex(h, sha);
			if (x->want_sha[0] && strcmp(sha, x->want_sha) != 0)
				rc = err_set(&e, ERR_DIGEST,
					     "sha256 mismatch for %s: expected %s, got %s", x->dest,
					     x->want_sha, sha);
		}
		if (rc == 0 && x->want_git[0]) {
			char git[GITBLOB_HEX_LEN + 1];
			gitblob_final_hex(g, git);
			if (strcmp(git, x->want_git) != 0)
				rc = err_set(&e, ERR_DIGEST,
					     "git blob sha1 mismatch for %s: expected %s, got %s",
					     x->dest, x->want_git, git);
		}
		if (rc == ERR_DIGEST) {
			helper_discard(x);
		} else if (rc == 0) {
			if (!x->size_known && ftruncate(x->fd, (off_t)total) < 0)
				rc = err_set(&e, ERR_IO, "truncate %s: %s", x->dest, strerror(errno));
			if (rc == 0 && fsync(x->fd) < 0)
				rc = err_set(&e, errno == ENOSPC ? ERR_NOSPACE : ERR_IO,
					     "fsync %s: %s", x->dest, strerror(errno));
			if (rc == 0 && (x->rename_to || x->rename_sha))
				rc = rename_open_file_at(x->dir_fd, x->name,
							 x->rename_to ? x->rename_to : sha, x->fd,
							 x->dest, &e);
			if (rc == 0 && x->has_resume) {
				if (x->rename_to || x->rename_sha) {
					x->resume.discard(x->resume.arg, x->key);
				} else {
					struct xfer_range all = {0, total};
					x->resume.save(x->resume.arg, x->key, total, &all, 1);
				}
			}
		}
	} else {
		rc = net_err.code ? net_err.code : ERR_INTERNAL;
		e = net_err;
		if (discard || (net == NET_CANCELLED && purge))
			helper_discard(x);
	}
	pthread_mutex_lock(&x->lock);
	x->result = rc;
	x->res_err = e;
	if (rc == 0)
		memcpy(x->got_sha, sha, sizeof(sha));
	x->finished = 1;
	atomic_store(&x->a_finished, 1);
	pthread_cond_broadcast(&x->done_cond);
	pthread_mutex_unlock(&x->lock);
}

static void *helper_main(void *arg)
{
	struct xfer *x = arg;
	struct sha256 h = {0};
	struct gitblob g = {0};
	sha256_init(&h);
	/* Only files git stores itself (small ones) carry a git id: the hot path hashes once. */
	if (x->want_git[0])
		gitblob_init(&g, x->total);
	unsigned char *buf = xmalloc(HASH_CHUNK);
	uint64_t hashed = 0;
	unsigned gen_seen = 0;
	int hash_err = 0;
	struct xfer_range *snap = xcalloc(CAP_XFER_RANGES, sizeof(*snap));
	uint64_t wb_off = 0; /* writeback started for [0, wb_off) */
	int wb_warned = 0;

	pthread_mutex_lock(&x->lock);
	for (;;) {
		if (x->gen != gen_seen) {
			gen_seen = x->gen;
			sha256_init(&h);
			if (x->want_git[0])
				gitblob_init(&g, x->total);
			hashed = 0;
			wb_off = 0;
			hash_err = 0;
			atomic_store(&x->a_hashed, 0);
		}
		if (x->refresh_want) {
			x->refresh_want = 0;
			pthread_mutex_unlock(&x->lock);
			char url[CAP_URL_LEN];
			struct err e;
			err_clear(&e);
			url[0] = '\0';
			int rc = x->refresh_fn(x->refresh_arg, url, sizeof(url), &e);
			if (rc == 0 && !url[0])
				rc = err_set(&e, ERR_NETWORK, "no URL returned");
			pthread_mutex_lock(&x->lock);
			x->refresh_rc = rc;
			x->refresh_err = e;
			memcpy(x->refresh_url, url, sizeof(url));
			if (!x->eng_gone) {
				atomic_store(&x->refresh_done, 1);
				curl_multi_wakeup(x->eng->multi);
			}
			continue;
		}
		if (x->snap_pending && !x->discard_req && !(x->eng_gone && x->net == NET_CANCELLED &&
							       atomic_load(&x->purge_req))) {
			size_t n = x->snap_n;
			memcpy(snap, x->snap, n * sizeof(*snap));
			x->snap_pending = 0;
			pthread_mutex_unlock(&x->lock);
			if (helper_save(x, snap, n) < 0)
				log_msg(LOG_WARN, x->log_id, "saving resume state of %s failed",
					x->dest);
			pthread_mutex_lock(&x->lock);
			continue;
		}
		if (!x->eng_gone && hashed >= wb_off + WRITEBACK_STEP) {
			/*
			 * Start writeback of the prefix just hashed, without waiting
			 * for it: the next fdatasync then has little left, so resume
			 * saves keep up with a fast transfer, and the final fdatasync
			 * does not write the whole file at the end. One step at a
			 * time: the call can wait while the disk queue is full, and a
			 * cancel must not wait behind hundreds of MiB.
			 */
			uint64_t off = wb_off, len = hashed - wb_off;
			wb_off = hashed;
			pthread_mutex_unlock(&x->lock);
			if (sync_file_range(x->fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE) < 0 &&
			    !wb_warned) {
				wb_warned = 1;
				log_msg(LOG_DEBUG, x->log_id, "sync_file_range %s: %s", x->dest,
					strerror(errno));
			}
			pthread_mutex_lock(&x->lock);
			continue;
		}
		/* A transfer that ended without its bytes needs no hash: finish now. */
		if (!hash_err && hashed < x->prefix && !(x->eng_gone && x->net != NET_DONE)) {
			uint64_t want = x->prefix - hashed;
			size_t n = want > HASH_CHUNK ? HASH_CHUNK : (size_t)want;
			unsigned gen = x->gen;
			pthread_mutex_unlock(&x->lock);
			ssize_t r = pread(x->fd, buf, n, (off_t)hashed);
			int err_no = r < 0 ? errno : 0;
			pthread_mutex_lock(&x->lock);
			if (x->gen != gen)
				continue;
			if (r < 0 && err_no == EINTR)
				continue;
			if (r <= 0) {
				hash_err = r < 0 ? err_no : EIO;
				continue;
			}
			sha256_update(&h, buf, (size_t)r);
			if (x->want_git[0])
				gitblob_update(&g, buf, (size_t)r);
			hashed += (uint64_t)r;
			atomic_store(&x->a_hashed, hashed);
			continue;
		}
		if (x->eng_gone && !x->snap_pending &&
		    (x->net != NET_DONE || hash_err || hashed >= x->final_total))
			break;
		if (x->eng_gone && x->snap_pending)
			x->snap_pending = 0; /* purged or discarded: nothing to save */
		else
			pthread_cond_wait(&x->cond, &x->lock);
	}
	pthread_mutex_unlock(&x->lock);
	helper_finish(x, &h, &g, hashed, hash_err);
	sha256_cleanup(&h);
	gitblob_cleanup(&g);
	free(buf);
	free(snap);
	return NULL;
}

/* Public API */

int xfer_engine_new(const struct xfer_config *cfg, struct xfer_engine **out, struct err *e)
{
	static const struct xfer_config defaults = {0};
	if (!cfg)
		cfg = &defaults;
	pthread_once(&curl_once, curl_init_once);
	struct xfer_engine *eng = xcalloc(1, sizeof(*eng));
	eng->cfg = *cfg;
	struct xfer_config *c = &eng->cfg;
	if (c->connections <= 0)
		c->connections = 8;
	if (c->connections > CAP_XFER_CONNECTIONS) {
		free(eng);
		return err_set(e, ERR_INVALID, "connections: %d is over the limit of %d",
			       cfg->connections, CAP_XFER_CONNECTIONS);
	}
	if (!c->split_threshold)
		c->split_threshold = 16u << 20;
	if (!c->min_split)
		c->min_split = 4u << 20;
	if (!c->piece_size)
		c->piece_size = 16u << 20;
	if (c->piece_size < c->min_split)
		c->piece_size = c->min_split;
	if (c->stall_timeout_s <= 0)
		c->stall_timeout_s = 30;
	if (c->max_retries <= 0)
		c->max_retries = 5;
	if (c->retry_base_ms <= 0)
		c->retry_base_ms = 1000;
	if (c->retry_max_ms <= 0)
		c->retry_max_ms = 8000;
	if (c->retry_max_ms < c->retry_base_ms)
		c->retry_max_ms = c->retry_base_ms;
	if (c->retry_after_max_ms <= 0)
		c->retry_after_max_ms = 120000;
	if (!c->flush_bytes)
		c->flush_bytes = 8u << 20;
	if (c->flush_ms <= 0)
		c->flush_ms = 2000;
	if (!c->max_unknown_size)
		c->max_unknown_size = CAP_UNKNOWN_SIZE_DEFAULT;
	eng->user_agent = cfg->user_agent ? xstrdup(cfg->user_agent)
					  : xstrdup("rbee-hive/" RBEE_VERSION);
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
	int prc = pthread_create(&eng->thread, NULL, engine_main, eng);
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
	xfer_ranges_cleanup(&x->done);
	xfer_plan_cleanup(&x->plan);
	free(x->conns);
	free(x->snap);
	free(x->url);
	free(x->token);
	free(x->dest);
	free(x->name);
	free(x->rename_to);
	free(x->log_id);
	pthread_mutex_destroy(&x->lock);
	pthread_cond_destroy(&x->cond);
	pthread_cond_destroy(&x->done_cond);
	free(x);
}

/* Resume state, free space and preallocation, on the caller's thread. */
static int xfer_prepare_file(struct xfer *x, struct err *e)
{
	int fd = x->fd;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return err_set(e, ERR_IO, "stat %s: %s", x->dest, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return err_set(e, ERR_INVALID, "%s is not a regular file", x->dest);
	if (x->has_resume && x->size_known) {
		struct xfer_range *r = NULL;
		size_t n = 0;
		struct err le;
		err_clear(&le);
		if (x->resume.load(x->resume.arg, x->key, x->total, &r, &n) == 0) {
			uint64_t max_end = 0;
			for (size_t i = 0; i < n; i++)
				max_end = r[i].end > max_end ? r[i].end : max_end;
			if ((uint64_t)st.st_size < max_end) {
				log_msg(LOG_WARN, x->log_id,
					"%s is shorter than its resume state; starting over", x->dest);
			} else if (xfer_ranges_load(&x->done, r, n, x->total, &le) < 0) {
				log_msg(LOG_WARN, x->log_id, "%s: %s; starting over", x->dest,
					err_msg(&le));
			} else if (x->done.bytes) {
				log_msg(LOG_INFO, x->log_id, "resuming %s: %llu of %llu bytes done",
					x->dest, (unsigned long long)x->done.bytes,
					(unsigned long long)x->total);
			}
		}
		free(r);
	}
	if (x->done.bytes == 0 && st.st_size > 0 && ftruncate(fd, 0) < 0)
		return err_set(e, ERR_IO, "truncate %s: %s", x->dest, strerror(errno));
	if (!x->size_known || x->total == 0)
		return 0;
	/* Compare what is still to be allocated with what the disk has left. */
	if (fstat(fd, &st) < 0)
		return err_set(e, ERR_IO, "stat %s: %s", x->dest, strerror(errno));
	uint64_t have = (uint64_t)st.st_blocks * 512u;
	uint64_t need = x->total > have ? x->total - have : 0;
	struct statvfs vfs;
	if (fstatvfs(fd, &vfs) == 0) {
		uint64_t avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
		if (need > avail)
			return err_set(e, ERR_NOSPACE,
				       "not enough free space for %s: %llu more bytes needed, %llu "
				       "available",
				       x->dest, (unsigned long long)need, (unsigned long long)avail);
	}
	if ((uint64_t)st.st_size > x->total && ftruncate(fd, (off_t)x->total) < 0)
		return err_set(e, ERR_IO, "truncate %s: %s", x->dest, strerror(errno));
	int rc = posix_fallocate(fd, 0, (off_t)x->total);
	if (rc == ENOSPC)
		return err_set(e, ERR_NOSPACE, "preallocating %llu bytes for %s: no space left",
			       (unsigned long long)x->total, x->dest);
	if (rc != 0 && ftruncate(fd, (off_t)x->total) < 0)
		return err_set(e, ERR_IO, "preallocating %s: %s", x->dest, strerror(rc));
	return 0;
}

int xfer_start(struct xfer_engine *eng, const struct xfer_request *req, struct xfer **out,
	       struct err *e)
{
	int rc;
	*out = NULL;
	if (req->fd < 0 || req->dir_fd < 0 || !req->name || !*req->name || strchr(req->name, '/'))
		return err_set(e, ERR_INVALID,
			       "transfer needs the partial's descriptor, its folder's and its name");
	if (req->rename_to && (!*req->rename_to || strchr(req->rename_to, '/')))
		return err_set(e, ERR_INVALID, "rename_to '%.80s' is not a name in the folder",
			       req->rename_to);
	if (req->sha256 && req->sha256[0] && !sha256_hex_valid(req->sha256))
		return err_set(e, ERR_INVALID, "expected sha256 '%.80s' is not 64 lowercase hex digits",
			       req->sha256);
	if (req->git_sha1 && req->git_sha1[0] &&
	    (!is_hex_lower(req->git_sha1, GITBLOB_HEX_LEN) || !req->size_known))
		return err_set(e, ERR_INVALID,
			       "expected git blob sha1 '%.80s' needs 40 lowercase hex digits and a "
			       "known size",
			       req->git_sha1);
	if (req->auth_token && strlen(req->auth_token) > CAP_TOKEN_LEN)
		return err_set(e, ERR_TOO_LARGE, "auth token is longer than %d bytes", CAP_TOKEN_LEN);
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
	cond_init_monotonic(&x->done_cond);
	x->token = req->auth_token && *req->auth_token ? xstrdup(req->auth_token) : NULL;
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
	x->refresh_fn = req->refresh_url;
	x->refresh_arg = req->refresh_arg;
	x->progress_fn = req->on_progress;
	x->progress_arg = req->progress_arg;
	x->cancel = req->cancel ? cancel_ref(req->cancel) : NULL;
	x->purge_req = req->purge_on_cancel ? 1 : 0;
	x->nconn = x->size_known && x->total >= eng->cfg.split_threshold ? eng->cfg.connections : 1;
	x->conns = xcalloc((size_t)x->nconn, sizeof(*x->conns));
	for (int i = 0; i < x->nconn; i++)
		x->conns[i] = (struct xconn){.x = x, .idx = i, .seg = -1};
	xfer_ranges_init(&x->done, CAP_XFER_RANGES);
	xfer_plan_init(&x->plan, CAP_XFER_RANGES + CAP_XFER_CONNECTIONS, eng->cfg.min_split);
	x->plan.piece = eng->cfg.piece_size;
	x->plan.ramp = (unsigned)x->nconn;
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
			remove_partial(x); /* nothing of value in it */
		goto fail;
	}
	x->published_prefix = 0;
	x->prefix = xfer_ranges_prefix(&x->done);
	atomic_store(&x->a_done, x->done.bytes);

	pthread_mutex_lock(&eng->lock);
	if (eng->count >= CAP_XFER_ACTIVE) {
		rc = err_set(e, ERR_TOO_LARGE, "more than %d transfers at once", CAP_XFER_ACTIVE);
		pthread_mutex_unlock(&eng->lock);
		goto fail;
	}
	eng->count++;
	pthread_mutex_unlock(&eng->lock);

	int prc = pthread_create(&x->helper, NULL, helper_main, x);
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
			log_msg(LOG_WARN, x->log_id, "cancel token has too many watchers; cancel "
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
