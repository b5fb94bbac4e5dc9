/*
 * ranges: the work plan of the transfer engine, kept apart from libcurl so
 * it can be tested on its own. The done ranges it plans around are a
 * struct rangeset (core/ranges.h).
 *
 *   - struct xfer_plan: the work still to do, as segments [pos, end) each
 *     owned by at most one connection. With a piece size set, an idle
 *     connection takes the next piece in file order (the front of the first
 *     unowned segment), so all connections work near the front and the done
 *     prefix grows at the full transfer rate; without one it takes the
 *     largest unowned segment. When nothing is unowned it steals the upper
 *     half of the largest owned segment (work stealing: no slow tail).
 *     Segments live in stable slots, so a connection can keep the index of
 *     its segment while others are added.
 *
 * It has a hard capacity fixed at init. It is not thread-safe: the transfer
 * thread owns it.
 *
 * Also here, for the same reason: the parser of the Content-Range header a
 * 206 or 416 answer carries.
 */
#ifndef RBEE_FETCH_RANGES_H
#define RBEE_FETCH_RANGES_H

#include <stddef.h>
#include <stdint.h>

struct err;

#include "core/ranges.h"

#define XFER_SEG_FREE (-2) /* slot holds no segment */
#define XFER_SEG_NONE (-1) /* segment waits for a connection */

struct xfer_seg {
	uint64_t pos; /* next byte to fetch */
	uint64_t end; /* one past the last byte; shrinks when stolen from */
	int owner;    /* connection index, XFER_SEG_NONE or XFER_SEG_FREE */
};

struct xfer_plan {
	struct xfer_seg *s;
	size_t n; /* slots in use or freed: the high-water mark */
	size_t cap;
	uint64_t min_split; /* each half of a split is at least this long */
	uint64_t align;	    /* split points are multiples of this (power of two) */
	uint64_t piece; /* 0: take whole segments; else pieces of about this size, in file order */
	unsigned ramp;	/* the first ramp pieces grow from piece/ramp to piece (see take) */
	unsigned taken; /* pieces handed out so far */
};

void xfer_plan_init(struct xfer_plan *p, size_t cap, uint64_t min_split);
void xfer_plan_cleanup(struct xfer_plan *p);

/*
 * Rebuilds the plan from the gaps of done in [0, total): one unowned segment
 * per gap. Returns 0 or ERR_TOO_LARGE (more gaps than slots).
 */
int xfer_plan_reset(struct xfer_plan *p, const struct rangeset *done, uint64_t total);

/*
 * Gives connection owner a segment. With p->piece set: the first p->piece
 * bytes of the unowned segment that starts lowest (the rest stays unowned;
 * a remainder shorter than half a piece goes along), else, without a piece
 * size, the largest unowned segment. The first p->ramp pieces are 1/ramp,
 * 2/ramp, ... of a piece: connections that start together then finish
 * their pieces one after another, not all at once, so the done prefix
 * grows steadily instead of in jumps of ramp pieces. When none is unowned:
 * the upper
 * half of the largest owned segment whose remaining bytes are at least
 * 2 * min_split (the victim's end shrinks to the split point). Returns the
 * slot index, or -1 when there is nothing worth taking. When victim is not
 * NULL it receives the owner stolen from, or -1.
 */
int xfer_plan_take(struct xfer_plan *p, int owner, int *victim);

/*
 * Steals for owner the upper half of the largest owned segment, as
 * xfer_plan_take does when nothing is unowned, skipping the segments of
 * the owners whose bit is set in spare (connection indexes below 64).
 */
int xfer_plan_steal(struct xfer_plan *p, int owner, uint64_t spare, int *victim);

/*
 * Gives owner [start, end) out of the unowned segment in slot i (which
 * must hold it); what lies before and after stays unowned in slots of its
 * own. Returns i, or -1 when the plan has no slot left for the rest.
 */
int xfer_plan_take_at(struct xfer_plan *p, int i, uint64_t start, uint64_t end, int owner);

/* Gives slot i back unowned, with what is left of it, for another connection to take. */
void xfer_plan_release(struct xfer_plan *p, int i);

/* Marks slot i finished (its owner is done with it) and frees it. */
void xfer_plan_finish(struct xfer_plan *p, int i);

/* Bytes not yet fetched over all segments. */
uint64_t xfer_plan_remaining(const struct xfer_plan *p);

/* Number of live segments (owned or not). */
size_t xfer_plan_live(const struct xfer_plan *p);

/*
 * The connection ramp: how many connections a transfer keeps moving bytes.
 * A server that caps each connection (a CDN) gives about n times one
 * connection's rate for n connections, while a path that is already full
 * (a local server bound by CPU, a saturated link) gives little more, and
 * there extra connections only add bytes in flight, out-of-order pieces
 * and socket buffers that a crash loses. Pure: the caller feeds it the
 * clock, its byte count and how many connections have moved bytes, and
 * asks for the number of connections.
 *
 * It measures twice. First XFER_RAMP_START connections, over
 * XFER_RAMP_WINDOW_MS; then all of them (max) at once, over the same
 * window, and judges the gain: a capped server would give max/start
 * times the rate. A third of that gain or more (for 2 to 8: the rate at
 * least doubled) keeps max; less keeps the connections the rate paid for,
 * each added one counted when it brought at least three quarters of a
 * starting connection's rate, so a full path goes back to the start. Going
 * straight to max rather than doubling step by step costs a capped server
 * one window at the start instead of one per doubling.
 *
 * The first measure is the only one when the client was the bottleneck
 * in it. One thread serves every connection; when it was busy for a share
 * of the window (working, waiting for a CPU or the disk, or holding the
 * connections for its own saves: anything but waiting for the network),
 * no number of connections can bring more than rate / busy. When even
 * that rate would pay for no more connections than the start, the start
 * is kept without a trial: on a path the client itself fills (loopback, a
 * fast LAN, a slow CPU or disk) the trial would only put eight
 * connections' socket buffers in flight, which a kill -9 loses.
 *
 * A window opens XFER_RAMP_WARMUP_MS after a change, once every wanted
 * connection has moved bytes (a new connection spends round trips on its
 * handshake and request, and measuring before it answers would count it
 * as no gain), or after XFER_RAMP_WARMUP_MAX_MS in any case (a server that
 * refuses more connections then shows no gain).
 */
#define XFER_RAMP_START 2
#define XFER_RAMP_WARMUP_MS 20
#define XFER_RAMP_WARMUP_MAX_MS 1000
#define XFER_RAMP_WINDOW_MS 150

struct xfer_ramp {
	int max;	   /* the configured connections */
	int start;	   /* the connections of the first measure */
	int want;	   /* connections to keep busy now */
	int settled;	   /* no more changes */
	int measuring;	   /* the warm-up is over, the window is open */
	int64_t at;	   /* when the current phase began, ms */
	uint64_t bytes_at; /* the byte count then */
	double start_rate; /* bytes/s measured with start connections; < 0 before */
	double rate;	   /* bytes/s of the last window */
	int64_t busy_at;   /* the client's busy time then, us */
	double busy;	   /* the share of the last window the client was busy, 0..1 */
	int client_bound;  /* settled at the start without a trial: the client was the bottleneck */
};

/* Starts the ramp at now with the byte count written so far. */
void xfer_ramp_init(struct xfer_ramp *r, int max, int64_t now, uint64_t written);

/*
 * Advances the ramp to now, with written the transfer's monotonic count of
 * bytes written, moving the number of its connections that have moved
 * bytes so far, and busy_us the client's monotonic busy time: the
 * microseconds its transfer thread did not spend waiting for the network
 * (0 when not known, which never skips the trial). Returns the number of
 * connections to keep busy (1 to max). next_ms, when not NULL, is lowered
 * to the time the ramp next wants to look, while it is not settled.
 */
int xfer_ramp_step(struct xfer_ramp *r, int64_t now, uint64_t written, int moving, int64_t busy_us,
		   int64_t *next_ms);

/*
 * The longest Content-Range value the grammar allows with 64-bit numbers:
 * "bytes " and three numbers of at most 20 digits, a '-' and a '/'.
 */
#define XFER_CONTENT_RANGE_MAX (6 + 20 + 1 + 20 + 1 + 20)

/* A Content-Range header value, as xfer_content_range_parse reads it. */
struct xfer_content_range {
	int satisfied;	 /* 1: "bytes A-B/T" or "bytes A-B/ *"; 0: "bytes * /T" (a 416) */
	int total_known; /* 0 only for "bytes A-B/ *" */
	uint64_t first;	 /* A, when satisfied */
	uint64_t last;	 /* B, inclusive, when satisfied */
	uint64_t total;	 /* T, when total_known */
};

/*
 * Parses exactly len bytes of v as a Content-Range value (RFC 9110 14.4):
 * "bytes A-B/T", "bytes A-B/ *" or, in a 416 answer, "bytes * /T" (written
 * here with a space so as not to end this comment; the header has none).
 * Strict: the unit "bytes" (case-insensitive, as range units are), one
 * space, decimal numbers without sign, spaces or anything after; A <= B,
 * B < T when T is known, B < UINT64_MAX (so B + 1 is a length), at most
 * XFER_CONTENT_RANGE_MAX bytes. Pure: no allocation, no global state.
 * Returns 0 (out filled) or ERR_INVALID with the reason in e (e may be NULL;
 * out is then zeroed).
 */
int xfer_content_range_parse(const char *v, size_t len, struct xfer_content_range *out,
			     struct err *e);

#endif
