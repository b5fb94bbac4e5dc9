/*
 * Job registry: states, the event log and its replay by id, fan-out to
 * several watchers and the serialisations they share, cancellation of queued and running jobs, the
 * max-jobs bound, shutdown, bad submissions. Uses the fake provisioner.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/util.h"
#include "fake_provisioner.h"
#include "jobs/job.h"

#define WAIT_MS 5000

struct fixture {
	struct fake_prov fp;
	struct job_registry *r;
};

static int setup_n(void **state, int max_jobs)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	fake_prov_init(&f->fp);
	struct job_registry_config cfg = {.prov = &f->fp.base, .max_jobs = max_jobs};
	struct err e;
	err_clear(&e);
	assert_int_equal(job_registry_new(&cfg, &f->r, &e), 0);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_n(state, 2);
}
static int setup_one(void **state)
{
	return setup_n(state, 1);
}
static int setup_three(void **state)
{
	return setup_n(state, 3);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	job_registry_free(f->r);
	free(f);
	return 0;
}

static void submit(struct job_registry *r, const char *body, char id[JOB_ID_MAX])
{
	struct err e;
	err_clear(&e);
	int rc = job_submit_json(r, body, strlen(body), id, &e);
	if (rc != 0)
		fail_msg("submit %s: %d %s", body, rc, e.msg);
}

static void download(struct job_registry *r, const char *ref, char id[JOB_ID_MAX])
{
	char body[256];
	snprintf(body, sizeof(body), "{\"operation\":\"model_download\",\"model\":\"%s\"}", ref);
	submit(r, body, id);
}

static const char *state_of(struct job_registry *r, const char *id, char *buf, size_t size)
{
	json_t *o = NULL;
	struct err e;
	assert_int_equal(job_get_json(r, id, &o, &e), 0);
	snprintf(buf, size, "%s", json_string_value(json_object_get(o, "state")));
	json_decref(o);
	return buf;
}

static void wait_state(struct job_registry *r, const char *id, const char *want)
{
	char buf[32];
	int64_t end = now_ms() + WAIT_MS;
	while (strcmp(state_of(r, id, buf, sizeof(buf)), want) != 0) {
		if (now_ms() > end)
			fail_msg("job %s: state %s, want %s", id, buf, want);
		sleep_ms(2);
	}
}

/* Reads every event until the terminal one; returns the count, fills last. */
static int read_all(struct job_registry *r, const char *id, uint64_t after, uint64_t *first_id,
		    struct job_event *last, int *progress, int *data)
{
	struct job_watch *w = NULL;
	struct err e;
	assert_int_equal(job_watch_open(r, id, after, &w, &e), 0);
	int n = 0;
	uint64_t prev = after;
	*progress = *data = 0;
	memset(last, 0, sizeof(*last));
	int64_t end = now_ms() + WAIT_MS;
	for (;;) {
		struct job_event ev;
		int rc = job_watch_next(w, 100, &ev);
		assert_true(rc >= 0);
		if (now_ms() > end)
			fail_msg("no terminal event within %d ms", WAIT_MS);
		if (rc == 0)
			continue;
		assert_true(ev.id > prev);
		if (n == 0 && first_id)
			*first_id = ev.id;
		prev = ev.id;
		n++;
		*progress += ev.kind == JOB_EV_PROGRESS;
		*data += ev.kind == JOB_EV_DATA;
		free(last->data);
		*last = ev;
		if (job_event_is_terminal(ev.kind))
			break;
	}
	struct job_event extra;
	assert_int_equal(job_watch_next(w, 10, &extra), 0);
	job_watch_close(w);
	return n;
}

static void test_success_and_replay(void **state)
{
	struct fixture *f = *state;
	char id[JOB_ID_MAX];
	download(f->r, "acme/ok-model", id);
	assert_memory_equal(id, "job-", 4);
	struct job_event last;
	int progress, data;
	uint64_t first;
	int n = read_all(f->r, id, 0, &first, &last, &progress, &data);
	assert_int_equal(last.kind, JOB_EV_DONE);
	assert_string_equal(last.data, "[DONE]");
	assert_true(progress >= 1);
	assert_int_equal(data, 1);
	assert_int_equal(first, 1);
	wait_state(f->r, id, "succeeded");

	/* Replay of a finished job: the same history, and from an id on. */
	uint64_t last_id = last.id;
	free(last.data);
	int n2 = read_all(f->r, id, 0, NULL, &last, &progress, &data);
	/* Progress was coalesced: the replay holds only the latest one. */
	assert_true(n2 < n);
	assert_int_equal(progress, 1);
	assert_int_equal(data, 1);
	assert_int_equal(last.id, last_id);
	free(last.data);
	uint64_t first2;
	read_all(f->r, id, 2, &first2, &last, &progress, &data);
	assert_true(first2 > 2);
	assert_int_equal(last.kind, JOB_EV_DONE);
	free(last.data);

	json_t *o;
	struct err e;
	assert_int_equal(job_get_json(f->r, id, &o, &e), 0);
	json_t *p = json_object_get(o, "progress");
	assert_true(json_is_object(p));
	assert_int_equal(json_integer_value(json_object_get(p, "bytes_done")), 20000);
	assert_string_equal(json_string_value(json_object_get(p, "phase")), "downloading");
	assert_string_equal(json_string_value(json_object_get(o, "model_id")),
			    "hf:acme/ok-model:model.Q4_K_M.gguf");
	json_decref(o);
}

static void test_failure(void **state)
{
	struct fixture *f = *state;
	char id[JOB_ID_MAX];
	download(f->r, "acme/fail-model", id);
	struct job_event last;
	int progress, data;
	read_all(f->r, id, 0, NULL, &last, &progress, &data);
	assert_int_equal(last.kind, JOB_EV_ERROR);
	assert_string_equal(last.data, "[ERROR] fake: the hub did not answer");
	free(last.data);
	wait_state(f->r, id, "failed");
	enum job_state st;
	struct err e;
	assert_int_equal(job_cancel(f->r, id, &st, &e), ERR_CONFLICT);
	assert_int_equal(st, JOB_FAILED);
}

struct reader {
	struct job_registry *r;
	const char *id;
	int n, kind;
};

static void *reader_main(void *p)
{
	struct reader *rd = p;
	struct job_event last;
	int progress, data;
	rd->n = read_all(rd->r, rd->id, 0, NULL, &last, &progress, &data);
	rd->kind = last.kind;
	free(last.data);
	return NULL;
}

static void test_fan_out(void **state)
{
	struct fixture *f = *state;
	char id[JOB_ID_MAX];
	download(f->r, "acme/wait-fan", id);
	enum { N = 8 };
	pthread_t t[N];
	struct reader rd[N];
	for (int i = 0; i < N; i++) {
		rd[i] = (struct reader){f->r, id, 0, -1};
		assert_int_equal(pthread_create(&t[i], NULL, reader_main, &rd[i]), 0);
	}
	sleep_ms(100);
	enum job_state st;
	struct err e;
	assert_int_equal(job_cancel(f->r, id, &st, &e), 0);
	assert_int_equal(st, JOB_RUNNING);
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(rd[i].kind, JOB_EV_CANCELLED);
		assert_true(rd[i].n >= 2);
	}
	wait_state(f->r, id, "cancelled");
}

/* Reads frames of framing fr until the terminal one; keeps up to cap of them in out. */
static size_t read_frames(struct job_watch *w, enum job_framing fr, struct job_frame **out,
			  size_t cap)
{
	size_t n = 0;
	int64_t end = now_ms() + WAIT_MS;
	for (;;) {
		struct job_frame *f = NULL;
		int rc = job_watch_next_frame(w, 100, fr, &f);
		assert_true(rc >= 0);
		if (now_ms() > end)
			fail_msg("no terminal frame within %d ms", WAIT_MS);
		if (rc == 0)
			continue;
		assert_true(n < cap);
		out[n++] = f;
		if (job_event_is_terminal(f->kind))
			return n;
	}
}

static void frames_unref(struct job_frame **f, size_t n)
{
	for (size_t i = 0; i < n; i++)
		job_frame_unref(f[i]);
}

/* Two watchers of one job share each event's serialisation: the same frame, not a copy. */
static void test_frames_shared(void **state)
{
	struct fixture *f = *state;
	char id[JOB_ID_MAX];
	download(f->r, "acme/ok-frames", id);
	wait_state(f->r, id, "succeeded");
	struct job_watch *w1 = NULL, *w2 = NULL, *w3 = NULL;
	struct err e;
	assert_int_equal(job_watch_open(f->r, id, 0, &w1, &e), 0);
	assert_int_equal(job_watch_open(f->r, id, 0, &w2, &e), 0);
	assert_int_equal(job_watch_open(f->r, id, 0, &w3, &e), 0);
	enum { CAP = 64 };
	struct job_frame *a[CAP], *b[CAP];
	size_t na = read_frames(w1, JOB_FRAMING_SSE, a, CAP);
	size_t nb = read_frames(w2, JOB_FRAMING_SSE, b, CAP);
	assert_int_equal(na, nb);
	assert_true(na >= 3);
	for (size_t i = 0; i < na; i++) {
		struct job_event ev;
		assert_int_equal(job_watch_next(w3, 1000, &ev), 1);
		assert_ptr_equal(a[i], b[i]);
		/* The log's reference and one per watcher. */
		assert_int_equal(atomic_load(&a[i]->refs), 3);
		assert_int_equal(a[i]->id, ev.id);
		assert_int_equal(a[i]->kind, ev.kind);
		const char *name = ev.kind == JOB_EV_PROGRESS ? "event: progress\n"
				   : ev.kind == JOB_EV_DATA   ? "event: data\n"
							      : "";
		char *want =
		    xasprintf("id: %llu\n%sdata: %s\n\n", (unsigned long long)ev.id, name, ev.data);
		assert_string_equal(a[i]->text, want);
		assert_int_equal(a[i]->len, strlen(want));
		free(want);
		free(ev.data);
	}
	assert_int_equal(a[na - 1]->kind, JOB_EV_DONE);
	frames_unref(b, nb);
	assert_int_equal(atomic_load(&a[0]->refs), 2);
	frames_unref(a, na);
	job_watch_close(w1);
	job_watch_close(w2);
	job_watch_close(w3);
}

/*
 * rbee's framing: progress as a line tagged with its phase, a download's
 * result left out (an empty frame), model_list's result as rbee's data
 * event, the end marker as it is.
 */
static void test_frames_rbee(void **state)
{
	struct fixture *f = *state;
	char id[JOB_ID_MAX];
	download(f->r, "acme/ok-rbee", id);
	wait_state(f->r, id, "succeeded");
	struct job_watch *w = NULL;
	struct err e;
	assert_int_equal(job_watch_open(f->r, id, 0, &w, &e), 0);
	enum { CAP = 64 };
	struct job_frame *a[CAP];
	size_t n = read_frames(w, JOB_FRAMING_RBEE, a, CAP);
	job_watch_close(w);
	int progress = 0, data = 0;
	for (size_t i = 0; i < n; i++) {
		if (a[i]->kind == JOB_EV_PROGRESS) {
			progress++;
			assert_string_equal(a[i]->tag, "downloading");
			assert_memory_equal(a[i]->text, "data: Downloaded ", 17);
		} else if (a[i]->kind == JOB_EV_DATA) {
			data++;
			assert_int_equal(a[i]->len, 0);
		} else {
			assert_memory_equal(a[i]->text, "data: ", 6);
			assert_string_equal(a[i]->tag, "");
		}
	}
	assert_true(progress >= 1);
	assert_int_equal(data, 1);
	assert_string_equal(a[n - 1]->text, "data: [DONE]\n\n");
	frames_unref(a, n);

	submit(f->r, "{\"operation\":\"model_list\"}", id);
	assert_int_equal(job_watch_open(f->r, id, 0, &w, &e), 0);
	n = read_frames(w, JOB_FRAMING_RBEE, a, CAP);
	job_watch_close(w);
	data = 0;
	for (size_t i = 0; i < n; i++)
		if (a[i]->kind == JOB_EV_DATA) {
			data++;
			assert_memory_equal(a[i]->text,
					    "data: {\"action\":\"model_list\",\"payload\":", 39);
		}
	assert_int_equal(data, 1);
	frames_unref(a, n);
}

static struct job_frame *next_progress_frame(struct job_watch *w)
{
	struct job_frame *p = NULL;
	int64_t end = now_ms() + WAIT_MS;
	while (!p || p->kind != JOB_EV_PROGRESS) {
		if (now_ms() > end)
			fail_msg("no progress frame within %d ms", WAIT_MS);
		job_frame_unref(p);
		p = NULL;
		assert_true(job_watch_next_frame(w, 100, JOB_FRAMING_SSE, &p) >= 0);
	}
	return p;
}

/*
 * A watcher's frame outlives the log's copy: progress events are
 * coalesced (the log drops the old frame) and the job is pruned with the
 * registry, while the watcher still writes the bytes it holds.
 */
static void test_frame_outlives_log(void **state)
{
	struct fixture *f = *state;
	char id[JOB_ID_MAX];
	download(f->r, "acme/wait-frame", id);
	struct job_watch *w = NULL;
	struct err e;
	assert_int_equal(job_watch_open(f->r, id, 0, &w, &e), 0);
	struct job_frame *p = next_progress_frame(w);
	/* The fake provisioner emits progress every 5 ms: the event is replaced. */
	struct job_frame *q = next_progress_frame(w);
	assert_true(q->id > p->id);
	assert_int_equal(atomic_load(&p->refs), 1);
	enum job_state st;
	assert_int_equal(job_cancel(f->r, id, &st, &e), 0);
	job_watch_close(w);
	job_registry_free(f->r);
	f->r = NULL;
	char head[64];
	snprintf(head, sizeof(head), "id: %llu\nevent: progress\ndata: {",
		 (unsigned long long)p->id);
	assert_memory_equal(p->text, head, strlen(head));
	assert_int_equal(p->len, strlen(p->text));
	job_frame_unref(p);
	job_frame_unref(q);
}

static void test_cancel_running_fast(void **state)
{
	struct fixture *f = *state;
	char id[JOB_ID_MAX];
	download(f->r, "acme/wait-one", id);
	wait_state(f->r, id, "running");
	struct err e;
	enum job_state st;
	int64_t t0 = now_ms();
	assert_int_equal(job_cancel(f->r, id, &st, &e), 0);
	wait_state(f->r, id, "cancelled");
	/* The job ends within the 50 ms budget (plus scheduling slack). */
	int64_t took = now_ms() - t0;
	if (took > 100)
		fail_msg("cancel took %lld ms", (long long)took);
	assert_int_equal(job_cancel(f->r, id, &st, &e), ERR_CONFLICT);
	assert_int_equal(st, JOB_CANCELLED);
	assert_int_equal(job_cancel(f->r, "job-0000000000000000", &st, &e), ERR_NOT_FOUND);
}

static void test_cancel_queued(void **state)
{
	struct fixture *f = *state;
	char a[JOB_ID_MAX], b[JOB_ID_MAX];
	download(f->r, "acme/wait-a", a);
	wait_state(f->r, a, "running");
	download(f->r, "acme/wait-b", b);
	sleep_ms(30);
	char buf[32];
	assert_string_equal(state_of(f->r, b, buf, sizeof(buf)), "queued");
	enum job_state st;
	struct err e;
	assert_int_equal(job_cancel(f->r, b, &st, &e), 0);
	assert_int_equal(st, JOB_QUEUED);
	assert_string_equal(state_of(f->r, b, buf, sizeof(buf)), "cancelled");
	struct job_event last;
	int progress, data;
	read_all(f->r, b, 0, NULL, &last, &progress, &data);
	assert_int_equal(last.kind, JOB_EV_CANCELLED);
	assert_int_equal(progress, 0);
	free(last.data);
	assert_string_equal(state_of(f->r, a, buf, sizeof(buf)), "running");
	assert_int_equal(job_cancel(f->r, a, &st, &e), 0);
	wait_state(f->r, a, "cancelled");
	assert_int_equal(atomic_load(&f->fp.calls), 1);
}

static void test_max_jobs(void **state)
{
	struct fixture *f = *state;
	enum { N = 5 };
	char id[N][JOB_ID_MAX];
	for (int i = 0; i < N; i++) {
		char ref[32];
		snprintf(ref, sizeof(ref), "acme/wait-%d", i);
		download(f->r, ref, id[i]);
	}
	sleep_ms(150);
	struct job_stats st;
	job_stats_get(f->r, &st);
	assert_int_equal(st.by_state[JOB_RUNNING], 2);
	assert_int_equal(st.by_state[JOB_QUEUED], 3);
	assert_int_equal(st.active_transfers, 2);
	json_t *o;
	struct err e;
	assert_int_equal(job_list_json(f->r, "queued", &o, &e), 0);
	assert_int_equal(json_array_size(json_object_get(o, "jobs")), 3);
	json_decref(o);
	assert_int_equal(job_list_json(f->r, "bogus", &o, &e), ERR_INVALID);
	/* Cancelling the running ones lets the queued ones run, two at a time. */
	for (int i = 0; i < N; i++) {
		enum job_state s;
		wait_state(f->r, id[i], "running");
		assert_int_equal(job_cancel(f->r, id[i], &s, &e), 0);
	}
	for (int i = 0; i < N; i++)
		wait_state(f->r, id[i], "cancelled");
	assert_int_equal(atomic_load(&f->fp.max_running), 2);
}

static void test_shutdown_interrupts(void **state)
{
	struct fixture *f = *state;
	char id[JOB_ID_MAX];
	download(f->r, "acme/wait-shut", id);
	wait_state(f->r, id, "running");
	int64_t t0 = now_ms();
	job_registry_shutdown(f->r);
	assert_true(now_ms() - t0 < 500);
	char buf[32];
	assert_string_equal(state_of(f->r, id, buf, sizeof(buf)), "interrupted");
	char id2[JOB_ID_MAX];
	struct err e;
	const char *body = "{\"operation\":\"model_list\"}";
	assert_int_equal(job_submit_json(f->r, body, strlen(body), id2, &e), ERR_SHUTDOWN);
}

static void test_model_busy(void **state)
{
	struct fixture *f = *state;
	char id[JOB_ID_MAX];
	download(f->r, "hf:Acme/wait-busy:Q4_K_M", id);
	assert_true(job_model_busy(f->r, "hf:acme/wait-busy:x.Q4_K_M.gguf"));
	assert_false(job_model_busy(f->r, "hf:acme/other:x.Q4_K_M.gguf"));
	enum job_state st;
	struct err e;
	assert_int_equal(job_cancel(f->r, id, &st, &e), 0);
	wait_state(f->r, id, "cancelled");
	assert_false(job_model_busy(f->r, "hf:acme/wait-busy:x.Q4_K_M.gguf"));
}

/*
 * The busy check reads a running download's ref with the ref parser: a
 * Hugging Face job holds every model of its repo (any revision, any file,
 * named with or without "hf:"), a URL job the model its pinned digest
 * names, a file job the model of its file name, and nothing else.
 */
static void test_model_busy_ref_kinds(void **state)
{
	struct fixture *f = *state;
	char hf[JOB_ID_MAX], url[JOB_ID_MAX], file[JOB_ID_MAX];
	const char *sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	char ref[256];
	download(f->r, "hf:Acme/wait-rev:x.Q4_K_M.gguf@v2", hf);
	snprintf(ref, sizeof(ref), "https://example.com/dl/wait.gguf#sha256=%s", sha);
	download(f->r, ref, url);
	download(f->r, "file:///srv/models/wait.gguf", file);
	wait_state(f->r, hf, "running");
	wait_state(f->r, url, "running");
	wait_state(f->r, file, "running");
	assert_true(job_model_busy(f->r, "hf:acme/wait-rev:other.gguf"));
	assert_true(job_model_busy(f->r, "hf:acme/wait-rev:x.Q4_K_M.gguf@v1"));
	assert_true(job_model_busy(f->r, "acme/wait-rev"));
	assert_true(job_model_busy(f->r, "ACME/Wait-Rev:Q8_0"));
	assert_false(job_model_busy(f->r, "hf:acme/wait-revx:x.Q4_K_M.gguf"));
	assert_false(job_model_busy(f->r, "hf:acme/wait:x.Q4_K_M.gguf"));
	assert_true(job_model_busy(f->r, "url:0123456789abcdef"));
	assert_true(job_model_busy(f->r, ref));
	assert_false(job_model_busy(f->r, "url:fedcba9876543210"));
	assert_false(job_model_busy(f->r, "https://example.com/dl/other.gguf"));
	assert_true(job_model_busy(f->r, "file:///srv/models/wait.gguf"));
	assert_false(job_model_busy(f->r, "file:other.gguf"));
	assert_false(job_model_busy(f->r, "file:///srv/models/other.gguf"));
	enum job_state st;
	struct err e;
	const char *ids[] = {hf, url, file};
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(job_cancel(f->r, ids[i], &st, &e), 0);
	for (size_t i = 0; i < 3; i++)
		wait_state(f->r, ids[i], "cancelled");
	assert_false(job_model_busy(f->r, "acme/wait-rev"));
}

static void test_bounded_log(void **state)
{
	struct fixture *f = *state;
	char id[JOB_ID_MAX];
	download(f->r, "acme/chatty", id);
	wait_state(f->r, id, "succeeded");
	struct job_event last;
	int progress, data;
	uint64_t first;
	int n = read_all(f->r, id, 0, &first, &last, &progress, &data);
	assert_true(n <= CAP_JOB_EVENTS);
	assert_true(first > 1);
	assert_int_equal(last.kind, JOB_EV_DONE);
	free(last.data);
}

static void test_quick_ops(void **state)
{
	struct fixture *f = *state;
	char id[JOB_ID_MAX];
	submit(f->r, "{\"operation\":\"model_list\"}", id);
	struct job_event last;
	int progress, data;
	read_all(f->r, id, 0, NULL, &last, &progress, &data);
	assert_int_equal(last.kind, JOB_EV_DONE);
	assert_int_equal(data, 1);
	free(last.data);
	static const struct {
		const char *body;
		enum job_event_kind end;
		int data;
	} cases[] = {
	    {"{\"operation\":\"model_get\",\"id\":\"hf:a/b:c.gguf\"}", JOB_EV_ERROR, 0},
	    /* model_verify takes an optional id; an empty catalog checks out. */
	    {"{\"operation\":\"model_verify\"}", JOB_EV_DONE, 1},
	    {"{\"operation\":\"model_verify\",\"id\":\"hf:a/b:c.gguf\"}", JOB_EV_ERROR, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		submit(f->r, cases[i].body, id);
		read_all(f->r, id, 0, NULL, &last, &progress, &data);
		assert_int_equal(last.kind, cases[i].end);
		assert_int_equal(data, cases[i].data);
		if (cases[i].end == JOB_EV_ERROR)
			assert_non_null(strstr(last.data, "no model"));
		free(last.data);
	}
}

static void test_bad_submissions(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *body;
		int rc;
	} cases[] = {
	    {"{", ERR_INVALID},
	    {"[]", ERR_INVALID},
	    {"{\"operation\":1}", ERR_INVALID},
	    {"{\"operation\":\"model_list\",\"x\":1}", ERR_INVALID},
	    {"{\"operation\":\"model_list\",\"operation\":\"model_list\"}", ERR_INVALID},
	    {"{\"operation\":\"model_list\",\"model\":\"a/b\"}", ERR_INVALID},
	    {"{\"operation\":\"model_download\"}", ERR_INVALID},
	    {"{\"operation\":\"model_download\",\"model\":5}", ERR_INVALID},
	    {"{\"operation\":\"model_destroy\"}", ERR_UNPROCESSABLE},
	    {"{\"operation\":\"model_download\",\"model\":\"a/../b\"}", ERR_UNPROCESSABLE},
	    {"{\"operation\":\"model_download\",\"model\":\"\"}", ERR_UNPROCESSABLE},
	    {"{\"operation\":\"model_download\",\"model\":\"a/b:../../etc/passwd\"}",
	     ERR_UNPROCESSABLE},
	    {"{\"operation\":\"model_get\",\"id\":\"a\\u0001b\"}", ERR_UNPROCESSABLE},
	    {"{\"operation\":\"model_verify\",\"model\":\"a/b\"}", ERR_INVALID},
	    {"{\"operation\":\"model_verify\",\"id\":\"\"}", ERR_UNPROCESSABLE},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char id[JOB_ID_MAX];
		struct err e;
		err_clear(&e);
		int rc = job_submit_json(f->r, cases[i].body, strlen(cases[i].body), id, &e);
		if (rc != cases[i].rc)
			fail_msg("%s: got %d (%s), want %d", cases[i].body, rc, e.msg, cases[i].rc);
		assert_true(e.msg[0] != 0);
		/* The refusal is a failed job whose log is one [ERROR] line saying why. */
		struct job_watch *w;
		struct job_event ev;
		assert_int_equal(job_watch_open(f->r, id, 0, &w, NULL), 0);
		assert_int_equal(job_watch_next(w, 0, &ev), 1);
		assert_int_equal(ev.kind, JOB_EV_ERROR);
		char want[ERR_MSG_MAX + 16];
		snprintf(want, sizeof(want), "[ERROR] %s", e.msg);
		assert_string_equal(ev.data, want);
		free(ev.data);
		assert_int_equal(job_watch_next(w, 0, &ev), 0);
		job_watch_close(w);
		json_t *o;
		assert_int_equal(job_get_json(f->r, id, &o, NULL), 0);
		assert_string_equal(json_string_value(json_object_get(o, "state")), "failed");
		assert_string_equal(json_string_value(json_object_get(o, "error")), e.msg);
		json_decref(o);
	}
	struct job_watch *w;
	struct err e;
	assert_int_equal(job_watch_open(f->r, "job-nope", 0, &w, &e), ERR_NOT_FOUND);
	json_t *o;
	assert_int_equal(job_get_json(f->r, "job-nope", &o, &e), ERR_NOT_FOUND);
}

static void test_hive_id(void **state)
{
	(void)state;
	struct fake_prov fp;
	fake_prov_init(&fp);
	struct job_registry_config cfg = {.prov = &fp.base, .hive_id = "hive-a"};
	struct job_registry *r;
	struct err e;
	assert_int_equal(job_registry_new(&cfg, &r, &e), 0);
	char id[JOB_ID_MAX];
	const char *bad = "{\"operation\":\"model_list\",\"hive_id\":\"hive-b\"}";
	assert_int_equal(job_submit_json(r, bad, strlen(bad), id, &e), ERR_UNPROCESSABLE);
	const char *good = "{\"operation\":\"model_list\",\"hive_id\":\"hive-a\"}";
	assert_int_equal(job_submit_json(r, good, strlen(good), id, &e), 0);
	job_registry_free(r);
}

static void test_prune_by_age(void **state)
{
	(void)state;
	struct fake_prov fp;
	fake_prov_init(&fp);
	struct job_registry_config cfg = {.prov = &fp.base, .keep_ms = 50};
	struct job_registry *r;
	struct err e;
	assert_int_equal(job_registry_new(&cfg, &r, &e), 0);
	char old_id[JOB_ID_MAX], live[JOB_ID_MAX];
	download(r, "acme/fail-old", old_id);
	wait_state(r, old_id, "failed");
	download(r, "acme/wait-live", live);
	/* Finished and older than keep_ms: gone within a prune pass (about a second). */
	int64_t end = now_ms() + 5000;
	json_t *o = NULL;
	while (job_get_json(r, old_id, &o, &e) == 0) {
		json_decref(o);
		if (now_ms() > end)
			fail_msg("a finished job older than keep_ms was kept");
		sleep_ms(20);
	}
	/* Active jobs are never pruned. */
	assert_int_equal(job_get_json(r, live, &o, &e), 0);
	json_decref(o);
	job_registry_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_success_and_replay, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failure, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fan_out, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_frames_shared, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_frames_rbee, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_frame_outlives_log, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_running_fast, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_queued, setup_one, teardown),
	    cmocka_unit_test_setup_teardown(test_max_jobs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_shutdown_interrupts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_model_busy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_model_busy_ref_kinds, setup_three, teardown),
	    cmocka_unit_test_setup_teardown(test_bounded_log, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_quick_ops, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_submissions, setup, teardown),
	    cmocka_unit_test(test_hive_id),
	    cmocka_unit_test(test_prune_by_age),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
