/*
 * fuzz_ref: the model-ref parser (core/ref.h). The input up to its first NUL
 * is a ref; what follows the NUL, if anything, is a catalog id for
 * ref_matches_id.
 *
 * Invariants of an accepted ref: every part passes the checker it is
 * documented to pass; the canonical text parses back to the same ref and
 * formats to the same text; the ref matches the catalog id it would get.
 * A refused ref leaves the struct zeroed and a clean message.
 */
#include <ctype.h>
#include <strings.h>

#include "fuzz.h"

#include "core/caps.h"
#include "core/err.h"
#include "core/parse.h"
#include "core/ref.h"
#include "core/util.h"

static int no_ctl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

static void check_parts(const struct model_ref *r)
{
	switch (r->kind) {
	case REF_HF:
		FUZZ_CHECK(name_check_hub(r->org, strlen(r->org), NULL) == 0);
		FUZZ_CHECK(name_check_hub(r->repo, strlen(r->repo), NULL) == 0);
		FUZZ_CHECK(revision_check(r->revision, strlen(r->revision), NULL) == 0);
		FUZZ_CHECK(r->revision_given || strcmp(r->revision, "main") == 0);
		switch (r->sel) {
		case SEL_PATH:
			FUZZ_CHECK(path_check_repo(r->selector, strlen(r->selector), NULL) == 0);
			break;
		case SEL_QUANT:
			FUZZ_CHECK(r->selector[0] && !strpbrk(r->selector, "/."));
			for (const char *p = r->selector; *p; p++)
				FUZZ_CHECK(!islower((unsigned char)*p));
			break;
		case SEL_DEFAULT:
		case SEL_ALL: FUZZ_CHECK(r->selector[0] == '\0'); break;
		default: FUZZ_CHECK(0);
		}
		break;
	case REF_URL:
		FUZZ_CHECK(strncasecmp(r->url, "http", 4) == 0);
		FUZZ_CHECK(r->host[0] && no_ctl(r->url) && !strchr(r->url, ' '));
		FUZZ_CHECK(!strchr(r->url, '#'));
		FUZZ_CHECK(r->sha256[0] == '\0' || is_hex_lower(r->sha256, 64));
		break;
	case REF_FILE: {
		size_t n = strlen(r->path);
		FUZZ_CHECK(r->path[0] == '/' && r->path[n - 1] != '/' && no_ctl(r->path));
		for (const char *c = r->path; (c = strstr(c, "..")); c++)
			FUZZ_CHECK(!(c[-1] == '/' && (c[2] == '/' || c[2] == '\0')));
		break;
	}
	case REF_S3:
		FUZZ_CHECK(strncasecmp(r->url, "s3://", 5) == 0 && no_ctl(r->url));
		FUZZ_CHECK(ref_s3_bucket_check(r->host, NULL) == 0);
		FUZZ_CHECK(ref_s3_key_check(r->path, "key", NULL) == 0);
		FUZZ_CHECK(r->sha256[0] == '\0' || is_hex_lower(r->sha256, 64));
		break;
	case REF_OCI:
	case REF_OLLAMA:
		FUZZ_CHECK(r->name[0] && r->revision[0]);
		FUZZ_CHECK(r->kind == REF_OLLAMA || r->host[0]);
		/* A name is safe in a URL path as it is: no '..' part, no empty part. */
		for (const char *p = r->name; *p; p++)
			FUZZ_CHECK(strchr("abcdefghijklmnopqrstuvwxyz0123456789._-/", *p));
		FUZZ_CHECK(!strstr(r->name, "//") && !strstr(r->name, "..") && r->name[0] != '/');
		/* Pinned by digest: the revision is "sha256:" and that digest. */
		if (r->sha256[0])
			FUZZ_CHECK(strncmp(r->revision, "sha256:", 7) == 0 &&
				   strcmp(r->revision + 7, r->sha256) == 0 &&
				   is_hex_lower(r->sha256, 64));
		else
			FUZZ_CHECK(!strpbrk(r->revision, "/@:") && no_ctl(r->revision));
		break;
	default: FUZZ_CHECK(0);
	}
}

/* The catalog id a model pulled by ref r would get, if the ref alone decides it. */
static int catalog_id(const struct model_ref *r, char *id, size_t size)
{
	switch (r->kind) {
	case REF_HF:
		switch (r->sel) {
		case SEL_PATH:
			return ref_catalog_id_hf(r->org, r->repo, r->selector, r->revision, id,
						 size);
		case SEL_QUANT: {
			char file[CAP_REPO_PATH_LEN + 16];
			snprintf(file, sizeof(file), "m.%s.gguf", r->selector);
			return ref_catalog_id_hf(r->org, r->repo, file, r->revision, id, size);
		}
		case SEL_ALL: return ref_catalog_id_hf(r->org, r->repo, "*", r->revision, id, size);
		default: return ref_catalog_id_hf(r->org, r->repo, "x.gguf", r->revision, id, size);
		}
	case REF_URL:
		if (!r->sha256[0])
			return -1;
		return ref_catalog_id_url(r->sha256, id, size);
	case REF_FILE: return ref_catalog_id_file(strrchr(r->path, '/') + 1, id, size);
	case REF_S3:
		/* An s3:// object is a URL model: named by its pinned digest. */
		if (!r->sha256[0])
			return -1;
		return ref_catalog_id_url(r->sha256, id, size);
	case REF_OCI:
	case REF_OLLAMA: return ref_catalog_id_oci(r, id, size);
	}
	return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct model_ref zero;
	static struct model_ref r, r2;
	static char canon[2 * CAP_URL_LEN], canon2[2 * CAP_URL_LEN], id[2 * CAP_URL_LEN];
	char *s = fuzz_cstr(data, size);
	size_t first;
	const uint8_t *rest = fuzz_split(data, size, &first);
	struct err e = {0};

	int rc = ref_parse(s, &r, &e);
	if (rc != 0) {
		FUZZ_CHECK(rc == ERR_UNPROCESSABLE && e.code == ERR_UNPROCESSABLE);
		FUZZ_CHECK(fuzz_err_ok(&e));
		FUZZ_CHECK(memcmp(&r, &zero, sizeof(r)) == 0);
		goto out;
	}
	FUZZ_CHECK(strlen(s) <= CAP_REF_LEN);
	check_parts(&r);

	FUZZ_CHECK(ref_format(&r, canon, sizeof(canon)) == 0);
	/*
	 * The canonical text adds "hf:" and "@main" and %-escapes a file path,
	 * so a ref near CAP_REF_LEN may have a canonical text over the cap.
	 */
	if (strlen(canon) <= CAP_REF_LEN) {
		struct err e2 = {0};
		FUZZ_CHECK(ref_parse(canon, &r2, &e2) == 0);
		FUZZ_CHECK(r2.kind == r.kind && r2.sel == r.sel);
		FUZZ_CHECK(strcmp(r2.org, r.org) == 0 && strcmp(r2.repo, r.repo) == 0);
		FUZZ_CHECK(strcmp(r2.selector, r.selector) == 0);
		FUZZ_CHECK(strcmp(r2.revision, r.revision) == 0);
		FUZZ_CHECK(strcmp(r2.url, r.url) == 0 && strcmp(r2.sha256, r.sha256) == 0);
		FUZZ_CHECK(strcmp(r2.host, r.host) == 0 && strcmp(r2.path, r.path) == 0);
		FUZZ_CHECK(strcmp(r2.name, r.name) == 0);
		FUZZ_CHECK(ref_format(&r2, canon2, sizeof(canon2)) == 0);
		FUZZ_CHECK(strcmp(canon, canon2) == 0);
		FUZZ_CHECK(ref_matches_id(canon, canon) == 1);
	}
	if (catalog_id(&r, id, sizeof(id)) == 0)
		FUZZ_CHECK(ref_matches_id(s, id) == 1);
out:
	if (rest) {
		char *other = fuzz_cstr(rest, size - first - 1);
		int m = ref_matches_id(s, other);
		FUZZ_CHECK(m == 0 || m == 1);
		free(other);
	}
	free(s);
	return 0;
}
