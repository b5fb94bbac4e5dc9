/*
 * layout: the files of rbee-hive on disk, in the Hugging Face hub cache
 * layout (docs/store.md), so that a cache can be shared with huggingface_hub
 * and llama.cpp:
 *
 *   <hub>/models--ORG--REPO/blobs/<sha256>            content, named by its SHA-256
 *   <hub>/models--ORG--REPO/blobs/<sha256>.partial    a blob being written
 *   <hub>/models--ORG--REPO/snapshots/<commit>/<path> relative symlink -> ../../blobs/<sha256>
 *   <hub>/models--ORG--REPO/refs/<revision>           the commit sha, no newline
 *   <hub>/.locks/models--ORG--REPO/<sha256>.lock      advisory lock (flock) while a blob is written
 *
 * URL models live in "urls--HOST" (HOST with ':' and other characters outside
 * [A-Za-z0-9.-] turned into '_'), local file imports in "files--local",
 * OCI and Ollama models in "oci--REGISTRY--NAME" (snapshots named by the
 * manifest's sha256, refs/<tag>); all use blobs/, snapshots/ and refs/
 * exactly as a Hub repo does.
 *
 * Safety: every repo folder name, commit, revision, repo path and sha256 is
 * checked (path_check_repo, name_check_hub, revision_check) before anything
 * touches the disk, and every file is reached by walking from the hub folder
 * with openat(O_NOFOLLOW | O_DIRECTORY) one component at a time, so neither
 * a hostile name nor a symlink planted inside the cache can make rbee-hive
 * create, write or remove anything outside the hub folder. Only the hub
 * folder itself may be a symlink (the user chose it).
 *
 * Concurrency: a struct layout is immutable after layout_open() and may be
 * shared by all threads. The file system is the shared state; a writer of a
 * blob holds layout_blob_lock() for that blob from the adoption check until
 * its snapshot link is in place, and layout_remove_model() takes the same
 * lock before removing a blob, so a removal never races a publication. The
 * lock is the one huggingface_hub takes, so both programs can share a cache.
 *
 * All functions return 0 or a negative ERR_* and fill e with a message that
 * names the file or the offending input.
 */
#ifndef RBEE_STORE_LAYOUT_H
#define RBEE_STORE_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

struct err;
struct cancel_token;
struct layout;

/* Longest repo folder name ("models--" + ORG + "--" + REPO). */
#define LAYOUT_REPO_DIR_MAX 256
/* Folder of local file imports. */
#define LAYOUT_FILES_DIR "files--local"

/*
 * Opens the hub folder (created with its parents, mode 0755, when missing).
 * The path is stored as given; relative paths are resolved now.
 */
int layout_open(const char *hub_dir, struct layout **out, struct err *e);
void layout_free(struct layout *l);
/* The absolute path of the hub folder. */
const char *layout_root(const struct layout *l);

/* Repo folder names. buf receives the name; size should be LAYOUT_REPO_DIR_MAX. */
int layout_repo_dir_hf(const char *org, const char *repo, char *buf, size_t size, struct err *e);
int layout_repo_dir_url(const char *host, char *buf, size_t size, struct err *e);
/*
 * OCI and Ollama models: "oci--REGISTRY--NAME", the '/' of NAME written
 * "--" and the ':' before a port '_' ("oci--127.0.0.1_5000--ai--smollm2").
 * REGISTRY and NAME are as ref_parse checked them.
 */
int layout_repo_dir_oci(const char *registry, const char *name, char *buf, size_t size,
			struct err *e);
/* Checks a repo folder name as it comes from the catalog or a caller. */
int layout_repo_dir_check(const char *repo_dir, struct err *e);

/*
 * Absolute paths, for showing and for callers that hand a path to another
 * program. Code in rbee-hive that opens files uses the fd functions below.
 */
int layout_blob_path(const struct layout *l, const char *repo_dir, const char *sha256, char *buf,
		     size_t size, struct err *e);
int layout_partial_path(const struct layout *l, const char *repo_dir, const char *sha256, char *buf,
			size_t size, struct err *e);
int layout_snapshot_path(const struct layout *l, const char *repo_dir, const char *commit,
			 const char *repo_path, char *buf, size_t size, struct err *e);

/* The name in blobs/ of the partial of blob NAME (a checked blob name): "NAME.partial". */
#define LAYOUT_PARTIAL_NAME_MAX 80
void layout_partial_name(const char *name, char out[LAYOUT_PARTIAL_NAME_MAX]);

/*
 * 1 if blobs/<sha256> is a regular file in repo_dir (its size into *size,
 * which may be NULL), 0 if not, negative on bad input.
 */
int layout_blob_exists(const struct layout *l, const char *repo_dir, const char *sha256,
		       uint64_t *size);

/*
 * Blob names are a sha256, or for a blob another program made, possibly the
 * git sha1 it named it by (40 hex digits); every function below that takes
 * a blob's name accepts both.
 */

/*
 * 1 with the size and mtime (nanoseconds) of blobs/<name> in repo_dir when it
 * is a regular file, 0 if not, negative on bad input.
 */
int layout_blob_stat(const struct layout *l, const char *repo_dir, const char *name, uint64_t *size,
		     int64_t *mtime_ns);
/* A file's mtime in nanoseconds, as layout_blob_stat() reports it. */
struct stat;
int64_t layout_mtime_ns(const struct stat *st);

/*
 * 1 with the blob's name when snapshots/<commit>/<repo_path> is the link
 * huggingface_hub and rbee-hive make ("../" up to the repo folder, then
 * blobs/<name>, name 64 or 40 hex) and that blob is a regular file; 0 when
 * the entry is missing or anything else; negative on bad input.
 */
int layout_snapshot_entry(const struct layout *l, const char *repo_dir, const char *commit,
			  const char *repo_path, char name[65]);

/* Opens blobs/<sha256> read-only (not through a symlink). ERR_NOT_FOUND if absent. */
int layout_blob_open(const struct layout *l, const char *repo_dir, const char *sha256, int *fd,
		     struct err *e);

/*
 * Opens (creating when absent, with the folders above it) blobs/<sha256>.partial
 * for reading and writing, without truncating it: what is there is resume
 * data. *cur_size (may be NULL) receives its current size. Preallocation
 * (posix_fallocate) and writing (pwrite) are the transfer engine's work.
 * The caller closes *fd.
 */
int layout_partial_open(const struct layout *l, const char *repo_dir, const char *sha256, int *fd,
			uint64_t *cur_size, struct err *e);
/*
 * The same, and the blobs/ folder holding the partial (*dir_fd), so that the
 * partial is written, renamed and removed relative to that one folder
 * descriptor to the end (the transfer engine's contract). The caller closes both.
 */
int layout_partial_open_dir(const struct layout *l, const char *repo_dir, const char *sha256,
			    int *dir_fd, int *fd, uint64_t *cur_size, struct err *e);
/*
 * Opens blobs/<sha256>.partial read-only (not through a symlink), for a
 * reader that follows a download as it is written. ERR_NOT_FOUND if absent.
 */
int layout_partial_open_read(const struct layout *l, const char *repo_dir, const char *sha256,
			     int *fd, struct err *e);
/* Removes blobs/<sha256>.partial; absent is not an error. */
int layout_partial_remove(const struct layout *l, const char *repo_dir, const char *sha256,
			  struct err *e);

/*
 * Creates snapshots/<commit>/<repo_path> as a relative symlink to the blob
 * (one "../" per folder level), atomically: the link is made under a
 * temporary name and renamed over any previous one. commit is a Hub commit
 * sha or, for URL and file models, any safe single name (the sha256).
 */
int layout_snapshot_link(const struct layout *l, const char *repo_dir, const char *commit,
			 const char *repo_path, const char *sha256, struct err *e);

/*
 * Writes refs/<revision> = commit through a temporary file and a rename.
 * revision may contain '/' ("refs/pr/1"): folders are created.
 */
int layout_ref_write(const struct layout *l, const char *repo_dir, const char *revision,
		     const char *commit, struct err *e);
/* Reads refs/<revision> into buf. ERR_NOT_FOUND if absent, ERR_CORRUPT if not a commit. */
int layout_ref_read(const struct layout *l, const char *repo_dir, const char *revision, char *buf,
		    size_t size, struct err *e);

/*
 * Takes the advisory lock .locks/<repo_dir>/<sha256>.lock (flock, exclusive),
 * retrying every few ms until timeout_ms (negative: forever) or until cancel
 * fires (cancel may be NULL). Returns ERR_TIMEOUT or ERR_CANCELLED when it
 * gave up. *fd is the lock; release it with layout_blob_unlock().
 */
int layout_blob_lock(const struct layout *l, const char *repo_dir, const char *sha256,
		     long timeout_ms, struct cancel_token *cancel, int *fd, struct err *e);
void layout_blob_unlock(int fd);

enum layout_adopt {
	LAYOUT_ADOPT_NONE = 0, /* not in the cache: fetch it */
	LAYOUT_ADOPT_PRESENT,  /* already in repo_dir */
	LAYOUT_ADOPT_LINKED,   /* hard-linked from another repo folder */
	LAYOUT_ADOPT_COPIED,   /* copied (and rehashed) because the folders are on different file
				  systems */
};

/*
 * Makes blobs/<sha256> present in repo_dir without downloading when the
 * cache already holds that content: reused when it is already there, else
 * hard-linked from another repo folder of the cache (hint_dir is tried
 * first; may be NULL), else copied only when link(2) fails with EXDEV.
 * A blob whose size differs from size is not adopted. *how says what
 * happened; LAYOUT_ADOPT_NONE means the caller must fetch it. Call with the
 * blob lock held.
 */
int layout_adopt_blob(const struct layout *l, const char *repo_dir, const char *sha256,
		      uint64_t size, const char *hint_dir, enum layout_adopt *how, struct err *e);

/*
 * Imports the open file src_fd (what names it in messages) as a blob of
 * repo_dir: copies it from offset 0 while hashing into a new file created
 * with O_EXCL | O_NOFOLLOW in blobs/, fsyncs it and renames it to its
 * digest, or drops the copy when an identical blob is already there. The
 * source is never reopened by path nor hard-linked, so the blob is exactly
 * the bytes hashed, and its mode gives group and others read access only
 * where the source does (owner rw; the umask applies). A source that is not
 * a regular file is ERR_UNPROCESSABLE. Fills sha256 (65 bytes), *size and
 * *how (LAYOUT_ADOPT_PRESENT or LAYOUT_ADOPT_COPIED).
 */
int layout_import_fd(const struct layout *l, const char *repo_dir, int src_fd, const char *what,
		     struct cancel_token *cancel, char sha256[65], uint64_t *size,
		     enum layout_adopt *how, struct err *e);

/*
 * Publishes the open file fd, which was opened as blobs/<name>.partial of
 * repo_dir and whose content the caller has verified to hash to sha256, as
 * blobs/<sha256>: fsync, rename, fsync of the folder. When the name renamed
 * is not the file fd holds (someone who can write blobs/ swapped it), the
 * new name is removed and the answer is ERR_CONFLICT.
 */
int layout_partial_publish(const struct layout *l, const char *repo_dir, const char *name, int fd,
			   const char *sha256, struct err *e);

/*
 * Removes one model from repo_dir: its snapshot links snapshots/<commit>/<paths[i]>
 * (only symlinks are removed), then the blobs the catalog says no other model
 * uses, except a blob that some snapshot link in the repo folder still points
 * to (a huggingface_hub download of the same repo, for example). Each blob is
 * removed under its lock. Then empty folders, refs pointing at a commit whose
 * snapshot folder is gone, and the repo folder itself when empty. Missing
 * files are not an error. *kept (may be NULL) counts blobs kept because a
 * link still points at them.
 */
/*
 * Removes the repo folder when nothing is left in it: blobs/ empty (no blob,
 * no partial), then snapshots/ and refs/ empty. A folder that still holds
 * anything keeps blobs/, snapshots/ and refs/ all three, which cache
 * scanners need. Errors are not reported: what cannot be removed stays.
 */
void layout_repo_prune(const struct layout *l, const char *repo_dir);

int layout_remove_model(const struct layout *l, const char *repo_dir, const char *commit,
			const char *const *paths, size_t npaths, const char *const *blobs,
			size_t nblobs, size_t *kept, struct err *e);

#endif
