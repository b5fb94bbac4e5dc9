/*
 * Resume state of partial blobs: the done byte ranges of each
 * blobs/<sha256>.partial, sorted, merged and stored as 16 bytes a range.
 */
#include "store/catalog.h"

#include <assert.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/util.h"
#include "store/catalog_internal.h"

static int check_partial_key(const char *repo_dir, const char *sha256, struct err *e)
{
	return catalog_check_key(repo_dir, sha256, "partial", e);
}

/* The ranges sorted, merged and encoded into *blob (free() it); *done their sum. */
static int encode_ranges(const char *sha256, uint64_t total_size, const struct byte_range *ranges,
			 size_t n, unsigned char **blob, size_t *len, uint64_t *done, struct err *e)
{
	if (total_size > INT64_MAX)
		return err_set(e, ERR_INVALID, "partial %s: size too large", sha256);
	if (n > CAP_XFER_RANGES * 4)
		return err_set(e, ERR_TOO_LARGE, "partial %s: %zu ranges", sha256, n);
	struct byte_range *r = xmalloc((n ? n : 1) * sizeof *r);
	for (size_t i = 0; i < n; i++) {
		if (ranges[i].start >= ranges[i].end || ranges[i].end > total_size) {
			free(r);
			return err_set(
			    e, ERR_INVALID,
			    "partial %s: range [%llu, %llu) is empty or beyond %llu bytes", sha256,
			    (unsigned long long)ranges[i].start, (unsigned long long)ranges[i].end,
			    (unsigned long long)total_size);
		}
		r[i] = ranges[i];
	}
	size_t m = ranges_merge(r, n);
	if (m > CAP_XFER_RANGES) {
		free(r);
		return err_set(e, ERR_TOO_LARGE, "partial %s: %zu separate ranges, more than %d",
			       sha256, m, CAP_XFER_RANGES);
	}
	unsigned char *b = xmalloc(m * 16 + 1);
	*done = 0;
	for (size_t i = 0; i < m; i++) {
		catalog_put_le64(b + 16 * i, r[i].start);
		catalog_put_le64(b + 16 * i + 8, r[i].end);
		*done += r[i].end - r[i].start;
	}
	free(r);
	/* Merged ranges within total_size cannot cover more than it. */
	assert(*done <= total_size);
	*blob = b;
	*len = m * 16;
	return 0;
}

/*
 * A synced save writes the row; the fresh columns of an earlier version of
 * the schema are cleared, as fresh states now live in files
 * (catalog_fresh.c).
 */
static const char save_sql[] =
    "INSERT INTO partials(repo_dir, sha256, total_size, done_bytes, ranges, updated_ms)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(repo_dir, sha256) DO UPDATE SET"
    " fresh_ranges = NULL, fresh_boot = '', total_size = excluded.total_size,"
    " done_bytes = excluded.done_bytes, ranges = excluded.ranges,"
    " updated_ms = excluded.updated_ms";
/*
 * The first fresh state of a partial also makes its row, with no synced
 * ranges (those of another size go), so the partial is listed (and can be
 * removed) before its first synced save.
 */
static const char fresh_row_sql[] =
    "INSERT INTO partials(repo_dir, sha256, total_size, done_bytes, ranges, updated_ms)"
    " VALUES(?1, ?2, ?3, ?4, x'', ?6) ON CONFLICT(repo_dir, sha256) DO UPDATE SET"
    " ranges = CASE WHEN total_size = excluded.total_size THEN ranges ELSE x'' END,"
    " fresh_ranges = NULL, fresh_boot = '', total_size = excluded.total_size,"
    " done_bytes = excluded.done_bytes, updated_ms = excluded.updated_ms";

static int partial_save(struct catalog *c, const char *repo_dir, const char *sha256,
			uint64_t total_size, const struct byte_range *ranges, size_t n, int fresh,
			struct err *e)
{
	int rc = check_partial_key(repo_dir, sha256, e);
	if (rc)
		return rc;
	size_t len = 0;
	uint64_t done = 0;
	unsigned char *blob = NULL;
	rc = encode_ranges(sha256, total_size, ranges, n, &blob, &len, &done, e);
	if (rc)
		return rc;
	if (fresh) {
		rc = catalog_fresh_write(c, repo_dir, sha256, total_size, blob, len, e);
		if (rc <= 0) {
			free(blob);
			return rc;
		}
	}
	sqlite3_stmt *st;
	rc = catalog_prepare(c, fresh ? fresh_row_sql : save_sql, &st, e);
	/*
	 * The commit does not wait for the disk while it holds the write lock
	 * (in WAL mode, synchronous=NORMAL syncs the WAL at checkpoints only):
	 * a FULL commit syncs the WAL under it, tens of ms while a partial is
	 * written back, and every other writer of the catalog would wait for
	 * it. A passive checkpoint then makes a synced save durable, syncing
	 * the WAL without the write lock (a fresh save's row is worth nothing
	 * after a restart of the system). The connection is back to FULL
	 * after.
	 */
	if (!rc)
		rc = catalog_exec(c, "PRAGMA synchronous=NORMAL", "unsynced commits", e);
	if (!rc) {
		catalog_bind_str(st, 1, repo_dir);
		catalog_bind_str(st, 2, sha256);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)total_size);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)done);
		if (!fresh)
			sqlite3_bind_blob(st, 5, blob, (int)len, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 6, wall_ms());
		int s = sqlite3_step(st);
		if (s != SQLITE_DONE)
			rc = catalog_fail(c, s, "save partial", e);
	}
	struct err pe;
	int prc = catalog_exec(c, "PRAGMA synchronous=FULL", "synced commits", &pe);
	if (!rc && prc)
		rc = err_set(e, prc, "%s", err_msg(&pe));
	if (!rc && !fresh)
		rc = catalog_sync_wal(c, e);
	sqlite3_finalize(st);
	free(blob);
	return rc;
}

int catalog_partial_save(struct catalog *c, const char *repo_dir, const char *sha256,
			 uint64_t total_size, const struct byte_range *ranges, size_t n,
			 struct err *e)
{
	return partial_save(c, repo_dir, sha256, total_size, ranges, n, 0, e);
}

int catalog_partial_save_fresh(struct catalog *c, const char *repo_dir, const char *sha256,
			       uint64_t total_size, const struct byte_range *ranges, size_t n,
			       struct err *e)
{
	return partial_save(c, repo_dir, sha256, total_size, ranges, n, 1, e);
}

/* Decodes a stored ranges column: 0, or -1 when it is damaged. */
static int decode_ranges(const unsigned char *b, size_t len, uint64_t total,
			 struct byte_range **ranges, size_t *n)
{
	if (len % 16 || len / 16 > CAP_XFER_RANGES)
		return -1;
	size_t m = len / 16;
	struct byte_range *r = xmalloc((m ? m : 1) * sizeof *r);
	for (size_t i = 0; i < m; i++) {
		r[i].start = catalog_get_le64(b + 16 * i);
		r[i].end = catalog_get_le64(b + 16 * i + 8);
		if (r[i].start >= r[i].end || r[i].end > total ||
		    (i > 0 && r[i].start <= r[i - 1].end)) {
			free(r);
			return -1;
		}
	}
	*ranges = r;
	*n = m;
	return 0;
}

int catalog_partial_load(struct catalog *c, const char *repo_dir, const char *sha256,
			 uint64_t *total_size, struct byte_range **ranges, size_t *n, struct err *e)
{
	*ranges = NULL;
	*n = 0;
	int rc = check_partial_key(repo_dir, sha256, e);
	if (rc)
		return rc;
	sqlite3_stmt *st;
	rc = catalog_prepare(c,
			     "SELECT total_size, ranges FROM partials"
			     " WHERE repo_dir = ?1 AND sha256 = ?2",
			     &st, e);
	if (rc)
		return rc;
	catalog_bind_str(st, 1, repo_dir);
	catalog_bind_str(st, 2, sha256);
	int s = sqlite3_step(st);
	if (s != SQLITE_DONE && s != SQLITE_ROW) {
		rc = catalog_fail(c, s, "load partial", e);
		goto out;
	}
	int row = s == SQLITE_ROW;
	uint64_t total = row ? (uint64_t)sqlite3_column_int64(st, 0) : 0, ftotal = 0;
	/*
	 * A fresh state of the running boot wins over the synced ranges (it is
	 * saved after them), unless the row is for another size; a damaged one
	 * gives way to them.
	 */
	unsigned char *fb = NULL;
	size_t flen = 0;
	if (catalog_fresh_read(c, repo_dir, sha256, &ftotal, &fb, &flen) == 0 &&
	    (!row || ftotal == total) && decode_ranges(fb, flen, ftotal, ranges, n) == 0) {
		free(fb);
		*total_size = ftotal;
		goto out;
	}
	free(fb);
	if (!row) {
		rc = err_set(e, ERR_NOT_FOUND, "no resume state for %s/blobs/%s.partial", repo_dir,
			     sha256);
		goto out;
	}
	if (decode_ranges(sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1), total,
			  ranges, n) < 0) {
		rc = err_set(e, ERR_CORRUPT, "resume state of %s/%s: its ranges are damaged",
			     repo_dir, sha256);
		goto out;
	}
	*total_size = total;
out:
	sqlite3_finalize(st);
	return rc;
}

int catalog_partial_delete(struct catalog *c, const char *repo_dir, const char *sha256,
			   struct err *e)
{
	int rc = check_partial_key(repo_dir, sha256, e);
	if (rc)
		return rc;
	catalog_fresh_remove(c, repo_dir, sha256);
	return catalog_run_keys(c, "DELETE FROM partials WHERE repo_dir = ?1 AND sha256 = ?2",
				(const char *[]){repo_dir, sha256}, 2, "delete partial", e);
}

int catalog_partial_list(struct catalog *c, struct catalog_partial **out, size_t *n, struct err *e)
{
	*out = NULL;
	*n = 0;
	sqlite3_stmt *st;
	int rc = catalog_prepare(
	    c,
	    "SELECT repo_dir, sha256, total_size, done_bytes, updated_ms FROM partials"
	    " ORDER BY repo_dir, sha256",
	    &st, e);
	if (rc)
		return rc;
	struct catalog_partial *list = NULL;
	size_t cnt = 0, cap = 0;
	int s;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			list = xrealloc(list, cap * sizeof *list);
		}
		struct catalog_partial *p = &list[cnt++];
		catalog_col_buf(st, 0, p->repo_dir, sizeof p->repo_dir);
		catalog_col_buf(st, 1, p->sha256, sizeof p->sha256);
		p->total_size = (uint64_t)sqlite3_column_int64(st, 2);
		p->done_bytes = (uint64_t)sqlite3_column_int64(st, 3);
		p->updated_ms = sqlite3_column_int64(st, 4);
	}
	if (s != SQLITE_DONE) {
		rc = catalog_fail(c, s, "list partials", e);
		free(list);
		list = NULL;
		cnt = 0;
	}
	sqlite3_finalize(st);
	*out = list;
	*n = cnt;
	return rc;
}
