/* Unit tests of store/gguf: header facts from memory and from files, and every way a header can
 * lie. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tools/gguf_build.h"
#include "core/caps.h"
#include "core/err.h"
#include "core/sha256.h"
#include "store/gguf.h"
#include "test_store_tmp.h"

/* A typical llama.cpp header: architecture first, a vocabulary array in the middle. */
static void build_typical(struct gguf_build *b, uint32_t version)
{
	gguf_build_init(b, version, 291);
	gguf_build_kv_str(b, "general.architecture", "llama");
	gguf_build_kv_str(b, "general.name", "Llama 2 7B");
	gguf_build_kv_u32(b, "general.file_type", 15);
	gguf_build_kv_u64(b, "general.parameter_count", 6738415616ULL);
	gguf_build_kv_str(b, "general.size_label", "7B");
	gguf_build_kv_u32(b, "llama.context_length", 4096);
	gguf_build_kv_u32(b, "llama.embedding_length", 4096);
	gguf_build_kv_str_array(b, "tokenizer.ggml.tokens", 100);
	gguf_build_kv_f32_array(b, "tokenizer.ggml.scores", 100);
	gguf_build_kv_u16(b, "split.no", 1);
	gguf_build_kv_u16(b, "split.count", 3);
	gguf_build_finish(b);
}

static void test_valid_mem(void **state)
{
	(void)state;
	for (uint32_t v = 2; v <= 3; v++) {
		struct gguf_build b;
		build_typical(&b, v);
		struct gguf_facts f;
		struct err e = {0};
		assert_int_equal(gguf_read_mem(b.buf, b.len, &f, &e), 0);
		assert_int_equal(f.version, v);
		assert_int_equal(f.tensor_count, 291);
		assert_int_equal(f.kv_count, 11);
		assert_string_equal(f.architecture, "llama");
		assert_string_equal(f.name, "Llama 2 7B");
		assert_int_equal(f.file_type, 15);
		assert_string_equal(f.quantization, "Q4_K_M");
		assert_int_equal(f.parameters, 6738415616ULL);
		assert_string_equal(f.size_label, "7B");
		assert_int_equal(f.context_length, 4096);
		assert_int_equal(f.split_no, 1);
		assert_int_equal(f.split_count, 3);
		gguf_build_free(&b);
	}
}

static void test_defaults_and_order(void **state)
{
	(void)state;
	/* No facts at all. */
	struct gguf_build b;
	gguf_build_init(&b, 3, 0);
	gguf_build_finish(&b);
	struct gguf_facts f;
	assert_int_equal(gguf_read_mem(b.buf, b.len, &f, NULL), 0);
	assert_int_equal(f.file_type, UINT32_MAX);
	assert_string_equal(f.quantization, "");
	assert_string_equal(f.architecture, "");
	assert_int_equal(f.context_length, 0);
	assert_int_equal(f.split_count, 0);
	gguf_build_free(&b);

	/* context_length before the architecture; another arch's key is ignored. */
	gguf_build_init(&b, 3, 0);
	gguf_build_kv_u32(&b, "bert.context_length", 512);
	gguf_build_kv_u64(&b, "qwen2.context_length", 32768);
	gguf_build_kv_str(&b, "general.architecture", "qwen2");
	gguf_build_kv_u32(&b, "general.file_type", 99); /* unknown to the table */
	gguf_build_finish(&b);
	assert_int_equal(gguf_read_mem(b.buf, b.len, &f, NULL), 0);
	assert_int_equal(f.context_length, 32768);
	assert_int_equal(f.file_type, 99);
	assert_string_equal(f.quantization, "");
	gguf_build_free(&b);

	/* A fact of an unexpected type is skipped, not misread. */
	gguf_build_init(&b, 3, 0);
	gguf_build_kv_u32(&b, "general.name", 7);
	gguf_build_kv_str(&b, "general.file_type", "Q4_K_M");
	gguf_build_key(&b, "general.parameter_count", GGUF_BUILD_I32);
	gguf_build_u32(&b, 0xffffffffu); /* -1 */
	gguf_build_key(&b, "flag", GGUF_BUILD_BOOL);
	gguf_build_le(&b, 1, 1);
	gguf_build_key(&b, "f64", GGUF_BUILD_F64);
	gguf_build_u64(&b, 0);
	gguf_build_key(&b, "i8", GGUF_BUILD_I8);
	gguf_build_le(&b, 5, 1);
	gguf_build_kv_str(&b, "general.architecture", "llama");
	gguf_build_finish(&b);
	assert_int_equal(gguf_read_mem(b.buf, b.len, &f, NULL), 0);
	assert_string_equal(f.name, "");
	assert_int_equal(f.file_type, UINT32_MAX);
	assert_int_equal(f.parameters, 0);
	assert_string_equal(f.architecture, "llama");
	gguf_build_free(&b);
}

static void test_text_sanitised(void **state)
{
	(void)state;
	struct gguf_build b;
	gguf_build_init(&b, 3, 0);
	gguf_build_kv_str(&b, "general.name",
			  "a\x01"
			  "b\xff"
			  "c\xc3\xa9"
			  "d\xe2\x82");
	char longname[1000];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	gguf_build_kv_str(&b, "general.size_label", longname);
	gguf_build_finish(&b);
	struct gguf_facts f;
	assert_int_equal(gguf_read_mem(b.buf, b.len, &f, NULL), 0);
	assert_string_equal(f.name, "a?b?c\xc3\xa9"
				    "d??");
	assert_int_equal(strlen(f.size_label), sizeof(f.size_label) - 1);
	gguf_build_free(&b);
}

static void test_file_type_table(void **state)
{
	(void)state;
	assert_string_equal(gguf_file_type_name(0), "F32");
	assert_string_equal(gguf_file_type_name(1), "F16");
	assert_string_equal(gguf_file_type_name(7), "Q8_0");
	assert_string_equal(gguf_file_type_name(15), "Q4_K_M");
	assert_string_equal(gguf_file_type_name(19), "IQ2_XXS");
	assert_string_equal(gguf_file_type_name(32), "BF16");
	assert_string_equal(gguf_file_type_name(37), "TQ2_0");
	assert_null(gguf_file_type_name(4)); /* removed Q4_1_SOME_F16 */
	assert_null(gguf_file_type_name(33));
	assert_null(gguf_file_type_name(38));
	assert_null(gguf_file_type_name(UINT32_MAX));
}

static void test_magic(void **state)
{
	(void)state;
	assert_int_equal(gguf_is_gguf("GGUF\3", 5), 1);
	assert_int_equal(gguf_is_gguf("GGU", 3), 0);
	assert_int_equal(gguf_is_gguf("GGML", 4), 0);
	assert_int_equal(gguf_is_gguf(NULL, 4), 0);

	struct gguf_build b;
	build_typical(&b, 3);
	b.buf[0] = 'X';
	struct gguf_facts f;
	struct err e = {0};
	assert_int_equal(gguf_read_mem(b.buf, b.len, &f, &e), ERR_CORRUPT);
	assert_non_null(strstr(e.msg, "bad magic"));
	gguf_build_free(&b);
}

static void expect_corrupt(const struct gguf_build *b, const char *want)
{
	struct gguf_facts f;
	struct err e = {0};
	int rc = gguf_read_mem(b->buf, b->len, &f, &e);
	assert_int_equal(rc, ERR_CORRUPT);
	assert_int_equal(e.code, ERR_CORRUPT);
	if (!strstr(e.msg, want))
		fail_msg("message '%s' lacks '%s'", e.msg, want);
	assert_string_equal(f.architecture, "");
}

static void test_versions(void **state)
{
	(void)state;
	static const uint32_t bad[] = {0, 1, 4, 0x03000000u};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct gguf_build b;
		gguf_build_init(&b, bad[i], 0);
		gguf_build_finish(&b);
		expect_corrupt(&b, "is not supported");
		gguf_build_free(&b);
	}
}

/* Every prefix of a valid header is truncated, and says so with an offset. */
static void test_truncated_everywhere(void **state)
{
	(void)state;
	struct gguf_build b;
	build_typical(&b, 3);
	for (size_t n = 0; n < b.len; n++) {
		/* A copy of exactly n bytes, so ASan sees any read past the end. */
		unsigned char *cut = malloc(n ? n : 1);
		assert_non_null(cut);
		memcpy(cut, b.buf, n);
		struct gguf_facts f;
		struct err e = {0};
		int rc = gguf_read_mem(cut, n, &f, &e);
		free(cut);
		if (rc != ERR_CORRUPT)
			fail_msg("length %zu: rc %d (%s)", n, rc, e.msg);
		if (!strstr(e.msg, "truncated at offset"))
			fail_msg("length %zu: message '%s'", n, e.msg);
	}
	struct gguf_facts f;
	assert_int_equal(gguf_read_mem(b.buf, b.len, &f, NULL), 0);
	gguf_build_free(&b);
}

static void test_oversize_lengths(void **state)
{
	(void)state;
	struct gguf_build b;

	/* A key length over the cap, at offset 24 (right after the fixed header). */
	gguf_build_init(&b, 3, 0);
	gguf_build_u64(&b, 9999999999ULL);
	b.kv_count = 1;
	gguf_build_finish(&b);
	expect_corrupt(&b, "length 9999999999 at offset 24 is over the cap");
	gguf_build_free(&b);

	/* A string value over the cap. */
	gguf_build_init(&b, 3, 0);
	gguf_build_key(&b, "general.name", GGUF_BUILD_STRING);
	gguf_build_u64(&b, (uint64_t)CAP_GGUF_STRING + 1);
	gguf_build_finish(&b);
	expect_corrupt(&b, "is over the cap");
	gguf_build_free(&b);

	/* A string length that is in the cap but past the end of the data. */
	gguf_build_init(&b, 3, 0);
	gguf_build_key(&b, "general.name", GGUF_BUILD_STRING);
	gguf_build_u64(&b, 1000);
	gguf_build_bytes(&b, "short", 5);
	gguf_build_finish(&b);
	expect_corrupt(&b, "truncated at offset");
	gguf_build_free(&b);

	/* An array count over the cap. */
	gguf_build_init(&b, 3, 0);
	gguf_build_key(&b, "tokenizer.ggml.tokens", GGUF_BUILD_ARRAY);
	gguf_build_u32(&b, GGUF_BUILD_STRING);
	gguf_build_u64(&b, UINT64_MAX);
	gguf_build_finish(&b);
	expect_corrupt(&b, "array length 18446744073709551615");
	gguf_build_free(&b);

	/* An array in the count cap whose bytes would pass the header cap. */
	gguf_build_init(&b, 3, 0);
	gguf_build_key(&b, "big", GGUF_BUILD_ARRAY);
	gguf_build_u32(&b, GGUF_BUILD_U64);
	gguf_build_u64(&b, CAP_GGUF_ARRAY);
	gguf_build_finish(&b);
	expect_corrupt(&b, "header cap");
	gguf_build_free(&b);

	/* A string inside an array over the cap. */
	gguf_build_init(&b, 3, 0);
	gguf_build_key(&b, "tokenizer.ggml.tokens", GGUF_BUILD_ARRAY);
	gguf_build_u32(&b, GGUF_BUILD_STRING);
	gguf_build_u64(&b, 2);
	gguf_build_str(&b, "ok");
	gguf_build_u64(&b, 1ULL << 40);
	gguf_build_finish(&b);
	expect_corrupt(&b, "string length 1099511627776");
	gguf_build_free(&b);

	/* More key/values than the cap. */
	gguf_build_init(&b, 3, 0);
	b.kv_count = (uint64_t)CAP_GGUF_KV + 1;
	gguf_build_finish(&b);
	expect_corrupt(&b, "key/value count 65537 at offset 16 is over the cap");
	gguf_build_free(&b);

	/* A key count that claims more pairs than there are. */
	gguf_build_init(&b, 3, 0);
	gguf_build_kv_str(&b, "general.architecture", "llama");
	b.kv_count = 2;
	gguf_build_finish(&b);
	expect_corrupt(&b, "truncated at offset");
	gguf_build_free(&b);

	/* A long key (skipped unread) is fine. */
	gguf_build_init(&b, 3, 0);
	char key[1000];
	memset(key, 'k', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	gguf_build_kv_u32(&b, key, 1);
	gguf_build_kv_str(&b, "general.architecture", "llama");
	gguf_build_finish(&b);
	struct gguf_facts f;
	assert_int_equal(gguf_read_mem(b.buf, b.len, &f, NULL), 0);
	assert_string_equal(f.architecture, "llama");
	gguf_build_free(&b);
}

static void test_unknown_types(void **state)
{
	(void)state;
	struct gguf_build b;
	gguf_build_init(&b, 3, 0);
	gguf_build_key(&b, "x", 13);
	gguf_build_u32(&b, 0);
	gguf_build_finish(&b);
	expect_corrupt(&b, "unknown value type 13 at offset 33 for key 'x'");
	gguf_build_free(&b);

	gguf_build_init(&b, 3, 0);
	gguf_build_key(&b, "x", GGUF_BUILD_ARRAY);
	gguf_build_u32(&b, 0xdeadbeef);
	gguf_build_u64(&b, 1);
	gguf_build_finish(&b);
	expect_corrupt(&b, "unknown array element type 3735928559");
	gguf_build_free(&b);

	gguf_build_init(&b, 3, 0);
	gguf_build_key(&b, "x", GGUF_BUILD_ARRAY);
	gguf_build_u32(&b, GGUF_BUILD_ARRAY);
	gguf_build_u64(&b, 1);
	gguf_build_finish(&b);
	expect_corrupt(&b, "nested array");
	gguf_build_free(&b);
}

static int write_file(const char *path, const void *p, size_t n)
{
	FILE *fp = fopen(path, "wb");
	if (!fp)
		return -1;
	size_t w = fwrite(p, 1, n, fp);
	return (fclose(fp) == 0 && w == n) ? 0 : -1;
}

static void test_file(void **state)
{
	(void)state;
	char dir[] = "/tmp/rbee-gguf-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256], small[256], missing[256];
	snprintf(path, sizeof(path), "%s/model.Q4_K_M.gguf", dir);
	snprintf(small, sizeof(small), "%s/cut.gguf", dir);
	snprintf(missing, sizeof(missing), "%s/none.gguf", dir);

	/*
	 * A vocabulary big enough that the header spans several read windows,
	 * followed by data that is not part of the header.
	 */
	struct gguf_build b;
	gguf_build_init(&b, 3, 1);
	gguf_build_kv_str(&b, "general.architecture", "llama");
	gguf_build_kv_str_array(&b, "tokenizer.ggml.tokens", 50000);
	gguf_build_kv_u32(&b, "general.file_type", 7);
	gguf_build_kv_u32(&b, "llama.context_length", 8192);
	gguf_build_finish(&b);
	assert_true(b.len > 3 * 64 * 1024);
	size_t hlen = b.len;
	gguf_build_bytes(&b, "tensor data follows", 19);
	assert_int_equal(write_file(path, b.buf, b.len), 0);
	assert_int_equal(write_file(small, b.buf, hlen - 1), 0);

	struct gguf_facts f;
	struct err e = {0};
	assert_int_equal(gguf_read_file(path, &f, &e), 0);
	assert_string_equal(f.architecture, "llama");
	assert_string_equal(f.quantization, "Q8_0");
	assert_int_equal(f.context_length, 8192);
	assert_int_equal(f.tensor_count, 1);

	assert_int_equal(gguf_read_file(small, &f, &e), ERR_CORRUPT);
	assert_non_null(strstr(e.msg, "GGUF 'cut.gguf': truncated at offset"));
	assert_int_equal(gguf_read_file(missing, &f, &e), ERR_NOT_FOUND);
	assert_non_null(strstr(e.msg, "none.gguf"));
	assert_int_equal(gguf_read_file(dir, &f, &e), ERR_CORRUPT);
	assert_non_null(strstr(e.msg, "not a regular file"));

	unlink(path);
	unlink(small);
	rmdir(dir);
	gguf_build_free(&b);
}

/*
 * Random byte mutations of a valid header: the reader must answer 0 or
 * ERR_CORRUPT, and (under ASan) never read out of bounds. Deterministic seed.
 */
static void test_mutations(void **state)
{
	(void)state;
	struct gguf_build b;
	build_typical(&b, 3);
	unsigned char *m = malloc(b.len);
	assert_non_null(m);
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	int ok = 0, corrupt = 0;
	for (int iter = 0; iter < 20000; iter++) {
		memcpy(m, b.buf, b.len);
		int flips = 1 + iter % 4;
		for (int k = 0; k < flips; k++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			m[x % b.len] = (unsigned char)(x >> 32);
		}
		struct gguf_facts f;
		struct err e = {0};
		int rc = gguf_read_mem(m, b.len, &f, &e);
		if (rc == 0)
			ok++;
		else if (rc == ERR_CORRUPT && strncmp(e.msg, "GGUF 'buffer': ", 15) == 0)
			corrupt++;
		else
			fail_msg("iteration %d: rc %d, message '%s'", iter, rc, e.msg);
	}
	assert_true(ok > 0);
	assert_true(corrupt > 0);
	free(m);
	gguf_build_free(&b);
}

/* The fixture tool's files read back with the facts it was asked to write. */
static void test_gguf_gen(void **state)
{
	(void)state;
	const char *build = getenv("RBEE_BUILD");
	if (!build)
		skip();
	char dir[] = "/tmp/rbee-gguf-gen-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256], cmd[1024], line[128];
	snprintf(path, sizeof(path), "%s/m-Q4_K_M-00002-of-00003.gguf", dir);
	snprintf(cmd, sizeof(cmd),
		 "'%s/gguf-gen' --out '%s' --size 3M --arch qwen2 --name 'Qwen 2' "
		 "--file-type 15 --context 32768 --params 7000000000 --size-label 7B "
		 "--split-no 1 --split-count 3 --kv general.license=mit --tokens 1000 --seed 5 "
		 "--print-sha256",
		 build, path);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	char *got = fgets(line, sizeof(line), p);
	assert_int_equal(pclose(p), 0);
	assert_non_null(got);
	line[strcspn(line, "\n")] = '\0';

	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 3 << 20);
	char hex[SHA256_HEX_LEN + 1];
	uint64_t size = 0;
	assert_int_equal(store_tmp_sha_file(path, hex, &size), 0);
	assert_string_equal(line, hex);

	struct gguf_facts f;
	struct err e = {0};
	assert_int_equal(gguf_read_file(path, &f, &e), 0);
	assert_string_equal(f.architecture, "qwen2");
	assert_string_equal(f.name, "Qwen 2");
	assert_string_equal(f.quantization, "Q4_K_M");
	assert_int_equal(f.context_length, 32768);
	assert_int_equal(f.parameters, 7000000000ULL);
	assert_string_equal(f.size_label, "7B");
	assert_int_equal(f.split_no, 1);
	assert_int_equal(f.split_count, 3);
	assert_int_equal(f.kv_count, 10);

	/* Another seed, another hash; the same seed, the same bytes. */
	char path2[256];
	snprintf(path2, sizeof(path2), "%s/b.gguf", dir);
	char hex2[SHA256_HEX_LEN + 1];
	for (int seed = 5; seed <= 6; seed++) {
		snprintf(cmd, sizeof(cmd),
			 "'%s/gguf-gen' --out '%s' --size 3M --arch qwen2 --name 'Qwen 2' "
			 "--file-type 15 --context 32768 --params 7000000000 --size-label 7B "
			 "--split-no 1 --split-count 3 --kv general.license=mit --tokens 1000 "
			 "--seed %d",
			 build, path2, seed);
		assert_int_equal(system(cmd), 0);
		assert_int_equal(store_tmp_sha_file(path2, hex2, &size), 0);
		if (seed == 5)
			assert_string_equal(hex2, hex);
		else
			assert_string_not_equal(hex2, hex);
	}

	/* A size below the header is a usage error that leaves nothing behind. */
	snprintf(cmd, sizeof(cmd), "'%s/gguf-gen' --out '%s/small.gguf' --size 10 2>/dev/null",
		 build, dir);
	int rc = system(cmd);
	assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
	snprintf(path2, sizeof(path2), "%s/small.gguf", dir);
	assert_int_not_equal(access(path2, F_OK), 0);

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_valid_mem),
	    cmocka_unit_test(test_defaults_and_order),
	    cmocka_unit_test(test_text_sanitised),
	    cmocka_unit_test(test_file_type_table),
	    cmocka_unit_test(test_magic),
	    cmocka_unit_test(test_versions),
	    cmocka_unit_test(test_truncated_everywhere),
	    cmocka_unit_test(test_oversize_lengths),
	    cmocka_unit_test(test_unknown_types),
	    cmocka_unit_test(test_file),
	    cmocka_unit_test(test_mutations),
	    cmocka_unit_test(test_gguf_gen),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
