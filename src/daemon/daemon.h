/*
 * daemon: the HTTP server of rbee-hive (docs/api.md) and the `serve`
 * subcommand (docs/api.md, "rbee-hive serve"). libmicrohttpd runs behind a small facade (http.h);
 * the routes are one table (routes.c); the jobs module does the work.
 *
 * Threads: libmicrohttpd's listening thread and one thread per connection.
 * A job stream blocks its own connection thread on the job's event log, so a
 * slow or vanished watcher costs one thread and never the job; a vanished
 * peer is noticed within a second. The daemon owns its job registry; the
 * provisioner is borrowed.
 */
#ifndef RBEE_DAEMON_DAEMON_H
#define RBEE_DAEMON_DAEMON_H

#include <stddef.h>
#include <stdint.h>

struct err;
struct provisioner;
struct prov_config;

#define DAEMON_DEFAULT_BIND "127.0.0.1"
#define DAEMON_DEFAULT_PORT 7835
#define DAEMON_CONNECTION_TIMEOUT_S 30	 /* an idle HTTP connection is closed */
#define DAEMON_REQUEST_DEADLINE_MS 10000 /* a request must arrive in full within it */
#define DAEMON_KEEPALIVE_MS 15000	 /* a job stream's keep-alive comment period */
/*
 * Connections one remote address may hold when bound beyond loopback: one
 * host cannot take every connection, yet an orchestrator watching many jobs
 * of this hive has room for its streams.
 */
#define DAEMON_PER_IP_DEFAULT 64

struct daemon_config {
	const char *bind;	  /* address to listen on; NULL: DAEMON_DEFAULT_BIND */
	int port;		  /* 0: an ephemeral port (see daemon_port) */
	const int *listen_fd;	  /* a socket of daemon_listen, taken over by daemon_start
				     (closed on failure too); NULL: it binds bind and port */
	const char *data_root;	  /* NULL: no persistence (tests) */
	const char *hub_dir;	  /* hub cache folder; NULL: <data_root>/hub */
	const char *hive_id;	  /* NULL: any hive_id accepted */
	const char *token;	  /* bearer token; required to bind beyond loopback */
	int max_jobs;		  /* 0: JOB_DEFAULT_MAX_JOBS */
	int max_connections;	  /* 0: CAP_CONNECTIONS */
	int connection_timeout_s; /* idle HTTP connections; 0: DAEMON_CONNECTION_TIMEOUT_S */
	long request_deadline_ms; /* 0: DAEMON_REQUEST_DEADLINE_MS */
	long sources_deadline_ms; /* one GET /v1/sources listing; 0: CAP_SOURCES_DEADLINE_MS */
	int per_ip_connections;	  /* connections from one address; 0: unlimited on
				     loopback, DAEMON_PER_IP_DEFAULT beyond */
	long keepalive_ms;	  /* stream keep-alive comment period; 0: DAEMON_KEEPALIVE_MS */
	int resume;		  /* resume interrupted jobs found in the catalog */
	/* For GET /v1/sources/hf/...; NULL: that route answers 501. Borrowed. */
	const struct prov_config *prov_cfg;
	/*
	 * The Hugging Face Hub's protocol beside the API (docs/mirror.md):
	 * mirror_off removes it; mirror_gated serves files of gated repos too.
	 */
	int mirror_off;
	int mirror_gated;
	/* The queen's URL, shown in GET /health; the daemon never contacts it. */
	const char *queen_url;
	/*
	 * The access policy beyond the token (docs/security.md), each list
	 * checked with daemon_access_check: clients of these networks (CIDR)
	 * need no token; extra names accepted in Host; origins answered with
	 * CORS headers.
	 */
	const char *const *allow_nets;
	size_t n_allow_nets;
	const char *const *allow_hosts;
	size_t n_allow_hosts;
	const char *const *allow_origins;
	size_t n_allow_origins;
	/*
	 * Called on the connection's thread by POST /v1/shutdown, once its
	 * answer is queued, to stop the daemon the way a SIGTERM does; NULL:
	 * that route answers 501.
	 */
	void (*shutdown)(void *arg);
	void *shutdown_arg;
};

/* The kinds of value of the access policy, for daemon_access_check. */
enum daemon_access {
	DAEMON_ALLOW_NET,    /* ADDRESS/BITS, IPv4 or IPv6 */
	DAEMON_ALLOW_HOST,   /* a host name */
	DAEMON_ALLOW_ORIGIN, /* http(s)://host[:port] */
};

/* Checks one value of the access policy; 0 or ERR_INVALID saying what is wrong. */
int daemon_access_check(enum daemon_access kind, const char *value, struct err *e);

struct daemon;

/*
 * Binds and listens on addr (NULL: DAEMON_DEFAULT_BIND) and port into *fd,
 * before anything else is set up, so that a port in use fails before any
 * file is made. Refuses a non-loopback bind unless guarded (a token or an
 * --allow-net network is set; ERR_INVALID); ERR_IO names the address and
 * the system's reason (a port in use).
 */
int daemon_listen(const char *addr, int port, int guarded, int *fd, struct err *e);

/*
 * Starts serving with prov (borrowed; may be NULL, then downloads fail).
 * Refuses a non-loopback bind with neither a token nor allowed networks
 * (ERR_INVALID).
 */
int daemon_start(const struct daemon_config *cfg, struct provisioner *prov, struct daemon **out,
		 struct err *e);
/* The port actually listened on. */
int daemon_port(const struct daemon *d);
/*
 * Stops accepting, answers 503 to new requests, cancels running transfers
 * (they stay resumable), flushes jobs, ends every stream with its job's
 * terminal event ("[ERROR] interrupted: …" for the jobs cut short) before
 * closing the connections, and frees d.
 * NULL is a no-op.
 */
void daemon_stop(struct daemon *d);
/*
 * What the daemon_stop() in progress (the latest one started in this
 * process) is doing, for a watchdog on another thread: writes its step and
 * the jobs still running into buf. Returns 1 when every job row is on disk,
 * so that the catalog needs nothing more from this process, else 0.
 */
int daemon_stop_report(char *buf, size_t size);

/* `rbee-hive serve [flags]`: runs until SIGTERM or SIGINT; exit status. */
int daemon_serve_main(int argc, char **argv);

#endif
