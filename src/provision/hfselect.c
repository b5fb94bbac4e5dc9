#include "provision/hfselect.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

size_t hf_available_tags(const struct hf_listing *l, char *buf, size_t size)
{
	size_t count = 0, used = 0;
	if (size)
		buf[0] = '\0';
	for (size_t i = 0; i < l->n; i++) {
		char tag[HF_QUANT_MAX];
		if (!hf_is_gguf(l->files[i].path) || !hf_quant_tag(l->files[i].path, tag))
			continue;
		int seen = 0;
		for (size_t j = 0; j < i && !seen; j++) {
			char t2[HF_QUANT_MAX];
			seen = hf_is_gguf(l->files[j].path) && hf_quant_tag(l->files[j].path, t2) &&
			       strcmp(t2, tag) == 0;
		}
		if (seen)
			continue;
		int w = snprintf(buf + used, size > used ? size - used : 0, "%s%s",
				 count ? ", " : "", tag);
		if (w > 0 && used + (size_t)w < size)
			used += (size_t)w;
		count++;
	}
	return count;
}

static int is_mmproj(const char *path)
{
	return strncasecmp(base_name(path), "mmproj", 6) == 0;
}

/* Appends file i, or every shard of its set in shard order. */
static int collect_set(const struct hf_listing *l, size_t i, const char *repo, size_t *idx,
		       size_t max, size_t *n, struct err *e)
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
		return err_set(e, ERR_TOO_LARGE, "'%s' is split into %u shards, more than %zu",
			       p, count, max - *n);
	for (unsigned k = 1; k <= count; k++) {
		size_t found = l->n;
		for (size_t j = 0; j < l->n && found == l->n; j++) {
			unsigned no2, count2;
			size_t stem2;
			const char *q = l->files[j].path;
			if (hf_split_shard(q, &no2, &count2, &stem2) && no2 == k &&
			    count2 == count && stem2 == stem && strncmp(p, q, stem) == 0)
				found = j;
		}
		if (found == l->n)
			return err_set(e, ERR_CORRUPT,
				       "shard %u of %u of '%.*s' is missing from %s", k, count,
				       (int)stem, p, repo);
		idx[(*n)++] = found;
	}
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

/*
 * Index of the first GGUF carrying tag, preferring a model over a vision
 * projector (mmproj), which is taken only when allow_mmproj; l->n if none.
 */
static size_t find_tag(const struct hf_listing *l, const char *tag, int allow_mmproj)
{
	size_t mm = l->n;
	for (size_t i = 0; i < l->n; i++) {
		char t[HF_QUANT_MAX];
		const char *p = l->files[i].path;
		if (!hf_is_gguf(p))
			continue;
		if (!(hf_quant_tag(p, t) && strcasecmp(t, tag) == 0) && !name_has_tag(p, tag))
			continue;
		if (!is_mmproj(p))
			return i;
		if (mm == l->n)
			mm = i;
	}
	return allow_mmproj ? mm : l->n;
}

static const char *const default_tags[] = {"Q4_K_M", "Q8_0"};

int hf_select(const struct hf_listing *l, enum ref_selector sel, const char *text,
	      const char *repo, size_t *idx, size_t max, size_t *n, struct err *e)
{
	*n = 0;
	char avail[512];
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
		for (size_t i = 0; i < l->n; i++)
			if (strcmp(l->files[i].path, text) == 0)
				return collect_set(l, i, repo, idx, max, n, e);
		return err_set(e, ERR_NOT_FOUND, "file '%s' not found in %s", text, repo);
	case SEL_QUANT: {
		size_t i = find_tag(l, text, 1);
		if (i < l->n)
			return collect_set(l, i, repo, idx, max, n, e);
		if (hf_available_tags(l, avail, sizeof(avail)))
			return err_set(e, ERR_NOT_FOUND,
				       "no GGUF file matching %s in %s; available: %s", text, repo,
				       avail);
		return err_set(e, ERR_NOT_FOUND, "no GGUF file matching %s in %s", text, repo);
	}
	case SEL_DEFAULT: {
		for (size_t k = 0; k < sizeof(default_tags) / sizeof(default_tags[0]); k++) {
			size_t i = find_tag(l, default_tags[k], 0);
			if (i < l->n)
				return collect_set(l, i, repo, idx, max, n, e);
		}
		size_t first = l->n;
		for (size_t i = 0; i < l->n; i++) {
			if (!hf_is_gguf(l->files[i].path))
				continue;
			if (!is_mmproj(l->files[i].path))
				return collect_set(l, i, repo, idx, max, n, e);
			if (first == l->n)
				first = i;
		}
		if (first < l->n)
			return collect_set(l, first, repo, idx, max, n, e);
		return err_set(e, ERR_NOT_FOUND, "no GGUF file in %s", repo);
	}
	}
	return err_set(e, ERR_INTERNAL, "unknown selector");
}
