/*
 * fuzz_content_range: xfer_content_range_parse (fetch/ranges.h), the parser
 * of the Content-Range header of a 206 or 416 answer. The whole input,
 * embedded NULs included, is the header value (the parser takes a length).
 *
 * An accepted value must describe a range the transfer engine can use
 * (first <= last < UINT64_MAX, last < total when the total is known, a total
 * for the unsatisfied form); written back in canonical form it must parse to
 * the same values, and that form must be the input itself once the unit is
 * lowercased and leading zeros are dropped (so nothing else was let through).
 * A refusal leaves the result zeroed and carries a clean message.
 */
#include <ctype.h>
#include <inttypes.h>

#include "fuzz.h"

#include "core/err.h"
#include "fetch/ranges.h"

/* The canonical text of r: what a server that writes no leading zeros sends. */
static int canonical(const struct xfer_content_range *r, char *buf, size_t size)
{
	if (!r->satisfied)
		return snprintf(buf, size, "bytes */%" PRIu64, r->total);
	if (!r->total_known)
		return snprintf(buf, size, "bytes %" PRIu64 "-%" PRIu64 "/*", r->first, r->last);
	return snprintf(buf, size, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, r->first, r->last,
			r->total);
}

/* The input with its first 6 bytes lowercased and leading zeros of digit runs dropped. */
static size_t normalise(const uint8_t *in, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char c = (char)in[i];
		if (i < 6) {
			out[o++] = (char)tolower((unsigned char)c);
			continue;
		}
		int run_start = !isdigit((unsigned char)in[i - 1]);
		if (c == '0' && run_start) {
			/* skip zeros that another digit follows */
			size_t j = i;
			while (j + 1 < n && in[j] == '0' && isdigit(in[j + 1]))
				j++;
			i = j;
			c = (char)in[i];
		}
		out[o++] = c;
	}
	return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *v = (const char *)data;
	struct xfer_content_range r, r2;
	struct err e = {0};
	int rc = xfer_content_range_parse(v, size, &r, &e);
	FUZZ_CHECK(xfer_content_range_parse(v, size, &r2, NULL) == rc);
	if (rc != 0) {
		static const struct xfer_content_range zero;
		FUZZ_CHECK(rc == ERR_INVALID && e.code == ERR_INVALID && fuzz_err_ok(&e));
		FUZZ_CHECK(!memcmp(&r, &zero, sizeof(r)) && !memcmp(&r2, &zero, sizeof(r2)));
		return 0;
	}
	FUZZ_CHECK(e.code == 0 && !memcmp(&r, &r2, sizeof(r)));
	FUZZ_CHECK(size >= 8 && size <= XFER_CONTENT_RANGE_MAX);
	if (r.satisfied) {
		FUZZ_CHECK(r.first <= r.last && r.last < UINT64_MAX);
		FUZZ_CHECK(!r.total_known || r.last < r.total);
		FUZZ_CHECK(r.total_known || r.total == 0);
	} else {
		FUZZ_CHECK(r.total_known && r.first == 0 && r.last == 0);
	}

	char buf[XFER_CONTENT_RANGE_MAX + 1];
	int n = canonical(&r, buf, sizeof(buf));
	FUZZ_CHECK(n > 0 && (size_t)n < sizeof(buf));
	FUZZ_CHECK(xfer_content_range_parse(buf, (size_t)n, &r2, NULL) == 0);
	FUZZ_CHECK(!memcmp(&r, &r2, sizeof(r)));

	char norm[XFER_CONTENT_RANGE_MAX];
	size_t m = normalise(data, size, norm);
	FUZZ_CHECK(m == (size_t)n && !memcmp(norm, buf, m));
	return 0;
}
