/*
 * blobstore: write-behind to the site's blob store. After a model is
 * available, the blobs the origin gave are uploaded to PREFIX/blobs/<sha256>,
 * each once across the fleet: a HEAD first (another hive may have put it
 * there already); a blob up to the part size goes in one PUT with
 * If-None-Match: *, so of two hives racing only one writes it; a larger one
 * goes in parts, each signed with its own sha256, and the upload id and the
 * ETags of the parts done are kept in the catalog as each part ends, so an
 * upload cut by a stop or a crash resumes at its next part.
 *
 * Reading of blobs from the store is share.c's (the engine, signed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "fetch/s3.h"
#include "provision/vendor.h"
#include "store/catalog.h"
#include "store/layout.h"

struct up_progress {
	struct prov_job *j;
	uint64_t base;	  /* bytes of this blob done before the request */
	uint64_t sent0;	  /* bytes sent by this call before the request */
	int64_t start_ms; /* when this call began sending */
};

static void up_sent(void *arg, uint64_t sent)
{
	struct up_progress *u = arg;
	int64_t ms = now_ms() - u->start_ms;
	double rate = ms > 0 ? (double)(u->sent0 + sent) * 1000.0 / (double)ms : 0;
	prov_job_bytes(u->j, u->base + sent, rate, 0);
}

/* The ETags of a saved state, one a line, into etags[0..max); their count or -1. */
static int etags_split(const char *text, char (*etags)[S3_ETAG_MAX], int max)
{
	int n = 0;
	for (const char *p = text; *p;) {
		const char *end = strchr(p, '\n');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (n >= max || len == 0 || len >= S3_ETAG_MAX)
			return -1;
		memcpy(etags[n], p, len);
		etags[n][len] = '\0';
		n++;
		p += len + (end ? 1 : 0);
	}
	return n;
}

static int etags_join(char (*etags)[S3_ETAG_MAX], int n, struct catalog_upload *u)
{
	size_t cap = (size_t)n * S3_ETAG_MAX + 1, off = 0;
	free(u->etags);
	u->etags = xmalloc(cap);
	u->etags[0] = '\0';
	for (int i = 0; i < n; i++)
		off += (size_t)snprintf(u->etags + off, cap - off, "%s%s", i ? "\n" : "", etags[i]);
	return 0;
}

/* A blob larger than a part: the multipart upload, resumed from the catalog's state. */
static int upload_parts(struct prov_job *j, const char *sha256, const char *key, int fd,
			uint64_t size, struct up_progress *up, struct err *e)
{
	const struct s3_store *s3 = j->ctx->s3;
	uint64_t part = s3->part_size;
	int nparts = (int)((size + part - 1) / part);
	if (nparts > S3_MAX_PARTS)
		return err_set(e, ERR_TOO_LARGE, "blob %s: over %d parts of %llu bytes", sha256,
			       S3_MAX_PARTS, (unsigned long long)part);
	char target[1600];
	if (fmt_buf(target, sizeof(target), "%s/%s/%s", s3->endpoint, s3->bucket, key))
		return err_set(e, ERR_TOO_LARGE, "the store's name of blob %s is too long", sha256);
	char(*etags)[S3_ETAG_MAX] = xcalloc((size_t)nparts, S3_ETAG_MAX);
	struct catalog_upload u = {0};
	int done = 0;
	int rc = catalog_upload_get(j->cat, sha256, target, &u, NULL);
	if (rc == 0 && u.part_size == part)
		done = etags_split(u.etags, etags, nparts);
	if (rc == 0 && (u.part_size != part || done < 0)) {
		/* Another part size, or a damaged state: that upload cannot go on. */
		s3_mpu_abort(s3, key, u.upload_id, NULL);
		done = 0;
		rc = ERR_NOT_FOUND;
	}
	if (rc == 0) {
		prov_narrate(j, "resuming the upload of blob %.12s at part %d of %d", sha256,
			     done + 1, nparts);
	} else {
		done = 0;
		u.part_size = part;
		rc = s3_mpu_create(s3, key, j->req->cancel, u.upload_id, e);
		if (rc == 0)
			rc = etags_join(etags, 0, &u);
		if (rc == 0)
			rc = catalog_upload_put(j->cat, sha256, target, &u, e);
		if (rc)
			goto out;
	}
	up->base = (uint64_t)done * part;
	prov_job_bytes(j, up->base, 0, 1);
	for (int i = done; i < nparts; i++) {
		uint64_t off = (uint64_t)i * part;
		uint64_t len = size - off < part ? size - off : part;
		up->base = off;
		rc = s3_mpu_part(s3, key, u.upload_id, i + 1, fd, off, len, j->req->cancel, up_sent,
				 up, etags[i], e);
		if (rc)
			goto out;
		up->sent0 += len;
		/* Each part is recorded as it ends: a crash loses at most the part in flight. */
		etags_join(etags, i + 1, &u);
		rc = catalog_upload_put(j->cat, sha256, target, &u, e);
		if (rc)
			goto out;
	}
	rc = s3_mpu_complete(s3, key, u.upload_id, etags, nparts, j->req->cancel, e);
	if (rc == 0 || rc == ERR_NOT_FOUND)
		/* Done, or the store forgot the upload (aborted, expired): start anew next time. */
		catalog_upload_delete(j->cat, sha256, target, NULL);
out:
	free(u.etags);
	free(etags);
	return rc;
}

/* One blob: 0 when the store has it afterwards (put here or by another hive). */
static int upload_blob(struct prov_job *j, const char *repo_dir, const char *sha256, uint64_t size,
		       struct err *e)
{
	const struct s3_store *s3 = j->ctx->s3;
	char key[S3_KEY_MAX + 1];
	uint64_t have = 0;
	int rc = s3_blob_key(s3, sha256, key, sizeof(key), e);
	if (rc == 0)
		rc = s3_head(s3, NULL, key, j->req->cancel, &have, e);
	if (rc == 0 && have == size) {
		prov_narrate(j, "blob %.12s is in the blob store already", sha256);
		return 0;
	}
	if (rc == 0)
		return err_set(e, ERR_CONFLICT, "the blob store's %s has %llu bytes, not %llu", key,
			       (unsigned long long)have, (unsigned long long)size);
	if (rc != ERR_NOT_FOUND)
		return rc;
	err_clear(e);
	int fd = -1;
	rc = layout_blob_open(j->ctx->layout, repo_dir, sha256, &fd, e);
	if (rc)
		return rc;
	struct up_progress up = {.j = j, .start_ms = now_ms()};
	if (size <= s3->part_size) {
		rc = s3_put(s3, key, fd, 0, size, 1, j->req->cancel, up_sent, &up, NULL, e);
		if (rc == ERR_CONFLICT) {
			err_clear(e);
			prov_narrate(j, "blob %.12s: another hive put it in the blob store first",
				     sha256);
			close(fd);
			return 0;
		}
	} else {
		rc = upload_parts(j, sha256, key, fd, size, &up, e);
	}
	close(fd);
	if (rc == 0) {
		char sz[FMT_SIZE_LEN];
		fmt_size(sz, sizeof(sz), size);
		prov_narrate(j, "uploaded blob %.12s (%s) to the blob store", sha256, sz);
		atomic_fetch_add(&j->ctx->uploaded_bytes, size);
	}
	return rc;
}

int prov_store_upload(struct prov_ctx *ctx, const struct prov_request *req, struct err *e)
{
	if (!prov_blob_store_on(ctx))
		return err_set(e, ERR_UNSUPPORTED, "no blob store is configured (--blob-store)");
	struct prov_job j = {.ctx = ctx, .req = req};
	struct catalog_model m = {0};
	int rc = catalog_open(ctx->db_path, &j.cat, e);
	if (rc == 0)
		rc = catalog_model_get(j.cat, req->ref, &m, e);
	if (rc)
		goto out;
	if (m.status != CATALOG_AVAILABLE) {
		rc = err_set(e, ERR_CONFLICT, "%s is not available: nothing to upload", m.id);
		goto out;
	}
	j.files_total = (int)m.nfiles;
	for (size_t i = 0; i < m.nfiles; i++)
		j.bytes_total += m.files[i].size;
	prov_narrate(&j, "uploading the blobs of %s to the blob store s3://%s/%s", m.id,
		     ctx->s3->bucket, ctx->s3->prefix);
	for (size_t i = 0; i < m.nfiles && rc == 0; i++) {
		const struct catalog_file *f = &m.files[i];
		j.file_size = f->size;
		j.file_bytes = 0;
		prov_job_phase(&j, PROV_UPLOADING, f->path);
		/* A file another program made under another name is not ours to share. */
		if (!f->blob[0])
			rc = upload_blob(&j, m.repo_dir, f->sha256, f->size, e);
		j.bytes_before += f->size;
		j.files_done++;
		prov_job_bytes(&j, 0, j.rate_bps, 1);
		if (rc == 0)
			rc = prov_check_cancel(&j, e);
	}
out:
	if (rc && rc != ERR_CANCELLED)
		log_msg(LOG_WARN, req->job_id, "uploading %.200s failed: %s", req->ref, err_msg(e));
	catalog_model_cleanup(&m);
	catalog_close(j.cat);
	return rc;
}
