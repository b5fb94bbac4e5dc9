/*
 * registry: the registry's life (creation with the jobs of the catalog,
 * shutdown, freeing), the job state names, the persistence thread that
 * writes job rows, and the counts for /metrics. The table of jobs is
 * table.c, the event log event.c, submission, queues and workers queue.c,
 * the JSON views and watchers watch.c, the operations ops.c and the models
 * page cache models.c. The lock discipline is described in job.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "core/cancel.h"
#include "core/caps.h"
#include "core/json.h"
#include "core/log.h"
#include "core/util.h"
#include "jobs/job_internal.h"
#include "jobs/persist.h"

#define JOB_PERSIST_PERIOD_MS 1000
#define JOB_PRUNE_PERIOD_MS (60 * 1000)
/*
 * Idle catalog connections kept for request threads: enough for a client
 * that keeps 16 requests in flight, so that none of them opens the catalog.
 */
#define JOB_CATALOG_IDLE 16

/* Snapshot of a dirty job, written without the lock. */
struct job_snap {
	struct job *job; /* a reference, for the write's result */
	char id[JOB_ID_MAX];
	const char *op;
	char *arg, *error, *progress, *model_id;
	enum job_state state;
	int64_t created_ms, updated_ms;
};

static size_t job_snap_dirty_locked(struct job_registry *r, struct job_snap **out)
{
	size_t n = 0;
	for (size_t i = 0; i < r->n_jobs; i++)
		n += r->jobs[i]->dirty;
	*out = NULL;
	if (n == 0)
		return 0;
	struct job_snap *s = xcalloc(n, sizeof(*s));
	size_t k = 0;
	for (size_t i = 0; i < r->n_jobs; i++) {
		struct job *j = r->jobs[i];
		if (!j->dirty)
			continue;
		j->dirty = 0;
		j->refs++;
		s[k].job = j;
		memcpy(s[k].id, j->id, sizeof(j->id));
		s[k].op = j->op->name;
		s[k].arg = j->arg ? xstrdup(j->arg) : NULL;
		s[k].error = j->error[0] ? xstrdup(j->error) : NULL;
		s[k].progress = j->progress ? xstrdup(j->progress) : NULL;
		s[k].model_id = j->model_id ? xstrdup(j->model_id) : NULL;
		s[k].state = j->state;
		s[k].created_ms = j->created_ms;
		s[k].updated_ms = j->updated_ms;
		k++;
	}
	*out = s;
	return n;
}

/* Writes the rows; rcs[i] and msgs[i] receive the result of row i. */
static void job_snap_write(struct job_persist *cat, struct job_snap *s, size_t n, int *rcs,
			   char (*msgs)[ERR_MSG_MAX])
{
	for (size_t i = 0; i < n; i++) {
		struct job_row row = {
		    .id = s[i].id,
		    .operation = s[i].op,
		    .arg = s[i].arg,
		    .state = s[i].state,
		    .error = s[i].error,
		    .progress = s[i].progress,
		    .model_id = s[i].model_id,
		    .created_ms = s[i].created_ms,
		    .updated_ms = s[i].updated_ms,
		};
		struct err e;
		err_clear(&e);
		rcs[i] = job_persist_put(cat, &row, &e);
		if (rcs[i] < 0) {
			snprintf(msgs[i], ERR_MSG_MAX, "%s", err_msg(&e));
			log_msg(LOG_WARN, s[i].id, "saving job: %s", err_msg(&e));
		}
		free(s[i].arg);
		free(s[i].error);
		free(s[i].progress);
		free(s[i].model_id);
	}
}

static void *job_persist_main(void *p)
{
	struct job_registry *r = p;
	int64_t last_prune = now_ms();
	pthread_mutex_lock(&r->lock);
	for (;;) {
		int stop = r->persist_stop;
		uint64_t seq = r->dirty_seq;
		struct job_snap *s;
		size_t n = job_snap_dirty_locked(r, &s);
		pthread_mutex_unlock(&r->lock);
		int *rcs = n ? xcalloc(n, sizeof(*rcs)) : NULL;
		char(*msgs)[ERR_MSG_MAX] = n ? xcalloc(n, sizeof(*msgs)) : NULL;
		if (n)
			job_snap_write(r->persist, s, n, rcs, msgs);
		if (now_ms() - last_prune > JOB_PRUNE_PERIOD_MS) {
			struct err e;
			err_clear(&e);
			if (job_persist_prune(r->persist, r->keep_jobs, r->keep_ms, &e) < 0)
				log_warn("pruning jobs: %s", err_msg(&e));
			last_prune = now_ms();
		}
		pthread_mutex_lock(&r->lock);
		for (size_t i = 0; i < n; i++) {
			s[i].job->persist_rc = rcs[i];
			snprintf(s[i].job->persist_msg, ERR_MSG_MAX, "%s", msgs[i]);
			job_unref_locked(s[i].job);
		}
		free(s);
		free(rcs);
		free(msgs);
		r->durable_seq = seq;
		pthread_cond_broadcast(&r->durable_cv);
		if (stop)
			break;
		job_prune_locked(r);
		/* An urgent mark made while writing is not waited for. */
		if (!r->persist_stop && r->urgent_seq <= r->durable_seq)
			job_cond_wait_ms(&r->persist_cv, &r->lock, JOB_PERSIST_PERIOD_MS);
	}
	r->persist_done = 1;
	pthread_cond_broadcast(&r->durable_cv);
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

static const struct job_op *job_op_or_null(const char *name)
{
	return name ? job_op_find(name) : NULL;
}

/* Rebuilds one job from its catalog row at start. */
static void job_load_row(void *arg, const struct job_row *row)
{
	struct job_registry *r = arg;
	const struct job_op *op = job_op_or_null(row->operation);
	enum job_state st = row->state;
	if (!op || !row->id || strlen(row->id) >= JOB_ID_MAX) {
		log_warn("catalog: skipping job row '%.40s' that this version cannot read",
			 row->id ? row->id : "");
		return;
	}
	pthread_mutex_lock(&r->lock);
	if (job_find_locked(r, row->id)) {
		pthread_mutex_unlock(&r->lock);
		return;
	}
	struct job *j = job_create_locked(r, op, row->arg, row->id);
	/*
	 * The log of a job's previous life is gone; event ids of this life
	 * start above any id a watcher can hold from it (a reconnecting
	 * watcher's Last-Event-ID must not hide the new events).
	 */
	j->next_id = (uint64_t)wall_ms();
	j->created_ms = row->created_ms;
	j->updated_ms = row->updated_ms;
	j->state = st;
	if (row->error)
		snprintf(j->error, sizeof(j->error), "%s", row->error);
	if (row->progress)
		j->progress = xstrdup(row->progress);
	if (row->model_id)
		j->model_id = xstrdup(row->model_id);
	if (j->progress)
		job_append_locked(r, j, JOB_EV_PROGRESS, xstrdup(j->progress));
	/* A finished job replays its history as far as the catalog kept it. */
	switch (st) {
	case JOB_SUCCEEDED: job_append_locked(r, j, JOB_EV_DONE, xstrdup("[DONE]")); break;
	case JOB_CANCELLED:
		job_append_locked(r, j, JOB_EV_CANCELLED, xstrdup("[CANCELLED]"));
		break;
	case JOB_FAILED:
		job_append_locked(r, j, JOB_EV_ERROR,
				  xasprintf("[ERROR] %s", j->error[0] ? j->error : "failed"));
		break;
	default: break;
	}
	pthread_mutex_unlock(&r->lock);
}

/* Interrupted (and still queued) downloads go back to the queue. */
static void job_resume_all(struct job_registry *r)
{
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n_jobs; i++) {
		struct job *j = r->jobs[i];
		if (j->ended || (j->state != JOB_INTERRUPTED && j->state != JOB_QUEUED))
			continue;
		if (j->op->pool != JOB_POOL_DOWNLOAD) {
			job_set_state_locked(r, j, JOB_FAILED);
			snprintf(j->error, sizeof(j->error), "interrupted by a restart");
			job_append_locked(r, j, JOB_EV_ERROR, xasprintf("[ERROR] %s", j->error));
			continue;
		}
		j->error[0] = 0;
		job_append_locked(r, j, JOB_EV_NARRATION,
				  xasprintf("resuming %s after a restart", j->arg ? j->arg : ""));
		job_set_state_locked(r, j, JOB_QUEUED);
		job_enqueue_locked(r, j);
		log_msg(LOG_INFO, j->id, "resuming after a restart");
	}
	pthread_mutex_unlock(&r->lock);
}

int job_registry_new(const struct job_registry_config *cfg, struct job_registry **out,
		     struct err *e)
{
	*out = NULL;
	struct job_registry *r = xcalloc(1, sizeof(*r));
	r->prov = cfg->prov;
	r->data_root = cfg->data_root ? xstrdup(cfg->data_root) : NULL;
	r->hub_dir = cfg->hub_dir ? xstrdup(cfg->hub_dir) : NULL;
	r->pool = job_persist_pool_new(r->data_root, r->hub_dir, JOB_CATALOG_IDLE);
	r->models_cache = job_models_cache_new(cfg->models_kept_bytes ? cfg->models_kept_bytes
								      : CAP_MODELS_KEPT_BYTES);
	r->hive_id = cfg->hive_id ? xstrdup(cfg->hive_id) : NULL;
	r->max_jobs = cfg->max_jobs > 0 ? cfg->max_jobs : JOB_DEFAULT_MAX_JOBS;
	r->on_event = cfg->on_event;
	r->on_event_arg = cfg->on_event_arg;
	r->keep_jobs = cfg->keep_jobs > 0 ? cfg->keep_jobs : CAP_JOBS_KEPT;
	r->keep_ms = cfg->keep_ms > 0 ? cfg->keep_ms : JOB_DEFAULT_KEEP_MS;
	pthread_mutex_init(&r->lock, NULL);
	cond_init_monotonic(&r->work_cv);
	cond_init_monotonic(&r->persist_cv);
	cond_init_monotonic(&r->durable_cv);
	r->shut_down = 1; /* nothing to shut down until the threads run */

	int rc = job_persist_open(r->data_root, r->hub_dir, &r->persist, e);
	if (rc < 0)
		goto fail;
	rc = job_persist_mark_interrupted(r->persist, e);
	if (rc < 0)
		goto fail;
	job_persist_sweep(r->persist);
	rc = job_persist_load(r->persist, job_load_row, r, e);
	if (rc < 0)
		goto fail;
	if (cfg->resume)
		job_resume_all(r);

	r->shut_down = 0;
	int n_workers = r->max_jobs + JOB__POOLS - 1;
	r->workers = xcalloc((size_t)n_workers, sizeof(pthread_t));
	for (int i = 0; i < n_workers; i++) {
		struct job_worker_arg *wa = xmalloc(sizeof(*wa));
		wa->r = r;
		wa->pool = i < r->max_jobs
			       ? JOB_POOL_DOWNLOAD
			       : (enum job_pool)(JOB_POOL_DOWNLOAD + 1 + i - r->max_jobs);
		if (pthread_create(&r->workers[i], NULL, job_worker_main, wa) != 0) {
			free(wa);
			rc = err_set(e, ERR_IO, "starting job workers: %s", strerror(errno));
			goto fail;
		}
		r->n_workers++;
	}
	if (pthread_create(&r->persister, NULL, job_persist_main, r) != 0) {
		pthread_mutex_lock(&r->lock);
		r->persist_done = 1; /* workers ending a job must not wait for it */
		pthread_cond_broadcast(&r->durable_cv);
		pthread_mutex_unlock(&r->lock);
		rc = err_set(e, ERR_IO, "starting the job persistence thread: %s", strerror(errno));
		goto fail;
	}
	r->persister_started = 1;
	*out = r;
	return 0;
fail:
	job_registry_free(r);
	return rc;
}

void job_registry_shutdown(struct job_registry *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	if (r->shut_down) {
		pthread_mutex_unlock(&r->lock);
		return;
	}
	r->stopping = 1;
	/*
	 * Tokens are fired after the lock is dropped: their wake callbacks
	 * belong to the transfer engine and must not run under our lock.
	 */
	struct cancel_token **fire = xcalloc(r->n_jobs + 1, sizeof(*fire));
	size_t nfire = 0;
	for (size_t i = 0; i < r->n_jobs; i++) {
		struct job *j = r->jobs[i];
		if (j->state == JOB_RUNNING && !j->user_cancel) {
			j->shutdown_cancel = 1;
			fire[nfire++] = cancel_ref(j->cancel);
		}
		pthread_cond_broadcast(&j->cv);
	}
	pthread_cond_broadcast(&r->work_cv);
	pthread_mutex_unlock(&r->lock);
	for (size_t i = 0; i < nfire; i++) {
		cancel_fire(fire[i]);
		cancel_unref(fire[i]);
	}
	free(fire);

	for (int i = 0; i < r->n_workers; i++)
		pthread_join(r->workers[i], NULL);
	r->n_workers = 0;

	pthread_mutex_lock(&r->lock);
	/* Queued jobs stay queued in the catalog and start after the restart. */
	for (int p = 0; p < JOB__POOLS; p++) {
		while (r->queues[p].head) {
			struct job *j = r->queues[p].head;
			r->queues[p].head = j->qnext;
			job_mark_dirty_locked(r, j, 0);
			job_unref_locked(j);
		}
		r->queues[p].tail = NULL;
	}
	r->persist_stop = 1;
	pthread_cond_signal(&r->persist_cv);
	for (size_t i = 0; i < r->n_jobs; i++)
		pthread_cond_broadcast(&r->jobs[i]->cv);
	pthread_mutex_unlock(&r->lock);
	if (r->persister_started)
		pthread_join(r->persister, NULL);
	r->persister_started = 0;
	pthread_mutex_lock(&r->lock);
	/*
	 * Every job that has not ended (the queued ones; a running one ended
	 * interrupted when its worker returned) tells its watchers why their
	 * stream ends, now that its row is on disk. Its state stays as
	 * written, so that the next start picks it up.
	 */
	for (size_t i = 0; i < r->n_jobs; i++) {
		struct job *j = r->jobs[i];
		if (j->ended)
			continue;
		job_set_interrupted_msg(j);
		job_append_locked(r, j, JOB_EV_ERROR, xasprintf("[ERROR] %s", j->error));
	}
	r->shut_down = 1;
	for (size_t i = 0; i < r->n_jobs; i++)
		pthread_cond_broadcast(&r->jobs[i]->cv);
	if (r->on_event)
		r->on_event(r->on_event_arg);
	pthread_mutex_unlock(&r->lock);
}

int job_registry_stop_report(struct job_registry *r, char *buf, size_t size)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 200 * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	if (pthread_mutex_timedlock(&r->lock, &ts) != 0) {
		snprintf(buf, size, "the job registry is locked");
		return 0;
	}
	size_t off = 0;
	buf[0] = 0;
	int flushed = r->persist_done && r->durable_seq == r->dirty_seq;
	for (size_t i = 0; i < r->n_jobs; i++) {
		const struct job *j = r->jobs[i];
		if (j->persist_rc < 0)
			flushed = 0;
		if (j->state != JOB_RUNNING || j->ended || off >= size)
			continue;
		int n = snprintf(buf + off, size - off, "%sjob %s %s %s", off ? ", " : "", j->id,
				 j->op->name, j->arg ? j->arg : "");
		off += n > 0 ? (size_t)n : 0;
	}
	pthread_mutex_unlock(&r->lock);
	if (!buf[0])
		snprintf(buf, size, "no job running");
	return flushed;
}

void job_registry_free(struct job_registry *r)
{
	if (!r)
		return;
	job_registry_shutdown(r);
	/* Threads that failed to start leave work for the loop below only. */
	pthread_mutex_lock(&r->lock);
	r->stopping = 1;
	pthread_cond_broadcast(&r->work_cv);
	pthread_mutex_unlock(&r->lock);
	for (int i = 0; i < r->n_workers; i++)
		pthread_join(r->workers[i], NULL);
	while (r->n_jobs)
		job_unlink_at_locked(r, r->n_jobs - 1);
	job_persist_close(r->persist);
	job_persist_pool_free(r->pool);
	job_models_cache_free(r->models_cache);
	free(r->jobs);
	free(r->workers);
	free(r->data_root);
	free(r->hub_dir);
	free(r->hive_id);
	pthread_cond_destroy(&r->work_cv);
	pthread_cond_destroy(&r->persist_cv);
	pthread_cond_destroy(&r->durable_cv);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

void job_stats_get(struct job_registry *r, struct job_stats *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n_jobs; i++) {
		struct job *j = r->jobs[i];
		st->by_state[j->state]++;
		if (j->state == JOB_RUNNING && j->op->pool == JOB_POOL_DOWNLOAD)
			st->active_transfers++;
	}
	st->bytes_downloaded = r->bytes_downloaded;
	st->watchers = r->watchers;
	pthread_mutex_unlock(&r->lock);
	struct job_persist *cat = NULL;
	st->catalog_models = -1;
	if (job_persist_pool_acquire(r->pool, &cat, NULL) == 0 && cat)
		job_persist_catalog_size(cat, &st->catalog_models, &st->catalog_bytes);
	job_persist_pool_release(r->pool, cat, 0);
}
