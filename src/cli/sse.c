#include "cli/sse.h"

#include <string.h>

#include "core/err.h"

void cli_sse_init(struct cli_sse *p, cli_sse_fn fn, void *arg)
{
	memset(p, 0, sizeof(*p));
	p->fn = fn;
	p->arg = arg;
}

void cli_sse_reset(struct cli_sse *p)
{
	p->after_cr = 0;
	p->has_data = 0;
	p->stopped = 0;
	p->line_len = 0;
	p->data_len = 0;
	p->type[0] = '\0';
}

static int sse_dispatch(struct cli_sse *p)
{
	int rc = 0;
	/* An event without data is not dispatched (the spec's rule); its type is dropped. */
	if (p->has_data) {
		p->data[p->data_len] = '\0';
		struct cli_sse_event ev = {
		    .type = p->type[0] ? p->type : "message",
		    .data = p->data,
		    .data_len = p->data_len,
		    .id = p->last_id,
		};
		rc = p->fn(&ev, p->arg);
	}
	p->has_data = 0;
	p->data_len = 0;
	p->type[0] = '\0';
	return rc;
}

/* Copies a field value into a fixed buffer; over-long values are an error. */
static int sse_set(char *dst, size_t cap, const char *v, size_t n, const char *what, struct err *e)
{
	if (n > cap)
		return err_set(e, ERR_TOO_LARGE,
			       "event stream: %s of %zu bytes is over the cap of %zu", what, n,
			       cap);
	memcpy(dst, v, n);
	dst[n] = '\0';
	return 0;
}

static int sse_line(struct cli_sse *p, struct err *e)
{
	const char *l = p->line;
	size_t n = p->line_len;

	if (n == 0)
		return sse_dispatch(p);
	if (l[0] == ':')
		return 0;
	const char *colon = memchr(l, ':', n);
	size_t name_len = colon ? (size_t)(colon - l) : n;
	const char *v = colon ? colon + 1 : l + n;
	size_t vlen = n - (size_t)(v - l);
	if (vlen > 0 && v[0] == ' ') {
		v++;
		vlen--;
	}

	if (name_len == 5 && memcmp(l, "event", 5) == 0)
		return sse_set(p->type, CLI_SSE_TYPE_MAX, v, vlen, "event type", e);
	if (name_len == 2 && memcmp(l, "id", 2) == 0) {
		/* An id containing NUL is ignored, as the spec says. */
		if (memchr(v, '\0', vlen))
			return 0;
		return sse_set(p->last_id, CLI_SSE_ID_MAX, v, vlen, "event id", e);
	}
	if (name_len == 4 && memcmp(l, "data", 4) == 0) {
		size_t need = vlen + (p->has_data ? 1 : 0);
		if (p->data_len + need > CAP_EVENT_LEN)
			return err_set(e, ERR_TOO_LARGE,
				       "event stream: event data over the cap of %d bytes",
				       CAP_EVENT_LEN);
		if (p->has_data)
			p->data[p->data_len++] = '\n';
		memcpy(p->data + p->data_len, v, vlen);
		p->data_len += vlen;
		p->has_data = 1;
	}
	return 0;
}

int cli_sse_feed(struct cli_sse *p, const char *buf, size_t n, struct err *e)
{
	if (p->stopped)
		return p->stopped;
	for (size_t i = 0; i < n; i++) {
		char c = buf[i];
		if (c == '\n' && p->after_cr) {
			p->after_cr = 0;
			continue;
		}
		p->after_cr = (c == '\r');
		if (c == '\n' || c == '\r') {
			int rc = sse_line(p, e);
			p->line_len = 0;
			if (rc != 0) {
				p->stopped = rc;
				return rc;
			}
			continue;
		}
		if (p->line_len >= CLI_SSE_LINE_MAX) {
			/* Ends the stream: the rest of this line must not parse as a line. */
			p->stopped = ERR_TOO_LARGE;
			return err_set(e, ERR_TOO_LARGE,
				       "event stream: a line is over the cap of %d bytes",
				       CLI_SSE_LINE_MAX);
		}
		p->line[p->line_len++] = c;
	}
	return 0;
}
