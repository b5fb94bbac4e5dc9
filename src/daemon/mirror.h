/*
 * mirror: what the files of the Hugging Face mirror share (mirror.c: the
 * Hub's listings from the catalog; mirror_resolve.c: a file's bytes;
 * mirror_pull.c: what the hive asks of the upstream Hub, and pull-through), and of its Range
 * handling, which peer.c shares. Nothing else includes it; the routes are declared in http.h. A
 * struct mirror_req belongs to its request's connection thread.
 */
#ifndef RBEE_DAEMON_MIRROR_H
#define RBEE_DAEMON_MIRROR_H

#include <stddef.h>
#include <stdint.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/gitblob.h"
#include "store/catalog.h"

struct daemon;
struct http_req;

/* One mirror request: the repo asked for, its commit, the catalog's files of it. */
struct mirror_req {
	struct http_req *rq;
	char org[CAP_REPO_ID_LEN + 1];
	char name[CAP_REPO_ID_LEN + 1];
	char repo[2 * CAP_REPO_ID_LEN + 2];
	char rev[CAP_REVISION_LEN + 1];
	struct catalog_repo r;
	/*
	 * With soft set, mirror_open leaves a repo or revision the catalog does
	 * not hold unanswered and names the miss in miss ("RepoNotFound",
	 * "RevisionNotFound"), for a pull-through to try upstream first.
	 */
	int soft;
	const char *miss;
	/*
	 * r was listed from the upstream Hub, not the catalog: an LFS file has
	 * its sha256, a small one its git id as blob, and nothing is on disk.
	 */
	int upstream;
};

/* What the Hub says of one file: LFS or not, its git oid, its etag. */
struct mirror_meta {
	int lfs;
	char oid[GITBLOB_HEX_LEN + 1];
	const char *etag; /* the sha256 (LFS) or the oid */
	uint64_t pointer_size;
};

/*
 * Reads the request's repo (parameters 0 and 1) and revision (parameter
 * rev_param, or "main" when it is negative) and loads the catalog's files
 * of it into m->r. 0 when loaded; otherwise rq has been answered (1), or
 * with soft the catalog lacks the repo or revision (2, see mirror_req).
 * mirror_cleanup frees what it loaded.
 */
int mirror_open(struct http_req *rq, struct mirror_req *m, int rev_param, int soft);
void mirror_cleanup(struct mirror_req *m);
/* What the Hub says of the catalog file f of m: LFS or not, git oid, etag. */
int mirror_meta(const struct mirror_req *m, const struct catalog_file *f, struct mirror_meta *out,
		struct err *e);

/*
 * An error the way the Hub answers it: {"error": message} with the
 * X-Error-Code and X-Error-Message headers clients branch on, and the
 * commit when one was resolved (may be NULL).
 */
int mirror_hub_error(struct http_req *rq, int status, const char *code, const char *commit,
		     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Orders catalog files by path; mirror_find looks one up in a repo so ordered. */
int mirror_file_cmp(const void *a, const void *b);
const struct catalog_file *mirror_find(const struct catalog_repo *r, const char *path);
/*
 * Range and If-Range as RFC 9110 reads them over a file of size bytes
 * (mirror_range: 1 with [*first, *last], 0 for the whole file, -1 when
 * unsatisfiable), and the 416 answer.
 */
int mirror_range(const char *h, uint64_t size, uint64_t *first, uint64_t *last);
int mirror_if_range_ok(const struct http_req *rq, const char *etag);
int mirror_reply_unsatisfiable(struct http_req *rq, uint64_t size);
/*
 * The answer of bytes [first, last] of the open file fd of size bytes
 * (fd is taken: sent with sendfile, or closed), with Content-Type,
 * Accept-Ranges and, when ranged, Content-Range; NULL when it cannot be
 * made.
 */
struct MHD_Response;
struct MHD_Response *mirror_file_response(int fd, uint64_t first, uint64_t last, uint64_t size,
					  int ranged);

/* mirror_pull.c. 1 when the hive may ask the upstream Hub (it is online). */
int mirror_can_pull(const struct daemon *d);
/*
 * A repo or revision the catalog lacks, listed from the upstream Hub into
 * m->r (m->upstream set). 0, or rq has been answered (1).
 */
int mirror_open_upstream(struct http_req *rq, struct mirror_req *m);
/* Answers a resolve of path, which the catalog lacks, by pulling it through a job. */
int mirror_pull(struct http_req *rq, struct mirror_req *m, const char *path);

#endif
