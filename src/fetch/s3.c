/*
 * s3: the store's address, keys and query strings, and its small requests
 * (HEAD, PUT, multipart), each on a libcurl easy handle of its own, signed
 * with SigV4 and a payload hash set here.
 */
#include "fetch/s3.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cancel.h"
#include "core/caps.h"
#include "core/ref.h"
#include "core/sha256.h"
#include "core/url.h"
#include "core/util.h"

/* The bytes of an answer's body read (errors and the few XML answers). */
#define S3_BODY_MAX (64 * 1024)
/* Bytes hashed per read of a part. */
#define S3_HASH_CHUNK (512 * 1024)
/* A request that moves no byte for this long fails. */
#define S3_STALL_S 30L
/* sha256 of no bytes: the payload hash of a request without a body. */
static const char empty_sha256[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/* "s3://BUCKET[/PREFIX]" into s->bucket and s->prefix. */
static int store_spec(struct s3_store *s, const char *spec, struct err *e)
{
	if (strncmp(spec, "s3://", 5) != 0)
		return err_set(e, ERR_INVALID,
			       "--blob-store '%.80s': expected s3://BUCKET[/PREFIX]", spec);
	const char *b = spec + 5;
	const char *slash = strchr(b, '/');
	size_t blen = slash ? (size_t)(slash - b) : strlen(b);
	if (blen >= sizeof(s->bucket))
		return err_set(e, ERR_INVALID, "--blob-store '%.80s': bucket over 63 characters",
			       spec);
	memcpy(s->bucket, b, blen);
	int rc = ref_s3_bucket_check(s->bucket, e);
	if (rc)
		return err_prefix(e, "--blob-store: ");
	const char *prefix = slash ? slash + 1 : "";
	size_t plen = strlen(prefix);
	while (plen > 0 && prefix[plen - 1] == '/')
		plen--;
	if (plen >= sizeof(s->prefix) - 1)
		return err_set(e, ERR_INVALID, "--blob-store '%.80s': prefix over %zu characters",
			       spec, sizeof(s->prefix) - 2);
	if (plen) {
		memcpy(s->prefix, prefix, plen);
		rc = ref_s3_key_check(s->prefix, "--blob-store prefix", e);
		if (rc)
			return rc;
		s->prefix[plen] = '/';
	}
	return 0;
}

int s3_store_init(struct s3_store *s, const char *spec, const char *endpoint, const char *region,
		  const char *access_key, const char *secret, struct err *e)
{
	memset(s, 0, sizeof(*s));
	int rc;
	if (spec) {
		rc = store_spec(s, spec, e);
		if (rc)
			return rc;
	}
	if (!endpoint || !*endpoint)
		return err_set(e, ERR_INVALID, "the S3 store needs --s3-endpoint URL");
	struct url_parts p;
	rc = url_parse(endpoint, &p, e);
	if (rc == 0)
		rc = url_check_scheme(&p, e);
	if (rc)
		return err_prefix(e, "--s3-endpoint: ");
	size_t elen = strlen(endpoint);
	while (elen > 0 && endpoint[elen - 1] == '/')
		elen--;
	if (elen >= sizeof(s->endpoint) || memchr(endpoint, '?', elen) ||
	    memchr(endpoint, '#', elen))
		return err_set(e, ERR_INVALID,
			       "--s3-endpoint '%.80s': expected scheme://host[:port] only",
			       endpoint);
	memcpy(s->endpoint, endpoint, elen);
	region = region && *region ? region : S3_DEFAULT_REGION;
	for (const char *c = region; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
			return err_set(e, ERR_INVALID, "--s3-region '%.64s': only a-z, 0-9 and '-'",
				       region);
	if (fmt_buf(s->sigv4, sizeof(s->sigv4), "aws:amz:%s:s3", region))
		return err_set(e, ERR_INVALID, "--s3-region '%.64s': too long", region);
	if (!access_key || !*access_key || !secret || !*secret)
		return err_set(e, ERR_INVALID,
			       "the S3 store needs credentials: AWS_ACCESS_KEY_ID and "
			       "AWS_SECRET_ACCESS_KEY, or --s3-credentials FILE");
	if (strchr(access_key, ':'))
		return err_set(e, ERR_INVALID, "the S3 access key holds a ':'");
	s->userpwd = xasprintf("%s:%s", access_key, secret);
	return 0;
}

void s3_store_cleanup(struct s3_store *s)
{
	if (s->userpwd) {
		explicit_bzero(s->userpwd, strlen(s->userpwd));
		free(s->userpwd);
	}
	s->userpwd = NULL;
}

int s3_blob_key(const struct s3_store *s, const char *sha256, char *buf, size_t size, struct err *e)
{
	if (!sha256_hex_valid(sha256))
		return err_set(e, ERR_INVALID, "blob '%.70s': not a sha256", sha256);
	return fmt_buf(buf, size, "%sblobs/%s", s->prefix, sha256)
		   ? err_set(e, ERR_TOO_LARGE, "the key of blob %s is too long", sha256)
		   : 0;
}

static int param_cmp(const void *a, const void *b)
{
	return strcmp(((const struct s3_param *)a)->name, ((const struct s3_param *)b)->name);
}

int s3_query(const struct s3_param *params, size_t n, char *buf, size_t size, struct err *e)
{
	if (n > 8)
		return err_set(e, ERR_TOO_LARGE, "S3 query: more than 8 parameters");
	struct s3_param sorted[8];
	buf[0] = '\0';
	if (n == 0)
		return 0;
	memcpy(sorted, params, n * sizeof(*params));
	qsort(sorted, n, sizeof(*sorted), param_cmp);
	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		/* libcurl's escape encodes all but the unreserved characters, as SigV4 wants. */
		char *name = curl_easy_escape(NULL, sorted[i].name, 0);
		char *value = curl_easy_escape(NULL, sorted[i].value, 0);
		int bad = !name || !value ||
			  fmt_buf(buf + off, size - off, "%s%s=%s", i ? "&" : "", name, value);
		curl_free(name);
		curl_free(value);
		if (bad)
			return err_set(e, ERR_TOO_LARGE, "S3 query: too long");
		off += strlen(buf + off);
	}
	return 0;
}

int s3_url(const struct s3_store *s, const char *bucket, const char *key,
	   const struct s3_param *params, size_t n, char *buf, size_t size, struct err *e)
{
	char q[2048];
	int rc = s3_query(params, n, q, sizeof(q), e);
	if (rc)
		return rc;
	return fmt_buf(buf, size, "%s/%s/%s%s%s", s->endpoint, bucket ? bucket : s->bucket, key,
		       n ? "?" : "", q)
		   ? err_set(e, ERR_TOO_LARGE, "S3 URL of '%.80s': too long", key)
		   : 0;
}

int s3_xml_text(const char *body, size_t len, const char *element, char *out, size_t size)
{
	char open[64], close[64];
	if (fmt_buf(open, sizeof(open), "<%s>", element) ||
	    fmt_buf(close, sizeof(close), "</%s>", element))
		return ERR_INVALID;
	size_t olen = strlen(open), clen = strlen(close);
	const char *start = NULL;
	for (size_t i = 0; i + olen <= len; i++) {
		if (memcmp(body + i, open, olen) == 0) {
			start = body + i + olen;
			break;
		}
	}
	if (!start)
		return ERR_NOT_FOUND;
	size_t left = len - (size_t)(start - body);
	for (size_t i = 0; i + clen <= left; i++) {
		if (start[i] == '<' && memcmp(start + i, close, clen) != 0)
			return ERR_INVALID;
		if (start[i] == '&' || start[i] == '\0')
			return ERR_INVALID;
		if (start[i] == '<') {
			if (i >= size)
				return ERR_TOO_LARGE;
			memcpy(out, start, i);
			out[i] = '\0';
			return 0;
		}
	}
	return ERR_INVALID;
}

/* One request */

struct s3_call {
	const struct s3_store *s;
	struct cancel_token *cancel;
	/* the body sent: from fd, or from mem */
	int fd;
	uint64_t off, len, sent;
	const char *mem;
	s3_sent_fn on_sent;
	void *sent_arg;
	/* the answer */
	char body[S3_BODY_MAX + 1];
	size_t body_len;
	char etag[S3_ETAG_MAX];
	int read_errno;
};

static size_t call_body(char *p, size_t size, size_t n, void *arg)
{
	struct s3_call *c = arg;
	size_t len = size * n;
	size_t room = S3_BODY_MAX - c->body_len;
	size_t take = len < room ? len : room;
	memcpy(c->body + c->body_len, p, take);
	c->body_len += take;
	c->body[c->body_len] = '\0';
	return len;
}

static size_t call_header(char *p, size_t size, size_t n, void *arg)
{
	struct s3_call *c = arg;
	size_t len = size * n;
	if (len > 5 && strncasecmp(p, "etag:", 5) == 0) {
		size_t i = 5, end = len;
		while (i < end && (p[i] == ' ' || p[i] == '\t'))
			i++;
		while (end > i && (p[end - 1] == '\r' || p[end - 1] == '\n' || p[end - 1] == ' '))
			end--;
		if (end - i < sizeof(c->etag)) {
			memcpy(c->etag, p + i, end - i);
			c->etag[end - i] = '\0';
		}
	}
	return len;
}

static size_t call_read(char *p, size_t size, size_t n, void *arg)
{
	struct s3_call *c = arg;
	uint64_t left = c->len - c->sent;
	size_t want = size * n < left ? size * n : (size_t)left;
	if (want == 0)
		return 0;
	if (c->mem) {
		memcpy(p, c->mem + c->sent, want);
		c->sent += want;
		return want;
	}
	ssize_t got;
	do
		got = pread(c->fd, p, want, (off_t)(c->off + c->sent));
	while (got < 0 && errno == EINTR);
	if (got <= 0) {
		c->read_errno = got < 0 ? errno : EIO;
		return CURL_READFUNC_ABORT;
	}
	c->sent += (uint64_t)got;
	if (c->on_sent)
		c->on_sent(c->sent_arg, c->sent);
	return (size_t)got;
}

static int call_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct s3_call *c = arg;
	(void)dt, (void)dn, (void)ut, (void)un;
	return c->cancel && cancel_is_set(c->cancel);
}

/* The sha256 of len bytes of fd from off. */
static int hash_range(int fd, uint64_t off, uint64_t len, struct cancel_token *cancel,
		      char out[SHA256_HEX_LEN + 1], struct err *e)
{
	unsigned char *buf = xmalloc(S3_HASH_CHUNK);
	struct sha256 h = {0};
	sha256_init(&h);
	int rc = 0;
	for (uint64_t done = 0; done < len && rc == 0;) {
		size_t want = len - done < S3_HASH_CHUNK ? (size_t)(len - done) : S3_HASH_CHUNK;
		ssize_t got = pread(fd, buf, want, (off_t)(off + done));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			rc = err_set(e, ERR_IO, "reading the blob to upload: %s",
				     got < 0 ? strerror(errno) : "it is shorter than its size");
		else
			sha256_update(&h, buf, (size_t)got);
		done += got > 0 ? (uint64_t)got : 0;
		if (rc == 0 && cancel && cancel_is_set(cancel))
			rc = err_set(e, ERR_CANCELLED, "cancelled");
	}
	if (rc == 0)
		sha256_final_hex(&h, out);
	sha256_cleanup(&h);
	free(buf);
	return rc;
}

/* What the store's error answer says, for a message: "Code: Message" or the status. */
static void answer_words(const struct s3_call *c, long status, char *buf, size_t size)
{
	char code[128] = "", msg[256] = "";
	s3_xml_text(c->body, c->body_len, "Code", code, sizeof(code));
	s3_xml_text(c->body, c->body_len, "Message", msg, sizeof(msg));
	snprintf(buf, size, "HTTP %ld%s%s%s%s", status, code[0] ? " " : "", code,
		 msg[0] ? ": " : "", msg);
	/* The store's words go into messages and event lines: no control byte passes. */
	for (char *p = buf; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
}

/*
 * One signed request: method on url with the body of c (len bytes, its
 * sha256 payload_sha), extra headers. The answer's status maps to a code.
 */
static int call_run(struct s3_call *c, const char *method, const char *url, const char *payload_sha,
		    const char *const *extra, size_t nextra, const char *what, struct err *e)
{
	CURL *h = curl_easy_init();
	if (!h)
		return err_set(e, ERR_NOMEM, "cannot create a libcurl handle");
	struct curl_slist *hdrs = NULL;
	char line[128];
	snprintf(line, sizeof(line), "x-amz-content-sha256: %s", payload_sha);
	struct curl_slist *t = curl_slist_append(hdrs, line);
	for (size_t i = 0; t && i < nextra; i++) {
		hdrs = t;
		t = curl_slist_append(hdrs, extra[i]);
	}
	if (!t) {
		curl_slist_free_all(hdrs);
		curl_easy_cleanup(h);
		return err_set(e, ERR_NOMEM, "cannot build the S3 request's headers");
	}
	hdrs = t;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_AWS_SIGV4, c->s->sigv4);
	curl_easy_setopt(h, CURLOPT_USERPWD, c->s->userpwd);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, call_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, call_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, call_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, S3_STALL_S);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, S3_STALL_S);
	if (c->s->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->s->ca_file);
	if (c->s->user_agent)
		curl_easy_setopt(h, CURLOPT_USERAGENT, c->s->user_agent);
	if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "PUT") == 0) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, call_read);
		curl_easy_setopt(h, CURLOPT_READDATA, c);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)c->len);
		if (c->s->limit_rate)
			curl_easy_setopt(h, CURLOPT_MAX_SEND_SPEED_LARGE,
					 (curl_off_t)c->s->limit_rate);
	} else if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->len);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->mem ? c->mem : "");
	} else {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	}
	CURLcode cc = curl_easy_perform(h);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_off_t clen = -1;
	curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
	curl_easy_cleanup(h);
	curl_slist_free_all(hdrs);
	char words[512];
	if (cc == CURLE_ABORTED_BY_CALLBACK)
		return err_set(e, ERR_CANCELLED, "%s: cancelled", what);
	if (cc == CURLE_READ_ERROR || c->read_errno)
		return err_set(e, ERR_IO, "%s: reading the blob: %s", what,
			       strerror(c->read_errno ? c->read_errno : EIO));
	if (cc != CURLE_OK)
		return err_set(e, ERR_NETWORK, "%s: %s", what, curl_easy_strerror(cc));
	if (status >= 200 && status < 300) {
		/* A HEAD's size rides on the answer's length. */
		if (strcmp(method, "HEAD") == 0)
			c->len = clen >= 0 ? (uint64_t)clen : 0;
		return 0;
	}
	answer_words(c, status, words, sizeof(words));
	switch (status) {
	case 404: return err_set(e, ERR_NOT_FOUND, "%s: %s", what, words);
	case 412: return err_set(e, ERR_CONFLICT, "%s: the key exists already", what);
	case 401:
	case 403: return err_set(e, ERR_FORBIDDEN, "%s: %s", what, words);
	default: return err_set(e, ERR_NETWORK, "%s: %s", what, words);
	}
}

int s3_head(const struct s3_store *s, const char *bucket, const char *key,
	    struct cancel_token *cancel, uint64_t *size, struct err *e)
{
	char url[CAP_URL_LEN], what[128];
	int rc = s3_url(s, bucket, key, NULL, 0, url, sizeof(url), e);
	if (rc)
		return rc;
	snprintf(what, sizeof(what), "S3 HEAD %.100s", key);
	struct s3_call *c = xcalloc(1, sizeof(*c));
	c->s = s;
	c->cancel = cancel;
	rc = call_run(c, "HEAD", url, empty_sha256, NULL, 0, what, e);
	if (rc == 0)
		*size = c->len;
	free(c);
	return rc;
}

static int put_range(const struct s3_store *s, const char *key, const struct s3_param *q, size_t nq,
		     int fd, uint64_t off, uint64_t len, int if_absent, struct cancel_token *cancel,
		     s3_sent_fn sent, void *arg, char etag[S3_ETAG_MAX], struct err *e)
{
	char url[CAP_URL_LEN], what[160], sha[SHA256_HEX_LEN + 1];
	int rc = s3_url(s, NULL, key, q, nq, url, sizeof(url), e);
	if (rc == 0)
		rc = hash_range(fd, off, len, cancel, sha, e);
	if (rc)
		return rc;
	snprintf(what, sizeof(what), "S3 PUT %.100s%s%s", key, nq ? " part " : "",
		 nq ? q[0].value : "");
	struct s3_call *c = xcalloc(1, sizeof(*c));
	c->s = s;
	c->cancel = cancel;
	c->fd = fd;
	c->off = off;
	c->len = len;
	c->on_sent = sent;
	c->sent_arg = arg;
	const char *extra[] = {"Content-Type: application/octet-stream", "If-None-Match: *"};
	rc = call_run(c, "PUT", url, sha, extra, if_absent ? 2 : 1, what, e);
	if (rc == 0 && etag)
		memcpy(etag, c->etag, S3_ETAG_MAX);
	free(c);
	return rc;
}

int s3_put(const struct s3_store *s, const char *key, int fd, uint64_t off, uint64_t len,
	   int if_absent, struct cancel_token *cancel, s3_sent_fn sent, void *arg,
	   char etag[S3_ETAG_MAX], struct err *e)
{
	return put_range(s, key, NULL, 0, fd, off, len, if_absent, cancel, sent, arg, etag, e);
}

int s3_mpu_part(const struct s3_store *s, const char *key, const char *upload_id, int part, int fd,
		uint64_t off, uint64_t len, struct cancel_token *cancel, s3_sent_fn sent, void *arg,
		char etag[S3_ETAG_MAX], struct err *e)
{
	char num[16];
	snprintf(num, sizeof(num), "%d", part);
	struct s3_param q[] = {{"partNumber", num}, {"uploadId", upload_id}};
	int rc = put_range(s, key, q, 2, fd, off, len, 0, cancel, sent, arg, etag, e);
	if (rc == 0 && !etag[0])
		rc = err_set(e, ERR_NETWORK, "S3 PUT %.100s part %d: the answer has no ETag", key,
			     part);
	return rc;
}

/* A POST or DELETE with a small body from memory; the answer's body stays in *out. */
static int small_call(const struct s3_store *s, const char *method, const char *key,
		      const struct s3_param *q, size_t nq, const char *body,
		      struct cancel_token *cancel, struct s3_call **out, struct err *e)
{
	char url[CAP_URL_LEN], what[160], sha[SHA256_HEX_LEN + 1];
	*out = NULL;
	int rc = s3_url(s, NULL, key, q, nq, url, sizeof(url), e);
	if (rc)
		return rc;
	size_t len = body ? strlen(body) : 0;
	sha256_buf_hex(body ? body : "", len, sha);
	snprintf(what, sizeof(what), "S3 %s %.100s?%s", method, key, q[0].name);
	struct s3_call *c = xcalloc(1, sizeof(*c));
	c->s = s;
	c->cancel = cancel;
	c->mem = body;
	c->len = len;
	const char *extra[] = {"Content-Type: application/xml"};
	rc = call_run(c, method, url, sha, extra, 1, what, e);
	if (rc == 0)
		*out = c;
	else
		free(c);
	return rc;
}

int s3_mpu_create(const struct s3_store *s, const char *key, struct cancel_token *cancel,
		  char upload_id[S3_UPLOAD_ID_MAX], struct err *e)
{
	struct s3_param q[] = {{"uploads", ""}};
	struct s3_call *c;
	int rc = small_call(s, "POST", key, q, 1, NULL, cancel, &c, e);
	if (rc)
		return rc;
	rc = s3_xml_text(c->body, c->body_len, "UploadId", upload_id, S3_UPLOAD_ID_MAX);
	if (rc == 0 && !upload_id[0])
		rc = ERR_INVALID;
	if (rc)
		rc = err_set(e, ERR_NETWORK, "S3 POST %.100s?uploads: the answer has no UploadId",
			     key);
	free(c);
	return rc;
}

int s3_mpu_complete(const struct s3_store *s, const char *key, const char *upload_id,
		    char (*etags)[S3_ETAG_MAX], int n, struct cancel_token *cancel, struct err *e)
{
	size_t cap = 64 + (size_t)n * (S3_ETAG_MAX + 64);
	char *body = xmalloc(cap);
	size_t off = (size_t)snprintf(body, cap, "<CompleteMultipartUpload>");
	for (int i = 0; i < n; i++)
		off += (size_t)snprintf(body + off, cap - off,
					"<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>",
					i + 1, etags[i]);
	snprintf(body + off, cap - off, "</CompleteMultipartUpload>");
	struct s3_param q[] = {{"uploadId", upload_id}};
	struct s3_call *c;
	int rc = small_call(s, "POST", key, q, 1, body, cancel, &c, e);
	free(body);
	if (rc)
		return rc;
	/* The store may answer 200 and say in the body that it failed. */
	if (s3_xml_text(c->body, c->body_len, "Code", (char[128]){0}, 128) != ERR_NOT_FOUND ||
	    strstr(c->body, "<Error>")) {
		char words[512];
		answer_words(c, 200, words, sizeof(words));
		rc = err_set(e, ERR_NETWORK, "S3 completing the upload of %.100s: %s", key, words);
	}
	free(c);
	return rc;
}

int s3_mpu_abort(const struct s3_store *s, const char *key, const char *upload_id, struct err *e)
{
	struct s3_param q[] = {{"uploadId", upload_id}};
	struct s3_call *c;
	int rc = small_call(s, "DELETE", key, q, 1, NULL, NULL, &c, e);
	free(c);
	return rc;
}
