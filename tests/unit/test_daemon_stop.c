/*
 * A stop that takes long: while daemon_stop() waits for a job that ignores
 * its cancel, daemon_stop_report() names the step and the job and says the
 * job rows are not all on disk; once the stop is over, they are.
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

#include "core/err.h"
#include "core/util.h"
#include "daemon/daemon.h"
#include "daemon/http.h"
#include "fake_provisioner.h"
#include "jobs/job.h"

static void *stop_main(void *arg)
{
	daemon_stop(arg);
	return NULL;
}

static void test_report_while_stuck(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/rbee-daemon-stop-XXXXXX";
	char *root = mkdtemp(tmpl);
	assert_non_null(root);
	struct fake_prov fp;
	fake_prov_init(&fp);
	struct daemon_config cfg = {.port = 0, .data_root = root};
	struct daemon *d = NULL;
	struct err e;
	err_clear(&e);
	if (daemon_start(&cfg, &fp.base, &d, &e) != 0)
		fail_msg("daemon_start: %s", e.msg);
	const char *body = "{\"operation\":\"model_download\",\"model\":\"acme/stubborn-stop\"}";
	char id[JOB_ID_MAX];
	assert_int_equal(job_submit_json(d->jobs, body, strlen(body), id, &e), 0);
	int64_t end = now_ms() + 5000;
	while (atomic_load(&fp.running) == 0 && now_ms() < end)
		sleep_ms(2);
	assert_int_equal(atomic_load(&fp.running), 1);

	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, stop_main, d), 0);
	sleep_ms(400);
	char what[1024];
	assert_int_equal(daemon_stop_report(what, sizeof(what)), 0);
	assert_non_null(strstr(what, "waiting for their workers"));
	assert_non_null(strstr(what, id));
	assert_non_null(strstr(what, "acme/stubborn-stop"));
	assert_non_null(strstr(what, "not all on disk"));

	pthread_join(t, NULL);
	assert_int_equal(daemon_stop_report(what, sizeof(what)), 1);
	assert_non_null(strstr(what, "stopped"));
	char *cmd = xasprintf("rm -rf '%s'", root);
	assert_int_equal(system(cmd), 0);
	free(cmd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_report_while_stuck),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
