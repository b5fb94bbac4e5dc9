/*
 * fuzz_hf_listing: one page of the Hub's recursive tree listing as it comes
 * off the network (hf_tree_page_parse in provision/hfapi_internal.h, the
 * parser of hf_list_tree). The input is the Link
 * header's value, a NUL byte, then the JSON body; without a NUL byte it is
 * all body and there is no Link header.
 *
 * Invariants: an accepted page adds only files whose paths pass
 * path_check_repo, with a sha256 of 64 lowercase hex digits or none and a
 * git oid of 40 or none, within CAP_REPO_FILES; the next page's URL is one
 * the Link header names between < and >, and fits its buffer; a refusal has
 * one of the documented codes and a clean message.
 */
#include "fuzz.h"

#include "core/caps.h"
#include "core/err.h"
#include "core/parse.h"
#include "core/util.h"
#include "provision/hfapi.h"
#include "provision/hfapi_internal.h"
#include "provision/hfselect.h"

static void check_file(const struct hf_file *f)
{
	size_t sha = strnlen(f->sha256, sizeof(f->sha256));
	size_t oid = strnlen(f->oid, sizeof(f->oid));
	FUZZ_CHECK(path_check_repo(f->path, strlen(f->path), NULL) == 0);
	FUZZ_CHECK(sha == 0 || (sha == 64 && is_hex_lower(f->sha256, 64)));
	FUZZ_CHECK(oid == 0 || (oid == 40 && is_hex_lower(f->oid, 40)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t first;
	const uint8_t *rest = fuzz_split(data, size, &first);
	char *link = rest ? fuzz_cstr(data, first) : NULL;
	const char *body = rest ? (const char *)rest : (const char *)data;
	size_t len = rest ? size - first - 1 : size;
	/* A small buffer now and then, so that a next URL too long for it is tried. */
	char next[CAP_URL_LEN + 1];
	size_t next_size = size % 7 == 0 ? 24 : sizeof(next);
	struct hf_listing l;
	struct err e = {0};
	hf_listing_init(&l);

	int rc = hf_tree_page_parse(body, len, link, "org/repo", NULL, &l, next, next_size, &e);
	FUZZ_CHECK(l.n <= CAP_REPO_FILES);
	if (rc == 0) {
		for (size_t i = 0; i < l.n; i++)
			check_file(&l.files[i]);
		size_t n = strnlen(next, next_size);
		FUZZ_CHECK(n < next_size);
		if (n) {
			FUZZ_CHECK(link != NULL);
			char *quoted = malloc(n + 3);
			FUZZ_CHECK(quoted != NULL);
			snprintf(quoted, n + 3, "<%s>", next);
			FUZZ_CHECK(strstr(link, quoted) != NULL);
			free(quoted);
		}
	} else {
		FUZZ_CHECK(rc == ERR_INVALID || rc == ERR_NETWORK || rc == ERR_DIGEST ||
			   rc == ERR_TOO_LARGE);
		FUZZ_CHECK(e.code == rc && fuzz_err_ok(&e));
	}

	hf_listing_cleanup(&l);
	free(link);
	return 0;
}
