/*
 * cli_sse: an incremental parser of a text/event-stream (the WHATWG
 * Server-Sent Events format), fed with whatever chunks libcurl hands the
 * write callback. Lines end in LF, CRLF or CR (a CRLF split across two
 * chunks is one line end); "event:", "data:" and "id:" fields are kept,
 * comments (':') and unknown fields are ignored, a blank line dispatches the
 * event. Several data lines join with '\n'.
 *
 * Every buffer is fixed-size inside the caller-owned struct: a line over
 * CLI_SSE_LINE_MAX bytes, or an event's data over CAP_EVENT_LEN, is an error
 * (ERR_TOO_LARGE), never a reallocation. The last event id survives across
 * events so a dropped stream can be resumed with Last-Event-ID.
 */
#ifndef RBEE_CLI_SSE_H
#define RBEE_CLI_SSE_H

#include <stddef.h>

#include "core/caps.h"

struct err;

/* A line holds one field name, ": " and at most one event's data. */
#define CLI_SSE_LINE_MAX (CAP_EVENT_LEN + 64)
#define CLI_SSE_TYPE_MAX 64
#define CLI_SSE_ID_MAX 128

struct cli_sse_event {
	const char *type; /* "message" when the event had no "event:" field */
	const char *data; /* NUL-terminated; data_len excludes the NUL */
	size_t data_len;
	const char *id; /* the last event id seen so far ("" if none) */
};

/* Returns 0 to go on, anything else to stop the parser (cli_sse_feed returns it). */
typedef int (*cli_sse_fn)(const struct cli_sse_event *ev, void *arg);

struct cli_sse {
	cli_sse_fn fn;
	void *arg;
	int after_cr; /* the previous byte was a CR: a following LF is not a new line */
	int has_data; /* a data field was seen since the last dispatch */
	int stopped;  /* the callback asked to stop; further input is ignored */
	size_t line_len;
	size_t data_len;
	char line[CLI_SSE_LINE_MAX + 1];
	char data[CAP_EVENT_LEN + 1];
	char type[CLI_SSE_TYPE_MAX + 1];
	char last_id[CLI_SSE_ID_MAX + 1];
};

/* Starts a parser; fn is called once per dispatched event. */
void cli_sse_init(struct cli_sse *p, cli_sse_fn fn, void *arg);

/*
 * Feeds n bytes. Returns 0, the callback's nonzero value when it asked to
 * stop, or ERR_TOO_LARGE with a message when a line or an event is over its
 * cap. Either ends the stream: later feeds return the same value without
 * parsing, until cli_sse_reset().
 */
int cli_sse_feed(struct cli_sse *p, const char *buf, size_t n, struct err *e);

/*
 * Forgets a partly received line and event (a reconnect starts a fresh
 * stream) but keeps the last event id, which the caller sends back as
 * Last-Event-ID.
 */
void cli_sse_reset(struct cli_sse *p);

#endif
