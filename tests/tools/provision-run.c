/*
 * provision-run: runs provision() for one or more refs at once, against a
 * data folder, and prints what happens as JSON lines on stdout:
 *
 *   {"job":0,"event":"progress","phase":"downloading","file":...,"bytes_done":...}
 *   {"job":0,"event":"narrate","line":"..."}
 *   {"job":0,"event":"done","id":"hf:...","path":"/...","size":N}
 *   {"job":0,"event":"error","code":"not_found","message":"..."}
 *
 * Options (before the refs):
 *   --data-dir DIR  --hf-cache DIR  --endpoint URL  --offline  --connections N
 *   --allow-file-import DIR   a folder file:// refs may read (repeatable)
 *   --cancel JOB:BYTES     cancel job JOB once it has reported BYTES bytes done
 *   --start-gap-ms MS      start each job MS after the previous one
 *   --list                 after the jobs, print every catalog model as {"event":"model",...}
 *   --repo-files ORG/REPO[@REV]  print hf_repo_files_json() instead of provisioning
 *
 * Exit status: 0 when every job ended as expected (succeeded, or cancelled
 * on request), 1 otherwise, 2 on usage errors.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cancel.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/util.h"
#include "provision/hfapi.h"
#include "provision/provision.h"
#include "store/catalog.h"

#define MAX_JOBS 16

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

struct job {
	int index;
	const char *ref;
	struct provisioner *prov;
	struct cancel_token *cancel;
	long long cancel_at; /* -1: never */
	int cancel_requested;
	int rc;
	long start_delay_ms;
};

static void print_json(json_t *o)
{
	char *s = json_dump_compact(o);
	pthread_mutex_lock(&out_mu);
	fputs(s, stdout);
	fputc('\n', stdout);
	fflush(stdout);
	pthread_mutex_unlock(&out_mu);
	free(s);
	json_decref(o);
}

static void on_progress(void *arg, const struct prov_progress *p)
{
	struct job *j = arg;
	json_t *o = json_object();
	json_set_int(o, "job", j->index);
	json_set_str(o, "event", "progress");
	json_set_str(o, "phase", prov_phase_name(p->phase));
	json_set_str(o, "file", p->file);
	json_set_int(o, "files_done", p->files_done);
	json_set_int(o, "files_total", p->files_total);
	json_set_int(o, "bytes_done", (long long)p->bytes_done);
	json_set_int(o, "bytes_total", (long long)p->bytes_total);
	json_object_set_new(o, "rate_bps", json_real(p->rate_bps));
	print_json(o);
	if (j->cancel_at >= 0 && (long long)p->bytes_done >= j->cancel_at && !j->cancel_requested) {
		j->cancel_requested = 1;
		cancel_fire(j->cancel);
	}
}

static void on_narrate(void *arg, const char *line)
{
	struct job *j = arg;
	json_t *o = json_object();
	json_set_int(o, "job", j->index);
	json_set_str(o, "event", "narrate");
	json_set_str(o, "line", line);
	print_json(o);
}

static void *run_job(void *arg)
{
	struct job *j = arg;
	if (j->start_delay_ms > 0)
		sleep_ms(j->start_delay_ms);
	struct prov_events ev = {.progress = on_progress, .narrate = on_narrate, .arg = j};
	char job_id[32];
	snprintf(job_id, sizeof(job_id), "job-%d", j->index);
	struct prov_request req = {
	    .ref = j->ref, .job_id = job_id, .cancel = j->cancel, .events = &ev};
	struct prov_artifact art;
	struct err e = {0};
	int64_t t0 = now_ms();
	j->rc = provision(j->prov, &req, &art, &e);
	json_t *o = json_object();
	json_set_int(o, "job", j->index);
	json_set_int(o, "elapsed_ms", (long long)(now_ms() - t0));
	if (j->rc == 0) {
		json_set_str(o, "event", "done");
		json_set_str(o, "id", art.id);
		json_set_str(o, "path", art.path);
		json_set_int(o, "size", (long long)art.size);
	} else {
		json_set_str(o, "event", j->rc == ERR_CANCELLED ? "cancelled" : "error");
		json_set_str(o, "code", err_name(j->rc));
		json_set_str(o, "message", err_msg(&e));
	}
	print_json(o);
	return NULL;
}

static void list_models(const char *data_dir)
{
	char path[4096];
	struct catalog *c = NULL;
	struct catalog_model *m = NULL;
	size_t n = 0;
	struct err e = {0};
	snprintf(path, sizeof(path), "%s/catalog.db", data_dir);
	if (catalog_open(path, &c, &e) || catalog_model_list(c, NULL, 0, 0, &m, &n, &e)) {
		fprintf(stderr, "provision-run: catalog: %s\n", err_msg(&e));
		catalog_close(c);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_object();
		json_set_str(o, "event", "model");
		json_set_str(o, "id", m[i].id);
		json_set_str(o, "source", catalog_source_name(m[i].source));
		json_set_str(o, "repo", m[i].repo);
		json_set_str(o, "revision", m[i].revision);
		json_set_str(o, "commit", m[i].commit);
		json_set_str(o, "repo_dir", m[i].repo_dir);
		json_set_str(o, "status", catalog_status_name(m[i].status));
		json_set_int(o, "size", (long long)m[i].size);
		json_set_str(o, "architecture", m[i].gguf.architecture);
		json_set_str(o, "quantization", m[i].gguf.quantization);
		json_set_int(o, "parameters", (long long)m[i].gguf.parameters);
		json_set_int(o, "context_length", (long long)m[i].gguf.context_length);
		json_t *files = json_array();
		for (size_t k = 0; k < m[i].nfiles; k++) {
			json_t *f = json_object();
			json_set_str(f, "path", m[i].files[k].path);
			json_set_str(f, "sha256", m[i].files[k].sha256);
			json_set_int(f, "size", (long long)m[i].files[k].size);
			json_array_append_new(files, f);
		}
		json_object_set_new(o, "files", files);
		print_json(o);
	}
	catalog_model_list_free(m, n);
	catalog_close(c);
}

static int usage(void)
{
	fprintf(stderr, "usage: provision-run --data-dir DIR [--hf-cache DIR] [--endpoint URL] "
			"[--offline] [--connections N] [--allow-file-import DIR] [--cancel "
			"JOB:BYTES] [--start-gap-ms MS] "
			"[--list] [--repo-files ORG/REPO[@REV]] REF...\n");
	return 2;
}

static int repo_files(const struct prov_config *cfg, const char *arg)
{
	char org[128], rest[512];
	const char *slash = strchr(arg, '/');
	if (!slash || (size_t)(slash - arg) >= sizeof(org))
		return usage();
	snprintf(org, sizeof(org), "%.*s", (int)(slash - arg), arg);
	snprintf(rest, sizeof(rest), "%s", slash + 1);
	char *at = strchr(rest, '@');
	const char *rev = NULL;
	if (at) {
		*at = '\0';
		rev = at + 1;
	}
	json_t *out = NULL;
	struct err e = {0};
	int rc = hf_repo_files_json(cfg, org, rest, rev, NULL, &out, &e);
	json_t *o = out ? out : json_object();
	if (rc) {
		json_set_str(o, "event", "error");
		json_set_str(o, "code", err_name(rc));
		json_set_str(o, "message", err_msg(&e));
	}
	print_json(o);
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct prov_config cfg = {0};
	struct job jobs[MAX_JOBS];
	int njobs = 0, list = 0;
	long gap_ms = 0;
	const char *files_of = NULL;
	const char *import_dirs[8];
	size_t n_import = 0;
	long long cancel_at[MAX_JOBS];
	for (int i = 0; i < MAX_JOBS; i++)
		cancel_at[i] = -1;
	log_init_from_env();
	int i = 1;
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--offline") == 0) {
			cfg.offline = 1;
		} else if (strcmp(a, "--list") == 0) {
			list = 1;
		} else if (!v) {
			return usage();
		} else if (strcmp(a, "--data-dir") == 0) {
			cfg.data_root = v, i++;
		} else if (strcmp(a, "--hf-cache") == 0) {
			cfg.hf_cache = v, i++;
		} else if (strcmp(a, "--allow-file-import") == 0 && n_import < 8) {
			import_dirs[n_import++] = v, i++;
		} else if (strcmp(a, "--endpoint") == 0) {
			cfg.endpoint = v, i++;
		} else if (strcmp(a, "--connections") == 0) {
			cfg.connections = atoi(v), i++;
		} else if (strcmp(a, "--start-gap-ms") == 0) {
			gap_ms = atol(v), i++;
		} else if (strcmp(a, "--repo-files") == 0) {
			files_of = v, i++;
		} else if (strcmp(a, "--cancel") == 0) {
			int k;
			long long b;
			if (sscanf(v, "%d:%lld", &k, &b) != 2 || k < 0 || k >= MAX_JOBS)
				return usage();
			cancel_at[k] = b, i++;
		} else {
			return usage();
		}
	}
	cfg.file_import_dirs = import_dirs;
	cfg.n_file_import_dirs = n_import;
	if (files_of)
		return repo_files(&cfg, files_of);
	if (!cfg.data_root)
		return usage();
	struct provisioner *prov = NULL;
	struct err e = {0};
	if (provisioner_new(&cfg, &prov, &e)) {
		json_t *o = json_object();
		json_set_str(o, "event", "error");
		json_set_str(o, "code", err_name(e.code));
		json_set_str(o, "message", err_msg(&e));
		print_json(o);
		return 1;
	}
	for (; i < argc && njobs < MAX_JOBS; i++, njobs++) {
		struct job *j = &jobs[njobs];
		memset(j, 0, sizeof(*j));
		j->index = njobs;
		j->ref = argv[i];
		j->prov = prov;
		j->cancel = cancel_new();
		j->cancel_at = cancel_at[njobs];
		j->start_delay_ms = gap_ms * njobs;
	}
	pthread_t th[MAX_JOBS];
	for (int k = 0; k < njobs; k++)
		pthread_create(&th[k], NULL, run_job, &jobs[k]);
	int status = 0;
	for (int k = 0; k < njobs; k++) {
		pthread_join(th[k], NULL);
		int expected =
		    jobs[k].rc == 0 || (jobs[k].rc == ERR_CANCELLED && jobs[k].cancel_requested);
		if (!expected)
			status = 1;
		cancel_unref(jobs[k].cancel);
	}
	provisioner_free(prov);
	if (list)
		list_models(cfg.data_root);
	return status;
}
