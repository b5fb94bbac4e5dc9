/* The record of each blob file: who made it, and when it was last found right. */
#include "store/catalog.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "core/sha256.h"
#include "core/util.h"
#include "store/catalog_internal.h"

static int check_blob_key(const char *repo_dir, const char *name, struct err *e)
{
	return catalog_check_key(repo_dir, name, "blob", e);
}

int catalog_blob_refcount(struct catalog *c, const char *repo_dir, const char *sha256,
			  size_t *count, struct err *e)
{
	if (!sha256_hex_valid(sha256))
		return err_set(e, ERR_INVALID, "blob '%.70s': not a sha256", sha256 ? sha256 : "");
	/* Without a repo folder ?2 stays NULL: every folder counts. */
	int64_t v = 0;
	int rc = catalog_query_int(c,
				   "SELECT COUNT(*) FROM files f JOIN models m ON m.id = f.model_id"
				   " WHERE f.sha256 = ?1 AND (?2 IS NULL OR m.repo_dir = ?2)",
				   (const char *[]){sha256, repo_dir}, repo_dir ? 2 : 1, &v,
				   "count blob users", e);
	*count = (size_t)v;
	return rc;
}

int catalog_blob_where(struct catalog *c, const char *sha256, char *buf, size_t size, struct err *e)
{
	if (!sha256_hex_valid(sha256))
		return err_set(e, ERR_INVALID, "blob '%.70s': not a sha256", sha256 ? sha256 : "");
	sqlite3_stmt *st;
	int rc = catalog_row(c,
			     "SELECT repo_dir FROM blobs WHERE sha256 = ?1 AND name = ?1"
			     " ORDER BY repo_dir LIMIT 1",
			     &sha256, 1, &st, "find blob", e);
	if (rc == 1)
		rc = fmt_buf(buf, size, "%s", (const char *)sqlite3_column_text(st, 0))
			 ? err_set(e, ERR_TOO_LARGE, "repo folder of blob %s: too long", sha256)
			 : 0;
	else if (rc == 0)
		rc = err_set(e, ERR_NOT_FOUND, "blob %s is not in the catalog", sha256);
	sqlite3_finalize(st);
	return rc;
}

int catalog_blob_get(struct catalog *c, const char *repo_dir, const char *name,
		     struct catalog_blob *out, struct err *e)
{
	memset(out, 0, sizeof *out);
	int rc = check_blob_key(repo_dir, name, e);
	if (rc)
		return rc;
	sqlite3_stmt *st;
	rc = catalog_row(c,
			 "SELECT sha256, size, adopted, mtime_ns, verified_ms FROM blobs"
			 " WHERE repo_dir = ?1 AND name = ?2",
			 (const char *[]){repo_dir, name}, 2, &st, "read blob", e);
	if (rc == 1) {
		catalog_col_buf(st, 0, out->sha256, sizeof out->sha256);
		out->size = (uint64_t)sqlite3_column_int64(st, 1);
		out->adopted = sqlite3_column_int(st, 2);
		out->mtime_ns = sqlite3_column_int64(st, 3);
		out->verified_ms = sqlite3_column_int64(st, 4);
		rc = 0;
	} else if (rc == 0) {
		rc = err_set(e, ERR_NOT_FOUND, "blob %s of %s is not in the catalog", name,
			     repo_dir);
	}
	sqlite3_finalize(st);
	return rc;
}

int catalog_blob_verified(struct catalog *c, const char *repo_dir, const char *name,
			  const char *sha256, uint64_t size, int64_t mtime_ns, int adopted,
			  struct err *e)
{
	int rc = check_blob_key(repo_dir, name, e);
	if (rc)
		return rc;
	if (!sha256_hex_valid(sha256) || size > INT64_MAX)
		return err_set(e, ERR_INVALID, "blob %s: bad sha256 or size", name);
	sqlite3_stmt *st;
	rc = catalog_prepare_keys(
	    c,
	    "INSERT INTO blobs(repo_dir, name, sha256, size, adopted, mtime_ns, verified_ms)"
	    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(repo_dir, name) DO UPDATE SET"
	    " sha256 = excluded.sha256, size = excluded.size, mtime_ns = excluded.mtime_ns,"
	    " verified_ms = excluded.verified_ms",
	    (const char *[]){repo_dir, name, sha256}, 3, &st, e);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 4, (sqlite3_int64)size);
	sqlite3_bind_int(st, 5, adopted != 0);
	sqlite3_bind_int64(st, 6, mtime_ns);
	sqlite3_bind_int64(st, 7, wall_ms());
	rc = catalog_step(c, st, "record blob", e);
	sqlite3_finalize(st);
	return rc < 0 ? rc : 0;
}

int catalog_blob_distrust(struct catalog *c, const char *repo_dir, const char *name, struct err *e)
{
	int rc = check_blob_key(repo_dir, name, e);
	return rc ? rc
		  : catalog_run_keys(
			c, "UPDATE blobs SET verified_ms = 0 WHERE repo_dir = ?1 AND name = ?2",
			(const char *[]){repo_dir, name}, 2, "distrust blob", e);
}

int catalog_link_made(struct catalog *c, const char *repo_dir, const char *commit, const char *path,
		      struct err *e)
{
	sqlite3_stmt *st;
	int rc =
	    catalog_row(c,
			"SELECT 1 FROM files f JOIN models m ON m.id = f.model_id"
			" WHERE m.repo_dir = ?1 AND m.commit_sha = ?2 AND f.path = ?3"
			" AND f.link_adopted = 0 LIMIT 1",
			(const char *[]){repo_dir, commit, path}, 3, &st, "read snapshot link", e);
	sqlite3_finalize(st);
	return rc;
}

int catalog_blob_set_source(struct catalog *c, const char *repo_dir, const char *name,
			    const char *source, struct err *e)
{
	int rc = check_blob_key(repo_dir, name, e);
	if (rc)
		return rc;
	if (strlen(source) >= sizeof(((struct catalog_file *)0)->source))
		return err_set(e, ERR_INVALID, "blob source '%.16s': too long", source);
	return catalog_run_keys(c, "UPDATE blobs SET source = ?3 WHERE repo_dir = ?1 AND name = ?2",
				(const char *[]){repo_dir, name, source}, 3, "record blob source",
				e);
}
