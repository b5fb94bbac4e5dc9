/* Writing models: put with files, status, delete, and what a change leaves unused. */
#include "store/catalog.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/parse.h"
#include "core/sha256.h"
#include "core/util.h"
#include "store/catalog_internal.h"
#include "store/gguf.h"
#include "store/layout.h"

void catalog_model_cleanup(struct catalog_model *m)
{
	if (!m)
		return;
	free(m->id);
	free(m->repo);
	free(m->revision);
	free(m->commit);
	free(m->repo_dir);
	free(m->error);
	for (size_t i = 0; i < m->nfiles; i++)
		free(m->files[i].path);
	free(m->files);
	memset(m, 0, sizeof *m);
}

void catalog_model_list_free(struct catalog_model *list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		catalog_model_cleanup(&list[i]);
	free(list);
}

void catalog_gguf_from_facts(struct catalog_gguf *g, const struct gguf_facts *f)
{
	memset(g, 0, sizeof *g);
	snprintf(g->architecture, sizeof g->architecture, "%s", f->architecture);
	snprintf(g->name, sizeof g->name, "%s", f->name);
	snprintf(g->quantization, sizeof g->quantization, "%s", f->quantization);
	snprintf(g->size_label, sizeof g->size_label, "%s", f->size_label);
	g->parameters = f->parameters;
	g->context_length = f->context_length;
}

void catalog_removal_cleanup(struct catalog_removal *r)
{
	if (!r)
		return;
	free(r->repo_dir);
	free(r->commit);
	for (size_t i = 0; i < r->npaths; i++)
		free(r->paths[i]);
	free(r->paths);
	for (size_t i = 0; i < r->nblobs; i++)
		free(r->blobs[i]);
	free(r->blobs);
	memset(r, 0, sizeof *r);
}

const char *catalog_file_blob(const struct catalog_file *f)
{
	return f->blob[0] ? f->blob : f->sha256;
}

static int check_model(const struct catalog_model *m, struct err *e)
{
	int rc = catalog_check_id(m->id, e);
	if (rc)
		return rc;
	if (!m->repo || !m->repo[0] || strnlen(m->repo, CAP_URL_LEN + 1) > CAP_URL_LEN)
		return err_set(e, ERR_INVALID, "model %s: repo missing or too long", m->id);
	if (m->source < CATALOG_SRC_HF || m->source > CATALOG_SRC_OCI)
		return err_set(e, ERR_INVALID, "model %s: unknown source kind %d", m->id,
			       (int)m->source);
	if (m->status < CATALOG_DOWNLOADING || m->status > CATALOG_FAILED)
		return err_set(e, ERR_INVALID, "model %s: unknown status %d", m->id,
			       (int)m->status);
	rc = layout_repo_dir_check(m->repo_dir, e);
	if (!rc && m->revision && m->revision[0])
		rc = revision_check(m->revision, strnlen(m->revision, CAP_REVISION_LEN + 1), e);
	if (rc) {
		if (e)
			err_prefix(e, "model %s", m->id);
		return rc;
	}
	if (m->nfiles > CAP_MODEL_FILES)
		return err_set(e, ERR_TOO_LARGE, "model %s: %zu files, more than %d", m->id,
			       m->nfiles, CAP_MODEL_FILES);
	if (m->nfiles &&
	    (!m->commit || name_check_hub(m->commit, strnlen(m->commit, CAP_REPO_ID_LEN + 1), e)))
		return err_set(e, ERR_INVALID, "model %s: a model with files needs a valid commit",
			       m->id);
	if (m->status == CATALOG_AVAILABLE && m->nfiles == 0)
		return err_set(e, ERR_INVALID, "model %s: available without any file", m->id);
	for (size_t i = 0; i < m->nfiles; i++) {
		const struct catalog_file *f = &m->files[i];
		rc = f->path ? path_check_repo(f->path, strnlen(f->path, CAP_REPO_PATH_LEN + 1), e)
			     : err_set(e, ERR_INVALID, "path missing");
		if (rc) {
			if (e)
				err_prefix(e, "model %s file %zu", m->id, i);
			return rc;
		}
		if (!sha256_hex_valid(f->sha256))
			return err_set(e, ERR_INVALID,
				       "model %s file %s: sha256 '%.70s' is not 64 hex", m->id,
				       f->path, f->sha256);
		if (f->blob[0] && !catalog_check_blob_name(f->blob))
			return err_set(e, ERR_INVALID,
				       "model %s file %s: blob name '%.70s' is not 40 or 64 hex",
				       m->id, f->path, f->blob);
		if (f->size > INT64_MAX)
			return err_set(e, ERR_INVALID, "model %s file %s: size too large", m->id,
				       f->path);
	}
	return 0;
}

/* A NULL-terminated list, grown by doubling. */
static void strv_push(char ***v, size_t *n, const char *s)
{
	if ((*n & (*n - 1)) == 0)
		*v = xrealloc(*v, (*n ? *n * 2 : 1) * sizeof **v);
	(*v)[(*n)++] = xstrdup(s);
}

static int strv_has(char **v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return 1;
	return 0;
}

/* The files a model had, for a removal: paths, blob names, links adopted. */
struct old_files {
	char **paths, **blobs;
	int *link_adopted;
	size_t n;
};

/*
 * Inside a write transaction, after a model's rows are gone or replaced:
 * of its old paths (of commit) and blobs (of repo_dir), which no model uses
 * any more and rbee-hive made. Records of unused blobs are deleted here.
 */
static int compute_removal(struct catalog *c, const char *repo_dir, const char *commit_sha,
			   const struct old_files *o, struct catalog_removal *r, struct err *e)
{
	sqlite3_stmt *pst = NULL, *bst = NULL, *ast = NULL, *del = NULL;
	int rc =
	    catalog_prepare(c,
			    "SELECT 1 FROM files f JOIN models m ON m.id = f.model_id"
			    " WHERE m.repo_dir = ?1 AND m.commit_sha = ?2 AND f.path = ?3 LIMIT 1",
			    &pst, e);
	if (!rc)
		rc = catalog_prepare(c,
				     "SELECT 1 FROM files f JOIN models m ON m.id = f.model_id"
				     " WHERE f.blob = ?2 AND m.repo_dir = ?1 LIMIT 1",
				     &bst, e);
	if (!rc)
		rc = catalog_prepare(
		    c, "SELECT adopted FROM blobs WHERE repo_dir = ?1 AND name = ?2", &ast, e);
	if (!rc)
		rc = catalog_prepare(c, "DELETE FROM blobs WHERE repo_dir = ?1 AND name = ?2", &del,
				     e);
	if (rc)
		goto out;
	r->repo_dir = xstrdup(repo_dir);
	r->commit = xstrdup(commit_sha);
	char **paths = o->paths, **blobs = o->blobs;
	for (size_t i = 0; i < o->n && !rc; i++) {
		sqlite3_reset(pst);
		catalog_bind_str(pst, 1, repo_dir);
		catalog_bind_str(pst, 2, commit_sha);
		catalog_bind_str(pst, 3, paths[i]);
		int s = sqlite3_step(pst);
		if (s == SQLITE_DONE && !o->link_adopted[i] &&
		    !strv_has(r->paths, r->npaths, paths[i]))
			strv_push(&r->paths, &r->npaths, paths[i]);
		else if (s != SQLITE_ROW && s != SQLITE_DONE)
			rc = catalog_fail(c, s, "check snapshot path", e);
		if (rc || strv_has(r->blobs, r->nblobs, blobs[i]))
			continue;
		sqlite3_reset(bst);
		catalog_bind_str(bst, 1, repo_dir);
		catalog_bind_str(bst, 2, blobs[i]);
		s = sqlite3_step(bst);
		if (s == SQLITE_DONE) {
			/* Unused: removed when rbee-hive made it; a blob without a record stays
			 * too. */
			sqlite3_reset(ast);
			catalog_bind_str(ast, 1, repo_dir);
			catalog_bind_str(ast, 2, blobs[i]);
			s = sqlite3_step(ast);
			if (s == SQLITE_ROW && sqlite3_column_int(ast, 0) == 0)
				strv_push(&r->blobs, &r->nblobs, blobs[i]);
			else if (s != SQLITE_ROW && s != SQLITE_DONE)
				rc = catalog_fail(c, s, "read blob", e);
			sqlite3_reset(del);
			catalog_bind_str(del, 1, repo_dir);
			catalog_bind_str(del, 2, blobs[i]);
			s = sqlite3_step(del);
			if (s != SQLITE_DONE)
				rc = catalog_fail(c, s, "delete blob row", e);
		} else if (s != SQLITE_ROW) {
			rc = catalog_fail(c, s, "count blob users", e);
		}
	}
out:
	sqlite3_finalize(pst);
	sqlite3_finalize(bst);
	sqlite3_finalize(ast);
	sqlite3_finalize(del);
	return rc;
}

/* The files of model id, for a removal. */
static int old_files_read(struct catalog *c, const char *id, struct old_files *o, struct err *e)
{
	sqlite3_stmt *st;
	int rc = catalog_prepare(
	    c, "SELECT path, blob, link_adopted FROM files WHERE model_id = ?1 ORDER BY idx", &st,
	    e);
	if (rc)
		return rc;
	catalog_bind_str(st, 1, id);
	size_t np = 0;
	int s;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		strv_push(&o->paths, &np, (const char *)sqlite3_column_text(st, 0));
		o->link_adopted =
		    xrealloc(o->link_adopted, (np ? np : 1) * sizeof *o->link_adopted);
		o->link_adopted[np - 1] = sqlite3_column_int(st, 2);
		strv_push(&o->blobs, &o->n, (const char *)sqlite3_column_text(st, 1));
	}
	if (s != SQLITE_DONE)
		rc = catalog_fail(c, s, "read files", e);
	sqlite3_finalize(st);
	return rc;
}

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

static void old_files_free(struct old_files *o)
{
	strv_free(o->paths, o->n);
	strv_free(o->blobs, o->n);
	free(o->link_adopted);
	memset(o, 0, sizeof *o);
}

/* Reads the repo folder and commit of model id. ERR_NOT_FOUND if none. */
static int model_place(struct catalog *c, const char *id, char **repo_dir, char **commit_sha,
		       struct err *e)
{
	sqlite3_stmt *st;
	int rc = catalog_row(c, "SELECT repo_dir, commit_sha FROM models WHERE id = ?1", &id, 1,
			     &st, "read model", e);
	if (rc == 1) {
		*repo_dir = catalog_col_str(st, 0);
		*commit_sha = catalog_col_str(st, 1);
		rc = 0;
	} else if (rc == 0) {
		rc = err_set(e, ERR_NOT_FOUND, "model '%s' is not in the catalog", id);
	}
	sqlite3_finalize(st);
	return rc;
}

static int put_rows(struct catalog *c, const struct catalog_model *m, int64_t now, struct err *e)
{
	sqlite3_stmt *st = NULL, *fst = NULL, *bst = NULL;
	int rc = catalog_prepare(
	    c,
	    "INSERT INTO models(id, source, repo, revision, commit_sha, repo_dir, status, size,"
	    " created_ms, updated_ms, error, gguf_architecture, gguf_name, gguf_quantization,"
	    " gguf_parameters, gguf_size_label, gguf_context_length, gated)"
	    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,"
	    " ?17)"
	    " ON CONFLICT(id) DO UPDATE SET source = excluded.source, repo = excluded.repo,"
	    " revision = excluded.revision, commit_sha = excluded.commit_sha,"
	    " repo_dir = excluded.repo_dir, status = excluded.status, size = excluded.size,"
	    " updated_ms = max(excluded.updated_ms, models.updated_ms + 1), error = excluded.error,"
	    " gguf_architecture = excluded.gguf_architecture, gguf_name = excluded.gguf_name,"
	    " gguf_quantization = excluded.gguf_quantization,"
	    " gguf_parameters = excluded.gguf_parameters,"
	    " gguf_size_label = excluded.gguf_size_label,"
	    " gguf_context_length = excluded.gguf_context_length, gated = excluded.gated",
	    &st, e);
	if (!rc)
		rc = catalog_prepare(
		    c,
		    "INSERT INTO files(model_id, idx, path, sha256, size, blob, link_adopted)"
		    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
		    &fst, e);
	/* Who made a blob does not change; a newer verification replaces an older one. */
	if (!rc)
		rc = catalog_prepare(
		    c,
		    "INSERT INTO blobs(repo_dir, name, sha256, size, adopted, mtime_ns,"
		    " verified_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)"
		    " ON CONFLICT(repo_dir, name) DO UPDATE SET"
		    " sha256 = excluded.sha256, size = excluded.size,"
		    " mtime_ns = CASE WHEN excluded.verified_ms > 0 THEN excluded.mtime_ns"
		    " ELSE blobs.mtime_ns END,"
		    " verified_ms = CASE WHEN excluded.verified_ms > 0 THEN excluded.verified_ms"
		    " ELSE blobs.verified_ms END",
		    &bst, e);
	if (rc)
		goto out;
	uint64_t size = m->size;
	if (size == 0)
		for (size_t i = 0; i < m->nfiles; i++)
			size += m->files[i].size;
	catalog_bind_str(st, 1, m->id);
	catalog_bind_str(st, 2, catalog_source_name(m->source));
	catalog_bind_str(st, 3, m->repo);
	catalog_bind_str(st, 4, m->revision);
	catalog_bind_str(st, 5, m->commit);
	catalog_bind_str(st, 6, m->repo_dir);
	catalog_bind_str(st, 7, catalog_status_name(m->status));
	sqlite3_bind_int64(st, 8, (sqlite3_int64)size);
	sqlite3_bind_int64(st, 9, now);
	catalog_bind_str(st, 10, m->error);
	catalog_bind_str(st, 11, m->gguf.architecture);
	catalog_bind_str(st, 12, m->gguf.name);
	catalog_bind_str(st, 13, m->gguf.quantization);
	sqlite3_bind_int64(st, 14, (sqlite3_int64)m->gguf.parameters);
	catalog_bind_str(st, 15, m->gguf.size_label);
	sqlite3_bind_int64(st, 16, (sqlite3_int64)m->gguf.context_length);
	sqlite3_bind_int(st, 17, m->gated < 0 ? CATALOG_GATED_UNKNOWN : m->gated > 0);
	int s = sqlite3_step(st);
	if (s != SQLITE_DONE) {
		rc = catalog_fail(c, s, "write model", e);
		goto out;
	}
	sqlite3_stmt *del;
	rc = catalog_prepare(c, "DELETE FROM files WHERE model_id = ?1", &del, e);
	if (rc)
		goto out;
	catalog_bind_str(del, 1, m->id);
	s = sqlite3_step(del);
	sqlite3_finalize(del);
	if (s != SQLITE_DONE) {
		rc = catalog_fail(c, s, "replace files", e);
		goto out;
	}
	for (size_t i = 0; i < m->nfiles; i++) {
		const struct catalog_file *f = &m->files[i];
		sqlite3_reset(fst);
		catalog_bind_str(fst, 1, m->id);
		sqlite3_bind_int64(fst, 2, (sqlite3_int64)i);
		catalog_bind_str(fst, 3, f->path);
		catalog_bind_str(fst, 4, f->sha256);
		sqlite3_bind_int64(fst, 5, (sqlite3_int64)f->size);
		catalog_bind_str(fst, 6, catalog_file_blob(f));
		sqlite3_bind_int(fst, 7, f->link_adopted != 0);
		s = sqlite3_step(fst);
		if ((s & 0xff) == SQLITE_CONSTRAINT) {
			rc = err_set(e, ERR_INVALID, "model %s: file %s is listed twice", m->id,
				     f->path);
			goto out;
		}
		if (s != SQLITE_DONE) {
			rc = catalog_fail(c, s, "write file", e);
			goto out;
		}
		sqlite3_reset(bst);
		catalog_bind_str(bst, 1, m->repo_dir);
		catalog_bind_str(bst, 2, catalog_file_blob(f));
		catalog_bind_str(bst, 3, f->sha256);
		sqlite3_bind_int64(bst, 4, (sqlite3_int64)f->size);
		sqlite3_bind_int(bst, 5, f->blob_adopted != 0);
		sqlite3_bind_int64(bst, 6, f->mtime_ns);
		sqlite3_bind_int64(bst, 7, f->verified_ms);
		s = sqlite3_step(bst);
		if (s != SQLITE_DONE) {
			rc = catalog_fail(c, s, "write blob", e);
			goto out;
		}
	}
out:
	sqlite3_finalize(st);
	sqlite3_finalize(fst);
	sqlite3_finalize(bst);
	return rc;
}

int catalog_model_put(struct catalog *c, const struct catalog_model *m,
		      struct catalog_removal *orphans, struct err *e)
{
	if (orphans)
		memset(orphans, 0, sizeof *orphans);
	int rc = check_model(m, e);
	if (rc)
		return rc;
	char *old_dir = NULL, *old_commit = NULL;
	struct old_files of = {0};
	struct catalog_removal r = {0};
	rc = catalog_begin_write(c, e);
	if (rc)
		return rc;
	struct err sub;
	int had = model_place(c, m->id, &old_dir, &old_commit, &sub);
	if (had != 0 && had != ERR_NOT_FOUND) {
		rc = err_set(e, had, "%s", err_msg(&sub));
		goto fail;
	}
	if (had == 0) {
		rc = old_files_read(c, m->id, &of, e);
		if (rc)
			goto fail;
	}
	rc = put_rows(c, m, wall_ms(), e);
	if (rc)
		goto fail;
	if (had == 0) {
		rc = compute_removal(c, old_dir, old_commit, &of, &r, e);
		if (rc)
			goto fail;
	}
	rc = catalog_commit(c, e);
	if (rc)
		goto fail;
	if (orphans)
		*orphans = r;
	else
		catalog_removal_cleanup(&r);
	goto out;
fail:
	catalog_rollback(c);
	catalog_removal_cleanup(&r);
out:
	free(old_dir);
	free(old_commit);
	old_files_free(&of);
	return rc;
}

int catalog_model_set_status(struct catalog *c, const char *id, enum catalog_status st_,
			     const char *error, int64_t if_updated_ms, struct err *e)
{
	if (st_ < CATALOG_DOWNLOADING || st_ > CATALOG_FAILED)
		return err_set(e, ERR_INVALID, "unknown model status %d", (int)st_);
	sqlite3_stmt *st;
	int rc = catalog_prepare(c,
				 "UPDATE models SET status = ?2, error = ?3,"
				 " updated_ms = max(?4, updated_ms + 1)"
				 " WHERE id = ?1 AND (?5 = 0 OR updated_ms = ?5)",
				 &st, e);
	if (rc)
		return rc;
	catalog_bind_str(st, 1, id);
	catalog_bind_str(st, 2, catalog_status_name(st_));
	catalog_bind_str(st, 3, error);
	sqlite3_bind_int64(st, 4, wall_ms());
	sqlite3_bind_int64(st, 5, if_updated_ms);
	int s = sqlite3_step(st);
	if (s != SQLITE_DONE) {
		rc = catalog_fail(c, s, "set status", e);
	} else if (sqlite3_changes(c->db) == 0) {
		struct catalog_model m;
		rc = catalog_model_get(c, id, &m, e);
		if (rc == 0)
			rc = err_set(e, ERR_CONFLICT, "model '%s' changed meanwhile", id);
		catalog_model_cleanup(&m);
	}
	sqlite3_finalize(st);
	return rc;
}

int catalog_model_delete(struct catalog *c, const char *id, struct catalog_removal *removal,
			 struct err *e)
{
	memset(removal, 0, sizeof *removal);
	int rc = catalog_check_id(id, e);
	if (rc)
		return rc;
	char *dir = NULL, *commit_sha = NULL;
	struct old_files of = {0};
	rc = catalog_begin_write(c, e);
	if (rc)
		return rc;
	rc = model_place(c, id, &dir, &commit_sha, e);
	if (!rc)
		rc = old_files_read(c, id, &of, e);
	if (rc)
		goto fail;
	rc = catalog_run_keys(c, "DELETE FROM models WHERE id = ?1", &id, 1, "delete model", e);
	if (!rc)
		rc = compute_removal(c, dir, commit_sha, &of, removal, e);
	if (!rc)
		rc = catalog_commit(c, e);
	if (!rc)
		goto out;
fail:
	catalog_rollback(c);
	catalog_removal_cleanup(removal);
out:
	free(dir);
	free(commit_sha);
	old_files_free(&of);
	return rc;
}
