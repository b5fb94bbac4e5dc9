/*
 * hfrepo: the Hub requests about one repository (docs/hf-protocol.md):
 * revision -> commit, the recursive tree listing with its pagination and
 * its page parser, HEAD of one file, and the listing of GET /v1/sources.
 * Each goes through hf_request and hf_check_status of hfapi.c.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cancel.h"
#include "core/caps.h"
#include "core/err.h"
#include "core/json.h"
#include "core/parse.h"
#include "core/ref.h"
#include "core/sha256.h"
#include "core/url.h"
#include "core/util.h"
#include "provision/hfapi.h"
#include "provision/hfapi_internal.h"
#include "provision/hfselect.h"
#include "provision/provision.h"

/*
 * The target of Link: <URL>; rel="next" into out, "" when there is none.
 * ERR_TOO_LARGE when it does not fit: a cut URL would fetch another page.
 */
static int link_next(const char *v, char *out, size_t size)
{
	out[0] = '\0';
	while (v && *v) {
		const char *lt = strchr(v, '<');
		const char *gt = lt ? strchr(lt, '>') : NULL;
		if (!gt)
			return 0;
		const char *end = strchr(gt, ',');
		size_t plen = end ? (size_t)(end - gt) : strlen(gt);
		char params[256];
		snprintf(params, sizeof(params), "%.*s", (int)(plen > 255 ? 255 : plen), gt);
		if (strstr(params, "rel=\"next\"") || strstr(params, "rel=next")) {
			if ((size_t)(gt - lt - 1) >= size)
				return ERR_TOO_LARGE;
			snprintf(out, size, "%.*s", (int)(gt - lt - 1), lt + 1);
			return 0;
		}
		v = end ? end + 1 : NULL;
	}
	return 0;
}

/* Resolves a possibly relative Location against base into out. */

static char *escape_all(const char *s)
{
	char *t = curl_easy_escape(NULL, s, 0);
	char *r = xstrdup(t ? t : "");
	curl_free(t);
	return r;
}

/* Percent-encodes each component of a repo path, keeping '/'. */
static char *escape_path(const char *p)
{
	size_t cap = strlen(p) * 3 + 1, used = 0;
	char *out = xmalloc(cap);
	out[0] = '\0';
	const char *s = p;
	while (*s) {
		const char *sl = strchr(s, '/');
		size_t n = sl ? (size_t)(sl - s) : strlen(s);
		char *t = curl_easy_escape(NULL, s, (int)n);
		used += (size_t)snprintf(out + used, cap - used, "%s%s", t ? t : "", sl ? "/" : "");
		curl_free(t);
		s += n + (sl ? 1 : 0);
	}
	return out;
}

static int get_json(const struct hf_client *c, const char *url, const struct hf_what *w,
		    const char *what, struct cancel_token *cancel, struct hf_resp *r, json_t **doc,
		    struct err *e)
{
	int rc = hf_request(c, "GET", url, HF_REDIRECT_SAME_HOST, cancel, r, e);
	if (rc)
		return rc;
	rc = hf_check_status(c, r, w, e);
	if (rc)
		return rc;
	rc = json_parse_strict(r->body ? r->body : "", r->len, CAP_LISTING_BYTES, doc, e);
	if (rc)
		err_prefix(e, "%s of %s", what, w->repo);
	return rc;
}

static int is_commit(const char *s)
{
	return strlen(s) == 40 && is_hex_lower(s, 40);
}

int hf_resolve_commit(const struct hf_client *c, const char *org, const char *repo,
		      const char *revision, struct cancel_token *cancel, char commit[41],
		      struct hf_listing *names, int *gated, struct err *e)
{
	char repo_id[2 * CAP_REPO_ID_LEN + 2];
	snprintf(repo_id, sizeof(repo_id), "%s/%s", org, repo);
	struct hf_what w = {.repo = repo_id, .revision = revision};
	char *rev = escape_all(revision);
	char *url = xasprintf("%s/api/models/%s/%s/revision/%s", c->endpoint, org, repo, rev);
	free(rev);
	struct hf_resp r = {0};
	json_t *doc = NULL;
	int rc = get_json(c, url, &w, "model info", cancel, &r, &doc, e);
	if (rc)
		goto out;
	/* Hub answers carry many more keys than we read and gain new ones; only ours are checked.
	 */
	json_t *sha = json_is_object(doc) ? json_object_get(doc, "sha") : NULL;
	if (!json_is_string(sha) || !is_commit(json_string_value(sha))) {
		rc = err_set(e, ERR_NETWORK, "model info of %s has no commit sha", repo_id);
		goto out;
	}
	memcpy(commit, json_string_value(sha), 41);
	if (gated) {
		/* false, or how access is granted ("auto", "manual"); an older form is true. */
		json_t *g = json_object_get(doc, "gated");
		*gated = json_is_string(g) || json_is_true(g);
	}
	json_t *sib = json_object_get(doc, "siblings");
	if (names && json_is_array(sib)) {
		size_t i;
		json_t *it;
		snprintf(names->commit, sizeof(names->commit), "%s", commit);
		json_array_foreach(sib, i, it)
		{
			if (cancel_is_set(cancel)) {
				rc = err_set(e, ERR_CANCELLED, "cancelled");
				goto out;
			}
			json_t *fn = json_object_get(it, "rfilename");
			struct err pe = {0};
			if (!json_is_string(fn) ||
			    path_check_repo(json_string_value(fn), json_string_length(fn), &pe)) {
				rc = err_set(e, ERR_INVALID,
					     "model info of %s: unsafe file name refused: %s",
					     repo_id,
					     json_is_string(fn) ? err_msg(&pe) : "not a string");
				goto out;
			}
			if (hf_listing_add(names, json_string_value(fn), 0, NULL, NULL)) {
				rc = err_set(e, ERR_TOO_LARGE, "%s has more than %d files", repo_id,
					     CAP_REPO_FILES);
				goto out;
			}
		}
	}
out:
	json_decref(doc);
	hf_resp_cleanup(&r);
	free(url);
	return rc;
}

static int get_u64(json_t *v, uint64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int add_tree_entry(struct hf_listing *out, json_t *it, const char *repo_id, struct err *e)
{
	/* Folders cost as much to read and keep as files: they count the same. */
	size_t cap = out->max_entries ? out->max_entries : CAP_REPO_FILES;
	if (++out->entries > cap)
		return err_set(e, ERR_TOO_LARGE, "%s has more than %zu files and folders", repo_id,
			       cap);
	json_t *type = json_object_get(it, "type");
	json_t *path = json_object_get(it, "path");
	if (!json_is_string(type) || !json_is_string(path))
		return err_set(e, ERR_NETWORK, "tree listing of %s: entry without type or path",
			       repo_id);
	if (strcmp(json_string_value(type), "file") != 0)
		return 0;
	const char *p = json_string_value(path);
	size_t plen = json_string_length(path);
	struct err pe = {0};
	if (path_check_repo(p, plen, &pe))
		return err_set(e, ERR_INVALID, "tree listing of %s: unsafe path refused: %s",
			       repo_id, err_msg(&pe));
	uint64_t size = 0;
	int has_size = get_u64(json_object_get(it, "size"), &size) == 0;
	const char *sha = NULL, *oid = NULL;
	json_t *o = json_object_get(it, "oid");
	if (json_is_string(o) && json_string_length(o) == 40 &&
	    is_hex_lower(json_string_value(o), 40))
		oid = json_string_value(o);
	json_t *lfs = json_object_get(it, "lfs");
	if (json_is_object(lfs)) {
		json_t *lo = json_object_get(lfs, "oid");
		if (!sha256_hex_valid(json_string_value(lo)))
			return err_set(e, ERR_NETWORK, "tree listing of %s: bad lfs.oid for '%s'",
				       repo_id, p);
		sha = json_string_value(lo);
		uint64_t lsize;
		if (get_u64(json_object_get(lfs, "size"), &lsize) == 0) {
			if (has_size && lsize != size)
				return err_set(
				    e, ERR_DIGEST,
				    "tree listing of %s: '%s' has two sizes (%llu, %llu)", repo_id,
				    p, (unsigned long long)size, (unsigned long long)lsize);
			size = lsize;
			has_size = 1;
		}
	}
	if (!has_size)
		return err_set(e, ERR_NETWORK, "tree listing of %s: '%s' has no size", repo_id, p);
	if (hf_listing_add(out, p, size, sha, oid))
		return err_set(e, ERR_TOO_LARGE, "%s has more than %d files", repo_id,
			       CAP_REPO_FILES);
	return 0;
}

int hf_tree_page_parse(const char *body, size_t len, const char *link, const char *repo_id,
		       struct cancel_token *cancel, struct hf_listing *out, char *next_url,
		       size_t next_size, struct err *e)
{
	json_t *doc = NULL;
	next_url[0] = '\0';
	int rc = json_parse_strict(body, len, CAP_LISTING_BYTES, &doc, e);
	if (rc) {
		err_prefix(e, "tree listing of %s", repo_id);
		return rc;
	}
	if (!json_is_array(doc)) {
		rc = err_set(e, ERR_NETWORK, "tree listing of %s is not a JSON array", repo_id);
		goto out;
	}
	size_t i;
	json_t *it;
	json_array_foreach(doc, i, it)
	{
		if (cancel_is_set(cancel)) {
			rc = err_set(e, ERR_CANCELLED, "cancelled");
			goto out;
		}
		if (!json_is_object(it)) {
			rc = err_set(e, ERR_NETWORK,
				     "tree listing of %s: entry %zu is not an object", repo_id, i);
			goto out;
		}
		rc = add_tree_entry(out, it, repo_id, e);
		if (rc)
			goto out;
	}
	if (link && link_next(link, next_url, next_size))
		rc = err_set(e, ERR_TOO_LARGE,
			     "tree listing of %s: the next page's URL is too long", repo_id);
out:
	json_decref(doc);
	return rc;
}

int hf_list_tree(const struct hf_client *c, const char *org, const char *repo, const char *commit,
		 struct cancel_token *cancel, struct hf_listing *out, struct err *e)
{
	char repo_id[2 * CAP_REPO_ID_LEN + 2];
	snprintf(repo_id, sizeof(repo_id), "%s/%s", org, repo);
	struct hf_what w = {.repo = repo_id, .revision = commit};
	char *rev = escape_all(commit);
	char *url =
	    xasprintf("%s/api/models/%s/%s/tree/%s?recursive=true", c->endpoint, org, repo, rev);
	free(rev);
	struct hf_resp r = {0};
	char next[CAP_URL_LEN + 1];
	int rc = 0;
	/* Each page is read, parsed and dropped before the next: the cap is per page. */
	struct hf_client pc = *c;
	if (!pc.max_answer || pc.max_answer > CAP_LISTING_PAGE_BYTES)
		pc.max_answer = CAP_LISTING_PAGE_BYTES;
	snprintf(out->commit, sizeof(out->commit), "%s", commit);
	for (int page = 0;; page++) {
		if (page >= CAP_LISTING_PAGES) {
			rc = err_set(e, ERR_TOO_LARGE, "tree listing of %s has over %d pages",
				     repo_id, CAP_LISTING_PAGES);
			goto out;
		}
		rc = hf_request(&pc, "GET", url, HF_REDIRECT_SAME_HOST, cancel, &r, e);
		if (rc == 0)
			rc = hf_check_status(c, &r, &w, e);
		if (rc == 0)
			rc = hf_tree_page_parse(r.body ? r.body : "", r.len, r.link, repo_id,
						cancel, out, next, sizeof(next), e);
		if (rc)
			goto out;
		if (!next[0])
			break;
		/* The next page must come from the Hub itself: the token goes with it. */
		if (!url_same_origin_str(next, c->endpoint)) {
			rc = err_set(e, ERR_NETWORK,
				     "tree listing of %s: next page on another host", repo_id);
			goto out;
		}
		free(url);
		url = xstrdup(next);
	}
out:
	hf_resp_cleanup(&r);
	free(url);
	return rc;
}

int hf_head_file(const struct hf_client *c, const char *org, const char *repo, const char *revision,
		 const char *path, struct cancel_token *cancel, struct hf_file_meta *out,
		 struct err *e)
{
	char repo_id[2 * CAP_REPO_ID_LEN + 2];
	snprintf(repo_id, sizeof(repo_id), "%s/%s", org, repo);
	struct hf_what w = {.repo = repo_id, .revision = revision, .path = path};
	memset(out, 0, sizeof(*out));
	char *rev = escape_all(revision);
	char *ep = escape_path(path);
	char *url = xasprintf("%s/%s/%s/resolve/%s/%s", c->endpoint, org, repo, rev, ep);
	free(rev);
	free(ep);
	struct hf_resp r = {0};
	int rc = hf_request(c, "HEAD", url, HF_REDIRECT_SAME_HOST, cancel, &r, e);
	if (rc)
		goto out;
	int redirect = r.status >= 300 && r.status < 400;
	if (!redirect) {
		rc = hf_check_status(c, &r, &w, e);
		if (rc)
			goto out;
	}
	if (!r.commit[0]) {
		rc = err_set(e, ERR_NETWORK,
			     "'%s' in %s: the answer has no X-Repo-Commit, so it did not come from "
			     "the Hub (proxy?)",
			     path, repo_id);
		goto out;
	}
	if (!is_commit(r.commit)) {
		rc = err_set(e, ERR_NETWORK, "'%s' in %s: malformed X-Repo-Commit", path, repo_id);
		goto out;
	}
	size_t el = strlen(r.etag);
	if (!((el == 64 && is_hex_lower(r.etag, 64)) || (el == 40 && is_hex_lower(r.etag, 40)))) {
		rc = err_set(e, ERR_NETWORK, "'%s' in %s: the Hub gave no usable etag", path,
			     repo_id);
		goto out;
	}
	if (!r.has_size) {
		rc = err_set(e, ERR_NETWORK, "'%s' in %s: the Hub gave no size", path, repo_id);
		goto out;
	}
	memcpy(out->commit, r.commit, 41);
	snprintf(out->etag, sizeof(out->etag), "%s", r.etag);
	out->size = r.size;
	if (redirect) {
		if (!r.location[0]) {
			rc = err_set(e, ERR_NETWORK, "'%s' in %s: redirect without Location", path,
				     repo_id);
			goto out;
		}
		snprintf(out->url, sizeof(out->url), "%s", r.location);
		out->url_is_hub = url_same_origin_str(r.location, c->endpoint);
	} else {
		snprintf(out->url, sizeof(out->url), "%s", r.final_url);
		out->url_is_hub = 1;
	}
out:
	hf_resp_cleanup(&r);
	free(url);
	return rc;
}

/* Files between two looks at the cancel token while the answer is built. */
#define HF_SOURCES_CANCEL_EVERY 1024

int hf_repo_files_json(const struct prov_config *cfg, const char *org, const char *repo,
		       const char *revision, struct cancel_token *cancel, json_t **out,
		       struct err *e)
{
	struct hf_client c;
	struct hf_listing l;
	char commit[41];
	json_t *doc = NULL, *by_tag = NULL;
	hf_listing_init(&l);
	*out = NULL;
	const char *rev = revision && *revision ? revision : REF_DEFAULT_REVISION;
	struct err ne = {0};
	int rc = hf_client_init(&c, cfg, e);
	if (rc)
		return rc;
	/*
	 * A listing for a person to choose from: every answer of the Hub and
	 * the number of entries have caps well below a download's, so that a
	 * few listings at once stay small in memory.
	 */
	c.max_answer = CAP_LISTING_PAGE_BYTES;
	l.max_entries = CAP_SOURCES_ENTRIES;
	if (name_check_hub(org, strlen(org), &ne) || name_check_hub(repo, strlen(repo), &ne) ||
	    revision_check(rev, strlen(rev), &ne)) {
		rc = err_set(e, ERR_UNPROCESSABLE, "repo '%s/%s': %s", org, repo, err_msg(&ne));
		goto out;
	}
	rc = hf_resolve_commit(&c, org, repo, rev, cancel, commit, NULL, NULL, e);
	if (rc)
		goto out;
	rc = hf_list_tree(&c, org, repo, commit, cancel, &l, e);
	if (rc)
		goto out;
	doc = json_object();
	by_tag = json_object(); /* tag -> its entry of quants (borrowed) */
	json_t *files = json_array(), *quants = json_array();
	char repo_id[2 * CAP_REPO_ID_LEN + 2];
	snprintf(repo_id, sizeof(repo_id), "%s/%s", org, repo);
	json_set_str(doc, "repo", repo_id);
	json_set_str(doc, "revision", rev);
	json_set_str(doc, "commit", commit);
	json_object_set_new(doc, "files", files);
	json_object_set_new(doc, "quants", quants);
	for (size_t i = 0; i < l.n; i++) {
		if (i % HF_SOURCES_CANCEL_EVERY == 0 && cancel && cancel_is_set(cancel)) {
			rc = err_set(e, ERR_CANCELLED, "listing %s: cancelled", repo_id);
			goto out;
		}
		const struct hf_file *f = &l.files[i];
		json_t *jf = json_object();
		char tag[HF_QUANT_MAX];
		unsigned no, count;
		size_t stem;
		int gguf = hf_is_gguf(f->path);
		int has_tag = gguf && hf_quant_tag(f->path, tag);
		int shard = hf_split_shard(f->path, &no, &count, &stem);
		json_set_str(jf, "path", f->path);
		json_set_int(jf, "size", (long long)f->size);
		json_set_str(jf, "sha256", f->sha256[0] ? f->sha256 : NULL);
		json_set_str(jf, "quant", has_tag ? tag : NULL);
		json_object_set_new(jf, "shard", shard ? json_integer(no) : json_null());
		json_object_set_new(jf, "shards", shard ? json_integer(count) : json_null());
		json_array_append_new(files, jf);
		if (!has_tag)
			continue;
		json_t *q = json_object_get(by_tag, tag);
		if (!q) {
			q = json_object();
			json_set_str(q, "tag", tag);
			json_set_int(q, "size", 0);
			json_object_set_new(q, "files", json_array());
			int dflt = strcmp(rev, REF_DEFAULT_REVISION) == 0;
			char *ref = xasprintf("hf:%s:%s%s%s", repo_id, tag, dflt ? "" : "@",
					      dflt ? "" : rev);
			json_set_str(q, "ref", ref);
			free(ref);
			json_array_append_new(quants, q);
			json_object_set(by_tag, tag, q);
		}
		json_set_int(q, "size",
			     (long long)json_integer_value(json_object_get(q, "size")) +
				 (long long)f->size);
		json_array_append_new(json_object_get(q, "files"), json_string(f->path));
	}
	*out = doc;
	doc = NULL;
out:
	json_decref(by_tag);
	json_decref(doc);
	hf_listing_cleanup(&l);
	hf_client_cleanup(&c);
	return rc;
}
