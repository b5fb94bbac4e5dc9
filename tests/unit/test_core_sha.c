/* SHA-256 and the git blob id through OpenSSL EVP, against known values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/sha256.h"

static void test_sha256(void **state)
{
	(void)state;
	char out[SHA256_HEX_LEN + 1];
	struct sha256 h = {0};
	sha256_init(&h);
	sha256_final_hex(&h, out);
	assert_string_equal(out,
			    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	sha256_init(&h);
	sha256_update(&h, "abc", 3);
	sha256_final_hex(&h, out);
	assert_string_equal(out,
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	sha256_cleanup(&h);
}

static void test_git_blob_sha1(void **state)
{
	(void)state;
	char out[GIT_SHA1_HEX_LEN + 1];
	struct git_blob_sha1 h = {0};
	/* `git hash-object /dev/null` and of "hello\n". */
	git_blob_sha1_init(&h, 0);
	git_blob_sha1_final_hex(&h, out);
	assert_string_equal(out, "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
	git_blob_sha1_init(&h, 6);
	git_blob_sha1_update(&h, "hel", 3);
	git_blob_sha1_update(&h, "lo\n", 3);
	git_blob_sha1_final_hex(&h, out);
	assert_string_equal(out, "ce013625030ba8dba906f756967f9e9ca394464a");
	git_blob_sha1_cleanup(&h);
	git_blob_sha1_cleanup(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sha256),
	    cmocka_unit_test(test_git_blob_sha1),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
