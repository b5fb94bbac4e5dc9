/*
 * models: the catalog resource calls the HTTP routes make (a page of models,
 * one model, its deletion, the partial downloads), each on a connection of
 * the registry's pool, and the cache of recent GET /v1/models pages.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/caps.h"
#include "core/json.h"
#include "core/log.h"
#include "core/sha256.h"
#include "core/util.h"
#include "jobs/job_internal.h"
#include "jobs/persist.h"
#include "store/catalog.h"

int job_model_delete_on(struct job_registry *r, struct job_persist *cat, const char *query,
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
 *
 * A page that is not kept is found by the page index: every
 * JOB_MODELS_STRIDE-th model id and the number of models, read by the same
 * connection at the same data version. A page at offset M is then the
 * models from the id marked at M / STRIDE on, less the M % STRIDE before
 * it, found in the id index instead of stepped over from the first model
 * (SQLite's OFFSET, O(M) per page), and the total needs no count of every
 * row. Building the index reads every id once per catalog change (O(N));
 * its marks take N / STRIDE ids of memory.
 */
#define JOB_MODELS_CACHED 8
#define JOB_MODELS_STRIDE 64

struct job_models_entry {
	size_t offset, limit;
	uint64_t version;
	char *text; /* NULL: unused */
	size_t len;
	uint64_t used; /* for replacing the least recently used entry */
};

struct job_models_cache {
	pthread_mutex_t lock;	   /* guards every field */
	struct job_persist *vconn; /* NULL while a request uses it, or not opened */
	int vconn_busy;
	pthread_cond_t vconn_cv; /* signalled when vconn is given back */
	uint64_t tick;
	struct job_models_entry e[JOB_MODELS_CACHED];
	/* The page index, valid at index_version when marks is not NULL. */
	char **marks;
	size_t n_marks, total;
	uint64_t index_version;
};

struct job_models_cache *job_models_cache_new(void)
{
	struct job_models_cache *c = xcalloc(1, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->vconn_cv, NULL);
	return c;
}

static void job_models_index_set_locked(struct job_models_cache *c, char **marks, size_t n_marks,
					size_t total, uint64_t v)
{
	catalog_model_marks_free(c->marks, c->n_marks);
	c->marks = marks;
	c->n_marks = n_marks;
	c->total = total;
	c->index_version = v;
}

static void job_models_cache_clear_locked(struct job_models_cache *c)
{
	for (size_t i = 0; i < JOB_MODELS_CACHED; i++) {
		free(c->e[i].text);
		c->e[i].text = NULL;
	}
	job_models_index_set_locked(c, NULL, 0, 0, 0);
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

/*
 * The catalog's data version seen by the cache's connection, with the page
 * index at that version: 0, or -1 to go without the cache.
 */
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
	/* The index is read while the connection is ours: no lock is held across SQLite. */
	char **marks = NULL;
	size_t n_marks = 0, total = 0;
	pthread_mutex_lock(&c->lock);
	int stale = fresh || !c->marks || c->index_version != *v;
	pthread_mutex_unlock(&c->lock);
	if (rc == 0 && p && stale &&
	    job_persist_model_marks(p, JOB_MODELS_STRIDE, &marks, &n_marks, &total, NULL) < 0)
		stale = 0;
	if (rc < 0 || !p) {
		job_persist_close(p);
		p = NULL;
	}
	pthread_mutex_lock(&c->lock);
	/* The numbers of a new connection are not those of the old one. */
	if (fresh)
		job_models_cache_clear_locked(c);
	/* An empty catalog has no marks: one mark-less empty array stands for it. */
	if (p && stale)
		job_models_index_set_locked(c, marks ? marks : xcalloc(1, sizeof(char *)), n_marks,
					    total, *v);
	else
		catalog_model_marks_free(marks, n_marks);
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

/*
 * Where the page at offset starts by the index at version v: 1 with the
 * marked id at or before it in *from (NULL past the last model; the caller
 * frees it), the models to skip after it in *skip and the number of models
 * in *total; 0 when the index is not at v.
 */
static int job_models_index_find(struct job_models_cache *c, uint64_t v, size_t offset, char **from,
				 size_t *skip, size_t *total)
{
	pthread_mutex_lock(&c->lock);
	int ok = c->marks && c->index_version == v;
	if (ok) {
		*total = c->total;
		*from = offset < c->total ? xstrdup(c->marks[offset / JOB_MODELS_STRIDE]) : NULL;
		*skip = offset % JOB_MODELS_STRIDE;
	}
	pthread_mutex_unlock(&c->lock);
	return ok;
}

/*
 * Builds the page at offset. With the index (from, skip and *total known)
 * it starts at from and skips skip models; a page past the last model
 * needs no query. Without it, SQLite steps over offset models and counts
 * every row.
 */
static int job_models_build(struct job_registry *r, int indexed, const char *from, size_t skip,
			    size_t offset, size_t limit, size_t total, char **text, size_t *len,
			    struct err *e)
{
	json_t *models = NULL;
	int more = 0, rc = 0;
	if (indexed && !from) {
		models = json_array();
	} else {
		struct job_persist *cat = NULL;
		rc = job_persist_pool_acquire(r->pool, &cat, e);
		if (rc < 0)
			return rc;
		rc = job_persist_models_json(cat, from, indexed ? skip : offset, limit, &models,
					     &more, e);
		if (rc == 0 && !indexed)
			rc = job_persist_model_count(cat, &total, e);
		job_persist_pool_release(r->pool, cat, rc);
	}
	if (rc < 0) {
		json_decref(models);
		return rc;
	}
	json_t *o =
	    json_pack("{s:o,s:I,s:I,s:I,s:o}", "models", models, "total", (json_int_t)total,
		      "offset", (json_int_t)offset, "limit", (json_int_t)limit, "next_offset",
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
		return err_set(e, ERR_INVALID, "limit %zu: expected 1 to %d", limit,
			       CAP_MODELS_PAGE);
	if (offset > CAP_CATALOG_MODELS)
		return err_set(e, ERR_INVALID, "offset %zu: expected 0 to %d", offset,
			       CAP_CATALOG_MODELS);
	uint64_t v = 0;
	/*
	 * The version is read before the page, so a kept page is never older
	 * than its version. A commit between the index and the page may shift
	 * the page by the models it added or removed, as it would shift the
	 * next page of any client paging by offset.
	 */
	int cached = job_models_version(r, &v) == 0;
	if (cached && (*text = job_models_cache_get(r->models_cache, offset, limit, v, len)))
		return 0;
	char *from = NULL;
	size_t skip = 0, total = 0;
	int indexed =
	    cached && job_models_index_find(r->models_cache, v, offset, &from, &skip, &total);
	int rc = job_models_build(r, indexed, from, skip, offset, limit, total, text, len, e);
	free(from);
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
	rc = job_model_delete_on(r, cat, id, out, e);
	job_persist_pool_release(r->pool, cat, rc);
	if (rc == 0)
		log_info("model deleted");
	return rc;
}
