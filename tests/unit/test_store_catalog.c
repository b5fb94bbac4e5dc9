/*
 * Unit tests of store/catalog: models with files, listing 10,000 models,
 * finding by ref, delete with shared blobs, migrations from an older schema,
 * reopening after an interrupted write, resume state of partials, jobs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "core/util.h"
#include "store/catalog.h"
#include "store/catalog_internal.h"
#include "test_store_tmp.h"

struct fx {
	char dir[PATH_MAX];
	char db[PATH_MAX];
	struct catalog *c;
};

static int setup(void **state)
{
	struct fx *x = xcalloc(1, sizeof *x);
	if (store_tmp_make("store-catalog", x->dir, sizeof x->dir))
		return -1;
	snprintf(x->db, sizeof x->db, "%s/catalog.db", x->dir);
	struct err e = {0};
	if (catalog_open(x->db, &x->c, &e))
		return -1;
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;
	catalog_close(x->c);
	store_tmp_remove(x->dir);
	free(x);
	return 0;
}

/* A sha256-looking name made of one repeated hex digit. */
static const char *hex(char d)
{
	static char buf[16][65];
	static int i;
	char *b = buf[i++ % 16];
	memset(b, d, 64);
	b[64] = 0;
	return b;
}

#define COMMIT "0123456789abcdef0123456789abcdef01234567"

static void make_model(struct catalog_model *m, const char *id, const char *repo_dir,
		       const char *const *paths, const char *const *shas, size_t n)
{
	memset(m, 0, sizeof *m);
	m->id = (char *)id;
	m->source = CATALOG_SRC_HF;
	m->repo = (char *)"org/repo";
	m->revision = (char *)"main";
	m->commit = (char *)COMMIT;
	m->repo_dir = (char *)repo_dir;
	m->status = CATALOG_AVAILABLE;
	m->files = xcalloc(n ? n : 1, sizeof *m->files);
	m->nfiles = n;
	for (size_t i = 0; i < n; i++) {
		m->files[i].path = (char *)paths[i];
		snprintf(m->files[i].sha256, sizeof m->files[i].sha256, "%s", shas[i]);
		m->files[i].size = 100 * (i + 1);
	}
}

static void put_simple(struct catalog *c, const char *id, const char *repo_dir,
		       const char *const *paths, const char *const *shas, size_t n)
{
	struct catalog_model m;
	make_model(&m, id, repo_dir, paths, shas, n);
	struct err e = {0};
	int rc = catalog_model_put(c, &m, NULL, &e);
	if (rc)
		fprintf(stderr, "put %s: %s\n", id, e.msg);
	assert_int_equal(rc, 0);
	free(m.files);
}

static int removal_has_blob(const struct catalog_removal *r, const char *sha)
{
	for (size_t i = 0; i < r->nblobs; i++)
		if (strcmp(r->blobs[i], sha) == 0)
			return 1;
	return 0;
}

static int removal_has_path(const struct catalog_removal *r, const char *p)
{
	for (size_t i = 0; i < r->npaths; i++)
		if (strcmp(r->paths[i], p) == 0)
			return 1;
	return 0;
}

static void test_open_schema(void **state)
{
	struct fx *x = *state;
	sqlite3 *db;
	assert_int_equal(sqlite3_open(x->db, &db), SQLITE_OK);
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), CATALOG_SCHEMA_VERSION);
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	sqlite3_close(db);

	/* A second connection (another thread) opens the same file. */
	struct catalog *c2;
	struct err e = {0};
	assert_int_equal(catalog_open(x->db, &c2, &e), 0);
	catalog_close(c2);
	catalog_close(NULL);
}

static void test_put_get(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *paths[] = {"sub/model.Q4_K_M.gguf", "README.md"};
	const char *shas[] = {hex('a'), hex('b')};
	struct catalog_model m;
	make_model(&m, "hf:org/repo:sub/model.Q4_K_M.gguf", "models--org--repo", paths, shas, 2);
	snprintf(m.gguf.architecture, sizeof m.gguf.architecture, "llama");
	snprintf(m.gguf.quantization, sizeof m.gguf.quantization, "Q4_K_M");
	m.gguf.parameters = 7000000000ull;
	m.gguf.context_length = 4096;
	assert_int_equal(catalog_model_put(x->c, &m, NULL, &e), 0);
	free(m.files);

	struct catalog_model g;
	assert_int_equal(catalog_model_get(x->c, "hf:org/repo:sub/model.Q4_K_M.gguf", &g, &e), 0);
	assert_string_equal(g.id, "hf:org/repo:sub/model.Q4_K_M.gguf");
	assert_int_equal(g.source, CATALOG_SRC_HF);
	assert_int_equal(g.status, CATALOG_AVAILABLE);
	assert_string_equal(g.commit, COMMIT);
	assert_string_equal(g.repo_dir, "models--org--repo");
	assert_int_equal(g.size, 300); /* sum of the files */
	assert_string_equal(g.gguf.architecture, "llama");
	assert_string_equal(g.gguf.quantization, "Q4_K_M");
	assert_int_equal(g.gguf.parameters, 7000000000ull);
	assert_int_equal(g.gguf.context_length, 4096);
	assert_int_equal(g.nfiles, 2);
	assert_string_equal(g.files[0].path, "sub/model.Q4_K_M.gguf");
	assert_string_equal(g.files[0].sha256, hex('a'));
	assert_int_equal(g.files[1].size, 200);
	assert_true(g.created_ms > 0 && g.updated_ms >= g.created_ms);
	int64_t created = g.created_ms, updated = g.updated_ms;
	catalog_model_cleanup(&g);
	catalog_model_cleanup(&g); /* cleaned structs can be cleaned again */

	/* Status changes: created kept, updated grows, error text stored. */
	assert_int_equal(catalog_model_set_status(x->c, "hf:org/repo:sub/model.Q4_K_M.gguf",
						  CATALOG_FAILED, "disk on fire", 0, &e),
			 0);
	assert_int_equal(catalog_model_get(x->c, "hf:org/repo:sub/model.Q4_K_M.gguf", &g, &e), 0);
	assert_int_equal(g.status, CATALOG_FAILED);
	assert_string_equal(g.error, "disk on fire");
	assert_int_equal(g.created_ms, created);
	assert_true(g.updated_ms > updated);
	/* A conditional change against a stale updated_ms is refused. */
	assert_int_equal(catalog_model_set_status(x->c, g.id, CATALOG_AVAILABLE, NULL, updated, &e),
			 ERR_CONFLICT);
	assert_int_equal(
	    catalog_model_set_status(x->c, g.id, CATALOG_AVAILABLE, NULL, g.updated_ms, &e), 0);
	catalog_model_cleanup(&g);

	assert_int_equal(catalog_model_get(x->c, "hf:org/none:x.gguf", &g, &e), ERR_NOT_FOUND);
	assert_non_null(strstr(e.msg, "hf:org/none:x.gguf"));
	assert_int_equal(catalog_model_set_status(x->c, "nope", CATALOG_FAILED, NULL, 0, &e),
			 ERR_NOT_FOUND);
}

static void test_bad_input(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	struct catalog_model m;
	const char *evil[] = {"../../etc/passwd"};
	const char *shas[] = {hex('a')};
	make_model(&m, "hf:a/b:x", "models--a--b", evil, shas, 1);
	assert_int_equal(catalog_model_put(x->c, &m, NULL, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "hf:a/b:x"));
	assert_non_null(strstr(e.msg, "'..'"));
	free(m.files);

	const char *ok[] = {"x.gguf"};
	make_model(&m, "hf:a/b:x", "../outside", ok, shas, 1);
	assert_int_equal(catalog_model_put(x->c, &m, NULL, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "repo folder"));
	m.repo_dir = (char *)"models--a--b";
	snprintf(m.files[0].sha256, sizeof m.files[0].sha256, "not-a-digest");
	assert_int_equal(catalog_model_put(x->c, &m, NULL, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "sha256"));
	snprintf(m.files[0].sha256, sizeof m.files[0].sha256, "%s", hex('a'));
	m.commit = (char *)"../x";
	assert_int_equal(catalog_model_put(x->c, &m, NULL, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "commit"));
	m.commit = (char *)COMMIT;
	m.nfiles = 0;
	assert_int_equal(catalog_model_put(x->c, &m, NULL, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "available without"));
	m.id = (char *)"";
	assert_int_equal(catalog_model_put(x->c, &m, NULL, &e), ERR_INVALID);
	free(m.files);
	size_t n = 99;
	assert_int_equal(catalog_model_totals(x->c, &n, NULL, &e), 0);
	assert_int_equal(n, 0);
}

static void test_atomic_put(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *p1[] = {"a.gguf"};
	const char *s1[] = {hex('1')};
	put_simple(x->c, "hf:o/r:a.gguf", "models--o--r", p1, s1, 1);

	/* The second file fails (same path twice) after the model row and the first
	 * file were written: nothing of the new version may remain. */
	struct catalog_model m;
	const char *p2[] = {"a.gguf", "b.gguf", "b.gguf"};
	const char *s2[] = {hex('2'), hex('3'), hex('4')};
	make_model(&m, "hf:o/r:a.gguf", "models--o--r", p2, s2, 3);
	m.status = CATALOG_DOWNLOADING;
	assert_int_equal(catalog_model_put(x->c, &m, NULL, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "twice"));
	free(m.files);
	struct catalog_model g;
	assert_int_equal(catalog_model_get(x->c, "hf:o/r:a.gguf", &g, &e), 0);
	assert_int_equal(g.status, CATALOG_AVAILABLE);
	assert_int_equal(g.nfiles, 1);
	assert_string_equal(g.files[0].sha256, hex('1'));
	catalog_model_cleanup(&g);
	size_t rc = 0;
	assert_int_equal(catalog_blob_refcount(x->c, NULL, hex('3'), &rc, &e), 0);
	assert_int_equal(rc, 0);

	/* A new version with other files hands back what only the old one used. */
	const char *p3[] = {"a.gguf", "c.gguf"};
	const char *s3[] = {hex('5'), hex('6')};
	make_model(&m, "hf:o/r:a.gguf", "models--o--r", p3, s3, 2);
	m.commit = (char *)"ffffffffffffffffffffffffffffffffffffffff";
	struct catalog_removal orphans;
	assert_int_equal(catalog_model_put(x->c, &m, &orphans, &e), 0);
	free(m.files);
	assert_string_equal(orphans.repo_dir, "models--o--r");
	assert_string_equal(orphans.commit, COMMIT);
	assert_int_equal(orphans.nblobs, 1);
	assert_string_equal(orphans.blobs[0], hex('1'));
	assert_int_equal(orphans.npaths, 1);
	assert_string_equal(orphans.paths[0], "a.gguf");
	catalog_removal_cleanup(&orphans);
	catalog_removal_cleanup(NULL);
}

static void test_list(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *p[] = {"x.gguf", "y.gguf"};
	const char *s[] = {hex('a'), hex('b')};
	put_simple(x->c, "hf:o/c:x.gguf", "models--o--c", p, s, 2);
	put_simple(x->c, "hf:o/a:x.gguf", "models--o--a", p, s, 1);
	put_simple(x->c, "hf:o/b:x.gguf", "models--o--b", p, s, 2);
	struct catalog_model *list;
	size_t n;
	assert_int_equal(catalog_model_list(x->c, NULL, 0, 0, &list, &n, &e), 0);
	assert_int_equal(n, 3);
	assert_string_equal(list[0].id, "hf:o/a:x.gguf");
	assert_int_equal(list[0].nfiles, 1);
	assert_string_equal(list[1].id, "hf:o/b:x.gguf");
	assert_int_equal(list[1].nfiles, 2);
	assert_string_equal(list[1].files[1].path, "y.gguf");
	assert_string_equal(list[2].id, "hf:o/c:x.gguf");
	assert_int_equal(list[2].nfiles, 2);
	catalog_model_list_free(list, n);

	/* Count and bytes come from one query, not from loading the list. */
	size_t count = 0;
	uint64_t bytes = 0, want = 0;
	assert_int_equal(catalog_model_list(x->c, NULL, 0, 0, &list, &n, &e), 0);
	for (size_t i = 0; i < n; i++)
		want += list[i].size;
	catalog_model_list_free(list, n);
	assert_int_equal(catalog_model_totals(x->c, &count, &bytes, &e), 0);
	assert_int_equal(count, 3);
	assert_true(want > 0);
	assert_int_equal(bytes, want);
	assert_int_equal(catalog_model_totals(x->c, &count, NULL, &e), 0);
	assert_int_equal(count, 3);

	assert_int_equal(catalog_model_list(x->c, NULL, 1, 1, &list, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].id, "hf:o/b:x.gguf");
	assert_int_equal(list[0].nfiles, 2);
	catalog_model_list_free(list, n);
	assert_int_equal(catalog_model_list(x->c, NULL, 10, 5, &list, &n, &e), 0);
	assert_int_equal(n, 0);
	assert_null(list);
	catalog_model_list_free(NULL, 0);

	/* From an id on (a present one or one between two), then skipping. */
	assert_int_equal(catalog_model_list(x->c, "hf:o/b:x.gguf", 0, 5, &list, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].id, "hf:o/b:x.gguf");
	assert_int_equal(list[1].nfiles, 2);
	catalog_model_list_free(list, n);
	assert_int_equal(catalog_model_list(x->c, "hf:o/a:y", 1, 1, &list, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].id, "hf:o/c:x.gguf");
	catalog_model_list_free(list, n);
	assert_int_equal(catalog_model_list(x->c, "hf:o/d", 0, 0, &list, &n, &e), 0);
	assert_int_equal(n, 0);

	/* Every stride-th id and the count, in id order. */
	char **marks = NULL;
	size_t nm = 0, total = 0;
	assert_int_equal(catalog_model_marks(x->c, 2, &marks, &nm, &total, &e), 0);
	assert_int_equal(total, 3);
	assert_int_equal(nm, 2);
	assert_string_equal(marks[0], "hf:o/a:x.gguf");
	assert_string_equal(marks[1], "hf:o/c:x.gguf");
	catalog_model_marks_free(marks, nm);
	assert_int_equal(catalog_model_marks(x->c, 3, &marks, &nm, &total, &e), 0);
	assert_int_equal(nm, 1);
	assert_int_equal(total, 3);
	catalog_model_marks_free(marks, nm);
}

static int count_statement(unsigned type, void *arg, void *stmt, void *sql)
{
	(void)type;
	(void)stmt;
	(void)sql;
	(*(unsigned *)arg)++;
	return 0;
}

static void test_list_10000(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	/* Filled directly in one transaction: the test is about listing. */
	sqlite3 *db;
	assert_int_equal(sqlite3_open(x->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_stmt *m, *f;
	assert_int_equal(
	    sqlite3_prepare_v2(db,
			       "INSERT INTO models(id, source, repo, commit_sha, repo_dir, status,"
			       " size, created_ms, updated_ms) VALUES(?1, 'hf', 'o/r', '" COMMIT
			       "', 'models--o--r', 'available', 1, 1, 1)",
			       -1, &m, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "INSERT INTO files(model_id, idx, path, sha256, size)"
					    " VALUES(?1, ?2, ?3, ?4, 1)",
					    -1, &f, NULL),
			 SQLITE_OK);
	for (int i = 0; i < 10000; i++) {
		char id[64], path[64];
		snprintf(id, sizeof id, "hf:o/r:m%05d.gguf", i);
		sqlite3_reset(m);
		sqlite3_bind_text(m, 1, id, -1, SQLITE_TRANSIENT);
		assert_int_equal(sqlite3_step(m), SQLITE_DONE);
		for (int k = 0; k < 2; k++) {
			snprintf(path, sizeof path, "m%05d-%d.gguf", i, k);
			sqlite3_reset(f);
			sqlite3_bind_text(f, 1, id, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int(f, 2, k);
			sqlite3_bind_text(f, 3, path, -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(f, 4, hex((char)('a' + k)), -1, SQLITE_TRANSIENT);
			assert_int_equal(sqlite3_step(f), SQLITE_DONE);
		}
	}
	sqlite3_finalize(m);
	sqlite3_finalize(f);
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	/* Statements run, counted by SQLite itself, not by the clock. */
	unsigned statements = 0;
	assert_int_equal(
	    sqlite3_trace_v2(x->c->db, SQLITE_TRACE_STMT, count_statement, &statements), SQLITE_OK);
	struct catalog_model *list;
	size_t n;
	assert_int_equal(catalog_model_list(x->c, NULL, 0, 0, &list, &n, &e), 0);
	sqlite3_trace_v2(x->c->db, 0, NULL, NULL);
	assert_int_equal(n, 10000);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(list[i].nfiles, 2);
		char want[64];
		snprintf(want, sizeof want, "m%05zu-1.gguf", i);
		assert_string_equal(list[i].files[1].path, want);
	}
	catalog_model_list_free(list, n);
	/* A few statements whatever the count: never one per model. */
	assert_true(statements > 0 && statements <= 4);
	size_t cnt;
	assert_int_equal(catalog_model_totals(x->c, &cnt, NULL, &e), 0);
	assert_int_equal(cnt, 10000);
}

static void test_find(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *p1[] = {"model.Q4_K_M.gguf"};
	const char *p2[] = {"model.Q8_0.gguf"};
	const char *s[] = {hex('a')};
	put_simple(x->c, "hf:org/repo:model.Q4_K_M.gguf", "models--org--repo", p1, s, 1);
	put_simple(x->c, "hf:org/repo:model.Q8_0.gguf", "models--org--repo", p2, s, 1);
	put_simple(x->c, "hf:org/other:model.Q4_K_M.gguf", "models--org--other", p1, s, 1);
	struct catalog_model m;
	assert_int_equal(catalog_model_find(x->c, "hf:org/repo:model.Q8_0.gguf", &m, &e), 0);
	assert_string_equal(m.id, "hf:org/repo:model.Q8_0.gguf");
	catalog_model_cleanup(&m);
	assert_int_equal(catalog_model_find(x->c, "org/repo:Q4_K_M", &m, &e), 0);
	assert_string_equal(m.id, "hf:org/repo:model.Q4_K_M.gguf");
	assert_int_equal(m.nfiles, 1);
	catalog_model_cleanup(&m);
	assert_int_equal(catalog_model_find(x->c, "org/other", &m, &e), 0);
	assert_string_equal(m.id, "hf:org/other:model.Q4_K_M.gguf");
	catalog_model_cleanup(&m);

	assert_int_equal(catalog_model_find(x->c, "org/repo", &m, &e), ERR_CONFLICT);
	assert_non_null(strstr(e.msg, "ambiguous"));
	assert_non_null(strstr(e.msg, "hf:org/repo:model.Q8_0.gguf"));
	assert_int_equal(catalog_model_find(x->c, "org/nothing", &m, &e), ERR_NOT_FOUND);
	assert_non_null(strstr(e.msg, "org/nothing"));
	assert_int_equal(catalog_model_find(x->c, "", &m, &e), ERR_INVALID);
}

static void test_delete_shared(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	/* Two models of one repo and commit share README.md; a third model in
	 * another repo folder has the same content as B's weights. */
	const char *pa[] = {"a.gguf", "README.md"};
	const char *sa[] = {hex('1'), hex('9')};
	const char *pb[] = {"b.gguf", "README.md"};
	const char *sb[] = {hex('2'), hex('9')};
	const char *pc[] = {"c.gguf"};
	const char *sc[] = {hex('2')};
	put_simple(x->c, "hf:o/r:a.gguf", "models--o--r", pa, sa, 2);
	put_simple(x->c, "hf:o/r:b.gguf", "models--o--r", pb, sb, 2);
	put_simple(x->c, "hf:o/s:c.gguf", "models--o--s", pc, sc, 1);
	size_t cnt;
	assert_int_equal(catalog_blob_refcount(x->c, "models--o--r", hex('9'), &cnt, &e), 0);
	assert_int_equal(cnt, 2);
	assert_int_equal(catalog_blob_refcount(x->c, NULL, hex('2'), &cnt, &e), 0);
	assert_int_equal(cnt, 2);
	char where[256];
	assert_int_equal(catalog_blob_where(x->c, hex('2'), where, sizeof where, &e), 0);
	assert_string_equal(where, "models--o--r");

	struct catalog_removal r;
	assert_int_equal(catalog_model_delete(x->c, "hf:o/r:a.gguf", &r, &e), 0);
	assert_string_equal(r.repo_dir, "models--o--r");
	assert_string_equal(r.commit, COMMIT);
	assert_int_equal(r.nblobs, 1);
	assert_true(removal_has_blob(&r, hex('1')));
	assert_int_equal(r.npaths, 1);
	assert_true(removal_has_path(&r, "a.gguf"));
	catalog_removal_cleanup(&r);

	assert_int_equal(catalog_model_delete(x->c, "hf:o/r:b.gguf", &r, &e), 0);
	assert_int_equal(r.nblobs, 2);
	assert_true(removal_has_blob(&r, hex('2')));
	assert_true(removal_has_blob(&r, hex('9')));
	assert_true(removal_has_path(&r, "README.md"));
	catalog_removal_cleanup(&r);
	/* The content lives on in the other repo folder. */
	assert_int_equal(catalog_blob_refcount(x->c, NULL, hex('2'), &cnt, &e), 0);
	assert_int_equal(cnt, 1);
	assert_int_equal(catalog_blob_where(x->c, hex('2'), where, sizeof where, &e), 0);
	assert_string_equal(where, "models--o--s");
	assert_int_equal(catalog_blob_where(x->c, hex('9'), where, sizeof where, &e),
			 ERR_NOT_FOUND);

	assert_int_equal(catalog_model_delete(x->c, "hf:o/r:b.gguf", &r, &e), ERR_NOT_FOUND);
	assert_non_null(strstr(e.msg, "hf:o/r:b.gguf"));
	assert_int_equal(r.nblobs, 0);
}

/*
 * A snapshot entry another program made (its link, its blob named by the git
 * sha1) is adopted: recorded with the blob name actually used, and never
 * named for removal. Blob records say when a blob was last found right.
 */
static void test_adopted_files_are_not_removed(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *sha1 = "0123456789abcdef0123456789abcdef01234567";
	struct catalog_model m;
	const char *p[] = {"model.gguf", "README.md", "found.gguf"};
	const char *sh[] = {hex('1'), hex('2'), hex('3')};
	make_model(&m, "hf:o/r:*", "models--o--r", p, sh, 3);
	/* README: huggingface_hub's link and blob; found.gguf: its blob, our link. */
	snprintf(m.files[1].blob, sizeof m.files[1].blob, "%s", sha1);
	m.files[1].link_adopted = 1;
	m.files[1].blob_adopted = 1;
	m.files[2].blob_adopted = 1;
	m.files[2].mtime_ns = 123;
	m.files[2].verified_ms = 456;
	assert_int_equal(catalog_model_put(x->c, &m, NULL, &e), 0);
	free(m.files);

	struct catalog_model got;
	assert_int_equal(catalog_model_get(x->c, "hf:o/r:*", &got, &e), 0);
	assert_string_equal(catalog_file_blob(&got.files[0]), hex('1'));
	assert_string_equal(got.files[0].blob, "");
	assert_string_equal(catalog_file_blob(&got.files[1]), sha1);
	assert_int_equal(got.files[1].link_adopted, 1);
	assert_int_equal(got.files[1].blob_adopted, 1);
	assert_int_equal(got.files[2].link_adopted, 0);
	assert_int_equal(got.files[2].mtime_ns, 123);
	assert_int_equal(got.files[2].verified_ms, 456);
	catalog_model_cleanup(&got);
	assert_int_equal(catalog_link_made(x->c, "models--o--r", COMMIT, "model.gguf", &e), 1);
	assert_int_equal(catalog_link_made(x->c, "models--o--r", COMMIT, "README.md", &e), 0);

	struct catalog_blob b;
	assert_int_equal(
	    catalog_blob_verified(x->c, "models--o--r", hex('1'), hex('1'), 1, 77, 1, &e), 0);
	assert_int_equal(catalog_blob_get(x->c, "models--o--r", hex('1'), &b, &e), 0);
	/* Who made it does not change with a later verification. */
	assert_int_equal(b.adopted, 0);
	assert_int_equal(b.mtime_ns, 77);
	assert_true(b.verified_ms > 0);
	assert_int_equal(catalog_blob_distrust(x->c, "models--o--r", hex('1'), &e), 0);
	assert_int_equal(catalog_blob_get(x->c, "models--o--r", hex('1'), &b, &e), 0);
	assert_int_equal(b.verified_ms, 0);
	assert_int_equal(catalog_blob_get(x->c, "models--o--r", hex('7'), &b, &e), ERR_NOT_FOUND);

	struct catalog_removal r;
	assert_int_equal(catalog_model_delete(x->c, "hf:o/r:*", &r, &e), 0);
	assert_int_equal(r.nblobs, 1);
	assert_true(removal_has_blob(&r, hex('1')));
	assert_int_equal(r.npaths, 2);
	assert_true(removal_has_path(&r, "model.gguf"));
	assert_true(removal_has_path(&r, "found.gguf"));
	catalog_removal_cleanup(&r);
}

/* The version 1 schema, as the first release wrote it. */
static const char *const schema_v1 =
    "CREATE TABLE models(id TEXT PRIMARY KEY NOT NULL,"
    " source TEXT NOT NULL CHECK(source IN ('hf','url','file')), repo TEXT NOT NULL,"
    " revision TEXT NOT NULL DEFAULT '', commit_sha TEXT NOT NULL DEFAULT '',"
    " repo_dir TEXT NOT NULL,"
    " status TEXT NOT NULL CHECK(status IN ('downloading','available','failed')),"
    " size INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL, error TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE files(model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,"
    " idx INTEGER NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,"
    " PRIMARY KEY(model_id, idx), UNIQUE(model_id, path));"
    "CREATE INDEX files_sha256 ON files(sha256);"
    "CREATE TABLE blobs(sha256 TEXT NOT NULL, repo_dir TEXT NOT NULL, size INTEGER NOT NULL,"
    " PRIMARY KEY(sha256, repo_dir));"
    "CREATE TABLE jobs(id TEXT PRIMARY KEY NOT NULL, operation TEXT NOT NULL,"
    " model_ref TEXT NOT NULL DEFAULT '', state TEXT NOT NULL, created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL, progress TEXT NOT NULL DEFAULT '',"
    " error TEXT NOT NULL DEFAULT '', result_id TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX jobs_state ON jobs(state, updated_ms);"
    "INSERT INTO models VALUES('hf:o/r:old.gguf', 'hf', 'o/r', 'main', '" COMMIT "',"
    " 'models--o--r', 'available', 5, 1000, 2000, '');"
    "INSERT INTO files VALUES('hf:o/r:old.gguf', 0, 'old.gguf',"
    " 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', 5);"
    "INSERT INTO blobs VALUES('cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc',"
    " 'models--o--r', 5);"
    "INSERT INTO jobs VALUES('job-old', 'model_download', 'o/r', 'succeeded', 1, 2, '', '',"
    " 'hf:o/r:old.gguf');"
    "PRAGMA user_version = 1;";

/* Runs catalog_open(path) with stderr (the log) captured into buf. */
static int open_logged(const char *dir, const char *path, struct catalog **c, char *buf,
		       size_t size)
{
	char logpath[PATH_MAX];
	snprintf(logpath, sizeof logpath, "%s/open.log", dir);
	fflush(stderr);
	int saved = dup(2);
	FILE *f = fopen(logpath, "w+");
	assert_non_null(f);
	dup2(fileno(f), 2);
	struct err e = {0};
	int rc = catalog_open(path, c, &e);
	dup2(saved, 2);
	close(saved);
	rewind(f);
	size_t n = fread(buf, 1, size - 1, f);
	buf[n] = 0;
	fclose(f);
	return rc;
}

/* A fresh catalog is created at the latest version; it says so, and migrates nothing. */
static void test_fresh_catalog_log(void **state)
{
	struct fx *x = *state;
	char path[PATH_MAX], log[4096];
	snprintf(path, sizeof path, "%s/fresh.db", x->dir);
	struct catalog *c = NULL;
	assert_int_equal(open_logged(x->dir, path, &c, log, sizeof log), 0);
	catalog_close(c);
	assert_null(strstr(log, "migrated"));
	assert_non_null(strstr(log, "created"));
	/* Opening it again logs nothing about the schema. */
	assert_int_equal(open_logged(x->dir, path, &c, log, sizeof log), 0);
	catalog_close(c);
	assert_null(strstr(log, "schema"));
	assert_null(strstr(log, "created"));
}

static void test_migrate(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/old.db", x->dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, schema_v1, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	struct catalog *c;
	char log[4096];
	assert_int_equal(open_logged(x->dir, path, &c, log, sizeof log), 0);
	/* An upgrade says from which version to which, in one line. */
	char want[64];
	snprintf(want, sizeof want, "schema migrated from version 1 to %d", CATALOG_SCHEMA_VERSION);
	assert_non_null(strstr(log, want));
	assert_null(strstr(log, "created"));
	struct catalog_model m;
	assert_int_equal(catalog_model_get(c, "hf:o/r:old.gguf", &m, &e), 0);
	assert_int_equal(m.created_ms, 1000);
	assert_string_equal(m.gguf.architecture, "");
	assert_int_equal(m.nfiles, 1);
	assert_string_equal(m.files[0].path, "old.gguf");
	catalog_model_cleanup(&m);
	struct catalog_job j;
	assert_int_equal(catalog_job_get(c, "job-old", &j, &e), 0);
	assert_int_equal(j.state, JOB_SUCCEEDED);
	catalog_job_cleanup(&j);
	/* What version 2 added works. */
	struct byte_range r = {0, 10};
	assert_int_equal(catalog_partial_save(c, "models--o--r", hex('d'), 100, &r, 1, &e), 0);
	/* Version 3: the blob keeps its name and is rbee-hive's, not yet verified. */
	struct catalog_blob b;
	assert_int_equal(catalog_blob_get(c, "models--o--r", hex('c'), &b, &e), 0);
	assert_int_equal(b.size, 5);
	assert_int_equal(b.adopted, 0);
	assert_int_equal(b.verified_ms, 0);
	/* Version 4: a model from before gating was recorded is of unknown gating. */
	struct catalog_repo rp;
	assert_int_equal(catalog_repo_snapshot(c, "o/r", COMMIT, &rp, &e), 0);
	assert_int_equal(rp.gated, CATALOG_GATED_UNKNOWN);
	catalog_repo_cleanup(&rp);
	/* Version 6: a model from a registry is recorded beside the old ones. */
	struct catalog_file of = {.path = "model.gguf", .size = 5};
	memcpy(of.sha256, hex('e'), 65);
	struct catalog_model om = {
	    .id = "ollama:x:1b",
	    .source = CATALOG_SRC_OCI,
	    .repo = "ollama:x",
	    .revision = "1b",
	    .commit = COMMIT,
	    .repo_dir = "oci--r--library--x",
	    .status = CATALOG_AVAILABLE,
	    .error = "",
	    .nfiles = 1,
	    .files = &of,
	    .size = 5,
	};
	struct catalog_removal rm = {0};
	assert_int_equal(catalog_model_put(c, &om, &rm, &e), 0);
	catalog_removal_cleanup(&rm);
	assert_int_equal(catalog_model_get(c, "ollama:x:1b", &m, &e), 0);
	assert_int_equal(m.source, CATALOG_SRC_OCI);
	catalog_model_cleanup(&m);
	/* The old model kept its file row through the rebuild, and deleting it still cascades. */
	assert_int_equal(catalog_model_delete(c, "hf:o/r:old.gguf", &rm, &e), 0);
	assert_int_equal(rm.nblobs, 1);
	assert_int_equal(rm.npaths, 1);
	catalog_removal_cleanup(&rm);
	catalog_close(c);

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_stmt *st;
	sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(st, 0), CATALOG_SCHEMA_VERSION);
	sqlite3_finalize(st);
	/* A catalog from a newer release is refused, not damaged. */
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(catalog_open(path, &c, &e), ERR_CONFLICT);
	assert_non_null(strstr(e.msg, "newer"));
	assert_null(c);

	/* A file that is not a database says so. */
	snprintf(path, sizeof path, "%s/garbage.db", x->dir);
	FILE *f = fopen(path, "w");
	for (int i = 0; i < 1000; i++)
		fputs("this is not sqlite ", f);
	fclose(f);
	assert_int_equal(catalog_open(path, &c, &e), ERR_CORRUPT);
	assert_non_null(strstr(e.msg, "garbage.db"));
	snprintf(path, sizeof path, "%s/no/such/dir/c.db", x->dir);
	assert_int_equal(catalog_open(path, &c, &e), ERR_IO);
	assert_non_null(strstr(e.msg, "no/such/dir"));
}

static void test_interrupted_write(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *p[] = {"a.gguf"};
	const char *s[] = {hex('a')};
	put_simple(x->c, "hf:o/r:a.gguf", "models--o--r", p, s, 1);
	catalog_close(x->c);
	x->c = NULL;

	/* A process dies in the middle of a transaction that wrote a model and
	 * changed another: neither change may be visible afterwards. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		sqlite3 *db;
		if (sqlite3_open(x->db, &db) != SQLITE_OK)
			_exit(2);
		const char *sql =
		    "BEGIN IMMEDIATE;"
		    "INSERT INTO models(id, source, repo, repo_dir, status, created_ms, updated_ms)"
		    " VALUES('hf:o/r:half.gguf', 'hf', 'o/r', 'models--o--r', 'downloading', 1, 1);"
		    "UPDATE models SET status = 'failed' WHERE id = 'hf:o/r:a.gguf';";
		if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
			_exit(3);
		_exit(0); /* no COMMIT, no close */
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	assert_int_equal(catalog_open(x->db, &x->c, &e), 0);
	struct catalog_model m;
	assert_int_equal(catalog_model_get(x->c, "hf:o/r:half.gguf", &m, &e), ERR_NOT_FOUND);
	assert_int_equal(catalog_model_get(x->c, "hf:o/r:a.gguf", &m, &e), 0);
	assert_int_equal(m.status, CATALOG_AVAILABLE);
	catalog_model_cleanup(&m);
	/* The writer's lock died with it: writing works at once. */
	int64_t t0 = now_ms();
	put_simple(x->c, "hf:o/r:b.gguf", "models--o--r", p, s, 1);
	assert_true(now_ms() - t0 < CATALOG_BUSY_TIMEOUT_MS);
}

/* The state of a multipart upload: kept per blob and store, replaced, forgotten. */
static void test_uploads(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	struct catalog_upload u = {.part_size = 5 << 20, .etags = (char *)""};
	snprintf(u.upload_id, sizeof u.upload_id, "2~abc");
	struct catalog_upload got;
	assert_int_equal(catalog_upload_get(x->c, hex('a'), "http://s/b/k", &got, &e),
			 ERR_NOT_FOUND);
	assert_int_equal(catalog_upload_put(x->c, hex('a'), "http://s/b/k", &u, &e), 0);
	u.etags = (char *)"\"e1\"\n\"e2\"";
	assert_int_equal(catalog_upload_put(x->c, hex('a'), "http://s/b/k", &u, &e), 0);
	assert_int_equal(catalog_upload_get(x->c, hex('a'), "http://s/b/k", &got, &e), 0);
	assert_string_equal(got.upload_id, "2~abc");
	assert_int_equal(got.part_size, 5 << 20);
	assert_string_equal(got.etags, "\"e1\"\n\"e2\"");
	free(got.etags);
	/* Another store's state is its own. */
	assert_int_equal(catalog_upload_get(x->c, hex('a'), "http://other/b/k", &got, &e),
			 ERR_NOT_FOUND);
	assert_int_equal(catalog_upload_delete(x->c, hex('a'), "http://s/b/k", &e), 0);
	assert_int_equal(catalog_upload_get(x->c, hex('a'), "http://s/b/k", &got, &e),
			 ERR_NOT_FOUND);
	assert_int_equal(catalog_upload_put(x->c, "nothex", "http://s/b/k", &u, &e), ERR_INVALID);
}

/* Loads the partial of hex('f') in "models--o--r" and returns its done bytes (-1: none). */
static long long fresh_loaded(struct fx *x)
{
	uint64_t total = 0;
	struct byte_range *r = NULL;
	size_t n = 0;
	struct err e = {0};
	if (catalog_partial_load(x->c, "models--o--r", hex('f'), &total, &r, &n, &e) != 0)
		return -1;
	long long done = 0;
	for (size_t i = 0; i < n; i++)
		done += (long long)(r[i].end - r[i].start);
	free(r);
	return done;
}

/* The path of the fresh state file of hex('f') in "models--o--r". */
static void fresh_path(struct fx *x, char *out, size_t size)
{
	char name[65];
	catalog_fresh_name("models--o--r", hex('f'), name);
	snprintf(out, size, "%s/resume-fresh/%s", x->dir, name);
}

/* Writes a whole record of ranges [0, done) under boot into slot (0 or 1) of the fresh file. */
static void put_fresh_record(struct fx *x, const char *boot, uint64_t seq, uint64_t total,
			     uint64_t done, int slot)
{
	unsigned char r[16], rec[4096];
	for (int i = 0; i < 8; i++) {
		r[i] = 0;
		r[8 + i] = (unsigned char)(done >> (8 * i));
	}
	size_t n = catalog_fresh_record(boot, seq, total, r, 16, rec);
	char path[PATH_MAX + 80];
	fresh_path(x, path, sizeof path);
	int fd = open(path, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	/* The slots are CATALOG_FRESH_RANGES_MAX + 136 bytes apart. */
	off_t at = slot ? (off_t)(8 + 3 * 8 + BOOT_ID_LEN + CATALOG_FRESH_RANGES_MAX + 64) : 0;
	assert_int_equal(pwrite(fd, rec, n, at), (ssize_t)n);
	close(fd);
}

/* Flips one byte of the fresh file at off. */
static void damage_fresh(struct fx *x, off_t off)
{
	char path[PATH_MAX + 80];
	fresh_path(x, path, sizeof path);
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	unsigned char c;
	assert_int_equal(pread(fd, &c, 1, off), 1);
	c ^= 0x5a;
	assert_int_equal(pwrite(fd, &c, 1, off), 1);
	close(fd);
}

/*
 * Ranges saved without a sync hold while the system has not restarted:
 * they are kept in a file of their own beside the database, win over the
 * synced ones under the same boot id, and give way to them under another
 * one (a restart: the page cache that held their bytes is gone), when
 * damaged, or when the row is for another size. Of the two slots the
 * latest whole one counts, so a write cut by a kill leaves the one before.
 */
static void test_partials_fresh(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *dir = "models--o--r";
	if (!boot_id()[0])
		skip();
	char path[PATH_MAX + 80];
	fresh_path(x, path, sizeof path);
	struct stat st;
	struct byte_range synced = {0, 100}, fresh = {0, 700}, fresher = {0, 800};
	/* The first fresh save also makes the row, with no synced ranges yet. */
	assert_int_equal(catalog_partial_save_fresh(x->c, dir, hex('f'), 1000, &fresh, 1, &e), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(fresh_loaded(x), 700);
	struct catalog_partial *list = NULL;
	size_t n = 0;
	assert_int_equal(catalog_partial_list(x->c, &list, &n, &e), 0);
	assert_int_equal(n, 1);
	free(list);
	/* Another boot's state: gone with a restart, and its file with it. */
	put_fresh_record(x, "another-boot", 1, 1000, 900, 0);
	put_fresh_record(x, "another-boot", 2, 1000, 900, 1);
	assert_int_equal(fresh_loaded(x), 0);
	assert_int_equal(stat(path, &st), -1);
	/* Fresh and synced: the fresh state wins under this boot. */
	assert_int_equal(catalog_partial_save(x->c, dir, hex('f'), 1000, &synced, 1, &e), 0);
	assert_int_equal(catalog_partial_save_fresh(x->c, dir, hex('f'), 1000, &fresh, 1, &e), 0);
	assert_int_equal(catalog_partial_save_fresh(x->c, dir, hex('f'), 1000, &fresher, 1, &e), 0);
	assert_int_equal(fresh_loaded(x), 800);
	/* A cut write of the latest slot (0 here) leaves the slot before it. */
	damage_fresh(x, 0);
	assert_int_equal(fresh_loaded(x), 700);
	put_fresh_record(x, boot_id(), (uint64_t)now_us() + 1000000, 1000, 900, 0);
	assert_int_equal(fresh_loaded(x), 900);
	damage_fresh(x, 60);
	assert_int_equal(fresh_loaded(x), 700);
	/* Both damaged: the synced ranges. */
	damage_fresh(x, 8 + 3 * 8 + BOOT_ID_LEN + CATALOG_FRESH_RANGES_MAX + 64 + 70);
	assert_int_equal(fresh_loaded(x), 100);
	/* A row of another size: the fresh state of the old one does not count. */
	assert_int_equal(catalog_partial_save_fresh(x->c, dir, hex('f'), 1000, &fresh, 1, &e), 0);
	assert_int_equal(catalog_partial_save(x->c, dir, hex('f'), 2000, &synced, 1, &e), 0);
	assert_int_equal(fresh_loaded(x), 100);
	/* The first fresh save of another size drops the synced ranges of the old one. */
	assert_int_equal(catalog_partial_delete(x->c, dir, hex('f'), &e), 0);
	assert_int_equal(stat(path, &st), -1);
	assert_int_equal(catalog_partial_save(x->c, dir, hex('f'), 2000, &synced, 1, &e), 0);
	assert_int_equal(catalog_partial_save_fresh(x->c, dir, hex('f'), 3000, &fresh, 1, &e), 0);
	assert_int_equal(fresh_loaded(x), 700);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(fresh_loaded(x), 0);
	/* Saves leave the connection syncing its commits. */
	int64_t sync_level = -1;
	assert_int_equal(catalog_query_int(x->c, "PRAGMA synchronous", NULL, 0, &sync_level,
					   "read synchronous", &e),
			 0);
	assert_int_equal(sync_level, 2);
	/* A symlink in place of the file is not written through. */
	char target[PATH_MAX + 16];
	snprintf(target, sizeof target, "%s/elsewhere", x->dir);
	assert_int_equal(symlink(target, path), 0);
	assert_int_not_equal(catalog_partial_save_fresh(x->c, dir, hex('f'), 3000, &fresh, 1, &e),
			     0);
	assert_int_equal(stat(target, &st), -1);
}

/* Sets the times of the file at path to age_s seconds ago. */
static void age_file(const char *path, int age_s)
{
	struct timespec t[2];
	clock_gettime(CLOCK_REALTIME, &t[0]);
	t[0].tv_sec -= age_s;
	t[1] = t[0];
	assert_int_equal(utimensat(AT_FDCWD, path, t, AT_SYMLINK_NOFOLLOW), 0);
}

/*
 * The startup sweep removes the fresh states nothing can use: of another
 * boot, or of no partial (a crash between the file and its row). It keeps
 * the state of a partial of this boot, a file changed in the last minute
 * (a save under way), and every name that is not one of its own.
 */
static void test_fresh_sweep(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	if (!boot_id()[0])
		skip();
	struct byte_range r = {0, 700};
	char kept[PATH_MAX + 80], other_boot[PATH_MAX + 80], orphan[PATH_MAX + 80],
	    young[PATH_MAX + 80], foreign[PATH_MAX + 80], name[65];
	/* Nothing to sweep before the folder exists. */
	assert_int_equal(catalog_fresh_sweep(x->c, &e), 0);
	/* A partial of this boot (hex('f') in models--o--r, the helpers' file). */
	assert_int_equal(
	    catalog_partial_save_fresh(x->c, "models--o--r", hex('f'), 1000, &r, 1, &e), 0);
	fresh_path(x, kept, sizeof kept);
	/* A partial whose file holds another boot's state only. */
	assert_int_equal(
	    catalog_partial_save_fresh(x->c, "models--o--s", hex('b'), 1000, &r, 1, &e), 0);
	catalog_fresh_name("models--o--s", hex('b'), name);
	snprintf(other_boot, sizeof other_boot, "%s/resume-fresh/%s", x->dir, name);
	unsigned char rec[4096], ranges[16] = {0};
	size_t n = catalog_fresh_record("another-boot", 1, 1000, ranges, 16, rec);
	int fd = open(other_boot, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, rec, n), (ssize_t)n);
	close(fd);
	/* States of no partial: an old one and one just written. */
	assert_int_equal(
	    catalog_partial_save_fresh(x->c, "models--o--t", hex('c'), 1000, &r, 1, &e), 0);
	assert_int_equal(
	    catalog_partial_save_fresh(x->c, "models--o--t", hex('d'), 1000, &r, 1, &e), 0);
	catalog_fresh_name("models--o--t", hex('c'), name);
	snprintf(orphan, sizeof orphan, "%s/resume-fresh/%s", x->dir, name);
	catalog_fresh_name("models--o--t", hex('d'), name);
	snprintf(young, sizeof young, "%s/resume-fresh/%s", x->dir, name);
	assert_int_equal(sqlite3_exec(x->c->db,
				      "DELETE FROM partials WHERE repo_dir = 'models--o--t'", NULL,
				      NULL, NULL),
			 SQLITE_OK);
	/* A name the catalog never makes. */
	snprintf(foreign, sizeof foreign, "%s/resume-fresh/notes.txt", x->dir);
	fd = open(foreign, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	age_file(kept, 120);
	age_file(other_boot, 120);
	age_file(orphan, 120);
	age_file(foreign, 120);
	assert_int_equal(catalog_fresh_sweep(x->c, &e), 2);
	struct stat st;
	assert_int_equal(stat(kept, &st), 0);
	assert_int_equal(stat(young, &st), 0);
	assert_int_equal(stat(foreign, &st), 0);
	assert_int_equal(stat(other_boot, &st), -1);
	assert_int_equal(stat(orphan, &st), -1);
	assert_int_equal(fresh_loaded(x), 700);
	/* Once the young one has aged, it goes too. */
	age_file(young, 120);
	assert_int_equal(catalog_fresh_sweep(x->c, &e), 1);
	assert_int_equal(stat(young, &st), -1);
}

/* Rows of partials for this sha256 in the database file alone, as a copy of it without its WAL. */
static int64_t partial_rows_in_db_file(struct fx *x, const char *sha256)
{
	char copy[PATH_MAX + 8];
	snprintf(copy, sizeof copy, "%s.copy", x->db);
	FILE *in = fopen(x->db, "rb"), *out = fopen(copy, "wb");
	assert_non_null(in);
	assert_non_null(out);
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, in)) > 0)
		assert_int_equal(fwrite(buf, 1, n, out), n);
	fclose(in);
	assert_int_equal(fclose(out), 0);
	sqlite3 *db;
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_open(copy, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM partials WHERE sha256 = ?1",
					    -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(st, 1, sha256, -1, SQLITE_TRANSIENT);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int64_t rows = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	char side[PATH_MAX + 16];
	unlink(copy);
	snprintf(side, sizeof side, "%s-wal", copy);
	unlink(side);
	snprintf(side, sizeof side, "%s-shm", copy);
	unlink(side);
	return rows;
}

/*
 * Neither save waits for the disk while it holds the write lock; a synced
 * save is made durable after its commit by a checkpoint, so its row is in
 * the database file itself, while a fresh save's stays in the WAL.
 */
static void test_partials_synced_checkpointed(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *dir = "models--o--r";
	struct byte_range r = {0, 100};
	assert_int_equal(catalog_partial_save(x->c, dir, hex('a'), 1000, &r, 1, &e), 0);
	assert_int_equal(partial_rows_in_db_file(x, hex('a')), 1);
	assert_int_equal(catalog_partial_save_fresh(x->c, dir, hex('b'), 1000, &r, 1, &e), 0);
	assert_int_equal(partial_rows_in_db_file(x, hex('b')), 0);
	assert_int_equal(catalog_partial_save(x->c, dir, hex('b'), 1000, &r, 1, &e), 0);
	assert_int_equal(partial_rows_in_db_file(x, hex('b')), 1);
	int64_t sync_level = -1;
	assert_int_equal(catalog_query_int(x->c, "PRAGMA synchronous", NULL, 0, &sync_level,
					   "read synchronous", &e),
			 0);
	assert_int_equal(sync_level, 2);
}

static void test_partials(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *dir = "models--o--r";
	struct byte_range in[] = {{200, 300}, {0, 100}, {50, 150}, {300, 400}, {900, 1000}};
	assert_int_equal(catalog_partial_save(x->c, dir, hex('a'), 1000, in, 5, &e), 0);
	uint64_t total = 0;
	struct byte_range *r;
	size_t n;
	assert_int_equal(catalog_partial_load(x->c, dir, hex('a'), &total, &r, &n, &e), 0);
	assert_int_equal(total, 1000);
	assert_int_equal(n, 3);
	assert_int_equal(r[0].start, 0);
	assert_int_equal(r[0].end, 150);
	assert_int_equal(r[1].start, 200);
	assert_int_equal(r[1].end, 400);
	assert_int_equal(r[2].start, 900);
	free(r);

	/* Saving again replaces the state. */
	struct byte_range all = {0, 1000};
	assert_int_equal(catalog_partial_save(x->c, dir, hex('a'), 1000, &all, 1, &e), 0);
	assert_int_equal(catalog_partial_save(x->c, "urls--host", hex('b'), 10, NULL, 0, &e), 0);
	struct catalog_partial *list;
	assert_int_equal(catalog_partial_list(x->c, &list, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].repo_dir, dir);
	assert_int_equal(list[0].done_bytes, 1000);
	assert_string_equal(list[1].repo_dir, "urls--host");
	assert_int_equal(list[1].done_bytes, 0);
	assert_int_equal(list[1].total_size, 10);
	free(list);

	struct byte_range bad = {10, 2000};
	assert_int_equal(catalog_partial_save(x->c, dir, hex('a'), 1000, &bad, 1, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "beyond"));
	bad = (struct byte_range){5, 5};
	assert_int_equal(catalog_partial_save(x->c, dir, hex('a'), 1000, &bad, 1, &e), ERR_INVALID);
	assert_int_equal(catalog_partial_save(x->c, "../x", hex('a'), 1000, NULL, 0, &e),
			 ERR_INVALID);

	assert_int_equal(catalog_partial_delete(x->c, dir, hex('a'), &e), 0);
	assert_int_equal(catalog_partial_delete(x->c, dir, hex('a'), &e), 0);
	assert_int_equal(catalog_partial_load(x->c, dir, hex('a'), &total, &r, &n, &e),
			 ERR_NOT_FOUND);

	/* Damaged stored ranges are reported, not trusted. */
	sqlite3 *db;
	assert_int_equal(sqlite3_open(x->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
				      "UPDATE partials SET ranges = x'0102030405' WHERE repo_dir ="
				      " 'urls--host'",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(catalog_partial_load(x->c, "urls--host", hex('b'), &total, &r, &n, &e),
			 ERR_CORRUPT);
	assert_null(r);
}

static void job_put(struct catalog *c, const char *id, enum job_state st, int64_t created,
		    int64_t updated)
{
	struct catalog_job j = {
	    .id = (char *)id,
	    .operation = (char *)"model_download",
	    .model_ref = (char *)"org/repo",
	    .state = st,
	    .created_ms = created,
	    .updated_ms = updated,
	};
	struct err e = {0};
	assert_int_equal(catalog_job_put(c, &j, &e), 0);
}

static void test_jobs(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	int64_t now = wall_ms();
	job_put(x->c, "job-1", JOB_SUCCEEDED, now - 100000, now - 90000);
	job_put(x->c, "job-2", JOB_RUNNING, now - 5000, now - 4000);
	job_put(x->c, "job-3", JOB_FAILED, now - 3000, now - 2000);
	job_put(x->c, "job-4", JOB_QUEUED, now - 1000, now - 1000);

	struct catalog_job j = {
	    .id = (char *)"job-2",
	    .operation = (char *)"model_download",
	    .state = JOB_RUNNING,
	    .progress_json = (char *)"{\"bytes_done\":5}",
	    .created_ms = 1, /* ignored on update */
	};
	assert_int_equal(catalog_job_put(x->c, &j, &e), 0);
	struct catalog_job g;
	assert_int_equal(catalog_job_get(x->c, "job-2", &g, &e), 0);
	assert_int_equal(g.created_ms, now - 5000);
	assert_string_equal(g.progress_json, "{\"bytes_done\":5}");
	assert_string_equal(g.model_ref, "");
	catalog_job_cleanup(&g);
	assert_int_equal(catalog_job_get(x->c, "job-none", &g, &e), ERR_NOT_FOUND);
	assert_non_null(strstr(e.msg, "job-none"));

	struct catalog_job *list;
	size_t n;
	assert_int_equal(catalog_job_list(x->c, NULL, 0, &list, &n, &e), 0);
	assert_int_equal(n, 4);
	assert_string_equal(list[0].id, "job-4"); /* newest first */
	assert_string_equal(list[3].id, "job-1");
	catalog_job_list_free(list, n);
	assert_int_equal(catalog_job_list(x->c, &(enum job_state){JOB_FAILED}, 0, &list, &n, &e),
			 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].id, "job-3");
	catalog_job_list_free(list, n);
	assert_int_equal(catalog_job_list(x->c, NULL, 2, &list, &n, &e), 0);
	assert_int_equal(n, 2);
	catalog_job_list_free(list, n);

	/* Startup after a crash: running and queued jobs become interrupted. */
	assert_int_equal(catalog_jobs_mark_interrupted(x->c, &list, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].id, "job-2");
	assert_int_equal(list[0].state, JOB_INTERRUPTED);
	assert_string_equal(list[1].id, "job-4");
	catalog_job_list_free(list, n);
	assert_int_equal(catalog_job_get(x->c, "job-4", &g, &e), 0);
	assert_int_equal(g.state, JOB_INTERRUPTED);
	catalog_job_cleanup(&g);
	assert_int_equal(catalog_jobs_mark_interrupted(x->c, NULL, NULL, &e), 0);

	/* Prune: old finished jobs go; unfinished ones always stay. */
	job_put(x->c, "job-5", JOB_RUNNING, now - 200000, now - 200000);
	size_t removed = 0;
	assert_int_equal(catalog_job_prune(x->c, 60000, 0, &removed, &e), 0);
	assert_int_equal(removed, 1); /* job-1 */
	assert_int_equal(catalog_job_get(x->c, "job-5", &g, &e), 0);
	catalog_job_cleanup(&g);
	assert_int_equal(catalog_job_prune(x->c, 0, 1, &removed, &e), 0);
	assert_int_equal(removed, 2); /* of job-2, job-3, job-4 the newest stays */
	assert_int_equal(catalog_job_list(x->c, NULL, 0, &list, &n, &e), 0);
	assert_int_equal(n, 2);
	catalog_job_list_free(list, n);

	struct catalog_job bad = {.id = (char *)"", .operation = (char *)"x", .state = JOB_RUNNING};
	assert_int_equal(catalog_job_put(x->c, &bad, &e), ERR_INVALID);
	enum job_state st;
	assert_int_equal(job_state_parse("interrupted", &st), 0);
	assert_int_equal(st, JOB_INTERRUPTED);
	assert_int_equal(job_state_parse("queued", &st), 0);
	assert_int_equal(st, JOB_QUEUED);
	assert_int_equal(job_state_parse("bogus", &st), ERR_INVALID);
	assert_string_equal(job_state_name(JOB_QUEUED), "queued");
	assert_string_equal(job_state_name(JOB__STATES), "unknown");
	/* One final-state rule: an interrupted job is final (kept until pruned). */
	assert_true(job_state_final(JOB_CANCELLED));
	assert_true(job_state_final(JOB_INTERRUPTED));
	assert_false(job_state_final(JOB_RUNNING));
	assert_false(job_state_final(JOB_QUEUED));
	struct catalog_job odd = {
	    .id = (char *)"job-x", .operation = (char *)"x", .state = JOB__STATES};
	assert_int_equal(catalog_job_put(x->c, &odd, &e), ERR_INVALID);
}

struct writer {
	const char *db;
	int base;
	int rc;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct catalog *c;
	struct err e = {0};
	w->rc = catalog_open(w->db, &c, &e);
	if (w->rc)
		return NULL;
	for (int i = 0; i < 40 && !w->rc; i++) {
		char id[64], path[64];
		snprintf(id, sizeof id, "hf:o/r:w%d-%d.gguf", w->base, i);
		snprintf(path, sizeof path, "w%d-%d.gguf", w->base, i);
		struct catalog_file f = {.path = path, .size = 1};
		memset(f.sha256, 'e', 64);
		struct catalog_model m = {
		    .id = id,
		    .source = CATALOG_SRC_HF,
		    .repo = (char *)"o/r",
		    .commit = (char *)COMMIT,
		    .repo_dir = (char *)"models--o--r",
		    .status = CATALOG_AVAILABLE,
		    .files = &f,
		    .nfiles = 1,
		};
		w->rc = catalog_model_put(c, &m, NULL, &e);
	}
	catalog_close(c);
	return NULL;
}

static void test_concurrent_writers(void **state)
{
	struct fx *x = *state;
	struct writer w[3];
	pthread_t t[3];
	for (int i = 0; i < 3; i++) {
		w[i] = (struct writer){.db = x->db, .base = i};
		assert_int_equal(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
	}
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].rc, 0);
	}
	size_t n;
	struct err e = {0};
	assert_int_equal(catalog_model_totals(x->c, &n, NULL, &e), 0);
	assert_int_equal(n, 120);
	size_t refs;
	assert_int_equal(catalog_blob_refcount(x->c, "models--o--r", hex('e'), &refs, &e), 0);
	assert_int_equal(refs, 120);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_open_schema, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_put_get, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_atomic_put, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_list, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_list_10000, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_find, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delete_shared, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_adopted_files_are_not_removed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fresh_catalog_log, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migrate, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_interrupted_write, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_partials, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_partials_fresh, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fresh_sweep, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_partials_synced_checkpointed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_uploads, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_jobs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
