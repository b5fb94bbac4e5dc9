/*
 * persist: every catalog call of the jobs module, in one place. A struct
 * job_persist is one catalog connection and belongs to the thread that
 * opened it (the persistence thread, the quick-operation worker), or to the
 * request thread that took it from a struct job_persist_pool, until it gives
 * it back.
 *
 * A NULL connection (no data root, as in unit tests) is valid: writes
 * succeed without effect, reads find nothing.
 */
#ifndef RBEE_JOBS_PERSIST_H
#define RBEE_JOBS_PERSIST_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/jobstate.h"

struct cancel_token;
struct err;
struct job_persist;
struct store_verify_item;
struct store_verify_summary;

/*
 * Opens <data_root>/catalog.db; hub_dir is the hub cache folder (NULL:
 * <data_root>/hub) from which deleted models' files are removed.
 * data_root NULL: *out = NULL and 0.
 */
int job_persist_open(const char *data_root, const char *hub_dir, struct job_persist **out,
		     struct err *e);
void job_persist_close(struct job_persist *p);

/*
 * A pool of catalog connections for the threads that serve requests, so a
 * request does not pay for opening the catalog (open, WAL pragma, schema
 * check). A connection is used by one thread at a time: acquire takes an
 * idle one out of the pool (or opens a new one), release puts it back. At
 * most max_idle are kept idle; more in use at once are opened and closed.
 * The pool's mutex guards only its free list and is never held across
 * SQLite calls. With data_root NULL, acquire gives the NULL connection.
 */
struct job_persist_pool;
struct job_persist_pool *job_persist_pool_new(const char *data_root, const char *hub_dir,
					      size_t max_idle);
/* Closes the idle connections; every acquired one must be released first. NULL: no-op. */
void job_persist_pool_free(struct job_persist_pool *pool);
int job_persist_pool_acquire(struct job_persist_pool *pool, struct job_persist **out,
			     struct err *e);
/*
 * Gives p back. rc is the result of the work done on it: after a storage or
 * internal error (anything but 0, ERR_NOT_FOUND, ERR_CONFLICT, ERR_INVALID,
 * ERR_UNPROCESSABLE) the connection is closed rather than reused.
 */
void job_persist_pool_release(struct job_persist_pool *pool, struct job_persist *p, int rc);

/* One job as the catalog keeps it. Strings are borrowed. */
struct job_row {
	const char *id;
	const char *operation;
	const char *arg; /* model ref or model id; may be NULL */
	enum job_state state;
	const char *error;    /* may be NULL */
	const char *progress; /* latest progress JSON; may be NULL */
	const char *model_id; /* catalog id once known; may be NULL */
	int64_t created_ms;
	int64_t updated_ms;
};

int job_persist_put(struct job_persist *p, const struct job_row *row, struct err *e);
/* Marks every running job interrupted (done at start, after a crash or not). */
int job_persist_mark_interrupted(struct job_persist *p, struct err *e);
/*
 * Removes the fresh resume states no partial can use (catalog_fresh_sweep),
 * at startup before any transfer runs; a failure is logged, not returned.
 */
void job_persist_sweep(struct job_persist *p);
/* Calls fn for each kept job, oldest first. */
int job_persist_load(struct job_persist *p, void (*fn)(void *arg, const struct job_row *row),
		     void *arg, struct err *e);
/* Drops finished jobs beyond keep (newest kept) or not updated for max_age_ms. */
int job_persist_prune(struct job_persist *p, int keep, int64_t max_age_ms, struct err *e);

/*
 * The catalog's models in id order as a JSON array of model objects: at most
 * limit (0: all) from offset models after the first id at or above from
 * (NULL: the first of all). *more (may be NULL) is 1 when more models
 * follow the last one returned.
 */
int job_persist_models_json(struct job_persist *p, const char *from, size_t offset, size_t limit,
			    json_t **out, int *more, struct err *e);
/* catalog_model_marks() on this connection (nothing without a connection). */
int job_persist_model_marks(struct job_persist *p, size_t stride, char ***marks, size_t *n_marks,
			    size_t *total, struct err *e);
/*
 * Every model of the catalog as a model object with what rbee's model list
 * shows besides: "name" (its GGUF name, else its repo), "path" (the local
 * path of its first file, null when it has none) and "loaded" (false:
 * rbee-hive loads no model into memory).
 */
int job_persist_models_listed_json(struct job_persist *p, json_t **out, struct err *e);
/* The number of models in the catalog (0 without a connection). */
int job_persist_model_count(struct job_persist *p, size_t *n, struct err *e);
/* catalog_data_version() of this connection (0 without a connection). */
int job_persist_data_version(struct job_persist *p, uint64_t *v, struct err *e);
/*
 * Resolves a user's id or unambiguous ref to one model: ERR_NOT_FOUND,
 * ERR_CONFLICT when ambiguous. *out is the model object.
 */
int job_persist_model_json(struct job_persist *p, const char *query, json_t **out, struct err *e);
/* store_delete_model() of the model with catalog id id (files no other model uses go too). */
int job_persist_model_delete(struct job_persist *p, const char *id, struct err *e);
/*
 * store_verify() over this connection and the hub folder: one model (query,
 * an id or unambiguous ref) or all (query NULL). fn hears about each file.
 */
int job_persist_verify(struct job_persist *p, const char *query,
		       void (*fn)(void *arg, const struct store_verify_item *it), void *arg,
		       struct cancel_token *cancel, struct store_verify_summary *sum,
		       struct err *e);
/*
 * The partial downloads the catalog keeps resume state for, as a JSON array
 * of {repo_dir, sha256, total_size, bytes_done, updated_ms, writing}.
 */
int job_persist_partials_json(struct job_persist *p, json_t **out, struct err *e);
/*
 * Removes the partials of content sha256 (in repo folder repo_dir, or in
 * every one when NULL) with their resume state; *out lists the repo folders.
 * ERR_NOT_FOUND when there is none, ERR_CONFLICT while a transfer writes one.
 */
int job_persist_partial_remove(struct job_persist *p, const char *sha256, const char *repo_dir,
			       json_t **out, struct err *e);
/* Model count and bytes; -1 when unknown. */
void job_persist_catalog_size(struct job_persist *p, long *models, uint64_t *bytes);

#endif
