/*
 * registry: the job table, the queues and workers, the event logs and their
 * watchers, cancellation, pruning and the persistence thread. The lock
 * discipline is described in job.h.
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

#define JOB_DEFAULT_MAX_JOBS 2
#define JOB_DEFAULT_KEEP_MS (7LL * 24 * 3600 * 1000)
#define JOB_PERSIST_PERIOD_MS 1000
#define JOB_PRUNE_PERIOD_MS (60 * 1000)
/*
 * Idle catalog connections kept for request threads: enough for a client
 * that keeps 16 requests in flight, so that none of them opens the catalog.
 */
#define JOB_CATALOG_IDLE 16
/*
 * How long a submission or a job's end waits for its row to be on disk: a
 * little over the catalog's busy timeout, the longest a healthy write waits
 * for another writer.
 */
#define JOB_DURABLE_WAIT_MS 6000

int job_event_is_terminal(enum job_event_kind k)
{
	return k == JOB_EV_DONE || k == JOB_EV_ERROR || k == JOB_EV_CANCELLED;
}

/* Condition waits use the monotonic clock so wall-clock jumps do not matter. */
static void cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *m, long ms)
{
	struct timespec ts;
	deadline_after_ms(&ts, ms);
	pthread_cond_timedwait(cv, m, &ts);
}

static void job_new_id(char out[JOB_ID_MAX])
{
	unsigned char b[8];
	if (RAND_bytes(b, sizeof(b)) != 1) {
		/* Uniqueness, not secrecy, is what matters for a job id. */
		uint64_t t = (uint64_t)now_ms() ^ ((uint64_t)wall_ms() << 20) ^ (uint64_t)rand();
		memcpy(b, &t, sizeof(b));
	}
	char hex[17];
	hex_encode(b, sizeof(b), hex);
	snprintf(out, JOB_ID_MAX, "job-%s", hex);
}

static void job_unref_locked(struct job *j)
{
	if (--j->refs > 0)
		return;
	for (size_t i = 0; i < j->n_ev; i++)
		free(j->ev[i].data);
	free(j->ev);
	free(j->arg);
	free(j->progress);
	free(j->model_id);
	cancel_unref(j->cancel);
	pthread_cond_destroy(&j->cv);
	free(j);
}

static struct job *job_find_locked(struct job_registry *r, const char *id)
{
	if (!id)
		return NULL;
	for (size_t i = 0; i < r->n_jobs; i++)
		if (strcmp(r->jobs[i]->id, id) == 0)
			return r->jobs[i];
	return NULL;
}

static void job_unlink_at_locked(struct job_registry *r, size_t i)
{
	struct job *j = r->jobs[i];
	memmove(&r->jobs[i], &r->jobs[i + 1], (r->n_jobs - i - 1) * sizeof(r->jobs[0]));
	r->n_jobs--;
	j->linked = 0;
	job_unref_locked(j);
}

static int job_is_active(const struct job *j)
{
	return !job_state_final(j->state);
}

/* Drops finished jobs over the count cap (oldest first) and over the age cap. */
static void job_prune_locked(struct job_registry *r)
{
	int64_t now = wall_ms();
	size_t finished = 0;
	for (size_t i = 0; i < r->n_jobs; i++)
		if (!job_is_active(r->jobs[i]) && !r->jobs[i]->dirty)
			finished++;
	for (size_t i = 0; i < r->n_jobs;) {
		struct job *j = r->jobs[i];
		if (job_is_active(j) || j->dirty) {
			i++;
			continue;
		}
		if (finished > (size_t)r->keep_jobs || now - j->updated_ms > r->keep_ms) {
			finished--;
			job_unlink_at_locked(r, i);
			continue;
		}
		i++;
	}
}

/*
 * Marks j's row stale and returns the mark's sequence number, which
 * job_wait_durable_locked() takes. An urgent mark is written at once, a
 * progress update with the next periodic flush.
 */
static uint64_t job_mark_dirty_locked(struct job_registry *r, struct job *j, int urgent)
{
	j->dirty = 1;
	j->updated_ms = wall_ms();
	uint64_t seq = ++r->dirty_seq;
	if (urgent) {
		r->urgent_seq = seq;
		pthread_cond_signal(&r->persist_cv);
	}
	return seq;
}

static uint64_t job_set_state_locked(struct job_registry *r, struct job *j, enum job_state s)
{
	j->state = s;
	return job_mark_dirty_locked(r, j, 1);
}

/*
 * Waits (releasing the lock meanwhile) until every row marked up to seq has
 * been written by the persistence thread. Returns 0, ERR_TIMEOUT, or
 * ERR_SHUTDOWN when the thread has left without writing it.
 */
static int job_wait_durable_locked(struct job_registry *r, uint64_t seq)
{
	int64_t deadline = now_ms() + JOB_DURABLE_WAIT_MS;
	while (r->durable_seq < seq) {
		if (r->persist_done)
			return ERR_SHUTDOWN;
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return ERR_TIMEOUT;
		cond_wait_ms(&r->durable_cv, &r->lock, left);
	}
	return 0;
}

/*
 * Sets a final (or interrupted) state and appends the terminal event only
 * once the state is on disk, so that a watcher that read [DONE], [ERROR] or
 * [CANCELLED] can rely on it after a crash. The lock is released while the
 * row is written; nothing else ends the job meanwhile (its state is no
 * longer queued or running).
 */
static void job_end_locked(struct job_registry *r, struct job *j, enum job_state st,
			   enum job_event_kind kind, char *data)
{
	uint64_t seq = job_set_state_locked(r, j, st);
	int rc = job_wait_durable_locked(r, seq);
	if (rc < 0 || j->persist_rc < 0)
		log_msg(LOG_ERROR, j->id, "the %s state is not on disk: %s", job_state_name(st),
			rc < 0 ? err_text(rc) : j->persist_msg);
	job_append_locked(r, j, kind, data);
}

void job_append_locked(struct job_registry *r, struct job *j, enum job_event_kind kind, char *data)
{
	(void)r;
	if (j->ended) {
		free(data);
		return;
	}
	if (kind == JOB_EV_PROGRESS && j->n_ev > 0 && j->ev[j->n_ev - 1].kind == JOB_EV_PROGRESS) {
		/*
		 * Coalesce: the newest progress replaces the previous one under a
		 * new id, so a watcher that saw the old one still gets the new one
		 * and the log does not grow while bytes move.
		 */
		struct job_event *last = &j->ev[j->n_ev - 1];
		free(last->data);
		last->data = data;
		last->id = ++j->next_id;
	} else {
		if (j->n_ev == CAP_JOB_EVENTS) {
			/* Drop the oldest quarter; replay then starts at the oldest kept. */
			size_t drop = CAP_JOB_EVENTS / 4;
			for (size_t i = 0; i < drop; i++)
				free(j->ev[i].data);
			memmove(j->ev, j->ev + drop, (j->n_ev - drop) * sizeof(j->ev[0]));
			j->n_ev -= drop;
		}
		if (j->n_ev == j->cap_ev) {
			j->cap_ev = j->cap_ev ? j->cap_ev * 2 : 16;
			if (j->cap_ev > CAP_JOB_EVENTS)
				j->cap_ev = CAP_JOB_EVENTS;
			j->ev = xrealloc(j->ev, j->cap_ev * sizeof(j->ev[0]));
		}
		j->ev[j->n_ev].id = ++j->next_id;
		j->ev[j->n_ev].kind = kind;
		j->ev[j->n_ev].data = data;
		j->n_ev++;
	}
	if (job_event_is_terminal(kind))
		j->ended = 1;
	pthread_cond_broadcast(&j->cv);
}

void job_append(struct job_registry *r, struct job *j, enum job_event_kind kind, char *data)
{
	pthread_mutex_lock(&r->lock);
	job_append_locked(r, j, kind, data);
	pthread_mutex_unlock(&r->lock);
}

/* One line for an SSE data: field; control characters become spaces. */
static char *job_line(const char *s)
{
	size_t n = strnlen(s, CAP_EVENT_LEN - 1);
	char *out = xstrndup(s, n);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
			out[i] = ' ';
	return out;
}

void job_narrate(struct job_registry *r, struct job *j, const char *fmt, ...)
{
	char buf[CAP_EVENT_LEN];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	job_append(r, j, JOB_EV_NARRATION, job_line(buf));
}

struct job *job_create_locked(struct job_registry *r, const struct job_op *op, const char *arg,
			      const char *id)
{
	struct job *j = xcalloc(1, sizeof(*j));
	if (id)
		snprintf(j->id, sizeof(j->id), "%s", id);
	else
		job_new_id(j->id);
	j->op = op;
	j->arg = arg ? xstrdup(arg) : NULL;
	j->cancel = cancel_new();
	j->state = JOB_QUEUED;
	j->created_ms = j->updated_ms = wall_ms();
	cond_init_monotonic(&j->cv);
	j->refs = 1;
	j->linked = 1;
	if (r->n_jobs == r->cap_jobs) {
		r->cap_jobs = r->cap_jobs ? r->cap_jobs * 2 : 64;
		r->jobs = xrealloc(r->jobs, r->cap_jobs * sizeof(r->jobs[0]));
	}
	r->jobs[r->n_jobs++] = j;
	return j;
}

void job_set_progress(struct job_registry *r, struct job *j, char *json, uint64_t bytes_done)
{
	pthread_mutex_lock(&r->lock);
	if (bytes_done > j->last_bytes)
		r->bytes_downloaded += bytes_done - j->last_bytes;
	j->last_bytes = bytes_done;
	free(j->progress);
	j->progress = xstrdup(json);
	job_mark_dirty_locked(r, j, 0);
	job_append_locked(r, j, JOB_EV_PROGRESS, json);
	pthread_mutex_unlock(&r->lock);
}

void job_set_model_id(struct job_registry *r, struct job *j, const char *model_id)
{
	pthread_mutex_lock(&r->lock);
	free(j->model_id);
	j->model_id = xstrdup(model_id);
	job_mark_dirty_locked(r, j, 1);
	pthread_mutex_unlock(&r->lock);
}

static void job_enqueue_locked(struct job_registry *r, struct job *j)
{
	struct job_queue *q = &r->queues[j->op->pool];
	j->qnext = NULL;
	if (q->tail)
		q->tail->qnext = j;
	else
		q->head = j;
	q->tail = j;
	j->refs++; /* the queue's reference, moved to the worker */
	pthread_cond_broadcast(&r->work_cv);
}

static int job_dequeue_locked(struct job_registry *r, struct job *j)
{
	struct job_queue *q = &r->queues[j->op->pool];
	struct job *prev = NULL;
	for (struct job *it = q->head; it; prev = it, it = it->qnext) {
		if (it != j)
			continue;
		if (prev)
			prev->qnext = it->qnext;
		else
			q->head = it->qnext;
		if (q->tail == it)
			q->tail = prev;
		j->refs--; /* the queue's reference; the table still holds one */
		return 1;
	}
	return 0;
}

int job_start(struct job_registry *r, const struct job_op *op, const char *arg,
	      char id_out[JOB_ID_MAX], struct err *e)
{
	pthread_mutex_lock(&r->lock);
	if (r->stopping) {
		pthread_mutex_unlock(&r->lock);
		return err_set(e, ERR_SHUTDOWN, "the daemon is shutting down");
	}
	size_t active = 0;
	for (size_t i = 0; i < r->n_jobs; i++)
		active += job_is_active(r->jobs[i]);
	if (active >= CAP_JOBS_KEPT) {
		pthread_mutex_unlock(&r->lock);
		return err_set(e, ERR_RETRY, "%zu jobs are queued or running; try again later",
			       active);
	}
	struct job *j = job_create_locked(r, op, arg, NULL);
	snprintf(id_out, JOB_ID_MAX, "%s", j->id);
	uint64_t seq = job_mark_dirty_locked(r, j, 1);
	job_append_locked(r, j, JOB_EV_NARRATION,
			  xasprintf("job %s queued: %s%s%s", j->id, op->name, arg ? " " : "",
				    arg ? arg : ""));
	/*
	 * The 201 promises a job that survives a crash: the queued row is
	 * written (one small transaction, grouped with whatever else is due)
	 * before the job may start and before the caller answers.
	 */
	j->refs++;
	int rc = job_wait_durable_locked(r, seq);
	if (rc == 0 && j->persist_rc < 0)
		rc = err_set(e, j->persist_rc, "the job could not be recorded: %s", j->persist_msg);
	else if (rc < 0)
		err_set(e, rc, "the job could not be recorded: %s",
			rc == ERR_TIMEOUT ? "the catalog did not answer in time"
					  : "the daemon is shutting down");
	if (rc < 0) {
		/* Final, so that a row written late is not resumed after a restart. */
		snprintf(j->error, sizeof(j->error), "%s", err_msg(e));
		job_set_state_locked(r, j, JOB_FAILED);
		job_append_locked(r, j, JOB_EV_ERROR, xasprintf("[ERROR] %s", j->error));
	} else if (j->state == JOB_QUEUED && !r->stopping) {
		/* Not if it was cancelled meanwhile; during a stop it stays queued on disk. */
		job_enqueue_locked(r, j);
	}
	job_unref_locked(j);
	pthread_mutex_unlock(&r->lock);
	if (rc < 0) {
		log_msg(LOG_ERROR, id_out, "job refused: %s", err_msg(e));
		return rc;
	}
	log_msg(LOG_INFO, id_out, "job submitted: %s", op->name);
	return 0;
}

/*
 * What a job's watchers read when a daemon stop cuts it short: downloads go
 * back to the queue at the next start (job_resume_all), other operations
 * end there, so their callers must ask again.
 */
static void job_set_interrupted_msg(struct job *j)
{
	snprintf(j->error, sizeof(j->error), "interrupted: the daemon is stopping; %s",
		 j->op->pool == JOB_POOL_DOWNLOAD ? "the job resumes when the daemon is back"
						  : "run it again when the daemon is back");
}

/* Ends a job after its handler returned rc. Caller holds r->lock. */
static void job_finish_locked(struct job_registry *r, struct job *j, int rc, const struct err *e)
{
	if (rc == 0) {
		job_end_locked(r, j, JOB_SUCCEEDED, JOB_EV_DONE, xstrdup("[DONE]"));
	} else if (rc == ERR_CANCELLED || cancel_is_set(j->cancel)) {
		if (j->shutdown_cancel) {
			job_set_interrupted_msg(j);
			job_end_locked(r, j, JOB_INTERRUPTED, JOB_EV_ERROR,
				       xasprintf("[ERROR] %s", j->error));
		} else {
			snprintf(j->error, sizeof(j->error), "cancelled");
			job_end_locked(r, j, JOB_CANCELLED, JOB_EV_CANCELLED, xstrdup("[CANCELLED]"));
		}
	} else {
		snprintf(j->error, sizeof(j->error), "%s", err_msg(e));
		char *line = job_line(j->error);
		job_end_locked(r, j, JOB_FAILED, JOB_EV_ERROR, xasprintf("[ERROR] %s", line));
		free(line);
	}
}

struct job_worker_arg {
	struct job_registry *r;
	enum job_pool pool;
};

static void *job_worker_main(void *p)
{
	struct job_worker_arg *wa = p;
	struct job_registry *r = wa->r;
	enum job_pool pool = wa->pool;
	free(wa);

	struct job_persist *cat = NULL;
	if (pool != JOB_POOL_DOWNLOAD) {
		struct err e;
		err_clear(&e);
		if (job_persist_open(r->data_root, r->hub_dir, &cat, &e) < 0)
			log_error("job worker: catalog: %s", err_msg(&e));
	}
	pthread_mutex_lock(&r->lock);
	for (;;) {
		struct job_queue *q = &r->queues[pool];
		while (!r->stopping && !q->head)
			pthread_cond_wait(&r->work_cv, &r->lock);
		if (r->stopping)
			break;
		struct job *j = q->head;
		q->head = j->qnext;
		if (!q->head)
			q->tail = NULL;
		j->qnext = NULL;
		job_set_state_locked(r, j, JOB_RUNNING);
		pthread_mutex_unlock(&r->lock);

		log_msg(LOG_INFO, j->id, "job running: %s", j->op->name);
		struct err e;
		err_clear(&e);
		int rc = j->op->run(r, j, cat, &e);
		if (rc < 0 && e.code == 0)
			err_set(&e, rc, "%s", err_text(rc));

		pthread_mutex_lock(&r->lock);
		job_finish_locked(r, j, rc, &e);
		log_msg(rc == 0 ? LOG_INFO : LOG_WARN, j->id, "job %s%s%s", job_state_name(j->state),
			rc == 0 ? "" : ": ", rc == 0 ? "" : j->error);
		job_unref_locked(j); /* the queue's reference */
		job_prune_locked(r);
	}
	pthread_mutex_unlock(&r->lock);
	job_persist_close(cat);
	return NULL;
}

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
			cond_wait_ms(&r->persist_cv, &r->lock, JOB_PERSIST_PERIOD_MS);
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
	case JOB_CANCELLED: job_append_locked(r, j, JOB_EV_CANCELLED, xstrdup("[CANCELLED]")); break;
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
	r->models_cache = job_models_cache_new();
	r->hive_id = cfg->hive_id ? xstrdup(cfg->hive_id) : NULL;
	r->max_jobs = cfg->max_jobs > 0 ? cfg->max_jobs : JOB_DEFAULT_MAX_JOBS;
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
		wa->pool = i < r->max_jobs ? JOB_POOL_DOWNLOAD
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

int job_cancel(struct job_registry *r, const char *id, enum job_state *state, struct err *e)
{
	pthread_mutex_lock(&r->lock);
	struct job *j = job_find_locked(r, id);
	if (!j) {
		pthread_mutex_unlock(&r->lock);
		return err_set(e, ERR_NOT_FOUND, "no job '%.64s'", id);
	}
	*state = j->state;
	int rc = 0;
	struct cancel_token *fire = NULL;
	if (j->state == JOB_QUEUED || j->state == JOB_INTERRUPTED) {
		job_dequeue_locked(r, j);
		snprintf(j->error, sizeof(j->error), "cancelled");
		fire = cancel_ref(j->cancel);
		j->refs++;
		job_end_locked(r, j, JOB_CANCELLED, JOB_EV_CANCELLED, xstrdup("[CANCELLED]"));
		job_unref_locked(j);
	} else if (j->state == JOB_RUNNING) {
		/* The worker sees the token and ends the job cancelled. */
		j->user_cancel = 1;
		fire = cancel_ref(j->cancel);
	} else {
		rc = err_set(e, ERR_CONFLICT, "job %s has already ended: %s", j->id,
			     job_state_name(j->state));
	}
	pthread_mutex_unlock(&r->lock);
	/* Fired without the lock: the token's wake callbacks are the transfer engine's. */
	if (fire) {
		cancel_fire(fire);
		cancel_unref(fire);
	}
	if (rc == 0)
		log_msg(LOG_INFO, id, "cancel requested");
	return rc;
}

static json_t *job_json_locked(const struct job *j)
{
	json_t *o = json_object();
	json_set_str(o, "job_id", j->id);
	json_set_str(o, "operation", j->op->name);
	if (j->arg)
		json_set_str(o, j->op->arg_key ? j->op->arg_key : "arg", j->arg);
	json_set_str(o, "state", job_state_name(j->state));
	json_set_str(o, "error", j->error[0] ? j->error : NULL);
	json_set_str(o, "model_id", j->model_id);
	json_set_int(o, "created_ms", j->created_ms);
	json_set_int(o, "updated_ms", j->updated_ms);
	json_t *p = NULL;
	if (j->progress)
		p = json_loads(j->progress, 0, NULL);
	/* The latest progress event was sent while the job ran: it ends in the job's state. */
	if (json_is_object(p))
		json_set_str(p, "state", job_state_name(j->state));
	json_object_set_new(o, "progress", p ? p : json_null());
	char url[JOB_ID_MAX + 32];
	snprintf(url, sizeof(url), "/v1/jobs/%s/stream", j->id);
	json_set_str(o, "sse_url", url);
	return o;
}

int job_get_json(struct job_registry *r, const char *id, json_t **out, struct err *e)
{
	pthread_mutex_lock(&r->lock);
	struct job *j = job_find_locked(r, id);
	*out = j ? job_json_locked(j) : NULL;
	pthread_mutex_unlock(&r->lock);
	return j ? 0 : err_set(e, ERR_NOT_FOUND, "no job '%.64s'", id);
}

int job_list_json(struct job_registry *r, const char *filter, json_t **out, struct err *e)
{
	enum job_state want = JOB_QUEUED;
	*out = NULL;
	if (filter && job_state_parse(filter, &want) < 0)
		return err_set(e, ERR_INVALID,
			       "state '%.32s': expected queued, running, succeeded, failed, "
			       "cancelled or interrupted",
			       filter);
	json_t *arr = json_array();
	pthread_mutex_lock(&r->lock);
	for (size_t i = r->n_jobs; i-- > 0;) {
		if (filter && r->jobs[i]->state != want)
			continue;
		json_array_append_new(arr, job_json_locked(r->jobs[i]));
	}
	pthread_mutex_unlock(&r->lock);
	*out = json_pack("{s:o}", "jobs", arr);
	return 0;
}

struct job_watch {
	struct job_registry *r;
	struct job *j;
	uint64_t cursor;
	int done;
};

int job_watch_open(struct job_registry *r, const char *id, uint64_t last_id,
		   struct job_watch **out, struct err *e)
{
	*out = NULL;
	pthread_mutex_lock(&r->lock);
	struct job *j = job_find_locked(r, id);
	if (!j) {
		pthread_mutex_unlock(&r->lock);
		return err_set(e, ERR_NOT_FOUND, "no job '%.64s'", id);
	}
	if (r->watchers >= CAP_WATCHERS) {
		pthread_mutex_unlock(&r->lock);
		return err_set(e, ERR_RETRY, "%d streams are open; try again later", CAP_WATCHERS);
	}
	r->watchers++;
	j->refs++;
	/* A cursor beyond the log comes from another life of the job: replay it all. */
	if (last_id > j->next_id)
		last_id = 0;
	pthread_mutex_unlock(&r->lock);
	struct job_watch *w = xcalloc(1, sizeof(*w));
	w->r = r;
	w->j = j;
	w->cursor = last_id;
	*out = w;
	return 0;
}

/* Index of the first event with id > cursor, or n_ev. */
static size_t job_ev_after(const struct job *j, uint64_t cursor)
{
	size_t lo = 0, hi = j->n_ev;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (j->ev[mid].id <= cursor)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int job_watch_next(struct job_watch *w, long timeout_ms, struct job_event *ev)
{
	struct job_registry *r = w->r;
	struct job *j = w->j;
	if (w->done)
		return 0;
	int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	int rc = 0;
	pthread_mutex_lock(&r->lock);
	for (;;) {
		size_t i = job_ev_after(j, w->cursor);
		if (i < j->n_ev) {
			ev->id = j->ev[i].id;
			ev->kind = j->ev[i].kind;
			ev->data = xstrdup(j->ev[i].data);
			w->cursor = ev->id;
			if (job_event_is_terminal(ev->kind))
				w->done = 1;
			rc = 1;
			break;
		}
		/*
		 * A stop ends every job with a terminal event before shut_down is
		 * set, so a watcher waits for that event rather than leaving early.
		 */
		if (r->shut_down) {
			rc = ERR_SHUTDOWN;
			break;
		}
		int64_t left = deadline - now_ms();
		if (left <= 0)
			break;
		cond_wait_ms(&j->cv, &r->lock, left);
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

void job_watch_close(struct job_watch *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->r->lock);
	w->r->watchers--;
	job_unref_locked(w->j);
	pthread_mutex_unlock(&w->r->lock);
	free(w);
}

/* "hf:org/repo:file" or "org/repo@rev" -> "org/repo" (lowercase) in out. */
static void job_repo_of(const char *s, char *out, size_t size)
{
	if (strncmp(s, "hf:", 3) == 0)
		s += 3;
	size_t n = strcspn(s, ":@#");
	if (n >= size)
		n = size - 1;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
	out[n] = 0;
}

int job_model_busy(struct job_registry *r, const char *model_id)
{
	char want[2 * CAP_REPO_ID_LEN + 8];
	job_repo_of(model_id, want, sizeof(want));
	int busy = 0;
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n_jobs && !busy; i++) {
		struct job *j = r->jobs[i];
		if (!job_is_active(j) || j->op->pool != JOB_POOL_DOWNLOAD || !j->arg)
			continue;
		if (j->model_id && strcmp(j->model_id, model_id) == 0) {
			busy = 1;
			break;
		}
		/*
		 * Until the provisioner names the file, any model of the same repo
		 * (or the same URL or file ref) may be the one being written.
		 */
		char have[2 * CAP_REPO_ID_LEN + 8];
		job_repo_of(j->arg, have, sizeof(have));
		if (strcmp(have, want) == 0 || strcmp(j->arg, model_id) == 0)
			busy = 1;
	}
	pthread_mutex_unlock(&r->lock);
	return busy;
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
