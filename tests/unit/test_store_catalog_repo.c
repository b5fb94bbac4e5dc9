/*
 * Unit tests of the catalog's reading of one Hub repository
 * (catalog_repo_*): the files of a commit over several models, each path
 * once and sorted; which commit a revision names; gating as recorded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"
#include "store/catalog.h"
#include "test_store_tmp.h"

#define C1 "1111111111111111111111111111111111111111"
#define C2 "2222222222222222222222222222222222222222"

struct fx {
	char dir[PATH_MAX];
	struct catalog *c;
};

static int setup(void **state)
{
	struct fx *x = xcalloc(1, sizeof *x);
	if (store_tmp_make("store-catalog-repo", x->dir, sizeof x->dir))
		return -1;
	x->c = store_tmp_catalog(x->dir);
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

/* Puts a model of repo at commit whose files are paths, each with the sha256 of digit d. */
static void put(struct catalog *c, const char *id, const char *repo, const char *rev,
		const char *commit, int gated, enum catalog_status st, const char *const *paths,
		size_t n)
{
	struct catalog_model m = {0};
	m.id = (char *)id;
	m.source = CATALOG_SRC_HF;
	m.repo = (char *)repo;
	m.revision = (char *)rev;
	m.commit = (char *)commit;
	m.repo_dir = (char *)"models--org--repo";
	m.status = st;
	m.gated = gated;
	m.files = xcalloc(n, sizeof *m.files);
	m.nfiles = n;
	for (size_t i = 0; i < n; i++) {
		m.files[i].path = (char *)paths[i];
		memset(m.files[i].sha256, 'a' + (int)(strlen(paths[i]) % 6), 64);
		m.files[i].size = strlen(paths[i]);
	}
	struct err e = {0};
	assert_int_equal(catalog_model_put(c, &m, NULL, &e), 0);
	free(m.files);
}

static void test_snapshot_over_models(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *a[] = {"q4.gguf", "README.md"};
	const char *b[] = {"q8.gguf", "README.md", "sub/config.json"};
	const char *old[] = {"old.gguf"};
	put(x->c, "hf:org/repo:q4.gguf", "org/repo", "main", C1, 0, CATALOG_AVAILABLE, a, 2);
	put(x->c, "hf:org/repo:q8.gguf", "org/repo", "main", C1, 0, CATALOG_AVAILABLE, b, 3);
	put(x->c, "hf:org/repo:old.gguf@" C2, "org/repo", C2, C2, 0, CATALOG_AVAILABLE, old, 1);
	struct catalog_repo r;
	assert_int_equal(catalog_repo_snapshot(x->c, "ORG/Repo", C1, &r, &e), 0);
	assert_int_equal(r.nfiles, 4);
	const char *want[] = {"README.md", "q4.gguf", "q8.gguf", "sub/config.json"};
	for (size_t i = 0; i < 4; i++)
		assert_string_equal(r.files[i].path, want[i]);
	assert_string_equal(r.repo_dir, "models--org--repo");
	assert_string_equal(r.commit, C1);
	assert_int_equal(r.gated, 0);
	catalog_repo_cleanup(&r);
	assert_int_equal(catalog_repo_snapshot(x->c, "org/repo", C2, &r, &e), 0);
	assert_int_equal(r.nfiles, 1);
	catalog_repo_cleanup(&r);
	assert_int_equal(catalog_repo_snapshot(x->c, "org/other", C1, &r, &e), ERR_NOT_FOUND);
}

static void test_find_revision(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *a[] = {"q4.gguf"};
	char commit[41] = "";
	assert_int_equal(catalog_repo_find(x->c, "org/repo", NULL, commit, &e), 0);
	put(x->c, "hf:org/repo:q4.gguf", "org/repo", "main", C1, 0, CATALOG_AVAILABLE, a, 1);
	put(x->c, "hf:org/repo:q4.gguf@dev", "org/repo", "dev", C2, 0, CATALOG_FAILED, a, 1);
	assert_int_equal(catalog_repo_find(x->c, "org/repo", NULL, commit, &e), 1);
	assert_string_equal(commit, C1);
	assert_int_equal(catalog_repo_find(x->c, "org/repo", "main", commit, &e), 1);
	assert_int_equal(catalog_repo_find(x->c, "org/repo", C1, commit, &e), 1);
	/* A failed model is not something the hive holds. */
	assert_int_equal(catalog_repo_find(x->c, "org/repo", "dev", commit, &e), 0);
	assert_int_equal(catalog_repo_find(x->c, "org/repo", C2, commit, &e), 0);
}

static void test_gated(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *a[] = {"q4.gguf"};
	const char *b[] = {"q8.gguf"};
	put(x->c, "hf:org/repo:q4.gguf", "org/repo", "main", C1, 0, CATALOG_AVAILABLE, a, 1);
	struct catalog_repo r;
	assert_int_equal(catalog_repo_snapshot(x->c, "org/repo", C1, &r, &e), 0);
	assert_int_equal(r.gated, 0);
	catalog_repo_cleanup(&r);
	/* One model of the commit recorded as gated makes every file of it so. */
	put(x->c, "hf:org/repo:q8.gguf", "org/repo", "main", C1, 1, CATALOG_AVAILABLE, b, 1);
	assert_int_equal(catalog_repo_snapshot(x->c, "org/repo", C1, &r, &e), 0);
	assert_int_equal(r.gated, 1);
	catalog_repo_cleanup(&r);
	assert_int_equal(catalog_model_set_gated(x->c, "hf:org/repo:q8.gguf", 0, &e), 0);
	assert_int_equal(
	    catalog_model_set_gated(x->c, "hf:org/repo:q4.gguf", CATALOG_GATED_UNKNOWN, &e), 0);
	assert_int_equal(catalog_repo_snapshot(x->c, "org/repo", C1, &r, &e), 0);
	assert_int_equal(r.gated, CATALOG_GATED_UNKNOWN);
	catalog_repo_cleanup(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_snapshot_over_models, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_find_revision, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_gated, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
