/*
 * share: one transfer per blob, however many jobs need it.
 *
 * The table maps a blob key (its sha256, or a name derived from the URL when
 * the digest is not known in advance) to one entry. The first job to ask
 * creates the entry and a thread for it; the thread takes the blob's
 * advisory lock in the hub layout (the lock huggingface_hub takes), adopts
 * the blob when the cache already holds that content, else runs the
 * transfer through the engine and commits the blob. Every job that needs the
 * same blob joins the entry, sees the same progress and the same result.
 *
 * Cancel: a job that is cancelled leaves the entry and returns at once; the
 * transfer goes on for the others. The transfer is cancelled only when the
 * last job has left (its partial and resume state stay for a later resume).
 *
 * Locking: prov_share.mu guards the table and every entry's waiters, refs,
 * done, rc and err; it is never held across I/O, libcurl or SQLite, nor while
 * a cancel token fires (firing wakes the engine). An entry
 * is freed by whoever drops its last reference (the entry thread holds one,
 * each joined job one).
 */
#ifndef RBEE_PROVISION_SHARE_H
#define RBEE_PROVISION_SHARE_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "fetch/xfer.h"
#include "provision/provision.h"

struct catalog;
struct prov_ctx;
struct prov_share;
struct prov_blob;

struct prov_blob_req {
	const char *repo_dir; /* where the blob goes */
	const char *sha256;   /* expected digest; "" or NULL when unknown */
	const char
	    *git_sha1; /* expected git blob id of a file git stores itself (not LFS); "" or NULL */
	uint64_t size; /* expected size; 0 with size_known == 0 when unknown */
	int size_known;
	const char *url;  /* where the bytes are */
	int url_is_hub;	  /* send the Hub token along (a small file served by the Hub) */
	int url_is_store; /* an S3 object (an s3:// ref): signed with the store's credentials */
	/*
	 * Another server's bearer token (an OCI registry's) and the origin it
	 * is for; the engine sends it to that exact origin only, never after a
	 * redirect to a CDN. NULL when none.
	 */
	const char *auth_token, *auth_origin;
	int auth_basic; /* auth_token is user:password for HTTP Basic */
	/* For a Hugging Face file: re-resolved after a 403 from the CDN. NULL otherwise. */
	const char *org, *repo, *commit, *path;
	const char *log_id; /* job id for logs; may be NULL */
};

int prov_share_new(struct prov_ctx *ctx, struct prov_share **out);
/* Cancels every transfer still running and waits for their threads. NULL is a no-op. */
void prov_share_free(struct prov_share *sh);

/*
 * Joins the transfer of req's blob, starting it when nobody runs it.
 * *started (may be NULL) says whether this call started it. The caller
 * must prov_share_leave() the returned entry.
 */
int prov_share_join(struct prov_share *sh, const struct prov_blob_req *req, struct prov_blob **out,
		    int *started, struct err *e);
/* Waits up to timeout_ms; 1 when the entry has its result. */
int prov_share_wait(struct prov_blob *b, long timeout_ms);
/*
 * The transfer's progress. Returns 1 when p holds it, 0 (and zeros) while
 * the transfer is still being set up: the caller then knows no more than
 * prov_share_resumed() tells.
 */
int prov_share_progress(struct prov_blob *b, struct xfer_progress *p);
/*
 * Bytes a transfer of blobs/<name>.partial in repo_dir of size total would
 * resume from: the done ranges of its resume state in the catalog, the state
 * the engine loads when it starts. 0 when there is none or it is for another
 * size.
 */
uint64_t prov_share_resumed(struct catalog *cat, const char *repo_dir, const char *name,
			    uint64_t total);
/*
 * 1 with the lock file's path in buf while the transfer waits for the blob's
 * lock held by another writer (another program, or another rbee-hive on the
 * same cache), 0 otherwise. The transfer waits as long as it takes.
 */
int prov_share_lock_wait(struct prov_blob *b, char *buf, size_t size);
/*
 * The result once prov_share_wait() said 1: 0 with the blob committed in
 * repo_dir_out (which may be another repo folder than the caller's, when
 * another model started the transfer) and its sha256, or the error.
 * *adopted is 1 when no byte had to be fetched.
 */
int prov_share_result(struct prov_blob *b, char sha256_out[65], char repo_dir_out[256],
		      int *adopted, struct err *e);
/* Where the entry's bytes came from, once prov_share_wait() said 1 (PROV_SRC_CACHE: adopted). */
enum prov_source prov_share_source(struct prov_blob *b);
/* Drops the caller's reference; when no job is left waiting, the transfer is cancelled. */
void prov_share_leave(struct prov_blob *b);

#endif
