/*
 * Reading one Hub repository as the catalog holds it: whether it is known,
 * which commit a revision names, and the files of one commit over every
 * available model of that commit. The daemon's mirror serves from these.
 */
#include "store/catalog.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/util.h"
#include "store/catalog_internal.h"

/* Hub repository ids compare without case, as the Hub resolves them. */
#define REPO_WHERE " m.source = 'hf' AND m.status = 'available' AND m.repo = ?1 COLLATE NOCASE"

int catalog_repo_find(struct catalog *c, const char *repo, const char *revision, char commit[41],
		      struct err *e)
{
	const char *keys[] = {repo, revision ? revision : ""};
	sqlite3_stmt *st;
	int rc = catalog_row(c,
			     "SELECT m.commit_sha FROM models m WHERE" REPO_WHERE
			     " AND (?2 = '' OR m.revision = ?2 OR m.commit_sha = ?2)"
			     " ORDER BY m.updated_ms DESC LIMIT 1",
			     keys, 2, &st, "find repository", e);
	if (rc == 1)
		catalog_col_buf(st, 0, commit, 41);
	sqlite3_finalize(st);
	return rc;
}

void catalog_repo_cleanup(struct catalog_repo *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nfiles; i++)
		free(r->files[i].path);
	free(r->files);
	free(r->repo);
	free(r->repo_dir);
	memset(r, 0, sizeof *r);
}

static int repo_add(struct catalog_repo *r, sqlite3_stmt *st, struct err *e)
{
	const char *path = (const char *)sqlite3_column_text(st, 0);
	/* Rows come sorted by path: a path two models share is listed once. */
	if (!path || (r->nfiles && strcmp(r->files[r->nfiles - 1].path, path) == 0))
		return 0;
	if (r->nfiles == CAP_REPO_FILES)
		return err_set(e, ERR_TOO_LARGE, "%s has more than %d files in the catalog",
			       r->repo, CAP_REPO_FILES);
	if ((r->nfiles & (r->nfiles - 1)) == 0)
		r->files = xrealloc(r->files, (r->nfiles ? r->nfiles * 2 : 1) * sizeof *r->files);
	struct catalog_file *f = &r->files[r->nfiles++];
	memset(f, 0, sizeof *f);
	f->path = xstrdup(path);
	catalog_col_buf(st, 1, f->sha256, sizeof f->sha256);
	f->size = (uint64_t)sqlite3_column_int64(st, 2);
	catalog_col_buf(st, 3, f->blob, sizeof f->blob);
	if (strcmp(f->blob, f->sha256) == 0)
		f->blob[0] = 0;
	if (!r->repo_dir)
		r->repo_dir = catalog_col_str(st, 4);
	int64_t updated = sqlite3_column_int64(st, 5);
	if (updated > r->updated_ms)
		r->updated_ms = updated;
	/* One model of the commit recorded as gated (or unknown) makes the commit so. */
	int gated = sqlite3_column_int(st, 6);
	if (gated != 0 && r->gated != CATALOG_GATED_UNKNOWN)
		r->gated = gated;
	return 0;
}

int catalog_repo_snapshot(struct catalog *c, const char *repo, const char *commit,
			  struct catalog_repo *out, struct err *e)
{
	memset(out, 0, sizeof *out);
	out->repo = xstrdup(repo);
	snprintf(out->commit, sizeof out->commit, "%s", commit);
	const char *keys[] = {repo, commit};
	sqlite3_stmt *st;
	int rc = catalog_exec(c, "BEGIN", "begin", e);
	if (rc)
		goto fail;
	rc =
	    catalog_prepare_keys(c,
				 "SELECT f.path, f.sha256, f.size, f.blob, m.repo_dir,"
				 " m.updated_ms, m.gated"
				 " FROM files f JOIN models m ON m.id = f.model_id WHERE" REPO_WHERE
				 " AND m.commit_sha = ?2 ORDER BY f.path, m.updated_ms DESC",
				 keys, 2, &st, e);
	int row = rc ? rc : 1;
	while (row == 1 && (row = catalog_step(c, st, "read repository files", e)) == 1)
		row = repo_add(out, st, e) < 0 ? e->code : 1;
	if (!rc)
		sqlite3_finalize(st);
	catalog_rollback(c);
	rc = row;
	if (rc)
		goto fail;
	if (!out->nfiles) {
		rc = err_set(e, ERR_NOT_FOUND, "%s has no files of commit %s in the catalog", repo,
			     commit);
		goto fail;
	}
	return 0;
fail:
	catalog_repo_cleanup(out);
	return rc;
}

int catalog_model_set_gated(struct catalog *c, const char *id, int gated, struct err *e)
{
	int rc = catalog_check_id(id, e);
	if (rc)
		return rc;
	char v[4];
	snprintf(v, sizeof v, "%d", gated < 0 ? CATALOG_GATED_UNKNOWN : gated > 0);
	const char *keys[] = {id, v};
	return catalog_run_keys(c, "UPDATE models SET gated = CAST(?2 AS INTEGER) WHERE id = ?1",
				keys, 2, "record gating", e);
}
