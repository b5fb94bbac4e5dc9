/*
 * server: starting and stopping libmicrohttpd, the access handler that reads
 * a request (body capped) and hands it to the guard and the route table, and
 * the job event stream.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "core/cancel.h"
#include "core/caps.h"
#include "core/err.h"
#include "core/log.h"
#include "core/sha256.h"
#include "core/url.h"
#include "core/util.h"
#include "daemon/http.h"
#include "jobs/job.h"
#include "store/layout.h"
#include "store/upload.h"

#define DAEMON_STREAM_SLICE_MS 250 /* how often a stream checks its peer */
#define DAEMON_STACK_SIZE (512 * 1024)
#define DAEMON_STREAM_RESERVE 32 /* connections kept for non-stream requests */
#define DAEMON_REQUEST_DEADLINE_MS 10000
#define DAEMON_REAPER_PERIOD_MS 200
#define DAEMON_STOP_STREAMS_MS 500 /* a stop waits that long for streams to send their end */

/*
 * The step of the latest daemon_stop(), for daemon_stop_report() on a
 * watchdog thread. stop_mu guards the three; stop_jobs is set only while
 * the registry may be read (daemon_stop clears it before freeing it).
 */
static pthread_mutex_t stop_mu = PTHREAD_MUTEX_INITIALIZER;
static const char *stop_step;
static struct job_registry *stop_jobs;
static int stop_flushed;

static void stop_set(const char *step, struct job_registry *jobs)
{
	pthread_mutex_lock(&stop_mu);
	stop_step = step;
	stop_jobs = jobs;
	pthread_mutex_unlock(&stop_mu);
}

static struct conn_watch *conn_watch_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

/* A request of conn is being answered (busy), or it has ended: the deadline restarts. */
static void conn_set_busy(struct daemon *d, struct MHD_Connection *conn, int busy)
{
	struct conn_watch *w = conn_watch_of(conn);
	if (!w)
		return;
	pthread_mutex_lock(&d->conns_mu);
	w->busy = busy;
	if (!busy)
		w->since_ms = now_ms();
	pthread_mutex_unlock(&d->conns_mu);
}

static void server_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	struct daemon *d = cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		struct conn_watch *w = xcalloc(1, sizeof(*w));
		w->fd = ci ? ci->connect_fd : -1;
		w->since_ms = now_ms();
		pthread_mutex_lock(&d->conns_mu);
		w->next = d->conns;
		if (d->conns)
			d->conns->prev = w;
		d->conns = w;
		pthread_mutex_unlock(&d->conns_mu);
		*socket_context = w;
		return;
	}
	struct conn_watch *w = *socket_context;
	if (!w)
		return;
	/*
	 * libmicrohttpd closes the socket after this call, so once the entry
	 * is unlinked under conns_mu the reaper cannot shut down a reused fd.
	 */
	pthread_mutex_lock(&d->conns_mu);
	if (w->prev)
		w->prev->next = w->next;
	else
		d->conns = w->next;
	if (w->next)
		w->next->prev = w->prev;
	pthread_mutex_unlock(&d->conns_mu);
	free(w);
	*socket_context = NULL;
}

/* 1 when the peer of fd has closed its side or the socket failed. */
static int conn_fd_gone(int fd)
{
	if (fd < 0)
		return 0;
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};
	if (poll(&p, 1, 0) <= 0)
		return 0;
	return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

/*
 * Fires the cancel token of w's handler when it is due: why, else its
 * deadline or a vanished peer. Caller holds conns_mu, which keeps the token
 * alive (http_work_end unhooks it under the same lock); no wake callback is
 * registered on these tokens, so firing under the lock is quick.
 */
static void conn_work_check(struct conn_watch *w, int64_t now, int why)
{
	if (!w->cancel || w->cancel_why)
		return;
	if (!why && now >= w->cancel_at)
		why = ERR_TIMEOUT;
	if (!why && conn_fd_gone(w->fd))
		why = ERR_CANCELLED;
	if (!why)
		return;
	w->cancel_why = why;
	cancel_fire(w->cancel);
}

/*
 * Shuts down the connections that have waited for a complete request longer
 * than the deadline; libmicrohttpd then sees the end of the stream and
 * closes them on their own threads. Cancels the long handlers that are due.
 */
static void *server_reaper_main(void *arg)
{
	struct daemon *d = arg;
	while (!atomic_load(&d->reaper_stop)) {
		sleep_ms(DAEMON_REAPER_PERIOD_MS);
		int64_t now = now_ms();
		int cut = 0;
		int why = atomic_load(&d->stopping) ? ERR_SHUTDOWN : 0;
		pthread_mutex_lock(&d->conns_mu);
		for (struct conn_watch *w = d->conns; w; w = w->next) {
			conn_work_check(w, now, why);
			if (w->busy || w->cut || w->fd < 0 || now - w->since_ms <= d->request_deadline_ms)
				continue;
			shutdown(w->fd, SHUT_RDWR);
			w->cut = 1;
			cut++;
		}
		pthread_mutex_unlock(&d->conns_mu);
		if (cut)
			log_debug("http: closed %d connection(s) without a complete request for %ld ms",
				  cut, d->request_deadline_ms);
	}
	return NULL;
}

/* Called by MHD with the raw URI before unescaping: the request starts here. */
static void *server_uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct http_req *rq = xcalloc(1, sizeof(*rq));
	rq->d = cls;
	rq->conn = conn;
	rq->uri = xstrdup(uri ? uri : "/");
	char *q = strchr(rq->uri, '?');
	if (q) {
		*q = 0;
		rq->query = q + 1;
	}
	rq->path = rq->uri;
	return rq;
}

static void server_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
			     enum MHD_RequestTerminationCode toe)
{
	(void)toe;
	conn_set_busy(cls, conn, 0);
	struct http_req *rq = *req_cls;
	if (!rq)
		return;
	for (size_t i = 0; i < rq->n_params; i++)
		free(rq->params[i]);
	/* An upload cut short keeps its partial for a resume. */
	upload_free(rq->upload);
	free(rq->body);
	free(rq->uri);
	free(rq);
	*req_cls = NULL;
}

static enum MHD_Result server_access(void *cls, struct MHD_Connection *conn, const char *url,
				     const char *method, const char *version,
				     const char *upload_data, size_t *upload_data_size,
				     void **req_cls)
{
	(void)url;
	struct daemon *d = cls;
	struct http_req *rq = *req_cls;
	if (!rq)
		return MHD_NO;
	if (!rq->started) {
		rq->started = 1;
		rq->method = method;
		rq->version = version;
		atomic_fetch_add(&d->requests, 1);
		enum MHD_Result r = MHD_YES;
		const char *cl = http_header(rq, "Content-Length");
		if (atomic_load(&d->stopping))
			r = http_reply_error(rq, ERR_SHUTDOWN, "the daemon is shutting down");
		else if (http_guard(rq, http_route_needs_token(rq)) < 0)
			r = MHD_YES;
		else if (http_route_streams(rq))
			r = http_upload_begin(rq);
		else if (cl && strtoull(cl, NULL, 10) > CAP_REQUEST_BODY)
			r = http_reply_error(rq, ERR_TOO_LARGE,
					     "request body of %s bytes is over the cap of %d", cl,
					     CAP_REQUEST_BODY);
		/*
		 * The body, when one follows, is still under the request deadline,
		 * except an upload's: it may take long, and libmicrohttpd's idle
		 * timeout still ends one that stalls.
		 */
		if (rq->answered || rq->upload)
			conn_set_busy(d, conn, 1);
		return r;
	}
	if (rq->answered) {
		/* An early answer is queued; drop whatever body still arrives. */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (rq->upload) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		return n ? http_upload_data(rq, upload_data, n) : http_upload_end(rq);
	}
	if (*upload_data_size) {
		if (!rq->body_too_large) {
			if (rq->body_len + *upload_data_size > CAP_REQUEST_BODY) {
				rq->body_too_large = 1;
				free(rq->body);
				rq->body = NULL;
				rq->body_len = 0;
			} else {
				rq->body = xrealloc(rq->body, rq->body_len + *upload_data_size + 1);
				memcpy(rq->body + rq->body_len, upload_data, *upload_data_size);
				rq->body_len += *upload_data_size;
				rq->body[rq->body_len] = 0;
			}
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	conn_set_busy(d, conn, 1);
	if (rq->body_too_large)
		return http_reply_error(rq, ERR_TOO_LARGE, "request body is over the cap of %d bytes",
					CAP_REQUEST_BODY);
	return http_route(rq);
}

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
	[JOB_EV_DONE] = NULL,           [JOB_EV_ERROR] = NULL,     [JOB_EV_CANCELLED] = NULL,
};

static void sse_set(struct sse *s, char *text)
{
	free(s->buf);
	s->buf = text;
	s->len = strlen(text);
	s->off = 0;
}

void http_work_begin(struct http_req *rq, long deadline_ms, struct cancel_token **out)
{
	struct daemon *d = rq->d;
	struct cancel_token *t = cancel_new();
	*out = t;
	struct conn_watch *w = conn_watch_of(rq->conn);
	if (!w)
		return;
	pthread_mutex_lock(&d->conns_mu);
	w->cancel = t;
	w->cancel_at = now_ms() + deadline_ms;
	w->cancel_why = 0;
	/* A stop that began before the hook would otherwise be missed until the reaper's turn. */
	conn_work_check(w, now_ms(), atomic_load(&d->stopping) ? ERR_SHUTDOWN : 0);
	pthread_mutex_unlock(&d->conns_mu);
}

int http_work_end(struct http_req *rq, struct cancel_token *t)
{
	struct daemon *d = rq->d;
	int why = 0;
	struct conn_watch *w = conn_watch_of(rq->conn);
	if (w) {
		pthread_mutex_lock(&d->conns_mu);
		if (w->cancel == t) {
			why = w->cancel_why;
			w->cancel = NULL;
			w->cancel_why = 0;
		}
		pthread_mutex_unlock(&d->conns_mu);
	}
	cancel_unref(t);
	return why;
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
	rq->answered = 1;
	enum MHD_Result r = MHD_queue_response(rq->conn, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return r;
}

static void server_mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char buf[512];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = 0;
	/* Connection-level noise (a peer that went away) is debug; a full server is not. */
	log_msg(strstr(buf, "connection limit") ? LOG_WARN : LOG_DEBUG, NULL, "http: %s", buf);
}

static int is_wildcard(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr ==
		       htonl(INADDR_ANY);
	const struct sockaddr_in6 *in6 = (const void *)sa;
	return IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr);
}

int daemon_start(const struct daemon_config *cfg, struct provisioner *prov, struct daemon **out,
		 struct err *e)
{
	*out = NULL;
	const char *bind = cfg->bind ? cfg->bind : "127.0.0.1";
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *in4 = (void *)&ss;
	struct sockaddr_in6 *in6 = (void *)&ss;
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	if (cfg->port < 0 || cfg->port > 65535)
		return err_set(e, ERR_INVALID, "port %d: expected 0..65535", cfg->port);
	if (inet_pton(AF_INET, bind, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)cfg->port);
	} else if (inet_pton(AF_INET6, bind, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)cfg->port);
		flags |= MHD_USE_IPv6;
	} else {
		return err_set(e, ERR_INVALID, "--bind '%.64s': expected an IPv4 or IPv6 address",
			       bind);
	}
	int loopback = url_addr_is_loopback((struct sockaddr *)&ss);
	if (!loopback && !(cfg->token && cfg->token[0]))
		return err_set(e, ERR_INVALID,
			       "--bind %s listens beyond this machine: it needs --token-file", bind);

	struct daemon *d = xcalloc(1, sizeof(*d));
	pthread_mutex_init(&d->conns_mu, NULL);
	d->request_deadline_ms =
		cfg->request_deadline_ms > 0 ? cfg->request_deadline_ms : DAEMON_REQUEST_DEADLINE_MS;
	d->sources_deadline_ms =
	    cfg->sources_deadline_ms > 0 ? cfg->sources_deadline_ms : CAP_SOURCES_DEADLINE_MS;
	/*
	 * Beyond loopback one remote host may not take every connection; on
	 * loopback every local client shares one address, so only an explicit
	 * limit applies there.
	 */
	int per_ip = cfg->per_ip_connections;
	if (per_ip <= 0)
		per_ip = loopback ? 0 : DAEMON_PER_IP_DEFAULT;
	d->bind = xstrdup(bind);
	d->hive_id = cfg->hive_id ? xstrdup(cfg->hive_id) : NULL;
	d->any_ip_host = is_wildcard((struct sockaddr *)&ss);
	if (!loopback && gethostname(d->hostname, sizeof(d->hostname) - 1) != 0)
		d->hostname[0] = 0;
	d->keepalive_ms = cfg->keepalive_ms > 0 ? cfg->keepalive_ms : 15000;
	d->prov_cfg = cfg->prov_cfg;
	int max_conn = cfg->max_connections > 0 ? cfg->max_connections : CAP_CONNECTIONS;
	if (max_conn > CAP_CONNECTIONS)
		max_conn = CAP_CONNECTIONS;
	/* Streams may not take every connection: the API must still answer. */
	d->max_streams = max_conn > 2 * DAEMON_STREAM_RESERVE ? max_conn - DAEMON_STREAM_RESERVE
							       : max_conn / 2;
	if (d->max_streams > CAP_WATCHERS)
		d->max_streams = CAP_WATCHERS;
	if (cfg->token && cfg->token[0]) {
		struct sha256 h = {0};
		sha256_init(&h);
		sha256_update(&h, cfg->token, strlen(cfg->token));
		sha256_final_hex(&h, d->token_sha);
		sha256_cleanup(&h);
	}

	struct job_registry_config jc = {
		.prov = prov,
		.data_root = cfg->data_root,
		.hub_dir = cfg->hub_dir,
		.hive_id = cfg->hive_id,
		.max_jobs = cfg->max_jobs,
		.resume = cfg->resume,
	};
	int rc = job_registry_new(&jc, &d->jobs, e);
	if (rc < 0)
		goto fail;
	if (cfg->hub_dir || cfg->data_root) {
		char hub[4096];
		if (fmt_buf(hub, sizeof(hub), "%s%s", cfg->hub_dir ? cfg->hub_dir : cfg->data_root,
			    cfg->hub_dir ? "" : "/hub")) {
			rc = err_set(e, ERR_TOO_LARGE, "hub cache path too long");
			goto fail;
		}
		rc = layout_open(hub, &d->layout, e);
		if (rc < 0)
			goto fail;
	}

	d->mhd = MHD_start_daemon(
		flags, (uint16_t)cfg->port, NULL, NULL, server_access, d,
		MHD_OPTION_EXTERNAL_LOGGER, server_mhd_log, d, MHD_OPTION_SOCK_ADDR,
		(struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)max_conn,
		MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned int)(cfg->connection_timeout_s > 0 ? cfg->connection_timeout_s : 30),
		MHD_OPTION_THREAD_STACK_SIZE, (size_t)DAEMON_STACK_SIZE,
		MHD_OPTION_URI_LOG_CALLBACK, server_uri_log, d, MHD_OPTION_NOTIFY_COMPLETED,
		server_completed, d, MHD_OPTION_NOTIFY_CONNECTION, server_notify, d,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)per_ip, MHD_OPTION_END);
	if (!d->mhd) {
		rc = err_set(e, ERR_IO, "cannot listen on %s port %d (in use, or not permitted)",
			     bind, cfg->port);
		goto fail;
	}
	if (pthread_create(&d->reaper, NULL, server_reaper_main, d) != 0) {
		rc = err_set(e, ERR_IO, "starting the HTTP deadline thread: %s", strerror(errno));
		goto fail;
	}
	d->reaper_started = 1;
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(d->mhd, MHD_DAEMON_INFO_BIND_PORT);
	d->port = di ? di->port : cfg->port;
	*out = d;
	return 0;
fail:
	daemon_stop(d);
	return rc;
}

int daemon_stop_report(char *buf, size_t size)
{
	char jobs[768];
	pthread_mutex_lock(&stop_mu);
	int flushed = stop_flushed;
	if (stop_jobs)
		flushed = job_registry_stop_report(stop_jobs, jobs, sizeof(jobs));
	else
		snprintf(jobs, sizeof(jobs), "the jobs have ended");
	snprintf(buf, size, "%s (%s); job rows %s", stop_step ? stop_step : "not stopping", jobs,
		 flushed ? "on disk" : "not all on disk");
	pthread_mutex_unlock(&stop_mu);
	return flushed;
}

int daemon_port(const struct daemon *d) { return d->port; }

long http_connections(const struct daemon *d)
{
	const union MHD_DaemonInfo *di =
		d->mhd ? MHD_get_daemon_info(d->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS) : NULL;
	return di ? (long)di->num_connections : -1;
}

void daemon_stop(struct daemon *d)
{
	if (!d)
		return;
	atomic_store(&d->stopping, 1);
	/* Handlers waiting on the network give up now, not at the reaper's next turn. */
	pthread_mutex_lock(&d->conns_mu);
	for (struct conn_watch *w = d->conns; w; w = w->next)
		conn_work_check(w, now_ms(), ERR_SHUTDOWN);
	pthread_mutex_unlock(&d->conns_mu);
	if (d->mhd) {
		/* Stop accepting first; then end the jobs, which ends the streams. */
		MHD_socket s = MHD_quiesce_daemon(d->mhd);
		if (s != MHD_INVALID_SOCKET)
			close(s);
	}
	stop_set("cancelling the jobs and waiting for their workers", d->jobs);
	job_registry_shutdown(d->jobs);
	char scratch[64];
	int flushed = d->jobs ? job_registry_stop_report(d->jobs, scratch, sizeof(scratch)) : 1;
	pthread_mutex_lock(&stop_mu);
	stop_flushed = flushed;
	pthread_mutex_unlock(&stop_mu);
	/*
	 * Every job has its terminal event now; give the streams a moment to
	 * hand it to their sockets before the connections are closed.
	 */
	stop_set("sending the last event of every stream", NULL);
	int64_t until = now_ms() + DAEMON_STOP_STREAMS_MS;
	while (atomic_load(&d->streams) > 0 && now_ms() < until)
		sleep_ms(10);
	stop_set("closing the HTTP connections", NULL);
	atomic_store(&d->reaper_stop, 1);
	if (d->reaper_started)
		pthread_join(d->reaper, NULL);
	if (d->mhd)
		MHD_stop_daemon(d->mhd);
	/* Every connection has been closed and unlinked by now. */
	pthread_mutex_destroy(&d->conns_mu);
	stop_set("freeing the job registry", NULL);
	job_registry_free(d->jobs);
	layout_free(d->layout);
	stop_set("stopped", NULL);
	free(d->bind);
	free(d->hive_id);
	free(d);
}
