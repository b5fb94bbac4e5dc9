/*
 * ref: model references (DESIGN §3 of docs/architecture.md).
 *
 *   hf:ORG/REPO[:SELECTOR][@REVISION]   Hugging Face ("hf:" may be omitted)
 *   ORG/REPO:FILE                       the rbee form, same as hf:
 *   https://HOST/PATH[#sha256=HEX]      any HTTPS file, digest optionally pinned
 *   file:///ABS/PATH                    a local file
 *
 * ref_parse() checks everything (names, repo paths, revision, URL, digest)
 * and says precisely what was wrong: "model ref 'a/b/c': a Hugging Face repo
 * is ORG/REPO". The struct is caller-owned and holds its own copies.
 */
#ifndef RBEE_CORE_REF_H
#define RBEE_CORE_REF_H

#include <stddef.h>

#include "core/caps.h"

struct err;

enum ref_kind { REF_HF = 1, REF_URL, REF_FILE };

enum ref_selector {
	SEL_DEFAULT = 0, /* none given: Q4_K_M, else Q8_0, else the only/first .gguf */
	SEL_PATH,        /* an exact repo path */
	SEL_QUANT,       /* a quantization tag such as Q4_K_M (stored upper-case) */
	SEL_ALL,         /* '*': the whole snapshot */
};

struct model_ref {
	enum ref_kind kind;
	/* REF_HF */
	char org[CAP_REPO_ID_LEN + 1];
	char repo[CAP_REPO_ID_LEN + 1];
	enum ref_selector sel;
	char selector[CAP_REPO_PATH_LEN + 1]; /* path or tag; empty for DEFAULT/ALL */
	char revision[CAP_REVISION_LEN + 1];  /* "main" when not given */
	int revision_given;
	/* REF_URL */
	char url[CAP_URL_LEN + 1]; /* without the fragment */
	char host[256];
	char sha256[65]; /* pinned digest, lowercase; empty when not pinned */
	/* REF_FILE */
	char path[CAP_URL_LEN + 1]; /* absolute local path */
};

/* Parses s into r. Returns 0, or ERR_UNPROCESSABLE with a precise message. */
int ref_parse(const char *s, struct model_ref *r, struct err *e);

/*
 * The canonical ref text of a parsed ref ("hf:org/repo:Q4_K_M@main"), into buf.
 * Returns 0 or ERR_TOO_LARGE.
 */
int ref_format(const struct model_ref *r, char *buf, size_t size);

/*
 * Catalog ids: hf:org/repo:path/of/first/file, url:<first 16 hex of sha256>,
 * file:<name>. Returns 0 or ERR_TOO_LARGE.
 */
int ref_catalog_id_hf(const char *org, const char *repo, const char *first_path, char *buf,
		      size_t size);
int ref_catalog_id_url(const char *sha256, char *buf, size_t size);
int ref_catalog_id_file(const char *name, char *buf, size_t size);

/*
 * 1 if the user's text `query` names catalog id `id`: the id itself; the id
 * without "hf:"; the rbee form ORG/REPO:FILE; ORG/REPO (when the model has a
 * single catalog entry for that repo the caller decides ambiguity);
 * ORG/REPO:QUANT where the file name carries that tag (case-insensitive).
 * Callers count matches over the catalog: one match is the model, more is
 * ambiguous (ERR_CONFLICT), none is ERR_NOT_FOUND.
 */
int ref_matches_id(const char *query, const char *id);

#endif
