/*
 * stream: the event stream of a job (text/event-stream): one connection
 * thread follows the job's event log and writes each event as it comes,
 * with a keep-alive comment when the job is quiet.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "core/err.h"
#include "core/util.h"
#include "daemon/http.h"
#include "jobs/job.h"

#define DAEMON_STREAM_SLICE_MS 250 /* how often a stream checks its peer */

struct sse {
	struct daemon *d;
	struct job_watch *w;
	int fd;
	char *buf;
	size_t len, off;
	int done;
	int64_t last_send;
};

static const char *const sse_event_names[] = {
    [JOB_EV_PROGRESS] = "progress", [JOB_EV_NARRATION] = NULL, [JOB_EV_DATA] = "data",
    [JOB_EV_DONE] = NULL,	    [JOB_EV_ERROR] = NULL,     [JOB_EV_CANCELLED] = NULL,
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
		int rc = job_watch_next(s->w, DAEMON_STREAM_SLICE_MS, &ev);
		if (rc < 0)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (rc == 1) {
			const char *name = sse_event_names[ev.kind];
			sse_set(s, xasprintf("id: %llu\n%s%s%sdata: %s\n\n",
					     (unsigned long long)ev.id, name ? "event: " : "",
					     name ? name : "", name ? "\n" : "", ev.data));
			if (job_event_is_terminal(ev.kind))
				s->done = 1;
			free(ev.data);
		} else if (now_ms() - s->last_send >= s->d->keepalive_ms) {
			sse_set(s, xstrdup(": keep-alive\n\n"));
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
	free(s);
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
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(rq->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci)
		s->fd = ci->connect_fd;
	/* A first comment so that headers and a byte reach the client at once. */
	sse_set(s, xasprintf(": %s\n\n", job_id));
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
