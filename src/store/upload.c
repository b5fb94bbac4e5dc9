#include "store/upload.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/sha256.h"
#include "core/util.h"
#include "store/layout.h"

#define UPLOAD_REHASH_BUF (1 << 20)

struct upload {
	const struct layout *l;
	char repo_dir[LAYOUT_REPO_DIR_MAX];
	char sha256[SHA256_HEX_LEN + 1];
	int fd;
	int lock;
	uint64_t pos, total;
	struct sha256 h;
};

int upload_status(const struct layout *l, const char *repo_dir, const char *sha256, uint64_t *size,
		  uint64_t *offset, struct err *e)
{
	*size = *offset = 0;
	char path[PATH_MAX];
	int rc = layout_partial_path(l, repo_dir, sha256, path, sizeof(path), e);
	if (rc)
		return rc;
	if (layout_blob_exists(l, repo_dir, sha256, size) == 1)
		return 1;
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISREG(st.st_mode))
		*offset = (uint64_t)st.st_size;
	return 0;
}

/* Hashes the first u->pos bytes already in the partial. */
static int upload_rehash(struct upload *u, struct err *e)
{
	unsigned char *buf = xmalloc(UPLOAD_REHASH_BUF);
	int rc = 0;
	for (uint64_t off = 0; off < u->pos;) {
		size_t want =
		    u->pos - off < UPLOAD_REHASH_BUF ? (size_t)(u->pos - off) : UPLOAD_REHASH_BUF;
		ssize_t n = pread(u->fd, buf, want, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = err_set(e, ERR_IO, "reading the kept part of upload %s: %s", u->sha256,
				     n < 0 ? strerror(errno) : "short file");
			break;
		}
		sha256_update(&u->h, buf, (size_t)n);
		off += (uint64_t)n;
	}
	free(buf);
	return rc;
}

int upload_begin(const struct layout *l, const char *repo_dir, const char *sha256, uint64_t offset,
		 uint64_t length, unsigned mode, struct upload **out, uint64_t *kept, struct err *e)
{
	*out = NULL;
	*kept = 0;
	if (offset > CAP_UPLOAD_SIZE || length > CAP_UPLOAD_SIZE - offset)
		return err_set(e, ERR_TOO_LARGE, "upload of %llu bytes: over the cap of %llu bytes",
			       (unsigned long long)(offset + length),
			       (unsigned long long)CAP_UPLOAD_SIZE);
	int lock = -1;
	int rc = layout_blob_lock(l, repo_dir, sha256, 0, NULL, &lock, e);
	if (rc == ERR_TIMEOUT)
		return err_set(e, ERR_CONFLICT,
			       "blob sha256:%s is being written by another upload or "
			       "download; try again later",
			       sha256);
	if (rc)
		return rc;
	uint64_t have = 0;
	if (layout_blob_exists(l, repo_dir, sha256, &have) == 1 && have == offset + length) {
		layout_blob_unlock(lock);
		return 1;
	}
	struct upload *u = xcalloc(1, sizeof(*u));
	u->l = l;
	u->lock = lock;
	u->fd = -1;
	snprintf(u->repo_dir, sizeof(u->repo_dir), "%s", repo_dir);
	snprintf(u->sha256, sizeof(u->sha256), "%s", sha256);
	sha256_init(&u->h);
	rc = layout_partial_open(l, repo_dir, sha256, &u->fd, kept, e);
	if (rc)
		goto fail;
	if (offset > *kept) {
		rc = err_set(
		    e, ERR_CONFLICT,
		    "upload of sha256:%s: offset %llu is past the %llu bytes the daemon holds",
		    sha256, (unsigned long long)offset, (unsigned long long)*kept);
		goto fail;
	}
	if (offset < *kept && ftruncate(u->fd, (off_t)offset) != 0) {
		rc = err_set(e, ERR_IO, "truncating upload %s: %s", sha256, strerror(errno));
		goto fail;
	}
	struct statvfs vfs;
	if (fstatvfs(u->fd, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < length) {
		rc = err_set(e, ERR_NOSPACE, "upload of %llu bytes: only %llu bytes are free",
			     (unsigned long long)length,
			     (unsigned long long)vfs.f_bavail * vfs.f_frsize);
		goto fail;
	}
	/* Only ever narrows the mode the partial was created with (the umask applied). */
	struct stat st;
	if (fstat(u->fd, &st) != 0 ||
	    fchmod(u->fd, st.st_mode & 0777 & (0600 | (mode & 0044))) != 0) {
		rc = err_set(e, ERR_IO, "mode of upload %s: %s", sha256, strerror(errno));
		goto fail;
	}
	u->pos = offset;
	u->total = offset + length;
	rc = upload_rehash(u, e);
	if (rc)
		goto fail;
	*out = u;
	return 0;
fail:
	upload_free(u);
	return rc;
}

int upload_write(struct upload *u, const void *data, size_t n, struct err *e)
{
	if (n > u->total - u->pos)
		return err_set(e, ERR_INVALID,
			       "upload of sha256:%s: more than the %llu bytes announced", u->sha256,
			       (unsigned long long)u->total);
	const char *p = data;
	for (size_t off = 0; off < n;) {
		ssize_t w = pwrite(u->fd, p + off, n - off, (off_t)(u->pos + off));
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return err_set(e, errno == ENOSPC ? ERR_NOSPACE : ERR_IO,
				       "writing upload %s: %s", u->sha256, strerror(errno));
		off += (size_t)w;
	}
	sha256_update(&u->h, data, n);
	u->pos += n;
	return 0;
}

uint64_t upload_offset(const struct upload *u)
{
	return u->pos;
}

int upload_finish(struct upload *u, struct err *e)
{
	if (u->pos != u->total)
		return err_set(e, ERR_INVALID,
			       "upload of sha256:%s ended after %llu of %llu bytes; resume it from "
			       "offset %llu",
			       u->sha256, (unsigned long long)u->pos, (unsigned long long)u->total,
			       (unsigned long long)u->pos);
	char hex[SHA256_HEX_LEN + 1];
	sha256_final_hex(&u->h, hex);
	if (strcmp(hex, u->sha256) != 0) {
		layout_partial_remove(u->l, u->repo_dir, u->sha256, NULL);
		return err_set(e, ERR_INVALID,
			       "digest mismatch: the %llu bytes uploaded hash to sha256:%s, not "
			       "sha256:%s; nothing was kept",
			       (unsigned long long)u->total, hex, u->sha256);
	}
	return layout_partial_publish(u->l, u->repo_dir, u->sha256, u->fd, u->sha256, e);
}

void upload_free(struct upload *u)
{
	if (!u)
		return;
	if (u->fd >= 0)
		close(u->fd);
	sha256_cleanup(&u->h);
	layout_blob_unlock(u->lock);
	free(u);
}
