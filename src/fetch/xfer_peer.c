/*
 * Peer hives of a transfer (docs/fetch.md, "Peers"): other rbee-hives that
 * hold the blob, whole or in part, and serve those bytes by Range.
 *
 *   - A poller thread asks each peer which ranges of the blob it holds, a
 *     few times a second, and hands the answers to the transfer thread.
 *     Answers are untrusted: strict JSON, bounded in size and in ranges,
 *     every range inside the file, the digest and size the ones expected.
 *   - The transfer thread picks each piece's source: a piece a peer holds
 *     from that peer; else a piece of this hive's share from the URL (every
 *     nth piece, n the number of hives, from its rank on); else a piece
 *     whose hive is not fetching it (not downloading, silent, or dropped)
 *     from the URL; else half of a URL connection's range. Pieces another
 *     hive is fetching are awaited from it.
 *   - A peer that errs, answers anything but the bytes asked, or goes away
 *     mid-piece is dropped for this blob, and the rest of its piece goes
 *     back to the pool.
 *   - A peer that sends wrong bytes shows only in the whole file's digest:
 *     then every range a peer delivered is fetched again from the URL and
 *     compared, what differs is rewritten, the peers whose bytes differed
 *     are named, and the helper hashes the file again.
 */
#include "fetch/xfer_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/json.h"
#include "core/log.h"
#include "core/util.h"

/* Asking the peers (poller thread, and the caller's thread for the first round) */

struct peer_body {
	char *buf;
	size_t len;
	int over;
};

static size_t peer_body_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct peer_body *b = arg;
	size_t n = size * nmemb;
	if (b->len + n > CAP_PEER_ANSWER) {
		b->over = 1;
		return 0;
	}
	memcpy(b->buf + b->len, data, n);
	b->len += n;
	return n;
}

static int peer_abort_cb(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)dt, (void)dn, (void)ut, (void)un;
	struct xfer *x = arg;
	return atomic_load(&x->peers_stopping) || atomic_load(&x->cancel_req);
}

/*
 * Reads a peer's answer: {"sha256", "size", "complete", "downloading",
 * "ranges": [[start, end], ...]}. Fills the sorted, merged ranges into out
 * (at most CAP_PEER_RANGES). 0 or ERR_INVALID.
 */
static int peer_parse(const struct xfer *x, const char *buf, size_t len, struct byte_range *out,
		      size_t *n, int *downloading, struct err *e)
{
	json_t *root = NULL;
	const char *sha = NULL;
	json_int_t size = -1;
	int complete = 0, dl = 0;
	json_t *ranges = NULL;
	int rc = json_parse_strict(buf, len, CAP_PEER_ANSWER, &root, e);
	if (rc < 0)
		return rc;
	const struct json_field f[] = {
	    {"sha256", JF_STRING, 1, &sha},	 {"size", JF_INT, 1, &size},
	    {"complete", JF_BOOL, 1, &complete}, {"downloading", JF_BOOL, 0, &dl},
	    {"ranges", JF_ARRAY, 1, &ranges},
	};
	rc = json_unpack_fields(root, f, sizeof(f) / sizeof(f[0]), "peer answer", e);
	if (rc == 0 && strcmp(sha, x->want_sha) != 0)
		rc = err_set(e, ERR_INVALID, "peer answer: another blob");
	if (rc == 0 && (size < 0 || (uint64_t)size != x->total))
		rc = err_set(e, ERR_INVALID, "peer answer: size %lld, expected %llu",
			     (long long)size, (unsigned long long)x->total);
	if (rc == 0 && json_array_size(ranges) > CAP_PEER_RANGES)
		rc = err_set(e, ERR_INVALID, "peer answer: more than %d ranges", CAP_PEER_RANGES);
	size_t k = 0;
	for (size_t i = 0; rc == 0 && i < json_array_size(ranges); i++) {
		json_t *r = json_array_get(ranges, i);
		json_t *a = json_array_get(r, 0), *b = json_array_get(r, 1);
		if (!json_is_array(r) || json_array_size(r) != 2 || !json_is_integer(a) ||
		    !json_is_integer(b) || json_integer_value(a) < 0 ||
		    json_integer_value(b) <= json_integer_value(a) ||
		    (uint64_t)json_integer_value(b) > x->total) {
			rc = err_set(e, ERR_INVALID,
				     "peer answer: range %zu is not within the file", i);
			break;
		}
		out[k++] = (struct byte_range){(uint64_t)json_integer_value(a),
					       (uint64_t)json_integer_value(b)};
	}
	if (rc == 0 && complete && !(k == 1 && out[0].start == 0 && out[0].end == x->total))
		rc = err_set(e, ERR_INVALID, "peer answer: complete, yet not one range of it all");
	json_decref(root);
	if (rc < 0)
		return rc;
	*n = ranges_merge(out, k);
	*downloading = dl && !complete;
	return 0;
}

/* Asks peer p once; stores the answer (or that there was none) under x->lock. */
static void peer_ask(struct xfer *x, struct xpeer *p, struct byte_range *tmp)
{
	struct peer_body b = {.buf = p->body};
	struct err e;
	err_clear(&e);
	if (!p->h)
		p->h = curl_easy_init();
	CURL *h = p->h;
	long code = 0;
	CURLcode res = CURLE_FAILED_INIT;
	if (h) {
		curl_easy_reset(h);
		curl_easy_setopt(h, CURLOPT_URL, p->info_url);
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
		curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
		/* A peer is on the owner's network, never behind the internet's proxy. */
		curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)PEER_ASK_TIMEOUT_MS);
		curl_easy_setopt(h, CURLOPT_USERAGENT, x->eng->user_agent);
		if (x->eng->ca_file)
			curl_easy_setopt(h, CURLOPT_CAINFO, x->eng->ca_file);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, peer_body_write);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
		curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, peer_abort_cb);
		curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
		res = curl_easy_perform(h);
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	}
	int ok = 0, dl = 0;
	size_t n = 0;
	if (res == CURLE_OK && code == 404) {
		ok = 1; /* it holds nothing of this blob */
	} else if (res == CURLE_OK && code == 200) {
		ok = peer_parse(x, b.buf, b.len, tmp, &n, &dl, &e) == 0;
		if (!ok)
			log_msg(LOG_DEBUG, x->log_id, "peer %s: %s", p->info_url, err_msg(&e));
	}
	pthread_mutex_lock(&x->lock);
	memcpy(p->in, tmp, n * sizeof(*tmp));
	p->in_n = n;
	p->in_ok = ok;
	p->in_downloading = dl;
	p->in_gen++;
	pthread_mutex_unlock(&x->lock);
}

static void peer_round(struct xfer *x, struct byte_range *tmp)
{
	for (int i = 0; i < x->npeers; i++) {
		if (!atomic_load(&x->peers[i].dropped) && !atomic_load(&x->peers_stopping))
			peer_ask(x, &x->peers[i], tmp);
	}
	atomic_store(&x->peers_new, 1);
	pthread_mutex_lock(&x->lock);
	if (!x->eng_gone)
		curl_multi_wakeup(x->eng->multi);
	pthread_mutex_unlock(&x->lock);
}

static void *peer_poller_main(void *arg)
{
	struct xfer *x = arg;
	struct byte_range *tmp = xcalloc(CAP_PEER_RANGES, sizeof(*tmp));
	pthread_mutex_lock(&x->lock);
	while (!x->poll_stop) {
		struct timespec dl;
		deadline_after_ms(&dl, PEER_POLL_MS);
		while (!x->poll_stop && pthread_cond_timedwait(&x->poll_cond, &x->lock, &dl) == 0)
			;
		if (x->poll_stop)
			break;
		pthread_mutex_unlock(&x->lock);
		peer_round(x, tmp);
		pthread_mutex_lock(&x->lock);
	}
	pthread_mutex_unlock(&x->lock);
	free(tmp);
	return NULL;
}

int xfer_peers_start(struct xfer *x, const struct xfer_request *req, struct err *e)
{
	if (!req->n_peers || !x->want_sha[0] || !x->size_known || x->total == 0)
		return 0;
	if (req->n_peers > CAP_PEERS)
		return err_set(e, ERR_INVALID, "more than %d peers", CAP_PEERS);
	x->npeers = (int)req->n_peers;
	x->rank = req->peer_rank < 0 ? 0 : req->peer_rank > x->npeers ? x->npeers : req->peer_rank;
	x->peers = xcalloc((size_t)x->npeers, sizeof(*x->peers));
	cond_init_monotonic(&x->poll_cond);
	for (int i = 0; i < x->npeers; i++) {
		struct xpeer *p = &x->peers[i];
		const char *base = req->peers[i];
		size_t bl = strlen(base);
		while (bl > 0 && base[bl - 1] == '/')
			bl--;
		p->info_url = xasprintf("%.*s/v1/peer/blobs/%s", (int)bl, base, x->want_sha);
		p->bytes_url = xasprintf("%s/bytes", p->info_url);
		p->rank = i < x->rank ? i : i + 1;
		p->body = xmalloc(CAP_PEER_ANSWER);
		p->in = xcalloc(CAP_PEER_RANGES, sizeof(*p->in));
		ranges_init(&p->held, CAP_PEER_RANGES);
		ranges_init(&p->got, CAP_XFER_RANGES);
	}
	/* The first answers come before the first request, so that nothing a peer holds is
	 * fetched from the URL. */
	struct byte_range *tmp = xcalloc(CAP_PEER_RANGES, sizeof(*tmp));
	x->peers_t0 = now_ms();
	peer_round(x, tmp);
	free(tmp);
	if (pthread_create(&x->poller, NULL, peer_poller_main, x) == 0)
		x->poller_started = 1;
	else
		log_msg(LOG_WARN, x->log_id,
			"transfer of %s: cannot start the peer poller; peers "
			"are asked once only",
			x->dest);
	/*
	 * A resume state saved at once tells the peers that this hive fetches
	 * the blob now, before its first bytes: they leave its share of the
	 * pieces to it from the start.
	 */
	xfer_post_snapshot(x);
	return 0;
}

void xfer_peers_stop(struct xfer *x)
{
	if (!x->npeers)
		return;
	pthread_mutex_lock(&x->lock);
	x->poll_stop = 1;
	atomic_store(&x->peers_stopping, 1);
	pthread_cond_signal(&x->poll_cond);
	pthread_mutex_unlock(&x->lock);
	if (x->poller_started)
		pthread_join(x->poller, NULL);
	x->poller_started = 0;
	uint64_t from_peers = 0;
	for (int i = 0; i < x->npeers; i++)
		from_peers += x->peers[i].bytes;
	char host[256];
	log_msg(LOG_INFO, x->log_id, "transfer of %s: %llu bytes from %s, %llu from peers", x->dest,
		(unsigned long long)x->url_bytes, xfer_host_for_log(x, host, sizeof(host)),
		(unsigned long long)from_peers);
}

void xfer_peers_free(struct xfer *x)
{
	for (int i = 0; i < x->npeers; i++) {
		struct xpeer *p = &x->peers[i];
		if (p->h)
			curl_easy_cleanup(p->h);
		free(p->info_url);
		free(p->bytes_url);
		free(p->body);
		free(p->in);
		ranges_cleanup(&p->held);
		ranges_cleanup(&p->got);
	}
	if (x->peers)
		pthread_cond_destroy(&x->poll_cond);
	free(x->peers);
	x->peers = NULL;
	x->npeers = 0;
}

/* Choosing sources (transfer thread) */

void xfer_peers_update(struct xfer *x, int64_t now)
{
	if (!atomic_exchange(&x->peers_new, 0))
		return;
	for (int i = 0; i < x->npeers; i++) {
		struct xpeer *p = &x->peers[i];
		uint64_t before = p->held.bytes;
		int was_dl = p->downloading;
		pthread_mutex_lock(&x->lock);
		if (p->in_gen != p->seen_gen) {
			p->seen_gen = p->in_gen;
			p->ok = p->in_ok;
			p->downloading = p->in_ok && p->in_downloading;
			if (ranges_load(&p->held, p->in, p->in_n, x->total, NULL) < 0)
				ranges_clear(&p->held);
		}
		pthread_mutex_unlock(&x->lock);
		if (p->held.bytes > before || (p->downloading && !was_dl))
			p->grew_at = now;
	}
}

/* 1 when peer p may be asked for bytes now. */
static int peer_usable(const struct xpeer *p)
{
	return p->ok && !atomic_load(&p->dropped);
}

/*
 * 1 when peer p is fetching this blob and has lately made progress, or
 * may be about to: it answers, and the transfer has just started.
 */
static int peer_fetching(const struct xfer *x, const struct xpeer *p, int64_t now)
{
	if (!peer_usable(p))
		return 0;
	if (now - x->peers_t0 < PEER_GRACE_MS)
		return 1;
	return p->downloading && now - p->grew_at < PEER_STALE_MS;
}

/* The usable peer that holds byte off (its held range's end into *until), or -1. */
static int peer_holding(const struct xfer *x, uint64_t off, uint64_t *until)
{
	for (int i = 0; i < x->npeers; i++) {
		const struct xpeer *p = &x->peers[i];
		if (!peer_usable(p))
			continue;
		for (size_t k = 0; k < p->held.n && p->held.r[k].start <= off; k++) {
			if (off < p->held.r[k].end) {
				if (until)
					*until = p->held.r[k].end;
				return i;
			}
		}
	}
	return -1;
}

struct pick {
	int seg;
	uint64_t start, end;
	int src;
};

static void pick_offer(struct pick *best, int seg, uint64_t start, uint64_t end, int src)
{
	if (best->seg < 0 || start < best->start)
		*best = (struct pick){seg, start, end, src};
}

/* The lowest byte of an unowned segment some peer with a free connection holds. */
static void pick_from_peers(const struct xfer *x, struct pick *best)
{
	uint64_t piece = x->plan.piece;
	for (size_t i = 0; i < x->plan.n; i++) {
		const struct xfer_seg *s = &x->plan.s[i];
		if (s->owner != XFER_SEG_NONE || s->pos >= s->end)
			continue;
		for (int k = 0; k < x->npeers; k++) {
			const struct xpeer *p = &x->peers[k];
			if (!peer_usable(p) || p->conns >= PEER_CONNS)
				continue;
			for (size_t r = 0; r < p->held.n; r++) {
				const struct byte_range *h = &p->held.r[r];
				if (h->end <= s->pos)
					continue;
				if (h->start >= s->end)
					break;
				uint64_t a = h->start > s->pos ? h->start : s->pos;
				uint64_t b = h->end < s->end ? h->end : s->end;
				if (b - a > piece)
					b = a + piece;
				pick_offer(best, (int)i, a, b, k);
				break;
			}
		}
	}
}

/*
 * The lowest piece of an unowned segment that this hive should fetch from
 * the URL: with own set, one of its share (piece index = rank modulo the
 * hives); else one whose hive is not fetching it. Bytes a peer holds are
 * left to the peers.
 */
static void pick_from_url(const struct xfer *x, int own, int64_t now, struct pick *best)
{
	uint64_t piece = x->plan.piece;
	uint64_t nh = (uint64_t)x->npeers + 1;
	for (size_t i = 0; i < x->plan.n; i++) {
		const struct xfer_seg *s = &x->plan.s[i];
		if (s->owner != XFER_SEG_NONE || s->pos >= s->end)
			continue;
		for (uint64_t k = s->pos / piece; k * piece < s->end; k++) {
			uint64_t a = k * piece > s->pos ? k * piece : s->pos;
			uint64_t b = (k + 1) * piece < s->end ? (k + 1) * piece : s->end;
			if (best->seg >= 0 && a >= best->start)
				break;
			int r = (int)(k % nh);
			if (own ? r != x->rank : r == x->rank)
				continue;
			if (!own && peer_fetching(x, &x->peers[r < x->rank ? r : r - 1], now))
				continue;
			uint64_t until = 0;
			if (peer_holding(x, a, &until) >= 0)
				continue;
			pick_offer(best, (int)i, a, b, -1);
			break;
		}
	}
}

int xfer_peer_take(struct xfer *x, struct xconn *c)
{
	int64_t now = now_ms();
	int usable = 0;
	for (int k = 0; k < x->npeers; k++)
		usable += peer_usable(&x->peers[k]);
	c->src = -1;
	if (!usable)
		return x->url_room ? xfer_plan_take(&x->plan, c->idx, NULL) : -1;
	struct pick best = {.seg = -1};
	pick_from_peers(x, &best);
	if (best.seg < 0 && !x->url_room)
		return -1;
	if (best.seg < 0)
		pick_from_url(x, 1, now, &best);
	if (best.seg < 0) {
		pick_from_url(x, 0, now, &best);
		if (best.seg >= 0)
			log_msg(LOG_DEBUG, x->log_id,
				"transfer of %s: bytes %llu-%llu from the URL, their hive is not "
				"fetching them",
				x->dest, (unsigned long long)best.start,
				(unsigned long long)best.end - 1);
	}
	if (best.seg >= 0) {
		int slot = xfer_plan_take_at(&x->plan, best.seg, best.start, best.end, c->idx);
		if (slot < 0)
			return -1;
		c->src = best.src;
		if (c->src >= 0)
			x->peers[c->src].conns++;
		return slot;
	}
	/* The tail: half of what a connection to the URL still has; peers' pieces are fast. */
	uint64_t spare = 0;
	for (int i = 0; i < x->nconn && i < 64; i++)
		if (x->conns[i].src >= 0)
			spare |= 1ull << i;
	return xfer_plan_steal(&x->plan, c->idx, spare, NULL);
}

int xfer_peers_awaited(struct xfer *x, int64_t now)
{
	if (xfer_plan_live(&x->plan) == 0)
		return 0;
	for (int i = 0; i < x->npeers; i++)
		if (peer_fetching(x, &x->peers[i], now))
			return 1;
	return 0;
}

void xfer_peer_fail(struct xfer *x, struct xconn *c, const char *why)
{
	struct xpeer *p = &x->peers[c->src];
	if (!atomic_exchange(&p->dropped, 1))
		log_msg(LOG_WARN, x->log_id, "transfer of %s: peer %s dropped for this blob: %s",
			x->dest, p->bytes_url, why);
	p->ok = 0;
	p->conns--;
	if (c->seg >= 0) {
		const struct xfer_seg *s = &x->plan.s[c->seg];
		if (s->pos < s->end)
			xfer_plan_release(&x->plan, c->seg);
		else
			xfer_plan_finish(&x->plan, c->seg);
	}
	c->seg = -1;
	c->src = -1;
	c->fails = 0;
}

static int repair_abort_cb(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)dt, (void)dn, (void)ut, (void)un;
	struct xfer *x = arg;
	return atomic_load(&x->cancel_req);
}

/* The repair after a digest mismatch (helper thread, after the transfer thread let go) */

struct repair {
	struct xfer *x;
	struct xconn conn; /* for the checked socket opener */
	uint64_t pos, end;
	int checked;
	int bad;      /* an answer that is not the range asked */
	int io_errno; /* reading or writing the partial failed */
	uint64_t differed;
	unsigned char *buf;
};

static size_t repair_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct repair *r = arg;
	size_t n = size * nmemb;
	if (!r->checked) {
		long code = 0;
		struct curl_header *hd = NULL;
		struct xfer_content_range cr;
		curl_easy_getinfo(r->conn.h, CURLINFO_RESPONSE_CODE, &code);
		r->checked = 1;
		if (code >= 300 && code < 400)
			return n; /* followed by the caller */
		if (code != 206 ||
		    curl_easy_header(r->conn.h, "Content-Range", 0, CURLH_HEADER, -1, &hd) !=
			CURLHE_OK ||
		    xfer_content_range_parse(hd->value, strlen(hd->value), &cr, NULL) < 0 ||
		    !cr.satisfied || cr.first != r->pos || cr.last + 1 != r->end ||
		    (cr.total_known && cr.total != r->x->total)) {
			r->bad = 1;
			return 0;
		}
	}
	if (n > r->end - r->pos || n > CURL_BUFFER) {
		r->bad = 1;
		return 0;
	}
	ssize_t got = pread(r->x->fd, r->buf, n, (off_t)r->pos);
	if (got < 0 || (size_t)got != n || memcmp(r->buf, data, n) != 0) {
		r->differed += n;
		if (pwrite(r->x->fd, data, n, (off_t)r->pos) != (ssize_t)n) {
			r->io_errno = errno ? errno : EIO;
			return 0;
		}
	}
	r->pos += n;
	return n;
}

/* Fetches [start, end) from the URL (following redirects under its policy) into r. */
static int repair_range(struct repair *r, uint64_t start, uint64_t end, struct err *e)
{
	struct xfer *x = r->x;
	char range[64];
	snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)start,
		 (unsigned long long)end - 1);
	for (int hop = 0; hop <= CAP_XFER_REDIRECTS; hop++) {
		CURL *h = r->conn.h;
		r->pos = start;
		r->end = end;
		r->checked = r->bad = 0;
		curl_easy_reset(h);
		curl_easy_setopt(h, CURLOPT_URL, x->url);
		curl_easy_setopt(h, CURLOPT_RANGE, range);
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
		curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
		curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, xconn_opensocket);
		curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, &r->conn);
		curl_easy_setopt(h, CURLOPT_BUFFERSIZE, (long)CURL_BUFFER);
		curl_easy_setopt(h, CURLOPT_USERAGENT, x->eng->user_agent);
		curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)x->eng->cfg.stall_timeout_s);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)x->eng->cfg.stall_timeout_s);
		if (x->eng->ca_file)
			curl_easy_setopt(h, CURLOPT_CAINFO, x->eng->ca_file);
		if (x->url_auth) {
			curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
			curl_easy_setopt(h, CURLOPT_XOAUTH2_BEARER, x->token);
		}
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, repair_write);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
		curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, repair_abort_cb);
		curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
		CURLcode res = curl_easy_perform(h);
		long code = 0;
		char host[256];
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
		if (atomic_load(&x->cancel_req))
			return err_set(e, ERR_CANCELLED, "transfer of %s cancelled", x->dest);
		if (r->io_errno)
			return err_set(e, ERR_IO, "write %s: %s", x->dest, strerror(r->io_errno));
		if (r->conn.fail_code)
			return err_set(e, r->conn.fail_code, "%s", r->conn.fail_msg);
		if (code >= 300 && code < 400) {
			char *loc = NULL;
			curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &loc);
			if (!loc)
				return err_set(e, ERR_NETWORK, "HTTP %ld without a Location", code);
			char *copy = xstrdup(loc);
			struct url_parts from = x->cur;
			int rc = xfer_set_url(x, copy, &from, e);
			free(copy);
			if (rc < 0)
				return rc;
			continue;
		}
		if (res != CURLE_OK || r->bad || r->pos != end)
			return err_set(e, ERR_NETWORK, "fetching bytes %s of %s again from %s: %s",
				       range, x->dest, xfer_host_for_log(x, host, sizeof(host)),
				       r->bad ? "not the range asked" : curl_easy_strerror(res));
		return 0;
	}
	return err_set(e, ERR_NETWORK, "more than %d redirects", CAP_XFER_REDIRECTS);
}

int xfer_peers_repair(struct xfer *x, struct err *e)
{
	int any = 0;
	for (int i = 0; i < x->npeers; i++)
		any |= x->peers[i].got.n > 0;
	if (!any)
		return ERR_NOT_FOUND;
	struct repair r = {.x = x};
	r.conn = (struct xconn){.x = x, .idx = -1, .seg = -1, .src = -1};
	r.conn.h = curl_easy_init();
	if (!r.conn.h)
		return err_set(e, ERR_NOMEM, "cannot create a libcurl handle");
	r.buf = xmalloc(CURL_BUFFER);
	int rc = 0;
	log_msg(LOG_WARN, x->log_id,
		"transfer of %s: digest mismatch; fetching what peers delivered again", x->dest);
	for (int i = 0; i < x->npeers && rc == 0; i++) {
		struct xpeer *p = &x->peers[i];
		r.differed = 0;
		for (size_t k = 0; k < p->got.n && rc == 0; k++)
			rc = repair_range(&r, p->got.r[k].start, p->got.r[k].end, e);
		if (rc == 0 && r.differed)
			log_msg(
			    LOG_WARN, x->log_id,
			    "transfer of %s: peer %s dropped for this blob: it sent wrong bytes "
			    "(%llu bytes rewritten from the URL)",
			    x->dest, p->bytes_url, (unsigned long long)r.differed);
	}
	curl_easy_cleanup(r.conn.h);
	free(r.buf);
	return rc;
}
