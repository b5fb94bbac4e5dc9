/*
 * model_verify as a job on a real catalog: a model whose blob is a large
 * sparse file takes seconds to hash, so a cancel shortly after the start
 * must end the job cancelled within a fraction of that, leaving the model's
 * status alone.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/util.h"
#include "jobs/job.h"
#include "store/catalog.h"
#include "test_store_tmp.h"

#define BIG_SIZE (2ULL << 30) /* sparse: no disk space, seconds of hashing */
#define BIG_SHA "abababababababababababababababababababababababababababababababab"
#define BIG_ID "hf:o/r:big.gguf"

/* A catalog with one available model whose blob is BIG_SIZE bytes of holes. */
static void make_model(const char *root)
{
	char *blobs = xasprintf("%s/hub/models--o--r/blobs", root);
	char *cmd = xasprintf("mkdir -p '%s'", blobs);
	assert_int_equal(system(cmd), 0);
	char *blob = xasprintf("%s/%s", blobs, BIG_SHA);
	int fd = open(blob, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)BIG_SIZE), 0);
	close(fd);

	struct catalog *c = store_tmp_catalog(root);
	struct err e;
	err_clear(&e);
	struct catalog_file f = {.path = "big.gguf", .sha256 = BIG_SHA, .size = BIG_SIZE};
	struct catalog_model m = {
	    .id = BIG_ID,
	    .source = CATALOG_SRC_HF,
	    .repo = "o/r",
	    .revision = "main",
	    .commit = "0123456789012345678901234567890123456789",
	    .repo_dir = "models--o--r",
	    .status = CATALOG_AVAILABLE,
	    .size = BIG_SIZE,
	    .error = "",
	    .files = &f,
	    .nfiles = 1,
	};
	struct catalog_removal orphans = {0};
	if (catalog_model_put(c, &m, &orphans, &e) != 0)
		fail_msg("catalog_model_put: %s", e.msg);
	catalog_removal_cleanup(&orphans);
	catalog_close(c);
	free(blob);
	free(cmd);
	free(blobs);
}

static const char *model_status(struct job_registry *r, char *buf, size_t size)
{
	json_t *m = NULL;
	struct err e;
	if (job_model_get_json(r, BIG_ID, &m, &e) != 0)
		fail_msg("model: %s", e.msg);
	snprintf(buf, size, "%s", json_string_value(json_object_get(m, "status")));
	json_decref(m);
	return buf;
}

static void test_verify_cancel(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/rbee-jobs-verify-XXXXXX";
	char *root = mkdtemp(tmpl);
	assert_non_null(root);
	make_model(root);

	struct job_registry_config cfg = {.data_root = root};
	struct job_registry *r = NULL;
	struct err e;
	err_clear(&e);
	if (job_registry_new(&cfg, &r, &e) != 0)
		fail_msg("job_registry_new: %s", e.msg);
	static const char body[] = "{\"operation\":\"model_verify\",\"id\":\"o/r\"}";
	char id[JOB_ID_MAX];
	assert_int_equal(job_submit_json(r, body, strlen(body), id, &e), 0);

	struct job_watch *w = NULL;
	assert_int_equal(job_watch_open(r, id, 0, &w, &e), 0);
	struct job_event ev = {0};
	int started = 0;
	while (!started && job_watch_next(w, 5000, &ev) == 1) {
		started = strncmp(ev.data, "verifying", 9) == 0;
		free(ev.data);
	}
	assert_true(started);
	sleep_ms(100); /* well into the hashing */

	int64_t t0 = now_ms();
	enum job_state st;
	assert_int_equal(job_cancel(r, id, &st, &e), 0);
	int ended = 0;
	enum job_event_kind end = JOB_EV_DONE;
	while (!ended && job_watch_next(w, 30000, &ev) == 1) {
		ended = job_event_is_terminal(ev.kind);
		end = ev.kind;
		free(ev.data);
	}
	assert_true(ended);
	assert_int_equal(end, JOB_EV_CANCELLED);
	int64_t took = now_ms() - t0;
	if (took > 1000)
		fail_msg("the cancelled verify ended after %lld ms", (long long)took);
	job_watch_close(w);

	char buf[32];
	assert_string_equal(model_status(r, buf, sizeof(buf)), "available");
	job_registry_free(r);
	store_tmp_remove(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_verify_cancel),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
