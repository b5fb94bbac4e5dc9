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

void job_logged_clear_frames(struct job_logged *ev)
{
	for (size_t f = 0; f < JOB__FRAMINGS; f++) {
		job_frame_unref(ev->frame[f]);
		ev->frame[f] = NULL;
	}
}

void job_append_locked(struct job_registry *r, struct job *j, enum job_event_kind kind, char *data)
{
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
		struct job_logged *last = &j->ev[j->n_ev - 1];
		free(last->data);
		/* Watchers still writing the old frames hold their own references. */
		job_logged_clear_frames(last);
		last->data = data;
		last->id = ++j->next_id;
	} else {
		if (j->n_ev == CAP_JOB_EVENTS) {
			/* Drop the oldest quarter; replay then starts at the oldest kept. */
			size_t drop = CAP_JOB_EVENTS / 4;
			for (size_t i = 0; i < drop; i++) {
				free(j->ev[i].data);
				job_logged_clear_frames(&j->ev[i]);
			}
			memmove(j->ev, j->ev + drop, (j->n_ev - drop) * sizeof(j->ev[0]));
			j->n_ev -= drop;
		}
		if (j->n_ev == j->cap_ev) {
			j->cap_ev = j->cap_ev ? j->cap_ev * 2 : 16;
			if (j->cap_ev > CAP_JOB_EVENTS)
				j->cap_ev = CAP_JOB_EVENTS;
			j->ev = xrealloc(j->ev, j->cap_ev * sizeof(j->ev[0]));
		}
		j->ev[j->n_ev] =
		    (struct job_logged){.id = ++j->next_id, .kind = kind, .data = data};
		j->n_ev++;
	}
	if (job_event_is_terminal(kind))
		j->ended = 1;
	/*
	 * Watchers that wait on their own thread each wake and take the lock
	 * in turn; the streams of the daemon's writer cost one wake-up of its
	 * thread however many they are. The appender waits for neither.
	 */
	pthread_cond_broadcast(&j->cv);
	if (r->on_event)
		r->on_event(r->on_event_arg);
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

/*
 * Progress for people, in the shape rbee's download tracker prints (sizes in
 * decimal units, the percentage in parentheses, which rbee's keeper finds
 * with (\d+\.?\d*)%), followed by the phase, the file and the rate.
 */
char *job_progress_text(const char *data, char *phase, size_t phase_size)
{
	json_t *o = json_loads(data, 0, NULL);
	const char *ph = json_string_value(json_object_get(o, "phase"));
	if (!json_is_object(o) || !ph) {
		json_decref(o);
		return NULL;
	}
	snprintf(phase, phase_size, "%s", ph);
	const char *file = json_string_value(json_object_get(o, "file"));
	json_int_t done = json_integer_value(json_object_get(o, "bytes_done"));
	json_int_t total = json_integer_value(json_object_get(o, "bytes_total"));
	double rate = json_number_value(json_object_get(o, "rate_bps"));
	char d[FMT_SIZE_LEN], t[FMT_SIZE_LEN], pct[48] = "", at[FMT_SIZE_LEN + 8] = "";
	fmt_size(d, sizeof(d), done > 0 ? (uint64_t)done : 0);
	fmt_size(t, sizeof(t), total > 0 ? (uint64_t)total : 0);
	if (total > 0)
		snprintf(pct, sizeof(pct), " / %s (%.1f%%)", t,
			 done >= total ? 100.0 : 100.0 * (double)done / (double)total);
	if (strcmp(ph, "downloading") == 0 && rate >= 1.0) {
		char r[FMT_SIZE_LEN];
		fmt_size(r, sizeof(r), (uint64_t)rate);
		snprintf(at, sizeof(at), " at %s/s", r);
	}
	char *text = xasprintf("Downloaded %s%s, %s%s%s%s", d, pct, ph, file ? " " : "",
			       file ? file : "", at);
	json_decref(o);
	/* The file name comes from a Hub listing: one line, whatever it holds. */
	char *line = job_line(text);
	free(text);
	return line;
}
