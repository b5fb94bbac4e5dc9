/*
 * conns: the watched connections of the daemon. Each open connection is
 * listed from libmicrohttpd's notification; a reaper thread shuts down the
 * ones without a complete request past the deadline and fires the cancel
 * tokens of long handlers when they are due.
 */
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "core/cancel.h"
#include "core/caps.h"
#include "core/err.h"
#include "core/log.h"
#include "core/util.h"
#include "daemon/http.h"

#define DAEMON_REAPER_PERIOD_MS 200

static struct conn_watch *conn_watch_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

/* A request of conn is being answered (busy), or it has ended: the deadline restarts. */
void conn_set_busy(struct daemon *d, struct MHD_Connection *conn, int busy)
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

void conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
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
int conn_fd_gone(int fd)
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
void conn_work_check(struct conn_watch *w, int64_t now, int why)
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
void *conn_reaper_main(void *arg)
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
			if (w->busy || w->cut || w->fd < 0 ||
			    now - w->since_ms <= d->request_deadline_ms)
				continue;
			shutdown(w->fd, SHUT_RDWR);
			w->cut = 1;
			cut++;
		}
		pthread_mutex_unlock(&d->conns_mu);
		if (cut)
			log_debug(
			    "http: closed %d connection(s) without a complete request for %ld ms",
			    cut, d->request_deadline_ms);
	}
	return NULL;
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

int http_upstream_begin(struct http_req *rq, const char *what, struct cancel_token **out,
			struct err *e)
{
	struct daemon *d = rq->d;
	*out = NULL;
	if (atomic_fetch_add(&d->sources_active, 1) >= CAP_SOURCES_ACTIVE) {
		atomic_fetch_sub(&d->sources_active, 1);
		http_set_retry_after(rq, 1);
		return err_set(e, ERR_RETRY, "%d %s are running; try again later",
			       CAP_SOURCES_ACTIVE, what);
	}
	http_work_begin(rq, d->sources_deadline_ms, out);
	return 0;
}

int http_upstream_end(struct http_req *rq, struct cancel_token *t)
{
	int why = http_work_end(rq, t);
	atomic_fetch_sub(&rq->d->sources_active, 1);
	return why;
}

long http_connections(const struct daemon *d)
{
	const union MHD_DaemonInfo *di =
	    d->mhd ? MHD_get_daemon_info(d->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS) : NULL;
	return di ? (long)di->num_connections : -1;
}
