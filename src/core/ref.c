#include "core/ref.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"
#include "core/ref_internal.h"
#include "core/parse.h"
#include "core/url.h"
#include "core/util.h"

/* Longest quantization tag we accept as a selector ("IQ2_XXS", "UD-Q4_K_XL"). */
#define REF_QUANT_MAX 31
/* How much of a bad ref is echoed back in a message. */
#define REF_SHOW_MAX 80

/*
 * The ref as it is shown in messages: at most REF_SHOW_MAX bytes, control
 * and non-ASCII bytes replaced by '?', so a message never carries raw input
 * that could break a terminal or a log line.
 */
static void ref_show(const char *s, char out[REF_SHOW_MAX + 4])
{
	size_t i = 0;
	for (; s[i] && i < REF_SHOW_MAX; i++) {
		unsigned char c = (unsigned char)s[i];
		out[i] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
	}
	if (s[i]) {
		memcpy(out + i, "...", 3);
		i += 3;
	}
	out[i] = '\0';
}

int ref_fail(struct err *e, const char *s, const char *fmt, ...)
{
	if (!e)
		return ERR_UNPROCESSABLE;
	char what[ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	char show[REF_SHOW_MAX + 4];
	ref_show(s, show);
	return err_set(e, ERR_UNPROCESSABLE, "model ref '%s': %s", show, what);
}

int ref_fail_from(struct err *e, const char *s, const char *label)
{
	if (!e)
		return ERR_UNPROCESSABLE;
	char inner[ERR_MSG_MAX];
	snprintf(inner, sizeof(inner), "%s", err_msg(e));
	return ref_fail(e, s, "%s%s", label, inner);
}

static int is_hex_digit(int c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int hex_val(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	return (c | 0x20) - 'a' + 10;
}

/*
 * A quantization tag: letters, digits, '_' and '-', with at least one digit
 * (every llama.cpp tag has one: Q4_K_M, F16, BF16, IQ2_XXS, TQ1_0), at most
 * REF_QUANT_MAX bytes. A digit-less word such as "LICENSE" is a file name.
 */
static int looks_like_quant(const char *s, size_t n)
{
	int digit = 0;
	if (n == 0 || n > REF_QUANT_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (isdigit(c))
			digit = 1;
		else if (!isalpha(c) && c != '_' && c != '-')
			return 0;
	}
	return digit;
}

/*
 * SELECTOR: '*' is the whole snapshot; a quant-looking word without '/' or
 * '.' is a tag (stored upper-case); anything else is a repo path, checked
 * like every path that reaches the disk.
 */
static int ref_parse_selector(const char *s, const char *sel, size_t n, struct model_ref *r,
			      struct err *e)
{
	if (n == 0)
		return ref_fail(e, s, "empty selector after ':'");
	if (n == 1 && sel[0] == '*') {
		r->sel = SEL_ALL;
		return 0;
	}
	if (!memchr(sel, '/', n) && !memchr(sel, '.', n) && looks_like_quant(sel, n)) {
		r->sel = SEL_QUANT;
		for (size_t i = 0; i < n; i++)
			r->selector[i] = (char)toupper((unsigned char)sel[i]);
		r->selector[n] = '\0';
		return 0;
	}
	if (path_check_repo(sel, n, e))
		return ref_fail_from(e, s, "file ");
	r->sel = SEL_PATH;
	memcpy(r->selector, sel, n);
	r->selector[n] = '\0';
	return 0;
}

/*
 * [hf:]ORG/REPO[:SELECTOR][@REVISION]. The revision starts at the last '@',
 * so a path that itself contains '@' needs an explicit revision after it
 * ("org/repo:a@b.gguf@main"). The selector starts at the first ':' (Hub
 * names have none).
 */
static int ref_parse_hf(const char *s, const char *body, struct model_ref *r, struct err *e)
{
	size_t len = strlen(body);
	const char *at = strrchr(body, '@');
	if (at) {
		size_t rlen = len - (size_t)(at + 1 - body);
		if (revision_check(at + 1, rlen, e))
			return ref_fail_from(e, s, "");
		memcpy(r->revision, at + 1, rlen);
		r->revision[rlen] = '\0';
		r->revision_given = 1;
		len = (size_t)(at - body);
	}
	const char *colon = memchr(body, ':', len);
	size_t idlen = colon ? (size_t)(colon - body) : len;
	const char *slash = memchr(body, '/', idlen);
	if (!slash)
		return ref_fail(e, s,
				"expected ORG/REPO[:FILE|:QUANT][@REVISION], https://HOST/PATH "
				"or file:///PATH");
	if (memchr(slash + 1, '/', idlen - (size_t)(slash + 1 - body)))
		return ref_fail(e, s, "a Hugging Face repo is ORG/REPO");
	size_t olen = (size_t)(slash - body);
	size_t nlen = idlen - olen - 1;
	if (name_check_hub(body, olen, e))
		return ref_fail_from(e, s, "organisation ");
	if (name_check_hub(slash + 1, nlen, e))
		return ref_fail_from(e, s, "repo ");
	memcpy(r->org, body, olen);
	r->org[olen] = '\0';
	memcpy(r->repo, slash + 1, nlen);
	r->repo[nlen] = '\0';
	if (colon)
		return ref_parse_selector(s, colon + 1, len - idlen - 1, r, e);
	return 0;
}

static const char sha_fragment[] = "sha256=";

int ref_parse_digest(const char *s, const char *hex, const char *what, struct model_ref *r,
		     struct err *e)
{
	size_t hlen = strlen(hex);
	if (hlen != 64)
		return ref_fail(e, s, "%s needs 64 hex digits, got %zu", what, hlen);
	for (size_t i = 0; i < 64; i++) {
		if (!is_hex_digit(hex[i]))
			return ref_fail(e, s, "%s has a non-hex character at %zu", what, i);
		r->sha256[i] = (char)tolower((unsigned char)hex[i]);
	}
	r->sha256[64] = '\0';
	return 0;
}

/* The digest of a "#sha256=HEX" fragment starting at hash. */
static int ref_parse_pin(const char *s, const char *hash, struct model_ref *r, struct err *e)
{
	return ref_parse_digest(s, hash + sizeof(sha_fragment), "#sha256=", r, e);
}

/*
 * https://HOST[:PORT]/PATH[?QUERY][#sha256=HEX]. The URL itself is judged by
 * the one URL policy (core/url.h): libcurl's parser, no credentials, and
 * plain http:// only to a loopback host, where nothing on the path can
 * tamper with the transfer (the test suite's fake servers have no TLS).
 */
static int ref_parse_url(const char *s, size_t scheme_len, struct model_ref *r, struct err *e)
{
	/* The length is bounded by CAP_REF_LEN (< CAP_URL_LEN) in ref_parse. */
	size_t len = strlen(s);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c >= 0x7f)
			return ref_fail(e, s,
					"URL has a space, control or non-ASCII byte at %zu "
					"(percent-encode it)",
					i);
		if (c == '%' &&
		    (i + 2 >= len || !is_hex_digit(s[i + 1]) || !is_hex_digit(s[i + 2])))
			return ref_fail(e, s, "URL has a malformed %%-escape at %zu", i);
	}
	if (strncmp(s + scheme_len + 1, "//", 2) != 0)
		return ref_fail(e, s, "expected '//' after '%.*s'", (int)scheme_len + 1, s);
	struct url_parts u;
	if (url_parse(s, &u, e) || url_check_scheme(&u, e))
		return ref_fail_from(e, s, "");
	snprintf(r->host, sizeof(r->host), "%s", u.host);
	const char *auth = s + scheme_len + 3;
	const char *path = auth + strcspn(auth, "/?#");
	if (path[0] != '/' || path[1] == '\0' || path[1] == '?' || path[1] == '#')
		return ref_fail(e, s, "URL has no file path");

	const char *hash = strchr(s, '#');
	size_t ulen = hash ? (size_t)(hash - s) : len;
	if (hash) {
		if (strncmp(hash + 1, sha_fragment, sizeof(sha_fragment) - 1) != 0)
			return ref_fail(e, s, "the only URL fragment accepted is #sha256=HEX");
		if (ref_parse_pin(s, hash, r, e))
			return ERR_UNPROCESSABLE;
	}
	memcpy(r->url, s, ulen);
	r->url[ulen] = '\0';
	r->kind = REF_URL;
	return 0;
}

/*
 * file:///ABS/PATH, %-escapes decoded. The decoded path is checked: no NUL
 * or control characters and no ".." component, so a ref cannot walk out of
 * the directory it names.
 */
static int ref_parse_file(const char *s, struct model_ref *r, struct err *e)
{
	const char *p = s + 5;
	if (strncmp(p, "//", 2) != 0 || p[2] != '/')
		return ref_fail(e, s, "expected file:///ABSOLUTE/PATH");
	p += 2;
	/*
	 * A trailing "#sha256=" fragment pins the content; any other '#' belongs
	 * to the path (ref_format writes it as %23, so the forms never mix).
	 */
	const char *hash = strrchr(p, '#');
	size_t plen = strlen(p);
	if (hash && strncmp(hash + 1, sha_fragment, sizeof(sha_fragment) - 1) == 0) {
		if (ref_parse_pin(s, hash, r, e))
			return ERR_UNPROCESSABLE;
		plen = (size_t)(hash - p);
	}
	size_t n = 0;
	for (size_t i = 0; i < plen; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '%') {
			if (!is_hex_digit(p[i + 1]) || !is_hex_digit(p[i + 2]))
				return ref_fail(e, s, "malformed %%-escape in the path");
			c = (unsigned char)(hex_val(p[i + 1]) * 16 + hex_val(p[i + 2]));
			i += 2;
		}
		if (c < 0x20 || c == 0x7f)
			return ref_fail(e, s, "control character in the path");
		if (n >= sizeof(r->path) - 1)
			return ref_fail(e, s, "path too long");
		r->path[n++] = (char)c;
	}
	r->path[n] = '\0';
	for (const char *c = r->path; *c;) {
		const char *end = strchr(c, '/');
		size_t clen = end ? (size_t)(end - c) : strlen(c);
		if (clen == 2 && c[0] == '.' && c[1] == '.')
			return ref_fail(e, s, "'..' is not allowed in the path");
		c += clen + (end ? 1 : 0);
	}
	if (r->path[n - 1] == '/')
		return ref_fail(e, s, "the path names a directory, not a file");
	r->kind = REF_FILE;
	return 0;
}

int ref_s3_bucket_check(const char *name, struct err *e)
{
	size_t n = strlen(name);
	if (n < 3 || n > 63)
		return err_set(e, ERR_INVALID, "bucket '%.70s': 3 to 63 characters", name);
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-'))
			return err_set(e, ERR_INVALID,
				       "bucket '%.70s': only a-z, 0-9, '.' and '-' are allowed",
				       name);
	}
	return 0;
}

static int s3_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~' || c == '/';
}

int ref_s3_key_check(const char *key, const char *what, struct err *e)
{
	size_t n = strlen(key);
	if (n == 0 || n > REF_S3_KEY_MAX)
		return err_set(e, ERR_INVALID, "%s '%.80s': 1 to %d characters", what, key,
			       REF_S3_KEY_MAX);
	for (size_t i = 0; i < n; i++)
		if (!s3_key_char(key[i]))
			return err_set(
			    e, ERR_INVALID,
			    "%s '%.80s': only letters, digits, '-', '.', '_', '~' and '/' "
			    "are allowed",
			    what, key);
	/* Every part between slashes is a name: no empty, "." or ".." part. */
	for (const char *p = key;;) {
		const char *end = strchr(p, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == 0 || (len == 1 && p[0] == '.') ||
		    (len == 2 && p[0] == '.' && p[1] == '.'))
			return err_set(e, ERR_INVALID,
				       "%s '%.80s': an empty, '.' or '..' part between slashes",
				       what, key);
		if (!end)
			return 0;
		p = end + 1;
	}
}

/* s3://BUCKET/KEY[#sha256=HEX]: an object of the site's S3 store (fetch/s3.h). */
static int ref_parse_s3(const char *s, size_t scheme_len, struct model_ref *r, struct err *e)
{
	(void)scheme_len;
	const char *b = s + 5;
	if (strncmp(s + 2, "://", 3) != 0)
		return ref_fail(e, s, "expected s3://BUCKET/KEY");
	const char *hash = strchr(b, '#');
	size_t len = hash ? (size_t)(hash - b) : strlen(b);
	const char *slash = memchr(b, '/', len);
	size_t blen = slash ? (size_t)(slash - b) : len;
	if (!slash || blen >= sizeof(r->host))
		return ref_fail(e, s, "expected s3://BUCKET/KEY");
	memcpy(r->host, b, blen);
	r->host[blen] = '\0';
	size_t klen = len - blen - 1;
	if (klen > REF_S3_KEY_MAX)
		return ref_fail(e, s, "the key is over %d bytes", REF_S3_KEY_MAX);
	memcpy(r->path, slash + 1, klen);
	r->path[klen] = '\0';
	if (ref_s3_bucket_check(r->host, e) || ref_s3_key_check(r->path, "key", e))
		return ref_fail_from(e, s, "");
	if (hash) {
		if (strncmp(hash + 1, sha_fragment, sizeof(sha_fragment) - 1) != 0)
			return ref_fail(e, s, "the only fragment accepted is #sha256=HEX");
		if (ref_parse_pin(s, hash, r, e))
			return ERR_UNPROCESSABLE;
	}
	memcpy(r->url, s, 5 + len);
	r->url[5 + len] = '\0';
	r->kind = REF_S3;
	return 0;
}

/*
 * The scheme of s ("hf", "https", ...) is the text before the first ':'
 * when that comes before any '/' and has scheme syntax; ORG/REPO:FILE has
 * its first ':' after a '/', so it has no scheme.
 */
static size_t ref_scheme_len(const char *s)
{
	size_t i = 0;
	if (!isalpha((unsigned char)s[0]))
		return 0;
	while (isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.')
		i++;
	return s[i] == ':' ? i : 0;
}

/* Schemes of the vendors beyond the Hub, URLs and files: one entry each. */
struct ref_scheme {
	const char *scheme;
	int (*parse)(const char *s, size_t scheme_len, struct model_ref *r, struct err *e);
};
static const struct ref_scheme ref_schemes[] = {
    {"s3", ref_parse_s3},
    {"oci", ref_parse_oci_scheme},
    {"ollama", ref_parse_ollama_scheme},
};

static const struct ref_scheme *ref_scheme_find(const char *s, size_t sl)
{
	for (size_t i = 0; i < sizeof(ref_schemes) / sizeof(ref_schemes[0]); i++)
		if (sl == strlen(ref_schemes[i].scheme) &&
		    strncasecmp(s, ref_schemes[i].scheme, sl) == 0)
			return &ref_schemes[i];
	return NULL;
}

/* Docker Hub's shorthand, as docker and Docker Model Runner write it: docker.io/ai/NAME. */
static const char docker_hub_prefix[] = "docker.io/";

int ref_parse(const char *s, struct model_ref *r, struct err *e)
{
	memset(r, 0, sizeof(*r));
	if (!s || !s[0])
		return err_set(e, ERR_UNPROCESSABLE, "model ref '': empty");
	if (strnlen(s, CAP_REF_LEN + 1) > CAP_REF_LEN)
		return ref_fail(e, s, "longer than %d bytes", CAP_REF_LEN);
	snprintf(r->revision, sizeof(r->revision), "%s", REF_DEFAULT_REVISION);
	size_t sl = ref_scheme_len(s);
	int rc;
	if (sl == 2 && strncasecmp(s, "hf", 2) == 0) {
		r->kind = REF_HF;
		rc = ref_parse_hf(s, s + 3, r, e);
	} else if ((sl == 5 && strncasecmp(s, "https", 5) == 0) ||
		   (sl == 4 && strncasecmp(s, "http", 4) == 0)) {
		rc = ref_parse_url(s, sl, r, e);
	} else if (sl == 4 && strncasecmp(s, "file", 4) == 0) {
		rc = ref_parse_file(s, r, e);
	} else if (ref_scheme_find(s, sl)) {
		rc = ref_scheme_find(s, sl)->parse(s, sl, r, e);
	} else if (sl == 0 &&
		   strncasecmp(s, docker_hub_prefix, sizeof(docker_hub_prefix) - 1) == 0) {
		rc = ref_parse_oci(s, s, r, e);
	} else if (sl > 0) {
		rc = ref_fail(e, s, "unknown scheme '%.*s:'", (int)(sl > 16 ? 16 : sl), s);
	} else {
		r->kind = REF_HF;
		rc = ref_parse_hf(s, s, r, e);
	}
	if (rc) {
		memset(r, 0, sizeof(*r));
		return ERR_UNPROCESSABLE;
	}
	return 0;
}

/* Appends the file path, %-encoding what would not survive a round trip. */
static int ref_format_file(const char *path, char *buf, size_t size)
{
	static const char digits[] = "0123456789ABCDEF";
	size_t o = 0;
	const char *pre = "file://";
	for (const char *p = pre; *p; p++) {
		if (o + 1 >= size)
			return ERR_TOO_LARGE;
		buf[o++] = *p;
	}
	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		int esc = *p <= 0x20 || *p >= 0x7f || *p == '%' || *p == '#' || *p == '?';
		if (o + (esc ? 3 : 1) >= size)
			return ERR_TOO_LARGE;
		if (esc) {
			buf[o++] = '%';
			buf[o++] = digits[*p >> 4];
			buf[o++] = digits[*p & 15];
		} else {
			buf[o++] = (char)*p;
		}
	}
	buf[o] = '\0';
	return 0;
}

int ref_format(const struct model_ref *r, char *buf, size_t size)
{
	switch (r->kind) {
	case REF_HF: {
		const char *sep =
		    (r->sel == SEL_PATH || r->sel == SEL_QUANT || r->sel == SEL_ALL) ? ":" : "";
		const char *sel = r->sel == SEL_ALL ? "*" : r->selector;
		return fmt_buf(buf, size, "hf:%s/%s%s%s@%s", r->org, r->repo, sep, sel,
			       r->revision);
	}
	case REF_URL:
	case REF_S3:
		if (r->sha256[0])
			return fmt_buf(buf, size, "%s#sha256=%s", r->url, r->sha256);
		return fmt_buf(buf, size, "%s", r->url);
	case REF_FILE: {
		int rc = ref_format_file(r->path, buf, size);
		if (rc == 0 && r->sha256[0]) {
			size_t n = strlen(buf);
			rc = fmt_buf(buf + n, size - n, "#sha256=%s", r->sha256);
		}
		return rc;
	}
	case REF_OCI:
	case REF_OLLAMA: return ref_catalog_id_oci(r, buf, size);
	}
	return ERR_INTERNAL;
}

int ref_catalog_id_hf(const char *org, const char *repo, const char *first_path,
		      const char *revision, char *buf, size_t size)
{
	if (!revision || !revision[0])
		revision = REF_DEFAULT_REVISION;
	/*
	 * Ids of the default branch stay as they always were, so existing
	 * catalogs keep them; a path with an '@' needs its revision written out,
	 * or the id would read back as another path and revision.
	 */
	if (strcmp(revision, REF_DEFAULT_REVISION) == 0 && !strchr(first_path, '@'))
		return fmt_buf(buf, size, "hf:%s/%s:%s", org, repo, first_path);
	return fmt_buf(buf, size, "hf:%s/%s:%s@%s", org, repo, first_path, revision);
}

int ref_catalog_id_url(const char *sha256, char *buf, size_t size)
{
	return fmt_buf(buf, size, "url:%.16s", sha256);
}

int ref_catalog_id_file(const char *name, char *buf, size_t size)
{
	return fmt_buf(buf, size, "file:%s", name);
}

/*
 * 1 if file name `name` carries quant tag `tag` (case-insensitive) as a whole
 * word: after the start, '.', '-' or '_', and before the end, '.' or '-', so
 * "Q4_K" does not match "x.Q4_K_M.gguf".
 */
static int name_has_tag(const char *name, const char *tag)
{
	size_t tl = strlen(tag);
	for (const char *p = name; *p; p++) {
		if (strncasecmp(p, tag, tl) != 0)
			continue;
		int before_ok = p == name || !isalnum((unsigned char)p[-1]);
		int after_ok = p[tl] != '_' && !isalnum((unsigned char)p[tl]);
		if (before_ok && after_ok)
			return 1;
	}
	return 0;
}

/*
 * Matching against an "hf:org/repo:path[@revision]" id, split as ref_parse
 * splits a ref: the revision starts at the last '@' after the selector's ':'.
 * org/repo compare case-insensitively like the Hub.
 */
static int ref_matches_hf(const struct model_ref *q, const char *id)
{
	const char *body = id + 3;
	const char *slash = strchr(body, '/');
	if (!slash)
		return 0;
	const char *colon = strchr(slash, ':');
	if (!colon)
		return 0;
	size_t olen = (size_t)(slash - body);
	size_t nlen = (size_t)(colon - slash - 1);
	if (strlen(q->org) != olen || strncasecmp(q->org, body, olen) != 0 ||
	    strlen(q->repo) != nlen || strncasecmp(q->repo, slash + 1, nlen) != 0)
		return 0;
	const char *path = colon + 1;
	const char *at = strrchr(path, '@');
	size_t plen = at ? (size_t)(at - path) : strlen(path);
	const char *rev = at ? at + 1 : REF_DEFAULT_REVISION;
	if (q->revision_given && strcmp(q->revision, rev) != 0)
		return 0;
	int whole = plen == 1 && path[0] == '*';
	char file[CAP_REPO_PATH_LEN + 1];
	if (plen > CAP_REPO_PATH_LEN)
		return 0;
	memcpy(file, path, plen);
	file[plen] = '\0';
	const char *name = strrchr(file, '/');
	name = name ? name + 1 : file;
	switch (q->sel) {
	case SEL_DEFAULT: return 1;
	case SEL_ALL: return whole;
	case SEL_PATH: return !whole && strcmp(q->selector, file) == 0;
	case SEL_QUANT: return !whole && name_has_tag(name, q->selector);
	}
	return 0;
}

/*
 * A cheap test before the full parse: callers run ref_matches_id over the
 * whole catalog, and most ids fail on their first characters. For an hf id
 * the query must start with its ORG/REPO (after an optional "hf:"); for url
 * and file ids it must be a URL or a file ref.
 */
static int ref_may_match(const char *query, const char *id)
{
	if (strncmp(id, "hf:", 3) == 0) {
		const char *colon = strchr(id + 3, ':');
		size_t n = colon ? (size_t)(colon - id - 3) : strlen(id + 3);
		const char *q = strncasecmp(query, "hf:", 3) == 0 ? query + 3 : query;
		return strncasecmp(q, id + 3, n) == 0 &&
		       (q[n] == '\0' || q[n] == ':' || q[n] == '@');
	}
	if (strncmp(id, "url:", 4) == 0)
		return strncasecmp(query, "http", 4) == 0 || strncasecmp(query, "s3:", 3) == 0;
	if (strncmp(id, "file:", 5) == 0)
		return strncasecmp(query, "file:", 5) == 0;
	if (strncmp(id, "oci://", 6) == 0)
		return strncasecmp(query, "oci://", 6) == 0 ||
		       strncasecmp(query, docker_hub_prefix, sizeof(docker_hub_prefix) - 1) == 0;
	if (strncmp(id, "ollama:", 7) == 0)
		return strncasecmp(query, "ollama:", 7) == 0;
	return 0;
}

int ref_matches_id(const char *query, const char *id)
{
	if (!query || !id || !query[0])
		return 0;
	if (strcmp(query, id) == 0)
		return 1;
	if (!ref_may_match(query, id))
		return 0;
	struct model_ref q;
	if (ref_parse(query, &q, NULL) != 0)
		return 0;
	if (strncmp(id, "hf:", 3) == 0)
		return q.kind == REF_HF && ref_matches_hf(&q, id);
	if (strncmp(id, "url:", 4) == 0) {
		/* A URL ref names the model by its pinned digest only. */
		char want[32];
		return (q.kind == REF_URL || q.kind == REF_S3) && q.sha256[0] &&
		       ref_catalog_id_url(q.sha256, want, sizeof(want)) == 0 &&
		       strcmp(want, id) == 0;
	}
	if (q.kind == REF_OCI || q.kind == REF_OLLAMA)
		return ref_matches_oci(&q, id);
	if (strncmp(id, "file:", 5) == 0 && q.kind == REF_FILE) {
		const char *base = strrchr(q.path, '/');
		return strcmp(base + 1, id + 5) == 0;
	}
	return 0;
}

int ref_same_hf_repo(const char *a, const char *b)
{
	/* Heap, not stack: a parsed ref holds two URL-sized buffers. */
	struct model_ref *ra = xmalloc(sizeof(*ra)), *rb = xmalloc(sizeof(*rb));
	int same = ref_parse(a, ra, NULL) == 0 && ref_parse(b, rb, NULL) == 0 &&
		   ra->kind == REF_HF && rb->kind == REF_HF && strcasecmp(ra->org, rb->org) == 0 &&
		   strcasecmp(ra->repo, rb->repo) == 0;
	free(ra);
	free(rb);
	return same;
}
