/*
 * cmd_jobs: the commands on the daemon's jobs: pull and verify (submit a
 * job and follow its stream; pull uploads a local file first), jobs (the
 * list) and cancel.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/answer.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/client.h"
#include "cli/cmd.h"
#include "cli/fmt.h"
#include "cli/follow.h"
#include "core/caps.h"
#include "core/err.h"
#include "core/json.h"
#include "core/ref.h"
#include "core/sha256.h"
#include "core/util.h"

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

/* The entries of the commands, listed by main()'s command table. */

const struct cli_command cli_cmd_pull = {
    .name = "pull",
    .summary = "download a model, with progress (Ctrl-C cancels)",
    .synopsis = "REF [--detach] [--json]",
    .help =
	"Downloads a model into the daemon's catalog and follows the job.\n"
	"REF is hf:ORG/REPO[:SELECTOR][@REVISION], https://HOST/PATH[#sha256=HEX]\n"
	"or file:///ABS/PATH. On a terminal a progress bar per file is drawn;\n"
	"otherwise a line per phase. Ctrl-C cancels the job on the daemon\n"
	"(exit 130); a second Ctrl-C leaves at once.\n\n"
	"  --detach          print the job id and return; the job runs on\n" CLI_HELP_JSON_EVENTS,
    .flags = CLI_OPT_DAEMON | CLI_OPT_JSON | CLI_OPT_DETACH,
    .min_args = 1,
    .max_args = 1,
    .body = cli_pull_body,
};

const struct cli_command cli_cmd_jobs = {
    .name = "jobs",
    .summary = "list the daemon's jobs",
    .synopsis = "[--json]",
    .help = "Lists the daemon's jobs, newest first: id, operation, state, progress,\n"
	    "model, age and, for a failed job, its error. An ended job shows the bytes\n"
	    "it moved, not the phase it stopped in.\n\n" CLI_HELP_JSON_ANSWER,
    .flags = CLI_OPT_DAEMON | CLI_OPT_JSON,
    .body = cli_jobs_body,
};

const struct cli_command cli_cmd_cancel = {
    .name = "cancel",
    .summary = "cancel a job",
    .synopsis = "JOB_ID [--json]",
    .help = "Cancels a queued or running job. Its partial download stays for a\n"
	    "later pull to resume. Fails when the job has already ended.\n\n" CLI_HELP_JSON_ANSWER,
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
	    "each file as ok or damaged. Exit 1 when any file is damaged.\n\n" CLI_HELP_JSON_EVENTS,
    .flags = CLI_OPT_DAEMON | CLI_OPT_JSON,
    .max_args = 1,
    .body = cli_verify_body,
};
