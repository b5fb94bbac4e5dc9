/*
 * fuzz_sse: the client's text/event-stream parser (cli/sse.h), which reads
 * whatever the daemon (or anything answering on its port) sends.
 *
 * The first input byte picks chunk sizes; the rest is the stream. It is fed
 * once whole and once in chunks (so CR LF pairs and lines split across
 * chunks), and both parsers must dispatch the same events and end with the
 * same result. An event whose data is "stop" makes the callback stop the
 * parser. Invariants: every event is within its caps and NUL-terminated; a
 * parser that returned nonzero returns the same value for every later feed
 * and dispatches nothing more.
 */
#include "fuzz.h"

#include "cli/sse.h"
#include "core/caps.h"
#include "core/err.h"

#define SSE_STOP 7

struct log {
	char *buf;
	size_t len, cap;
};

static void log_put(struct log *l, const void *p, size_t n)
{
	if (l->len + n > l->cap) {
		l->cap = (l->len + n) * 2;
		l->buf = realloc(l->buf, l->cap);
		FUZZ_CHECK(l->buf != NULL);
	}
	memcpy(l->buf + l->len, p, n);
	l->len += n;
}

static int on_event(const struct cli_sse_event *ev, void *arg)
{
	struct log *l = arg;
	size_t tl = strlen(ev->type), il = strlen(ev->id);
	FUZZ_CHECK(tl > 0 && tl <= CLI_SSE_TYPE_MAX && il <= CLI_SSE_ID_MAX);
	FUZZ_CHECK(ev->data_len <= CAP_EVENT_LEN && ev->data[ev->data_len] == '\0');
	FUZZ_CHECK(!memchr(ev->data, '\r', ev->data_len));
	FUZZ_CHECK(!strpbrk(ev->type, "\r\n") && !strpbrk(ev->id, "\r\n"));
	uint64_t n[3] = {tl, ev->data_len, il};
	log_put(l, n, sizeof(n));
	log_put(l, ev->type, tl);
	log_put(l, ev->data, ev->data_len);
	log_put(l, ev->id, il);
	return ev->data_len == 4 && memcmp(ev->data, "stop", 4) == 0 ? SSE_STOP : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct cli_sse a, b;
	struct log la = {0}, lb = {0};
	struct err ea = {0}, eb = {0};
	if (size < 1)
		return 0;
	unsigned step = 1 + data[0] % 16;
	const char *s = (const char *)data + 1;
	size_t n = size - 1;

	cli_sse_init(&a, on_event, &la);
	int ra = cli_sse_feed(&a, s, n, &ea);
	FUZZ_CHECK(ra == 0 || ra == SSE_STOP || ra == ERR_TOO_LARGE);
	if (ra == ERR_TOO_LARGE)
		FUZZ_CHECK(ea.code == ERR_TOO_LARGE && fuzz_err_ok(&ea));
	size_t logged = la.len;
	if (ra != 0)
		FUZZ_CHECK(cli_sse_feed(&a, "data: x\n\n", 9, NULL) == ra && la.len == logged);

	cli_sse_init(&b, on_event, &lb);
	int rb = 0;
	for (size_t off = 0; off < n; off += step) {
		size_t len = n - off < step ? n - off : step;
		size_t before = lb.len;
		int r = cli_sse_feed(&b, s + off, len, &eb);
		if (rb != 0)
			FUZZ_CHECK(r == rb && lb.len == before);
		rb = r;
	}
	FUZZ_CHECK(ra == rb);
	FUZZ_CHECK(la.len == lb.len && (la.len == 0 || memcmp(la.buf, lb.buf, la.len) == 0));
	free(la.buf);
	free(lb.buf);
	return 0;
}
