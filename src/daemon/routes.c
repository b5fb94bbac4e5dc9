/*
 * routes: the route table of the HTTP API (docs/api.md) and its handlers.
 *
 * A pattern is matched against the raw (still percent-encoded) path one
 * segment at a time: a literal matches itself, ":" matches one segment and
 * "*" the rest of the path (for model ids, which hold '/'). Parameters are
 * decoded strictly after the match; a bad encoding is a 400.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <microhttpd.h>

#include "core/cancel.h"
#include "core/caps.h"
#include "core/err.h"
#include "core/parse.h"
#include "core/log.h"
#include "core/sha256.h"
#include "core/util.h"
#include "provision/provision.h"
#include "daemon/http.h"
#include "daemon/ui_assets.h"
#include "jobs/job.h"
#include "provision/hfapi.h"
#include "store/layout.h"
#include "store/upload.h"

typedef int (*route_fn)(struct http_req *rq);

static size_t route_match(const char *pattern, const char *path, const char **starts, size_t *lens);

struct route {
	const char *method;
	const char *pattern;
	route_fn fn;
};

/*
 * A refused submission keeps its status and error, and names the failed job
 * that records it (jobs/job.h, job_refuse) when there is one: rbee's client
 * reads any answer of a submission as {job_id, sse_url}, then prints the
 * stream, which says why.
 */
static int route_submit_refused(struct http_req *rq, const struct err *e, const char *id,
				const char *url)
{
	if (!id[0])
		return http_reply_err(rq, e);
	json_t *o = json_pack("{s:{s:s,s:s},s:s,s:s}", "error", "code", err_name(e->code),
			      "message", err_msg(e), "job_id", id, "sse_url", url);
	return http_reply_json(rq, err_http_status(e->code), o);
}

static int route_submit(struct http_req *rq)
{
	const char *ct = http_header(rq, "Content-Type");
	size_t n = ct ? strcspn(ct, "; \t") : 0;
	struct err e;
	err_clear(&e);
	char id[JOB_ID_MAX] = "";
	int rc;
	if (!ct || n != strlen("application/json") || strncasecmp(ct, "application/json", n) != 0)
		rc = err_set(&e, ERR_MEDIA, "Content-Type must be application/json");
	else if (!rq->body_len)
		rc = err_set(&e, ERR_INVALID, "request body is empty: expected a job");
	else
		rc = job_submit_json(rq->d->jobs, rq->body, rq->body_len, id, &e);
	/* job_submit_json keeps its own refusals; these are the ones before it. */
	if (rc < 0 && !id[0] && rc != ERR_SHUTDOWN)
		job_refuse(rq->d->jobs, NULL, &e, id);
	char url[JOB_ID_MAX + 32];
	snprintf(url, sizeof(url), "/v1/jobs/%s/stream", id);
	if (rc < 0)
		return route_submit_refused(rq, &e, id, url);
	return http_reply_json(rq, MHD_HTTP_CREATED,
			       json_pack("{s:s,s:s}", "job_id", id, "sse_url", url));
}

static int route_jobs(struct http_req *rq)
{
	int bad;
	char *state = http_query_get(rq, "state", &bad);
	if (bad)
		return http_reply_error(rq, ERR_INVALID, "query: bad percent-encoding");
	struct err e;
	err_clear(&e);
	json_t *o = NULL;
	int rc = job_list_json(rq->d->jobs, state, &o, &e);
	free(state);
	return rc < 0 ? http_reply_err(rq, &e) : http_reply_json(rq, MHD_HTTP_OK, o);
}

static int route_job(struct http_req *rq)
{
	struct err e;
	err_clear(&e);
	json_t *o = NULL;
	if (job_get_json(rq->d->jobs, rq->params[0], &o, &e) < 0)
		return http_reply_err(rq, &e);
	return http_reply_json(rq, MHD_HTTP_OK, o);
}

static int route_stream(struct http_req *rq)
{
	uint64_t last = 0;
	const char *h = http_header(rq, "Last-Event-ID");
	struct err e;
	err_clear(&e);
	if (h && h[0] && parse_u64_str(h, 0, UINT64_MAX / 2, &last, "Last-Event-ID", &e) < 0)
		return http_reply_err(rq, &e);
	return http_reply_job_stream(rq, rq->params[0], (unsigned long long)last);
}

static int route_cancel(struct http_req *rq)
{
	struct err e;
	err_clear(&e);
	enum job_state st;
	int rc = job_cancel(rq->d->jobs, rq->params[0], &st, &e);
	if (rc == ERR_CONFLICT) {
		json_t *o =
		    json_pack("{s:{s:s,s:s},s:s,s:s}", "error", "code", err_name(rc), "message",
			      err_msg(&e), "job_id", rq->params[0], "status", job_state_name(st));
		return http_reply_json(rq, err_http_status(rc), o);
	}
	if (rc < 0)
		return http_reply_err(rq, &e);
	return http_reply_json(
	    rq, MHD_HTTP_OK,
	    json_pack("{s:s,s:s}", "job_id", rq->params[0], "status", "cancelled"));
}

/*
 * Checks that every query parameter is one of keys (NULL-terminated) and
 * none is given twice: a misspelt or repeated parameter is a 400, not a
 * silently different answer. Returns 0 or ERR_INVALID.
 */
static int route_query_check(const struct http_req *rq, const char *const *keys, struct err *e)
{
	unsigned seen = 0;
	for (const char *p = rq->query; p && *p;) {
		size_t n = strcspn(p, "&");
		const char *eq = memchr(p, '=', n);
		char *k = http_pct_decode(p, eq ? (size_t)(eq - p) : n, 1);
		if (!k)
			return err_set(e, ERR_INVALID, "query: bad percent-encoding");
		size_t i = 0;
		while (keys[i] && strcmp(keys[i], k) != 0)
			i++;
		int rc = 0;
		if (!keys[i])
			rc = err_set(e, ERR_INVALID, "query: unknown parameter '%.64s'", k);
		else if (seen & (1u << i))
			rc = err_set(e, ERR_INVALID, "query: parameter '%s' given twice", keys[i]);
		free(k);
		if (rc < 0)
			return rc;
		seen |= 1u << i;
		p += n;
		if (*p == '&')
			p++;
	}
	return 0;
}

/* A decimal query parameter in [min, max], or dflt when absent. */
static int route_query_u64(const struct http_req *rq, const char *key, uint64_t min, uint64_t max,
			   uint64_t dflt, uint64_t *out, struct err *e)
{
	int bad;
	char *v = http_query_get(rq, key, &bad);
	if (bad)
		return err_set(e, ERR_INVALID, "query: bad percent-encoding");
	*out = dflt;
	int rc = v ? parse_u64_str(v, min, max, out, key, e) : 0;
	free(v);
	return rc;
}

static int route_models(struct http_req *rq)
{
	static const char *const keys[] = {"limit", "offset", NULL};
	struct err e;
	err_clear(&e);
	uint64_t limit, offset;
	char *text = NULL;
	size_t len = 0;
	if (route_query_check(rq, keys, &e) < 0 ||
	    route_query_u64(rq, "limit", 1, CAP_MODELS_PAGE, CAP_MODELS_PAGE_DEFAULT, &limit, &e) <
		0 ||
	    route_query_u64(rq, "offset", 0, CAP_CATALOG_MODELS, 0, &offset, &e) < 0 ||
	    job_models_list_text(rq->d->jobs, (size_t)offset, (size_t)limit, &text, &len, &e) < 0)
		return http_reply_err(rq, &e);
	int r = http_reply_text(rq, MHD_HTTP_OK, "application/json", text, len, 1);
	free(text);
	return r;
}

static int route_model(struct http_req *rq)
{
	struct err e;
	err_clear(&e);
	json_t *o = NULL;
	if (job_model_get_json(rq->d->jobs, rq->params[0], &o, &e) < 0)
		return http_reply_err(rq, &e);
	return http_reply_json(rq, MHD_HTTP_OK, o);
}

static int route_model_delete(struct http_req *rq)
{
	struct err e;
	err_clear(&e);
	json_t *o = NULL;
	if (job_model_delete(rq->d->jobs, rq->params[0], &o, &e) < 0)
		return http_reply_err(rq, &e);
	return http_reply_json(rq, MHD_HTTP_OK, o);
}

static int route_partials(struct http_req *rq)
{
	struct err e;
	err_clear(&e);
	json_t *o = NULL;
	if (job_partials_list_json(rq->d->jobs, &o, &e) < 0)
		return http_reply_err(rq, &e);
	return http_reply_json(rq, MHD_HTTP_OK, o);
}

static int route_partial_delete(struct http_req *rq)
{
	int bad;
	char *repo_dir = http_query_get(rq, "repo_dir", &bad);
	if (bad)
		return http_reply_error(rq, ERR_INVALID, "query: bad percent-encoding");
	struct err e;
	err_clear(&e);
	json_t *o = NULL;
	int rc = job_partial_delete(rq->d->jobs, rq->params[0], repo_dir, &o, &e);
	free(repo_dir);
	return rc < 0 ? http_reply_err(rq, &e) : http_reply_json(rq, MHD_HTTP_OK, o);
}

/*
 * One listing of a Hub repo, under the caps of GET /v1/sources: a few at
 * once (each holds a connection thread and up to a Hub page in memory), a
 * deadline for the whole, and a cancel when the client leaves or the daemon
 * stops, so that nobody waits for an answer no one will read.
 */
static int route_sources_list(struct http_req *rq, const char *rev, json_t **o, struct err *e)
{
	struct daemon *d = rq->d;
	struct cancel_token *cancel = NULL;
	if (http_upstream_begin(rq, "repository listings", &cancel, e) < 0)
		return e->code;
	int rc = hf_repo_files_json(d->prov_cfg, rq->params[0], rq->params[1], rev, cancel, o, e);
	int why = http_upstream_end(rq, cancel);
	if (rc == 0 || !why)
		return rc;
	json_decref(*o);
	*o = NULL;
	if (why == ERR_TIMEOUT)
		return err_set(e, ERR_TIMEOUT,
			       "listing %s/%s took longer than %ld s; try again later, or pull "
			       "by quantization tag or file path without listing",
			       rq->params[0], rq->params[1], d->sources_deadline_ms / 1000);
	if (why == ERR_SHUTDOWN)
		return err_set(e, ERR_SHUTDOWN, "the daemon is shutting down");
	return err_set(e, ERR_CANCELLED, "the client went away");
}

static int route_sources(struct http_req *rq)
{
	if (!rq->d->prov_cfg)
		return http_reply_status(rq, MHD_HTTP_NOT_IMPLEMENTED, "not_implemented",
					 "repository listings are not available in this daemon");
	int bad;
	char *rev = http_query_get(rq, "revision", &bad);
	struct err e;
	err_clear(&e);
	json_t *o = NULL;
	int rc;
	if (bad)
		return http_reply_error(rq, ERR_INVALID, "query: bad percent-encoding");
	/* A name or revision that cannot exist on the Hub is a bad ref: 422. */
	if ((rc = name_check_hub(rq->params[0], strlen(rq->params[0]), &e)) < 0 ||
	    (rc = name_check_hub(rq->params[1], strlen(rq->params[1]), &e)) < 0 ||
	    (rev && (rc = revision_check(rev, strlen(rev), &e)) < 0)) {
		free(rev);
		e.code = ERR_UNPROCESSABLE;
		return http_reply_err(rq, &e);
	}
	rc = route_sources_list(rq, rev, &o, &e);
	free(rev);
	if (rc < 0)
		return http_reply_err(rq, &e);
	return http_reply_json(rq, MHD_HTTP_OK, o);
}

/*
 * Uploaded content lives in the repo folder of local files, where a
 * file:///PATH#sha256=HEX job finds it.
 */
#define ROUTE_BLOB_DIR LAYOUT_FILES_DIR
#define ROUTE_DIGEST_PREFIX "sha256:"

/* The 64 hex digits of a "sha256:HEX" path parameter into hex. */
static int route_digest(const struct http_req *rq, char hex[65], struct err *e)
{
	const char *p = rq->params[0];
	size_t pl = strlen(ROUTE_DIGEST_PREFIX);
	if (strncmp(p, ROUTE_DIGEST_PREFIX, pl) != 0 || !sha256_hex_valid(p + pl))
		return err_set(e, ERR_INVALID,
			       "blob '%.80s': expected sha256: and 64 lowercase hex digits", p);
	memcpy(hex, p + pl, 65);
	return 0;
}

static int route_no_uploads(struct http_req *rq)
{
	return http_reply_status(rq, MHD_HTTP_NOT_IMPLEMENTED, "not_implemented",
				 "this daemon has no hub cache to upload to");
}

/* Tells the client where an upload stands: the bytes the daemon holds. */
static void route_set_offset(struct http_req *rq, uint64_t offset)
{
	rq->extra_header = "Upload-Offset";
	snprintf(rq->extra_value, sizeof(rq->extra_value), "%llu", (unsigned long long)offset);
}

static int route_blob(struct http_req *rq)
{
	if (!rq->d->layout)
		return route_no_uploads(rq);
	struct err e;
	err_clear(&e);
	char hex[65];
	uint64_t size = 0, offset = 0;
	int rc = route_digest(rq, hex, &e);
	if (rc == 0)
		rc = upload_status(rq->d->layout, ROUTE_BLOB_DIR, hex, &size, &offset, &e);
	if (rc < 0)
		return http_reply_err(rq, &e);
	if (rc == 1)
		return http_reply_json(rq, MHD_HTTP_OK,
				       json_pack("{s:s+,s:I}", "digest", ROUTE_DIGEST_PREFIX, hex,
						 "size", (json_int_t)size));
	route_set_offset(rq, offset);
	return http_reply_error(rq, ERR_NOT_FOUND,
				"no blob sha256:%s; an upload may resume at offset %llu", hex,
				(unsigned long long)offset);
}

int http_route_streams(const struct http_req *rq)
{
	const char *starts[HTTP_MAX_PARAMS];
	size_t lens[HTTP_MAX_PARAMS];
	return strcmp(rq->method, "PUT") == 0 &&
	       route_match("/v1/blobs/:", rq->path, starts, lens) != 0;
}

int http_upload_begin(struct http_req *rq)
{
	static const char *const keys[] = {"offset", "mode", NULL};
	if (!rq->d->layout)
		return route_no_uploads(rq);
	const char *starts[HTTP_MAX_PARAMS];
	size_t lens[HTTP_MAX_PARAMS];
	route_match("/v1/blobs/:", rq->path, starts, lens);
	char *v = http_pct_decode(starts[0], lens[0], 0);
	if (!v)
		return http_reply_error(rq, ERR_INVALID, "path: bad percent-encoding");
	rq->params[rq->n_params++] = v;
	struct err e;
	err_clear(&e);
	char hex[65];
	uint64_t offset = 0, length = 0, kept = 0;
	unsigned mode = 0644;
	int bad = 0;
	char *m = http_query_get(rq, "mode", &bad);
	const char *cl = http_header(rq, "Content-Length");
	int rc = route_digest(rq, hex, &e);
	if (rc == 0)
		rc = route_query_check(rq, keys, &e);
	if (rc == 0)
		rc = route_query_u64(rq, "offset", 0, CAP_UPLOAD_SIZE, 0, &offset, &e);
	if (rc == 0 && bad)
		rc = err_set(&e, ERR_INVALID, "query: bad percent-encoding");
	if (rc == 0 && m)
		rc = parse_mode(m, &mode, "mode", &e);
	free(m);
	if (rc < 0)
		return http_reply_err(rq, &e);
	if (!cl)
		return http_reply_status(rq, MHD_HTTP_LENGTH_REQUIRED, "length_required",
					 "an upload needs a Content-Length");
	rc = parse_u64_str(cl, 0, CAP_UPLOAD_SIZE, &length, "Content-Length", &e);
	if (rc == 0)
		rc = upload_begin(rq->d->layout, ROUTE_BLOB_DIR, hex, offset, length, mode,
				  &rq->upload, &kept, &e);
	if (rc == 1)
		return http_reply_json(rq, MHD_HTTP_OK,
				       json_pack("{s:s+,s:I,s:s}", "digest", ROUTE_DIGEST_PREFIX,
						 hex, "size", (json_int_t)(offset + length),
						 "status", "present"));
	if (rc == ERR_CONFLICT)
		route_set_offset(rq, kept);
	if (rc < 0)
		return http_reply_err(rq, &e);
	return MHD_YES;
}

int http_upload_data(struct http_req *rq, const char *data, size_t n)
{
	struct err e;
	err_clear(&e);
	if (upload_write(rq->upload, data, n, &e) < 0)
		return http_reply_err(rq, &e);
	return MHD_YES;
}

int http_upload_end(struct http_req *rq)
{
	struct err e;
	err_clear(&e);
	uint64_t size = upload_offset(rq->upload);
	int rc = upload_finish(rq->upload, &e);
	/* The lock is released now, not when the connection is done. */
	upload_free(rq->upload);
	rq->upload = NULL;
	if (rc < 0)
		return http_reply_err(rq, &e);
	log_info("upload of sha256:%s complete (%llu bytes)", rq->params[0] + 7,
		 (unsigned long long)size);
	return http_reply_json(rq, MHD_HTTP_CREATED,
			       json_pack("{s:s,s:I,s:s}", "digest", rq->params[0], "size",
					 (json_int_t)size, "status", "stored"));
}

/*
 * "ok" as text, which is what rbee's keeper and scripts read; a client that
 * asks for JSON gets this hive's identity and access policy too.
 */
static int route_health(struct http_req *rq)
{
	static const char ok[] = "ok\n";
	const struct daemon *d = rq->d;
	const char *accept = http_header(rq, "Accept");
	if (!accept || !strstr(accept, "application/json"))
		return http_reply_text(rq, MHD_HTTP_OK, "text/plain; charset=utf-8", ok,
				       sizeof(ok) - 1, 0);
	return http_reply_json(rq, MHD_HTTP_OK,
			       json_pack("{s:s,s:s?,s:s?,s:s,s:i,s:o}", "status", "ok", "hive_id",
					 d->hive_id, "queen_url", d->queen_url, "bind", d->bind,
					 "port", d->port, "access", http_access_json(d)));
}

/*
 * The routes of rbee's own hive that are not model provisioning: rbee's
 * queen and keeper call them, and a clear 501 tells their user what this
 * daemon is, where a 404 would look like a broken install.
 */
static int route_not_provided(struct http_req *rq)
{
	return http_reply_error(rq, ERR_UNSUPPORTED,
				"rbee-hive provisions model files (download, list, get, delete and "
				"verify through POST /v1/jobs); it does not run workers, report "
				"devices or send heartbeats, so %.64s is not available",
				rq->path);
}

static int route_shutdown(struct http_req *rq)
{
	if (!rq->d->shutdown)
		return http_reply_error(rq, ERR_UNSUPPORTED,
					"this daemon cannot be stopped over HTTP");
	log_info("stopping on POST /v1/shutdown");
	int r = http_reply_json(rq, MHD_HTTP_OK, json_pack("{s:s}", "status", "stopping"));
	rq->d->shutdown(rq->d->shutdown_arg);
	return r;
}

/* A CORS preflight of an --allow-origin origin (the guard let it through without a token). */
static int route_preflight(struct http_req *rq)
{
	return http_reply_text(rq, MHD_HTTP_NO_CONTENT, "text/plain; charset=utf-8", "", 0, 0);
}

static void metric(char **buf, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void metric(char **buf, size_t *len, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	*buf = xrealloc(*buf, *len + (size_t)n + 1);
	memcpy(*buf + *len, line, (size_t)n + 1);
	*len += (size_t)n;
}

static int route_metrics(struct http_req *rq)
{
	struct job_stats st;
	job_stats_get(rq->d->jobs, &st);
	char *b = NULL;
	size_t n = 0;
	metric(&b, &n,
	       "# HELP rbee_jobs Jobs kept by the daemon, by state.\n"
	       "# TYPE rbee_jobs gauge\n");
	for (int s = 0; s < JOB__STATES; s++)
		metric(&b, &n, "rbee_jobs{state=\"%s\"} %ld\n", job_state_name((enum job_state)s),
		       st.by_state[s]);
	metric(&b, &n,
	       "# HELP rbee_bytes_downloaded_total Bytes downloaded since start.\n"
	       "# TYPE rbee_bytes_downloaded_total counter\n"
	       "rbee_bytes_downloaded_total %llu\n",
	       (unsigned long long)st.bytes_downloaded);
	metric(&b, &n,
	       "# HELP rbee_active_transfers Downloads running now.\n"
	       "# TYPE rbee_active_transfers gauge\nrbee_active_transfers %ld\n",
	       st.active_transfers);
	metric(&b, &n,
	       "# HELP rbee_streams Job event streams open now.\n"
	       "# TYPE rbee_streams gauge\nrbee_streams %ld\n",
	       (long)atomic_load(&rq->d->streams));
	metric(&b, &n,
	       "# HELP rbee_http_connections HTTP connections open now.\n"
	       "# TYPE rbee_http_connections gauge\nrbee_http_connections %ld\n",
	       http_connections(rq->d));
	metric(&b, &n,
	       "# HELP rbee_http_requests_total HTTP requests received.\n"
	       "# TYPE rbee_http_requests_total counter\nrbee_http_requests_total %llu\n",
	       (unsigned long long)atomic_load(&rq->d->requests));
	if (st.catalog_models >= 0) {
		metric(&b, &n,
		       "# HELP rbee_catalog_models Models in the catalog.\n"
		       "# TYPE rbee_catalog_models gauge\nrbee_catalog_models %ld\n",
		       st.catalog_models);
		metric(&b, &n,
		       "# HELP rbee_catalog_bytes Bytes of the models in the catalog.\n"
		       "# TYPE rbee_catalog_bytes gauge\nrbee_catalog_bytes %llu\n",
		       (unsigned long long)st.catalog_bytes);
	}
	if (rq->d->prov && rq->d->prov->ops->bytes) {
		struct prov_bytes pb = {0};
		rq->d->prov->ops->bytes(rq->d->prov, &pb);
		metric(
		    &b, &n,
		    "# HELP rbee_source_bytes_total Bytes of blobs each source delivered: a peer "
		    "hive, the site's blob store (s3) or the origin (cdn).\n"
		    "# TYPE rbee_source_bytes_total counter\n");
		for (int s = PROV_SRC_PEER; s < PROV__SOURCES; s++)
			metric(&b, &n, "rbee_source_bytes_total{source=\"%s\"} %llu\n",
			       prov_source_name((enum prov_source)s),
			       (unsigned long long)pb.from[s]);
		metric(
		    &b, &n,
		    "# HELP rbee_store_uploaded_bytes_total Bytes of blobs uploaded to the site's "
		    "blob store.\n"
		    "# TYPE rbee_store_uploaded_bytes_total counter\n"
		    "rbee_store_uploaded_bytes_total %llu\n",
		    (unsigned long long)pb.uploaded);
	}
	struct MHD_Response *resp = MHD_create_response_from_buffer(n, b, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(b);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	http_security_headers(resp);
	http_cors_headers(rq, resp);
	rq->answered = 1;
	enum MHD_Result r = MHD_queue_response(rq->conn, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return r;
}

static int route_asset(struct http_req *rq)
{
	const char *path = strcmp(rq->path, "/") == 0 ? "/index.html" : rq->path;
	for (const struct ui_asset *a = ui_assets; a->path; a++) {
		if (strcmp(a->path, path) == 0)
			return http_reply_text(rq, MHD_HTTP_OK, a->content_type,
					       (const char *)a->data, a->len, 0);
	}
	return http_reply_error(rq, ERR_NOT_FOUND, "no such page: %.200s", rq->path);
}

static const struct route routes[] = {
    {"POST", "/v1/jobs", route_submit},
    {"GET", "/v1/jobs", route_jobs},
    {"GET", "/v1/jobs/:", route_job},
    {"DELETE", "/v1/jobs/:", route_cancel},
    {"GET", "/v1/jobs/:/stream", route_stream},
    {"POST", "/v1/jobs/:/cancel", route_cancel},
    {"GET", "/v1/models", route_models},
    {"GET", "/v1/models/*", route_model},
    {"DELETE", "/v1/models/*", route_model_delete},
    {"GET", "/v1/partials", route_partials},
    {"DELETE", "/v1/partials/:", route_partial_delete},
    {"GET", "/v1/sources/hf/:/:", route_sources},
    {"GET", "/v1/blobs/:", route_blob},
    {"GET", "/v1/capabilities", route_not_provided},
    {"GET", "/v1/heartbeats/stream", route_not_provided},
    {"POST", "/v1/shutdown", route_shutdown},
    {"GET", "/health", route_health},
    {"GET", "/metrics", route_metrics},
    /* The Hub's paths (mirror.c), after every route of ours so that none shadows one. */
    {"GET", "/api/models/:/:", mirror_info},
    {"GET", "/api/models/:/:/revision/*", mirror_info},
    {"GET", "/api/models/:/:/tree/:", mirror_tree},
    {"GET", "/api/models/:/:/tree/:/*", mirror_tree},
    {"POST", "/api/models/:/:/paths-info/*", mirror_paths_info},
    {"GET", "/:/:/resolve/:/*", mirror_resolve},
    {"GET", "/v2/:/:/manifests/:", mirror_manifest},
};

/*
 * Matches raw path against pattern; on a match stores the raw parameter
 * spans in starts/lens and returns their count + 1, else 0.
 */
static size_t route_match(const char *pattern, const char *path, const char **starts, size_t *lens)
{
	size_t np = 0;
	const char *p = pattern, *s = path;
	while (*p && *s) {
		if (*p != '/' || *s != '/')
			return 0;
		p++;
		s++;
		size_t pl = strcspn(p, "/");
		size_t sl = strcspn(s, "/");
		if (pl == 1 && *p == '*') {
			if (*s == 0 || np == HTTP_MAX_PARAMS)
				return 0;
			starts[np] = s;
			lens[np++] = strlen(s);
			return np + 1;
		}
		if (pl == 1 && *p == ':') {
			if (sl == 0 || np == HTTP_MAX_PARAMS)
				return 0;
			starts[np] = s;
			lens[np++] = sl;
		} else if (pl != sl || memcmp(p, s, pl) != 0) {
			return 0;
		}
		p += pl;
		s += sl;
	}
	return *p == 0 && *s == 0 ? np + 1 : 0;
}

int http_route_needs_token(const struct http_req *rq)
{
	const char *starts[HTTP_MAX_PARAMS];
	size_t lens[HTTP_MAX_PARAMS];
	/* The Hub's paths hand out the catalog's files: the job API's policy applies. */
	return strncmp(rq->path, "/v1/", 4) == 0 || strcmp(rq->path, "/v1") == 0 ||
	       strcmp(rq->path, "/metrics") == 0 || strncmp(rq->path, "/api/", 5) == 0 ||
	       strncmp(rq->path, "/v2/", 4) == 0 ||
	       route_match("/:/:/resolve/:/*", rq->path, starts, lens) != 0;
}

int http_route(struct http_req *rq)
{
	const char *method = strcmp(rq->method, "HEAD") == 0 ? "GET" : rq->method;
	int path_known = 0;
	if (http_cors_preflight(rq))
		return route_preflight(rq);
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const char *starts[HTTP_MAX_PARAMS];
		size_t lens[HTTP_MAX_PARAMS];
		size_t m = route_match(routes[i].pattern, rq->path, starts, lens);
		if (!m)
			continue;
		path_known = 1;
		if (strcmp(routes[i].method, method) != 0)
			continue;
		for (size_t k = 0; k + 1 < m; k++) {
			char *v = http_pct_decode(starts[k], lens[k], 0);
			if (!v)
				return http_reply_error(rq, ERR_INVALID,
							"path: bad percent-encoding");
			rq->params[rq->n_params++] = v;
		}
		return routes[i].fn(rq);
	}
	if (path_known)
		return http_reply_status(rq, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
					 "this method is not allowed on this path");
	if (strcmp(method, "GET") == 0 && !http_route_needs_token(rq))
		return route_asset(rq);
	return http_reply_error(rq, ERR_NOT_FOUND, "no route for %.16s %.200s", rq->method,
				rq->path);
}
