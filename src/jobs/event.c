/*
 * event: the event log of a job: appending (progress coalesced, the oldest
 * events dropped over CAP_JOB_EVENTS) and narration lines.
 */
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

int job_event_is_terminal(enum job_event_kind k)
{
	return k == JOB_EV_DONE || k == JOB_EV_ERROR || k == JOB_EV_CANCELLED;
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
char *job_line(const char *s)
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
