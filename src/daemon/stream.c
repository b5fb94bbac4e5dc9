/*
 * stream: the event stream of a job: the job's event log written as it
 * grows, in one of two framings (docs/api.md). A client that asks for
 * text/event-stream (a browser's EventSource, this project's CLI and UI),
 * or sends no Accept at all, gets the full event stream: ids, event names,
 * the progress JSON and a keep-alive comment when the job is quiet. Any
 * other client (rbee's job-client accepts any type) gets rbee's framing:
 * only data: lines of text, as rbee's own hive sends them, since rbee's
 * client hands every line but a data: prefix to its user as it is. The
 * bytes of each event come from the job's log, serialised once for every
 * watcher (struct job_frame); a stream holds a reference while it writes
 * them.
 *
 * Who writes: libmicrohttpd gives each connection a thread, which would
 * make every event cost one wake-up, one turn of the registry's lock and
 * one poll(2) per watcher. So once a stream's headers and first bytes are
 * out, its connection thread hands the socket to the stream writer and
 * sleeps until the stream ends. The writer is one thread with epoll for
 * every handed stream of every job: an event wakes it once, whatever the
 * number of watchers, and it writes each stream's chunks with
 * non-blocking sends. A watcher that does not read keeps its place in the
 * job's log (where progress is coalesced to the latest; state changes are
 * never dropped) and is written when its socket drains, so it holds up
 * neither the writer, nor the other watchers, nor the job. The connection
 * thread writes the end of the chunked body itself. A body that is not
 * chunked (an HTTP/1.0 client) stays on its connection thread.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <microhttpd.h>

#include "core/err.h"
#include "core/log.h"
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

#define STREAM_WRITER_EVENTS 64 /* epoll events taken per wake-up */

/* What sse_advance() found. */
enum { SSE_QUIET = 0, SSE_READY = 1, SSE_END = 2 };

struct sse {
	struct daemon *d;
	struct MHD_Connection *conn;
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
	/*
	 * The writer's side. chunked: the body is chunked, so the stream may be
	 * handed to the writer. While handed, the writer thread alone touches
	 * the fields above and these but result; result (guarded by the
	 * writer's mu) is 0 while handed, then 1 (the stream ended) or -1 (an
	 * error: the connection is closed).
	 */
	int chunked;
	char head[24]; /* the chunk's size line */
	size_t head_len, woff;
	int out_armed, gone;
	int result;
	pthread_cond_t back_cv;
	struct sse *next;
};

/*
 * The stream writer: mu guards incoming (streams handed by connection
 * threads, not yet seen by the writer), stop and each stream's result;
 * live belongs to the writer thread.
 */
struct stream_writer {
	int epfd, evfd;
	pthread_t thread;
	int started;
	pthread_mutex_t mu;
	struct sse *incoming;
	int stop;
	struct sse *live;
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

/* The ms until s has something due: a keep-alive, or a held progress line. */
static int64_t sse_due_ms(const struct sse *s)
{
	int64_t left = s->last_send + s->d->keepalive_ms - now_ms();
	if (s->held && s->progress_ms + DAEMON_RBEE_PROGRESS_MS - now_ms() < left)
		left = s->progress_ms + DAEMON_RBEE_PROGRESS_MS - now_ms();
	return left;
}

/* How long a connection thread waits for the next event: a slice, or less when due. */
static long sse_wait_ms(const struct sse *s)
{
	int64_t left = sse_due_ms(s);
	return left < 1 ? 1 : left < DAEMON_STREAM_SLICE_MS ? (long)left : DAEMON_STREAM_SLICE_MS;
}

/*
 * Makes the next bytes of s ready, waiting up to wait_ms for an event:
 * SSE_READY (s->buf from s->off), SSE_QUIET (nothing came and nothing is
 * due), SSE_END (the terminal event is written), or ERR_SHUTDOWN.
 */
static int sse_advance(struct sse *s, long wait_ms)
{
	while (s->off == s->len) {
		if (s->done)
			return SSE_END;
		struct job_frame *f = NULL;
		int rc = job_watch_next_frame(s->w, wait_ms, s->framing, &f);
		if (rc < 0)
			return rc;
		if (rc == 1) {
			int terminal = job_event_is_terminal(f->kind);
			f = stream_picks[s->framing](s, f);
			if (f)
				sse_set_frame(s, f);
			if (terminal)
				s->done = 1;
			continue;
		}
		if (s->held && now_ms() - s->progress_ms >= DAEMON_RBEE_PROGRESS_MS)
			sse_set_frame(s, rbee_progress_sent(s, job_frame_ref(s->held)));
		else if (now_ms() - s->last_send >= s->d->keepalive_ms)
			sse_set(s, xstrdup(stream_framings[s->framing].keepalive));
		else
			return SSE_QUIET;
	}
	return SSE_READY;
}

static void writer_wake(struct stream_writer *sw)
{
	uint64_t one = 1;
	/* A full counter already means a wake-up is pending. */
	if (write(sw->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_debug("stream writer: wake-up: %s", strerror(errno));
}

void stream_writer_wake(void *arg)
{
	writer_wake(arg);
}

/* The writer's epoll interest in s: its peer leaving, and room to write when blocked. */
static int writer_arm(struct stream_writer *sw, struct sse *s, int op, int out)
{
	struct epoll_event ev = {.events = EPOLLRDHUP | (out ? EPOLLOUT : 0u), .data.ptr = s};
	if (op == EPOLL_CTL_MOD && s->out_armed == out)
		return 0;
	if (epoll_ctl(sw->epfd, op, s->fd, &ev) != 0)
		return -1;
	s->out_armed = out;
	return 0;
}

/*
 * Writes what s has to write without blocking: 1 when its terminal event
 * is out, 0 when it waits (for an event, a due keep-alive or room in its
 * socket), -1 when its peer is gone or the registry shut down.
 */
static int writer_pump(struct stream_writer *sw, struct sse *s)
{
	while (!s->gone) {
		if (s->off == s->len) {
			int rc = sse_advance(s, 0);
			if (rc == SSE_END)
				return 1;
			if (rc < 0)
				return -1;
			if (rc == SSE_QUIET)
				return writer_arm(sw, s, EPOLL_CTL_MOD, 0) ? -1 : 0;
			s->head_len = (size_t)snprintf(s->head, sizeof(s->head), "%zx\r\n", s->len);
			s->woff = 0;
		}
		/* The chunk: its size line, the bytes, CRLF; woff bytes of it are out. */
		struct iovec iov[3] = {
		    {s->head, s->head_len}, {(void *)s->buf, s->len}, {(void *)"\r\n", 2}};
		size_t skip = s->woff, k = 0;
		while (skip >= iov[k].iov_len) {
			skip -= iov[k].iov_len;
			k++;
		}
		iov[k].iov_base = (char *)iov[k].iov_base + skip;
		iov[k].iov_len -= skip;
		struct msghdr mh = {.msg_iov = iov + k, .msg_iovlen = 3 - k};
		ssize_t n = sendmsg(s->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return writer_arm(sw, s, EPOLL_CTL_MOD, 1) ? -1 : 0;
		if (n < 0)
			return -1;
		s->woff += (size_t)n;
		if (s->woff == s->head_len + s->len + 2) {
			s->off = s->len;
			s->last_send = now_ms();
		}
	}
	return -1;
}

/* Gives s back to its connection thread with result 1 (ended) or -1. */
static void writer_give_back(struct stream_writer *sw, struct sse *s, int result)
{
	pthread_mutex_lock(&sw->mu);
	s->result = result;
	pthread_cond_signal(&s->back_cv);
	pthread_mutex_unlock(&sw->mu);
}

/*
 * One pass over the live streams: each writes what it can; the ended ones
 * leave epoll and go back to their threads. Returns the ms until one of
 * them has something due (-1: none).
 */
static long writer_pass(struct stream_writer *sw)
{
	int64_t next = -1;
	for (struct sse **p = &sw->live; *p;) {
		struct sse *s = *p;
		int rc = writer_pump(sw, s);
		if (rc != 0) {
			*p = s->next;
			/* Out of epoll before its thread can close the socket. */
			epoll_ctl(sw->epfd, EPOLL_CTL_DEL, s->fd, NULL);
			writer_give_back(sw, s, rc);
			continue;
		}
		int64_t due = sse_due_ms(s);
		if (next < 0 || due < next)
			next = due;
		p = &s->next;
	}
	if (next < 0)
		return -1;
	return next < 1 ? 1 : next > DAEMON_STREAM_SLICE_MS ? DAEMON_STREAM_SLICE_MS : (long)next;
}

static void *writer_main(void *arg)
{
	struct stream_writer *sw = arg;
	struct epoll_event evs[STREAM_WRITER_EVENTS];
	long wait = -1;
	for (;;) {
		int n = epoll_wait(sw->epfd, evs, STREAM_WRITER_EVENTS, (int)wait);
		for (int i = 0; i < n; i++) {
			struct sse *s = evs[i].data.ptr;
			uint64_t x;
			if (!s) {
				if (read(sw->evfd, &x, sizeof(x)) < 0 && errno != EAGAIN)
					log_debug("stream writer: %s", strerror(errno));
			} else if (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
				s->gone = 1;
			}
		}
		pthread_mutex_lock(&sw->mu);
		struct sse *in = sw->incoming;
		sw->incoming = NULL;
		int stop = sw->stop;
		pthread_mutex_unlock(&sw->mu);
		while (in) {
			struct sse *s = in;
			in = s->next;
			if (writer_arm(sw, s, EPOLL_CTL_ADD, 0) != 0) {
				writer_give_back(sw, s, -1);
				continue;
			}
			s->next = sw->live;
			sw->live = s;
		}
		if (stop)
			break;
		wait = writer_pass(sw);
	}
	while (sw->live) {
		struct sse *s = sw->live;
		sw->live = s->next;
		epoll_ctl(sw->epfd, EPOLL_CTL_DEL, s->fd, NULL);
		writer_give_back(sw, s, -1);
	}
	return NULL;
}

int stream_writer_start(struct daemon *d, struct err *e)
{
	struct stream_writer *sw = xcalloc(1, sizeof(*sw));
	pthread_mutex_init(&sw->mu, NULL);
	sw->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	sw->epfd = epoll_create1(EPOLL_CLOEXEC);
	d->writer = sw;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	if (sw->evfd < 0 || sw->epfd < 0 || epoll_ctl(sw->epfd, EPOLL_CTL_ADD, sw->evfd, &ev) != 0)
		return err_set(e, ERR_IO, "stream writer: %s", strerror(errno));
	if (pthread_create(&sw->thread, NULL, writer_main, sw) != 0)
		return err_set(e, ERR_IO, "starting the stream writer: %s", strerror(errno));
	sw->started = 1;
	return 0;
}

void stream_writer_stop(struct daemon *d)
{
	struct stream_writer *sw = d->writer;
	if (!sw || !sw->started)
		return;
	pthread_mutex_lock(&sw->mu);
	sw->stop = 1;
	pthread_mutex_unlock(&sw->mu);
	writer_wake(sw);
	pthread_join(sw->thread, NULL);
	sw->started = 0;
}

void stream_writer_free(struct daemon *d)
{
	struct stream_writer *sw = d->writer;
	if (!sw)
		return;
	stream_writer_stop(d);
	if (sw->epfd >= 0)
		close(sw->epfd);
	if (sw->evfd >= 0)
		close(sw->evfd);
	pthread_mutex_destroy(&sw->mu);
	free(sw);
	d->writer = NULL;
}

/*
 * Hands s to the writer and sleeps until its stream ends: the content
 * reader's end of stream or error. 0 when the writer does not take it
 * (stopping): the connection thread then writes it itself.
 */
static ssize_t sse_hand_to_writer(struct sse *s)
{
	struct stream_writer *sw = s->d->writer;
	s->chunked = 0;
	if (!sw || s->fd < 0)
		return 0;
	/*
	 * libmicrohttpd's idle timeout would close the connection when the
	 * thread comes back from a stream longer than it; none while handed.
	 * Our writes go out at once, whatever cork libmicrohttpd left on.
	 */
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(s->conn, MHD_CONNECTION_INFO_CONNECTION_TIMEOUT);
	unsigned int timeout = ci ? ci->connection_timeout : 0;
	int zero = 0, one = 1;
	setsockopt(s->fd, IPPROTO_TCP, TCP_CORK, &zero, sizeof(zero));
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pthread_mutex_lock(&sw->mu);
	if (sw->stop) {
		pthread_mutex_unlock(&sw->mu);
		return 0;
	}
	MHD_set_connection_option(s->conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
	s->result = 0;
	s->next = sw->incoming;
	sw->incoming = s;
	writer_wake(sw);
	while (s->result == 0)
		pthread_cond_wait(&s->back_cv, &sw->mu);
	pthread_mutex_unlock(&sw->mu);
	/* From no timeout to the old one: libmicrohttpd counts idleness from now. */
	MHD_set_connection_option(s->conn, MHD_CONNECTION_OPTION_TIMEOUT, timeout);
	return s->result > 0 ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max)
{
	(void)pos;
	struct sse *s = cls;
	while (s->off == s->len) {
		/* The first bytes are out: libmicrohttpd asks for more only once they are sent. */
		if (s->chunked) {
			ssize_t r = sse_hand_to_writer(s);
			if (r != 0)
				return r;
		}
		int rc = sse_advance(s, sse_wait_ms(s));
		if (rc == SSE_END)
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (rc < 0)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		/*
		 * A quiet slice: is the peer still there? While events flow, a
		 * vanished peer makes the next write fail instead, so the poll(2)
		 * is paid once a slice, not once an event. During a stop the
		 * job's terminal event is still to come: no early exit.
		 */
		if (rc == SSE_QUIET && sse_peer_gone(s))
			return MHD_CONTENT_READER_END_WITH_ERROR;
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
	pthread_cond_destroy(&s->back_cv);
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
	s->conn = rq->conn;
	s->w = w;
	s->fd = -1;
	s->framing = stream_framing_of(rq);
	pthread_cond_init(&s->back_cv, NULL);
	/* libmicrohttpd chunks a body of unknown length for HTTP/1.1 only. */
	s->chunked = strcmp(rq->version, MHD_HTTP_VERSION_1_1) == 0;
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
