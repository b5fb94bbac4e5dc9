/* Reading models: one by id or by ref, pages of the list, totals. */
#include "store/catalog.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/ref.h"
#include "core/util.h"
#include "store/catalog_internal.h"

/* Candidates named in an "ambiguous" message. */
#define FIND_SHOW_MAX 3

static const char *const source_names[] = {
    [CATALOG_SRC_HF] = "hf",
    [CATALOG_SRC_URL] = "url",
    [CATALOG_SRC_FILE] = "file",
    [CATALOG_SRC_OCI] = "oci",
};
static const char *const status_names[] = {
    [CATALOG_DOWNLOADING] = "downloading",
    [CATALOG_AVAILABLE] = "available",
    [CATALOG_FAILED] = "failed",
};
#define NAMES_LEN(a) (sizeof(a) / sizeof((a)[0]))

static const char *name_of(const char *const *names, size_t n, int v)
{
	return v > 0 && (size_t)v < n && names[v] ? names[v] : "unknown";
}

static int parse_name(const char *const *names, size_t n, const char *s, int *out)
{
	for (size_t i = 1; s && i < n; i++)
		if (names[i] && strcmp(names[i], s) == 0) {
			*out = (int)i;
			return 0;
		}
	return ERR_INVALID;
}

const char *catalog_source_name(enum catalog_source s)
{
	return name_of(source_names, NAMES_LEN(source_names), (int)s);
}

const char *catalog_status_name(enum catalog_status s)
{
	return name_of(status_names, NAMES_LEN(status_names), (int)s);
}

#define MODEL_COLS                                                                                 \
	"id, source, repo, revision, commit_sha, repo_dir, status, size, created_ms,"              \
	" updated_ms, error, gguf_architecture, gguf_name, gguf_quantization,"                     \
	" gguf_parameters, gguf_size_label, gguf_context_length"

static int read_model_row(struct catalog *c, sqlite3_stmt *st, struct catalog_model *m,
			  struct err *e)
{
	memset(m, 0, sizeof *m);
	m->id = catalog_col_str(st, 0);
	int v;
	if (parse_name(source_names, NAMES_LEN(source_names),
		       (const char *)sqlite3_column_text(st, 1), &v))
		return err_set(e, ERR_CORRUPT, "catalog %s: model %s has an unknown source",
			       c->path, m->id);
	m->source = (enum catalog_source)v;
	m->repo = catalog_col_str(st, 2);
	m->revision = catalog_col_str(st, 3);
	m->commit = catalog_col_str(st, 4);
	m->repo_dir = catalog_col_str(st, 5);
	if (parse_name(status_names, NAMES_LEN(status_names),
		       (const char *)sqlite3_column_text(st, 6), &v))
		return err_set(e, ERR_CORRUPT, "catalog %s: model %s has an unknown status",
			       c->path, m->id);
	m->status = (enum catalog_status)v;
	m->size = (uint64_t)sqlite3_column_int64(st, 7);
	m->created_ms = sqlite3_column_int64(st, 8);
	m->updated_ms = sqlite3_column_int64(st, 9);
	m->error = catalog_col_str(st, 10);
	catalog_col_buf(st, 11, m->gguf.architecture, sizeof m->gguf.architecture);
	catalog_col_buf(st, 12, m->gguf.name, sizeof m->gguf.name);
	catalog_col_buf(st, 13, m->gguf.quantization, sizeof m->gguf.quantization);
	m->gguf.parameters = (uint64_t)sqlite3_column_int64(st, 14);
	catalog_col_buf(st, 15, m->gguf.size_label, sizeof m->gguf.size_label);
	m->gguf.context_length = (uint64_t)sqlite3_column_int64(st, 16);
	return 0;
}

/* The columns add_file() reads, from files f of models m with the blob's record b. */
#define FILE_COLS                                                                                  \
	"f.path, f.sha256, f.size, f.blob, f.link_adopted, coalesce(b.adopted, 0),"                \
	" coalesce(b.mtime_ns, 0), coalesce(b.verified_ms, 0), coalesce(b.source, '')"
#define FILE_JOIN                                                                                  \
	" FROM files f JOIN models m ON m.id = f.model_id"                                         \
	" LEFT JOIN blobs b ON b.repo_dir = m.repo_dir AND b.name = f.blob"

static void add_file(struct catalog_model *m, sqlite3_stmt *st, int col)
{
	if ((m->nfiles & (m->nfiles - 1)) == 0)
		m->files = xrealloc(m->files, (m->nfiles ? m->nfiles * 2 : 1) * sizeof *m->files);
	struct catalog_file *f = &m->files[m->nfiles++];
	memset(f, 0, sizeof *f);
	f->path = catalog_col_str(st, col);
	catalog_col_buf(st, col + 1, f->sha256, sizeof f->sha256);
	f->size = (uint64_t)sqlite3_column_int64(st, col + 2);
	catalog_col_buf(st, col + 3, f->blob, sizeof f->blob);
	/* The sha256 name is implied: blob stays "" for it, as callers write it. */
	if (strcmp(f->blob, f->sha256) == 0)
		f->blob[0] = 0;
	f->link_adopted = sqlite3_column_int(st, col + 4);
	f->blob_adopted = sqlite3_column_int(st, col + 5);
	f->mtime_ns = sqlite3_column_int64(st, col + 6);
	f->verified_ms = sqlite3_column_int64(st, col + 7);
	catalog_col_buf(st, col + 8, f->source, sizeof f->source);
}

static int get_in_txn(struct catalog *c, const char *id, struct catalog_model *out, struct err *e)
{
	sqlite3_stmt *st;
	int rc = catalog_row(c, "SELECT " MODEL_COLS " FROM models WHERE id = ?1", &id, 1, &st,
			     "read model", e);
	if (rc == 1)
		rc = read_model_row(c, st, out, e);
	else if (rc == 0)
		rc = err_set(e, ERR_NOT_FOUND, "model '%s' is not in the catalog", id);
	sqlite3_finalize(st);
	if (rc)
		goto fail;
	rc = catalog_prepare_keys(
	    c, "SELECT " FILE_COLS FILE_JOIN " WHERE f.model_id = ?1 ORDER BY f.idx", &id, 1, &st,
	    e);
	int row = rc ? rc : 1;
	while (row == 1 && (row = catalog_step(c, st, "read files", e)) == 1)
		add_file(out, st, 0);
	rc = row;
	sqlite3_finalize(st);
	if (rc)
		goto fail;
	return 0;
fail:
	catalog_model_cleanup(out);
	return rc;
}

int catalog_model_get(struct catalog *c, const char *id, struct catalog_model *out, struct err *e)
{
	memset(out, 0, sizeof *out);
	int rc = catalog_check_id(id, e);
	if (rc)
		return rc;
	/* One read transaction, so the model and its files are one snapshot. */
	rc = catalog_exec(c, "BEGIN", "begin", e);
	if (rc)
		return rc;
	rc = get_in_txn(c, id, out, e);
	catalog_rollback(c);
	return rc;
}

int catalog_model_find(struct catalog *c, const char *query, struct catalog_model *out,
		       struct err *e)
{
	memset(out, 0, sizeof *out);
	if (!query || !query[0])
		return err_set(e, ERR_INVALID, "model: empty name");
	if (strnlen(query, CATALOG_ID_MAX + 1) > CATALOG_ID_MAX)
		return err_set(e, ERR_INVALID, "model '%.80s...': too long", query);
	int rc = catalog_exec(c, "BEGIN", "begin", e);
	if (rc)
		return rc;
	struct err sub;
	rc = get_in_txn(c, query, out, &sub);
	if (rc != ERR_NOT_FOUND) {
		if (rc)
			err_set(e, rc, "%s", err_msg(&sub));
		goto out;
	}
	sqlite3_stmt *st;
	rc = catalog_prepare(c, "SELECT id FROM models ORDER BY id", &st, e);
	if (rc)
		goto out;
	size_t matches = 0;
	char *first = NULL;
	char shown[FIND_SHOW_MAX * 200] = "";
	size_t off = 0;
	int s;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(st, 0);
		if (!id || !ref_matches_id(query, id))
			continue;
		if (matches++ == 0)
			first = xstrdup(id);
		if (matches <= FIND_SHOW_MAX && off < sizeof shown)
			off += (size_t)snprintf(shown + off, sizeof shown - off, "%s%.190s",
						matches > 1 ? ", " : "", id);
	}
	if (s != SQLITE_DONE)
		rc = catalog_fail(c, s, "search models", e);
	sqlite3_finalize(st);
	if (!rc && matches == 0)
		rc = err_set(e, ERR_NOT_FOUND, "no model in the catalog matches '%.200s'", query);
	else if (!rc && matches > 1)
		rc = err_set(e, ERR_CONFLICT, "'%.100s' is ambiguous: %zu models match (%s%s)",
			     query, matches, shown, matches > FIND_SHOW_MAX ? ", ..." : "");
	else if (!rc)
		rc = get_in_txn(c, first, out, e);
	free(first);
out:
	catalog_rollback(c);
	return rc;
}

int catalog_model_marks(struct catalog *c, size_t stride, char ***marks, size_t *n_marks,
			size_t *total, struct err *e)
{
	*marks = NULL;
	*n_marks = *total = 0;
	char **m = NULL;
	size_t cnt = 0, cap = 0, seen = 0;
	sqlite3_stmt *st = NULL;
	int rc = catalog_prepare(c, "SELECT id FROM models ORDER BY id", &st, e);
	if (rc)
		return rc;
	int s;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		if (seen++ % stride)
			continue;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 64;
			m = xrealloc(m, cap * sizeof(*m));
		}
		m[cnt++] = xstrdup((const char *)sqlite3_column_text(st, 0));
	}
	if (s != SQLITE_DONE) {
		rc = catalog_fail(c, s, "list model ids", e);
		catalog_model_marks_free(m, cnt);
	} else {
		*marks = m;
		*n_marks = cnt;
		*total = seen;
	}
	sqlite3_finalize(st);
	return rc;
}

void catalog_model_marks_free(char **marks, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(marks[i]);
	free(marks);
}

int catalog_model_list(struct catalog *c, const char *from, size_t offset, size_t limit,
		       struct catalog_model **out, size_t *n, struct err *e)
{
	*out = NULL;
	*n = 0;
	sqlite3_int64 lim = limit ? (sqlite3_int64)limit : -1;
	struct catalog_model *list = NULL;
	size_t cnt = 0, cap = 0;
	sqlite3_stmt *st = NULL;
	int rc = catalog_exec(c, "BEGIN", "begin", e);
	if (rc)
		return rc;
	rc = catalog_prepare(
	    c,
	    from ? "SELECT " MODEL_COLS " FROM models WHERE id >= ?3 ORDER BY id LIMIT ?1 OFFSET ?2"
		 : "SELECT " MODEL_COLS " FROM models ORDER BY id LIMIT ?1 OFFSET ?2",
	    &st, e);
	if (rc)
		goto fail;
	sqlite3_bind_int64(st, 1, lim);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)offset);
	if (from)
		sqlite3_bind_text(st, 3, from, -1, SQLITE_STATIC);
	int s;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? cap * 2 : 64;
			list = xrealloc(list, cap * sizeof *list);
		}
		rc = read_model_row(c, st, &list[cnt], e);
		cnt++;
		if (rc)
			goto fail;
	}
	if (s != SQLITE_DONE) {
		rc = catalog_fail(c, s, "list models", e);
		goto fail;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (cnt == 0)
		goto done;
	/*
	 * All files of the page in one query, in the same id order: a merge.
	 * Within this transaction the page is exactly the models from its first
	 * id to its last, so a range of the files' primary key finds their
	 * files; a join with the LIMIT/OFFSET subquery instead made SQLite scan
	 * every file row of the catalog for each page.
	 */
	rc = catalog_prepare(
	    c,
	    "SELECT f.model_id, " FILE_COLS FILE_JOIN
	    " WHERE f.model_id >= ?1 AND f.model_id <= ?2 ORDER BY f.model_id, f.idx",
	    &st, e);
	if (rc)
		goto fail;
	sqlite3_bind_text(st, 1, list[0].id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, list[cnt - 1].id, -1, SQLITE_STATIC);
	size_t i = 0;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		const char *mid = (const char *)sqlite3_column_text(st, 0);
		while (i < cnt && strcmp(list[i].id, mid) != 0)
			i++;
		if (i == cnt) {
			rc =
			    err_set(e, ERR_INTERNAL, "catalog %s: file rows out of order", c->path);
			goto fail;
		}
		add_file(&list[i], st, 1);
	}
	if (s != SQLITE_DONE) {
		rc = catalog_fail(c, s, "list files", e);
		goto fail;
	}
	sqlite3_finalize(st);
done:
	catalog_rollback(c);
	*out = list;
	*n = cnt;
	return 0;
fail:
	sqlite3_finalize(st);
	catalog_rollback(c);
	catalog_model_list_free(list, cnt);
	return rc;
}

int catalog_model_totals(struct catalog *c, size_t *n, uint64_t *bytes, struct err *e)
{
	*n = 0;
	if (bytes)
		*bytes = 0;
	/* SQLite visits every model row for this (O(N)), but copies none out. */
	sqlite3_stmt *st;
	int rc = catalog_row(c, "SELECT COUNT(*), coalesce(sum(size), 0) FROM models", NULL, 0, &st,
			     "count models", e);
	if (rc == 1) {
		*n = (size_t)sqlite3_column_int64(st, 0);
		if (bytes)
			*bytes = (uint64_t)sqlite3_column_int64(st, 1);
		rc = 0;
	} else if (rc == 0) {
		rc = catalog_fail(c, SQLITE_DONE, "count models", e);
	}
	sqlite3_finalize(st);
	return rc;
}

int catalog_data_version(struct catalog *c, uint64_t *v, struct err *e)
{
	int64_t x = 0;
	int rc = catalog_query_int(c, "PRAGMA data_version", NULL, 0, &x, "data_version", e);
	*v = (uint64_t)x;
	return rc;
}
