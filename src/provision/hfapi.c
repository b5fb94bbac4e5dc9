#include "provision/hfapi.h"
#include "provision/hfapi_internal.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/cancel.h"
#include "core/caps.h"
#include "core/curl_mem.h"
#include "core/err.h"
#include "core/log.h"
#include "core/parse.h"
#include "core/url.h"
#include "core/token.h"
#include "core/util.h"
#include "provision/provision.h"

#define HF_DEFAULT_ENDPOINT "https://huggingface.co"
#define HF_TRIES 4
#define HF_RETRY_AFTER_MAX_S 30
#define HF_CONNECT_TIMEOUT_S 15
#define HF_STALL_S 30

/* 1 if v is a true value of HF_HUB_OFFLINE ("1", "ON", "YES", "TRUE", any case). */
static int hf_env_true(const char *v)
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

/*
 * huggingface_hub's token file: $HF_HOME/token, else
 * $XDG_CACHE_HOME/huggingface/token, else ~/.cache/huggingface/token; ""
 * when none of them is set or the path is too long.
 */
static void token_file_path(char *out, size_t size)
{
	int rc = 0;
	if (env_set("HF_HOME"))
		rc = fmt_buf(out, size, "%s/token", getenv("HF_HOME"));
	else if (env_set("XDG_CACHE_HOME"))
		rc = fmt_buf(out, size, "%s/huggingface/token", getenv("XDG_CACHE_HOME"));
	else if (env_set("HOME"))
		rc = fmt_buf(out, size, "%s/.cache/huggingface/token", getenv("HOME"));
	else
		out[0] = '\0';
	if (rc)
		out[0] = '\0';
}

void hf_token_get(const struct hf_client *c, struct hf_token *t)
{
	struct err e = {0};
	char *tok = NULL;
	int rc;
	t->value[0] = '\0';
	t->from = NULL;
	if (c->token) {
		t->from = "the configuration";
		rc = token_check(c->token, t->from, &e);
		tok = rc == 0 ? xstrdup(c->token) : NULL;
	} else if (env_set("HF_TOKEN")) {
		t->from = "HF_TOKEN";
		rc = token_check(getenv("HF_TOKEN"), t->from, &e);
		tok = rc == 0 ? xstrdup(getenv("HF_TOKEN")) : NULL;
	} else if (c->token_file[0]) {
		t->from = c->token_file;
		rc = token_read_file(c->token_file, 1, &tok, &e);
	} else {
		return;
	}
	/* A token that cannot go into a header is not sent; a missing file is no token. */
	if (rc == 0 && tok)
		snprintf(t->value, sizeof(t->value), "%s", tok);
	else
		t->from = NULL;
	if (rc)
		log_warn("not sending a Hugging Face token: %s", err_msg(&e));
	if (tok) {
		explicit_bzero(tok, strlen(tok));
		free(tok);
	}
}

void hf_token_clear(struct hf_token *t)
{
	explicit_bzero(t->value, sizeof(t->value));
	t->from = NULL;
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
	/* HF_TOKEN and the token file are looked at for each request: see hf_token_get. */
	if (cfg->hf_token && *cfg->hf_token)
		c->token = xstrdup(cfg->hf_token);
	token_file_path(c->token_file, sizeof(c->token_file));
	c->offline = cfg->offline || hf_env_true(getenv("HF_HUB_OFFLINE"));
	snprintf(c->user_agent, sizeof(c->user_agent), "rbee-hive/%s", RBEE_VERSION);
	curl_mem_init();
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

/* An ETag header value without its W/ prefix and quotes, into out. */
static void hf_etag_strip(const char *in, char *out, size_t size)
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
			const struct hf_chain *ch, const struct hf_req_opts *opts,
			struct cancel_token *cancel, struct hf_resp *r, CURLcode *cc, struct err *e)
{
	struct url_parts up;
	struct hf_peer peer = {.ch = ch};
	/* Through a proxy the peer is the proxy: its address says nothing of the target. */
	int check = url_parse(url, &up, NULL) == 0 && !url_same_origin(&up, &ch->start) &&
		    ch->base >= 0 && !url_proxy_configured();
	struct body_buf b = {.max = c->max_answer ? c->max_answer : CAP_LISTING_BYTES};
	struct curl_slist *hdrs = NULL;
	char *auth = NULL;
	struct hf_token tok = {0};
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
	/*
	 * The token goes to the Hub's own origin only, never to a CDN or another
	 * host; a request for another server carries its own authorization, to
	 * its own origin only, and never the Hub's token.
	 */
	if (opts) {
		if (opts->authorization && opts->auth_origin &&
		    url_same_origin_str(url, opts->auth_origin))
			auth = xasprintf("Authorization: %s", opts->authorization);
		if (opts->accept) {
			char *acc = xasprintf("Accept: %s", opts->accept);
			hdrs = curl_slist_append(hdrs, acc);
			free(acc);
		}
	} else if (url_same_origin_str(url, c->endpoint)) {
		hf_token_get(c, &tok);
		if (tok.from)
			auth = xasprintf("Authorization: Bearer %s", tok.value);
	}
	r->token_from = tok.from;
	if (auth)
		hdrs = curl_slist_append(hdrs, auth);
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
	get_header(h, "WWW-Authenticate", r->www_authenticate, sizeof(r->www_authenticate));
	get_header(h, "Content-Type", r->content_type, sizeof(r->content_type));
	get_header(h, "Docker-Content-Digest", r->content_digest, sizeof(r->content_digest));
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
	hf_token_clear(&tok);
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
	return hf_request_opts(c, method, url, redir, NULL, cancel, r, e);
}

int hf_request_opts(const struct hf_client *c, const char *method, const char *url,
		    enum hf_redirects redir, const struct hf_req_opts *opts,
		    struct cancel_token *cancel, struct hf_resp *r, struct err *e)
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
		int rc = request_once(c, method, cur, &ch, opts, cancel, r, &cc, e);
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

/* Where the daemon looks for a token, for the messages that ask for one. */
static void token_places(const struct hf_what *w, char *buf, size_t size)
{
	if (w->token_file && *w->token_file)
		snprintf(buf, size, "HF_TOKEN in the daemon's environment or the file %s",
			 w->token_file);
	else
		snprintf(buf, size, "HF_TOKEN in the daemon's environment");
}

/*
 * Maps a Hub answer (status, X-Error-Code, X-Error-Message) to an ERR_* and a
 * plain message: "repo 'a/b' not found", "'a/b' is gated: ...",
 * "revision 'x' not found in a/b", "file 'p' not found in a/b". The messages
 * that need a token say where the daemon looks for one, or which token it
 * sent. Returns the code (never 0).
 */
static int hf_map_message(const struct hf_error_map *m, long status, const char *error_message,
			  const struct hf_what *w, struct err *e)
{
	const char *code = m && m->code ? m->code : "";
	const char *repo = w->repo ? w->repo : "?";
	char places[ERR_MSG_MAX];
	token_places(w, places, sizeof(places));
	if (strcmp(code, "RepoNotFound") == 0) {
		if (status == 401 && !w->token_from)
			return err_set(e, ERR_NOT_FOUND,
				       "repo '%s' not found (if it is private, the daemon needs a "
				       "token: %s)",
				       repo, places);
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
		if (!w->token_from)
			return err_set(e, ERR_GATED,
				       "'%s' is gated: accept its terms on the Hub, then give the "
				       "daemon a token: %s",
				       repo, places);
		return err_set(e, ERR_GATED,
			       "'%s' is gated and the token from %s has no access: accept its "
			       "terms on the Hub",
			       repo, w->token_from);
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

/* hf_map_message, with the Hub's code kept in e->reason for callers that pass it on. */
static int hf_map_error(long status, const char *error_code, const char *error_message,
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
	int rc = hf_map_message(m, status, error_message, w, e);
	if (e)
		e->reason = m ? m->code : NULL;
	return rc;
}

int hf_check_status(const struct hf_client *c, const struct hf_resp *r, const struct hf_what *what,
		    struct err *e)
{
	struct hf_what w1 = *what;
	const struct hf_what *w = &w1;
	w1.token_from = r->token_from;
	w1.token_file = c->token_file;
	if (r->status >= 200 && r->status < 300)
		return 0;
	if (r->request_id[0])
		log_info("Hub answered %ld (%s) for %s, request id %s", r->status,
			 r->error_code[0] ? r->error_code : "no code", w->repo, r->request_id);
	return hf_map_error(r->status, r->error_code, r->error_message, w, e);
}

/* GET url, map a Hub error, parse the JSON answer. what names it in errors. */
