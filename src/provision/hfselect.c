#include "provision/hfselect.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/cancel.h"
#include "core/caps.h"
#include "core/err.h"
#include "core/util.h"

void hf_listing_init(struct hf_listing *l)
{
	memset(l, 0, sizeof(*l));
}

void hf_listing_cleanup(struct hf_listing *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		free(l->files[i].path);
	free(l->files);
	memset(l, 0, sizeof(*l));
}

int hf_listing_add(struct hf_listing *l, const char *path, uint64_t size, const char *sha256,
		   const char *oid)
{
	if (l->n >= CAP_REPO_FILES)
		return ERR_TOO_LARGE;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->files = xrealloc(l->files, l->cap * sizeof(*l->files));
	}
	struct hf_file *f = &l->files[l->n++];
	memset(f, 0, sizeof(*f));
	f->path = xstrdup(path);
	f->size = size;
	if (sha256)
		snprintf(f->sha256, sizeof(f->sha256), "%s", sha256);
	if (oid)
		snprintf(f->oid, sizeof(f->oid), "%s", oid);
	return 0;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

int hf_is_gguf(const char *path)
{
	size_t n = strlen(path);
	return n > 5 && strcasecmp(path + n - 5, ".gguf") == 0;
}

static int all_digits(const char *s, size_t n)
{
	if (n == 0 || n > 6)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]))
			return 0;
	return 1;
}

int hf_split_shard(const char *path, unsigned *no, unsigned *count, size_t *stem_len)
{
	/* llama.cpp writes "%s-%05d-of-%05d.gguf"; accept 1..6 digits. */
	if (!hf_is_gguf(path))
		return 0;
	size_t end = strlen(path) - 5;
	size_t i = end;
	while (i > 0 && isdigit((unsigned char)path[i - 1]))
		i--;
	size_t count_at = i;
	if (!all_digits(path + count_at, end - count_at) || count_at < 4 ||
	    strncasecmp(path + count_at - 4, "-of-", 4) != 0)
		return 0;
	size_t no_end = count_at - 4;
	i = no_end;
	while (i > 0 && isdigit((unsigned char)path[i - 1]))
		i--;
	if (!all_digits(path + i, no_end - i) || i < 1 || path[i - 1] != '-')
		return 0;
	unsigned long a = strtoul(path + i, NULL, 10);
	unsigned long b = strtoul(path + count_at, NULL, 10);
	if (a < 1 || b < 1 || a > b)
		return 0;
	*no = (unsigned)a;
	*count = (unsigned)b;
	*stem_len = i - 1;
	return 1;
}

/*
 * One tag grammar: [I|T]Q<digits>(_<alnum 1..4>)* for integer quants, and
 * F/BF/FP/MXFP<digits> for float formats. Upper-case input.
 */
static int is_quant_word(const char *s, size_t n)
{
	size_t i = 0;
	static const char *const float_prefixes[] = {"MXFP", "BF", "FP", "F"};
	for (size_t k = 0; k < sizeof(float_prefixes) / sizeof(float_prefixes[0]); k++) {
		size_t pl = strlen(float_prefixes[k]);
		if (n > pl && strncmp(s, float_prefixes[k], pl) == 0 && all_digits(s + pl, n - pl))
			return 1;
	}
	if (i < n && (s[i] == 'I' || s[i] == 'T'))
		i++;
	if (i >= n || s[i] != 'Q')
		return 0;
	i++;
	size_t d = i;
	while (i < n && isdigit((unsigned char)s[i]))
		i++;
	if (i == d)
		return 0;
	while (i < n) {
		if (s[i] != '_')
			return 0;
		i++;
		size_t p = i;
		while (i < n && isalnum((unsigned char)s[i]))
			i++;
		if (i == p || i - p > 4)
			return 0;
	}
	return 1;
}

int hf_quant_tag(const char *path, char tag[HF_QUANT_MAX])
{
	const char *name = base_name(path);
	size_t len = strlen(name);
	unsigned no, count;
	size_t stem;
	if (hf_split_shard(name, &no, &count, &stem))
		len = stem;
	else if (hf_is_gguf(name))
		len -= 5;
	char up[CAP_REPO_PATH_LEN + 1];
	if (len > CAP_REPO_PATH_LEN)
		return 0;
	for (size_t i = 0; i < len; i++)
		up[i] = (char)toupper((unsigned char)name[i]);
	up[len] = '\0';
	/* The last part that is (or ends in) a tag wins: "Q8_0-Llama-Q4_K_M" is Q4_K_M. */
	size_t end = len;
	while (end > 0) {
		size_t start = end;
		while (start > 0 && up[start - 1] != '.' && up[start - 1] != '-')
			start--;
		for (size_t s = start; s < end; s++) {
			if (s != start && up[s - 1] != '_')
				continue;
			if (end - s < HF_QUANT_MAX && is_quant_word(up + s, end - s)) {
				memcpy(tag, up + s, end - s);
				tag[end - s] = '\0';
				return 1;
			}
		}
		if (start == 0)
			break;
		end = start - 1;
	}
	return 0;
}

/* A tag and the index of the first file that carries it. */
struct tag_at {
	char tag[HF_QUANT_MAX];
	size_t at;
};

static int tag_at_by_tag(const void *a, const void *b)
{
	const struct tag_at *x = a, *y = b;
	int c = strcmp(x->tag, y->tag);
	if (c)
		return c;
	return x->at < y->at ? -1 : x->at > y->at;
}

static int tag_at_by_index(const void *a, const void *b)
{
	const struct tag_at *x = a, *y = b;
	return x->at < y->at ? -1 : x->at > y->at;
}

/*
 * Keeps the first entry of every tag, in the order of the files: two sorts,
 * so that a listing of N files with N distinct tags costs O(N log N), not
 * the O(N^2) of comparing each tag with every one before it.
 */
static size_t tags_unique(struct tag_at *t, size_t n)
{
	size_t k = 0;
	qsort(t, n, sizeof(*t), tag_at_by_tag);
	for (size_t i = 0; i < n; i++)
		if (k == 0 || strcmp(t[k - 1].tag, t[i].tag) != 0)
			t[k++] = t[i];
	qsort(t, k, sizeof(*t), tag_at_by_index);
	return k;
}

/* Writes the tags as "A, B, C" into buf (cut where it is full). */
static void tags_join(const struct tag_at *t, size_t n, const char *sep, char *buf, size_t size)
{
	size_t used = 0;
	if (size)
		buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		const char *s = i ? sep : "";
		if (used + strlen(s) + strlen(t[i].tag) >= size)
			break;
		used += (size_t)snprintf(buf + used, size - used, "%s%s", s, t[i].tag);
	}
}

static int select_cancelled(struct err *e)
{
	return err_set(e, ERR_CANCELLED, "cancelled");
}

/* The tags of the GGUF files of l, deduplicated; ERR_CANCELLED when cancel fires. */
static int listing_tags(const struct hf_listing *l, struct cancel_token *cancel,
			struct tag_at **out, size_t *n, struct err *e)
{
	struct tag_at *t = xcalloc(l->n ? l->n : 1, sizeof(*t));
	size_t k = 0;
	for (size_t i = 0; i < l->n; i++) {
		if (cancel_is_set(cancel)) {
			free(t);
			return select_cancelled(e);
		}
		if (hf_is_gguf(l->files[i].path) && hf_quant_tag(l->files[i].path, t[k].tag))
			t[k++].at = i;
	}
	*n = tags_unique(t, k);
	*out = t;
	return 0;
}

static int is_mmproj(const char *path)
{
	return strncasecmp(base_name(path), "mmproj", 6) == 0;
}

size_t hf_model_quants(const char *const *paths, size_t n, char (*tags)[HF_QUANT_MAX], size_t max)
{
	struct tag_at *t = xcalloc(n ? n : 1, sizeof(*t));
	size_t k = 0;
	/* A vision projector's tag is the model's only when the model is nothing else. */
	for (int proj = 0; proj < 2 && k == 0; proj++)
		for (size_t i = 0; i < n; i++)
			if (hf_is_gguf(paths[i]) && is_mmproj(paths[i]) == proj &&
			    hf_quant_tag(paths[i], t[k].tag))
				t[k++].at = i;
	k = tags_unique(t, k);
	for (size_t i = 0; i < k && i < max; i++)
		memcpy(tags[i], t[i].tag, HF_QUANT_MAX);
	free(t);
	return k < max ? k : max;
}

/*
 * Appends file i, or every shard of its set in shard order: one pass over
 * the listing puts each shard of the set in its slot, so a set of M shards
 * costs O(N), not M passes.
 */
static int collect_set(const struct hf_listing *l, size_t i, const char *repo,
		       struct cancel_token *cancel, size_t *idx, size_t max, size_t *n,
		       struct err *e)
{
	unsigned no, count;
	size_t stem;
	const char *p = l->files[i].path;
	if (!hf_split_shard(p, &no, &count, &stem)) {
		if (*n >= max)
			return err_set(e, ERR_TOO_LARGE, "too many files in %s", repo);
		idx[(*n)++] = i;
		return 0;
	}
	if (count > max - *n)
		return err_set(e, ERR_TOO_LARGE, "'%s' is split into %u shards, more than %zu", p,
			       count, max - *n);
	size_t *slot = idx + *n;
	for (unsigned k = 0; k < count; k++)
		slot[k] = l->n;
	/* File i holds its own slot: another name of the same shard (".GGUF") must not take it. */
	slot[no - 1] = i;
	for (size_t j = 0; j < l->n; j++) {
		unsigned no2, count2;
		size_t stem2;
		const char *q = l->files[j].path;
		if (cancel_is_set(cancel))
			return select_cancelled(e);
		if (hf_split_shard(q, &no2, &count2, &stem2) && count2 == count && stem2 == stem &&
		    strncmp(p, q, stem) == 0 && slot[no2 - 1] == l->n)
			slot[no2 - 1] = j;
	}
	for (unsigned k = 0; k < count; k++)
		if (slot[k] == l->n)
			return err_set(e, ERR_CORRUPT,
				       "shard %u of %u of '%.*s' is missing from %s", k + 1, count,
				       (int)stem, p, repo);
	*n += count;
	return 0;
}

/*
 * 1 if the file name carries tag as a whole word (case-insensitive): after
 * the start, '.', '-' or '_', and before the end, '.' or '-'. This also finds
 * tags the grammar of hf_quant_tag splits ("UD-Q4_K_XL").
 */
static int name_has_tag(const char *path, const char *tag)
{
	const char *name = base_name(path);
	size_t tl = strlen(tag);
	if (tl == 0)
		return 0;
	for (const char *p = name; *p; p++) {
		if (strncasecmp(p, tag, tl) != 0)
			continue;
		int before = p == name || p[-1] == '.' || p[-1] == '-' || p[-1] == '_';
		int after = p[tl] == '\0' || p[tl] == '.' || p[tl] == '-';
		if (before && after)
			return 1;
	}
	return 0;
}

/* 1 if GGUF path p, whose grammar tag is own ("" if none), carries tag. */
static int gguf_has_tag(const char *p, const char *own, const char *tag)
{
	return strcasecmp(own, tag) == 0 || name_has_tag(p, tag);
}

static const char *const default_tags[] = {"Q4_K_M", "Q8_0"};
#define NDEFAULT (sizeof(default_tags) / sizeof(default_tags[0]))

/*
 * The candidates of one pass over the listing: the first model (not a
 * vision projector) of each preferred tag, the first of the tag asked for,
 * the first model GGUF and the first projector. l->n where there is none.
 */
struct picks {
	size_t tag;		  /* the asked tag, a model */
	size_t tag_mmproj;	  /* the asked tag, a projector */
	size_t pref[NDEFAULT];	  /* each default tag, a model */
	size_t gguf, gguf_mmproj; /* any GGUF */
};

static int scan(const struct hf_listing *l, const char *tag, struct cancel_token *cancel,
		struct picks *pk, struct err *e)
{
	pk->tag = pk->tag_mmproj = pk->gguf = pk->gguf_mmproj = l->n;
	for (size_t k = 0; k < NDEFAULT; k++)
		pk->pref[k] = l->n;
	for (size_t i = 0; i < l->n; i++) {
		const char *p = l->files[i].path;
		if (cancel_is_set(cancel))
			return select_cancelled(e);
		if (!hf_is_gguf(p))
			continue;
		int mm = is_mmproj(p);
		char own[HF_QUANT_MAX];
		if (!hf_quant_tag(p, own))
			own[0] = '\0';
		if (tag) {
			if (!gguf_has_tag(p, own, tag))
				continue;
			if (!mm) {
				pk->tag = i;
				return 0;
			}
			if (pk->tag_mmproj == l->n)
				pk->tag_mmproj = i;
			continue;
		}
		if (mm) {
			if (pk->gguf_mmproj == l->n)
				pk->gguf_mmproj = i;
			continue;
		}
		if (pk->gguf == l->n)
			pk->gguf = i;
		for (size_t k = 0; k < NDEFAULT; k++)
			if (pk->pref[k] == l->n && gguf_has_tag(p, own, default_tags[k]))
				pk->pref[k] = i;
		if (pk->pref[0] < l->n)
			return 0; /* the first preference: nothing later can win */
	}
	return 0;
}

int hf_select(const struct hf_listing *l, enum ref_selector sel, const char *text, const char *repo,
	      struct cancel_token *cancel, size_t *idx, size_t max, size_t *n, struct err *e)
{
	struct picks pk;
	int rc;
	*n = 0;
	switch (sel) {
	case SEL_ALL:
		if (l->n > max)
			return err_set(e, ERR_TOO_LARGE, "%s has %zu files, more than %zu", repo,
				       l->n, max);
		for (size_t i = 0; i < l->n; i++)
			idx[(*n)++] = i;
		if (!*n)
			return err_set(e, ERR_NOT_FOUND, "%s has no files", repo);
		return 0;
	case SEL_PATH:
		for (size_t i = 0; i < l->n; i++) {
			if (cancel_is_set(cancel))
				return select_cancelled(e);
			if (strcmp(l->files[i].path, text) == 0)
				return collect_set(l, i, repo, cancel, idx, max, n, e);
		}
		return err_set(e, ERR_NOT_FOUND, "file '%s' not found in %s", text, repo);
	case SEL_QUANT: {
		rc = scan(l, text, cancel, &pk, e);
		if (rc)
			return rc;
		size_t i = pk.tag < l->n ? pk.tag : pk.tag_mmproj;
		if (i < l->n)
			return collect_set(l, i, repo, cancel, idx, max, n, e);
		struct tag_at *t = NULL;
		size_t nt = 0;
		char avail[512];
		rc = listing_tags(l, cancel, &t, &nt, e);
		if (rc)
			return rc;
		tags_join(t, nt, ", ", avail, sizeof(avail));
		free(t);
		if (nt)
			return err_set(e, ERR_NOT_FOUND,
				       "no GGUF file matching %s in %s; available: %s", text, repo,
				       avail);
		return err_set(e, ERR_NOT_FOUND, "no GGUF file matching %s in %s", text, repo);
	}
	case SEL_DEFAULT: {
		rc = scan(l, NULL, cancel, &pk, e);
		if (rc)
			return rc;
		size_t i = pk.gguf < l->n ? pk.gguf : pk.gguf_mmproj;
		for (size_t k = NDEFAULT; k-- > 0;)
			if (pk.pref[k] < l->n)
				i = pk.pref[k];
		if (i < l->n)
			return collect_set(l, i, repo, cancel, idx, max, n, e);
		return err_set(e, ERR_NOT_FOUND, "no GGUF file in %s", repo);
	}
	}
	return err_set(e, ERR_INTERNAL, "unknown selector");
}
