/*
 * ranges: the one byte-range type of rbee-hive and the set of done ranges
 * of a partial file. The transfer engine keeps the set as it writes; the
 * catalog saves and loads the same ranges as resume state.
 *
 * struct rangeset holds the byte ranges of a file that are written, sorted,
 * merged, half-open [start, end), with a hard capacity fixed at init. Its
 * first range gives the contiguous prefix the hasher may read. It is not
 * thread-safe: its owner (the transfer thread) guards it.
 */
#ifndef RBEE_CORE_RANGES_H
#define RBEE_CORE_RANGES_H

#include <stddef.h>
#include <stdint.h>

struct err;

struct byte_range {
	uint64_t start; /* first byte */
	uint64_t end;	/* one past the last byte */
};

struct rangeset {
	struct byte_range *r; /* sorted by start, disjoint, not adjacent */
	size_t n;
	size_t cap;
	uint64_t bytes; /* sum of the lengths */
};

void ranges_init(struct rangeset *s, size_t cap);
void ranges_cleanup(struct rangeset *s);
void ranges_clear(struct rangeset *s);

/*
 * Adds [start, end), merging with overlapping or adjacent ranges. An empty
 * range is a no-op. Returns 0, or ERR_TOO_LARGE when the set would need more
 * than cap ranges (the set is then unchanged).
 */
int ranges_add(struct rangeset *s, uint64_t start, uint64_t end);

/* End of the range that starts at 0, or 0 when byte 0 is not done. */
uint64_t ranges_prefix(const struct rangeset *s);

/* 1 when [0, total) is done. */
int ranges_complete(const struct rangeset *s, uint64_t total);

/*
 * Replaces the set with ranges loaded from resume state, after checking them
 * against the file's total size: every range must satisfy start < end <=
 * total. Input may be unsorted and overlapping. Returns 0, ERR_INVALID (with
 * the reason) or ERR_TOO_LARGE; on error the set is left empty.
 */
int ranges_load(struct rangeset *s, const struct byte_range *in, size_t n, uint64_t total,
		struct err *e);

/*
 * Writes the missing ranges of [0, total) into out (at most max). Returns how
 * many gaps there are (which may exceed max: then only max were written).
 */
size_t ranges_gaps(const struct rangeset *s, uint64_t total, struct byte_range *out, size_t max);

/*
 * Sorts r[0..n) by start and merges overlapping or adjacent ranges in place.
 * Returns the new count. O(n log n).
 */
size_t ranges_merge(struct byte_range *r, size_t n);

#endif
