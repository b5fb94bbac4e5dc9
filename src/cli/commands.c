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
#include "cli/cmd.h"
#include "cli/fmt.h"
#include "core/err.h"
#include "core/json.h"
#include "core/ref.h"
#include "core/sha256.h"
#include "core/util.h"

int cli_main(const char *name, int argc, char **argv, cli_body_fn body)
{
	const struct cli_command *cmd = cli_command_find(name);
	struct cli_opts o;
	struct cli_client c;
	struct err e;
	int rc;

	err_clear(&e);
	if (cli_args_parse(cmd, argc, argv, &o, &e) < 0) {
		fprintf(stderr, "rbee-hive: %s\n", err_msg(&e));
		cli_args_usage(cmd);
		return CLI_EXIT_USAGE;
	}
	if (o.help) {
		cli_args_help(cmd);
		return CLI_EXIT_OK;
	}
	if (cli_client_init(&c, o.url, o.token_file, &e) < 0) {
		fprintf(stderr, "rbee-hive: %s\n", err_msg(&e));
		return CLI_EXIT_USAGE;
	}
	rc = body(&c, &o, &e);
	cli_client_cleanup(&c);
	if (rc < 0) {
		fflush(stdout);
		fprintf(stderr, "rbee-hive: %s\n", err_msg(&e));
		return CLI_EXIT_FAIL;
	}
	return rc;
}

json_t *cli_jfind(const json_t *o, const char *const *keys)
{
	for (; *keys; keys++) {
		const char *dot = strchr(*keys, '.');
		json_t *v;
		if (dot) {
			char head[64];
			snprintf(head, sizeof(head), "%.*s", (int)(dot - *keys), *keys);
			v = json_object_get(json_object_get(o, head), dot + 1);
		} else {
			v = json_object_get(o, *keys);
		}
		if (v && !json_is_null(v))
			return v;
	}
	return NULL;
}

const char *cli_jstr(const json_t *o, const char *const *keys)
{
	return json_string_value(cli_jfind(o, keys));
}

int cli_juint(const json_t *o, const char *const *keys, uint64_t *out)
{
	json_t *v = cli_jfind(o, keys);
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = (uint64_t)json_integer_value(v);
		return 0;
	}
	if (json_is_real(v) && json_real_value(v) >= 0) {
		*out = (uint64_t)json_real_value(v);
		return 0;
	}
	return -1;
}

long long cli_jage(const json_t *o, const char *const *keys)
{
	json_t *v = cli_jfind(o, keys);
	long long now = (long long)(wall_ms() / 1000);
	long long t;

	if (json_is_number(v)) {
		double d = json_number_value(v);
		/* Past 1e11 a count of seconds would be year 5138: it is milliseconds. */
		t = (long long)(d > 1e11 ? d / 1000 : d);
	} else if (json_is_string(v)) {
		struct tm tm;
		memset(&tm, 0, sizeof(tm));
		const char *end = strptime(json_string_value(v), "%Y-%m-%dT%H:%M:%S", &tm);
		if (!end)
			return -1;
		t = (long long)timegm(&tm);
	} else {
		return -1;
	}
	return now >= t ? now - t : 0;
}

void cli_print_json(const json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);
	if (s) {
		printf("%s\n", s);
		free(s);
	}
}

#define CLI_TABLE_COLS 8

struct cli_table {
	int ncols;
	size_t nrows;
	size_t width[CLI_TABLE_COLS];
	char **cells; /* nrows * ncols, row 0 is the header */
};

struct cli_table *cli_table_new(const char *const *headers, int ncols)
{
	struct cli_table *t = xcalloc(1, sizeof(*t));
	t->ncols = ncols < CLI_TABLE_COLS ? ncols : CLI_TABLE_COLS;
	cli_table_add(t, headers);
	return t;
}

void cli_table_add(struct cli_table *t, const char *const *cells)
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

void cli_table_print(const struct cli_table *t)
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

void cli_table_free(struct cli_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nrows * (size_t)t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}

/* An answer that is not the success it should be becomes an error from the daemon. */
static int cli_expect(long status, long want, json_t *answer, struct err *e)
{
	if (status == want || (want == 200 && status == 201) || (want == 201 && status == 200))
		return 0;
	return cli_client_error(status, answer, e);
}

/* A list answer is an array, or an object holding it under one of keys. */
static json_t *cli_list(json_t *answer, const char *const *keys)
{
	if (json_is_array(answer))
		return answer;
	json_t *v = cli_jfind(answer, keys);
	return json_is_array(v) ? v : NULL;
}

static const char *const k_id[] = {"id", NULL};
static const char *const k_size[] = {"size", "size_bytes", "bytes", "total_size", NULL};
static const char *const k_quant[] = {"quantization", "gguf.quantization", "quant", NULL};
static const char *const k_status[] = {"status", "state", NULL};
static const char *const k_created[] = {"created_at", "created_ms", "created", "added_at",
					"updated_at", "updated_ms", NULL};
static const char *const k_models[] = {"models", "items", NULL};
static const char *const k_jobs[] = {"jobs", "items", NULL};

/*
 * The quantizations of a model, joined by sep into buf: the daemon lists
 * several for a whole snapshot; an older daemon sends only the one of its
 * first file.
 */
static const char *cli_quants(const json_t *m, const char *sep, char *buf, size_t size)
{
	json_t *a = json_object_get(m, "quantizations");
	size_t i, used = 0;
	json_t *q;
	if (!json_is_array(a) || json_array_size(a) == 0)
		return cli_jstr(m, k_quant);
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

static void cli_size_cell(char *buf, size_t size, const json_t *o, const char *const *keys)
{
	uint64_t n;
	if (cli_juint(o, keys, &n) == 0)
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
			rc = err_set(e, ERR_TOO_LARGE, "the daemon's model list goes on past %d pages",
				     MAX_PAGES);
			break;
		}
		char path[64];
		snprintf(path, sizeof(path), "/v1/models?limit=%d&offset=%llu", CAP_MODELS_PAGE,
			 (unsigned long long)offset);
		json_t *ans = NULL;
		long status;
		rc = cli_client_call(c, "GET", path, NULL, &status, &ans, e);
		if (rc == 0)
			rc = cli_expect(status, 200, ans, e);
		json_t *list = rc == 0 ? cli_list(ans, k_models) : NULL;
		if (rc == 0 && !list)
			rc = err_set(e, ERR_NETWORK, "the daemon's model list is not a list");
		size_t i;
		json_t *m;
		const char *last = NULL;
		json_array_foreach(list, i, m)
		{
			const char *id = cli_jstr(m, k_id);
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
		cli_size_cell(size, sizeof(size), m, k_size);
		cli_fmt_age(age, sizeof(age), cli_jage(m, k_created));
		const char *cells[] = {cli_jstr(m, k_id), size,
				       cli_quants(m, ",", quants, sizeof(quants)),
				       cli_jstr(m, k_status), age};
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
	static const char *const k_source[] = {"source", NULL};
	static const char *const k_repo[] = {"repo", NULL};
	static const char *const k_commit[] = {"commit", "commit_sha", "revision_sha", NULL};
	static const char *const k_rev[] = {"revision", NULL};
	static const char *const k_arch[] = {"architecture", "gguf.architecture", NULL};
	static const char *const k_params[] = {"parameters", "gguf.parameters", "parameter_count",
					       "gguf.parameter_count", NULL};
	static const char *const k_ctx[] = {"context_length", "gguf.context_length", NULL};
	static const char *const k_path[] = {"path", "name", "file", NULL};
	static const char *const k_sha[] = {"sha256", "digest", NULL};
	static const char *const k_files[] = {"files", NULL};
	char *seg = cli_url_segment(o->args[0]);
	char *path = xasprintf("/v1/models/%s", seg);
	json_t *ans = NULL;
	long status;
	char buf[CLI_FMT_SHORT];
	uint64_t n;

	int rc = cli_client_call(c, "GET", path, NULL, &status, &ans, e);
	if (rc == 0)
		rc = cli_expect(status, 200, ans, e);
	if (rc < 0)
		goto out;
	if (o->json) {
		cli_print_json(ans);
		goto out;
	}
	json_t *m =
	    json_is_object(json_object_get(ans, "model")) ? json_object_get(ans, "model") : ans;
	cli_show_line("id:", cli_jstr(m, k_id));
	cli_show_line("status:", cli_jstr(m, k_status));
	cli_size_cell(buf, sizeof(buf), m, k_size);
	cli_show_line("size:", buf);
	cli_show_line("source:", cli_jstr(m, k_source));
	cli_show_line("repo:", cli_jstr(m, k_repo));
	cli_show_line("revision:", cli_jstr(m, k_rev));
	cli_show_line("commit:", cli_jstr(m, k_commit));
	cli_show_line("architecture:", cli_jstr(m, k_arch));
	char quants[1024];
	cli_show_line("quantization:", cli_quants(m, ", ", quants, sizeof(quants)));
	if (cli_juint(m, k_params, &n) == 0 && n > 0) {
		/* Parameter counts read best in billions, as model cards write them. */
		snprintf(buf, sizeof(buf), n >= 1000000000 ? "%.2fB" : "%.1fM",
			 n >= 1000000000 ? (double)n / 1e9 : (double)n / 1e6);
		cli_show_line("parameters:", buf);
	}
	if (cli_juint(m, k_ctx, &n) == 0 && n > 0) {
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)n);
		cli_show_line("context length:", buf);
	}
	json_t *files = cli_jfind(m, k_files);
	if (json_is_array(files) && json_array_size(files) > 0) {
		static const char *const headers[] = {"  PATH", "SIZE", "SHA256"};
		struct cli_table *t = cli_table_new(headers, 3);
		size_t i;
		json_t *f;
		printf("files:\n");
		json_array_foreach(files, i, f)
		{
			char *p =
			    xasprintf("  %s", cli_jstr(f, k_path) ? cli_jstr(f, k_path) : "?");
			cli_size_cell(buf, sizeof(buf), f, k_size);
			const char *cells[] = {p, buf, cli_jstr(f, k_sha)};
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

/* 1 if two refs name the same Hugging Face repo. */
static int cli_same_repo(const char *a, const char *b)
{
	struct model_ref *ra = xmalloc(sizeof(*ra)), *rb = xmalloc(sizeof(*rb));
	int same = ref_parse(a, ra, NULL) == 0 && ref_parse(b, rb, NULL) == 0 &&
		   ra->kind == REF_HF && rb->kind == REF_HF && strcasecmp(ra->org, rb->org) == 0 &&
		   strcasecmp(ra->repo, rb->repo) == 0;
	free(ra);
	free(rb);
	return same;
}

/*
 * A model is in the catalog only once published, so the daemon cannot refuse
 * to delete one that is still on its first download: it answers "not found"
 * while the files arrive. Running downloads of the same repo are checked
 * here first, as the daemon checks them for published models.
 */
static int cli_rm_busy(struct cli_client *c, const char *query, struct err *e)
{
	static const char *const k_model[] = {"model", NULL};
	static const char *const k_job[] = {"job_id", NULL};
	static const char *const k_op[] = {"operation", NULL};
	json_t *ans = NULL;
	long status;
	size_t i;
	json_t *j;

	int rc = cli_client_call(c, "GET", "/v1/jobs?state=running", NULL, &status, &ans, e);
	if (rc < 0 || status != 200) {
		json_decref(ans);
		return rc;
	}
	json_array_foreach(cli_list(ans, k_jobs), i, j)
	{
		const char *op = cli_jstr(j, k_op), *ref = cli_jstr(j, k_model);
		const char *st = cli_jstr(j, k_status);
		int active = !st || strcmp(st, "running") == 0 || strcmp(st, "queued") == 0;
		if (active && op && strcmp(op, "model_download") == 0 && ref &&
		    cli_same_repo(query, ref)) {
			rc = err_set(e, ERR_CONFLICT,
				     "model '%s' is being downloaded by job %s; cancel it first "
				     "(rbee-hive cancel %s)",
				     query, cli_jstr(j, k_job), cli_jstr(j, k_job));
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
	static const char *const k_partials[] = {"partials", NULL};
	static const char *const k_sha[] = {"sha256", NULL};
	static const char *const k_dir[] = {"repo_dir", NULL};
	size_t n = strlen(prefix), i, off = 0;
	json_t *ans = NULL, *p;
	long status;
	int found = 0;

	sha[0] = dirs[0] = 0;
	if (n < CLI_PARTIAL_ID_MIN || n > 64 || !is_hex_lower(prefix, n))
		return 0;
	int rc = cli_client_call(c, "GET", "/v1/partials", NULL, &status, &ans, e);
	if (rc == 0)
		rc = cli_expect(status, 200, ans, e);
	json_array_foreach(rc == 0 ? cli_list(ans, k_partials) : NULL, i, p)
	{
		const char *s = cli_jstr(p, k_sha), *d = cli_jstr(p, k_dir);
		if (!s || strlen(s) != 64 || strncmp(s, prefix, n) != 0)
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
			off += (size_t)snprintf(dirs + off, dsize - off, "%s%s", found ? ", " : "", d);
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
		rc = cli_expect(status, 200, ans, e);
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
	if (rc == 0 && status == 409 && !cli_jfind(ans, (const char *const[]){"error", NULL}))
		rc = err_set(e, ERR_CONFLICT,
			     "model '%s' is being downloaded; cancel its job first", o->args[0]);
	else if (rc == 0)
		rc = cli_expect(status, 200, ans, e);
	if (rc == 0 && status != 204 && o->json) {
		cli_print_json(ans);
	} else if (rc == 0 && o->json) {
		json_t *v = json_pack("{s:s,s:b}", "id", o->args[0], "deleted", 1);
		cli_print_json(v);
		json_decref(v);
	} else if (rc == 0) {
		const char *id = cli_jstr(ans, k_id);
		printf("deleted %s\n", id ? id : o->args[0]);
	}
	json_decref(ans);
	free(path);
	free(seg);
	return rc;
}

/* "45% 1.23 GB/2.70 GB", or the phase, from a job's latest progress. */
static void cli_job_progress(char *buf, size_t size, const json_t *job)
{
	static const char *const k_progress[] = {"progress", NULL};
	static const char *const k_done[] = {"bytes_done", NULL};
	static const char *const k_total[] = {"bytes_total", NULL};
	static const char *const k_phase[] = {"phase", NULL};
	json_t *p = cli_jfind(job, k_progress);
	uint64_t done, total;
	char a[CLI_FMT_SHORT], b[CLI_FMT_SHORT];

	if (json_is_string(p)) {
		/* Kept as the event text: read it as JSON. */
		json_error_t je;
		p = json_loads(json_string_value(p), 0, &je);
	} else {
		json_incref(p);
	}
	if (cli_juint(p, k_done, &done) == 0 && cli_juint(p, k_total, &total) == 0 && total > 0) {
		fmt_size(a, sizeof(a), done);
		fmt_size(b, sizeof(b), total);
		snprintf(buf, size, "%d%% %s/%s", (int)(done >= total ? 100 : done * 100 / total),
			 a, b);
	} else if (cli_jstr(p, k_phase)) {
		snprintf(buf, size, "%s", cli_jstr(p, k_phase));
	} else {
		snprintf(buf, size, "-");
	}
	json_decref(p);
}

static int cli_jobs_body(struct cli_client *c, const struct cli_opts *o, struct err *e)
{
	static const char *const headers[] = {"JOB",	  "OPERATION", "STATE",
					      "PROGRESS", "MODEL",     "AGE"};
	static const char *const k_job[] = {"job_id", "id", NULL};
	static const char *const k_op[] = {"operation", NULL};
	static const char *const k_model[] = {"model", "ref", "model_id", NULL};
	json_t *ans = NULL;
	long status;

	int rc = cli_client_call(c, "GET", "/v1/jobs", NULL, &status, &ans, e);
	if (rc == 0)
		rc = cli_expect(status, 200, ans, e);
	if (rc < 0)
		goto out;
	if (o->json) {
		cli_print_json(ans);
		goto out;
	}
	json_t *list = cli_list(ans, k_jobs);
	if (!list) {
		rc = err_set(e, ERR_NETWORK, "the daemon's job list is not a list");
		goto out;
	}
	if (json_array_size(list) == 0) {
		printf("no jobs\n");
		goto out;
	}
	struct cli_table *t = cli_table_new(headers, 6);
	size_t i;
	json_t *j;
	json_array_foreach(list, i, j)
	{
		char prog[64], age[CLI_FMT_SHORT];
		cli_job_progress(prog, sizeof(prog), j);
		cli_fmt_age(age, sizeof(age), cli_jage(j, k_created));
		const char *cells[] = {cli_jstr(j, k_job),    cli_jstr(j, k_op),
				       cli_jstr(j, k_status), prog,
				       cli_jstr(j, k_model),  age};
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
	if (rc == 0 && status == 409 && !cli_jfind(ans, (const char *const[]){"error", NULL})) {
		const char *st = cli_jstr(ans, k_status);
		rc = err_set(e, ERR_CONFLICT, "job %s has already ended (%s)", o->args[0],
			     st ? st : "final");
	} else if (rc == 0) {
		rc = cli_expect(status, 200, ans, e);
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
	static const char *const k_job[] = {"job_id", NULL};
	static const char *const k_sse[] = {"sse_url", NULL};
	long status;

	*job_id = *sse_url = NULL;
	int rc = cli_client_call(c, "POST", "/v1/jobs", body, &status, answer, e);
	if (rc == 0)
		rc = cli_expect(status, 201, *answer, e);
	if (rc < 0)
		return rc;
	const char *id = cli_jstr(*answer, k_job);
	const char *sse = cli_jstr(*answer, k_sse);
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

static int cli_pull_body(struct cli_client *c, const struct cli_opts *o, struct err *e)
{
	char ref[CAP_REF_LEN + 128];
	int rc = cli_pull_ref(c, o, ref, sizeof(ref), e);
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

static const struct {
	const char *name;
	cli_body_fn body;
} cli_bodies[] = {
    {"pull", cli_pull_body},	 {"ls", cli_ls_body},	  {"show", cli_show_body},
    {"rm", cli_rm_body},	 {"jobs", cli_jobs_body}, {"cancel", cli_cancel_body},
    {"verify", cli_verify_body},
};

int cli_run(int argc, char **argv)
{
	for (size_t i = 0; i < sizeof(cli_bodies) / sizeof(cli_bodies[0]); i++) {
		if (strcmp(argv[0], cli_bodies[i].name) == 0)
			return cli_main(cli_bodies[i].name, argc, argv, cli_bodies[i].body);
	}
	fprintf(stderr, "rbee-hive: unknown command '%s'\n", argv[0]);
	return CLI_EXIT_USAGE;
}
