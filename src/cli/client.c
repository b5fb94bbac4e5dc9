#include "cli/client.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/sse.h"
#include "core/curl_mem.h"
#include "core/err.h"
#include "core/json.h"
#include "core/parse.h"
#include "core/token.h"
#include "core/url.h"
#include "core/util.h"

/* A stream silent this long is dead: the daemon sends a keep-alive every 15 s. */
#define CLI_STREAM_SILENCE_S 45
#define CLI_CONNECT_TIMEOUT_S 5
#define CLI_REQUEST_TIMEOUT_S 120
/* An upload that moves no byte for this long has stalled. */
#define CLI_UPLOAD_STALL_S 60
/* Attempts of one upload: a resume the daemon refuses starts over once. */
#define CLI_UPLOAD_TRIES 5
#define CLI_UPLOAD_BUSY_MS 500
/* An error answer on a stream is kept only this far. */
#define CLI_STREAM_ERROR_MAX (64 * 1024)

int cli_client_init(struct cli_client *c, const char *url, const char *token_file, struct err *e)
{
	char *token = NULL;
	int rc = 0;

	memset(c, 0, sizeof(*c));
	if (!url || !url[0])
		url = getenv("RBEE_HIVE_URL");
	if (!url || !url[0])
		url = CLI_DEFAULT_URL;
	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
		return err_set(e, ERR_INVALID, "daemon URL '%s': expected http://HOST:PORT", url);
	/* Room is left for the longest path the CLI appends. */
	if (strlen(url) > CAP_URL_LEN / 2)
		return err_set(e, ERR_INVALID, "daemon URL is over %d bytes", CAP_URL_LEN / 2);
	for (const char *p = url; *p; p++) {
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return err_set(e, ERR_INVALID,
				       "daemon URL '%s': space or control character", url);
	}
	snprintf(c->base, sizeof(c->base), "%s", url);
	for (size_t n = strlen(c->base); n > 0 && c->base[n - 1] == '/'; n--)
		c->base[n - 1] = '\0';

	/* A token goes into a header: token.h lets only printable ASCII through. */
	if (token_file && token_file[0]) {
		rc = token_read_file(token_file, 0, &token, e);
	} else if (getenv("RBEE_HIVE_TOKEN") && getenv("RBEE_HIVE_TOKEN")[0]) {
		token = xstrdup(getenv("RBEE_HIVE_TOKEN"));
		rc = token_check(token, "RBEE_HIVE_TOKEN", e);
	}
	if (token) {
		if (rc == 0)
			c->auth = xasprintf("Authorization: Bearer %s", token);
		/* Scrub our copy: the header string is the only one kept. */
		memset(token, 0, strlen(token));
		free(token);
	}
	if (rc < 0)
		return rc;
	curl_mem_init();
	return 0;
}

void cli_client_cleanup(struct cli_client *c)
{
	if (!c)
		return;
	if (c->auth) {
		memset(c->auth, 0, strlen(c->auth));
		free(c->auth);
		c->auth = NULL;
	}
}

char *cli_url_segment(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = xmalloc(3 * n + 1);
	char *o = out;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

int cli_client_foreign(const struct cli_client *c, const char *why, struct err *e)
{
	return err_set(e, ERR_NETWORK, "%s: not an rbee-hive daemon (%s)", c->base, why);
}

int cli_client_error(const struct cli_client *c, long status, const json_t *answer, struct err *e)
{
	/* The daemon names its error's code (core/err.c's table); one it does not know is the
	 * network's. */
	const char *name =
	    json_string_value(json_object_get(json_object_get(answer, "error"), "code"));
	int code = err_code_of(name);
	if (!name || strcmp(err_name(code), name) != 0)
		code = ERR_NETWORK;
	const json_t *msg = json_object_get(json_object_get(answer, "error"), "message");
	if (!json_is_string(msg)) {
		char why[64];
		snprintf(why, sizeof(why), "HTTP %ld without the API's error body", status);
		return cli_client_foreign(c, why, e);
	}
	err_set(e, code, "%s", json_string_value(msg));
	if (status == 401)
		err_prefix(e, "unauthorized (give the token with --token-file or RBEE_HIVE_TOKEN)");
	return code;
}

struct cli_buf {
	char *p;
	size_t len;
	size_t alloc;
	size_t cap;
	int over;
};

static int cli_buf_add(struct cli_buf *b, const char *d, size_t n)
{
	if (n > b->cap - b->len) {
		b->over = 1;
		return -1;
	}
	if (b->len + n + 1 > b->alloc) {
		size_t want = b->alloc ? b->alloc : 4096;
		while (want < b->len + n + 1)
			want *= 2;
		if (want > b->cap + 1)
			want = b->cap + 1;
		b->p = xrealloc(b->p, want);
		b->alloc = want;
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static size_t cli_write_buf(char *d, size_t size, size_t nmemb, void *arg)
{
	return cli_buf_add(arg, d, size * nmemb) == 0 ? size * nmemb : 0;
}

static CURL *cli_easy(struct cli_client *c, const char *path, struct curl_slist **hdrs,
		      const char *accept)
{
	char url[CAP_URL_LEN + 1];
	CURL *h = curl_easy_init();
	if (!h)
		return NULL;
	snprintf(url, sizeof(url), "%s%s", c->base, path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)CLI_CONNECT_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "rbee-hive/" RBEE_VERSION);
	/* A proxy from the environment must not carry requests meant for a local daemon. */
	curl_easy_setopt(h, CURLOPT_NOPROXY, URL_LOOPBACK_NOPROXY);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	*hdrs = curl_slist_append(*hdrs, accept);
	if (c->auth)
		*hdrs = curl_slist_append(*hdrs, c->auth);
	return h;
}

/* The failure of a transfer as the user should read it. */
static int cli_transfer_error(struct cli_client *c, CURLcode rc, const char *detail, struct err *e)
{
	if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST)
		return err_set(e, ERR_NETWORK,
			       "no daemon answers at %s (start one with: rbee-hive serve)",
			       c->base);
	return err_set(e, ERR_NETWORK, "request to %s failed: %s", c->base,
		       detail && detail[0] ? detail : curl_easy_strerror(rc));
}

int cli_client_call(struct cli_client *c, const char *method, const char *path, const json_t *body,
		    long *status, json_t **answer, struct err *e)
{
	struct curl_slist *hdrs = NULL;
	struct cli_buf b = {.cap = CAP_CLIENT_ANSWER};
	char errbuf[CURL_ERROR_SIZE] = "";
	char *text = NULL;
	int ret = 0;

	*status = 0;
	*answer = NULL;
	CURL *h = cli_easy(c, path, &hdrs, "Accept: application/json");
	if (!h)
		return err_set(e, ERR_NOMEM, "cannot start a transfer");
	if (body) {
		text = json_dump_compact(body);
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
	} else if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)CLI_REQUEST_TIMEOUT_S);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, cli_write_buf);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);

	CURLcode rc = curl_easy_perform(h);
	if (rc != CURLE_OK) {
		if (b.over)
			ret = err_set(e, ERR_TOO_LARGE, "the daemon's answer is over %d bytes",
				      CAP_CLIENT_ANSWER);
		else
			ret = cli_transfer_error(c, rc, errbuf, e);
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	if (b.len > 0) {
		json_error_t je;
		/* Not JSON (a plain "ok", say) leaves *answer NULL; the status still tells. */
		*answer = json_loadb(b.p, b.len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
	}
out:
	free(b.p);
	free(text);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	return ret;
}

struct cli_stream {
	CURL *h;
	struct cli_sse *p;
	struct err *e;
	long status;
	int result; /* the parser's stop value or error */
	struct cli_buf errbody;
};

static size_t cli_write_stream(char *d, size_t size, size_t nmemb, void *arg)
{
	struct cli_stream *s = arg;
	size_t n = size * nmemb;

	if (s->status == 0)
		curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->status);
	if (s->status != 200) {
		/* An error answer is kept (bounded) to be reported; the rest is dropped. */
		cli_buf_add(&s->errbody, d, n);
		return n;
	}
	int rc = cli_sse_feed(s->p, d, n, s->e);
	if (rc != 0) {
		s->result = rc;
		return 0;
	}
	return n;
}

int cli_client_stream(struct cli_client *c, const char *path, struct cli_sse *p,
		      volatile sig_atomic_t *stop, cli_tick_fn tick, void *arg, struct err *e)
{
	struct curl_slist *hdrs = NULL;
	struct cli_stream s = {.p = p, .e = e, .errbody = {.cap = CLI_STREAM_ERROR_MAX}};
	char errbuf[CURL_ERROR_SIZE] = "";
	CURLM *m = NULL;
	int ret = CLI_STREAM_EOF;
	int64_t last_tick = 0;

	cli_sse_reset(p);
	s.h = cli_easy(c, path, &hdrs, "Accept: text/event-stream");
	if (!s.h)
		return err_set(e, ERR_NOMEM, "cannot start a transfer");
	if (p->last_id[0]) {
		char *h = xasprintf("Last-Event-ID: %s", p->last_id);
		hdrs = curl_slist_append(hdrs, h);
		free(h);
	}
	curl_easy_setopt(s.h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(s.h, CURLOPT_WRITEFUNCTION, cli_write_stream);
	curl_easy_setopt(s.h, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(s.h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(s.h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(s.h, CURLOPT_LOW_SPEED_TIME, (long)CLI_STREAM_SILENCE_S);

	m = curl_multi_init();
	if (!m) {
		ret = err_set(e, ERR_NOMEM, "cannot start a transfer");
		goto out;
	}
	curl_multi_add_handle(m, s.h);
	/*
	 * The multi interface, polled in 100 ms steps, lets the caller's flag
	 * (set by a signal handler) end the transfer promptly even when the
	 * stream is silent, and lets the caller redraw between events.
	 */
	for (;;) {
		int running = 0;
		curl_multi_perform(m, &running);
		if (*stop) {
			ret = CLI_STREAM_INTERRUPTED;
			goto out;
		}
		if (tick && now_ms() - last_tick >= 100) {
			last_tick = now_ms();
			tick(arg);
		}
		if (!running)
			break;
		curl_multi_poll(m, NULL, 0, 100, NULL);
	}

	int msgs = 0;
	CURLMsg *msg = curl_multi_info_read(m, &msgs);
	CURLcode rc = msg && msg->msg == CURLMSG_DONE ? msg->data.result : CURLE_OK;
	if (s.result != 0) {
		ret = s.result;
	} else if (s.status != 0 && s.status != 200) {
		json_t *ans = NULL;
		if (s.errbody.len > 0) {
			json_error_t je;
			ans = json_loadb(s.errbody.p, s.errbody.len, 0, &je);
		}
		ret = cli_client_error(c, s.status, ans, e);
		json_decref(ans);
	} else if (rc == CURLE_OPERATION_TIMEDOUT && s.status == 200) {
		ret = err_set(e, ERR_TIMEOUT, "the event stream was silent for %d s",
			      CLI_STREAM_SILENCE_S);
	} else if (rc != CURLE_OK && s.status == 0) {
		ret = cli_transfer_error(c, rc, errbuf, e);
	} else {
		/* A connection that drops mid-stream reads as its end; the caller resumes it. */
		ret = CLI_STREAM_EOF;
	}
out:
	if (m) {
		curl_multi_remove_handle(m, s.h);
		curl_multi_cleanup(m);
	}
	free(s.errbody.p);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(s.h);
	return ret;
}

/* The Upload-Offset header of an answer, when there is one. */
struct cli_upload {
	int fd;
	uint64_t pos, end;
	int has_offset;
	uint64_t offset;
	cli_upload_fn progress;
	void *arg;
	int64_t last_ms;
};

static size_t cli_upload_header(char *d, size_t size, size_t nmemb, void *arg)
{
	struct cli_upload *u = arg;
	size_t n = size * nmemb;
	static const char name[] = "upload-offset:";
	if (n > sizeof(name) - 1 && strncasecmp(d, name, sizeof(name) - 1) == 0) {
		char v[32];
		size_t i = sizeof(name) - 1, k = 0;
		while (i < n && (d[i] == ' ' || d[i] == '\t'))
			i++;
		while (i < n && k < sizeof(v) - 1 && d[i] >= '0' && d[i] <= '9')
			v[k++] = d[i++];
		v[k] = '\0';
		u->has_offset =
		    parse_u64_str(v, 0, UINT64_MAX / 2, &u->offset, "Upload-Offset", NULL) == 0;
	}
	return n;
}

/* Sends the file from u->pos to u->end, read from the descriptor: never past end. */
static size_t cli_upload_read(char *buf, size_t size, size_t nmemb, void *arg)
{
	struct cli_upload *u = arg;
	size_t want = size * nmemb;
	if (want > u->end - u->pos)
		want = (size_t)(u->end - u->pos);
	if (want == 0)
		return 0;
	ssize_t n;
	do
		n = pread(u->fd, buf, want, (off_t)u->pos);
	while (n < 0 && errno == EINTR);
	/* The file shrank or failed: the daemon keeps what came, for a resume. */
	if (n <= 0)
		return CURL_READFUNC_ABORT;
	u->pos += (uint64_t)n;
	if (u->progress && now_ms() - u->last_ms >= 200) {
		u->last_ms = now_ms();
		u->progress(u->arg, u->pos, u->end);
	}
	return (size_t)n;
}

/*
 * One request about the blob: GET (put == 0) or PUT from u->pos. Fills the
 * status, the answer and u->has_offset/u->offset.
 */
static int cli_upload_call(struct cli_client *c, const char *path, struct cli_upload *u, int put,
			   long *status, json_t **answer, struct err *e)
{
	struct curl_slist *hdrs = NULL;
	struct cli_buf b = {.cap = CAP_CLIENT_ANSWER};
	char errbuf[CURL_ERROR_SIZE] = "";
	int ret = 0;
	*status = 0;
	*answer = NULL;
	u->has_offset = 0;
	CURL *h = cli_easy(c, path, &hdrs, "Accept: application/json");
	if (!h)
		return err_set(e, ERR_NOMEM, "cannot start a transfer");
	if (put) {
		hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)(u->end - u->pos));
		curl_easy_setopt(h, CURLOPT_READFUNCTION, cli_upload_read);
		curl_easy_setopt(h, CURLOPT_READDATA, u);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)CLI_UPLOAD_STALL_S);
	} else {
		curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)CLI_REQUEST_TIMEOUT_S);
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, cli_upload_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, u);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, cli_write_buf);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	CURLcode rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	if (rc != CURLE_OK && *status == 0) {
		ret = cli_transfer_error(c, rc, errbuf, e);
	} else if (rc != CURLE_OK && rc != CURLE_SEND_ERROR) {
		ret = err_set(e, ERR_NETWORK, "uploading to %s: %s", c->base,
			      errbuf[0] ? errbuf : curl_easy_strerror(rc));
	} else if (b.len > 0) {
		json_error_t je;
		*answer = json_loadb(b.p, b.len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
	}
	free(b.p);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	return ret;
}

int cli_client_upload(struct cli_client *c, int fd, uint64_t size, const char *sha256,
		      unsigned mode, cli_upload_fn progress, void *arg, struct err *e)
{
	struct cli_upload u = {.fd = fd, .end = size, .progress = progress, .arg = arg};
	char *get = xasprintf("/v1/blobs/sha256:%s", sha256);
	long status = 0;
	json_t *ans = NULL;
	int rc = cli_upload_call(c, get, &u, 0, &status, &ans, e);
	int tries = 0;
	uint64_t start = 0;
	while (rc == 0 && status != 200 && status != 201) {
		if (tries == CLI_UPLOAD_TRIES ||
		    (status != 404 && status != 409 && status != 400) ||
		    (status == 404 && !u.has_offset) || (status == 400 && (start == 0 || !tries))) {
			/* 404 without Upload-Offset: a daemon that takes no uploads. */
			rc = status == 404 && !u.has_offset ? ERR_NOT_FOUND
							    : cli_client_error(c, status, ans, e);
			if (rc == ERR_NOT_FOUND && !u.has_offset)
				err_set(e, ERR_NOT_FOUND, "the daemon at %s takes no uploads",
					c->base);
			break;
		}
		/*
		 * Resume where the daemon stands; after a refusal of the bytes
		 * (400: what an earlier upload left was not this file) start over.
		 */
		start = status == 400 || !u.has_offset || u.offset > size ? 0 : u.offset;
		u.pos = start;
		/* A 409: another writer (an interrupted upload not yet noticed) holds the blob. */
		if (status == 409)
			sleep_ms(CLI_UPLOAD_BUSY_MS);
		json_decref(ans);
		ans = NULL;
		tries++;
		char *put = xasprintf("%s?offset=%llu&mode=%04o", get, (unsigned long long)u.pos,
				      mode & 0777);
		rc = cli_upload_call(c, put, &u, 1, &status, &ans, e);
		free(put);
	}
	if (rc == 0 && progress)
		progress(arg, size, size);
	json_decref(ans);
	free(get);
	return rc;
}
