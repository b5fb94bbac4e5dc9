/*
 * Blobs from elsewhere: adopted from another repo folder (hard link, or a
 * copy across file systems), imported from a descriptor, or published from
 * a finished partial.
 */
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

#define COPY_BUF (1 << 20)

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
	layout_tmp_name(tmp, sizeof tmp);
	snprintf(rel, sizeof rel, "%s/blobs", repo_dir);
	int rc = copy_hashed(l, repo_dir, dfd, in, tmp, blob_mode(in), cancel, hex, &size, e);
	if (rc)
		return rc;
	if (strcmp(hex, sha256) != 0) {
		unlinkat(dfd, tmp, 0);
		return err_set(e, ERR_DIGEST, "copy of blob %s hashes to %s", sha256, hex);
	}
	return layout_rename_into_place(l, dfd, rel, tmp, sha256, e);
}

/* Tries to adopt the blob from src_dir. Returns 0 (with *how set) or an error. */
static int adopt_from(const struct layout *l, const char *repo_dir, const char *src_dir,
		      const char *sha256, uint64_t size, enum layout_adopt *how, struct err *e)
{
	int sfd;
	if (layout_open_subdir(l, src_dir, "blobs", 0, &sfd, NULL))
		return 0;
	struct stat st;
	int rc = 0;
	if (fstatat(sfd, sha256, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != size)
		goto out;
	int dfd;
	rc = layout_open_subdir(l, repo_dir, "blobs", 1, &dfd, e);
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
	int rc = layout_check_blob_args(repo_dir, sha256, e);
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
	rc = layout_open_subdir(l, repo_dir, "blobs", 1, &dfd, e);
	if (rc)
		return rc;
	char tmp[64], rel[PATH_MAX];
	layout_tmp_name(tmp, sizeof tmp);
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
	rc = layout_rename_into_place(l, dfd, rel, tmp, sha256, e);
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
	int rc = layout_check_blob_name(name, e);
	if (!rc)
		rc = layout_open_blobs(l, repo_dir, sha256, 0, &dfd, e);
	if (rc)
		return rc;
	char pname[LAYOUT_PARTIAL_NAME_MAX];
	layout_partial_name(name, pname);
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
