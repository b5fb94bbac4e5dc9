/*
 * The OCI vendors: oci://REGISTRY/NAME[:TAG|@sha256:HEX] (Docker Model
 * Runner and CNCF ModelPack artifacts; docker.io/NAME is Docker Hub) and
 * ollama:[USER/]NAME[:TAG] (the Ollama library, at registry.ollama.ai or
 * RBEE_HIVE_OLLAMA_REGISTRY). Both are the OCI distribution protocol: the
 * manifest (through oci.h) gives the layers, each a blob named by the
 * sha256 of the file, fetched by the shared transfers like a Hub file and
 * verified against that digest. A blob another source already stored (the
 * same GGUF from hf:) is hard-linked, not fetched.
 *
 * Stored under oci--REGISTRY--NAME/: blobs/<sha256>, snapshots/<manifest
 * sha256>/<file>, refs/<tag> (docs/store.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/url.h"
#include "core/util.h"
#include "provision/oci.h"
#include "provision/vendor.h"
#include "store/layout.h"

#define OLLAMA_REGISTRY_DEFAULT "https://registry.ollama.ai"
#define OLLAMA_REGISTRY_ENV "RBEE_HIVE_OLLAMA_REGISTRY"

/*
 * scheme://HOST[:PORT] of the ref's registry. As Docker does, plain HTTP
 * only to a registry on this machine; the URL policy checks it again.
 */
static int registry_base(const struct model_ref *r, char *buf, size_t size, struct err *e)
{
	if (r->kind == REF_OLLAMA) {
		const char *env = getenv(OLLAMA_REGISTRY_ENV);
		const char *b = env && env[0] ? env : OLLAMA_REGISTRY_DEFAULT;
		size_t n = strlen(b);
		while (n && b[n - 1] == '/')
			n--;
		if (fmt_buf(buf, size, "%.*s", (int)n, b))
			return err_set(e, ERR_TOO_LARGE, "%s too long", OLLAMA_REGISTRY_ENV);
		return 0;
	}
	char probe[sizeof(r->host) + 16];
	struct url_parts u;
	snprintf(probe, sizeof(probe), "https://%s/", r->host);
	int rc = url_parse(probe, &u, e);
	if (rc)
		return rc;
	return fmt_buf(buf, size, "%s://%s", url_host_is_loopback(u.host) ? "http" : "https",
		       r->host)
		   ? err_set(e, ERR_TOO_LARGE, "registry URL too long")
		   : 0;
}

/* The plan of a manifest's layers: a file per layer, present when its blob is already there. */
static int plan_layers(struct prov_job *j, struct prov_plan *p, const struct oci_registry *reg,
		       const struct oci_manifest *m, struct err *e)
{
	for (size_t i = 0; i < m->n; i++) {
		const struct oci_layer *l = &m->layers[i];
		char url[CAP_URL_LEN + 1];
		if (oci_blob_url(reg, l->sha256, url, sizeof(url)))
			return err_set(e, ERR_TOO_LARGE, "blob URL too long");
		struct prov_file *f = prov_plan_add(p, l->path, l->size, 1, l->sha256, url);
		uint64_t have = 0;
		if (layout_blob_exists(j->ctx->layout, p->repo_dir, l->sha256, &have) == 1 &&
		    have == l->size)
			f->present = 1;
	}
	return 0;
}

static int oci_plan(struct prov_job *j, struct prov_plan *p, struct prov_artifact *out,
		    struct err *e)
{
	const struct model_ref *r = &j->ref;
	struct prov_ctx *ctx = j->ctx;
	struct oci_registry reg;
	struct oci_manifest m = {0};
	char base[CAP_URL_LEN + 1], digest[65];
	p->kind = r->kind;
	int rc = ref_catalog_id_oci(r, p->id, sizeof(p->id));
	if (rc)
		return err_set(e, rc, "model ref too long");
	/* The repository is the id without its tag or digest (tags have no ':', names no '@'). */
	size_t cut = (size_t)((r->sha256[0] ? strrchr(p->id, '@') : strrchr(p->id, ':')) - p->id);
	snprintf(p->repo, sizeof(p->repo), "%.*s", (int)cut, p->id);
	snprintf(p->revision, sizeof(p->revision), "%s", r->revision);
	rc = registry_base(r, base, sizeof(base), e);
	if (rc == 0)
		rc = oci_registry_init(&reg, &ctx->hf, base, r->name, p->id,
				       ctx->registry_auth[0] ? ctx->registry_auth : NULL,
				       j->req->cancel, e);
	if (rc)
		return rc;
	rc = layout_repo_dir_oci(reg.host, r->name, p->repo_dir, sizeof(p->repo_dir), e);
	if (rc)
		goto out;
	/* A pinned manifest names its content: no request when it is here. */
	if (r->sha256[0] && prov_lookup_available(j, p->id, r->sha256, out)) {
		rc = 1;
		goto out;
	}
	if (ctx->hf.offline) {
		rc = prov_lookup_available(j, p->id, NULL, out)
			 ? 1
			 : err_set(e, ERR_OFFLINE, "offline: %s is not available locally", p->id);
		goto out;
	}
	rc = oci_manifest_get(&reg, r->revision, digest, &m, e);
	if (rc)
		goto out;
	if (m.n_weights == 0) {
		rc = err_set(e, ERR_UNPROCESSABLE,
			     "%.200s: the manifest has no GGUF layer (%zu layers of other types): "
			     "not a model rbee-hive can pull",
			     p->id, m.n_skipped + m.n);
		goto out;
	}
	snprintf(p->commit, sizeof(p->commit), "%s", digest);
	p->write_ref = !r->sha256[0];
	if (prov_lookup_available(j, p->id, digest, out)) {
		rc = 1;
		goto out;
	}
	rc = plan_layers(j, p, &reg, &m, e);
	if (rc)
		goto out;
	/* What the registry accepted goes with each blob request, to its own origin only. */
	if (reg.bearer || reg.basic) {
		p->auth_token = xstrdup(reg.bearer ? reg.bearer : reg.basic);
		p->auth_basic = !reg.bearer;
		p->auth_origin = xstrdup(reg.base);
	}
	prov_narrate(j, "%s@sha256:%.12s: %zu files (%zu GGUF)%s", p->repo, digest, m.n,
		     m.n_weights, m.n_skipped ? ", other layers skipped" : "");
out:
	oci_manifest_cleanup(&m);
	oci_registry_cleanup(&reg);
	return rc;
}

const struct prov_vendor prov_vendor_oci = {
    .name = "oci",
    .kind = REF_OCI,
    .plan = oci_plan,
};

const struct prov_vendor prov_vendor_ollama = {
    .name = "ollama",
    .kind = REF_OLLAMA,
    .plan = oci_plan,
};
