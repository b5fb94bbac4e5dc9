/*
 * fuzz_oci: what an OCI registry sends that the client parses
 * (provision/oci.h): a WWW-Authenticate challenge, a manifest or image
 * index with its Content-Type, and a Docker config.json. The first byte
 * picks the parser (0: challenge, 1: manifest, 2: credentials); for a
 * manifest the Content-Type comes before a NUL byte and the body after it,
 * for the credentials the host does.
 *
 * Invariants: an accepted challenge is Bearer with a realm, or Basic; an
 * accepted manifest is an index with a 64-hex pick, or layers with 64-hex
 * digests and unique paths that pass path_check_repo, weights first, within
 * CAP_MODEL_FILES; credentials found are text that fits; every refusal has
 * a clean message.
 */
#include "fuzz.h"

#include "core/caps.h"
#include "core/err.h"
#include "core/parse.h"
#include "core/util.h"
#include "provision/oci.h"

static void check_manifest(const struct oci_manifest *m)
{
	if (m->is_index) {
		FUZZ_CHECK(m->n == 0 && is_hex_lower(m->pick, 64) && m->pick[64] == '\0');
		return;
	}
	FUZZ_CHECK(m->n <= CAP_MODEL_FILES && m->n_weights <= m->n);
	for (size_t i = 0; i < m->n; i++) {
		const struct oci_layer *l = &m->layers[i];
		FUZZ_CHECK(is_hex_lower(l->sha256, 64) && l->sha256[64] == '\0');
		FUZZ_CHECK(path_check_repo(l->path, strlen(l->path), NULL) == 0);
		FUZZ_CHECK((i < m->n_weights) == (l->role == OCI_ROLE_WEIGHT));
		for (size_t k = 0; k < i; k++)
			FUZZ_CHECK(strcmp(m->layers[k].path, l->path) != 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int mode = data[0] % 3;
	data++;
	size--;
	struct err e = {0};
	if (mode == 0) {
		char *h = fuzz_cstr(data, size);
		struct oci_challenge c;
		int rc = oci_challenge_parse(h, &c, &e);
		if (rc == 0)
			FUZZ_CHECK((c.scheme == OCI_AUTH_BEARER && c.realm[0]) ||
				   c.scheme == OCI_AUTH_BASIC);
		else
			FUZZ_CHECK(fuzz_err_ok(&e));
		free(h);
		return 0;
	}
	size_t first;
	const uint8_t *rest = fuzz_split(data, size, &first);
	char *head = fuzz_cstr(data, first);
	const char *body = rest ? (const char *)rest : "";
	size_t len = rest ? size - first - 1 : 0;
	if (mode == 1) {
		struct oci_manifest m;
		if (oci_manifest_parse(body, len, head, &m, &e) == 0)
			check_manifest(&m);
		else
			FUZZ_CHECK(fuzz_err_ok(&e) && m.layers == NULL);
		oci_manifest_cleanup(&m);
	} else {
		char b64[64];
		int rc = oci_auth_find(body, len, head, b64, sizeof(b64), &e);
		if (rc == 1)
			FUZZ_CHECK(strnlen(b64, sizeof(b64)) < sizeof(b64));
		else if (rc < 0)
			FUZZ_CHECK(fuzz_err_ok(&e));
	}
	free(head);
	return 0;
}
