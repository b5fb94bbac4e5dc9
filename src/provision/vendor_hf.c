/*
 * The Hugging Face vendor: hf:ORG/REPO[:SELECTOR][@REVISION].
 *
 * Plan: revision -> commit and the file names in one request (enough for
 * the already-available check), then the recursive tree listing at that
 * commit (sizes, LFS sha256), the selector rules of hfselect.h, and per file
 * a HEAD .../resolve/<commit>/<path> for its etag, size and CDN location.
 * Offline, the commit comes from refs/<revision> in the cache and the files
 * from the catalog; nothing touches the network.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/parse.h"
#include "core/util.h"
#include "provision/hfselect.h"
#include "provision/vendor.h"
#include "store/catalog.h"
#include "store/layout.h"
#include "store/store.h"

static int is_commit(const char *s)
{
	return strlen(s) == 40 && is_hex_lower(s, 40);
}

/*
 * Chooses files from l and gives the catalog id of the choice: one id per
 * revision, and the whole snapshot ('*') has an id of its own, so a
 * snapshot never takes the place of a model that is one of its files.
 */
static int select_id(struct prov_job *j, const struct hf_listing *l, const char *repo_id,
		     size_t *idx, size_t *n, char *id, size_t idsize, struct err *e)
{
	const struct model_ref *r = &j->ref;
	int rc =
	    hf_select(l, r->sel, r->selector, repo_id, j->req->cancel, idx, CAP_MODEL_FILES, n, e);
	if (rc)
		return rc;
	const char *first = r->sel == SEL_ALL ? "*" : l->files[idx[0]].path;
	if (ref_catalog_id_hf(r->org, r->repo, first, r->revision, id, idsize))
		return err_set(e, ERR_TOO_LARGE, "catalog id of %s is too long", repo_id);
	return 0;
}

struct path_at {
	const char *path;
	size_t at;
};

static int path_at_cmp(const void *a, const void *b)
{
	return strcmp(((const struct path_at *)a)->path, ((const struct path_at *)b)->path);
}

/*
 * The n files chosen from the names listing (idx), found by path in the tree
 * listing of the same commit, so that a pull selects once: one sort of the
 * tree's paths, then a binary search per chosen file. idx is rewritten to
 * indexes into tree. Returns 0, or -1 when a name is not in the tree (the
 * caller then selects from the tree) or the job was cancelled.
 */
static int find_in_tree(struct prov_job *j, const struct hf_listing *names,
			const struct hf_listing *tree, size_t *idx, size_t n)
{
	struct path_at *by = xcalloc(tree->n ? tree->n : 1, sizeof(*by));
	int rc = 0;
	for (size_t i = 0; i < tree->n; i++)
		by[i] = (struct path_at){tree->files[i].path, i};
	qsort(by, tree->n, sizeof(*by), path_at_cmp);
	for (size_t k = 0; k < n && rc == 0; k++) {
		struct path_at key = {names->files[idx[k]].path, 0};
		const struct path_at *hit = bsearch(&key, by, tree->n, sizeof(*by), path_at_cmp);
		if (!hit || prov_check_cancel(j, NULL))
			rc = -1;
		else
			idx[k] = hit->at;
	}
	free(by);
	return rc;
}

/* Offline: the commit from the cache's refs, else from a catalog model of that revision. */
static int offline_commit(struct prov_job *j, struct prov_plan *p, struct catalog_model *all,
			  size_t nall, struct err *e)
{
	const struct model_ref *r = &j->ref;
	if (is_commit(r->revision)) {
		snprintf(p->commit, sizeof(p->commit), "%s", r->revision);
		return 0;
	}
	if (layout_ref_read(j->ctx->layout, p->repo_dir, r->revision, p->commit, sizeof(p->commit),
			    NULL) == 0)
		return 0;
	for (size_t i = 0; i < nall; i++) {
		if (all[i].source == CATALOG_SRC_HF && strcasecmp(all[i].repo, p->repo) == 0 &&
		    strcmp(all[i].revision, r->revision) == 0) {
			snprintf(p->commit, sizeof(p->commit), "%s", all[i].commit);
			return 0;
		}
	}
	return err_set(e, ERR_OFFLINE, "offline: %s@%s is not in the local cache", p->repo,
		       r->revision);
}

/*
 * Adds the files of a snapshot folder another program left (huggingface_hub,
 * llama.cpp): each is a symlink to ../../blobs/<sha256> whose blob is there.
 * Anything else (a link elsewhere, a plain file, a bad name) is skipped.
 */
static void scan_snapshot(struct prov_job *j, const struct prov_plan *p, const char *dir,
			  const char *prefix, int depth, struct hf_listing *l)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	if (!d)
		return;
	while ((de = readdir(d)) != NULL && l->n < CAP_REPO_FILES && !prov_check_cancel(j, NULL)) {
		char full[4096], rel[CAP_REPO_PATH_LEN + 1], target[4096];
		struct stat st;
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fmt_buf(full, sizeof(full), "%s/%s", dir, de->d_name) ||
		    fmt_buf(rel, sizeof(rel), "%s%s", prefix, de->d_name) ||
		    path_check_repo(rel, strlen(rel), NULL) || lstat(full, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode) && depth < CAP_REPO_PATH_DEPTH) {
			char sub[CAP_REPO_PATH_LEN + 2];
			if (fmt_buf(sub, sizeof(sub), "%s/", rel) == 0)
				scan_snapshot(j, p, full, sub, depth + 1, l);
			continue;
		}
		ssize_t n = S_ISLNK(st.st_mode) ? readlink(full, target, sizeof(target) - 1) : -1;
		if (n < 64)
			continue;
		target[n] = '\0';
		const char *sha = target + n - 64;
		uint64_t size = 0;
		if (!is_hex_lower(sha, 64) || (n > 64 && sha[-1] != '/') ||
		    layout_blob_exists(j->ctx->layout, p->repo_dir, sha, &size) != 1)
			continue;
		hf_listing_add(l, rel, size, sha, NULL);
	}
	closedir(d);
}

/* Offline, a model the shared cache holds but the catalog does not: publish it from there. */
static int plan_from_snapshot(struct prov_job *j, struct prov_plan *p, struct err *e)
{
	struct hf_listing l;
	size_t *idx = NULL, n = 0;
	char dir[4096];
	int rc;
	hf_listing_init(&l);
	if (fmt_buf(dir, sizeof(dir), "%s/%s/snapshots/%s", layout_root(j->ctx->layout),
		    p->repo_dir, p->commit))
		return err_set(e, ERR_TOO_LARGE, "snapshot path too long");
	scan_snapshot(j, p, dir, "", 1, &l);
	idx = xcalloc(CAP_MODEL_FILES, sizeof(*idx));
	rc = prov_check_cancel(j, e);
	if (rc)
		goto out;
	struct err se = {0};
	if (select_id(j, &l, p->repo, idx, &n, p->id, sizeof(p->id), &se)) {
		rc = err_set(e, ERR_OFFLINE, "offline: %s is not available locally (%s)",
			     j->req->ref, err_msg(&se));
		goto out;
	}
	rc = 0;
	for (size_t i = 0; i < n; i++) {
		const struct hf_file *f = &l.files[idx[i]];
		prov_plan_add(p, f->path, f->size, 1, f->sha256, NULL)->present = 1;
	}
	prov_narrate(j, "offline: %s found in the local cache", p->id);
out:
	free(idx);
	hf_listing_cleanup(&l);
	return rc;
}

static int plan_offline(struct prov_job *j, struct prov_plan *p, struct prov_artifact *out,
			struct err *e)
{
	struct catalog_model *all = NULL;
	size_t nall = 0, n = 0;
	struct hf_listing l;
	size_t *idx = NULL;
	char id[PROV_ID_MAX];
	hf_listing_init(&l);
	int rc = catalog_model_list(j->cat, NULL, 0, 0, &all, &nall, e);
	if (rc)
		return rc;
	rc = offline_commit(j, p, all, nall, e);
	if (rc)
		goto out;
	for (size_t i = 0; i < nall; i++) {
		if (all[i].source != CATALOG_SRC_HF || strcasecmp(all[i].repo, p->repo) != 0 ||
		    strcmp(all[i].commit, p->commit) != 0)
			continue;
		for (size_t k = 0; k < all[i].nfiles; k++)
			hf_listing_add(&l, all[i].files[k].path, all[i].files[k].size,
				       all[i].files[k].sha256, NULL);
	}
	idx = xcalloc(CAP_MODEL_FILES, sizeof(*idx));
	if (select_id(j, &l, p->repo, idx, &n, id, sizeof(id), NULL) == 0 &&
	    prov_lookup_available(j, id, p->commit, out)) {
		rc = 1;
		goto out;
	}
	rc = plan_from_snapshot(j, p, e);
out:
	free(idx);
	hf_listing_cleanup(&l);
	catalog_model_list_free(all, nall);
	return rc;
}

/*
 * Checks blobs/<name> of the plan's repo folder against the listing's digest
 * of lf (hashing it once when the catalog has no fresh record of it). 1 when
 * it holds lf's content (its sha256 into sha), 0 when it must be fetched
 * (missing, another size, or damaged: said in the job's narration), or an
 * error.
 */
static int cache_holds(struct prov_job *j, struct prov_plan *p, const struct hf_file *lf,
		       const char *name, char sha[65], struct err *e)
{
	struct err sub = {0};
	int rc = store_blob_check(j->cat, j->ctx->layout, p->repo_dir, name,
				  lf->sha256[0] ? lf->sha256 : NULL, lf->sha256[0] ? NULL : lf->oid,
				  lf->size, p->rehash, j->ctx->shared_cache, j->req->cancel, sha,
				  NULL, &sub);
	if (rc == 0)
		return 1;
	if (rc != ERR_DIGEST)
		return rc == ERR_NOT_FOUND ? 0 : err_set(e, rc, "%s", err_msg(&sub));
	log_msg(LOG_WARN, j->req->job_id, "%s", err_msg(&sub));
	prov_narrate(j, "'%s' in the cache does not match the Hub's listing; fetching it again",
		     lf->path);
	return 0;
}

/*
 * A snapshot entry the cache already has for lf (huggingface_hub's, or
 * rbee-hive's from an earlier pull) is adopted as it is when its blob holds
 * the listed content: nothing is fetched or linked, and the link keeps its
 * owner. 1 when adopted, 0 when not, or an error.
 */
static int plan_entry(struct prov_job *j, struct prov_plan *p, const struct hf_file *lf,
		      struct err *e)
{
	char name[65], sha[65];
	if (!lf->sha256[0] && !lf->oid[0])
		return 0;
	if (layout_snapshot_entry(j->ctx->layout, p->repo_dir, p->commit, lf->path, name) != 1)
		return 0;
	int rc = cache_holds(j, p, lf, name, sha, e);
	if (rc != 1)
		return rc;
	struct prov_file *f = prov_plan_add(p, lf->path, lf->size, 1, sha, NULL);
	f->present = 1;
	f->keep_link = 1;
	/* In the private cache every link is rbee-hive's; in a shared one, those it recorded. */
	f->link_adopted = j->ctx->shared_cache &&
			  catalog_link_made(j->cat, p->repo_dir, p->commit, lf->path, NULL) != 1;
	if (strcmp(name, sha) != 0)
		snprintf(f->blob, sizeof(f->blob), "%s", name);
	return 1;
}

/* HEAD one selected file and check what the Hub says against the listing. */
static int plan_file(struct prov_job *j, struct prov_plan *p, const struct hf_file *lf,
		     struct err *e)
{
	struct prov_ctx *ctx = j->ctx;
	uint64_t have = 0;
	char sha[65];
	int rc = plan_entry(j, p, lf, e);
	if (rc)
		return rc < 0 ? rc : 0;
	/*
	 * An LFS blob the cache already holds (ours, huggingface_hub's,
	 * llama.cpp's) needs no request once it checks out.
	 */
	if (lf->sha256[0] && layout_blob_exists(ctx->layout, p->repo_dir, lf->sha256, &have) == 1 &&
	    have == lf->size) {
		rc = cache_holds(j, p, lf, lf->sha256, sha, e);
		if (rc < 0)
			return rc;
		if (rc == 1) {
			prov_plan_add(p, lf->path, lf->size, 1, lf->sha256, NULL)->present = 1;
			return 0;
		}
	}
	struct hf_file_meta m;
	rc = hf_head_file(&ctx->hf, p->org, p->name, p->commit, lf->path, j->req->cancel, &m, e);
	if (rc)
		return rc;
	if (strcmp(m.commit, p->commit) != 0)
		return err_set(e, ERR_NETWORK,
			       "'%s' in %s: the Hub answered for commit %.12s, not %.12s", lf->path,
			       p->repo, m.commit, p->commit);
	if (m.size != lf->size)
		return err_set(
		    e, ERR_DIGEST, "'%s' in %s: the listing says %llu bytes but the file has %llu",
		    lf->path, p->repo, (unsigned long long)lf->size, (unsigned long long)m.size);
	int lfs = strlen(m.etag) == 64;
	if (lf->sha256[0] && (!lfs || strcmp(m.etag, lf->sha256) != 0))
		return err_set(e, ERR_DIGEST,
			       "'%s' in %s: the listing's sha256 differs from the Hub's etag",
			       lf->path, p->repo);
	/*
	 * A file git stores itself (not LFS) is named by its git blob id: the
	 * listing's oid, which the Hub's ETag repeats. Its bytes are checked
	 * against that id while downloading; the sha256 that names its blob is
	 * learnt on the way.
	 */
	if (!lfs && lf->oid[0] && strcmp(lf->oid, m.etag) != 0)
		return err_set(
		    e, ERR_DIGEST,
		    "'%s' in %s: the listing's git blob id %s differs from the Hub's etag %s",
		    lf->path, p->repo, lf->oid, m.etag);
	struct prov_file *f = prov_plan_add(p, lf->path, m.size, 1, lfs ? m.etag : NULL, m.url);
	f->url_is_hub = m.url_is_hub;
	f->from_peers = lfs;
	if (!lfs)
		snprintf(f->git_sha1, sizeof(f->git_sha1), "%s", m.etag);
	return 0;
}

static int hf_plan(struct prov_job *j, struct prov_plan *p, struct prov_artifact *out,
		   struct err *e)
{
	const struct model_ref *r = &j->ref;
	struct prov_ctx *ctx = j->ctx;
	struct hf_listing names, tree;
	size_t *idx = NULL, n = 0;
	char id[PROV_ID_MAX];
	int rc;
	hf_listing_init(&names);
	hf_listing_init(&tree);
	p->kind = REF_HF;
	snprintf(p->org, sizeof(p->org), "%s", r->org);
	snprintf(p->name, sizeof(p->name), "%s", r->repo);
	snprintf(p->repo, sizeof(p->repo), "%s/%s", r->org, r->repo);
	snprintf(p->revision, sizeof(p->revision), "%s", r->revision);
	rc = layout_repo_dir_hf(r->org, r->repo, p->repo_dir, sizeof(p->repo_dir), e);
	if (rc)
		return rc;
	if (ctx->hf.offline) {
		/* No Hub to ask whether the repo is gated: the catalog records unknown. */
		p->gated = CATALOG_GATED_UNKNOWN;
		return plan_offline(j, p, out, e);
	}

	idx = xcalloc(CAP_MODEL_FILES, sizeof(*idx));
	rc = hf_resolve_commit(&ctx->hf, r->org, r->repo, r->revision, j->req->cancel, p->commit,
			       &names, &p->gated, e);
	if (rc)
		goto out;
	/* The one metadata request of an already-available model. */
	struct err se = {0};
	int chosen = names.n && select_id(j, &names, p->repo, idx, &n, id, sizeof(id), &se) == 0;
	if (chosen && prov_lookup_available(j, id, p->commit, out)) {
		catalog_model_set_gated(j->cat, id, p->gated, NULL);
		if (!is_commit(r->revision))
			layout_ref_write(ctx->layout, p->repo_dir, r->revision, p->commit, NULL);
		rc = 1;
		goto out;
	}
	rc = prov_check_cancel(j, e);
	if (rc)
		goto out;
	rc = hf_list_tree(&ctx->hf, r->org, r->repo, p->commit, j->req->cancel, &tree, e);
	if (rc)
		goto out;
	if (!chosen || find_in_tree(j, &names, &tree, idx, n) != 0) {
		rc = select_id(j, &tree, p->repo, idx, &n, id, sizeof(id), e);
		if (rc)
			goto out;
	}
	snprintf(p->id, sizeof(p->id), "%s", id);
	prov_narrate(j, "%s@%.12s: %zu file%s", p->repo, p->commit, n, n == 1 ? "" : "s");
	/* verify found it bad: what the records say of its blobs no longer counts. */
	struct catalog_model old = {0};
	if (catalog_model_get(j->cat, id, &old, NULL) == 0 && old.status == CATALOG_FAILED) {
		p->rehash = 1;
		prov_narrate(j, "%s was found damaged; checking each of its files", id);
	}
	catalog_model_cleanup(&old);
	for (size_t i = 0; i < n; i++) {
		rc = prov_check_cancel(j, e);
		if (rc)
			goto out;
		rc = plan_file(j, p, &tree.files[idx[i]], e);
		if (rc)
			goto out;
	}
	/* A commit given as the revision is not a ref name (huggingface_hub writes none either). */
	p->write_ref = !is_commit(r->revision);
	rc = 0;
out:
	free(idx);
	hf_listing_cleanup(&names);
	hf_listing_cleanup(&tree);
	return rc;
}

const struct prov_vendor prov_vendor_hf = {
    .name = "huggingface",
    .kind = REF_HF,
    .plan = hf_plan,
    .fetch = NULL,
};
