/*
 * The partial on disk, on the caller's thread: resume state loaded and
 * checked against the file, free space compared with what is missing,
 * preallocation; and the removal of the partial's name.
 */
#include "fetch/xfer_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

/* Removes the partial's name, unless another file has taken it meanwhile. */
void xfer_remove_partial(struct xfer *x)
{
	if (!same_file_at(x->dir_fd, x->name, x->fd))
		return;
	if (unlinkat(x->dir_fd, x->name, 0) < 0 && errno != ENOENT)
		log_msg(LOG_WARN, x->log_id, "unlink %s: %s", x->dest, strerror(errno));
}

/* Resume state, free space and preallocation, on the caller's thread. */
int xfer_prepare_file(struct xfer *x, struct err *e)
{
	int fd = x->fd;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return err_set(e, ERR_IO, "stat %s: %s", x->dest, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return err_set(e, ERR_INVALID, "%s is not a regular file", x->dest);
	if (x->has_resume && x->size_known) {
		struct byte_range *r = NULL;
		size_t n = 0;
		struct err le;
		err_clear(&le);
		if (x->resume.load(x->resume.arg, x->key, x->total, &r, &n) == 0) {
			uint64_t max_end = 0;
			for (size_t i = 0; i < n; i++)
				max_end = r[i].end > max_end ? r[i].end : max_end;
			if ((uint64_t)st.st_size < max_end) {
				log_msg(LOG_WARN, x->log_id,
					"%s is shorter than its resume state; starting over",
					x->dest);
			} else if (ranges_load(&x->done, r, n, x->total, &le) < 0) {
				log_msg(LOG_WARN, x->log_id, "%s: %s; starting over", x->dest,
					err_msg(&le));
			} else if (x->done.bytes) {
				log_msg(LOG_INFO, x->log_id, "resuming %s: %llu of %llu bytes done",
					x->dest, (unsigned long long)x->done.bytes,
					(unsigned long long)x->total);
			}
		}
		free(r);
	}
	if (x->done.bytes == 0 && st.st_size > 0 && ftruncate(fd, 0) < 0)
		return err_set(e, ERR_IO, "truncate %s: %s", x->dest, strerror(errno));
	if (!x->size_known || x->total == 0)
		return 0;
	/* Compare what is still to be allocated with what the disk has left. */
	if (fstat(fd, &st) < 0)
		return err_set(e, ERR_IO, "stat %s: %s", x->dest, strerror(errno));
	uint64_t have = (uint64_t)st.st_blocks * 512u;
	uint64_t need = x->total > have ? x->total - have : 0;
	struct statvfs vfs;
	if (fstatvfs(fd, &vfs) == 0) {
		uint64_t avail = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
		if (need > avail)
			return err_set(e, ERR_NOSPACE,
				       "not enough free space for %s: %llu more bytes needed, %llu "
				       "available",
				       x->dest, (unsigned long long)need,
				       (unsigned long long)avail);
	}
	if ((uint64_t)st.st_size > x->total && ftruncate(fd, (off_t)x->total) < 0)
		return err_set(e, ERR_IO, "truncate %s: %s", x->dest, strerror(errno));
	int rc = posix_fallocate(fd, 0, (off_t)x->total);
	if (rc == ENOSPC)
		return err_set(e, ERR_NOSPACE, "preallocating %llu bytes for %s: no space left",
			       (unsigned long long)x->total, x->dest);
	if (rc != 0 && ftruncate(fd, (off_t)x->total) < 0)
		return err_set(e, ERR_IO, "preallocating %s: %s", x->dest, strerror(rc));
	return 0;
}
