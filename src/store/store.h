/*
 * store: the operations that need both the catalog and the files on disk
 * (docs/store.md): where the data root and the hub cache are, verifying
 * models by rehashing their files, deleting a model with exactly the blobs
 * no other model uses, and removing a partial download.
 *
 * Threads: the functions take a catalog connection owned by the calling
 * thread and a layout that any thread may share.
 */
#ifndef RBEE_STORE_STORE_H
#define RBEE_STORE_STORE_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

struct err;
struct catalog;
struct layout;
struct cancel_token;

struct store_paths {
	char root[PATH_MAX];	/* the data root */
	char catalog[PATH_MAX]; /* <root>/catalog.db */
	char hub[PATH_MAX];	/* the hub cache folder */
	int shared;		/* 1 when hub is a cache shared with huggingface_hub */
	const char *hub_from;	/* what chose hub: "--hf-cache", "HF_HUB_CACHE", "HF_HOME",
				   "huggingface_hub's default" or "the data root" */
};

/*
 * Resolves the paths (docs/store.md, "Where things live"). Data root: data_dir, else
 * $RBEE_HIVE_HOME, else $XDG_CACHE_HOME/rbee-hive, else $HOME/.cache/rbee-hive. Hub cache: hf_cache
 * (--hf-cache DIR) when given; else, when share_hf_cache is set, $HF_HUB_CACHE, else $HF_HOME/hub,
 * else huggingface_hub's own default
 * ($XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub); else the
 * private <root>/hub. The caller decides when to share: the daemon and the
 * provisioner share whenever HF_HUB_CACHE or HF_HOME is set (docs/store.md,
 * hf_env_shares_cache()), so the store itself reads the HF variables only
 * when asked. Nothing is created; see store_paths_prepare().
 */
int store_paths_resolve(const char *data_dir, const char *hf_cache, int share_hf_cache,
			struct store_paths *out, struct err *e);
/* Creates the data root (0700: it holds the catalog) and the hub folder (0755). */
int store_paths_prepare(const struct store_paths *p, struct err *e);

enum store_file_status {
	STORE_FILE_OK = 0,
	STORE_FILE_MISSING,	  /* the blob or its snapshot link is missing */
	STORE_FILE_CORRUPT,	  /* right size, wrong SHA-256 */
	STORE_FILE_SIZE_MISMATCH, /* wrong size (not hashed) */
};
/* "ok", "missing", "corrupt", "size_mismatch". */
const char *store_file_status_name(enum store_file_status s);

struct store_verify_item {
	const char *model_id;
	const char *path;   /* path in the snapshot */
	const char *sha256; /* expected */
	enum store_file_status status;
	uint64_t expected_size;
	uint64_t actual_size; /* 0 when missing */
	const char *detail;   /* what was wrong, naming the file; "" when ok */
};

/* Called once per file checked, on the calling thread. */
typedef void (*store_verify_fn)(void *arg, const struct store_verify_item *it);

struct store_verify_summary {
	size_t models;	       /* checked */
	size_t models_bad;     /* now "failed" because a file is bad */
	size_t models_skipped; /* "downloading": being written, not checked */
	size_t files;
	size_t files_bad;
	uint64_t bytes_hashed;
};

/*
 * Verifies one model (query: an id or any unambiguous ref, see
 * catalog_model_find) or every model (query NULL): for each file, the blob
 * exists, has the right size and hashes to its sha256, and the snapshot link
 * points at it. Files are never changed; each blob's record in the catalog
 * says whether it was found right (a damaged one is hashed again before a
 * pull trusts it). The catalog is made truthful: a
 * model with a bad file becomes "failed" with an error that names the files;
 * a "failed" model whose files all check out becomes "available" again. A
 * model changed by someone else while it was being checked keeps that
 * change. fn (may be NULL) hears about each file. Returns 0 when the run
 * completed (bad files are reported, not errors), ERR_CANCELLED when cancel
 * fired, or the error that stopped it.
 */
int store_verify(struct catalog *c, const struct layout *l, const char *query, store_verify_fn fn,
		 void *arg, struct cancel_token *cancel, struct store_verify_summary *sum,
		 struct err *e);

/*
 * Whether blobs/<name> of repo_dir holds the content wanted: want_sha256
 * and/or want_oid (the git blob id of a non-LFS file; either may be NULL),
 * at size; a blob named by a sha256 or git sha1 must also match its name.
 * A blob whose record in the catalog says it was found right at its current
 * size and mtime is trusted without reading it (unless force is set, or an
 * oid is wanted that the name does not state); any other is hashed once and
 * the result recorded, so the next pull does not hash it again. A blob
 * without a record is recorded as adopted when adopted_if_new is set
 * (another program made it). On success the content's sha256 goes to
 * sha256_out and *hashed (may be NULL) says whether the blob was read.
 * Returns ERR_NOT_FOUND when the blob is missing or has another size,
 * ERR_DIGEST when its content differs (its record stops being trusted),
 * ERR_CANCELLED or another error.
 */
int store_blob_check(struct catalog *c, const struct layout *l, const char *repo_dir,
		     const char *name, const char *want_sha256, const char *want_oid, uint64_t size,
		     int force, int adopted_if_new, struct cancel_token *cancel,
		     char sha256_out[65], int *hashed, struct err *e);

/*
 * Deletes the model query names (id or unambiguous ref): the catalog rows
 * first, in one transaction (so the catalog never points at removed files),
 * then its snapshot links and the blobs no other model uses. A crash between
 * the two leaves unreferenced files, never a row without files. id_out (may
 * be NULL) receives the deleted id.
 */
int store_delete_model(struct catalog *c, const struct layout *l, const char *query, char *id_out,
		       size_t id_size, struct err *e);

/*
 * 1 when a transfer holds the lock of blobs/<sha256>.partial in repo_dir
 * (it is being downloaded now, by this process or another), 0 when not, or
 * a negative code. The lock is taken for an instant when it is free.
 */
int store_partial_writing(const struct layout *l, const char *repo_dir, const char *sha256,
			  struct err *e);

/*
 * Removes a partial download: its file and its resume state, and the repo
 * folder when nothing else is left in it. ERR_CONFLICT when a transfer
 * holds its lock (it is being downloaded now).
 */
int store_partial_remove(struct catalog *c, const struct layout *l, const char *repo_dir,
			 const char *sha256, struct err *e);

#endif
