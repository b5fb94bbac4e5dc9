/*
 * hfapi: the small requests of the Hugging Face Hub protocol
 * (docs/hf-protocol.md): revision -> commit, the recursive tree listing with
 * its pagination, and HEAD .../resolve/... for one file's commit, etag, size
 * and CDN location. Bytes themselves move through fetch/xfer, not here.
 *
 * Each request is one libcurl easy handle on the caller's thread, with a
 * capped answer (CAP_LISTING_BYTES), no redirect following except same-origin
 * ones (repo renames), Authorization only to the Hub's own origin (scheme,
 * host, port), every redirect judged by the URL policy of core/url.h (also
 * one handed back unfollowed), and the
 * cancel token checked while it runs. Hub error codes become plain
 * messages through one table. hfapi.c holds the client and the requests,
 * hfrepo.c the requests about one repository (hfapi_internal.h joins them).
 *
 * struct hf_client is caller-owned and read-only after hf_client_init, so
 * one client may be used from several threads at once.
 */
#ifndef RBEE_PROVISION_HFAPI_H
#define RBEE_PROVISION_HFAPI_H

#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "core/caps.h"

struct cancel_token;
struct err;
struct hf_listing;
struct prov_config;

struct hf_client {
	char endpoint[CAP_URL_LEN + 1]; /* without trailing '/' */
	char *token;			/* from the configuration; NULL: see hf_token_get */
	char token_file[PATH_MAX];	/* huggingface_hub's token file; "": none */
	int offline;
	size_t max_answer; /* bytes of one answer read; 0: CAP_LISTING_BYTES */
	char user_agent[64];
};

/*
 * Resolves the environment the way huggingface_hub does: endpoint from cfg,
 * else $HF_ENDPOINT, else https://huggingface.co; the token file's path
 * ($HF_HOME/token, else $XDG_CACHE_HOME/huggingface/token, else
 * ~/.cache/huggingface/token); offline from cfg or $HF_HUB_OFFLINE
 * (1/ON/YES/TRUE). Returns 0 or ERR_INVALID (bad endpoint).
 */
int hf_client_init(struct hf_client *c, const struct prov_config *cfg, struct err *e);
void hf_client_cleanup(struct hf_client *c);

/* 1 when HF_HUB_CACHE or HF_HOME is set: the hub cache is then the shared one. */
int hf_env_shares_cache(void);

/* The token of a request and where it came from; never logged. */
struct hf_token {
	char value[CAP_TOKEN_LEN + 1];
	const char *from; /* "the configuration", "HF_TOKEN" or the token file; NULL: none */
};

/*
 * The token to send now: cfg's hf_token, else $HF_TOKEN, else the token
 * file, read again on each call so that a `huggingface-cli login` after the
 * daemon started counts. A token that cannot go into a header (token.h) is
 * not sent, with a warning; a missing file is no token. hf_request calls it
 * for each request to the Hub. Clear t with hf_token_clear.
 */
void hf_token_get(const struct hf_client *c, struct hf_token *t);
void hf_token_clear(struct hf_token *t);

/* One answer. Strings are empty when the header was absent. */
struct hf_resp {
	long status;
	char *body; /* NUL-terminated, malloc'd; NULL for HEAD */
	size_t len;
	char commit[64]; /* X-Repo-Commit */
	char etag[128];	 /* X-Linked-Etag, else ETag, W/ and quotes stripped */
	uint64_t size;	 /* X-Linked-Size, else Content-Length of a non-redirect */
	int has_size;
	char location[CAP_URL_LEN + 1];	 /* absolute; of a redirect not followed */
	char error_code[64];		 /* X-Error-Code */
	char error_message[256];	 /* X-Error-Message */
	char request_id[128];		 /* X-Request-Id */
	char link[CAP_HEADER_VALUE];	 /* Link, as sent */
	long retry_after_s;		 /* -1 when absent */
	int accept_ranges;		 /* Accept-Ranges: bytes */
	char final_url[CAP_URL_LEN + 1]; /* after same-host redirects */
	const char *token_from;		 /* hf_token's from of the token sent; NULL: none */
	/* What an OCI registry says beside the Hub's headers. */
	char www_authenticate[1024]; /* WWW-Authenticate */
	char content_type[128];	     /* Content-Type */
	char content_digest[80];     /* Docker-Content-Digest */
};

void hf_resp_cleanup(struct hf_resp *r);

enum hf_redirects {
	HF_REDIRECT_SAME_HOST = 0, /* Hub requests: follow same-host ones, read the rest */
	HF_REDIRECT_ANY,	   /* plain URLs: follow to any https host (or loopback in tests) */
};

/*
 * One GET or HEAD. Retries 408/429/5xx and dropped connections a few times
 * with backoff (honouring Retry-After, waking on cancel). A 4xx answer is
 * not an error here: it is returned in r for the caller to map. Errors:
 * ERR_OFFLINE, ERR_CANCELLED, ERR_NETWORK (with curl's reason),
 * ERR_TOO_LARGE (answer over the cap), ERR_FORBIDDEN (a URL or redirect the
 * URL policy refuses: http beyond loopback, https to http, a public origin
 * to a private or loopback address).
 */
int hf_request(const struct hf_client *c, const char *method, const char *url,
	       enum hf_redirects redir, struct cancel_token *cancel, struct hf_resp *r,
	       struct err *e);

/*
 * A request to another server than the Hub (an OCI registry, its token
 * service): no Hub token is ever sent; authorization (a whole header value,
 * "Bearer T" or "Basic B64"), when set, goes to the exact origin of
 * auth_origin only, never to a host a redirect leads to; accept, when set,
 * is the Accept header.
 */
struct hf_req_opts {
	const char *accept;
	const char *authorization;
	const char *auth_origin;
};

/* hf_request with opts (NULL: as hf_request). */
int hf_request_opts(const struct hf_client *c, const char *method, const char *url,
		    enum hf_redirects redir, const struct hf_req_opts *opts,
		    struct cancel_token *cancel, struct hf_resp *r, struct err *e);

/*
 * revision -> commit sha (40 hex) through GET /api/models/ORG/REPO/revision/REV.
 * When names is not NULL it also receives the repo's file names (siblings,
 * without sizes): enough to choose files, in the same single request.
 * When gated is not NULL it receives 1 when the Hub gates the repo
 * ("gated": "auto", "manual" or true), else 0.
 */
int hf_resolve_commit(const struct hf_client *c, const char *org, const char *repo,
		      const char *revision, struct cancel_token *cancel, char commit[41],
		      struct hf_listing *names, int *gated, struct err *e);

/*
 * Every file of the repo at commit through the recursive tree listing,
 * following Link rel="next" (at most CAP_LISTING_PAGES pages of at most
 * CAP_LISTING_PAGE_BYTES each, parsed one at a time). Folders count toward
 * out->max_entries as files do. Each path goes through path_check_repo; a bad
 * one fails the whole listing.
 */
int hf_list_tree(const struct hf_client *c, const char *org, const char *repo, const char *commit,
		 struct cancel_token *cancel, struct hf_listing *out, struct err *e);

/* One file's facts from HEAD E/ORG/REPO/resolve/REV/PATH. */
struct hf_file_meta {
	char commit[41];
	char etag[65]; /* sha256 (64 hex) of an LFS file, or git sha1 (40 hex) */
	uint64_t size;
	char url[CAP_URL_LEN + 1]; /* where the bytes are: the CDN location or the resolve URL */
	int url_is_hub;		   /* the bytes come from the Hub host itself (small files) */
};

int hf_head_file(const struct hf_client *c, const char *org, const char *repo, const char *revision,
		 const char *path, struct cancel_token *cancel, struct hf_file_meta *out,
		 struct err *e);

/*
 * For GET /v1/sources/hf/ORG/REPO: the repo's files at revision (NULL: main)
 * with sizes, grouped by quantization tag:
 *   {"repo":"org/repo","revision":"main","commit":"<sha>",
 *    "files":[{"path","size","sha256"|null,"quant"|null,"shard"|null,"shards"|null}],
 *    "quants":[{"tag":"Q4_K_M","size":N,"files":["a-00001-of-00002.gguf",...],
 *               "ref":"hf:org/repo:Q4_K_M"}]}
 * *out is a new reference. Errors as for provisioning (not found, gated, offline),
 * ERR_TOO_LARGE past CAP_SOURCES_ENTRIES files and folders or an answer of
 * the Hub over CAP_LISTING_PAGE_BYTES, ERR_CANCELLED when cancel (may be
 * NULL) fires.
 */
int hf_repo_files_json(const struct prov_config *cfg, const char *org, const char *repo,
		       const char *revision, struct cancel_token *cancel, json_t **out,
		       struct err *e);

#endif
