#include "fetch/ranges.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"
#include "core/parse.h"
#include "core/util.h"

void xfer_plan_init(struct xfer_plan *p, size_t cap, uint64_t min_split)
{
	p->s = xcalloc(cap ? cap : 1, sizeof(*p->s));
	p->n = 0;
	p->cap = cap;
	p->min_split = min_split ? min_split : 1;
	p->align = 4096;
	p->piece = 0;
	p->ramp = 0;
	p->taken = 0;
}

void xfer_plan_cleanup(struct xfer_plan *p)
{
	free(p->s);
	p->s = NULL;
	p->n = p->cap = 0;
}

int xfer_plan_reset(struct xfer_plan *p, const struct rangeset *done, uint64_t total)
{
	p->n = 0;
	size_t gaps = ranges_gaps(done, total, NULL, 0);
	if (gaps > p->cap)
		return ERR_TOO_LARGE;
	struct byte_range *g = xcalloc(gaps, sizeof(*g));
	ranges_gaps(done, total, g, gaps);
	for (size_t i = 0; i < gaps; i++)
		p->s[i] = (struct xfer_seg){g[i].start, g[i].end, XFER_SEG_NONE};
	p->n = gaps;
	free(g);
	return 0;
}

static uint64_t seg_left(const struct xfer_seg *s)
{
	return s->end > s->pos ? s->end - s->pos : 0;
}

static uint64_t plan_split_point(const struct xfer_plan *p, const struct xfer_seg *v)
{
	uint64_t left = seg_left(v);
	uint64_t mid = v->pos + left / 2;
	uint64_t aligned = mid & ~(p->align - 1);
	return aligned - v->pos >= p->min_split ? aligned : mid;
}

static int plan_slot(struct xfer_plan *p)
{
	for (size_t i = 0; i < p->n; i++) {
		if (p->s[i].owner == XFER_SEG_FREE)
			return (int)i;
	}
	if (p->n == p->cap)
		return -1;
	return (int)p->n++;
}

int xfer_plan_take(struct xfer_plan *p, int owner, int *victim)
{
	if (victim)
		*victim = -1;
	int best = -1;
	for (size_t i = 0; i < p->n; i++) {
		if (p->s[i].owner != XFER_SEG_NONE || seg_left(&p->s[i]) == 0)
			continue;
		if (best < 0 || (p->piece ? p->s[i].pos < p->s[best].pos
					  : seg_left(&p->s[i]) > seg_left(&p->s[best])))
			best = (int)i;
	}
	if (best >= 0) {
		struct xfer_seg *f = &p->s[best];
		/* Carve the front piece; a short remainder rides along rather than
		 * becoming a request of its own. */
		uint64_t piece = p->piece;
		if (piece && p->taken < p->ramp) {
			piece = piece / p->ramp * (p->taken + 1) & ~(p->align - 1);
			if (piece < p->align)
				piece = p->align;
		}
		if (piece && seg_left(f) >= piece + piece / 2) {
			int slot = plan_slot(p);
			if (slot >= 0) {
				p->s[slot] =
				    (struct xfer_seg){f->pos + piece, f->end, XFER_SEG_NONE};
				f->end = f->pos + piece;
			}
		}
		p->taken++;
		f->owner = owner;
		return best;
	}
	return xfer_plan_steal(p, owner, 0, victim);
}

int xfer_plan_steal(struct xfer_plan *p, int owner, uint64_t spare, int *victim)
{
	int best = -1;
	if (victim)
		*victim = -1;
	for (size_t i = 0; i < p->n; i++) {
		int o = p->s[i].owner;
		if (o < 0 || (o < 64 && (spare >> o & 1)))
			continue;
		if (best < 0 || seg_left(&p->s[i]) > seg_left(&p->s[best]))
			best = (int)i;
	}
	if (best < 0)
		return -1;
	struct xfer_seg *v = &p->s[best];
	if (seg_left(v) < 2 * p->min_split)
		return -1;
	uint64_t mid = plan_split_point(p, v);
	int slot = plan_slot(p);
	if (slot < 0)
		return -1;
	p->s[slot] = (struct xfer_seg){mid, v->end, owner};
	v->end = mid;
	if (victim)
		*victim = v->owner;
	return slot;
}

int xfer_plan_take_at(struct xfer_plan *p, int i, uint64_t start, uint64_t end, int owner)
{
	assert(i >= 0 && (size_t)i < p->n && p->s[i].owner == XFER_SEG_NONE);
	struct xfer_seg *f = &p->s[i];
	assert(f->pos <= start && start < end && end <= f->end);
	/* Both slots first, so a full table leaves the plan as it was. */
	int before = -1, after = -1;
	if (start > f->pos && (before = plan_slot(p)) < 0)
		return -1;
	if (before >= 0)
		p->s[before].owner = XFER_SEG_NONE; /* reserved: plan_slot skips it */
	if (end < f->end && (after = plan_slot(p)) < 0) {
		if (before >= 0)
			xfer_plan_finish(p, before);
		return -1;
	}
	f = &p->s[i];
	if (before >= 0)
		p->s[before] = (struct xfer_seg){f->pos, start, XFER_SEG_NONE};
	if (after >= 0)
		p->s[after] = (struct xfer_seg){end, f->end, XFER_SEG_NONE};
	*f = (struct xfer_seg){start, end, owner};
	p->taken++;
	return i;
}

void xfer_plan_release(struct xfer_plan *p, int i)
{
	assert(i >= 0 && (size_t)i < p->n && p->s[i].owner >= 0);
	p->s[i].owner = XFER_SEG_NONE;
}

void xfer_plan_finish(struct xfer_plan *p, int i)
{
	assert(i >= 0 && (size_t)i < p->n && p->s[i].owner != XFER_SEG_FREE);
	p->s[i].owner = XFER_SEG_FREE;
	p->s[i].pos = p->s[i].end = 0;
	while (p->n > 0 && p->s[p->n - 1].owner == XFER_SEG_FREE)
		p->n--;
}

uint64_t xfer_plan_remaining(const struct xfer_plan *p)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < p->n; i++) {
		if (p->s[i].owner != XFER_SEG_FREE)
			sum += seg_left(&p->s[i]);
	}
	return sum;
}

size_t xfer_plan_live(const struct xfer_plan *p)
{
	size_t c = 0;
	for (size_t i = 0; i < p->n; i++)
		c += p->s[i].owner != XFER_SEG_FREE;
	return c;
}

void xfer_ramp_init(struct xfer_ramp *r, int max, int64_t now, uint64_t written)
{
	memset(r, 0, sizeof(*r));
	r->max = max > 0 ? max : 1;
	r->start = r->max < XFER_RAMP_START ? r->max : XFER_RAMP_START;
	r->want = r->start;
	r->settled = r->want == r->max;
	r->at = now;
	r->bytes_at = written;
	r->start_rate = -1;
}

/* After the second window: how many connections its rate paid for. */
static int ramp_judge(const struct xfer_ramp *r, double rate)
{
	double full = (double)r->max / (double)r->start - 1.0;
	if (r->start_rate <= 0 || rate / r->start_rate - 1.0 >= full / 3)
		return r->max;
	double per = r->start_rate / (double)r->start;
	double n = rate / per + 0.25;
	if (n < (double)r->start)
		return r->start;
	return n > (double)r->max ? r->max : (int)n;
}

/*
 * After the first window: the connections to try next. The most the
 * client could move is rate / busy; when that pays for no more than the
 * start, the trial is skipped (see ranges.h).
 */
static int ramp_trial(const struct xfer_ramp *r)
{
	if (r->busy > 0 && ramp_judge(r, r->rate / r->busy) <= r->start)
		return r->start;
	return r->max;
}

int xfer_ramp_step(struct xfer_ramp *r, int64_t now, uint64_t written, int moving, int64_t busy_us,
		   int64_t *next_ms)
{
	if (r->settled)
		return r->want;
	if (!r->measuring) {
		int64_t waited = now - r->at;
		if ((waited >= XFER_RAMP_WARMUP_MS && moving >= r->want) ||
		    waited >= XFER_RAMP_WARMUP_MAX_MS) {
			r->measuring = 1;
			r->at = now;
			r->bytes_at = written;
			r->busy_at = busy_us;
		}
	} else if (now - r->at >= XFER_RAMP_WINDOW_MS) {
		double ms = (double)(now - r->at);
		r->rate = (double)(written - r->bytes_at) * 1000.0 / ms;
		r->busy = busy_us > r->busy_at ? (double)(busy_us - r->busy_at) / 1000.0 / ms : 0;
		if (r->busy > 1)
			r->busy = 1;
		if (r->start_rate < 0) {
			r->start_rate = r->rate;
			r->want = ramp_trial(r);
			r->settled = r->client_bound = r->want == r->start;
		} else {
			r->want = ramp_judge(r, r->rate);
			r->settled = 1;
		}
		r->measuring = 0;
		r->at = now;
		r->bytes_at = written;
	}
	if (next_ms && !r->settled) {
		int64_t t = r->at + (r->measuring	 ? XFER_RAMP_WINDOW_MS
				     : moving >= r->want ? XFER_RAMP_WARMUP_MS
							 : XFER_RAMP_WARMUP_MAX_MS);
		if (t < *next_ms)
			*next_ms = t;
	}
	return r->want;
}

/*
 * The messages never quote the header: it comes from the network and may
 * hold control bytes, and the message goes into logs and JSON bodies.
 */
static int content_range_number(const char *s, size_t n, uint64_t *out, const char *what,
				struct err *e)
{
	if (parse_u64(s, n, 0, UINT64_MAX, out, what, NULL) < 0)
		return err_set(e, ERR_INVALID,
			       "Content-Range: the %s is not a 64-bit decimal number", what);
	return 0;
}

int xfer_content_range_parse(const char *v, size_t len, struct xfer_content_range *out,
			     struct err *e)
{
	struct xfer_content_range r = {0};
	memset(out, 0, sizeof(*out));
	if (!v || len == 0)
		return err_set(e, ERR_INVALID, "Content-Range: empty");
	if (len > XFER_CONTENT_RANGE_MAX)
		return err_set(e, ERR_INVALID, "Content-Range: longer than %d bytes",
			       XFER_CONTENT_RANGE_MAX);
	if (len < 6 || strncasecmp(v, "bytes ", 6) != 0)
		return err_set(e, ERR_INVALID, "Content-Range: does not start with \"bytes \"");
	const char *s = v + 6;
	const char *end = v + len;
	const char *slash = memchr(s, '/', (size_t)(end - s));
	if (!slash)
		return err_set(e, ERR_INVALID, "Content-Range: no '/' before the total");
	if (end - slash == 2 && slash[1] == '*') {
		r.total_known = 0;
	} else {
		if (content_range_number(slash + 1, (size_t)(end - slash - 1), &r.total, "total",
					 e) < 0)
			return e ? e->code : ERR_INVALID;
		r.total_known = 1;
	}
	if (slash - s == 1 && s[0] == '*') {
		/* The unsatisfied form of a 416: only the total. */
		if (!r.total_known)
			return err_set(e, ERR_INVALID, "Content-Range: neither range nor total");
		*out = r;
		return 0;
	}
	const char *dash = memchr(s, '-', (size_t)(slash - s));
	if (!dash)
		return err_set(e, ERR_INVALID, "Content-Range: no '-' in the range");
	if (content_range_number(s, (size_t)(dash - s), &r.first, "first byte", e) < 0 ||
	    content_range_number(dash + 1, (size_t)(slash - dash - 1), &r.last, "last byte", e) < 0)
		return ERR_INVALID;
	if (r.last < r.first)
		return err_set(e, ERR_INVALID,
			       "Content-Range: last byte %llu before first byte %llu",
			       (unsigned long long)r.last, (unsigned long long)r.first);
	if (r.last == UINT64_MAX)
		return err_set(e, ERR_INVALID, "Content-Range: last byte %llu has no length",
			       (unsigned long long)r.last);
	if (r.total_known && r.last >= r.total)
		return err_set(e, ERR_INVALID,
			       "Content-Range: last byte %llu not below the total %llu",
			       (unsigned long long)r.last, (unsigned long long)r.total);
	r.satisfied = 1;
	*out = r;
	return 0;
}
