/*
 * The catalog's models a page at a time (job_models_list_json): page
 * fields, the bounds of limit and offset, each model with its own files,
 * pages found through the page index across its marks, and
 * many threads listing at once over the registry's connection pool; the pool
 * itself (job_persist_pool_*).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/util.h"
#include "jobs/job.h"
#include "jobs/persist.h"
#include "store/catalog.h"
#include "test_store_tmp.h"

#define NMODELS 7

/* Puts "hf:org/<stem>-GGUF:<its first file>" into the catalog. */
static void put_model(struct catalog *c, const char *stem, struct catalog_file *files,
		      size_t nfiles)
{
	char id[128], repo[64], dir[96];
	snprintf(id, sizeof(id), "hf:org/%s-GGUF:%s", stem, files[0].path);
	snprintf(repo, sizeof(repo), "org/%s-GGUF", stem);
	snprintf(dir, sizeof(dir), "models--org--%s-GGUF", stem);
	struct catalog_model m = {
	    .id = id,
	    .source = CATALOG_SRC_HF,
	    .repo = repo,
	    .revision = "main",
	    .commit = "0123456789abcdef0123456789abcdef01234567",
	    .repo_dir = dir,
	    .status = CATALOG_AVAILABLE,
	    .size = 100u * nfiles,
	    .error = "",
	    .files = files,
	    .nfiles = nfiles,
	};
	struct err e;
	err_clear(&e);
	if (catalog_model_put(c, &m, NULL, &e) != 0)
		fail_msg("catalog_model_put: %s", e.msg);
}

/* Model i: "hf:org/m<i>-GGUF:m<i>.gguf" with i + 1 files. */
static void fill(const char *root, int n)
{
	struct catalog *c = store_tmp_catalog(root);
	for (int i = 0; i < n; i++) {
		char stem[32], paths[NMODELS][32];
		struct catalog_file files[NMODELS] = {0};
		snprintf(stem, sizeof(stem), "m%d", i);
		for (int k = 0; k <= i; k++) {
			snprintf(paths[k], sizeof(paths[k]), k ? "m%d-%d.gguf" : "m%d.gguf", i, k);
			files[k].path = paths[k];
			snprintf(files[k].sha256, sizeof(files[k].sha256), "%064x", i * 16 + k + 1);
			files[k].size = 100;
		}
		put_model(c, stem, files, (size_t)i + 1);
	}
	catalog_close(c);
}

/* Models from..to-1, "hf:org/big<i, 3 digits>-GGUF:x.gguf" (so id order is i's), one file each. */
static void fill_many(const char *root, int from, int to)
{
	struct catalog *c = store_tmp_catalog(root);
	for (int i = from; i < to; i++) {
		char stem[32];
		snprintf(stem, sizeof(stem), "big%03d", i);
		struct catalog_file file = {.path = "x.gguf", .size = 100};
		snprintf(file.sha256, sizeof(file.sha256), "%064x", i + 1);
		put_model(c, stem, &file, 1);
	}
	catalog_close(c);
}

static struct job_registry *open_reg_kept(const char *root, size_t kept_bytes)
{
	struct job_registry_config cfg = {.data_root = root, .models_kept_bytes = kept_bytes};
	struct job_registry *r = NULL;
	struct err e;
	err_clear(&e);
	if (job_registry_new(&cfg, &r, &e) != 0)
		fail_msg("job_registry_new: %s", e.msg);
	return r;
}

static struct job_registry *open_reg(const char *root)
{
	return open_reg_kept(root, 0);
}

static json_int_t page_int(const json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	assert_true(json_is_integer(v));
	return json_integer_value(v);
}

/* The page as a parsed JSON object, or NULL with *rc set. */
static json_t *models_page(struct job_registry *r, size_t offset, size_t limit, int *rc,
			   struct err *e)
{
	char *text = NULL;
	size_t len = 0;
	*rc = job_models_list_text(r, offset, limit, &text, &len, e);
	if (*rc < 0) {
		assert_null(text);
		return NULL;
	}
	assert_int_equal(strlen(text), len);
	assert_true(len > 0 && text[len - 1] == '\n');
	json_t *o = json_loadb(text, len, 0, NULL);
	assert_non_null(o);
	free(text);
	return o;
}

/* The page, which must be answered. */
static json_t *models_page_ok(struct job_registry *r, size_t offset, size_t limit)
{
	struct err e;
	err_clear(&e);
	int rc;
	json_t *o = models_page(r, offset, limit, &rc, &e);
	if (rc != 0)
		fail_msg("job_models_list_text: %s", e.msg);
	return o;
}

/* Lists [offset, offset + limit) and checks the page fields; returns the models. */
static size_t list_page(struct job_registry *r, size_t offset, size_t limit, json_int_t next)
{
	json_t *o = models_page_ok(r, offset, limit);
	assert_int_equal(page_int(o, "total"), NMODELS);
	assert_int_equal(page_int(o, "offset"), (json_int_t)offset);
	assert_int_equal(page_int(o, "limit"), (json_int_t)limit);
	json_t *nx = json_object_get(o, "next_offset");
	if (next < 0)
		assert_true(json_is_null(nx));
	else
		assert_int_equal(page_int(o, "next_offset"), next);
	json_t *models = json_object_get(o, "models");
	size_t i;
	json_t *m;
	json_array_foreach(models, i, m)
	{
		/* Ids sort as m0 < m1 < ...; model k has k + 1 files, the first named after it. */
		char want[128], path[32];
		int k = (int)(offset + i);
		snprintf(want, sizeof(want), "hf:org/m%d-GGUF:m%d.gguf", k, k);
		snprintf(path, sizeof(path), "m%d.gguf", k);
		assert_string_equal(json_string_value(json_object_get(m, "id")), want);
		json_t *files = json_object_get(m, "files");
		assert_int_equal(json_array_size(files), (size_t)k + 1);
		assert_string_equal(
		    json_string_value(json_object_get(json_array_get(files, 0), "path")), path);
	}
	size_t n = json_array_size(models);
	json_decref(o);
	return n;
}

static void test_pages(void **state)
{
	(void)state;
	char root[256];
	assert_int_equal(store_tmp_make("rbee-jobs-models", root, sizeof(root)), 0);
	fill(root, NMODELS);
	struct job_registry *r = open_reg(root);
	assert_int_equal(list_page(r, 0, 3, 3), 3);
	assert_int_equal(list_page(r, 3, 3, 6), 3);
	assert_int_equal(list_page(r, 6, 3, -1), 1);
	assert_int_equal(list_page(r, 4, 3, -1), 3); /* ends exactly at the last model */
	assert_int_equal(list_page(r, 0, NMODELS, -1), NMODELS);
	assert_int_equal(list_page(r, 0, CAP_MODELS_PAGE, -1), NMODELS);
	assert_int_equal(list_page(r, NMODELS, 1, -1), 0);
	assert_int_equal(list_page(r, CAP_CATALOG_MODELS, 5, -1), 0);

	struct err e;
	err_clear(&e);
	int rc;
	assert_null(models_page(r, 0, 0, &rc, &e));
	assert_int_equal(rc, ERR_INVALID);
	assert_non_null(strstr(e.msg, "limit"));
	assert_null(models_page(r, 0, CAP_MODELS_PAGE + 1, &rc, &e));
	assert_int_equal(rc, ERR_INVALID);
	assert_null(models_page(r, (size_t)CAP_CATALOG_MODELS + 1, 5, &rc, &e));
	assert_int_equal(rc, ERR_INVALID);
	assert_non_null(strstr(e.msg, "offset"));
	job_registry_free(r);
	store_tmp_remove(root);
}

static void test_no_data_root(void **state)
{
	(void)state;
	struct job_registry *r = open_reg(NULL);
	struct err e;
	err_clear(&e);
	int rc;
	json_t *o = models_page(r, 0, 10, &rc, &e);
	assert_int_equal(rc, 0);
	assert_int_equal(json_array_size(json_object_get(o, "models")), 0);
	assert_int_equal(page_int(o, "total"), 0);
	assert_true(json_is_null(json_object_get(o, "next_offset")));
	json_decref(o);
	job_registry_free(r);
}

struct lister {
	struct job_registry *r;
	int failures;
};

static void *lister_main(void *arg)
{
	struct lister *l = arg;
	for (int i = 0; i < 40; i++) {
		char *text = NULL;
		size_t len;
		struct err e;
		err_clear(&e);
		size_t off = (size_t)(i % NMODELS);
		json_t *o = NULL;
		if (job_models_list_text(l->r, off, 2, &text, &len, &e) == 0)
			o = json_loadb(text, len, 0, NULL);
		if (!o ||
		    json_array_size(json_object_get(o, "models")) != (off + 2 <= NMODELS ? 2 : 1))
			l->failures++;
		json_decref(o);
		free(text);
	}
	return NULL;
}

/*
 * Checks the page [offset, offset + limit) of a catalog whose models are
 * big<ids[0]>, big<ids[1]>, ... in id order.
 */
static void check_big_page(struct job_registry *r, const int *ids, size_t n, size_t offset,
			   size_t limit)
{
	json_t *o = models_page_ok(r, offset, limit);
	assert_int_equal(page_int(o, "total"), (json_int_t)n);
	json_t *models = json_object_get(o, "models");
	size_t want = offset >= n ? 0 : n - offset < limit ? n - offset : limit;
	if (json_array_size(models) != want)
		fail_msg("page at %zu, limit %zu: %zu models, want %zu", offset, limit,
			 json_array_size(models), want);
	for (size_t i = 0; i < want; i++) {
		char id[128];
		snprintf(id, sizeof(id), "hf:org/big%03d-GGUF:x.gguf", ids[offset + i]);
		const char *got =
		    json_string_value(json_object_get(json_array_get(models, i), "id"));
		if (strcmp(got, id) != 0)
			fail_msg("page at %zu, model %zu: %s, want %s", offset, i, got, id);
	}
	if (offset + limit < n)
		assert_int_equal(page_int(o, "next_offset"), (json_int_t)(offset + limit));
	else
		assert_true(json_is_null(json_object_get(o, "next_offset")));
	json_decref(o);
}

/*
 * Pages found through the page index (one id kept per 64 models): every
 * offset across several marks, pages that start on, just before and just
 * after a mark, past the end; and the index follows a change of the
 * catalog (a model removed before a mark shifts every later page).
 */
static void test_pages_by_index(void **state)
{
	(void)state;
	char root[256];
	assert_int_equal(store_tmp_make("rbee-jobs-models", root, sizeof(root)), 0);
	enum { N = 140 };
	fill_many(root, 0, N);
	int ids[N + 10];
	for (int i = 0; i < N; i++)
		ids[i] = i;
	struct job_registry *r = open_reg(root);
	for (size_t off = 0; off <= N + 1; off++)
		check_big_page(r, ids, N, off, 3);
	static const size_t offs[] = {0, 1, 63, 64, 65, 127, 128, 129, 139, 140, 5000};
	static const size_t lims[] = {1, 64, 100, CAP_MODELS_PAGE};
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++)
		for (size_t k = 0; k < sizeof(lims) / sizeof(lims[0]); k++)
			check_big_page(r, ids, N, offs[i], lims[k]);

	struct err e;
	err_clear(&e);
	json_t *del = NULL;
	assert_int_equal(job_model_delete(r, "hf:org/big010-GGUF:x.gguf", &del, &e), 0);
	json_decref(del);
	memmove(ids + 10, ids + 11, (N - 11) * sizeof(ids[0]));
	for (size_t off = 60; off <= 70; off++)
		check_big_page(r, ids, N - 1, off, 5);
	check_big_page(r, ids, N - 1, 138, 5);
	fill_many(root, N, N + 10); /* another connection adds ten at the end */
	ids[N - 1] = N;
	for (int i = 0; i < 10; i++)
		ids[N - 1 + i] = N + i;
	check_big_page(r, ids, N + 9, 128, 100);
	check_big_page(r, ids, N + 9, N + 8, 2);
	job_registry_free(r);
	store_tmp_remove(root);
}

static char *page_text(struct job_registry *r, size_t offset, size_t limit)
{
	char *text = NULL;
	size_t len = 0;
	struct err e;
	err_clear(&e);
	if (job_models_list_text(r, offset, limit, &text, &len, &e) != 0)
		fail_msg("job_models_list_text: %s", e.msg);
	assert_int_equal(strlen(text), len);
	return text;
}

/*
 * Pages are put together from the models kept serialised, by block of 64:
 * the same bytes as a page read from the catalog, at every offset and
 * limit, in any order, whether every block fits in the kept bytes, only
 * one does (each page then reads blocks again), or none is kept but the
 * one just read; and after a change of the catalog.
 */
static void test_pages_from_kept_models(void **state)
{
	(void)state;
	char root[256];
	assert_int_equal(store_tmp_make("rbee-jobs-models", root, sizeof(root)), 0);
	enum { N = 140 };
	fill_many(root, 0, N);
	int ids[N];
	for (int i = 0; i < N; i++)
		ids[i] = i;
	struct job_registry *all = open_reg(root);
	struct job_registry *one = open_reg_kept(root, 30000);
	struct job_registry *none = open_reg_kept(root, 1);
	static const size_t lims[] = {1, 3, 64, 65, 100, 130, CAP_MODELS_PAGE};
	unsigned seed = 7;
	for (int round = 0; round < 2; round++) {
		for (int k = 0; k < 30; k++) {
			seed = seed * 1103515245u + 12345u;
			size_t off = (seed >> 8) % (N + 5);
			size_t lim = lims[(seed >> 20) % (sizeof(lims) / sizeof(lims[0]))];
			/* The models the page must hold, then the same bytes from all three. */
			check_big_page(all, ids, round ? N - 1 : N, off, lim);
			char *a = page_text(all, off, lim), *b = page_text(one, off, lim),
			     *c = page_text(none, off, lim);
			assert_string_equal(a, b);
			assert_string_equal(a, c);
			free(a);
			free(b);
			free(c);
		}
		/* Another connection removes a model: every kept block is dropped. */
		struct err e;
		err_clear(&e);
		json_t *del = NULL;
		if (round == 0) {
			assert_int_equal(
			    job_model_delete(one, "hf:org/big070-GGUF:x.gguf", &del, &e), 0);
			json_decref(del);
			memmove(ids + 70, ids + 71, (N - 71) * sizeof(ids[0]));
		}
	}
	job_registry_free(all);
	job_registry_free(one);
	job_registry_free(none);
	store_tmp_remove(root);
}

/* More threads than the pool keeps idle: each gets a connection of its own. */
static void test_threads_share_the_pool(void **state)
{
	(void)state;
	char root[256];
	assert_int_equal(store_tmp_make("rbee-jobs-models", root, sizeof(root)), 0);
	fill(root, NMODELS);
	struct job_registry *r = open_reg(root);
	enum { NT = 24 };
	pthread_t t[NT];
	struct lister l[NT];
	for (int i = 0; i < NT; i++) {
		l[i] = (struct lister){r, 0};
		assert_int_equal(pthread_create(&t[i], NULL, lister_main, &l[i]), 0);
	}
	for (int i = 0; i < NT; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(l[i].failures, 0);
	}
	job_registry_free(r);
	store_tmp_remove(root);
}

/* A kept page is answered again only while no connection has committed to the catalog. */
static void test_pages_follow_changes(void **state)
{
	(void)state;
	char root[256];
	assert_int_equal(store_tmp_make("rbee-jobs-models", root, sizeof(root)), 0);
	fill(root, 2);
	struct job_registry *r = open_reg(root);
	struct err e;
	err_clear(&e);
	int rc;
	for (int round = 0; round < 3; round++) {
		json_t *o = models_page(r, 0, 10, &rc, &e);
		assert_int_equal(rc, 0);
		assert_int_equal(page_int(o, "total"), 2);
		json_decref(o);
	}
	fill(root, 3); /* another connection adds m2 */
	json_t *o = models_page(r, 0, 10, &rc, &e);
	assert_int_equal(page_int(o, "total"), 3);
	assert_int_equal(json_array_size(json_object_get(o, "models")), 3);
	json_decref(o);
	/* A delete through the registry's own pool is seen too. */
	json_t *del = NULL;
	assert_int_equal(job_model_delete(r, "hf:org/m1-GGUF:m1.gguf", &del, &e), 0);
	json_decref(del);
	o = models_page(r, 0, 10, &rc, &e);
	assert_int_equal(page_int(o, "total"), 2);
	assert_string_equal(json_string_value(json_object_get(
				json_array_get(json_object_get(o, "models"), 1), "id")),
			    "hf:org/m2-GGUF:m2.gguf");
	json_decref(o);
	job_registry_free(r);
	store_tmp_remove(root);
}

static void test_pool_reuses_connections(void **state)
{
	(void)state;
	char root[256];
	assert_int_equal(store_tmp_make("rbee-jobs-models", root, sizeof(root)), 0);
	fill(root, 1);
	struct job_persist_pool *pool = job_persist_pool_new(root, NULL, 1);
	struct job_persist *a = NULL, *b = NULL, *c = NULL;
	struct err e;
	err_clear(&e);
	assert_int_equal(job_persist_pool_acquire(pool, &a, &e), 0);
	assert_int_equal(job_persist_pool_acquire(pool, &b, &e), 0);
	assert_non_null(a);
	assert_non_null(b);
	assert_ptr_not_equal(a, b);
	size_t n = 0;
	assert_int_equal(job_persist_model_count(a, &n, &e), 0);
	assert_int_equal(n, 1);
	job_persist_pool_release(pool, a, 0);
	job_persist_pool_release(pool, b, 0); /* over max_idle: closed */
	assert_int_equal(job_persist_pool_acquire(pool, &c, &e), 0);
	assert_ptr_equal(c, a);
	job_persist_pool_release(pool, c, ERR_IO); /* not trusted again: closed */
	job_persist_pool_release(pool, NULL, 0);
	job_persist_pool_free(pool);
	job_persist_pool_free(NULL);

	pool = job_persist_pool_new(NULL, NULL, 4);
	a = (struct job_persist *)&n;
	assert_int_equal(job_persist_pool_acquire(pool, &a, &e), 0);
	assert_null(a);
	job_persist_pool_release(pool, a, 0);
	job_persist_pool_free(pool);
	store_tmp_remove(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pages),
	    cmocka_unit_test(test_no_data_root),
	    cmocka_unit_test(test_threads_share_the_pool),
	    cmocka_unit_test(test_pages_follow_changes),
	    cmocka_unit_test(test_pages_by_index),
	    cmocka_unit_test(test_pages_from_kept_models),
	    cmocka_unit_test(test_pool_reuses_connections),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
