#include "store/store.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cancel.h"
#include "core/err.h"
#include "core/gitblob.h"
#include "core/log.h"
#include "core/sha256.h"
#include "core/util.h"
#include "store/catalog.h"
#include "store/layout.h"

#define VERIFY_PAGE 256
/* Bad files named in a model's error text. */
#define VERIFY_NAMED_MAX 3

static const char *env_nonempty(const char *name)
{
	const char *v = getenv(name);
	return v && v[0] ? v : NULL;
}

static const char *home_dir(void)
{
	const char *h = env_nonempty("HOME");
	if (h)
		return h;
	struct passwd *pw = getpwuid(getuid());
	return pw && pw->pw_dir ? pw->pw_dir : NULL;
}

/* "<$XDG_CACHE_HOME or ~/.cache>/<leaf>" into buf. */
static int cache_dir(char *buf, size_t size, const char *leaf, struct err *e)
{
	const char *xdg = env_nonempty("XDG_CACHE_HOME");
	int rc;
	if (xdg) {
		rc = fmt_buf(buf, size, "%s/%s", xdg, leaf);
	} else {
		const char *home = home_dir();
		if (!home)
			return err_set(e, ERR_INVALID,
				       "no data folder: give --data-dir or set RBEE_HIVE_HOME "
				       "(HOME is not set)");
		rc = fmt_buf(buf, size, "%s/.cache/%s", home, leaf);
	}
	return rc ? err_set(e, ERR_TOO_LARGE, "cache folder path too long") : 0;
}

int store_paths_resolve(const char *data_dir, const char *hf_cache, int share_hf_cache,
			struct store_paths *out, struct err *e)
{
	memset(out, 0, sizeof *out);
	int rc;
	const char *root = data_dir && data_dir[0] ? data_dir : env_nonempty("RBEE_HIVE_HOME");
	if (root)
		rc = fmt_buf(out->root, sizeof out->root, "%s", root)
			 ? err_set(e, ERR_TOO_LARGE, "data folder path too long")
			 : 0;
	else
		rc = cache_dir(out->root, sizeof out->root, "rbee-hive", e);
	if (rc)
		return rc;
	if (fmt_buf(out->catalog, sizeof out->catalog, "%s/catalog.db", out->root))
		return err_set(e, ERR_TOO_LARGE, "catalog path too long");

	const char *hub = hf_cache && hf_cache[0] ? hf_cache : NULL;
	out->hub_from = "--hf-cache";
	if (!hub && share_hf_cache) {
		hub = env_nonempty("HF_HUB_CACHE");
		out->hub_from = "HF_HUB_CACHE";
	}
	if (hub) {
		rc = fmt_buf(out->hub, sizeof out->hub, "%s", hub);
		out->shared = 1;
	} else if (share_hf_cache && env_nonempty("HF_HOME")) {
		rc = fmt_buf(out->hub, sizeof out->hub, "%s/hub", env_nonempty("HF_HOME"));
		out->shared = 1;
		out->hub_from = "HF_HOME";
	} else if (share_hf_cache) {
		rc = cache_dir(out->hub, sizeof out->hub, "huggingface/hub", e);
		if (rc)
			return rc;
		out->shared = 1;
		out->hub_from = "huggingface_hub's default";
	} else {
		rc = fmt_buf(out->hub, sizeof out->hub, "%s/hub", out->root);
		out->hub_from = "the data root";
	}
	return rc ? err_set(e, ERR_TOO_LARGE, "hub cache path too long") : 0;
}

static int mkdirs(const char *path, mode_t mode, struct err *e)
{
	char buf[PATH_MAX];
	if (fmt_buf(buf, sizeof buf, "%s", path))
		return err_set(e, ERR_TOO_LARGE, "folder path too long");
	for (char *p = buf + 1;; p++) {
		if (*p && *p != '/')
			continue;
		char saved = *p;
		*p = 0;
		/* Parents get 0755 like mkdir -p; only the leaf gets mode. */
		if (mkdir(buf, saved ? 0755 : mode) < 0 && errno != EEXIST)
			return err_set(e, ERR_IO, "mkdir %s: %s", buf, strerror(errno));
		if (!saved)
			break;
		*p = saved;
	}
	struct stat st;
	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
		return err_set(e, ERR_IO, "%s: not a folder", path);
	return 0;
}

int store_paths_prepare(const struct store_paths *p, struct err *e)
{
	int rc = mkdirs(p->root, 0700, e);
	return rc ? rc : mkdirs(p->hub, 0755, e);
}

static const char *const file_status_names[] = {
    [STORE_FILE_OK] = "ok",
    [STORE_FILE_MISSING] = "missing",
    [STORE_FILE_CORRUPT] = "corrupt",
    [STORE_FILE_SIZE_MISMATCH] = "size_mismatch",
};

const char *store_file_status_name(enum store_file_status s)
{
	return (unsigned)s < sizeof file_status_names / sizeof file_status_names[0]
		   ? file_status_names[s]
		   : "unknown";
}

int store_blob_check(struct catalog *c, const struct layout *l, const char *repo_dir,
		     const char *name, const char *want_sha256, const char *want_oid, uint64_t size,
		     int force, int adopted_if_new, struct cancel_token *cancel,
		     char sha256_out[65], int *hashed, struct err *e)
{
	int fd;
	struct stat st;
	struct err sub;
	if (hashed)
		*hashed = 0;
	int rc = layout_blob_open(l, repo_dir, name, &fd, &sub);
	if (rc)
		return err_set(e, rc, "%s", err_msg(&sub));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != size) {
		close(fd);
		return err_set(e, ERR_NOT_FOUND, "blob %s of %s: not a file of %llu bytes", name,
			       repo_dir, (unsigned long long)size);
	}
	int64_t mtime = layout_mtime_ns(&st);
	int named_sha = strlen(name) == SHA256_HEX_LEN;
	struct catalog_blob rec;
	int known = catalog_blob_get(c, repo_dir, name, &rec, NULL) == 0;
	/* A record vouches for the content it names; an oid only when the name is that oid. */
	if (!force && known && rec.verified_ms > 0 && rec.size == size && rec.mtime_ns == mtime &&
	    (!want_sha256 || strcmp(rec.sha256, want_sha256) == 0) &&
	    (!want_oid || strcmp(name, want_oid) == 0)) {
		close(fd);
		memcpy(sha256_out, rec.sha256, SHA256_HEX_LEN + 1);
		return 0;
	}
	char oid[GITBLOB_HEX_LEN + 1] = "", sha[SHA256_HEX_LEN + 1];
	int need_oid = want_oid || !named_sha;
	log_info("hashing blob %s of %s before trusting it", name, repo_dir);
	rc = sha256_fd(fd, name, cancel, sha, need_oid ? oid : NULL, NULL, &sub);
	close(fd);
	if (rc)
		return err_set(e, rc, "blob %s of %s: %s", name, repo_dir, err_msg(&sub));
	if (hashed)
		*hashed = 1;
	const char *bad = (want_sha256 && strcmp(sha, want_sha256) != 0) ? "sha256"
			  : (want_oid && strcmp(oid, want_oid) != 0)	 ? "git blob id"
			  : strcmp(named_sha ? sha : oid, name) != 0 ? "name"
								     : NULL;
	if (bad) {
		catalog_blob_distrust(c, repo_dir, name, NULL);
		return err_set(e, ERR_DIGEST, "blob %s of %s is damaged: its %s does not match",
			       name, repo_dir, bad);
	}
	/* Unrecorded (a full disk), the check still holds; the next pull hashes it again. */
	if (catalog_blob_verified(c, repo_dir, name, sha, size, mtime,
				  known ? rec.adopted : adopted_if_new, &sub))
		log_warn("recording blob %s of %s: %s", name, repo_dir, err_msg(&sub));
	/*
	 * A whole, verified blob needs no resume state: one whose removal
	 * failed when its transfer ended (a full disk) goes now.
	 */
	else if (named_sha)
		catalog_partial_delete(c, repo_dir, name, NULL);
	memcpy(sha256_out, sha, SHA256_HEX_LEN + 1);
	return 0;
}

/* Checks that snapshots/<commit>/<path> is a symlink resolving to the blob. */
static int link_ok(const struct layout *l, const struct catalog_model *m,
		   const struct catalog_file *f)
{
	char path[PATH_MAX], blob[PATH_MAX], target[PATH_MAX];
	const char *name = catalog_file_blob(f);
	if (layout_snapshot_path(l, m->repo_dir, m->commit, f->path, path, sizeof path, NULL) ||
	    layout_blob_path(l, m->repo_dir, name, blob, sizeof blob, NULL))
		return 0;
	struct stat st;
	if (lstat(path, &st) < 0 || !S_ISLNK(st.st_mode))
		return 0;
	ssize_t n = readlink(path, target, sizeof target - 1);
	if (n <= 0)
		return 0;
	target[n] = 0;
	/* The link is right if it names blobs/<name> and resolves to that file. */
	struct stat a, b;
	return strstr(target, name) && stat(path, &a) == 0 && stat(blob, &b) == 0 &&
	       a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

static int verify_file(struct catalog *c, const struct layout *l, const struct catalog_model *m,
		       const struct catalog_file *f, struct cancel_token *cancel,
		       struct store_verify_item *it, char *detail, size_t dsize,
		       struct store_verify_summary *sum, struct err *e)
{
	const char *name = catalog_file_blob(f);
	it->status = STORE_FILE_OK;
	it->actual_size = 0;
	detail[0] = 0;
	int fd;
	struct err sub;
	int rc = layout_blob_open(l, m->repo_dir, name, &fd, &sub);
	if (rc) {
		it->status = STORE_FILE_MISSING;
		snprintf(detail, dsize, "%s: blob %s is missing (%s)", f->path, name,
			 err_msg(&sub));
		return 0;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		it->status = STORE_FILE_MISSING;
		snprintf(detail, dsize, "%s: blob %s is not a regular file", f->path, name);
		return 0;
	}
	it->actual_size = (uint64_t)st.st_size;
	char hex[SHA256_HEX_LEN + 1];
	uint64_t n = 0;
	if (it->actual_size != f->size) {
		it->status = STORE_FILE_SIZE_MISMATCH;
		snprintf(detail, dsize, "%s: blob %s has %llu bytes, expected %llu", f->path, name,
			 (unsigned long long)it->actual_size, (unsigned long long)f->size);
	} else if ((rc = sha256_fd(fd, name, cancel, hex, NULL, &n, &sub)) == ERR_CANCELLED) {
		close(fd);
		return err_set(e, rc, "verify %s %s: cancelled", m->id, f->path);
	} else if (rc) {
		it->status = STORE_FILE_CORRUPT;
		snprintf(detail, dsize, "%s: blob %s cannot be read: %s", f->path, name,
			 err_msg(&sub));
	} else if (strcmp(hex, f->sha256) != 0) {
		it->status = STORE_FILE_CORRUPT;
		snprintf(detail, dsize, "%s: blob %s hashes to %s", f->path, name, hex);
	}
	close(fd);
	sum->bytes_hashed += n;
	/* What the blob was found to be is recorded: a pull trusts only a blob found right. */
	if (it->status == STORE_FILE_OK)
		catalog_blob_verified(c, m->repo_dir, name, f->sha256, f->size,
				      layout_mtime_ns(&st), f->blob_adopted, NULL);
	else
		catalog_blob_distrust(c, m->repo_dir, name, NULL);
	if (it->status == STORE_FILE_OK && !link_ok(l, m, f)) {
		it->status = STORE_FILE_MISSING;
		snprintf(detail, dsize, "%s: snapshot link snapshots/%s/%s is missing or wrong",
			 f->path, m->commit, f->path);
	}
	return 0;
}

static int verify_model(struct catalog *c, const struct layout *l, const struct catalog_model *m,
			store_verify_fn fn, void *arg, struct cancel_token *cancel,
			struct store_verify_summary *sum, struct err *e)
{
	if (m->status == CATALOG_DOWNLOADING) {
		sum->models_skipped++;
		return 0;
	}
	sum->models++;
	size_t bad = 0;
	char errtext[1024] = "";
	size_t off = 0;
	for (size_t i = 0; i < m->nfiles; i++) {
		const struct catalog_file *f = &m->files[i];
		char detail[768];
		struct store_verify_item it = {
		    .model_id = m->id,
		    .path = f->path,
		    .sha256 = f->sha256,
		    .expected_size = f->size,
		    .detail = detail,
		};
		int rc = verify_file(c, l, m, f, cancel, &it, detail, sizeof detail, sum, e);
		if (rc)
			return rc;
		sum->files++;
		if (it.status != STORE_FILE_OK) {
			sum->files_bad++;
			if (bad++ < VERIFY_NAMED_MAX && off < sizeof errtext)
				off += (size_t)snprintf(errtext + off, sizeof errtext - off,
							"%s%s (%s)", bad > 1 ? ", " : "", f->path,
							store_file_status_name(it.status));
			log_warn("verify %s: %s", m->id, detail);
		}
		if (fn)
			fn(arg, &it);
	}
	struct err sub;
	int rc = 0;
	if (bad) {
		sum->models_bad++;
		char msg[1200];
		snprintf(msg, sizeof msg, "verify: %zu of %zu files bad: %s%s", bad, m->nfiles,
			 errtext, bad > VERIFY_NAMED_MAX ? ", ..." : "");
		rc = catalog_model_set_status(c, m->id, CATALOG_FAILED, msg, m->updated_ms, &sub);
	} else if (m->status == CATALOG_FAILED && m->nfiles > 0) {
		rc = catalog_model_set_status(c, m->id, CATALOG_AVAILABLE, "", m->updated_ms, &sub);
		if (!rc)
			log_info("verify %s: every file checks out; available again", m->id);
	}
	/* Changed or deleted meanwhile: the newer state wins. */
	if (rc == ERR_CONFLICT || rc == ERR_NOT_FOUND)
		rc = 0;
	if (rc)
		err_set(e, rc, "%s", err_msg(&sub));
	return rc;
}

int store_verify(struct catalog *c, const struct layout *l, const char *query, store_verify_fn fn,
		 void *arg, struct cancel_token *cancel, struct store_verify_summary *sum,
		 struct err *e)
{
	struct store_verify_summary local;
	if (!sum)
		sum = &local;
	memset(sum, 0, sizeof *sum);
	int rc;
	if (query) {
		struct catalog_model m;
		rc = catalog_model_find(c, query, &m, e);
		if (rc)
			return rc;
		rc = verify_model(c, l, &m, fn, arg, cancel, sum, e);
		catalog_model_cleanup(&m);
		return rc;
	}
	for (size_t offset = 0;; offset += VERIFY_PAGE) {
		struct catalog_model *list;
		size_t n;
		rc = catalog_model_list(c, NULL, offset, VERIFY_PAGE, &list, &n, e);
		if (rc)
			return rc;
		for (size_t i = 0; i < n && !rc; i++)
			rc = verify_model(c, l, &list[i], fn, arg, cancel, sum, e);
		catalog_model_list_free(list, n);
		if (rc || n < VERIFY_PAGE)
			return rc;
	}
}

int store_delete_model(struct catalog *c, const struct layout *l, const char *query, char *id_out,
		       size_t id_size, struct err *e)
{
	struct catalog_model m;
	int rc = catalog_model_find(c, query, &m, e);
	if (rc)
		return rc;
	struct catalog_removal r;
	rc = catalog_model_delete(c, m.id, &r, e);
	if (rc)
		goto out;
	size_t kept = 0;
	rc = layout_remove_model(l, r.repo_dir, r.commit, (const char *const *)r.paths, r.npaths,
				 (const char *const *)r.blobs, r.nblobs, &kept, e);
	if (rc)
		err_prefix(e, "model %s was removed from the catalog, but its files", m.id);
	else
		log_info("deleted %s: %zu blob(s) removed, %zu kept for other snapshots", m.id,
			 r.nblobs - kept, kept);
	if (id_out && id_size)
		snprintf(id_out, id_size, "%s", m.id);
	catalog_removal_cleanup(&r);
out:
	catalog_model_cleanup(&m);
	return rc;
}

int store_partial_writing(const struct layout *l, const char *repo_dir, const char *sha256,
			  struct err *e)
{
	int fd;
	int rc = layout_blob_lock(l, repo_dir, sha256, 0, NULL, &fd, e);
	if (rc == ERR_TIMEOUT)
		return 1;
	if (rc)
		return rc;
	layout_blob_unlock(fd);
	return 0;
}

int store_partial_remove(struct catalog *c, const struct layout *l, const char *repo_dir,
			 const char *sha256, struct err *e)
{
	int fd;
	struct err sub;
	int rc = layout_blob_lock(l, repo_dir, sha256, 0, NULL, &fd, &sub);
	if (rc == ERR_TIMEOUT)
		return err_set(e, ERR_CONFLICT, "partial %s of %s is being downloaded now", sha256,
			       repo_dir);
	if (rc)
		return err_set(e, rc, "%s", err_msg(&sub));
	rc = layout_partial_remove(l, repo_dir, sha256, e);
	if (!rc)
		rc = catalog_partial_delete(c, repo_dir, sha256, e);
	layout_blob_unlock(fd);
	/* A repo folder that held only this partial goes with it. */
	if (!rc)
		layout_repo_prune(l, repo_dir);
	return rc;
}
