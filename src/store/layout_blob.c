/* Blobs and partials: opening, removing a partial, the per-blob lock, stat. */
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

int layout_check_blob_args(const char *repo_dir, const char *sha256, struct err *e)
{
	int rc = layout_repo_dir_check(repo_dir, e);
	return rc ? rc : layout_check_blob_name(sha256, e);
}

int layout_open_blobs(const struct layout *l, const char *repo_dir, const char *sha256, int create,
		      int *dfd, struct err *e)
{
	int rc = layout_check_blob_args(repo_dir, sha256, e);
	if (rc)
		return rc;
	return layout_open_subdir(l, repo_dir, "blobs", create, dfd, e);
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

/* Opens the entry name of the blobs/ folder of key's repo folder read-only, not through a link. */
static int blobs_open_ro(const struct layout *l, const char *repo_dir, const char *key,
			 const char *name, int *fd, struct err *e)
{
	*fd = -1;
	int dfd;
	int rc = layout_open_blobs(l, repo_dir, key, 0, &dfd, e);
	if (rc)
		return rc;
	*fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int er = errno;
	close(dfd);
	if (*fd < 0)
		return err_set(e, er == ENOENT ? ERR_NOT_FOUND : ERR_IO, "blob %s/%s/blobs/%s: %s",
			       l->root, repo_dir, name, strerror(er));
	return 0;
}

int layout_blob_open(const struct layout *l, const char *repo_dir, const char *sha256, int *fd,
		     struct err *e)
{
	return blobs_open_ro(l, repo_dir, sha256, sha256, fd, e);
}

int layout_partial_open_read(const struct layout *l, const char *repo_dir, const char *sha256,
			     int *fd, struct err *e)
{
	char name[LAYOUT_PARTIAL_NAME_MAX];
	layout_partial_name(sha256, name);
	return blobs_open_ro(l, repo_dir, sha256, name, fd, e);
}

int layout_partial_open_dir(const struct layout *l, const char *repo_dir, const char *sha256,
			    int *dir_fd, int *fd, uint64_t *cur_size, struct err *e)
{
	*fd = -1;
	*dir_fd = -1;
	int dfd;
	int rc = layout_open_blobs(l, repo_dir, sha256, 1, &dfd, e);
	if (rc)
		return rc;
	char name[LAYOUT_PARTIAL_NAME_MAX];
	layout_partial_name(sha256, name);
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

int layout_partial_open(const struct layout *l, const char *repo_dir, const char *sha256, int *fd,
			uint64_t *cur_size, struct err *e)
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
	int rc = layout_check_blob_args(repo_dir, sha256, e);
	if (rc)
		return rc;
	int dfd;
	struct err sub;
	rc = layout_open_subdir(l, repo_dir, "blobs", 0, &dfd, &sub);
	if (rc == ERR_NOT_FOUND)
		return 0;
	if (rc) {
		*e = sub;
		return rc;
	}
	char name[LAYOUT_PARTIAL_NAME_MAX];
	layout_partial_name(sha256, name);
	rc = 0;
	if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
		rc = err_set(e, ERR_IO, "remove %s/%s/blobs/%s: %s", l->root, repo_dir, name,
			     strerror(errno));
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
	int rc = layout_check_blob_args(repo_dir, name, NULL);
	if (rc)
		return rc;
	int dfd;
	if (layout_open_subdir(l, repo_dir, "blobs", 0, &dfd, NULL))
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

int layout_blob_lock(const struct layout *l, const char *repo_dir, const char *sha256,
		     long timeout_ms, struct cancel_token *cancel, int *fd, struct err *e)
{
	*fd = -1;
	int rc = layout_check_blob_args(repo_dir, sha256, e);
	if (rc)
		return rc;
	char rel[PATH_MAX];
	if (fmt_buf(rel, sizeof rel, ".locks/%s", repo_dir))
		return err_set(e, ERR_TOO_LARGE, "lock path too long");
	int dfd;
	rc = layout_open_dir(l, rel, 1, &dfd, e);
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
