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

/* Repo folder kinds: the prefix of the folder name. */
static const char *const repo_dir_prefixes[] = {"models--", "urls--", "files--", "oci--"};

int layout_with_context(struct err *e, int rc, const char *what)
{
	if (e && rc)
		err_prefix(e, "%s", what);
	return rc;
}

int layout_check_blob_name(const char *s, struct err *e)
{
	size_t n = s ? strnlen(s, 65) : 0;
	if ((n != 64 && n != 40) || !is_hex_lower(s, n))
		return err_set(e, ERR_INVALID,
			       "blob name '%.80s': expected 64 (or 40) lowercase hex digits",
			       s ? s : "");
	return 0;
}

int layout_check_commit(const char *c, struct err *e)
{
	if (!c)
		return err_set(e, ERR_INVALID, "commit: missing");
	return layout_with_context(e, name_check_hub(c, strnlen(c, CAP_REPO_ID_LEN + 1), e),
				   "commit");
}

int layout_check_repo_path(const char *p, struct err *e)
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
			       "repo folder '%.80s': expected models--ORG--REPO, urls--HOST, "
			       "files--NAME or oci--REGISTRY--NAME",
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
		return layout_with_context(e, rc, "organisation");
	rc = name_check_hub(repo, strnlen(repo, CAP_REPO_ID_LEN + 1), e);
	if (rc)
		return layout_with_context(e, rc, "repo");
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

int layout_repo_dir_oci(const char *registry, const char *name, char *buf, size_t size,
			struct err *e)
{
	if (!registry || !registry[0] || !name || !name[0])
		return err_set(e, ERR_INVALID, "repo folder: registry or repository name missing");
	size_t o = 0;
	const char *parts[] = {"oci--", registry, "--", name};
	for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++)
		for (const char *c = parts[k]; *c; c++) {
			/*
			 * '/' of a name becomes "--"; the ':' of a port and the
			 * brackets of an IPv6 registry '_' (as urls--HOST does).
			 */
			int ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
				 (*c >= '0' && *c <= '9') || *c == '.' || *c == '-' ||
				 (*c == '_' && k == 3);
			const char *put = *c == '/' ? "--" : ok ? NULL : "_";
			char one[2] = {*c, 0};
			for (const char *q = put ? put : one; *q; q++) {
				if (o + 1 >= size || o + 1 >= LAYOUT_REPO_DIR_MAX)
					return err_set(e, ERR_TOO_LARGE,
						       "repo folder for %.80s/%.80s: too long",
						       registry, name);
				buf[o++] = *q;
			}
		}
	buf[o] = 0;
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

int layout_open_dir(const struct layout *l, const char *rel, int create, int *out, struct err *e)
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

void layout_tmp_name(char *buf, size_t size)
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

int layout_repo_dir_make(const struct layout *l, const char *repo_dir, struct err *e)
{
	int dfd;
	char tmp[64];
	int rc = layout_open_dir(l, repo_dir, 0, &dfd, e);
	if (rc == 0)
		goto existing;
	if (rc != ERR_NOT_FOUND)
		return rc;
	err_clear(e);
	layout_tmp_name(tmp, sizeof tmp);
	if (mkdirat(l->rootfd, tmp, 0755) < 0)
		return err_set(e, errno == ENOSPC ? ERR_NOSPACE : ERR_IO, "mkdir %s/%s: %s",
			       l->root, tmp, strerror(errno));
	rc = layout_open_dir(l, tmp, 0, &dfd, e);
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
	if (layout_open_dir(l, tmp, 0, &dfd, NULL) == 0) {
		for (size_t i = 0; i < sizeof repo_subdirs / sizeof repo_subdirs[0]; i++)
			unlinkat(dfd, repo_subdirs[i], AT_REMOVEDIR);
		close(dfd);
	}
	unlinkat(l->rootfd, tmp, AT_REMOVEDIR);
	if (rc)
		return rc;
	rc = layout_open_dir(l, repo_dir, 0, &dfd, e);
	if (rc)
		return rc;
existing:
	rc = make_subdirs(l, dfd, repo_dir, e);
	close(dfd);
	return rc;
}

int layout_open_subdir(const struct layout *l, const char *repo_dir, const char *sub, int create,
		       int *out, struct err *e)
{
	if (create) {
		int rc = layout_repo_dir_make(l, repo_dir, e);
		if (rc)
			return rc;
	}
	char rel[PATH_MAX];
	if (fmt_buf(rel, sizeof rel, "%s/%s", repo_dir, sub))
		return err_set(e, ERR_TOO_LARGE, "path too long: %.80s", repo_dir);
	return layout_open_dir(l, rel, create, out, e);
}

int layout_blob_path(const struct layout *l, const char *repo_dir, const char *sha256, char *buf,
		     size_t size, struct err *e)
{
	int rc = layout_repo_dir_check(repo_dir, e);
	if (!rc)
		rc = layout_check_blob_name(sha256, e);
	if (!rc && fmt_buf(buf, size, "%s/%s/blobs/%s", l->root, repo_dir, sha256))
		rc = err_set(e, ERR_TOO_LARGE, "blob path too long");
	return rc;
}

void layout_partial_name(const char *name, char out[LAYOUT_PARTIAL_NAME_MAX])
{
	snprintf(out, LAYOUT_PARTIAL_NAME_MAX, "%s.partial", name);
}

int layout_partial_path(const struct layout *l, const char *repo_dir, const char *sha256, char *buf,
			size_t size, struct err *e)
{
	char name[LAYOUT_PARTIAL_NAME_MAX];
	int rc = layout_repo_dir_check(repo_dir, e);
	if (!rc)
		rc = layout_check_blob_name(sha256, e);
	if (rc)
		return rc;
	layout_partial_name(sha256, name);
	if (fmt_buf(buf, size, "%s/%s/blobs/%s", l->root, repo_dir, name))
		rc = err_set(e, ERR_TOO_LARGE, "partial path too long");
	return rc;
}

int layout_snapshot_path(const struct layout *l, const char *repo_dir, const char *commit,
			 const char *repo_path, char *buf, size_t size, struct err *e)
{
	int rc = layout_repo_dir_check(repo_dir, e);
	if (!rc)
		rc = layout_check_commit(commit, e);
	if (!rc)
		rc = layout_check_repo_path(repo_path, e);
	if (!rc &&
	    fmt_buf(buf, size, "%s/%s/snapshots/%s/%s", l->root, repo_dir, commit, repo_path))
		rc = err_set(e, ERR_TOO_LARGE, "snapshot path too long");
	return rc;
}

int layout_parent_rel(char *rel, size_t size, const char *repo_dir, const char *sub,
		      const char *path, const char **base, struct err *e)
{
	const char *slash = strrchr(path, '/');
	*base = slash ? slash + 1 : path;
	int rc = slash ? fmt_buf(rel, size, "%s/%s/%.*s", repo_dir, sub, (int)(slash - path), path)
		       : fmt_buf(rel, size, "%s/%s", repo_dir, sub);
	return rc ? err_set(e, ERR_TOO_LARGE, "path too long: %.80s", path) : 0;
}

int layout_rename_into_place(const struct layout *l, int dfd, const char *rel, const char *tmp,
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

int layout_read_small(int dfd, const char *name, char *buf, size_t size)
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
