/*
 * The vendor-independent half of provisioning: fetch a plan's files through
 * the shared-transfer table, link them into the snapshot, read the GGUF facts
 * and record the model in the catalog, plus the already-available check.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "core/cancel.h"
#include "core/log.h"
#include "core/util.h"
#include "provision/hfselect.h"
#include "provision/share.h"
#include "provision/vendor.h"
#include "store/catalog.h"
#include "store/gguf.h"
#include "store/layout.h"
#include "store/store.h"

#define PROV_POLL_MS 25
/* How long the first event of a file waits for its transfer to be set up. */
#define PROV_SETUP_WAIT_MS 1000
/* How long publishing waits for a blob lock another program holds. */
#define PROV_LOCK_TIMEOUT_MS 60000

/* Makes blobs/<sha256> of the plan's repo folder present, taken from where it was committed. */
static int adopt_into(struct prov_job *j, struct prov_plan *p, struct prov_file *f,
		      const char *from_dir, struct err *e)
{
	struct layout *l = j->ctx->layout;
	int fd = -1;
	enum layout_adopt how = LAYOUT_ADOPT_NONE;
	int rc = layout_blob_lock(l, p->repo_dir, f->sha256, PROV_LOCK_TIMEOUT_MS, j->req->cancel,
				  &fd, e);
	if (rc)
		return rc;
	rc = layout_adopt_blob(l, p->repo_dir, f->sha256, f->size, from_dir, &how, e);
	layout_blob_unlock(fd);
	if (rc == 0 && how == LAYOUT_ADOPT_NONE)
		rc = err_set(e, ERR_CONFLICT, "blob of '%s' vanished from the cache; try again",
			     f->path);
	/* A blob rbee-hive links or copies is its own; publishing hashes it before trusting it. */
	if (rc == 0 && how != LAYOUT_ADOPT_PRESENT)
		prov_blob_made(j->cat, l, p->repo_dir, f->sha256, how == LAYOUT_ADOPT_COPIED);
	return rc;
}

static int fetch_one(struct prov_job *j, struct prov_plan *p, size_t index, struct err *e)
{
	struct prov_file *f = &p->files[index];
	struct prov_blob_req req = {
	    .repo_dir = p->repo_dir,
	    .sha256 = f->sha256,
	    .git_sha1 = f->git_sha1,
	    .size = f->size,
	    .size_known = f->size_known,
	    .url = f->url,
	    .url_is_hub = f->url_is_hub,
	    .auth_token = p->auth_token,
	    .auth_origin = p->auth_origin,
	    .auth_basic = p->auth_basic,
	    .url_is_store = f->url_is_store,
	    .org = p->kind == REF_HF ? p->org : NULL,
	    .repo = p->kind == REF_HF ? p->name : NULL,
	    .commit = p->kind == REF_HF ? p->commit : NULL,
	    .path = p->kind == REF_HF ? f->path : NULL,
	    .log_id = j->req->job_id,
	};
	struct prov_blob *b = NULL;
	int started = 0;
	int rc = prov_share_join(j->ctx->share, &req, &b, &started, e);
	if (rc)
		return rc;
	/*
	 * The first event of the phase already counts the bytes a resumed
	 * transfer keeps. The engine knows them once the transfer is set up,
	 * which waits for the blob lock: a transfer cancelled a moment ago may
	 * still be saving its ranges. After a short wait the catalog's resume
	 * state stands in (another program may hold the lock for long).
	 */
	struct xfer_progress xp;
	int known = 0;
	for (int64_t until = now_ms() + PROV_SETUP_WAIT_MS;;) {
		known = prov_share_progress(b, &xp);
		if (known || now_ms() >= until)
			break;
		if (prov_check_cancel(j, e)) {
			prov_share_leave(b);
			return ERR_CANCELLED;
		}
		prov_share_wait(b, PROV_POLL_MS);
	}
	if (known)
		j->file_bytes = xp.bytes_done;
	else if (f->size_known)
		j->file_bytes = prov_share_resumed(j->cat, p->repo_dir, f->sha256, f->size);
	char size[FMT_SIZE_LEN] = "size unknown";
	if (f->size_known)
		fmt_size(size, sizeof(size), f->size);
	prov_job_phase(j, PROV_DOWNLOADING, f->path);
	prov_narrate(j, "downloading %s (file %zu of %zu, %s)", f->path, index + 1, p->n, size);
	if (!started)
		prov_narrate(j, "'%s' is already being downloaded for another job; sharing it",
			     f->path);
	int said_wait = 0;
	for (;;) {
		int done = prov_share_wait(b, PROV_POLL_MS);
		char lock[4096];
		if (!said_wait && prov_share_lock_wait(b, lock, sizeof(lock))) {
			said_wait = 1;
			prov_narrate(j, "waiting for %s: another program is writing it (lock %s)",
				     f->path, lock);
		}
		/* Until the transfer is set up, the resumed count stands. */
		if (prov_share_progress(b, &xp) || done) {
			if (!f->size_known && xp.total) {
				j->bytes_total += xp.total;
				f->size = xp.total;
				f->size_known = 1;
				j->file_size = xp.total;
			}
			prov_job_bytes(j, xp.bytes_done, xp.rate_bps, done);
			if (done)
				break;
		}
		if (prov_check_cancel(j, e)) {
			/* Leaving cancels the transfer only when no other job waits for it. */
			prov_share_leave(b);
			return ERR_CANCELLED;
		}
	}
	char sha[65], dir[256];
	int adopted = 0;
	rc = prov_share_result(b, sha, dir, &adopted, e);
	enum prov_source from = prov_share_source(b);
	prov_share_leave(b);
	if (rc) {
		if (rc == ERR_CANCELLED && !prov_check_cancel(j, NULL))
			err_set(e, ERR_CANCELLED, "the transfer of '%s' was cancelled", f->path);
		return rc;
	}
	if (f->sha256[0] && strcmp(f->sha256, sha) != 0)
		return err_set(e, ERR_DIGEST, "'%s': expected sha256 %s, got %s", f->path,
			       f->sha256, sha);
	snprintf(f->sha256, sizeof(f->sha256), "%s", sha);
	/* The engine hashed while downloading; what is left is checking the stored blob. */
	prov_job_phase(j, PROV_VERIFYING, f->path);
	prov_narrate(j, "verifying %s", f->path);
	if (strcmp(dir, p->repo_dir) != 0) {
		rc = adopt_into(j, p, f, dir, e);
		if (rc)
			return rc;
	}
	uint64_t have = 0;
	if (layout_blob_exists(j->ctx->layout, p->repo_dir, f->sha256, &have) != 1 ||
	    (f->size_known && have != f->size))
		return err_set(e, ERR_DIGEST, "'%s': stored blob has %llu bytes, expected %llu",
			       f->path, (unsigned long long)have, (unsigned long long)f->size);
	f->size = have;
	f->size_known = 1;
	f->present = 1;
	j->file_bytes = have;
	j->file_size = have;
	if (adopted)
		prov_narrate(j, "'%s' was already in the cache; linked, not downloaded", f->path);
	else if (from == PROV_SRC_S3)
		prov_narrate(j, "'%s' came from the S3 store", f->path);
	/* What the origin gave goes to the site's blob store afterwards (write-behind). */
	if (from == PROV_SRC_CDN && prov_blob_store_on(j->ctx))
		j->store_pending++;
	return 0;
}

/*
 * Bytes file f still needs on the disk: none when its blob is in the repo
 * folder or another repo folder holds the same content (a hard link is
 * made), else its size less what its partial already has allocated (the
 * engine preallocates a partial whole, so a resumed one needs nothing).
 */
static uint64_t file_space_needed(struct prov_job *j, const struct prov_plan *p,
				  const struct prov_file *f)
{
	struct layout *l = j->ctx->layout;
	char where[256] = "", partial[4096];
	uint64_t have = 0;
	struct stat st;
	if (f->present || !f->size_known)
		return 0;
	if (!f->sha256[0])
		return f->size; /* an unpinned URL starts over */
	if (layout_blob_exists(l, p->repo_dir, f->sha256, &have) == 1 && have == f->size)
		return 0;
	if (catalog_blob_where(j->cat, f->sha256, where, sizeof(where), NULL) == 0 &&
	    layout_blob_exists(l, where, f->sha256, &have) == 1 && have == f->size)
		return 0;
	if (layout_partial_path(l, p->repo_dir, f->sha256, partial, sizeof(partial), NULL) == 0 &&
	    lstat(partial, &st) == 0 && S_ISREG(st.st_mode)) {
		uint64_t alloc = (uint64_t)st.st_blocks * 512u;
		return alloc >= f->size ? 0 : f->size - alloc;
	}
	return f->size;
}

/*
 * The whole model must fit before its first byte is fetched: checked file
 * by file, a model whose files fit alone but not together would leave the
 * first ones behind, fetched for nothing. The engine still checks and
 * preallocates each file, which covers a disk that fills meanwhile.
 */
static int check_space(struct prov_job *j, const struct prov_plan *p, struct err *e)
{
	uint64_t need = 0;
	struct statvfs vfs;
	for (size_t i = 0; i < p->n; i++)
		need += file_space_needed(j, p, &p->files[i]);
	if (need == 0 || statvfs(layout_root(j->ctx->layout), &vfs) != 0)
		return 0;
	uint64_t avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
	if (need <= avail)
		return 0;
	char ns[FMT_SIZE_LEN], as[FMT_SIZE_LEN];
	fmt_size(ns, sizeof(ns), need);
	fmt_size(as, sizeof(as), avail);
	return err_set(e, ERR_NOSPACE,
		       "not enough free space for %.300s: needs %s, %s free on %.300s",
		       p->id[0] ? p->id : j->req->ref, ns, as, layout_root(j->ctx->layout));
}

int prov_fetch_http(struct prov_job *j, struct prov_plan *p, struct err *e)
{
	int rc = check_space(j, p, e);
	if (rc)
		return rc;
	for (size_t i = 0; i < p->n; i++) {
		struct prov_file *f = &p->files[i];
		rc = prov_check_cancel(j, e);
		if (rc)
			return rc;
		if (!f->present) {
			j->file_bytes = 0;
			j->file_size = f->size_known ? f->size : 0;
			rc = fetch_one(j, p, i, e);
			if (rc)
				return rc;
		}
		j->files_done++;
		j->bytes_before += f->size;
		j->file_bytes = 0;
		j->file_size = 0;
	}
	return 0;
}

/* Fills out from a catalog model id. */
static int prov_artifact_fill(struct prov_job *j, const char *repo_dir, const char *commit,
			      const char *first_path, const char *id, uint64_t size,
			      struct prov_artifact *out, struct err *e)
{
	if (fmt_buf(out->id, sizeof(out->id), "%s", id))
		return err_set(e, ERR_TOO_LARGE, "catalog id too long");
	out->size = size;
	return layout_snapshot_path(j->ctx->layout, repo_dir, commit, first_path, out->path,
				    sizeof(out->path), e);
}

int prov_lookup_available(struct prov_job *j, const char *id, const char *commit,
			  struct prov_artifact *out)
{
	struct catalog_model m = {0};
	int found = 0;
	if (catalog_model_get(j->cat, id, &m, NULL))
		return 0;
	if (m.status != CATALOG_AVAILABLE || m.nfiles == 0 || (commit && strcmp(m.commit, commit)))
		goto out;
	/* Each blob as it was when last found right; one that changed is hashed by the full path.
	 */
	for (size_t i = 0; i < m.nfiles; i++) {
		const struct catalog_file *f = &m.files[i];
		uint64_t size = 0;
		int64_t mtime = 0;
		if (layout_blob_stat(j->ctx->layout, m.repo_dir, catalog_file_blob(f), &size,
				     &mtime) != 1 ||
		    size != f->size || mtime != f->mtime_ns || f->verified_ms == 0)
			goto out;
	}
	found = prov_artifact_fill(j, m.repo_dir, m.commit, m.files[0].path, m.id, m.size, out,
				   NULL) == 0;
out:
	catalog_model_cleanup(&m);
	return found;
}

/* The first GGUF of the plan: the model's facts come from it (shard 1 of a split). */
static const struct prov_file *facts_file(const struct prov_plan *p)
{
	for (size_t i = 0; i < p->n; i++)
		if (hf_is_gguf(p->files[i].path))
			return &p->files[i];
	return p->n ? &p->files[0] : NULL;
}

static void read_facts(struct prov_job *j, const struct prov_plan *p, struct catalog_gguf *g)
{
	const struct prov_file *f = facts_file(p);
	char path[4096];
	struct gguf_facts facts;
	struct err e = {0};
	memset(g, 0, sizeof(*g));
	if (!f || layout_blob_path(j->ctx->layout, p->repo_dir, f->sha256, path, sizeof(path), &e))
		return;
	FILE *fp = fopen(path, "rb");
	unsigned char magic[4] = {0};
	size_t got = fp ? fread(magic, 1, 4, fp) : 0;
	if (fp)
		fclose(fp);
	if (got != 4 || !gguf_is_gguf(magic, 4))
		return;
	if (gguf_read_file(path, &facts, &e)) {
		log_msg(LOG_WARN, j->req->job_id, "GGUF facts of '%s': %s", f->path, err_msg(&e));
		return;
	}
	catalog_gguf_from_facts(g, &facts);
}

/* The catalog's source of each kind of ref (an s3:// object is a URL model). */
static enum catalog_source source_of(enum ref_kind k)
{
	static const enum catalog_source sources[] = {
	    [REF_HF] = CATALOG_SRC_HF,	[REF_URL] = CATALOG_SRC_URL, [REF_FILE] = CATALOG_SRC_FILE,
	    [REF_S3] = CATALOG_SRC_URL, [REF_OCI] = CATALOG_SRC_OCI, [REF_OLLAMA] = CATALOG_SRC_OCI,
	};
	return (size_t)k < sizeof(sources) / sizeof(sources[0]) ? sources[k] : CATALOG_SRC_FILE;
}

int prov_publish(struct prov_job *j, struct prov_plan *p, struct prov_artifact *out, struct err *e)
{
	struct layout *l = j->ctx->layout;
	struct catalog_model m = {0};
	struct catalog_removal orphans = {0};
	int rc = 0;
	prov_job_phase(j, PROV_PUBLISHING, NULL);
	prov_narrate(j, "publishing %s", p->id);
	/*
	 * Links first, under each blob's lock, so a concurrent removal cannot
	 * take the blob away. No blob is recorded as available unless it was
	 * found right: written and hashed by this pull, or hashed once now.
	 */
	for (size_t i = 0; i < p->n; i++) {
		struct prov_file *f = &p->files[i];
		const char *name = f->blob[0] ? f->blob : f->sha256;
		int fd = -1;
		enum layout_adopt how = LAYOUT_ADOPT_PRESENT;
		char sha[65];
		struct err sub = {0};
		rc = layout_blob_lock(l, p->repo_dir, name, PROV_LOCK_TIMEOUT_MS, j->req->cancel,
				      &fd, e);
		if (rc)
			return rc;
		if (!f->keep_link)
			rc = layout_adopt_blob(l, p->repo_dir, f->sha256, f->size, NULL, &how, e);
		if (rc == 0 && how == LAYOUT_ADOPT_NONE)
			rc = err_set(e, ERR_CONFLICT,
				     "blob of '%s' vanished from the cache; try again", f->path);
		if (rc == 0) {
			rc = store_blob_check(j->cat, l, p->repo_dir, name, f->sha256, NULL,
					      f->size, 0, j->ctx->shared_cache, j->req->cancel, sha,
					      NULL, &sub);
			if (rc)
				err_set(e, rc, "'%s': %s; pull again", f->path, err_msg(&sub));
		}
		if (rc == 0 && !f->keep_link)
			rc = layout_snapshot_link(l, p->repo_dir, p->commit, f->path, f->sha256, e);
		layout_blob_unlock(fd);
		if (rc)
			return rc;
	}
	if (p->write_ref) {
		rc = layout_ref_write(l, p->repo_dir, p->revision, p->commit, e);
		if (rc)
			return rc;
	}
	read_facts(j, p, &m.gguf);
	m.id = p->id;
	m.source = source_of(p->kind);
	m.repo = p->repo;
	m.revision = p->revision;
	m.commit = p->commit;
	m.repo_dir = p->repo_dir;
	m.status = CATALOG_AVAILABLE;
	m.error = "";
	m.gated = p->gated;
	m.nfiles = p->n;
	m.files = xcalloc(p->n, sizeof(*m.files));
	uint64_t total = 0;
	for (size_t i = 0; i < p->n; i++) {
		m.files[i].path = p->files[i].path;
		memcpy(m.files[i].sha256, p->files[i].sha256, 65);
		memcpy(m.files[i].blob, p->files[i].blob, sizeof(m.files[i].blob));
		m.files[i].link_adopted = p->files[i].link_adopted;
		m.files[i].size = p->files[i].size;
		total += p->files[i].size;
	}
	m.size = total;
	rc = catalog_model_put(j->cat, &m, &orphans, e);
	free(m.files);
	if (rc)
		return rc;
	/* Files the model had before and no longer uses (a moved branch). */
	if (orphans.nblobs || orphans.npaths) {
		struct err oe = {0};
		if (layout_remove_model(l, orphans.repo_dir, orphans.commit,
					(const char *const *)orphans.paths, orphans.npaths,
					(const char *const *)orphans.blobs, orphans.nblobs, NULL,
					&oe))
			log_warn("cleaning up old files of %s: %s", p->id, err_msg(&oe));
	}
	catalog_removal_cleanup(&orphans);
	j->files_done = (int)p->n;
	return prov_artifact_fill(j, p->repo_dir, p->commit, p->files[0].path, p->id, total, out,
				  e);
}
