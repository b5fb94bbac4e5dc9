/*
 * The transfer engine's insides, shared by its files (see docs/fetch.md):
 *   xfer.c         the public API: engine and transfer lifecycle
 *   xfer_file.c    the partial on disk: resume state, free space, preallocation
 *   xfer_conn.c    the connection state machine and each hop's URL
 *   xfer_write.c   the write path inside libcurl, and the checked socket opener
 *   xfer_loop.c    the transfer thread's loop and the rate cap
 *   xfer_helper.c  the helper thread: hashing, URL refresh, the end
 *   xfer_save.c    its saver thread: writeback and the saves of the resume state,
 *                  fresh ones and, through its syncer thread, synced ones
 *   xfer_peer.c    peer hives: their poller thread, the source of each piece,
 *                  the repair of their bytes after a digest mismatch
 *
 * Threads and ownership are in xfer.h; each field of struct xfer below is
 * marked with the thread that owns it.
 *
 * Locks: eng->lock guards the engine's queue, count and stopping flag.
 * x->lock guards the hand-off fields between the transfer thread and the
 * transfer's helper thread (the block marked "x->lock" in struct xfer) and
 * the result fields read by xfer_wait/xfer_result. No lock is held across
 * libcurl, disk or callback calls, except that curl_multi_wakeup (a write on
 * a socketpair) is called under x->lock so that it cannot race the engine's
 * exit. Progress counters are atomics written by the transfer thread only.
 */
#ifndef RBEE_FETCH_XFER_INTERNAL_H
#define RBEE_FETCH_XFER_INTERNAL_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/gitblob.h"
#include "core/sha256.h"
#include "core/url.h"
#include "core/curl_mem.h"
#include "fetch/ranges.h"
#include "fetch/xfer.h"

#define HASH_CHUNK (512 * 1024) /* the helper reads the prefix back this much at a time */
#define PREFIX_PUBLISH_STEP                                                                        \
	(1024 * 1024)		     /* the grown prefix is handed to the helper this often        \
				      */
#define DISCARD_BODY_MAX (64 * 1024) /* an error body is read this far, then cut */
/*
 * libcurl hands the body to the write callback 16 KiB at a time (its
 * CURL_MAX_WRITE_SIZE), whatever its buffer: written as they come, a GiB
 * took about 65,700 pwrite calls, and writes of 16 KiB took about three
 * times the CPU per byte of writes of 256 KiB (`dd` of a GiB from
 * /dev/zero into the page cache on ext4: 0.43 s of CPU with bs=16k, 0.15 s
 * with bs=256k; bench/README.md). So
 * each connection gathers what it is handed in a batch of this size, and
 * writes it when full, when the loop's curl_multi_perform returns, and
 * when the connection stops.
 */
#define WRITE_BATCH (256 * 1024)
/* Each connection's batch is a mapping of its own, returned when freed (core/curl_mem.h). */
_Static_assert(WRITE_BATCH >= MMAP_THRESHOLD,
	       "the write batch must be at the mmap threshold or above");
#define PROGRESS_MS 250	      /* rate and on_progress period */
#define RATE_BURST_MIN 65536  /* the rate cap's bucket holds at least this */
#define RATE_PAUSED_POLL_MS 5 /* the loop's wake-up while connections are paused */
/*
 * With resume state, the bytes written but not yet in a saved state are
 * held to this many flush steps: past it, the connections pause until the
 * saver's save catches up. Where the network outruns the disk, the saves
 * (each an fdatasync) would otherwise trail the written bytes by hundreds
 * of MiB, and a crash would lose all of them.
 */
#define UNSAVED_FLUSH_STEPS 4
/*
 * With fresh saves the hold is this many of their steps (8 MiB), so a
 * kill -9 loses about that much of the written bytes at most. While the
 * fresh saves never wait it did not slow the daemon's pulls (run M): made
 * behind the synced saves, or as catalog commits (which slept in the
 * kernel now and then), they let a hold of 4 or 8 MiB pause the pulls,
 * 4 to 18 % slower (docs/reliability.md, item 4).
 */
#define UNSAVED_FRESH_STEPS 8
/*
 * With fresh saves (xfer_resume_ops.save_fresh), the done ranges are
 * posted for a save this often, and the bytes written but not yet synced
 * are held to UNSYNCED_MAX: fresh saves bound what a kill -9 loses, the
 * syncs what a restart of the system loses.
 */
#define FRESH_SAVE_STEP (1u << 20)
#define UNSYNCED_MAX (256ull << 20)
/* The saver starts writeback of the written prefix in steps of this size, so
 * the fdatasync before a resume save, and the final fsync, have little left. */
#define WRITEBACK_STEP (4u << 20)

/*
 * When the ramp finds the client the bottleneck (ranges.h), the URL's
 * connections get a receive buffer of RCVBUF_CLIENT_BOUND instead of the
 * kernel's autotuned one, which grows towards tcp_rmem's maximum (6 to 32
 * MiB) while the client reads slower than the sender sends: the bytes
 * queued there only wait for the client, and a kill -9 loses them. Only
 * where that buffer still holds RCVBUF_BDP_FACTOR times a connection's
 * bytes over the path's shortest round trip (TCP_INFO's min_rtt), so a
 * long path keeps the autotuned one. 208 KiB is Linux's default
 * net.core.rmem_max, the most an unprivileged SO_RCVBUF gets everywhere.
 */
#define RCVBUF_CLIENT_BOUND (208 * 1024)
#define RCVBUF_BDP_FACTOR 4

enum conn_state { C_IDLE = 0, C_RUNNING, C_WAIT };

enum net_state { NET_RUNNING = 0, NET_DONE, NET_FAILED, NET_CANCELLED };

struct xfer;

/* One connection slot of a transfer; owned by the transfer thread. */
struct xconn {
	struct xfer *x;
	int idx;
	CURL *h;
	enum conn_state st;
	int src;      /* the request's source: -1 the URL, else a peer's index */
	int seg;      /* plan slot, or -1 in whole-file mode */
	uint64_t pos; /* next byte in whole-file mode */
	int ranged;   /* the request carried a Range */
	uint64_t req_start;
	uint64_t req_last;
	int url_gen;  /* x->url_gen this request used */
	int wait_url; /* C_WAIT until a refreshed URL arrives */
	int paused;   /* paused by the rate cap */
	int64_t retry_at;
	int fails;	/* consecutive failures without progress */
	int moved;	/* has written bytes of this transfer (the ramp waits for it) */
	int rcv_judged; /* its socket was judged for RCVBUF_CLIENT_BOUND (xfer_conn.c) */
	/* Bytes accepted (pos or the plan slot's pos is past them) but not yet written. */
	unsigned char *batch; /* WRITE_BATCH bytes, allocated at the first write */
	size_t batch_len;
	uint64_t batch_at; /* the file offset of batch[0] */
	/* set by the write callback for the current request */
	int checked;
	int discard;
	uint64_t discarded;
	int hit_end;
	int restart200;
	int bad_range;
	int io_errno;
	int too_many_ranges;
	int fail_code; /* the answer ends the whole transfer with fail_msg */
	char fail_msg[ERR_MSG_MAX];
	char why[160];
	char errbuf[CURL_ERROR_SIZE];
};

/*
 * How often a transfer asks its peers what they hold, how long one answer
 * may take, how long a peer that says it is downloading may hold no new
 * bytes before its share of the work is taken from the URL, and how many
 * connections fetch from one peer at once.
 */
#define PEER_POLL_MS 250
#define PEER_ASK_TIMEOUT_MS 1000
#define PEER_STALE_MS 5000
/*
 * For this long after a transfer starts, the shares of reachable peers are
 * left to them even before they say they fetch the blob: hives started
 * together learn of each other's transfers only at their next poll.
 */
#define PEER_GRACE_MS 1000
#define PEER_CONNS 2
/* A peer connection that moves no byte for this long is cut (and the peer dropped). */
#define PEER_STALL_S 5

/* One peer hive of a transfer (xfer_peer.c); each field marked with its owner. */
struct xpeer {
	/* Immutable after xfer_start. */
	char *info_url;	 /* BASE/v1/peer/blobs/SHA256 */
	char *bytes_url; /* BASE/v1/peer/blobs/SHA256/bytes */
	int rank;	 /* its place among the hives: the pieces it fetches from the URL first */
	atomic_int dropped; /* set by the transfer thread: not asked again for this blob */
	/* Poller thread only. */
	CURL *h;
	char *body;
	size_t body_len;
	/* x->lock: the latest answer */
	struct byte_range *in;
	size_t in_n;
	int in_ok;	    /* it answered (holding the blob or not) */
	int in_downloading; /* its copy is a partial it is still writing */
	unsigned in_gen;
	/* Transfer thread only. */
	unsigned seen_gen;
	struct rangeset held; /* what it holds, as of its latest answer */
	int ok, downloading;
	int64_t grew_at; /* when what it holds last grew */
	int conns;	 /* connections fetching from it */
	uint64_t bytes;	 /* bytes it delivered */
	/* Written by the transfer thread, read by the helper once the transfer has ended. */
	struct rangeset got; /* what it delivered into the partial */
};

struct xfer {
	struct xfer_engine *eng;
	struct xfer *next; /* engine queue, then active list */

	/* Immutable after xfer_start. */
	struct url_parts origin;
	enum url_net base; /* the class of the origin's address: no hop may go further in */
	char *token;
	int basic;	 /* token is user:password for HTTP Basic, not a bearer token */
	char *aws_sigv4; /* SigV4 provider when token is S3 credentials */
	struct curl_slist *aws_headers; /* x-amz-content-sha256, for SigV4 */
	int max_retries;
	char *dest; /* the label of the partial, for messages */
	char *name; /* the partial in dir_fd */
	int dir_fd;
	char *rename_to;
	int rename_sha;
	char *log_id;
	char key[4096];
	char want_sha[SHA256_HEX_LEN + 1];
	char want_git[GITBLOB_HEX_LEN + 1];
	int size_known;
	uint64_t limit; /* bytes accepted in whole-file mode */
	struct xfer_resume_ops resume;
	int has_resume;
	uint64_t snap_step;   /* the done ranges are posted for a save this often */
	uint64_t unsaved_max; /* the hold: written bytes not yet in a save */
	xfer_refresh_fn refresh_fn;
	void *refresh_arg;
	xfer_progress_fn progress_fn;
	void *progress_arg;
	struct cancel_token *cancel;
	int watch;
	int fd;
	int nconn;

	/* Transfer thread only. */
	char *url;
	struct url_parts cur; /* url's origin */
	int url_gen;
	int url_auth;	/* the current URL is at the origin: the token goes along */
	int peer_check; /* the current URL is elsewhere: its address is checked on connect */
	int url_settled;
	int redirects;
	uint64_t total;
	struct xconn *conns;
	struct rangeset done;
	struct xfer_plan plan;
	struct xfer_ramp ramp;
	int ramp_on; /* the ramp runs once the URL is settled */
	int rcvbuf;  /* SO_RCVBUF of the URL's sockets (RCVBUF_CLIENT_BOUND); 0: the kernel's */
	int held;    /* connections paused until a resume save catches up */
	int no_range;
	int refreshing;
	int refreshes;
	uint64_t written_at_refresh;
	uint64_t written; /* monotonic bytes written, for rate and flushes */
	uint64_t flushed_written;
	int64_t flush_at;
	uint64_t published_prefix;
	int64_t rate_at;
	uint64_t rate_written;
	double rate;
	int64_t progress_at;
	int ended;
	enum net_state end_state;
	struct err end_err;
	int discard_partial;

	/* Progress snapshot: written by the transfer and helper threads, read by anyone. */
	_Atomic uint64_t a_done;
	_Atomic uint64_t a_total;
	_Atomic uint64_t a_hashed;
	_Atomic uint64_t a_from_peers;
	_Atomic uint64_t a_rate;
	atomic_int a_conns;
	atomic_int a_finished;
	atomic_int cancel_req;
	atomic_int purge_req;
	atomic_int refresh_done;
	_Atomic uint64_t a_saved;  /* x->written as of the last resume state saved (saver) */
	_Atomic uint64_t a_synced; /* ... of the last one saved after an fdatasync (syncer) */

	/* x->lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;	  /* wakes the helper */
	pthread_cond_t save_cond; /* wakes the saver */
	int save_stop;		  /* the helper is done: the saver saves what is pending and ends */
	pthread_cond_t done_cond; /* wakes xfer_wait */
	uint64_t prefix;
	unsigned gen;
	int eng_gone;
	enum net_state net;
	struct err net_err;
	uint64_t final_total;
	int discard_req;
	struct byte_range *snap;
	size_t snap_n;
	uint64_t snap_written; /* x->written when snap was taken */
	unsigned snap_gen;     /* x->gen when snap was taken */
	int snap_pending;
	pthread_cond_t sync_cond; /* wakes the syncer */
	int sync_state;		  /* the syncer's synced save: asked, or idle (xfer_save.c) */
	int sync_stop;		  /* the syncer ends */
	int refresh_want;
	int refresh_rc;
	struct err refresh_err;
	char refresh_url[CAP_URL_LEN];
	int finished;
	int result;
	struct err res_err;
	char got_sha[SHA256_HEX_LEN + 1];

	pthread_t helper;
	int helper_started;

	/* Peers (xfer_peer.c): the count and ranks are immutable after xfer_start. */
	struct xpeer *peers;
	int npeers;
	int rank;	      /* this hive's place among itself and its peers */
	atomic_int peers_new; /* the poller has new answers for the transfer thread */
	uint64_t url_bytes;   /* bytes from the URL (transfer thread) */
	int64_t peers_t0;     /* when the peers were first asked */
	int url_room;	      /* the next piece may come from the URL (transfer thread) */
	pthread_t poller;
	int poller_started;
	int poll_stop;		   /* x->lock: the poller ends */
	atomic_int peers_stopping; /* the same, read inside libcurl without the lock */
	atomic_int repaired;	   /* the helper rewrote what peers delivered (xfer_peers_repair) */
	pthread_cond_t poll_cond;  /* wakes the poller to end */
};

struct xfer_engine {
	struct xfer_config cfg;
	char *user_agent;
	char *ca_file;
	CURLM *multi;
	pthread_t thread;
	int thread_started;

	pthread_mutex_t lock; /* guards queue_head, queue_tail, count, stopping */
	struct xfer *queue_head;
	struct xfer *queue_tail;
	int count;
	int stopping;

	/* Transfer thread only. */
	struct xfer *active;
	int nactive;
	/* The rate cap: a token bucket over every connection of the engine. */
	double tokens;
	int64_t tokens_at;
	int npaused;
	/*
	 * The thread's time waiting for the network (in curl_multi_poll with no
	 * connection paused), us, and its start: the rest is the client's busy
	 * time, which the connection ramp reads (xfer_service, xfer_loop.c).
	 */
	int64_t net_wait_us;
	int64_t started_us;
};

/* xfer_conn.c (transfer thread) */

/*
 * Sets x->url after checking it as a hop from `from` (the previous URL, or
 * the origin; NULL for the origin itself), and whether the token may go
 * with it.
 */
int xfer_set_url(struct xfer *x, const char *url, const struct url_parts *from, struct err *e);
const char *xfer_host_for_log(const struct xfer *x, char *buf, size_t size);
/* Ends the transfer once (later calls are no-ops); the helper finishes it. */
void xfer_end(struct xfer *x, enum net_state st, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void xconn_stop(struct xconn *c);
/* Gives fd, a socket to x's URL, the receive buffer x->rcvbuf when one is set. */
void xfer_set_rcvbuf(struct xfer *x, int fd);
/* Starts c's next request; leaves c idle when there is nothing worth taking. */
void xconn_start(struct xfer *x, struct xconn *c);
/* A request of c ended with res: the next step of its connection. */
void xconn_done(struct xfer *x, struct xconn *c, CURLcode res);

/* xfer_write.c (transfer thread, inside libcurl) */

/* Hands the grown done prefix to the helper (every PREFIX_PUBLISH_STEP, or force). */
void xfer_publish_prefix(struct xfer *x, int force);
/* Hands a snapshot of the done ranges to the saver to fdatasync and save. */
void xfer_post_snapshot(struct xfer *x);
size_t xconn_write(char *data, size_t size, size_t nmemb, void *arg);
/*
 * Writes c's batch and counts its bytes done (a cancelled transfer's are
 * dropped). A write error is kept
 * in c->io_errno, too many ranges in c->too_many_ranges: the request ends
 * at its next callback, and xconn_done ends the transfer. Returns 0, or
 * -1 on such an error.
 */
int xconn_flush(struct xconn *c);
/* xconn_flush of every connection of every active transfer: after each curl_multi_perform. */
void xfer_flush_all(struct xfer_engine *eng);
curl_socket_t xconn_opensocket(void *arg, curlsocktype purpose, struct curl_sockaddr *a);

/* Connections of x with a request running or waiting for a retry. */
int xfer_busy(const struct xfer *x);
/* Those of them on the URL, not on a peer. */
int xfer_busy_url(const struct xfer *x);
/* With peers: 1 while the ramp lets one more connection go to the URL. */
int xfer_url_room(const struct xfer *x);

/* xfer_loop.c */

void *xfer_engine_main(void *arg);

/* xfer_helper.c */

void *xfer_helper_main(void *arg);

/* xfer_save.c */

void *xfer_saver_main(void *arg);
/* 1 while the saves trail the written bytes too far: connections are held (transfer thread). */
int xfer_saves_behind(struct xfer *x);

/* xfer_peer.c */

/* Sets up x's peers from req, asks them once and starts the poller (caller's thread). */
int xfer_peers_start(struct xfer *x, const struct xfer_request *req, struct err *e);
/* Stops and joins the poller (helper thread, at the end). */
void xfer_peers_stop(struct xfer *x);
void xfer_peers_free(struct xfer *x);
/* Takes in the poller's latest answers (transfer thread). */
void xfer_peers_update(struct xfer *x, int64_t now);
/* Picks c's next piece and its source (c->src); -1 when there is none for now. */
int xfer_peer_take(struct xfer *x, struct xconn *c);
/* 1 while pieces are left that a peer is expected to deliver. */
int xfer_peers_awaited(struct xfer *x, int64_t now);
/* A request of c to a peer ended without its piece: drops the peer, returns the piece. */
void xfer_peer_fail(struct xfer *x, struct xconn *c, const char *why);
/*
 * After a digest mismatch (helper thread): fetches every range a peer
 * delivered again from the URL, compares, rewrites what differs and logs
 * the peers whose bytes differed. Returns 0 when it rewrote the ranges (the
 * file is to be hashed again), ERR_NOT_FOUND when no peer delivered
 * anything, or the error of the URL.
 */
int xfer_peers_repair(struct xfer *x, struct err *e);

/* xfer_file.c (caller's thread, and the helper) */

/* Resume state, free space and preallocation. */
int xfer_prepare_file(struct xfer *x, struct err *e);
/* Removes the partial's name, unless another file has taken it meanwhile. */
void xfer_remove_partial(struct xfer *x);

#endif
