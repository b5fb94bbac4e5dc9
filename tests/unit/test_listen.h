/*
 * A listening TCP socket on 127.0.0.1 with a kernel-chosen port, and the
 * URL of its /blob, for unit tests that run transfers against a server in
 * the test process (or against one that never answers).
 */
#ifndef RBEE_TEST_LISTEN_H
#define RBEE_TEST_LISTEN_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>

/* Returns the listening descriptor and fills url; fails the test on error. */
static inline int test_listen_loopback(char *url, size_t size)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
	socklen_t len = sizeof(a);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	snprintf(url, size, "http://127.0.0.1:%d/blob", ntohs(a.sin_port));
	return fd;
}

#endif
