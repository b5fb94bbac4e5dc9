/*
 * select-bench: times hf_select (provision/hfselect.h) over a synthetic Hub
 * listing of N GGUF files that each carry a distinct quantization tag, the
 * worst case for choosing by tag, and how long a selection takes to stop
 * once its cancel token fires.
 *
 *   select-bench [--files N] [--rounds R]
 *
 * Prints one JSON line per case: {"case","files","ms"} with the median of R
 * rounds, and {"case":"cancel","files","ms"} for the time from cancel_fire
 * to hf_select's return. Built with -DSELECT_BENCH_NO_CANCEL it compiles
 * against an hf_select without a cancel token, to measure older code.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cancel.h"
#include "core/caps.h"
#include "core/err.h"
#include "core/util.h"
#include "provision/hfselect.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/*
 * N files "m-IQ<i>_<base36 of i>.gguf": every name carries a tag of the tag
 * grammar and no two tags are equal, plus a split set of 3 shards at the end.
 */
static void build(struct hf_listing *l, size_t n)
{
	static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
	char path[128];
	for (size_t i = 0; i + 3 < n; i++) {
		char suf[8];
		size_t v = i, k = 0;
		do {
			suf[k++] = digits[v % 36];
			v /= 36;
		} while (v && k < 4);
		suf[k] = '\0';
		snprintf(path, sizeof(path), "m-IQ%zu_%s.gguf", i % 10 + 1, suf);
		hf_listing_add(l, path, 1000 + i, NULL, NULL);
	}
	for (unsigned s = 1; s <= 3; s++) {
		snprintf(path, sizeof(path), "big-Q4_K_M-%05u-of-00003.gguf", s);
		hf_listing_add(l, path, 1000, NULL, NULL);
	}
}

struct bench_case {
	const char *name;
	enum ref_selector sel;
	const char *text;
};

static const struct bench_case cases[] = {
    {"tag_missing", SEL_QUANT, "Q5_K_S"}, /* whole pass, then the available tags */
    {"tag_split_last", SEL_QUANT, "Q4_K_M"},
    {"default", SEL_DEFAULT, ""},
    {"path_split_last", SEL_PATH, "big-Q4_K_M-00002-of-00003.gguf"},
    {"all", SEL_ALL, ""},
};

struct canceller {
	struct cancel_token *t;
	double fired_at;
	long after_us;
};

static void *fire_later(void *arg)
{
	struct canceller *c = arg;
	struct timespec ts = {c->after_us / 1000000, (c->after_us % 1000000) * 1000};
	nanosleep(&ts, NULL);
	c->fired_at = now_s();
	cancel_fire(c->t);
	return NULL;
}

int main(int argc, char **argv)
{
	size_t files = 100000;
	int rounds = 5;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--files") == 0 && i + 1 < argc)
			files = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: select-bench [--files N] [--rounds R]\n");
			return 2;
		}
	}
	if (files < 4 || files > CAP_REPO_FILES || rounds < 1 || rounds > 100) {
		fprintf(stderr, "select-bench: --files 4..%d, --rounds 1..100\n", CAP_REPO_FILES);
		return 2;
	}
	struct hf_listing l;
	hf_listing_init(&l);
	build(&l, files);
	size_t max = files > CAP_MODEL_FILES ? files : CAP_MODEL_FILES;
	size_t *idx = xcalloc(max, sizeof(*idx));
	double *t = xcalloc((size_t)rounds, sizeof(*t));
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		int rc = 0;
		for (int r = 0; r < rounds; r++) {
			struct err e = {0};
			size_t n = 0;
			double t0 = now_s();
#ifdef SELECT_BENCH_NO_CANCEL
			rc = hf_select(&l, cases[c].sel, cases[c].text, "bench/repo", idx, max, &n,
				       &e);
#else
			rc = hf_select(&l, cases[c].sel, cases[c].text, "bench/repo", NULL, idx,
				       max, &n, &e);
#endif
			t[r] = now_s() - t0;
		}
		qsort(t, (size_t)rounds, sizeof(*t), cmp_double);
		printf("{\"case\":\"%s\",\"files\":%zu,\"rc\":%d,\"ms\":%.2f}\n", cases[c].name,
		       l.n, rc, t[rounds / 2] * 1000.0);
		fflush(stdout);
	}
#ifndef SELECT_BENCH_NO_CANCEL
	/* Cancel: fire 20 ms into a selection that would run through the whole listing. */
	for (int r = 0; r < rounds; r++) {
		struct canceller cc = {.t = cancel_new(), .after_us = 20000};
		pthread_t th;
		struct err e = {0};
		size_t n = 0;
		pthread_create(&th, NULL, fire_later, &cc);
		int rc = hf_select(&l, SEL_QUANT, "Q5_K_S", "bench/repo", cc.t, idx, max, &n, &e);
		double end = now_s();
		pthread_join(th, NULL);
		/* A selection that ended before the cancel took no time to stop. */
		t[r] = rc == ERR_CANCELLED ? end - cc.fired_at : 0;
		cancel_unref(cc.t);
	}
	qsort(t, (size_t)rounds, sizeof(*t), cmp_double);
	printf("{\"case\":\"cancel\",\"files\":%zu,\"ms\":%.3f}\n", l.n, t[rounds / 2] * 1000.0);
#endif
	free(t);
	free(idx);
	hf_listing_cleanup(&l);
	return 0;
}
