/*
 * ref: model references (docs/refs.md).
 *
 *   hf:ORG/REPO[:SELECTOR][@REVISION]   Hugging Face ("hf:" may be omitted)
 *   ORG/REPO:FILE                       the rbee form, same as hf:
 *   https://HOST/PATH[#sha256=HEX]      any HTTPS file, digest optionally pinned
 *   file:///ABS/PATH[#sha256=HEX]       a local file, content optionally pinned
 *   oci://REGISTRY/NAME[:TAG|@sha256:HEX]  a model artifact in an OCI registry
 *   docker.io/NAME[:TAG]                the same on Docker Hub (docker.io/ai/smollm2)
 *   ollama:NAME[:TAG], ollama:USER/NAME:TAG  a model of the Ollama library
 *   s3://BUCKET/KEY[#sha256=HEX]        an object of the site's S3 store
 *
 * ref_parse() checks everything (names, repo paths, revision, URL, digest)
 * and says precisely what was wrong: "model ref 'a/b/c': a Hugging Face repo
 * is ORG/REPO". The struct is caller-owned and holds its own copies.
 *
 * Details of the grammar:
 * - SELECTOR '*' is SEL_ALL; a word of letters, digits, '_' and '-' with at
 *   least one digit and no '/' or '.' is a quant tag (SEL_QUANT, stored
 *   upper-case: "q4_k_m" -> "Q4_K_M", "UD-Q4_K_XL"); anything else is a repo
 *   path (SEL_PATH, checked by path_check_repo), e.g. "x.gguf", "LICENSE".
 * - REVISION starts at the last '@', so a path containing '@' needs an
 *   explicit revision after it: "org/repo:a@b.gguf@main".
 * - URLs: at most CAP_REF_LEN bytes, ASCII without spaces or control bytes,
 *   valid %-escapes, a path, and whatever the URL policy (core/url.h)
 *   requires: libcurl's parse, a host, no userinfo ("user:pass@"), port
 *   1..65535, a dotted-quad IPv4 host, plain http:// only to loopback
 *   (127.0.0.0/8, localhost, [::1]), which the test suite's fake servers use.
 *   The only fragment is #sha256= with 64 hex digits (stored lowercase).
 * - file:///ABS/PATH: %-escapes are decoded, then the path is checked: no
 *   control characters (so no NUL), no ".." component, not a directory. A
 *   trailing #sha256=HEX pins the content (a file the CLI uploaded to the
 *   daemon is named this way); any other '#' is part of the path.
 * - OCI refs: REGISTRY is HOST[:PORT] (docker.io and index.docker.io mean
 *   registry-1.docker.io, where Docker Hub's API answers); NAME is one or
 *   more '/'-separated lower-case components of letters, digits and single
 *   '.', '_', '__' or '-' runs between them, at most CAP_OCI_NAME_LEN bytes;
 *   TAG is [A-Za-z0-9_][A-Za-z0-9._-]{0,127}, default "latest", stored in
 *   revision; @sha256:HEX pins the manifest (revision "sha256:HEX", the hex
 *   also in sha256). A Docker Hub name without '/' is library/NAME.
 * - ollama: refs name the repository library/NAME, or USER/NAME; the
 *   registry (registry.ollama.ai, or RBEE_HIVE_OLLAMA_REGISTRY) is the
 *   provisioner's to choose, so host stays empty.
 * - s3://BUCKET/KEY: BUCKET as S3 names buckets (3..63 of a-z, 0-9, '.',
 *   '-'); KEY of letters, digits, '-', '.', '_', '~' and '/', no empty, "."
 *   or ".." part (ref_s3_key_check), so the key needs no encoding in a
 *   signed path. Stored as url "s3://BUCKET/KEY", host BUCKET, path KEY.
 * On failure *r is zeroed.
 */
#ifndef RBEE_CORE_REF_H
#define RBEE_CORE_REF_H

#include <stddef.h>

#include "core/caps.h"

struct err;

enum ref_kind { REF_HF = 1, REF_URL, REF_FILE, REF_S3, REF_OCI, REF_OLLAMA };

enum ref_selector {
	SEL_DEFAULT = 0, /* none given: Q4_K_M, else Q8_0, else the only/first .gguf */
	SEL_PATH,	 /* an exact repo path */
	SEL_QUANT,	 /* a quantization tag such as Q4_K_M (stored upper-case) */
	SEL_ALL,	 /* '*': the whole snapshot */
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
	/* REF_OCI, REF_OLLAMA: the repository; the tag or "sha256:HEX" is in revision */
	char name[CAP_OCI_NAME_LEN + 1];
	/* REF_URL */
	char url[CAP_URL_LEN + 1]; /* without the fragment */
	char host[256];		   /* also the registry (HOST[:PORT]) of REF_OCI */
	char sha256[65]; /* pinned digest, lowercase; empty when not pinned (also REF_FILE, REF_OCI)
			  */
	/* REF_FILE; REF_S3: url "s3://BUCKET/KEY", host the bucket, path the key */
	char path[CAP_URL_LEN + 1]; /* absolute local path */
};

/* An S3 object key this program reads and writes: 1..1024 bytes (rules above). */
#define REF_S3_KEY_MAX 1024
/* 0 when name is an S3 bucket name (3..63 of a-z 0-9 . -), else ERR_INVALID naming it. */
int ref_s3_bucket_check(const char *name, struct err *e);
/* 0 when key is an object key by the rules above, else ERR_INVALID naming what. */
int ref_s3_key_check(const char *key, const char *what, struct err *e);

/* Parses s into r. Returns 0, or ERR_UNPROCESSABLE with a precise message. */
int ref_parse(const char *s, struct model_ref *r, struct err *e);

/*
 * The canonical ref text of a parsed ref ("hf:org/repo:Q4_K_M@main"), into buf.
 * Returns 0 or ERR_TOO_LARGE.
 */
int ref_format(const struct model_ref *r, char *buf, size_t size);

/* The revision a Hugging Face ref means when it names none. */
#define REF_DEFAULT_REVISION "main"

/*
 * Catalog ids: hf:org/repo:path/of/first/file, url:<first 16 hex of sha256>,
 * file:<name>. An hf id names one revision of one model: the whole snapshot
 * (first_path "*") is hf:org/repo:*, and a revision other than
 * REF_DEFAULT_REVISION follows as "@REVISION" (hf:org/repo:x.gguf@v1,
 * hf:org/repo:*@v1; also the default one after a path with an '@'), so the
 * id is itself a ref that pulls the same model again. revision may be NULL
 * or "" (the default). Returns 0 or ERR_TOO_LARGE.
 */
int ref_catalog_id_hf(const char *org, const char *repo, const char *first_path,
		      const char *revision, char *buf, size_t size);
int ref_catalog_id_url(const char *sha256, char *buf, size_t size);
int ref_catalog_id_file(const char *name, char *buf, size_t size);
/*
 * The catalog id of an OCI or Ollama ref, which is also its canonical text:
 * oci://REGISTRY/NAME:TAG or oci://REGISTRY/NAME@sha256:HEX;
 * ollama:NAME:TAG for the library, ollama:USER/NAME:TAG for a user's model.
 * Returns 0, ERR_TOO_LARGE, or ERR_INVALID for another kind of ref.
 */
int ref_catalog_id_oci(const struct model_ref *r, char *buf, size_t size);

/* The tag an OCI or Ollama ref means when it names none. */
#define REF_DEFAULT_TAG "latest"

/*
 * 1 if the user's text `query` names catalog id `id`: the id itself; the id
 * without "hf:"; the rbee form ORG/REPO:FILE; ORG/REPO (any model of the
 * repo: the caller decides ambiguity); ORG/REPO:QUANT where the file name
 * carries that tag (case-insensitive, as a whole word: "Q4_K" does not match
 * "x.Q4_K_M.gguf"); ORG/REPO:* only the whole-snapshot id. ORG/REPO compare
 * case-insensitively, like the Hub. A query that names a revision matches
 * only ids of that revision (no "@" in the id is REF_DEFAULT_REVISION); one
 * that names none matches every revision. A URL model also matches a URL ref
 * pinning the same #sha256=; a file model a file:/// ref with the same file
 * name; an OCI or Ollama model its own ref, or one that names the same
 * repository without a tag or digest.
 * Callers count matches over the catalog: one match is the model, more is
 * ambiguous (ERR_CONFLICT), none is ERR_NOT_FOUND.
 */
int ref_matches_id(const char *query, const char *id);

/*
 * 1 if refs a and b (texts; catalog hf ids are refs too) both name the same
 * Hugging Face repo, whatever their selectors and revisions. ORG/REPO
 * compare case-insensitively, like the Hub.
 */
int ref_same_hf_repo(const char *a, const char *b);

#endif
