/*
 * layout_internal: what the files of the layout share and nothing else
 * includes. layout.c holds the checks of names, opening the hub folder and
 * walking below it, repo folders and paths; layout_blob.c blobs, partials
 * and their locks; layout_snapshot.c snapshot links and refs;
 * layout_adopt.c adopting, importing and publishing blobs;
 * layout_remove.c removing a model's files and empty folders.
 *
 * Every walk starts at the hub folder's descriptor and opens one checked
 * component at a time with O_NOFOLLOW (see layout.h).
 */
#ifndef RBEE_STORE_LAYOUT_INTERNAL_H
#define RBEE_STORE_LAYOUT_INTERNAL_H

#include <stddef.h>

#include "core/caps.h"
#include "store/layout.h"

struct err;

struct layout {
	char *root;
	int rootfd;
};

/* Folder walks (snapshots, refs) go at most this deep; repo paths are shallower. */
#define TREE_DEPTH_MAX (CAP_REPO_PATH_DEPTH + 4)
#define LOCK_POLL_MS 20
#define REMOVE_LOCK_TIMEOUT_MS 30000

/* Adds context to a lower layer's message; e may be NULL. */
int layout_with_context(struct err *e, int rc, const char *what);

/*
 * A blob name: a sha256, or the git sha1 another program (huggingface_hub,
 * for a non-LFS file) named it by. Both are one harmless path component.
 */
int layout_check_blob_name(const char *s, struct err *e);

int layout_check_commit(const char *c, struct err *e);

int layout_check_repo_path(const char *p, struct err *e);

/*
 * Opens the folder rel (components separated by '/', each already checked)
 * below the hub folder, one component at a time without following symlinks,
 * creating missing folders when create is set.
 */
int layout_open_dir(const struct layout *l, const char *rel, int create, int *out, struct err *e);

/* A name for a temporary file or link that no repo file can carry. */
void layout_tmp_name(char *buf, size_t size);

/*
 * Makes repo_dir with blobs/, snapshots/ and refs/ when it is missing. A
 * new one is built under a temporary name and renamed into place, so no
 * scanner ever sees a repo folder without them; an existing one gets those
 * it lacks.
 */
int layout_repo_dir_make(const struct layout *l, const char *repo_dir, struct err *e);

int layout_open_subdir(const struct layout *l, const char *repo_dir, const char *sub, int create,
		       int *out, struct err *e);

int layout_check_blob_args(const char *repo_dir, const char *sha256, struct err *e);

/* Checks a blob's repo folder and name, then opens (or creates) its blobs/ folder. */
int layout_open_blobs(const struct layout *l, const char *repo_dir, const char *sha256, int create,
		      int *dfd, struct err *e);

/*
 * The folder holding path below <repo_dir>/<sub> ("models--o--r/refs/pr" for
 * "pr/1") into rel, and the last component of path into *base.
 */
int layout_parent_rel(char *rel, size_t size, const char *repo_dir, const char *sub,
		      const char *path, const char **base, struct err *e);

/*
 * Renames the finished temporary entry tmp of folder dfd (rel below the root)
 * to base, replacing what was there in one step, and syncs the folder so the
 * new name survives a crash. On failure the temporary entry is removed.
 */
int layout_rename_into_place(const struct layout *l, int dfd, const char *rel, const char *tmp,
			     const char *base, struct err *e);

/* Reads a small file relative to dfd into buf, trailing whitespace trimmed. */
int layout_read_small(int dfd, const char *name, char *buf, size_t size);

#endif
