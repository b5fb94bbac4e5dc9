/*
 * url: the one URL policy of rbee-hive. The model-ref parser, the Hub
 * client, the transfer engine and the daemon's request guard all judge URLs,
 * hosts and peer addresses here, so one rule holds everywhere:
 *
 *   - URLs are parsed by libcurl's URL API (CURLU), the parser of the code
 *     that connects, never by hand. Only http and https are accepted; no
 *     userinfo; an IPv4 host must be written as a dotted quad (CURLU turns
 *     "127.1" or "2130706433" into 127.0.0.1; such forms are refused).
 *   - https anywhere; plain http only to a loopback host.
 *   - Loopback is parsed exactly: "localhost", an IPv4 literal in
 *     127.0.0.0/8, or the IPv6 literal ::1. "127.attacker.invalid" is a
 *     name, not a loopback address.
 *   - Credentials go to the exact origin (scheme, host, port) they were
 *     given for.
 *   - A redirect never goes from https to http, and never from an origin to
 *     an address of a more internal class (public < private or link-local <
 *     loopback). A chain that starts on the public internet cannot reach
 *     this machine or its network; one that starts on loopback (the tests'
 *     fake hub) may go anywhere. Names are judged on the address they
 *     resolve to, at connect time (url_check_peer), not on their spelling.
 *
 * All functions are thread-safe and keep no state.
 */
#ifndef RBEE_CORE_URL_H
#define RBEE_CORE_URL_H

#include <stddef.h>

struct err;
struct sockaddr;

/* Address classes, ordered from the outside in. */
enum url_net {
	URL_NET_PUBLIC = 0,   /* the internet, and names that do not resolve */
	URL_NET_PRIVATE = 1,  /* RFC 1918, CGNAT, link-local, ULA, multicast, reserved */
	URL_NET_LOOPBACK = 2, /* 127.0.0.0/8, ::1, and the unspecified addresses */
};

struct url_parts {
	char scheme[8]; /* "http" or "https" */
	char host[256]; /* lower case; an IPv6 literal keeps its brackets */
	int port;	/* as given, else the scheme's default */
};

/*
 * Parses an absolute http(s) URL. Returns 0, or ERR_INVALID / ERR_TOO_LARGE
 * with a message saying what is wrong ("URL has no host", "port ...").
 */
int url_parse(const char *url, struct url_parts *p, struct err *e);

/* 1 when a and b have the same scheme, host and port. */
int url_same_origin(const struct url_parts *a, const struct url_parts *b);

/* 1 when the URLs a and b both parse and are of the same origin. */
int url_same_origin_str(const char *a, const char *b);

/*
 * 1 when host (as in struct url_parts, or a bare IPv6 literal) is written as
 * an IPv4 dotted quad or an IPv6 address: a name DNS cannot rebind.
 */
int url_host_is_address(const char *host);

/* 1 when host (as in struct url_parts, or a bare IPv6 literal) names this machine exactly. */
int url_host_is_loopback(const char *host);

/*
 * The hosts url_host_is_loopback accepts, as a libcurl CURLOPT_NOPROXY
 * list: a request to this machine never goes through a proxy from the
 * environment. 127.0.0.1 is also named alone for a libcurl older than
 * 7.86, which reads no address ranges there.
 */
#define URL_LOOPBACK_NOPROXY "localhost,127.0.0.1,127.0.0.0/8,::1"

/*
 * 1 when sa is a loopback address exactly: 127.0.0.0/8 or ::1 (not the
 * unspecified address, which a listening socket reads as "every address").
 */
int url_addr_is_loopback(const struct sockaddr *sa);

/* An IPv4 or IPv6 network: the first bits of addr (network byte order). */
struct url_cidr {
	int family; /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	int bits;
};

/*
 * Parses "ADDR/BITS" or a bare ADDR (all its bits) with inet_pton: ADDR an
 * IPv4 dotted quad or an IPv6 address, BITS 0..32 or 0..128. Host bits
 * after the prefix must be zero ("10.0.0.1/8" is refused as a likely
 * typo). Returns 0 or ERR_INVALID naming what is wrong.
 */
int url_cidr_parse(const char *s, struct url_cidr *out, struct err *e);

/*
 * 1 when sa lies in c. An IPv4-mapped IPv6 peer (::ffff:a.b.c.d, as a
 * dual-stack socket reports IPv4 clients) is judged as its IPv4 address.
 */
int url_cidr_match(const struct url_cidr *c, const struct sockaddr *sa);

/* The class of an IPv4 or IPv6 address; other families count as public. */
enum url_net url_addr_net(const struct sockaddr *sa);

/*
 * The class of a host: a literal address is classified as written,
 * "localhost" is loopback, a name is resolved (getaddrinfo, may block) and
 * gets the most public class of its addresses; a name that does not
 * resolve is public. Used for the start of a redirect chain.
 */
enum url_net url_host_net(const char *host);

/* The scheme rule for any URL fetched: https anywhere, http to a loopback host only. */
int url_check_scheme(const struct url_parts *p, struct err *e);

/*
 * A redirect hop from `from` to `to` in a chain that started at an origin of
 * class base: refused (ERR_FORBIDDEN) for https to http, and for a target
 * written as an address (or "localhost") of a class above base. Names are
 * left to url_check_peer.
 */
int url_check_redirect(const struct url_parts *from, const struct url_parts *to, enum url_net base,
		       struct err *e);

/*
 * A connection about to be made to sa for a chain of class base: refused
 * (ERR_FORBIDDEN, naming host) when sa is of a class above base.
 */
int url_check_peer(const struct sockaddr *sa, enum url_net base, const char *host, struct err *e);

/*
 * The body of a libcurl CURLOPT_OPENSOCKETFUNCTION that applies
 * url_check_peer to every connection it opens: the socket (close-on-exec),
 * or CURL_SOCKET_BAD (-1) with e filled when the address is refused.
 * purpose and a are libcurl's (curlsocktype, struct curl_sockaddr *).
 */
int url_open_checked_socket(int purpose, const void *a, enum url_net base, const char *host,
			    struct err *e);

/*
 * 1 when the environment names a proxy for libcurl (http_proxy,
 * https_proxy, all_proxy in either case). The peer of a proxied request is
 * the proxy, so its address says nothing about the target.
 */
int url_proxy_configured(void);

#endif
