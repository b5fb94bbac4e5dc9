/*
 * http: request helpers and replies of the facade (see http.h).
 */
#include "daemon/http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/util.h"

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *http_pct_decode(const char *s, size_t n, int plus_space)
{
	char *out = xmalloc(n + 1);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '%') {
			int hi = i + 1 < n ? hex_val(s[i + 1]) : -1;
			int lo = i + 2 < n ? hex_val(s[i + 2]) : -1;
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
				free(out);
				return NULL;
			}
			out[k++] = (char)(hi * 16 + lo);
			i += 2;
		} else if (c == '+' && plus_space) {
			out[k++] = ' ';
		} else if (c == 0) {
			free(out);
			return NULL;
		} else {
			out[k++] = c;
		}
	}
	out[k] = 0;
	return out;
}

char *http_query_get(const struct http_req *rq, const char *key, int *bad)
{
	*bad = 0;
	if (!rq->query)
		return NULL;
	size_t klen = strlen(key);
	const char *p = rq->query;
	while (*p) {
		size_t n = strcspn(p, "&");
		const char *eq = memchr(p, '=', n);
		size_t kn = eq ? (size_t)(eq - p) : n;
		char *k = http_pct_decode(p, kn, 1);
		if (!k) {
			*bad = 1;
			return NULL;
		}
		int hit = strlen(k) == klen && memcmp(k, key, klen) == 0;
		free(k);
		if (hit) {
			char *v = eq ? http_pct_decode(eq + 1, n - kn - 1, 1) : xstrdup("");
			if (!v)
				*bad = 1;
			return v;
		}
		p += n;
		if (*p == '&')
			p++;
	}
	return NULL;
}

const char *http_header(const struct http_req *rq, const char *name)
{
	return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

/*
 * The page loads only its own files (no inline script, style or handler),
 * talks only to this daemon, and no other site may frame it, so a page
 * elsewhere cannot overlay it to steer clicks on Delete or Pull. The same
 * headers go on every answer: a JSON or stream answer opened as a page gets
 * the same protection.
 */
static const char *const http_security_headers_table[][2] = {
    {"Content-Security-Policy",
     "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
     "frame-ancestors 'none'"},
    {"X-Frame-Options", "DENY"},
    {"X-Content-Type-Options", "nosniff"},
    {"Referrer-Policy", "no-referrer"},
};

void http_security_headers(struct MHD_Response *resp)
{
	size_t n = sizeof(http_security_headers_table) / sizeof(http_security_headers_table[0]);
	for (size_t i = 0; i < n; i++)
		MHD_add_response_header(resp, http_security_headers_table[i][0],
					http_security_headers_table[i][1]);
}

static void http_common_headers(struct MHD_Response *resp)
{
	http_security_headers(resp);
	MHD_add_response_header(resp, "Cache-Control", "no-store");
}

void http_set_retry_after(struct http_req *rq, int seconds)
{
	rq->extra_header = "Retry-After";
	snprintf(rq->extra_value, sizeof(rq->extra_value), "%d", seconds);
}

int http_queue(struct http_req *rq, int status, struct MHD_Response *resp)
{
	if (!resp)
		return MHD_NO;
	http_common_headers(resp);
	http_cors_headers(rq, resp);
	if (rq->extra_header)
		MHD_add_response_header(resp, rq->extra_header, rq->extra_value);
	rq->answered = 1;
	enum MHD_Result r = MHD_queue_response(rq->conn, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return r;
}

int http_reply_text(struct http_req *rq, int status, const char *content_type, const char *body,
		    size_t len, int copy)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
	    len, (void *)body, copy ? MHD_RESPMEM_MUST_COPY : MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", content_type);
	return http_queue(rq, status, resp);
}

int http_reply_json(struct http_req *rq, int status, json_t *body)
{
	if (!body) {
		/* json_pack refused a value (not UTF-8): a bug, answered as one. */
		static const char internal[] =
		    "{\"error\":{\"code\":\"internal\",\"message\":\"unencodable answer\"}}\n";
		return http_reply_text(rq, 500, "application/json", internal, sizeof(internal) - 1,
				       0);
	}
	char *s = json_dump_compact(body);
	json_decref(body);
	size_t n = strlen(s);
	s = xrealloc(s, n + 2);
	s[n++] = '\n';
	s[n] = 0;
	struct MHD_Response *resp = MHD_create_response_from_buffer(n, s, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(s);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	return http_queue(rq, status, resp);
}

int http_reply_status(struct http_req *rq, int status, const char *code, const char *msg)
{
	json_t *o = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
	if (status >= 500)
		log_warn("%s %s: %d %s", rq->method, rq->path ? rq->path : "", status, msg);
	return http_reply_json(rq, status, o);
}

int http_reply_err(struct http_req *rq, const struct err *e)
{
	int code = e->code ? e->code : ERR_INTERNAL;
	return http_reply_status(rq, err_http_status(code), err_name(code), err_msg(e));
}

int http_reply_error(struct http_req *rq, int code, const char *fmt, ...)
{
	char msg[ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Through err_set, which makes a message that quotes the request valid UTF-8. */
	struct err e;
	err_set(&e, code, "%s", msg);
	return http_reply_err(rq, &e);
}
