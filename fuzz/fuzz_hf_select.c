/*
 * fuzz_hf_select: choosing files from a Hub listing (provision/hfselect.h),
 * with names as the Hub's tree listing may send them. The input is lines:
 * the first is a ref selector (what follows "org/repo:" in a ref, or empty
 * for none), the others are repo paths; a path that path_check_repo refuses
 * is dropped, as hf_list_tree refuses it, and so is a repeated one.
 *
 * Invariants: shard names and quant tags read back consistently; a
 * selection is non-empty, within max, without repeats, holds the named
 * file for a path selector, only GGUF files for a tag or the default, and a
 * whole shard set in shard order; a refusal carries a clean message.
 */
#include <ctype.h>
#include <strings.h>

#include "fuzz.h"

#include "core/caps.h"
#include "core/err.h"
#include "core/parse.h"
#include "core/ref.h"
#include "provision/hfselect.h"

#define SELECT_MAX 64

static void check_names(const char *path)
{
	unsigned no = 0, count = 0;
	size_t stem = 0;
	if (hf_split_shard(path, &no, &count, &stem)) {
		FUZZ_CHECK(hf_is_gguf(path));
		FUZZ_CHECK(no >= 1 && no <= count && stem < strlen(path) && path[stem] == '-');
	}
	char tag[HF_QUANT_MAX];
	if (hf_quant_tag(path, tag)) {
		size_t n = strnlen(tag, HF_QUANT_MAX);
		FUZZ_CHECK(n > 0 && n < HF_QUANT_MAX);
		for (size_t i = 0; i < n; i++)
			FUZZ_CHECK(!islower((unsigned char)tag[i]) && !strchr("./-", tag[i]));
	}
}

static void check_selection(const struct hf_listing *l, const struct model_ref *r,
			    const size_t *idx, size_t n)
{
	FUZZ_CHECK(n >= 1 && n <= SELECT_MAX);
	for (size_t i = 0; i < n; i++) {
		FUZZ_CHECK(idx[i] < l->n);
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(idx[i] != idx[j]);
	}
	if (r->sel == SEL_ALL)
		FUZZ_CHECK(n == l->n);
	if (r->sel == SEL_QUANT || r->sel == SEL_DEFAULT)
		for (size_t i = 0; i < n; i++)
			FUZZ_CHECK(hf_is_gguf(l->files[idx[i]].path));
	if (r->sel == SEL_PATH) {
		int named = 0;
		for (size_t i = 0; i < n; i++)
			named |= strcmp(l->files[idx[i]].path, r->selector) == 0;
		FUZZ_CHECK(named);
	}
	unsigned no, count;
	size_t stem;
	if (r->sel != SEL_ALL && hf_split_shard(l->files[idx[0]].path, &no, &count, &stem)) {
		FUZZ_CHECK(n == count);
		for (size_t i = 0; i < n; i++) {
			unsigned no2, count2;
			size_t stem2;
			FUZZ_CHECK(hf_split_shard(l->files[idx[i]].path, &no2, &count2, &stem2));
			FUZZ_CHECK(no2 == i + 1 && count2 == count && stem2 == stem);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstr(data, size);
	struct hf_listing l;
	hf_listing_init(&l);
	char *line = s, *next = strchr(line, '\n');
	if (next)
		*next++ = '\0';
	char *ref_text = malloc(strlen(line) + 16);
	FUZZ_CHECK(ref_text != NULL);
	sprintf(ref_text, "org/repo%s%s", line[0] ? ":" : "", line);
	static struct model_ref r;
	if (ref_parse(ref_text, &r, NULL) != 0)
		goto out;

	for (line = next; line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (path_check_repo(line, strlen(line), NULL) != 0)
			continue;
		int dup = 0;
		for (size_t i = 0; i < l.n && !dup; i++)
			dup = strcmp(l.files[i].path, line) == 0;
		if (dup)
			continue;
		check_names(line);
		FUZZ_CHECK(hf_listing_add(&l, line, strlen(line) * 1000, NULL, NULL) == 0);
	}

	size_t idx[SELECT_MAX], n = 0;
	struct err e = {0};
	int rc = hf_select(&l, r.sel, r.selector, "org/repo", NULL, idx, SELECT_MAX, &n, &e);
	if (rc == 0) {
		check_selection(&l, &r, idx, n);
	} else {
		FUZZ_CHECK(rc == ERR_NOT_FOUND || rc == ERR_TOO_LARGE || rc == ERR_CORRUPT);
		FUZZ_CHECK(e.code == rc && fuzz_err_ok(&e));
	}
out:
	hf_listing_cleanup(&l);
	free(ref_text);
	free(s);
	return 0;
}
