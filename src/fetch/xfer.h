/*
 * xfer: the transfer engine. It moves the bytes of one file from an HTTP(S)
 * URL into a partial file on disk, over several Range connections at once,
 * verifies size, SHA-256 and (for files git stores itself) the git blob id
 * while it downloads, and keeps the finished byte ranges durable through
 * caller-supplied resume callbacks.
 *
 * The partial is the caller's: opened once, relative to its folder, without
 * following symlinks (layout_partial_open_dir). The engine works on that
 * descriptor to the end and renames or removes the partial only relative to
 * the same folder descriptor, so a symlink swapped in under the partial's
 * name is never written through.
 *
 * URLs, redirects and credentials follow the policy of core/url.h: the token
 * goes to the exact origin it was given for; a redirect never goes from
 * https to http, nor from the origin to an address more internal than the
 * origin's own (checked on the resolved address when the connection opens).
 *
 * Threads and ownership:
 *   - One transfer thread per engine owns the libcurl multi handle, every
 *     easy handle, and the range bookkeeping of every active transfer. Other
 *     threads hand it new transfers through a queue and cancellations through
 *     the cancel token; both wake it with curl_multi_wakeup.
 *   - Each transfer has one helper thread that hashes the contiguous done
 *     prefix by reading it back (pread, 512 KiB at a time), calls
 *     refresh_url after a 403, and finishes the transfer (final checks,
 *     rename, result). Its saver thread (for a known size) calls the
 *     resume save callbacks, and its syncer starts writeback of the
 *     written prefix early (sync_file_range) and fdatasyncs the partial
 *     (with a save_fresh op, the syncer calls save after each fdatasync
 *     and the saver save_fresh); the helper joins them before finishing.
 *     So the transfer thread never blocks on the disk's sync, on the
 *     caller's catalog, or on the vendor, and the hash never waits behind
 *     the disk.
 *   - The caller owns the struct xfer returned by xfer_start and frees it
 *     with xfer_free (which cancels it first if it still runs).
 *
 * Callbacks (resume ops, refresh_url) run on the transfer's helper, saver
 * and syncer threads, and may block. Two run at once only as save (on the
 * syncer) beside save_fresh (on the saver), so these two must not wait for
 * each other for long: that is what fresh saves are for. on_progress runs
 * on the transfer thread and must not block. The engine does not touch the
 * catalog: the caller wires the resume ops.
 */
#ifndef RBEE_FETCH_XFER_H
#define RBEE_FETCH_XFER_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/sha256.h"
#include "fetch/ranges.h"

struct cancel_token;

/*
 * The defaults of struct xfer_config: a field left 0 takes these. Help texts
 * print them from here.
 */
#define XFER_DEFAULT_CONNECTIONS 8
#define XFER_DEFAULT_SPLIT_THRESHOLD (16u << 20)
#define XFER_DEFAULT_MIN_SPLIT (4u << 20)
#define XFER_DEFAULT_PIECE_SIZE (16u << 20)
#define XFER_DEFAULT_STALL_TIMEOUT_S 30
#define XFER_DEFAULT_MAX_RETRIES 5
#define XFER_DEFAULT_RETRY_BASE_MS 1000L
#define XFER_DEFAULT_RETRY_MAX_MS 8000L
#define XFER_DEFAULT_RETRY_AFTER_MAX_MS 120000L
#define XFER_DEFAULT_FLUSH_BYTES (8u << 20)
#define XFER_DEFAULT_FLUSH_MS 2000L

struct xfer_config {
	int connections;	  /* per file, the most the ramp opens (ranges.h); 0:
				     XFER_DEFAULT_CONNECTIONS; at most CAP_XFER_CONNECTIONS */
	uint64_t split_threshold; /* files at least this large use several connections; 0:
				     XFER_DEFAULT_SPLIT_THRESHOLD */
	uint64_t min_split;	  /* smallest half of a stolen range; 0: XFER_DEFAULT_MIN_SPLIT */
	uint64_t piece_size;	  /* work is handed out in file order in pieces this large; 0:
				     XFER_DEFAULT_PIECE_SIZE */
	int stall_timeout_s;	  /* no bytes for this long cuts a connection; 0:
				     XFER_DEFAULT_STALL_TIMEOUT_S */
	uint64_t limit_rate; /* bytes/s over all transfers of the engine (token bucket); 0: none */
	int max_retries;     /* consecutive failures of a connection without progress; 0:
				XFER_DEFAULT_MAX_RETRIES */
	long
	    retry_base_ms; /* first backoff; 0: XFER_DEFAULT_RETRY_BASE_MS (doubles, with jitter) */
	long retry_max_ms; /* backoff ceiling; 0: XFER_DEFAULT_RETRY_MAX_MS */
	long retry_after_max_ms;   /* ceiling on a server's Retry-After; 0:
				      XFER_DEFAULT_RETRY_AFTER_MAX_MS */
	uint64_t flush_bytes;	   /* resume state saved at least every this many bytes; 0:
				      XFER_DEFAULT_FLUSH_BYTES */
	long flush_ms;		   /* ... or this often; 0: XFER_DEFAULT_FLUSH_MS */
	const char *user_agent;	   /* NULL: "rbee-hive/VERSION" */
	const char *ca_file;	   /* NULL: the system's CA store */
	uint64_t max_unknown_size; /* a file of unknown size ends past this; 0:
				      CAP_UNKNOWN_SIZE_DEFAULT */
};

/*
 * Resume state: the done byte ranges [start, end) of the blob with this
 * sha256 (or, when the sha256 is unknown, of the label). load fills a
 * malloc'd array (the engine frees it) and returns 0, or ERR_NOT_FOUND when
 * there is none; save and discard return 0 or a negative code.
 */
struct xfer_resume_ops {
	int (*load)(void *arg, const char *key, uint64_t total, struct byte_range **ranges,
		    size_t *n);
	int (*save)(void *arg, const char *key, uint64_t total, const struct byte_range *r,
		    size_t n);
	void (*discard)(void *arg, const char *key);
	void *arg;
	/*
	 * May be NULL. Saves ranges whose bytes are written but not synced:
	 * they hold while the system has not restarted (a crash of the process
	 * loses none of them), and load gives them back only then; save's
	 * ranges, synced first, hold across restarts. With it, the state is
	 * saved every MiB or so without waiting for the disk.
	 */
	int (*save_fresh)(void *arg, const char *key, uint64_t total, const struct byte_range *r,
			  size_t n);
};

struct xfer_progress {
	uint64_t bytes_done; /* bytes written to the partial, resumed ones included */
	uint64_t total;	     /* 0 when unknown */
	uint64_t hashed;     /* bytes of the prefix hashed so far */
	uint64_t from_peers; /* of the bytes this transfer wrote, those peers delivered */
	double rate_bps;     /* smoothed over about 2 s */
	int connections;     /* connections moving bytes now */
	int finished;	     /* 1 once xfer_wait would return 1 */
};

/*
 * Called after a 403 from the content host: write a fresh URL for the same
 * content into url_out. Returns 0, or a negative code with e filled (the
 * transfer then fails with that message).
 */
typedef int (*xfer_refresh_fn)(void *arg, char *url_out, size_t size, struct err *e);
typedef void (*xfer_progress_fn)(void *arg, const struct xfer_progress *p);

struct xfer_request {
	const char *url; /* where the bytes are (a CDN URL, or one that redirects to it) */
	/*
	 * Where the download started: the Hub endpoint, or the URL the user gave.
	 * The token goes to its exact origin (scheme, host, port) only, and no
	 * hop, url included, may lead to an address of a more internal class
	 * than its host's. NULL: url itself.
	 */
	const char *origin;
	const char *auth_token; /* bearer token for origin; may be NULL */
	/*
	 * An S3 store's request signing (fetch/s3.h): libcurl's SigV4 provider
	 * ("aws:amz:REGION:s3"); auth_token is then "ACCESS_KEY:SECRET", and goes
	 * to origin only, like a bearer token. NULL: bearer auth.
	 */
	const char *aws_sigv4;
	int auth_basic;	       /* auth_token is "user:password" for HTTP Basic (a registry) */
	int max_retries;       /* tries of a connection without progress; 0: the engine's */
	int dir_fd;	       /* the folder of the partial; the engine keeps a duplicate */
	int fd;		       /* the partial, read-write, opened relative to dir_fd with
				  O_NOFOLLOW; the engine keeps a duplicate */
	const char *name;      /* the partial's name in dir_fd */
	const char *label;     /* names the partial in messages (its path); NULL: name */
	const char *rename_to; /* when set: renamed to this name in dir_fd after success */
	int rename_to_sha256;  /* 1: renamed to its computed sha256 in dir_fd; a file of that
				  name and size already there is kept and the partial removed */
	uint64_t size;	       /* expected size, when size_known */
	int size_known;	       /* 0: unknown (one connection, no resume, at most
				  max_unknown_size bytes); a pinned sha256 of the empty
				  file makes it known: 0 */
	const char *sha256;    /* expected, 64 lowercase hex; NULL or "": computed */
	const char *git_sha1;  /* expected git blob id, 40 lowercase hex, for files git
				  stores itself (not LFS); needs size_known. NULL or "": none */
	const struct xfer_resume_ops *resume; /* may be NULL */
	xfer_refresh_fn refresh_url;	      /* may be NULL: a 403 then fails */
	void *refresh_arg;
	struct cancel_token *cancel;  /* may be NULL; the transfer takes a reference */
	int purge_on_cancel;	      /* 1: a cancel deletes the partial and its resume state */
	xfer_progress_fn on_progress; /* may be NULL; about 4 times a second */
	void *progress_arg;
	const char *log_id; /* job id for logs; may be NULL */
	/*
	 * Peer hives (docs/fetch.md, "Peers"): base URLs (scheme://host[:port])
	 * of other rbee-hives, asked which ranges of this blob they hold and
	 * for those bytes, beside url. Used only with the expected sha256 and
	 * size; at most CAP_PEERS. peer_rank is this hive's place among itself
	 * and its peers (0 to n_peers): of the pieces nobody holds yet, it takes
	 * every (n_peers + 1)-th one from url first, starting with that one, so
	 * that hives pulling the same blob at once split the work of url.
	 */
	const char *const *peers;
	size_t n_peers;
	int peer_rank;
};

struct xfer_engine;
struct xfer;

/* Starts the transfer thread. cfg is copied (strings too). */
int xfer_engine_new(const struct xfer_config *cfg, struct xfer_engine **out, struct err *e);
/* Cancels every transfer still running, stops the thread. NULL is a no-op. */
void xfer_engine_free(struct xfer_engine *eng);

/*
 * Prepares the partial (resume state, free-space check, preallocation) on
 * the calling thread, then hands the transfer to the engine. The request's
 * strings and descriptors are copied. Errors: ERR_INVALID (bad URL, size,
 * digest or descriptor), ERR_FORBIDDEN (url refused by the URL policy),
 * ERR_NOSPACE (not enough free space for what is still missing), ERR_IO,
 * ERR_TOO_LARGE (too many transfers), ERR_SHUTDOWN.
 */
int xfer_start(struct xfer_engine *eng, const struct xfer_request *req, struct xfer **out,
	       struct err *e);

/* Asks the transfer to stop, as its cancel token would. purge: see purge_on_cancel. */
void xfer_cancel(struct xfer *x, int purge);

/* Waits up to timeout_ms (negative: forever). Returns 1 when finished, 0 when not yet. */
int xfer_wait(struct xfer *x, long timeout_ms);

/* A consistent-enough snapshot, without blocking the transfer thread. */
void xfer_progress(struct xfer *x, struct xfer_progress *p);

/*
 * The outcome of a finished transfer: 0 or a negative code (ERR_CANCELLED,
 * ERR_DIGEST (hash, or bytes past the expected size), ERR_TOO_LARGE (an
 * unknown size past max_unknown_size), ERR_NOSPACE, ERR_NETWORK,
 * ERR_FORBIDDEN (also a redirect the URL policy refused), ERR_NOT_FOUND,
 * ERR_CONFLICT (the partial's name was taken by another file), ERR_IO, ...)
 * with e filled. sha256_out (may be NULL) receives the hash of the bytes
 * on success. ERR_CONFLICT when the transfer has not finished.
 */
int xfer_result(struct xfer *x, struct err *e, char sha256_out[SHA256_HEX_LEN + 1]);

/* Cancels if still running, waits for the end, frees. NULL is a no-op. */
void xfer_free(struct xfer *x);

#endif
