/*
 * The multi-vendor provisioner: parses the ref, routes it to its vendor
 * through a table, and runs plan -> fetch -> publish with events and cancel
 * checks between every step.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cancel.h"
#include "core/log.h"
#include "core/util.h"
#include "fetch/s3.h"
#include "fetch/xfer.h"
#include "provision/provision.h"
#include "provision/share.h"
#include "provision/vendor.h"
#include "store/catalog.h"
#include "store/layout.h"
#include "store/store.h"

static const char *const phase_names[PROV__PHASES] = {
    [PROV_RESOLVING] = "resolving", [PROV_DOWNLOADING] = "downloading",
    [PROV_VERIFYING] = "verifying", [PROV_PUBLISHING] = "publishing",
    [PROV_UPLOADING] = "uploading",
};

static const char *const source_names[PROV__SOURCES] = {
    [PROV_SRC_CACHE] = "cache",
    [PROV_SRC_PEER] = "peer",
    [PROV_SRC_S3] = "s3",
    [PROV_SRC_CDN] = "cdn",
};

const char *prov_source_name(enum prov_source s)
{
	return (unsigned)s < PROV__SOURCES ? source_names[s] : "unknown";
}

int prov_blob_store_on(const struct prov_ctx *ctx)
{
	return ctx->s3 && ctx->s3->bucket[0];
}

void prov_source_add(struct prov_ctx *ctx, enum prov_source src, uint64_t n)
{
	if ((unsigned)src < PROV__SOURCES)
		atomic_fetch_add(&ctx->src_bytes[src], n);
}

const char *prov_phase_name(enum prov_phase p)
{
	return (unsigned)p < PROV__PHASES ? phase_names[p] : "unknown";
}

static const struct prov_vendor *const vendors[] = {
    &prov_vendor_hf, &prov_vendor_url, &prov_vendor_file,
    &prov_vendor_s3, &prov_vendor_oci, &prov_vendor_ollama,
};

struct multi_provisioner {
	struct provisioner base;
	struct prov_ctx ctx;
};

static const struct prov_vendor *vendor_for(enum ref_kind kind)
{
	for (size_t i = 0; i < sizeof(vendors) / sizeof(vendors[0]); i++)
		if (vendors[i]->kind == kind)
			return vendors[i];
	return NULL;
}

static int multi_provision(struct provisioner *base, const struct prov_request *req,
			   struct prov_artifact *out, struct err *e)
{
	struct multi_provisioner *mp = (struct multi_provisioner *)base;
	struct prov_job j = {.ctx = &mp->ctx, .req = req};
	struct prov_plan plan = {0};
	int rc;
	memset(out, 0, sizeof(*out));
	err_clear(e);
	rc = ref_parse(req->ref, &j.ref, e);
	if (rc)
		return rc;
	const struct prov_vendor *v = vendor_for(j.ref.kind);
	if (!v)
		return err_set(e, ERR_UNPROCESSABLE, "model ref '%.80s': no vendor provides it",
			       req->ref);
	rc = catalog_open(mp->ctx.db_path, &j.cat, e);
	if (rc)
		return rc;
	prov_job_phase(&j, PROV_RESOLVING, NULL);
	prov_narrate(&j, "resolving %s", req->ref);
	rc = prov_check_cancel(&j, e);
	if (rc)
		goto out;
	rc = v->plan(&j, &plan, out, e);
	if (rc < 0)
		goto out;
	if (rc == 1) {
		rc = 0;
		prov_narrate(&j, "%s is already available", out->id);
		goto out;
	}
	j.files_total = (int)plan.n;
	j.bytes_total = plan.total;
	rc = prov_check_cancel(&j, e);
	if (rc)
		goto out;
	rc = (v->fetch ? v->fetch : prov_fetch_http)(&j, &plan, e);
	if (rc)
		goto out;
	rc = prov_check_cancel(&j, e);
	if (rc)
		goto out;
	rc = prov_publish(&j, &plan, out, e);
	if (rc == 0) {
		char size[FMT_SIZE_LEN];
		fmt_size(size, sizeof(size), out->size);
		prov_narrate(&j, "%s is available (%s)", out->id, size);
		out->store_pending = j.store_pending;
	}
out:
	if (rc && rc != ERR_CANCELLED)
		log_msg(LOG_WARN, req->job_id, "provisioning %.200s failed: %s", req->ref,
			err_msg(e));
	prov_plan_cleanup(&plan);
	catalog_close(j.cat);
	return rc;
}

static void multi_free(struct provisioner *base)
{
	struct multi_provisioner *mp = (struct multi_provisioner *)base;
	prov_share_free(mp->ctx.share);
	if (mp->ctx.s3)
		s3_store_cleanup(mp->ctx.s3);
	free(mp->ctx.s3);
	xfer_engine_free(mp->ctx.engine);
	layout_free(mp->ctx.layout);
	prov_file_roots_cleanup(&mp->ctx);
	hf_client_cleanup(&mp->ctx.hf);
	free(mp);
}

static int multi_upload(struct provisioner *base, const struct prov_request *req, struct err *e)
{
	struct multi_provisioner *mp = (struct multi_provisioner *)base;
	return prov_store_upload(&mp->ctx, req, e);
}

static void multi_bytes(struct provisioner *base, struct prov_bytes *out)
{
	struct multi_provisioner *mp = (struct multi_provisioner *)base;
	for (int i = 0; i < PROV__SOURCES; i++)
		out->from[i] = atomic_load(&mp->ctx.src_bytes[i]);
	out->uploaded = atomic_load(&mp->ctx.uploaded_bytes);
}

static const struct provisioner_ops multi_ops = {
    .name = "multi",
    .provision = multi_provision,
    .free = multi_free,
    .upload = multi_upload,
    .bytes = multi_bytes,
};

int provisioner_new(const struct prov_config *cfg, struct provisioner **out, struct err *e)
{
	struct multi_provisioner *mp = xcalloc(1, sizeof(*mp));
	struct prov_ctx *ctx = &mp->ctx;
	struct catalog *cat = NULL;
	mp->base.ops = &multi_ops;
	*out = NULL;
	struct store_paths sp;
	int rc = store_paths_resolve(cfg->data_root, cfg->hf_cache, hf_env_shares_cache(), &sp, e);
	if (rc == 0)
		rc = store_paths_prepare(&sp, e);
	if (rc)
		goto fail;
	if (fmt_buf(ctx->data_root, sizeof(ctx->data_root), "%s", sp.root) ||
	    fmt_buf(ctx->hub_dir, sizeof(ctx->hub_dir), "%s", sp.hub) ||
	    fmt_buf(ctx->db_path, sizeof(ctx->db_path), "%s", sp.catalog)) {
		rc = err_set(e, ERR_TOO_LARGE, "data folder path too long");
		goto fail;
	}
	ctx->shared_cache = sp.shared;
	if (cfg->registry_auth && cfg->registry_auth[0] &&
	    !realpath(cfg->registry_auth, ctx->registry_auth)) {
		rc = err_set(e, ERR_INVALID, "--registry-auth %.200s: %s", cfg->registry_auth,
			     strerror(errno));
		goto fail;
	}
	rc = prov_file_roots_init(ctx, cfg, e);
	if (rc)
		goto fail;
	struct prov_config c = *cfg;
	c.data_root = ctx->data_root;
	rc = hf_client_init(&ctx->hf, &c, e);
	if (rc)
		goto fail;
	/* Opening once migrates the schema before any worker opens its own connection. */
	rc = catalog_open(ctx->db_path, &cat, e);
	if (rc)
		goto fail;
	catalog_close(cat);
	rc = layout_open(ctx->hub_dir, &ctx->layout, e);
	if (rc)
		goto fail;
	struct xfer_config xc = {
	    .connections = cfg->connections,
	    .stall_timeout_s = cfg->stall_timeout_s,
	    .limit_rate = cfg->limit_rate,
	    .max_unknown_size = cfg->max_unknown_size,
	    .user_agent = ctx->hf.user_agent,
	};
	rc = xfer_engine_new(&xc, &ctx->engine, e);
	if (rc)
		goto fail;
	if (cfg->blob_store || cfg->s3_endpoint) {
		ctx->s3 = xcalloc(1, sizeof(*ctx->s3));
		rc = s3_store_init(ctx->s3, cfg->blob_store, cfg->s3_endpoint, cfg->s3_region,
				   cfg->s3_access_key, cfg->s3_secret, e);
		if (rc == 0 && cfg->s3_part_size && cfg->s3_part_size < S3_MIN_PART)
			rc = err_set(e, ERR_INVALID, "--s3-part-size: at least %llu bytes",
				     (unsigned long long)S3_MIN_PART);
		if (rc) {
			s3_store_cleanup(ctx->s3);
			free(ctx->s3);
			ctx->s3 = NULL;
			goto fail;
		}
		ctx->s3->part_size = cfg->s3_part_size ? cfg->s3_part_size : S3_DEFAULT_PART;
		ctx->s3->limit_rate = cfg->s3_limit_rate;
		ctx->s3->user_agent = ctx->hf.user_agent;
		log_info("provisioner: S3 at %s, blob store %s", ctx->s3->endpoint,
			 cfg->blob_store ? cfg->blob_store : "none (s3:// refs only)");
	}
	prov_share_new(ctx, &ctx->share);
	log_info("provisioner: data %s, hub cache %s, endpoint %s%s", ctx->data_root, ctx->hub_dir,
		 ctx->hf.endpoint, ctx->hf.offline ? ", offline" : "");
	for (size_t i = 0; i < ctx->n_import_dirs; i++)
		log_info("provisioner: file:// refs may import from %s", ctx->import_dirs[i]);
	*out = &mp->base;
	return 0;
fail:
	multi_free(&mp->base);
	return rc;
}
