/* Job rows: kept across restarts, pruned by age and count once final. */
#include "store/catalog.h"

#include <assert.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/util.h"
#include "store/catalog_internal.h"

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
	if ((int)j->state < 0 || j->state >= JOB__STATES)
		return err_set(e, ERR_INVALID, "job %s: unknown state %d", j->id, (int)j->state);
	if (j->progress_json && strnlen(j->progress_json, CAP_EVENT_LEN + 1) > CAP_EVENT_LEN)
		return err_set(e, ERR_TOO_LARGE, "job %s: progress longer than %d bytes", j->id,
			       CAP_EVENT_LEN);
	int64_t now = wall_ms();
	sqlite3_stmt *st;
	int rc = catalog_prepare(
	    c,
	    "INSERT INTO jobs(id, operation, model_ref, state, created_ms, updated_ms,"
	    " progress, error, result_id) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
	    " ON CONFLICT(id) DO UPDATE SET operation = excluded.operation,"
	    " model_ref = excluded.model_ref, state = excluded.state,"
	    " updated_ms = excluded.updated_ms, progress = excluded.progress,"
	    " error = excluded.error, result_id = excluded.result_id",
	    &st, e);
	if (rc)
		return rc;
	catalog_bind_str(st, 1, j->id);
	catalog_bind_str(st, 2, j->operation);
	catalog_bind_str(st, 3, j->model_ref);
	catalog_bind_str(st, 4, job_state_name(j->state));
	sqlite3_bind_int64(st, 5, j->created_ms ? j->created_ms : now);
	sqlite3_bind_int64(st, 6, j->updated_ms ? j->updated_ms : now);
	catalog_bind_str(st, 7, j->progress_json);
	catalog_bind_str(st, 8, j->error);
	catalog_bind_str(st, 9, j->result_id);
	int s = sqlite3_step(st);
	if (s != SQLITE_DONE)
		rc = catalog_fail(c, s, "save job", e);
	sqlite3_finalize(st);
	return rc;
}

#define JOB_COLS                                                                                   \
	"id, operation, model_ref, state, created_ms, updated_ms, progress, error, result_id"

static int read_job_row(struct catalog *c, sqlite3_stmt *st, struct catalog_job *j, struct err *e)
{
	memset(j, 0, sizeof *j);
	j->id = catalog_col_str(st, 0);
	j->operation = catalog_col_str(st, 1);
	j->model_ref = catalog_col_str(st, 2);
	if (job_state_parse((const char *)sqlite3_column_text(st, 3), &j->state))
		return err_set(e, ERR_CORRUPT, "catalog %s: job %s has an unknown state", c->path,
			       j->id);
	j->created_ms = sqlite3_column_int64(st, 4);
	j->updated_ms = sqlite3_column_int64(st, 5);
	j->progress_json = catalog_col_str(st, 6);
	j->error = catalog_col_str(st, 7);
	j->result_id = catalog_col_str(st, 8);
	return 0;
}

int catalog_job_get(struct catalog *c, const char *id, struct catalog_job *out, struct err *e)
{
	memset(out, 0, sizeof *out);
	sqlite3_stmt *st;
	int rc = catalog_row(c, "SELECT " JOB_COLS " FROM jobs WHERE id = ?1", &id, 1, &st,
			     "read job", e);
	if (rc == 1)
		rc = read_job_row(c, st, out, e);
	else if (rc == 0)
		rc = err_set(e, ERR_NOT_FOUND, "job '%.100s' is unknown", id ? id : "");
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
		rc = catalog_fail(c, s, "list jobs", e);
	if (rc) {
		catalog_job_list_free(list, cnt);
		return rc;
	}
	*out = list;
	*n = cnt;
	return 0;
}

int catalog_job_list(struct catalog *c, const enum job_state *state, size_t limit,
		     struct catalog_job **out, size_t *n, struct err *e)
{
	*out = NULL;
	*n = 0;
	sqlite3_stmt *st;
	int rc = catalog_prepare(c,
				 "SELECT " JOB_COLS " FROM jobs WHERE ?1 IS NULL OR state = ?1"
				 " ORDER BY created_ms DESC, id DESC LIMIT ?2",
				 &st, e);
	if (rc)
		return rc;
	if (state)
		catalog_bind_str(st, 1, job_state_name(*state));
	sqlite3_bind_int64(st, 2, limit ? (sqlite3_int64)limit : -1);
	rc = read_jobs(c, st, out, n, e);
	sqlite3_finalize(st);
	return rc;
}

/*
 * The states job_state_final() calls final (final = 1) or not (final = 0)
 * as an SQL list "('succeeded','failed',...)", so that the rule has one home.
 */
static void state_list_sql(int final, char *buf, size_t size)
{
	size_t off = 0;
	buf[0] = 0;
	for (int s = 0; s < JOB__STATES; s++)
		if (job_state_final((enum job_state)s) == final)
			off += (size_t)snprintf(buf + off, size - off, "%c'%s'", off ? ',' : '(',
						job_state_name((enum job_state)s));
	snprintf(buf + off, size - off, ")");
	assert(off + 1 < size);
}

/* Longest statement built with state lists. */
#define JOB_SQL_MAX 512

/* Runs one DELETE of finished jobs: each %s of fmt (one or two) is their list; ?1 is v. */
static int prune_exec(struct catalog *c, const char *fmt, int64_t v, const char *what,
		      struct err *e)
{
	char fin[128], sql[JOB_SQL_MAX];
	state_list_sql(1, fin, sizeof fin);
	snprintf(sql, sizeof sql, fmt, fin, fin);
	sqlite3_stmt *st;
	int rc = catalog_prepare(c, sql, &st, e);
	if (rc)
		return rc;
	sqlite3_bind_int64(st, 1, v);
	int s = sqlite3_step(st);
	sqlite3_finalize(st);
	return s == SQLITE_DONE ? 0 : catalog_fail(c, s, what, e);
}

int catalog_job_prune(struct catalog *c, int64_t max_age_ms, size_t max_count, size_t *removed,
		      struct err *e)
{
	if (removed)
		*removed = 0;
	int rc = catalog_begin_write(c, e);
	if (rc)
		return rc;
	int before = sqlite3_total_changes(c->db);
	if (max_age_ms > 0)
		rc = prune_exec(c, "DELETE FROM jobs WHERE state IN %s AND updated_ms < ?1",
				wall_ms() - max_age_ms, "prune old jobs", e);
	if (!rc && max_count > 0)
		rc = prune_exec(c,
				"DELETE FROM jobs WHERE state IN %s AND id NOT IN"
				" (SELECT id FROM jobs WHERE state IN %s"
				" ORDER BY updated_ms DESC, id DESC LIMIT ?1)",
				(int64_t)max_count, "prune jobs", e);
	if (rc)
		goto fail;
	int after = sqlite3_total_changes(c->db);
	rc = catalog_commit(c, e);
	if (rc)
		goto fail;
	if (removed)
		*removed = (size_t)(after - before);
	return 0;
fail:
	catalog_rollback(c);
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
	int rc = catalog_begin_write(c, e);
	if (rc)
		return rc;
	char active[128], sql[JOB_SQL_MAX];
	state_list_sql(0, active, sizeof active);
	snprintf(sql, sizeof sql,
		 "SELECT " JOB_COLS " FROM jobs WHERE state IN %s ORDER BY created_ms, id", active);
	sqlite3_stmt *st;
	rc = catalog_prepare(c, sql, &st, e);
	if (rc)
		goto fail;
	rc = read_jobs(c, st, &list, &cnt, e);
	sqlite3_finalize(st);
	if (rc)
		goto fail;
	int64_t now = wall_ms();
	snprintf(sql, sizeof sql, "UPDATE jobs SET state = ?2, updated_ms = ?1 WHERE state IN %s",
		 active);
	rc = catalog_prepare(c, sql, &st, e);
	if (rc)
		goto fail;
	sqlite3_bind_int64(st, 1, now);
	catalog_bind_str(st, 2, job_state_name(JOB_INTERRUPTED));
	int s = sqlite3_step(st);
	sqlite3_finalize(st);
	if (s != SQLITE_DONE) {
		rc = catalog_fail(c, s, "mark jobs interrupted", e);
		goto fail;
	}
	rc = catalog_commit(c, e);
	if (rc)
		goto fail;
	for (size_t i = 0; i < cnt; i++) {
		list[i].state = JOB_INTERRUPTED;
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
	catalog_rollback(c);
	catalog_job_list_free(list, cnt);
	return rc;
}
