/*
 * The helper thread of one transfer: it hashes the done prefix as it
 * grows, refreshes the URL after a 403, and finishes the transfer (final
 * checks, rename, result), so the transfer thread never blocks on the
 * disk, the caller's catalog or the vendor. Its saver thread
 * (xfer_save.c) starts writeback and saves the resume state: both can wait
 * for the disk, and the hash must not wait behind them.
 */
#include "fetch/xfer_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

/* Helper thread: hashing, URL refresh, the end */

static void helper_discard(struct xfer *x)
{
	xfer_remove_partial(x);
	if (x->has_resume)
		x->resume.discard(x->resume.arg, x->key);
}

/*
 * A digest mismatch in a file peers delivered bytes of: their ranges are
 * fetched again from the URL and compared (xfer_peers_repair), then the
 * whole file is hashed again into sha. 0 when it now matches; otherwise
 * sha holds the new digest, and e is filled when the repair itself failed.
 */
static int helper_repair(struct xfer *x, char sha[SHA256_HEX_LEN + 1], struct err *e)
{
	struct err sub;
	err_clear(&sub);
	int rc = xfer_peers_repair(x, &sub);
	if (rc == ERR_NOT_FOUND)
		return ERR_DIGEST;
	if (rc == ERR_CANCELLED)
		return err_set(e, rc, "%s", err_msg(&sub));
	if (rc < 0) {
		err_set(e, rc, "sha256 mismatch for %s, and the repair failed: %s", x->dest,
			err_msg(&sub));
		return rc;
	}
	struct sha256 h = {0};
	unsigned char *buf = xmalloc(HASH_CHUNK);
	uint64_t off = 0;
	sha256_init(&h);
	while (off < x->total && !atomic_load(&x->cancel_req)) {
		uint64_t want = x->total - off;
		ssize_t r =
		    pread(x->fd, buf, want > HASH_CHUNK ? HASH_CHUNK : (size_t)want, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = err_set(e, ERR_IO, "reading back %s: %s", x->dest,
				     r < 0 ? strerror(errno) : "short file");
			break;
		}
		sha256_update(&h, buf, (size_t)r);
		off += (uint64_t)r;
	}
	if (rc == 0 && off < x->total)
		rc = err_set(e, ERR_CANCELLED, "transfer of %s cancelled", x->dest);
	atomic_store(&x->repaired, 1);
	if (rc == 0)
		sha256_final_hex(&h, sha);
	sha256_cleanup(&h);
	free(buf);
	if (rc < 0)
		return rc;
	return strcmp(sha, x->want_sha) == 0 ? 0 : ERR_DIGEST;
}

static void helper_finish(struct xfer *x, struct sha256 *h, struct gitblob *g, uint64_t hashed,
			  int hash_err)
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
			rc =
			    err_set(&e, ERR_IO, "reading back %s: %s", x->dest, strerror(hash_err));
		} else if (x->size_known && hashed != x->total) {
			rc = err_set(&e, ERR_DIGEST,
				     "size mismatch for %s: expected %llu bytes, got %llu", x->dest,
				     (unsigned long long)x->total, (unsigned long long)hashed);
		} else {
			sha256_final_hex(h, sha);
			int r = x->want_sha[0] && strcmp(sha, x->want_sha) != 0
				    ? (x->npeers ? helper_repair(x, sha, &e) : ERR_DIGEST)
				    : 0;
			if (r == 0 && x->want_sha[0] && e.code == 0 && x->npeers &&
			    atomic_load(&x->repaired))
				log_msg(LOG_INFO, x->log_id,
					"transfer of %s: verified after the repair", x->dest);
			if (r == ERR_CANCELLED)
				rc = r;
			else if (r < 0 && e.code)
				rc = err_set(&e, ERR_DIGEST, "%s", err_msg(&e));
			else if (r < 0)
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
				rc = err_set(&e, ERR_IO, "truncate %s: %s", x->dest,
					     strerror(errno));
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
					struct byte_range all = {0, total};
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

void *xfer_helper_main(void *arg)
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
	pthread_t saver;
	int saver_started = x->size_known && pthread_create(&saver, NULL, xfer_saver_main, x) == 0;

	pthread_mutex_lock(&x->lock);
	for (;;) {
		if (x->gen != gen_seen) {
			gen_seen = x->gen;
			sha256_init(&h);
			if (x->want_git[0])
				gitblob_init(&g, x->total);
			hashed = 0;
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
			/*
			 * Hashed without the lock, which the transfer thread takes
			 * for each hand-off: bytes read in this generation stay
			 * valid, and a new one starts the hash over at the top.
			 */
			pthread_mutex_unlock(&x->lock);
			sha256_update(&h, buf, (size_t)r);
			if (x->want_git[0])
				gitblob_update(&g, buf, (size_t)r);
			pthread_mutex_lock(&x->lock);
			if (x->gen != gen)
				continue;
			hashed += (uint64_t)r;
			atomic_store(&x->a_hashed, hashed);
			continue;
		}
		if (x->eng_gone && (x->net != NET_DONE || hash_err || hashed >= x->final_total))
			break;
		pthread_cond_wait(&x->cond, &x->lock);
	}
	x->save_stop = 1;
	pthread_cond_signal(&x->save_cond);
	pthread_mutex_unlock(&x->lock);
	xfer_peers_stop(x);
	if (saver_started) {
		pthread_join(saver, NULL);
	} else if (x->has_resume && x->size_known) {
		/* No thread for saves: the last snapshot is saved here, as the saver would. */
		xfer_saver_main(x);
	}
	helper_finish(x, &h, &g, hashed, hash_err);
	sha256_cleanup(&h);
	gitblob_cleanup(&g);
	free(buf);
	return NULL;
}
