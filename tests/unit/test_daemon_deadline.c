/*
 * The request deadline: a connection that trickles its headers is shut
 * down once the deadline passes although it never falls silent, while a
 * job stream (a request being answered) outlives it.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/util.h"
#include "daemon/daemon.h"
#include "daemon/http.h"
#include "fake_provisioner.h"
#include "jobs/job.h"

#define DEADLINE_MS 400

static int dial(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* 1 when the peer has closed fd (end of stream or reset), reading what came. */
static int closed(int fd)
{
	char buf[4096];
	struct pollfd p = {.fd = fd, .events = POLLIN};
	while (poll(&p, 1, 0) > 0) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n <= 0)
			return 1;
	}
	return 0;
}

static void test_trickle_cut_stream_kept(void **state)
{
	(void)state;
	struct fake_prov fp;
	fake_prov_init(&fp);
	struct daemon_config cfg = {.port = 0, .request_deadline_ms = DEADLINE_MS};
	struct daemon *d = NULL;
	struct err e;
	err_clear(&e);
	if (daemon_start(&cfg, &fp.base, &d, &e) != 0)
		fail_msg("daemon_start: %s", e.msg);
	int port = daemon_port(d);
	const char *body = "{\"operation\":\"model_download\",\"model\":\"acme/wait-deadline\"}";
	char id[JOB_ID_MAX];
	assert_int_equal(job_submit_json(d->jobs, body, strlen(body), id, &e), 0);

	int stream = dial(port);
	char req[256];
	int n = snprintf(req, sizeof(req),
			 "GET /v1/jobs/%s/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", id);
	assert_int_equal(send(stream, req, (size_t)n, 0), n);

	const char *slow =
	    "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: xxxxxxxxxxxxxxxxxxxx";
	int trickle = dial(port);
	int64_t t0 = now_ms(), cut_at = -1;
	for (size_t i = 0; i < strlen(slow) && cut_at < 0; i++) {
		if (closed(trickle) || send(trickle, slow + i, 1, MSG_NOSIGNAL) != 1)
			cut_at = now_ms() - t0;
		sleep_ms(50);
	}
	assert_true(cut_at >= DEADLINE_MS - 50);
	assert_true(cut_at < DEADLINE_MS + 1000);
	/* The stream is well past the deadline, and still open. */
	sleep_ms(DEADLINE_MS);
	assert_false(closed(stream));
	close(trickle);
	close(stream);
	daemon_stop(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_trickle_cut_stream_kept),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
