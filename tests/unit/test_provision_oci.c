/* The OCI registry client's parsers: challenges, manifests and indexes, Docker credentials. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "provision/oci.h"

#define D1 "1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "3333333333333333333333333333333333333333333333333333333333333333"

static void test_challenge(void **state)
{
	(void)state;
	struct oci_challenge c;
	struct err e = {0};
	assert_int_equal(oci_challenge_parse("Bearer realm=\"https://auth.docker.io/token\","
					     "service=\"registry.docker.io\","
					     "scope=\"repository:ai/smollm2:pull\"",
					     &c, &e),
			 0);
	assert_int_equal(c.scheme, OCI_AUTH_BEARER);
	assert_string_equal(c.realm, "https://auth.docker.io/token");
	assert_string_equal(c.service, "registry.docker.io");
	assert_string_equal(c.scope, "repository:ai/smollm2:pull");
	/* Any case, spaces around '=', escapes, unknown parameters, unquoted tokens. */
	assert_int_equal(
	    oci_challenge_parse("  bearer Realm = \"http://127.0.0.1:9/t?a=\\\"b\\\"\", "
				"error=insufficient_scope, service=svc",
				&c, &e),
	    0);
	assert_string_equal(c.realm, "http://127.0.0.1:9/t?a=\"b\"");
	assert_string_equal(c.service, "svc");
	assert_string_equal(c.scope, "");
	assert_int_equal(oci_challenge_parse("Basic realm=\"Registry Realm\"", &c, &e), 0);
	assert_int_equal(c.scheme, OCI_AUTH_BASIC);
	assert_string_equal(c.realm, "Registry Realm");
	/* The first of two challenges is read. */
	assert_int_equal(
	    oci_challenge_parse("Bearer realm=\"https://a/t\",service=\"s\", Basic realm=\"x\"", &c,
				&e),
	    0);
	assert_int_equal(c.scheme, OCI_AUTH_BEARER);
	assert_string_equal(c.service, "s");

	static const struct {
		const char *h, *want;
	} bad[] = {
	    {"", "scheme '' is not supported"},
	    {"Negotiate abc", "scheme 'Negotiate' is not supported"},
	    {"Bearer service=\"s\"", "without a realm"},
	    {"Bearer realm=\"https://a/t", "unterminated"},
	    {"Bearer realm=\"a\x01\"", "not text"},
	    {"Bearer =x", "malformed challenge"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		e = (struct err){0};
		if (oci_challenge_parse(bad[i].h, &c, &e) == 0)
			fail_msg("'%s' parsed", bad[i].h);
		if (!strstr(e.msg, bad[i].want))
			fail_msg("'%s': '%s' lacks '%s'", bad[i].h, e.msg, bad[i].want);
	}
	/* A value over its field is refused, not cut. */
	char big[1200];
	int n = snprintf(big, sizeof(big), "Bearer realm=\"https://a/t\",service=\"");
	memset(big + n, 's', 300);
	snprintf(big + n + 300, sizeof(big) - (size_t)n - 300, "\"");
	assert_int_equal(oci_challenge_parse(big, &c, &e), ERR_TOO_LARGE);
}

static void parse_ok(const char *json, const char *ct, struct oci_manifest *m)
{
	struct err e = {0};
	int rc = oci_manifest_parse(json, strlen(json), ct, m, &e);
	if (rc)
		fail_msg("manifest did not parse: %s", e.msg);
}

static void test_docker_ai_split(void **state)
{
	(void)state;
	struct oci_manifest m;
	parse_ok(
	    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
	    "\"config\":{\"mediaType\":\"application/vnd.docker.ai.model.config.v0.1+json\","
	    "\"digest\":\"sha256:" D3 "\",\"size\":10},\"layers\":["
	    "{\"mediaType\":\"application/vnd.docker.ai.license\",\"digest\":\"sha256:" D3
	    "\",\"size\":5},"
	    "{\"mediaType\":\"application/vnd.docker.ai.gguf.v3\",\"digest\":\"sha256:" D1
	    "\",\"size\":100},"
	    "{\"mediaType\":\"application/x-unknown\",\"digest\":\"sha256:" D3 "\",\"size\":1},"
	    "{\"mediaType\":\"application/vnd.docker.ai.gguf.v3\",\"digest\":\"sha256:" D2
	    "\",\"size\":200}]}",
	    NULL, &m);
	assert_int_equal(m.is_index, 0);
	assert_int_equal(m.n, 3);
	assert_int_equal(m.n_weights, 2);
	assert_int_equal(m.n_skipped, 1);
	/* Weights first, in order, named as llama.cpp names shards; extras after. */
	assert_string_equal(m.layers[0].path, "model-00001-of-00002.gguf");
	assert_string_equal(m.layers[0].sha256, D1);
	assert_int_equal(m.layers[0].size, 100);
	assert_int_equal(m.layers[0].role, OCI_ROLE_WEIGHT);
	assert_string_equal(m.layers[1].path, "model-00002-of-00002.gguf");
	assert_string_equal(m.layers[1].sha256, D2);
	assert_string_equal(m.layers[2].path, "LICENSE");
	assert_int_equal(m.layers[2].role, OCI_ROLE_EXTRA);
	oci_manifest_cleanup(&m);
}

static void test_ollama_and_annotations(void **state)
{
	(void)state;
	struct oci_manifest m;
	/* No mediaType in the body: the Content-Type says it (with a parameter). */
	parse_ok("{\"schemaVersion\":2,\"config\":{},\"layers\":["
		 "{\"mediaType\":\"application/vnd.ollama.image.model\",\"digest\":\"sha256:" D1
		 "\",\"size\":7},"
		 "{\"mediaType\":\"application/vnd.ollama.image.license\",\"digest\":\"sha256:" D2
		 "\",\"size\":1},"
		 "{\"mediaType\":\"application/vnd.ollama.image.license\",\"digest\":\"sha256:" D3
		 "\",\"size\":1},"
		 "{\"mediaType\":\"application/vnd.ollama.image.projector\",\"digest\":\"sha256:" D2
		 "\",\"size\":3,\"annotations\":{\"org.cncf.model.filepath\":\"../x\"}},"
		 "{\"mediaType\":\"application/vnd.ollama.image.template\",\"digest\":\"sha256:" D3
		 "\",\"size\":2,\"annotations\":{\"org.cncf.model.filepath\":\"chat/t.jinja\"}}]}",
		 "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8", &m);
	assert_int_equal(m.n, 5);
	assert_int_equal(m.n_weights, 1);
	assert_string_equal(m.layers[0].path, "model.gguf");
	assert_string_equal(m.layers[1].path, "LICENSE");
	assert_string_equal(m.layers[2].path, "LICENSE-2");
	/* An unsafe annotation is not used; a safe one is. */
	assert_string_equal(m.layers[3].path, "mmproj.gguf");
	assert_string_equal(m.layers[4].path, "chat/t.jinja");
	oci_manifest_cleanup(&m);

	/* A manifest with no model layer parses; the caller says so. */
	parse_ok(
	    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
	    "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","
	    "\"digest\":\"sha256:" D1 "\",\"size\":1}]}",
	    NULL, &m);
	assert_int_equal(m.n_weights, 0);
	assert_int_equal(m.n_skipped, 1);
	oci_manifest_cleanup(&m);
}

static void test_index(void **state)
{
	(void)state;
	struct oci_manifest m;
	parse_ok(
	    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
	    "\"manifests\":["
	    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:" D1
	    "\",\"size\":1,\"annotations\":{\"vnd.docker.reference.type\":"
	    "\"attestation-manifest\"}},"
	    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:" D3
	    "\",\"size\":1,\"platform\":{\"os\":\"unknown\"}},"
	    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:" D2
	    "\",\"size\":1,\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]}",
	    NULL, &m);
	assert_int_equal(m.is_index, 1);
	assert_string_equal(m.pick, D2);
	oci_manifest_cleanup(&m);
}

static void test_bad_manifests(void **state)
{
	(void)state;
	static const struct {
		const char *json;
		int rc;
		const char *want;
	} bad[] = {
	    {"not json", ERR_INVALID, ""},
	    {"[]", ERR_INVALID, "not a JSON object"},
	    {"{\"schemaVersion\":1,\"layers\":[]}", ERR_UNSUPPORTED, "schema version"},
	    {"{\"schemaVersion\":2,\"mediaType\":\"application/x-foo\"}", ERR_UNSUPPORTED,
	     "'application/x-foo' is not understood"},
	    {"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\"}",
	     ERR_INVALID, "without a layers list"},
	    {"{\"schemaVersion\":2,\"layers\":[{\"mediaType\":\"application/"
	     "vnd.ollama.image.model\","
	     "\"digest\":\"sha256:abc\",\"size\":1}]}",
	     ERR_INVALID, "is not sha256:HEX"},
	    {"{\"schemaVersion\":2,\"layers\":[{\"mediaType\":\"application/"
	     "vnd.ollama.image.model\","
	     "\"digest\":\"sha256:" D1 "\",\"size\":-1}]}",
	     ERR_INVALID, "has no size"},
	    {"{\"schemaVersion\":2,\"layers\":[{\"mediaType\":\"application/"
	     "vnd.ollama.image.model\","
	     "\"digest\":\"md5:" D1 "\",\"size\":1}]}",
	     ERR_INVALID, "is not sha256:HEX"},
	    {"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
	     "\"manifests\":[]}",
	     ERR_UNSUPPORTED, "lists no model manifest"},
	    {"{\"schemaVersion\":2,\"schemaVersion\":2,\"layers\":[]}", ERR_INVALID, ""},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct oci_manifest m;
		struct err e = {0};
		int rc = oci_manifest_parse(bad[i].json, strlen(bad[i].json), NULL, &m, &e);
		if (rc != bad[i].rc || !strstr(e.msg, bad[i].want))
			fail_msg("case %zu: rc %d '%s', want %d '%s'", i, rc, e.msg, bad[i].rc,
				 bad[i].want);
		assert_null(m.layers);
	}
	/* More layers than a model may have files. */
	size_t cap = (size_t)CAP_MODEL_FILES + 1, size = cap * 120 + 64;
	char *big = malloc(size);
	size_t o = (size_t)snprintf(big, size, "{\"schemaVersion\":2,\"layers\":[");
	for (size_t i = 0; i < cap; i++)
		o += (size_t)snprintf(big + o, size - o,
				      "%s{\"mediaType\":\"x\",\"digest\":\"sha256:" D1
				      "\",\"size\":1}",
				      i ? "," : "");
	snprintf(big + o, size - o, "]}");
	struct oci_manifest m;
	struct err e = {0};
	assert_int_equal(oci_manifest_parse(big, strlen(big), NULL, &m, &e), ERR_TOO_LARGE);
	free(big);
}

static void test_auth_file(void **state)
{
	(void)state;
	/* "user:pass" and "u:p" in base64. */
	static const char cfg[] = "{\"auths\":{"
				  "\"https://index.docker.io/v1/\":{\"auth\":\"dXNlcjpwYXNz\"},"
				  "\"127.0.0.1:5000\":{\"auth\":\"dTpw\"},"
				  "\"bad.example\":{\"auth\":\"bm9jb2xvbg==\"},"
				  "\"worse.example\":{\"auth\":\"!!!!\"}},"
				  "\"credsStore\":\"desktop\"}";
	char b64[256];
	struct err e = {0};
	assert_int_equal(
	    oci_auth_find(cfg, strlen(cfg), "registry-1.docker.io", b64, sizeof(b64), &e), 1);
	assert_string_equal(b64, "dXNlcjpwYXNz");
	assert_int_equal(oci_auth_find(cfg, strlen(cfg), "127.0.0.1:5000", b64, sizeof(b64), &e),
			 1);
	assert_string_equal(b64, "dTpw");
	assert_int_equal(oci_auth_find(cfg, strlen(cfg), "127.0.0.1:5001", b64, sizeof(b64), &e),
			 0);
	/* base64 of "nocolon": not user:pass. */
	assert_int_equal(oci_auth_find(cfg, strlen(cfg), "bad.example", b64, sizeof(b64), &e),
			 ERR_INVALID);
	assert_non_null(strstr(e.msg, "not base64 of user:pass"));
	assert_int_equal(oci_auth_find(cfg, strlen(cfg), "worse.example", b64, sizeof(b64), &e),
			 ERR_INVALID);
	assert_int_equal(oci_auth_find("{", 1, "x", b64, sizeof(b64), &e), ERR_INVALID);
	assert_int_equal(oci_auth_find("{}", 2, "x", b64, sizeof(b64), &e), 0);
	assert_int_equal(oci_auth_find(cfg, strlen(cfg), "127.0.0.1:5000", b64, 4, &e),
			 ERR_TOO_LARGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_challenge),
	    cmocka_unit_test(test_docker_ai_split),
	    cmocka_unit_test(test_ollama_and_annotations),
	    cmocka_unit_test(test_index),
	    cmocka_unit_test(test_bad_manifests),
	    cmocka_unit_test(test_auth_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
