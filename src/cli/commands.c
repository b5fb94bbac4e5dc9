/*
 * commands: running a command (options, help, the daemon connection, the
 * error on stderr) and what the command files share: JSON and table
 * output and reading the daemon's answers. The commands themselves are in
 * cmd_models.c (ls, show, rm), cmd_jobs.c (pull, verify, jobs, cancel) and
 * here (version, which talks to no daemon).
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/answer.h"
#include "cli/args.h"
#include "cli/client.h"
#include "cli/cmd.h"
#include "cli/fmt.h"
#include "core/err.h"
#include "core/json.h"
#include "core/util.h"

void cli_print_error(const struct cli_opts *o, const struct err *e)
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

long long cli_age_s(const json_t *o, const char *key)
{
	uint64_t ms;
	long long now = (long long)(wall_ms() / 1000);
	if (cli_juint(o, key, &ms) < 0)
		return -1;
	long long t = (long long)(ms / 1000);
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

struct cli_table {
	int ncols;
	size_t nrows;
	size_t width[CLI_TABLE_COLS];
	char **cells; /* nrows * ncols, row 0 is the header */
};

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

struct cli_table *cli_table_new(const char *const *headers, int ncols)
{
	struct cli_table *t = xcalloc(1, sizeof(*t));
	t->ncols = ncols < CLI_TABLE_COLS ? ncols : CLI_TABLE_COLS;
	cli_table_add(t, headers);
	return t;
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

int cli_expect(const struct cli_client *c, long status, long want, json_t *answer, struct err *e)
{
	if (status != want && !(want == 200 && status == 201) && !(want == 201 && status == 200))
		return cli_client_error(c, status, answer, e);
	if (!json_is_object(answer))
		return cli_client_foreign(c, "its answer is not a JSON object", e);
	return 0;
}

json_t *cli_list(const json_t *answer, const char *key)
{
	json_t *v = cli_jget(answer, key);
	return json_is_array(v) ? v : NULL;
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
