#include "core/ranges.h"

#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/util.h"

void ranges_init(struct rangeset *s, size_t cap)
{
	s->r = xcalloc(cap ? cap : 1, sizeof(*s->r));
	s->n = 0;
	s->cap = cap;
	s->bytes = 0;
}

void ranges_cleanup(struct rangeset *s)
{
	free(s->r);
	s->r = NULL;
	s->n = s->cap = 0;
	s->bytes = 0;
}

void ranges_clear(struct rangeset *s)
{
	s->n = 0;
	s->bytes = 0;
}

/*
 * Linear in the number of ranges. That stays small (the gaps of a resumed
 * file plus one range per connection), and adds are mostly appends to the
 * range a connection is extending, found by the binary search below.
 */
int ranges_add(struct rangeset *s, uint64_t start, uint64_t end)
{
	if (start >= end)
		return 0;
	/* lo: first range whose end >= start (it may touch or overlap). */
	size_t lo = 0, hi = s->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->r[mid].end < start)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* hi: one past the last range whose start <= end. */
	hi = lo;
	while (hi < s->n && s->r[hi].start <= end)
		hi++;
	if (lo == hi) {
		if (s->n == s->cap)
			return ERR_TOO_LARGE;
		memmove(&s->r[lo + 1], &s->r[lo], (s->n - lo) * sizeof(*s->r));
		s->r[lo] = (struct byte_range){start, end};
		s->n++;
		s->bytes += end - start;
		return 0;
	}
	uint64_t ns = start < s->r[lo].start ? start : s->r[lo].start;
	uint64_t ne = end > s->r[hi - 1].end ? end : s->r[hi - 1].end;
	uint64_t old = 0;
	for (size_t i = lo; i < hi; i++)
		old += s->r[i].end - s->r[i].start;
	s->r[lo] = (struct byte_range){ns, ne};
	memmove(&s->r[lo + 1], &s->r[hi], (s->n - hi) * sizeof(*s->r));
	s->n -= hi - lo - 1;
	s->bytes = s->bytes - old + (ne - ns);
	return 0;
}

uint64_t ranges_prefix(const struct rangeset *s)
{
	return s->n && s->r[0].start == 0 ? s->r[0].end : 0;
}

int ranges_complete(const struct rangeset *s, uint64_t total)
{
	if (total == 0)
		return 1;
	return s->n == 1 && s->r[0].start == 0 && s->r[0].end >= total;
}

int ranges_load(struct rangeset *s, const struct byte_range *in, size_t n, uint64_t total,
		struct err *e)
{
	ranges_clear(s);
	for (size_t i = 0; i < n; i++) {
		if (in[i].start >= in[i].end || in[i].end > total) {
			ranges_clear(s);
			return err_set(
			    e, ERR_INVALID,
			    "resume range %zu [%llu, %llu) does not fit a file of %llu bytes", i,
			    (unsigned long long)in[i].start, (unsigned long long)in[i].end,
			    (unsigned long long)total);
		}
		if (ranges_add(s, in[i].start, in[i].end) < 0) {
			ranges_clear(s);
			return err_set(e, ERR_TOO_LARGE, "resume state has more than %zu ranges",
				       s->cap);
		}
	}
	return 0;
}

size_t ranges_gaps(const struct rangeset *s, uint64_t total, struct byte_range *out, size_t max)
{
	size_t count = 0;
	uint64_t at = 0;
	for (size_t i = 0; i <= s->n; i++) {
		uint64_t next = i < s->n ? s->r[i].start : total;
		if (next > total)
			next = total;
		if (next > at) {
			if (count < max)
				out[count] = (struct byte_range){at, next};
			count++;
		}
		if (i < s->n && s->r[i].end > at)
			at = s->r[i].end;
	}
	return count;
}

static int range_cmp(const void *a, const void *b)
{
	const struct byte_range *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

size_t ranges_merge(struct byte_range *r, size_t n)
{
	if (n == 0)
		return 0;
	qsort(r, n, sizeof *r, range_cmp);
	size_t k = 0;
	for (size_t i = 1; i < n; i++) {
		if (r[i].start <= r[k].end) {
			if (r[i].end > r[k].end)
				r[k].end = r[i].end;
		} else {
			r[++k] = r[i];
		}
	}
	return k + 1;
}
