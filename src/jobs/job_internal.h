/*
 * job_internal: the structures shared by the files of the jobs module. Not
 * for other modules. From the bottom up: event.c (a job's event log),
 * table.c (the job table, reference counts, row marks, ending a job),
 * queue.c (submission, queues, workers, cancellation), watch.c (JSON views,
 * watchers), models.c (catalog resource calls, models page cache), ops.c
 * (the operation table and its handlers), registry.c (creation, loading,
 * the persistence thread, shutdown); frame.c (an event serialised in the
 * framings of the stream) sits beside event.c. A file calls only the files
 * below it.
 *
 * Every field of struct job and struct job_registry below the config is
 * guarded by registry->lock unless its comment says otherwise.
 */
#ifndef RBEE_JOBS_JOB_INTERNAL_H
#define RBEE_JOBS_JOB_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/err.h"
#include "jobs/job.h"

struct job;
struct job_persist;
struct job_persist_pool;
struct job_models_cache;

/*
 * Downloads run on max_jobs workers; quick catalog operations on one worker;
 * verifying (hashing every file, minutes for a large catalog) on its own one,
 * so that it holds up neither.
 */
enum job_pool { JOB_POOL_DOWNLOAD = 0, JOB_POOL_QUICK, JOB_POOL_VERIFY, JOB__POOLS };

struct job_op {
	const char *name;
	enum job_pool pool;
	const char *arg_key; /* request key of the argument ("model", "id") or NULL */
	int arg_optional;    /* the argument may be left out */
	int rbee_data;	     /* rbee's hive sends its result as a data event (job.h) */
	/* Runs on a worker thread without the lock; cat is the worker's connection. */
	int (*run)(struct job_registry *r, struct job *j, struct job_persist *cat, struct err *e);
};

/* NULL when unknown. */
const struct job_op *job_op_find(const char *name);

/* An event of a job's log with its serialisations, made when first read. */
struct job_logged {
	uint64_t id;
	enum job_event_kind kind;
	char *data;				/* owned */
	struct job_frame *frame[JOB__FRAMINGS]; /* one reference each, or NULL */
};

struct job {
	char id[JOB_ID_MAX];	     /* immutable */
	const struct job_op *op;     /* immutable */
	char *arg;		     /* immutable: model ref or model id; may be NULL */
	struct cancel_token *cancel; /* immutable pointer; the token is thread-safe */
	enum job_state state;
	int64_t created_ms, updated_ms; /* wall clock */
	char error[ERR_MSG_MAX];
	const char *error_code; /* err_name of why it failed; NULL when not known (loaded) */
	char *progress;		/* latest progress JSON, or NULL */
	char *model_id;		/* catalog id once known */
	uint64_t last_bytes;	/* bytes_done of the last progress, for the metrics counter */
	int shutdown_cancel;	/* cancelled by shutdown: ends interrupted, not cancelled */
	int user_cancel;	/* a user asked first: ends cancelled even during shutdown */
	struct job_logged *ev;
	size_t n_ev, cap_ev;
	uint64_t next_id;
	int ended;	   /* the terminal event is in the log */
	int refused;	   /* a refused submission: never ran, never written to the catalog */
	pthread_cond_t cv; /* broadcast on every appended event */
	int refs;
	int linked;		       /* in the registry table */
	int dirty;		       /* the catalog row is stale */
	int persist_rc;		       /* result of the last write of its row (0 or ERR_*) */
	char persist_msg[ERR_MSG_MAX]; /* why that write failed */
	struct job *qnext;
};

struct job_queue {
	struct job *head, *tail;
};

struct job_registry {
	/* Set once at creation, then read-only. */
	struct provisioner *prov;
	char *data_root;
	char *hub_dir;
	char *hive_id;
	int max_jobs;
	int keep_jobs;
	void (*on_event)(void *arg); /* job_registry_config's */
	void *on_event_arg;
	int64_t keep_ms;
	/* Catalog connections of the request threads; has its own lock. */
	struct job_persist_pool *pool;
	/* Recent GET /v1/models answers (ops.c); has its own lock. */
	struct job_models_cache *models_cache;

	pthread_mutex_t lock;
	pthread_cond_t work_cv;	   /* workers wait for queued jobs */
	pthread_cond_t persist_cv; /* the persistence thread waits for dirty rows */
	struct job **jobs;	   /* oldest first */
	size_t n_jobs, cap_jobs;
	struct job_queue queues[JOB__POOLS];
	int stopping;	  /* no submissions; workers and watchers leave */
	int persist_stop; /* the persistence thread flushes and leaves */
	int shut_down;	  /* job_registry_shutdown() completed */
	long watchers;
	uint64_t bytes_downloaded;

	pthread_t *workers; /* max_jobs download workers, then one per other pool */
	int n_workers;
	pthread_t persister;
	int persister_started;
	/*
	 * Durability: every mark of a row as dirty takes the next dirty_seq;
	 * the persistence thread sets durable_seq to the dirty_seq it had seen
	 * once it has written every row marked up to it, and broadcasts
	 * durable_cv. urgent_seq is the newest mark that must not wait for the
	 * periodic flush. persist_done: the thread has left (no wait may block).
	 */
	uint64_t dirty_seq, durable_seq, urgent_seq;
	pthread_cond_t durable_cv;
	int persist_done;
	struct job_persist *persist; /* owned by the persistence thread once it runs */
};

/* models.c */
/* Keeps at most kept_bytes of serialised models. */
struct job_models_cache *job_models_cache_new(size_t kept_bytes);
/* NULL is a no-op. */
void job_models_cache_free(struct job_models_cache *c);

/* Appends an event; takes ownership of data. Caller holds r->lock. */
void job_append_locked(struct job_registry *r, struct job *j, enum job_event_kind kind, char *data);
/* Takes the lock and appends. */
void job_append(struct job_registry *r, struct job *j, enum job_event_kind kind, char *data);
/* Formats a narration line (newlines flattened, capped) and appends it. */
void job_narrate(struct job_registry *r, struct job *j, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Creates, links and enqueues a job. Caller holds r->lock. */
struct job *job_create_locked(struct job_registry *r, const struct job_op *op, const char *arg,
			      const char *id);

/* Submits a job whose op and arg the caller has validated. */
int job_start(struct job_registry *r, const struct job_op *op, const char *arg,
	      char id_out[JOB_ID_MAX], struct err *e);

/* Records the latest progress (takes ownership of json) and appends it as an event. */
void job_set_progress(struct job_registry *r, struct job *j, char *json, uint64_t bytes_done);
void job_set_model_id(struct job_registry *r, struct job *j, const char *model_id);

/* event.c. One line for an SSE data: field: control characters become spaces. */
char *job_line(const char *s);
/*
 * A progress event's data as one line for people, in the shape rbee's
 * download tracker prints: "Downloaded 1.23 GB / 4.37 GB (28.1%),
 * downloading model.Q4_K_M.gguf at 52.4 MB/s" (no " / total (percent)" while
 * the total is unknown). Its phase ("downloading") goes into phase. NULL
 * when data is not a progress event's; the caller frees the line.
 */
char *job_progress_text(const char *data, char *phase, size_t phase_size);
/* Drops the log's references to the frames of ev. */
void job_logged_clear_frames(struct job_logged *ev);

/*
 * frame.c. The frame of event ev of j in framing f, made on first use and
 * kept in the log: a new reference. Caller holds r->lock (the making is
 * CPU only, bounded by CAP_EVENT_LEN).
 */
struct job_frame *job_frame_get_locked(const struct job *j, struct job_logged *ev,
				       enum job_framing f);

/*
 * table.c. Every call ending in _locked is made with r->lock held. A job
 * holds one reference for the table, one while queued or running, and one
 * per watcher or snapshot; the last unref frees it.
 */
void job_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *m, long ms);
void job_unref_locked(struct job *j);
struct job *job_find_locked(struct job_registry *r, const char *id);
void job_unlink_at_locked(struct job_registry *r, size_t i);
int job_is_active(const struct job *j);
void job_prune_locked(struct job_registry *r);
/*
 * Marks j's row stale and returns the mark's sequence number, which
 * job_wait_durable_locked() takes. An urgent mark is written at once, a
 * progress update with the next periodic flush.
 */
uint64_t job_mark_dirty_locked(struct job_registry *r, struct job *j, int urgent);
uint64_t job_set_state_locked(struct job_registry *r, struct job *j, enum job_state s);
/*
 * Waits (releasing the lock meanwhile) until every row marked up to seq has
 * been written by the persistence thread. Returns 0, ERR_TIMEOUT, or
 * ERR_SHUTDOWN when the thread has left without writing it.
 */
int job_wait_durable_locked(struct job_registry *r, uint64_t seq);
/* Sets a final (or interrupted) state and appends the terminal event once it is on disk. */
void job_end_locked(struct job_registry *r, struct job *j, enum job_state st,
		    enum job_event_kind kind, char *data);
/* The message of a job cut short by a daemon stop, into j->error. */
void job_set_interrupted_msg(struct job *j);

/* queue.c */
void job_enqueue_locked(struct job_registry *r, struct job *j);
/* A worker of pool p: the thread's argument, which the thread frees. */
struct job_worker_arg {
	struct job_registry *r;
	enum job_pool pool;
};
void *job_worker_main(void *p);

/* models.c: deletes the model query names unless a running job writes it. */
int job_model_delete_on(struct job_registry *r, struct job_persist *cat, const char *query,
			json_t **out, struct err *e);

#endif
