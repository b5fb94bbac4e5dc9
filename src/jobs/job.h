/*
 * jobs: the job registry of rbee-hive. A job is one operation of the rbee job
 * protocol (model_download, model_list, model_get, model_delete, model_verify,
 * model_upload) with a state, a cancel token and an event log that any
 * number of watchers read.
 *
 * Ownership and threads:
 * - struct job_registry owns every job, a fixed pool of download workers
 *   (max_jobs threads), one worker for the quick catalog operations, one for
 *   model_verify, and one persistence thread that owns a catalog connection
 *   and writes job rows.
 * - One mutex, registry->lock, guards the job table, every job's fields and
 *   event log, the queues and the counters. It is never held across I/O,
 *   SQLite or a provisioner call; provisioner callbacks take it briefly to
 *   append an event. Cancel tokens are fired after it is released, since
 *   their wake callbacks belong to the transfer engine.
 * - Each job has a condition variable (on registry->lock) that is broadcast
 *   when an event is appended. Watchers read the shared log by event id; the
 *   job never waits for a watcher, so a slow or vanished watcher cannot stall
 *   a transfer.
 * - Jobs are reference counted: a watcher keeps its job alive after the
 *   registry prunes it.
 * - Each event is serialised at most once per framing of the stream
 *   (struct job_frame): the first watcher to read it makes the frame under
 *   the lock, the others take a reference, so N watchers cost one
 *   serialisation and N writes.
 *
 * The event log is bounded (CAP_JOB_EVENTS): consecutive progress events are
 * coalesced into the newest one, and when narration overflows the cap the
 * oldest non-terminal events are dropped. The terminal event is always kept.
 */
#ifndef RBEE_JOBS_JOB_H
#define RBEE_JOBS_JOB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/jobstate.h"

struct err;
struct provisioner;

#define JOB_ID_MAX 32 /* "job-" + 16 hex digits + NUL, with room */

/* Defaults of struct job_registry_config (serve --help prints them). */
#define JOB_DEFAULT_MAX_JOBS 2
#define JOB_DEFAULT_KEEP_MS (7LL * 24 * 3600 * 1000)

enum job_event_kind {
	JOB_EV_PROGRESS = 0, /* event: progress, data is the progress JSON */
	JOB_EV_NARRATION,    /* plain data: line */
	JOB_EV_DATA,	     /* event: data, data is a JSON result */
	JOB_EV_DONE,	     /* data: [DONE] */
	JOB_EV_ERROR,	     /* data: [ERROR] <message> */
	JOB_EV_CANCELLED,    /* data: [CANCELLED] */
};

/* 1 for the three terminal kinds. */
int job_event_is_terminal(enum job_event_kind k);

struct job_event {
	uint64_t id; /* per job, starting at 1, strictly increasing */
	enum job_event_kind kind;
	char *data; /* owned; one line, no newline */
};

/* The framings of a job's event stream (docs/api.md). */
enum job_framing {
	JOB_FRAMING_SSE = 0, /* the event stream: id:, event:, data: */
	JOB_FRAMING_RBEE,    /* rbee's: data: lines of text only */
	JOB__FRAMINGS
};

/*
 * One event of a job's log as its stream sends it in one framing, shared
 * by every watcher that reads it: immutable once made, reference counted
 * (the log holds one reference until the event is coalesced or dropped,
 * each watcher one while it writes it); the last job_frame_unref() frees
 * it, on any thread.
 */
struct job_frame {
	atomic_int refs;
	uint64_t id; /* the event's */
	enum job_event_kind kind;
	char tag[32]; /* rbee's framing of a progress event: its phase; else "" */
	size_t len;   /* bytes of text; 0: the event shows nothing in this framing */
	char text[];  /* NUL-terminated */
};
struct job_frame *job_frame_ref(struct job_frame *f);
/* NULL is a no-op. */
void job_frame_unref(struct job_frame *f);

struct job_registry_config {
	struct provisioner *prov; /* borrowed; shared by all download workers */
	const char *data_root;	  /* catalog location; NULL: no persistence (tests) */
	const char *hub_dir;	  /* hub cache folder; NULL: <data_root>/hub */
	const char *hive_id;	  /* NULL: any hive_id is accepted */
	int max_jobs;		  /* downloads running at once; 0: JOB_DEFAULT_MAX_JOBS */
	int keep_jobs;		  /* finished jobs kept; 0: CAP_JOBS_KEPT */
	int64_t keep_ms; /* finished jobs older than this are pruned; 0: JOB_DEFAULT_KEEP_MS */
	int resume;	 /* resume interrupted and queued jobs found in the catalog */
};

struct job_registry;

int job_registry_new(const struct job_registry_config *cfg, struct job_registry **out,
		     struct err *e);
/*
 * Stops new submissions (ERR_SHUTDOWN), cancels running jobs while keeping
 * them resumable (state interrupted), joins the workers and flushes job
 * rows; then every job that has not ended (queued ones) gets the terminal
 * event "[ERROR] interrupted: …" too, so that each watcher reads why its
 * stream ends. Idempotent.
 */
void job_registry_shutdown(struct job_registry *r);
/*
 * For a stop that takes too long: writes into buf which jobs still run
 * ("job job-… model_download org/repo, …" or "no job running"); returns 1
 * when every job row is on disk after the final flush of a shutdown, else
 * 0. Waits at most 200 ms for the registry lock (a stuck stop may hold it).
 */
int job_registry_stop_report(struct job_registry *r, char *buf, size_t size);
/* Shuts down if needed and frees. NULL is a no-op. */
void job_registry_free(struct job_registry *r);

/*
 * Submits a job from a request body of the rbee job protocol:
 *   {"operation":"model_download","model":REF[,"hive_id":ID]}
 *   {"operation":"model_list"} | {"operation":"model_get"|"model_delete","id":ID}
 *   {"operation":"model_verify"[,"id":ID]}
 * The job starts at once (or waits queued for a free download worker).
 * Writes the job id into id_out. Returns 0, ERR_INVALID (malformed, wrong
 * type, unknown key, missing key), ERR_UNPROCESSABLE (unknown operation, bad
 * ref, foreign hive_id), ERR_TOO_LARGE, ERR_RETRY (too many active jobs) or
 * ERR_SHUTDOWN, with a message in e. A refused submission is still a job
 * (job_refuse): id_out names it, or is "" when none could be kept.
 */
int job_submit_json(struct job_registry *r, const char *body, size_t len, char id_out[JOB_ID_MAX],
		    struct err *e);

/*
 * Keeps a refused submission as a failed job whose error and stream (one
 * "[ERROR] <why>" line) say why, so that a client that reads every answer
 * of a submission as {job_id, sse_url}, as rbee's does, can tell its user.
 * operation is the one asked for (NULL when unknown). Such a job never runs
 * and is not written to the catalog; at most CAP_JOBS_REFUSED are kept (the
 * oldest go first) and they age out like other finished jobs, so refused
 * submissions cannot crowd out the others. Writes its id into id_out, or ""
 * while the daemon stops.
 */
void job_refuse(struct job_registry *r, const char *operation, const struct err *why,
		char id_out[JOB_ID_MAX]);

/*
 * Cancels a queued or running job: 0. An ended job: ERR_CONFLICT, with its
 * final state in *state. Unknown: ERR_NOT_FOUND. A running transfer stops
 * within the provisioner's cancel latency; its partial stays resumable.
 */
int job_cancel(struct job_registry *r, const char *id, enum job_state *state, struct err *e);

/* One job with its latest progress, as a new JSON object; ERR_NOT_FOUND. */
int job_get_json(struct job_registry *r, const char *id, json_t **out, struct err *e);
/* All kept jobs, newest first; filter may be NULL or a state name (ERR_INVALID). */
int job_list_json(struct job_registry *r, const char *filter, json_t **out, struct err *e);

/*
 * Watching a job's events. job_watch_open() positions the cursor after
 * event id last_id (0: from the beginning). Returns ERR_NOT_FOUND for an
 * unknown job, ERR_RETRY when CAP_WATCHERS watchers are open.
 */
struct job_watch;
int job_watch_open(struct job_registry *r, const char *id, uint64_t last_id, struct job_watch **out,
		   struct err *e);
/*
 * Waits up to timeout_ms for the next event. Returns 1 with *ev filled (the
 * caller frees ev->data), 0 on timeout, or ERR_SHUTDOWN when the registry
 * has shut down and no event is left to read (during a stop it waits for
 * the job's terminal event, which the stop appends). After a terminal event it returns
 * 0 on every call.
 */
int job_watch_next(struct job_watch *w, long timeout_ms, struct job_event *ev);
/*
 * The same, with the event serialised in framing f: *out holds one
 * reference to the frame that every watcher of the job shares (the caller
 * unrefs it). Returns 1, 0 or ERR_SHUTDOWN as job_watch_next() does.
 */
int job_watch_next_frame(struct job_watch *w, long timeout_ms, enum job_framing f,
			 struct job_frame **out);
void job_watch_close(struct job_watch *w);

/*
 * 1 if a queued or running download job may be writing the model with
 * catalog id model_id (same Hub repo, or a ref that names the id).
 */
int job_model_busy(struct job_registry *r, const char *model_id);

/*
 * Catalog resource API, each call on a catalog connection of the registry's
 * pool, held for the length of the call.
 *
 * One page of the catalog's models in id order: at most limit (1 to
 * CAP_MODELS_PAGE) from offset (ERR_INVALID outside those bounds), as
 * {"models":[…],"total":T,"offset":M,"limit":N,"next_offset":M+N or null}
 * serialised, with a final newline, into *text (*len bytes; the caller
 * frees it); next_offset is null when no model follows the page. Recent
 * pages are kept serialised until any connection commits to the catalog.
 */
int job_models_list_text(struct job_registry *r, size_t offset, size_t limit, char **text,
			 size_t *len, struct err *e);
int job_model_get_json(struct job_registry *r, const char *id, json_t **out, struct err *e);
/* ERR_CONFLICT while a job writes the model; ERR_NOT_FOUND; ERR_CONFLICT if ambiguous. */
int job_model_delete(struct job_registry *r, const char *id, json_t **out, struct err *e);
/* {"partials":[{repo_dir, sha256, total_size, bytes_done, updated_ms, writing}]} */
int job_partials_list_json(struct job_registry *r, json_t **out, struct err *e);
/*
 * Removes the partial downloads of content sha256 (in repo_dir, or every
 * repo folder when NULL): {"sha256","status":"deleted","repo_dirs":[…]}.
 * ERR_INVALID for a malformed sha256, ERR_NOT_FOUND, ERR_CONFLICT while a
 * transfer writes one.
 */
int job_partial_delete(struct job_registry *r, const char *sha256, const char *repo_dir,
		       json_t **out, struct err *e);

struct job_stats {
	long by_state[JOB__STATES];
	long active_transfers;	   /* running download jobs */
	uint64_t bytes_downloaded; /* since start, from progress events */
	long watchers;
	long catalog_models; /* -1 when unknown */
	uint64_t catalog_bytes;
};
void job_stats_get(struct job_registry *r, struct job_stats *st);

#endif
