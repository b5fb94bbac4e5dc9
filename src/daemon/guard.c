/*
 * guard: the access policy, one place for every check a request passes
 * before its route runs (docs/api.md, docs/security.md):
 *
 *   - Host must name this daemon (against DNS rebinding): a loopback name,
 *     its own address, its host name, an --allow-host name. A request that
 *     carries the valid token may name any host: a page led here by DNS
 *     rebinding cannot know the token.
 *   - A state-changing request must not come from a foreign Origin (against
 *     cross-site requests), unless the origin is an --allow-origin one.
 *   - The bearer token, when one is configured, must match, unless the
 *     client's address is in an --allow-net network. With networks but no
 *     token, clients outside them are refused.
 *
 * The token is compared as a SHA-256 digest with CRYPTO_memcmp, so neither
 * its content nor its length leaks through timing; it is never logged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <microhttpd.h>
#include <openssl/crypto.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/parse.h"
#include "core/sha256.h"
#include "core/url.h"
#include "core/util.h"
#include "daemon/http.h"

/* What an allowed origin may ask for: the methods and headers of the API. */
#define GUARD_CORS_METHODS "GET, HEAD, POST, PUT, DELETE, OPTIONS"
#define GUARD_CORS_HEADERS "Authorization, Content-Type, Accept, Last-Event-ID"
#define GUARD_CORS_EXPOSE "Upload-Offset, Retry-After"
#define GUARD_CORS_MAX_AGE "600"

/*
 * Checks "name[:port]" or "[v6]:port" against this daemon. The port, when
 * given, must be ours.
 */
static int guard_host_ok(const struct daemon *d, const char *host)
{
	char name[256];
	const char *port = NULL;
	size_t n;
	if (host[0] == '[') {
		const char *end = strchr(host, ']');
		if (!end)
			return 0;
		n = (size_t)(end - host - 1);
		if (end[1] == ':')
			port = end + 2;
		else if (end[1])
			return 0;
		host++;
	} else {
		const char *colon = strchr(host, ':');
		n = colon ? (size_t)(colon - host) : strlen(host);
		if (colon)
			port = colon + 1;
	}
	if (n == 0 || n >= sizeof(name))
		return 0;
	memcpy(name, host, n);
	name[n] = 0;
	if (port) {
		uint64_t p;
		if (parse_u64_str(port, 1, 65535, &p, "port", NULL) < 0 || (int)p != d->port)
			return 0;
	}
	/* A loopback name or literal cannot be rebound by DNS to another machine. */
	if (url_host_is_loopback(name))
		return 1;
	if (strcasecmp(name, d->bind) == 0)
		return 1;
	if (d->hostname[0] && strcasecmp(name, d->hostname) == 0)
		return 1;
	for (size_t i = 0; i < d->n_allow_hosts; i++)
		if (strcasecmp(name, d->allow_hosts[i]) == 0)
			return 1;
	/* A literal address cannot be rebound by DNS. */
	return d->any_ip_host && url_host_is_address(name);
}

static int guard_origin_ok(const struct daemon *d, const char *origin)
{
	const char *rest = NULL;
	if (strncasecmp(origin, "http://", 7) == 0)
		rest = origin + 7;
	else if (strncasecmp(origin, "https://", 8) == 0)
		rest = origin + 8;
	if (!rest || strchr(rest, '/'))
		return 0;
	return guard_host_ok(d, rest);
}

static int guard_token_ok(const struct daemon *d, const char *auth)
{
	if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
		return 0;
	const char *tok = auth + 7;
	size_t n = strnlen(tok, CAP_TOKEN_LEN + 1);
	if (n == 0 || n > CAP_TOKEN_LEN)
		return 0;
	char got[SHA256_HEX_LEN + 1];
	sha256_buf_hex(tok, n, got);
	return CRYPTO_memcmp(got, d->token_sha, SHA256_HEX_LEN) == 0;
}

static int guard_is_safe_method(const char *m)
{
	return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "OPTIONS") == 0;
}

/* The --allow-origin entry equal to origin, or NULL. */
static const char *guard_origin_allowed(const struct daemon *d, const char *origin)
{
	for (size_t i = 0; origin && i < d->n_allow_origins; i++)
		if (strcasecmp(origin, d->allow_origins[i]) == 0)
			return d->allow_origins[i];
	return NULL;
}

/* The client's address, or NULL. */
static const struct sockaddr *guard_peer(const struct http_req *rq)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(rq->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	return ci ? ci->client_addr : NULL;
}

static int guard_peer_allowed(const struct daemon *d, const struct sockaddr *peer)
{
	for (size_t i = 0; peer && i < d->n_allow_nets; i++)
		if (url_cidr_match(&d->allow_nets[i], peer))
			return 1;
	return 0;
}

int http_cors_preflight(const struct http_req *rq)
{
	return strcmp(rq->method, "OPTIONS") == 0 &&
	       http_header(rq, "Access-Control-Request-Method") &&
	       guard_origin_allowed(rq->d, http_header(rq, "Origin"));
}

void http_cors_headers(const struct http_req *rq, struct MHD_Response *resp)
{
	if (!rq->d->n_allow_origins)
		return;
	/* The answer depends on Origin whenever origins are configured: caches must know. */
	MHD_add_response_header(resp, "Vary", "Origin");
	const char *origin = guard_origin_allowed(rq->d, http_header(rq, "Origin"));
	if (!origin)
		return;
	MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
	MHD_add_response_header(resp, "Access-Control-Allow-Methods", GUARD_CORS_METHODS);
	MHD_add_response_header(resp, "Access-Control-Allow-Headers", GUARD_CORS_HEADERS);
	MHD_add_response_header(resp, "Access-Control-Expose-Headers", GUARD_CORS_EXPOSE);
	if (http_cors_preflight(rq))
		MHD_add_response_header(resp, "Access-Control-Max-Age", GUARD_CORS_MAX_AGE);
}

int http_guard(struct http_req *rq, int needs_token)
{
	const struct daemon *d = rq->d;
	const char *host = http_header(rq, "Host");
	/*
	 * RFC 9112 3.2: an HTTP/1.1 request without Host is a 400. HTTP/1.0
	 * had no Host; its scripts are served (a browser always sends one, so
	 * DNS rebinding cannot use that path).
	 */
	if (!host && (!rq->version || strcmp(rq->version, "HTTP/1.0") != 0)) {
		http_reply_error(rq, ERR_INVALID, "an %.16s request needs a Host header",
				 rq->version ? rq->version : "HTTP/1.1");
		return -1;
	}
	int token_ok = d->token_sha[0] && guard_token_ok(d, http_header(rq, "Authorization"));
	if (host && !token_ok && !guard_host_ok(d, host)) {
		http_reply_error(rq, ERR_FORBIDDEN,
				 "Host '%.100s' is not this daemon's address (--allow-host adds a "
				 "name)",
				 host);
		return -1;
	}
	const char *origin = http_header(rq, "Origin");
	if (origin && !guard_is_safe_method(rq->method) && !guard_origin_ok(d, origin) &&
	    !guard_origin_allowed(d, origin)) {
		http_reply_error(rq, ERR_FORBIDDEN,
				 "requests from origin '%.100s' may not change state", origin);
		return -1;
	}
	/* A preflight never carries credentials; it only asks what may follow. */
	if (!needs_token || token_ok || http_cors_preflight(rq))
		return 0;
	const struct sockaddr *peer = guard_peer(rq);
	if (guard_peer_allowed(d, peer))
		return 0;
	if (d->token_sha[0]) {
		http_reply_error(rq, ERR_UNAUTHORIZED, "a valid bearer token is required");
		return -1;
	}
	if (d->n_allow_nets) {
		char addr[INET6_ADDRSTRLEN] = "?";
		if (peer && peer->sa_family == AF_INET)
			inet_ntop(AF_INET,
				  &((const struct sockaddr_in *)(const void *)peer)->sin_addr, addr,
				  sizeof(addr));
		else if (peer && peer->sa_family == AF_INET6)
			inet_ntop(AF_INET6,
				  &((const struct sockaddr_in6 *)(const void *)peer)->sin6_addr,
				  addr, sizeof(addr));
		http_reply_error(rq, ERR_FORBIDDEN,
				 "client %s is not in an --allow-net network, and this daemon has "
				 "no --token-file",
				 addr);
		return -1;
	}
	return 0;
}

/* A host name: letters, digits, '-' and '.', as DNS and Host headers spell them. */
static int guard_name_check(const char *v, struct err *e)
{
	size_t n = strlen(v);
	if (n == 0 || n > 253 ||
	    strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		      "0123456789-.") != n)
		return err_set(e, ERR_INVALID,
			       "--allow-host '%.64s': expected a host name (letters, digits, '-', "
			       "'.')",
			       v);
	return 0;
}

/* An origin as browsers send it: scheme://host[:port], nothing after. */
static int guard_origin_check(const char *v, struct err *e)
{
	struct url_parts p;
	const char *rest = strstr(v, "://");
	if (url_parse(v, &p, e) < 0)
		return err_prefix(e, "--allow-origin '%.64s'", v);
	if (!rest || strpbrk(rest + 3, "/?#"))
		return err_set(e, ERR_INVALID,
			       "--allow-origin '%.64s': expected scheme://host[:port], without a "
			       "path",
			       v);
	return 0;
}

int daemon_access_check(enum daemon_access kind, const char *value, struct err *e)
{
	struct url_cidr c;
	switch (kind) {
	case DAEMON_ALLOW_NET:
		return url_cidr_parse(value, &c, e) < 0 ? err_prefix(e, "--allow-net") : 0;
	case DAEMON_ALLOW_HOST: return guard_name_check(value, e);
	case DAEMON_ALLOW_ORIGIN: return guard_origin_check(value, e);
	}
	return err_set(e, ERR_INTERNAL, "unknown access kind %d", (int)kind);
}

static char **guard_copy_list(const char *const *v, size_t n)
{
	char **out = n ? xcalloc(n, sizeof(*out)) : NULL;
	for (size_t i = 0; i < n; i++)
		out[i] = xstrdup(v[i]);
	return out;
}

static void guard_free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int http_access_init(struct daemon *d, const struct daemon_config *cfg, struct err *e)
{
	if (cfg->n_allow_nets > CAP_ALLOW_NETS || cfg->n_allow_hosts > CAP_ALLOW_HOSTS ||
	    cfg->n_allow_origins > CAP_ALLOW_ORIGINS)
		return err_set(e, ERR_INVALID,
			       "at most %d --allow-net, %d --allow-host and %d "
			       "--allow-origin values",
			       CAP_ALLOW_NETS, CAP_ALLOW_HOSTS, CAP_ALLOW_ORIGINS);
	for (size_t i = 0; i < cfg->n_allow_hosts; i++)
		if (daemon_access_check(DAEMON_ALLOW_HOST, cfg->allow_hosts[i], e) < 0)
			return e->code;
	for (size_t i = 0; i < cfg->n_allow_origins; i++)
		if (daemon_access_check(DAEMON_ALLOW_ORIGIN, cfg->allow_origins[i], e) < 0)
			return e->code;
	if (cfg->n_allow_nets)
		d->allow_nets = xcalloc(cfg->n_allow_nets, sizeof(*d->allow_nets));
	for (size_t i = 0; i < cfg->n_allow_nets; i++)
		if (url_cidr_parse(cfg->allow_nets[i], &d->allow_nets[i], e) < 0)
			return err_prefix(e, "--allow-net");
	d->allow_net_text = guard_copy_list(cfg->allow_nets, cfg->n_allow_nets);
	d->n_allow_nets = cfg->n_allow_nets;
	d->allow_hosts = guard_copy_list(cfg->allow_hosts, cfg->n_allow_hosts);
	d->n_allow_hosts = cfg->n_allow_hosts;
	d->allow_origins = guard_copy_list(cfg->allow_origins, cfg->n_allow_origins);
	d->n_allow_origins = cfg->n_allow_origins;
	return 0;
}

void http_access_free(struct daemon *d)
{
	free(d->allow_nets);
	guard_free_list(d->allow_net_text, d->n_allow_nets);
	guard_free_list(d->allow_hosts, d->n_allow_hosts);
	guard_free_list(d->allow_origins, d->n_allow_origins);
}

static json_t *guard_list_json(char *const *v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

json_t *http_access_json(const struct daemon *d)
{
	return json_pack("{s:b,s:o,s:o,s:o}", "token", d->token_sha[0] != 0, "allow_net",
			 guard_list_json(d->allow_net_text, d->n_allow_nets), "allow_host",
			 guard_list_json(d->allow_hosts, d->n_allow_hosts), "allow_origin",
			 guard_list_json(d->allow_origins, d->n_allow_origins));
}
