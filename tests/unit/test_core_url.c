/*
 * The URL policy: parsing through libcurl with the stricter rules on top,
 * exact loopback parsing, address classes, the scheme rule, redirect hops
 * and peer addresses.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "core/err.h"
#include "core/url.h"

static struct url_parts parse_ok(const char *url)
{
	struct url_parts p;
	struct err e = {0};
	if (url_parse(url, &p, &e) != 0)
		fail_msg("url_parse(%s): %s", url, e.msg);
	return p;
}

static void parse_bad(const char *url, const char *want)
{
	struct url_parts p;
	struct err e = {0};
	if (url_parse(url, &p, &e) == 0)
		fail_msg("url_parse(%s) succeeded, expected '%s'", url, want);
	if (!strstr(e.msg, want))
		fail_msg("url_parse(%s): message '%s' lacks '%s'", url, e.msg, want);
}

static void test_parse(void **state)
{
	(void)state;
	struct url_parts p = parse_ok("HTTPS://Example.COM/a/b?x=1");
	assert_string_equal(p.scheme, "https");
	assert_string_equal(p.host, "example.com");
	assert_int_equal(p.port, 443);
	p = parse_ok("http://127.0.0.1:8080/x");
	assert_string_equal(p.host, "127.0.0.1");
	assert_int_equal(p.port, 8080);
	p = parse_ok("http://[::1]:9000/x");
	assert_string_equal(p.host, "[::1]");
	assert_int_equal(p.port, 9000);
	parse_bad("ftp://example.com/x", "scheme");
	parse_bad("example.com/x", "not absolute");
	parse_bad("https:///x", "no host");
	parse_bad("https://user@example.com/x", "credentials");
	parse_bad("https://example.com:/x", "port");
	parse_bad("https://example.com:0/x", "port");
	parse_bad("https://example.com:70000/x", "port");
	parse_bad("https://exa$mple.com/x", "host name");
	parse_bad("https://[zz::1]/x", "IPv6");
	/* libcurl would connect to 127.0.0.1 for these; only the dotted quad is taken. */
	parse_bad("http://127.1/x", "dotted-quad");
	parse_bad("http://2130706433/x", "dotted-quad");
	parse_bad("http://0x7f.0.0.1/x", "dotted-quad");
}

static void test_same_origin_includes_port_and_scheme(void **state)
{
	(void)state;
	struct url_parts a = parse_ok("http://127.0.0.1:8000/api");
	struct url_parts b = parse_ok("http://127.0.0.1:8000/other?q");
	struct url_parts c = parse_ok("http://127.0.0.1:8001/api");
	struct url_parts d = parse_ok("https://127.0.0.1:8000/api");
	assert_true(url_same_origin(&a, &b));
	assert_false(url_same_origin(&a, &c));
	assert_false(url_same_origin(&a, &d));
	struct url_parts h1 = parse_ok("https://huggingface.co/x");
	struct url_parts h2 = parse_ok("https://HuggingFace.co:443/y");
	assert_true(url_same_origin(&h1, &h2));
	assert_true(
	    url_same_origin_str("https://huggingface.co/x", "https://HuggingFace.co:443/y"));
	assert_false(url_same_origin_str("http://127.0.0.1:8000/a", "http://127.0.0.1:8001/a"));
	assert_false(url_same_origin_str("not a url", "not a url"));
}

static void test_host_is_address(void **state)
{
	(void)state;
	assert_true(url_host_is_address("192.0.2.7"));
	assert_true(url_host_is_address("::1"));
	assert_true(url_host_is_address("[2001:db8::1]"));
	assert_false(url_host_is_address("localhost"));
	assert_false(url_host_is_address("example.org"));
	assert_false(url_host_is_address("127.1"));
	assert_false(url_host_is_address(""));
}

static void test_loopback_is_parsed_exactly(void **state)
{
	(void)state;
	assert_true(url_host_is_loopback("localhost"));
	assert_true(url_host_is_loopback("LocalHost"));
	assert_true(url_host_is_loopback("127.0.0.1"));
	assert_true(url_host_is_loopback("127.255.3.4"));
	assert_true(url_host_is_loopback("[::1]"));
	assert_true(url_host_is_loopback("::1"));
	assert_false(url_host_is_loopback("127.attacker.invalid"));
	assert_false(url_host_is_loopback("127.0.0.1.evil.com"));
	assert_false(url_host_is_loopback("127.1"));
	assert_false(url_host_is_loopback("128.0.0.1"));
	assert_false(url_host_is_loopback("localhost.evil.com"));
	assert_false(url_host_is_loopback("[::2]"));
	assert_false(url_host_is_loopback(""));
	assert_false(url_host_is_loopback(NULL));
}

static enum url_net net4(const char *ip)
{
	struct sockaddr_in in = {.sin_family = AF_INET};
	assert_int_equal(inet_pton(AF_INET, ip, &in.sin_addr), 1);
	return url_addr_net((struct sockaddr *)&in);
}

static enum url_net net6(const char *ip)
{
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
	assert_int_equal(inet_pton(AF_INET6, ip, &in6.sin6_addr), 1);
	return url_addr_net((struct sockaddr *)&in6);
}

static void test_address_classes(void **state)
{
	(void)state;
	assert_int_equal(net4("127.0.0.1"), URL_NET_LOOPBACK);
	assert_int_equal(net4("127.9.9.9"), URL_NET_LOOPBACK);
	assert_int_equal(net4("0.0.0.0"), URL_NET_LOOPBACK);
	assert_int_equal(net4("10.1.2.3"), URL_NET_PRIVATE);
	assert_int_equal(net4("172.16.0.1"), URL_NET_PRIVATE);
	assert_int_equal(net4("172.31.255.1"), URL_NET_PRIVATE);
	assert_int_equal(net4("172.32.0.1"), URL_NET_PUBLIC);
	assert_int_equal(net4("192.168.1.1"), URL_NET_PRIVATE);
	assert_int_equal(net4("169.254.169.254"), URL_NET_PRIVATE);
	assert_int_equal(net4("100.64.0.1"), URL_NET_PRIVATE);
	assert_int_equal(net4("224.0.0.1"), URL_NET_PRIVATE);
	assert_int_equal(net4("255.255.255.255"), URL_NET_PRIVATE);
	assert_int_equal(net4("8.8.8.8"), URL_NET_PUBLIC);
	assert_int_equal(net4("18.154.1.2"), URL_NET_PUBLIC);
	assert_int_equal(net6("::1"), URL_NET_LOOPBACK);
	assert_int_equal(net6("::"), URL_NET_LOOPBACK);
	assert_int_equal(net6("::ffff:127.0.0.1"), URL_NET_LOOPBACK);
	assert_int_equal(net6("::ffff:10.0.0.1"), URL_NET_PRIVATE);
	assert_int_equal(net6("::ffff:8.8.8.8"), URL_NET_PUBLIC);
	assert_int_equal(net6("fe80::1"), URL_NET_PRIVATE);
	assert_int_equal(net6("fd00::1"), URL_NET_PRIVATE);
	assert_int_equal(net6("ff02::1"), URL_NET_PRIVATE);
	assert_int_equal(net6("2600:1f18::1"), URL_NET_PUBLIC);
	assert_int_equal(url_host_net("127.0.0.2"), URL_NET_LOOPBACK);
	assert_int_equal(url_host_net("[::1]"), URL_NET_LOOPBACK);
	assert_int_equal(url_host_net("localhost"), URL_NET_LOOPBACK);
	assert_int_equal(url_host_net("192.168.0.10"), URL_NET_PRIVATE);
}

static void test_scheme_rule(void **state)
{
	(void)state;
	struct err e = {0};
	struct url_parts p = parse_ok("https://example.com/x");
	assert_int_equal(url_check_scheme(&p, &e), 0);
	p = parse_ok("http://127.0.0.2:81/x");
	assert_int_equal(url_check_scheme(&p, &e), 0);
	p = parse_ok("http://127.attacker.invalid/x");
	assert_int_equal(url_check_scheme(&p, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "https only"));
	p = parse_ok("http://10.0.0.1/x");
	assert_int_equal(url_check_scheme(&p, &e), ERR_INVALID);
}

static void test_redirect_hops(void **state)
{
	(void)state;
	struct err e = {0};
	struct url_parts hub = parse_ok("https://huggingface.co/x");
	struct url_parts cdn = parse_ok("https://cdn-lfs.hf.co/y");
	struct url_parts down = parse_ok("http://127.0.0.1:8080/z");
	struct url_parts lo = parse_ok("https://127.0.0.1:8443/z");
	struct url_parts lan = parse_ok("https://192.168.1.10/z");
	struct url_parts meta = parse_ok("https://169.254.169.254/latest");
	assert_int_equal(url_check_redirect(&hub, &cdn, URL_NET_PUBLIC, &e), 0);
	assert_int_equal(url_check_redirect(&hub, &down, URL_NET_PUBLIC, &e), ERR_FORBIDDEN);
	assert_non_null(strstr(e.msg, "https to http"));
	assert_int_equal(url_check_redirect(&hub, &lo, URL_NET_PUBLIC, &e), ERR_FORBIDDEN);
	assert_non_null(strstr(e.msg, "loopback"));
	assert_int_equal(url_check_redirect(&hub, &lan, URL_NET_PUBLIC, &e), ERR_FORBIDDEN);
	assert_int_equal(url_check_redirect(&hub, &meta, URL_NET_PUBLIC, &e), ERR_FORBIDDEN);
	/* An origin inside the network may stay there; only loopback may go anywhere. */
	assert_int_equal(url_check_redirect(&lan, &lan, URL_NET_PRIVATE, &e), 0);
	assert_int_equal(url_check_redirect(&lan, &lo, URL_NET_PRIVATE, &e), ERR_FORBIDDEN);
	struct url_parts fake_hub = parse_ok("http://127.0.0.1:9000/r");
	struct url_parts fake_cdn = parse_ok("http://127.0.0.2:9001/c");
	assert_int_equal(url_check_redirect(&fake_hub, &fake_cdn, URL_NET_LOOPBACK, &e), 0);
}

static void test_peer_addresses(void **state)
{
	(void)state;
	struct err e = {0};
	struct sockaddr_in in = {.sin_family = AF_INET};
	inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
	assert_int_equal(url_check_peer((struct sockaddr *)&in, URL_NET_PUBLIC, "x.example", &e),
			 ERR_FORBIDDEN);
	assert_non_null(strstr(e.msg, "x.example"));
	assert_non_null(strstr(e.msg, "127.0.0.1"));
	assert_int_equal(url_check_peer((struct sockaddr *)&in, URL_NET_LOOPBACK, "x", &e), 0);
	inet_pton(AF_INET, "93.184.216.34", &in.sin_addr);
	assert_int_equal(url_check_peer((struct sockaddr *)&in, URL_NET_PUBLIC, "x", &e), 0);
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
	inet_pton(AF_INET6, "fe80::1", &in6.sin6_addr);
	assert_int_equal(url_check_peer((struct sockaddr *)&in6, URL_NET_PUBLIC, "x", &e),
			 ERR_FORBIDDEN);
}

/* Every entry of the CLI's no-proxy list is a host (or a range of hosts) the loopback rule accepts.
 */
static void test_noproxy_list_is_loopback(void **state)
{
	(void)state;
	char list[] = URL_LOOPBACK_NOPROXY;
	int n = 0;
	for (char *save = NULL, *h = strtok_r(list, ",", &save); h;
	     h = strtok_r(NULL, ",", &save)) {
		char *slash = strchr(h, '/');
		if (slash)
			*slash = '\0';
		assert_true(url_host_is_loopback(h));
		n++;
	}
	assert_int_equal(n, 4);
	assert_false(url_host_is_loopback("128.0.0.1"));
}

static int cidr_has(const char *net, const char *addr)
{
	struct url_cidr c;
	struct err e = {0};
	if (url_cidr_parse(net, &c, &e) != 0)
		fail_msg("url_cidr_parse(%s): %s", net, e.msg);
	struct sockaddr_in in = {.sin_family = AF_INET};
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
	if (inet_pton(AF_INET, addr, &in.sin_addr) == 1)
		return url_cidr_match(&c, (struct sockaddr *)&in);
	assert_int_equal(inet_pton(AF_INET6, addr, &in6.sin6_addr), 1);
	return url_cidr_match(&c, (struct sockaddr *)&in6);
}

static void test_cidr(void **state)
{
	(void)state;
	assert_true(cidr_has("127.0.0.0/8", "127.9.8.7"));
	assert_false(cidr_has("127.0.0.0/8", "128.0.0.1"));
	assert_true(cidr_has("192.168.1.0/24", "192.168.1.255"));
	assert_false(cidr_has("192.168.1.0/24", "192.168.2.1"));
	assert_true(cidr_has("10.1.2.3", "10.1.2.3"));
	assert_false(cidr_has("10.1.2.3", "10.1.2.4"));
	assert_true(cidr_has("0.0.0.0/0", "8.8.8.8"));
	assert_false(cidr_has("0.0.0.0/0", "::1"));
	assert_true(cidr_has("172.16.0.0/12", "172.31.255.1"));
	assert_false(cidr_has("172.16.0.0/12", "172.32.0.1"));
	/* A dual-stack socket reports IPv4 clients as mapped addresses. */
	assert_true(cidr_has("127.0.0.0/8", "::ffff:127.0.0.1"));
	assert_false(cidr_has("10.0.0.0/8", "::ffff:127.0.0.1"));
	assert_true(cidr_has("fd00::/8", "fd12:3456::1"));
	assert_false(cidr_has("fd00::/8", "fe80::1"));
	assert_true(cidr_has("::1/128", "::1"));
	assert_true(cidr_has("2001:db8::/33", "2001:db8:7fff::1"));
	assert_false(cidr_has("2001:db8::/33", "2001:db8:8000::1"));

	static const struct {
		const char *net, *want;
	} bad[] = {
	    {"", "expected ADDRESS/BITS"},
	    {"/8", "expected ADDRESS/BITS"},
	    {"10.0.0.0/33", "prefix length"},
	    {"10.0.0.0/", "prefix length"},
	    {"10.0.0.0/-1", "prefix length"},
	    {"10.0.0.0/8x", "prefix length"},
	    {"fd00::/129", "prefix length"},
	    {"10.0.0.1/8", "bits after the first 8"},
	    {"10.0.0/8", "not an IPv4 or IPv6 address"},
	    {"hive.lan/24", "not an IPv4 or IPv6 address"},
	    {"fd00::1/8", "bits after the first 8"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct url_cidr c;
		struct err e = {0};
		if (url_cidr_parse(bad[i].net, &c, &e) != ERR_INVALID)
			fail_msg("url_cidr_parse(%s) was accepted", bad[i].net);
		if (!strstr(e.msg, bad[i].want))
			fail_msg("url_cidr_parse(%s): '%s' lacks '%s'", bad[i].net, e.msg,
				 bad[i].want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_same_origin_includes_port_and_scheme),
	    cmocka_unit_test(test_host_is_address),
	    cmocka_unit_test(test_loopback_is_parsed_exactly),
	    cmocka_unit_test(test_noproxy_list_is_loopback),
	    cmocka_unit_test(test_address_classes),
	    cmocka_unit_test(test_scheme_rule),
	    cmocka_unit_test(test_redirect_hops),
	    cmocka_unit_test(test_peer_addresses),
	    cmocka_unit_test(test_cidr),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
