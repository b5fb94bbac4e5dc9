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
 * GET /v1/models answers are built from the models kept serialised, so that
 * a page costs a copy of its bytes, whatever its offset, once they are
 * kept. The models are kept by block: the JOB_MODELS_STRIDE models from one
 * mark of the page index to the next (below), each model's JSON back to
 * back; a page takes the blocks it spans, read from the catalog and
 * serialised on first use. Blocks are valid while the catalog has not
 * changed: the cache's own connection, which never writes, reads PRAGMA
 * data_version, which moves with every commit of any other connection. That
 * connection is taken out of the cache for the SQLite call (no lock is held
 * across it); a request that finds it taken waits until it is given back,
 * which is microseconds later. Blocks take at most the registry's
 * models_kept_bytes (the block just read aside); the least recently used
 * goes first. A page whose blocks do not fit is read from the catalog. A daemon without a data root
 * builds every answer.
 *
 * The page index: every JOB_MODELS_STRIDE-th model id and the number of
 * models, read by the same connection at the same data version. A block
 * is then the models from its mark on, found in the id index instead of
 * stepped over from the first model (SQLite's OFFSET, O(M) per page), and
 * the total needs no count of every row. Building the index reads every id
 * once per catalog change (O(N)); its marks take N / STRIDE ids of memory.
 */
#define JOB_MODELS_STRIDE 64

/* The models of one block, serialised: model i is text[ends[i - 1] .. ends[i]). */
struct job_models_block {
	char *text; /* NULL: not built */
	size_t ends[JOB_MODELS_STRIDE];
	size_t n;
	uint64_t used; /* for dropping the least recently used block */
};

struct job_models_cache {
	pthread_mutex_t lock;	   /* guards every field */
	struct job_persist *vconn; /* NULL while a request uses it, or not opened */
	int vconn_busy;
	pthread_cond_t vconn_cv; /* signalled when vconn is given back */
	uint64_t tick;
	/* The page index and its blocks (n_marks), valid at index_version when marks is not NULL.
	 */
	char **marks;
	size_t n_marks, total;
	uint64_t index_version;
	struct job_models_block *blocks;
	size_t kept_bytes, kept_cap;
};

struct job_models_cache *job_models_cache_new(size_t kept_bytes)
{
	struct job_models_cache *c = xcalloc(1, sizeof(*c));
	c->kept_cap = kept_bytes;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->vconn_cv, NULL);
	return c;
}

static void job_models_index_set_locked(struct job_models_cache *c, char **marks, size_t n_marks,
					size_t total, uint64_t v)
{
	for (size_t i = 0; c->blocks && i < c->n_marks; i++)
		free(c->blocks[i].text);
	free(c->blocks);
	catalog_model_marks_free(c->marks, c->n_marks);
	c->marks = marks;
	c->n_marks = n_marks;
	c->total = total;
	c->index_version = v;
	c->blocks = marks && n_marks ? xcalloc(n_marks, sizeof(*c->blocks)) : NULL;
	c->kept_bytes = 0;
}

static void job_models_cache_clear_locked(struct job_models_cache *c)
{
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

/* The answer's text around its models, as json_dump_compact writes it, and a final newline. */
static char *job_models_page_tail(size_t total, size_t offset, size_t limit, int more)
{
	char next[32] = "null";
	if (more)
		snprintf(next, sizeof(next), "%zu", offset + limit);
	return xasprintf("],\"total\":%zu,\"offset\":%zu,\"limit\":%zu,\"next_offset\":%s}\n",
			 total, offset, limit, next);
}

/*
 * The page at offset from the kept blocks at version v: 1 with the answer
 * in *text; 0 when block *need is not built (its mark in *from, which the
 * caller frees); -1 when the index is not at v or a block does not hold
 * the models it should (the catalog moved while it was read).
 */
static int job_models_assemble(struct job_models_cache *c, uint64_t v, size_t offset, size_t limit,
			       char **text, size_t *len, size_t *need, char **from)
{
	pthread_mutex_lock(&c->lock);
	int rc = 1;
	size_t end = offset >= c->total		 ? offset
		     : offset + limit < c->total ? offset + limit
						 : c->total;
	size_t size = 0;
	if (!c->marks || c->index_version != v) {
		rc = -1;
		goto out;
	}
	for (size_t i = offset; i < end; i += JOB_MODELS_STRIDE - i % JOB_MODELS_STRIDE) {
		struct job_models_block *b = &c->blocks[i / JOB_MODELS_STRIDE];
		size_t want = c->total - (i - i % JOB_MODELS_STRIDE);
		if (!b->text) {
			*need = i / JOB_MODELS_STRIDE;
			*from = xstrdup(c->marks[*need]);
			rc = 0;
			goto out;
		}
		if (b->n != (want < JOB_MODELS_STRIDE ? want : JOB_MODELS_STRIDE)) {
			rc = -1;
			goto out;
		}
		b->used = ++c->tick;
		size += b->ends[b->n - 1];
	}
	char *tail = job_models_page_tail(c->total, offset, limit, end < c->total);
	size_t tail_len = strlen(tail);
	char *s = xmalloc(sizeof("{\"models\":[") + size + (end - offset) + tail_len);
	size_t n = (size_t)sprintf(s, "{\"models\":[");
	for (size_t i = offset; i < end; i++) {
		const struct job_models_block *b = &c->blocks[i / JOB_MODELS_STRIDE];
		size_t k = i % JOB_MODELS_STRIDE, at = k ? b->ends[k - 1] : 0;
		if (i > offset)
			s[n++] = ',';
		memcpy(s + n, b->text + at, b->ends[k] - at);
		n += b->ends[k] - at;
	}
	memcpy(s + n, tail, tail_len + 1);
	free(tail);
	*text = s;
	*len = n + tail_len;
out:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* Drops the least recently used blocks but keep until the kept bytes are under the cap. */
static void job_models_trim_locked(struct job_models_cache *c, const struct job_models_block *keep)
{
	while (c->kept_bytes > c->kept_cap) {
		struct job_models_block *old = NULL;
		for (size_t i = 0; i < c->n_marks; i++) {
			struct job_models_block *b = &c->blocks[i];
			if (b->text && b != keep && (!old || b->used < old->used))
				old = b;
		}
		if (!old)
			return;
		c->kept_bytes -= old->ends[old->n - 1];
		free(old->text);
		old->text = NULL;
	}
}

/* Reads block i (from its mark from) and keeps it if the index is still at version v. */
static int job_models_block_build(struct job_registry *r, uint64_t v, size_t i, const char *from,
				  struct err *e)
{
	struct job_persist *cat = NULL;
	json_t *models = NULL;
	int rc = job_persist_pool_acquire(r->pool, &cat, e);
	if (rc < 0)
		return rc;
	rc = job_persist_models_json(cat, from, 0, JOB_MODELS_STRIDE, &models, NULL, e);
	job_persist_pool_release(r->pool, cat, rc);
	if (rc < 0)
		return rc;
	struct job_models_block b = {.n = json_array_size(models)};
	size_t n = 0;
	for (size_t k = 0; k < b.n; k++) {
		char *s = json_dump_compact(json_array_get(models, k));
		size_t sl = strlen(s);
		b.text = xrealloc(b.text, n + sl + 1);
		memcpy(b.text + n, s, sl + 1);
		free(s);
		n += sl;
		b.ends[k] = n;
	}
	json_decref(models);
	if (b.n == 0) {
		free(b.text);
		/* The catalog lost the models after the index was read: no block. */
		return ERR_RETRY;
	}
	struct job_models_cache *c = r->models_cache;
	pthread_mutex_lock(&c->lock);
	if (c->marks && c->index_version == v && i < c->n_marks && !c->blocks[i].text) {
		b.used = ++c->tick;
		c->blocks[i] = b;
		c->kept_bytes += n;
		job_models_trim_locked(c, &c->blocks[i]);
	} else {
		free(b.text);
	}
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* The page at offset straight from the catalog: SQLite steps over offset models and counts every
 * row. */
static int job_models_build(struct job_registry *r, size_t offset, size_t limit, char **text,
			    size_t *len, struct err *e)
{
	json_t *models = NULL;
	int more = 0;
	size_t total = 0;
	struct job_persist *cat = NULL;
	int rc = job_persist_pool_acquire(r->pool, &cat, e);
	if (rc < 0)
		return rc;
	rc = job_persist_models_json(cat, NULL, offset, limit, &models, &more, e);
	if (rc == 0)
		rc = job_persist_model_count(cat, &total, e);
	job_persist_pool_release(r->pool, cat, rc);
	if (rc < 0) {
		json_decref(models);
		return rc;
	}
	char *head = json_dump_compact(models);
	char *tail = job_models_page_tail(total, offset, limit, more);
	/* The array's closing bracket is the tail's. */
	head[strlen(head) - 1] = 0;
	*text = xasprintf("{\"models\":%s%s", head, tail);
	*len = strlen(*text);
	free(head);
	free(tail);
	json_decref(models);
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
	 * The version is read before the blocks, so a kept block is never older
	 * than its version. A commit between the index and a block may shift
	 * the page by the models it added or removed, as it would shift the
	 * next page of any client paging by offset; a block that no longer
	 * holds what the index says sends the page to the catalog.
	 */
	if (job_models_version(r, &v) == 0) {
		/*
		 * Each turn builds one missing block; a page spans at most this
		 * many. More turns mean its blocks do not fit together.
		 */
		for (size_t turn = 0; turn < limit / JOB_MODELS_STRIDE + 2; turn++) {
			size_t need = 0;
			char *from = NULL;
			int got = job_models_assemble(r->models_cache, v, offset, limit, text, len,
						      &need, &from);
			if (got == 1)
				return 0;
			if (got < 0)
				break;
			int rc = job_models_block_build(r, v, need, from, e);
			free(from);
			if (rc == ERR_RETRY)
				break;
			if (rc < 0)
				return rc;
		}
	}
	return job_models_build(r, offset, limit, text, len, e);
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
