#include "core/url.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/parse.h"
#include "core/util.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *const net_names[] = {
    [URL_NET_PUBLIC] = "public",
    [URL_NET_PRIVATE] = "private or link-local",
    [URL_NET_LOOPBACK] = "loopback",
};

/* What libcurl's URL parser refused, in the words of a model ref message. */
static const struct {
	CURLUcode code;
	const char *text;
} url_errors[] = {
    {CURLUE_BAD_HOSTNAME, "has a character not allowed in a host name"},
    {CURLUE_BAD_IPV6, "has a malformed IPv6 host"},
    {CURLUE_BAD_PORT_NUMBER, "has a port that is not 1..65535"},
    {CURLUE_NO_HOST, "has no host"},
    {CURLUE_BAD_LOGIN, "has credentials (user@), which are not allowed"},
    {CURLUE_BAD_USER, "has credentials (user@), which are not allowed"},
    {CURLUE_BAD_PASSWORD, "has credentials (user@), which are not allowed"},
    {CURLUE_UNSUPPORTED_SCHEME, "has a scheme other than http or https"},
    {CURLUE_BAD_SCHEME, "has a scheme other than http or https"},
    {CURLUE_NO_SCHEME, "is not absolute (expected SCHEME://HOST/PATH)"},
    {CURLUE_BAD_SLASHES, "is not absolute (expected SCHEME://HOST/PATH)"},
};

static int url_fail(struct err *e, CURLUcode uc)
{
	for (size_t i = 0; i < COUNT(url_errors); i++)
		if (url_errors[i].code == uc)
			return err_set(e, ERR_INVALID, "URL %s", url_errors[i].text);
	return err_set(e, ERR_INVALID, "URL is not valid: %s", curl_url_strerror(uc));
}

/* Schemes and their default ports. */
static const struct {
	const char *name;
	int port;
} url_schemes[] = {{"http", 80}, {"https", 443}};

int url_parse(const char *url, struct url_parts *p, struct err *e)
{
	memset(p, 0, sizeof(*p));
	if (!url || !*url)
		return err_set(e, ERR_INVALID, "URL is empty");
	if (strnlen(url, CAP_URL_LEN) >= CAP_URL_LEN)
		return err_set(e, ERR_TOO_LARGE, "URL is longer than %d bytes", CAP_URL_LEN - 1);
	/*
	 * libcurl is lenient where a ref must not be: "https:///x" gets the
	 * host "x", "host:" an implied port. The authority is looked at for
	 * exactly these cases; everything else is libcurl's parse.
	 */
	const char *sep = strstr(url, "://");
	if (!sep)
		return url_fail(e, CURLUE_NO_SCHEME);
	const char *auth = sep + 3;
	size_t alen = strcspn(auth, "/?#");
	if (alen == 0)
		return url_fail(e, CURLUE_NO_HOST);
	if (memchr(auth, '@', alen))
		return url_fail(e, CURLUE_BAD_LOGIN);
	if (auth[alen - 1] == ':')
		return url_fail(e, CURLUE_BAD_PORT_NUMBER);

	CURLU *u = curl_url();
	if (!u)
		return err_set(e, ERR_NOMEM, "cannot create a URL handle");
	char *scheme = NULL, *host = NULL, *port = NULL;
	int rc = 0;
	CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (uc == CURLUE_OK)
		uc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
	if (uc == CURLUE_OK)
		uc = curl_url_get(u, CURLUPART_HOST, &host, 0);
	if (uc == CURLUE_OK) {
		uc = curl_url_get(u, CURLUPART_PORT, &port, 0);
		if (uc == CURLUE_NO_PORT)
			uc = CURLUE_OK;
	}
	if (uc != CURLUE_OK) {
		rc = url_fail(e, uc);
		goto out;
	}
	for (size_t i = 0; i < COUNT(url_schemes); i++) {
		if (strcasecmp(scheme, url_schemes[i].name) == 0) {
			snprintf(p->scheme, sizeof(p->scheme), "%s", url_schemes[i].name);
			p->port = url_schemes[i].port;
		}
	}
	if (!p->scheme[0]) {
		rc = url_fail(e, CURLUE_UNSUPPORTED_SCHEME);
		goto out;
	}
	if (port) {
		uint64_t n = 0;
		if (parse_u64_str(port, 1, 65535, &n, "port", NULL) < 0) {
			rc = url_fail(e, CURLUE_BAD_PORT_NUMBER);
			goto out;
		}
		p->port = (int)n;
	}
	size_t hlen = strlen(host);
	if (hlen == 0) {
		rc = url_fail(e, CURLUE_NO_HOST);
		goto out;
	}
	if (hlen >= sizeof(p->host)) {
		rc = err_set(e, ERR_INVALID, "URL host is longer than %zu characters",
			     sizeof(p->host) - 1);
		goto out;
	}
	/* libcurl reads "127.1" and "2130706433" as 127.0.0.1; only the dotted quad is taken. */
	struct in_addr a4;
	size_t tlen = auth[0] == '[' ? hlen : strcspn(auth, ":/?#");
	if (inet_pton(AF_INET, host, &a4) == 1 &&
	    (tlen != hlen || strncasecmp(auth, host, hlen) != 0)) {
		rc = err_set(e, ERR_INVALID, "URL host '%.*s' is not a dotted-quad IPv4 address",
			     (int)(tlen > 64 ? 64 : tlen), auth);
		goto out;
	}
	for (size_t i = 0; i < hlen; i++)
		p->host[i] =
		    (char)(host[i] >= 'A' && host[i] <= 'Z' ? host[i] - 'A' + 'a' : host[i]);
	p->host[hlen] = '\0';
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	if (rc)
		memset(p, 0, sizeof(*p));
	return rc;
}

int url_same_origin(const struct url_parts *a, const struct url_parts *b)
{
	return strcmp(a->scheme, b->scheme) == 0 && strcmp(a->host, b->host) == 0 &&
	       a->port == b->port;
}

/* The host without IPv6 brackets into buf; 0, or -1 when it does not fit. */
static int host_bare(const char *host, char *buf, size_t size)
{
	size_t n = strlen(host);
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		host++;
		n -= 2;
	}
	if (n >= size)
		return -1;
	memcpy(buf, host, n);
	buf[n] = '\0';
	return 0;
}

int url_same_origin_str(const char *a, const char *b)
{
	struct url_parts pa, pb;
	return url_parse(a, &pa, NULL) == 0 && url_parse(b, &pb, NULL) == 0 &&
	       url_same_origin(&pa, &pb);
}

int url_host_is_address(const char *host)
{
	char bare[256];
	unsigned char buf[sizeof(struct in6_addr)];
	if (!host || host_bare(host, bare, sizeof(bare)) < 0)
		return 0;
	return inet_pton(AF_INET, bare, buf) == 1 || inet_pton(AF_INET6, bare, buf) == 1;
}

/* IPv4 ranges that are not the public internet (RFC 6890). */
static const struct {
	uint32_t prefix;
	int bits;
	enum url_net net;
} v4_ranges[] = {
    {0x00000000u, 8, URL_NET_LOOPBACK}, /* "this network": 0.0.0.0 reaches this host */
    {0x7f000000u, 8, URL_NET_LOOPBACK}, {0x0a000000u, 8, URL_NET_PRIVATE},
    {0x64400000u, 10, URL_NET_PRIVATE}, /* carrier-grade NAT */
    {0xa9fe0000u, 16, URL_NET_PRIVATE}, /* link-local, cloud metadata */
    {0xac100000u, 12, URL_NET_PRIVATE}, {0xc0000000u, 24, URL_NET_PRIVATE},
    {0xc0a80000u, 16, URL_NET_PRIVATE}, {0xc6120000u, 15, URL_NET_PRIVATE},
    {0xe0000000u, 3, URL_NET_PRIVATE}, /* multicast, reserved, broadcast */
};

static enum url_net v4_net(uint32_t a)
{
	for (size_t i = 0; i < COUNT(v4_ranges); i++) {
		uint32_t mask = 0xffffffffu << (32 - v4_ranges[i].bits);
		if ((a & mask) == v4_ranges[i].prefix)
			return v4_ranges[i].net;
	}
	return URL_NET_PUBLIC;
}

/* IPv6 ranges; the first match wins. embeds_v4: the last 32 bits are an IPv4 address. */
static const struct {
	unsigned char prefix[16];
	int bits;
	enum url_net net;
	int embeds_v4;
} v6_ranges[] = {
    {{0}, 128, URL_NET_LOOPBACK, 0},			 /* :: */
    {{[15] = 1}, 128, URL_NET_LOOPBACK, 0},		 /* ::1 */
    {{[10] = 0xff, [11] = 0xff}, 96, URL_NET_PUBLIC, 1}, /* IPv4-mapped */
    {{0}, 96, URL_NET_PUBLIC, 1},			 /* IPv4-compatible */
    {{0x00, 0x64, 0xff, 0x9b}, 96, URL_NET_PUBLIC, 1},	 /* NAT64 */
    {{0xfe, 0x80}, 10, URL_NET_PRIVATE, 0},		 /* link-local */
    {{0xfe, 0xc0}, 10, URL_NET_PRIVATE, 0},		 /* site-local */
    {{0xfc}, 7, URL_NET_PRIVATE, 0},			 /* unique local */
    {{0xff}, 8, URL_NET_PRIVATE, 0},			 /* multicast */
};

static int v6_match(const unsigned char *a, const unsigned char *prefix, int bits)
{
	int full = bits / 8, rest = bits % 8;
	if (memcmp(a, prefix, (size_t)full) != 0)
		return 0;
	if (!rest)
		return 1;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (a[full] & mask) == (prefix[full] & mask);
}

static enum url_net v6_net(const unsigned char *a)
{
	for (size_t i = 0; i < COUNT(v6_ranges); i++) {
		if (!v6_match(a, v6_ranges[i].prefix, v6_ranges[i].bits))
			continue;
		if (v6_ranges[i].embeds_v4)
			return v4_net((uint32_t)a[12] << 24 | (uint32_t)a[13] << 16 |
				      (uint32_t)a[14] << 8 | a[15]);
		return v6_ranges[i].net;
	}
	return URL_NET_PUBLIC;
}

int url_cidr_parse(const char *s, struct url_cidr *out, struct err *e)
{
	char addr[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	memset(out, 0, sizeof(*out));
	if (n == 0 || n >= sizeof(addr))
		return err_set(e, ERR_INVALID, "network '%.64s': expected ADDRESS/BITS", s);
	memcpy(addr, s, n);
	addr[n] = 0;
	int max;
	if (inet_pton(AF_INET, addr, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		return err_set(e, ERR_INVALID,
			       "network '%.64s': '%s' is not an IPv4 or IPv6 address", s, addr);
	}
	uint64_t bits = (uint64_t)max;
	if (slash && parse_u64_str(slash + 1, 0, (uint64_t)max, &bits, "prefix length", e) < 0)
		return err_prefix(e, "network '%.64s'", s);
	out->bits = (int)bits;
	unsigned char zero[16] = {0};
	unsigned char host[16];
	memcpy(host, out->addr, sizeof(host));
	/* The bits after the prefix, shifted out, must be zero. */
	for (int b = 0; b < out->bits; b++)
		host[b / 8] &= (unsigned char)~(0x80 >> (b % 8));
	if (memcmp(host, zero, (size_t)max / 8) != 0)
		return err_set(e, ERR_INVALID,
			       "network '%.64s': address bits after the first %d are set "
			       "(write the network address)",
			       s, out->bits);
	return 0;
}

int url_cidr_match(const struct url_cidr *c, const struct sockaddr *sa)
{
	static const unsigned char mapped[12] = {[10] = 0xff, [11] = 0xff};
	const unsigned char *a;
	int family = sa->sa_family;
	if (family == AF_INET) {
		a = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)
			->sin_addr;
	} else if (family == AF_INET6) {
		a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
		if (c->family == AF_INET && memcmp(a, mapped, sizeof(mapped)) == 0) {
			a += sizeof(mapped);
			family = AF_INET;
		}
	} else {
		return 0;
	}
	return family == c->family && v6_match(a, c->addr, c->bits);
}

enum url_net url_addr_net(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		return v4_net(ntohl(in->sin_addr.s_addr));
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		return v6_net(in6->sin6_addr.s6_addr);
	}
	return URL_NET_PUBLIC;
}

/* The class of host when it is written as an address or "localhost"; -1 for a name. */
static int literal_net(const char *host)
{
	char bare[256];
	struct in_addr a4;
	struct in6_addr a6;
	if (host_bare(host, bare, sizeof(bare)) < 0)
		return -1;
	if (strcasecmp(bare, "localhost") == 0)
		return URL_NET_LOOPBACK;
	if (inet_pton(AF_INET, bare, &a4) == 1)
		return (int)v4_net(ntohl(a4.s_addr));
	if (inet_pton(AF_INET6, bare, &a6) == 1)
		return (int)v6_net(a6.s6_addr);
	return -1;
}

int url_addr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
	}
	return 0;
}

int url_host_is_loopback(const char *host)
{
	char bare[256];
	struct sockaddr_in in = {.sin_family = AF_INET};
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
	if (!host || host_bare(host, bare, sizeof(bare)) < 0)
		return 0;
	if (strcasecmp(bare, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, bare, &in.sin_addr) == 1)
		return url_addr_is_loopback((struct sockaddr *)&in);
	if (inet_pton(AF_INET6, bare, &in6.sin6_addr) == 1)
		return url_addr_is_loopback((struct sockaddr *)&in6);
	return 0;
}

enum url_net url_host_net(const char *host)
{
	int lit = literal_net(host);
	if (lit >= 0)
		return (enum url_net)lit;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
		return URL_NET_PUBLIC;
	enum url_net net = URL_NET_LOOPBACK;
	for (struct addrinfo *a = res; a; a = a->ai_next) {
		enum url_net n = url_addr_net(a->ai_addr);
		if (n < net)
			net = n;
	}
	freeaddrinfo(res);
	return net;
}

int url_check_scheme(const struct url_parts *p, struct err *e)
{
	if (strcmp(p->scheme, "https") == 0)
		return 0;
	if (strcmp(p->scheme, "http") == 0 && url_host_is_loopback(p->host))
		return 0;
	return err_set(e, ERR_INVALID,
		       "plain http:// is not allowed to host '%s' (https only, except to loopback)",
		       p->host);
}

int url_check_redirect(const struct url_parts *from, const struct url_parts *to, enum url_net base,
		       struct err *e)
{
	if (strcmp(from->scheme, "https") == 0 && strcmp(to->scheme, "https") != 0)
		return err_set(e, ERR_FORBIDDEN, "redirect from https to %s://%s refused",
			       to->scheme, to->host);
	int lit = literal_net(to->host);
	if (lit > (int)base)
		return err_set(e, ERR_FORBIDDEN,
			       "redirect to %s, a %s address, refused from a %s origin", to->host,
			       net_names[lit], net_names[base]);
	return 0;
}

int url_check_peer(const struct sockaddr *sa, enum url_net base, const char *host, struct err *e)
{
	enum url_net n = url_addr_net(sa);
	if (n <= base)
		return 0;
	char addr[INET6_ADDRSTRLEN] = "?";
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, addr,
			  sizeof(addr));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
			  addr, sizeof(addr));
	return err_set(e, ERR_FORBIDDEN,
		       "redirect to '%s' refused: it resolves to %s, a %s address, and the "
		       "download started at a %s origin",
		       host ? host : "?", addr, net_names[n], net_names[base]);
}

int url_open_checked_socket(int purpose, const void *a, enum url_net base, const char *host,
			    struct err *e)
{
	const struct curl_sockaddr *ca = a;
	if (purpose == CURLSOCKTYPE_IPCXN && url_check_peer(&ca->addr, base, host, e) < 0)
		return CURL_SOCKET_BAD;
	return socket(ca->family, ca->socktype | SOCK_CLOEXEC, ca->protocol);
}

int url_proxy_configured(void)
{
	static const char *const names[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
					    "HTTPS_PROXY", "all_proxy",	 "ALL_PROXY"};
	for (size_t i = 0; i < COUNT(names); i++) {
		const char *v = getenv(names[i]);
		if (v && *v)
			return 1;
	}
	return 0;
}
