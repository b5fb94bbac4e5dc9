/*
 * Jobs kept in the catalog: a restarted registry lists finished jobs with
 * their state and replays their terminal line, resumes the jobs that were
 * running under the same id, and prunes finished jobs by count.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/util.h"
#include "fake_provisioner.h"
#include "jobs/job.h"
#include "store/catalog.h"
#include "test_store_tmp.h"

/* A fresh data root; the test fails when it cannot be made. */
static void tmp_root(char *root, size_t size)
{
	if (store_tmp_make("rbee-jobs-persist", root, size) != 0)
		fail_msg("cannot make a temporary data root");
}

static struct job_registry *open_reg(struct fake_prov *fp, const char *root, int keep)
{
	struct job_registry_config cfg = {
	    .prov = &fp->base, .data_root = root, .resume = 1, .keep_jobs = keep};
	struct job_registry *r = NULL;
	struct err e;
	err_clear(&e);
	if (job_registry_new(&cfg, &r, &e) != 0)
		fail_msg("job_registry_new: %s", e.msg);
	return r;
}

static void download(struct job_registry *r, const char *ref, char id[JOB_ID_MAX])
{
	char body[256];
	snprintf(body, sizeof(body), "{\"operation\":\"model_download\",\"model\":\"%s\"}", ref);
	struct err e;
	err_clear(&e);
	assert_int_equal(job_submit_json(r, body, strlen(body), id, &e), 0);
}

static int state_is(struct job_registry *r, const char *id, const char *want)
{
	json_t *o = NULL;
	struct err e;
	if (job_get_json(r, id, &o, &e) != 0)
		return 0;
	int ok = strcmp(json_string_value(json_object_get(o, "state")), want) == 0;
	json_decref(o);
	return ok;
}

static void wait_state(struct job_registry *r, const char *id, const char *want)
{
	int64_t end = now_ms() + 5000;
	while (!state_is(r, id, want)) {
		if (now_ms() > end)
			fail_msg("job %s never became %s", id, want);
		sleep_ms(5);
	}
}

static void test_restart_keeps_and_resumes(void **state)
{
	(void)state;
	char root[4096];
	tmp_root(root, sizeof(root));
	struct fake_prov fp;
	fake_prov_init(&fp);
	struct job_registry *r = open_reg(&fp, root, 0);
	char done[JOB_ID_MAX], failed[JOB_ID_MAX], running[JOB_ID_MAX];
	download(r, "acme/ok-persist", done);
	download(r, "acme/fail-persist", failed);
	wait_state(r, done, "succeeded");
	wait_state(r, failed, "failed");
	download(r, "acme/wait-persist", running);
	wait_state(r, running, "running");
	job_registry_free(r);
	assert_int_equal(atomic_load(&fp.calls), 3);

	r = open_reg(&fp, root, 0);
	assert_true(state_is(r, done, "succeeded"));
	assert_true(state_is(r, failed, "failed"));
	/* interrupted -> queued -> running, under the same id */
	wait_state(r, running, "running");
	int64_t end = now_ms() + 5000;
	while (atomic_load(&fp.calls) < 4 && now_ms() < end)
		sleep_ms(2);
	assert_int_equal(atomic_load(&fp.calls), 4);

	/* A watcher of the previous life (small Last-Event-ID) sees the new events. */
	struct job_watch *w0;
	struct err e0;
	assert_int_equal(job_watch_open(r, running, 3, &w0, &e0), 0);
	struct job_event ev0;
	assert_int_equal(job_watch_next(w0, 1000, &ev0), 1);
	assert_true(ev0.id > 1000000);
	free(ev0.data);
	job_watch_close(w0);
	/* A cursor beyond the log replays it from the start. */
	assert_int_equal(job_watch_open(r, running, UINT64_MAX / 2, &w0, &e0), 0);
	assert_int_equal(job_watch_next(w0, 1000, &ev0), 1);
	free(ev0.data);
	job_watch_close(w0);

	struct job_watch *w;
	struct err e;
	assert_int_equal(job_watch_open(r, failed, 0, &w, &e), 0);
	struct job_event ev = {0}, last = {0};
	while (job_watch_next(w, 1000, &ev) == 1) {
		free(last.data);
		last = ev;
		if (job_event_is_terminal(ev.kind))
			break;
	}
	job_watch_close(w);
	assert_int_equal(last.kind, JOB_EV_ERROR);
	assert_string_equal(last.data, "[ERROR] fake: the hub did not answer");
	free(last.data);

	json_t *o;
	assert_int_equal(job_get_json(r, done, &o, &e), 0);
	assert_string_equal(json_string_value(json_object_get(o, "model_id")),
			    "hf:acme/ok-persist:model.Q4_K_M.gguf");
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(o, "progress"), "bytes_done")),
	    20000);
	json_decref(o);

	enum job_state st;
	assert_int_equal(job_cancel(r, running, &st, &e), 0);
	wait_state(r, running, "cancelled");
	job_registry_free(r);

	/* A cancelled job stays cancelled across a restart. */
	r = open_reg(&fp, root, 0);
	assert_true(state_is(r, running, "cancelled"));
	assert_int_equal(atomic_load(&fp.calls), 4);
	job_registry_free(r);
	store_tmp_remove(root);
}

static void test_prune_by_count(void **state)
{
	(void)state;
	char root[4096];
	tmp_root(root, sizeof(root));
	struct fake_prov fp;
	fake_prov_init(&fp);
	struct job_registry *r = open_reg(&fp, root, 2);
	char id[4][JOB_ID_MAX];
	for (int i = 0; i < 4; i++) {
		download(r, "acme/fail-prune", id[i]);
		wait_state(r, id[i], "failed");
	}
	/* Rows are written within a second; then the oldest are dropped. */
	int64_t end = now_ms() + 5000;
	while (state_is(r, id[0], "failed") || state_is(r, id[1], "failed")) {
		if (now_ms() > end)
			fail_msg("finished jobs beyond the cap were not pruned");
		sleep_ms(20);
	}
	assert_true(state_is(r, id[3], "failed"));
	job_registry_free(r);
	store_tmp_remove(root);
}

/* The job's state as the catalog file holds it now, read on a connection of our own. */
static void row_state(const char *root, const char *id, char *out, size_t size)
{
	struct catalog *c = store_tmp_catalog(root);
	struct err e;
	err_clear(&e);
	struct catalog_job j;
	memset(&j, 0, sizeof(j));
	if (catalog_job_get(c, id, &j, &e) == 0)
		snprintf(out, size, "%s", job_state_name(j.state));
	else
		snprintf(out, size, "(no row: %s)", err_name(e.code));
	catalog_job_cleanup(&j);
	catalog_close(c);
}

/* Reads the stream of id to its terminal event; returns its kind. */
static enum job_event_kind watch_to_end(struct job_registry *r, const char *id)
{
	struct job_watch *w;
	struct err e;
	assert_int_equal(job_watch_open(r, id, 0, &w, &e), 0);
	struct job_event ev;
	enum job_event_kind kind = JOB_EV_NARRATION;
	int64_t end = now_ms() + 5000;
	while (now_ms() < end) {
		int rc = job_watch_next(w, 200, &ev);
		assert_true(rc >= 0);
		if (rc == 0)
			continue;
		kind = ev.kind;
		free(ev.data);
		if (job_event_is_terminal(kind))
			break;
	}
	job_watch_close(w);
	assert_true(job_event_is_terminal(kind));
	return kind;
}

/*
 * A submitted job's row is on disk when the submission returns (a crash
 * right after the 201 keeps it), and a terminal event is streamed only once
 * the final state is on disk.
 */
static void test_rows_durable_when_acknowledged(void **state)
{
	(void)state;
	char root[4096];
	tmp_root(root, sizeof(root));
	struct fake_prov fp;
	fake_prov_init(&fp);
	struct job_registry *r = open_reg(&fp, root, 0);
	char st[64];
	char id[5][JOB_ID_MAX];
	for (int i = 0; i < 5; i++) {
		download(r, "acme/wait-durable", id[i]);
		row_state(root, id[i], st, sizeof(st));
		if (strcmp(st, "queued") != 0 && strcmp(st, "running") != 0)
			fail_msg("job %s acknowledged, its row: %s", id[i], st);
	}
	/* Two download workers: jobs 0 and 1 run, 2 to 4 wait queued. */
	wait_state(r, id[1], "running");
	struct err e;
	enum job_state js;
	assert_int_equal(job_cancel(r, id[2], &js, &e), 0);
	row_state(root, id[2], st, sizeof(st));
	assert_string_equal(st, "cancelled");
	assert_int_equal(watch_to_end(r, id[2]), JOB_EV_CANCELLED);

	char ok[JOB_ID_MAX], bad[JOB_ID_MAX];
	download(r, "acme/ok-durable", ok);
	download(r, "acme/fail-durable", bad);
	int order[] = {3, 4, 0, 1};
	for (int i = 0; i < 4; i++)
		assert_int_equal(job_cancel(r, id[order[i]], &js, &e), 0);
	assert_int_equal(watch_to_end(r, ok), JOB_EV_DONE);
	row_state(root, ok, st, sizeof(st));
	assert_string_equal(st, "succeeded");
	assert_int_equal(watch_to_end(r, bad), JOB_EV_ERROR);
	row_state(root, bad, st, sizeof(st));
	assert_string_equal(st, "failed");
	assert_int_equal(watch_to_end(r, id[0]), JOB_EV_CANCELLED);
	row_state(root, id[0], st, sizeof(st));
	assert_string_equal(st, "cancelled");
	job_registry_free(r);
	store_tmp_remove(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_restart_keeps_and_resumes),
	    cmocka_unit_test(test_prune_by_count),
	    cmocka_unit_test(test_rows_durable_when_acknowledged),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
