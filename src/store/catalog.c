#include "store/catalog.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "core/log.h"
#include "core/parse.h"
#include "core/sha256.h"
#include "core/util.h"
#include "store/catalog_internal.h"
#include "store/layout.h"

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
    /*
     * 3 -> 4: whether the Hub gated a model's repo, which the mirror must
     * know before it serves its files. Rows from before are unknown (-1),
     * and the mirror treats unknown as gated.
     */
    "ALTER TABLE models ADD COLUMN gated INTEGER NOT NULL DEFAULT -1;",
    /*
     * 4 -> 5: the state of a blob's multipart upload to a blob store (its
     * upload id and the ETags of the parts done), so that an upload resumes
     * after a restart; and where each blob's bytes came from.
     */
    "CREATE TABLE uploads("
    " sha256 TEXT NOT NULL, target TEXT NOT NULL, upload_id TEXT NOT NULL,"
    " part_size INTEGER NOT NULL, etags TEXT NOT NULL, updated_ms INTEGER NOT NULL,"
    " PRIMARY KEY(sha256, target));"
    "ALTER TABLE blobs ADD COLUMN source TEXT NOT NULL DEFAULT '';",
    /*
     * 5 -> 6: models from OCI registries and the Ollama library (source
     * 'oci'). SQLite cannot change a CHECK in place, so models is rebuilt,
     * and files with it: files is copied first and dropped before models,
     * so the drop cascades to nothing, and the rename carries the foreign
     * key over to the new models.
     */
    "CREATE TABLE models_v6("
    " id TEXT PRIMARY KEY NOT NULL,"
    " source TEXT NOT NULL CHECK(source IN ('hf','url','file','oci')),"
    " repo TEXT NOT NULL,"
    " revision TEXT NOT NULL DEFAULT '',"
    " commit_sha TEXT NOT NULL DEFAULT '',"
    " repo_dir TEXT NOT NULL,"
    " status TEXT NOT NULL CHECK(status IN ('downloading','available','failed')),"
    " size INTEGER NOT NULL DEFAULT 0,"
    " created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL,"
    " error TEXT NOT NULL DEFAULT '',"
    " gguf_architecture TEXT NOT NULL DEFAULT '',"
    " gguf_name TEXT NOT NULL DEFAULT '',"
    " gguf_quantization TEXT NOT NULL DEFAULT '',"
    " gguf_parameters INTEGER NOT NULL DEFAULT 0,"
    " gguf_size_label TEXT NOT NULL DEFAULT '',"
    " gguf_context_length INTEGER NOT NULL DEFAULT 0,"
    " gated INTEGER NOT NULL DEFAULT -1);"
    "INSERT INTO models_v6 SELECT id, source, repo, revision, commit_sha, repo_dir, status,"
    " size, created_ms, updated_ms, error, gguf_architecture, gguf_name, gguf_quantization,"
    " gguf_parameters, gguf_size_label, gguf_context_length, gated FROM models;"
    "CREATE TABLE files_v6("
    " model_id TEXT NOT NULL REFERENCES models_v6(id) ON DELETE CASCADE,"
    " idx INTEGER NOT NULL,"
    " path TEXT NOT NULL,"
    " sha256 TEXT NOT NULL,"
    " size INTEGER NOT NULL,"
    " blob TEXT NOT NULL DEFAULT '',"
    " link_adopted INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY(model_id, idx),"
    " UNIQUE(model_id, path));"
    "INSERT INTO files_v6 SELECT model_id, idx, path, sha256, size, blob, link_adopted"
    " FROM files;"
    "DROP TABLE files;"
    "DROP TABLE models;"
    "ALTER TABLE models_v6 RENAME TO models;"
    "ALTER TABLE files_v6 RENAME TO files;"
    "CREATE INDEX files_sha256 ON files(sha256);"
    "CREATE INDEX files_blob ON files(blob);"
    "CREATE INDEX models_repo_dir ON models(repo_dir, commit_sha);",
    /*
     * 6 -> 7: the done ranges of a partial as of its latest save, written
     * without syncing the partial first, and the boot id they hold under
     * (catalog_partial_save_fresh); ranges keeps those of the latest synced
     * save.
     */
    ("ALTER TABLE partials ADD COLUMN fresh_ranges BLOB;"
     "ALTER TABLE partials ADD COLUMN fresh_boot TEXT NOT NULL DEFAULT '';"),
};

int catalog_fail(struct catalog *c, int src, const char *what, struct err *e)
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

int catalog_exec(struct catalog *c, const char *sql, const char *what, struct err *e)
{
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : catalog_fail(c, rc, what, e);
}

int catalog_prepare(struct catalog *c, const char *sql, sqlite3_stmt **st, struct err *e)
{
	int rc = sqlite3_prepare_v2(c->db, sql, -1, st, NULL);
	return rc == SQLITE_OK ? 0 : catalog_fail(c, rc, "prepare", e);
}

void catalog_put_le64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

uint64_t catalog_get_le64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

int catalog_sync_wal(struct catalog *c, struct err *e)
{
	int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	/* Busy: another connection checkpoints now; a later checkpoint syncs this commit. */
	return rc == SQLITE_OK || rc == SQLITE_BUSY ? 0 : catalog_fail(c, rc, "checkpoint", e);
}

int catalog_begin_write(struct catalog *c, struct err *e)
{
	return catalog_exec(c, "BEGIN IMMEDIATE", "begin", e);
}

int catalog_commit(struct catalog *c, struct err *e)
{
	return catalog_exec(c, "COMMIT", "commit", e);
}

void catalog_rollback(struct catalog *c)
{
	if (!sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

char *catalog_col_str(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return xstrdup(t ? (const char *)t : "");
}

void catalog_col_buf(sqlite3_stmt *st, int i, char *buf, size_t size)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	snprintf(buf, size, "%s", t ? (const char *)t : "");
}

void catalog_bind_str(sqlite3_stmt *st, int i, const char *s)
{
	sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_TRANSIENT);
}

int catalog_prepare_keys(struct catalog *c, const char *sql, const char *const *keys, size_t n,
			 sqlite3_stmt **st, struct err *e)
{
	int rc = catalog_prepare(c, sql, st, e);
	for (size_t i = 0; !rc && i < n; i++)
		catalog_bind_str(*st, (int)i + 1, keys[i]);
	return rc;
}

int catalog_step(struct catalog *c, sqlite3_stmt *st, const char *what, struct err *e)
{
	int s = sqlite3_step(st);
	return s == SQLITE_ROW ? 1 : s == SQLITE_DONE ? 0 : catalog_fail(c, s, what, e);
}

int catalog_row(struct catalog *c, const char *sql, const char *const *keys, size_t n,
		sqlite3_stmt **st, const char *what, struct err *e)
{
	int rc = catalog_prepare_keys(c, sql, keys, n, st, e);
	return rc ? rc : catalog_step(c, *st, what, e);
}

int catalog_run_keys(struct catalog *c, const char *sql, const char *const *keys, size_t n,
		     const char *what, struct err *e)
{
	sqlite3_stmt *st;
	int rc = catalog_prepare_keys(c, sql, keys, n, &st, e);
	if (rc)
		return rc;
	rc = catalog_step(c, st, what, e);
	sqlite3_finalize(st);
	return rc < 0 ? rc : 0;
}

int catalog_query_int(struct catalog *c, const char *sql, const char *const *keys, size_t n,
		      int64_t *v, const char *what, struct err *e)
{
	sqlite3_stmt *st;
	int rc = catalog_row(c, sql, keys, n, &st, what, e);
	if (rc == 1)
		*v = sqlite3_column_int64(st, 0);
	else if (rc == 0)
		rc = catalog_fail(c, SQLITE_DONE, what, e);
	sqlite3_finalize(st);
	return rc < 0 ? rc : 0;
}

static int user_version(struct catalog *c, int *v, struct err *e)
{
	int64_t x = 0;
	int rc = catalog_query_int(c, "PRAGMA user_version", NULL, 0, &x, "read schema version", e);
	*v = (int)x;
	return rc;
}

/*
 * Brings the schema to CATALOG_SCHEMA_VERSION: every missing step in one
 * write transaction that re-reads the version first (another process may
 * have migrated), so a catalog is either as it was or at the latest
 * version. A new catalog (version 0) is thus created at the latest version
 * and logged as created, not as migrated.
 */
static int migrate(struct catalog *c, struct err *e)
{
	int v;
	int rc = user_version(c, &v, e);
	if (rc || v == CATALOG_SCHEMA_VERSION)
		return rc;
	if (v > CATALOG_SCHEMA_VERSION)
		return err_set(e, ERR_CONFLICT,
			       "catalog %s has schema version %d, newer than this rbee-hive "
			       "understands (%d)",
			       c->path, v, CATALOG_SCHEMA_VERSION);
	rc = catalog_begin_write(c, e);
	if (!rc)
		rc = user_version(c, &v, e);
	int from = v;
	for (; !rc && v < CATALOG_SCHEMA_VERSION; v++)
		rc = catalog_exec(c, migrations[v], "migrate schema", e);
	if (!rc && from < CATALOG_SCHEMA_VERSION) {
		char pragma[64];
		snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", CATALOG_SCHEMA_VERSION);
		rc = catalog_exec(c, pragma, "set schema version", e);
	}
	if (!rc)
		rc = catalog_commit(c, e);
	if (rc) {
		catalog_rollback(c);
		return rc;
	}
	if (from == 0)
		log_info("catalog %s created (schema version %d)", c->path, CATALOG_SCHEMA_VERSION);
	else if (from < CATALOG_SCHEMA_VERSION)
		log_info("catalog %s: schema migrated from version %d to %d", c->path, from,
			 CATALOG_SCHEMA_VERSION);
	return 0;
}

int catalog_open(const char *db_path, struct catalog **out, struct err *e)
{
	*out = NULL;
	if (!db_path || !db_path[0])
		return err_set(e, ERR_INVALID, "catalog: empty path");
	struct catalog *c = xcalloc(1, sizeof *c);
	c->path = xstrdup(db_path);
	c->fresh_dir = -1;
	int rc =
	    sqlite3_open_v2(db_path, &c->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		rc = catalog_fail(c, rc, "open", e);
		goto fail;
	}
	sqlite3_extended_result_codes(c->db, 1);
	sqlite3_busy_timeout(c->db, CATALOG_BUSY_TIMEOUT_MS);
	/* WAL: readers never block the writer. synchronous=FULL: a committed
	 * resume state survives a power cut, not just a crash. */
	sqlite3_stmt *st;
	rc = catalog_prepare(c, "PRAGMA journal_mode=WAL", &st, e);
	if (rc)
		goto fail;
	int s = sqlite3_step(st);
	if (s != SQLITE_ROW) {
		rc = catalog_fail(c, s, "enable WAL", e);
		sqlite3_finalize(st);
		goto fail;
	}
	sqlite3_finalize(st);
	rc = catalog_exec(c, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", "set pragmas", e);
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
	if (c->fresh_dir >= 0)
		close(c->fresh_dir);
	free(c->path);
	free(c);
}

int catalog_check_blob_name(const char *s)
{
	size_t n = s ? strnlen(s, CATALOG_BLOB_NAME_MAX + 1) : 0;
	return (n == 64 || n == 40) && is_hex_lower(s, n);
}

int catalog_check_id(const char *id, struct err *e)
{
	if (!id || !id[0])
		return err_set(e, ERR_INVALID, "model id: empty");
	if (strnlen(id, CATALOG_ID_MAX + 1) > CATALOG_ID_MAX)
		return err_set(e, ERR_INVALID, "model id '%.80s...': too long", id);
	return 0;
}

int catalog_check_key(const char *repo_dir, const char *name, const char *what, struct err *e)
{
	int rc = layout_repo_dir_check(repo_dir, e);
	if (rc) {
		if (e)
			err_prefix(e, "%s", what);
		return rc;
	}
	/* Partials are always named by their sha256; blobs may carry another program's sha1. */
	if (strcmp(what, "blob") == 0 ? !catalog_check_blob_name(name) : !sha256_hex_valid(name))
		return err_set(e, ERR_INVALID, "%s '%.70s': not a sha256%s", what, name ? name : "",
			       strcmp(what, "blob") == 0 ? " or git sha1" : "");
	return 0;
}
