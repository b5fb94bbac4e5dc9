/*
 * provision: the ArtifactProvisioner of rbee-hive. provision(ref, job_id,
 * cancel) turns a model reference into a verified, published catalog entry,
 * reporting each step as events and honouring the cancel token at every step.
 *
 * A multi-vendor provisioner routes a ref to its vendor (Hugging Face, URL,
 * file) through a table; vendors live in vendor_*.c beside this file.
 *
 * Threads: one provisioner is shared by all job workers; provision() is
 * called concurrently from several workers and blocks until the model is
 * available, fails or is cancelled. Event callbacks are called on the
 * worker's thread or on the transfer thread, must not block, and must not
 * call back into the provisioner.
 */
#ifndef RBEE_PROVISION_PROVISION_H
#define RBEE_PROVISION_PROVISION_H

#include <stdint.h>

#include "core/caps.h"
#include "core/err.h"

struct cancel_token;

enum prov_phase {
	PROV_RESOLVING = 0,
	PROV_DOWNLOADING,
	PROV_VERIFYING,
	PROV_PUBLISHING,
	PROV_UPLOADING, /* to the site's blob store */
	PROV__PHASES
};

/* "resolving", "downloading", "verifying", "publishing", "uploading". */
const char *prov_phase_name(enum prov_phase p);

struct prov_progress {
	enum prov_phase phase;
	const char *file; /* repo path of the current file; may be NULL */
	int files_done;
	int files_total;
	uint64_t bytes_done; /* over all files of the model */
	uint64_t bytes_total;
	uint64_t file_bytes_done;  /* of the current file; 0 when file is NULL */
	uint64_t file_bytes_total; /* the current file's size; 0 when unknown or no file */
	double rate_bps;	   /* smoothed */
	double eta_s;		   /* negative when unknown */
};

struct prov_events {
	/* Several times a second while bytes move, and at each phase change. */
	void (*progress)(void *arg, const struct prov_progress *p);
	/* One human-readable line ("resolving hf:org/repo@main"). */
	void (*narrate)(void *arg, const char *line);
	void *arg;
};

/*
 * Where a blob's bytes came from: the hive's own cache (nothing fetched), a
 * peer hive, the site's blob store (S3), or the origin (the Hub's CDN, a
 * URL).
 */
enum prov_source { PROV_SRC_CACHE = 0, PROV_SRC_PEER, PROV_SRC_S3, PROV_SRC_CDN, PROV__SOURCES };
/* "cache", "peer", "s3", "cdn". */
const char *prov_source_name(enum prov_source s);

/* Bytes each source delivered, and bytes uploaded to the blob store. */
struct prov_bytes {
	uint64_t from[PROV__SOURCES];
	uint64_t uploaded;
};

struct prov_request {
	const char *ref;    /* as the user gave it */
	const char *job_id; /* for logs; may be NULL */
	struct cancel_token *cancel;
	const struct prov_events *events; /* may be NULL */
};

#define PROV_ID_MAX (CAP_REF_LEN + 1)

struct prov_artifact {
	char id[PROV_ID_MAX]; /* canonical catalog id of the model */
	char path[4096];      /* absolute path of the first (or only) file */
	uint64_t size;	      /* bytes over all files */
	/* Blobs fetched from the origin while a blob store is configured: they await upload. */
	int store_pending;
};

struct prov_config {
	const char *data_root;	   /* the data root; catalog.db lives here */
	const char *hf_cache;	   /* hub cache folder; NULL: <data_root>/hub */
	const char *endpoint;	   /* HF endpoint; NULL: $HF_ENDPOINT or https://huggingface.co */
	const char *hf_token;	   /* NULL: $HF_TOKEN or $HF_HOME/token */
	int offline;		   /* no network at all */
	int connections;	   /* per file; 0: default 8 */
	uint64_t limit_rate;	   /* bytes/s over all transfers; 0: none */
	uint64_t max_unknown_size; /* most bytes of a file of unknown size; 0:
				      CAP_UNKNOWN_SIZE_DEFAULT */
	int stall_timeout_s;	   /* 0: default 30 */
	/*
	 * Folders whose files file:// refs may import (--allow-file-import);
	 * none: no local path is read, only content uploaded to the daemon
	 * (file:///PATH#sha256=HEX) is imported. Borrowed.
	 */
	const char *const *file_import_dirs;
	size_t n_file_import_dirs;
	/*
	 * Credentials for OCI registries (--registry-auth): a file in Docker's
	 * config.json format, read at each pull that needs it. NULL: none.
	 */
	const char *registry_auth;
	/*
	 * The site's blob store (docs/fleet.md): "s3://BUCKET[/PREFIX]", or NULL
	 * for none; its endpoint URL, region (NULL: us-east-1) and credentials.
	 * Borrowed.
	 */
	const char *blob_store;
	const char *s3_endpoint;
	const char *s3_region;
	const char *s3_access_key;
	const char *s3_secret;
	uint64_t s3_part_size;	/* 0: S3_DEFAULT_PART; at least S3_MIN_PART */
	uint64_t s3_limit_rate; /* bytes/s of each upload request; 0: none */
};

struct provisioner;

struct provisioner_ops {
	const char *name;
	int (*provision)(struct provisioner *p, const struct prov_request *req,
			 struct prov_artifact *out, struct err *e);
	void (*free)(struct provisioner *p);
	/*
	 * Uploads the blobs of model req->ref (a catalog id) to the blob store,
	 * each once across the fleet, resuming a multipart upload an earlier
	 * call left. NULL: no blob store.
	 */
	int (*upload)(struct provisioner *p, const struct prov_request *req, struct err *e);
	/* Bytes moved since the start; NULL: none counted. */
	void (*bytes)(struct provisioner *p, struct prov_bytes *out);
};

struct provisioner {
	const struct provisioner_ops *ops;
};

/* The multi-vendor provisioner over the real vendors. */
int provisioner_new(const struct prov_config *cfg, struct provisioner **out, struct err *e);

static inline int provision(struct provisioner *p, const struct prov_request *req,
			    struct prov_artifact *out, struct err *e)
{
	return p->ops->provision(p, req, out, e);
}

static inline void provisioner_free(struct provisioner *p)
{
	if (p)
		p->ops->free(p);
}

#endif
