/*
 * gguf-gen: writes a valid synthetic GGUF file, the model fixture of the
 * integration tests, the fake hub and the benchmarks.
 *
 *   gguf-gen --out PATH [options]
 *
 *   --out PATH          file to write (written as PATH.tmp.PID, then renamed)
 *   --size BYTES        exact file size; accepts K/M/G/T suffixes (1024-based).
 *                       The bytes after the header are deterministic
 *                       pseudo-random padding, written in 1 MiB chunks, so
 *                       several GiB take seconds. Default: the header only.
 *   --arch NAME         general.architecture (default "llama")
 *   --name NAME         general.name
 *   --file-type N       general.file_type (llama.cpp LLAMA_FTYPE: 15 = Q4_K_M)
 *   --context N         <arch>.context_length
 *   --params N          general.parameter_count
 *   --size-label S      general.size_label ("7B")
 *   --split-no N        split.no (uint16, 0-based as llama.cpp writes it)
 *   --split-count N     split.count (uint16)
 *   --kv KEY=VALUE      an extra string key/value; repeatable
 *   --tokens N          a string array tokenizer.ggml.tokens of N entries
 *   --gguf-version N    2 or 3 (default 3)
 *   --seed N            changes the padding, so equal options with different
 *                       seeds give files with different hashes (default 0)
 *   --print-sha256      print the file's SHA-256 (64 hex) on stdout
 *
 * The header holds no tensors (tensor_count 0); readers of the header facts
 * do not care. The same options and seed always give the same bytes.
 * Exit status: 0 done, 1 failure (nothing is left at PATH), 2 usage.
 *
 * Example: gguf-gen --out m.Q4_K_M.gguf --size 64M --file-type 15 \
 *              --context 4096 --seed 7 --print-sha256
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf_build.h"
#include "core/err.h"
#include "core/parse.h"
#include "core/sha256.h"

#define CHUNK (1u << 20)

struct gen_opts {
	const char *out;
	uint64_t size;
	int size_given;
	const char *arch;
	const char *name;
	uint64_t file_type, context, params, split_no, split_count, tokens, version, seed;
	int has_file_type, has_context, has_params, has_split_no, has_split_count;
	const char *size_label;
	char **kv;
	size_t n_kv;
	int print_sha;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: gguf-gen --out PATH [--size BYTES] [--arch NAME] [--name NAME]\n"
		"                [--file-type N] [--context N] [--params N] [--size-label S]\n"
		"                [--split-no N --split-count N] [--kv KEY=VALUE]...\n"
		"                [--tokens N] [--gguf-version 2|3] [--seed N] [--print-sha256]\n");
}

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static void build_header(const struct gen_opts *o, struct gguf_build *b)
{
	gguf_build_init(b, (uint32_t)o->version, 0);
	gguf_build_kv_str(b, "general.architecture", o->arch);
	if (o->name)
		gguf_build_kv_str(b, "general.name", o->name);
	if (o->has_file_type)
		gguf_build_kv_u32(b, "general.file_type", (uint32_t)o->file_type);
	if (o->has_params)
		gguf_build_kv_u64(b, "general.parameter_count", o->params);
	if (o->size_label)
		gguf_build_kv_str(b, "general.size_label", o->size_label);
	if (o->has_context) {
		char key[300];
		snprintf(key, sizeof(key), "%s.context_length", o->arch);
		if (o->context <= UINT32_MAX)
			gguf_build_kv_u32(b, key, (uint32_t)o->context);
		else
			gguf_build_kv_u64(b, key, o->context);
	}
	if (o->has_split_no)
		gguf_build_kv_u16(b, "split.no", (uint16_t)o->split_no);
	if (o->has_split_count)
		gguf_build_kv_u16(b, "split.count", (uint16_t)o->split_count);
	for (size_t i = 0; i < o->n_kv; i++) {
		char *eq = strchr(o->kv[i], '=');
		*eq = '\0';
		gguf_build_kv_str(b, o->kv[i], eq + 1);
		*eq = '=';
	}
	if (o->tokens)
		gguf_build_kv_str_array(b, "tokenizer.ggml.tokens", o->tokens);
	gguf_build_finish(b);
}

/* Writes header + padding to fd, hashing as it goes when sha is not NULL. */
static int write_file(int fd, const struct gen_opts *o, const struct gguf_build *b,
		      struct sha256 *sha)
{
	if (write_all(fd, b->buf, b->len) != 0)
		return -1;
	if (sha)
		sha256_update(sha, b->buf, b->len);
	uint64_t left = o->size_given ? o->size - b->len : 0;
	if (left == 0)
		return 0;
	unsigned char *block = malloc(CHUNK);
	if (!block)
		return -1;
	uint64_t st = o->seed * 0x2545f4914f6cdd1dULL + 1;
	for (size_t i = 0; i < CHUNK; i += 8) {
		uint64_t v = splitmix64(&st);
		memcpy(block + i, &v, 8);
	}
	int rc = 0;
	/*
	 * Regenerating 1 MiB of noise per chunk would cost more than the write;
	 * instead each chunk gets its own 16-byte stamp, so no two chunks (and
	 * no two seeds) are equal.
	 */
	for (uint64_t k = 0; left > 0; k++) {
		uint64_t s = o->seed ^ (k * 0x9e3779b97f4a7c15ULL);
		uint64_t stamp[2] = {splitmix64(&s), splitmix64(&s)};
		memcpy(block, stamp, sizeof(stamp));
		size_t n = left < CHUNK ? (size_t)left : CHUNK;
		if (write_all(fd, block, n) != 0) {
			rc = -1;
			break;
		}
		if (sha)
			sha256_update(sha, block, n);
		left -= n;
	}
	free(block);
	return rc;
}

enum {
	OPT_OUT = 1,
	OPT_SIZE,
	OPT_ARCH,
	OPT_NAME,
	OPT_FILE_TYPE,
	OPT_CONTEXT,
	OPT_PARAMS,
	OPT_SIZE_LABEL,
	OPT_SPLIT_NO,
	OPT_SPLIT_COUNT,
	OPT_SEED,
	OPT_KV,
	OPT_TOKENS,
	OPT_VERSION,
	OPT_PRINT_SHA,
	OPT_HELP,
};

static const struct option long_opts[] = {
    {"out", required_argument, NULL, OPT_OUT},
    {"size", required_argument, NULL, OPT_SIZE},
    {"arch", required_argument, NULL, OPT_ARCH},
    {"name", required_argument, NULL, OPT_NAME},
    {"file-type", required_argument, NULL, OPT_FILE_TYPE},
    {"context", required_argument, NULL, OPT_CONTEXT},
    {"params", required_argument, NULL, OPT_PARAMS},
    {"size-label", required_argument, NULL, OPT_SIZE_LABEL},
    {"split-no", required_argument, NULL, OPT_SPLIT_NO},
    {"split-count", required_argument, NULL, OPT_SPLIT_COUNT},
    {"seed", required_argument, NULL, OPT_SEED},
    {"kv", required_argument, NULL, OPT_KV},
    {"tokens", required_argument, NULL, OPT_TOKENS},
    {"gguf-version", required_argument, NULL, OPT_VERSION},
    {"print-sha256", no_argument, NULL, OPT_PRINT_SHA},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Numeric options: where the value goes, its bounds, and its "given" flag. */
struct num_opt {
	int id;
	const char *name;
	size_t value_off;
	ptrdiff_t flag_off; /* -1: no flag */
	uint64_t min, max;
};

#define NUM(id, name, field, flag, min, max)                                                       \
	{                                                                                          \
		id, name, offsetof(struct gen_opts, field), flag, min, max                         \
	}
#define FLAG(field) (ptrdiff_t) offsetof(struct gen_opts, field)

static const struct num_opt num_opts[] = {
    NUM(OPT_FILE_TYPE, "file-type", file_type, FLAG(has_file_type), 0, UINT32_MAX),
    NUM(OPT_CONTEXT, "context", context, FLAG(has_context), 0, UINT64_MAX),
    NUM(OPT_PARAMS, "params", params, FLAG(has_params), 0, UINT64_MAX),
    NUM(OPT_SPLIT_NO, "split-no", split_no, FLAG(has_split_no), 0, UINT16_MAX),
    NUM(OPT_SPLIT_COUNT, "split-count", split_count, FLAG(has_split_count), 0, UINT16_MAX),
    NUM(OPT_SEED, "seed", seed, -1, 0, UINT64_MAX),
    NUM(OPT_TOKENS, "tokens", tokens, -1, 0, 10000000),
    NUM(OPT_VERSION, "gguf-version", version, -1, 2, 3),
};

static int parse_opts(int argc, char **argv, struct gen_opts *o)
{
	struct err e = {0};
	int c;
	while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		const struct num_opt *n = NULL;
		for (size_t i = 0; i < sizeof(num_opts) / sizeof(num_opts[0]); i++)
			if (num_opts[i].id == c)
				n = &num_opts[i];
		if (n) {
			uint64_t *v = (uint64_t *)((char *)o + n->value_off);
			if (parse_u64_str(optarg, n->min, n->max, v, n->name, &e) != 0) {
				fprintf(stderr, "gguf-gen: --%s\n", err_msg(&e));
				return 2;
			}
			if (n->flag_off >= 0)
				*(int *)((char *)o + n->flag_off) = 1;
			continue;
		}
		switch (c) {
		case OPT_OUT: o->out = optarg; break;
		case OPT_SIZE:
			if (parse_size(optarg, UINT64_MAX, &o->size, "size", &e) != 0) {
				fprintf(stderr, "gguf-gen: --%s\n", err_msg(&e));
				return 2;
			}
			o->size_given = 1;
			break;
		case OPT_ARCH: o->arch = optarg; break;
		case OPT_NAME: o->name = optarg; break;
		case OPT_SIZE_LABEL: o->size_label = optarg; break;
		case OPT_KV:
			if (!strchr(optarg, '=') || optarg[0] == '=') {
				fprintf(stderr, "gguf-gen: --kv wants KEY=VALUE, got '%s'\n",
					optarg);
				return 2;
			}
			o->kv[o->n_kv++] = optarg;
			break;
		case OPT_PRINT_SHA: o->print_sha = 1; break;
		case OPT_HELP: usage(stdout); exit(0);
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || !o->out) {
		usage(stderr);
		return 2;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct gen_opts o = {.arch = "llama", .version = 3};
	/* At most one --kv per argument, so argc bounds the list. */
	o.kv = calloc((size_t)argc, sizeof(*o.kv));
	if (!o.kv)
		return 1;
	int rc = parse_opts(argc, argv, &o);
	if (rc) {
		free(o.kv);
		return rc;
	}
	struct gguf_build b;
	build_header(&o, &b);
	if (o.size_given && o.size < b.len) {
		fprintf(stderr, "gguf-gen: --size %llu is smaller than the header (%zu bytes)\n",
			(unsigned long long)o.size, b.len);
		gguf_build_free(&b);
		free(o.kv);
		return 2;
	}
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", o.out, (long)getpid());
	struct sha256 sha = {0};
	if (o.print_sha)
		sha256_init(&sha);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	rc = 1;
	if (fd < 0) {
		fprintf(stderr, "gguf-gen: open %s: %s\n", tmp, strerror(errno));
		goto out;
	}
	int wrc = write_file(fd, &o, &b, o.print_sha ? &sha : NULL);
	if (close(fd) != 0)
		wrc = -1;
	if (wrc != 0) {
		fprintf(stderr, "gguf-gen: write %s: %s\n", tmp, strerror(errno));
		unlink(tmp);
		goto out;
	}
	if (rename(tmp, o.out) != 0) {
		fprintf(stderr, "gguf-gen: rename to %s: %s\n", o.out, strerror(errno));
		unlink(tmp);
		goto out;
	}
	if (o.print_sha) {
		char hex[SHA256_HEX_LEN + 1];
		sha256_final_hex(&sha, hex);
		printf("%s\n", hex);
	}
	rc = 0;
out:
	if (o.print_sha)
		sha256_cleanup(&sha);
	gguf_build_free(&b);
	free(o.kv);
	return rc;
}
