/*
 * mirror_resolve: the bytes of one file of the Hub's protocol,
 * HEAD/GET /{repo}/resolve/{rev}/{path} (docs/mirror.md): the Hub's headers
 * (ETag, X-Repo-Commit, X-Linked-Size, X-Linked-Etag), one byte range with
 * If-Range, and the file sent from its blob with sendfile through a
 * descriptor opened without following links. A file the catalog lacks is
 * pulled through (mirror_pull.c) when the hive is online.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <microhttpd.h>

#include "core/err.h"
#include "core/parse.h"
#include "core/sha256.h"
#include "daemon/http.h"
#include "daemon/mirror.h"
#include "store/catalog.h"
#include "store/layout.h"

/*
 * The one byte range of a Range header over a file of size bytes, as RFC
 * 9110 reads it: 1 with [*first, *last] for a satisfiable range, 0 when the
 * answer is the whole file (no header, another unit, several ranges, or a
 * malformed one, which the RFC says to ignore), -1 when unsatisfiable.
 */
int mirror_range(const char *h, uint64_t size, uint64_t *first, uint64_t *last)
{
	if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
		return 0;
	const char *spec = h + 6;
	const char *dash = strchr(spec, '-');
	if (!dash)
		return 0;
	size_t al = (size_t)(dash - spec), bl = strlen(dash + 1);
	uint64_t a = 0, b = 0;
	if ((al && parse_u64(spec, al, 0, UINT64_MAX / 2, &a, "range", NULL) < 0) ||
	    (bl && parse_u64(dash + 1, bl, 0, UINT64_MAX / 2, &b, "range", NULL) < 0) ||
	    (!al && !bl))
		return 0;
	if (!al) {
		/* A suffix: the last b bytes. */
		if (b == 0 || size == 0)
			return -1;
		*first = b >= size ? 0 : size - b;
		*last = size - 1;
		return 1;
	}
	if (bl && b < a)
		return 0;
	if (a >= size)
		return -1;
	*first = a;
	*last = bl && b < size ? b : size - 1;
	return 1;
}

int mirror_reply_unsatisfiable(struct http_req *rq, uint64_t size)
{
	char cr[64];
	snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)size);
	static const char body[] = "{\"error\":\"Requested Range Not Satisfiable\"}";
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", "application/json");
	MHD_add_response_header(resp, "Content-Range", cr);
	return http_queue(rq, MHD_HTTP_RANGE_NOT_SATISFIABLE, resp);
}

/* 1 when If-Range is absent or names this file's etag (quoted, maybe weak). */
int mirror_if_range_ok(const struct http_req *rq, const char *etag)
{
	const char *h = http_header(rq, "If-Range");
	if (!h)
		return 1;
	if (strncmp(h, "W/", 2) == 0)
		h += 2;
	size_t n = strlen(etag);
	return strlen(h) == n + 2 && h[0] == '"' && strncmp(h + 1, etag, n) == 0 && h[n + 1] == '"';
}

struct MHD_Response *mirror_file_response(int fd, uint64_t first, uint64_t last, uint64_t size,
					  int ranged)
{
	uint64_t len = size ? last - first + 1 : 0;
	struct MHD_Response *resp;
	if (len)
		resp = MHD_create_response_from_fd_at_offset64(len, fd, first);
	else
		resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	if (!len || !resp)
		close(fd);
	if (!resp)
		return NULL;
	MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
	MHD_add_response_header(resp, "Accept-Ranges", "bytes");
	if (ranged) {
		char cr[96];
		snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)first,
			 (unsigned long long)last, (unsigned long long)size);
		MHD_add_response_header(resp, "Content-Range", cr);
	}
	return resp;
}

int mirror_resolve(struct http_req *rq)
{
	struct mirror_req m;
	struct daemon *d = rq->d;
	int rc = mirror_open(rq, &m, 2, mirror_can_pull(d));
	if (rc == 1)
		return MHD_YES;
	const struct catalog_file *f = rc == 0 ? mirror_find(&m.r, rq->params[3]) : NULL;
	if (!f && mirror_can_pull(d)) {
		rc = mirror_pull(rq, &m, rq->params[3]);
		mirror_cleanup(&m);
		return rc;
	}
	if (!f) {
		rc = mirror_hub_error(rq, MHD_HTTP_NOT_FOUND, "EntryNotFound", m.r.commit,
				      "%.200s does not exist on \"%.100s\"", rq->params[3], m.rev);
		mirror_cleanup(&m);
		return rc;
	}
	if (m.r.gated && !d->mirror_gated) {
		rc = mirror_hub_error(rq, MHD_HTTP_FORBIDDEN, "GatedRepo", m.r.commit,
				      "Access to model %s is restricted: its files are served only "
				      "by a hive started with --mirror-gated",
				      m.repo);
		mirror_cleanup(&m);
		return rc;
	}
	struct err e;
	err_clear(&e);
	struct mirror_meta mm;
	int fd = -1;
	struct stat st;
	rc = mirror_meta(&m, f, &mm, &e);
	if (rc == 0)
		rc = layout_blob_open(d->layout, m.r.repo_dir, catalog_file_blob(f), &fd, &e);
	if (rc == 0 && (fstat(fd, &st) != 0 || (uint64_t)st.st_size != f->size))
		rc = err_set(&e, ERR_CORRUPT,
			     "%s of %s is not the size the catalog recorded; run rbee-hive verify",
			     f->path, m.repo);
	if (rc) {
		if (fd >= 0)
			close(fd);
		mirror_cleanup(&m);
		return http_reply_err(rq, &e);
	}
	uint64_t first = 0, last = f->size ? f->size - 1 : 0;
	int ranged = mirror_if_range_ok(rq, mm.etag)
			 ? mirror_range(http_header(rq, "Range"), f->size, &first, &last)
			 : 0;
	if (ranged < 0) {
		uint64_t size = f->size;
		close(fd);
		mirror_cleanup(&m);
		return mirror_reply_unsatisfiable(rq, size);
	}
	struct MHD_Response *resp = mirror_file_response(fd, first, last, f->size, ranged);
	if (!resp) {
		mirror_cleanup(&m);
		return MHD_NO;
	}
	char etag[SHA256_HEX_LEN + 3], size[32];
	snprintf(etag, sizeof etag, "\"%s\"", mm.etag);
	snprintf(size, sizeof size, "%llu", (unsigned long long)f->size);
	MHD_add_response_header(resp, "ETag", etag);
	MHD_add_response_header(resp, "X-Repo-Commit", m.r.commit);
	MHD_add_response_header(resp, "X-Linked-Size", size);
	if (mm.lfs)
		MHD_add_response_header(resp, "X-Linked-Etag", etag);
	mirror_cleanup(&m);
	return http_queue(rq, ranged ? MHD_HTTP_PARTIAL_CONTENT : MHD_HTTP_OK, resp);
}
