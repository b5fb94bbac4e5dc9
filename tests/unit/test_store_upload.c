/*
 * Unit tests of store/upload: content written as a partial while hashed,
 * published only when it hashes to its name, wrong bytes leaving nothing
 * behind, an interrupted upload resumed, the lock, the caps and the mode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/sha256.h"
#include "core/util.h"
#include "store/layout.h"
#include "store/upload.h"
#include "test_store_tmp.h"

#define DIR_ LAYOUT_FILES_DIR

struct fx {
	char dir[PATH_MAX];
	struct layout *l;
};

static int setup(void **state)
{
	struct fx *x = xcalloc(1, sizeof *x);
	if (store_tmp_make("store-upload", x->dir, sizeof x->dir))
		return -1;
	char hub[PATH_MAX];
	snprintf(hub, sizeof hub, "%s/hub", x->dir);
	struct err e = {0};
	if (layout_open(hub, &x->l, &e))
		return -1;
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;
	layout_free(x->l);
	store_tmp_remove(x->dir);
	free(x);
	return 0;
}

static const char content[] = "the weights of a small model";

static void test_whole(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	char sha[65];
	store_tmp_sha_of(content, sha);
	uint64_t size = 0, off = 0, kept = 0;
	assert_int_equal(upload_status(x->l, DIR_, sha, &size, &off, &e), 0);
	assert_int_equal(off, 0);
	struct upload *u = NULL;
	size_t n = strlen(content);
	assert_int_equal(upload_begin(x->l, DIR_, sha, 0, n, 0600, &u, &kept, &e), 0);
	assert_int_equal(upload_write(u, content, 10, &e), 0);
	assert_int_equal(upload_write(u, content + 10, n - 10, &e), 0);
	assert_int_equal(upload_write(u, "x", 1, &e), ERR_INVALID);
	assert_int_equal(upload_finish(u, &e), 0);
	upload_free(u);
	assert_int_equal(upload_status(x->l, DIR_, sha, &size, &off, &e), 1);
	assert_int_equal(size, n);
	char path[PATH_MAX];
	assert_int_equal(layout_blob_path(x->l, DIR_, sha, path, sizeof path, &e), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0077, 0); /* a private source, a private blob */
	/* Present: nothing to write. */
	assert_int_equal(upload_begin(x->l, DIR_, sha, 0, n, 0644, &u, &kept, &e), 1);
	assert_null(u);
}

static void test_wrong_bytes(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	char sha[65];
	store_tmp_sha_of(content, sha);
	struct upload *u = NULL;
	uint64_t kept = 0, size = 0, off = 0;
	size_t n = strlen(content);
	assert_int_equal(upload_begin(x->l, DIR_, sha, 0, n, 0644, &u, &kept, &e), 0);
	char forged[sizeof content];
	memcpy(forged, content, sizeof content);
	forged[3] ^= 1;
	assert_int_equal(upload_write(u, forged, n, &e), 0);
	assert_int_equal(upload_finish(u, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "digest mismatch"));
	upload_free(u);
	/* Nothing is kept: no blob, no partial. */
	assert_int_equal(upload_status(x->l, DIR_, sha, &size, &off, &e), 0);
	assert_int_equal(off, 0);
	char path[PATH_MAX];
	assert_int_equal(layout_partial_path(x->l, DIR_, sha, path, sizeof path, &e), 0);
	assert_int_equal(access(path, F_OK), -1);
}

static void test_resume(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	char sha[65];
	store_tmp_sha_of(content, sha);
	struct upload *u = NULL;
	uint64_t kept = 0, size = 0, off = 0;
	size_t n = strlen(content);
	assert_int_equal(upload_begin(x->l, DIR_, sha, 0, n, 0644, &u, &kept, &e), 0);
	assert_int_equal(upload_write(u, content, 12, &e), 0);
	/* The connection drops: the upload ends short, its partial stays. */
	assert_int_equal(upload_finish(u, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "offset 12"));
	upload_free(u);
	assert_int_equal(upload_status(x->l, DIR_, sha, &size, &off, &e), 0);
	assert_int_equal(off, 12);
	/* Past what is kept: refused, with the offset to use. */
	assert_int_equal(upload_begin(x->l, DIR_, sha, 20, n - 20, 0644, &u, &kept, &e),
			 ERR_CONFLICT);
	assert_int_equal(kept, 12);
	assert_int_equal(upload_begin(x->l, DIR_, sha, 12, n - 12, 0644, &u, &kept, &e), 0);
	assert_int_equal(kept, 12);
	/* A second writer of the same blob waits its turn. */
	struct upload *other = NULL;
	assert_int_equal(upload_begin(x->l, DIR_, sha, 0, n, 0644, &other, &kept, &e),
			 ERR_CONFLICT);
	assert_int_equal(upload_write(u, content + 12, n - 12, &e), 0);
	assert_int_equal(upload_finish(u, &e), 0);
	upload_free(u);
	assert_int_equal(upload_status(x->l, DIR_, sha, &size, &off, &e), 1);
	assert_int_equal(size, n);
}

static void test_restart_and_caps(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	char sha[65];
	store_tmp_sha_of(content, sha);
	struct upload *u = NULL;
	uint64_t kept = 0;
	size_t n = strlen(content);
	/* Bytes kept by an earlier upload that were wrong: a restart at 0 replaces them. */
	assert_int_equal(upload_begin(x->l, DIR_, sha, 0, n, 0644, &u, &kept, &e), 0);
	assert_int_equal(upload_write(u, "garbage", 7, &e), 0);
	upload_free(u);
	assert_int_equal(upload_begin(x->l, DIR_, sha, 0, n, 0644, &u, &kept, &e), 0);
	assert_int_equal(kept, 7);
	assert_int_equal(upload_write(u, content, n, &e), 0);
	assert_int_equal(upload_finish(u, &e), 0);
	upload_free(u);

	assert_int_equal(upload_begin(x->l, DIR_, sha, 1, CAP_UPLOAD_SIZE, 0644, &u, &kept, &e),
			 ERR_TOO_LARGE);
	assert_int_equal(upload_begin(x->l, DIR_, "../../etc", 0, 1, 0644, &u, &kept, &e),
			 ERR_INVALID);
	assert_null(u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_whole, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_bytes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_resume, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_restart_and_caps, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
