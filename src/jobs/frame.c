/*
 * frame: an event of a job's log as its stream writes it, in each framing
 * of docs/api.md, made once and shared by every watcher by reference. What
 * depends on the watcher (rbee's framing sends at most one progress line a
 * second) is decided by the stream from the frame's kind and tag; the text
 * itself depends only on the event and the job's operation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "jobs/job_internal.h"

struct job_frame *job_frame_ref(struct job_frame *f)
{
	atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
	return f;
}

void job_frame_unref(struct job_frame *f)
{
	if (f && atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
		free(f);
}

/* A frame holding text (may be NULL: an empty frame); takes ownership of text. */
static struct job_frame *job_frame_new(const struct job_logged *ev, const char *tag, char *text)
{
	size_t len = text ? strlen(text) : 0;
	struct job_frame *f = xmalloc(sizeof(*f) + len + 1);
	atomic_init(&f->refs, 1);
	f->id = ev->id;
	f->kind = ev->kind;
	snprintf(f->tag, sizeof(f->tag), "%s", tag ? tag : "");
	f->len = len;
	memcpy(f->text, text ? text : "", len + 1);
	free(text);
	return f;
}

static const char *const frame_sse_names[] = {
    [JOB_EV_PROGRESS] = "progress", [JOB_EV_NARRATION] = NULL, [JOB_EV_DATA] = "data",
    [JOB_EV_DONE] = NULL,	    [JOB_EV_ERROR] = NULL,     [JOB_EV_CANCELLED] = NULL,
};

static struct job_frame *frame_sse(const struct job *j, const struct job_logged *ev)
{
	(void)j;
	const char *name = frame_sse_names[ev->kind];
	return job_frame_new(ev, NULL,
			     xasprintf("id: %llu\n%s%s%sdata: %s\n\n", (unsigned long long)ev->id,
				       name ? "event: " : "", name ? name : "", name ? "\n" : "",
				       ev->data));
}

/*
 * rbee's framing: progress as a line of text tagged with its phase,
 * narration and the end markers as they are, and a result only when rbee's
 * hive sends it too, as its data event ({"action":NAME,"payload":RESULT}).
 */
static struct job_frame *frame_rbee(const struct job *j, const struct job_logged *ev)
{
	if (ev->kind == JOB_EV_PROGRESS) {
		char phase[sizeof(((struct job_frame *)0)->tag)] = "";
		char *text = job_progress_text(ev->data, phase, sizeof(phase));
		char *line = text ? xasprintf("data: %s\n\n", text) : NULL;
		free(text);
		return job_frame_new(ev, phase, line);
	}
	if (ev->kind == JOB_EV_DATA)
		return job_frame_new(ev, NULL,
				     j->op->rbee_data
					 ? xasprintf("data: {\"action\":\"%s\",\"payload\":%s}\n\n",
						     j->op->name, ev->data)
					 : NULL);
	return job_frame_new(ev, NULL, xasprintf("data: %s\n\n", ev->data));
}

static struct job_frame *(*const frame_makers[JOB__FRAMINGS])(const struct job *j,
							      const struct job_logged *ev) = {
    [JOB_FRAMING_SSE] = frame_sse,
    [JOB_FRAMING_RBEE] = frame_rbee,
};

struct job_frame *job_frame_get_locked(const struct job *j, struct job_logged *ev,
				       enum job_framing f)
{
	if (!ev->frame[f])
		ev->frame[f] = frame_makers[f](j, ev);
	return job_frame_ref(ev->frame[f]);
}
