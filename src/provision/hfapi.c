#include "provision/hfapi.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/cancel.h"
#include "core/caps.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/parse.h"
#include "core/url.h"
#include "core/sha256.h"
#include "core/util.h"
#include "provision/hfselect.h"
#include "provision/provision.h"

#define HF_DEFAULT_ENDPOINT "https://huggingface.co"
#define HF_TRIES 4
#define HF_RETRY_AFTER_MAX_S 30
#define HF_CONNECT_TIMEOUT_S 15
#define HF_STALL_S 30

int hf_env_true(const char *v)
{
	static const char *const yes[] = {"1", "on", "yes", "true"};
	if (!v)
		return 0;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (strcasecmp(v, yes[i]) == 0)
			return 1;
	return 0;
}

static int env_set(const char *name)
{
	const char *v = getenv(name);
	return v && *v;
}

int hf_env_shares_cache(void)
{
	/* docs/store.md: HF_HUB_CACHE or HF_HOME in the environment ask for the shared cache. */
	return env_set("HF_HUB_CACHE") || env_set("HF_HOME");
}

/* $HF_HOME/token, else $XDG_CACHE_HOME/huggingface/token, else ~/.cache/huggingface/token. */
static char *read_token_file(void)
{
	char path[4096];
	if (env_set("HF_HOME"))
		snprintf(path, sizeof(path), "%s/token", getenv("HF_HOME"));
	else if (env_set("XDG_CACHE_HOME"))
		snprintf(path, sizeof(path), "%s/huggingface/token", getenv("XDG_CACHE_HOME"));
	else if (env_set("HOME"))
		snprintf(path, sizeof(path), "%s/.cache/huggingface/token", getenv("HOME"));
	else
		return NULL;
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char tok[CAP_TOKEN_LEN + 2];
	size_t n = fread(tok, 1, sizeof(tok) - 1, f);
	fclose(f);
	tok[n] = '\0';
	while (n > 0 && (tok[n - 1] == '\n' || tok[n - 1] == '\r' || tok[n - 1] == ' '))
		tok[--n] = '\0';
	if (n == 0 || n > CAP_TOKEN_LEN)
		return NULL;
	return xstrdup(tok);
}

/*
 * A redirect chain of one hf_request: where it started, and the class of
 * that origin's address, resolved the first time a hop leaves the origin.
 */
struct hf_chain {
	struct url_parts start;
	int base; /* enum url_net, or -1 while not resolved */
};

/* Judges the hop from `from` to `to` by the URL policy; 0 or ERR_FORBIDDEN. */
static int chain_hop(struct hf_chain *ch, const char *from, const char *to, struct err *e)
{
	struct url_parts pf, pt;
	struct err pe = {0};
	int rc = url_parse(from, &pf, &pe);
	if (rc == 0)
		rc = url_parse(to, &pt, &pe);
	if (rc == 0)
		rc = url_check_scheme(&pt, &pe);
	if (rc == 0 && !url_same_origin(&pf, &pt)) {
		if (ch->base < 0)
			ch->base = (int)url_host_net(ch->start.host);
		rc = url_check_redirect(&pf, &pt, (enum url_net)ch->base, &pe);
	}
	if (rc)
		return err_set(e, ERR_FORBIDDEN, "redirect to %.200s refused: %s", to,
			       err_msg(&pe));
	return 0;
}

/* The peer check of a request away from the chain's origin, run by libcurl on connect. */
struct hf_peer {
	const struct hf_chain *ch;
	const char *host;
	int refused;
	struct err err;
};

static curl_socket_t hf_opensocket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct hf_peer *pc = arg;
	curl_socket_t fd = url_open_checked_socket((int)purpose, a, (enum url_net)pc->ch->base,
						   pc->host, &pc->err);
	pc->refused = fd == CURL_SOCKET_BAD && pc->err.code == ERR_FORBIDDEN;
	return fd;
}

int hf_client_init(struct hf_client *c, const struct prov_config *cfg, struct err *e)
{
	memset(c, 0, sizeof(*c));
	const char *ep = cfg->endpoint && *cfg->endpoint ? cfg->endpoint
			 : env_set("HF_ENDPOINT")	 ? getenv("HF_ENDPOINT")
							 : HF_DEFAULT_ENDPOINT;
	if (fmt_buf(c->endpoint, sizeof(c->endpoint), "%s", ep))
		return err_set(e, ERR_INVALID, "Hub endpoint is too long");
	size_t n = strlen(c->endpoint);
	while (n > 0 && c->endpoint[n - 1] == '/')
		c->endpoint[--n] = '\0';
	struct url_parts up;
	if (url_parse(c->endpoint, &up, NULL))
		return err_set(e, ERR_INVALID, "Hub endpoint '%s' is not a URL", c->endpoint);
	if (url_check_scheme(&up, NULL))
		return err_set(e, ERR_INVALID,
			       "Hub endpoint '%s' must be https:// (http:// only on loopback)",
			       c->endpoint);
	if (cfg->hf_token && *cfg->hf_token)
		c->token = xstrdup(cfg->hf_token);
	else if (env_set("HF_TOKEN"))
		c->token = xstrdup(getenv("HF_TOKEN"));
	else
		c->token = read_token_file();
	c->offline = cfg->offline || hf_env_true(getenv("HF_HUB_OFFLINE"));
	snprintf(c->user_agent, sizeof(c->user_agent), "rbee-hive/%s", RBEE_VERSION);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return 0;
}

void hf_client_cleanup(struct hf_client *c)
{
	if (!c || !c->user_agent[0])
		return;
	if (c->token) {
		memset(c->token, 0, strlen(c->token));
		free(c->token);
	}
	c->token = NULL;
	c->user_agent[0] = '\0';
	curl_global_cleanup();
}

void hf_resp_cleanup(struct hf_resp *r)
{
	if (!r)
		return;
	free(r->body);
	r->body = NULL;
	r->len = 0;
}

struct body_buf {
	char *buf;
	size_t len, cap;
	size_t max; /* the answer's cap */
	int over;
};

static size_t on_body(char *data, size_t sz, size_t nm, void *arg)
{
	struct body_buf *b = arg;
	size_t n = sz * nm;
	if (b->len + n > b->max) {
		b->over = 1;
		return 0;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 16384;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *nb = realloc(b->buf, cap);
		if (!nb)
			return 0;
		b->buf = nb;
		b->cap = cap;
	}
	memcpy(b->buf + b->len, data, n);
	b->len += n;
	b->buf[b->len] = '\0';
	return n;
}

static int on_xferinfo(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	(void)a, (void)b, (void)c, (void)d;
	return arg && cancel_is_set(arg) ? 1 : 0;
}

static void get_header(CURL *h, const char *name, char *out, size_t size)
{
	struct curl_header *hd = NULL;
	out[0] = '\0';
	if (curl_easy_header(h, name, 0, CURLH_HEADER, -1, &hd) == CURLHE_OK && hd && hd->value)
		snprintf(out, size, "%s", hd->value);
}

void hf_etag_strip(const char *in, char *out, size_t size)
{
	if (strncmp(in, "W/", 2) == 0)
		in += 2;
	size_t n = strlen(in);
	if (n >= 2 && in[0] == '"' && in[n - 1] == '"') {
		in++;
		n -= 2;
	}
	snprintf(out, size, "%.*s", (int)n, in);
}

/*
 * The target of Link: <URL>; rel="next" into out, "" when there is none.
 * ERR_TOO_LARGE when it does not fit: a cut URL would fetch another page.
 */
static int link_next(const char *v, char *out, size_t size)
{
	out[0] = '\0';
	while (v && *v) {
		const char *lt = strchr(v, '<');
		const char *gt = lt ? strchr(lt, '>') : NULL;
		if (!gt)
			return 0;
		const char *end = strchr(gt, ',');
		size_t plen = end ? (size_t)(end - gt) : strlen(gt);
		char params[256];
		snprintf(params, sizeof(params), "%.*s", (int)(plen > 255 ? 255 : plen), gt);
		if (strstr(params, "rel=\"next\"") || strstr(params, "rel=next")) {
			if ((size_t)(gt - lt - 1) >= size)
				return ERR_TOO_LARGE;
			snprintf(out, size, "%.*s", (int)(gt - lt - 1), lt + 1);
			return 0;
		}
		v = end ? end + 1 : NULL;
	}
	return 0;
}

/* Resolves a possibly relative Location against base into out. */
static int resolve_location(const char *base, const char *loc, char *out, size_t size)
{
	CURLU *u = curl_url();
	char *s = NULL;
	int rc = -1;
	if (u && curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_URL, loc, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK)
		rc = fmt_buf(out, size, "%s", s) ? -1 : 0;
	curl_free(s);
	curl_url_cleanup(u);
	return rc;
}

static int is_retryable_status(long s)
{
	return s == 408 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504;
}

static int is_retryable_curl(CURLcode cc)
{
	return cc == CURLE_RECV_ERROR || cc == CURLE_SEND_ERROR || cc == CURLE_GOT_NOTHING ||
	       cc == CURLE_PARTIAL_FILE || cc == CURLE_OPERATION_TIMEDOUT;
}

/*
 * One request to exactly url, no redirects. When url is away from the
 * chain's origin, the address it resolves to is checked before connecting.
 */
static int request_once(const struct hf_client *c, const char *method, const char *url,
			const struct hf_chain *ch, struct cancel_token *cancel, struct hf_resp *r,
			CURLcode *cc, struct err *e)
{
	struct url_parts up;
	struct hf_peer peer = {.ch = ch};
	/* Through a proxy the peer is the proxy: its address says nothing of the target. */
	int check = url_parse(url, &up, NULL) == 0 && !url_same_origin(&up, &ch->start) &&
		    ch->base >= 0 && !url_proxy_configured();
	struct body_buf b = {.max = c->max_answer ? c->max_answer : CAP_LISTING_BYTES};
	struct curl_slist *hdrs = NULL;
	char *auth = NULL;
	CURL *h = curl_easy_init();
	if (!h)
		return err_set(e, ERR_NOMEM, "cannot create an HTTP handle");
	int head = strcmp(method, "HEAD") == 0;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOBODY, head ? 1L : 0L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	if (check) {
		peer.host = up.host;
		curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, hf_opensocket);
		curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, &peer);
	}
	curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)HF_CONNECT_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)HF_STALL_S);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, cancel);
	hdrs = curl_slist_append(hdrs, "Accept-Encoding: identity");
	/* The token goes to the Hub's own origin only, never to a CDN or another host. */
	if (c->token && url_same_origin_str(url, c->endpoint)) {
		auth = xasprintf("Authorization: Bearer %s", c->token);
		hdrs = curl_slist_append(hdrs, auth);
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);

	*cc = curl_easy_perform(h);
	int rc = 0;
	if (*cc == CURLE_ABORTED_BY_CALLBACK) {
		rc = err_set(e, ERR_CANCELLED, "cancelled");
		goto out;
	}
	if (peer.refused) {
		rc = err_set(e, ERR_FORBIDDEN, "%s", peer.err.msg);
		goto out;
	}
	if (b.over) {
		rc = err_set(e, ERR_TOO_LARGE, "answer from %s is over the cap of %zu bytes",
			     c->endpoint, b.max);
		goto out;
	}
	if (*cc != CURLE_OK) {
		rc = err_set(e, ERR_NETWORK, "%s %s: %s", method, url, curl_easy_strerror(*cc));
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
	char v[CAP_HEADER_VALUE];
	get_header(h, "X-Repo-Commit", r->commit, sizeof(r->commit));
	get_header(h, "X-Linked-Etag", v, sizeof(v));
	if (!v[0])
		get_header(h, "ETag", v, sizeof(v));
	hf_etag_strip(v, r->etag, sizeof(r->etag));
	int redirect = r->status >= 300 && r->status < 400;
	r->has_size = 0;
	get_header(h, "X-Linked-Size", v, sizeof(v));
	if (!v[0] && !redirect)
		get_header(h, "Content-Length", v, sizeof(v));
	if (v[0] && parse_u64_str(v, 0, UINT64_MAX, &r->size, "size", NULL) == 0)
		r->has_size = 1;
	get_header(h, "Location", v, sizeof(v));
	r->location[0] = '\0';
	if (v[0] && resolve_location(url, v, r->location, sizeof(r->location)))
		snprintf(r->location, sizeof(r->location), "%s", "");
	get_header(h, "X-Error-Code", r->error_code, sizeof(r->error_code));
	get_header(h, "X-Error-Message", r->error_message, sizeof(r->error_message));
	get_header(h, "X-Request-Id", r->request_id, sizeof(r->request_id));
	get_header(h, "Link", r->link, sizeof(r->link));
	get_header(h, "Retry-After", v, sizeof(v));
	uint64_t ra;
	r->retry_after_s = -1;
	if (v[0] && parse_u64_str(v, 0, 86400, &ra, "Retry-After", NULL) == 0)
		r->retry_after_s = (long)ra;
	get_header(h, "Accept-Ranges", v, sizeof(v));
	r->accept_ranges = strcasecmp(v, "bytes") == 0;
	free(r->body);
	r->body = b.buf;
	r->len = b.len;
	b.buf = NULL;
out:
	free(b.buf);
	curl_slist_free_all(hdrs);
	if (auth) {
		memset(auth, 0, strlen(auth));
		free(auth);
	}
	curl_easy_cleanup(h);
	return rc;
}

/* Waits ms, or less when cancel fires. Returns ERR_CANCELLED or 0. */
static int backoff(struct cancel_token *cancel, long ms)
{
	if (cancel)
		return cancel_wait(cancel, ms) ? ERR_CANCELLED : 0;
	sleep_ms(ms);
	return 0;
}

int hf_request(const struct hf_client *c, const char *method, const char *url,
	       enum hf_redirects redir, struct cancel_token *cancel, struct hf_resp *r,
	       struct err *e)
{
	char cur[CAP_URL_LEN + 1];
	hf_resp_cleanup(r);
	memset(r, 0, sizeof(*r));
	if (c->offline)
		return err_set(e, ERR_OFFLINE,
			       "offline mode (HF_HUB_OFFLINE or --offline): not fetching %s", url);
	struct hf_chain ch = {.base = -1};
	struct err pe = {0};
	if (url_parse(url, &ch.start, &pe) || url_check_scheme(&ch.start, &pe))
		return err_set(e, ERR_FORBIDDEN, "refusing URL %.200s: %s", url, err_msg(&pe));
	if (fmt_buf(cur, sizeof(cur), "%s", url))
		return err_set(e, ERR_TOO_LARGE, "URL too long");
	int hops = 0;
	for (int attempt = 1;; attempt++) {
		CURLcode cc = CURLE_OK;
		if (cancel && cancel_is_set(cancel))
			return err_set(e, ERR_CANCELLED, "cancelled");
		int rc = request_once(c, method, cur, &ch, cancel, r, &cc, e);
		int retry = rc == ERR_NETWORK && is_retryable_curl(cc);
		if (rc == 0 && is_retryable_status(r->status)) {
			retry = 1;
			err_set(e, r->status == 429 ? ERR_RETRY : ERR_NETWORK,
				"%s %s: HTTP %ld (request id %s)", method, cur, r->status,
				r->request_id[0] ? r->request_id : "none");
		}
		if (retry && attempt < HF_TRIES) {
			long ms = 500L << (attempt - 1);
			if (r->retry_after_s >= 0)
				ms = (r->retry_after_s > HF_RETRY_AFTER_MAX_S ? HF_RETRY_AFTER_MAX_S
									      : r->retry_after_s) *
				     1000L;
			log_debug("retrying %s %s in %ld ms", method, cur, ms);
			if (backoff(cancel, ms))
				return err_set(e, ERR_CANCELLED, "cancelled");
			continue;
		}
		if (retry)
			return e ? e->code : ERR_NETWORK;
		if (rc)
			return rc;
		int is_redirect = r->status == 301 || r->status == 302 || r->status == 303 ||
				  r->status == 307 || r->status == 308;
		if (!is_redirect || !r->location[0])
			break;
		/* Judged even when not followed: the caller may hand it to the engine. */
		rc = chain_hop(&ch, cur, r->location, e);
		if (rc)
			return rc;
		int follow = redir == HF_REDIRECT_ANY || url_same_origin_str(r->location, cur);
		if (!follow)
			break;
		if (++hops > CAP_HUB_REDIRECTS)
			return err_set(e, ERR_NETWORK, "too many redirects from %.200s", url);
		snprintf(cur, sizeof(cur), "%s", r->location);
		attempt = 0;
	}
	snprintf(r->final_url, sizeof(r->final_url), "%s", cur);
	return 0;
}

struct hf_error_map {
	const char *code; /* X-Error-Code, or NULL to match on status alone */
	long status;	  /* 0: any */
	int err;
};

/* First match wins: specific Hub codes, then bare statuses. */
static const struct hf_error_map hf_errors[] = {
    {"RepoNotFound", 0, ERR_NOT_FOUND},
    {"RevisionNotFound", 0, ERR_NOT_FOUND},
    {"EntryNotFound", 0, ERR_NOT_FOUND},
    {"GatedRepo", 0, ERR_GATED},
    {"DisabledRepo", 0, ERR_FORBIDDEN},
    {NULL, 401, ERR_UNAUTHORIZED},
    {NULL, 403, ERR_FORBIDDEN},
    {NULL, 404, ERR_NOT_FOUND},
    {NULL, 429, ERR_RETRY},
    {NULL, 0, ERR_NETWORK},
};

int hf_map_error(long status, const char *error_code, const char *error_message,
		 const struct hf_what *w, struct err *e)
{
	const struct hf_error_map *m = NULL;
	for (size_t i = 0; i < sizeof(hf_errors) / sizeof(hf_errors[0]) && !m; i++) {
		const struct hf_error_map *t = &hf_errors[i];
		if (t->code && (!error_code || strcmp(t->code, error_code) != 0))
			continue;
		if (t->status && t->status != status)
			continue;
		m = t;
	}
	const char *code = m && m->code ? m->code : "";
	const char *repo = w->repo ? w->repo : "?";
	if (strcmp(code, "RepoNotFound") == 0) {
		if (status == 401 && !w->have_token)
			return err_set(e, ERR_NOT_FOUND,
				       "repo '%s' not found (if it is private, set HF_TOKEN)",
				       repo);
		return err_set(e, ERR_NOT_FOUND, "repo '%s' not found", repo);
	}
	if (strcmp(code, "RevisionNotFound") == 0)
		return err_set(e, ERR_NOT_FOUND, "revision '%s' not found in %s",
			       w->revision ? w->revision : "?", repo);
	if (strcmp(code, "EntryNotFound") == 0)
		return err_set(e, ERR_NOT_FOUND, "file '%s' not found in %s%s%s",
			       w->path ? w->path : "?", repo, w->revision ? "@" : "",
			       w->revision ? w->revision : "");
	if (strcmp(code, "GatedRepo") == 0) {
		if (!w->have_token)
			return err_set(e, ERR_GATED,
				       "'%s' is gated: set HF_TOKEN after accepting its terms",
				       repo);
		return err_set(
		    e, ERR_GATED,
		    "'%s' is gated and the token has no access: accept its terms on the Hub", repo);
	}
	if (strcmp(code, "DisabledRepo") == 0)
		return err_set(e, ERR_FORBIDDEN, "'%s' is disabled on the Hub", repo);
	int err = m ? m->err : ERR_NETWORK;
	const char *msg = error_message && *error_message ? error_message : "";
	switch (err) {
	case ERR_UNAUTHORIZED:
		return err_set(e, err, "'%s': the Hub wants a valid token (HTTP 401)%s%s", repo,
			       *msg ? ": " : "", msg);
	case ERR_FORBIDDEN:
		return err_set(e, err, "'%s': access refused (HTTP 403)%s%s", repo,
			       *msg ? ": " : "", msg);
	case ERR_NOT_FOUND:
		return err_set(e, err, "%s%s not found in %s",
			       w->path ? "file " : "repo or revision", w->path ? w->path : "",
			       repo);
	case ERR_RETRY:
		return err_set(e, err, "the Hub is rate limiting requests; try again later");
	default:
		return err_set(e, ERR_NETWORK, "the Hub answered HTTP %ld for %s%s%s", status, repo,
			       *msg ? ": " : "", msg);
	}
}

static char *escape_all(const char *s)
{
	char *t = curl_easy_escape(NULL, s, 0);
	char *r = xstrdup(t ? t : "");
	curl_free(t);
	return r;
}

/* Percent-encodes each component of a repo path, keeping '/'. */
static char *escape_path(const char *p)
{
	size_t cap = strlen(p) * 3 + 1, used = 0;
	char *out = xmalloc(cap);
	out[0] = '\0';
	const char *s = p;
	while (*s) {
		const char *sl = strchr(s, '/');
		size_t n = sl ? (size_t)(sl - s) : strlen(s);
		char *t = curl_easy_escape(NULL, s, (int)n);
		used += (size_t)snprintf(out + used, cap - used, "%s%s", t ? t : "", sl ? "/" : "");
		curl_free(t);
		s += n + (sl ? 1 : 0);
	}
	return out;
}

static int check_status(const struct hf_client *c, const struct hf_resp *r, const struct hf_what *w,
			struct err *e)
{
	if (r->status >= 200 && r->status < 300)
		return 0;
	if (r->request_id[0])
		log_info("Hub answered %ld (%s) for %s, request id %s", r->status,
			 r->error_code[0] ? r->error_code : "no code", w->repo, r->request_id);
	(void)c;
	return hf_map_error(r->status, r->error_code, r->error_message, w, e);
}

/* GET url, map a Hub error, parse the JSON answer. what names it in errors. */
static int get_json(const struct hf_client *c, const char *url, const struct hf_what *w,
		    const char *what, struct cancel_token *cancel, struct hf_resp *r, json_t **doc,
		    struct err *e)
{
	int rc = hf_request(c, "GET", url, HF_REDIRECT_SAME_HOST, cancel, r, e);
	if (rc)
		return rc;
	rc = check_status(c, r, w, e);
	if (rc)
		return rc;
	rc = json_parse_strict(r->body ? r->body : "", r->len, CAP_LISTING_BYTES, doc, e);
	if (rc)
		err_prefix(e, "%s of %s", what, w->repo);
	return rc;
}

static int is_commit(const char *s)
{
	return strlen(s) == 40 && is_hex_lower(s, 40);
}

int hf_resolve_commit(const struct hf_client *c, const char *org, const char *repo,
		      const char *revision, struct cancel_token *cancel, char commit[41],
		      struct hf_listing *names, struct err *e)
{
	char repo_id[2 * CAP_REPO_ID_LEN + 2];
	snprintf(repo_id, sizeof(repo_id), "%s/%s", org, repo);
	struct hf_what w = {.repo = repo_id, .revision = revision, .have_token = c->token != NULL};
	char *rev = escape_all(revision);
	char *url = xasprintf("%s/api/models/%s/%s/revision/%s", c->endpoint, org, repo, rev);
	free(rev);
	struct hf_resp r = {0};
	json_t *doc = NULL;
	int rc = get_json(c, url, &w, "model info", cancel, &r, &doc, e);
	if (rc)
		goto out;
	/* Hub answers carry many more keys than we read and gain new ones; only ours are checked.
	 */
	json_t *sha = json_is_object(doc) ? json_object_get(doc, "sha") : NULL;
	if (!json_is_string(sha) || !is_commit(json_string_value(sha))) {
		rc = err_set(e, ERR_NETWORK, "model info of %s has no commit sha", repo_id);
		goto out;
	}
	memcpy(commit, json_string_value(sha), 41);
	json_t *sib = json_object_get(doc, "siblings");
	if (names && json_is_array(sib)) {
		size_t i;
		json_t *it;
		snprintf(names->commit, sizeof(names->commit), "%s", commit);
		json_array_foreach(sib, i, it)
		{
			if (cancel_is_set(cancel)) {
				rc = err_set(e, ERR_CANCELLED, "cancelled");
				goto out;
			}
			json_t *fn = json_object_get(it, "rfilename");
			struct err pe = {0};
			if (!json_is_string(fn) ||
			    path_check_repo(json_string_value(fn), json_string_length(fn), &pe)) {
				rc = err_set(e, ERR_INVALID,
					     "model info of %s: unsafe file name refused: %s",
					     repo_id,
					     json_is_string(fn) ? err_msg(&pe) : "not a string");
				goto out;
			}
			if (hf_listing_add(names, json_string_value(fn), 0, NULL, NULL)) {
				rc = err_set(e, ERR_TOO_LARGE, "%s has more than %d files", repo_id,
					     CAP_REPO_FILES);
				goto out;
			}
		}
	}
out:
	json_decref(doc);
	hf_resp_cleanup(&r);
	free(url);
	return rc;
}

static int get_u64(json_t *v, uint64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int add_tree_entry(struct hf_listing *out, json_t *it, const char *repo_id, struct err *e)
{
	/* Folders cost as much to read and keep as files: they count the same. */
	size_t cap = out->max_entries ? out->max_entries : CAP_REPO_FILES;
	if (++out->entries > cap)
		return err_set(e, ERR_TOO_LARGE, "%s has more than %zu files and folders", repo_id,
			       cap);
	json_t *type = json_object_get(it, "type");
	json_t *path = json_object_get(it, "path");
	if (!json_is_string(type) || !json_is_string(path))
		return err_set(e, ERR_NETWORK, "tree listing of %s: entry without type or path",
			       repo_id);
	if (strcmp(json_string_value(type), "file") != 0)
		return 0;
	const char *p = json_string_value(path);
	size_t plen = json_string_length(path);
	struct err pe = {0};
	if (path_check_repo(p, plen, &pe))
		return err_set(e, ERR_INVALID, "tree listing of %s: unsafe path refused: %s",
			       repo_id, err_msg(&pe));
	uint64_t size = 0;
	int has_size = get_u64(json_object_get(it, "size"), &size) == 0;
	const char *sha = NULL, *oid = NULL;
	json_t *o = json_object_get(it, "oid");
	if (json_is_string(o) && json_string_length(o) == 40 &&
	    is_hex_lower(json_string_value(o), 40))
		oid = json_string_value(o);
	json_t *lfs = json_object_get(it, "lfs");
	if (json_is_object(lfs)) {
		json_t *lo = json_object_get(lfs, "oid");
		if (!sha256_hex_valid(json_string_value(lo)))
			return err_set(e, ERR_NETWORK, "tree listing of %s: bad lfs.oid for '%s'",
				       repo_id, p);
		sha = json_string_value(lo);
		uint64_t lsize;
		if (get_u64(json_object_get(lfs, "size"), &lsize) == 0) {
			if (has_size && lsize != size)
				return err_set(
				    e, ERR_DIGEST,
				    "tree listing of %s: '%s' has two sizes (%llu, %llu)", repo_id,
				    p, (unsigned long long)size, (unsigned long long)lsize);
			size = lsize;
			has_size = 1;
		}
	}
	if (!has_size)
		return err_set(e, ERR_NETWORK, "tree listing of %s: '%s' has no size", repo_id, p);
	if (hf_listing_add(out, p, size, sha, oid))
		return err_set(e, ERR_TOO_LARGE, "%s has more than %d files", repo_id,
			       CAP_REPO_FILES);
	return 0;
}

int hf_tree_page_parse(const char *body, size_t len, const char *link, const char *repo_id,
		       struct cancel_token *cancel, struct hf_listing *out, char *next_url,
		       size_t next_size, struct err *e)
{
	json_t *doc = NULL;
	next_url[0] = '\0';
	int rc = json_parse_strict(body, len, CAP_LISTING_BYTES, &doc, e);
	if (rc) {
		err_prefix(e, "tree listing of %s", repo_id);
		return rc;
	}
	if (!json_is_array(doc)) {
		rc = err_set(e, ERR_NETWORK, "tree listing of %s is not a JSON array", repo_id);
		goto out;
	}
	size_t i;
	json_t *it;
	json_array_foreach(doc, i, it)
	{
		if (cancel_is_set(cancel)) {
			rc = err_set(e, ERR_CANCELLED, "cancelled");
			goto out;
		}
		if (!json_is_object(it)) {
			rc = err_set(e, ERR_NETWORK,
				     "tree listing of %s: entry %zu is not an object", repo_id, i);
			goto out;
		}
		rc = add_tree_entry(out, it, repo_id, e);
		if (rc)
			goto out;
	}
	if (link && link_next(link, next_url, next_size))
		rc = err_set(e, ERR_TOO_LARGE,
			     "tree listing of %s: the next page's URL is too long", repo_id);
out:
	json_decref(doc);
	return rc;
}

int hf_list_tree(const struct hf_client *c, const char *org, const char *repo, const char *commit,
		 struct cancel_token *cancel, struct hf_listing *out, struct err *e)
{
	char repo_id[2 * CAP_REPO_ID_LEN + 2];
	snprintf(repo_id, sizeof(repo_id), "%s/%s", org, repo);
	struct hf_what w = {.repo = repo_id, .revision = commit, .have_token = c->token != NULL};
	char *rev = escape_all(commit);
	char *url =
	    xasprintf("%s/api/models/%s/%s/tree/%s?recursive=true", c->endpoint, org, repo, rev);
	free(rev);
	struct hf_resp r = {0};
	char next[CAP_URL_LEN + 1];
	int rc = 0;
	/* Each page is read, parsed and dropped before the next: the cap is per page. */
	struct hf_client pc = *c;
	if (!pc.max_answer || pc.max_answer > CAP_LISTING_PAGE_BYTES)
		pc.max_answer = CAP_LISTING_PAGE_BYTES;
	snprintf(out->commit, sizeof(out->commit), "%s", commit);
	for (int page = 0;; page++) {
		if (page >= CAP_LISTING_PAGES) {
			rc = err_set(e, ERR_TOO_LARGE, "tree listing of %s has over %d pages",
				     repo_id, CAP_LISTING_PAGES);
			goto out;
		}
		rc = hf_request(&pc, "GET", url, HF_REDIRECT_SAME_HOST, cancel, &r, e);
		if (rc == 0)
			rc = check_status(c, &r, &w, e);
		if (rc == 0)
			rc = hf_tree_page_parse(r.body ? r.body : "", r.len, r.link, repo_id,
						cancel, out, next, sizeof(next), e);
		if (rc)
			goto out;
		if (!next[0])
			break;
		/* The next page must come from the Hub itself: the token goes with it. */
		if (!url_same_origin_str(next, c->endpoint)) {
			rc = err_set(e, ERR_NETWORK,
				     "tree listing of %s: next page on another host", repo_id);
			goto out;
		}
		free(url);
		url = xstrdup(next);
	}
out:
	hf_resp_cleanup(&r);
	free(url);
	return rc;
}

int hf_head_file(const struct hf_client *c, const char *org, const char *repo, const char *revision,
		 const char *path, struct cancel_token *cancel, struct hf_file_meta *out,
		 struct err *e)
{
	char repo_id[2 * CAP_REPO_ID_LEN + 2];
	snprintf(repo_id, sizeof(repo_id), "%s/%s", org, repo);
	struct hf_what w = {
	    .repo = repo_id, .revision = revision, .path = path, .have_token = c->token != NULL};
	memset(out, 0, sizeof(*out));
	char *rev = escape_all(revision);
	char *ep = escape_path(path);
	char *url = xasprintf("%s/%s/%s/resolve/%s/%s", c->endpoint, org, repo, rev, ep);
	free(rev);
	free(ep);
	struct hf_resp r = {0};
	int rc = hf_request(c, "HEAD", url, HF_REDIRECT_SAME_HOST, cancel, &r, e);
	if (rc)
		goto out;
	int redirect = r.status >= 300 && r.status < 400;
	if (!redirect) {
		rc = check_status(c, &r, &w, e);
		if (rc)
			goto out;
	}
	if (!r.commit[0]) {
		rc = err_set(e, ERR_NETWORK,
			     "'%s' in %s: the answer has no X-Repo-Commit, so it did not come from "
			     "the Hub (proxy?)",
			     path, repo_id);
		goto out;
	}
	if (!is_commit(r.commit)) {
		rc = err_set(e, ERR_NETWORK, "'%s' in %s: malformed X-Repo-Commit", path, repo_id);
		goto out;
	}
	size_t el = strlen(r.etag);
	if (!((el == 64 && is_hex_lower(r.etag, 64)) || (el == 40 && is_hex_lower(r.etag, 40)))) {
		rc = err_set(e, ERR_NETWORK, "'%s' in %s: the Hub gave no usable etag", path,
			     repo_id);
		goto out;
	}
	if (!r.has_size) {
		rc = err_set(e, ERR_NETWORK, "'%s' in %s: the Hub gave no size", path, repo_id);
		goto out;
	}
	memcpy(out->commit, r.commit, 41);
	snprintf(out->etag, sizeof(out->etag), "%s", r.etag);
	out->size = r.size;
	if (redirect) {
		if (!r.location[0]) {
			rc = err_set(e, ERR_NETWORK, "'%s' in %s: redirect without Location", path,
				     repo_id);
			goto out;
		}
		snprintf(out->url, sizeof(out->url), "%s", r.location);
		out->url_is_hub = url_same_origin_str(r.location, c->endpoint);
	} else {
		snprintf(out->url, sizeof(out->url), "%s", r.final_url);
		out->url_is_hub = 1;
	}
out:
	hf_resp_cleanup(&r);
	free(url);
	return rc;
}

/* Files between two looks at the cancel token while the answer is built. */
#define HF_SOURCES_CANCEL_EVERY 1024

int hf_repo_files_json(const struct prov_config *cfg, const char *org, const char *repo,
		       const char *revision, struct cancel_token *cancel, json_t **out,
		       struct err *e)
{
	struct hf_client c;
	struct hf_listing l;
	char commit[41];
	json_t *doc = NULL, *by_tag = NULL;
	hf_listing_init(&l);
	*out = NULL;
	const char *rev = revision && *revision ? revision : REF_DEFAULT_REVISION;
	struct err ne = {0};
	int rc = hf_client_init(&c, cfg, e);
	if (rc)
		return rc;
	/*
	 * A listing for a person to choose from: every answer of the Hub and
	 * the number of entries have caps well below a download's, so that a
	 * few listings at once stay small in memory.
	 */
	c.max_answer = CAP_LISTING_PAGE_BYTES;
	l.max_entries = CAP_SOURCES_ENTRIES;
	if (name_check_hub(org, strlen(org), &ne) || name_check_hub(repo, strlen(repo), &ne) ||
	    revision_check(rev, strlen(rev), &ne)) {
		rc = err_set(e, ERR_UNPROCESSABLE, "repo '%s/%s': %s", org, repo, err_msg(&ne));
		goto out;
	}
	rc = hf_resolve_commit(&c, org, repo, rev, cancel, commit, NULL, e);
	if (rc)
		goto out;
	rc = hf_list_tree(&c, org, repo, commit, cancel, &l, e);
	if (rc)
		goto out;
	doc = json_object();
	by_tag = json_object(); /* tag -> its entry of quants (borrowed) */
	json_t *files = json_array(), *quants = json_array();
	char repo_id[2 * CAP_REPO_ID_LEN + 2];
	snprintf(repo_id, sizeof(repo_id), "%s/%s", org, repo);
	json_set_str(doc, "repo", repo_id);
	json_set_str(doc, "revision", rev);
	json_set_str(doc, "commit", commit);
	json_object_set_new(doc, "files", files);
	json_object_set_new(doc, "quants", quants);
	for (size_t i = 0; i < l.n; i++) {
		if (i % HF_SOURCES_CANCEL_EVERY == 0 && cancel && cancel_is_set(cancel)) {
			rc = err_set(e, ERR_CANCELLED, "listing %s: cancelled", repo_id);
			goto out;
		}
		const struct hf_file *f = &l.files[i];
		json_t *jf = json_object();
		char tag[HF_QUANT_MAX];
		unsigned no, count;
		size_t stem;
		int gguf = hf_is_gguf(f->path);
		int has_tag = gguf && hf_quant_tag(f->path, tag);
		int shard = hf_split_shard(f->path, &no, &count, &stem);
		json_set_str(jf, "path", f->path);
		json_set_int(jf, "size", (long long)f->size);
		json_set_str(jf, "sha256", f->sha256[0] ? f->sha256 : NULL);
		json_set_str(jf, "quant", has_tag ? tag : NULL);
		json_object_set_new(jf, "shard", shard ? json_integer(no) : json_null());
		json_object_set_new(jf, "shards", shard ? json_integer(count) : json_null());
		json_array_append_new(files, jf);
		if (!has_tag)
			continue;
		json_t *q = json_object_get(by_tag, tag);
		if (!q) {
			q = json_object();
			json_set_str(q, "tag", tag);
			json_set_int(q, "size", 0);
			json_object_set_new(q, "files", json_array());
			int dflt = strcmp(rev, REF_DEFAULT_REVISION) == 0;
			char *ref = xasprintf("hf:%s:%s%s%s", repo_id, tag, dflt ? "" : "@",
					      dflt ? "" : rev);
			json_set_str(q, "ref", ref);
			free(ref);
			json_array_append_new(quants, q);
			json_object_set(by_tag, tag, q);
		}
		json_set_int(q, "size",
			     (long long)json_integer_value(json_object_get(q, "size")) +
				 (long long)f->size);
		json_array_append_new(json_object_get(q, "files"), json_string(f->path));
	}
	*out = doc;
	doc = NULL;
out:
	json_decref(by_tag);
	json_decref(doc);
	hf_listing_cleanup(&l);
	hf_client_cleanup(&c);
	return rc;
}
