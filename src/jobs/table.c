/*
 * table: the job table and each job's fields: creating, finding and
 * releasing jobs (reference counted), pruning finished ones, marking rows
 * for the persistence thread and waiting for them to be on disk, ending a
 * job, and the busy check of a model.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "core/cancel.h"
#include "core/json.h"
#include "core/log.h"
#include "core/ref.h"
#include "core/util.h"
#include "jobs/job_internal.h"
#include "jobs/persist.h"

/*
 * How long a submission or a job's end waits for its row to be on disk: a
 * little over the catalog's busy timeout, the longest a healthy write waits
 * for another writer.
 */
#define JOB_DURABLE_WAIT_MS 6000

/* Condition waits use the monotonic clock so wall-clock jumps do not matter. */
void job_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *m, long ms)
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

void job_unref_locked(struct job *j)
{
	assert(j->refs > 0);
	if (--j->refs > 0)
		return;
	for (size_t i = 0; i < j->n_ev; i++) {
		free(j->ev[i].data);
		job_logged_clear_frames(&j->ev[i]);
	}
	free(j->ev);
	free(j->arg);
	free(j->progress);
	free(j->model_id);
	cancel_unref(j->cancel);
	pthread_cond_destroy(&j->cv);
	free(j);
}

struct job *job_find_locked(struct job_registry *r, const char *id)
{
	if (!id)
		return NULL;
	/*
	 * O(N) in the jobs kept (at most CAP_JOBS_KEPT plus the active ones),
	 * under the lock: each request that names a job pays it once.
	 */
	for (size_t i = 0; i < r->n_jobs; i++)
		if (strcmp(r->jobs[i]->id, id) == 0)
			return r->jobs[i];
	return NULL;
}

void job_unlink_at_locked(struct job_registry *r, size_t i)
{
	struct job *j = r->jobs[i];
	memmove(&r->jobs[i], &r->jobs[i + 1], (r->n_jobs - i - 1) * sizeof(r->jobs[0]));
	r->n_jobs--;
	j->linked = 0;
	job_unref_locked(j);
}

int job_is_active(const struct job *j)
{
	return !job_state_final(j->state);
}

/*
 * Drops finished jobs over the count cap, refused submissions over theirs
 * (oldest first), and finished jobs over the age cap.
 */
void job_prune_locked(struct job_registry *r)
{
	int64_t now = wall_ms();
	size_t finished = 0, refused = 0;
	for (size_t i = 0; i < r->n_jobs; i++) {
		if (!job_is_active(r->jobs[i]) && !r->jobs[i]->dirty)
			finished++;
		refused += r->jobs[i]->refused;
	}
	for (size_t i = 0; i < r->n_jobs;) {
		struct job *j = r->jobs[i];
		if (job_is_active(j) || j->dirty) {
			i++;
			continue;
		}
		if (finished > (size_t)r->keep_jobs || now - j->updated_ms > r->keep_ms ||
		    (j->refused && refused > CAP_JOBS_REFUSED)) {
			finished--;
			refused -= j->refused;
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
uint64_t job_mark_dirty_locked(struct job_registry *r, struct job *j, int urgent)
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

uint64_t job_set_state_locked(struct job_registry *r, struct job *j, enum job_state s)
{
	j->state = s;
	return job_mark_dirty_locked(r, j, 1);
}

/*
 * Waits (releasing the lock meanwhile) until every row marked up to seq has
 * been written by the persistence thread. Returns 0, ERR_TIMEOUT, or
 * ERR_SHUTDOWN when the thread has left without writing it.
 */
int job_wait_durable_locked(struct job_registry *r, uint64_t seq)
{
	int64_t deadline = now_ms() + JOB_DURABLE_WAIT_MS;
	while (r->durable_seq < seq) {
		if (r->persist_done)
			return ERR_SHUTDOWN;
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return ERR_TIMEOUT;
		job_cond_wait_ms(&r->durable_cv, &r->lock, left);
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
void job_end_locked(struct job_registry *r, struct job *j, enum job_state st,
		    enum job_event_kind kind, char *data)
{
	uint64_t seq = job_set_state_locked(r, j, st);
	int rc = job_wait_durable_locked(r, seq);
	if (rc < 0 || j->persist_rc < 0)
		log_msg(LOG_ERROR, j->id, "the %s state is not on disk: %s", job_state_name(st),
			rc < 0 ? err_text(rc) : j->persist_msg);
	job_append_locked(r, j, kind, data);
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

/*
 * 1 if a download of ref `arg`, whose model is not named until it is
 * published, may be writing model_id (a catalog id or a user's ref): the
 * same ref; a Hugging Face ref, any model of its repo; a URL ref pinning a
 * digest, the model of that digest; a file ref, the model of its file name.
 */
static int job_ref_may_write(const char *arg, const char *model_id)
{
	return strcmp(arg, model_id) == 0 || ref_same_hf_repo(arg, model_id) ||
	       ref_matches_id(arg, model_id);
}

int job_model_busy(struct job_registry *r, const char *model_id)
{
	/* The refs are compared after the lock is released: parsing a URL calls libcurl. */
	char **refs = NULL;
	size_t n = 0;
	int busy = 0;
	pthread_mutex_lock(&r->lock);
	/* O(N) in the jobs kept; only active downloads are compared. */
	refs = xcalloc(r->n_jobs, sizeof(*refs));
	for (size_t i = 0; i < r->n_jobs; i++) {
		struct job *j = r->jobs[i];
		if (!job_is_active(j) || j->op->pool != JOB_POOL_DOWNLOAD || !j->arg)
			continue;
		if (j->model_id && strcmp(j->model_id, model_id) == 0) {
			busy = 1;
			break;
		}
		refs[n++] = xstrdup(j->arg);
	}
	pthread_mutex_unlock(&r->lock);
	for (size_t i = 0; i < n; i++) {
		busy = busy || job_ref_may_write(refs[i], model_id);
		free(refs[i]);
	}
	free(refs);
	return busy;
}

/*
 * What a job's watchers read when a daemon stop cuts it short: downloads go
 * back to the queue at the next start (job_resume_all), other operations
 * end there, so their callers must ask again.
 */
void job_set_interrupted_msg(struct job *j)
{
	snprintf(j->error, sizeof(j->error), "interrupted: the daemon is stopping; %s",
		 j->op->pool == JOB_POOL_DOWNLOAD ? "the job resumes when the daemon is back"
						  : "run it again when the daemon is back");
}
