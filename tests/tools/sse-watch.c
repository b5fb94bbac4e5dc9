/*
 * sse-watch: N watchers of one job's event stream from one thread, for the
 * daemon benchmark: each connection sends GET /v1/jobs/ID/stream and its
 * answer is read with epoll into one buffer and dropped, only scanned for
 * event ids and the terminal line. It costs the machine a few syscalls per
 * wake-up, so that the watchers' side stays off the daemon's cores, which a
 * client that parses every line (an asyncio loop) did not.
 *
 *   sse-watch PORT JOB_ID N TIMEOUT_S [--rbee]
 *
 * --rbee sends no Accept header of text/event-stream (rbee's framing).
 * Prints one JSON line: connections that read the terminal line ("done"),
 * that ended before it ("eof"), failed ("error") or timed out, the events
 * read over all connections, the bytes, and the client's CPU seconds.
 * Exit status: 0 when every watcher read the terminal line, 1 otherwise,
 * 2 usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"
#include "core/parse.h"
#include "core/util.h"

#define WATCH_MAX 4096
#define WATCH_CARRY 8 /* bytes of the previous read kept, for a marker split across reads */

enum watch_state { W_OPEN = 0, W_DONE, W_EOF, W_ERROR };

struct watcher {
	int fd;
	enum watch_state st;
	char carry[WATCH_CARRY];
	size_t n_carry;
};

static int watch_usage(void)
{
	fprintf(stderr, "usage: sse-watch PORT JOB_ID N TIMEOUT_S [--rbee]   (N <= %d)\n",
		WATCH_MAX);
	return 2;
}

static double watch_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Occurrences of marker in carry + buf, and whether end was seen; keeps the tail as carry. */
static size_t watch_scan(struct watcher *w, const char *buf, size_t n, const char *marker,
			 const char *end, int *ended)
{
	char tmp[WATCH_CARRY + 65536];
	size_t len = w->n_carry;
	memcpy(tmp, w->carry, len);
	size_t take = n < sizeof(tmp) - len ? n : sizeof(tmp) - len;
	memcpy(tmp + len, buf, take);
	len += take;
	size_t hits = 0, ml = strlen(marker), el = strlen(end);
	for (size_t i = 0; i + ml <= len; i++) {
		if (memcmp(tmp + i, marker, ml) == 0)
			hits++;
		if (i + el <= len && memcmp(tmp + i, end, el) == 0)
			*ended = 1;
	}
	/* The carry is shorter than both markers, so no marker is counted twice. */
	w->n_carry = len < WATCH_CARRY - 1 ? len : WATCH_CARRY - 1;
	memcpy(w->carry, tmp + len - w->n_carry, w->n_carry);
	return hits;
}

int main(int argc, char **argv)
{
	if (argc < 5 || argc > 6 || (argc == 6 && strcmp(argv[5], "--rbee") != 0))
		return watch_usage();
	struct err e;
	err_clear(&e);
	uint64_t port, n, timeout_s;
	if (parse_u64_str(argv[1], 1, 65535, &port, "port", &e) ||
	    parse_u64_str(argv[3], 1, WATCH_MAX, &n, "watchers", &e) ||
	    parse_u64_str(argv[4], 1, 3600, &timeout_s, "timeout", &e)) {
		fprintf(stderr, "sse-watch: %s\n", e.msg);
		return 2;
	}
	int rbee = argc == 6;
	char req[512];
	int rl = snprintf(
	    req, sizeof(req), "GET /v1/jobs/%.64s/stream HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n%s\r\n",
	    argv[2], (unsigned)port, rbee ? "Accept: */*\r\n" : "Accept: text/event-stream\r\n");
	/* rbee's framing has no id: lines; its events are counted by their data: prefix. */
	const char *marker = rbee ? "data: " : "\nid: ";
	double cpu0 = watch_cpu_s();
	int ep = epoll_create1(0);
	struct watcher *ws = xcalloc(n, sizeof(*ws));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	size_t open_n = 0;
	for (size_t i = 0; i < n; i++) {
		ws[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (ws[i].fd < 0 || connect(ws[i].fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    write(ws[i].fd, req, (size_t)rl) != rl) {
			ws[i].st = W_ERROR;
			continue;
		}
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = i};
		epoll_ctl(ep, EPOLL_CTL_ADD, ws[i].fd, &ev);
		open_n++;
	}
	uint64_t events = 0, bytes = 0;
	size_t timed_out = 0;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	static char buf[65536];
	while (open_n > 0) {
		struct timespec t;
		clock_gettime(CLOCK_MONOTONIC, &t);
		long left = (long)timeout_s * 1000 -
			    ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0) {
			timed_out = open_n;
			break;
		}
		struct epoll_event evs[256];
		int k = epoll_wait(ep, evs, 256, (int)left);
		if (k < 0 && errno == EINTR)
			continue;
		for (int x = 0; x < k; x++) {
			struct watcher *w = &ws[evs[x].data.u64];
			ssize_t got = read(w->fd, buf, sizeof(buf));
			if (got < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			int ended = 0;
			if (got > 0) {
				bytes += (uint64_t)got;
				events +=
				    watch_scan(w, buf, (size_t)got, marker, "data: [", &ended);
			}
			if (got <= 0 || ended) {
				w->st = got < 0 ? W_ERROR : ended ? W_DONE : W_EOF;
				epoll_ctl(ep, EPOLL_CTL_DEL, w->fd, NULL);
				close(w->fd);
				w->fd = -1;
				open_n--;
			}
		}
	}
	size_t cnt[W_ERROR + 1] = {0};
	for (size_t i = 0; i < n; i++) {
		cnt[ws[i].st]++;
		if (ws[i].fd >= 0)
			close(ws[i].fd);
	}
	close(ep);
	free(ws);
	printf("{\"done\":%zu,\"eof\":%zu,\"error\":%zu,\"timeout\":%zu,\"events\":%llu,"
	       "\"bytes\":%llu,\"cpu_s\":%.3f}\n",
	       cnt[W_DONE], cnt[W_EOF], cnt[W_ERROR], timed_out, (unsigned long long)events,
	       (unsigned long long)bytes, watch_cpu_s() - cpu0);
	return cnt[W_DONE] == n ? 0 : 1;
}
