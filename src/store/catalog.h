/*
 * catalog: what rbee-hive knows about its models, blobs, partial downloads
 * and jobs, in SQLite (<root>/catalog.db, WAL). The schema and its
 * migrations are described in docs/store.md; the schema version is PRAGMA
 * user_version and catalog_open() creates a new file at the latest version
 * or migrates an older one forward, in one transaction either way.
 *
 * The code lives in catalog.c (schema, opening, SQL helpers),
 * catalog_model.c and catalog_read.c (models), catalog_blob.c,
 * catalog_partial.c and catalog_job.c, behind catalog_internal.h.
 *
 * Threads: a struct catalog is one SQLite connection and belongs to one
 * thread at a time; every thread that needs the catalog opens its own
 * (WAL lets readers and one writer run at once; a writer waits up to
 * CATALOG_BUSY_TIMEOUT_MS for another). Every change of more than one row
 * is one transaction, so no reader ever sees half of it, and a crash leaves
 * the previous state.
 *
 * Memory: structs filled by the catalog own their strings; release them with
 * the matching *_cleanup / *_free. Structs passed in are only read.
 *
 * Blob reference counts are derived, not stored: a blob of a repo folder is
 * used by every file row of a model in that folder with that sha256, so a
 * count cannot drift from the rows it counts.
 */
#ifndef RBEE_STORE_CATALOG_H
#define RBEE_STORE_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "core/ranges.h"
#include "core/jobstate.h"

struct err;
struct catalog;
struct gguf_facts;

/* The schema version this build writes. */
#define CATALOG_SCHEMA_VERSION 7
#define CATALOG_BUSY_TIMEOUT_MS 5000

/*
 * Opens the catalog at db_path: a new one is created at
 * CATALOG_SCHEMA_VERSION (logged as created), an older one migrated to it
 * (logged with both versions).
 */
int catalog_open(const char *db_path, struct catalog **out, struct err *e);
void catalog_close(struct catalog *c);

enum catalog_source { CATALOG_SRC_HF = 1, CATALOG_SRC_URL, CATALOG_SRC_FILE, CATALOG_SRC_OCI };
enum catalog_status { CATALOG_DOWNLOADING = 1, CATALOG_AVAILABLE, CATALOG_FAILED };

/* "hf", "url", "file" / "downloading", "available", "failed". */
const char *catalog_source_name(enum catalog_source s);
const char *catalog_status_name(enum catalog_status s);

/* Longest blob name: a sha256; another program's may be a git sha1 (40). */
#define CATALOG_BLOB_NAME_MAX 64

struct catalog_file {
	char *path;	 /* path inside the snapshot ("sub/x.Q4_K_M.gguf") */
	char sha256[65]; /* the content */
	uint64_t size;
	/*
	 * Its name in blobs/ when that is not the sha256 ("" otherwise): a
	 * snapshot entry huggingface_hub made for a non-LFS file names its blob
	 * by the git sha1, and rbee-hive adopts such an entry as it is.
	 */
	char blob[CATALOG_BLOB_NAME_MAX + 1];
	char source[8]; /* where the blob's bytes came from ("s3", "cdn", ...); "" unknown */
	/* The snapshot link was there, made by another program: never removed. */
	int link_adopted;
	/*
	 * The blob's record, read by catalog_model_get and catalog_model_list
	 * (catalog_model_put stores blob_adopted for a blob it records first,
	 * and mtime_ns with verified_ms when verified_ms is not 0):
	 */
	int blob_adopted;    /* the blob file was there, made by another program */
	int64_t mtime_ns;    /* its mtime when it was last found right */
	int64_t verified_ms; /* when that was (hashed, or written and hashed); 0: never */
};

/* The name of f's blob in blobs/. */
const char *catalog_file_blob(const struct catalog_file *f);

/* The GGUF facts shown for a model (from its first file). */
struct catalog_gguf {
	char architecture[64];
	char name[256];
	char quantization[32];
	uint64_t parameters;
	char size_label[32];
	uint64_t context_length;
};

/* catalog_model.gated when the Hub's answer was not known. */
#define CATALOG_GATED_UNKNOWN (-1)

struct catalog_model {
	char *id; /* canonical catalog id (core/ref.h ref_catalog_id_*) */
	enum catalog_source source;
	char *repo;	/* "org/repo", the URL, or the local path */
	char *revision; /* as asked ("main"); "" for URL and file models */
	char *commit;	/* resolved commit (URL/file models: the first file's sha256) */
	char *repo_dir; /* folder in the hub cache ("models--org--repo") */
	enum catalog_status status;
	uint64_t size;			/* bytes over all files */
	int64_t created_ms, updated_ms; /* set by the catalog */
	struct catalog_gguf gguf;
	char *error; /* why it failed; "" otherwise */
	/*
	 * The Hub gates its repo (access needs accepted terms): 1, else 0;
	 * CATALOG_GATED_UNKNOWN when that was not learnt (offline, or recorded
	 * before the catalog kept it). Written by catalog_model_put; read only
	 * by catalog_repo_snapshot.
	 */
	int gated;
	struct catalog_file *files;
	size_t nfiles;
};

/* Frees what a catalog_model owns and zeroes it. NULL is a no-op. */
void catalog_model_cleanup(struct catalog_model *m);
void catalog_model_list_free(struct catalog_model *list, size_t n);
/* Copies the displayed facts out of a GGUF header. */
void catalog_gguf_from_facts(struct catalog_gguf *g, const struct gguf_facts *f);

/*
 * Blobs of a repo folder that no model uses any more, and snapshot paths of
 * a commit no remaining model links: exactly what layout_remove_model()
 * must remove after a delete or after a model's files changed. Only what
 * rbee-hive made is named: a blob or link another program made and
 * rbee-hive adopted stays.
 */
struct catalog_removal {
	char *repo_dir;
	char *commit;
	char **paths;
	size_t npaths;
	char **blobs; /* names in blobs/ */
	size_t nblobs;
};
void catalog_removal_cleanup(struct catalog_removal *r);

/*
 * Inserts or replaces a model with its files, in one transaction. Checks
 * what it stores (repo folder, repo paths, sha256s, at most CAP_MODEL_FILES
 * files, no path twice; "available" needs at least one file). created_ms is
 * kept from the first insert. When the model existed with other files, what
 * they alone used is returned in *orphans (may be NULL; then the caller
 * gives up on cleaning it).
 */
int catalog_model_put(struct catalog *c, const struct catalog_model *m,
		      struct catalog_removal *orphans, struct err *e);

/*
 * Sets status and error text of an existing model (error may be NULL).
 * ERR_NOT_FOUND if there is none. With if_updated_ms != 0 the change is made
 * only if the model's updated_ms still is that value (ERR_CONFLICT
 * otherwise), so a slow check cannot overwrite a newer publication.
 * updated_ms always grows.
 */
int catalog_model_set_status(struct catalog *c, const char *id, enum catalog_status st,
			     const char *error, int64_t if_updated_ms, struct err *e);

/* The model with exactly this id, with its files. ERR_NOT_FOUND if none. */
int catalog_model_get(struct catalog *c, const char *id, struct catalog_model *out, struct err *e);

/*
 * The model a user's text names: the exact id, else the one model for which
 * ref_matches_id() holds. ERR_NOT_FOUND when none does, ERR_CONFLICT (the
 * message lists some candidates) when several do. A query that is not an
 * exact id reads every model id (O(N) in the number of models).
 */
int catalog_model_find(struct catalog *c, const char *query, struct catalog_model *out,
		       struct err *e);

/*
 * Models ordered by id, from the first whose id is from or above (NULL:
 * the first of all) and offset models after it, at most limit (0: no
 * limit), with their files: two queries whatever the count. SQLite steps
 * over the offset models one by one (O(offset)); from is found in the id
 * index (O(log N)). *out is NULL when *n is 0.
 */
int catalog_model_list(struct catalog *c, const char *from, size_t offset, size_t limit,
		       struct catalog_model **out, size_t *n, struct err *e);
/*
 * Every stride-th model id in id order (those at positions 0, stride,
 * 2 stride, ...) into *marks (*n_marks of them; free with
 * catalog_model_marks_free) and the number of models into *total, from one
 * read of the id index (O(N), no row copied but the marks).
 */
int catalog_model_marks(struct catalog *c, size_t stride, char ***marks, size_t *n_marks,
			size_t *total, struct err *e);
void catalog_model_marks_free(char **marks, size_t n);
/*
 * The number of models and the sum of their sizes (bytes may be NULL), by
 * one query: SQLite still visits every model row (O(N) in the number of
 * models), but no row is copied out.
 */
int catalog_model_totals(struct catalog *c, size_t *n, uint64_t *bytes, struct err *e);
/*
 * SQLite's PRAGMA data_version of this connection: it changes whenever
 * another connection (of this process or another) commits, and never for
 * this connection's own commits. A connection that never writes thus sees
 * every change of the catalog.
 */
int catalog_data_version(struct catalog *c, uint64_t *v, struct err *e);

/*
 * Deletes a model and its file rows in one transaction and fills *removal
 * with the blobs of its repo folder that no other model uses and the
 * snapshot paths no other model of the same commit has. ERR_NOT_FOUND if
 * there is no such id.
 */
int catalog_model_delete(struct catalog *c, const char *id, struct catalog_removal *removal,
			 struct err *e);

/*
 * Number of file rows of models in repo_dir that use the blob (0 when
 * unused). A repo folder name of NULL counts over the whole cache.
 */
int catalog_blob_refcount(struct catalog *c, const char *repo_dir, const char *sha256,
			  size_t *count, struct err *e);
/*
 * A repo folder whose record says it holds blobs/<sha256> (a hint for
 * layout_adopt_blob), into buf. ERR_NOT_FOUND if none.
 */
int catalog_blob_where(struct catalog *c, const char *sha256, char *buf, size_t size,
		       struct err *e);

/* What the catalog knows of one blob file of a repo folder. */
struct catalog_blob {
	char sha256[65];
	uint64_t size;
	int adopted;	     /* another program made it: rbee-hive never removes it */
	int64_t mtime_ns;    /* mtime when it was last found right */
	int64_t verified_ms; /* when; 0: never (its content is not trusted) */
};

/* The record of blobs/<name> in repo_dir. ERR_NOT_FOUND if there is none. */
int catalog_blob_get(struct catalog *c, const char *repo_dir, const char *name,
		     struct catalog_blob *out, struct err *e);
/*
 * Records that blobs/<name> in repo_dir was found to hold sha256 (hashed,
 * or written and hashed by rbee-hive) with this size and mtime, now. A blob
 * without a record gets one with adopted as given; an existing record keeps
 * its adopted flag (who made the file does not change).
 */
int catalog_blob_verified(struct catalog *c, const char *repo_dir, const char *name,
			  const char *sha256, uint64_t size, int64_t mtime_ns, int adopted,
			  struct err *e);
/*
 * Records where the bytes of blobs/<name> in repo_dir came from ("peer",
 * "s3", "cdn"; provision/provision.h), shown with the model's files.
 */
int catalog_blob_set_source(struct catalog *c, const char *repo_dir, const char *name,
			    const char *source, struct err *e);
/* Forgets that blobs/<name> was found right: its content is hashed before the next use. */
int catalog_blob_distrust(struct catalog *c, const char *repo_dir, const char *name, struct err *e);
/*
 * 1 when some model's file row says rbee-hive made the snapshot link
 * snapshots/<commit>/<path> of repo_dir, 0 when none does.
 */
int catalog_link_made(struct catalog *c, const char *repo_dir, const char *commit, const char *path,
		      struct err *e);

/*
 * One commit of a Hub repository as the catalog holds it: the files of
 * every available model of that repo and commit (catalog_file fields path,
 * sha256, size and blob), each path once, sorted by path.
 */
struct catalog_repo {
	char *repo;	/* as asked */
	char *repo_dir; /* its folder in the hub cache */
	char commit[41];
	int gated;	    /* 1 or CATALOG_GATED_UNKNOWN when some model of it says so, else 0 */
	int64_t updated_ms; /* the latest change of those models */
	struct catalog_file *files;
	size_t nfiles;
};
void catalog_repo_cleanup(struct catalog_repo *r);

/*
 * The commit of the newest available model of the Hub repo "org/name"
 * (compared without case) that was asked for at revision or is at that
 * commit (revision "" or NULL: any), into commit. Returns 1, or 0 when the
 * catalog has none.
 */
int catalog_repo_find(struct catalog *c, const char *repo, const char *revision, char commit[41],
		      struct err *e);
/*
 * Records catalog_model.gated of a model already in the catalog (an
 * existing model asked for again). No such model is not an error.
 */
int catalog_model_set_gated(struct catalog *c, const char *id, int gated, struct err *e);
/* The files of repo at commit (above). ERR_NOT_FOUND when the catalog has none. */
int catalog_repo_snapshot(struct catalog *c, const char *repo, const char *commit,
			  struct catalog_repo *out, struct err *e);

/* Resume state of one partial blob. */
struct catalog_partial {
	char repo_dir[256];
	char sha256[65];
	uint64_t total_size;
	uint64_t done_bytes; /* sum of the ranges of the latest synced save (or first fresh one) */
	int64_t updated_ms;
};

/*
 * Saves the done ranges of blobs/<sha256>.partial in repo_dir, whose bytes
 * the caller has synced to disk: they hold after a restart of the system.
 * Ranges are sorted and merged here; each must lie within total_size; at
 * most CAP_XFER_RANGES after merging. A state of another total_size is
 * replaced whole. The commit does not hold the write lock while it waits
 * for the disk (a passive checkpoint makes it durable after), so a fresh
 * save on another connection goes on meanwhile.
 */
int catalog_partial_save(struct catalog *c, const char *repo_dir, const char *sha256,
			 uint64_t total_size, const struct byte_range *ranges, size_t n,
			 struct err *e);
/*
 * The same for ranges whose bytes are written but not synced: they hold
 * only until the system restarts, so they are kept with the boot id
 * (core/util.h boot_id) in a small file per partial beside the database
 * (resume-fresh/), written over without a sync: no commit, so nothing
 * waits for the disk (the first one of a partial also makes its row). A
 * process that crashes loses none of them. catalog_partial_load prefers
 * them while they are of the running boot, whole, and of the row's size.
 */
int catalog_partial_save_fresh(struct catalog *c, const char *repo_dir, const char *sha256,
			       uint64_t total_size, const struct byte_range *ranges, size_t n,
			       struct err *e);
/*
 * Loads it: *ranges (free() it) sorted and merged: the fresh ranges while
 * the system runs under the boot id they were saved under, else the synced
 * ones. ERR_NOT_FOUND if there is no state; ERR_CORRUPT if the stored
 * state is damaged.
 */
int catalog_partial_load(struct catalog *c, const char *repo_dir, const char *sha256,
			 uint64_t *total_size, struct byte_range **ranges, size_t *n,
			 struct err *e);
/* Forgets the state (absent is not an error). */
int catalog_partial_delete(struct catalog *c, const char *repo_dir, const char *sha256,
			   struct err *e);
/*
 * Removes the fresh state files (above) that no partial has, or that hold
 * no whole state of the running boot: after a restart of the system every
 * file left by the boot before, and a file whose row a crash kept from
 * being made. A file changed in the last minute is left, for a save that
 * may be under way. Call it at startup, before transfers run. Returns how
 * many it removed.
 */
int catalog_fresh_sweep(struct catalog *c, struct err *e);
/* Every partial, ordered by repo folder and sha256; free(*out). */
int catalog_partial_list(struct catalog *c, struct catalog_partial **out, size_t *n, struct err *e);

/*
 * The state of a blob's multipart upload to a blob store: the store's
 * upload id, the part size, and the ETags of the parts done in order (one
 * a line). target names the store and key, so that another store's state
 * is never used.
 */
#define CATALOG_UPLOAD_ID_MAX 512
#define CATALOG_UPLOAD_ETAGS_MAX (10000 * 130) /* S3's most parts, an ETag and a line end each */
struct catalog_upload {
	char upload_id[CATALOG_UPLOAD_ID_MAX];
	uint64_t part_size;
	char *etags; /* malloc'd; "" when no part is done */
};
/* ERR_NOT_FOUND when there is none; ERR_CORRUPT when it is damaged. */
int catalog_upload_get(struct catalog *c, const char *sha256, const char *target,
		       struct catalog_upload *out, struct err *e);
int catalog_upload_put(struct catalog *c, const char *sha256, const char *target,
		       const struct catalog_upload *u, struct err *e);
/* Forgets it (absent is not an error). */
int catalog_upload_delete(struct catalog *c, const char *sha256, const char *target, struct err *e);

struct catalog_job {
	char *id;	 /* "job-..." */
	char *operation; /* "model_download", ... */
	char *model_ref; /* as given; may be "" */
	enum job_state state;
	int64_t created_ms, updated_ms; /* created_ms kept from the first put */
	char *progress_json;		/* the last progress event; may be "" */
	char *error;			/* may be "" */
	char *result_id;		/* catalog id of the result; may be "" */
};
void catalog_job_cleanup(struct catalog_job *j);
void catalog_job_list_free(struct catalog_job *list, size_t n);

/* Inserts or updates a job (NULL strings are stored as ""). */
int catalog_job_put(struct catalog *c, const struct catalog_job *j, struct err *e);
int catalog_job_get(struct catalog *c, const char *id, struct catalog_job *out, struct err *e);
/*
 * Jobs, newest first (created_ms, then id), only those in *state (NULL:
 * all), at most limit (0: no limit).
 */
int catalog_job_list(struct catalog *c, const enum job_state *state, size_t limit,
		     struct catalog_job **out, size_t *n, struct err *e);
/*
 * Removes finished jobs (job_state_final()) last updated before now - max_age_ms (max_age_ms <= 0:
 * no age limit) and then all but the max_count newest finished ones (0: no
 * count limit). Queued and running jobs are never removed.
 */
int catalog_job_prune(struct catalog *c, int64_t max_age_ms, size_t max_count, size_t *removed,
		      struct err *e);
/*
 * At startup: every queued or running job becomes interrupted, in one
 * transaction; those jobs are returned (with the new state) so the daemon
 * can resume them. out and n may be NULL.
 */
int catalog_jobs_mark_interrupted(struct catalog *c, struct catalog_job **out, size_t *n,
				  struct err *e);

#endif
