/*
 * One transfer per blob, however many jobs need it: jobs join one entry,
 * a job that leaves does not stop the others, the last one to leave cancels
 * the transfer, and every job sees the same result. The transfers run
 * through the real engine against a server on loopback in this process.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
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

#include "test_listen.h"
#include "test_prov_ctx.h"
#include "test_store_tmp.h"

#include "core/err.h"
#include "core/sha256.h"
#include "core/util.h"
#include "fetch/xfer.h"
#include "provision/share.h"
#include "provision/vendor.h"
#include "store/layout.h"

#define REPO_DIR "models--org--repo"
#define BODY_LEN 5000

struct fixture {
	int lfd;
	char url[128];
	char root[256];
	struct prov_ctx ctx;
	pthread_t server;
	int serving;
	char body[BODY_LEN + 1];
	char body_sha[SHA256_HEX_LEN + 1];
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	f->lfd = test_listen_loopback(f->url, sizeof(f->url));
	assert_int_equal(store_tmp_make("provision-share", f->root, sizeof(f->root)), 0);
	test_prov_ctx_init(&f->ctx, f->root);
	for (size_t i = 0; i < BODY_LEN; i++)
		f->body[i] = (char)('a' + i % 26);
	store_tmp_sha_of(f->body, f->body_sha);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	test_prov_ctx_cleanup(&f->ctx);
	if (f->serving) {
		shutdown(f->lfd, SHUT_RDWR);
		pthread_join(f->server, NULL);
	}
	close(f->lfd);
	store_tmp_remove(f->root);
	free(f);
	return 0;
}

/* 1 when the peer closed fd within timeout_ms, 0 when it is still open. */
static int peer_closed(int fd, long timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, (int)timeout_ms) != 1)
		return 0;
	char c;
	return recv(fd, &c, 1, 0) == 0;
}

static void *serve_body(void *arg)
{
	struct fixture *f = arg;
	test_serve_body(f->lfd, f->body, BODY_LEN, NULL);
	return NULL;
}

static struct prov_blob_req url_req(const struct fixture *f)
{
	return (struct prov_blob_req){.repo_dir = REPO_DIR, .url = f->url};
}

static void test_last_leaver_cancels(void **state)
{
	struct fixture *f = *state;
	struct prov_blob_req req = url_req(f);
	struct prov_blob *a = NULL, *b = NULL, *c = NULL;
	int started = -1;
	struct err e = {0};
	assert_int_equal(prov_share_join(f->ctx.share, &req, &a, &started, &e), 0);
	assert_int_equal(started, 1);
	assert_int_equal(prov_share_join(f->ctx.share, &req, &b, &started, &e), 0);
	assert_int_equal(started, 0);
	assert_ptr_equal(a, b);

	/* The server takes the request and never answers: the transfer stays open. */
	int conn = test_accept_request(f->lfd, 5000);
	assert_true(conn >= 0);
	prov_share_leave(a);
	assert_int_equal(peer_closed(conn, 300), 0);
	assert_int_equal(prov_share_wait(b, 0), 0);
	/* While a job waits, a new one joins the same transfer. */
	assert_int_equal(prov_share_join(f->ctx.share, &req, &c, &started, &e), 0);
	assert_int_equal(started, 0);
	assert_ptr_equal(c, b);
	prov_share_leave(c);
	assert_int_equal(peer_closed(conn, 200), 0);

	/* The last one to leave cancels: the engine drops the connection. */
	prov_share_leave(b);
	assert_int_equal(peer_closed(conn, 5000), 1);
	close(conn);

	/* A job that comes after everyone left starts a transfer of its own. */
	struct prov_blob *d = NULL;
	assert_int_equal(prov_share_join(f->ctx.share, &req, &d, &started, &e), 0);
	assert_int_equal(started, 1);
	prov_share_leave(d);
}

static void test_shared_result(void **state)
{
	struct fixture *f = *state;
	f->serving = pthread_create(&f->server, NULL, serve_body, f) == 0;
	assert_true(f->serving);
	struct prov_blob_req req = url_req(f);
	req.sha256 = f->body_sha;
	req.size = BODY_LEN;
	req.size_known = 1;
	struct prov_blob *a = NULL, *b = NULL;
	int started_a = -1, started_b = -1;
	struct err e = {0};
	assert_int_equal(prov_share_join(f->ctx.share, &req, &a, &started_a, &e), 0);
	assert_int_equal(prov_share_join(f->ctx.share, &req, &b, &started_b, &e), 0);
	assert_int_equal(started_a + started_b, 1);
	assert_ptr_equal(a, b);
	assert_int_equal(prov_share_wait(a, 10000), 1);
	assert_int_equal(prov_share_wait(b, 10000), 1);

	char sha_a[65], sha_b[65], dir_a[256], dir_b[256];
	int adopted = -1;
	assert_int_equal(prov_share_result(a, sha_a, dir_a, &adopted, &e), 0);
	assert_int_equal(adopted, 0);
	assert_int_equal(prov_share_result(b, sha_b, dir_b, NULL, &e), 0);
	assert_string_equal(sha_a, f->body_sha);
	assert_string_equal(sha_b, f->body_sha);
	assert_string_equal(dir_a, REPO_DIR);
	assert_string_equal(dir_b, REPO_DIR);
	struct xfer_progress p;
	assert_int_equal(prov_share_progress(b, &p), 1);
	assert_int_equal(p.bytes_done, BODY_LEN);
	prov_share_leave(a);
	prov_share_leave(b);

	char path[600];
	struct stat st;
	snprintf(path, sizeof(path), "%s/" REPO_DIR "/blobs/%s", f->ctx.hub_dir, f->body_sha);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, BODY_LEN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_last_leaver_cancels, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_shared_result, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
