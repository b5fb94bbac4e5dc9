/*
 * Fresh resume states: the done ranges of a partial whose bytes are
 * written but not synced, one small file per partial in resume-fresh/
 * beside the catalog's database (in the data root), written over in place
 * with one pwrite and no sync.
 *
 * They are saved every MiB a transfer writes, and must never wait for the
 * disk. A commit of the catalog did, now and then: on ext4, 16 commits of
 * about 700 in one pull took 6 to 95 ms while a partial was written back,
 * asleep in the kernel (not waiting for a CPU, and mostly not for a lock),
 * and the pulls
 * through the daemon paid for it (bench/README.md, run M). xfer-get keeps
 * its fresh state in such a file too, and none of its saves took over 2.5
 * ms in the same conditions.
 *
 * A record: "RBFRESH1", seq, total, the number of ranges (each little-
 * endian 64-bit), the boot id (BOOT_ID_LEN bytes, zero padded), the ranges
 * (16 bytes each, as the catalog stores them), then the SHA-256 of all of
 * that in hex. Two slots, written in turn: a kill -9 in the middle of one
 * pwrite leaves the other whole. A read takes the valid slot with the
 * highest seq under the running boot id.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/sha256.h"
#include "core/util.h"
#include "store/catalog_internal.h"

#define FRESH_DIR "resume-fresh"
#define FRESH_MAGIC "RBFRESH1"
#define FRESH_HEAD (8 + 3 * 8 + BOOT_ID_LEN)
#define FRESH_SLOT (FRESH_HEAD + CATALOG_FRESH_RANGES_MAX + SHA256_HEX_LEN)
/* A file younger than this may belong to a save made right now: the sweep leaves it. */
#define FRESH_SWEEP_MIN_AGE_S 60

void catalog_fresh_name(const char *repo_dir, const char *sha256, char out[SHA256_HEX_LEN + 1])
{
	struct sha256 h = {0};
	sha256_init(&h);
	sha256_update(&h, repo_dir, strlen(repo_dir) + 1);
	sha256_update(&h, sha256, strlen(sha256));
	sha256_final_hex(&h, out);
	sha256_cleanup(&h);
}

size_t catalog_fresh_record(const char *boot, uint64_t seq, uint64_t total,
			    const unsigned char *ranges, size_t len, unsigned char *out)
{
	memcpy(out, FRESH_MAGIC, 8);
	catalog_put_le64(out + 8, seq);
	catalog_put_le64(out + 16, total);
	catalog_put_le64(out + 24, len / 16);
	memset(out + 32, 0, BOOT_ID_LEN);
	memcpy(out + 32, boot, strnlen(boot, BOOT_ID_LEN - 1));
	memcpy(out + FRESH_HEAD, ranges, len);
	char sum[SHA256_HEX_LEN + 1];
	sha256_buf_hex(out, FRESH_HEAD + len, sum);
	memcpy(out + FRESH_HEAD + len, sum, SHA256_HEX_LEN);
	return FRESH_HEAD + len + SHA256_HEX_LEN;
}

/* The folder's descriptor, opened once per connection (and made when create is set); -1 if none. */
static int fresh_dir(struct catalog *c, int create, struct err *e)
{
	if (c->fresh_dir >= 0)
		return c->fresh_dir;
	const char *slash = strrchr(c->path, '/');
	char *dir = slash ? xasprintf("%.*s/" FRESH_DIR, (int)(slash - c->path), c->path)
			  : xstrdup(FRESH_DIR);
	if (create && mkdir(dir, 0700) < 0 && errno != EEXIST) {
		err_set(e, ERR_IO, "catalog %s: make %s: %s", c->path, dir, strerror(errno));
		free(dir);
		return -1;
	}
	c->fresh_dir = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (c->fresh_dir < 0 && (create || errno != ENOENT))
		err_set(e, ERR_IO, "catalog %s: open %s: %s", c->path, dir, strerror(errno));
	free(dir);
	return c->fresh_dir;
}

int catalog_fresh_write(struct catalog *c, const char *repo_dir, const char *sha256, uint64_t total,
			const unsigned char *ranges, size_t len, struct err *e)
{
	if (len > CATALOG_FRESH_RANGES_MAX || len % 16)
		return err_set(e, ERR_TOO_LARGE, "partial %s: %zu bytes of ranges", sha256, len);
	if (!boot_id()[0])
		return err_set(e, ERR_IO, "partial %s: no boot id to keep a fresh state under",
			       sha256);
	int dfd = fresh_dir(c, 1, e);
	if (dfd < 0)
		return ERR_IO;
	char name[SHA256_HEX_LEN + 1];
	catalog_fresh_name(repo_dir, sha256, name);
	unsigned char *rec = xmalloc(FRESH_HEAD + len + SHA256_HEX_LEN);
	size_t n = catalog_fresh_record(boot_id(), (uint64_t)now_us(), total, ranges, len, rec);
	int made = 1;
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EEXIST) {
		made = 0;
		fd = openat(dfd, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	}
	int rc = 0;
	if (fd < 0) {
		rc = err_set(e, ERR_IO, "catalog %s: open %s/%s: %s", c->path, FRESH_DIR, name,
			     strerror(errno));
	} else {
		off_t at = (off_t)(c->fresh_turn++ & 1) * FRESH_SLOT;
		if (pwrite(fd, rec, n, at) != (ssize_t)n)
			rc = err_set(e, errno == ENOSPC ? ERR_NOSPACE : ERR_IO,
				     "catalog %s: write %s/%s: %s", c->path, FRESH_DIR, name,
				     strerror(errno));
		close(fd);
	}
	free(rec);
	return rc ? rc : made;
}

/*
 * Slot s of fd when it holds a whole record of the running boot: 0 with its
 * ranges in *ranges (free() it), else -1. The head is read first, so a read
 * takes the record's bytes only, not the slot's room for CAP_XFER_RANGES.
 */
static int slot_load(int fd, int s, uint64_t *seq, uint64_t *total, unsigned char **ranges,
		     size_t *len)
{
	unsigned char head[FRESH_HEAD];
	off_t at = (off_t)s * FRESH_SLOT;
	if (pread(fd, head, FRESH_HEAD, at) != FRESH_HEAD || memcmp(head, FRESH_MAGIC, 8) != 0)
		return -1;
	uint64_t m = catalog_get_le64(head + 24);
	char boot[BOOT_ID_LEN + 1];
	memcpy(boot, head + 32, BOOT_ID_LEN);
	boot[BOOT_ID_LEN] = '\0';
	if (m > CATALOG_FRESH_RANGES_MAX / 16 || !boot[0] || strcmp(boot, boot_id()) != 0)
		return -1;
	size_t body = (size_t)m * 16, n = FRESH_HEAD + body + SHA256_HEX_LEN;
	unsigned char *rec = xmalloc(n);
	char sum[SHA256_HEX_LEN + 1];
	int ok = pread(fd, rec, n, at) == (ssize_t)n;
	if (ok) {
		sha256_buf_hex(rec, FRESH_HEAD + body, sum);
		ok = memcmp(sum, rec + FRESH_HEAD + body, SHA256_HEX_LEN) == 0;
	}
	if (!ok) {
		free(rec);
		return -1;
	}
	*seq = catalog_get_le64(rec + 8);
	*total = catalog_get_le64(rec + 16);
	*len = body;
	memmove(rec, rec + FRESH_HEAD, body);
	*ranges = rec;
	return 0;
}

/*
 * The latest whole record of the running boot in the fresh file name of
 * dfd: 0 with its ranges in *ranges (free() it); ERR_NOT_FOUND when there
 * is no such file, ERR_CORRUPT when it holds no such record.
 */
static int fresh_file_load(int dfd, const char *name, uint64_t *total, unsigned char **ranges,
			   size_t *len)
{
	*ranges = NULL;
	*len = 0;
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return ERR_NOT_FOUND;
	uint64_t best_seq = 0;
	for (int s = 0; s < 2; s++) {
		uint64_t seq, t;
		unsigned char *r;
		size_t l;
		if (slot_load(fd, s, &seq, &t, &r, &l) < 0)
			continue;
		if (*ranges && seq <= best_seq) {
			free(r);
			continue;
		}
		free(*ranges);
		*ranges = r;
		*len = l;
		*total = t;
		best_seq = seq;
	}
	close(fd);
	return *ranges ? 0 : ERR_CORRUPT;
}

int catalog_fresh_read(struct catalog *c, const char *repo_dir, const char *sha256, uint64_t *total,
		       unsigned char **ranges, size_t *len)
{
	*ranges = NULL;
	*len = 0;
	int dfd = fresh_dir(c, 0, NULL);
	if (dfd < 0)
		return ERR_NOT_FOUND;
	char name[SHA256_HEX_LEN + 1];
	catalog_fresh_name(repo_dir, sha256, name);
	int rc = fresh_file_load(dfd, name, total, ranges, len);
	if (rc == ERR_CORRUPT)
		unlinkat(dfd, name,
			 0); /* of another boot, or damaged whole: nothing to keep it for */
	return rc ? ERR_NOT_FOUND : 0;
}

void catalog_fresh_remove(struct catalog *c, const char *repo_dir, const char *sha256)
{
	int dfd = fresh_dir(c, 0, NULL);
	if (dfd < 0)
		return;
	char name[SHA256_HEX_LEN + 1];
	catalog_fresh_name(repo_dir, sha256, name);
	unlinkat(dfd, name, 0);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

int catalog_fresh_sweep(struct catalog *c, struct err *e)
{
	int dfd = fresh_dir(c, 0, NULL);
	if (dfd < 0)
		return 0;
	struct catalog_partial *parts;
	size_t np;
	if (catalog_partial_list(c, &parts, &np, e) < 0)
		return ERR_IO;
	char(*names)[SHA256_HEX_LEN + 1] = xcalloc(np ? np : 1, sizeof(*names));
	for (size_t i = 0; i < np; i++)
		catalog_fresh_name(parts[i].repo_dir, parts[i].sha256, names[i]);
	free(parts);
	qsort(names, np, sizeof(*names), name_cmp);
	int removed = 0, dup_fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
	DIR *dir = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
	if (!dir) {
		if (dup_fd >= 0)
			close(dup_fd);
		free(names);
		return err_set(e, ERR_IO, "catalog %s: read %s: %s", c->path, FRESH_DIR,
			       strerror(errno));
	}
	rewinddir(dir); /* the duplicate shares its offset with the cached descriptor */
	time_t now = time(NULL);
	struct dirent *d;
	/* Bounded: the folder holds a file per partial, and every other name is skipped. */
	for (size_t seen = 0; seen < CAP_FRESH_SWEEP && (d = readdir(dir)); seen++) {
		struct stat st;
		if (!is_hex_lower(d->d_name, SHA256_HEX_LEN) ||
		    fstatat(dfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    now - st.st_mtime < FRESH_SWEEP_MIN_AGE_S)
			continue;
		/* Of no partial (a crash between the file and its row), or of no whole state of
		 * this boot. */
		uint64_t total;
		unsigned char *ranges = NULL;
		size_t len;
		if ((!bsearch(d->d_name, names, np, sizeof(*names), name_cmp) ||
		     fresh_file_load(dfd, d->d_name, &total, &ranges, &len) < 0) &&
		    unlinkat(dfd, d->d_name, 0) == 0)
			removed++;
		free(ranges);
	}
	closedir(dir);
	free(names);
	return removed;
}
