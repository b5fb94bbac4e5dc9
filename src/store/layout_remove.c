/* Removing a model's files, refs that point nowhere and empty folders. */
#include "store/layout.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cancel.h"
#include "core/caps.h"
#include "core/err.h"
#include "core/log.h"
#include "core/parse.h"
#include "core/sha256.h"
#include "core/util.h"
#include "store/layout_internal.h"

/* 1 if a symlink below dfd points at blobs/<sha256>. Takes ownership of dfd. */
static int tree_links_to(int dfd, const char *sha256, int depth)
{
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return 0;
	}
	char suffix[80];
	snprintf(suffix, sizeof suffix, "blobs/%s", sha256);
	size_t sl = strlen(suffix);
	int found = 0;
	struct dirent *de;
	while (!found && (de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISLNK(st.st_mode)) {
			char t[PATH_MAX];
			ssize_t n = readlinkat(dirfd(d), de->d_name, t, sizeof t - 1);
			if (n <= 0)
				continue;
			t[n] = 0;
			size_t tl = (size_t)n;
			found = tl >= sl && strcmp(t + tl - sl, suffix) == 0 &&
				(tl == sl || t[tl - sl - 1] == '/');
		} else if (S_ISDIR(st.st_mode) && depth < TREE_DEPTH_MAX) {
			int sub = openat(dirfd(d), de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				found = tree_links_to(sub, sha256, depth + 1);
		}
	}
	closedir(d);
	return found;
}

/*
 * Removes refs equal to commit below dfd and then the folders left empty.
 * Takes ownership of dfd.
 */
static void refs_prune(int dfd, const char *commit, int depth)
{
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode) && depth < TREE_DEPTH_MAX) {
			int sub = openat(dirfd(d), de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				refs_prune(sub, commit, depth + 1);
			unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
		} else if (S_ISREG(st.st_mode)) {
			char buf[CAP_REPO_ID_LEN + 8];
			if (layout_read_small(dirfd(d), de->d_name, buf, sizeof buf) == 0 &&
			    strcmp(buf, commit) == 0)
				unlinkat(dirfd(d), de->d_name, 0);
		}
	}
	closedir(d);
}

/* Removes the folder rel below the hub folder if it is empty. */
static void rmdir_rel(const struct layout *l, const char *rel)
{
	char parent[PATH_MAX];
	if (fmt_buf(parent, sizeof parent, "%s", rel))
		return;
	char *slash = strrchr(parent, '/');
	const char *last = rel;
	int pfd;
	if (slash) {
		*slash = 0;
		last = rel + (slash - parent) + 1;
		if (layout_open_dir(l, parent, 0, &pfd, NULL))
			return;
	} else {
		pfd = fcntl(l->rootfd, F_DUPFD_CLOEXEC, 0);
		if (pfd < 0)
			return;
	}
	unlinkat(pfd, last, AT_REMOVEDIR);
	close(pfd);
}

int layout_remove_model(const struct layout *l, const char *repo_dir, const char *commit,
			const char *const *paths, size_t npaths, const char *const *blobs,
			size_t nblobs, size_t *kept, struct err *e)
{
	if (kept)
		*kept = 0;
	int rc = layout_repo_dir_check(repo_dir, e);
	if (!rc && npaths)
		rc = layout_check_commit(commit, e);
	for (size_t i = 0; !rc && i < npaths; i++)
		rc = layout_check_repo_path(paths[i], e);
	for (size_t i = 0; !rc && i < nblobs; i++)
		rc = layout_check_blob_name(blobs[i], e);
	if (rc)
		return rc;

	char rel[PATH_MAX];
	char sub[CAP_REPO_ID_LEN + 16];
	snprintf(sub, sizeof sub, "snapshots/%s", commit ? commit : "");
	for (size_t i = 0; i < npaths; i++) {
		const char *base;
		if (layout_parent_rel(rel, sizeof rel, repo_dir, sub, paths[i], &base, NULL))
			continue;
		size_t len = strlen(rel);
		int dfd;
		if (layout_open_dir(l, rel, 0, &dfd, NULL))
			continue;
		struct stat st;
		if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode) &&
		    unlinkat(dfd, base, 0) < 0)
			rc = err_set(e, ERR_IO, "remove %s/%s/%s: %s", l->root, rel, base,
				     strerror(errno));
		close(dfd);
		/* Folders of a nested path, deepest first, down to snapshots/<commit>. */
		size_t stop = strlen(repo_dir) + strlen("/snapshots/") + strlen(commit);
		while (len > stop) {
			rmdir_rel(l, rel);
			while (len > stop && rel[len] != '/')
				len--;
			rel[len] = 0;
		}
	}
	if (npaths && fmt_buf(rel, sizeof rel, "%s/snapshots/%s", repo_dir, commit) == 0) {
		rmdir_rel(l, rel);
		int dfd;
		if (layout_open_dir(l, rel, 0, &dfd, NULL) == 0) {
			close(dfd);
		} else {
			int rfd;
			if (layout_open_subdir(l, repo_dir, "refs", 0, &rfd, NULL) == 0)
				refs_prune(rfd, commit, 0);
		}
	}

	for (size_t i = 0; i < nblobs; i++) {
		int lock = -1;
		struct err lerr;
		int lrc = layout_blob_lock(l, repo_dir, blobs[i], REMOVE_LOCK_TIMEOUT_MS, NULL,
					   &lock, &lerr);
		if (lrc) {
			if (!rc)
				rc = err_set(e, lrc, "%s", err_msg(&lerr));
			continue;
		}
		int sfd;
		int linked = 0;
		if (layout_open_subdir(l, repo_dir, "snapshots", 0, &sfd, NULL) == 0)
			linked = tree_links_to(sfd, blobs[i], 0);
		if (linked) {
			log_info("keeping blob %s of %s: a snapshot still links to it", blobs[i],
				 repo_dir);
			if (kept)
				(*kept)++;
		} else {
			int bfd;
			if (layout_open_subdir(l, repo_dir, "blobs", 0, &bfd, NULL) == 0) {
				if (unlinkat(bfd, blobs[i], 0) < 0 && errno != ENOENT && !rc)
					rc = err_set(e, ERR_IO, "remove %s/%s/blobs/%s: %s",
						     l->root, repo_dir, blobs[i], strerror(errno));
				close(bfd);
			}
		}
		layout_blob_unlock(lock);
	}

	layout_repo_prune(l, repo_dir);
	return rc;
}

void layout_repo_prune(const struct layout *l, const char *repo_dir)
{
	if (layout_repo_dir_check(repo_dir, NULL))
		return;
	int dfd;
	if (layout_open_dir(l, repo_dir, 0, &dfd, NULL))
		return;
	/*
	 * blobs/ first: while it holds a blob or a partial the folder stays
	 * whole. refs/ goes only after snapshots/, since @huggingface/hub's
	 * scanner fails on a repo folder without refs/.
	 */
	int gone = unlinkat(dfd, "blobs", AT_REMOVEDIR) == 0 || errno == ENOENT;
	gone = gone && (unlinkat(dfd, "snapshots", AT_REMOVEDIR) == 0 || errno == ENOENT);
	gone = gone && (unlinkat(dfd, "refs", AT_REMOVEDIR) == 0 || errno == ENOENT);
	close(dfd);
	if (gone)
		rmdir_rel(l, repo_dir);
}
