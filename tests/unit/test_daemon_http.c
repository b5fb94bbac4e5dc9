/*
 * The HTTP API in process: the daemon on an ephemeral loopback port with the
 * fake provisioner, driven with libcurl. Status codes of the job protocol,
 * the SSE framing, replay with Last-Event-ID, the error shape, Host, Origin
 * and token checks, cancel, many streams at once, what streams cost in
 * wake-ups.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <dirent.h>
#include <jansson.h>

#include "core/err.h"
#include "core/curl_mem.h"
#include "core/util.h"
#include "daemon/daemon.h"
#include "fake_provisioner.h"

struct fixture {
	struct fake_prov fp;
	struct daemon *d;
	int port;
};

struct buf {
	char *p;
	size_t n, cap;
};

static size_t buf_write(char *data, size_t size, size_t nmemb, void *arg)
{
	struct buf *b = arg;
	size_t n = size * nmemb;
	/* Grown by doubling: a stream of many small events stays linear. */
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, data, n);
	b->n += n;
	b->p[b->n] = 0;
	return n;
}

static struct fixture *start_with(const char *token, int connection_timeout_s)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	fake_prov_init(&f->fp);
	struct daemon_config cfg = {.port = 0,
				    .token = token,
				    .keepalive_ms = 200,
				    .connection_timeout_s = connection_timeout_s};
	struct err e;
	err_clear(&e);
	if (daemon_start(&cfg, &f->fp.base, &f->d, &e) != 0)
		fail_msg("daemon_start: %s", e.msg);
	f->port = daemon_port(f->d);
	assert_true(f->port > 0);
	return f;
}

static struct fixture *start(const char *token)
{
	return start_with(token, 0);
}

static int setup(void **state)
{
	*state = start(NULL);
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	daemon_stop(f->d);
	free(f);
	return 0;
}

/*
 * One request. headers is NULL-terminated (may be NULL). Returns the status;
 * *body (may be NULL) receives the answer (free it).
 */
static long req(struct fixture *f, const char *method, const char *path, const char *const *headers,
		const char *data, char **body)
{
	CURL *c = curl_easy_init();
	char url[2048];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", f->port, path);
	struct buf b = {0};
	struct curl_slist *h = NULL;
	for (size_t i = 0; headers && headers[i]; i++)
		h = curl_slist_append(h, headers[i]);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, buf_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
	if (data) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(data));
	}
	CURLcode rc = curl_easy_perform(c);
	long status = 0;
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (body)
		*body = b.p ? b.p : xstrdup("");
	else
		free(b.p);
	return status;
}

static const char *const json_ct[] = {"Content-Type: application/json", NULL};

/* Checks the error shape and returns its code. */
static void expect_error(const char *body, const char *code)
{
	json_error_t je;
	json_t *o = json_loads(body, 0, &je);
	if (!o)
		fail_msg("not JSON: %s", body);
	json_t *err = json_object_get(o, "error");
	assert_true(json_is_object(err));
	assert_string_equal(json_string_value(json_object_get(err, "code")), code);
	assert_true(json_string_length(json_object_get(err, "message")) > 0);
	json_decref(o);
}

static void expect(struct fixture *f, const char *method, const char *path,
		   const char *const *headers, const char *data, long status, const char *code)
{
	char *body;
	long got = req(f, method, path, headers, data, &body);
	if (got != status)
		fail_msg("%s %s: status %ld, want %ld: %s", method, path, got, status, body);
	if (code)
		expect_error(body, code);
	free(body);
}

static void submit(struct fixture *f, const char *ref, char *id, size_t size)
{
	char data[256], *body;
	snprintf(data, sizeof(data), "{\"operation\":\"model_download\",\"model\":\"%s\"}", ref);
	long st = req(f, "POST", "/v1/jobs", json_ct, data, &body);
	if (st != 201)
		fail_msg("submit: %ld %s", st, body);
	json_t *o = json_loads(body, 0, NULL);
	assert_non_null(o);
	snprintf(id, size, "%s", json_string_value(json_object_get(o, "job_id")));
	char want[128];
	snprintf(want, sizeof(want), "/v1/jobs/%s/stream", id);
	assert_string_equal(json_string_value(json_object_get(o, "sse_url")), want);
	json_decref(o);
	free(body);
}

static char *job_state(struct fixture *f, const char *id)
{
	char path[128], *body;
	snprintf(path, sizeof(path), "/v1/jobs/%s", id);
	assert_int_equal(req(f, "GET", path, NULL, NULL, &body), 200);
	json_t *o = json_loads(body, 0, NULL);
	free(body);
	char *s = xstrdup(json_string_value(json_object_get(o, "state")));
	json_decref(o);
	return s;
}

static void wait_state(struct fixture *f, const char *id, const char *want)
{
	int64_t end = now_ms() + 5000;
	for (;;) {
		char *s = job_state(f, id);
		int ok = strcmp(s, want) == 0;
		if (!ok && now_ms() > end)
			fail_msg("job %s: %s, want %s", id, s, want);
		free(s);
		if (ok)
			return;
		sleep_ms(5);
	}
}

static void test_health_and_ui(void **state)
{
	struct fixture *f = *state;
	char *body;
	assert_int_equal(req(f, "GET", "/health", NULL, NULL, &body), 200);
	assert_string_equal(body, "ok\n");
	free(body);
	assert_int_equal(req(f, "GET", "/", NULL, NULL, &body), 200);
	assert_true(strlen(body) > 0);
	free(body);
	assert_int_equal(req(f, "GET", "/index.html", NULL, NULL, NULL), 200);
	expect(f, "GET", "/nope.js", NULL, NULL, 404, "not_found");
	expect(f, "GET", "/v1/nothing", NULL, NULL, 404, "not_found");
	expect(f, "PUT", "/v1/jobs", NULL, NULL, 405, "method_not_allowed");
}

static void test_submit_errors(void **state)
{
	struct fixture *f = *state;
	const char *const form[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
	expect(f, "POST", "/v1/jobs", form, "{\"operation\":\"model_list\"}", 415,
	       "unsupported_media_type");
	expect(f, "POST", "/v1/jobs", json_ct, "{\"operation\":", 400, "bad_request");
	expect(f, "POST", "/v1/jobs", json_ct, "{\"operation\":7}", 400, "bad_request");
	expect(f, "POST", "/v1/jobs", json_ct, "{\"operation\":\"model_list\",\"zzz\":1}", 400,
	       "bad_request");
	expect(f, "POST", "/v1/jobs", json_ct, "{\"operation\":\"format_disk\"}", 422,
	       "unprocessable");
	expect(f, "POST", "/v1/jobs", json_ct,
	       "{\"operation\":\"model_download\",\"model\":\"../../../etc/passwd\"}", 422,
	       "unprocessable");
	expect(f, "POST", "/v1/jobs", json_ct, "", 400, "bad_request");
	size_t big = 70 * 1024;
	char *huge = xmalloc(big + 1);
	memset(huge, ' ', big);
	huge[big] = 0;
	huge[0] = '{';
	expect(f, "POST", "/v1/jobs", json_ct, huge, 413, "too_large");
	free(huge);
	/* The daemon still serves after all of that. */
	expect(f, "GET", "/health", NULL, NULL, 200, NULL);
}

static void test_unknown_ids(void **state)
{
	struct fixture *f = *state;
	expect(f, "GET", "/v1/jobs/job-0123456789abcdef", NULL, NULL, 404, "not_found");
	expect(f, "GET", "/v1/jobs/job-0123456789abcdef/stream", NULL, NULL, 404, "not_found");
	expect(f, "POST", "/v1/jobs/job-0123456789abcdef/cancel", NULL, NULL, 404, "not_found");
	expect(f, "DELETE", "/v1/jobs/job-0123456789abcdef", NULL, NULL, 404, "not_found");
	expect(f, "GET", "/v1/jobs/job-%zz", NULL, NULL, 400, "bad_request");
	expect(f, "GET", "/v1/jobs/job-%00", NULL, NULL, 400, "bad_request");
	expect(f, "GET", "/v1/jobs?state=bogus", NULL, NULL, 400, "bad_request");
	expect(f, "GET", "/v1/models/hf%3Aa%2Fb%3Ac.gguf", NULL, NULL, 404, "not_found");
	expect(f, "DELETE", "/v1/models/hf:a/b:c.gguf", NULL, NULL, 404, "not_found");
	char *body;
	assert_int_equal(req(f, "GET", "/v1/models", NULL, NULL, &body), 200);
	assert_string_equal(body, "{\"models\":[],\"total\":0,\"offset\":0,\"limit\":100,"
				  "\"next_offset\":null}\n");
	free(body);
	expect(f, "GET", "/v1/models?limit=0", NULL, NULL, 400, "bad_request");
	expect(f, "GET", "/v1/models?offset=x", NULL, NULL, 400, "bad_request");
	expect(f, "GET", "/v1/models?sort=id", NULL, NULL, 400, "bad_request");
	expect(f, "GET", "/v1/sources/hf/acme/model", NULL, NULL, 501, "not_implemented");
}

/* curl accepts any type unless told: the event stream is asked for by name. */
static const char *const sse_accept[] = {"Accept: text/event-stream", NULL};

static void test_stream_and_replay(void **state)
{
	struct fixture *f = *state;
	char id[64], path[128], *body;
	submit(f, "acme/ok-stream", id, sizeof(id));
	snprintf(path, sizeof(path), "/v1/jobs/%s/stream", id);
	assert_int_equal(req(f, "GET", path, sse_accept, NULL, &body), 200);
	assert_non_null(strstr(body, "event: progress\ndata: {\"job_id\":\""));
	assert_non_null(strstr(body, "\"phase\":\"downloading\""));
	assert_non_null(strstr(body, "id: 1\ndata: job "));
	assert_non_null(strstr(body, "event: data\ndata: {\"id\":\"hf:acme/ok-stream:"));
	const char *done = strstr(body, "data: [DONE]\n\n");
	assert_non_null(done);
	assert_string_equal(done, "data: [DONE]\n\n");
	/* Exactly one terminal line. */
	assert_null(strstr(body, "[ERROR]"));
	assert_null(strstr(body, "[CANCELLED]"));
	/* Every event has an id; the last id is the terminal one. */
	const char *last_id = NULL;
	for (const char *p = strstr(body, "\nid: "); p; p = strstr(p + 1, "\nid: "))
		last_id = p + 5;
	assert_non_null(last_id);
	unsigned long long lid = strtoull(last_id, NULL, 10);
	free(body);

	char hdr[64];
	snprintf(hdr, sizeof(hdr), "Last-Event-ID: %llu", lid - 1);
	const char *const h[] = {hdr, sse_accept[0], NULL};
	assert_int_equal(req(f, "GET", path, h, NULL, &body), 200);
	char want[64];
	snprintf(want, sizeof(want), "id: %llu\ndata: [DONE]\n\n", lid);
	assert_non_null(strstr(body, want));
	assert_null(strstr(body, "event: "));
	free(body);
	const char *const bad[] = {"Last-Event-ID: x1", NULL};
	expect(f, "GET", path, bad, NULL, 400, "bad_request");

	char *s = job_state(f, id);
	assert_string_equal(s, "succeeded");
	free(s);
	assert_int_equal(req(f, "GET", "/v1/jobs?state=succeeded", NULL, NULL, &body), 200);
	assert_non_null(strstr(body, id));
	free(body);
	assert_int_equal(req(f, "GET", "/metrics", NULL, NULL, &body), 200);
	assert_non_null(strstr(body, "rbee_jobs{state=\"succeeded\"} 1\n"));
	assert_non_null(strstr(body, "rbee_bytes_downloaded_total 20000\n"));
	free(body);
}

static void test_cancel(void **state)
{
	struct fixture *f = *state;
	char id[64], path[128], *body;
	submit(f, "acme/wait-cancel", id, sizeof(id));
	wait_state(f, id, "running");
	snprintf(path, sizeof(path), "/v1/jobs/%s/cancel", id);
	int64_t t0 = now_ms();
	assert_int_equal(req(f, "POST", path, NULL, NULL, &body), 200);
	json_t *o = json_loads(body, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(o, "status")), "cancelled");
	assert_string_equal(json_string_value(json_object_get(o, "job_id")), id);
	json_decref(o);
	free(body);
	wait_state(f, id, "cancelled");
	assert_true(now_ms() - t0 < 500);
	assert_int_equal(req(f, "POST", path, NULL, NULL, &body), 409);
	expect_error(body, "conflict");
	o = json_loads(body, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(o, "status")), "cancelled");
	json_decref(o);
	free(body);
	snprintf(path, sizeof(path), "/v1/jobs/%s", id);
	expect(f, "DELETE", path, NULL, NULL, 409, "conflict");
	snprintf(path, sizeof(path), "/v1/jobs/%s/stream", id);
	assert_int_equal(req(f, "GET", path, NULL, NULL, &body), 200);
	assert_non_null(strstr(body, "data: [CANCELLED]\n\n"));
	free(body);
}

/* What a stream sends in ms milliseconds, with the Accept header accept (NULL: curl's own). */
static char *stream_for(const char *url, const char *accept, long ms)
{
	CURL *c = curl_easy_init();
	struct buf b = {0};
	struct curl_slist *h = accept ? curl_slist_append(NULL, accept) : NULL;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, buf_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ms);
	assert_int_equal(curl_easy_perform(c), CURLE_OPERATION_TIMEDOUT);
	curl_easy_cleanup(c);
	curl_slist_free_all(h);
	assert_non_null(b.p);
	return b.p;
}

/* A watcher that goes away mid-stream costs nothing to the job or the daemon. */
static void test_vanished_watcher(void **state)
{
	struct fixture *f = *state;
	char id[64], path[128];
	submit(f, "acme/wait-vanish", id, sizeof(id));
	snprintf(path, sizeof(path), "/v1/jobs/%s/stream", id);
	char url[256];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", f->port, path);
	char *got = stream_for(url, sse_accept[0], 300);
	assert_non_null(strstr(got, "event: progress"));
	free(got);
	/* The stream count drops once the daemon notices the peer is gone. */
	int64_t end = now_ms() + 3000;
	char *body = NULL;
	for (;;) {
		assert_int_equal(req(f, "GET", "/metrics", NULL, NULL, &body), 200);
		int gone = strstr(body, "rbee_streams 0\n") != NULL;
		free(body);
		if (gone)
			break;
		if (now_ms() > end)
			fail_msg("the vanished watcher's stream is still open");
		sleep_ms(50);
	}
	char *s = job_state(f, id);
	assert_string_equal(s, "running");
	free(s);
	char cpath[128];
	snprintf(cpath, sizeof(cpath), "/v1/jobs/%s/cancel", id);
	expect(f, "POST", cpath, NULL, NULL, 200, NULL);
}

/*
 * A quiet stream (a job waiting in the queue) gets keep-alive comments, and
 * empty lines in rbee's framing.
 */
static void test_keepalive(void **state)
{
	struct fixture *f = *state;
	char a[64], b2[64], q[64], path[128];
	submit(f, "acme/wait-k1", a, sizeof(a));
	submit(f, "acme/wait-k2", b2, sizeof(b2));
	submit(f, "acme/wait-k3", q, sizeof(q));
	wait_state(f, a, "running");
	wait_state(f, b2, "running");
	char *s = job_state(f, q);
	assert_string_equal(s, "queued");
	free(s);
	char url[256];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/jobs/%s/stream", f->port, q);
	char *got = stream_for(url, sse_accept[0], 700);
	assert_non_null(strstr(got, ": keep-alive\n\n"));
	assert_null(strstr(got, "event: progress"));
	free(got);
	/*
	 * rbee's framing (what curl, like rbee's client, gets by default): empty
	 * lines only, which rbee's client skips, where a comment would be printed.
	 */
	got = stream_for(url, NULL, 700);
	const char *p = strstr(got, "\n\n\n");
	assert_non_null(p);
	assert_null(strstr(got, "\n:")); /* no comment line */
	assert_null(strstr(got, "id: "));
	assert_int_equal(strncmp(got, "\ndata: job ", 11), 0);
	p = strstr(got, " queued: model_download acme/wait-k3\n\n");
	assert_non_null(p);
	for (p += strlen(" queued: model_download acme/wait-k3\n\n"); *p; p++)
		assert_int_equal(*p, '\n');
	free(got);
	const char *ids[] = {q, a, b2};
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "/v1/jobs/%s", ids[i]);
		expect(f, "DELETE", path, NULL, NULL, 200, NULL);
	}
}

static void test_host_and_origin(void **state)
{
	struct fixture *f = *state;
	const char *const evil_host[] = {"Host: evil.example:1234", NULL};
	expect(f, "GET", "/v1/jobs", evil_host, NULL, 403, "forbidden");
	char other_port[64];
	snprintf(other_port, sizeof(other_port), "Host: 127.0.0.1:%d", f->port + 1);
	const char *const wrong_port[] = {other_port, NULL};
	expect(f, "GET", "/health", wrong_port, NULL, 403, "forbidden");
	char lh[64];
	snprintf(lh, sizeof(lh), "Host: localhost:%d", f->port);
	const char *const localhost[] = {lh, NULL};
	expect(f, "GET", "/health", localhost, NULL, 200, NULL);
	/* Loopback is judged by the one URL policy: any 127/8 literal, never a look-alike name. */
	char lo2[64], fake[96];
	snprintf(lo2, sizeof(lo2), "Host: 127.0.0.2:%d", f->port);
	const char *const other_lo[] = {lo2, NULL};
	expect(f, "GET", "/health", other_lo, NULL, 200, NULL);
	snprintf(fake, sizeof(fake), "Host: 127.attacker.invalid:%d", f->port);
	const char *const lookalike[] = {fake, NULL};
	expect(f, "GET", "/health", lookalike, NULL, 403, "forbidden");

	const char *const foreign[] = {"Content-Type: application/json",
				       "Origin: http://evil.example", NULL};
	expect(f, "POST", "/v1/jobs", foreign, "{\"operation\":\"model_list\"}", 403, "forbidden");
	/* Reading from a foreign origin is not a change of state. */
	expect(f, "GET", "/health", foreign, NULL, 200, NULL);
	char own[96];
	snprintf(own, sizeof(own), "Origin: http://127.0.0.1:%d", f->port);
	const char *const same[] = {"Content-Type: application/json", own, NULL};
	expect(f, "POST", "/v1/jobs", same, "{\"operation\":\"model_list\"}", 201, NULL);
}

static void test_token(void **state)
{
	(void)state;
	struct fixture *f = start("s3cret-token");
	expect(f, "GET", "/v1/jobs", NULL, NULL, 401, "unauthorized");
	const char *const wrong[] = {"Authorization: Bearer s3cret-tokeN", NULL};
	expect(f, "GET", "/v1/jobs", wrong, NULL, 401, "unauthorized");
	const char *const basic[] = {"Authorization: Basic czNjcmV0", NULL};
	expect(f, "GET", "/metrics", basic, NULL, 401, "unauthorized");
	const char *const right[] = {"Authorization: Bearer s3cret-token", NULL};
	expect(f, "GET", "/v1/jobs", right, NULL, 200, NULL);
	expect(f, "GET", "/health", NULL, NULL, 200, NULL);
	daemon_stop(f->d);
	free(f);

	struct daemon *d = NULL;
	struct err e;
	err_clear(&e);
	struct daemon_config open_cfg = {.bind = "0.0.0.0", .port = 0};
	assert_int_equal(daemon_start(&open_cfg, NULL, &d, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "--token-file"));
	struct daemon_config bad_cfg = {.bind = "not-an-address", .port = 0};
	assert_int_equal(daemon_start(&bad_cfg, NULL, &d, &e), ERR_INVALID);
}

static void test_stop_ends_streams(void **state)
{
	(void)state;
	struct fixture *f = start(NULL);
	char id[64];
	submit(f, "acme/wait-stop", id, sizeof(id));
	wait_state(f, id, "running");
	int64_t t0 = now_ms();
	daemon_stop(f->d);
	assert_true(now_ms() - t0 < 2000);
	free(f);
}

enum { STREAMS_MAX = 64 };

/* Event streams of one job (SSE framing) on one multi handle. */
struct streams {
	CURLM *m;
	struct curl_slist *h;
	int n;
	CURL *c[STREAMS_MAX];
	struct buf b[STREAMS_MAX];
};

/* n streams of job id; http10: as HTTP/1.0 requests, whose answers are not chunked. */
static struct streams *streams_open(struct fixture *f, const char *id, int n, int http10)
{
	struct streams *st = xcalloc(1, sizeof(*st));
	char url[256];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/jobs/%s/stream", f->port, id);
	st->m = curl_multi_init();
	st->h = curl_slist_append(NULL, sse_accept[0]);
	st->n = n;
	for (int i = 0; i < n; i++) {
		st->c[i] = curl_easy_init();
		curl_easy_setopt(st->c[i], CURLOPT_URL, url);
		curl_easy_setopt(st->c[i], CURLOPT_HTTPHEADER, st->h);
		curl_easy_setopt(st->c[i], CURLOPT_WRITEFUNCTION, buf_write);
		curl_easy_setopt(st->c[i], CURLOPT_WRITEDATA, &st->b[i]);
		curl_easy_setopt(st->c[i], CURLOPT_TIMEOUT_MS, 15000L);
		if (http10)
			curl_easy_setopt(st->c[i], CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_0);
		curl_multi_add_handle(st->m, st->c[i]);
	}
	return st;
}

/* Runs the streams for ms milliseconds or until none is left; how many are left. */
static int streams_run(struct streams *st, long ms)
{
	int running = 1;
	int64_t t0 = now_ms();
	while (running && now_ms() - t0 < ms) {
		curl_multi_perform(st->m, &running);
		curl_multi_poll(st->m, NULL, 0, 10, NULL);
	}
	return running;
}

/* Every stream that ended did so without an error. */
static void streams_check_ends(struct streams *st)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(st->m, &left)))
		assert_int_equal(msg->data.result, CURLE_OK);
}

/*
 * Submits a job that runs until cancelled and opens n streams of it
 * (http10: as HTTP/1.0) once it runs; *id receives its id.
 */
static struct streams *streams_of_running(struct fixture *f, const char *ref, char *id, size_t size,
					  int n, int http10)
{
	submit(f, ref, id, size);
	wait_state(f, id, "running");
	return streams_open(f, id, n, http10);
}

/* Cancels job id: every stream ends without an error and with [CANCELLED]. */
static void streams_cancel(struct fixture *f, struct streams *st, const char *id)
{
	char path[128];
	snprintf(path, sizeof(path), "/v1/jobs/%s/cancel", id);
	expect(f, "POST", path, NULL, NULL, 200, NULL);
	assert_int_equal(streams_run(st, 8000), 0);
	streams_check_ends(st);
	for (int i = 0; i < st->n; i++)
		assert_non_null(strstr(st->b[i].p, "data: [CANCELLED]\n\n"));
}

static void streams_close(struct streams *st)
{
	for (int i = 0; i < st->n; i++) {
		curl_multi_remove_handle(st->m, st->c[i]);
		curl_easy_cleanup(st->c[i]);
		free(st->b[i].p);
	}
	curl_multi_cleanup(st->m);
	curl_slist_free_all(st->h);
	free(st);
}

/* Streams opened before the cancel end with [CANCELLED]; the API keeps answering. */
static void test_many_streams(void **state)
{
	struct fixture *f = *state;
	char id[64];
	submit(f, "acme/wait-many", id, sizeof(id));
	enum { N = 40 };
	struct streams *st = streams_open(f, id, N, 0);
	streams_run(st, 300);
	expect(f, "GET", "/health", NULL, NULL, 200, NULL);
	char cpath[128];
	snprintf(cpath, sizeof(cpath), "/v1/jobs/%s", id);
	expect(f, "DELETE", cpath, NULL, NULL, 200, NULL);
	assert_int_equal(streams_run(st, 8000), 0);
	for (int i = 0; i < N; i++) {
		assert_non_null(st->b[i].p);
		assert_non_null(strstr(st->b[i].p, "data: [CANCELLED]\n\n"));
		assert_non_null(strstr(st->b[i].p, "event: progress"));
	}
	streams_close(st);
}

enum { TASKS_MAX = 512 };

/* The thread ids of this process, sorted; returns how many. */
static int task_ids(long *ids)
{
	DIR *dir = opendir("/proc/self/task");
	assert_non_null(dir);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(dir)) && n < TASKS_MAX)
		if (de->d_name[0] != '.')
			ids[n++] = atol(de->d_name);
	closedir(dir);
	return n;
}

/* Voluntary and involuntary context switches of thread tid so far (0 once it has gone). */
static long task_switches(long tid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/self/task/%ld/status", tid);
	FILE *fp = fopen(path, "r");
	if (!fp)
		return 0;
	long sum = 0, v;
	while (fgets(line, sizeof(line), fp))
		if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1 ||
		    sscanf(line, "nonvoluntary_ctxt_switches: %ld", &v) == 1)
			sum += v;
	fclose(fp);
	return sum;
}

/*
 * Many watchers of a busy job cost the daemon one wake-up per event, not
 * one per watcher and event: once their first bytes are out, the streams'
 * connection threads sleep while one writer writes every stream. The fake
 * job sends progress every 5 ms, so a thread per watcher woken per event
 * would switch hundreds of times in the half second measured.
 */
static void test_streams_wake_once_per_event(void **state)
{
	struct fixture *f = *state;
	char id[64];
	submit(f, "acme/wait-fanout", id, sizeof(id));
	wait_state(f, id, "running");
	enum { N = 30 };
	long before[TASKS_MAX], after[TASKS_MAX], conn[TASKS_MAX], sw0[TASKS_MAX];
	int n_before = task_ids(before);
	struct streams *st = streams_open(f, id, N, 0);
	int64_t until = now_ms() + 10000;
	for (int i = 0; i < N && now_ms() < until; i += st->b[i].n > 0)
		streams_run(st, 20);
	streams_run(st, 100);
	/* The threads that came with the streams: their connection threads. */
	int n_after = task_ids(after), n_conn = 0;
	for (int i = 0; i < n_after; i++) {
		int old = 0;
		for (int k = 0; k < n_before && !old; k++)
			old = before[k] == after[i];
		if (!old)
			conn[n_conn++] = after[i];
	}
	assert_true(n_conn >= N);
	for (int i = 0; i < n_conn; i++)
		sw0[i] = task_switches(conn[i]);
	size_t got[N];
	for (int i = 0; i < N; i++)
		got[i] = st->b[i].n;
	streams_run(st, 500);
	long switches = 0;
	for (int i = 0; i < n_conn; i++) {
		long x = task_switches(conn[i]);
		switches += x > sw0[i] ? x - sw0[i] : 0;
	}
	/* Every watcher was written meanwhile, by the writer. */
	for (int i = 0; i < N; i++)
		assert_true(st->b[i].n > got[i] + 200);
	if (switches >= N)
		fail_msg("%d stream threads switched %ld times in 0.5 s", n_conn, switches);
	streams_cancel(f, st, id);
	streams_close(st);
}

/*
 * A stream longer than libmicrohttpd's idle timeout still ends with the end
 * of its chunked body, and its connection serves the next request.
 */
static void test_stream_outlives_idle_timeout(void **state)
{
	(void)state;
	struct fixture *f = start_with(NULL, 1);
	char id[64];
	struct streams *st = streams_of_running(f, "acme/wait-long", id, sizeof(id), 1, 0);
	streams_run(st, 2500);
	streams_cancel(f, st, id);
	/* The same connection again: curl reuses it if the daemon kept it open. */
	curl_multi_remove_handle(st->m, st->c[0]);
	char url[256];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/health", f->port);
	curl_easy_setopt(st->c[0], CURLOPT_URL, url);
	curl_multi_add_handle(st->m, st->c[0]);
	assert_int_equal(streams_run(st, 5000), 0);
	streams_check_ends(st);
	long connects = -1;
	curl_easy_getinfo(st->c[0], CURLINFO_NUM_CONNECTS, &connects);
	assert_int_equal(connects, 0);
	streams_close(st);
	daemon_stop(f->d);
	free(f);
}

/* An HTTP/1.0 client's stream, which is not chunked, follows the job to its end too. */
static void test_stream_http10(void **state)
{
	struct fixture *f = *state;
	char id[64];
	struct streams *st = streams_of_running(f, "acme/wait-http10", id, sizeof(id), 2, 1);
	streams_run(st, 400);
	streams_cancel(f, st, id);
	for (int i = 0; i < 2; i++) {
		assert_non_null(strstr(st->b[i].p, "event: progress"));
		/* No chunk sizes inside the body. */
		assert_null(strstr(st->b[i].p, "\r\n"));
	}
	streams_close(st);
}

int main(void)
{
	curl_mem_init();
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_health_and_ui, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_submit_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_ids, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stream_and_replay, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_streams, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_vanished_watcher, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_keepalive, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_host_and_origin, setup, teardown),
	    cmocka_unit_test(test_token),
	    cmocka_unit_test(test_stop_ends_streams),
	    cmocka_unit_test_setup_teardown(test_streams_wake_once_per_event, setup, teardown),
	    cmocka_unit_test(test_stream_outlives_idle_timeout),
	    cmocka_unit_test_setup_teardown(test_stream_http10, setup, teardown),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	return rc;
}
