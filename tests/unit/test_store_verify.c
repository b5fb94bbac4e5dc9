/*
 * Unit tests of store/store: verify finds missing, truncated and corrupt
 * files and keeps the catalog truthful; delete removes exactly the blobs no
 * other model uses; partials are removable; data root and hub cache paths.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cancel.h"
#include "core/err.h"
#include "core/sha256.h"
#include "core/util.h"
#include "store/catalog.h"
#include "test_store_tmp.h"
#include "store/layout.h"
#include "store/store.h"

#define COMMIT "0123456789abcdef0123456789abcdef01234567"
#define REPO "models--org--repo"

struct fx {
	char dir[PATH_MAX];
	struct store_paths paths;
	struct catalog *c;
	struct layout *l;
};

static int setup(void **state)
{
	struct fx *x = xcalloc(1, sizeof *x);
	if (store_tmp_make("store-verify", x->dir, sizeof x->dir))
		return -1;
	char root[PATH_MAX];
	snprintf(root, sizeof root, "%s/data", x->dir);
	struct err e = {0};
	if (store_paths_resolve(root, NULL, 0, &x->paths, &e) ||
	    store_paths_prepare(&x->paths, &e) || catalog_open(x->paths.catalog, &x->c, &e) ||
	    layout_open(x->paths.hub, &x->l, &e))
		return -1;
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;
	catalog_close(x->c);
	layout_free(x->l);
	store_tmp_remove(x->dir);
	free(x);
	return 0;
}

/* Publishes a file the way the provisioner does: blob, link, then the row. */
static void publish_file(struct fx *x, const char *path, const char *data, struct catalog_file *f)
{
	struct err e = {0};
	struct sha256 h = {0};
	memset(f, 0, sizeof *f);
	sha256_init(&h);
	sha256_update(&h, data, strlen(data));
	sha256_final_hex(&h, f->sha256);
	sha256_cleanup(&h);
	f->path = (char *)path;
	f->size = strlen(data);
	int fd;
	assert_int_equal(layout_partial_open(x->l, REPO, f->sha256, &fd, NULL, &e), 0);
	assert_int_equal(pwrite(fd, data, f->size, 0), (ssize_t)f->size);
	assert_int_equal(layout_partial_publish(x->l, REPO, f->sha256, fd, f->sha256, &e), 0);
	close(fd);
	assert_int_equal(layout_snapshot_link(x->l, REPO, COMMIT, path, f->sha256, &e), 0);
}

static void publish_model(struct fx *x, const char *id, struct catalog_file *files, size_t n)
{
	struct err e = {0};
	assert_int_equal(layout_ref_write(x->l, REPO, "main", COMMIT, &e), 0);
	struct catalog_model m = {
	    .id = (char *)id,
	    .source = CATALOG_SRC_HF,
	    .repo = (char *)"org/repo",
	    .revision = (char *)"main",
	    .commit = (char *)COMMIT,
	    .repo_dir = (char *)REPO,
	    .status = CATALOG_AVAILABLE,
	    .files = files,
	    .nfiles = n,
	};
	assert_int_equal(catalog_model_put(x->c, &m, NULL, &e), 0);
}

struct seen {
	int n;
	enum store_file_status st[8];
	char detail[8][512];
};

static void on_file(void *arg, const struct store_verify_item *it)
{
	struct seen *s = arg;
	if (s->n < 8) {
		s->st[s->n] = it->status;
		snprintf(s->detail[s->n], sizeof s->detail[0], "%s", it->detail);
	}
	s->n++;
}

static enum catalog_status status_of(struct fx *x, const char *id, char *err, size_t size)
{
	struct catalog_model m;
	struct err e = {0};
	assert_int_equal(catalog_model_get(x->c, id, &m, &e), 0);
	enum catalog_status st = m.status;
	if (err)
		snprintf(err, size, "%s", m.error);
	catalog_model_cleanup(&m);
	return st;
}

static void blob_file(struct fx *x, const char *sha, char *buf, size_t size)
{
	struct err e = {0};
	assert_int_equal(layout_blob_path(x->l, REPO, sha, buf, size, &e), 0);
}

static void test_verify(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	struct catalog_file files[3];
	publish_file(x, "model.Q4_K_M.gguf", "GGUF weights of the model", &files[0]);
	publish_file(x, "sub/config.json", "{\"a\":1}", &files[1]);
	publish_file(x, "README.md", "# readme", &files[2]);
	const char *id = "hf:org/repo:model.Q4_K_M.gguf";
	publish_model(x, id, files, 3);

	struct seen s = {0};
	struct store_verify_summary sum;
	assert_int_equal(store_verify(x->c, x->l, NULL, on_file, &s, NULL, &sum, &e), 0);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.st[0], STORE_FILE_OK);
	assert_int_equal(sum.files, 3);
	assert_int_equal(sum.files_bad, 0);
	assert_int_equal(sum.models, 1);
	assert_int_equal(sum.bytes_hashed, files[0].size + files[1].size + files[2].size);

	/* Corrupt one byte of the weights, same size. */
	char path[PATH_MAX];
	blob_file(x, files[0].sha256, path, sizeof path);
	int fd = open(path, O_WRONLY);
	assert_int_equal(pwrite(fd, "X", 1, 3), 1);
	close(fd);
	/* Truncate the config. */
	blob_file(x, files[1].sha256, path, sizeof path);
	assert_int_equal(truncate(path, 2), 0);
	/* Remove the readme's blob. */
	blob_file(x, files[2].sha256, path, sizeof path);
	assert_int_equal(unlink(path), 0);

	memset(&s, 0, sizeof s);
	assert_int_equal(store_verify(x->c, x->l, "org/repo", on_file, &s, NULL, &sum, &e), 0);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.st[0], STORE_FILE_CORRUPT);
	assert_non_null(strstr(s.detail[0], "model.Q4_K_M.gguf"));
	assert_non_null(strstr(s.detail[0], "hashes to"));
	assert_int_equal(s.st[1], STORE_FILE_SIZE_MISMATCH);
	assert_non_null(strstr(s.detail[1], "2 bytes"));
	assert_int_equal(s.st[2], STORE_FILE_MISSING);
	assert_non_null(strstr(s.detail[2], "README.md"));
	assert_int_equal(sum.files_bad, 3);
	assert_int_equal(sum.models_bad, 1);
	char err[512];
	assert_int_equal(status_of(x, id, err, sizeof err), CATALOG_FAILED);
	assert_non_null(strstr(err, "3 of 3 files bad"));
	assert_non_null(strstr(err, "model.Q4_K_M.gguf (corrupt)"));
	assert_string_equal(store_file_status_name(STORE_FILE_SIZE_MISMATCH), "size_mismatch");

	/* Repair the files: verify makes the model available again. */
	struct catalog_file again[3];
	publish_file(x, "model.Q4_K_M.gguf", "GGUF weights of the model", &again[0]);
	publish_file(x, "sub/config.json", "{\"a\":1}", &again[1]);
	publish_file(x, "README.md", "# readme", &again[2]);
	assert_int_equal(store_verify(x->c, x->l, id, NULL, NULL, NULL, &sum, &e), 0);
	assert_int_equal(sum.files_bad, 0);
	assert_int_equal(status_of(x, id, NULL, 0), CATALOG_AVAILABLE);

	/* A missing snapshot link is found too. */
	assert_int_equal(
	    layout_snapshot_path(x->l, REPO, COMMIT, "sub/config.json", path, sizeof path, &e), 0);
	assert_int_equal(unlink(path), 0);
	memset(&s, 0, sizeof s);
	assert_int_equal(store_verify(x->c, x->l, id, on_file, &s, NULL, &sum, &e), 0);
	assert_int_equal(s.st[1], STORE_FILE_MISSING);
	assert_non_null(strstr(s.detail[1], "snapshot link"));
	assert_int_equal(status_of(x, id, NULL, 0), CATALOG_FAILED);

	assert_int_equal(store_verify(x->c, x->l, "org/none", NULL, NULL, NULL, &sum, &e),
			 ERR_NOT_FOUND);
	assert_non_null(strstr(e.msg, "org/none"));
}

static void test_verify_skips_and_cancels(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	struct catalog_file f;
	publish_file(x, "a.gguf", "aaaa", &f);
	publish_model(x, "hf:org/repo:a.gguf", &f, 1);
	/* A model being downloaded is not judged. */
	assert_int_equal(
	    catalog_model_set_status(x->c, "hf:org/repo:a.gguf", CATALOG_DOWNLOADING, NULL, 0, &e),
	    0);
	struct store_verify_summary sum;
	assert_int_equal(store_verify(x->c, x->l, NULL, NULL, NULL, NULL, &sum, &e), 0);
	assert_int_equal(sum.models_skipped, 1);
	assert_int_equal(sum.files, 0);
	assert_int_equal(
	    catalog_model_set_status(x->c, "hf:org/repo:a.gguf", CATALOG_AVAILABLE, NULL, 0, &e),
	    0);
	struct cancel_token *t = cancel_new();
	cancel_fire(t);
	assert_int_equal(store_verify(x->c, x->l, NULL, NULL, NULL, t, &sum, &e), ERR_CANCELLED);
	cancel_unref(t);
	/* A cancelled check changes nothing. */
	assert_int_equal(status_of(x, "hf:org/repo:a.gguf", NULL, 0), CATALOG_AVAILABLE);
}

static void test_delete(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	struct catalog_file a[2], b[2];
	publish_file(x, "model.Q4_K_M.gguf", "q4 weights", &a[0]);
	publish_file(x, "README.md", "shared readme", &a[1]);
	publish_model(x, "hf:org/repo:model.Q4_K_M.gguf", a, 2);
	publish_file(x, "model.Q8_0.gguf", "q8 weights", &b[0]);
	publish_file(x, "README.md", "shared readme", &b[1]);
	publish_model(x, "hf:org/repo:model.Q8_0.gguf", b, 2);

	char id[256];
	assert_int_equal(store_delete_model(x->c, x->l, "org/repo:Q4_K_M", id, sizeof id, &e), 0);
	assert_string_equal(id, "hf:org/repo:model.Q4_K_M.gguf");
	assert_int_equal(layout_blob_exists(x->l, REPO, a[0].sha256, NULL), 0);
	assert_int_equal(layout_blob_exists(x->l, REPO, a[1].sha256, NULL), 1);
	assert_int_equal(layout_blob_exists(x->l, REPO, b[0].sha256, NULL), 1);
	char path[PATH_MAX];
	assert_int_equal(
	    layout_snapshot_path(x->l, REPO, COMMIT, "README.md", path, sizeof path, &e), 0);
	assert_int_equal(access(path, R_OK), 0); /* still linked for the Q8 model */
	assert_int_equal(
	    layout_snapshot_path(x->l, REPO, COMMIT, "model.Q4_K_M.gguf", path, sizeof path, &e),
	    0);
	assert_int_equal(access(path, F_OK), -1);
	struct store_verify_summary sum;
	assert_int_equal(store_verify(x->c, x->l, NULL, NULL, NULL, NULL, &sum, &e), 0);
	assert_int_equal(sum.files_bad, 0);

	assert_int_equal(store_delete_model(x->c, x->l, "org/repo", NULL, 0, &e), 0);
	char repo_dir[PATH_MAX];
	snprintf(repo_dir, sizeof repo_dir, "%s/%s", x->paths.hub, REPO);
	assert_int_equal(access(repo_dir, F_OK), -1);
	assert_int_equal(store_delete_model(x->c, x->l, "org/repo", NULL, 0, &e), ERR_NOT_FOUND);
}

static void test_partial_remove(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *sha = "abababababababababababababababababababababababababababababababab";
	int fd;
	assert_int_equal(layout_partial_open(x->l, REPO, sha, &fd, NULL, &e), 0);
	assert_int_equal(pwrite(fd, "part", 4, 0), 4);
	close(fd);
	struct byte_range r = {0, 4};
	assert_int_equal(catalog_partial_save(x->c, REPO, sha, 100, &r, 1, &e), 0);

	/* A transfer holds the lock: not removable now. */
	int lock;
	assert_int_equal(layout_blob_lock(x->l, REPO, sha, 0, NULL, &lock, &e), 0);
	assert_int_equal(store_partial_remove(x->c, x->l, REPO, sha, &e), ERR_CONFLICT);
	assert_non_null(strstr(e.msg, "being downloaded"));
	layout_blob_unlock(lock);

	assert_int_equal(store_partial_remove(x->c, x->l, REPO, sha, &e), 0);
	char path[PATH_MAX];
	assert_int_equal(layout_partial_path(x->l, REPO, sha, path, sizeof path, &e), 0);
	assert_int_equal(access(path, F_OK), -1);
	struct catalog_partial *list;
	size_t n;
	assert_int_equal(catalog_partial_list(x->c, &list, &n, &e), 0);
	assert_int_equal(n, 0);
	free(list);
	assert_int_equal(store_partial_remove(x->c, x->l, "../x", sha, &e), ERR_INVALID);
}

/* A blob checked whole drops the resume state a failed removal left of it. */
static void test_checked_blob_drops_resume_state(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	struct catalog_file f;
	publish_file(x, "a.gguf", "whole content", &f);
	struct byte_range r = {0, 4};
	assert_int_equal(catalog_partial_save(x->c, REPO, f.sha256, f.size, &r, 1, &e), 0);
	char sha[65];
	int hashed = 0;
	assert_int_equal(store_blob_check(x->c, x->l, REPO, f.sha256, f.sha256, NULL, f.size, 1, 0,
					  NULL, sha, &hashed, &e),
			 0);
	assert_int_equal(hashed, 1);
	struct catalog_partial *list;
	size_t n;
	assert_int_equal(catalog_partial_list(x->c, &list, &n, &e), 0);
	assert_int_equal(n, 0);
	free(list);
}

static void test_resume_after_restart(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *data = "0123456789abcdefghij";
	struct sha256 h = {0};
	char sha[65];
	sha256_init(&h);
	sha256_update(&h, data, 20);
	sha256_final_hex(&h, sha);
	sha256_cleanup(&h);

	/* A transfer writes two ranges of a 20-byte blob, records them, and the
	 * process goes away without committing anything. */
	int fd;
	assert_int_equal(layout_partial_open(x->l, REPO, sha, &fd, NULL, &e), 0);
	assert_int_equal(ftruncate(fd, 20), 0);
	assert_int_equal(pwrite(fd, data, 5, 0), 5);
	assert_int_equal(pwrite(fd, data + 10, 5, 10), 5);
	close(fd);
	struct byte_range done[] = {{10, 15}, {0, 5}};
	assert_int_equal(catalog_partial_save(x->c, REPO, sha, 20, done, 2, &e), 0);
	catalog_close(x->c);
	layout_free(x->l);

	/* Restart: the partial is listed with its progress and resumes. */
	assert_int_equal(catalog_open(x->paths.catalog, &x->c, &e), 0);
	assert_int_equal(layout_open(x->paths.hub, &x->l, &e), 0);
	struct catalog_partial *list;
	size_t n;
	assert_int_equal(catalog_partial_list(x->c, &list, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].sha256, sha);
	assert_int_equal(list[0].done_bytes, 10);
	assert_int_equal(list[0].total_size, 20);
	free(list);
	assert_int_equal(layout_blob_exists(x->l, REPO, sha, NULL), 0);
	uint64_t total, cur;
	struct byte_range *r;
	assert_int_equal(catalog_partial_load(x->c, REPO, sha, &total, &r, &n, &e), 0);
	assert_int_equal(layout_partial_open(x->l, REPO, sha, &fd, &cur, &e), 0);
	assert_int_equal(cur, 20);
	/* Fill the gaps [5,10) and [15,20). */
	assert_int_equal(n, 2);
	assert_int_equal(r[0].end, 5);
	assert_int_equal(r[1].start, 10);
	assert_int_equal(pwrite(fd, data + 5, 5, 5), 5);
	assert_int_equal(pwrite(fd, data + 15, 5, 15), 5);
	free(r);
	assert_int_equal(layout_partial_publish(x->l, REPO, sha, fd, sha, &e), 0);
	close(fd);
	assert_int_equal(catalog_partial_delete(x->c, REPO, sha, &e), 0);
	char path[PATH_MAX];
	assert_int_equal(layout_blob_path(x->l, REPO, sha, path, sizeof path, &e), 0);
	char hex[65];
	uint64_t size;
	assert_int_equal(store_tmp_sha_file(path, hex, &size), 0);
	assert_string_equal(hex, sha);
	assert_int_equal(size, 20);
}

static void test_paths(void **state)
{
	(void)state;
	struct store_paths p;
	struct err e = {0};
	const char *keep[] = {"RBEE_HIVE_HOME", "XDG_CACHE_HOME", "HOME", "HF_HUB_CACHE",
			      "HF_HOME"};
	char *saved[5];
	for (int i = 0; i < 5; i++) {
		const char *v = getenv(keep[i]);
		saved[i] = v ? xstrdup(v) : NULL;
		unsetenv(keep[i]);
	}
	setenv("HOME", "/home/u", 1);
	assert_int_equal(store_paths_resolve(NULL, NULL, 0, &p, &e), 0);
	assert_string_equal(p.root, "/home/u/.cache/rbee-hive");
	assert_string_equal(p.catalog, "/home/u/.cache/rbee-hive/catalog.db");
	assert_string_equal(p.hub, "/home/u/.cache/rbee-hive/hub");
	assert_int_equal(p.shared, 0);
	setenv("XDG_CACHE_HOME", "/xdg", 1);
	setenv("HF_HOME", "/hf", 1);
	assert_int_equal(store_paths_resolve(NULL, NULL, 0, &p, &e), 0);
	assert_string_equal(p.root, "/xdg/rbee-hive");
	assert_string_equal(p.hub, "/xdg/rbee-hive/hub"); /* HF_HOME only on request */
	setenv("RBEE_HIVE_HOME", "/rbee", 1);
	assert_int_equal(store_paths_resolve(NULL, NULL, 0, &p, &e), 0);
	assert_string_equal(p.root, "/rbee");
	assert_int_equal(store_paths_resolve("/data", NULL, 0, &p, &e), 0);
	assert_string_equal(p.root, "/data");
	assert_int_equal(store_paths_resolve("/data", NULL, 1, &p, &e), 0);
	assert_string_equal(p.hub, "/hf/hub");
	assert_int_equal(p.shared, 1);
	setenv("HF_HUB_CACHE", "/hubcache", 1);
	assert_int_equal(store_paths_resolve("/data", NULL, 1, &p, &e), 0);
	assert_string_equal(p.hub, "/hubcache");
	assert_int_equal(store_paths_resolve("/data", "/mine", 0, &p, &e), 0);
	assert_string_equal(p.hub, "/mine");
	assert_int_equal(p.shared, 1);
	unsetenv("HF_HUB_CACHE");
	unsetenv("HF_HOME");
	assert_int_equal(store_paths_resolve("/data", NULL, 1, &p, &e), 0);
	assert_string_equal(p.hub, "/xdg/huggingface/hub");
	for (int i = 0; i < 5; i++) {
		if (saved[i])
			setenv(keep[i], saved[i], 1);
		else
			unsetenv(keep[i]);
		free(saved[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_verify, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_verify_skips_and_cancels, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_partial_remove, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_checked_blob_drops_resume_state, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_resume_after_restart, setup, teardown),
	    cmocka_unit_test(test_paths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
