/*
 * http: the facade over libmicrohttpd used by the routes. A request arrives
 * as a struct http_req with its raw path split off, its body read (capped at
 * CAP_REQUEST_BODY) and its path parameters strictly percent-decoded; a
 * handler answers with exactly one of the http_reply_* calls.
 *
 * Every error answer is JSON: {"error":{"code":"not_found","message":"..."}}
 * with the status of the code (core/err.h).
 *
 * A request and its buffers belong to the connection's thread.
 */
#ifndef RBEE_DAEMON_HTTP_H
#define RBEE_DAEMON_HTTP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/url.h"
#include "daemon/daemon.h"

struct MHD_Connection;
struct MHD_Response;
struct MHD_Daemon;
struct job_registry;
struct layout;
struct upload;

/*
 * One open connection, watched for the request deadline: from its opening,
 * or the end of its previous request, a request must arrive in full within
 * daemon.request_deadline_ms or the connection is shut down.
 * libmicrohttpd's own timeout counts silence only, so a client trickling a
 * byte a second would otherwise hold its connection for ever.
 */
struct conn_watch {
	int fd;
	int64_t since_ms; /* waiting for a request since then */
	int busy;	  /* a request is being answered (a stream, say): no deadline */
	int cut;
	/*
	 * A long handler's cancel token (http_work_begin): fired at cancel_at,
	 * when the peer goes or when the daemon stops; cancel_why says which
	 * (ERR_TIMEOUT, ERR_CANCELLED, ERR_SHUTDOWN).
	 */
	struct cancel_token *cancel;
	int64_t cancel_at;
	int cancel_why;
	struct conn_watch *prev, *next;
};

#define HTTP_MAX_PARAMS 4

struct daemon {
	/* Set at start, then read-only. */
	char *bind;
	int port;
	char *hive_id;
	char token_sha[65]; /* SHA-256 of the token, hex; "" when there is none */
	int any_ip_host;    /* bound to a wildcard address: literal IP hosts are ours */
	char hostname[256];
	char *queen_url;
	/* The access policy (guard.c); allow_net_text keeps the networks as given. */
	struct url_cidr *allow_nets;
	char **allow_net_text;
	size_t n_allow_nets;
	char **allow_hosts;
	size_t n_allow_hosts;
	char **allow_origins;
	size_t n_allow_origins;
	void (*shutdown)(void *arg);
	void *shutdown_arg;
	long keepalive_ms;
	long max_streams;
	const struct prov_config *prov_cfg;
	struct provisioner *prov; /* borrowed; may be NULL */
	struct layout *layout;	  /* the hub cache, for uploads; NULL without a data root */
	struct job_registry *jobs;
	struct MHD_Daemon *mhd;
	long request_deadline_ms;

	/* The watched connections; conns_mu guards the list and every entry. */
	pthread_mutex_t conns_mu;
	struct conn_watch *conns;
	pthread_t reaper; /* shuts down connections past their deadline */
	int reaper_started;
	atomic_int reaper_stop;

	long sources_deadline_ms;  /* one GET /v1/sources listing */
	atomic_int sources_active; /* listings running, at most CAP_SOURCES_ACTIVE */

	/* The Hub's protocol (mirror.c): served at all; gated repos' files too. */
	int mirror;
	int mirror_gated;
	char *catalog_path; /* <data root>/catalog.db, read by the mirror; NULL: none */

	atomic_int stopping;
	atomic_long streams;
	atomic_ullong requests;
};

struct http_req {
	struct daemon *d;
	struct MHD_Connection *conn;
	const char *method;
	const char *version; /* "HTTP/1.1", "HTTP/1.0" (libmicrohttpd refuses others) */
	char *uri;	     /* raw, as received */
	char *path;	     /* raw path (not decoded), points into uri copy */
	char *query;	     /* raw query without '?', or NULL */
	char *body;
	size_t body_len;
	int body_too_large;
	int started;
	int answered;
	char *params[HTTP_MAX_PARAMS]; /* decoded path parameters */
	size_t n_params;
	struct upload *upload; /* a body streamed to the disk (PUT /v1/blobs/...) */
	/* One extra header for the answer ("Upload-Offset"), or NULL. */
	const char *extra_header;
	char extra_value[32];
};

/*
 * Strict percent-decoding of n bytes of s (no '+' translation unless
 * plus_space): every '%' must be followed by two hex digits and the result
 * must not contain NUL. Returns a new string or NULL when malformed.
 */
char *http_pct_decode(const char *s, size_t n, int plus_space);

/* A decoded query parameter, or NULL; *bad set when malformed. Caller frees. */
char *http_query_get(const struct http_req *rq, const char *key, int *bad);
/* A request header or NULL. */
const char *http_header(const struct http_req *rq, const char *name);

/* The next answer of rq says when to ask again (a 503 of a full cap). */
void http_set_retry_after(struct http_req *rq, int seconds);
int http_reply_json(struct http_req *rq, int status, json_t *body); /* steals body */
/*
 * Queues resp (taken: destroyed here) with the headers every answer
 * carries, as the other replies do; for answers they cannot build (files,
 * extra headers).
 */
int http_queue(struct http_req *rq, int status, struct MHD_Response *resp);
int http_reply_error(struct http_req *rq, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An error from a lower layer: its code and message. */
int http_reply_err(struct http_req *rq, const struct err *e);
/* A status and error code name outside core/err.h (405, 501). */
int http_reply_status(struct http_req *rq, int status, const char *code, const char *msg);
int http_reply_text(struct http_req *rq, int status, const char *content_type, const char *body,
		    size_t len, int copy);
/* The event stream of a job, from after event id last_id. */
int http_reply_job_stream(struct http_req *rq, const char *job_id, unsigned long long last_id);

/*
 * Adds the headers every answer carries: Content-Security-Policy (the page's
 * own files only, frame-ancestors 'none'), X-Frame-Options: DENY,
 * X-Content-Type-Options: nosniff, Referrer-Policy: no-referrer.
 */
void http_security_headers(struct MHD_Response *resp);

/*
 * For a handler that waits on the network (a Hub listing): a new cancel
 * token in *out, fired when deadline_ms have passed, when the client
 * closes its connection, or when the daemon stops (within the reaper's
 * period). http_work_end() unhooks and drops it and returns why it fired:
 * 0 (it did not), ERR_TIMEOUT, ERR_CANCELLED (the client left) or
 * ERR_SHUTDOWN.
 */
struct cancel_token;
void http_work_begin(struct http_req *rq, long deadline_ms, struct cancel_token **out);
int http_work_end(struct http_req *rq, struct cancel_token *t);
/*
 * The same for a request to the upstream Hub, one of at most
 * CAP_SOURCES_ACTIVE at once (each holds a connection thread and up to a
 * Hub page in memory), under the --sources-deadline: ERR_RETRY with
 * Retry-After when they are all taken (what names them in the message).
 * http_upstream_end gives the slot back and returns as http_work_end.
 */
int http_upstream_begin(struct http_req *rq, const char *what, struct cancel_token **out,
			struct err *e);
int http_upstream_end(struct http_req *rq, struct cancel_token *t);

/* HTTP connections open now (libmicrohttpd's count), or -1. */
long http_connections(const struct daemon *d);

/*
 * Connection watching (conns.c). conn_notify is libmicrohttpd's connection
 * notification: it lists and unlists each connection. conn_set_busy marks
 * a request of conn as being answered (busy) or ended (its deadline
 * restarts). conn_work_check fires the cancel token of w's handler when it
 * is due (why, else its deadline or a vanished peer); the caller holds
 * conns_mu. conn_fd_gone is 1 when the peer of fd has closed its side.
 * conn_reaper_main is the reaper thread.
 */
enum MHD_ConnectionNotificationCode;
void conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
		 enum MHD_ConnectionNotificationCode code);
void conn_set_busy(struct daemon *d, struct MHD_Connection *conn, int busy);
void conn_work_check(struct conn_watch *w, int64_t now, int why);
int conn_fd_gone(int fd);
void *conn_reaper_main(void *arg);

/* Route dispatch (routes.c): answers rq. */
int http_route(struct http_req *rq);
/*
 * Uploads (routes.c): a request for which http_route_streams() is 1 has its
 * body written to the disk as it arrives instead of being read into
 * rq->body under CAP_REQUEST_BODY. http_upload_begin() runs once the
 * headers are in and either answers at once or sets rq->upload;
 * http_upload_data() takes each piece of the body, http_upload_end() the
 * end of it. Each returns an MHD_Result; an error answers rq.
 */
int http_route_streams(const struct http_req *rq);
int http_upload_begin(struct http_req *rq);
int http_upload_data(struct http_req *rq, const char *data, size_t n);
int http_upload_end(struct http_req *rq);
/*
 * The Hugging Face Hub's download protocol (mirror.c), from the catalog:
 * model info (parameters org, name[, revision]), the tree (org, name,
 * revision[, path]), paths-info (org, name, revision) and resolve (org,
 * name, revision, path). Each answers 404 when the daemon's mirror is off.
 */
int mirror_info(struct http_req *rq);
int mirror_tree(struct http_req *rq);
int mirror_paths_info(struct http_req *rq);
int mirror_resolve(struct http_req *rq);
/*
 * llama.cpp's manifest (parameters org, name, tag): the GGUF file of a
 * quantization tag at main ("latest": the default choice) and the vision
 * projector beside it.
 */
int mirror_manifest(struct http_req *rq);
/* Security checks (guard.c): 0 when rq may proceed, else answers rq and returns -1. */
int http_guard(struct http_req *rq, int needs_token);
/*
 * The access policy of d from cfg (guard.c): parses and copies the lists;
 * http_access_free releases them. ERR_INVALID names a bad value.
 */
int http_access_init(struct daemon *d, const struct daemon_config *cfg, struct err *e);
void http_access_free(struct daemon *d);
/* The access policy as JSON, for GET /health (new reference). */
json_t *http_access_json(const struct daemon *d);
/*
 * CORS (guard.c): 1 when rq is a preflight (OPTIONS with
 * Access-Control-Request-Method) from an --allow-origin origin.
 * http_cors_headers adds the Access-Control-* headers and Vary: Origin to
 * an answer of rq; nothing when no --allow-origin was given.
 */
int http_cors_preflight(const struct http_req *rq);
void http_cors_headers(const struct http_req *rq, struct MHD_Response *resp);
int http_route_needs_token(const struct http_req *rq);

#endif
