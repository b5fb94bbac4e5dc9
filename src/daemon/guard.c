/*
 * guard: the security checks every request passes before its route runs
 * (docs/api.md, docs/security.md): the Host header must name this daemon (against DNS
 * rebinding), a state-changing request must not come from a foreign Origin
 * (against cross-site requests), and when a token is configured the bearer
 * token must match. The token is compared as a SHA-256 digest with
 * CRYPTO_memcmp, so neither its content nor its length leaks through timing;
 * it is never logged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/parse.h"
#include "core/sha256.h"
#include "core/url.h"
#include "daemon/http.h"

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
	struct sha256 h = {0};
	sha256_init(&h);
	sha256_update(&h, tok, n);
	sha256_final_hex(&h, got);
	sha256_cleanup(&h);
	return CRYPTO_memcmp(got, d->token_sha, SHA256_HEX_LEN) == 0;
}

static int guard_is_safe_method(const char *m)
{
	return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "OPTIONS") == 0;
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
	if (host && !guard_host_ok(d, host)) {
		http_reply_error(rq, ERR_FORBIDDEN, "Host '%.100s' is not this daemon's address",
				 host);
		return -1;
	}
	const char *origin = http_header(rq, "Origin");
	if (origin && !guard_is_safe_method(rq->method) && !guard_origin_ok(d, origin)) {
		http_reply_error(rq, ERR_FORBIDDEN,
				 "requests from origin '%.100s' may not change state", origin);
		return -1;
	}
	if (needs_token && d->token_sha[0] &&
	    !guard_token_ok(d, http_header(rq, "Authorization"))) {
		http_reply_error(rq, ERR_UNAUTHORIZED, "a valid bearer token is required");
		return -1;
	}
	return 0;
}
