/*
 * catalog-fill: inserts N synthetic models into a catalog through the store
 * API (catalog_model_put), so that the daemon's model listing can be
 * measured with a large catalog without N downloads. The rows name files
 * that do not exist on disk; they are for reading only.
 *
 *   catalog-fill DB_PATH N [--files K]
 *
 * Model i is "hf:bench/model-<i>-GGUF:model-<i>.Q4_K_M.gguf" (status
 * available, K files of 1 GiB + i bytes each, GGUF facts filled), so a
 * second run with the same N replaces the same rows. Exit status: 0 done,
 * 1 failure, 2 usage.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/ref.h"
#include "core/util.h"
#include "store/catalog.h"

#define FILL_MAX_MODELS 1000000
#define FILL_MAX_FILES 8

static int fill_usage(void)
{
	fprintf(stderr, "usage: catalog-fill DB_PATH N [--files K]   (N <= %d, K <= %d)\n",
		FILL_MAX_MODELS, FILL_MAX_FILES);
	return 2;
}

/* A deterministic 64-hex digest per (model, file): distinct blobs. */
static void fill_sha(long i, int k, char out[65])
{
	unsigned char raw[32];
	uint64_t x = (uint64_t)i * 0x9e3779b97f4a7c15ull + (uint64_t)k + 1;
	for (size_t b = 0; b < sizeof raw; b++) {
		x ^= x >> 33;
		x *= 0xff51afd7ed558ccdull;
		x ^= x >> 29;
		raw[b] = (unsigned char)x;
	}
	hex_encode(raw, sizeof raw, out);
}

static int fill_one(struct catalog *c, long i, int nfiles, struct err *e)
{
	char org_repo[64], repo[48], id[256], dir[128], commit[41], sha[65];
	char paths[FILL_MAX_FILES][64];
	struct catalog_file files[FILL_MAX_FILES] = {0};
	snprintf(repo, sizeof repo, "model-%ld-GGUF", i);
	snprintf(org_repo, sizeof org_repo, "bench/%s", repo);
	snprintf(dir, sizeof dir, "models--bench--%s", repo);
	fill_sha(i, 99, sha);
	memcpy(commit, sha, 40);
	commit[40] = '\0';
	uint64_t size = 0;
	for (int k = 0; k < nfiles; k++) {
		if (nfiles == 1)
			snprintf(paths[k], sizeof paths[k], "model-%ld.Q4_K_M.gguf", i);
		else
			snprintf(paths[k], sizeof paths[k], "model-%ld.Q4_K_M-%05d-of-%05d.gguf", i,
				 k + 1, nfiles);
		files[k].path = paths[k];
		fill_sha(i, k, files[k].sha256);
		files[k].size = (1ull << 30) + (uint64_t)i;
		size += files[k].size;
	}
	if (ref_catalog_id_hf("bench", repo, paths[0], NULL, id, sizeof id) < 0)
		return err_set(e, ERR_TOO_LARGE, "model %ld: id too long", i);
	struct catalog_model m = {
	    .id = id,
	    .source = CATALOG_SRC_HF,
	    .repo = org_repo,
	    .revision = "main",
	    .commit = commit,
	    .repo_dir = dir,
	    .status = CATALOG_AVAILABLE,
	    .size = size,
	    .error = "",
	    .files = files,
	    .nfiles = (size_t)nfiles,
	};
	snprintf(m.gguf.architecture, sizeof m.gguf.architecture, "llama");
	snprintf(m.gguf.name, sizeof m.gguf.name, "Bench Model %ld", i);
	snprintf(m.gguf.quantization, sizeof m.gguf.quantization, "Q4_K_M");
	m.gguf.parameters = 8030261248ull;
	snprintf(m.gguf.size_label, sizeof m.gguf.size_label, "8B");
	m.gguf.context_length = 8192;
	return catalog_model_put(c, &m, NULL, e);
}

int main(int argc, char **argv)
{
	if (argc != 3 && argc != 5)
		return fill_usage();
	char *end = NULL;
	long n = strtol(argv[2], &end, 10);
	if (!*argv[2] || *end || n < 0 || n > FILL_MAX_MODELS)
		return fill_usage();
	long nfiles = 1;
	if (argc == 5) {
		if (strcmp(argv[3], "--files") != 0)
			return fill_usage();
		nfiles = strtol(argv[4], &end, 10);
		if (!*argv[4] || *end || nfiles < 1 || nfiles > FILL_MAX_FILES)
			return fill_usage();
	}
	struct err e;
	err_clear(&e);
	struct catalog *c = NULL;
	if (catalog_open(argv[1], &c, &e) < 0) {
		fprintf(stderr, "catalog-fill: %s\n", err_msg(&e));
		return 1;
	}
	int status = 0;
	int64_t t0 = now_ms();
	for (long i = 0; i < n; i++) {
		if (fill_one(c, i, (int)nfiles, &e) < 0) {
			fprintf(stderr, "catalog-fill: %s\n", err_msg(&e));
			status = 1;
			break;
		}
	}
	catalog_close(c);
	if (status == 0)
		fprintf(stderr, "catalog-fill: %ld models in %lld ms\n", n,
			(long long)(now_ms() - t0));
	return status;
}
