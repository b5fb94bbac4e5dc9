/*
 * hfapi_internal: what hfapi.c (the client and its requests) and hfrepo.c
 * (the requests about one repository) share, and the page parser of the
 * tree listing, which the fuzz target and the unit tests call off the
 * network. Not for other modules: they use hfapi.h.
 */
#ifndef RBEE_PROVISION_HFAPI_INTERNAL_H
#define RBEE_PROVISION_HFAPI_INTERNAL_H

#include <stddef.h>

struct cancel_token;
struct err;
struct hf_client;
struct hf_listing;
struct hf_resp;

/* What a Hub error is about, for its message. */
struct hf_what {
	const char *repo;	/* "org/repo" */
	const char *revision;	/* may be NULL */
	const char *path;	/* may be NULL */
	const char *token_from; /* set by hf_check_status */
	const char *token_file; /* set by hf_check_status */
};

/*
 * 0 for a 2xx answer r; else maps the Hub's answer (status, X-Error-Code,
 * X-Error-Message) through one table to an ERR_* and a plain message about
 * w: "repo 'a/b' not found", "revision 'x' not found in a/b", "file 'p' not
 * found in a/b", "'a/b' is gated: ...". A message that needs a token names
 * where the daemon looks for one (HF_TOKEN and c's token file), or where
 * the token it sent came from. Returns the code (never 0).
 */
int hf_check_status(const struct hf_client *c, const struct hf_resp *r, const struct hf_what *w,
		    struct err *e);

/*
 * One page of the tree listing, with no I/O: body is the JSON answer (len
 * bytes, no NUL needed), link the value of its Link header (NULL or ""
 * when absent). Appends the page's files to out (folders skipped; every
 * path through path_check_repo; the size, and lfs.oid as the sha256 of an
 * LFS file) and puts the URL of Link rel="next" into next_url ("" on the
 * last page). repo_id ("org/repo") names the repo in messages. Errors:
 * ERR_INVALID (bad JSON, unsafe path), ERR_NETWORK (not a listing, an entry
 * without type, path, size or with a bad lfs.oid), ERR_DIGEST (two sizes),
 * ERR_TOO_LARGE (over the caps, a next URL longer than next_size),
 * ERR_CANCELLED as soon as cancel (may be NULL) fires.
 */
int hf_tree_page_parse(const char *body, size_t len, const char *link, const char *repo_id,
		       struct cancel_token *cancel, struct hf_listing *out, char *next_url,
		       size_t next_size, struct err *e);

#endif
