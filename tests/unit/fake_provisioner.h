/*
 * A fake provisioner for the jobs and daemon tests. What it does depends on
 * the repo name of the ref (the file name of a URL or file ref):
 *   ORG/ok*     narrates, emits progress every 5 ms for 20 steps, succeeds
 *   ORG/wait*   emits progress every 5 ms until the cancel token fires
 *   ORG/fail*   narrates and fails with ERR_NETWORK
 *   ORG/chatty* narrates CAP_JOB_EVENTS * 2 lines, then succeeds
 *   ORG/stubborn* like wait, but returns only 1.5 s after the cancel
 * It counts the provisions running at once (and the most ever).
 */
#ifndef RBEE_TESTS_FAKE_PROVISIONER_H
#define RBEE_TESTS_FAKE_PROVISIONER_H

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/cancel.h"
#include "core/caps.h"
#include "core/err.h"
#include "core/util.h"
#include "provision/provision.h"

struct fake_prov {
	struct provisioner base;
	atomic_int running;
	atomic_int max_running;
	atomic_int calls;
	atomic_llong cancel_latency_ms; /* from the fire to the return, last cancel */
};

static inline void fake_emit(const struct prov_request *req, int step, int total)
{
	if (!req->events || !req->events->progress)
		return;
	struct prov_progress p = {
	    .phase = PROV_DOWNLOADING,
	    .file = "model.Q4_K_M.gguf",
	    .files_done = 0,
	    .files_total = 1,
	    .bytes_done = (uint64_t)step * 1000,
	    .bytes_total = (uint64_t)total * 1000,
	    .rate_bps = 200000,
	    .eta_s = total > step ? (total - step) * 0.005 : 0,
	};
	req->events->progress(req->events->arg, &p);
}

static inline void fake_narrate(const struct prov_request *req, const char *line)
{
	if (req->events && req->events->narrate)
		req->events->narrate(req->events->arg, line);
}

static inline int fake_provision(struct provisioner *p, const struct prov_request *req,
				 struct prov_artifact *out, struct err *e)
{
	struct fake_prov *f = (struct fake_prov *)p;
	atomic_fetch_add(&f->calls, 1);
	int now = atomic_fetch_add(&f->running, 1) + 1;
	int prev = atomic_load(&f->max_running);
	while (now > prev && !atomic_compare_exchange_weak(&f->max_running, &prev, now))
		;
	const char *repo = strstr(req->ref, "://") ? strrchr(req->ref, '/') : strchr(req->ref, '/');
	repo = repo ? repo + 1 : req->ref;
	int rc = 0;
	fake_narrate(req, "resolving");
	if (strncmp(repo, "ok", 2) == 0) {
		for (int i = 0; i <= 20 && !cancel_is_set(req->cancel); i++) {
			fake_emit(req, i, 20);
			cancel_wait(req->cancel, 5);
		}
		if (cancel_is_set(req->cancel))
			rc = err_set(e, ERR_CANCELLED, "cancelled");
	} else if (strncmp(repo, "wait", 4) == 0) {
		int i = 0;
		while (!cancel_wait(req->cancel, 5))
			fake_emit(req, i++ % 100, 100);
		int64_t t0 = now_ms();
		rc = err_set(e, ERR_CANCELLED, "cancelled");
		atomic_store(&f->cancel_latency_ms, now_ms() - t0);
	} else if (strncmp(repo, "stubborn", 8) == 0) {
		while (!cancel_wait(req->cancel, 5))
			;
		sleep_ms(1500);
		rc = err_set(e, ERR_CANCELLED, "cancelled");
	} else if (strncmp(repo, "chatty", 6) == 0) {
		char line[64];
		for (int i = 0; i < CAP_JOB_EVENTS * 2; i++) {
			snprintf(line, sizeof(line), "line %d", i);
			fake_narrate(req, line);
		}
	} else {
		rc = err_set(e, ERR_NETWORK, "fake: the hub did not answer");
	}
	if (rc == 0) {
		snprintf(out->id, sizeof(out->id), "hf:%s:model.Q4_K_M.gguf", req->ref);
		snprintf(out->path, sizeof(out->path), "/nonexistent/model.Q4_K_M.gguf");
		out->size = 20000;
	}
	atomic_fetch_sub(&f->running, 1);
	return rc;
}

static inline void fake_free(struct provisioner *p)
{
	(void)p;
}

static const struct provisioner_ops fake_prov_ops = {
    .name = "fake", .provision = fake_provision, .free = fake_free};

static inline void fake_prov_init(struct fake_prov *f)
{
	memset(f, 0, sizeof(*f));
	f->base.ops = &fake_prov_ops;
}

#endif
