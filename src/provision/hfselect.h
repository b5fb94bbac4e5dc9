/*
 * hfselect: which files of a Hub repo listing a model ref asks for
 * (docs/refs.md). Pure functions over a listing, no I/O, so they are unit
 * tested on their own.
 *
 *   exact path   that file; when it is a split shard, every shard of its set
 *   quant tag    the GGUF whose name carries the tag (case-insensitive), with
 *                all of its -0000N-of-0000M shards, in shard order
 *   '*'          every file of the snapshot
 *   default      Q4_K_M, else Q8_0, else the only/first .gguf
 *
 * A listing is owned by its caller: hf_listing_init / hf_listing_cleanup.
 */
#ifndef RBEE_PROVISION_HFSELECT_H
#define RBEE_PROVISION_HFSELECT_H

#include <stddef.h>
#include <stdint.h>

#include "core/ref.h"

struct cancel_token;
struct err;

#define HF_QUANT_MAX 32

struct hf_file {
	char *path;	 /* repo path, checked by path_check_repo */
	uint64_t size;	 /* bytes, as the listing says */
	char sha256[65]; /* lfs.oid for LFS files; "" otherwise */
	char oid[65];	 /* git blob id (40 hex) for small files; "" if unknown */
};

struct hf_listing {
	struct hf_file *files;
	size_t n, cap;
	char commit[41];
	/* Tree entries seen, folders included, and their cap (0: CAP_REPO_FILES). */
	size_t entries, max_entries;
};

void hf_listing_init(struct hf_listing *l);
void hf_listing_cleanup(struct hf_listing *l);
/* Appends a file (the path is copied). Returns 0 or ERR_TOO_LARGE past CAP_REPO_FILES. */
int hf_listing_add(struct hf_listing *l, const char *path, uint64_t size, const char *sha256,
		   const char *oid);

/* 1 if the path's name ends in ".gguf" (any case). */
int hf_is_gguf(const char *path);

/*
 * The split shard suffix of a path: "x-00002-of-00003.gguf" gives *no = 2,
 * *count = 3 and *stem_len = strlen("x") (the path up to the suffix).
 * Returns 1 for a shard, 0 otherwise (then the outputs are untouched).
 */
int hf_split_shard(const char *path, unsigned *no, unsigned *count, size_t *stem_len);

/*
 * The quantization tag a GGUF file name carries ("Q4_K_M", "IQ2_XXS", "F16",
 * "BF16"), upper-cased into tag. Looks at the base name without ".gguf" and
 * without a split suffix, split at '.' and '-', and within a part at the
 * first '_' after which the rest is a tag ("llama_7b_Q4_K_M"). Returns 1 if
 * found, 0 if the name carries no tag.
 */
int hf_quant_tag(const char *path, char tag[HF_QUANT_MAX]);

/*
 * Chooses files of l for selector sel/text. On success fills idx (capacity
 * max, at least CAP_MODEL_FILES is always enough) with indexes into l->files
 * in download order (shards by shard number) and *n. repo names the repo in
 * messages ("org/repo"). Errors: ERR_NOT_FOUND with the tags that are there
 * ("no GGUF file matching Q5_K_M in a/b; available: Q4_K_M, Q8_0"),
 * ERR_CORRUPT for a shard set with a missing shard, ERR_TOO_LARGE past max,
 * ERR_CANCELLED as soon as cancel (may be NULL) fires. A selection is one
 * pass over the listing, plus one for a split set and O(N log N) for the
 * tags of an error message, whatever the number of distinct tags.
 */
int hf_select(const struct hf_listing *l, enum ref_selector sel, const char *text, const char *repo,
	      struct cancel_token *cancel, size_t *idx, size_t max, size_t *n, struct err *e);

/*
 * The quantizations of a model made of the n files paths: the distinct tags
 * of its GGUF files in file order (those of vision projectors, mmproj*, only
 * when it has no other tagged GGUF), at most max of them into tags. Returns
 * how many were written; a whole snapshot has several.
 */
size_t hf_model_quants(const char *const *paths, size_t n, char (*tags)[HF_QUANT_MAX], size_t max);

#endif
