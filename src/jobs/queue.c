/*
 * queue: submission, the queues of the worker pools, the workers that run
 * each job's operation and end it, and cancellation.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cancel.h"
#include "core/caps.h"
#include "core/json.h"
#include "core/log.h"
#include "core/util.h"
#include "jobs/job_internal.h"
#include "jobs/persist.h"

void job_enqueue_locked(struct job_registry *r, struct job *j)
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
		assert(j->refs > 1); /* the table still holds one */
		j->refs--;	     /* the queue's reference; the table still holds one */
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
	job_append_locked(
	    r, j, JOB_EV_NARRATION,
	    xasprintf("job %s queued: %s%s%s", j->id, op->name, arg ? " " : "", arg ? arg : ""));
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
		j->error_code = err_name(rc);
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

/* What a refused submission of no known operation is listed as. */
static const struct job_op job_op_unknown = {"unknown", JOB_POOL_QUICK, NULL, 0, 0, NULL};

void job_refuse(struct job_registry *r, const char *operation, const struct err *why,
		char id_out[JOB_ID_MAX])
{
	const struct job_op *op = operation ? job_op_find(operation) : NULL;
	id_out[0] = 0;
	pthread_mutex_lock(&r->lock);
	if (!r->stopping) {
		struct job *j = job_create_locked(r, op ? op : &job_op_unknown, NULL, NULL);
		j->refused = 1;
		j->state = JOB_FAILED;
		char *line = job_line(err_msg(why));
		snprintf(j->error, sizeof(j->error), "%s", line);
		j->error_code = err_name(why ? why->code : ERR_INTERNAL);
		job_append_locked(r, j, JOB_EV_ERROR, xasprintf("[ERROR] %s", line));
		free(line);
		snprintf(id_out, JOB_ID_MAX, "%s", j->id);
		job_prune_locked(r);
	}
	pthread_mutex_unlock(&r->lock);
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
			job_end_locked(r, j, JOB_CANCELLED, JOB_EV_CANCELLED,
				       xstrdup("[CANCELLED]"));
		}
	} else {
		snprintf(j->error, sizeof(j->error), "%s", err_msg(e));
		j->error_code = err_name(rc);
		char *line = job_line(j->error);
		job_end_locked(r, j, JOB_FAILED, JOB_EV_ERROR, xasprintf("[ERROR] %s", line));
		free(line);
	}
}

void *job_worker_main(void *p)
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
		log_msg(rc == 0 ? LOG_INFO : LOG_WARN, j->id, "job %s%s%s",
			job_state_name(j->state), rc == 0 ? "" : ": ", rc == 0 ? "" : j->error);
		job_unref_locked(j); /* the queue's reference */
		job_prune_locked(r);
	}
	pthread_mutex_unlock(&r->lock);
	job_persist_close(cat);
	return NULL;
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
