/*
 * ops: the operation table of the rbee job protocol and its handlers, the
 * strict parsing of a submission, and the catalog resource calls that the
 * HTTP routes share with the operations.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/caps.h"
#include "core/cancel.h"
#include "core/json.h"
#include "core/log.h"
#include "core/ref.h"
#include "core/util.h"
#include "jobs/job_internal.h"
#include "jobs/persist.h"
#include "provision/provision.h"
#include "store/store.h"

/* The hive_id rbee's keeper sends when none is configured. */
#define JOB_HIVE_ID_DEFAULT "localhost"

struct job_prov_ctx {
	struct job_registry *r;
	struct job *j;
};

static void job_on_progress(void *arg, const struct prov_progress *p)
{
	struct job_prov_ctx *cx = arg;
	json_t *o = json_object();
	json_set_str(o, "job_id", cx->j->id);
	json_set_str(o, "state", "running");
	json_set_str(o, "phase", prov_phase_name(p->phase));
	json_set_str(o, "file", p->file);
	json_set_int(o, "files_done", p->files_done);
	json_set_int(o, "files_total", p->files_total);
	json_set_int(o, "bytes_done", (long long)p->bytes_done);
	json_set_int(o, "bytes_total", (long long)p->bytes_total);
	json_set_int(o, "file_bytes_done", (long long)p->file_bytes_done);
	json_set_int(o, "file_bytes_total", (long long)p->file_bytes_total);
	json_object_set_new(o, "rate_bps", json_real(p->rate_bps));
	json_object_set_new(o, "eta_s", p->eta_s < 0 ? json_null() : json_real(p->eta_s));
	char *s = json_dump_compact(o);
	json_decref(o);
	/* Bytes sent to the blob store are not bytes downloaded. */
	job_set_progress(cx->r, cx->j, s, p->phase == PROV_UPLOADING ? 0 : p->bytes_done);
}

static void job_on_narrate(void *arg, const char *line)
{
	struct job_prov_ctx *cx = arg;
	job_narrate(cx->r, cx->j, "%s", line);
}

static int op_download(struct job_registry *r, struct job *j, struct job_persist *cat,
		       struct err *e)
{
	(void)cat;
	if (!r->prov)
		return err_set(e, ERR_INTERNAL, "no provisioner is configured");
	struct job_prov_ctx cx = {r, j};
	struct prov_events ev = {job_on_progress, job_on_narrate, &cx};
	struct prov_request req = {
	    .ref = j->arg, .job_id = j->id, .cancel = j->cancel, .events = &ev};
	struct prov_artifact *art = xcalloc(1, sizeof(*art));
	int rc = provision(r->prov, &req, art, e);
	if (rc == 0) {
		job_set_model_id(r, j, art->id);
		json_t *o = json_pack("{s:s,s:s,s:I}", "id", art->id, "path", art->path, "size",
				      (json_int_t)art->size);
		job_append(r, j, JOB_EV_DATA, json_dump_compact(o));
		json_decref(o);
		/*
		 * Write-behind: the blobs the origin gave go to the site's blob store
		 * as a job of their own, after the model is available here.
		 */
		if (art->store_pending > 0 && r->prov->ops->upload) {
			char up[JOB_ID_MAX];
			struct err ue = {0};
			if (job_start(r, job_op_find("model_upload"), art->id, up, &ue) == 0)
				job_narrate(r, j, "uploading %d blob(s) to the blob store: job %s",
					    art->store_pending, up);
			else
				log_msg(LOG_WARN, j->id, "cannot start the upload of %s: %s",
					art->id, err_msg(&ue));
		}
	}
	free(art);
	return rc;
}

/* Uploads a model's blobs to the site's blob store (write-behind), resumable. */
static int op_upload(struct job_registry *r, struct job *j, struct job_persist *cat, struct err *e)
{
	(void)cat;
	if (!r->prov || !r->prov->ops->upload)
		return err_set(e, ERR_UNSUPPORTED, "no blob store is configured (--blob-store)");
	struct job_prov_ctx cx = {r, j};
	struct prov_events ev = {job_on_progress, job_on_narrate, &cx};
	struct prov_request req = {
	    .ref = j->arg, .job_id = j->id, .cancel = j->cancel, .events = &ev};
	int rc = r->prov->ops->upload(r->prov, &req, e);
	if (rc == 0)
		job_set_model_id(r, j, j->arg);
	return rc;
}

/* Appends v as one event: data line, or fails when it is over the cap. */
static int job_append_data(struct job_registry *r, struct job *j, json_t *v, struct err *e)
{
	char *s = json_dump_compact(v);
	if (strlen(s) > CAP_JOB_DATA) {
		free(s);
		return err_set(e, ERR_TOO_LARGE,
			       "the result is over %d bytes; use the resource API", CAP_JOB_DATA);
	}
	job_append(r, j, JOB_EV_DATA, s);
	return 0;
}

static int op_list(struct job_registry *r, struct job *j, struct job_persist *cat, struct err *e)
{
	json_t *models = NULL;
	int rc = job_persist_models_listed_json(cat, &models, e);
	if (rc < 0)
		return rc;
	job_narrate(r, j, "%zu models in the catalog", json_array_size(models));
	json_t *o = json_pack("{s:o}", "models", models);
	rc = job_append_data(r, j, o, e);
	json_decref(o);
	return rc;
}

static int op_get(struct job_registry *r, struct job *j, struct job_persist *cat, struct err *e)
{
	json_t *m = NULL;
	int rc = job_persist_model_json(cat, j->arg, &m, e);
	if (rc < 0)
		return rc;
	char size[FMT_SIZE_LEN];
	fmt_size(size, sizeof(size), (uint64_t)json_integer_value(json_object_get(m, "size")));
	job_narrate(r, j, "%s: %s, %s, %zu file(s)", json_string_value(json_object_get(m, "id")),
		    json_string_value(json_object_get(m, "status")), size,
		    json_array_size(json_object_get(m, "files")));
	rc = job_append_data(r, j, m, e);
	json_decref(m);
	return rc;
}

static int op_delete(struct job_registry *r, struct job *j, struct job_persist *cat, struct err *e)
{
	json_t *o = NULL;
	int rc = job_model_delete_on(r, cat, j->arg, &o, e);
	if (rc < 0)
		return rc;
	job_narrate(r, j, "deleted %s", json_string_value(json_object_get(o, "id")));
	rc = job_append_data(r, j, o, e);
	json_decref(o);
	return rc;
}

/* What a file's status reads as in narration. */
static const char *const verify_words[] = {
    [STORE_FILE_OK] = "ok",
    [STORE_FILE_MISSING] = "missing",
    [STORE_FILE_CORRUPT] = "corrupt",
    [STORE_FILE_SIZE_MISMATCH] = "size mismatch",
};

/* Bad files named in the [ERROR] line. */
#define VERIFY_NAMED_MAX 3

struct verify_ctx {
	struct job_registry *r;
	struct job *j;
	json_t *models;		 /* the report's models, in the order checked */
	json_t *model;		 /* the entry of the model being checked, borrowed */
	char named[ERR_MSG_MAX]; /* the first bad files, for the summary */
	size_t n_named;
};

static void verify_on_file(void *arg, const struct store_verify_item *it)
{
	struct verify_ctx *v = arg;
	const char *last = json_string_value(json_object_get(v->model, "id"));
	if (!v->model || !last || strcmp(last, it->model_id) != 0) {
		v->model = json_pack("{s:s,s:s,s:[]}", "id", it->model_id, "status", "ok", "files");
		json_array_append_new(v->models, v->model);
	}
	const char *status = store_file_status_name(it->status);
	json_array_append_new(
	    json_object_get(v->model, "files"),
	    json_pack("{s:s,s:s,s:s}", "path", it->path, "sha256", it->sha256, "status", status));
	if (it->status == STORE_FILE_OK) {
		job_narrate(v->r, v->j, "ok: %s (%s)", it->path, it->model_id);
		return;
	}
	json_object_set_new(v->model, "status", json_string("bad"));
	job_narrate(v->r, v->j, "%s: %s (%s)", verify_words[it->status], it->detail, it->model_id);
	if (v->n_named++ < VERIFY_NAMED_MAX) {
		size_t off = strlen(v->named);
		snprintf(v->named + off, sizeof(v->named) - off, "%s%s in %s (%s)", off ? ", " : "",
			 it->path, it->model_id, verify_words[it->status]);
	}
}

/*
 * Every model (no id) or one: one narration line per file, a report as the
 * result, and [ERROR] naming the bad files when any is bad. The store makes
 * the catalog truthful on the way (a model with a bad file becomes failed).
 */
static int op_verify(struct job_registry *r, struct job *j, struct job_persist *cat, struct err *e)
{
	struct verify_ctx v = {.r = r, .j = j, .models = json_array()};
	struct store_verify_summary sum;
	job_narrate(r, j, "verifying %s", j->arg ? j->arg : "every model");
	int rc = job_persist_verify(cat, j->arg, verify_on_file, &v, j->cancel, &sum, e);
	if (rc < 0)
		goto out;
	json_t *report =
	    json_pack("{s:O,s:I,s:I}", "models", v.models, "ok",
		      (json_int_t)(sum.files - sum.files_bad), "bad", (json_int_t)sum.files_bad);
	if (sum.models_skipped)
		json_set_int(report, "skipped", (long long)sum.models_skipped);
	char *s = json_dump_compact(report);
	if (strlen(s) > CAP_JOB_DATA) {
		/* A catalog too large for one event: the good models' files are left out. */
		size_t i;
		json_t *m;
		json_array_foreach(v.models, i,
				   m) if (strcmp(json_string_value(json_object_get(m, "status")),
						 "ok") == 0) json_object_del(m, "files");
		json_object_set_new(report, "ok_files_omitted", json_true());
		free(s);
		s = json_dump_compact(report);
	}
	json_decref(report);
	if (strlen(s) > CAP_JOB_DATA) {
		free(s);
		job_narrate(r, j,
			    "the report is over %d bytes even without the good files; "
			    "the models' statuses are in GET /v1/models",
			    CAP_JOB_DATA);
	} else {
		job_append(r, j, JOB_EV_DATA, s);
	}
	job_narrate(r, j, "checked %zu model(s), %zu file(s), %llu bytes hashed; %zu bad%s",
		    sum.models, sum.files, (unsigned long long)sum.bytes_hashed, sum.files_bad,
		    sum.models_skipped ? "; models being downloaded were skipped" : "");
	if (sum.files_bad)
		rc = err_set(e, ERR_CORRUPT, "%zu of %zu file(s) bad in %zu of %zu model(s): %s%s",
			     sum.files_bad, sum.files, sum.models_bad, sum.models, v.named,
			     sum.files_bad > VERIFY_NAMED_MAX ? ", ..." : "");
out:
	json_decref(v.models);
	return rc;
}

static const struct job_op job_ops[] = {
    {"model_download", JOB_POOL_DOWNLOAD, "model", 0, 0, op_download},
    {"model_list", JOB_POOL_QUICK, NULL, 0, 1, op_list},
    {"model_get", JOB_POOL_QUICK, "id", 0, 0, op_get},
    {"model_delete", JOB_POOL_QUICK, "id", 0, 0, op_delete},
    {"model_verify", JOB_POOL_VERIFY, "id", 1, 0, op_verify},
    {"model_upload", JOB_POOL_DOWNLOAD, "id", 0, 0, op_upload},
};

/*
 * Operations of rbee's own hive that are not model provisioning: their
 * callers get 501 with what this daemon does instead of "unknown
 * operation". prefix: every operation whose name starts with name.
 */
static const struct {
	const char *name;
	int prefix;
	const char *what;
} job_ops_absent[] = {
    {"worker_", 1, "installs, spawns, lists and stops workers"},
    {"model_load", 0, "loads a model into a worker"},
    {"model_unload", 0, "unloads a model from a worker"},
    {"hive_check", 0, "runs a narration self-test (GET /health says whether this one is up)"},
};

/* ERR_UNSUPPORTED for an operation of job_ops_absent, else 0. */
static int job_op_absent(const json_t *req, struct err *e)
{
	const char *name = json_string_value(json_object_get(req, "operation"));
	for (size_t i = 0; name && i < sizeof(job_ops_absent) / sizeof(job_ops_absent[0]); i++) {
		size_t n = strlen(job_ops_absent[i].name);
		if (job_ops_absent[i].prefix ? strncmp(name, job_ops_absent[i].name, n) == 0
					     : strcmp(name, job_ops_absent[i].name) == 0)
			return err_set(e, ERR_UNSUPPORTED,
				       "'%.64s' is an operation of rbee's own hive, which %s; "
				       "rbee-hive provisions model files only (model_download, "
				       "model_list, model_get, model_delete, model_verify, "
				       "model_upload)",
				       name, job_ops_absent[i].what);
	}
	return 0;
}

const struct job_op *job_op_find(const char *name)
{
	for (size_t i = 0; i < sizeof(job_ops) / sizeof(job_ops[0]); i++)
		if (strcmp(job_ops[i].name, name) == 0)
			return &job_ops[i];
	return NULL;
}

/* Printable, bounded text for an id or ref from a request. */
static int job_text_check(const char *s, const char *what, struct err *e)
{
	size_t n = strlen(s);
	if (n == 0)
		return err_set(e, ERR_UNPROCESSABLE, "'%s' is empty", what);
	if (n > CAP_REF_LEN)
		return err_set(e, ERR_UNPROCESSABLE, "'%s' is longer than %d bytes", what,
			       CAP_REF_LEN);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return err_set(e, ERR_UNPROCESSABLE, "'%s' holds a control character",
				       what);
	return 0;
}

int job_submit_json(struct job_registry *r, const char *body, size_t len, char id_out[JOB_ID_MAX],
		    struct err *e)
{
	json_t *req = NULL;
	const char *operation = NULL, *model = NULL, *id = NULL, *hive_id = NULL;
	id_out[0] = 0;
	int rc = json_parse_strict(body, len, CAP_REQUEST_BODY, &req, e);
	if (rc < 0)
		goto out;
	/* Before the keys are checked: those operations carry keys of their own. */
	rc = job_op_absent(req, e);
	if (rc < 0)
		goto out;
	const struct json_field fields[] = {
	    {"operation", JF_STRING, 1, &operation},
	    {"model", JF_STRING, 0, &model},
	    {"id", JF_STRING, 0, &id},
	    {"hive_id", JF_STRING, 0, &hive_id},
	};
	rc = json_unpack_fields(req, fields, sizeof(fields) / sizeof(fields[0]), "request body", e);
	if (rc < 0)
		goto out;
	const struct job_op *op = job_op_find(operation);
	if (!op) {
		rc = err_set(e, ERR_UNPROCESSABLE,
			     "unknown operation '%.64s': expected model_download, model_list, "
			     "model_get, model_delete, model_verify or model_upload",
			     operation);
		goto out;
	}
	/*
	 * rbee's keeper sends "localhost" unless told otherwise, and reaches
	 * this daemon by its address, so that name is this hive too.
	 */
	if (hive_id && r->hive_id && strcmp(hive_id, r->hive_id) != 0 &&
	    strcmp(hive_id, JOB_HIVE_ID_DEFAULT) != 0) {
		rc = err_set(e, ERR_UNPROCESSABLE, "hive_id '%.64s' is not this hive ('%.64s')",
			     hive_id, r->hive_id);
		goto out;
	}
	const char *given[] = {model, id};
	const char *keys[] = {"model", "id"};
	const char *arg = NULL;
	for (int k = 0; k < 2; k++) {
		int wanted = op->arg_key && strcmp(op->arg_key, keys[k]) == 0;
		if (wanted && !given[k] && !op->arg_optional) {
			rc = err_set(e, ERR_INVALID, "request body: %s needs key '%s'", op->name,
				     keys[k]);
			goto out;
		}
		if (!wanted && given[k]) {
			rc = err_set(e, ERR_INVALID, "request body: %s takes no key '%s'", op->name,
				     keys[k]);
			goto out;
		}
		if (wanted)
			arg = given[k];
	}
	if (arg) {
		rc = job_text_check(arg, op->arg_key, e);
		if (rc < 0)
			goto out;
	}
	if (model) {
		struct model_ref *ref = xmalloc(sizeof(*ref));
		rc = ref_parse(model, ref, e);
		free(ref);
		if (rc < 0) {
			/* A ref that does not parse is well-formed JSON with a bad value. */
			rc = ERR_UNPROCESSABLE;
			if (e)
				e->code = rc;
			goto out;
		}
	}
	rc = job_start(r, op, arg, id_out, e);
out:
	/* A job that could not be recorded is already kept as failed, with its id. */
	if (rc < 0 && !id_out[0] && rc != ERR_SHUTDOWN)
		job_refuse(r, operation, e, id_out);
	json_decref(req);
	return rc;
}
