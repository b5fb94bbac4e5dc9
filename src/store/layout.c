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

struct layout {
	char *root;
	int rootfd;
};

/* Folder walks (snapshots, refs) go at most this deep; repo paths are shallower. */
#define TREE_DEPTH_MAX (CAP_REPO_PATH_DEPTH + 4)
#define COPY_BUF (1 << 20)
#define LOCK_POLL_MS 20
#define REMOVE_LOCK_TIMEOUT_MS 30000

/* Repo folder kinds: the prefix of the folder name. */
static const char *const repo_dir_prefixes[] = {"models--", "urls--", "files--"};

/* Adds context to a lower layer's message; e may be NULL. */
static int with_context(struct err *e, int rc, const char *what)
{
	if (e && rc)
		err_prefix(e, "%s", what);
	return rc;
}

/*
 * A blob name: a sha256, or the git sha1 another program (huggingface_hub,
 * for a non-LFS file) named it by. Both are one harmless path component.
 */
static int check_sha(const char *s, struct err *e)
{
	size_t n = s ? strnlen(s, 65) : 0;
	if ((n != 64 && n != 40) || !is_hex_lower(s, n))
		return err_set(e, ERR_INVALID,
			       "blob name '%.80s': expected 64 (or 40) lowercase hex digits",
			       s ? s : "");
	return 0;
}

static int check_commit(const char *c, struct err *e)
{
	if (!c)
		return err_set(e, ERR_INVALID, "commit: missing");
	return with_context(e, name_check_hub(c, strnlen(c, CAP_REPO_ID_LEN + 1), e), "commit");
}

static int check_repo_path(const char *p, struct err *e)
{
	if (!p)
		return err_set(e, ERR_INVALID, "repo path: missing");
	return path_check_repo(p, strnlen(p, CAP_REPO_PATH_LEN + 1), e);
}

int layout_repo_dir_check(const char *d, struct err *e)
{
	if (!d)
		return err_set(e, ERR_INVALID, "repo folder: missing");
	size_t len = strnlen(d, LAYOUT_REPO_DIR_MAX);
	if (len >= LAYOUT_REPO_DIR_MAX)
		return err_set(e, ERR_INVALID, "repo folder '%.80s...': too long", d);
	int known = 0;
	for (size_t i = 0; i < sizeof repo_dir_prefixes / sizeof repo_dir_prefixes[0]; i++) {
		size_t pl = strlen(repo_dir_prefixes[i]);
		if (len > pl && strncmp(d, repo_dir_prefixes[i], pl) == 0)
			known = 1;
	}
	if (!known)
		return err_set(e, ERR_INVALID,
			       "repo folder '%.80s': expected models--ORG--REPO, urls--HOST or "
			       "files--NAME",
			       d);
	/* One path component of harmless characters: no '/', no "..", no NUL. */
	for (size_t i = 0; i < len; i++) {
		char c = d[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			 (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		if (!ok || (c == '.' && d[i + 1] == '.'))
			return err_set(e, ERR_INVALID, "repo folder '%.80s': bad character at %zu",
				       d, i);
	}
	return 0;
}

int layout_repo_dir_hf(const char *org, const char *repo, char *buf, size_t size, struct err *e)
{
	if (!org || !repo)
		return err_set(e, ERR_INVALID, "repo folder: organisation or repo missing");
	int rc = name_check_hub(org, strnlen(org, CAP_REPO_ID_LEN + 1), e);
	if (rc)
		return with_context(e, rc, "organisation");
	rc = name_check_hub(repo, strnlen(repo, CAP_REPO_ID_LEN + 1), e);
	if (rc)
		return with_context(e, rc, "repo");
	if (fmt_buf(buf, size, "models--%s--%s", org, repo))
		return err_set(e, ERR_TOO_LARGE, "repo folder for %s/%s: too long", org, repo);
	return 0;
}

int layout_repo_dir_url(const char *host, char *buf, size_t size, struct err *e)
{
	if (!host || !host[0])
		return err_set(e, ERR_INVALID, "URL host: empty");
	size_t hl = strnlen(host, 256);
	if (hl > 200 || size < sizeof "urls--" + hl)
		return err_set(e, ERR_TOO_LARGE, "URL host '%.80s': too long", host);
	memcpy(buf, "urls--", 6);
	/* '_' never occurs in a host name, so the mapping cannot merge two hosts. */
	for (size_t i = 0; i < hl; i++) {
		char c = host[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			 (c >= '0' && c <= '9') || c == '.' || c == '-';
		buf[6 + i] = ok ? c : '_';
	}
	buf[6 + hl] = 0;
	/* "a..b" or a trailing '.' would still fail the folder check: say so now. */
	return layout_repo_dir_check(buf, e);
}

static int mkdir_p(const char *path, struct err *e)
{
	char buf[PATH_MAX];
	if (fmt_buf(buf, sizeof buf, "%s", path))
		return err_set(e, ERR_TOO_LARGE, "folder path too long: %.80s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return err_set(e, ERR_IO, "mkdir %s: %s", buf, strerror(errno));
		*p = '/';
	}
	if (mkdir(buf, 0755) < 0 && errno != EEXIST)
		return err_set(e, ERR_IO, "mkdir %s: %s", buf, strerror(errno));
	return 0;
}

int layout_open(const char *hub_dir, struct layout **out, struct err *e)
{
	*out = NULL;
	if (!hub_dir || !hub_dir[0])
		return err_set(e, ERR_INVALID, "hub cache folder: empty path");
	int rc = mkdir_p(hub_dir, e);
	if (rc)
		return rc;
	char *abs = realpath(hub_dir, NULL);
	if (!abs)
		return err_set(e, ERR_IO, "hub cache folder %s: %s", hub_dir, strerror(errno));
	int fd = open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		rc = err_set(e, ERR_IO, "open %s: %s", abs, strerror(errno));
		free(abs);
		return rc;
	}
	struct layout *l = xcalloc(1, sizeof *l);
	l->root = abs;
	l->rootfd = fd;
	*out = l;
	return 0;
}

void layout_free(struct layout *l)
{
	if (!l)
		return;
	close(l->rootfd);
	free(l->root);
	free(l);
}

const char *layout_root(const struct layout *l)
{
	return l->root;
}

/*
 * Opens the folder rel (components separated by '/', each already checked)
 * below the hub folder, one component at a time without following symlinks,
 * creating missing folders when create is set.
 */
static int open_dir(const struct layout *l, const char *rel, int create, int *out, struct err *e)
{
	char buf[PATH_MAX];
	*out = -1;
	if (fmt_buf(buf, sizeof buf, "%s", rel))
		return err_set(e, ERR_TOO_LARGE, "path too long: %.80s", rel);
	int cur = fcntl(l->rootfd, F_DUPFD_CLOEXEC, 0);
	if (cur < 0)
		return err_set(e, ERR_IO, "dup: %s", strerror(errno));
	char *save = NULL;
	for (char *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		int fd = openat(cur, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT && create) {
			if (mkdirat(cur, c, 0755) < 0 && errno != EEXIST) {
				int er = errno;
				close(cur);
				return err_set(e, er == ENOSPC ? ERR_NOSPACE : ERR_IO,
					       "mkdir %s/%s: %s", l->root, rel, strerror(er));
			}
			fd = openat(cur, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		if (fd < 0) {
			int er = errno;
			close(cur);
			if (er == ENOENT)
				return err_set(e, ERR_NOT_FOUND, "%s/%s: no such folder", l->root,
					       rel);
			if (er == ELOOP || er == ENOTDIR)
				return err_set(
				    e, ERR_IO,
				    "%s/%s: '%s' is a symlink or not a folder; not following it",
				    l->root, rel, c);
			return err_set(e, ERR_IO, "open %s/%s: %s", l->root, rel, strerror(er));
		}
		close(cur);
		cur = fd;
	}
	*out = cur;
	return 0;
}

/* A name for a temporary file or link that no repo file can carry. */
static void tmp_name(char *buf, size_t size)
{
	static unsigned counter;
	unsigned n = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
	snprintf(buf, size, ".rbee-tmp-%ld-%u", (long)getpid(), n);
}

/* The three folders of a repo folder; cache scanners need each of them. */
static const char *const repo_subdirs[] = {"blobs", "snapshots", "refs"};

/* Makes the missing ones of repo_subdirs in the repo folder dfd. */
static int make_subdirs(const struct layout *l, int dfd, const char *repo_dir, struct err *e)
{
	for (size_t i = 0; i < sizeof repo_subdirs / sizeof repo_subdirs[0]; i++) {
		if (mkdirat(dfd, repo_subdirs[i], 0755) < 0 && errno != EEXIST)
			return err_set(e, errno == ENOSPC ? ERR_NOSPACE : ERR_IO,
				       "mkdir %s/%s/%s: %s", l->root, repo_dir, repo_subdirs[i],
				       strerror(errno));
	}
	return 0;
}

/*
 * Makes repo_dir with blobs/, snapshots/ and refs/ when it is missing. A
 * new one is built under a temporary name and renamed into place, so no
 * scanner ever sees a repo folder without them; an existing one gets those
 * it lacks.
 */
static int repo_dir_make(const struct layout *l, const char *repo_dir, struct err *e)
{
	int dfd;
	char tmp[64];
	int rc = open_dir(l, repo_dir, 0, &dfd, e);
	if (rc == 0)
		goto existing;
	if (rc != ERR_NOT_FOUND)
		return rc;
	err_clear(e);
	tmp_name(tmp, sizeof tmp);
	if (mkdirat(l->rootfd, tmp, 0755) < 0)
		return err_set(e, errno == ENOSPC ? ERR_NOSPACE : ERR_IO, "mkdir %s/%s: %s",
			       l->root, tmp, strerror(errno));
	rc = open_dir(l, tmp, 0, &dfd, e);
	if (rc == 0) {
		rc = make_subdirs(l, dfd, repo_dir, e);
		for (size_t i = 0; rc && i < sizeof repo_subdirs / sizeof repo_subdirs[0]; i++)
			unlinkat(dfd, repo_subdirs[i], AT_REMOVEDIR);
		close(dfd);
	}
	if (rc == 0 && renameat2(l->rootfd, tmp, l->rootfd, repo_dir, RENAME_NOREPLACE) == 0)
		return 0;
	/* Another writer made it meanwhile: drop ours and complete theirs. */
	if (rc == 0 && errno != EEXIST)
		rc = err_set(e, ERR_IO, "rename %s/%s to %s: %s", l->root, tmp, repo_dir,
			     strerror(errno));
	if (open_dir(l, tmp, 0, &dfd, NULL) == 0) {
		for (size_t i = 0; i < sizeof repo_subdirs / sizeof repo_subdirs[0]; i++)
			unlinkat(dfd, repo_subdirs[i], AT_REMOVEDIR);
		close(dfd);
	}
	unlinkat(l->rootfd, tmp, AT_REMOVEDIR);
	if (rc)
		return rc;
	rc = open_dir(l, repo_dir, 0, &dfd, e);
	if (rc)
		return rc;
existing:
	rc = make_subdirs(l, dfd, repo_dir, e);
	close(dfd);
	return rc;
}

static int open_subdir(const struct layout *l, const char *repo_dir, const char *sub, int create,
		       int *out, struct err *e)
{
	if (create) {
		int rc = repo_dir_make(l, repo_dir, e);
		if (rc)
			return rc;
	}
	char rel[PATH_MAX];
	if (fmt_buf(rel, sizeof rel, "%s/%s", repo_dir, sub))
		return err_set(e, ERR_TOO_LARGE, "path too long: %.80s", repo_dir);
	return open_dir(l, rel, create, out, e);
}

int layout_blob_path(const struct layout *l, const char *repo_dir, const char *sha256, char *buf,
		     size_t size, struct err *e)
{
	int rc = layout_repo_dir_check(repo_dir, e);
	if (!rc)
		rc = check_sha(sha256, e);
	if (!rc && fmt_buf(buf, size, "%s/%s/blobs/%s", l->root, repo_dir, sha256))
		rc = err_set(e, ERR_TOO_LARGE, "blob path too long");
	return rc;
}

int layout_partial_path(const struct layout *l, const char *repo_dir, const char *sha256, char *buf,
			size_t size, struct err *e)
{
	int rc = layout_repo_dir_check(repo_dir, e);
	if (!rc)
		rc = check_sha(sha256, e);
	if (!rc && fmt_buf(buf, size, "%s/%s/blobs/%s.partial", l->root, repo_dir, sha256))
		rc = err_set(e, ERR_TOO_LARGE, "partial path too long");
	return rc;
}

int layout_snapshot_path(const struct layout *l, const char *repo_dir, const char *commit,
			 const char *repo_path, char *buf, size_t size, struct err *e)
{
	int rc = layout_repo_dir_check(repo_dir, e);
	if (!rc)
		rc = check_commit(commit, e);
	if (!rc)
		rc = check_repo_path(repo_path, e);
	if (!rc &&
	    fmt_buf(buf, size, "%s/%s/snapshots/%s/%s", l->root, repo_dir, commit, repo_path))
		rc = err_set(e, ERR_TOO_LARGE, "snapshot path too long");
	return rc;
}

static int check_blob_args(const char *repo_dir, const char *sha256, struct err *e)
{
	int rc = layout_repo_dir_check(repo_dir, e);
	return rc ? rc : check_sha(sha256, e);
}

/* Checks a blob's repo folder and name, then opens (or creates) its blobs/ folder. */
static int open_blobs(const struct layout *l, const char *repo_dir, const char *sha256, int create,
		      int *dfd, struct err *e)
{
	int rc = check_blob_args(repo_dir, sha256, e);
	if (rc)
		return rc;
	return open_subdir(l, repo_dir, "blobs", create, dfd, e);
}

int layout_blob_exists(const struct layout *l, const char *repo_dir, const char *sha256,
		       uint64_t *size)
{
	uint64_t have = 0;
	int64_t mtime;
	int found = layout_blob_stat(l, repo_dir, sha256, &have, &mtime);
	if (found == 1 && size)
		*size = have;
	return found;
}

int layout_blob_open(const struct layout *l, const char *repo_dir, const char *sha256, int *fd,
		     struct err *e)
{
	*fd = -1;
	int dfd;
	int rc = open_blobs(l, repo_dir, sha256, 0, &dfd, e);
	if (rc)
		return rc;
	*fd = openat(dfd, sha256, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int er = errno;
	close(dfd);
	if (*fd < 0)
		return err_set(e, er == ENOENT ? ERR_NOT_FOUND : ERR_IO, "blob %s/%s/blobs/%s: %s",
			       l->root, repo_dir, sha256, strerror(er));
	return 0;
}

int layout_partial_open_dir(const struct layout *l, const char *repo_dir, const char *sha256,
			    int *dir_fd, int *fd, uint64_t *cur_size, struct err *e)
{
	*fd = -1;
	*dir_fd = -1;
	int dfd;
	int rc = open_blobs(l, repo_dir, sha256, 1, &dfd, e);
	if (rc)
		return rc;
	char name[80];
	snprintf(name, sizeof name, "%s.partial", sha256);
	int f = openat(dfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (f < 0) {
		int er = errno;
		close(dfd);
		return err_set(e, er == ENOSPC ? ERR_NOSPACE : ERR_IO, "open %s/%s/blobs/%s: %s",
			       l->root, repo_dir, name, strerror(er));
	}
	struct stat st;
	if (fstat(f, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(f);
		close(dfd);
		return err_set(e, ERR_IO, "%s/%s/blobs/%s: not a regular file", l->root, repo_dir,
			       name);
	}
	if (cur_size)
		*cur_size = (uint64_t)st.st_size;
	*fd = f;
	*dir_fd = dfd;
	return 0;
}

int layout_partial_open(const struct layout *l, const char *repo_dir, const char *sha256,
			int *fd, uint64_t *cur_size, struct err *e)
{
	int dfd;
	int rc = layout_partial_open_dir(l, repo_dir, sha256, &dfd, fd, cur_size, e);
	if (rc == 0)
		close(dfd);
	return rc;
}

int layout_partial_remove(const struct layout *l, const char *repo_dir, const char *sha256,
			  struct err *e)
{
	int rc = check_blob_args(repo_dir, sha256, e);
	if (rc)
		return rc;
	int dfd;
	struct err sub;
	rc = open_subdir(l, repo_dir, "blobs", 0, &dfd, &sub);
	if (rc == ERR_NOT_FOUND)
		return 0;
	if (rc) {
		*e = sub;
		return rc;
	}
	char name[80];
	snprintf(name, sizeof name, "%s.partial", sha256);
	rc = 0;
	if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
		rc = err_set(e, ERR_IO, "remove %s/%s/blobs/%s: %s", l->root, repo_dir, name,
			     strerror(errno));
	close(dfd);
	return rc;
}

int layout_blob_commit(const struct layout *l, const char *repo_dir, const char *sha256,
		       struct err *e)
{
	int dfd;
	int rc = open_blobs(l, repo_dir, sha256, 0, &dfd, e);
	if (rc)
		return rc;
	char name[80];
	snprintf(name, sizeof name, "%s.partial", sha256);
	int f = openat(dfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (f < 0) {
		rc = err_set(e, errno == ENOENT ? ERR_NOT_FOUND : ERR_IO, "open %s/%s/blobs/%s: %s",
			     l->root, repo_dir, name, strerror(errno));
		goto out;
	}
	if (fsync(f) < 0) {
		rc = err_set(e, ERR_IO, "fsync %s/%s/blobs/%s: %s", l->root, repo_dir, name,
			     strerror(errno));
		close(f);
		goto out;
	}
	close(f);
	if (renameat(dfd, name, dfd, sha256) < 0) {
		rc = err_set(e, ERR_IO, "rename %s/%s/blobs/%s: %s", l->root, repo_dir, name,
			     strerror(errno));
		goto out;
	}
	if (fsync(dfd) < 0)
		rc =
		    err_set(e, ERR_IO, "fsync %s/%s/blobs: %s", l->root, repo_dir, strerror(errno));
out:
	close(dfd);
	return rc;
}

/*
 * The folder holding path below <repo_dir>/<sub> ("models--o--r/refs/pr" for
 * "pr/1") into rel, and the last component of path into *base.
 */
static int parent_rel(char *rel, size_t size, const char *repo_dir, const char *sub,
		      const char *path, const char **base, struct err *e)
{
	const char *slash = strrchr(path, '/');
	*base = slash ? slash + 1 : path;
	int rc = slash ? fmt_buf(rel, size, "%s/%s/%.*s", repo_dir, sub, (int)(slash - path), path)
		       : fmt_buf(rel, size, "%s/%s", repo_dir, sub);
	return rc ? err_set(e, ERR_TOO_LARGE, "path too long: %.80s", path) : 0;
}

/*
 * Renames the finished temporary entry tmp of folder dfd (rel below the root)
 * to base, replacing what was there in one step, and syncs the folder so the
 * new name survives a crash. On failure the temporary entry is removed.
 */
static int rename_into_place(const struct layout *l, int dfd, const char *rel, const char *tmp,
			     const char *base, struct err *e)
{
	if (renameat(dfd, tmp, dfd, base) < 0) {
		int rc = err_set(e, ERR_IO, "rename to %s/%s/%s: %s", l->root, rel, base,
				 strerror(errno));
		unlinkat(dfd, tmp, 0);
		return rc;
	}
	if (fsync(dfd) < 0)
		return err_set(e, ERR_IO, "fsync %s/%s: %s", l->root, rel, strerror(errno));
	return 0;
}

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

int layout_snapshot_link(const struct layout *l, const char *repo_dir, const char *commit,
			 const char *repo_path, const char *sha256, struct err *e)
{
	int rc = check_blob_args(repo_dir, sha256, e);
	if (!rc)
		rc = check_commit(commit, e);
	if (!rc)
		rc = check_repo_path(repo_path, e);
	if (rc)
		return rc;
	char rel[PATH_MAX], sub[CAP_REPO_ID_LEN + 16];
	const char *base;
	snprintf(sub, sizeof sub, "snapshots/%s", commit);
	rc = parent_rel(rel, sizeof rel, repo_dir, sub, repo_path, &base, e);
	if (rc)
		return rc;
	char target[LINK_TARGET_MAX];
	link_target(repo_path, sha256, target);

	int dfd;
	rc = repo_dir_make(l, repo_dir, e);
	if (!rc)
		rc = open_dir(l, rel, 1, &dfd, e);
	if (rc)
		return rc;
	char tmp[64];
	tmp_name(tmp, sizeof tmp);
	if (symlinkat(target, dfd, tmp) < 0) {
		rc = err_set(e, ERR_IO, "symlink %s/%s/%s: %s", l->root, rel, tmp, strerror(errno));
		goto out;
	}
	rc = rename_into_place(l, dfd, rel, tmp, base, e);
out:
	close(dfd);
	return rc;
}

int64_t layout_mtime_ns(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

int layout_blob_stat(const struct layout *l, const char *repo_dir, const char *name, uint64_t *size,
		     int64_t *mtime_ns)
{
	int rc = check_blob_args(repo_dir, name, NULL);
	if (rc)
		return rc;
	int dfd;
	if (open_subdir(l, repo_dir, "blobs", 0, &dfd, NULL))
		return 0;
	struct stat st;
	int found = fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
	close(dfd);
	if (!found)
		return 0;
	*size = (uint64_t)st.st_size;
	*mtime_ns = layout_mtime_ns(&st);
	return 1;
}

int layout_snapshot_entry(const struct layout *l, const char *repo_dir, const char *commit,
			  const char *repo_path, char name[65])
{
	char rel[PATH_MAX], sub[CAP_REPO_ID_LEN + 16], target[LINK_TARGET_MAX + 1];
	char want[LINK_TARGET_MAX];
	const char *base;
	if (layout_repo_dir_check(repo_dir, NULL) || check_commit(commit, NULL) ||
	    check_repo_path(repo_path, NULL))
		return ERR_INVALID;
	snprintf(sub, sizeof sub, "snapshots/%s", commit);
	if (parent_rel(rel, sizeof rel, repo_dir, sub, repo_path, &base, NULL))
		return ERR_INVALID;
	int dfd;
	if (open_dir(l, rel, 0, &dfd, NULL))
		return 0;
	ssize_t n = readlinkat(dfd, base, target, sizeof target - 1);
	close(dfd);
	if (n <= 0)
		return 0;
	target[n] = 0;
	/* Exactly the link huggingface_hub and rbee-hive make; anything else is not adopted. */
	link_target(repo_path, NULL, want);
	size_t wl = strlen(want);
	if ((size_t)n <= wl || strncmp(target, want, wl) != 0 || check_sha(target + wl, NULL))
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
	return with_context(e, path_check_repo(rev, len, e), "revision");
}

int layout_ref_write(const struct layout *l, const char *repo_dir, const char *revision,
		     const char *commit, struct err *e)
{
	int rc = layout_repo_dir_check(repo_dir, e);
	if (!rc)
		rc = check_revision(revision, e);
	if (!rc)
		rc = check_commit(commit, e);
	if (rc)
		return rc;
	char rel[PATH_MAX];
	const char *base;
	rc = parent_rel(rel, sizeof rel, repo_dir, "refs", revision, &base, e);
	if (rc)
		return rc;
	int dfd;
	rc = repo_dir_make(l, repo_dir, e);
	if (!rc)
		rc = open_dir(l, rel, 1, &dfd, e);
	if (rc)
		return rc;
	char tmp[64];
	tmp_name(tmp, sizeof tmp);
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
	rc = rename_into_place(l, dfd, rel, tmp, base, e);
out:
	close(dfd);
	return rc;
}

/* Reads a small file relative to dfd into buf, trailing whitespace trimmed. */
static int read_small(int dfd, const char *name, char *buf, size_t size)
{
	int f = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (f < 0)
		return -1;
	ssize_t n = read(f, buf, size - 1);
	close(f);
	if (n < 0)
		return -1;
	buf[n] = 0;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		buf[--n] = 0;
	return 0;
}

int layout_ref_read(const struct layout *l, const char *repo_dir, const char *revision, char *buf,
		    size_t size, struct err *e)
{
	int rc = layout_repo_dir_check(repo_dir, e);
	if (!rc)
		rc = check_revision(revision, e);
	if (rc)
		return rc;
	char rel[PATH_MAX];
	const char *base;
	rc = parent_rel(rel, sizeof rel, repo_dir, "refs", revision, &base, e);
	if (rc)
		return rc;
	int dfd;
	struct err sub;
	rc = open_dir(l, rel, 0, &dfd, &sub);
	if (rc)
		return err_set(e, rc, "ref %s of %s: %s", revision, repo_dir, err_msg(&sub));
	char tmp[CAP_REPO_ID_LEN + 8];
	if (read_small(dfd, base, tmp, sizeof tmp) < 0) {
		rc = err_set(e, errno == ENOENT ? ERR_NOT_FOUND : ERR_IO, "ref %s of %s: %s",
			     revision, repo_dir, strerror(errno));
		close(dfd);
		return rc;
	}
	close(dfd);
	if (check_commit(tmp, NULL))
		return err_set(e, ERR_CORRUPT, "ref %s of %s: does not hold a commit", revision,
			       repo_dir);
	if (fmt_buf(buf, size, "%s", tmp))
		return err_set(e, ERR_TOO_LARGE, "ref %s of %s: commit too long", revision,
			       repo_dir);
	return 0;
}

int layout_blob_lock(const struct layout *l, const char *repo_dir, const char *sha256,
		     long timeout_ms, struct cancel_token *cancel, int *fd, struct err *e)
{
	*fd = -1;
	int rc = check_blob_args(repo_dir, sha256, e);
	if (rc)
		return rc;
	char rel[PATH_MAX];
	if (fmt_buf(rel, sizeof rel, ".locks/%s", repo_dir))
		return err_set(e, ERR_TOO_LARGE, "lock path too long");
	int dfd;
	rc = open_dir(l, rel, 1, &dfd, e);
	if (rc)
		return rc;
	char name[80];
	snprintf(name, sizeof name, "%s.lock", sha256);
	int f = openat(dfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
	int er = errno;
	close(dfd);
	if (f < 0)
		return err_set(e, ERR_IO, "open lock %s/%s/%s: %s", l->root, rel, name,
			       strerror(er));
	int64_t deadline = timeout_ms < 0 ? INT64_MAX : now_ms() + timeout_ms;
	for (;;) {
		if (flock(f, LOCK_EX | LOCK_NB) == 0)
			break;
		if (errno != EWOULDBLOCK && errno != EINTR) {
			rc = err_set(e, ERR_IO, "lock %s/%s/%s: %s", l->root, rel, name,
				     strerror(errno));
			break;
		}
		if (cancel_is_set(cancel)) {
			rc = err_set(e, ERR_CANCELLED, "waiting for lock on blob %s: cancelled",
				     sha256);
			break;
		}
		if (now_ms() >= deadline) {
			rc = err_set(e, ERR_TIMEOUT,
				     "blob %s of %s is locked by another writer (%s/%s/%s)", sha256,
				     repo_dir, l->root, rel, name);
			break;
		}
		if (cancel)
			cancel_wait(cancel, LOCK_POLL_MS);
		else
			sleep_ms(LOCK_POLL_MS);
	}
	if (rc) {
		close(f);
		return rc;
	}
	*fd = f;
	return 0;
}

void layout_blob_unlock(int fd)
{
	if (fd >= 0)
		close(fd); /* closing the last descriptor releases the flock */
}

/*
 * Copies in (read with pread from offset 0, so its position does not matter)
 * into the new file tmp of dfd while hashing it: hex receives the digest and
 * *size the bytes. tmp is created with O_EXCL and mode (the umask applies),
 * and fsynced; on failure it is removed.
 */
static int copy_hashed(const struct layout *l, const char *repo_dir, int dfd, int in,
		       const char *tmp, unsigned mode, struct cancel_token *cancel, char hex[65],
		       uint64_t *size, struct err *e)
{
	int out = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (out < 0)
		return err_set(e, errno == ENOSPC ? ERR_NOSPACE : ERR_IO,
			       "create %s/%s/blobs/%s: %s", l->root, repo_dir, tmp,
			       strerror(errno));
	posix_fadvise(in, 0, 0, POSIX_FADV_SEQUENTIAL);
	unsigned char *buf = xmalloc(COPY_BUF);
	struct sha256 h = {0};
	sha256_init(&h);
	uint64_t total = 0;
	int rc = 0;
	for (;;) {
		if (cancel_is_set(cancel)) {
			rc =
			    err_set(e, ERR_CANCELLED, "copying into %s/blobs: cancelled", repo_dir);
			break;
		}
		ssize_t n = pread(in, buf, COPY_BUF, (off_t)total);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = err_set(e, ERR_IO, "read while copying into %s/blobs: %s", repo_dir,
				     strerror(errno));
			break;
		}
		if (n == 0)
			break;
		sha256_update(&h, buf, (size_t)n);
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				rc = err_set(e, errno == ENOSPC ? ERR_NOSPACE : ERR_IO,
					     "write %s/%s/blobs/%s: %s", l->root, repo_dir, tmp,
					     strerror(errno));
				break;
			}
			off += w;
		}
		if (rc)
			break;
		total += (uint64_t)n;
	}
	sha256_final_hex(&h, hex);
	sha256_cleanup(&h);
	free(buf);
	*size = total;
	if (!rc && fsync(out) < 0)
		rc = err_set(e, ERR_IO, "fsync %s/%s/blobs/%s: %s", l->root, repo_dir, tmp,
			     strerror(errno));
	close(out);
	if (rc)
		unlinkat(dfd, tmp, 0);
	return rc;
}

/*
 * The mode of a blob copied from the open file fd: the owner (this process)
 * reads and writes; group and others read only where the source lets them,
 * so a private file never becomes a readable blob. The umask applies too.
 */
static unsigned blob_mode(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 ? 0600 | ((unsigned)st.st_mode & 0044) : 0600;
}

/*
 * Copies in to a new file in dfd while hashing, and publishes it as
 * <sha256> only when the copy hashes to sha256.
 */
static int copy_into(const struct layout *l, const char *repo_dir, int dfd, int in,
		     const char *sha256, struct cancel_token *cancel, struct err *e)
{
	char tmp[64], hex[SHA256_HEX_LEN + 1], rel[PATH_MAX];
	uint64_t size;
	tmp_name(tmp, sizeof tmp);
	snprintf(rel, sizeof rel, "%s/blobs", repo_dir);
	int rc = copy_hashed(l, repo_dir, dfd, in, tmp, blob_mode(in), cancel, hex, &size, e);
	if (rc)
		return rc;
	if (strcmp(hex, sha256) != 0) {
		unlinkat(dfd, tmp, 0);
		return err_set(e, ERR_DIGEST, "copy of blob %s hashes to %s", sha256, hex);
	}
	return rename_into_place(l, dfd, rel, tmp, sha256, e);
}

/* Tries to adopt the blob from src_dir. Returns 0 (with *how set) or an error. */
static int adopt_from(const struct layout *l, const char *repo_dir, const char *src_dir,
		      const char *sha256, uint64_t size, enum layout_adopt *how, struct err *e)
{
	int sfd;
	if (open_subdir(l, src_dir, "blobs", 0, &sfd, NULL))
		return 0;
	struct stat st;
	int rc = 0;
	if (fstatat(sfd, sha256, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != size)
		goto out;
	int dfd;
	rc = open_subdir(l, repo_dir, "blobs", 1, &dfd, e);
	if (rc)
		goto out;
	if (linkat(sfd, sha256, dfd, sha256, 0) == 0) {
		fsync(dfd);
		*how = LAYOUT_ADOPT_LINKED;
	} else if (errno == EEXIST) {
		*how = LAYOUT_ADOPT_PRESENT;
	} else if (errno == EXDEV) {
		int in = openat(sfd, sha256, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (in >= 0) {
			struct err sub;
			int crc = copy_into(l, repo_dir, dfd, in, sha256, NULL, &sub);
			close(in);
			if (crc == 0)
				*how = LAYOUT_ADOPT_COPIED;
			else if (crc == ERR_DIGEST)
				log_warn("blob %s in %s is damaged; not adopting it", sha256,
					 src_dir);
			else
				rc = err_set(e, crc, "%s", err_msg(&sub));
		}
	} else {
		log_warn("cannot link blob %s from %s into %s: %s", sha256, src_dir, repo_dir,
			 strerror(errno));
	}
	close(dfd);
out:
	close(sfd);
	return rc;
}

int layout_adopt_blob(const struct layout *l, const char *repo_dir, const char *sha256,
		      uint64_t size, const char *hint_dir, enum layout_adopt *how, struct err *e)
{
	*how = LAYOUT_ADOPT_NONE;
	int rc = check_blob_args(repo_dir, sha256, e);
	if (rc)
		return rc;
	uint64_t have;
	if (layout_blob_exists(l, repo_dir, sha256, &have) == 1) {
		if (have == size) {
			*how = LAYOUT_ADOPT_PRESENT;
			return 0;
		}
		log_warn("blob %s in %s has %llu bytes, expected %llu; it will be replaced", sha256,
			 repo_dir, (unsigned long long)have, (unsigned long long)size);
		return 0;
	}
	if (hint_dir && strcmp(hint_dir, repo_dir) != 0 && !layout_repo_dir_check(hint_dir, NULL)) {
		rc = adopt_from(l, repo_dir, hint_dir, sha256, size, how, e);
		if (rc || *how != LAYOUT_ADOPT_NONE)
			return rc;
	}
	/* A new open file description: a dup would share the read position with
	 * every other thread scanning the hub folder. */
	int scan_fd = openat(l->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (scan_fd < 0)
		return err_set(e, ERR_IO, "open %s: %s", l->root, strerror(errno));
	DIR *d = fdopendir(scan_fd);
	if (!d) {
		close(scan_fd);
		return err_set(e, ERR_IO, "read %s: %s", l->root, strerror(errno));
	}
	struct dirent *de;
	for (int seen = 0; (de = readdir(d)) != NULL && seen < CAP_ADOPT_SCAN; seen++) {
		if (layout_repo_dir_check(de->d_name, NULL) || strcmp(de->d_name, repo_dir) == 0 ||
		    (hint_dir && strcmp(de->d_name, hint_dir) == 0))
			continue;
		rc = adopt_from(l, repo_dir, de->d_name, sha256, size, how, e);
		if (rc || *how != LAYOUT_ADOPT_NONE)
			break;
	}
	closedir(d);
	return rc;
}

int layout_import_fd(const struct layout *l, const char *repo_dir, int src_fd, const char *what,
		     struct cancel_token *cancel, char sha256[65], uint64_t *size,
		     enum layout_adopt *how, struct err *e)
{
	*how = LAYOUT_ADOPT_NONE;
	int rc = layout_repo_dir_check(repo_dir, e);
	if (rc)
		return rc;
	struct stat st;
	if (fstat(src_fd, &st) < 0)
		return err_set(e, ERR_IO, "import %s: %s", what, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return err_set(e, ERR_UNPROCESSABLE, "import %s: not a regular file", what);
	int dfd;
	rc = open_subdir(l, repo_dir, "blobs", 1, &dfd, e);
	if (rc)
		return rc;
	char tmp[64], rel[PATH_MAX];
	tmp_name(tmp, sizeof tmp);
	snprintf(rel, sizeof rel, "%s/blobs", repo_dir);
	rc = copy_hashed(l, repo_dir, dfd, src_fd, tmp, blob_mode(src_fd), cancel, sha256, size, e);
	if (rc) {
		err_prefix(e, "import %s", what);
		goto out;
	}
	struct stat bst;
	if (fstatat(dfd, sha256, &bst, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(bst.st_mode) &&
	    (uint64_t)bst.st_size == *size) {
		unlinkat(dfd, tmp, 0);
		*how = LAYOUT_ADOPT_PRESENT;
		goto out;
	}
	/* Absent, or the same name at another size (a damaged blob): the copy takes its place. */
	rc = rename_into_place(l, dfd, rel, tmp, sha256, e);
	if (!rc)
		*how = LAYOUT_ADOPT_COPIED;
out:
	close(dfd);
	return rc;
}

int layout_partial_publish(const struct layout *l, const char *repo_dir, const char *name, int fd,
			   const char *sha256, struct err *e)
{
	int dfd;
	int rc = check_sha(name, e);
	if (!rc)
		rc = open_blobs(l, repo_dir, sha256, 0, &dfd, e);
	if (rc)
		return rc;
	char pname[80];
	snprintf(pname, sizeof pname, "%s.partial", name);
	if (fsync(fd) < 0) {
		rc = err_set(e, ERR_IO, "fsync %s/%s/blobs/%s: %s", l->root, repo_dir, pname,
			     strerror(errno));
		goto out;
	}
	char what[PATH_MAX];
	snprintf(what, sizeof what, "%s/%s/blobs/%s", l->root, repo_dir, pname);
	rc = rename_open_file_at(dfd, pname, sha256, fd, what, e);
out:
	close(dfd);
	return rc;
}

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
			if (read_small(dirfd(d), de->d_name, buf, sizeof buf) == 0 &&
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
		if (open_dir(l, parent, 0, &pfd, NULL))
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
		rc = check_commit(commit, e);
	for (size_t i = 0; !rc && i < npaths; i++)
		rc = check_repo_path(paths[i], e);
	for (size_t i = 0; !rc && i < nblobs; i++)
		rc = check_sha(blobs[i], e);
	if (rc)
		return rc;

	char rel[PATH_MAX];
	char sub[CAP_REPO_ID_LEN + 16];
	snprintf(sub, sizeof sub, "snapshots/%s", commit ? commit : "");
	for (size_t i = 0; i < npaths; i++) {
		const char *base;
		if (parent_rel(rel, sizeof rel, repo_dir, sub, paths[i], &base, NULL))
			continue;
		size_t len = strlen(rel);
		int dfd;
		if (open_dir(l, rel, 0, &dfd, NULL))
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
		if (open_dir(l, rel, 0, &dfd, NULL) == 0) {
			close(dfd);
		} else {
			int rfd;
			if (open_subdir(l, repo_dir, "refs", 0, &rfd, NULL) == 0)
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
		if (open_subdir(l, repo_dir, "snapshots", 0, &sfd, NULL) == 0)
			linked = tree_links_to(sfd, blobs[i], 0);
		if (linked) {
			log_info("keeping blob %s of %s: a snapshot still links to it", blobs[i],
				 repo_dir);
			if (kept)
				(*kept)++;
		} else {
			int bfd;
			if (open_subdir(l, repo_dir, "blobs", 0, &bfd, NULL) == 0) {
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
	if (open_dir(l, repo_dir, 0, &dfd, NULL))
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
