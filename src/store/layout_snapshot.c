/* Snapshot links and refs, each written under a temporary name and renamed. */
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

/* Longest snapshot link target: "../" per level, "blobs/", a sha256. */
#define LINK_TARGET_MAX (3 * (CAP_REPO_PATH_DEPTH + 2) + 80)

/*
 * The target of snapshots/<commit>/<repo_path> for blob name, the link
 * huggingface_hub makes too: from snapshots/<commit>/<dirs>/ up to the repo
 * folder (2 + one per '/'), then blobs/<name>.
 */
static void link_target(const char *repo_path, const char *name, char buf[LINK_TARGET_MAX])
{
	size_t ups = 2, off = 0;
	for (const char *p = repo_path; *p; p++)
		ups += *p == '/';
	for (size_t i = 0; i < ups && off < LINK_TARGET_MAX; i++)
		off += (size_t)snprintf(buf + off, LINK_TARGET_MAX - off, "../");
	if (off < LINK_TARGET_MAX)
		snprintf(buf + off, LINK_TARGET_MAX - off, "blobs/%s", name ? name : "");
}

/* Opens rel (below repo_dir), making the repo folder and rel when missing. */
static int open_in_made_repo(const struct layout *l, const char *repo_dir, const char *rel,
			     int *dfd, struct err *e)
{
	int rc = layout_repo_dir_make(l, repo_dir, e);
	return rc ? rc : layout_open_dir(l, rel, 1, dfd, e);
}

int layout_snapshot_link(const struct layout *l, const char *repo_dir, const char *commit,
			 const char *repo_path, const char *sha256, struct err *e)
{
	int rc = layout_check_blob_args(repo_dir, sha256, e);
	if (!rc)
		rc = layout_check_commit(commit, e);
	if (!rc)
		rc = layout_check_repo_path(repo_path, e);
	if (rc)
		return rc;
	char rel[PATH_MAX], sub[CAP_REPO_ID_LEN + 16];
	const char *base;
	snprintf(sub, sizeof sub, "snapshots/%s", commit);
	rc = layout_parent_rel(rel, sizeof rel, repo_dir, sub, repo_path, &base, e);
	if (rc)
		return rc;
	char target[LINK_TARGET_MAX];
	link_target(repo_path, sha256, target);

	int dfd;
	rc = open_in_made_repo(l, repo_dir, rel, &dfd, e);
	if (rc)
		return rc;
	char tmp[64];
	layout_tmp_name(tmp, sizeof tmp);
	if (symlinkat(target, dfd, tmp) < 0) {
		rc = err_set(e, ERR_IO, "symlink %s/%s/%s: %s", l->root, rel, tmp, strerror(errno));
		goto out;
	}
	rc = layout_rename_into_place(l, dfd, rel, tmp, base, e);
out:
	close(dfd);
	return rc;
}

int layout_snapshot_entry(const struct layout *l, const char *repo_dir, const char *commit,
			  const char *repo_path, char name[65])
{
	char rel[PATH_MAX], sub[CAP_REPO_ID_LEN + 16], target[LINK_TARGET_MAX + 1];
	char want[LINK_TARGET_MAX];
	const char *base;
	if (layout_repo_dir_check(repo_dir, NULL) || layout_check_commit(commit, NULL) ||
	    layout_check_repo_path(repo_path, NULL))
		return ERR_INVALID;
	snprintf(sub, sizeof sub, "snapshots/%s", commit);
	if (layout_parent_rel(rel, sizeof rel, repo_dir, sub, repo_path, &base, NULL))
		return ERR_INVALID;
	int dfd;
	if (layout_open_dir(l, rel, 0, &dfd, NULL))
		return 0;
	ssize_t n = readlinkat(dfd, base, target, sizeof target - 1);
	close(dfd);
	if (n <= 0)
		return 0;
	target[n] = 0;
	/* Exactly the link huggingface_hub and rbee-hive make; anything else is not adopted. */
	link_target(repo_path, NULL, want);
	size_t wl = strlen(want);
	if ((size_t)n <= wl || strncmp(target, want, wl) != 0 ||
	    layout_check_blob_name(target + wl, NULL))
		return 0;
	snprintf(name, 65, "%s", target + wl);
	uint64_t size;
	int64_t mtime;
	return layout_blob_stat(l, repo_dir, name, &size, &mtime) == 1;
}

static int check_revision(const char *rev, struct err *e)
{
	if (!rev)
		return err_set(e, ERR_INVALID, "revision: missing");
	size_t len = strnlen(rev, CAP_REVISION_LEN + 1);
	int rc = revision_check(rev, len, e);
	if (rc)
		return rc;
	/* It becomes a path below refs/: the repo-path rules apply too. */
	return layout_with_context(e, path_check_repo(rev, len, e), "revision");
}

/* Checks a ref's names; its folder below the hub goes to rel, its file name to *base. */
static int ref_place(const char *repo_dir, const char *revision, char rel[PATH_MAX],
		     const char **base, struct err *e)
{
	int rc = layout_repo_dir_check(repo_dir, e);
	if (!rc)
		rc = check_revision(revision, e);
	return rc ? rc : layout_parent_rel(rel, PATH_MAX, repo_dir, "refs", revision, base, e);
}

int layout_ref_write(const struct layout *l, const char *repo_dir, const char *revision,
		     const char *commit, struct err *e)
{
	char rel[PATH_MAX];
	const char *base;
	int rc = ref_place(repo_dir, revision, rel, &base, e);
	if (!rc)
		rc = layout_check_commit(commit, e);
	if (rc)
		return rc;
	int dfd;
	rc = open_in_made_repo(l, repo_dir, rel, &dfd, e);
	if (rc)
		return rc;
	char tmp[64];
	layout_tmp_name(tmp, sizeof tmp);
	int f = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (f < 0) {
		rc = err_set(e, ERR_IO, "create %s/%s/%s: %s", l->root, rel, tmp, strerror(errno));
		goto out;
	}
	size_t len = strlen(commit);
	ssize_t w = write(f, commit, len);
	if (w != (ssize_t)len || fsync(f) < 0) {
		rc = err_set(e, ERR_IO, "write %s/%s/%s: %s", l->root, rel, tmp,
			     w < 0 ? strerror(errno) : "short write");
		close(f);
		unlinkat(dfd, tmp, 0);
		goto out;
	}
	close(f);
	rc = layout_rename_into_place(l, dfd, rel, tmp, base, e);
out:
	close(dfd);
	return rc;
}

int layout_ref_read(const struct layout *l, const char *repo_dir, const char *revision, char *buf,
		    size_t size, struct err *e)
{
	char rel[PATH_MAX];
	const char *base;
	int rc = ref_place(repo_dir, revision, rel, &base, e);
	if (rc)
		return rc;
	int dfd;
	struct err sub;
	rc = layout_open_dir(l, rel, 0, &dfd, &sub);
	if (rc)
		return err_set(e, rc, "ref %s of %s: %s", revision, repo_dir, err_msg(&sub));
	char tmp[CAP_REPO_ID_LEN + 8];
	if (layout_read_small(dfd, base, tmp, sizeof tmp) < 0) {
		rc = err_set(e, errno == ENOENT ? ERR_NOT_FOUND : ERR_IO, "ref %s of %s: %s",
			     revision, repo_dir, strerror(errno));
		close(dfd);
		return rc;
	}
	close(dfd);
	if (layout_check_commit(tmp, NULL))
		return err_set(e, ERR_CORRUPT, "ref %s of %s: does not hold a commit", revision,
			       repo_dir);
	if (fmt_buf(buf, size, "%s", tmp))
		return err_set(e, ERR_TOO_LARGE, "ref %s of %s: commit too long", revision,
			       repo_dir);
	return 0;
}
