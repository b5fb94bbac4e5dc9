/*
 * ref_oci: the refs of OCI registries and the Ollama library (oci://,
 * docker.io/, ollama:), their catalog ids and how a query matches them.
 * ref.c parses every other kind and dispatches here.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"
#include "core/parse.h"
#include "core/ref.h"
#include "core/ref_internal.h"
#include "core/url.h"
#include "core/util.h"

/* OCI names, tags and registries (the distribution spec's grammar). */
#define REF_OCI_TAG_MAX 128

/* Registries written by a short name, and the host their API answers on. */
static const struct {
	const char *name;
	const char *api;
} registry_aliases[] = {
    {"docker.io", "registry-1.docker.io"},
    {"index.docker.io", "registry-1.docker.io"},
};

static int is_lower_alnum(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/*
 * NAME: components of lower-case letters and digits joined by '/', with
 * single '.', '_', "__" or runs of '-' inside a component. So no component
 * is empty, ".", ".." or starts with a separator, and a name is safe in a
 * URL path as it is.
 */
static int oci_name_check(const char *s, const char *name, size_t n, struct err *e)
{
	if (n == 0)
		return ref_fail(e, s, "empty repository name");
	if (n > CAP_OCI_NAME_LEN)
		return ref_fail(e, s, "repository name longer than %d bytes", CAP_OCI_NAME_LEN);
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && name[i] != '/')
			continue;
		const char *c = name + start;
		size_t cl = i - start;
		if (cl == 0 || !is_lower_alnum(c[0]) || !is_lower_alnum(c[cl - 1]))
			return ref_fail(e, s,
					"repository name component %zu must start and end with a "
					"lower-case letter or digit",
					start);
		for (size_t k = 1; k + 1 < cl; k++) {
			int ch = (unsigned char)c[k], prev = (unsigned char)c[k - 1];
			int ok = is_lower_alnum(ch) ||
				 ((ch == '.' || ch == '_' || ch == '-') && is_lower_alnum(prev)) ||
				 (ch == '-' && prev == '-') ||
				 (ch == '_' && prev == '_' && k >= 2 && is_lower_alnum(c[k - 2]));
			if (!ok)
				return ref_fail(
				    e, s,
				    "repository name has '%c' at %zu (names are lower-case "
				    "letters and digits, with '.', '_', '__' or '-' between "
				    "them)",
				    ch >= 0x20 && ch < 0x7f ? ch : '?', start + k);
		}
		start = i + 1;
	}
	return 0;
}

static int oci_tag_check(const char *s, const char *tag, size_t n, struct err *e)
{
	if (n == 0 || n > REF_OCI_TAG_MAX)
		return ref_fail(e, s, "a tag has 1 to %d characters", REF_OCI_TAG_MAX);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)tag[i];
		if (!isalnum(c) && c != '_' && (i == 0 || (c != '.' && c != '-')))
			return ref_fail(e, s, "tag has '%c' at %zu",
					c >= 0x20 && c < 0x7f ? c : '?', i);
	}
	return 0;
}

/*
 * NAME[:TAG|@sha256:HEX] of an OCI or Ollama ref. The tag starts at a ':'
 * in the last component; no tag is REF_DEFAULT_TAG.
 */
static int ref_parse_oci_name(const char *s, const char *body, struct model_ref *r, struct err *e)
{
	size_t len = strlen(body);
	const char *at = strchr(body, '@');
	if (at) {
		static const char algo[] = "sha256:";
		if (strncmp(at + 1, algo, sizeof(algo) - 1) != 0)
			return ref_fail(e, s, "a pinned manifest is @sha256:HEX");
		if (ref_parse_digest(s, at + sizeof(algo), "@sha256:", r, e))
			return ERR_UNPROCESSABLE;
		snprintf(r->revision, sizeof(r->revision), "sha256:%s", r->sha256);
		r->revision_given = 1;
		len = (size_t)(at - body);
	}
	size_t last = 0;
	for (size_t i = 0; i < len; i++)
		if (body[i] == '/')
			last = i + 1;
	const char *colon = memchr(body + last, ':', len - last);
	size_t nlen = colon ? (size_t)(colon - body) : len;
	if (colon) {
		size_t tl = len - nlen - 1;
		if (at)
			return ref_fail(e, s, "give a tag or a digest, not both");
		if (oci_tag_check(s, colon + 1, tl, e))
			return ERR_UNPROCESSABLE;
		memcpy(r->revision, colon + 1, tl);
		r->revision[tl] = '\0';
		r->revision_given = 1;
	} else if (!at) {
		snprintf(r->revision, sizeof(r->revision), "%s", REF_DEFAULT_TAG);
	}
	if (oci_name_check(s, body, nlen, e))
		return ERR_UNPROCESSABLE;
	memcpy(r->name, body, nlen);
	r->name[nlen] = '\0';
	return 0;
}

/*
 * oci://REGISTRY/NAME..., or docker.io/NAME... (registry_len then names
 * "docker.io"). The registry is judged by the URL policy as the https
 * origin it will be (or http on loopback, which the provisioner decides).
 */
int ref_parse_oci(const char *s, const char *reg, struct model_ref *r, struct err *e)
{
	const char *slash = strchr(reg, '/');
	if (!slash || slash == reg)
		return ref_fail(e, s, "expected oci://REGISTRY/NAME[:TAG|@sha256:HEX]");
	size_t rl = (size_t)(slash - reg);
	if (rl >= sizeof(r->host))
		return ref_fail(e, s, "registry name too long");
	for (size_t i = 0; i < rl; i++) {
		unsigned char c = (unsigned char)reg[i];
		if (!isalnum(c) && c != '.' && c != '-' && c != ':' && c != '[' && c != ']')
			return ref_fail(e, s, "registry has '%c' at %zu (expected HOST[:PORT])",
					c >= 0x20 && c < 0x7f ? c : '?', i);
	}
	char origin[sizeof(r->host) + 16];
	snprintf(origin, sizeof(origin), "https://%.*s/", (int)rl, reg);
	struct url_parts u;
	if (url_parse(origin, &u, e))
		return ref_fail_from(e, s, "registry: ");
	snprintf(r->host, sizeof(r->host), "%.*s", (int)rl, reg);
	for (char *c = r->host; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	int hub = 0;
	for (size_t i = 0; i < sizeof(registry_aliases) / sizeof(registry_aliases[0]); i++)
		if (strcmp(r->host, registry_aliases[i].name) == 0) {
			snprintf(r->host, sizeof(r->host), "%s", registry_aliases[i].api);
			hub = 1;
		}
	if (strcmp(r->host, "registry-1.docker.io") == 0)
		hub = 1;
	if (ref_parse_oci_name(s, slash + 1, r, e))
		return ERR_UNPROCESSABLE;
	/* Docker Hub's official images live under library/. */
	if (hub && !strchr(r->name, '/')) {
		char full[sizeof(r->name)];
		if (fmt_buf(full, sizeof(full), "library/%s", r->name))
			return ref_fail(e, s, "repository name too long");
		memcpy(r->name, full, sizeof(full));
	}
	r->kind = REF_OCI;
	return 0;
}

/* ollama:NAME[:TAG] (library/NAME) or ollama:USER/NAME[:TAG]. */
static int ref_parse_ollama(const char *s, const char *body, struct model_ref *r, struct err *e)
{
	if (ref_parse_oci_name(s, body, r, e))
		return ERR_UNPROCESSABLE;
	char *slash = strchr(r->name, '/');
	if (slash && strchr(slash + 1, '/'))
		return ref_fail(e, s, "an Ollama model is NAME[:TAG] or USER/NAME[:TAG]");
	if (!slash) {
		char full[sizeof(r->name)];
		if (fmt_buf(full, sizeof(full), "library/%s", r->name))
			return ref_fail(e, s, "repository name too long");
		memcpy(r->name, full, sizeof(full));
	}
	r->kind = REF_OLLAMA;
	return 0;
}

/* oci://REGISTRY/NAME[:TAG|@sha256:HEX], as an entry of the scheme table. */
int ref_parse_oci_scheme(const char *s, size_t scheme_len, struct model_ref *r, struct err *e)
{
	if (strncmp(s + scheme_len, "://", 3) != 0)
		return ref_fail(e, s, "expected oci://REGISTRY/NAME[:TAG|@sha256:HEX]");
	return ref_parse_oci(s, s + scheme_len + 3, r, e);
}

/* ollama:[USER/]NAME[:TAG], as an entry of the scheme table. */
int ref_parse_ollama_scheme(const char *s, size_t scheme_len, struct model_ref *r, struct err *e)
{
	return ref_parse_ollama(s, s + scheme_len + 1, r, e);
}

/* The id up to the tag or digest: oci://REGISTRY/NAME, ollama:NAME or ollama:USER/NAME. */
static int ref_oci_base(const struct model_ref *r, char *buf, size_t size)
{
	static const char lib[] = "library/";
	if (r->kind == REF_OCI)
		return fmt_buf(buf, size, "oci://%s/%s", r->host, r->name);
	if (r->kind != REF_OLLAMA)
		return ERR_INVALID;
	const char *name = r->name;
	if (strncmp(name, lib, sizeof(lib) - 1) == 0)
		name += sizeof(lib) - 1;
	return fmt_buf(buf, size, "ollama:%s", name);
}

int ref_catalog_id_oci(const struct model_ref *r, char *buf, size_t size)
{
	int rc = ref_oci_base(r, buf, size);
	if (rc)
		return rc;
	size_t n = strlen(buf);
	return fmt_buf(buf + n, size - n, "%s%s", r->sha256[0] ? "@" : ":", r->revision);
}

/* An OCI or Ollama query names its own id, or any tag of its repository when it names none. */
int ref_matches_oci(const struct model_ref *q, const char *id)
{
	char want[CAP_REF_LEN + 1];
	if (q->revision_given)
		return ref_catalog_id_oci(q, want, sizeof(want)) == 0 && strcmp(want, id) == 0;
	if (ref_oci_base(q, want, sizeof(want)))
		return 0;
	size_t n = strlen(want);
	return strncmp(want, id, n) == 0 && (id[n] == ':' || id[n] == '@');
}
