/*
 * Transfer engine lifecycle without a server that answers: request checks,
 * cancel through the token, purge, and engine shutdown with a transfer in
 * flight. The peer is a loopback socket that listens but never replies.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/cancel.h"
#include "core/err.h"
#include "core/util.h"
#include "fetch/xfer.h"

struct fixture {
	int lfd;
	char url[128];
	char dir[256];
	char dest[300];
	struct xfer_engine *eng;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
	socklen_t len = sizeof(a);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(f->lfd >= 0);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(f->lfd, 16), 0);
	assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &len), 0);
	snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/blob", ntohs(a.sin_port));
	const char *base = getenv("RBEE_TEST_TMP");
	if (base)
		mkdir(base, 0755);
	snprintf(f->dir, sizeof(f->dir), "%s/fetch-engine-XXXXXX", base ? base : "/tmp");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->dest, sizeof(f->dest), "%s/blob.partial", f->dir);
	struct xfer_config cfg = {.connections = 4};
	struct err e;
	assert_int_equal(xfer_engine_new(&cfg, &f->eng, &e), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	xfer_engine_free(f->eng);
	close(f->lfd);
	unlink(f->dest);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void test_request_checks(void **state)
{
	struct fixture *f = *state;
	struct xfer *x = NULL;
	struct err e;
	struct xfer_request req = {.url = f->url, .dest = f->dest, .size = 10, .sha256 = "ABC"};
	assert_int_equal(xfer_start(f->eng, &req, &x, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "64 lowercase hex"));
	req.sha256 = NULL;
	req.url = "ftp://127.0.0.1/x";
	assert_int_equal(xfer_start(f->eng, &req, &x, &e), ERR_INVALID);
	req.url = "http://10.1.2.3/x";
	assert_int_equal(xfer_start(f->eng, &req, &x, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "https only"));
	req.url = "not a url";
	assert_int_equal(xfer_start(f->eng, &req, &x, &e), ERR_INVALID);
	assert_null(x);
	xfer_free(NULL);
	xfer_engine_free(NULL);
}

static void test_cancel_token_keeps_partial(void **state)
{
	struct fixture *f = *state;
	struct cancel_token *t = cancel_new();
	struct xfer *x = NULL;
	struct err e;
	struct xfer_request req = {.url = f->url, .dest = f->dest, .size = 1 << 20, .cancel = t};
	assert_int_equal(xfer_start(f->eng, &req, &x, &e), 0);
	assert_int_equal(xfer_wait(x, 100), 0); /* the peer never answers */
	int64_t t0 = now_ms();
	cancel_fire(t);
	assert_int_equal(xfer_wait(x, 5000), 1);
	assert_true(now_ms() - t0 < 1000);
	assert_int_equal(xfer_result(x, &e, NULL), ERR_CANCELLED);
	struct xfer_progress p;
	xfer_progress(x, &p);
	assert_int_equal(p.finished, 1);
	assert_int_equal(p.total, 1 << 20);
	xfer_free(x);
	cancel_unref(t);
	struct stat st;
	assert_int_equal(stat(f->dest, &st), 0); /* kept for resume, preallocated */
	assert_int_equal(st.st_size, 1 << 20);
}

static void test_cancel_purge_removes_partial(void **state)
{
	struct fixture *f = *state;
	struct xfer *x = NULL;
	struct err e;
	struct xfer_request req = {.url = f->url, .dest = f->dest, .size = 4096};
	assert_int_equal(xfer_start(f->eng, &req, &x, &e), 0);
	assert_int_equal(xfer_result(x, &e, NULL), ERR_CONFLICT);
	xfer_cancel(x, 1);
	assert_int_equal(xfer_wait(x, 5000), 1);
	assert_int_equal(xfer_result(x, &e, NULL), ERR_CANCELLED);
	xfer_free(x);
	assert_int_equal(access(f->dest, F_OK), -1);
}

static void test_engine_free_cancels_running(void **state)
{
	struct fixture *f = *state;
	struct xfer *x = NULL;
	struct err e;
	struct xfer_request req = {.url = f->url, .dest = f->dest, .size = 0};
	assert_int_equal(xfer_start(f->eng, &req, &x, &e), 0);
	xfer_engine_free(f->eng);
	f->eng = NULL;
	assert_int_equal(xfer_wait(x, 5000), 1);
	assert_int_equal(xfer_result(x, &e, NULL), ERR_CANCELLED);
	assert_non_null(strstr(e.msg, "shutting down"));
	xfer_free(x);
	struct xfer_config cfg = {.connections = 4};
	assert_int_equal(xfer_engine_new(&cfg, &f->eng, &e), 0);
}

static void test_config_checks(void **state)
{
	(void)state;
	struct err e;
	struct xfer_config cfg = {.connections = 200};
	struct xfer_engine *eng = NULL;
	assert_int_equal(xfer_engine_new(&cfg, &eng, &e), ERR_INVALID);
	assert_null(eng);
	assert_non_null(strstr(e.msg, "connections"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_request_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_token_keeps_partial, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_purge_removes_partial, setup, teardown),
		cmocka_unit_test_setup_teardown(test_engine_free_cancels_running, setup, teardown),
		cmocka_unit_test(test_config_checks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
