/* SHA-256 and, in one pass over a file, the git blob id beside it, against known values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/err.h"
#include "core/gitblob.h"
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
	/* The one-shot form gives the same digests. */
	sha256_buf_hex("abc", 3, out);
	assert_string_equal(out,
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	sha256_buf_hex("", 0, out);
	assert_string_equal(out, SHA256_EMPTY);
}

static void test_hex_valid(void **state)
{
	(void)state;
	assert_true(sha256_hex_valid(SHA256_EMPTY));
	assert_false(sha256_hex_valid(NULL));
	assert_false(sha256_hex_valid(""));
	/* One digit short or long, an uppercase digit, a non-hex character. */
	assert_false(sha256_hex_valid(&SHA256_EMPTY[1]));
	assert_false(sha256_hex_valid(SHA256_EMPTY "0"));
	assert_false(
	    sha256_hex_valid("E3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
	assert_false(
	    sha256_hex_valid("g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
}

static void test_fd_both_digests(void **state)
{
	(void)state;
	char path[] = "/tmp/rbee-sha-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, "hello", 5), 5);
	char oid[GITBLOB_HEX_LEN + 1], sha[65];
	uint64_t size = 0;
	struct err e = {0};
	/* The offset at the end does not matter: the file is read from its start. */
	assert_int_equal(sha256_fd(fd, "t", NULL, sha, oid, &size, &e), 0);
	assert_string_equal(oid, "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0");
	assert_string_equal(sha,
			    "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
	assert_int_equal(size, 5);
	/* Without an oid: the SHA-256 alone. */
	assert_int_equal(sha256_fd(fd, "t", NULL, sha, NULL, NULL, &e), 0);
	assert_string_equal(sha,
			    "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
	close(fd);
	/* Not a regular file (a pipe): refused before a byte is read. */
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(sha256_fd(p[0], "pipe", NULL, sha, NULL, NULL, &e), ERR_INVALID);
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sha256),
	    cmocka_unit_test(test_fd_both_digests),
	    cmocka_unit_test(test_hex_valid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
