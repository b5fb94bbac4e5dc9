#include "store/catalog.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/log.h"
#include "core/parse.h"
#include "core/ref.h"
#include "core/sha256.h"
#include "core/util.h"
#include "store/gguf.h"
#include "store/layout.h"

struct catalog {
	sqlite3 *db;
	char *path;
};

/* Longest model or job id we store. */
#define CATALOG_ID_MAX 2048
/* Candidates named in an "ambiguous" message. */
#define FIND_SHOW_MAX 3

/*
 * Schema migrations: entry i takes a catalog from user_version i to i + 1.
 * Never edit an entry that has shipped; append a new one.
 */
static const char *const migrations[CATALOG_SCHEMA_VERSION] = {
    /* 0 -> 1: models, their files, blobs, jobs. */
    "CREATE TABLE models("
    " id TEXT PRIMARY KEY NOT NULL,"
    " source TEXT NOT NULL CHECK(source IN ('hf','url','file')),"
    " repo TEXT NOT NULL,"
    " revision TEXT NOT NULL DEFAULT '',"
    " commit_sha TEXT NOT NULL DEFAULT '',"
    " repo_dir TEXT NOT NULL,"
    " status TEXT NOT NULL CHECK(status IN ('downloading','available','failed')),"
    " size INTEGER NOT NULL DEFAULT 0,"
    " created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL,"
    " error TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE files("
    " model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,"
    " idx INTEGER NOT NULL,"
    " path TEXT NOT NULL,"
    " sha256 TEXT NOT NULL,"
    " size INTEGER NOT NULL,"
    " PRIMARY KEY(model_id, idx),"
    " UNIQUE(model_id, path));"
    "CREATE INDEX files_sha256 ON files(sha256);"
    "CREATE TABLE blobs("
    " sha256 TEXT NOT NULL,"
    " repo_dir TEXT NOT NULL,"
    " size INTEGER NOT NULL,"
    " PRIMARY KEY(sha256, repo_dir));"
    "CREATE TABLE jobs("
    " id TEXT PRIMARY KEY NOT NULL,"
    " operation TEXT NOT NULL,"
    " model_ref TEXT NOT NULL DEFAULT '',"
    " state TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL,"
    " progress TEXT NOT NULL DEFAULT '',"
    " error TEXT NOT NULL DEFAULT '',"
    " result_id TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX jobs_state ON jobs(state, updated_ms);",
    /* 1 -> 2: GGUF facts of a model; resume state of partial blobs. */
    "ALTER TABLE models ADD COLUMN gguf_architecture TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE models ADD COLUMN gguf_name TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE models ADD COLUMN gguf_quantization TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE models ADD COLUMN gguf_parameters INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE models ADD COLUMN gguf_size_label TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE models ADD COLUMN gguf_context_length INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX models_repo_dir ON models(repo_dir, commit_sha);"
    "CREATE TABLE partials("
    " repo_dir TEXT NOT NULL,"
    " sha256 TEXT NOT NULL,"
    " total_size INTEGER NOT NULL,"
    " done_bytes INTEGER NOT NULL,"
    " ranges BLOB NOT NULL,"
    " updated_ms INTEGER NOT NULL,"
    " PRIMARY KEY(repo_dir, sha256));",
    /*
     * 2 -> 3: which files another program made (a snapshot link or blob
     * rbee-hive adopted and must never remove), the blob name actually used
     * (another program's may be a git sha1), and when each blob was last
     * found right, at which size and mtime, so it is hashed again only when
     * it changed. Blobs are now keyed by their name in blobs/.
     */
    "ALTER TABLE files ADD COLUMN blob TEXT NOT NULL DEFAULT '';"
    "UPDATE files SET blob = sha256;"
    "ALTER TABLE files ADD COLUMN link_adopted INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX files_blob ON files(blob);"
    "CREATE TABLE blobs_v3("
    " repo_dir TEXT NOT NULL,"
    " name TEXT NOT NULL,"
    " sha256 TEXT NOT NULL,"
    " size INTEGER NOT NULL,"
    " adopted INTEGER NOT NULL DEFAULT 0,"
    " mtime_ns INTEGER NOT NULL DEFAULT 0,"
    " verified_ms INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY(repo_dir, name));"
    "INSERT INTO blobs_v3(repo_dir, name, sha256, size)"
    " SELECT repo_dir, sha256, sha256, size FROM blobs;"
    "DROP TABLE blobs;"
    "ALTER TABLE blobs_v3 RENAME TO blobs;"
    "CREATE INDEX blobs_sha256 ON blobs(sha256);",
};

static const char *const source_names[] = {
    [CATALOG_SRC_HF] = "hf",
    [CATALOG_SRC_URL] = "url",
    [CATALOG_SRC_FILE] = "file",
};
static const char *const status_names[] = {
    [CATALOG_DOWNLOADING] = "downloading",
    [CATALOG_AVAILABLE] = "available",
    [CATALOG_FAILED] = "failed",
};
static const char *const job_state_names[] = {
    [CATALOG_JOB_QUEUED] = "queued",	   [CATALOG_JOB_RUNNING] = "running",
    [CATALOG_JOB_SUCCEEDED] = "succeeded", [CATALOG_JOB_FAILED] = "failed",
    [CATALOG_JOB_CANCELLED] = "cancelled", [CATALOG_JOB_INTERRUPTED] = "interrupted",
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

int catalog_status_parse(const char *s, enum catalog_status *out)
{
	int v;
	if (parse_name(status_names, NAMES_LEN(status_names), s, &v))
		return ERR_INVALID;
	*out = (enum catalog_status)v;
	return 0;
}

const char *catalog_job_state_name(enum catalog_job_state s)
{
	return name_of(job_state_names, NAMES_LEN(job_state_names), (int)s);
}

int catalog_job_state_parse(const char *s, enum catalog_job_state *out)
{
	int v;
	if (parse_name(job_state_names, NAMES_LEN(job_state_names), s, &v))
		return ERR_INVALID;
	*out = (enum catalog_job_state)v;
	return 0;
}

int catalog_job_state_final(enum catalog_job_state s)
{
	return s == CATALOG_JOB_SUCCEEDED || s == CATALOG_JOB_FAILED ||
	       s == CATALOG_JOB_CANCELLED || s == CATALOG_JOB_INTERRUPTED;
}

/* Maps a SQLite result to our codes and says which catalog and step failed. */
static int db_fail(struct catalog *c, int src, const char *what, struct err *e)
{
	int code;
	switch (src & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED: code = ERR_RETRY; break;
	case SQLITE_FULL: code = ERR_NOSPACE; break;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB: code = ERR_CORRUPT; break;
	case SQLITE_CONSTRAINT: code = ERR_CONFLICT; break;
	case SQLITE_NOMEM: code = ERR_NOMEM; break;
	default: code = ERR_IO;
	}
	return err_set(e, code, "catalog %s: %s: %s", c->path, what,
		       c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(src));
}

static int exec(struct catalog *c, const char *sql, const char *what, struct err *e)
{
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : db_fail(c, rc, what, e);
}

static int prepare(struct catalog *c, const char *sql, sqlite3_stmt **st, struct err *e)
{
	int rc = sqlite3_prepare_v2(c->db, sql, -1, st, NULL);
	return rc == SQLITE_OK ? 0 : db_fail(c, rc, "prepare", e);
}

static int begin_write(struct catalog *c, struct err *e)
{
	return exec(c, "BEGIN IMMEDIATE", "begin", e);
}

static int commit(struct catalog *c, struct err *e)
{
	return exec(c, "COMMIT", "commit", e);
}

static void rollback(struct catalog *c)
{
	if (!sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

static char *col_str(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return xstrdup(t ? (const char *)t : "");
}

static void col_buf(sqlite3_stmt *st, int i, char *buf, size_t size)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	snprintf(buf, size, "%s", t ? (const char *)t : "");
}

static void bind_str(sqlite3_stmt *st, int i, const char *s)
{
	sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_TRANSIENT);
}

static int user_version(struct catalog *c, int *v, struct err *e)
{
	sqlite3_stmt *st;
	int rc = prepare(c, "PRAGMA user_version", &st, e);
	if (rc)
		return rc;
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW)
		*v = sqlite3_column_int(st, 0);
	else
		rc = db_fail(c, s, "read schema version", e);
	sqlite3_finalize(st);
	return rc;
}

static int migrate(struct catalog *c, struct err *e)
{
	int v;
	int rc = user_version(c, &v, e);
	if (rc)
		return rc;
	if (v > CATALOG_SCHEMA_VERSION)
		return err_set(e, ERR_CONFLICT,
			       "catalog %s has schema version %d, newer than this rbee-hive "
			       "understands (%d)",
			       c->path, v, CATALOG_SCHEMA_VERSION);
	while (v < CATALOG_SCHEMA_VERSION) {
		/* Re-read inside the write lock: another process may have migrated. */
		rc = begin_write(c, e);
		if (!rc)
			rc = user_version(c, &v, e);
		if (!rc && v < CATALOG_SCHEMA_VERSION) {
			char pragma[64];
			snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", v + 1);
			rc = exec(c, migrations[v], "migrate schema", e);
			if (!rc)
				rc = exec(c, pragma, "set schema version", e);
			if (!rc)
				log_msg(v ? LOG_INFO : LOG_DEBUG, NULL,
					"catalog %s: schema migrated from version %d to %d",
					c->path, v, v + 1);
		}
		if (!rc)
			rc = commit(c, e);
		if (rc) {
			rollback(c);
			return rc;
		}
		rc = user_version(c, &v, e);
		if (rc)
			return rc;
	}
	return 0;
}

int catalog_open(const char *db_path, struct catalog **out, struct err *e)
{
	*out = NULL;
	if (!db_path || !db_path[0])
		return err_set(e, ERR_INVALID, "catalog: empty path");
	struct catalog *c = xcalloc(1, sizeof *c);
	c->path = xstrdup(db_path);
	int rc =
	    sqlite3_open_v2(db_path, &c->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		rc = db_fail(c, rc, "open", e);
		goto fail;
	}
	sqlite3_extended_result_codes(c->db, 1);
	sqlite3_busy_timeout(c->db, CATALOG_BUSY_TIMEOUT_MS);
	/* WAL: readers never block the writer. synchronous=FULL: a committed
	 * resume state survives a power cut, not just a crash. */
	sqlite3_stmt *st;
	rc = prepare(c, "PRAGMA journal_mode=WAL", &st, e);
	if (rc)
		goto fail;
	int s = sqlite3_step(st);
	if (s != SQLITE_ROW) {
		rc = db_fail(c, s, "enable WAL", e);
		sqlite3_finalize(st);
		goto fail;
	}
	sqlite3_finalize(st);
	rc = exec(c, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", "set pragmas", e);
	if (!rc)
		rc = migrate(c, e);
	if (rc)
		goto fail;
	*out = c;
	return 0;
fail:
	catalog_close(c);
	return rc;
}

void catalog_close(struct catalog *c)
{
	if (!c)
		return;
	sqlite3_close(c->db);
	free(c->path);
	free(c);
}

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

/* A name in blobs/: a sha256, or the git sha1 another program named it by. */
static int check_blob_name(const char *s)
{
	size_t n = s ? strnlen(s, CATALOG_BLOB_NAME_MAX + 1) : 0;
	return (n == 64 || n == 40) && is_hex_lower(s, n);
}

const char *catalog_file_blob(const struct catalog_file *f)
{
	return f->blob[0] ? f->blob : f->sha256;
}

static int check_id(const char *id, struct err *e)
{
	if (!id || !id[0])
		return err_set(e, ERR_INVALID, "model id: empty");
	if (strnlen(id, CATALOG_ID_MAX + 1) > CATALOG_ID_MAX)
		return err_set(e, ERR_INVALID, "model id '%.80s...': too long", id);
	return 0;
}

static int check_model(const struct catalog_model *m, struct err *e)
{
	int rc = check_id(m->id, e);
	if (rc)
		return rc;
	if (!m->repo || !m->repo[0] || strnlen(m->repo, CAP_URL_LEN + 1) > CAP_URL_LEN)
		return err_set(e, ERR_INVALID, "model %s: repo missing or too long", m->id);
	if (m->source < CATALOG_SRC_HF || m->source > CATALOG_SRC_FILE)
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
		if (f->blob[0] && !check_blob_name(f->blob))
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
	int rc = prepare(c,
			 "SELECT 1 FROM files f JOIN models m ON m.id = f.model_id"
			 " WHERE m.repo_dir = ?1 AND m.commit_sha = ?2 AND f.path = ?3 LIMIT 1",
			 &pst, e);
	if (!rc)
		rc = prepare(c,
			     "SELECT 1 FROM files f JOIN models m ON m.id = f.model_id"
			     " WHERE f.blob = ?2 AND m.repo_dir = ?1 LIMIT 1",
			     &bst, e);
	if (!rc)
		rc = prepare(c, "SELECT adopted FROM blobs WHERE repo_dir = ?1 AND name = ?2", &ast,
			     e);
	if (!rc)
		rc = prepare(c, "DELETE FROM blobs WHERE repo_dir = ?1 AND name = ?2", &del, e);
	if (rc)
		goto out;
	r->repo_dir = xstrdup(repo_dir);
	r->commit = xstrdup(commit_sha);
	char **paths = o->paths, **blobs = o->blobs;
	for (size_t i = 0; i < o->n && !rc; i++) {
		sqlite3_reset(pst);
		bind_str(pst, 1, repo_dir);
		bind_str(pst, 2, commit_sha);
		bind_str(pst, 3, paths[i]);
		int s = sqlite3_step(pst);
		if (s == SQLITE_DONE && !o->link_adopted[i] &&
		    !strv_has(r->paths, r->npaths, paths[i]))
			strv_push(&r->paths, &r->npaths, paths[i]);
		else if (s != SQLITE_ROW && s != SQLITE_DONE)
			rc = db_fail(c, s, "check snapshot path", e);
		if (rc || strv_has(r->blobs, r->nblobs, blobs[i]))
			continue;
		sqlite3_reset(bst);
		bind_str(bst, 1, repo_dir);
		bind_str(bst, 2, blobs[i]);
		s = sqlite3_step(bst);
		if (s == SQLITE_DONE) {
			/* Unused: removed when rbee-hive made it; a blob without a record stays
			 * too. */
			sqlite3_reset(ast);
			bind_str(ast, 1, repo_dir);
			bind_str(ast, 2, blobs[i]);
			s = sqlite3_step(ast);
			if (s == SQLITE_ROW && sqlite3_column_int(ast, 0) == 0)
				strv_push(&r->blobs, &r->nblobs, blobs[i]);
			else if (s != SQLITE_ROW && s != SQLITE_DONE)
				rc = db_fail(c, s, "read blob", e);
			sqlite3_reset(del);
			bind_str(del, 1, repo_dir);
			bind_str(del, 2, blobs[i]);
			s = sqlite3_step(del);
			if (s != SQLITE_DONE)
				rc = db_fail(c, s, "delete blob row", e);
		} else if (s != SQLITE_ROW) {
			rc = db_fail(c, s, "count blob users", e);
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
	int rc = prepare(
	    c, "SELECT path, blob, link_adopted FROM files WHERE model_id = ?1 ORDER BY idx", &st,
	    e);
	if (rc)
		return rc;
	bind_str(st, 1, id);
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
		rc = db_fail(c, s, "read files", e);
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
	int rc = prepare(c, "SELECT repo_dir, commit_sha FROM models WHERE id = ?1", &st, e);
	if (rc)
		return rc;
	bind_str(st, 1, id);
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW) {
		*repo_dir = col_str(st, 0);
		*commit_sha = col_str(st, 1);
	} else if (s == SQLITE_DONE) {
		rc = err_set(e, ERR_NOT_FOUND, "model '%s' is not in the catalog", id);
	} else {
		rc = db_fail(c, s, "read model", e);
	}
	sqlite3_finalize(st);
	return rc;
}

static int put_rows(struct catalog *c, const struct catalog_model *m, int64_t now, struct err *e)
{
	sqlite3_stmt *st = NULL, *fst = NULL, *bst = NULL;
	int rc = prepare(
	    c,
	    "INSERT INTO models(id, source, repo, revision, commit_sha, repo_dir, status, size,"
	    " created_ms, updated_ms, error, gguf_architecture, gguf_name, gguf_quantization,"
	    " gguf_parameters, gguf_size_label, gguf_context_length)"
	    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
	    " ON CONFLICT(id) DO UPDATE SET source = excluded.source, repo = excluded.repo,"
	    " revision = excluded.revision, commit_sha = excluded.commit_sha,"
	    " repo_dir = excluded.repo_dir, status = excluded.status, size = excluded.size,"
	    " updated_ms = max(excluded.updated_ms, models.updated_ms + 1), error = excluded.error,"
	    " gguf_architecture = excluded.gguf_architecture, gguf_name = excluded.gguf_name,"
	    " gguf_quantization = excluded.gguf_quantization,"
	    " gguf_parameters = excluded.gguf_parameters,"
	    " gguf_size_label = excluded.gguf_size_label,"
	    " gguf_context_length = excluded.gguf_context_length",
	    &st, e);
	if (!rc)
		rc = prepare(
		    c,
		    "INSERT INTO files(model_id, idx, path, sha256, size, blob, link_adopted)"
		    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
		    &fst, e);
	/* Who made a blob does not change; a newer verification replaces an older one. */
	if (!rc)
		rc = prepare(
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
	bind_str(st, 1, m->id);
	bind_str(st, 2, catalog_source_name(m->source));
	bind_str(st, 3, m->repo);
	bind_str(st, 4, m->revision);
	bind_str(st, 5, m->commit);
	bind_str(st, 6, m->repo_dir);
	bind_str(st, 7, catalog_status_name(m->status));
	sqlite3_bind_int64(st, 8, (sqlite3_int64)size);
	sqlite3_bind_int64(st, 9, now);
	bind_str(st, 10, m->error);
	bind_str(st, 11, m->gguf.architecture);
	bind_str(st, 12, m->gguf.name);
	bind_str(st, 13, m->gguf.quantization);
	sqlite3_bind_int64(st, 14, (sqlite3_int64)m->gguf.parameters);
	bind_str(st, 15, m->gguf.size_label);
	sqlite3_bind_int64(st, 16, (sqlite3_int64)m->gguf.context_length);
	int s = sqlite3_step(st);
	if (s != SQLITE_DONE) {
		rc = db_fail(c, s, "write model", e);
		goto out;
	}
	sqlite3_stmt *del;
	rc = prepare(c, "DELETE FROM files WHERE model_id = ?1", &del, e);
	if (rc)
		goto out;
	bind_str(del, 1, m->id);
	s = sqlite3_step(del);
	sqlite3_finalize(del);
	if (s != SQLITE_DONE) {
		rc = db_fail(c, s, "replace files", e);
		goto out;
	}
	for (size_t i = 0; i < m->nfiles; i++) {
		const struct catalog_file *f = &m->files[i];
		sqlite3_reset(fst);
		bind_str(fst, 1, m->id);
		sqlite3_bind_int64(fst, 2, (sqlite3_int64)i);
		bind_str(fst, 3, f->path);
		bind_str(fst, 4, f->sha256);
		sqlite3_bind_int64(fst, 5, (sqlite3_int64)f->size);
		bind_str(fst, 6, catalog_file_blob(f));
		sqlite3_bind_int(fst, 7, f->link_adopted != 0);
		s = sqlite3_step(fst);
		if ((s & 0xff) == SQLITE_CONSTRAINT) {
			rc = err_set(e, ERR_INVALID, "model %s: file %s is listed twice", m->id,
				     f->path);
			goto out;
		}
		if (s != SQLITE_DONE) {
			rc = db_fail(c, s, "write file", e);
			goto out;
		}
		sqlite3_reset(bst);
		bind_str(bst, 1, m->repo_dir);
		bind_str(bst, 2, catalog_file_blob(f));
		bind_str(bst, 3, f->sha256);
		sqlite3_bind_int64(bst, 4, (sqlite3_int64)f->size);
		sqlite3_bind_int(bst, 5, f->blob_adopted != 0);
		sqlite3_bind_int64(bst, 6, f->mtime_ns);
		sqlite3_bind_int64(bst, 7, f->verified_ms);
		s = sqlite3_step(bst);
		if (s != SQLITE_DONE) {
			rc = db_fail(c, s, "write blob", e);
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
	rc = begin_write(c, e);
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
	rc = commit(c, e);
	if (rc)
		goto fail;
	if (orphans)
		*orphans = r;
	else
		catalog_removal_cleanup(&r);
	goto out;
fail:
	rollback(c);
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
	int rc = prepare(c,
			 "UPDATE models SET status = ?2, error = ?3,"
			 " updated_ms = max(?4, updated_ms + 1)"
			 " WHERE id = ?1 AND (?5 = 0 OR updated_ms = ?5)",
			 &st, e);
	if (rc)
		return rc;
	bind_str(st, 1, id);
	bind_str(st, 2, catalog_status_name(st_));
	bind_str(st, 3, error);
	sqlite3_bind_int64(st, 4, wall_ms());
	sqlite3_bind_int64(st, 5, if_updated_ms);
	int s = sqlite3_step(st);
	if (s != SQLITE_DONE) {
		rc = db_fail(c, s, "set status", e);
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

#define MODEL_COLS                                                                                 \
	"id, source, repo, revision, commit_sha, repo_dir, status, size, created_ms,"              \
	" updated_ms, error, gguf_architecture, gguf_name, gguf_quantization,"                     \
	" gguf_parameters, gguf_size_label, gguf_context_length"

static int read_model_row(struct catalog *c, sqlite3_stmt *st, struct catalog_model *m,
			  struct err *e)
{
	memset(m, 0, sizeof *m);
	m->id = col_str(st, 0);
	int v;
	if (parse_name(source_names, NAMES_LEN(source_names),
		       (const char *)sqlite3_column_text(st, 1), &v))
		return err_set(e, ERR_CORRUPT, "catalog %s: model %s has an unknown source",
			       c->path, m->id);
	m->source = (enum catalog_source)v;
	m->repo = col_str(st, 2);
	m->revision = col_str(st, 3);
	m->commit = col_str(st, 4);
	m->repo_dir = col_str(st, 5);
	if (parse_name(status_names, NAMES_LEN(status_names),
		       (const char *)sqlite3_column_text(st, 6), &v))
		return err_set(e, ERR_CORRUPT, "catalog %s: model %s has an unknown status",
			       c->path, m->id);
	m->status = (enum catalog_status)v;
	m->size = (uint64_t)sqlite3_column_int64(st, 7);
	m->created_ms = sqlite3_column_int64(st, 8);
	m->updated_ms = sqlite3_column_int64(st, 9);
	m->error = col_str(st, 10);
	col_buf(st, 11, m->gguf.architecture, sizeof m->gguf.architecture);
	col_buf(st, 12, m->gguf.name, sizeof m->gguf.name);
	col_buf(st, 13, m->gguf.quantization, sizeof m->gguf.quantization);
	m->gguf.parameters = (uint64_t)sqlite3_column_int64(st, 14);
	col_buf(st, 15, m->gguf.size_label, sizeof m->gguf.size_label);
	m->gguf.context_length = (uint64_t)sqlite3_column_int64(st, 16);
	return 0;
}

/* The columns add_file() reads, from files f of models m with the blob's record b. */
#define FILE_COLS                                                                                  \
	"f.path, f.sha256, f.size, f.blob, f.link_adopted, coalesce(b.adopted, 0),"                \
	" coalesce(b.mtime_ns, 0), coalesce(b.verified_ms, 0)"
#define FILE_JOIN                                                                                  \
	" FROM files f JOIN models m ON m.id = f.model_id"                                         \
	" LEFT JOIN blobs b ON b.repo_dir = m.repo_dir AND b.name = f.blob"

static void add_file(struct catalog_model *m, sqlite3_stmt *st, int col)
{
	if ((m->nfiles & (m->nfiles - 1)) == 0)
		m->files = xrealloc(m->files, (m->nfiles ? m->nfiles * 2 : 1) * sizeof *m->files);
	struct catalog_file *f = &m->files[m->nfiles++];
	memset(f, 0, sizeof *f);
	f->path = col_str(st, col);
	col_buf(st, col + 1, f->sha256, sizeof f->sha256);
	f->size = (uint64_t)sqlite3_column_int64(st, col + 2);
	col_buf(st, col + 3, f->blob, sizeof f->blob);
	/* The sha256 name is implied: blob stays "" for it, as callers write it. */
	if (strcmp(f->blob, f->sha256) == 0)
		f->blob[0] = 0;
	f->link_adopted = sqlite3_column_int(st, col + 4);
	f->blob_adopted = sqlite3_column_int(st, col + 5);
	f->mtime_ns = sqlite3_column_int64(st, col + 6);
	f->verified_ms = sqlite3_column_int64(st, col + 7);
}

static int get_in_txn(struct catalog *c, const char *id, struct catalog_model *out, struct err *e)
{
	sqlite3_stmt *st;
	int rc = prepare(c, "SELECT " MODEL_COLS " FROM models WHERE id = ?1", &st, e);
	if (rc)
		return rc;
	bind_str(st, 1, id);
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW)
		rc = read_model_row(c, st, out, e);
	else if (s == SQLITE_DONE)
		rc = err_set(e, ERR_NOT_FOUND, "model '%s' is not in the catalog", id);
	else
		rc = db_fail(c, s, "read model", e);
	sqlite3_finalize(st);
	if (rc)
		goto fail;
	rc = prepare(c, "SELECT " FILE_COLS FILE_JOIN " WHERE f.model_id = ?1 ORDER BY f.idx", &st,
		     e);
	if (rc)
		goto fail;
	bind_str(st, 1, id);
	while ((s = sqlite3_step(st)) == SQLITE_ROW)
		add_file(out, st, 0);
	if (s != SQLITE_DONE)
		rc = db_fail(c, s, "read files", e);
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
	int rc = check_id(id, e);
	if (rc)
		return rc;
	/* One read transaction, so the model and its files are one snapshot. */
	rc = exec(c, "BEGIN", "begin", e);
	if (rc)
		return rc;
	rc = get_in_txn(c, id, out, e);
	rollback(c);
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
	int rc = exec(c, "BEGIN", "begin", e);
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
	rc = prepare(c, "SELECT id FROM models ORDER BY id", &st, e);
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
		rc = db_fail(c, s, "search models", e);
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
	rollback(c);
	return rc;
}

int catalog_model_list(struct catalog *c, size_t offset, size_t limit, struct catalog_model **out,
		       size_t *n, struct err *e)
{
	*out = NULL;
	*n = 0;
	sqlite3_int64 lim = limit ? (sqlite3_int64)limit : -1;
	struct catalog_model *list = NULL;
	size_t cnt = 0, cap = 0;
	sqlite3_stmt *st = NULL;
	int rc = exec(c, "BEGIN", "begin", e);
	if (rc)
		return rc;
	rc = prepare(c, "SELECT " MODEL_COLS " FROM models ORDER BY id LIMIT ?1 OFFSET ?2", &st, e);
	if (rc)
		goto fail;
	sqlite3_bind_int64(st, 1, lim);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)offset);
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
		rc = db_fail(c, s, "list models", e);
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
	rc = prepare(c,
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
		rc = db_fail(c, s, "list files", e);
		goto fail;
	}
	sqlite3_finalize(st);
done:
	rollback(c);
	*out = list;
	*n = cnt;
	return 0;
fail:
	sqlite3_finalize(st);
	rollback(c);
	catalog_model_list_free(list, cnt);
	return rc;
}

int catalog_model_count(struct catalog *c, size_t *n, struct err *e)
{
	sqlite3_stmt *st;
	int rc = prepare(c, "SELECT COUNT(*) FROM models", &st, e);
	if (rc)
		return rc;
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW)
		*n = (size_t)sqlite3_column_int64(st, 0);
	else
		rc = db_fail(c, s, "count models", e);
	sqlite3_finalize(st);
	return rc;
}

int catalog_data_version(struct catalog *c, uint64_t *v, struct err *e)
{
	sqlite3_stmt *st;
	int rc = prepare(c, "PRAGMA data_version", &st, e);
	if (rc)
		return rc;
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW)
		*v = (uint64_t)sqlite3_column_int64(st, 0);
	else
		rc = db_fail(c, s, "data_version", e);
	sqlite3_finalize(st);
	return rc;
}

int catalog_model_delete(struct catalog *c, const char *id, struct catalog_removal *removal,
			 struct err *e)
{
	memset(removal, 0, sizeof *removal);
	int rc = check_id(id, e);
	if (rc)
		return rc;
	char *dir = NULL, *commit_sha = NULL;
	struct old_files of = {0};
	rc = begin_write(c, e);
	if (rc)
		return rc;
	rc = model_place(c, id, &dir, &commit_sha, e);
	if (!rc)
		rc = old_files_read(c, id, &of, e);
	if (rc)
		goto fail;
	sqlite3_stmt *st;
	rc = prepare(c, "DELETE FROM models WHERE id = ?1", &st, e);
	if (rc)
		goto fail;
	bind_str(st, 1, id);
	int s = sqlite3_step(st);
	sqlite3_finalize(st);
	if (s != SQLITE_DONE) {
		rc = db_fail(c, s, "delete model", e);
		goto fail;
	}
	rc = compute_removal(c, dir, commit_sha, &of, removal, e);
	if (!rc)
		rc = commit(c, e);
	if (!rc)
		goto out;
fail:
	rollback(c);
	catalog_removal_cleanup(removal);
out:
	free(dir);
	free(commit_sha);
	old_files_free(&of);
	return rc;
}

int catalog_blob_refcount(struct catalog *c, const char *repo_dir, const char *sha256,
			  size_t *count, struct err *e)
{
	if (!sha256_hex_valid(sha256))
		return err_set(e, ERR_INVALID, "blob '%.70s': not a sha256", sha256 ? sha256 : "");
	sqlite3_stmt *st;
	int rc = prepare(c,
			 "SELECT COUNT(*) FROM files f JOIN models m ON m.id = f.model_id"
			 " WHERE f.sha256 = ?1 AND (?2 IS NULL OR m.repo_dir = ?2)",
			 &st, e);
	if (rc)
		return rc;
	bind_str(st, 1, sha256);
	if (repo_dir)
		bind_str(st, 2, repo_dir);
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW)
		*count = (size_t)sqlite3_column_int64(st, 0);
	else
		rc = db_fail(c, s, "count blob users", e);
	sqlite3_finalize(st);
	return rc;
}

int catalog_blob_where(struct catalog *c, const char *sha256, char *buf, size_t size, struct err *e)
{
	if (!sha256_hex_valid(sha256))
		return err_set(e, ERR_INVALID, "blob '%.70s': not a sha256", sha256 ? sha256 : "");
	sqlite3_stmt *st;
	int rc = prepare(c,
			 "SELECT repo_dir FROM blobs WHERE sha256 = ?1 AND name = ?1"
			 " ORDER BY repo_dir LIMIT 1",
			 &st, e);
	if (rc)
		return rc;
	bind_str(st, 1, sha256);
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW) {
		if (fmt_buf(buf, size, "%s", (const char *)sqlite3_column_text(st, 0)))
			rc = err_set(e, ERR_TOO_LARGE, "repo folder of blob %s: too long", sha256);
	} else if (s == SQLITE_DONE) {
		rc = err_set(e, ERR_NOT_FOUND, "blob %s is not in the catalog", sha256);
	} else {
		rc = db_fail(c, s, "find blob", e);
	}
	sqlite3_finalize(st);
	return rc;
}

/* Checks the key of a blob or partial (what names it in messages). */
static int check_key(const char *repo_dir, const char *name, const char *what, struct err *e)
{
	int rc = layout_repo_dir_check(repo_dir, e);
	if (rc) {
		if (e)
			err_prefix(e, "%s", what);
		return rc;
	}
	/* Partials are always named by their sha256; blobs may carry another program's sha1. */
	if (strcmp(what, "blob") == 0 ? !check_blob_name(name) : !sha256_hex_valid(name))
		return err_set(e, ERR_INVALID, "%s '%.70s': not a sha256%s", what, name ? name : "",
			       strcmp(what, "blob") == 0 ? " or git sha1" : "");
	return 0;
}

static int check_blob_key(const char *repo_dir, const char *name, struct err *e)
{
	return check_key(repo_dir, name, "blob", e);
}

int catalog_blob_get(struct catalog *c, const char *repo_dir, const char *name,
		     struct catalog_blob *out, struct err *e)
{
	memset(out, 0, sizeof *out);
	int rc = check_blob_key(repo_dir, name, e);
	if (rc)
		return rc;
	sqlite3_stmt *st;
	rc = prepare(c,
		     "SELECT sha256, size, adopted, mtime_ns, verified_ms FROM blobs"
		     " WHERE repo_dir = ?1 AND name = ?2",
		     &st, e);
	if (rc)
		return rc;
	bind_str(st, 1, repo_dir);
	bind_str(st, 2, name);
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW) {
		col_buf(st, 0, out->sha256, sizeof out->sha256);
		out->size = (uint64_t)sqlite3_column_int64(st, 1);
		out->adopted = sqlite3_column_int(st, 2);
		out->mtime_ns = sqlite3_column_int64(st, 3);
		out->verified_ms = sqlite3_column_int64(st, 4);
	} else if (s == SQLITE_DONE) {
		rc = err_set(e, ERR_NOT_FOUND, "blob %s of %s is not in the catalog", name,
			     repo_dir);
	} else {
		rc = db_fail(c, s, "read blob", e);
	}
	sqlite3_finalize(st);
	return rc;
}

/* Runs one statement with the blob key as ?1, ?2; for small updates. */
static int blob_exec(struct catalog *c, sqlite3_stmt *st, const char *repo_dir, const char *name,
		     const char *what, struct err *e)
{
	bind_str(st, 1, repo_dir);
	bind_str(st, 2, name);
	int s = sqlite3_step(st);
	int rc = s == SQLITE_DONE ? 0 : db_fail(c, s, what, e);
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
	rc = prepare(
	    c,
	    "INSERT INTO blobs(repo_dir, name, sha256, size, adopted, mtime_ns, verified_ms)"
	    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(repo_dir, name) DO UPDATE SET"
	    " sha256 = excluded.sha256, size = excluded.size, mtime_ns = excluded.mtime_ns,"
	    " verified_ms = excluded.verified_ms",
	    &st, e);
	if (rc)
		return rc;
	bind_str(st, 3, sha256);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)size);
	sqlite3_bind_int(st, 5, adopted != 0);
	sqlite3_bind_int64(st, 6, mtime_ns);
	sqlite3_bind_int64(st, 7, wall_ms());
	return blob_exec(c, st, repo_dir, name, "record blob", e);
}

int catalog_blob_distrust(struct catalog *c, const char *repo_dir, const char *name, struct err *e)
{
	int rc = check_blob_key(repo_dir, name, e);
	if (rc)
		return rc;
	sqlite3_stmt *st;
	rc = prepare(c, "UPDATE blobs SET verified_ms = 0 WHERE repo_dir = ?1 AND name = ?2", &st,
		     e);
	return rc ? rc : blob_exec(c, st, repo_dir, name, "distrust blob", e);
}

int catalog_link_made(struct catalog *c, const char *repo_dir, const char *commit, const char *path,
		      struct err *e)
{
	sqlite3_stmt *st;
	int rc = prepare(c,
			 "SELECT 1 FROM files f JOIN models m ON m.id = f.model_id"
			 " WHERE m.repo_dir = ?1 AND m.commit_sha = ?2 AND f.path = ?3"
			 " AND f.link_adopted = 0 LIMIT 1",
			 &st, e);
	if (rc)
		return rc;
	bind_str(st, 1, repo_dir);
	bind_str(st, 2, commit);
	bind_str(st, 3, path);
	int s = sqlite3_step(st);
	rc = s == SQLITE_ROW ? 1 : s == SQLITE_DONE ? 0 : db_fail(c, s, "read snapshot link", e);
	sqlite3_finalize(st);
	return rc;
}

static int range_cmp(const void *a, const void *b)
{
	const struct catalog_range *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* Sorts and merges ranges in place; returns the new count. */
static size_t ranges_merge(struct catalog_range *r, size_t n)
{
	if (n == 0)
		return 0;
	qsort(r, n, sizeof *r, range_cmp);
	size_t k = 0;
	for (size_t i = 1; i < n; i++) {
		if (r[i].start <= r[k].end) {
			if (r[i].end > r[k].end)
				r[k].end = r[i].end;
		} else {
			r[++k] = r[i];
		}
	}
	return k + 1;
}

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
	return check_key(repo_dir, sha256, "partial", e);
}

int catalog_partial_save(struct catalog *c, const char *repo_dir, const char *sha256,
			 uint64_t total_size, const struct catalog_range *ranges, size_t n,
			 struct err *e)
{
	int rc = check_partial_key(repo_dir, sha256, e);
	if (rc)
		return rc;
	if (total_size > INT64_MAX)
		return err_set(e, ERR_INVALID, "partial %s: size too large", sha256);
	if (n > CAP_XFER_RANGES * 4)
		return err_set(e, ERR_TOO_LARGE, "partial %s: %zu ranges", sha256, n);
	struct catalog_range *r = xmalloc((n ? n : 1) * sizeof *r);
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
	sqlite3_stmt *st;
	rc = prepare(c,
		     "INSERT OR REPLACE INTO partials(repo_dir, sha256, total_size, done_bytes,"
		     " ranges, updated_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
		     &st, e);
	if (!rc) {
		bind_str(st, 1, repo_dir);
		bind_str(st, 2, sha256);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)total_size);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)done);
		sqlite3_bind_blob(st, 5, blob, (int)(m * 16), SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 6, wall_ms());
		int s = sqlite3_step(st);
		if (s != SQLITE_DONE)
			rc = db_fail(c, s, "save partial", e);
		sqlite3_finalize(st);
	}
	free(blob);
	return rc;
}

int catalog_partial_load(struct catalog *c, const char *repo_dir, const char *sha256,
			 uint64_t *total_size, struct catalog_range **ranges, size_t *n,
			 struct err *e)
{
	*ranges = NULL;
	*n = 0;
	int rc = check_partial_key(repo_dir, sha256, e);
	if (rc)
		return rc;
	sqlite3_stmt *st;
	rc = prepare(c,
		     "SELECT total_size, ranges FROM partials WHERE repo_dir = ?1 AND sha256 = ?2",
		     &st, e);
	if (rc)
		return rc;
	bind_str(st, 1, repo_dir);
	bind_str(st, 2, sha256);
	int s = sqlite3_step(st);
	if (s == SQLITE_DONE) {
		rc = err_set(e, ERR_NOT_FOUND, "no resume state for %s/blobs/%s.partial", repo_dir,
			     sha256);
		goto out;
	}
	if (s != SQLITE_ROW) {
		rc = db_fail(c, s, "load partial", e);
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
	struct catalog_range *r = xmalloc((m ? m : 1) * sizeof *r);
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
	sqlite3_stmt *st;
	rc = prepare(c, "DELETE FROM partials WHERE repo_dir = ?1 AND sha256 = ?2", &st, e);
	if (rc)
		return rc;
	bind_str(st, 1, repo_dir);
	bind_str(st, 2, sha256);
	int s = sqlite3_step(st);
	if (s != SQLITE_DONE)
		rc = db_fail(c, s, "delete partial", e);
	sqlite3_finalize(st);
	return rc;
}

int catalog_partial_list(struct catalog *c, struct catalog_partial **out, size_t *n, struct err *e)
{
	*out = NULL;
	*n = 0;
	sqlite3_stmt *st;
	int rc = prepare(c,
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
		col_buf(st, 0, p->repo_dir, sizeof p->repo_dir);
		col_buf(st, 1, p->sha256, sizeof p->sha256);
		p->total_size = (uint64_t)sqlite3_column_int64(st, 2);
		p->done_bytes = (uint64_t)sqlite3_column_int64(st, 3);
		p->updated_ms = sqlite3_column_int64(st, 4);
	}
	if (s != SQLITE_DONE) {
		rc = db_fail(c, s, "list partials", e);
		free(list);
		list = NULL;
		cnt = 0;
	}
	sqlite3_finalize(st);
	*out = list;
	*n = cnt;
	return rc;
}

void catalog_job_cleanup(struct catalog_job *j)
{
	if (!j)
		return;
	free(j->id);
	free(j->operation);
	free(j->model_ref);
	free(j->progress_json);
	free(j->error);
	free(j->result_id);
	memset(j, 0, sizeof *j);
}

void catalog_job_list_free(struct catalog_job *list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		catalog_job_cleanup(&list[i]);
	free(list);
}

int catalog_job_put(struct catalog *c, const struct catalog_job *j, struct err *e)
{
	if (!j->id || !j->id[0] || strnlen(j->id, CATALOG_ID_MAX + 1) > CATALOG_ID_MAX)
		return err_set(e, ERR_INVALID, "job id: empty or too long");
	if (!j->operation || !j->operation[0])
		return err_set(e, ERR_INVALID, "job %s: no operation", j->id);
	if (j->state < CATALOG_JOB_QUEUED || j->state > CATALOG_JOB_INTERRUPTED)
		return err_set(e, ERR_INVALID, "job %s: unknown state %d", j->id, (int)j->state);
	if (j->progress_json && strnlen(j->progress_json, CAP_EVENT_LEN + 1) > CAP_EVENT_LEN)
		return err_set(e, ERR_TOO_LARGE, "job %s: progress longer than %d bytes", j->id,
			       CAP_EVENT_LEN);
	int64_t now = wall_ms();
	sqlite3_stmt *st;
	int rc = prepare(c,
			 "INSERT INTO jobs(id, operation, model_ref, state, created_ms, updated_ms,"
			 " progress, error, result_id) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
			 " ON CONFLICT(id) DO UPDATE SET operation = excluded.operation,"
			 " model_ref = excluded.model_ref, state = excluded.state,"
			 " updated_ms = excluded.updated_ms, progress = excluded.progress,"
			 " error = excluded.error, result_id = excluded.result_id",
			 &st, e);
	if (rc)
		return rc;
	bind_str(st, 1, j->id);
	bind_str(st, 2, j->operation);
	bind_str(st, 3, j->model_ref);
	bind_str(st, 4, catalog_job_state_name(j->state));
	sqlite3_bind_int64(st, 5, j->created_ms ? j->created_ms : now);
	sqlite3_bind_int64(st, 6, j->updated_ms ? j->updated_ms : now);
	bind_str(st, 7, j->progress_json);
	bind_str(st, 8, j->error);
	bind_str(st, 9, j->result_id);
	int s = sqlite3_step(st);
	if (s != SQLITE_DONE)
		rc = db_fail(c, s, "save job", e);
	sqlite3_finalize(st);
	return rc;
}

#define JOB_COLS                                                                                   \
	"id, operation, model_ref, state, created_ms, updated_ms, progress, error, result_id"

static int read_job_row(struct catalog *c, sqlite3_stmt *st, struct catalog_job *j, struct err *e)
{
	memset(j, 0, sizeof *j);
	j->id = col_str(st, 0);
	j->operation = col_str(st, 1);
	j->model_ref = col_str(st, 2);
	int v;
	if (parse_name(job_state_names, NAMES_LEN(job_state_names),
		       (const char *)sqlite3_column_text(st, 3), &v))
		return err_set(e, ERR_CORRUPT, "catalog %s: job %s has an unknown state", c->path,
			       j->id);
	j->state = (enum catalog_job_state)v;
	j->created_ms = sqlite3_column_int64(st, 4);
	j->updated_ms = sqlite3_column_int64(st, 5);
	j->progress_json = col_str(st, 6);
	j->error = col_str(st, 7);
	j->result_id = col_str(st, 8);
	return 0;
}

int catalog_job_get(struct catalog *c, const char *id, struct catalog_job *out, struct err *e)
{
	memset(out, 0, sizeof *out);
	sqlite3_stmt *st;
	int rc = prepare(c, "SELECT " JOB_COLS " FROM jobs WHERE id = ?1", &st, e);
	if (rc)
		return rc;
	bind_str(st, 1, id);
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW)
		rc = read_job_row(c, st, out, e);
	else if (s == SQLITE_DONE)
		rc = err_set(e, ERR_NOT_FOUND, "job '%.100s' is unknown", id ? id : "");
	else
		rc = db_fail(c, s, "read job", e);
	sqlite3_finalize(st);
	if (rc)
		catalog_job_cleanup(out);
	return rc;
}

static int read_jobs(struct catalog *c, sqlite3_stmt *st, struct catalog_job **out, size_t *n,
		     struct err *e)
{
	struct catalog_job *list = NULL;
	size_t cnt = 0, cap = 0;
	int rc = 0, s;
	while ((s = sqlite3_step(st)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			list = xrealloc(list, cap * sizeof *list);
		}
		rc = read_job_row(c, st, &list[cnt++], e);
		if (rc)
			break;
	}
	if (!rc && s != SQLITE_DONE)
		rc = db_fail(c, s, "list jobs", e);
	if (rc) {
		catalog_job_list_free(list, cnt);
		return rc;
	}
	*out = list;
	*n = cnt;
	return 0;
}

int catalog_job_list(struct catalog *c, enum catalog_job_state state, size_t limit,
		     struct catalog_job **out, size_t *n, struct err *e)
{
	*out = NULL;
	*n = 0;
	sqlite3_stmt *st;
	int rc = prepare(c,
			 "SELECT " JOB_COLS " FROM jobs WHERE ?1 IS NULL OR state = ?1"
			 " ORDER BY created_ms DESC, id DESC LIMIT ?2",
			 &st, e);
	if (rc)
		return rc;
	if (state)
		bind_str(st, 1, catalog_job_state_name(state));
	sqlite3_bind_int64(st, 2, limit ? (sqlite3_int64)limit : -1);
	rc = read_jobs(c, st, out, n, e);
	sqlite3_finalize(st);
	return rc;
}

#define FINAL_STATES "('succeeded','failed','cancelled','interrupted')"

int catalog_job_prune(struct catalog *c, int64_t max_age_ms, size_t max_count, size_t *removed,
		      struct err *e)
{
	if (removed)
		*removed = 0;
	int rc = begin_write(c, e);
	if (rc)
		return rc;
	int before = sqlite3_total_changes(c->db);
	sqlite3_stmt *st;
	if (max_age_ms > 0) {
		rc = prepare(c,
			     "DELETE FROM jobs WHERE state IN " FINAL_STATES " AND updated_ms < ?1",
			     &st, e);
		if (rc)
			goto fail;
		sqlite3_bind_int64(st, 1, wall_ms() - max_age_ms);
		int s = sqlite3_step(st);
		sqlite3_finalize(st);
		if (s != SQLITE_DONE) {
			rc = db_fail(c, s, "prune old jobs", e);
			goto fail;
		}
	}
	if (max_count > 0) {
		rc = prepare(c,
			     "DELETE FROM jobs WHERE state IN " FINAL_STATES " AND id NOT IN"
			     " (SELECT id FROM jobs WHERE state IN " FINAL_STATES
			     " ORDER BY updated_ms DESC, id DESC LIMIT ?1)",
			     &st, e);
		if (rc)
			goto fail;
		sqlite3_bind_int64(st, 1, (sqlite3_int64)max_count);
		int s = sqlite3_step(st);
		sqlite3_finalize(st);
		if (s != SQLITE_DONE) {
			rc = db_fail(c, s, "prune jobs", e);
			goto fail;
		}
	}
	int after = sqlite3_total_changes(c->db);
	rc = commit(c, e);
	if (rc)
		goto fail;
	if (removed)
		*removed = (size_t)(after - before);
	return 0;
fail:
	rollback(c);
	return rc;
}

int catalog_jobs_mark_interrupted(struct catalog *c, struct catalog_job **out, size_t *n,
				  struct err *e)
{
	struct catalog_job *list = NULL;
	size_t cnt = 0;
	if (out)
		*out = NULL;
	if (n)
		*n = 0;
	int rc = begin_write(c, e);
	if (rc)
		return rc;
	sqlite3_stmt *st;
	rc = prepare(c,
		     "SELECT " JOB_COLS " FROM jobs WHERE state IN ('queued','running')"
		     " ORDER BY created_ms, id",
		     &st, e);
	if (rc)
		goto fail;
	rc = read_jobs(c, st, &list, &cnt, e);
	sqlite3_finalize(st);
	if (rc)
		goto fail;
	int64_t now = wall_ms();
	rc = prepare(c,
		     "UPDATE jobs SET state = 'interrupted', updated_ms = ?1"
		     " WHERE state IN ('queued','running')",
		     &st, e);
	if (rc)
		goto fail;
	sqlite3_bind_int64(st, 1, now);
	int s = sqlite3_step(st);
	sqlite3_finalize(st);
	if (s != SQLITE_DONE) {
		rc = db_fail(c, s, "mark jobs interrupted", e);
		goto fail;
	}
	rc = commit(c, e);
	if (rc)
		goto fail;
	for (size_t i = 0; i < cnt; i++) {
		list[i].state = CATALOG_JOB_INTERRUPTED;
		list[i].updated_ms = now;
	}
	if (out && n) {
		*out = list;
		*n = cnt;
	} else {
		catalog_job_list_free(list, cnt);
	}
	return 0;
fail:
	rollback(c);
	catalog_job_list_free(list, cnt);
	return rc;
}
