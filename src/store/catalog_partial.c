/*
 * Resume state of partial blobs: the done byte ranges of each
 * blobs/<sha256>.partial, sorted, merged and stored as 16 bytes a range.
 */
#include "store/catalog.h"

#include <assert.h>
#include <sqlite3.h>
#include <stdlib.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/util.h"
#include "store/catalog_internal.h"

static void put_le64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static int check_partial_key(const char *repo_dir, const char *sha256, struct err *e)
{
	return catalog_check_key(repo_dir, sha256, "partial", e);
}

int catalog_partial_save(struct catalog *c, const char *repo_dir, const char *sha256,
			 uint64_t total_size, const struct byte_range *ranges, size_t n,
			 struct err *e)
{
	int rc = check_partial_key(repo_dir, sha256, e);
	if (rc)
		return rc;
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
	unsigned char *blob = xmalloc(m * 16 + 1);
	uint64_t done = 0;
	for (size_t i = 0; i < m; i++) {
		put_le64(blob + 16 * i, r[i].start);
		put_le64(blob + 16 * i + 8, r[i].end);
		done += r[i].end - r[i].start;
	}
	free(r);
	/* Merged ranges within total_size cannot cover more than it. */
	assert(done <= total_size);
	sqlite3_stmt *st;
	rc = catalog_prepare(
	    c,
	    "INSERT OR REPLACE INTO partials(repo_dir, sha256, total_size, done_bytes,"
	    " ranges, updated_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
	    &st, e);
	if (!rc) {
		catalog_bind_str(st, 1, repo_dir);
		catalog_bind_str(st, 2, sha256);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)total_size);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)done);
		sqlite3_bind_blob(st, 5, blob, (int)(m * 16), SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 6, wall_ms());
		int s = sqlite3_step(st);
		if (s != SQLITE_DONE)
			rc = catalog_fail(c, s, "save partial", e);
		sqlite3_finalize(st);
	}
	free(blob);
	return rc;
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
	rc = catalog_prepare(
	    c, "SELECT total_size, ranges FROM partials WHERE repo_dir = ?1 AND sha256 = ?2", &st,
	    e);
	if (rc)
		return rc;
	catalog_bind_str(st, 1, repo_dir);
	catalog_bind_str(st, 2, sha256);
	int s = sqlite3_step(st);
	if (s == SQLITE_DONE) {
		rc = err_set(e, ERR_NOT_FOUND, "no resume state for %s/blobs/%s.partial", repo_dir,
			     sha256);
		goto out;
	}
	if (s != SQLITE_ROW) {
		rc = catalog_fail(c, s, "load partial", e);
		goto out;
	}
	uint64_t total = (uint64_t)sqlite3_column_int64(st, 0);
	const unsigned char *b = sqlite3_column_blob(st, 1);
	size_t len = (size_t)sqlite3_column_bytes(st, 1);
	if (len % 16 || len / 16 > CAP_XFER_RANGES) {
		rc = err_set(e, ERR_CORRUPT, "resume state of %s/%s: %zu bytes of ranges", repo_dir,
			     sha256, len);
		goto out;
	}
	size_t m = len / 16;
	struct byte_range *r = xmalloc((m ? m : 1) * sizeof *r);
	for (size_t i = 0; i < m; i++) {
		r[i].start = get_le64(b + 16 * i);
		r[i].end = get_le64(b + 16 * i + 8);
		if (r[i].start >= r[i].end || r[i].end > total ||
		    (i > 0 && r[i].start <= r[i - 1].end)) {
			free(r);
			rc = err_set(e, ERR_CORRUPT, "resume state of %s/%s: range %zu is damaged",
				     repo_dir, sha256, i);
			goto out;
		}
	}
	*total_size = total;
	*ranges = r;
	*n = m;
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
