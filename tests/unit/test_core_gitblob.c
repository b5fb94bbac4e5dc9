/* core/gitblob.h: git blob ids as git hash-object computes them. */
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

/* `printf hello | git hash-object --stdin` and the empty blob. */
static void test_known_ids(void **state)
{
	(void)state;
	char hex[GITBLOB_HEX_LEN + 1];
	struct gitblob g = {0};
	gitblob_init(&g, 5);
	gitblob_update(&g, "hel", 3);
	gitblob_update(&g, "lo", 2);
	assert_int_equal(gitblob_final_hex(&g, hex), 0);
	assert_string_equal(hex, "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0");
	gitblob_init(&g, 0);
	assert_int_equal(gitblob_final_hex(&g, hex), 0);
	assert_string_equal(hex, "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
	/* Fewer bytes than announced: the id would be of another header. */
	gitblob_init(&g, 6);
	gitblob_update(&g, "hello", 5);
	assert_int_equal(gitblob_final_hex(&g, hex), ERR_DIGEST);
	gitblob_cleanup(&g);
}

static void test_hash_fd_both_digests(void **state)
{
	(void)state;
	char path[] = "/tmp/rbee-gitblob-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, "hello", 5), 5);
	char oid[GITBLOB_HEX_LEN + 1], sha[65];
	uint64_t size = 0;
	struct err e = {0};
	/* The offset at the end does not matter: the file is read from its start. */
	assert_int_equal(gitblob_hash_fd(fd, NULL, oid, sha, &size, &e), 0);
	assert_string_equal(oid, "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0");
	assert_string_equal(sha,
			    "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
	assert_int_equal(size, 5);
	assert_int_equal(gitblob_hash_fd(fd, NULL, oid, NULL, NULL, &e), 0);
	assert_string_equal(oid, "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0");
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_known_ids),
	    cmocka_unit_test(test_hash_fd_both_digests),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
