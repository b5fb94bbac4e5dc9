#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/util.h"

struct err_info {
	const char *name;
	const char *text;
	int http;
};

/* Indexed by -code. */
static const struct err_info err_table[ERR__COUNT] = {
    [0] = {"ok", "ok", 200},
    [-ERR_INVALID] = {"bad_request", "malformed request", 400},
    [-ERR_NOT_FOUND] = {"not_found", "not found", 404},
    [-ERR_CONFLICT] = {"conflict", "conflict with the current state", 409},
    [-ERR_TOO_LARGE] = {"too_large", "too large", 413},
    [-ERR_MEDIA] = {"unsupported_media_type", "unsupported content type", 415},
    [-ERR_UNPROCESSABLE] = {"unprocessable", "cannot process this request", 422},
    [-ERR_SHUTDOWN] = {"shutting_down", "the daemon is shutting down", 503},
    [-ERR_UNAUTHORIZED] = {"unauthorized", "missing or wrong token", 401},
    [-ERR_FORBIDDEN] = {"forbidden", "forbidden", 403},
    [-ERR_NOMEM] = {"out_of_memory", "out of memory", 500},
    [-ERR_IO] = {"io_error", "input/output error", 500},
    [-ERR_NOSPACE] = {"no_space", "not enough free disk space", 507},
    [-ERR_NETWORK] = {"network", "network error", 502},
    [-ERR_DIGEST] = {"digest_mismatch", "content does not match its digest", 502},
    [-ERR_CANCELLED] = {"cancelled", "cancelled", 409},
    [-ERR_TIMEOUT] = {"timeout", "timed out", 504},
    [-ERR_CORRUPT] = {"corrupt", "stored data is corrupt", 500},
    [-ERR_GATED] = {"gated", "gated repository: access not granted", 403},
    [-ERR_OFFLINE] = {"offline", "offline mode: network access disabled", 503},
    [-ERR_RETRY] = {"retry", "temporary failure, try again", 503},
    [-ERR_INTERNAL] = {"internal", "internal error", 500},
    [-ERR_UNSUPPORTED] = {"not_implemented", "not implemented", 501},
};

static const struct err_info *err_lookup(int code)
{
	if (code > 0 || code <= -ERR__COUNT)
		return &err_table[-ERR_INTERNAL];
	return &err_table[-code];
}

const char *err_name(int code)
{
	return err_lookup(code)->name;
}
const char *err_text(int code)
{
	return err_lookup(code)->text;
}
int err_http_status(int code)
{
	return err_lookup(code)->http;
}

void err_clear(struct err *e)
{
	if (!e)
		return;
	e->code = 0;
	e->msg[0] = '\0';
	e->reason = NULL;
}

/*
 * Messages quote untrusted input and go into log lines and JSON error
 * bodies, and jansson refuses invalid UTF-8: control bytes and every byte
 * of a broken sequence (also one cut by the message's size) become '?'.
 */
static void err_sanitize(char *msg)
{
	unsigned char *p = (unsigned char *)msg;
	unsigned char *end = p + strlen(msg);
	while (p < end) {
		size_t n = utf8_valid_len(p, (size_t)(end - p));
		if (n == 0 || (n == 1 && (*p < 0x20 || *p == 0x7f))) {
			*p++ = '?';
			continue;
		}
		p += n;
	}
}

int err_set(struct err *e, int code, const char *fmt, ...)
{
	if (!e)
		return code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	err_sanitize(e->msg);
	e->code = code;
	e->reason = NULL;
	return code;
}

int err_prefix(struct err *e, const char *fmt, ...)
{
	if (!e)
		return ERR_INTERNAL;
	char ctx[ERR_MSG_MAX];
	char old[ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ctx, sizeof(ctx), fmt, ap);
	va_end(ap);
	snprintf(old, sizeof(old), "%s", err_msg(e));
	snprintf(e->msg, sizeof(e->msg), "%s: %s", ctx, old);
	err_sanitize(e->msg);
	return e->code;
}

const char *err_msg(const struct err *e)
{
	if (!e)
		return "";
	return e->msg[0] ? e->msg : err_text(e->code);
}
