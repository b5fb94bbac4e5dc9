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
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* Reads one request's head (up to the blank line, at most size - 1 bytes) into req, NUL-ended. */
static inline size_t test_read_request(int fd, char *req, size_t size)
{
	size_t got = 0;
	req[0] = '\0';
	while (got < size - 1) {
		ssize_t r = read(fd, req + got, size - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		req[got] = '\0';
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	return got;
}

#endif
