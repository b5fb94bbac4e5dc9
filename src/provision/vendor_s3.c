/*
 * The S3 vendor: s3://BUCKET/KEY[#sha256=HEX], an object of the site's S3
 * store, for sites that keep their own models in a bucket. A signed HEAD
 * for the size, then the same transfer path as a URL, every request signed
 * with the store's credentials (--s3-endpoint, fetch/s3.h). The model is a
 * URL model (url:<sha256 prefix>, its repo the s3:// ref), stored under
 * urls--<endpoint host>/.
 */
#include <stdio.h>
#include <string.h>

#include "core/url.h"
#include "core/util.h"
#include "fetch/s3.h"
#include "provision/vendor.h"
#include "store/layout.h"

static int s3_plan(struct prov_job *j, struct prov_plan *p, struct prov_artifact *out,
		   struct err *e)
{
	const struct model_ref *r = &j->ref;
	struct prov_ctx *ctx = j->ctx;
	if (!ctx->s3)
		return err_set(e, ERR_UNPROCESSABLE,
			       "model ref '%.200s': s3:// refs need --s3-endpoint and credentials",
			       r->url);
	struct url_parts u;
	int rc = url_parse(ctx->s3->endpoint, &u, e);
	if (rc == 0)
		rc = prov_url_plan_start(j, p, u.host, out, e);
	if (rc)
		return rc;
	uint64_t size = 0;
	char url[CAP_URL_LEN], name[256];
	rc = s3_head(ctx->s3, r->host, r->path, j->req->cancel, &size, e);
	if (rc == 0)
		rc = s3_url(ctx->s3, r->host, r->path, NULL, 0, url, sizeof(url), e);
	if (rc)
		return rc;
	prov_url_file_name(r->path, name, sizeof(name));
	struct prov_file *f = prov_plan_add(p, name, size, 1, r->sha256, url);
	f->url_is_store = 1;
	uint64_t have = 0;
	if (r->sha256[0] && layout_blob_exists(ctx->layout, p->repo_dir, r->sha256, &have) == 1 &&
	    have == size)
		f->present = 1;
	return 0;
}

const struct prov_vendor prov_vendor_s3 = {
    .name = "s3",
    .kind = REF_S3,
    .plan = s3_plan,
    .fetch = prov_url_fetch,
};
