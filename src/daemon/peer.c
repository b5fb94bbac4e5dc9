/*
 * peer: what a hive tells the other hives that name it with --peer
 * (docs/api.md, "Peers"; docs/mirror.md):
 *
 *   GET /v1/peer/blobs/{sha256}        the size and the byte ranges held of
 *                                      that blob: all of it when the blob is
 *                                      in the cache and verified, else the
 *                                      saved done ranges of its partial
 *   GET /v1/peer/blobs/{sha256}/bytes  those bytes by Range, only from
 *                                      ranges held
 *
 * The ranges of a partial are the resume state in the catalog, which is
 * saved only after the bytes are on disk (fdatasync), so every range told
 * is readable; a peer's whole-file hash checks the content in any case.
 * The answers go under the job API's access policy (/v1/), and each
 * request opens its own catalog connection, closed before the answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/ranges.h"
#include "core/sha256.h"
#include "core/util.h"
#include "daemon/http.h"
#include "daemon/mirror.h"
#include "store/catalog.h"
#include "store/layout.h"

/* A partial whose state was saved this recently is being downloaded. */
#define PEER_ACTIVE_MS 10000

/* What this hive holds of one blob. */
struct peer_hold {
	char repo_dir[256];
	uint64_t size;
	int complete;
	int downloading;
	struct byte_range *r; /* sorted, merged; at most CAP_PEER_RANGES */
	size_t n;
};

/*
 * Finds what the catalog says this hive holds of sha256: a verified blob
 * still in the cache at its size and mtime, else a partial with saved
 * ranges. 0 with h filled, ERR_NOT_FOUND, or another error.
 */
static int peer_find(struct daemon *d, const char *sha256, struct peer_hold *h, struct err *e)
{
	struct catalog *cat = NULL;
	memset(h, 0, sizeof(*h));
	if (!d->catalog_path || !d->layout)
		return err_set(e, ERR_NOT_FOUND, "this hive keeps no catalog");
	int rc = catalog_open(d->catalog_path, &cat, e);
	if (rc < 0)
		return rc;
	struct catalog_blob b;
	uint64_t size = 0;
	int64_t mtime = 0;
	rc = catalog_blob_where(cat, sha256, h->repo_dir, sizeof(h->repo_dir), e);
	if (rc == 0 && catalog_blob_get(cat, h->repo_dir, sha256, &b, e) == 0 && b.verified_ms &&
	    layout_blob_stat(d->layout, h->repo_dir, sha256, &size, &mtime) == 1 &&
	    size == b.size && mtime == b.mtime_ns) {
		h->size = size;
		h->complete = 1;
		h->r = xcalloc(1, sizeof(*h->r));
		if (size)
			h->r[h->n++] = (struct byte_range){0, size};
		catalog_close(cat);
		return 0;
	}
	struct catalog_partial *parts = NULL;
	size_t np = 0;
	rc = catalog_partial_list(cat, &parts, &np, e);
	const struct catalog_partial *p = NULL;
	for (size_t i = 0; rc == 0 && i < np && !p; i++)
		if (strcmp(parts[i].sha256, sha256) == 0)
			p = &parts[i];
	if (p) {
		snprintf(h->repo_dir, sizeof(h->repo_dir), "%s", p->repo_dir);
		h->downloading = wall_ms() - p->updated_ms < PEER_ACTIVE_MS;
		rc = catalog_partial_load(cat, p->repo_dir, sha256, &h->size, &h->r, &h->n, e);
		if (rc == 0 && h->n > CAP_PEER_RANGES)
			h->n = CAP_PEER_RANGES; /* the first ones: a peer's answer is bounded */
	} else if (rc == 0) {
		rc = err_set(e, ERR_NOT_FOUND, "this hive holds nothing of blob %.64s", sha256);
	}
	free(parts);
	catalog_close(cat);
	return rc;
}

/* The blob of the request (parameter 0) and what this hive holds of it; 0 or an error in e. */
static int peer_open(struct http_req *rq, struct peer_hold *h, struct err *e)
{
	if (!sha256_hex_valid(rq->params[0]))
		return err_set(e, ERR_INVALID, "blob: expected 64 lowercase hex digits");
	return peer_find(rq->d, rq->params[0], h, e);
}

int peer_blob(struct http_req *rq)
{
	struct peer_hold h = {0};
	struct err e;
	err_clear(&e);
	if (peer_open(rq, &h, &e) < 0) {
		free(h.r);
		return http_reply_err(rq, &e);
	}
	json_t *ranges = json_array();
	for (size_t i = 0; i < h.n; i++)
		json_array_append_new(
		    ranges, json_pack("[I,I]", (json_int_t)h.r[i].start, (json_int_t)h.r[i].end));
	free(h.r);
	return http_reply_json(rq, MHD_HTTP_OK,
			       json_pack("{s:s,s:I,s:b,s:b,s:o}", "sha256", rq->params[0], "size",
					 (json_int_t)h.size, "complete", h.complete, "downloading",
					 h.downloading, "ranges", ranges));
}

int peer_blob_bytes(struct http_req *rq)
{
	struct peer_hold h = {0};
	struct err e;
	err_clear(&e);
	int rc = peer_open(rq, &h, &e);
	if (rc < 0) {
		free(h.r);
		return http_reply_err(rq, &e);
	}
	uint64_t first = 0, last = h.size ? h.size - 1 : 0;
	int ranged = mirror_range(http_header(rq, "Range"), h.size, &first, &last);
	if (ranged == 0 && !h.complete) {
		free(h.r);
		return http_reply_error(
		    rq, ERR_INVALID, "a partial's bytes are sent by Range only: bytes=FIRST-LAST");
	}
	/* Only bytes of one range held: the rest of a partial may be unwritten. */
	int held = ranged < 0 ? 0 : h.size == 0 && !ranged;
	for (size_t i = 0; ranged >= 0 && i < h.n && !held; i++)
		held = h.r[i].start <= first && last < h.r[i].end;
	free(h.r);
	if (!held)
		return mirror_reply_unsatisfiable(rq, h.size);
	int fd = -1;
	if (h.complete)
		rc = layout_blob_open(rq->d->layout, h.repo_dir, rq->params[0], &fd, &e);
	else
		rc = layout_partial_open_read(rq->d->layout, h.repo_dir, rq->params[0], &fd, &e);
	struct stat st;
	if (rc == 0 && (fstat(fd, &st) != 0 || (uint64_t)st.st_size < (h.size ? last + 1 : 0)))
		rc = err_set(&e, ERR_NOT_FOUND, "blob %.64s is shorter than its ranges",
			     rq->params[0]);
	if (rc < 0) {
		if (fd >= 0)
			close(fd);
		return http_reply_err(rq, &e);
	}
	struct MHD_Response *resp = mirror_file_response(fd, first, last, h.size, ranged);
	if (!resp)
		return MHD_NO;
	return http_queue(rq, ranged ? MHD_HTTP_PARTIAL_CONTENT : MHD_HTTP_OK, resp);
}
