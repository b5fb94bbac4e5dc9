/*
 * The saver thread of one transfer, and its syncer: the resume state and
 * the writeback of the partial (docs/reliability.md).
 *
 * Two kinds of saves. A fresh save records the done ranges the transfer
 * thread posted, without syncing the partial first: their bytes are in the
 * page cache, which outlives the crash of the process, so a kill -9 loses
 * only what arrived after the last save, a MiB or two. The page cache does
 * not outlive a restart of the system, so the store keeps fresh ranges
 * under the boot id, beside those of the latest synced save: ranges whose
 * bytes an fdatasync had put on disk first. The saver makes the fresh
 * saves; the syncer makes the synced ones, each after its fdatasync, so
 * that the fresh saves never wait behind the disk: a synced save's own
 * commit waits for it too (xfer-get's state file fsync took up to 0.12 s
 * while the partial was written back), and made on the saver it let the
 * fresh saves trail by the whole hold. Without a
 * fresh save op, every save is a synced one, made by the saver itself.
 */
#include "fetch/xfer_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

enum { SYNC_IDLE = 0, SYNC_WANTED };

int xfer_saves_behind(struct xfer *x)
{
	uint64_t saved = atomic_load_explicit(&x->a_saved, memory_order_acquire);
	uint64_t synced = atomic_load_explicit(&x->a_synced, memory_order_acquire);
	return x->written - saved >= x->unsaved_max || x->written - synced >= UNSYNCED_MAX;
}

static int save_synced(struct xfer *x, const struct byte_range *r, size_t n)
{
	/* The bytes must be on disk before the catalog says they are. */
	if (fdatasync(x->fd) < 0) {
		log_msg(LOG_WARN, x->log_id, "fdatasync %s: %s", x->dest, strerror(errno));
		return ERR_IO;
	}
	return x->resume.save(x->resume.arg, x->key, atomic_load(&x->a_total), r, n);
}

/* The partial is purged or discarded: nothing of it is saved or written back (x->lock held). */
static int saves_skipped(struct xfer *x)
{
	return x->discard_req ||
	       (x->eng_gone && x->net == NET_CANCELLED && atomic_load(&x->purge_req));
}

/* Writeback of the written prefix, on the syncer. */
struct writeback {
	uint64_t off; /* started for [0, off) */
	unsigned gen;
	int warned;
	uint64_t synced; /* off as of the last flush (flush_step) */
};

/*
 * Starts writeback of the written prefix, in whole steps (a page the
 * transfer is still filling is not written twice), at most four at a
 * time: the call can wait while the disk queue is full, and an fdatasync
 * the saver asked for must not wait behind hundreds of MiB. Called and
 * returns with x->lock held; 1 when it started some.
 */
static int writeback_step(struct xfer *x, struct writeback *w)
{
	if (x->gen != w->gen) {
		w->gen = x->gen; /* the file starts over */
		w->off = 0;
		w->synced = 0;
	}
	uint64_t end = x->prefix & ~(uint64_t)(WRITEBACK_STEP - 1);
	if (x->eng_gone || saves_skipped(x) || end <= w->off)
		return 0;
	uint64_t off = w->off, len = end - w->off;
	if (len > 4 * WRITEBACK_STEP)
		len = 4 * WRITEBACK_STEP;
	w->off += len;
	pthread_mutex_unlock(&x->lock);
	if (sync_file_range(x->fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE) < 0 &&
	    !w->warned) {
		w->warned = 1;
		log_msg(LOG_DEBUG, x->log_id, "sync_file_range %s: %s", x->dest, strerror(errno));
	}
	pthread_mutex_lock(&x->lock);
	return 1;
}

/* The state of the saver thread, and what it hands its syncer. */
struct saver {
	struct xfer *x;
	int fresh;		/* fresh saves, and a syncer that makes the synced ones */
	struct byte_range *cur; /* the latest state saved */
	size_t cur_n;
	uint64_t cur_written;
	unsigned cur_gen;
	int cur_unsynced;	/* cur was saved fresh and not yet handed to the syncer */
	struct byte_range *syn; /* the state of the syncer's synced save (not SYNC_IDLE: its own) */
	size_t syn_n;
	uint64_t syn_written;
	unsigned syn_gen;
	int64_t sync_at; /* the next fdatasync is due then at the latest */
};

/* Lets the transfer thread see a save (x->lock held): connections held for it go on. */
static void saver_wake(struct xfer *x)
{
	if (!x->eng_gone)
		curl_multi_wakeup(x->eng->multi);
}

/*
 * A synced save, on the syncer: the fdatasync, then the state it was for
 * (x->lock held, dropped meanwhile); the saver leaves s->syn alone until
 * the state is back to SYNC_IDLE.
 */
static void syncer_save(struct xfer *x, struct saver *s)
{
	pthread_mutex_unlock(&x->lock);
	int rc = fdatasync(x->fd);
	if (rc < 0)
		log_msg(LOG_WARN, x->log_id, "fdatasync %s: %s", x->dest, strerror(errno));
	pthread_mutex_lock(&x->lock);
	if (rc == 0 && !saves_skipped(x)) {
		pthread_mutex_unlock(&x->lock);
		if (x->resume.save(x->resume.arg, x->key, atomic_load(&x->a_total), s->syn,
				   s->syn_n) < 0)
			log_msg(LOG_WARN, x->log_id, "saving resume state of %s failed", x->dest);
		pthread_mutex_lock(&x->lock);
	}
	/* Even when it failed (that is logged): the hold must not wait for a sync that will not
	 * come. */
	atomic_store_explicit(&x->a_synced, s->syn_written, memory_order_release);
	x->sync_state = SYNC_IDLE;
	pthread_cond_signal(&x->save_cond);
	saver_wake(x);
}

/*
 * Without resume state no save syncs the partial while it is written, and
 * writeback alone does not make the final fsync short: on this machine's
 * virtual disk (most likely cached by its host) the fsync's flush of the
 * device cache costs what was written since the last flush, 0.6 to 0.9 s
 * for a GiB with writeback started all along (bench/README.md, run N). So the syncer
 * flushes, an fdatasync per flush_bytes written back, as the synced saves
 * do with resume state. Called and returns with x->lock held; 1 when it
 * flushed.
 */
static int flush_step(struct xfer *x, struct writeback *w)
{
	if (x->has_resume || x->eng_gone || saves_skipped(x) ||
	    w->off - w->synced < x->eng->cfg.flush_bytes)
		return 0;
	uint64_t off = w->off;
	pthread_mutex_unlock(&x->lock);
	if (fdatasync(x->fd) < 0 && !w->warned) {
		w->warned = 1;
		log_msg(LOG_DEBUG, x->log_id, "fdatasync %s: %s", x->dest, strerror(errno));
	}
	pthread_mutex_lock(&x->lock);
	w->synced = off;
	return 1;
}

/*
 * The syncer: everything that waits for the disk, so that the fresh saves
 * never wait behind it. Besides the synced saves the saver asks for, it
 * starts writeback of the written prefix, WRITEBACK_STEP at a time,
 * without waiting for it: the disk then writes while the bytes arrive, so
 * the fdatasyncs and the final fsync have little left. Where the network
 * outruns the disk, writeback that trailed the hash left hundreds of MiB
 * dirty, and the final fsync of a 1 GiB pull on loopback took 0.6 s; done
 * on the saver, it held the saves back by tens of MiB while the disk
 * queue was full.
 */
static void *xfer_syncer_main(void *arg)
{
	struct saver *s = arg;
	struct xfer *x = s->x;
	struct writeback w = {0};
	pthread_mutex_lock(&x->lock);
	for (;;) {
		if (x->sync_state == SYNC_WANTED) {
			syncer_save(x, s);
			continue;
		}
		if (writeback_step(x, &w) || flush_step(x, &w))
			continue;
		if (x->sync_stop)
			break;
		pthread_cond_wait(&x->sync_cond, &x->lock);
	}
	pthread_mutex_unlock(&x->lock);
	return NULL;
}

/* Saves the snapshot the transfer thread posted (x->lock held, dropped meanwhile). */
static void saver_save_posted(struct xfer *x, struct saver *s)
{
	s->cur_n = x->snap_n;
	s->cur_written = x->snap_written;
	s->cur_gen = x->snap_gen;
	memcpy(s->cur, x->snap, s->cur_n * sizeof(*s->cur));
	x->snap_pending = 0;
	pthread_mutex_unlock(&x->lock);
	int rc;
	if (s->fresh) {
		rc = x->resume.save_fresh(x->resume.arg, x->key, atomic_load(&x->a_total), s->cur,
					  s->cur_n);
		s->cur_unsynced = 1;
	} else {
		rc = save_synced(x, s->cur, s->cur_n);
		atomic_store_explicit(&x->a_synced, s->cur_written, memory_order_release);
	}
	if (rc < 0)
		log_msg(LOG_WARN, x->log_id, "saving resume state of %s failed", x->dest);
	/*
	 * Connections held for this save go on even when it failed (that is
	 * logged): the hold paces the transfer to the saves, it is no reason
	 * to stop.
	 */
	atomic_store_explicit(&x->a_saved, s->cur_written, memory_order_release);
	pthread_mutex_lock(&x->lock);
}

/*
 * 1 when the latest fresh state is to go to the syncer now: flush_bytes
 * after the last one, flush_ms after it, at a new generation of the file,
 * and at the end of a transfer that did not complete (one that did is
 * synced whole before its rename).
 */
static int saver_sync_due(const struct xfer *x, const struct saver *s, int64_t now)
{
	if (!s->fresh || !s->cur_unsynced || x->sync_state != SYNC_IDLE)
		return 0;
	return s->cur_written - s->syn_written >= x->eng->cfg.flush_bytes || now >= s->sync_at ||
	       s->cur_gen != s->syn_gen || (x->save_stop && x->net != NET_DONE);
}

/*
 * The saver thread: saves the latest snapshot of the done ranges, as long
 * as the transfer runs, then the last one the transfer thread posted at
 * its end; the helper joins it before finishing. It starts the syncer and
 * ends it.
 */
void *xfer_saver_main(void *arg)
{
	struct xfer *x = arg;
	struct saver s = {.x = x};
	pthread_t syncer;
	int syncer_started = pthread_create(&syncer, NULL, xfer_syncer_main, &s) == 0;
	if (x->has_resume) {
		s.cur = xcalloc(CAP_XFER_RANGES, sizeof(*s.cur));
		s.fresh = x->resume.save_fresh && syncer_started;
		if (s.fresh)
			s.syn = xcalloc(CAP_XFER_RANGES, sizeof(*s.syn));
	}
	s.sync_at = now_ms() + x->eng->cfg.flush_ms;
	pthread_mutex_lock(&x->lock);
	for (;;) {
		int skip = saves_skipped(x);
		if (x->snap_pending && !skip && s.cur) {
			saver_save_posted(x, &s);
			saver_wake(x);
			continue;
		}
		if (skip || !s.cur)
			x->snap_pending = 0; /* purged, discarded or no resume: nothing to save */
		int64_t now = now_ms();
		if (!skip && saver_sync_due(x, &s, now)) {
			memcpy(s.syn, s.cur, s.cur_n * sizeof(*s.syn));
			s.syn_n = s.cur_n;
			s.syn_written = s.cur_written;
			s.syn_gen = s.cur_gen;
			s.cur_unsynced = 0;
			s.sync_at = now + x->eng->cfg.flush_ms;
			x->sync_state = SYNC_WANTED;
			pthread_cond_signal(&x->sync_cond);
			continue;
		}
		if (x->save_stop && (skip || (x->sync_state == SYNC_IDLE &&
					      (!s.cur_unsynced || x->net == NET_DONE))))
			break;
		if (s.fresh && s.cur_unsynced && x->sync_state == SYNC_IDLE) {
			struct timespec ts;
			deadline_after_ms(&ts, s.sync_at > now ? (long)(s.sync_at - now) : 1);
			pthread_cond_timedwait(&x->save_cond, &x->lock, &ts);
		} else {
			pthread_cond_wait(&x->save_cond, &x->lock);
		}
	}
	x->sync_stop = 1;
	pthread_cond_signal(&x->sync_cond);
	pthread_mutex_unlock(&x->lock);
	if (syncer_started)
		pthread_join(syncer, NULL);
	free(s.cur);
	free(s.syn);
	return NULL;
}
