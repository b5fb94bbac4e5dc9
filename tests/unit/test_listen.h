/*
 * A listening TCP socket on 127.0.0.1 with a kernel-chosen port, and the
 * URL of its /blob, for unit tests that run transfers against a server in
 * the test process (or against one that never answers); taking one request,
 * and a server that answers each with a whole body.
 */
#ifndef RBEE_TEST_LISTEN_H
#define RBEE_TEST_LISTEN_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
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

/* Accepts one connection within timeout_ms and reads its request head; -1 if none came. */
static inline int test_accept_request(int lfd, long timeout_ms)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	if (poll(&p, 1, (int)timeout_ms) != 1)
		return -1;
	int fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		return -1;
	char buf[4096];
	size_t got = 0;
	while (got < sizeof(buf) - 1) {
		struct pollfd q = {.fd = fd, .events = POLLIN};
		if (poll(&q, 1, 5000) != 1)
			break;
		ssize_t r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
		buf[got] = '\0';
		if (strstr(buf, "\r\n\r\n"))
			return fd;
	}
	close(fd);
	return -1;
}

/*
 * Answers every request on lfd with 200 and the whole body (a Range is
 * ignored), until no request comes for 10 s or lfd is shut down; counts
 * them in *requests (may be NULL).
 */
static inline void test_serve_body(int lfd, const void *body, size_t len, atomic_int *requests)
{
	for (;;) {
		int fd = test_accept_request(lfd, 10000);
		if (fd < 0)
			return;
		if (requests)
			atomic_fetch_add(requests, 1);
		char head[128];
		int n = snprintf(
		    head, sizeof(head),
		    "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", len);
		if (send(fd, head, (size_t)n, MSG_NOSIGNAL) == n)
			send(fd, body, len, MSG_NOSIGNAL);
		close(fd);
	}
}

#endif
