#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/client.h"
#include "cli/answer.h"
#include "cli/fmt.h"
#include "cli/follow.h"
#include "core/err.h"
#include "core/json.h"
#include "core/ref.h"
#include "core/sha256.h"
#include "core/util.h"

/* An error as docs/cli.md defines it for --json: the daemon's error body, on stderr. */
static void cli_print_error(const struct cli_opts *o, const struct err *e)
{
	fflush(stdout);
	if (!o->json) {
		fprintf(stderr, "rbee-hive: %s\n", err_msg(e));
		return;
	}
	json_t *v =
	    json_pack("{s:{s:s,s:s}}", "error", "code", err_name(e->code), "message", err_msg(e));
	char *s = json_dump_compact(v);
	fprintf(stderr, "%s\n", s);
	free(s);
	json_decref(v);
}

int cli_run(const struct cli_command *cmd, int argc, char **argv)
{
	struct cli_opts o;
	struct cli_client c;
	struct err e;
	int rc;

	err_clear(&e);
	if (cli_args_parse(cmd, argc, argv, &o, &e) < 0) {
		cli_print_error(&o, &e);
		if (!o.json)
			cli_args_usage(cmd);
		return CLI_EXIT_USAGE;
	}
	if (o.help) {
		cli_args_help(cmd);
		return CLI_EXIT_OK;
	}
	if (!(cmd->flags & CLI_OPT_DAEMON)) {
		rc = cmd->body(NULL, &o, &e);
	} else if (cli_client_init(&c, o.url, o.token_file, &e) < 0) {
		cli_print_error(&o, &e);
		return CLI_EXIT_USAGE;
	} else {
		rc = cmd->body(&c, &o, &e);
		cli_client_cleanup(&c);
	}
	if (rc < 0) {
		cli_print_error(&o, &e);
		return CLI_EXIT_FAIL;
	}
	return rc;
}

/* Seconds since the time in milliseconds since the epoch under key; -1 when absent. */
static long long cli_age_s(const json_t *o, const char *key)
{
	uint64_t ms;
	long long now = (long long)(wall_ms() / 1000);
	if (cli_juint(o, key, &ms) < 0)
		return -1;
	long long t = (long long)(ms / 1000);
	return now >= t ? now - t : 0;
}

/* Prints v to stdout as one JSON document (indented) and a newline. */
static void cli_print_json(const json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);
	if (s) {
		printf("%s\n", s);
		free(s);
	}
}

/* A table of strings printed with aligned columns; cells are copied. */
#define CLI_TABLE_COLS 8

struct cli_table {
	int ncols;
	size_t nrows;
	size_t width[CLI_TABLE_COLS];
	char **cells; /* nrows * ncols, row 0 is the header */
};

static void cli_table_add(struct cli_table *t, const char *const *cells)
{
	t->cells = xrealloc(t->cells, (t->nrows + 1) * (size_t)t->ncols * sizeof(char *));
	for (int i = 0; i < t->ncols; i++) {
		const char *s = cells[i] ? cells[i] : "-";
		t->cells[t->nrows * (size_t)t->ncols + (size_t)i] = xstrdup(s);
		if (cli_fmt_cols(s) > t->width[i])
			t->width[i] = cli_fmt_cols(s);
	}
	t->nrows++;
}

static struct cli_table *cli_table_new(const char *const *headers, int ncols)
{
	struct cli_table *t = xcalloc(1, sizeof(*t));
	t->ncols = ncols < CLI_TABLE_COLS ? ncols : CLI_TABLE_COLS;
	cli_table_add(t, headers);
	return t;
}

static void cli_table_print(const struct cli_table *t)
{
	for (size_t r = 0; r < t->nrows; r++) {
		for (int i = 0; i < t->ncols; i++) {
			const char *s = t->cells[r * (size_t)t->ncols + (size_t)i];
			if (i == t->ncols - 1) {
				printf("%s\n", s);
				break;
			}
			printf("%s%*s", s, (int)(t->width[i] - cli_fmt_cols(s) + 3), "");
		}
	}
}

static void cli_table_free(struct cli_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nrows * (size_t)t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}

/*
 * An answer that is not the success it should be becomes an error from the
 * daemon; a success that is not a JSON object is not from an rbee-hive daemon.
 */
static int cli_expect(const struct cli_client *c, long status, long want, json_t *answer,
		      struct err *e)
{
	if (status != want && !(want == 200 && status == 201) && !(want == 201 && status == 200))
		return cli_client_error(c, status, answer, e);
	if (!json_is_object(answer))
		return cli_client_foreign(c, "its answer is not a JSON object", e);
	return 0;
}

/* The list under key of an answer (docs/api.md: {"models":[…]}, {"jobs":[…]}, …). */
static json_t *cli_list(const json_t *answer, const char *key)
{
	json_t *v = cli_jget(answer, key);
	return json_is_array(v) ? v : NULL;
}

/*
 * The quantizations of a model, joined by sep into buf: several for a
 * whole snapshot, none for a model without GGUF files.
 */
static const char *cli_quants(const json_t *m, const char *sep, char *buf, size_t size)
{
	json_t *a = json_object_get(m, "quantizations");
	size_t i, used = 0;
	json_t *q;
	if (!json_is_array(a) || json_array_size(a) == 0)
		return NULL;
	buf[0] = '\0';
	json_array_foreach(a, i, q)
	{
		const char *t = json_string_value(q);
		if (!t || used + strlen(sep) + strlen(t) >= size)
			break;
		used += (size_t)snprintf(buf + used, size - used, "%s%s", used ? sep : "", t);
	}
	return buf;
}

static void cli_size_cell(char *buf, size_t size, const json_t *o)
{
	uint64_t n;
	if (cli_juint(o, "size", &n) == 0)
		fmt_size(buf, size, n);
	else
		snprintf(buf, size, "-");
}

/*
 * The whole catalog as {"models":[…]}: the daemon answers one page at a time
 * (CAP_MODELS_PAGE at most), so this follows next_offset until it is null or
 * absent (a daemon without pages answers everything at once). Pages are in id
 * order, so a model of a later page whose id is not after the previous
 * page's last one was seen already (the catalog grew between the two pages)
 * and is skipped. Bounded: next_offset must grow, and at most the pages that
 * CAP_CATALOG_MODELS needs are read.
 */
static int cli_models_all(struct cli_client *c, json_t **out, struct err *e)
{
	enum { MAX_PAGES = CAP_CATALOG_MODELS / CAP_MODELS_PAGE + 1 };
	json_t *all = json_array();
	char prev_last[CAP_REF_LEN + 1] = ""; /* the last id of the previous page */
	uint64_t offset = 0;
	int rc = 0;
	*out = NULL;
	for (int page = 0;; page++) {
		if (page == MAX_PAGES) {
			rc = err_set(e, ERR_TOO_LARGE,
				     "the daemon's model list goes on past %d pages", MAX_PAGES);
			break;
		}
		char path[64];
		snprintf(path, sizeof(path), "/v1/models?limit=%d&offset=%llu", CAP_MODELS_PAGE,
			 (unsigned long long)offset);
		json_t *ans = NULL;
		long status;
		rc = cli_client_call(c, "GET", path, NULL, &status, &ans, e);
		if (rc == 0)
			rc = cli_expect(c, status, 200, ans, e);
		json_t *list = rc == 0 ? cli_list(ans, "models") : NULL;
		if (rc == 0 && !list)
			rc = cli_client_foreign(c, "its answer to GET /v1/models has no model list",
						e);
		size_t i;
		json_t *m;
		const char *last = NULL;
		json_array_foreach(list, i, m)
		{
			const char *id = cli_jstr(m, "id");
			if (id && prev_last[0] && strcmp(id, prev_last) <= 0)
				continue;
			if (id)
				last = id;
			json_array_append(all, m);
		}
		if (last)
			snprintf(prev_last, sizeof(prev_last), "%s", last);
		json_t *next = json_is_object(ans) ? json_object_get(ans, "next_offset") : NULL;
		int last_page = !next || json_is_null(next);
		json_int_t nx = json_is_integer(next) ? json_integer_value(next) : -1;
		if (rc == 0 && !last_page && (nx < 0 || (uint64_t)nx <= offset))
			rc = err_set(e, ERR_NETWORK, "the daemon's model list: bad next_offset");
		json_decref(ans);
		if (rc < 0 || last_page)
			break;
		offset = (uint64_t)nx;
	}
	if (rc < 0) {
		json_decref(all);
		return rc;
	}
	*out = json_pack("{s:o}", "models", all);
	return 0;
}

static int cli_ls_body(struct cli_client *c, const struct cli_opts *o, struct err *e)
{
	static const char *const headers[] = {"ID", "SIZE", "QUANT", "STATUS", "AGE"};
	json_t *ans = NULL;
	int rc = cli_models_all(c, &ans, e);
	if (rc < 0)
		goto out;
	if (o->json) {
		cli_print_json(ans);
		goto out;
	}
	json_t *list = json_object_get(ans, "models");
	struct cli_table *t = cli_table_new(headers, 5);
	size_t i;
	json_t *m;
	json_array_foreach(list, i, m)
	{
		char size[CLI_FMT_SHORT], age[CLI_FMT_SHORT], quants[256];
		cli_size_cell(size, sizeof(size), m);
		cli_fmt_age(age, sizeof(age), cli_age_s(m, "created_ms"));
		const char *cells[] = {cli_jstr(m, "id"), size,
				       cli_quants(m, ",", quants, sizeof(quants)),
				       cli_jstr(m, "status"), age};
		cli_table_add(t, cells);
	}
	if (json_array_size(list) == 0)
		printf("no models (pull one with: rbee-hive pull REF)\n");
	else
		cli_table_print(t);
	cli_table_free(t);
out:
	json_decref(ans);
	return rc;
}

/* One "key: value" line of show, skipped when the value is absent. */
static void cli_show_line(const char *label, const char *value)
{
	if (value && value[0])
		printf("%-16s%s\n", label, value);
}

static int cli_show_body(struct cli_client *c, const struct cli_opts *o, struct err *e)
{
	char *seg = cli_url_segment(o->args[0]);
	char *path = xasprintf("/v1/models/%s", seg);
	json_t *ans = NULL;
	long status;
	char buf[CLI_FMT_SHORT];
	uint64_t n;

	int rc = cli_client_call(c, "GET", path, NULL, &status, &ans, e);
	if (rc == 0)
		rc = cli_expect(c, status, 200, ans, e);
	if (rc < 0)
		goto out;
	if (o->json) {
		cli_print_json(ans);
		goto out;
	}
	json_t *m = ans;
	cli_show_line("id:", cli_jstr(m, "id"));
	cli_show_line("status:", cli_jstr(m, "status"));
	cli_size_cell(buf, sizeof(buf), m);
	cli_show_line("size:", buf);
	cli_show_line("source:", cli_jstr(m, "source"));
	cli_show_line("repo:", cli_jstr(m, "repo"));
	cli_show_line("revision:", cli_jstr(m, "revision"));
	cli_show_line("commit:", cli_jstr(m, "commit"));
	cli_show_line("architecture:", cli_jstr(m, "gguf.architecture"));
	char quants[1024];
	cli_show_line("quantization:", cli_quants(m, ", ", quants, sizeof(quants)));
	if (cli_juint(m, "gguf.parameters", &n) == 0 && n > 0) {
		/* Parameter counts read best in billions, as model cards write them. */
		snprintf(buf, sizeof(buf), n >= 1000000000 ? "%.2fB" : "%.1fM",
			 n >= 1000000000 ? (double)n / 1e9 : (double)n / 1e6);
		cli_show_line("parameters:", buf);
	}
	if (cli_juint(m, "gguf.context_length", &n) == 0 && n > 0) {
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)n);
		cli_show_line("context length:", buf);
	}
	json_t *files = cli_jget(m, "files");
	if (json_is_array(files) && json_array_size(files) > 0) {
		static const char *const headers[] = {"  PATH", "SIZE", "SHA256"};
		struct cli_table *t = cli_table_new(headers, 3);
		size_t i;
		json_t *f;
		printf("files:\n");
		json_array_foreach(files, i, f)
		{
			char *p =
			    xasprintf("  %s", cli_jstr(f, "path") ? cli_jstr(f, "path") : "?");
			cli_size_cell(buf, sizeof(buf), f);
			const char *cells[] = {p, buf, cli_jstr(f, "sha256")};
			cli_table_add(t, cells);
			free(p);
		}
		cli_table_print(t);
		cli_table_free(t);
	}
out:
	json_decref(ans);
	free(path);
	free(seg);
	return rc;
}

/*
 * A model is in the catalog only once published, so the daemon cannot refuse
 * to delete one that is still on its first download: it answers "not found"
 * while the files arrive. Running downloads of the same repo are checked
 * here first, as the daemon checks them for published models.
 */
static int cli_rm_busy(struct cli_client *c, const char *query, struct err *e)
{
	json_t *ans = NULL;
	long status;
	size_t i;
	json_t *j;

	int rc = cli_client_call(c, "GET", "/v1/jobs?state=running", NULL, &status, &ans, e);
	if (rc < 0 || status != 200) {
		json_decref(ans);
		return rc;
	}
	json_array_foreach(cli_list(ans, "jobs"), i, j)
	{
		const char *op = cli_jstr(j, "operation"), *ref = cli_jstr(j, "model");
		const char *st = cli_jstr(j, "state");
		int active = st && (strcmp(st, "running") == 0 || strcmp(st, "queued") == 0);
		if (active && op && strcmp(op, "model_download") == 0 && ref &&
		    ref_same_hf_repo(query, ref)) {
			rc = err_set(e, ERR_CONFLICT,
				     "model '%s' is being downloaded by job %s; cancel it first "
				     "(rbee-hive cancel %s)",
				     query, cli_jstr(j, "job_id"), cli_jstr(j, "job_id"));
			break;
		}
	}
	json_decref(ans);
	return rc;
}

/* A partial download's id as the user may give it: its sha256, or a prefix of 8+ digits. */
#define CLI_PARTIAL_ID_MIN 8

/*
 * The sha256 of the one partial download whose id starts with prefix, into
 * sha (65 bytes), with the repo folders holding it. 1 when found, 0 when no
 * partial matches (prefix may then name a model), or an error (several
 * contents match).
 */
static int cli_partial_find(struct cli_client *c, const char *prefix, char *sha, char *dirs,
			    size_t dsize, struct err *e)
{
	size_t n = strlen(prefix), i, off = 0;
	json_t *ans = NULL, *p;
	long status;
	int found = 0;

	sha[0] = dirs[0] = 0;
	if (n < CLI_PARTIAL_ID_MIN || n > 64 || !is_hex_lower(prefix, n))
		return 0;
	int rc = cli_client_call(c, "GET", "/v1/partials", NULL, &status, &ans, e);
	if (rc == 0)
		rc = cli_expect(c, status, 200, ans, e);
	json_array_foreach(rc == 0 ? cli_list(ans, "partials") : NULL, i, p)
	{
		const char *s = cli_jstr(p, "sha256"), *d = cli_jstr(p, "repo_dir");
		if (!sha256_hex_valid(s) || strncmp(s, prefix, n) != 0)
			continue;
		if (found && strcmp(s, sha) != 0) {
			rc = err_set(e, ERR_CONFLICT,
				     "'%s' names more than one partial download (%.12s, %.12s); "
				     "give more digits",
				     prefix, sha, s);
			break;
		}
		snprintf(sha, 65, "%s", s);
		if (d && off < dsize)
			off +=
			    (size_t)snprintf(dirs + off, dsize - off, "%s%s", found ? ", " : "", d);
		found = 1;
	}
	json_decref(ans);
	return rc < 0 ? rc : found;
}

/* Discards the partial download sha (the file and its resume state) in every repo folder. */
static int cli_rm_partial(struct cli_client *c, const struct cli_opts *o, const char *sha,
			  const char *dirs, struct err *e)
{
	char *path = xasprintf("/v1/partials/%s", sha);
	json_t *ans = NULL;
	long status;
	int rc = cli_client_call(c, "DELETE", path, NULL, &status, &ans, e);
	if (rc == 0 && status == 409)
		rc = err_set(e, ERR_CONFLICT,
			     "partial download %s is being written now; cancel its job first", sha);
	else if (rc == 0)
		rc = cli_expect(c, status, 200, ans, e);
	if (rc == 0 && o->json)
		cli_print_json(ans);
	else if (rc == 0)
		printf("deleted partial download %s of %s\n", sha, dirs);
	json_decref(ans);
	free(path);
	return rc;
}

static int cli_rm_body(struct cli_client *c, const struct cli_opts *o, struct err *e)
{
	char sha[65], dirs[1024];
	int found = cli_partial_find(c, o->args[0], sha, dirs, sizeof(dirs), e);
	if (found)
		return found < 0 ? found : cli_rm_partial(c, o, sha, dirs, e);

	char *seg = cli_url_segment(o->args[0]);
	char *path = xasprintf("/v1/models/%s", seg);
	json_t *ans = NULL;
	long status;

	int rc = cli_rm_busy(c, o->args[0], e);
	if (rc == 0)
		rc = cli_client_call(c, "DELETE", path, NULL, &status, &ans, e);
	if (rc == 0 && status == 409 && !cli_jget(ans, "error"))
		rc = err_set(e, ERR_CONFLICT,
			     "model '%s' is being downloaded; cancel its job first", o->args[0]);
	else if (rc == 0)
		rc = cli_expect(c, status, 200, ans, e);
	if (rc == 0 && o->json) {
		cli_print_json(ans);
	} else if (rc == 0) {
		const char *id = cli_jstr(ans, "id");
		printf("deleted %s\n", id ? id : o->args[0]);
	}
	json_decref(ans);
	free(path);
	free(seg);
	return rc;
}

/* 1 for a job state after which the job does not run again (docs/api.md). */
static int cli_job_ended(const char *state)
{
	static const char *const ended[] = {"succeeded", "failed", "cancelled"};
	for (size_t i = 0; state && i < sizeof(ended) / sizeof(ended[0]); i++) {
		if (strcmp(state, ended[i]) == 0)
			return 1;
	}
	return 0;
}

/*
 * "45% 1.23 GB/2.70 GB" from a job's latest progress; while it runs without
 * byte counts, its phase. An ended job's phase is where it stopped, not
 * what it does: it shows no phase.
 */
static void cli_job_progress(char *buf, size_t size, const json_t *job)
{
	json_t *p = cli_jget(job, "progress");
	uint64_t done, total;
	char a[CLI_FMT_SHORT], b[CLI_FMT_SHORT];

	if (cli_juint(p, "bytes_done", &done) == 0 && cli_juint(p, "bytes_total", &total) == 0 &&
	    total > 0) {
		fmt_size(a, sizeof(a), done);
		fmt_size(b, sizeof(b), total);
		snprintf(buf, size, "%d%% %s/%s", (int)(done >= total ? 100 : done * 100 / total),
			 a, b);
	} else if (!cli_job_ended(cli_jstr(job, "state")) && cli_jstr(p, "phase")) {
		snprintf(buf, size, "%s", cli_jstr(p, "phase"));
	} else {
		snprintf(buf, size, "-");
	}
}

static int cli_jobs_body(struct cli_client *c, const struct cli_opts *o, struct err *e)
{
	static const char *const headers[] = {"JOB",   "OPERATION", "STATE", "PROGRESS",
					      "MODEL", "AGE",	    "ERROR"};
	json_t *ans = NULL;
	long status;

	int rc = cli_client_call(c, "GET", "/v1/jobs", NULL, &status, &ans, e);
	if (rc == 0)
		rc = cli_expect(c, status, 200, ans, e);
	if (rc < 0)
		goto out;
	if (o->json) {
		cli_print_json(ans);
		goto out;
	}
	json_t *list = cli_list(ans, "jobs");
	if (!list) {
		rc = cli_client_foreign(c, "its answer to GET /v1/jobs has no job list", e);
		goto out;
	}
	if (json_array_size(list) == 0) {
		printf("no jobs\n");
		goto out;
	}
	struct cli_table *t = cli_table_new(headers, 7);
	size_t i;
	json_t *j;
	json_array_foreach(list, i, j)
	{
		char prog[64], age[CLI_FMT_SHORT];
		/* The job's argument: "model" of a download, "id" of the other operations. */
		const char *arg = cli_jstr(j, "model") ? cli_jstr(j, "model") : cli_jstr(j, "id");
		cli_job_progress(prog, sizeof(prog), j);
		cli_fmt_age(age, sizeof(age), cli_age_s(j, "created_ms"));
		const char *cells[] = {cli_jstr(j, "job_id"),
				       cli_jstr(j, "operation"),
				       cli_jstr(j, "state"),
				       prog,
				       arg,
				       age,
				       cli_jstr(j, "error")};
		cli_table_add(t, cells);
	}
	cli_table_print(t);
	cli_table_free(t);
out:
	json_decref(ans);
	return rc;
}

static int cli_cancel_body(struct cli_client *c, const struct cli_opts *o, struct err *e)
{
	char *seg = cli_url_segment(o->args[0]);
	char *path = xasprintf("/v1/jobs/%s/cancel", seg);
	json_t *ans = NULL;
	long status;

	int rc = cli_client_call(c, "POST", path, NULL, &status, &ans, e);
	if (rc == 0 && status == 409 && !cli_jget(ans, "error")) {
		const char *st = cli_jstr(ans, "status");
		rc = err_set(e, ERR_CONFLICT, "job %s has already ended (%s)", o->args[0],
			     st ? st : "final");
	} else if (rc == 0) {
		rc = cli_expect(c, status, 200, ans, e);
	}
	if (rc == 0 && o->json)
		cli_print_json(ans);
	else if (rc == 0)
		printf("cancelled %s\n", o->args[0]);
	json_decref(ans);
	free(path);
	free(seg);
	return rc;
}

/* Submits a job and returns its id and stream path (both owned by the caller). */
static int cli_submit(struct cli_client *c, json_t *body, char **job_id, char **sse_url,
		      json_t **answer, struct err *e)
{
	long status;

	*job_id = *sse_url = NULL;
	int rc = cli_client_call(c, "POST", "/v1/jobs", body, &status, answer, e);
	if (rc == 0)
		rc = cli_expect(c, status, 201, *answer, e);
	if (rc < 0)
		return rc;
	const char *id = cli_jstr(*answer, "job_id");
	const char *sse = cli_jstr(*answer, "sse_url");
	if (!id || !id[0] || strlen(id) > 128)
		return err_set(e, ERR_NETWORK, "the daemon's answer has no job_id");
	*job_id = xstrdup(id);
	if (sse && sse[0] == '/' && strlen(sse) < 1024) {
		*sse_url = xstrdup(sse);
	} else {
		/* Only a path on the same daemon is followed, never another host. */
		char *seg = cli_url_segment(id);
		*sse_url = xasprintf("/v1/jobs/%s/stream", seg);
		free(seg);
	}
	return 0;
}

static void cli_upload_progress(void *arg, uint64_t sent, uint64_t total)
{
	const char *name = arg;
	char a[FMT_SIZE_LEN], b[FMT_SIZE_LEN];
	fmt_size(a, sizeof(a), sent);
	fmt_size(b, sizeof(b), total);
	fprintf(stderr, "\ruploading %s: %s of %s%s", name, a, b, sent == total ? "\n" : "");
}

/*
 * The ref to submit for the user's ref, into ref. A file:// ref names a file
 * of this machine, read with the rights of the user running the CLI: the
 * CLI hashes it, uploads it to the daemon (which reads no local path unless
 * its owner allowed a folder, and may run elsewhere), and submits the ref
 * pinned to that content (file:///PATH#sha256=HEX). A daemon that takes no
 * uploads gets the ref as given.
 */
static int cli_pull_ref(struct cli_client *c, const struct cli_opts *o, char *ref, size_t size,
			struct err *e)
{
	struct model_ref r;
	snprintf(ref, size, "%s", o->args[0]);
	if (ref_parse(o->args[0], &r, NULL) != 0 || r.kind != REF_FILE)
		return 0; /* the daemon judges every other ref */
	int fd = open(r.path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return err_set(e, errno == ENOENT ? ERR_NOT_FOUND : ERR_IO, "%s: %s", r.path,
			       strerror(errno));
	struct stat st;
	char hex[SHA256_HEX_LEN + 1];
	uint64_t n = 0;
	int rc = 0;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		rc = err_set(e, ERR_UNPROCESSABLE, "%s is not a regular file", r.path);
	if (rc == 0)
		rc = sha256_fd(fd, r.path, NULL, hex, NULL, &n, e);
	if (rc == 0 && r.sha256[0] && strcmp(r.sha256, hex) != 0)
		rc = err_set(e, ERR_DIGEST, "%s hashes to sha256:%s, not the pinned %s", r.path,
			     hex, r.sha256);
	if (rc == 0) {
		int show = !o->json && isatty(STDERR_FILENO);
		const char *name = strrchr(r.path, '/') + 1;
		rc = cli_client_upload(c, fd, n, hex, (unsigned)st.st_mode & 0777,
				       show ? cli_upload_progress : NULL, (void *)name, e);
		if (rc == ERR_NOT_FOUND) {
			rc = 0; /* an older daemon reads the path itself */
		} else if (rc == 0) {
			snprintf(r.sha256, sizeof(r.sha256), "%s", hex);
			if (ref_format(&r, ref, size) != 0)
				rc = err_set(e, ERR_TOO_LARGE, "file ref of %s: too long", r.path);
		}
	}
	close(fd);
	return rc;
}

/*
 * A local path given where a ref goes, which no ref parser accepts: the
 * user meant a file:// ref. Says so (a usage error) before asking the
 * daemon, which would only call the ref malformed.
 */
static int cli_pull_path(const struct cli_opts *o)
{
	static const char *const heads[] = {"/", "./", "../", "~/"};
	const char *arg = o->args[0];
	struct err e;
	if (ref_parse(arg, &(struct model_ref){0}, NULL) == 0)
		return 0;
	for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
		if (strncmp(arg, heads[i], strlen(heads[i])) != 0)
			continue;
		if (arg[0] == '/')
			err_set(&e, ERR_INVALID, "'%s' is a path: pull a local file as file://%s",
				arg, arg);
		else
			err_set(&e, ERR_INVALID,
				"'%s' is a path: pull a local file as file:///ABSOLUTE/PATH", arg);
		cli_print_error(o, &e);
		return CLI_EXIT_USAGE;
	}
	return 0;
}

static int cli_pull_body(struct cli_client *c, const struct cli_opts *o, struct err *e)
{
	char ref[CAP_REF_LEN + 128];
	int rc = cli_pull_path(o);
	if (rc != 0)
		return rc;
	rc = cli_pull_ref(c, o, ref, sizeof(ref), e);
	if (rc < 0)
		return rc;
	json_t *body = json_pack("{s:s,s:s}", "operation", "model_download", "model", ref);
	json_t *ans = NULL;
	char *job_id = NULL, *sse_url = NULL;

	rc = cli_submit(c, body, &job_id, &sse_url, &ans, e);
	if (rc < 0)
		goto out;
	if (o->detach) {
		if (o->json)
			cli_print_json(ans);
		else
			printf("%s\n", job_id);
		goto out;
	}
	rc = cli_follow(c, job_id, sse_url, o, "pull", e);
out:
	json_decref(body);
	json_decref(ans);
	free(job_id);
	free(sse_url);
	return rc;
}

static int cli_verify_body(struct cli_client *c, const struct cli_opts *o, struct err *e)
{
	json_t *body = json_pack("{s:s}", "operation", "model_verify");
	json_t *ans = NULL;
	char *job_id = NULL, *sse_url = NULL;

	if (o->nargs > 0)
		json_set_str(body, "id", o->args[0]);
	int rc = cli_submit(c, body, &job_id, &sse_url, &ans, e);
	if (rc == ERR_UNPROCESSABLE || rc == ERR_INVALID) {
		/* An older daemon knows no such operation: say so rather than echo its parser. */
		const char *m = err_msg(e);
		if (strstr(m, "operation") || strstr(m, "model_verify")) {
			rc = err_set(e, ERR_UNPROCESSABLE,
				     "the daemon at %s cannot verify models (it does not know "
				     "the operation model_verify)",
				     c->base);
		}
	}
	if (rc == 0)
		rc = cli_follow(c, job_id, sse_url, o, "verify", e);
	json_decref(body);
	json_decref(ans);
	free(job_id);
	free(sse_url);
	return rc;
}

static int cli_version_body(struct cli_client *c, const struct cli_opts *o, struct err *e)
{
	(void)c;
	(void)e;
	if (o->json) {
		json_t *v = json_pack("{s:s}", "version", RBEE_VERSION);
		cli_print_json(v);
		json_decref(v);
	} else {
		printf("rbee-hive %s\n", RBEE_VERSION);
	}
	return CLI_EXIT_OK;
}

/* The entries of the commands, listed by main()'s command table. */

const struct cli_command cli_cmd_version = {
    .name = "version",
    .summary = "print the version",
    .synopsis = "[--json]",
    .help = "Prints the version of rbee-hive.\n\n"
	    "  --json            print it as {\"version\":\"X.Y.Z\"}\n"
	    "  -h, --help        show this help\n",
    .flags = CLI_OPT_JSON,
    .body = cli_version_body,
};

const struct cli_command cli_cmd_pull = {
    .name = "pull",
    .summary = "download a model, with progress (Ctrl-C cancels)",
    .synopsis = "REF [--detach] [--json]",
    .help = "Downloads a model into the daemon's catalog and follows the job.\n"
	    "REF is hf:ORG/REPO[:SELECTOR][@REVISION], https://HOST/PATH[#sha256=HEX]\n"
	    "or file:///ABS/PATH. On a terminal a progress bar per file is drawn;\n"
	    "otherwise a line per phase. Ctrl-C cancels the job on the daemon\n"
	    "(exit 130); a second Ctrl-C leaves at once.\n\n"
	    "  --detach          print the job id and return; the job runs on\n"
	    "  --json            print the job's events as NDJSON\n",
    .flags = CLI_OPT_DAEMON | CLI_OPT_JSON | CLI_OPT_DETACH,
    .min_args = 1,
    .max_args = 1,
    .body = cli_pull_body,
};

const struct cli_command cli_cmd_ls = {
    .name = "ls",
    .summary = "list the models of the catalog",
    .synopsis = "[--json]",
    .help = "Lists the models of the catalog: id, size, quantization, status, age.\n\n"
	    "  --json            print the daemon's answer as one JSON document\n",
    .flags = CLI_OPT_DAEMON | CLI_OPT_JSON,
    .body = cli_ls_body,
};

const struct cli_command cli_cmd_show = {
    .name = "show",
    .summary = "show a model's files, hashes and GGUF facts",
    .synopsis = "ID [--json]",
    .help = "Shows one model: its files with sizes and SHA-256, the commit it was\n"
	    "pulled at, and the GGUF facts (architecture, quantization, parameters,\n"
	    "context length). ID is a catalog id or any unambiguous ref.\n\n"
	    "  --json            print the daemon's answer as one JSON document\n",
    .flags = CLI_OPT_DAEMON | CLI_OPT_JSON,
    .min_args = 1,
    .max_args = 1,
    .body = cli_show_body,
};

const struct cli_command cli_cmd_rm = {
    .name = "rm",
    .summary = "delete a model",
    .synopsis = "ID|PARTIAL [--json]",
    .help = "Deletes a model and the files no other model uses. Refuses while the\n"
	    "model is downloading (cancel its job first). Files another program put\n"
	    "in a shared cache stay.\n\n"
	    "Given a partial download's id (its sha256, or at least its first 8\n"
	    "hex digits, as GET /v1/partials and the web page list them), discards\n"
	    "that partial download instead.\n\n"
	    "  --json            print the daemon's answer as one JSON document\n",
    .flags = CLI_OPT_DAEMON | CLI_OPT_JSON,
    .min_args = 1,
    .max_args = 1,
    .body = cli_rm_body,
};

const struct cli_command cli_cmd_jobs = {
    .name = "jobs",
    .summary = "list the daemon's jobs",
    .synopsis = "[--json]",
    .help = "Lists the daemon's jobs, newest first: id, operation, state, progress,\n"
	    "model, age and, for a failed job, its error. An ended job shows the bytes\n"
	    "it moved, not the phase it stopped in.\n\n"
	    "  --json            print the daemon's answer as one JSON document\n",
    .flags = CLI_OPT_DAEMON | CLI_OPT_JSON,
    .body = cli_jobs_body,
};

const struct cli_command cli_cmd_cancel = {
    .name = "cancel",
    .summary = "cancel a job",
    .synopsis = "JOB_ID [--json]",
    .help = "Cancels a queued or running job. Its partial download stays for a\n"
	    "later pull to resume. Fails when the job has already ended.\n\n"
	    "  --json            print the daemon's answer as one JSON document\n",
    .flags = CLI_OPT_DAEMON | CLI_OPT_JSON,
    .min_args = 1,
    .max_args = 1,
    .body = cli_cancel_body,
};

const struct cli_command cli_cmd_verify = {
    .name = "verify",
    .summary = "hash a model's files again and report",
    .synopsis = "[ID] [--json]",
    .help = "Hashes a model's files again (every model without ID) and reports\n"
	    "each file as ok or damaged. Exit 1 when any file is damaged.\n\n"
	    "  --json            print the job's events as NDJSON\n",
    .flags = CLI_OPT_DAEMON | CLI_OPT_JSON,
    .max_args = 1,
    .body = cli_verify_body,
};
