/*
 * vendor: what the multi-vendor provisioner (provisioner.c) shares with its
 * vendors (vendor_hf.c, vendor_url.c, vendor_file.c). Internal to
 * src/provision.
 *
 * A vendor says which refs it supports and how to plan them (which files,
 * where from, which digests); the common code then fetches the plan's files
 * through the shared-transfer table (share.c), publishes them in the hub
 * layout and records the model in the catalog (publish.c). A vendor whose
 * files do not come over HTTP (file://) brings its own fetch.
 *
 * Ownership: struct prov_ctx belongs to the provisioner and lives as long as
 * it; it is read-only after provisioner_new except for the share table,
 * which has its own lock. struct prov_job lives on the stack of one
 * provision() call, on one worker thread, with its own catalog connection.
 */
#ifndef RBEE_PROVISION_VENDOR_H
#define RBEE_PROVISION_VENDOR_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/caps.h"
#include "core/ref.h"
#include "provision/hfapi.h"
#include "provision/provision.h"

struct catalog;
struct layout;
struct xfer_engine;
struct prov_share;
struct gguf_facts;
struct s3_store;

struct prov_ctx {
	char data_root[4096];
	char hub_dir[4096];
	char db_path[4096];
	struct hf_client hf;
	struct layout *layout;
	struct xfer_engine *engine;
	struct prov_share *share;
	/* Folders file:// refs may read (--allow-file-import): canonical and as named. */
	char *import_dirs[CAP_FILE_IMPORT_DIRS];
	char *import_named[CAP_FILE_IMPORT_DIRS];
	size_t n_import_dirs;
	/*
	 * The hub cache is shared with other programs: a blob found there that
	 * rbee-hive has no record of is theirs, never removed. In the private
	 * cache every blob is rbee-hive's.
	 */
	int shared_cache;
	/* prov_config.registry_auth, made absolute; "" when none. */
	char registry_auth[4096];
	/* The S3 endpoint, credentials and blob store (--blob-store, bucket "" when none); NULL:
	 * none. */
	struct s3_store *s3;
	/* Bytes each source delivered (enum prov_source). */
	_Atomic uint64_t src_bytes[PROV__SOURCES];
	_Atomic uint64_t uploaded_bytes; /* to the blob store */
};

/*
 * Write-behind (blobstore.c): uploads every blob of model req->ref the blob
 * store lacks. ERR_UNSUPPORTED without a blob store.
 */
int prov_store_upload(struct prov_ctx *ctx, const struct prov_request *req, struct err *e);

/* Counts n bytes delivered by src (provisioner.c). */
void prov_source_add(struct prov_ctx *ctx, enum prov_source src, uint64_t n);

/* One file of a plan. */
struct prov_file {
	char *path;    /* path in the snapshot (checked) */
	uint64_t size; /* expected; 0 with size_known == 0 when unknown */
	int size_known;
	char sha256[65];   /* expected; "" when unknown until downloaded */
	char git_sha1[41]; /* expected git blob id of a file git stores itself (not LFS); "" if none
			    */
	char *url;	   /* where the bytes are; NULL until resolved */
	int url_is_hub;	   /* the bytes come from the Hub host: the token may go along */
	int url_is_store;  /* the bytes are an S3 object: requests are signed (fetch/s3.h) */
	int present;	   /* already in the layout: nothing to fetch */
	/*
	 * A snapshot entry that was there (another program's, or rbee-hive's
	 * from an earlier pull) and checks out is kept as it is: keep_link says
	 * publishing must not touch the link, link_adopted that the link is not
	 * rbee-hive's, blob its blob's name when that is not the sha256
	 * (huggingface_hub names a non-LFS file's blob by its git sha1).
	 */
	int keep_link;
	int link_adopted;
	char blob[65];
};

struct prov_plan {
	enum ref_kind kind;
	char repo_dir[256];
	char repo[CAP_URL_LEN + 1]; /* "org/repo", the URL, or the local path */
	char org[CAP_REPO_ID_LEN + 1];
	char name[CAP_REPO_ID_LEN + 1];
	char revision[CAP_REVISION_LEN + 1]; /* as asked; "" for URL and file models */
	int write_ref;			     /* write refs/<revision> (not for a commit) */
	int rehash;	 /* the model was found bad: hash its blobs whatever their records say */
	int gated;	 /* catalog_model.gated: 1, 0, or CATALOG_GATED_UNKNOWN (offline) */
	char commit[65]; /* snapshot folder name */
	char id[PROV_ID_MAX]; /* catalog id */
	struct prov_file *files;
	size_t n;
	uint64_t total;
	/*
	 * The files come from another server than the Hub (an OCI registry):
	 * its bearer token for the transfers, sent to auth_origin only. NULL
	 * when none; freed (and scrubbed) by prov_plan_cleanup.
	 */
	char *auth_token;
	char *auth_origin;
	int auth_basic; /* auth_token is user:password for HTTP Basic */
};

/* Plans (progress.c). */
void prov_plan_cleanup(struct prov_plan *p);
/* Appends a file; path and url are copied (url may be NULL). */
struct prov_file *prov_plan_add(struct prov_plan *p, const char *path, uint64_t size,
				int size_known, const char *sha256, const char *url);

/* Per-call state, including what the events report. */
struct prov_job {
	struct prov_ctx *ctx;
	const struct prov_request *req;
	struct model_ref ref;
	struct catalog *cat;
	/* progress */
	enum prov_phase phase;
	const char *file;
	int files_done, files_total;
	uint64_t bytes_before; /* bytes of the files already done */
	uint64_t file_bytes;   /* bytes of the current file */
	uint64_t file_size;    /* size of the current file; 0 when unknown */
	uint64_t bytes_total;
	double rate_bps;
	int64_t last_emit_ms;
	int store_pending; /* blobs fetched from the origin that the blob store lacks */
};

struct prov_vendor {
	const char *name;
	enum ref_kind kind; /* the refs it supports */
	/*
	 * Fills the plan, or answers at once: returns 1 with out filled when the
	 * model is already available (the fast path), 0 with a plan to fetch.
	 */
	int (*plan)(struct prov_job *j, struct prov_plan *p, struct prov_artifact *out,
		    struct err *e);
	/* NULL: prov_fetch_http (the shared-transfer path). */
	int (*fetch)(struct prov_job *j, struct prov_plan *p, struct err *e);
};

extern const struct prov_vendor prov_vendor_hf;
extern const struct prov_vendor prov_vendor_url;
extern const struct prov_vendor prov_vendor_file;
extern const struct prov_vendor prov_vendor_oci;
extern const struct prov_vendor prov_vendor_ollama;
extern const struct prov_vendor prov_vendor_s3;

/* 1 when a blob store (--blob-store) is configured, not only an S3 endpoint for s3:// refs. */
int prov_blob_store_on(const struct prov_ctx *ctx);

/* The URL vendor's steps that s3:// refs share (vendor_url.c). */
void prov_url_file_name(const char *url, char *buf, size_t size);
/*
 * The start of a URL model's plan (the ref's url names it; host names its
 * folder): 1 with out filled when it is available already, 0 to go on,
 * or an error (ERR_OFFLINE when it is not here and the network is off).
 */
int prov_url_plan_start(struct prov_job *j, struct prov_plan *p, const char *host,
			struct prov_artifact *out, struct err *e);
int prov_url_fetch(struct prov_job *j, struct prov_plan *p, struct err *e);

/*
 * Checks and resolves cfg's --allow-file-import folders into ctx
 * (vendor_file.c): absolute, existing folders, none below /proc, /sys or
 * /dev. Returns 0 or ERR_INVALID.
 */
int prov_file_roots_init(struct prov_ctx *ctx, const struct prov_config *cfg, struct err *e);
void prov_file_roots_cleanup(struct prov_ctx *ctx);

/* Events and the cancel check (progress.c). */
void prov_job_phase(struct prov_job *j, enum prov_phase ph, const char *file);
void prov_job_bytes(struct prov_job *j, uint64_t file_done, double rate_bps, int force);
void prov_narrate(struct prov_job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* ERR_CANCELLED with the message "cancelled" when the job's token fired, else 0. */
int prov_check_cancel(struct prov_job *j, struct err *e);

/* Fetches every file of the plan not yet present (publish.c). */
int prov_fetch_http(struct prov_job *j, struct prov_plan *p, struct err *e);
/*
 * Links every file into snapshots/<commit>/, writes refs/<revision>, reads
 * the GGUF facts of the first file and records the model as available.
 */
int prov_publish(struct prov_job *j, struct prov_plan *p, struct prov_artifact *out, struct err *e);
/*
 * The fast path: 1 with out filled if the catalog holds id as available at
 * commit (NULL: any) and every blob is still in the layout at its size.
 */
int prov_lookup_available(struct prov_job *j, const char *id, const char *commit,
			  struct prov_artifact *out);
/*
 * Records that rbee-hive made blobs/<sha256> in repo_dir (it removes it
 * again when no model uses it); verified says it was hashed as it was made
 * (written by a transfer, or copied), else it is hashed before it is
 * trusted. cat may be NULL (nothing is recorded). In blob.c.
 */
void prov_blob_made(struct catalog *cat, const struct layout *l, const char *repo_dir,
		    const char *sha256, int verified);

#endif
