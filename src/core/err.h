/*
 * err: the one error convention of rbee-hive.
 *
 * Every fallible function returns int: 0 on success or a negative ERR_* code.
 * One table maps each code to a stable name (used in JSON error bodies), a
 * default message and an HTTP status. A function that judges input from a
 * user, a file or the network also fills a caller-owned struct err so that
 * the user reads what was wrong and where.
 */
#ifndef RBEE_CORE_ERR_H
#define RBEE_CORE_ERR_H

#include <stddef.h>

#define ERR_MSG_MAX 256

enum err_code {
	ERR_OK = 0,
	ERR_INVALID = -1,	/* malformed input: 400 bad_request */
	ERR_NOT_FOUND = -2,	/* 404 not_found */
	ERR_CONFLICT = -3,	/* state forbids it: 409 conflict */
	ERR_TOO_LARGE = -4,	/* over a cap: 413 too_large */
	ERR_MEDIA = -5,		/* wrong content type: 415 unsupported_media_type */
	ERR_UNPROCESSABLE = -6, /* well-formed but meaningless: 422 unprocessable */
	ERR_SHUTDOWN = -7,	/* 503 shutting_down */
	ERR_UNAUTHORIZED = -8,	/* 401 unauthorized */
	ERR_FORBIDDEN = -9,	/* 403 forbidden */
	ERR_NOMEM = -10,	/* 500 out_of_memory */
	ERR_IO = -11,		/* disk or OS failure: 500 io_error */
	ERR_NOSPACE = -12,	/* 507 no_space */
	ERR_NETWORK = -13,	/* upstream unreachable or misbehaving: 502 network */
	ERR_DIGEST = -14,	/* hash or size mismatch: 502 digest_mismatch */
	ERR_CANCELLED = -15,	/* the operation was cancelled: 409 cancelled */
	ERR_TIMEOUT = -16,	/* 504 timeout */
	ERR_CORRUPT = -17,	/* stored data is damaged: 500 corrupt */
	ERR_GATED = -18,	/* gated repo, no access: 403 gated */
	ERR_OFFLINE = -19,	/* offline mode forbids the network: 503 offline */
	ERR_RETRY = -20,	/* transient: try again later: 503 retry */
	ERR_INTERNAL = -21,	/* a bug: 500 internal */
	ERR_UNSUPPORTED = -22,	/* not something this program does: 501 not_implemented */
	ERR__COUNT = 23
};

struct err {
	int code;
	char msg[ERR_MSG_MAX];
	/*
	 * The upstream's own name for this error when a caller above needs to
	 * tell such errors apart (the Hub's X-Error-Code: "RepoNotFound",
	 * "RevisionNotFound", "EntryNotFound", "GatedRepo"); a static string, or
	 * NULL. err_set and err_clear reset it; messages are for people.
	 */
	const char *reason;
};

/* Stable lower_snake name of a code ("not_found"); "internal" if unknown. */
const char *err_name(int code);
/* Default human text of a code ("not found"). */
const char *err_text(int code);
/* HTTP status for a code (200 for ERR_OK). */
int err_http_status(int code);

/* Clears e (code 0, empty message). e may be NULL. */
void err_clear(struct err *e);

/*
 * Sets e->code and formats e->msg; returns code so callers can write
 * `return err_set(e, ERR_INVALID, "...")`. e may be NULL (then only returns).
 */
int err_set(struct err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * Prefixes an existing message with context: "ctx: old message". Returns
 * e->code. Used when a lower layer's message is passed up.
 */
int err_prefix(struct err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The message of e, or the default text of its code when the message is empty. */
const char *err_msg(const struct err *e);

#endif
