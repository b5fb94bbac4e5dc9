/* Unit tests of core/ref: model ref parsing, canonical text, catalog ids, matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "core/ref.h"

static struct model_ref r;

static void parse_ok(const char *s)
{
	struct err e = {0};
	int rc = ref_parse(s, &r, &e);
	if (rc != 0)
		fail_msg("ref_parse(%s): %s", s, e.msg);
}

/* Parses s, expects failure, and checks the message contains want. */
static void parse_bad(const char *s, const char *want)
{
	struct err e = {0};
	int rc = ref_parse(s, &r, &e);
	if (rc == 0)
		fail_msg("ref_parse(%s) succeeded, expected '%s'", s, want);
	assert_int_equal(rc, ERR_UNPROCESSABLE);
	assert_int_equal(e.code, ERR_UNPROCESSABLE);
	if (!strstr(e.msg, want))
		fail_msg("ref_parse(%s): message '%s' lacks '%s'", s, e.msg, want);
	assert_true(strncmp(e.msg, "model ref '", 11) == 0);
}

static void assert_format(const char *want)
{
	char buf[CAP_URL_LEN + 64];
	assert_int_equal(ref_format(&r, buf, sizeof(buf)), 0);
	assert_string_equal(buf, want);
}

static void test_hf_forms(void **state)
{
	(void)state;
	parse_ok("hf:TheBloke/Llama-2-7B-GGUF");
	assert_int_equal(r.kind, REF_HF);
	assert_string_equal(r.org, "TheBloke");
	assert_string_equal(r.repo, "Llama-2-7B-GGUF");
	assert_int_equal(r.sel, SEL_DEFAULT);
	assert_string_equal(r.selector, "");
	assert_string_equal(r.revision, "main");
	assert_int_equal(r.revision_given, 0);
	assert_format("hf:TheBloke/Llama-2-7B-GGUF@main");

	parse_ok("TheBloke/Llama-2-7B-GGUF");
	assert_int_equal(r.kind, REF_HF);
	assert_string_equal(r.repo, "Llama-2-7B-GGUF");

	parse_ok("HF:org/repo");
	assert_int_equal(r.kind, REF_HF);

	parse_ok("hf:org/repo:q4_k_m");
	assert_int_equal(r.sel, SEL_QUANT);
	assert_string_equal(r.selector, "Q4_K_M");
	assert_format("hf:org/repo:Q4_K_M@main");

	static const struct {
		const char *in, *tag;
	} quants[] = {
	    {"q8_0", "Q8_0"},	  {"IQ2_XXS", "IQ2_XXS"}, {"f16", "F16"},
	    {"bf16", "BF16"},	  {"tq1_0", "TQ1_0"},	  {"UD-Q4_K_XL", "UD-Q4_K_XL"},
	    {"Q4_K_M", "Q4_K_M"},
	};
	for (size_t i = 0; i < sizeof(quants) / sizeof(quants[0]); i++) {
		char s[64];
		snprintf(s, sizeof(s), "a/b:%s", quants[i].in);
		parse_ok(s);
		assert_int_equal(r.sel, SEL_QUANT);
		assert_string_equal(r.selector, quants[i].tag);
	}

	parse_ok("org/repo:model.Q4_K_M.gguf");
	assert_int_equal(r.sel, SEL_PATH);
	assert_string_equal(r.selector, "model.Q4_K_M.gguf");

	parse_ok("hf:org/repo:sub/dir/x.Q4_K_M.gguf@v1.0");
	assert_int_equal(r.sel, SEL_PATH);
	assert_string_equal(r.selector, "sub/dir/x.Q4_K_M.gguf");
	assert_string_equal(r.revision, "v1.0");
	assert_int_equal(r.revision_given, 1);
	assert_format("hf:org/repo:sub/dir/x.Q4_K_M.gguf@v1.0");

	parse_ok("org/repo:model.safetensors");
	assert_int_equal(r.sel, SEL_PATH);
	parse_ok("org/repo:LICENSE"); /* no digit: a file name, not a tag */
	assert_int_equal(r.sel, SEL_PATH);
	assert_string_equal(r.selector, "LICENSE");

	parse_ok("org/repo:*");
	assert_int_equal(r.sel, SEL_ALL);
	assert_string_equal(r.selector, "");
	assert_format("hf:org/repo:*@main");

	parse_ok("org/repo@0123456789abcdef0123456789abcdef01234567");
	assert_int_equal(r.sel, SEL_DEFAULT);
	assert_string_equal(r.revision, "0123456789abcdef0123456789abcdef01234567");

	parse_ok("org/repo:Q8_0@refs/pr/1");
	assert_string_equal(r.revision, "refs/pr/1");
	assert_string_equal(r.selector, "Q8_0");

	/* The revision starts at the last '@'. */
	parse_ok("org/repo:a@b.gguf@main");
	assert_string_equal(r.selector, "a@b.gguf");
	assert_string_equal(r.revision, "main");

	parse_ok("my.org_1/repo-2.5:*");
	assert_string_equal(r.org, "my.org_1");
	assert_string_equal(r.repo, "repo-2.5");
}

static void test_hf_invalid(void **state)
{
	(void)state;
	parse_bad("a/b/c", "a Hugging Face repo is ORG/REPO");
	parse_bad("hf:a/b/c:Q4_K_M", "a Hugging Face repo is ORG/REPO");
	parse_bad("x", "expected ORG/REPO");
	parse_bad("hf:", "expected ORG/REPO");
	parse_bad("/repo", "organisation");
	parse_bad("org/", "repo");
	parse_bad("o rg/repo", "not allowed");
	parse_bad("-org/repo", "must not start or end");
	parse_bad("org/re..po", "'..'");
	parse_bad("org/repo:", "empty selector");
	parse_bad("org/repo@", "revision: empty");
	parse_bad("org/repo@a..b", "'..'");
	parse_bad("org/repo@with space", "not allowed");
	parse_bad("org/repo:../x.gguf", "'.' and '..' are not allowed");
	parse_bad("org/repo:a//b.gguf", "empty component");
	parse_bad("org/repo:a\\b.gguf", "backslash");
	parse_bad("org/repo:a\tb.gguf", "control character");
	parse_bad("org/repo:sub/", "empty component");
	parse_bad("ftp://example.com/x.gguf", "unknown scheme 'ftp:'");
	parse_bad("gs:bucket/x", "unknown scheme 'gs:'");
	parse_bad("", "empty");

	char name[200];
	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	char s[CAP_REF_LEN * 2];
	snprintf(s, sizeof(s), "%s/repo", name);
	parse_bad(s, "longer than");

	memset(s, 'a', sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	s[3] = '/';
	parse_bad(s, "longer than 1536 bytes");

	/* NULL input and the struct is cleared on failure. */
	struct err e = {0};
	assert_int_equal(ref_parse(NULL, &r, &e), ERR_UNPROCESSABLE);
	assert_int_equal(ref_parse("a/b/c", &r, NULL), ERR_UNPROCESSABLE);
	assert_int_equal(r.kind, 0);
}

static void test_messages_are_sanitised(void **state)
{
	(void)state;
	struct err e = {0};
	assert_int_equal(ref_parse("a/b/c\x1b[31m", &r, &e), ERR_UNPROCESSABLE);
	assert_null(strchr(e.msg, '\x1b'));
	char s[600];
	memset(s, 'x', sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	assert_int_equal(ref_parse(s, &r, &e), ERR_UNPROCESSABLE);
	assert_non_null(strstr(e.msg, "...'"));
	assert_true(strlen(e.msg) < 200);
}

static void test_url(void **state)
{
	(void)state;
	parse_ok("https://example.com/models/x.gguf");
	assert_int_equal(r.kind, REF_URL);
	assert_string_equal(r.url, "https://example.com/models/x.gguf");
	assert_string_equal(r.host, "example.com");
	assert_string_equal(r.sha256, "");
	assert_format("https://example.com/models/x.gguf");

	parse_ok("https://Example.COM:8443/a/b.gguf?x=1&y=%20#sha256="
		 "ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789");
	assert_string_equal(r.host, "example.com");
	assert_string_equal(r.url, "https://Example.COM:8443/a/b.gguf?x=1&y=%20");
	assert_string_equal(r.sha256,
			    "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
	assert_format("https://Example.COM:8443/a/b.gguf?x=1&y=%20#sha256="
		      "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");

	parse_ok("https://[2001:db8::1]:443/x.gguf");
	assert_string_equal(r.host, "[2001:db8::1]");

	/* Plain http only to loopback (the test suite's fake servers). */
	parse_ok("http://127.0.0.1:8080/x.gguf");
	assert_string_equal(r.host, "127.0.0.1");
	parse_ok("http://127.0.0.2/x.gguf");
	parse_ok("http://127.255.1.9/x.gguf");
	parse_ok("http://localhost:1/x.gguf");
	parse_ok("http://[::1]:9000/x.gguf");
	assert_string_equal(r.host, "[::1]");

	parse_bad("http://example.com/x.gguf", "plain http:// is not allowed");
	parse_bad("http://128.0.0.1/x.gguf", "plain http:// is not allowed");
	parse_bad("http://127.0.0.1.evil.com/x.gguf", "plain http:// is not allowed");
	parse_bad("http://127.1/x.gguf", "dotted-quad");
	parse_bad("http://127.0.0.256/x.gguf", "plain http:// is not allowed");
	parse_bad("https:///x.gguf", "no host");
	parse_bad("https://:443/x.gguf", "no host");
	parse_bad("https:example.com/x", "expected '//'");
	parse_bad("https://user:pass@example.com/x.gguf", "credentials");
	parse_bad("https://user@example.com/x.gguf", "credentials");
	parse_bad("https://example.com/a b.gguf", "space");
	parse_bad("https://example.com/a\x01.gguf", "control");
	parse_bad("https://example.com/a\xc3\xa9.gguf", "non-ASCII");
	parse_bad("https://example.com/a%zz.gguf", "%-escape");
	parse_bad("https://example.com/a%2", "%-escape");
	parse_bad("https://example.com", "no file path");
	parse_bad("https://example.com/", "no file path");
	parse_bad("https://example.com?x=1", "no file path");
	parse_bad("https://example.com:0/x", "port");
	parse_bad("https://example.com:70000/x", "port");
	parse_bad("https://example.com:/x", "port");
	parse_bad("https://exa$mple.com/x", "not allowed in a host name");
	parse_bad("https://[zz::1]/x", "IPv6");
	parse_bad("https://[::1/x", "IPv6");
	parse_bad("https://[::1]x/x", "port");
	parse_bad("https://example.com/x#frag", "only URL fragment");
	parse_bad("https://example.com/x#sha256=abc", "64 hex digits, got 3");
	parse_bad("https://example.com/x#sha256="
		  "zbcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
		  "non-hex");
	parse_bad("https://example.com/x#sha256="
		  "abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234567890",
		  "64 hex digits, got 65");
}

static void test_file(void **state)
{
	(void)state;
	parse_ok("file:///models/x.gguf");
	assert_int_equal(r.kind, REF_FILE);
	assert_string_equal(r.path, "/models/x.gguf");
	assert_format("file:///models/x.gguf");

	parse_ok("file:///a%20b/c d.gguf");
	assert_string_equal(r.path, "/a b/c d.gguf");
	assert_format("file:///a%20b/c%20d.gguf");
	parse_ok("file:///x/%25y#z.gguf");
	assert_string_equal(r.path, "/x/%y#z.gguf");
	assert_format("file:///x/%25y%23z.gguf");
	/* The canonical form parses back to the same path. */
	parse_ok("file:///x/%25y%23z.gguf");
	assert_string_equal(r.path, "/x/%y#z.gguf");

	parse_ok("file:///a/..b/c..gguf"); /* only a whole ".." component is refused */

	parse_bad("file://x.gguf", "file:///ABSOLUTE/PATH");
	parse_bad("file://host/x.gguf", "file:///ABSOLUTE/PATH");
	parse_bad("file:relative/x.gguf", "file:///ABSOLUTE/PATH");
	parse_bad("file:///a/../etc/passwd", "'..'");
	parse_bad("file:///a/%2e%2e/etc/passwd", "'..'");
	parse_bad("file:///..", "'..'");
	parse_bad("file:///a/x%00y", "control");
	parse_bad("file:///a/x\ny", "control");
	parse_bad("file:///a/x%1", "%-escape");
	parse_bad("file:///", "directory");
	parse_bad("file:///models/", "directory");
}

static void test_s3(void **state)
{
	(void)state;
	const char *sha = "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789";
	char ref[200], buf[256];
	snprintf(ref, sizeof(ref), "s3://site-models/llama/q4.gguf#sha256=%s", sha);
	assert_int_equal(ref_parse(ref, &r, NULL), 0);
	assert_int_equal(r.kind, REF_S3);
	assert_string_equal(r.host, "site-models");
	assert_string_equal(r.path, "llama/q4.gguf");
	assert_string_equal(r.url, "s3://site-models/llama/q4.gguf");
	assert_string_equal(r.sha256,
			    "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
	assert_int_equal(ref_format(&r, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "s3://site-models/llama/q4.gguf#sha256=abcdef0123456789abcdef01234"
				 "56789abcdef0123456789abcdef0123456789");
	/* A pinned s3 ref names the URL model of the same digest. */
	assert_int_equal(ref_matches_id(ref, "url:abcdef0123456789"), 1);
	parse_ok("s3://bkt/k");
	parse_bad("s3://bkt", "expected s3://BUCKET/KEY");
	parse_bad("s3:/bkt/k", "expected s3://BUCKET/KEY");
	parse_bad("s3://Bkt/k", "bucket");
	parse_bad("s3://bkt/a/../b", "'..' part");
	parse_bad("s3://bkt/a//b", "empty");
	parse_bad("s3://bkt/a%20b", "only letters");
	parse_bad("s3://bkt/k#md5=00", "#sha256=HEX");
}

static void test_file_pinned(void **state)
{
	(void)state;
	const char *hex = "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789";
	char ref[256];
	snprintf(ref, sizeof(ref), "file:///m/x.gguf#sha256=%s", hex);
	parse_ok(ref);
	assert_string_equal(r.path, "/m/x.gguf");
	assert_string_equal(r.sha256,
			    "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
	assert_format("file:///m/x.gguf#sha256="
		      "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
	/* A '#' inside the path stays there, escaped in the canonical form. */
	snprintf(ref, sizeof(ref), "file:///m/a#b.gguf#sha256=%s", hex);
	parse_ok(ref);
	assert_string_equal(r.path, "/m/a#b.gguf");
	parse_ok("file:///m/a#b.gguf");
	assert_string_equal(r.sha256, "");
	parse_bad("file:///m/a#sha256=x.gguf", "64 hex digits, got 6");
	parse_bad("file:///m/x.gguf#sha256=abc", "64 hex digits, got 3");
	parse_bad(
	    "file:///#sha256=abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
	    "directory");
}

static void test_format_too_small(void **state)
{
	(void)state;
	parse_ok("org/repo:Q4_K_M");
	char buf[8];
	assert_int_equal(ref_format(&r, buf, sizeof(buf)), ERR_TOO_LARGE);
	parse_ok("file:///aaaaaaaa");
	assert_int_equal(ref_format(&r, buf, sizeof(buf)), ERR_TOO_LARGE);
}

static void test_catalog_ids(void **state)
{
	(void)state;
	char buf[256];
	assert_int_equal(
	    ref_catalog_id_hf("org", "repo", "sub/x.Q4_K_M.gguf", NULL, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "hf:org/repo:sub/x.Q4_K_M.gguf");
	/* The default branch keeps the id it always had; any other revision is part of it. */
	assert_int_equal(ref_catalog_id_hf("org", "repo", "x.gguf", "main", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "hf:org/repo:x.gguf");
	assert_int_equal(ref_catalog_id_hf("org", "repo", "x.gguf", "v1", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "hf:org/repo:x.gguf@v1");
	assert_int_equal(ref_catalog_id_hf("org", "repo", "*", "refs/pr/1", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "hf:org/repo:*@refs/pr/1");
	assert_int_equal(ref_catalog_id_hf("org", "repo", "a@b.gguf", "", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "hf:org/repo:a@b.gguf@main");
	/* Every id reads back as the ref that pulls the same model. */
	static const char *const back[][4] = {
	    {"x.gguf", "v1", "x.gguf", "v1"},
	    {"*", "v1", "", "v1"},
	    {"*", "main", "", "main"},
	    {"a@b.gguf", "main", "a@b.gguf", "main"},
	    {"sub/x.Q4_K_M.gguf", "0123456789abcdef0123456789abcdef01234567", "sub/x.Q4_K_M.gguf",
	     "0123456789abcdef0123456789abcdef01234567"},
	};
	for (size_t i = 0; i < sizeof(back) / sizeof(back[0]); i++) {
		struct model_ref rr;
		struct err e = {0};
		assert_int_equal(
		    ref_catalog_id_hf("org", "repo", back[i][0], back[i][1], buf, sizeof(buf)), 0);
		assert_int_equal(ref_parse(buf, &rr, &e), 0);
		assert_int_equal(rr.sel, strcmp(back[i][0], "*") == 0 ? SEL_ALL : SEL_PATH);
		assert_string_equal(rr.selector, back[i][2]);
		assert_string_equal(rr.revision, back[i][3]);
		assert_int_equal(ref_matches_id(buf, buf), 1);
	}
	assert_int_equal(
	    ref_catalog_id_url("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
			       buf, sizeof(buf)),
	    0);
	assert_string_equal(buf, "url:abcdef0123456789");
	assert_int_equal(ref_catalog_id_file("x.gguf", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "file:x.gguf");

	char small[10];
	assert_int_equal(ref_catalog_id_hf("org", "repo", "x.gguf", NULL, small, sizeof(small)),
			 ERR_TOO_LARGE);
	assert_int_equal(ref_catalog_id_file("a-long-name.gguf", small, sizeof(small)),
			 ERR_TOO_LARGE);
}

static void test_matches(void **state)
{
	(void)state;
	const char *id = "hf:TheBloke/Llama-2-7B-GGUF:llama-2-7b.Q4_K_M.gguf";
	static const char *const yes[] = {
	    "hf:TheBloke/Llama-2-7B-GGUF:llama-2-7b.Q4_K_M.gguf",
	    "TheBloke/Llama-2-7B-GGUF:llama-2-7b.Q4_K_M.gguf",
	    "thebloke/llama-2-7b-gguf:llama-2-7b.Q4_K_M.gguf",
	    "TheBloke/Llama-2-7B-GGUF",
	    "hf:TheBloke/Llama-2-7B-GGUF",
	    "TheBloke/Llama-2-7B-GGUF:Q4_K_M",
	    "TheBloke/Llama-2-7B-GGUF:q4_k_m",
	    "TheBloke/Llama-2-7B-GGUF:Q4_K_M@main",
	    "TheBloke/Llama-2-7B-GGUF@main",
	};
	static const char *const no[] = {
	    "TheBloke/Llama-2-7B-GGUF:Q4_K",
	    "TheBloke/Llama-2-7B-GGUF:K_M2",
	    "TheBloke/Llama-2-7B-GGUF:Q8_0",
	    "TheBloke/Llama-2-7B-GGUF:llama-2-7b.Q4_K_M.GGUF",
	    "TheBloke/Llama-2-13B-GGUF",
	    "TheBloke/Llama-2-7B-GGUF-x",
	    "Other/Llama-2-7B-GGUF",
	    "TheBloke",
	    "a/b/c",
	    "",
	    "url:0123",
	    "file:llama-2-7b.Q4_K_M.gguf",
	    "https://example.com/llama-2-7b.Q4_K_M.gguf",
	    "TheBloke/Llama-2-7B-GGUF:*",
	    "TheBloke/Llama-2-7B-GGUF:Q4_K_M@v1",
	    "TheBloke/Llama-2-7B-GGUF@v1",
	    "hf:TheBloke/Llama-2-7B-GGUF:llama-2-7b.Q4_K_M.gguf@v1",
	};
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (!ref_matches_id(yes[i], id))
			fail_msg("'%s' should match %s", yes[i], id);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (ref_matches_id(no[i], id))
			fail_msg("'%s' should not match %s", no[i], id);
	assert_int_equal(ref_matches_id(NULL, id), 0);

	/* Tags as whole words in the file name, also in a subdirectory and shards. */
	const char *split = "hf:org/repo:Q4_K_M/model-Q4_K_M-00001-of-00002.gguf";
	assert_int_equal(ref_matches_id("org/repo:Q4_K_M", split), 1);
	assert_int_equal(ref_matches_id("org/repo:Q4_K", split), 0);
	/*
	 * Another revision of a model is another id, and a query naming none
	 * matches both; the whole snapshot is named by '*' only, never by one of
	 * its files.
	 */
	static const struct {
		const char *query, *id;
		int want;
	} revs[] = {
	    {"org/repo:Q4_K_M@v1", "hf:org/repo:x.Q4_K_M.gguf@v1", 1},
	    {"org/repo:x.Q4_K_M.gguf@v1", "hf:org/repo:x.Q4_K_M.gguf@v1", 1},
	    {"org/repo@v1", "hf:org/repo:x.Q4_K_M.gguf@v1", 1},
	    {"org/repo:Q4_K_M@main", "hf:org/repo:x.Q4_K_M.gguf@v1", 0},
	    {"org/repo:Q4_K_M@v1", "hf:org/repo:x.Q4_K_M.gguf", 0},
	    {"org/repo:Q4_K_M", "hf:org/repo:x.Q4_K_M.gguf@v1", 1},
	    {"org/repo:Q4_K_M", "hf:org/repo:x.Q4_K_M.gguf", 1},
	    {"org/repo:*", "hf:org/repo:*", 1},
	    {"hf:org/repo:*@main", "hf:org/repo:*", 1},
	    {"org/repo:*@v1", "hf:org/repo:*", 0},
	    {"org/repo:*@v1", "hf:org/repo:*@v1", 1},
	    {"org/repo", "hf:org/repo:*", 1},
	    {"org/repo:Q4_K_M", "hf:org/repo:*", 0},
	    {"org/repo:x.Q4_K_M.gguf", "hf:org/repo:*", 0},
	    {"org/repo:*", "hf:org/repo:x.Q4_K_M.gguf", 0},
	};
	for (size_t i = 0; i < sizeof(revs) / sizeof(revs[0]); i++)
		if (ref_matches_id(revs[i].query, revs[i].id) != revs[i].want)
			fail_msg("'%s' against %s: expected %d", revs[i].query, revs[i].id,
				 revs[i].want);
	const char *ud = "hf:unsloth/m-GGUF:m-UD-Q4_K_XL.gguf";
	assert_int_equal(ref_matches_id("unsloth/m-GGUF:UD-Q4_K_XL", ud), 1);
	assert_int_equal(ref_matches_id("unsloth/m-GGUF:q4_k_xl", ud), 1);
	assert_int_equal(ref_matches_id("unsloth/m-GGUF:Q4_K", ud), 0);
	assert_int_equal(ref_matches_id("hf:org/repo:f16", "hf:org/repo:m_7b_F16.gguf"), 1);
	assert_int_equal(ref_matches_id("hf:org/repo:bf16", "hf:org/repo:m-F16.gguf"), 0);

	/* URL models: the id, or a URL ref that pins the same digest. */
	const char *sha = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";
	char uid[64];
	assert_int_equal(ref_catalog_id_url(sha, uid, sizeof(uid)), 0);
	assert_int_equal(ref_matches_id(uid, uid), 1);
	char q[256];
	snprintf(q, sizeof(q), "https://example.com/x.gguf#sha256=%s", sha);
	assert_int_equal(ref_matches_id(q, uid), 1);
	assert_int_equal(ref_matches_id("https://example.com/x.gguf", uid), 0);
	assert_int_equal(ref_matches_id("url:abcdef01", uid), 0);

	/* File models: the id, or a file ref with the same name. */
	assert_int_equal(ref_matches_id("file:x.gguf", "file:x.gguf"), 1);
	assert_int_equal(ref_matches_id("file:///models/x.gguf", "file:x.gguf"), 1);
	assert_int_equal(ref_matches_id("file:///models/y.gguf", "file:x.gguf"), 0);
	assert_int_equal(ref_matches_id("org/repo", "file:x.gguf"), 0);
}

/*
 * Random refs built from the characters that matter to the parser: every
 * answer is 0 with a ref that formats and parses back to itself, or
 * ERR_UNPROCESSABLE with a "model ref '" message. Deterministic seed.
 */
/* OCI and Ollama refs: each form, what it stores, and its canonical text (the catalog id). */
static void test_oci_forms(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		enum ref_kind kind;
		const char *host, *name, *revision, *sha256, *canon;
	} cases[] = {
	    {"oci://127.0.0.1:5000/ai/smollm2:360M-Q4_K_M", REF_OCI, "127.0.0.1:5000", "ai/smollm2",
	     "360M-Q4_K_M", "", "oci://127.0.0.1:5000/ai/smollm2:360M-Q4_K_M"},
	    {"oci://ghcr.io/org/models/qwen", REF_OCI, "ghcr.io", "org/models/qwen", "latest", "",
	     "oci://ghcr.io/org/models/qwen:latest"},
	    {"oci://Localhost:5000/a/b@sha256:"
	     "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
	     REF_OCI, "localhost:5000", "a/b",
	     "sha256:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
	     "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
	     "oci://localhost:5000/a/b@sha256:"
	     "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"},
	    {"docker.io/ai/smollm2", REF_OCI, "registry-1.docker.io", "ai/smollm2", "latest", "",
	     "oci://registry-1.docker.io/ai/smollm2:latest"},
	    {"docker.io/ai/gemma3:4B-Q4_K_M", REF_OCI, "registry-1.docker.io", "ai/gemma3",
	     "4B-Q4_K_M", "", "oci://registry-1.docker.io/ai/gemma3:4B-Q4_K_M"},
	    {"oci://docker.io/ubuntu", REF_OCI, "registry-1.docker.io", "library/ubuntu", "latest",
	     "", "oci://registry-1.docker.io/library/ubuntu:latest"},
	    {"oci://r.example/a__b.c-d--e/f", REF_OCI, "r.example", "a__b.c-d--e/f", "latest", "",
	     "oci://r.example/a__b.c-d--e/f:latest"},
	    {"ollama:llama3.2:1b", REF_OLLAMA, "", "library/llama3.2", "1b", "",
	     "ollama:llama3.2:1b"},
	    {"ollama:qwen2.5", REF_OLLAMA, "", "library/qwen2.5", "latest", "",
	     "ollama:qwen2.5:latest"},
	    {"ollama:someone/my-model:q4", REF_OLLAMA, "", "someone/my-model", "q4", "",
	     "ollama:someone/my-model:q4"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		parse_ok(cases[i].in);
		assert_int_equal(r.kind, cases[i].kind);
		assert_string_equal(r.host, cases[i].host);
		assert_string_equal(r.name, cases[i].name);
		assert_string_equal(r.revision, cases[i].revision);
		assert_string_equal(r.sha256, cases[i].sha256);
		assert_format(cases[i].canon);
		char id[CAP_REF_LEN + 1];
		assert_int_equal(ref_catalog_id_oci(&r, id, sizeof(id)), 0);
		assert_string_equal(id, cases[i].canon);
		/* The id is itself a ref that names the same model. */
		parse_ok(id);
		assert_format(cases[i].canon);
	}
	parse_ok("ollama:llama3.2");
	assert_int_equal(r.revision_given, 0);
	parse_ok("ollama:llama3.2:latest");
	assert_int_equal(r.revision_given, 1);
	parse_ok("hf:org/repo");
	char id[64];
	assert_int_equal(ref_catalog_id_oci(&r, id, sizeof(id)), ERR_INVALID);
}

static void test_oci_invalid(void **state)
{
	(void)state;
	static const struct {
		const char *in, *want;
	} cases[] = {
	    {"oci://", "expected oci://REGISTRY/NAME"},
	    {"oci:r.example/a", "expected oci://REGISTRY/NAME"},
	    {"oci://r.example", "expected oci://REGISTRY/NAME"},
	    {"oci://r.example/", "empty repository name"},
	    {"oci://r_x.example/a", "registry has '_'"},
	    {"oci://r.example:99999/a", "registry: "},
	    {"oci://r.example/A/b", "must start and end with a lower-case"},
	    {"oci://r.example/a//b", "must start and end with a lower-case"},
	    {"oci://r.example/a/../b", "must start and end with a lower-case"},
	    {"oci://r.example/a..b", "repository name has '.'"},
	    {"oci://r.example/a___b", "repository name has '_'"},
	    {"oci://r.example/a:", "a tag has 1 to"},
	    {"oci://r.example/a:-x", "tag has '-' at 0"},
	    {"oci://r.example/a:t/x", "repository name has ':'"},
	    {"oci://r.example/a@sha256:abc", "@sha256: needs 64 hex digits"},
	    {"oci://r.example/a@md5:abc", "a pinned manifest is @sha256:HEX"},
	    {"oci://r.example/a:t@sha256:"
	     "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
	     "a tag or a digest, not both"},
	    {"ollama:", "empty repository name"},
	    {"ollama:a/b/c:1", "an Ollama model is NAME[:TAG] or USER/NAME[:TAG]"},
	    {"ollama:Llama3", "must start and end with a lower-case"},
	    {"docker.io/ai/x:", "a tag has 1 to"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		parse_bad(cases[i].in, cases[i].want);
	/* A name at the cap parses; one byte more does not. */
	char name[CAP_OCI_NAME_LEN + 32];
	memcpy(name, "oci://r.example/", 16);
	memset(name + 16, 'a', CAP_OCI_NAME_LEN);
	name[16 + CAP_OCI_NAME_LEN] = '\0';
	parse_ok(name);
	strcat(name, "a");
	parse_bad(name, "repository name longer than");
}

static void test_oci_matches(void **state)
{
	(void)state;
	static const char tagged[] = "oci://127.0.0.1:5000/ai/smollm2:q4";
	static const char lib[] = "ollama:llama3.2:1b";
	static const struct {
		const char *query, *id;
		int want;
	} cases[] = {
	    {tagged, tagged, 1},
	    {"oci://127.0.0.1:5000/ai/smollm2", tagged, 1},
	    {"oci://127.0.0.1:5000/ai/smollm2:q8", tagged, 0},
	    {"oci://127.0.0.1:5000/ai/smol", tagged, 0},
	    {"oci://127.0.0.1:5000/ai", tagged, 0},
	    {"oci://127.0.0.1:5001/ai/smollm2", tagged, 0},
	    {"docker.io/ai/smollm2", "oci://registry-1.docker.io/ai/smollm2:latest", 1},
	    {"docker.io/ai/smollm2:latest", "oci://registry-1.docker.io/ai/smollm2:latest", 1},
	    {"docker.io/ai/smollm2:q4", "oci://registry-1.docker.io/ai/smollm2:latest", 0},
	    {"ollama:llama3.2", lib, 1},
	    {"ollama:llama3.2:1b", lib, 1},
	    {"ollama:library/llama3.2:1b", lib, 1},
	    {"ollama:llama3.2:3b", lib, 0},
	    {"ollama:llama3", lib, 0},
	    {"ollama:someone/llama3.2:1b", lib, 0},
	    {"hf:ai/smollm2", tagged, 0},
	    {"ollama:smollm2", tagged, 0},
	    {"oci://127.0.0.1:5000/library/llama3.2:1b", lib, 0},
	    {"ollama:llama3.2", "hf:org/repo:x.gguf", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (ref_matches_id(cases[i].query, cases[i].id) != cases[i].want)
			fail_msg("ref_matches_id(%s, %s) != %d", cases[i].query, cases[i].id,
				 cases[i].want);
}

static void test_same_hf_repo(void **state)
{
	(void)state;
	assert_true(ref_same_hf_repo("hf:Org/Repo:x.Q4_K_M.gguf@v2", "org/repo"));
	assert_true(ref_same_hf_repo("org/repo@main", "hf:ORG/REPO:*"));
	assert_true(ref_same_hf_repo("org/repo:Q8_0", "hf:org/repo:sub/a@b.gguf@main"));
	assert_false(ref_same_hf_repo("org/repo", "org/repo2"));
	assert_false(ref_same_hf_repo("org/repo", "other/repo"));
	assert_false(ref_same_hf_repo("https://example.com/org/repo", "org/repo"));
	assert_false(ref_same_hf_repo("file:///org/repo", "org/repo"));
	assert_false(ref_same_hf_repo("url:0123456789abcdef", "url:0123456789abcdef"));
	assert_false(ref_same_hf_repo("org/repo/extra", "org/repo"));
}

static void test_random_refs(void **state)
{
	(void)state;
	static const char alphabet[] =
	    "ab/:@.#%*-_Q4KM hf:https://file:///127.0.0.1sha256=0f\\x\x01";
	uint64_t x = 88172645463325252ULL;
	int ok = 0;
	for (int iter = 0; iter < 50000; iter++) {
		char s[48];
		size_t n = 1 + iter % (sizeof(s) - 1);
		for (size_t i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			s[i] = alphabet[x % (sizeof(alphabet) - 1)];
		}
		s[n] = '\0';
		struct err e = {0};
		int rc = ref_parse(s, &r, &e);
		if (rc != 0) {
			assert_int_equal(rc, ERR_UNPROCESSABLE);
			assert_true(strncmp(e.msg, "model ref '", 11) == 0);
			continue;
		}
		ok++;
		char canon[CAP_URL_LEN + 64], again[CAP_URL_LEN + 64];
		assert_int_equal(ref_format(&r, canon, sizeof(canon)), 0);
		struct model_ref r2;
		if (ref_parse(canon, &r2, &e) != 0)
			fail_msg("'%s' -> '%s' does not parse: %s", s, canon, e.msg);
		assert_int_equal(ref_format(&r2, again, sizeof(again)), 0);
		assert_string_equal(canon, again);
	}
	assert_true(ok > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hf_forms),
	    cmocka_unit_test(test_hf_invalid),
	    cmocka_unit_test(test_messages_are_sanitised),
	    cmocka_unit_test(test_url),
	    cmocka_unit_test(test_file),
	    cmocka_unit_test(test_file_pinned),
	    cmocka_unit_test(test_s3),
	    cmocka_unit_test(test_format_too_small),
	    cmocka_unit_test(test_catalog_ids),
	    cmocka_unit_test(test_matches),
	    cmocka_unit_test(test_oci_forms),
	    cmocka_unit_test(test_oci_invalid),
	    cmocka_unit_test(test_oci_matches),
	    cmocka_unit_test(test_same_hf_repo),
	    cmocka_unit_test(test_random_refs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
