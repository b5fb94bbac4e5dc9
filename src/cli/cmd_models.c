/*
 * cmd_models: the commands on the daemon's catalog: ls (every page of the
 * model list), show (one model), rm (a model, or a partial download).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/answer.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/client.h"
#include "cli/cmd.h"
#include "cli/fmt.h"
#include "core/caps.h"
#include "core/err.h"
#include "core/json.h"
#include "core/ref.h"
#include "core/sha256.h"
#include "core/util.h"

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
		static const char *const headers[] = {"  PATH", "SIZE", "FROM", "SHA256"};
		struct cli_table *t = cli_table_new(headers, 4);
		size_t i;
		json_t *f;
		printf("files:\n");
		json_array_foreach(files, i, f)
		{
			char *p =
			    xasprintf("  %s", cli_jstr(f, "path") ? cli_jstr(f, "path") : "?");
			cli_size_cell(buf, sizeof(buf), f);
			/* FROM: peer, s3 or cdn for a blob this hive fetched; "-" otherwise. */
			const char *from = cli_jstr(f, "source");
			const char *cells[] = {p, buf, from ? from : "-", cli_jstr(f, "sha256")};
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

/* The entries of the commands, listed by main()'s command table. */

const struct cli_command cli_cmd_ls = {
    .name = "ls",
    .summary = "list the models of the catalog",
    .synopsis = "[--json]",
    .help = "Lists the models of the catalog: id, size, quantization, status, "
	    "age.\n\n" CLI_HELP_JSON_ANSWER,
    .flags = CLI_OPT_DAEMON | CLI_OPT_JSON,
    .body = cli_ls_body,
};

const struct cli_command cli_cmd_show = {
    .name = "show",
    .summary = "show a model's files, hashes and GGUF facts",
    .synopsis = "ID [--json]",
    .help = "Shows one model: its files with sizes and SHA-256, the commit it was\n"
	    "pulled at, and the GGUF facts (architecture, quantization, parameters,\n"
	    "context length). ID is a catalog id or any unambiguous ref.\n\n" CLI_HELP_JSON_ANSWER,
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
	    "that partial download instead.\n\n" CLI_HELP_JSON_ANSWER,
    .flags = CLI_OPT_DAEMON | CLI_OPT_JSON,
    .min_args = 1,
    .max_args = 1,
    .body = cli_rm_body,
};
