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
#include "core/sha256.h"
#include "core/util.h"
#include "jobs/job_internal.h"
#include "jobs/persist.h"
#include "provision/provision.h"
#include "store/store.h"

/* A result bigger than one event is refused rather than split silently. */
#define JOB_DATA_MAX (256 * 1024)

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
	job_set_progress(cx->r, cx->j, s, p->bytes_done);
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
	struct prov_request req = {.ref = j->arg, .job_id = j->id, .cancel = j->cancel, .events = &ev};
	struct prov_artifact *art = xcalloc(1, sizeof(*art));
	int rc = provision(r->prov, &req, art, e);
	if (rc == 0) {
		job_set_model_id(r, j, art->id);
		json_t *o = json_pack("{s:s,s:s,s:I}", "id", art->id, "path", art->path, "size",
				      (json_int_t)art->size);
		job_append(r, j, JOB_EV_DATA, json_dump_compact(o));
		json_decref(o);
	}
	free(art);
	return rc;
}

/* Appends v as one event: data line, or fails when it is over the cap. */
static int job_append_data(struct job_registry *r, struct job *j, json_t *v, struct err *e)
{
	char *s = json_dump_compact(v);
	if (strlen(s) > JOB_DATA_MAX) {
		free(s);
		return err_set(e, ERR_TOO_LARGE, "the result is over %d bytes; use the resource API",
			       JOB_DATA_MAX);
	}
	job_append(r, j, JOB_EV_DATA, s);
	return 0;
}

static int op_list(struct job_registry *r, struct job *j, struct job_persist *cat, struct err *e)
{
	json_t *models = NULL;
	int rc = job_persist_models_json(cat, 0, 0, &models, NULL, e);
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
	rc = job_append_data(r, j, m, e);
	json_decref(m);
	return rc;
}

static int job_delete_on(struct job_registry *r, struct job_persist *cat, const char *query,
			 json_t **out, struct err *e)
{
	/* Checked before the lookup too: the catalog may not list it yet. */
	if (job_model_busy(r, query))
		return err_set(e, ERR_CONFLICT, "model %.400s is being written by a running job",
			       query);
	json_t *m = NULL;
	int rc = job_persist_model_json(cat, query, &m, e);
	if (rc < 0)
		return rc;
	const char *id = json_string_value(json_object_get(m, "id"));
	if (!id) {
		json_decref(m);
		return err_set(e, ERR_CORRUPT, "catalog entry for '%.200s' has no id", query);
	}
	if (job_model_busy(r, id)) {
		rc = err_set(e, ERR_CONFLICT, "model %.400s is being written by a running job", id);
		json_decref(m);
		return rc;
	}
	rc = job_persist_model_delete(cat, id, e);
	if (rc == 0)
		*out = json_pack("{s:s,s:s}", "id", id, "status", "deleted");
	json_decref(m);
	return rc;
}

static int op_delete(struct job_registry *r, struct job *j, struct job_persist *cat,
		     struct err *e)
{
	json_t *o = NULL;
	int rc = job_delete_on(r, cat, j->arg, &o, e);
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
	json_t *models; /* the report's models, in the order checked */
	json_t *model;  /* the entry of the model being checked, borrowed */
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
	json_array_append_new(json_object_get(v->model, "files"),
			      json_pack("{s:s,s:s,s:s}", "path", it->path, "sha256", it->sha256,
					"status", status));
	if (it->status == STORE_FILE_OK) {
		job_narrate(v->r, v->j, "ok: %s (%s)", it->path, it->model_id);
		return;
	}
	json_object_set_new(v->model, "status", json_string("bad"));
	job_narrate(v->r, v->j, "%s: %s (%s)", verify_words[it->status], it->detail,
		    it->model_id);
	if (v->n_named++ < VERIFY_NAMED_MAX) {
		size_t off = strlen(v->named);
		snprintf(v->named + off, sizeof(v->named) - off, "%s%s in %s (%s)",
			 off ? ", " : "", it->path, it->model_id, verify_words[it->status]);
	}
}

/*
 * Every model (no id) or one: one narration line per file, a report as the
 * result, and [ERROR] naming the bad files when any is bad. The store makes
 * the catalog truthful on the way (a model with a bad file becomes failed).
 */
static int op_verify(struct job_registry *r, struct job *j, struct job_persist *cat,
		     struct err *e)
{
	struct verify_ctx v = {.r = r, .j = j, .models = json_array()};
	struct store_verify_summary sum;
	job_narrate(r, j, "verifying %s", j->arg ? j->arg : "every model");
	int rc = job_persist_verify(cat, j->arg, verify_on_file, &v, j->cancel, &sum, e);
	if (rc < 0)
		goto out;
	json_t *report = json_pack("{s:O,s:I,s:I}", "models", v.models, "ok",
				   (json_int_t)(sum.files - sum.files_bad), "bad",
				   (json_int_t)sum.files_bad);
	if (sum.models_skipped)
		json_set_int(report, "skipped", (long long)sum.models_skipped);
	char *s = json_dump_compact(report);
	if (strlen(s) > JOB_DATA_MAX) {
		/* A catalog too large for one event: the good models' files are left out. */
		size_t i;
		json_t *m;
		json_array_foreach(v.models, i, m)
			if (strcmp(json_string_value(json_object_get(m, "status")), "ok") == 0)
				json_object_del(m, "files");
		json_object_set_new(report, "ok_files_omitted", json_true());
		free(s);
		s = json_dump_compact(report);
	}
	json_decref(report);
	if (strlen(s) > JOB_DATA_MAX) {
		free(s);
		job_narrate(r, j, "the report is over %d bytes even without the good files; "
				  "the models' statuses are in GET /v1/models",
			    JOB_DATA_MAX);
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
	{"model_download", JOB_POOL_DOWNLOAD, "model", 0, op_download},
	{"model_list", JOB_POOL_QUICK, NULL, 0, op_list},
	{"model_get", JOB_POOL_QUICK, "id", 0, op_get},
	{"model_delete", JOB_POOL_QUICK, "id", 0, op_delete},
	{"model_verify", JOB_POOL_VERIFY, "id", 1, op_verify},
};

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

int job_submit_json(struct job_registry *r, const char *body, size_t len,
		    char id_out[JOB_ID_MAX], struct err *e)
{
	json_t *req = NULL;
	int rc = json_parse_strict(body, len, CAP_REQUEST_BODY, &req, e);
	if (rc < 0)
		return rc;
	const char *operation = NULL, *model = NULL, *id = NULL, *hive_id = NULL;
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
			     "model_get, model_delete or model_verify",
			     operation);
		goto out;
	}
	if (hive_id && r->hive_id && strcmp(hive_id, r->hive_id) != 0) {
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
	json_decref(req);
	return rc;
}

/*
 * Recent GET /v1/models answers, serialised, so that clients polling the
 * same pages do not each rebuild them. An entry is valid while the catalog
 * has not changed: the cache's own connection, which never writes, reads
 * PRAGMA data_version, which moves with every commit of any other
 * connection. That connection is taken out of the cache for the SQLite call
 * (no lock is held across it); a request that finds it taken waits until it
 * is given back, which is microseconds later: going without the cache
 * instead made concurrent requests rebuild pages that were kept. A daemon
 * without a data root builds every answer.
 */
#define JOB_MODELS_CACHED 8

struct job_models_entry {
	size_t offset, limit;
	uint64_t version;
	char *text; /* NULL: unused */
	size_t len;
	uint64_t used; /* for replacing the least recently used entry */
};

struct job_models_cache {
	pthread_mutex_t lock; /* guards every field */
	struct job_persist *vconn; /* NULL while a request uses it, or not opened */
	int vconn_busy;
	pthread_cond_t vconn_cv; /* signalled when vconn is given back */
	uint64_t tick;
	struct job_models_entry e[JOB_MODELS_CACHED];
};

struct job_models_cache *job_models_cache_new(void)
{
	struct job_models_cache *c = xcalloc(1, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->vconn_cv, NULL);
	return c;
}

static void job_models_cache_clear_locked(struct job_models_cache *c)
{
	for (size_t i = 0; i < JOB_MODELS_CACHED; i++) {
		free(c->e[i].text);
		c->e[i].text = NULL;
	}
}

void job_models_cache_free(struct job_models_cache *c)
{
	if (!c)
		return;
	job_models_cache_clear_locked(c);
	job_persist_close(c->vconn);
	pthread_cond_destroy(&c->vconn_cv);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* The catalog's data version seen by the cache's connection: 0, or -1 to go without the cache. */
static int job_models_version(struct job_registry *r, uint64_t *v)
{
	struct job_models_cache *c = r->models_cache;
	if (!r->data_root)
		return -1;
	pthread_mutex_lock(&c->lock);
	while (c->vconn_busy)
		pthread_cond_wait(&c->vconn_cv, &c->lock);
	struct job_persist *p = c->vconn;
	c->vconn = NULL;
	c->vconn_busy = 1;
	pthread_mutex_unlock(&c->lock);
	int fresh = !p, rc = 0;
	if (fresh)
		rc = job_persist_open(r->data_root, r->hub_dir, &p, NULL);
	if (rc == 0 && p)
		rc = job_persist_data_version(p, v, NULL);
	if (rc < 0 || !p) {
		job_persist_close(p);
		p = NULL;
	}
	pthread_mutex_lock(&c->lock);
	/* The numbers of a new connection are not those of the old one. */
	if (fresh)
		job_models_cache_clear_locked(c);
	c->vconn = p;
	c->vconn_busy = 0;
	pthread_cond_signal(&c->vconn_cv);
	pthread_mutex_unlock(&c->lock);
	return p ? 0 : -1;
}

/* A copy of the cached answer for the page at version v, or NULL. */
static char *job_models_cache_get(struct job_models_cache *c, size_t offset, size_t limit,
				  uint64_t v, size_t *len)
{
	char *out = NULL;
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < JOB_MODELS_CACHED; i++) {
		struct job_models_entry *x = &c->e[i];
		if (x->text && x->offset == offset && x->limit == limit && x->version == v) {
			out = xmalloc(x->len + 1);
			memcpy(out, x->text, x->len + 1);
			*len = x->len;
			x->used = ++c->tick;
			break;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return out;
}

static void job_models_cache_put(struct job_models_cache *c, size_t offset, size_t limit,
				  uint64_t v, const char *text, size_t len)
{
	char *copy = xmalloc(len + 1);
	memcpy(copy, text, len + 1);
	pthread_mutex_lock(&c->lock);
	struct job_models_entry *x = &c->e[0];
	for (size_t i = 0; i < JOB_MODELS_CACHED; i++) {
		struct job_models_entry *y = &c->e[i];
		if (y->text && y->offset == offset && y->limit == limit) {
			x = y;
			break;
		}
		if (!y->text || (x->text && y->used < x->used))
			x = y;
	}
	free(x->text);
	*x = (struct job_models_entry){offset, limit, v, copy, len, ++c->tick};
	pthread_mutex_unlock(&c->lock);
}

static int job_models_build(struct job_registry *r, size_t offset, size_t limit, char **text,
			    size_t *len, struct err *e)
{
	struct job_persist *cat = NULL;
	int rc = job_persist_pool_acquire(r->pool, &cat, e);
	if (rc < 0)
		return rc;
	json_t *models = NULL;
	int more = 0;
	size_t total = 0;
	rc = job_persist_models_json(cat, offset, limit, &models, &more, e);
	if (rc == 0)
		rc = job_persist_model_count(cat, &total, e);
	job_persist_pool_release(r->pool, cat, rc);
	if (rc < 0) {
		json_decref(models);
		return rc;
	}
	json_t *o = json_pack("{s:o,s:I,s:I,s:I,s:o}", "models", models, "total", (json_int_t)total,
			      "offset", (json_int_t)offset, "limit", (json_int_t)limit,
			      "next_offset",
			      more ? json_integer((json_int_t)(offset + limit)) : json_null());
	if (!o)
		return err_set(e, ERR_INTERNAL, "a model of the catalog cannot be encoded");
	char *s = json_dump_compact(o);
	json_decref(o);
	size_t n = strlen(s);
	s = xrealloc(s, n + 2);
	s[n++] = '\n';
	s[n] = 0;
	*text = s;
	*len = n;
	return 0;
}

int job_models_list_text(struct job_registry *r, size_t offset, size_t limit, char **text,
			 size_t *len, struct err *e)
{
	*text = NULL;
	*len = 0;
	if (limit < 1 || limit > CAP_MODELS_PAGE)
		return err_set(e, ERR_INVALID, "limit %zu: expected 1 to %d", limit, CAP_MODELS_PAGE);
	if (offset > CAP_CATALOG_MODELS)
		return err_set(e, ERR_INVALID, "offset %zu: expected 0 to %d", offset,
			       CAP_CATALOG_MODELS);
	uint64_t v = 0;
	/* The version is read before the page, so a kept page is never older than its version. */
	int cached = job_models_version(r, &v) == 0;
	if (cached && (*text = job_models_cache_get(r->models_cache, offset, limit, v, len)))
		return 0;
	int rc = job_models_build(r, offset, limit, text, len, e);
	if (rc == 0 && cached)
		job_models_cache_put(r->models_cache, offset, limit, v, *text, *len);
	return rc;
}

int job_model_get_json(struct job_registry *r, const char *id, json_t **out, struct err *e)
{
	struct job_persist *cat = NULL;
	*out = NULL;
	int rc = job_persist_pool_acquire(r->pool, &cat, e);
	if (rc < 0)
		return rc;
	rc = job_persist_model_json(cat, id, out, e);
	job_persist_pool_release(r->pool, cat, rc);
	return rc;
}

int job_partials_list_json(struct job_registry *r, json_t **out, struct err *e)
{
	struct job_persist *cat = NULL;
	*out = NULL;
	int rc = job_persist_pool_acquire(r->pool, &cat, e);
	if (rc < 0)
		return rc;
	json_t *list = NULL;
	rc = job_persist_partials_json(cat, &list, e);
	job_persist_pool_release(r->pool, cat, rc);
	if (rc == 0)
		*out = json_pack("{s:o}", "partials", list);
	return rc;
}

int job_partial_delete(struct job_registry *r, const char *sha256, const char *repo_dir,
		       json_t **out, struct err *e)
{
	*out = NULL;
	if (!sha256_hex_valid(sha256))
		return err_set(e, ERR_INVALID, "'%.80s' is not a sha256 (64 lowercase hex digits)",
			       sha256);
	struct job_persist *cat = NULL;
	int rc = job_persist_pool_acquire(r->pool, &cat, e);
	if (rc < 0)
		return rc;
	rc = job_persist_partial_remove(cat, sha256, repo_dir, out, e);
	job_persist_pool_release(r->pool, cat, rc);
	if (rc == 0)
		log_info("partial download %s deleted", sha256);
	return rc;
}

int job_model_delete(struct job_registry *r, const char *id, json_t **out, struct err *e)
{
	struct job_persist *cat = NULL;
	*out = NULL;
	int rc = job_persist_pool_acquire(r->pool, &cat, e);
	if (rc < 0)
		return rc;
	rc = job_delete_on(r, cat, id, out, e);
	job_persist_pool_release(r->pool, cat, rc);
	if (rc == 0)
		log_info("model deleted");
	return rc;
}
