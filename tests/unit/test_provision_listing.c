/* One page of the Hub's recursive tree listing (hf_tree_page_parse) and the ETag of an answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/cancel.h"
#include "core/caps.h"
#include "core/err.h"
#include "provision/hfapi.h"
#include "provision/hfapi_internal.h"
#include "provision/hfselect.h"
#include "provision/provision.h"
#include "test_listen.h"

#define SHA_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define OID_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static int parse(const char *body, const char *link, struct hf_listing *l, char *next,
		 size_t next_size, struct err *e)
{
	return hf_tree_page_parse(body, strlen(body), link, "org/repo", NULL, l, next, next_size,
				  e);
}

/* A cancelled job stops reading a page at once. */
static void test_page_cancelled(void **state)
{
	(void)state;
	static const char body[] = "[{\"type\":\"file\",\"path\":\"a.gguf\",\"size\":1}]";
	struct hf_listing l;
	char next[64];
	struct err e = {0};
	struct cancel_token *t = cancel_new();
	cancel_fire(t);
	hf_listing_init(&l);
	assert_int_equal(
	    hf_tree_page_parse(body, strlen(body), NULL, "org/repo", t, &l, next, sizeof(next), &e),
	    ERR_CANCELLED);
	assert_int_equal(l.n, 0);
	hf_listing_cleanup(&l);
	cancel_unref(t);
}

static void test_page(void **state)
{
	(void)state;
	static const char body[] =
	    "[{\"type\":\"directory\",\"path\":\"sub\",\"oid\":\"" OID_B "\",\"size\":0},"
	    "{\"type\":\"file\",\"path\":\"sub/m.Q4_K_M.gguf\",\"size\":1000,\"oid\":\"" OID_B "\","
	    "\"lfs\":{\"oid\":\"" SHA_A "\",\"size\":1000,\"pointerSize\":134},\"xetHash\":\"x\"},"
	    "{\"type\":\"file\",\"path\":\"README.md\",\"size\":12,\"oid\":\"" OID_B "\"}]";
	struct hf_listing l;
	char next[CAP_URL_LEN + 1];
	struct err e = {0};
	hf_listing_init(&l);
	assert_int_equal(parse(body,
			       "<https://hub.example/api/models/org/repo/tree/c?cursor=x>; "
			       "rel=\"next\"",
			       &l, next, sizeof(next), &e),
			 0);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.files[0].path, "sub/m.Q4_K_M.gguf");
	assert_int_equal(l.files[0].size, 1000);
	assert_string_equal(l.files[0].sha256, SHA_A);
	assert_string_equal(l.files[1].path, "README.md");
	assert_string_equal(l.files[1].sha256, "");
	assert_string_equal(l.files[1].oid, OID_B);
	assert_string_equal(next, "https://hub.example/api/models/org/repo/tree/c?cursor=x");

	/* A second page appends; no Link (or another rel) is the last page. */
	assert_int_equal(parse("[{\"type\":\"file\",\"path\":\"b.gguf\",\"size\":5}]",
			       "<https://hub.example/x>; rel=\"prev\"", &l, next, sizeof(next), &e),
			 0);
	assert_int_equal(l.n, 3);
	assert_string_equal(next, "");
	assert_int_equal(parse("[]", NULL, &l, next, sizeof(next), &e), 0);
	assert_string_equal(next, "");
	hf_listing_cleanup(&l);
}

static void test_refused(void **state)
{
	(void)state;
	static const struct {
		const char *body;
		int code;
		const char *msg;
	} cases[] = {
	    {"{\"type\":\"file\"}", ERR_NETWORK, "tree listing of org/repo is not a JSON array"},
	    {"[1]", ERR_NETWORK, "entry 0 is not an object"},
	    {"[{\"path\":\"a\"}]", ERR_NETWORK, "entry without type or path"},
	    {"[{\"type\":\"file\",\"path\":\"../etc/passwd\",\"size\":1}]", ERR_INVALID,
	     "unsafe path refused"},
	    {"[{\"type\":\"file\",\"path\":\"a.gguf\"}]", ERR_NETWORK, "'a.gguf' has no size"},
	    {"[{\"type\":\"file\",\"path\":\"a.gguf\",\"size\":-1}]", ERR_NETWORK, "has no size"},
	    {"[{\"type\":\"file\",\"path\":\"a\",\"size\":1,\"lfs\":{\"oid\":\"xyz\"}}]",
	     ERR_NETWORK, "bad lfs.oid for 'a'"},
	    {"[{\"type\":\"file\",\"path\":\"a\",\"size\":1,\"lfs\":{\"oid\":\"" SHA_A
	     "\",\"size\":2}}]",
	     ERR_DIGEST, "'a' has two sizes (1, 2)"},
	    {"[{\"type\":\"file\",", ERR_INVALID, "tree listing of org/repo: "},
	    {"", ERR_INVALID, "tree listing of org/repo: "},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct hf_listing l;
		char next[64] = "unchanged";
		struct err e = {0};
		hf_listing_init(&l);
		int rc = parse(cases[i].body, NULL, &l, next, sizeof(next), &e);
		if (rc != cases[i].code || !strstr(err_msg(&e), cases[i].msg))
			fail_msg("case %zu: %d '%s'", i, rc, err_msg(&e));
		hf_listing_cleanup(&l);
	}
}

static void test_next_url_too_long(void **state)
{
	(void)state;
	struct hf_listing l;
	char next[16];
	struct err e = {0};
	hf_listing_init(&l);
	/* A cut URL would ask for another page than the Hub named: refused. */
	assert_int_equal(parse("[]", "<https://hub.example/long/next/page>; rel=next", &l, next,
			       sizeof(next), &e),
			 ERR_TOO_LARGE);
	assert_non_null(strstr(err_msg(&e), "next page's URL is too long"));
	hf_listing_cleanup(&l);
}

/* A server that answers each HEAD with the next ETag of etags, then closes. */
struct etag_server {
	int fd;
	const char *const *etags;
	size_t n;
};

static void *etag_serve(void *arg)
{
	struct etag_server *sv = arg;
	for (size_t i = 0; i < sv->n; i++) {
		int c = accept(sv->fd, NULL, NULL);
		if (c < 0)
			break;
		char req[4096];
		test_read_request(c, req, sizeof(req));
		char ans[512];
		int len = snprintf(ans, sizeof(ans),
				   "HTTP/1.1 200 OK\r\nETag: %s\r\nContent-Length: 0\r\n"
				   "Connection: close\r\n\r\n",
				   sv->etags[i]);
		assert_int_equal(write(c, ans, (size_t)len), len);
		close(c);
	}
	return NULL;
}

/* The ETag of an answer is kept without its W/ prefix and quotes. */
static void test_etag_strip(void **state)
{
	(void)state;
	static const char *const etags[] = {"W/\"" OID_B "\"", "\"" SHA_A "\"", "plain", "\""};
	static const char *const want[] = {OID_B, SHA_A, "plain", "\""};
	char url[128];
	struct etag_server sv = {.etags = etags, .n = sizeof(etags) / sizeof(etags[0])};
	sv.fd = test_listen_loopback(url, sizeof(url));
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, etag_serve, &sv), 0);
	struct prov_config cfg = {.endpoint = "http://127.0.0.1:1"};
	struct hf_client c;
	struct err e = {0};
	assert_int_equal(hf_client_init(&c, &cfg, &e), 0);
	for (size_t i = 0; i < sv.n; i++) {
		struct hf_resp r = {0};
		assert_int_equal(hf_request(&c, "HEAD", url, HF_REDIRECT_SAME_HOST, NULL, &r, &e),
				 0);
		assert_int_equal(r.status, 200);
		assert_string_equal(r.etag, want[i]);
		hf_resp_cleanup(&r);
	}
	pthread_join(th, NULL);
	close(sv.fd);
	hf_client_cleanup(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_page),       cmocka_unit_test(test_page_cancelled),
	    cmocka_unit_test(test_refused),    cmocka_unit_test(test_next_url_too_long),
	    cmocka_unit_test(test_etag_strip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
