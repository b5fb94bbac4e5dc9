/* Unit tests of store/gguf: header facts from memory and from files, and every way a header can lie. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tools/gguf_build.h"
#include "core/caps.h"
#include "core/err.h"
#include "store/gguf.h"

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
	gguf_build_kv_str(&b, "general.name", "a\x01" "b\xff" "c\xc3\xa9" "d\xe2\x82");
	char longname[1000];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	gguf_build_kv_str(&b, "general.size_label", longname);
	gguf_build_finish(&b);
	struct gguf_facts f;
	assert_int_equal(gguf_read_mem(b.buf, b.len, &f, NULL), 0);
	assert_string_equal(f.name, "a?b?c\xc3\xa9" "d??");
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
