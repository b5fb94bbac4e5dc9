/*
 * stream: the event stream of a job: one connection thread follows the
 * job's event log and writes each event as it comes, in one of two
 * framings (docs/api.md). A client that asks for text/event-stream (a
 * browser's EventSource, this project's CLI and UI), or sends no Accept at
 * all, gets the full event stream: ids, event names, the progress JSON and
 * a keep-alive comment when the job is quiet. Any other client (rbee's
 * job-client accepts any type) gets rbee's framing: only data: lines of
 * text, as rbee's own hive sends them, since rbee's client hands every line
 * but a data: prefix to its user as it is.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>

#include "core/err.h"
#include "core/util.h"
#include "daemon/http.h"
#include "jobs/job.h"

#define DAEMON_STREAM_SLICE_MS 250   /* how often a stream checks its peer */
#define DAEMON_RBEE_PROGRESS_MS 1000 /* rbee framing: at most one progress line this often */

enum stream_framing { STREAM_SSE = 0, STREAM_RBEE };

struct sse {
	struct daemon *d;
	struct job_watch *w;
	enum stream_framing framing;
	int fd;
	char *buf;
	size_t len, off;
	int done;
	int64_t last_send;
	/* rbee framing: the last progress line's phase and time, and a newer line held back. */
	char phase[32];
	int64_t progress_ms;
	char *held;
};

static const char *const sse_event_names[] = {
    [JOB_EV_PROGRESS] = "progress", [JOB_EV_NARRATION] = NULL, [JOB_EV_DATA] = "data",
    [JOB_EV_DONE] = NULL,	    [JOB_EV_ERROR] = NULL,     [JOB_EV_CANCELLED] = NULL,
};

/*
 * What each framing writes when the job is quiet, and first (after a
 * comment naming the job in the event stream), so that headers and a byte
 * reach the client at once. rbee's framing writes an empty line: rbee's
 * client skips it, as any event-stream parser does, where it would print a
 * comment line.
 */
static const struct {
	int open_comment;
	const char *keepalive;
} stream_framings[] = {
    [STREAM_SSE] = {1, ": keep-alive\n\n"},
    [STREAM_RBEE] = {0, "\n"},
};

static void sse_set(struct sse *s, char *text)
{
	free(s->buf);
	s->buf = text;
	s->len = strlen(text);
	s->off = 0;
}

static int sse_peer_gone(const struct sse *s)
{
	return conn_fd_gone(s->fd);
}

static char *sse_format(struct sse *s, const struct job_event *ev)
{
	(void)s;
	const char *name = sse_event_names[ev->kind];
	return xasprintf("id: %llu\n%s%s%sdata: %s\n\n", (unsigned long long)ev->id,
			 name ? "event: " : "", name ? name : "", name ? "\n" : "", ev->data);
}

static char *rbee_progress_line(struct sse *s, char *text)
{
	s->progress_ms = now_ms();
	free(s->held);
	s->held = NULL;
	char *out = xasprintf("data: %s\n\n", text);
	free(text);
	return out;
}

/*
 * An event in rbee's framing, or NULL when it has none: progress as a line
 * of text at most once a second and at each phase change (a newer one is
 * held back until its second has come), narration and the end markers as
 * they are, and a result only when rbee's hive sends it too, as its data
 * event.
 */
static char *rbee_format(struct sse *s, const struct job_event *ev)
{
	if (ev->kind == JOB_EV_PROGRESS) {
		char phase[sizeof(s->phase)];
		char *text = job_progress_text(ev->data, phase, sizeof(phase));
		if (!text)
			return NULL;
		if (strcmp(phase, s->phase) != 0 ||
		    now_ms() - s->progress_ms >= DAEMON_RBEE_PROGRESS_MS) {
			memcpy(s->phase, phase, sizeof(phase));
			return rbee_progress_line(s, text);
		}
		free(s->held);
		s->held = text;
		return NULL;
	}
	if (ev->kind == JOB_EV_DATA) {
		const char *action = job_watch_data_action(s->w);
		return action ? xasprintf("data: {\"action\":\"%s\",\"payload\":%s}\n\n", action,
					  ev->data)
			      : NULL;
	}
	if (job_event_is_terminal(ev->kind)) {
		free(s->held);
		s->held = NULL;
	}
	return xasprintf("data: %s\n\n", ev->data);
}

static char *(*const stream_formats[])(struct sse *s, const struct job_event *ev) = {
    [STREAM_SSE] = sse_format,
    [STREAM_RBEE] = rbee_format,
};

/* How long to wait for the next event: a slice, or less when a held progress line is due. */
static long sse_wait_ms(const struct sse *s)
{
	if (!s->held)
		return DAEMON_STREAM_SLICE_MS;
	int64_t left = s->progress_ms + DAEMON_RBEE_PROGRESS_MS - now_ms();
	return left < 1 ? 1 : left < DAEMON_STREAM_SLICE_MS ? (long)left : DAEMON_STREAM_SLICE_MS;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max)
{
	(void)pos;
	struct sse *s = cls;
	while (s->off == s->len) {
		if (s->done)
			return MHD_CONTENT_READER_END_OF_STREAM;
		/* During a stop the job's terminal event is still to come: no early exit. */
		if (sse_peer_gone(s))
			return MHD_CONTENT_READER_END_WITH_ERROR;
		struct job_event ev;
		int rc = job_watch_next(s->w, sse_wait_ms(s), &ev);
		if (rc < 0)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (rc == 1) {
			char *text = stream_formats[s->framing](s, &ev);
			if (text)
				sse_set(s, text);
			if (job_event_is_terminal(ev.kind))
				s->done = 1;
			free(ev.data);
		} else if (s->held && now_ms() - s->progress_ms >= DAEMON_RBEE_PROGRESS_MS) {
			char *held = s->held;
			s->held = NULL;
			sse_set(s, rbee_progress_line(s, held));
		} else if (now_ms() - s->last_send >= s->d->keepalive_ms) {
			sse_set(s, xstrdup(stream_framings[s->framing].keepalive));
		}
	}
	size_t n = s->len - s->off;
	if (n > max)
		n = max;
	memcpy(out, s->buf + s->off, n);
	s->off += n;
	s->last_send = now_ms();
	return (ssize_t)n;
}

static void sse_free(void *cls)
{
	struct sse *s = cls;
	job_watch_close(s->w);
	atomic_fetch_sub(&s->d->streams, 1);
	free(s->buf);
	free(s->held);
	free(s);
}

/*
 * The full event stream when the client's Accept names text/event-stream
 * (parameters aside) or it sends no Accept; rbee's framing otherwise.
 */
static enum stream_framing stream_framing_of(const struct http_req *rq)
{
	static const char want[] = "text/event-stream";
	const char *a = http_header(rq, "Accept");
	if (!a)
		return STREAM_SSE;
	while (*a) {
		a += strspn(a, " \t,");
		size_t n = strcspn(a, ";,");
		size_t m = n;
		while (m > 0 && (a[m - 1] == ' ' || a[m - 1] == '\t'))
			m--;
		if (m == sizeof(want) - 1 && strncasecmp(a, want, m) == 0)
			return STREAM_SSE;
		a += n;
		a += strcspn(a, ",");
	}
	return STREAM_RBEE;
}

int http_reply_job_stream(struct http_req *rq, const char *job_id, unsigned long long last_id)
{
	struct daemon *d = rq->d;
	if (atomic_fetch_add(&d->streams, 1) >= d->max_streams) {
		atomic_fetch_sub(&d->streams, 1);
		http_set_retry_after(rq, 1);
		return http_reply_error(rq, ERR_RETRY, "%ld streams are open; try again later",
					d->max_streams);
	}
	struct err e;
	err_clear(&e);
	struct job_watch *w = NULL;
	if (job_watch_open(d->jobs, job_id, last_id, &w, &e) < 0) {
		atomic_fetch_sub(&d->streams, 1);
		return http_reply_err(rq, &e);
	}
	struct sse *s = xcalloc(1, sizeof(*s));
	s->d = d;
	s->w = w;
	s->fd = -1;
	s->framing = stream_framing_of(rq);
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(rq->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci)
		s->fd = ci->connect_fd;
	sse_set(s, stream_framings[s->framing].open_comment
		       ? xasprintf(": %s\n\n", job_id)
		       : xstrdup(stream_framings[s->framing].keepalive));
	s->last_send = now_ms();
	struct MHD_Response *resp =
	    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, s, sse_free);
	if (!resp) {
		sse_free(s);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "text/event-stream");
	MHD_add_response_header(resp, "Cache-Control", "no-cache");
	MHD_add_response_header(resp, "X-Accel-Buffering", "no");
	http_security_headers(resp);
	http_cors_headers(rq, resp);
	rq->answered = 1;
	enum MHD_Result r = MHD_queue_response(rq->conn, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return r;
}
