/*
 * The job follower's view of an event stream, fed over a socketpair: a fake
 * daemon thread writes SSE frames (whole, or split at every byte), the test
 * reads the other end into the SSE parser with the follower's callback, and
 * checks what the follower reports: the NDJSON on stdout, the narration
 * lines, the exit status and message for [DONE], [ERROR], [ERROR]
 * interrupted and [CANCELLED].
 */
#include <pthread.h>
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

#include "cli/cli.h"
#include "cli/follow.h"
#include "cli/sse.h"
#include "core/err.h"

struct daemon {
	int fd;
	const char *text;
	size_t chunk; /* bytes per write: 1 splits every frame at every byte */
};

/* The fake daemon: writes text in chunks of chunk bytes, then closes its end. */
static void *daemon_main(void *arg)
{
	struct daemon *d = arg;
	size_t len = strlen(d->text);
	for (size_t off = 0; off < len;) {
		size_t n = len - off < d->chunk ? len - off : d->chunk;
		/* The reader may stop at the terminal line and close: no SIGPIPE then. */
		ssize_t w = send(d->fd, d->text + off, n, MSG_NOSIGNAL);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	close(d->fd);
	return NULL;
}

struct outcome {
	int stop; /* the parser's stop value: nonzero when the terminal line came */
	int rc;	  /* what the follower returns */
	char out[8192];
	struct err e;
};

/*
 * Streams text through a socketpair into a view of mode, with stdout sent
 * to a file that is read back into o->out.
 */
static void follow_text(enum cli_view_mode mode, const char *what, const char *text, size_t chunk,
			struct outcome *o)
{
	int sv[2];
	pthread_t t;
	char buf[64];
	struct cli_sse *p = malloc(sizeof(*p));
	struct cli_view *v = cli_view_new(mode, what);
	FILE *cap = tmpfile();
	int saved = dup(STDOUT_FILENO);

	assert_non_null(p);
	assert_non_null(cap);
	memset(o, 0, sizeof(*o));
	err_clear(&o->e);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct daemon d = {.fd = sv[1], .text = text, .chunk = chunk};
	assert_int_equal(pthread_create(&t, NULL, daemon_main, &d), 0);

	fflush(stdout);
	dup2(fileno(cap), STDOUT_FILENO);
	cli_sse_init(p, cli_view_event, v);
	for (;;) {
		ssize_t n = read(sv[0], buf, chunk < sizeof(buf) ? chunk : sizeof(buf));
		if (n <= 0)
			break;
		o->stop = cli_sse_feed(p, buf, (size_t)n, &o->e);
		if (o->stop != 0)
			break;
	}
	o->rc = o->stop > 0 ? cli_view_finish(v, "job-1", &o->e) : o->stop;
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);

	close(sv[0]);
	pthread_join(t, NULL);
	rewind(cap);
	size_t got = fread(o->out, 1, sizeof(o->out) - 1, cap);
	o->out[got] = '\0';
	fclose(cap);
	cli_view_free(v);
	free(p);
}

static const char done_stream[] =
    ": job-1\n\n"
    "id: 1\ndata: resolving hf:org/repo\n\n"
    "id: 2\nevent: progress\n"
    "data: {\"job_id\":\"job-1\",\"state\":\"running\",\"phase\":\"downloading\","
    "\"file\":\"a.gguf\",\"files_done\":0,\"files_total\":1,\"bytes_done\":5,"
    "\"bytes_total\":10,\"file_bytes_done\":5,\"file_bytes_total\":10,\"rate_bps\":1.5,"
    "\"eta_s\":null}\n\n"
    ": keep-alive\n\n"
    "id: 3\nevent: data\ndata: {\"id\":\"hf:org/repo:a.gguf\",\"size\":10}\n\n"
    "id: 4\r\ndata: [DONE]\r\n\r\n"
    "id: 5\ndata: after the end\n\n";

static const char json_done[] =
    "{\"event\":\"message\",\"id\":\"1\",\"data\":\"resolving hf:org/repo\"}\n"
    "{\"event\":\"progress\",\"id\":\"2\",\"data\":{\"job_id\":\"job-1\",\"state\":\"running\","
    "\"phase\":\"downloading\",\"file\":\"a.gguf\",\"files_done\":0,\"files_total\":1,"
    "\"bytes_done\":5,\"bytes_total\":10,\"file_bytes_done\":5,\"file_bytes_total\":10,"
    "\"rate_bps\":1.5,\"eta_s\":null}}\n"
    "{\"event\":\"data\",\"id\":\"3\",\"data\":{\"id\":\"hf:org/repo:a.gguf\",\"size\":10}}\n"
    "{\"event\":\"done\"}\n";

static void test_done_as_ndjson(void **state)
{
	(void)state;
	struct outcome *o = malloc(sizeof(*o));
	follow_text(CLI_VIEW_JSON, "pull", done_stream, sizeof(done_stream), o);
	assert_int_equal(o->rc, CLI_EXIT_OK);
	/* Nothing after the terminal line is shown. */
	assert_string_equal(o->out, json_done);
	free(o);
}

static void test_split_frames(void **state)
{
	(void)state;
	struct outcome *o = malloc(sizeof(*o));
	/* Every frame cut at every byte, and in odd-sized pieces: the same report. */
	for (size_t chunk = 1; chunk <= 13; chunk += 3) {
		follow_text(CLI_VIEW_JSON, "pull", done_stream, chunk, o);
		assert_int_equal(o->rc, CLI_EXIT_OK);
		assert_string_equal(o->out, json_done);
	}
	free(o);
}

static void test_lines(void **state)
{
	(void)state;
	struct outcome *o = malloc(sizeof(*o));
	follow_text(CLI_VIEW_LINES, "pull", done_stream, 7, o);
	assert_int_equal(o->rc, CLI_EXIT_OK);
	/* Narration and the end; progress events print nothing in lines. */
	assert_string_equal(o->out, "resolving hf:org/repo\ndone\n");
	free(o);
}

static void test_error(void **state)
{
	(void)state;
	struct outcome *o = malloc(sizeof(*o));
	follow_text(
	    CLI_VIEW_JSON, "pull",
	    "id: 1\ndata: resolving x\n\nid: 2\ndata: [ERROR] digest mismatch on a.gguf\n\n", 5, o);
	assert_int_equal(o->rc, ERR_INTERNAL);
	assert_string_equal(o->e.msg, "pull failed: digest mismatch on a.gguf");
	assert_non_null(strstr(o->out, "{\"event\":\"error\",\"message\":\"digest mismatch on "
				       "a.gguf\"}\n"));
	/* An [ERROR] without a message still fails, with a message of its own. */
	follow_text(CLI_VIEW_LINES, "verify", "data: [ERROR]\n\n", 64, o);
	assert_int_equal(o->rc, ERR_INTERNAL);
	assert_string_equal(o->e.msg, "verify failed: the job failed");
	free(o);
}

static void test_interrupted_and_cancelled(void **state)
{
	(void)state;
	struct outcome *o = malloc(sizeof(*o));
	follow_text(CLI_VIEW_JSON, "pull",
		    "data: [ERROR] interrupted: the daemon is stopping; the job resumes\n\n", 3, o);
	assert_int_equal(o->rc, CLI_EXIT_INTERRUPTED);
	assert_string_equal(o->out, "{\"event\":\"interrupted\",\"message\":\"interrupted: the "
				    "daemon is stopping; the job resumes\"}\n");
	follow_text(CLI_VIEW_LINES, "pull", "id: 9\ndata: [CANCELLED]\n\n", 2, o);
	assert_int_equal(o->rc, CLI_EXIT_CANCELLED);
	assert_string_equal(o->out, "");
	free(o);
}

static void test_stream_without_end(void **state)
{
	(void)state;
	struct outcome *o = malloc(sizeof(*o));
	/* The daemon closes before the terminal line: the follower has not ended. */
	follow_text(CLI_VIEW_JSON, "pull", "id: 1\ndata: resolving x\n\ndata: [DO", 4, o);
	assert_int_equal(o->stop, 0);
	assert_string_equal(o->out,
			    "{\"event\":\"message\",\"id\":\"1\",\"data\":\"resolving x\"}\n");
	/* A line over its cap ends the stream with an error, not a reallocation. */
	size_t n = CLI_SSE_LINE_MAX + 16;
	char *big = malloc(n + 16);
	memcpy(big, "data: ", 6);
	memset(big + 6, 'x', n);
	strcpy(big + 6 + n, "\n\n");
	follow_text(CLI_VIEW_LINES, "pull", big, 4096, o);
	assert_int_equal(o->rc, ERR_TOO_LARGE);
	free(big);
	free(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_done_as_ndjson),
	    cmocka_unit_test(test_split_frames),
	    cmocka_unit_test(test_lines),
	    cmocka_unit_test(test_error),
	    cmocka_unit_test(test_interrupted_and_cancelled),
	    cmocka_unit_test(test_stream_without_end),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
