/*
 * The file vendor: file:///ABS/PATH. The file is hashed and imported into
 * files--local/ by hard link when it is on the same file system as the
 * cache, else by copy (layout_import_file), then published like any model.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/util.h"
#include "provision/vendor.h"
#include "store/catalog.h"
#include "store/layout.h"

static int file_plan(struct prov_job *j, struct prov_plan *p, struct prov_artifact *out,
		     struct err *e)
{
	const struct model_ref *r = &j->ref;
	struct stat st;
	p->kind = REF_FILE;
	snprintf(p->repo, sizeof(p->repo), "%s", r->path);
	snprintf(p->repo_dir, sizeof(p->repo_dir), "%s", LAYOUT_FILES_DIR);
	if (stat(r->path, &st) != 0)
		return err_set(e, errno == ENOENT ? ERR_NOT_FOUND : ERR_IO, "file '%s': %s", r->path,
			       strerror(errno));
	if (!S_ISREG(st.st_mode))
		return err_set(e, ERR_UNPROCESSABLE, "file '%s' is not a regular file", r->path);
	const char *name = strrchr(r->path, '/') + 1;
	if (ref_catalog_id_file(name, p->id, sizeof(p->id)))
		return err_set(e, ERR_TOO_LARGE, "file name too long");
	struct catalog_model m = {0};
	int same = catalog_model_get(j->cat, p->id, &m, NULL) == 0 &&
		   strcmp(m.repo, r->path) == 0 && m.size == (uint64_t)st.st_size;
	catalog_model_cleanup(&m);
	/* The same file imported before answers at once, without hashing it again. */
	if (same && prov_lookup_available(j, p->id, NULL, out))
		return 1;
	prov_plan_add(p, name, (uint64_t)st.st_size, 1, NULL, NULL);
	return 0;
}

static int file_fetch(struct prov_job *j, struct prov_plan *p, struct err *e)
{
	struct prov_file *f = &p->files[0];
	uint64_t size = 0;
	enum layout_adopt how = LAYOUT_ADOPT_NONE;
	prov_job_phase(j, PROV_VERIFYING, f->path);
	prov_narrate(j, "importing %s", j->ref.path);
	int rc = layout_import_file(j->ctx->layout, p->repo_dir, j->ref.path, j->req->cancel,
				    f->sha256, &size, &how, e);
	if (rc)
		return rc;
	/*
	 * Linked or copied, the blob is the file just hashed; one that was
	 * already there is hashed when it is published.
	 */
	if (how != LAYOUT_ADOPT_PRESENT)
		prov_blob_made(j->cat, j->ctx->layout, p->repo_dir, f->sha256, 1);
	prov_narrate(j, "%s: %s", f->path,
		     how == LAYOUT_ADOPT_PRESENT  ? "identical content already stored"
		     : how == LAYOUT_ADOPT_COPIED ? "copied (another file system)"
						  : "hard-linked");
	f->size = size;
	f->present = 1;
	p->total = size;
	j->bytes_total = size;
	snprintf(p->commit, sizeof(p->commit), "%s", f->sha256);
	j->files_done = 1;
	j->file_size = size;
	prov_job_bytes(j, size, 0, 1);
	return 0;
}

const struct prov_vendor prov_vendor_file = {
	.name = "file",
	.kind = REF_FILE,
	.plan = file_plan,
	.fetch = file_fetch,
};
