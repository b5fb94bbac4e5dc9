/* The event-stream parser: fields, line ends split across chunks, caps, stop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cli/sse.h"
#include "core/err.h"

#define MAX_SEEN 16

struct seen {
	int n;
	char type[MAX_SEEN][CLI_SSE_TYPE_MAX + 1];
	char data[MAX_SEEN][CAP_EVENT_LEN + 1];
	char id[MAX_SEEN][CLI_SSE_ID_MAX + 1];
	int stop_at; /* stop (return 7) at this event number, 0: never */
};

static int on_event(const struct cli_sse_event *ev, void *arg)
{
	struct seen *s = arg;
	assert_true(s->n < MAX_SEEN);
	assert_int_equal(strlen(ev->data), ev->data_len);
	snprintf(s->type[s->n], sizeof(s->type[0]), "%s", ev->type);
	snprintf(s->data[s->n], sizeof(s->data[0]), "%s", ev->data);
	snprintf(s->id[s->n], sizeof(s->id[0]), "%s", ev->id);
	s->n++;
	return s->stop_at && s->n == s->stop_at ? 7 : 0;
}

/* Feeds text in chunks of chunk bytes. */
static int feed(struct cli_sse *p, const char *text, size_t chunk, struct err *e)
{
	size_t len = strlen(text);
	for (size_t off = 0; off < len; off += chunk) {
		size_t n = len - off < chunk ? len - off : chunk;
		int rc = cli_sse_feed(p, text + off, n, e);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static const char stream[] = ": keep-alive\n"
			     "id: 1\n"
			     "event: progress\n"
			     "data: {\"phase\":\"downloading\"}\n"
			     "\n"
			     "id: 2\r\n"
			     "data: resolving hf:org/repo\r\n"
			     "\r\n"
			     "id: 3\r"
			     "data:first\r"
			     "data: second\r"
			     "\r"
			     "id: 4\n"
			     "event: data\n"
			     "data: {\"x\":1}\n"
			     "unknown: field\n"
			     "\n"
			     "id: 5\n"
			     "data: [DONE]\n"
			     "\n";

static void check_stream(struct seen *s)
{
	assert_int_equal(s->n, 5);
	assert_string_equal(s->type[0], "progress");
	assert_string_equal(s->data[0], "{\"phase\":\"downloading\"}");
	assert_string_equal(s->id[0], "1");
	assert_string_equal(s->type[1], "message");
	assert_string_equal(s->data[1], "resolving hf:org/repo");
	assert_string_equal(s->id[1], "2");
	assert_string_equal(s->data[2], "first\nsecond");
	assert_string_equal(s->id[2], "3");
	assert_string_equal(s->type[3], "data");
	assert_string_equal(s->data[3], "{\"x\":1}");
	assert_string_equal(s->type[4], "message");
	assert_string_equal(s->data[4], "[DONE]");
	assert_string_equal(s->id[4], "5");
}

static void test_whole_stream(void **state)
{
	(void)state;
	struct cli_sse p;
	struct seen s = {0};
	struct err e;
	cli_sse_init(&p, on_event, &s);
	assert_int_equal(feed(&p, stream, sizeof(stream), &e), 0);
	check_stream(&s);
}

/* Every chunk size, down to one byte: a CRLF split between chunks is one line end. */
static void test_every_chunking(void **state)
{
	(void)state;
	for (size_t chunk = 1; chunk < sizeof(stream); chunk++) {
		static struct cli_sse p;
		static struct seen s;
		struct err e;
		memset(&s, 0, sizeof(s));
		cli_sse_init(&p, on_event, &s);
		assert_int_equal(feed(&p, stream, chunk, &e), 0);
		check_stream(&s);
	}
}

static void test_no_dispatch_without_blank_line(void **state)
{
	(void)state;
	struct cli_sse p;
	struct seen s = {0};
	struct err e;
	cli_sse_init(&p, on_event, &s);
	assert_int_equal(feed(&p, "data: half\n", 64, &e), 0);
	assert_int_equal(s.n, 0);
	/* An event with no data field dispatches nothing and forgets its type. */
	assert_int_equal(feed(&p, "\nevent: progress\n\ndata: x\n\n", 64, &e), 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.data[0], "half");
	assert_string_equal(s.type[1], "message");
}

static void test_empty_data_and_no_space(void **state)
{
	(void)state;
	struct cli_sse p;
	struct seen s = {0};
	struct err e;
	cli_sse_init(&p, on_event, &s);
	assert_int_equal(feed(&p, "data\n\ndata:  two spaces\n\n", 64, &e), 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.data[0], "");
	assert_string_equal(s.data[1], " two spaces");
}

static void test_stop_is_sticky(void **state)
{
	(void)state;
	struct cli_sse p;
	struct seen s = {.stop_at = 2};
	struct err e;
	cli_sse_init(&p, on_event, &s);
	assert_int_equal(feed(&p, stream, sizeof(stream), &e), 7);
	assert_int_equal(s.n, 2);
	assert_int_equal(cli_sse_feed(&p, "data: more\n\n", 12, &e), 7);
	assert_int_equal(s.n, 2);
}

static void test_reset_keeps_last_id(void **state)
{
	(void)state;
	struct cli_sse p;
	struct seen s = {0};
	struct err e;
	cli_sse_init(&p, on_event, &s);
	assert_int_equal(feed(&p, "id: 41\ndata: a\n\nid: 42\ndata: partial", 64, &e), 0);
	assert_string_equal(p.last_id, "42");
	cli_sse_reset(&p);
	assert_string_equal(p.last_id, "42");
	/* The partial line and event are gone: the new stream starts clean. */
	assert_int_equal(feed(&p, "data: b\n\n", 64, &e), 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.data[1], "b");
}

static void test_line_over_cap(void **state)
{
	(void)state;
	static char big[CLI_SSE_LINE_MAX + 10];
	struct cli_sse p;
	struct seen s = {0};
	struct err e;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cli_sse_init(&p, on_event, &s);
	assert_int_equal(cli_sse_feed(&p, big, strlen(big), &e), ERR_TOO_LARGE);
	assert_non_null(strstr(e.msg, "line"));
	assert_int_equal(s.n, 0);
}

static void test_event_data_over_cap(void **state)
{
	(void)state;
	static char line[CAP_EVENT_LEN];
	struct cli_sse p;
	struct seen s = {0};
	struct err e;
	/* Two data lines that each fit, but not together. */
	memcpy(line, "data: ", 6);
	memset(line + 6, 'y', CAP_EVENT_LEN / 2 + 10);
	line[6 + CAP_EVENT_LEN / 2 + 10] = '\n';
	size_t n = 6 + CAP_EVENT_LEN / 2 + 11;
	cli_sse_init(&p, on_event, &s);
	assert_int_equal(cli_sse_feed(&p, line, n, &e), 0);
	assert_int_equal(cli_sse_feed(&p, line, n, &e), ERR_TOO_LARGE);
	assert_non_null(strstr(e.msg, "data"));
}

static void test_id_over_cap(void **state)
{
	(void)state;
	char line[CLI_SSE_ID_MAX + 16];
	struct cli_sse p;
	struct seen s = {0};
	struct err e;
	memcpy(line, "id: ", 4);
	memset(line + 4, '9', CLI_SSE_ID_MAX + 1);
	line[4 + CLI_SSE_ID_MAX + 1] = '\n';
	cli_sse_init(&p, on_event, &s);
	assert_int_equal(cli_sse_feed(&p, line, CLI_SSE_ID_MAX + 6, &e), ERR_TOO_LARGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_whole_stream),
	    cmocka_unit_test(test_every_chunking),
	    cmocka_unit_test(test_no_dispatch_without_blank_line),
	    cmocka_unit_test(test_empty_data_and_no_space),
	    cmocka_unit_test(test_stop_is_sticky),
	    cmocka_unit_test(test_reset_keeps_last_id),
	    cmocka_unit_test(test_line_over_cap),
	    cmocka_unit_test(test_event_data_over_cap),
	    cmocka_unit_test(test_id_over_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
