/*
 * watch: reading jobs: their JSON views and the watchers that follow a
 * job's event log.
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

static json_t *job_json_locked(const struct job *j)
{
	json_t *o = json_object();
	json_set_str(o, "job_id", j->id);
	json_set_str(o, "operation", j->op->name);
	if (j->arg)
		json_set_str(o, j->op->arg_key ? j->op->arg_key : "arg", j->arg);
	json_set_str(o, "state", job_state_name(j->state));
	json_set_str(o, "error", j->error[0] ? j->error : NULL);
	if (j->error[0] && j->error_code)
		json_set_str(o, "error_code", j->error_code);
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

int job_watch_open(struct job_registry *r, const char *id, uint64_t last_id, struct job_watch **out,
		   struct err *e)
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

/*
 * Waits for the next event with r->lock held (released while waiting):
 * returns 1 with *out the event, whose id becomes the cursor, 0 on timeout,
 * or ERR_SHUTDOWN. The event stays valid until the lock is released.
 */
static int job_watch_wait_locked(struct job_watch *w, long timeout_ms, struct job_logged **out)
{
	struct job_registry *r = w->r;
	struct job *j = w->j;
	int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	int rc = 0;
	for (;;) {
		size_t i = job_ev_after(j, w->cursor);
		if (i < j->n_ev) {
			*out = &j->ev[i];
			w->cursor = j->ev[i].id;
			if (job_event_is_terminal(j->ev[i].kind))
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
		job_cond_wait_ms(&j->cv, &r->lock, left);
	}
	return rc;
}

/* The next event as a copy of its data (ev) or as its shared frame in framing f. */
static int job_watch_take(struct job_watch *w, long timeout_ms, struct job_event *ev,
			  enum job_framing f, struct job_frame **frame)
{
	if (w->done)
		return 0;
	struct job_logged *x = NULL;
	pthread_mutex_lock(&w->r->lock);
	int rc = job_watch_wait_locked(w, timeout_ms, &x);
	if (rc == 1 && ev)
		*ev = (struct job_event){.id = x->id, .kind = x->kind, .data = xstrdup(x->data)};
	if (rc == 1 && frame)
		*frame = job_frame_get_locked(w->j, x, f);
	pthread_mutex_unlock(&w->r->lock);
	return rc;
}

int job_watch_next(struct job_watch *w, long timeout_ms, struct job_event *ev)
{
	return job_watch_take(w, timeout_ms, ev, JOB_FRAMING_SSE, NULL);
}

int job_watch_next_frame(struct job_watch *w, long timeout_ms, enum job_framing f,
			 struct job_frame **out)
{
	*out = NULL;
	return job_watch_take(w, timeout_ms, NULL, f, out);
}

void job_watch_close(struct job_watch *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->r->lock);
	assert(w->r->watchers > 0);
	w->r->watchers--;
	job_unref_locked(w->j);
	pthread_mutex_unlock(&w->r->lock);
	free(w);
}
