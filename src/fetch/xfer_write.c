/*
 * The write path of the transfer engine, on the transfer thread inside
 * curl_multi_perform: each answer judged before its first byte, bytes
 * gathered per connection and written at their offset in batches, the rate
 * cap's tokens spent, and the grown prefix and done ranges handed to the
 * helper.
 * Also the socket opener that checks the address a hop resolved to.
 */
#include "fetch/xfer_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/util.h"

/* Hand-offs to the helper thread (transfer thread side) */

void xfer_publish_prefix(struct xfer *x, int force)
{
	uint64_t p = ranges_prefix(&x->done);
	if (!force && p < x->published_prefix + PREFIX_PUBLISH_STEP &&
	    !(x->size_known && p == x->total))
		return;
	if (p == x->published_prefix && !force)
		return;
	/* The syncer starts writeback in whole steps: woken when one is complete. */
	int step = p / WRITEBACK_STEP != x->published_prefix / WRITEBACK_STEP;
	x->published_prefix = p;
	pthread_mutex_lock(&x->lock);
	x->prefix = p;
	pthread_cond_signal(&x->cond);
	if (step)
		pthread_cond_signal(&x->sync_cond);
	pthread_mutex_unlock(&x->lock);
}

/* Snapshot of the done ranges for the saver to fdatasync and save. */
void xfer_post_snapshot(struct xfer *x)
{
	if (!x->has_resume || !x->size_known)
		return;
	pthread_mutex_lock(&x->lock);
	memcpy(x->snap, x->done.r, x->done.n * sizeof(*x->snap));
	x->snap_n = x->done.n;
	x->snap_written = x->written;
	x->snap_gen = x->gen;
	x->snap_pending = 1;
	pthread_cond_signal(&x->save_cond);
	pthread_mutex_unlock(&x->lock);
	x->flushed_written = x->written;
	x->flush_at = now_ms() + x->eng->cfg.flush_ms;
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
			 "%s announces %lld bytes for %s, expected %llu", host, (long long)cl,
			 x->dest, (unsigned long long)x->total);
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
		if (curl_easy_header(c->h, "Content-Range", 0, CURLH_HEADER, -1, &hd) !=
		    CURLHE_OK) {
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
				snprintf(total, sizeof(total), "%llu",
					 (unsigned long long)cr.total);
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

/* Counts [pos, pos + w) of c's request done: the ranges, the sources, and the hand-offs. */
static int conn_count_done(struct xconn *c, uint64_t pos, size_t w)
{
	struct xfer *x = c->x;
	if (ranges_add(&x->done, pos, pos + w) < 0) {
		c->too_many_ranges = 1;
		return -1;
	}
	if (c->src >= 0) {
		/* Kept for the repair after a digest mismatch: a failed add leaves
		 * those bytes out of it, so the transfer ends instead. */
		if (ranges_add(&x->peers[c->src].got, pos, pos + w) < 0) {
			c->too_many_ranges = 1;
			return -1;
		}
		x->peers[c->src].bytes += w;
		atomic_fetch_add_explicit(&x->a_from_peers, w, memory_order_relaxed);
	} else {
		x->url_bytes += w;
	}
	x->written += w;
	c->moved = 1;
	atomic_store_explicit(&x->a_done, x->done.bytes, memory_order_relaxed);
	/*
	 * Hand-offs from here, not only from the loop: at loopback speed one
	 * curl_multi_perform can move tens of MiB per connection, and the
	 * hasher and the resume saves must not wait for it to return.
	 */
	xfer_publish_prefix(x, 0);
	if (x->written - x->flushed_written >= x->snap_step)
		xfer_post_snapshot(x);
	return 0;
}

/* Writes w bytes at pos of the file and counts them done; -1 with c's error set. */
static int write_at(struct xconn *c, const unsigned char *data, size_t w, uint64_t pos)
{
	struct xfer *x = c->x;
	size_t off = 0;
	while (off < w) {
		ssize_t r = pwrite(x->fd, data + off, w - off, (off_t)(pos + off));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			c->io_errno = r < 0 ? errno : EIO;
			return -1;
		}
		off += (size_t)r;
	}
	return conn_count_done(c, pos, w);
}

int xconn_flush(struct xconn *c)
{
	struct xfer *x = c->x;
	size_t len = c->batch_len;
	c->batch_len = 0;
	if (!len || atomic_load_explicit(&x->cancel_req, memory_order_relaxed))
		return 0;
	return write_at(c, c->batch, len, c->batch_at);
}

void xfer_flush_all(struct xfer_engine *eng)
{
	for (struct xfer *x = eng->active; x; x = x->next)
		for (int i = 0; i < x->nconn; i++)
			if (x->conns[i].batch_len)
				xconn_flush(&x->conns[i]);
}

size_t xconn_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct xconn *c = arg;
	struct xfer *x = c->x;
	size_t n = size * nmemb;
	if (atomic_load_explicit(&x->cancel_req, memory_order_relaxed) || x->ended || c->io_errno ||
	    c->too_many_ranges)
		return 0;
	if (!c->checked && !conn_check(c))
		return 0;
	if (c->discard) {
		c->discarded += n;
		return c->discarded > DISCARD_BODY_MAX ? 0 : n;
	}
	if (x->has_resume && x->size_known && xfer_saves_behind(x)) {
		/* The saves are behind: hold this chunk until they catch up. */
		if (x->written != x->flushed_written)
			xfer_post_snapshot(x);
		c->paused = 1;
		x->eng->npaused++;
		x->held = 1;
		return CURL_WRITEFUNC_PAUSE;
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
	if (w > 0) {
		/*
		 * Accepted: into the batch (written when full), and the request
		 * moves on. A batch is one request's next bytes: every request
		 * ends in xconn_stop, which writes it.
		 */
		assert(!c->batch_len || c->batch_at + c->batch_len == pos);
		if (c->batch_len + w > WRITE_BATCH && xconn_flush(c) < 0)
			return 0;
		if (!c->batch)
			c->batch = xmalloc(WRITE_BATCH);
		if (!c->batch_len)
			c->batch_at = pos;
		if (w <= WRITE_BATCH) {
			memcpy(c->batch + c->batch_len, data, w);
			c->batch_len += w;
		} else if (write_at(c, (const unsigned char *)data, w, pos) < 0) {
			return 0;
		}
		if (c->seg >= 0)
			x->plan.s[c->seg].pos = pos + w;
		else
			c->pos = pos + w;
		c->fails = 0;
		if (c->batch_len == WRITE_BATCH && xconn_flush(c) < 0)
			return 0;
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
curl_socket_t xconn_opensocket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct xconn *c = arg;
	struct xfer *x = c->x;
	struct err e;
	err_clear(&e);
	/* A peer hive is the owner's choice: its address is not judged by the origin's. */
	curl_socket_t fd;
	if (!x->peer_check || c->src >= 0)
		fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	else
		fd = url_open_checked_socket((int)purpose, a, x->base, x->cur.host, &e);
	if (fd == CURL_SOCKET_BAD && e.code == ERR_FORBIDDEN) {
		c->fail_code = e.code;
		snprintf(c->fail_msg, sizeof(c->fail_msg), "%s", e.msg);
	}
	if (fd != CURL_SOCKET_BAD && c->src < 0)
		xfer_set_rcvbuf(x, fd);
	return fd;
}
