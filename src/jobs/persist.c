/*
 * persist: every catalog call of the jobs module (see persist.h), and the
 * conversion of catalog rows to the JSON of the API.
 */
#include "jobs/persist.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/util.h"
#include "provision/hfselect.h"
#include "store/catalog.h"
#include "store/layout.h"
#include "store/store.h"

struct job_persist {
	struct catalog *cat;
	char *hub_dir;
};

int job_persist_open(const char *data_root, const char *hub_dir, struct job_persist **out,
		     struct err *e)
{
	*out = NULL;
	if (!data_root)
		return 0;
	char *db = xasprintf("%s/catalog.db", data_root);
	struct catalog *cat = NULL;
	int rc = catalog_open(db, &cat, e);
	free(db);
	if (rc < 0)
		return rc;
	struct job_persist *p = xcalloc(1, sizeof(*p));
	p->cat = cat;
	p->hub_dir = hub_dir ? xstrdup(hub_dir) : xasprintf("%s/hub", data_root);
	*out = p;
	return 0;
}

void job_persist_close(struct job_persist *p)
{
	if (!p)
		return;
	catalog_close(p->cat);
	free(p->hub_dir);
	free(p);
}

struct job_persist_pool {
	char *data_root;
	char *hub_dir;
	size_t max_idle;
	pthread_mutex_t lock; /* guards idle and n_idle */
	struct job_persist **idle;
	size_t n_idle;
};

struct job_persist_pool *job_persist_pool_new(const char *data_root, const char *hub_dir,
					      size_t max_idle)
{
	struct job_persist_pool *pool = xcalloc(1, sizeof(*pool));
	pool->data_root = data_root ? xstrdup(data_root) : NULL;
	pool->hub_dir = hub_dir ? xstrdup(hub_dir) : NULL;
	pool->max_idle = max_idle;
	pool->idle = xcalloc(max_idle ? max_idle : 1, sizeof(*pool->idle));
	pthread_mutex_init(&pool->lock, NULL);
	return pool;
}

void job_persist_pool_free(struct job_persist_pool *pool)
{
	if (!pool)
		return;
	for (size_t i = 0; i < pool->n_idle; i++)
		job_persist_close(pool->idle[i]);
	pthread_mutex_destroy(&pool->lock);
	free(pool->idle);
	free(pool->data_root);
	free(pool->hub_dir);
	free(pool);
}

int job_persist_pool_acquire(struct job_persist_pool *pool, struct job_persist **out, struct err *e)
{
	*out = NULL;
	pthread_mutex_lock(&pool->lock);
	if (pool->n_idle)
		*out = pool->idle[--pool->n_idle];
	pthread_mutex_unlock(&pool->lock);
	if (*out)
		return 0;
	/* Opened outside the lock: opening reads the schema and may wait for a writer. */
	return job_persist_open(pool->data_root, pool->hub_dir, out, e);
}

void job_persist_pool_release(struct job_persist_pool *pool, struct job_persist *p, int rc)
{
	if (!p)
		return;
	/*
	 * A connection that saw anything but a verdict on the request (a
	 * storage or internal failure) is not trusted again: closed, not kept.
	 */
	int keep = rc == 0 || rc == ERR_NOT_FOUND || rc == ERR_CONFLICT || rc == ERR_INVALID ||
		   rc == ERR_UNPROCESSABLE;
	pthread_mutex_lock(&pool->lock);
	if (keep && pool->n_idle < pool->max_idle) {
		pool->idle[pool->n_idle++] = p;
		p = NULL;
	}
	pthread_mutex_unlock(&pool->lock);
	job_persist_close(p);
}

int job_persist_put(struct job_persist *p, const struct job_row *row, struct err *e)
{
	if (!p)
		return 0;
	struct catalog_job j = {
	    .id = (char *)row->id,
	    .operation = (char *)row->operation,
	    .model_ref = (char *)row->arg,
	    .state = row->state,
	    .created_ms = row->created_ms,
	    .updated_ms = row->updated_ms,
	    .progress_json = (char *)row->progress,
	    .error = (char *)row->error,
	    .result_id = (char *)row->model_id,
	};
	return catalog_job_put(p->cat, &j, e);
}

int job_persist_mark_interrupted(struct job_persist *p, struct err *e)
{
	if (!p)
		return 0;
	return catalog_jobs_mark_interrupted(p->cat, NULL, NULL, e);
}

void job_persist_sweep(struct job_persist *p)
{
	if (!p)
		return;
	struct err e = {0};
	int n = catalog_fresh_sweep(p->cat, &e);
	if (n < 0)
		log_msg(LOG_WARN, NULL, "removing stale fresh resume states: %s", err_msg(&e));
	else if (n > 0)
		log_msg(LOG_INFO, NULL, "removed %d stale fresh resume states", n);
}

static const char *nonempty(const char *s)
{
	return s && s[0] ? s : NULL;
}

int job_persist_load(struct job_persist *p, void (*fn)(void *arg, const struct job_row *row),
		     void *arg, struct err *e)
{
	if (!p)
		return 0;
	struct catalog_job *list = NULL;
	size_t n = 0;
	int rc = catalog_job_list(p->cat, NULL, 0, &list, &n, e);
	if (rc < 0)
		return rc;
	/* The catalog lists newest first; the registry keeps oldest first. */
	for (size_t i = n; i-- > 0;) {
		const struct catalog_job *j = &list[i];
		struct job_row row = {
		    .id = j->id,
		    .operation = j->operation,
		    .arg = nonempty(j->model_ref),
		    .state = j->state,
		    .error = nonempty(j->error),
		    .progress = nonempty(j->progress_json),
		    .model_id = nonempty(j->result_id),
		    .created_ms = j->created_ms,
		    .updated_ms = j->updated_ms,
		};
		fn(arg, &row);
	}
	catalog_job_list_free(list, n);
	return 0;
}

int job_persist_prune(struct job_persist *p, int keep, int64_t max_age_ms, struct err *e)
{
	if (!p)
		return 0;
	size_t removed = 0;
	return catalog_job_prune(p->cat, max_age_ms, (size_t)(keep > 0 ? keep : 0), &removed, e);
}

/*
 * The quantizations of a model, from its files' names (several for a whole
 * snapshot), else the one its GGUF header names; derived, not stored.
 */
static json_t *model_quants_json(const struct catalog_model *m)
{
	json_t *a = json_array();
	const char **paths = xcalloc(m->nfiles ? m->nfiles : 1, sizeof(*paths));
	char tags[CAP_MODEL_QUANTS][HF_QUANT_MAX];
	for (size_t i = 0; i < m->nfiles; i++)
		paths[i] = m->files[i].path;
	size_t n = hf_model_quants(paths, m->nfiles, tags, CAP_MODEL_QUANTS);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(tags[i]));
	if (n == 0 && m->gguf.quantization[0])
		json_array_append_new(a, json_string(m->gguf.quantization));
	free(paths);
	return a;
}

static json_t *model_json(const struct catalog_model *m)
{
	json_t *o = json_object();
	json_set_str(o, "id", m->id);
	json_set_str(o, "source", catalog_source_name(m->source));
	json_set_str(o, "repo", m->repo);
	json_set_str(o, "revision", nonempty(m->revision));
	json_set_str(o, "commit", nonempty(m->commit));
	json_set_str(o, "status", catalog_status_name(m->status));
	json_set_int(o, "size", (long long)m->size);
	json_set_int(o, "created_ms", m->created_ms);
	json_set_int(o, "updated_ms", m->updated_ms);
	json_set_str(o, "error", nonempty(m->error));
	json_t *files = json_array();
	for (size_t i = 0; i < m->nfiles; i++) {
		json_t *f = json_pack("{s:s,s:s,s:I}", "path", m->files[i].path, "sha256",
				      m->files[i].sha256, "size", (json_int_t)m->files[i].size);
		/* Where the blob's bytes came from, when this hive fetched them. */
		if (m->files[i].source[0])
			json_set_str(f, "source", m->files[i].source);
		json_array_append_new(files, f);
	}
	json_object_set_new(o, "files", files);
	const struct catalog_gguf *g = &m->gguf;
	json_t *gg = json_object();
	json_set_str(gg, "architecture", nonempty(g->architecture));
	json_set_str(gg, "name", nonempty(g->name));
	json_set_str(gg, "quantization", nonempty(g->quantization));
	json_set_int(gg, "parameters", (long long)g->parameters);
	json_set_str(gg, "size_label", nonempty(g->size_label));
	json_set_int(gg, "context_length", (long long)g->context_length);
	json_object_set_new(o, "gguf", gg);
	json_object_set_new(o, "quantizations", model_quants_json(m));
	return o;
}

int job_persist_models_json(struct job_persist *p, const char *from, size_t offset, size_t limit,
			    json_t **out, int *more, struct err *e)
{
	*out = json_array();
	if (more)
		*more = 0;
	if (!p)
		return 0;
	struct catalog_model *list = NULL;
	size_t n = 0;
	/* One row past the page says whether another page follows, from the same snapshot. */
	int rc = catalog_model_list(p->cat, from, offset, limit ? limit + 1 : 0, &list, &n, e);
	if (rc < 0) {
		json_decref(*out);
		*out = NULL;
		return rc;
	}
	size_t shown = limit && n > limit ? limit : n;
	if (more)
		*more = shown < n;
	for (size_t i = 0; i < shown; i++)
		json_array_append_new(*out, model_json(&list[i]));
	catalog_model_list_free(list, n);
	return 0;
}

int job_persist_models_listed_json(struct job_persist *p, json_t **out, struct err *e)
{
	*out = json_array();
	if (!p)
		return 0;
	struct catalog_model *list = NULL;
	size_t n = 0;
	struct layout *l = NULL;
	int rc = catalog_model_list(p->cat, NULL, 0, 0, &list, &n, e);
	if (rc == 0)
		rc = layout_open(p->hub_dir, &l, e);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const struct catalog_model *m = &list[i];
		json_t *o = model_json(m);
		json_set_str(o, "name", m->gguf.name[0] ? m->gguf.name : m->repo);
		char path[4096];
		/* A model whose files the catalog does not name has no path to show. */
		if (m->nfiles == 0 ||
		    layout_snapshot_path(l, m->repo_dir, m->commit, m->files[0].path, path,
					 sizeof(path), NULL))
			path[0] = 0;
		json_set_str(o, "path", path[0] ? path : NULL);
		json_object_set_new(o, "loaded", json_false());
		json_array_append_new(*out, o);
	}
	layout_free(l);
	catalog_model_list_free(list, n);
	if (rc < 0) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

int job_persist_model_marks(struct job_persist *p, size_t stride, char ***marks, size_t *n_marks,
			    size_t *total, struct err *e)
{
	*marks = NULL;
	*n_marks = *total = 0;
	return p ? catalog_model_marks(p->cat, stride, marks, n_marks, total, e) : 0;
}

int job_persist_model_count(struct job_persist *p, size_t *n, struct err *e)
{
	*n = 0;
	return p ? catalog_model_totals(p->cat, n, NULL, e) : 0;
}

int job_persist_data_version(struct job_persist *p, uint64_t *v, struct err *e)
{
	*v = 0;
	return p ? catalog_data_version(p->cat, v, e) : 0;
}

int job_persist_model_json(struct job_persist *p, const char *query, json_t **out, struct err *e)
{
	*out = NULL;
	if (!p)
		return err_set(e, ERR_NOT_FOUND, "no model '%.200s' in the catalog", query);
	struct catalog_model m;
	memset(&m, 0, sizeof(m));
	int rc = catalog_model_find(p->cat, query, &m, e);
	if (rc < 0)
		return rc;
	*out = model_json(&m);
	catalog_model_cleanup(&m);
	return 0;
}

int job_persist_model_delete(struct job_persist *p, const char *id, struct err *e)
{
	if (!p)
		return err_set(e, ERR_NOT_FOUND, "no model '%.200s' in the catalog", id);
	struct layout *l = NULL;
	int rc = layout_open(p->hub_dir, &l, e);
	if (rc == 0)
		rc = store_delete_model(p->cat, l, id, NULL, 0, e);
	layout_free(l);
	return rc;
}

int job_persist_verify(struct job_persist *p, const char *query,
		       void (*fn)(void *arg, const struct store_verify_item *it), void *arg,
		       struct cancel_token *cancel, struct store_verify_summary *sum, struct err *e)
{
	memset(sum, 0, sizeof(*sum));
	if (!p)
		return query ? err_set(e, ERR_NOT_FOUND, "no model '%.200s' in the catalog", query)
			     : 0;
	struct layout *l = NULL;
	int rc = layout_open(p->hub_dir, &l, e);
	if (rc == 0)
		rc = store_verify(p->cat, l, query, fn, arg, cancel, sum, e);
	layout_free(l);
	return rc;
}

/* The catalog's partials and the layout they live in; the caller frees both. */
static int partials_open(struct job_persist *p, struct catalog_partial **list, size_t *n,
			 struct layout **l, struct err *e)
{
	*list = NULL;
	*n = 0;
	*l = NULL;
	int rc = catalog_partial_list(p->cat, list, n, e);
	return rc ? rc : layout_open(p->hub_dir, l, e);
}

int job_persist_partials_json(struct job_persist *p, json_t **out, struct err *e)
{
	*out = json_array();
	if (!p)
		return 0;
	struct catalog_partial *list;
	size_t n;
	struct layout *l;
	int rc = partials_open(p, &list, &n, &l, e);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const struct catalog_partial *c = &list[i];
		struct err sub = {0};
		int writing = store_partial_writing(l, c->repo_dir, c->sha256, &sub);
		if (writing < 0)
			log_warn("partial %s of %s: %s", c->sha256, c->repo_dir, err_msg(&sub));
		json_array_append_new(
		    *out, json_pack("{s:s,s:s,s:I,s:I,s:I,s:b}", "repo_dir", c->repo_dir, "sha256",
				    c->sha256, "total_size", (json_int_t)c->total_size,
				    "bytes_done", (json_int_t)c->done_bytes, "updated_ms",
				    (json_int_t)c->updated_ms, "writing", writing == 1));
	}
	layout_free(l);
	free(list);
	if (rc) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

int job_persist_partial_remove(struct job_persist *p, const char *sha256, const char *repo_dir,
			       json_t **out, struct err *e)
{
	*out = NULL;
	if (!p)
		return err_set(e, ERR_NOT_FOUND, "no partial download %.64s", sha256);
	struct catalog_partial *list;
	size_t n;
	struct layout *l;
	int rc = partials_open(p, &list, &n, &l, e);
	json_t *dirs = json_array();
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (strcmp(list[i].sha256, sha256) != 0 ||
		    (repo_dir && strcmp(list[i].repo_dir, repo_dir) != 0))
			continue;
		rc = store_partial_remove(p->cat, l, list[i].repo_dir, sha256, e);
		if (rc == 0)
			json_array_append_new(dirs, json_string(list[i].repo_dir));
	}
	if (rc == 0 && json_array_size(dirs) == 0)
		rc = err_set(e, ERR_NOT_FOUND, "no partial download %.64s%s%.256s", sha256,
			     repo_dir ? " in " : "", repo_dir ? repo_dir : "");
	if (rc == 0)
		*out = json_pack("{s:s,s:s,s:O}", "sha256", sha256, "status", "deleted",
				 "repo_dirs", dirs);
	json_decref(dirs);
	layout_free(l);
	free(list);
	return rc;
}

void job_persist_catalog_size(struct job_persist *p, long *models, uint64_t *bytes)
{
	*models = -1;
	*bytes = 0;
	size_t n;
	if (p && catalog_model_totals(p->cat, &n, bytes, NULL) == 0)
		*models = (long)n;
}
