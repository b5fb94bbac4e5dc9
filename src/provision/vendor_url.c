/*
 * The URL vendor: https://HOST/PATH[#sha256=HEX]. One HEAD (following
 * redirects, HTTPS only) for size, ETag and range support, then the same
 * transfer path as Hub files. With a pinned digest the bytes are verified
 * against it and the model is known before the download; without one the
 * computed digest names the blob and the model.
 *
 * Stored under urls--HOST/: blobs/<sha256>, snapshots/<sha256>/<file name>.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/parse.h"
#include "core/util.h"
#include "provision/vendor.h"
#include "store/catalog.h"
#include "store/layout.h"

/* The file name of the URL's path (before '?'), or "download" when it has none that is safe. */
void prov_url_file_name(const char *url, char *buf, size_t size)
{
	const char *q = strchr(url, '?');
	size_t len = q ? (size_t)(q - url) : strlen(url);
	const char *start = url;
	for (size_t i = 0; i < len; i++)
		if (url[i] == '/')
			start = url + i + 1;
	size_t n = (size_t)(url + len - start);
	snprintf(buf, size, "%.*s", (int)n, start);
	if (!buf[0] || path_check_repo(buf, strlen(buf), NULL) || strchr(buf, '%'))
		snprintf(buf, size, "download");
}

/* An unpinned URL pulled before: the newest model recorded for exactly this URL. */
static int prov_url_find(struct prov_job *j, const char *url, struct prov_artifact *out)
{
	struct catalog_model *all = NULL;
	size_t n = 0;
	int found = 0;
	if (catalog_model_list(j->cat, NULL, 0, 0, &all, &n, NULL))
		return 0;
	for (size_t i = 0; i < n && !found; i++)
		if (all[i].source == CATALOG_SRC_URL && strcmp(all[i].repo, url) == 0)
			found = prov_lookup_available(j, all[i].id, NULL, out);
	catalog_model_list_free(all, n);
	return found;
}

int prov_url_plan_start(struct prov_job *j, struct prov_plan *p, const char *host,
			struct prov_artifact *out, struct err *e)
{
	const struct model_ref *r = &j->ref;
	p->kind = REF_URL;
	snprintf(p->repo, sizeof(p->repo), "%s", r->url);
	int rc = layout_repo_dir_url(host, p->repo_dir, sizeof(p->repo_dir), e);
	if (rc)
		return rc;
	if (r->sha256[0]) {
		snprintf(p->commit, sizeof(p->commit), "%s", r->sha256);
		ref_catalog_id_url(r->sha256, p->id, sizeof(p->id));
		if (prov_lookup_available(j, p->id, NULL, out))
			return 1;
	} else if (prov_url_find(j, r->url, out)) {
		/* Unpinned content is fetched once; pin #sha256= or remove the model to fetch
		 * again. */
		return 1;
	}
	if (j->ctx->hf.offline)
		return err_set(e, ERR_OFFLINE, "offline: %s is not available locally", r->url);
	return 0;
}

static int url_plan(struct prov_job *j, struct prov_plan *p, struct prov_artifact *out,
		    struct err *e)
{
	const struct model_ref *r = &j->ref;
	struct prov_ctx *ctx = j->ctx;
	char name[256];
	int rc = prov_url_plan_start(j, p, r->host, out, e);
	if (rc)
		return rc;
	struct hf_resp h = {0};
	rc = hf_request(&ctx->hf, "HEAD", r->url, HF_REDIRECT_ANY, j->req->cancel, &h, e);
	if (rc)
		goto out;
	if (h.status < 200 || h.status >= 300) {
		rc = err_set(e, h.status == 404 ? ERR_NOT_FOUND : ERR_NETWORK,
			     "%s answered HTTP %ld", r->url, h.status);
		goto out;
	}
	prov_url_file_name(r->url, name, sizeof(name));
	struct prov_file *f =
	    prov_plan_add(p, name, h.has_size ? h.size : 0, h.has_size, r->sha256, h.final_url);
	if (!h.accept_ranges)
		prov_narrate(j, "%s does not announce range support: one connection", r->url);
	if (r->sha256[0]) {
		uint64_t have = 0;
		if (layout_blob_exists(ctx->layout, p->repo_dir, r->sha256, &have) == 1 &&
		    (!h.has_size || have == h.size))
			f->present = 1;
	}
	rc = 0;
out:
	hf_resp_cleanup(&h);
	return rc;
}

int prov_url_fetch(struct prov_job *j, struct prov_plan *p, struct err *e)
{
	int rc = prov_fetch_http(j, p, e);
	if (rc || p->commit[0])
		return rc;
	/* Unpinned: the computed digest names the snapshot and the model. */
	snprintf(p->commit, sizeof(p->commit), "%s", p->files[0].sha256);
	ref_catalog_id_url(p->files[0].sha256, p->id, sizeof(p->id));
	p->total = p->files[0].size;
	return 0;
}

const struct prov_vendor prov_vendor_url = {
    .name = "url",
    .kind = REF_URL,
    .plan = url_plan,
    .fetch = prov_url_fetch,
};
