/*
 * The multi-vendor provisioner: parses the ref, routes it to its vendor
 * through a table, and runs plan -> fetch -> publish with events and cancel
 * checks between every step.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cancel.h"
#include "core/log.h"
#include "core/util.h"
#include "fetch/xfer.h"
#include "provision/provision.h"
#include "provision/share.h"
#include "provision/vendor.h"
#include "store/catalog.h"
#include "store/layout.h"
#include "store/store.h"

static const char *const phase_names[PROV__PHASES] = {
    [PROV_RESOLVING] = "resolving",
    [PROV_DOWNLOADING] = "downloading",
    [PROV_VERIFYING] = "verifying",
    [PROV_PUBLISHING] = "publishing",
};

const char *prov_phase_name(enum prov_phase p)
{
	return (unsigned)p < PROV__PHASES ? phase_names[p] : "unknown";
}

static const struct prov_vendor *const vendors[] = {
    &prov_vendor_hf,
    &prov_vendor_url,
    &prov_vendor_file,
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
	xfer_engine_free(mp->ctx.engine);
	layout_free(mp->ctx.layout);
	prov_file_roots_cleanup(&mp->ctx);
	hf_client_cleanup(&mp->ctx.hf);
	for (size_t i = 0; i < mp->ctx.n_peers; i++)
		free(mp->ctx.peers[i]);
	free(mp);
}

static const struct provisioner_ops multi_ops = {
    .name = "multi",
    .provision = multi_provision,
    .free = multi_free,
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
	for (size_t i = 0; i < cfg->n_peers && i < CAP_PEERS; i++)
		ctx->peers[ctx->n_peers++] = xstrdup(cfg->peers[i]);
	ctx->peer_rank = cfg->peer_rank;
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
