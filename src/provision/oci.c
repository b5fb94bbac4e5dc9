/*
 * The requests of the OCI registry client: a registry's challenge answered
 * once per pull (an anonymous or credentialed Bearer token from its realm,
 * or Basic credentials), manifests checked against their digest, and the
 * tags of a repository for the message about a tag that is not there.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/json.h"
#include "core/sha256.h"
#include "core/token.h"
#include "core/url.h"
#include "core/util.h"
#include "provision/oci.h"

/* A manifest or index answer, and a token or tags answer, are small. */
#define OCI_ANSWER_MAX (4u << 20)
/* Tags named in the message about a tag that is not there. */
#define OCI_TAGS_SHOWN 8
/* A Docker config.json: credentials of many registries, and other settings. */
#define OCI_AUTH_FILE_MAX (1u << 20)

int oci_registry_init(struct oci_registry *r, const struct hf_client *hc, const char *base,
		      const char *name, const char *label, const char *auth_file,
		      struct cancel_token *cancel, struct err *e)
{
	struct url_parts u;
	memset(r, 0, sizeof(*r));
	r->hc = *hc;
	r->hc.token = NULL;
	r->hc.max_answer = OCI_ANSWER_MAX;
	r->auth_file = auth_file;
	r->cancel = cancel;
	int rc = url_parse(base, &u, e);
	if (rc == 0)
		rc = url_check_scheme(&u, e);
	if (rc)
		return rc;
	int default_port = u.port == (strcmp(u.scheme, "https") == 0 ? 443 : 80);
	if (default_port)
		snprintf(r->host, sizeof(r->host), "%s", u.host);
	else
		snprintf(r->host, sizeof(r->host), "%s:%d", u.host, u.port);
	if (fmt_buf(r->base, sizeof(r->base), "%s://%s", u.scheme, r->host) ||
	    fmt_buf(r->name, sizeof(r->name), "%s", name) ||
	    fmt_buf(r->label, sizeof(r->label), "%s", label))
		return err_set(e, ERR_TOO_LARGE, "registry URL too long");
	return 0;
}

static void scrub_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

void oci_registry_cleanup(struct oci_registry *r)
{
	scrub_free(r->authorization);
	scrub_free(r->bearer);
	scrub_free(r->basic);
	r->authorization = r->bearer = r->basic = NULL;
}

int oci_blob_url(const struct oci_registry *r, const char *sha256, char *buf, size_t size)
{
	return fmt_buf(buf, size, "%s/v2/%s/blobs/sha256:%s", r->base, r->name, sha256);
}

static const char *creds_hint(const struct oci_registry *r)
{
	return r->auth_file ? "" : " (give the daemon --registry-auth FILE)";
}

/* The credentials of the registry from the --registry-auth file: 1, 0 (none), or an error. */
static int creds_find(const struct oci_registry *r, char *b64, size_t size, struct err *e)
{
	if (!r->auth_file)
		return 0;
	char *text = NULL;
	size_t len = 0;
	int rc = secret_file_read(r->auth_file, "registry credentials file", 0, OCI_AUTH_FILE_MAX,
				  &text, &len, e);
	if (rc)
		return rc;
	struct err pe = {0};
	rc = oci_auth_find(text, len, r->host, b64, size, &pe);
	memset(text, 0, len);
	free(text);
	if (rc < 0)
		return err_set(e, rc, "registry credentials %.200s: %s", r->auth_file,
			       err_msg(&pe));
	return rc;
}

/* GET the realm for a pull token of the repository, with the credentials when there are some. */
static int bearer_fetch(struct oci_registry *r, const struct oci_challenge *ch, struct err *e)
{
	char b64[CAP_TOKEN_LEN + 1];
	int have = creds_find(r, b64, sizeof(b64), e);
	if (have < 0)
		return have;
	CURL *h = curl_easy_init();
	if (!h)
		return err_set(e, ERR_NOMEM, "cannot create an HTTP handle");
	char scope[CAP_OCI_NAME_LEN + 32];
	snprintf(scope, sizeof(scope), "repository:%s:pull", r->name);
	char *svc = curl_easy_escape(h, ch->service, 0);
	char *sc = curl_easy_escape(h, scope, 0);
	char *url = xasprintf("%s%sservice=%s&scope=%s", ch->realm,
			      strchr(ch->realm, '?') ? "&" : "?", svc ? svc : "", sc ? sc : "");
	curl_free(svc);
	curl_free(sc);
	curl_easy_cleanup(h);
	char *basic = have ? xasprintf("Basic %s", b64) : NULL;
	memset(b64, 0, sizeof(b64));
	struct hf_req_opts o = {.authorization = basic, .auth_origin = ch->realm};
	struct hf_resp resp = {0};
	json_t *root = NULL;
	int rc =
	    hf_request_opts(&r->hc, "GET", url, HF_REDIRECT_SAME_HOST, &o, r->cancel, &resp, e);
	scrub_free(basic);
	if (rc)
		goto out;
	if (resp.status == 401 || resp.status == 403) {
		rc = err_set(e, ERR_UNAUTHORIZED, "%.120s: the token service refused %s%s%s",
			     r->label, have ? "the credentials for " : "an anonymous pull of ",
			     r->host, have ? "" : creds_hint(r));
		goto out;
	}
	if (resp.status != 200) {
		rc = err_set(e, ERR_NETWORK, "%.120s: the token service answered HTTP %ld",
			     r->label, resp.status);
		goto out;
	}
	rc = json_parse_strict(resp.body, resp.len, OCI_ANSWER_MAX, &root, e);
	if (rc)
		goto out;
	json_t *t = json_object_get(root, "token");
	if (!json_is_string(t))
		t = json_object_get(root, "access_token");
	struct err te = {0};
	if (!json_is_string(t) || token_check(json_string_value(t), "registry token", &te)) {
		rc = err_set(e, ERR_NETWORK, "%.120s: the token service gave no usable token",
			     r->label);
		goto out;
	}
	oci_registry_cleanup(r);
	r->bearer = xstrdup(json_string_value(t));
	r->authorization = xasprintf("Bearer %s", r->bearer);
out:
	free(url);
	json_decref(root);
	hf_resp_cleanup(&resp);
	return rc;
}

/* Answers the registry's 401: a token from its realm, or Basic credentials. */
static int answer_challenge(struct oci_registry *r, const struct hf_resp *resp, struct err *e)
{
	struct oci_challenge ch;
	struct err pe = {0};
	r->challenged = 1;
	if (oci_challenge_parse(resp->www_authenticate, &ch, &pe))
		return err_set(e, ERR_UNAUTHORIZED,
			       "%.120s: the registry asks for authentication: %s", r->label,
			       err_msg(&pe));
	if (ch.scheme == OCI_AUTH_BEARER) {
		/*
		 * The realm is judged as a redirect from the registry would be: a
		 * public registry cannot send the pull (and the credentials) to an
		 * address of this machine or its network, nor from https to http.
		 */
		struct url_parts from, to;
		if (url_parse(r->base, &from, &pe) || url_parse(ch.realm, &to, &pe) ||
		    url_check_scheme(&to, &pe) ||
		    (!url_same_origin(&from, &to) &&
		     url_check_redirect(&from, &to, url_host_net(from.host), &pe)))
			return err_set(e, ERR_FORBIDDEN, "%.80s: token realm %.80s refused: %s",
				       r->label, ch.realm, err_msg(&pe));
		return bearer_fetch(r, &ch, e);
	}
	char b64[CAP_TOKEN_LEN + 1];
	int have = creds_find(r, b64, sizeof(b64), e);
	if (have < 0)
		return have;
	if (!have)
		return err_set(e, ERR_UNAUTHORIZED,
			       "%.120s: %s asks for a user name and password%s", r->label, r->host,
			       creds_hint(r));
	oci_registry_cleanup(r);
	r->authorization = xasprintf("Basic %s", b64);
	/* The transfers take user:password (libcurl encodes it); oci_auth_find checked the base64.
	 */
	size_t bl = strlen(b64), cap = bl + 4;
	unsigned char *plain = xcalloc(1, cap);
	int n = EVP_DecodeBlock(plain, (const unsigned char *)b64, (int)bl);
	/* EVP_DecodeBlock counts each '=' of the padding as a zero byte. */
	while (n > 0 && bl > 0 && b64[bl - 1] == '=') {
		n--;
		bl--;
	}
	r->basic = n > 0 ? xstrndup((const char *)plain, (size_t)n) : NULL;
	explicit_bzero(plain, cap);
	free(plain);
	explicit_bzero(b64, sizeof(b64));
	return 0;
}

/* GET BASE/v2/NAME/PATH, answering one challenge; a 401 after it is an authentication failure. */
static int reg_get(struct oci_registry *r, const char *path, const char *accept,
		   struct hf_resp *resp, struct err *e)
{
	char url[CAP_URL_LEN + 1];
	if (fmt_buf(url, sizeof(url), "%s/v2/%s/%s", r->base, r->name, path))
		return err_set(e, ERR_TOO_LARGE, "registry URL too long");
	for (;;) {
		struct hf_req_opts o = {
		    .accept = accept, .authorization = r->authorization, .auth_origin = r->base};
		int rc = hf_request_opts(&r->hc, "GET", url, HF_REDIRECT_SAME_HOST, &o, r->cancel,
					 resp, e);
		if (rc || resp->status != 401)
			return rc;
		if (r->challenged)
			return err_set(e, ERR_UNAUTHORIZED,
				       "%.120s: %s refused %s: the repository does not exist or "
				       "needs other credentials%s",
				       r->label, r->host,
				       r->authorization ? "the authorization" : "an anonymous pull",
				       creds_hint(r));
		rc = answer_challenge(r, resp, e);
		if (rc)
			return rc;
	}
}

/* The first error code of a registry's error answer ({"errors":[{"code":…}]}), or "". */
static void error_code(const struct hf_resp *resp, char *out, size_t size)
{
	json_t *root = NULL;
	out[0] = '\0';
	if (!resp->body || json_parse_strict(resp->body, resp->len, OCI_ANSWER_MAX, &root, NULL))
		return;
	json_t *code = json_object_get(json_array_get(json_object_get(root, "errors"), 0), "code");
	if (json_is_string(code))
		snprintf(out, size, "%s", json_string_value(code));
	json_decref(root);
}

/*
 * "; tags: a, b, c" from /v2/NAME/tags/list when the registry lists them,
 * else "". Returns 1 when the registry says the repository itself is
 * unknown (a registry may answer a manifest of an unknown repository with
 * MANIFEST_UNKNOWN), else 0.
 */
static int tags_hint(struct oci_registry *r, char *out, size_t size)
{
	struct hf_resp resp = {0};
	json_t *root = NULL;
	struct err ign = {0};
	char code[64] = "";
	out[0] = '\0';
	int rc = reg_get(r, "tags/list", "application/json", &resp, &ign);
	if (rc == 0 && resp.status == 404)
		error_code(&resp, code, sizeof(code));
	if (rc == 0 && resp.status == 200 &&
	    json_parse_strict(resp.body, resp.len, OCI_ANSWER_MAX, &root, NULL) == 0) {
		json_t *tags = json_object_get(root, "tags");
		size_t i, o = 0;
		json_t *t;
		json_array_foreach(tags, i, t)
		{
			if (!json_is_string(t))
				continue;
			if (i == OCI_TAGS_SHOWN) {
				snprintf(out + o, size - o, ", ... (%zu in all)",
					 json_array_size(tags));
				break;
			}
			int n = snprintf(out + o, size - o, "%s%.40s",
					 i ? ", " : "; tags: ", json_string_value(t));
			if (n < 0 || (size_t)n >= size - o)
				break;
			o += (size_t)n;
		}
		if (json_array_size(tags) == 0)
			snprintf(out, size, "; the repository has no tags");
	}
	json_decref(root);
	hf_resp_cleanup(&resp);
	return strcmp(code, "NAME_UNKNOWN") == 0;
}

/* Maps a manifest answer that is not 200 to a message about the tag or repository. */
static int manifest_error(struct oci_registry *r, const char *reference, const struct hf_resp *resp,
			  struct err *e)
{
	char code[64], hint[160];
	error_code(resp, code, sizeof(code));
	if (resp->status == 404) {
		if (strcmp(code, "NAME_UNKNOWN") == 0 || tags_hint(r, hint, sizeof(hint)))
			return err_set(e, ERR_NOT_FOUND,
				       "%.120s: repository %.100s not found on %.80s", r->label,
				       r->name, r->host);
		return err_set(e, ERR_NOT_FOUND, "%.100s: no tag or manifest '%.70s' in %.80s%s",
			       r->label, reference, r->name, hint);
	}
	if (resp->status == 403)
		return err_set(e, ERR_FORBIDDEN, "%.120s: %s denied the pull%s", r->label, r->host,
			       creds_hint(r));
	return err_set(e, ERR_NETWORK, "%.120s: the registry answered HTTP %ld%s%s", r->label,
		       resp->status, code[0] ? " " : "", code);
}

/* One manifest by reference, its bytes checked against every digest that names it. */
static int manifest_once(struct oci_registry *r, const char *reference, const char *pinned,
			 char digest[65], struct oci_manifest *m, struct err *e)
{
	struct hf_resp resp = {0};
	char path[CAP_REVISION_LEN + 16];
	if (fmt_buf(path, sizeof(path), "manifests/%s", reference))
		return err_set(e, ERR_TOO_LARGE, "manifest reference too long");
	int rc = reg_get(r, path, oci_manifest_accept, &resp, e);
	if (rc == 0 && resp.status != 200)
		rc = manifest_error(r, reference, &resp, e);
	if (rc)
		goto out;
	struct sha256 h = {0};
	sha256_init(&h);
	sha256_update(&h, resp.body, resp.len);
	sha256_final_hex(&h, digest);
	sha256_cleanup(&h);
	char said[65] = "";
	const char *d = resp.content_digest;
	if (strncmp(d, "sha256:", 7) == 0 && sha256_hex_valid(d + 7))
		snprintf(said, sizeof(said), "%s", d + 7);
	if ((pinned && strcmp(pinned, digest) != 0) || (said[0] && strcmp(said, digest) != 0)) {
		rc = err_set(e, ERR_DIGEST, "%.120s: manifest %s has sha256 %.12s, expected %.12s",
			     r->label, reference, digest, pinned ? pinned : said);
		goto out;
	}
	struct err pe = {0};
	rc = oci_manifest_parse(resp.body, resp.len, resp.content_type, m, &pe);
	if (rc)
		err_set(e, rc, "%.120s: %s", r->label, err_msg(&pe));
out:
	hf_resp_cleanup(&resp);
	return rc;
}

int oci_manifest_get(struct oci_registry *r, const char *reference, char digest[65],
		     struct oci_manifest *m, struct err *e)
{
	const char *pinned = strncmp(reference, "sha256:", 7) == 0 ? reference + 7 : NULL;
	int rc = manifest_once(r, reference, pinned, digest, m, e);
	if (rc || !m->is_index)
		return rc;
	char pick[65 + 7];
	snprintf(pick, sizeof(pick), "sha256:%s", m->pick);
	oci_manifest_cleanup(m);
	rc = manifest_once(r, pick, pick + 7, digest, m, e);
	if (rc == 0 && m->is_index) {
		oci_manifest_cleanup(m);
		rc = err_set(e, ERR_UNSUPPORTED, "%.120s: an image index inside an image index",
			     r->label);
	}
	return rc;
}
