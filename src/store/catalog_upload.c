/*
 * The state of multipart uploads to a blob store: per blob and store, the
 * upload id, the part size and the ETags of the parts done.
 */
#include "store/catalog.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/sha256.h"
#include "core/util.h"
#include "store/catalog_internal.h"

static int check_upload_key(const char *sha256, const char *target, struct err *e)
{
	if (!sha256_hex_valid(sha256))
		return err_set(e, ERR_INVALID, "upload of '%.70s': not a sha256", sha256);
	if (!target[0] || strlen(target) > 4096)
		return err_set(e, ERR_INVALID,
			       "upload of %s: the store's name is empty or too long", sha256);
	return 0;
}

int catalog_upload_get(struct catalog *c, const char *sha256, const char *target,
		       struct catalog_upload *out, struct err *e)
{
	memset(out, 0, sizeof(*out));
	int rc = check_upload_key(sha256, target, e);
	if (rc)
		return rc;
	sqlite3_stmt *st = NULL;
	rc = catalog_row(c,
			 "SELECT upload_id, part_size, etags FROM uploads"
			 " WHERE sha256 = ?1 AND target = ?2",
			 (const char *[]){sha256, target}, 2, &st, "load upload", e);
	if (rc != 1) {
		sqlite3_finalize(st);
		return rc < 0 ? rc
			      : err_set(e, ERR_NOT_FOUND, "no upload of %s in progress", sha256);
	}
	const char *id = (const char *)sqlite3_column_text(st, 0);
	const char *etags = (const char *)sqlite3_column_text(st, 2);
	int64_t part = sqlite3_column_int64(st, 1);
	if (!id || !etags || !id[0] || strlen(id) >= sizeof(out->upload_id) || part <= 0 ||
	    strlen(etags) > CATALOG_UPLOAD_ETAGS_MAX) {
		sqlite3_finalize(st);
		return err_set(e, ERR_CORRUPT, "the upload state of %s is damaged", sha256);
	}
	memcpy(out->upload_id, id, strlen(id) + 1);
	out->part_size = (uint64_t)part;
	out->etags = xstrdup(etags);
	sqlite3_finalize(st);
	return 0;
}

int catalog_upload_put(struct catalog *c, const char *sha256, const char *target,
		       const struct catalog_upload *u, struct err *e)
{
	int rc = check_upload_key(sha256, target, e);
	if (rc)
		return rc;
	if (!u->upload_id[0] || u->part_size == 0 || u->part_size > INT64_MAX ||
	    strlen(u->etags) > CATALOG_UPLOAD_ETAGS_MAX)
		return err_set(e, ERR_INVALID,
			       "upload of %s: no id, no part size or too many parts", sha256);
	sqlite3_stmt *st;
	rc = catalog_prepare(c,
			     "INSERT OR REPLACE INTO uploads(sha256, target, upload_id, part_size,"
			     " etags, updated_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
			     &st, e);
	if (rc)
		return rc;
	catalog_bind_str(st, 1, sha256);
	catalog_bind_str(st, 2, target);
	catalog_bind_str(st, 3, u->upload_id);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)u->part_size);
	catalog_bind_str(st, 5, u->etags);
	sqlite3_bind_int64(st, 6, wall_ms());
	int s = sqlite3_step(st);
	if (s != SQLITE_DONE)
		rc = catalog_fail(c, s, "save upload", e);
	sqlite3_finalize(st);
	return rc;
}

int catalog_upload_delete(struct catalog *c, const char *sha256, const char *target, struct err *e)
{
	int rc = check_upload_key(sha256, target, e);
	if (rc)
		return rc;
	return catalog_run_keys(c, "DELETE FROM uploads WHERE sha256 = ?1 AND target = ?2",
				(const char *[]){sha256, target}, 2, "forget upload", e);
}
