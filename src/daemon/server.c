/*
 * server: starting and stopping libmicrohttpd, and the access handler that
 * reads a request (body capped) and hands it to the guard and the route
 * table. The watched connections are in conns.c, the job event stream in
 * stream.c.
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

#define DAEMON_STACK_SIZE (512 * 1024)
#define DAEMON_STREAM_RESERVE 32   /* connections kept for non-stream requests */
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
		return http_reply_error(rq, ERR_TOO_LARGE,
					"request body is over the cap of %d bytes",
					CAP_REQUEST_BODY);
	return http_route(rq);
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

/* addr as a socket address with port; ERR_INVALID when it is not an IP address. */
static int server_addr(const char *addr, int port, struct sockaddr_storage *ss, struct err *e)
{
	struct sockaddr_in *in4 = (void *)ss;
	struct sockaddr_in6 *in6 = (void *)ss;
	memset(ss, 0, sizeof(*ss));
	if (port < 0 || port > 65535)
		return err_set(e, ERR_INVALID, "port %d: expected 0..65535", port);
	if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
	} else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
	} else {
		return err_set(e, ERR_INVALID, "--bind '%.64s': expected an IPv4 or IPv6 address",
			       addr);
	}
	return 0;
}

/* Beyond loopback the API needs a token or --allow-net networks: ERR_INVALID without. */
static int server_check_open(const struct sockaddr_storage *ss, int guarded, const char *addr,
			     struct err *e)
{
	if (!url_addr_is_loopback((const struct sockaddr *)ss) && !guarded)
		return err_set(e, ERR_INVALID,
			       "--bind %s listens beyond this machine: it needs --token-file, "
			       "--allow-net or both",
			       addr);
	return 0;
}

int daemon_listen(const char *addr, int port, int guarded, int *fd, struct err *e)
{
	struct sockaddr_storage ss;
	*fd = -1;
	if (!addr)
		addr = DAEMON_DEFAULT_BIND;
	int rc = server_addr(addr, port, &ss, e);
	if (rc == 0)
		rc = server_check_open(&ss, guarded, addr, e);
	if (rc)
		return rc;
	int s = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int one = 1;
	socklen_t len =
	    ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	/* As libmicrohttpd binds its own: an address reused at once, IPv6 alone on IPv6. */
	if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    (ss.ss_family == AF_INET6 &&
	     setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
	    bind(s, (struct sockaddr *)&ss, len) != 0 || listen(s, SOMAXCONN) != 0) {
		int saved = errno;
		if (s >= 0)
			close(s);
		return err_set(e, ERR_IO, "cannot listen on %s port %d: %s", addr, port,
			       strerror(saved));
	}
	*fd = s;
	return 0;
}

int daemon_start(const struct daemon_config *cfg, struct provisioner *prov, struct daemon **out,
		 struct err *e)
{
	*out = NULL;
	const char *bind = cfg->bind ? cfg->bind : DAEMON_DEFAULT_BIND;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			     MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	int fd = cfg->listen_fd ? *cfg->listen_fd : -1;
	int rc = 0;
	if (fd < 0)
		rc = daemon_listen(bind, cfg->port,
				   (cfg->token && cfg->token[0]) || cfg->n_allow_nets, &fd, e);
	if (rc)
		return rc;
	/* What the socket is bound to decides the rules below, and gives an ephemeral port. */
	memset(&ss, 0, sizeof(ss));
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) != 0) {
		rc = err_set(e, ERR_IO, "listening socket: %s", strerror(errno));
		close(fd);
		return rc;
	}
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	int loopback = url_addr_is_loopback((struct sockaddr *)&ss);
	int guarded = (cfg->token && cfg->token[0]) || cfg->n_allow_nets;
	rc = server_check_open(&ss, guarded, bind, e);
	if (rc) {
		close(fd);
		return rc;
	}

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
	d->queen_url = cfg->queen_url ? xstrdup(cfg->queen_url) : NULL;
	d->shutdown = cfg->shutdown;
	d->shutdown_arg = cfg->shutdown_arg;
	d->any_ip_host = is_wildcard((struct sockaddr *)&ss);
	if (!loopback && gethostname(d->hostname, sizeof(d->hostname) - 1) != 0)
		d->hostname[0] = 0;
	d->keepalive_ms = cfg->keepalive_ms > 0 ? cfg->keepalive_ms : DAEMON_KEEPALIVE_MS;
	d->prov_cfg = cfg->prov_cfg;
	d->prov = prov;
	d->mirror = !cfg->mirror_off;
	d->mirror_gated = cfg->mirror_gated;
	d->catalog_path = cfg->data_root ? xasprintf("%s/catalog.db", cfg->data_root) : NULL;
	int max_conn = cfg->max_connections > 0 ? cfg->max_connections : CAP_CONNECTIONS;
	if (max_conn > CAP_CONNECTIONS)
		max_conn = CAP_CONNECTIONS;
	/* Streams may not take every connection: the API must still answer. */
	d->max_streams =
	    max_conn > 2 * DAEMON_STREAM_RESERVE ? max_conn - DAEMON_STREAM_RESERVE : max_conn / 2;
	if (d->max_streams > CAP_WATCHERS)
		d->max_streams = CAP_WATCHERS;
	if (cfg->token && cfg->token[0])
		sha256_buf_hex(cfg->token, strlen(cfg->token), d->token_sha);

	rc = http_access_init(d, cfg, e);
	if (rc < 0)
		goto fail;
	rc = stream_writer_start(d, e);
	if (rc < 0)
		goto fail;

	struct job_registry_config jc = {
	    .prov = prov,
	    .data_root = cfg->data_root,
	    .hub_dir = cfg->hub_dir,
	    .hive_id = cfg->hive_id,
	    .max_jobs = cfg->max_jobs,
	    .resume = cfg->resume,
	    .on_event = stream_writer_wake,
	    .on_event_arg = d->writer,
	};
	rc = job_registry_new(&jc, &d->jobs, e);
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

	/* From here libmicrohttpd owns the socket: it closes it when it stops or fails. */
	int listen_fd = fd;
	fd = -1;
	d->mhd = MHD_start_daemon(
	    flags, 0, NULL, NULL, server_access, d, MHD_OPTION_EXTERNAL_LOGGER, server_mhd_log, d,
	    MHD_OPTION_LISTEN_SOCKET, (MHD_socket)listen_fd, MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned int)max_conn, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned int)(cfg->connection_timeout_s > 0 ? cfg->connection_timeout_s
							 : DAEMON_CONNECTION_TIMEOUT_S),
	    MHD_OPTION_THREAD_STACK_SIZE, (size_t)DAEMON_STACK_SIZE, MHD_OPTION_URI_LOG_CALLBACK,
	    server_uri_log, d, MHD_OPTION_NOTIFY_COMPLETED, server_completed, d,
	    MHD_OPTION_NOTIFY_CONNECTION, conn_notify, d, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
	    (unsigned int)per_ip, MHD_OPTION_END);
	if (!d->mhd) {
		rc = err_set(e, ERR_IO, "cannot serve on %s port %d", bind, cfg->port);
		goto fail;
	}
	if (pthread_create(&d->reaper, NULL, conn_reaper_main, d) != 0) {
		rc = err_set(e, ERR_IO, "starting the HTTP deadline thread: %s", strerror(errno));
		goto fail;
	}
	d->reaper_started = 1;
	d->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)(void *)&ss)->sin6_port
						 : ((struct sockaddr_in *)(void *)&ss)->sin_port);
	*out = d;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
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

int daemon_port(const struct daemon *d)
{
	return d->port;
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
	/* A stream still with the writer would hold its connection thread for ever. */
	stream_writer_stop(d);
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
	stream_writer_free(d);
	layout_free(d->layout);
	stop_set("stopped", NULL);
	http_access_free(d);
	free(d->bind);
	free(d->hive_id);
	free(d->queen_url);
	free(d->catalog_path);
	free(d);
}
