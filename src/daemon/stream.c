/*
 * stream: the event stream of a job: one connection thread follows the
 * job's event log and writes each event as it comes, in one of two
 * framings (docs/api.md). A client that asks for text/event-stream (a
 * browser's EventSource, this project's CLI and UI), or sends no Accept at
 * all, gets the full event stream: ids, event names, the progress JSON and
 * a keep-alive comment when the job is quiet. Any other client (rbee's
 * job-client accepts any type) gets rbee's framing: only data: lines of
 * text, as rbee's own hive sends them, since rbee's client hands every line
 * but a data: prefix to its user as it is. The bytes of each event come
 * from the job's log, serialised once for every watcher (struct job_frame);
 * a stream holds a reference while it writes them. Each stream is a
 * connection thread of libmicrohttpd, so N watchers still cost N wake-ups
 * and N writes per event, and N wake-ups per quiet slice.
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

/*
 * How often a quiet stream checks its peer: each check is a wake-up and a
 * poll(2) of every open stream's thread, so 200 watchers at 4 a second
 * cost more than their events do; a vanished watcher's thread is ended
 * within a second.
 */
#define DAEMON_STREAM_SLICE_MS 1000
#define DAEMON_RBEE_PROGRESS_MS 1000 /* rbee framing: at most one progress line this often */

struct sse {
	struct daemon *d;
	struct job_watch *w;
	enum job_framing framing;
	int fd;
	/* What is being written: an event's shared frame, or bytes of our own. */
	struct job_frame *frame;
	char *own;
	const char *buf;
	size_t len, off;
	int done;
	int64_t last_send;
	/* rbee framing: the last progress line's phase and time, and a newer line held back. */
	char phase[sizeof(((struct job_frame *)0)->tag)];
	int64_t progress_ms;
	struct job_frame *held;
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
    [JOB_FRAMING_SSE] = {1, ": keep-alive\n\n"},
    [JOB_FRAMING_RBEE] = {0, "\n"},
};

static void sse_drop(struct sse *s)
{
	free(s->own);
	s->own = NULL;
	job_frame_unref(s->frame);
	s->frame = NULL;
}

/* Writes text of our own next; takes ownership. */
static void sse_set(struct sse *s, char *text)
{
	sse_drop(s);
	s->own = text;
	s->buf = text;
	s->len = strlen(text);
	s->off = 0;
}

/* Writes a shared frame next; takes the caller's reference. */
static void sse_set_frame(struct sse *s, struct job_frame *f)
{
	sse_drop(s);
	s->frame = f;
	s->buf = f->text;
	s->len = f->len;
	s->off = 0;
}

static int sse_peer_gone(const struct sse *s)
{
	return conn_fd_gone(s->fd);
}

static struct job_frame *sse_pick(struct sse *s, struct job_frame *f)
{
	(void)s;
	return f;
}

/* rbee's framing: a progress line was sent now; a held one is dropped. */
static struct job_frame *rbee_progress_sent(struct sse *s, struct job_frame *f)
{
	s->progress_ms = now_ms();
	memcpy(s->phase, f->tag, sizeof(s->phase));
	job_frame_unref(s->held);
	s->held = NULL;
	return f;
}

/*
 * Which frame rbee's framing writes for an event, or NULL: progress at most
 * once a second and at each phase change (a newer line is held back until
 * its second has come); an event with nothing in this framing is skipped.
 */
static struct job_frame *rbee_pick(struct sse *s, struct job_frame *f)
{
	if (f->kind == JOB_EV_PROGRESS && f->len > 0) {
		if (strcmp(f->tag, s->phase) != 0 ||
		    now_ms() - s->progress_ms >= DAEMON_RBEE_PROGRESS_MS)
			return rbee_progress_sent(s, f);
		job_frame_unref(s->held);
		s->held = f;
		return NULL;
	}
	if (job_event_is_terminal(f->kind)) {
		job_frame_unref(s->held);
		s->held = NULL;
	}
	if (f->len == 0) {
		job_frame_unref(f);
		return NULL;
	}
	return f;
}

/* Takes the reference to f; returns the frame to write (with its reference) or NULL. */
static struct job_frame *(*const stream_picks[])(struct sse *s, struct job_frame *f) = {
    [JOB_FRAMING_SSE] = sse_pick,
    [JOB_FRAMING_RBEE] = rbee_pick,
};

/*
 * How long to wait for the next event: a slice, or less when a keep-alive
 * or a held progress line is due.
 */
static long sse_wait_ms(const struct sse *s)
{
	int64_t left = s->last_send + s->d->keepalive_ms - now_ms();
	if (s->held && s->progress_ms + DAEMON_RBEE_PROGRESS_MS - now_ms() < left)
		left = s->progress_ms + DAEMON_RBEE_PROGRESS_MS - now_ms();
	return left < 1 ? 1 : left < DAEMON_STREAM_SLICE_MS ? (long)left : DAEMON_STREAM_SLICE_MS;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max)
{
	(void)pos;
	struct sse *s = cls;
	while (s->off == s->len) {
		if (s->done)
			return MHD_CONTENT_READER_END_OF_STREAM;
		struct job_frame *f = NULL;
		int rc = job_watch_next_frame(s->w, sse_wait_ms(s), s->framing, &f);
		if (rc < 0)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (rc == 1) {
			int terminal = job_event_is_terminal(f->kind);
			f = stream_picks[s->framing](s, f);
			if (f)
				sse_set_frame(s, f);
			if (terminal)
				s->done = 1;
			continue;
		}
		/*
		 * A quiet slice: is the peer still there? While events flow, a
		 * vanished peer makes the next write fail instead, so the poll(2)
		 * is paid once a slice, not once an event. During a stop the
		 * job's terminal event is still to come: no early exit.
		 */
		if (sse_peer_gone(s))
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (s->held && now_ms() - s->progress_ms >= DAEMON_RBEE_PROGRESS_MS) {
			sse_set_frame(s, rbee_progress_sent(s, job_frame_ref(s->held)));
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
	sse_drop(s);
	job_frame_unref(s->held);
	free(s);
}

/*
 * The full event stream when the client's Accept names text/event-stream
 * (parameters aside) or it sends no Accept; rbee's framing otherwise.
 */
static enum job_framing stream_framing_of(const struct http_req *rq)
{
	static const char want[] = "text/event-stream";
	const char *a = http_header(rq, "Accept");
	if (!a)
		return JOB_FRAMING_SSE;
	while (*a) {
		a += strspn(a, " \t,");
		size_t n = strcspn(a, ";,");
		size_t m = n;
		while (m > 0 && (a[m - 1] == ' ' || a[m - 1] == '\t'))
			m--;
		if (m == sizeof(want) - 1 && strncasecmp(a, want, m) == 0)
			return JOB_FRAMING_SSE;
		a += n;
		a += strcspn(a, ",");
	}
	return JOB_FRAMING_RBEE;
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
