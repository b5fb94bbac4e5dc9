/*
 * The file vendor: file:///ABS/PATH[#sha256=HEX].
 *
 * The daemon answers requests from anyone who can reach its port, so it
 * reads a local path only inside the folders its owner named with
 * --allow-file-import (none by default), never below /proc, /sys or /dev,
 * and only a regular file. The file is opened once, by walking down from
 * the allowed folder without following symlinks, and that descriptor is
 * copied into files--local/ (layout_import_fd) while it is hashed, so the
 * blob holds exactly the bytes hashed and is no more readable than the
 * source.
 *
 * A ref pinned with #sha256= is satisfied from files--local/blobs/<HEX> when
 * that blob is there (the CLI uploads the file with PUT /v1/blobs/... and
 * then submits such a ref), without reading the path at all; otherwise the
 * path is imported as above and must hash to the pin.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "core/caps.h"
#include "core/util.h"
#include "provision/vendor.h"
#include "store/catalog.h"
#include "store/layout.h"

/*
 * Folders never read, whatever --allow-file-import names: their "files" are
 * the kernel's views of processes, devices and settings (a process's
 * environment with its tokens, devices that never end).
 */
static const char *const file_denied_dirs[] = {"/proc", "/sys", "/dev"};

/* The same kinds of file system wherever they are mounted. */
static const long file_denied_fs[] = {
    PROC_SUPER_MAGIC, SYSFS_MAGIC,	  DEVPTS_SUPER_MAGIC,  DEBUGFS_MAGIC, SECURITYFS_MAGIC,
    TRACEFS_MAGIC,    CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, BPF_FS_MAGIC,  EFIVARFS_MAGIC,
};

/* 1 when the absolute path is dir or lies below it. */
static int path_under(const char *path, const char *dir)
{
	size_t n = strlen(dir);
	if (n == 1 && dir[0] == '/')
		return path[0] == '/';
	return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

static int file_denied(const char *path)
{
	for (size_t i = 0; i < sizeof(file_denied_dirs) / sizeof(file_denied_dirs[0]); i++)
		if (path_under(path, file_denied_dirs[i]))
			return 1;
	return 0;
}

int prov_file_roots_init(struct prov_ctx *ctx, const struct prov_config *cfg, struct err *e)
{
	if (cfg->n_file_import_dirs > CAP_FILE_IMPORT_DIRS)
		return err_set(e, ERR_INVALID, "--allow-file-import: at most %d folders",
			       CAP_FILE_IMPORT_DIRS);
	for (size_t i = 0; i < cfg->n_file_import_dirs; i++) {
		const char *dir = cfg->file_import_dirs[i];
		char *canon = dir && dir[0] == '/' ? realpath(dir, NULL) : NULL;
		struct stat st;
		int rc = 0;
		if (!dir || dir[0] != '/')
			rc = err_set(e, ERR_INVALID,
				     "--allow-file-import '%.200s': expected an "
				     "absolute folder path",
				     dir ? dir : "");
		else if (!canon || stat(canon, &st) != 0)
			rc = err_set(e, ERR_INVALID, "--allow-file-import %.200s: %s", dir,
				     strerror(errno));
		else if (!S_ISDIR(st.st_mode))
			rc = err_set(e, ERR_INVALID, "--allow-file-import %.200s: not a folder",
				     dir);
		else if (file_denied(canon) || file_denied(dir))
			rc = err_set(e, ERR_INVALID,
				     "--allow-file-import %.200s: files below /proc, /sys and /dev "
				     "are never imported",
				     dir);
		if (rc) {
			free(canon);
			return rc;
		}
		char *named = xstrdup(dir);
		for (size_t n = strlen(named); n > 1 && named[n - 1] == '/'; n--)
			named[n - 1] = '\0';
		ctx->import_named[ctx->n_import_dirs] = named;
		ctx->import_dirs[ctx->n_import_dirs++] = canon;
	}
	return 0;
}

void prov_file_roots_cleanup(struct prov_ctx *ctx)
{
	for (size_t i = 0; i < ctx->n_import_dirs; i++) {
		free(ctx->import_dirs[i]);
		free(ctx->import_named[i]);
	}
	ctx->n_import_dirs = 0;
}

static int file_fs_denied(int fd)
{
	struct statfs fs;
	if (fstatfs(fd, &fs) != 0)
		return 1;
	for (size_t i = 0; i < sizeof(file_denied_fs) / sizeof(file_denied_fs[0]); i++)
		if ((long)fs.f_type == file_denied_fs[i])
			return 1;
	return 0;
}

/*
 * Walks from the folder fd root down the relative path rest, one component
 * at a time without following symlinks, and opens its last component for
 * reading (O_NONBLOCK: a FIFO swapped in does not hang the open). Takes
 * ownership of root.
 */
static int file_walk(int root, const char *rest, const char *path, int *out, struct err *e)
{
	char buf[CAP_URL_LEN + 1];
	int cur = root;
	if (fmt_buf(buf, sizeof(buf), "%s", rest)) {
		close(cur);
		return err_set(e, ERR_TOO_LARGE, "file %.200s: path too long", path);
	}
	char *save = NULL;
	char *c = strtok_r(buf, "/", &save);
	while (c) {
		char *next = strtok_r(NULL, "/", &save);
		int flags = next ? O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
				 : O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC;
		int fd = openat(cur, c, flags);
		int er = errno;
		close(cur);
		if (fd < 0) {
			if (er == ELOOP || er == ENOTDIR)
				return err_set(
				    e, ERR_FORBIDDEN,
				    "file %.200s: '%.100s' is now a symlink or not a folder "
				    "(it changed after the path was resolved); not following it",
				    path, c);
			return err_set(e, er == ENOENT ? ERR_NOT_FOUND : ERR_FORBIDDEN,
				       "file %.200s: %s", path, strerror(er));
		}
		cur = fd;
		c = next;
	}
	*out = cur;
	return 0;
}

/*
 * Opens the file of a file:// ref as the daemon may (see the top of this
 * file): *out is a descriptor of a regular file inside an allowed folder.
 */
static int file_open(const struct prov_ctx *ctx, const char *path, int *out, struct err *e)
{
	*out = -1;
	if (ctx->n_import_dirs == 0)
		return err_set(e, ERR_FORBIDDEN,
			       "file %.200s: this daemon reads no local files (start it with "
			       "--allow-file-import DIR to let it read a folder; `rbee-hive pull "
			       "file://...` uploads the file instead)",
			       path);
	if (file_denied(path))
		return err_set(e, ERR_FORBIDDEN,
			       "file %.200s: files below /proc, /sys and /dev are never imported",
			       path);
	/*
	 * A path that does not even name an allowed folder is refused before
	 * anything is resolved, so the answer tells nothing about what exists
	 * elsewhere on the machine.
	 */
	int named = 0;
	for (size_t i = 0; i < ctx->n_import_dirs; i++)
		named |=
		    path_under(path, ctx->import_dirs[i]) || path_under(path, ctx->import_named[i]);
	if (!named)
		return err_set(e, ERR_FORBIDDEN,
			       "file %.200s is outside the folders this daemon may read "
			       "(--allow-file-import)",
			       path);
	char *canon = realpath(path, NULL);
	const char *root = NULL;
	for (size_t i = 0; canon && i < ctx->n_import_dirs; i++)
		if (path_under(canon, ctx->import_dirs[i]))
			root = ctx->import_dirs[i];
	int rc = 0;
	if (!canon && (errno == ENOENT || errno == ENOTDIR))
		rc = err_set(e, ERR_NOT_FOUND, "file %.200s: %s", path, strerror(errno));
	else if (!canon)
		rc = err_set(e, ERR_FORBIDDEN, "file %.200s: %s", path, strerror(errno));
	else if (file_denied(canon))
		rc = err_set(e, ERR_FORBIDDEN,
			     "file %.200s: it resolves to %.200s; files below /proc, /sys and /dev "
			     "are never imported",
			     path, canon);
	else if (!root)
		rc = err_set(e, ERR_FORBIDDEN,
			     "file %.200s is outside the folders this daemon may read "
			     "(--allow-file-import)",
			     path);
	int fd = -1;
	if (rc == 0) {
		int rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (rfd < 0)
			rc = err_set(e, ERR_IO, "open %.200s: %s", root, strerror(errno));
		else
			rc = file_walk(rfd, canon + (strcmp(root, "/") ? strlen(root) : 0), path,
				       &fd, e);
	}
	free(canon);
	if (rc)
		return rc;
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		rc = err_set(e, ERR_UNPROCESSABLE, "file %.200s is not a regular file", path);
	else if (file_fs_denied(fd))
		rc = err_set(
		    e, ERR_FORBIDDEN,
		    "file %.200s is on a kernel file system (proc, sysfs, ...); not importing "
		    "it",
		    path);
	if (rc) {
		close(fd);
		return rc;
	}
	*out = fd;
	return 0;
}

static int file_plan(struct prov_job *j, struct prov_plan *p, struct prov_artifact *out,
		     struct err *e)
{
	const struct model_ref *r = &j->ref;
	p->kind = REF_FILE;
	snprintf(p->repo, sizeof(p->repo), "%s", r->path);
	snprintf(p->repo_dir, sizeof(p->repo_dir), "%s", LAYOUT_FILES_DIR);
	const char *name = strrchr(r->path, '/') + 1;
	if (ref_catalog_id_file(name, p->id, sizeof(p->id)))
		return err_set(e, ERR_TOO_LARGE, "file name too long");
	uint64_t size = 0;
	int present = 0;
	if (r->sha256[0])
		present = layout_blob_exists(j->ctx->layout, p->repo_dir, r->sha256, &size) == 1;
	if (!present) {
		int fd = -1;
		int rc = file_open(j->ctx, r->path, &fd, e);
		if (rc)
			return rc;
		struct stat st;
		if (fstat(fd, &st) == 0)
			size = (uint64_t)st.st_size;
		close(fd);
	}
	struct catalog_model m = {0};
	int same = catalog_model_get(j->cat, p->id, &m, NULL) == 0 &&
		   strcmp(m.repo, r->path) == 0 && m.size == size &&
		   (!r->sha256[0] || strcmp(m.commit, r->sha256) == 0);
	catalog_model_cleanup(&m);
	/* The same file imported before answers at once, without hashing it again. */
	if (same && prov_lookup_available(j, p->id, r->sha256[0] ? r->sha256 : NULL, out))
		return 1;
	struct prov_file *f = prov_plan_add(p, name, size, 1, present ? r->sha256 : NULL, NULL);
	f->present = present;
	return 0;
}

static int file_fetch(struct prov_job *j, struct prov_plan *p, struct err *e)
{
	struct prov_file *f = &p->files[0];
	uint64_t size = f->size;
	prov_job_phase(j, PROV_VERIFYING, f->path);
	if (f->present) {
		prov_narrate(j, "%s: uploaded content sha256:%s", f->path, f->sha256);
	} else {
		enum layout_adopt how = LAYOUT_ADOPT_NONE;
		int fd = -1;
		prov_narrate(j, "importing %s", j->ref.path);
		int rc = file_open(j->ctx, j->ref.path, &fd, e);
		if (rc)
			return rc;
		rc = layout_import_fd(j->ctx->layout, p->repo_dir, fd, j->ref.path, j->req->cancel,
				      f->sha256, &size, &how, e);
		close(fd);
		if (rc)
			return rc;
		if (j->ref.sha256[0] && strcmp(j->ref.sha256, f->sha256) != 0)
			return err_set(e, ERR_DIGEST,
				       "file %.200s hashes to sha256:%s, not the pinned %s",
				       j->ref.path, f->sha256, j->ref.sha256);
		prov_narrate(j, "%s: %s", f->path,
			     how == LAYOUT_ADOPT_PRESENT ? "identical content already stored"
							 : "copied");
	}
	f->size = size;
	f->present = 1;
	p->total = size;
	j->bytes_total = size;
	snprintf(p->commit, sizeof(p->commit), "%s", f->sha256);
	j->files_done = 1;
	j->file_size = size;
	prov_job_bytes(j, size, 0, 1);
	return 0;
}

const struct prov_vendor prov_vendor_file = {
    .name = "file",
    .kind = REF_FILE,
    .plan = file_plan,
    .fetch = file_fetch,
};
