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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_known_ids),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
