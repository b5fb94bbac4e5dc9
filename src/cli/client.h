/*
 * cli_client: the CLI's side of the daemon's HTTP API (docs/api.md), over
 * libcurl. Finds the daemon (--url, $RBEE_HIVE_URL, http://127.0.0.1:7835),
 * carries the bearer token (--token-file, $RBEE_HIVE_TOKEN), turns "nobody
 * listens" into a message that says how to start a daemon, and turns the
 * daemon's JSON errors into a struct err. Also follows an event stream,
 * feeding a cli_sse parser, until it ends, the parser stops or the caller's
 * interrupt flag is set.
 *
 * A struct cli_client is caller-owned and used from one thread. The token is
 * kept only inside the Authorization header string and never printed.
 */
#ifndef RBEE_CLI_CLIENT_H
#define RBEE_CLI_CLIENT_H

#include <jansson.h>
#include <signal.h>
#include <stdint.h>

#include "core/caps.h"

struct err;
struct cli_sse;

#define CLI_DEFAULT_URL "http://127.0.0.1:7835"

struct cli_client {
	char base[CAP_URL_LEN + 1]; /* without a trailing '/' */
	char *auth;		    /* "Authorization: Bearer ...", or NULL */
};

/*
 * url and token_file are the command-line values or NULL. Returns 0, or
 * ERR_INVALID / ERR_IO with a message (bad URL, unreadable token file).
 */
int cli_client_init(struct cli_client *c, const char *url, const char *token_file, struct err *e);
void cli_client_cleanup(struct cli_client *c);

/*
 * One request. path starts with '/'; body may be NULL. *status gets the HTTP
 * status and *answer the parsed JSON answer (NULL when the body is empty or
 * not JSON). Returns 0 whenever the daemon answered (whatever the status),
 * else ERR_NETWORK with "no daemon answers at URL (...)" or the transfer's
 * failure, or ERR_TOO_LARGE when the answer is over CAP_CLIENT_ANSWER.
 */
int cli_client_call(struct cli_client *c, const char *method, const char *path, const json_t *body,
		    long *status, json_t **answer, struct err *e);

/*
 * The daemon's error answer as a message in e: its "error.message". An
 * answer without one is not the API's error body, so the server is named
 * as something else: "URL: not an rbee-hive daemon (HTTP 404 ...)".
 * Returns the ERR_* code that matches the status.
 */
int cli_client_error(const struct cli_client *c, long status, const json_t *answer, struct err *e);
/* Sets e to "URL: not an rbee-hive daemon (why)" and returns ERR_NETWORK. */
int cli_client_foreign(const struct cli_client *c, const char *why, struct err *e);

/* Percent-encodes one path segment (everything but unreserved characters). Caller frees. */
char *cli_url_segment(const char *s);

/* Called about ten times a second while a stream is open. */
typedef void (*cli_tick_fn)(void *arg);

enum cli_stream_end {
	CLI_STREAM_EOF = 0,		/* the daemon closed the stream */
	CLI_STREAM_INTERRUPTED = -1000, /* *stop became nonzero */
};

/*
 * GETs path as text/event-stream (with Last-Event-ID when the parser has
 * seen an id) and feeds the parser. Returns the parser's stop value (> 0)
 * when its callback ended the stream, CLI_STREAM_EOF when the connection
 * ended first, CLI_STREAM_INTERRUPTED once *stop is set (checked every
 * 100 ms), or a negative ERR_* with a message (no daemon, HTTP error status,
 * a stream line over its cap, a stream silent for too long).
 */
int cli_client_stream(struct cli_client *c, const char *path, struct cli_sse *p,
		      volatile sig_atomic_t *stop, cli_tick_fn tick, void *arg, struct err *e);

/* Progress of an upload: bytes of the file sent (or already held) of total. */
typedef void (*cli_upload_fn)(void *arg, uint64_t sent, uint64_t total);

/*
 * Makes the daemon hold the size bytes of the open file fd as content
 * sha256 (PUT /v1/blobs/sha256:HEX, docs/api.md), reading fd from offset 0
 * with pread and never past size. Nothing is sent when the daemon already
 * holds it; an upload an earlier run left unfinished is resumed at the
 * daemon's Upload-Offset, and started over when the daemon refuses what
 * was kept. mode is the file's mode: the daemon keeps the blob no more
 * readable than the file. progress may be NULL. Returns 0, ERR_NOT_FOUND
 * when the daemon takes no uploads (an older one), or another ERR_* with
 * the daemon's message (a digest mismatch: the file changed while read).
 */
int cli_client_upload(struct cli_client *c, int fd, uint64_t size, const char *sha256,
		      unsigned mode, cli_upload_fn progress, void *arg, struct err *e);

#endif
