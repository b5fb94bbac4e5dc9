/*
 * Unit tests of store/layout: repo folder names, blobs written as .partial
 * then renamed, snapshot symlinks and refs written atomically, hostile
 * names and planted symlinks refused without touching anything outside the
 * hub folder, adoption by hard link, the blob lock, and model removal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cancel.h"
#include "core/err.h"
#include "core/sha256.h"
#include "core/util.h"
#include "store/layout.h"
#include "test_store_tmp.h"

struct fx {
	char dir[PATH_MAX];	/* the test's own temporary folder */
	char hub[PATH_MAX];	/* <dir>/hub */
	char outside[PATH_MAX]; /* <dir>/outside: must stay empty */
	struct layout *l;
};

static int setup(void **state)
{
	struct fx *x = xcalloc(1, sizeof *x);
	if (store_tmp_make("store-layout", x->dir, sizeof x->dir))
		return -1;
	snprintf(x->hub, sizeof x->hub, "%s/hub", x->dir);
	snprintf(x->outside, sizeof x->outside, "%s/outside", x->dir);
	mkdir(x->outside, 0755);
	struct err e = {0};
	if (layout_open(x->hub, &x->l, &e))
		return -1;
	*state = x;
	return 0;
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static int teardown(void **state)
{
	struct fx *x = *state;
	/* Nothing any test did may have landed outside the hub folder. */
	assert_int_equal(count_entries(x->outside), 0);
	layout_free(x->l);
	store_tmp_remove(x->dir);
	free(x);
	return 0;
}

/* Writes data as a blob of repo_dir through its .partial. */
static void put_blob(struct layout *l, const char *repo_dir, const char *data, char sha[65])
{
	struct err e = {0};
	store_tmp_sha_of(data, sha);
	int fd = -1;
	uint64_t cur = 99;
	assert_int_equal(layout_partial_open(l, repo_dir, sha, &fd, &cur, &e), 0);
	assert_int_equal(cur, 0);
	assert_int_equal(pwrite(fd, data, strlen(data), 0), (ssize_t)strlen(data));
	assert_int_equal(layout_partial_publish(l, repo_dir, sha, fd, sha, &e), 0);
	close(fd);
}

static void read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	ssize_t n = read(fd, buf, size - 1);
	assert_true(n >= 0);
	buf[n] = 0;
	close(fd);
}

static void test_repo_dir_names(void **state)
{
	(void)state;
	char buf[LAYOUT_REPO_DIR_MAX];
	struct err e = {0};
	assert_int_equal(layout_repo_dir_hf("TheBloke", "Llama-2-7B-GGUF", buf, sizeof buf, &e), 0);
	assert_string_equal(buf, "models--TheBloke--Llama-2-7B-GGUF");
	assert_int_equal(layout_repo_dir_hf("..", "x", buf, sizeof buf, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "organisation"));
	assert_int_equal(layout_repo_dir_hf("a", "b/c", buf, sizeof buf, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "repo"));
	assert_int_equal(layout_repo_dir_hf("a", "", buf, sizeof buf, &e), ERR_INVALID);

	assert_int_equal(layout_repo_dir_url("127.0.0.2:8443", buf, sizeof buf, &e), 0);
	assert_string_equal(buf, "urls--127.0.0.2_8443");
	assert_int_equal(layout_repo_dir_url("cdn.example.com", buf, sizeof buf, &e), 0);
	assert_string_equal(buf, "urls--cdn.example.com");
	assert_int_equal(layout_repo_dir_url("a..b", buf, sizeof buf, &e), ERR_INVALID);
	assert_int_equal(layout_repo_dir_oci("127.0.0.1:5000", "ai/smollm2", buf, sizeof buf, &e),
			 0);
	assert_string_equal(buf, "oci--127.0.0.1_5000--ai--smollm2");
	assert_int_equal(layout_repo_dir_oci("[::1]:5000", "library/a_b", buf, sizeof buf, &e), 0);
	assert_string_equal(buf, "oci--___1__5000--library--a_b");
	assert_int_equal(layout_repo_dir_check(buf, &e), 0);

	assert_int_equal(layout_repo_dir_check(LAYOUT_FILES_DIR, &e), 0);
	static const char *const bad[] = {
	    "..",	    "models--a/b",    "x", "models--..--x", "/etc", "models--",
	    "models--a\\b", "datasets--a--b",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err_clear(&e);
		assert_int_equal(layout_repo_dir_check(bad[i], &e), ERR_INVALID);
		assert_true(e.msg[0] != 0);
	}
	char longname[400];
	memset(longname, 'a', sizeof longname - 1);
	longname[sizeof longname - 1] = 0;
	memcpy(longname, "models--", 8);
	assert_int_equal(layout_repo_dir_check(longname, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "too long"));
}

static void test_partial_commit(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *repo = "models--org--repo";
	char sha[65];
	store_tmp_sha_of("hello", sha);
	assert_int_equal(layout_blob_exists(x->l, repo, sha, NULL), 0);

	int fd;
	uint64_t cur;
	assert_int_equal(layout_partial_open(x->l, repo, sha, &fd, &cur, &e), 0);
	assert_int_equal(pwrite(fd, "hel", 3, 0), 3);
	close(fd);
	/* Reopening keeps what is there: it is resume data. */
	assert_int_equal(layout_partial_open(x->l, repo, sha, &fd, &cur, &e), 0);
	assert_int_equal(cur, 3);
	assert_int_equal(pwrite(fd, "lo", 2, 3), 2);
	assert_int_equal(layout_blob_exists(x->l, repo, sha, NULL), 0);

	assert_int_equal(layout_partial_publish(x->l, repo, sha, fd, sha, &e), 0);
	uint64_t size = 0;
	assert_int_equal(layout_blob_exists(x->l, repo, sha, &size), 1);
	assert_int_equal(size, 5);
	char path[PATH_MAX], buf[64];
	assert_int_equal(layout_blob_path(x->l, repo, sha, path, sizeof path, &e), 0);
	read_file(path, buf, sizeof buf);
	assert_string_equal(buf, "hello");
	assert_int_equal(layout_partial_path(x->l, repo, sha, path, sizeof path, &e), 0);
	assert_int_equal(access(path, F_OK), -1);
	/* Publishing twice: there is no partial any more, and the blob stays. */
	assert_int_equal(layout_partial_publish(x->l, repo, sha, fd, sha, &e), ERR_CONFLICT);
	close(fd);
	assert_int_equal(layout_blob_exists(x->l, repo, sha, NULL), 1);

	/* A partial can be removed; removing it again is fine. */
	assert_int_equal(layout_partial_open(x->l, repo, sha, &fd, NULL, &e), 0);
	close(fd);
	assert_int_equal(layout_partial_remove(x->l, repo, sha, &e), 0);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(layout_partial_remove(x->l, repo, sha, &e), 0);

	assert_int_equal(layout_blob_open(x->l, repo, sha, &fd, &e), 0);
	close(fd);
	assert_int_equal(layout_blob_exists(x->l, repo, "abc", NULL), ERR_INVALID);
	assert_int_equal(layout_partial_publish(x->l, repo, "ABCDEF", -1, "ABCDEF", &e),
			 ERR_INVALID);
	assert_non_null(strstr(e.msg, "hex"));
}

static void test_snapshot_links(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *repo = "models--org--repo";
	const char *commit = "0123456789abcdef0123456789abcdef01234567";
	char sha[65], sha2[65];
	put_blob(x->l, repo, "weights", sha);
	put_blob(x->l, repo, "other", sha2);

	assert_int_equal(layout_snapshot_link(x->l, repo, commit, "model.gguf", sha, &e), 0);
	assert_int_equal(layout_snapshot_link(x->l, repo, commit, "sub/dir/x.gguf", sha, &e), 0);

	char path[PATH_MAX], target[PATH_MAX], buf[64];
	assert_int_equal(
	    layout_snapshot_path(x->l, repo, commit, "model.gguf", path, sizeof path, &e), 0);
	ssize_t n = readlink(path, target, sizeof target - 1);
	assert_true(n > 0);
	target[n] = 0;
	char want[200];
	snprintf(want, sizeof want, "../../blobs/%s", sha);
	assert_string_equal(target, want);
	read_file(path, buf, sizeof buf);
	assert_string_equal(buf, "weights");

	assert_int_equal(
	    layout_snapshot_path(x->l, repo, commit, "sub/dir/x.gguf", path, sizeof path, &e), 0);
	n = readlink(path, target, sizeof target - 1);
	target[n] = 0;
	snprintf(want, sizeof want, "../../../../blobs/%s", sha);
	assert_string_equal(target, want);
	read_file(path, buf, sizeof buf);
	assert_string_equal(buf, "weights");

	/* Relinking replaces the link atomically and leaves no temporary behind. */
	assert_int_equal(layout_snapshot_link(x->l, repo, commit, "model.gguf", sha2, &e), 0);
	assert_int_equal(
	    layout_snapshot_path(x->l, repo, commit, "model.gguf", path, sizeof path, &e), 0);
	read_file(path, buf, sizeof buf);
	assert_string_equal(buf, "other");
	char snapdir[PATH_MAX];
	snprintf(snapdir, sizeof snapdir, "%s/%s/snapshots/%s", x->hub, repo, commit);
	assert_int_equal(count_entries(snapdir), 2); /* model.gguf and sub */
}

static void test_refs(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *repo = "models--org--repo";
	const char *c1 = "1111111111111111111111111111111111111111";
	const char *c2 = "2222222222222222222222222222222222222222";
	assert_int_equal(layout_ref_write(x->l, repo, "main", c1, &e), 0);
	assert_int_equal(layout_ref_write(x->l, repo, "refs/pr/1", c2, &e), 0);
	char buf[128];
	assert_int_equal(layout_ref_read(x->l, repo, "main", buf, sizeof buf, &e), 0);
	assert_string_equal(buf, c1);
	assert_int_equal(layout_ref_read(x->l, repo, "refs/pr/1", buf, sizeof buf, &e), 0);
	assert_string_equal(buf, c2);
	/* The file holds exactly the commit, as huggingface_hub writes it. */
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s/refs/main", x->hub, repo);
	read_file(path, buf, sizeof buf);
	assert_string_equal(buf, c1);
	assert_int_equal(layout_ref_write(x->l, repo, "main", c2, &e), 0);
	assert_int_equal(layout_ref_read(x->l, repo, "main", buf, sizeof buf, &e), 0);
	assert_string_equal(buf, c2);
	snprintf(path, sizeof path, "%s/%s/refs", x->hub, repo);
	assert_int_equal(count_entries(path), 2); /* main and refs/ */

	assert_int_equal(layout_ref_read(x->l, repo, "dev", buf, sizeof buf, &e), ERR_NOT_FOUND);
	assert_int_equal(layout_ref_write(x->l, repo, "../../../outside/x", c1, &e), ERR_INVALID);
	assert_int_equal(layout_ref_write(x->l, repo, "/abs", c1, &e), ERR_INVALID);
	assert_int_equal(layout_ref_write(x->l, repo, "main", "../x", &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "commit"));
}

static void test_hostile_paths(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *repo = "models--org--repo";
	const char *commit = "0123456789abcdef0123456789abcdef01234567";
	char sha[65];
	put_blob(x->l, repo, "data", sha);
	char overlong[2100];
	memset(overlong, 'a', sizeof overlong - 1);
	overlong[sizeof overlong - 1] = 0;
	static const char *const bad[] = {
	    "../../../outside/evil",
	    "/etc/passwd",
	    "a/../../b",
	    "a//b",
	    "a\001b",
	    "a\\..\\b",
	    "",
	    ".",
	    "sub/./x",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err_clear(&e);
		assert_int_equal(layout_snapshot_link(x->l, repo, commit, bad[i], sha, &e),
				 ERR_INVALID);
		assert_true(e.msg[0] != 0);
	}
	assert_int_equal(layout_snapshot_link(x->l, repo, commit, overlong, sha, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "longer"));
	assert_int_equal(layout_snapshot_link(x->l, "../outside", commit, "a", sha, &e),
			 ERR_INVALID);
	assert_int_equal(layout_snapshot_link(x->l, repo, "../../outside", "a", sha, &e),
			 ERR_INVALID);
	assert_int_equal(
	    layout_partial_open(x->l, "models--x/../../outside", sha, &(int){0}, NULL, &e),
	    ERR_INVALID);
	/* Nothing was created for the bad requests: snapshots/ is as empty as the blob left it. */
	char snap[PATH_MAX];
	snprintf(snap, sizeof snap, "%s/%s/snapshots", x->hub, repo);
	assert_int_equal(count_entries(snap), 0);
}

static void test_symlink_escape(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *repo = "models--evil--repo";
	const char *commit = "0123456789abcdef0123456789abcdef01234567";
	char path[PATH_MAX];
	/* A planted symlink inside the cache pointing outside must not be followed. */
	snprintf(path, sizeof path, "%s/%s", x->hub, repo);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof path, "%s/%s/snapshots", x->hub, repo);
	assert_int_equal(symlink(x->outside, path), 0);
	snprintf(path, sizeof path, "%s/%s/blobs", x->hub, repo);
	assert_int_equal(symlink(x->outside, path), 0);
	char sha[65];
	store_tmp_sha_of("x", sha);
	int fd = -1;
	assert_int_equal(layout_partial_open(x->l, repo, sha, &fd, NULL, &e), ERR_IO);
	assert_non_null(strstr(e.msg, "not following"));
	assert_int_equal(fd, -1);
	assert_int_equal(layout_snapshot_link(x->l, repo, commit, "a.gguf", sha, &e), ERR_IO);
	assert_int_equal(layout_ref_write(x->l, repo, "main", commit, &e), 0);
	/* A blob that is a symlink is not a blob. */
	const char *repo2 = "models--evil--two";
	snprintf(path, sizeof path, "%s/%s/blobs", x->hub, repo2);
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s/%s", x->hub, repo2);
	mkdir(tmp, 0755);
	mkdir(path, 0755);
	snprintf(path, sizeof path, "%s/%s/blobs/%s", x->hub, repo2, sha);
	snprintf(tmp, sizeof tmp, "%s/passwd", x->dir);
	assert_int_equal(symlink(tmp, path), 0);
	assert_int_equal(layout_blob_exists(x->l, repo2, sha, NULL), 0);
	assert_int_equal(layout_blob_open(x->l, repo2, sha, &fd, &e), ERR_IO);
	/* teardown checks that outside/ is still empty */
}

static void test_adopt(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	char sha[65];
	put_blob(x->l, "models--a--one", "shared content", sha);
	enum layout_adopt how;
	uint64_t size = strlen("shared content");

	assert_int_equal(layout_adopt_blob(x->l, "models--a--one", sha, size, NULL, &how, &e), 0);
	assert_int_equal(how, LAYOUT_ADOPT_PRESENT);
	/* Wrong size: not adopted. */
	assert_int_equal(layout_adopt_blob(x->l, "models--b--two", sha, size + 1, NULL, &how, &e),
			 0);
	assert_int_equal(how, LAYOUT_ADOPT_NONE);
	assert_int_equal(layout_blob_exists(x->l, "models--b--two", sha, NULL), 0);

	assert_int_equal(layout_adopt_blob(x->l, "models--b--two", sha, size, NULL, &how, &e), 0);
	assert_int_equal(how, LAYOUT_ADOPT_LINKED);
	char p1[PATH_MAX], p2[PATH_MAX];
	layout_blob_path(x->l, "models--a--one", sha, p1, sizeof p1, &e);
	layout_blob_path(x->l, "models--b--two", sha, p2, sizeof p2, &e);
	struct stat s1, s2;
	assert_int_equal(stat(p1, &s1), 0);
	assert_int_equal(stat(p2, &s2), 0);
	/* One copy: the same inode under two names. */
	assert_true(s1.st_ino == s2.st_ino);
	assert_int_equal(s1.st_nlink, 2);

	/* With a hint, and again: already present. */
	assert_int_equal(
	    layout_adopt_blob(x->l, "urls--host", sha, size, "models--b--two", &how, &e), 0);
	assert_int_equal(how, LAYOUT_ADOPT_LINKED);
	assert_int_equal(layout_adopt_blob(x->l, "urls--host", sha, size, NULL, &how, &e), 0);
	assert_int_equal(how, LAYOUT_ADOPT_PRESENT);

	char absent[65];
	store_tmp_sha_of("nobody has this", absent);
	assert_int_equal(layout_adopt_blob(x->l, "models--b--two", absent, 3, NULL, &how, &e), 0);
	assert_int_equal(how, LAYOUT_ADOPT_NONE);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void test_import_fd(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	char src[PATH_MAX], blob[PATH_MAX];
	snprintf(src, sizeof src, "%s/local.gguf", x->dir);
	write_file(src, "local weights", 0600);
	char sha[65], want[65];
	store_tmp_sha_of("local weights", want);
	uint64_t size = 0;
	enum layout_adopt how;
	int fd = open(src, O_RDONLY | O_CLOEXEC);
	/* The position of the descriptor does not matter: the copy starts at 0. */
	assert_int_equal(lseek(fd, 5, SEEK_SET), 5);
	assert_int_equal(
	    layout_import_fd(x->l, LAYOUT_FILES_DIR, fd, src, NULL, sha, &size, &how, &e), 0);
	assert_string_equal(sha, want);
	assert_int_equal(size, 13);
	assert_int_equal(how, LAYOUT_ADOPT_COPIED);
	snprintf(blob, sizeof blob, "%s/%s/blobs/%s", x->hub, LAYOUT_FILES_DIR, want);
	struct stat bs, ss;
	assert_int_equal(stat(blob, &bs), 0);
	assert_int_equal(stat(src, &ss), 0);
	/* A copy, never a link to the user's file, and as private as the source. */
	assert_true(bs.st_ino != ss.st_ino);
	assert_int_equal(bs.st_mode & 0077, 0);
	assert_int_equal(
	    layout_import_fd(x->l, LAYOUT_FILES_DIR, fd, src, NULL, sha, &size, &how, &e), 0);
	assert_int_equal(how, LAYOUT_ADOPT_PRESENT);
	close(fd);
	/* Only the blob is left in blobs/: no temporary file. */
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s/%s/blobs", x->hub, LAYOUT_FILES_DIR);
	assert_int_equal(count_entries(dir), 1);

	/* A readable source gives a blob readable as far as the umask allows. */
	snprintf(src, sizeof src, "%s/public.gguf", x->dir);
	write_file(src, "public weights", 0644);
	fd = open(src, O_RDONLY | O_CLOEXEC);
	assert_int_equal(
	    layout_import_fd(x->l, LAYOUT_FILES_DIR, fd, src, NULL, sha, &size, &how, &e), 0);
	close(fd);
	snprintf(blob, sizeof blob, "%s/%s/blobs/%s", x->hub, LAYOUT_FILES_DIR, sha);
	mode_t um = umask(022);
	umask(um);
	assert_int_equal(stat(blob, &bs), 0);
	assert_int_equal(bs.st_mode & 0777, (0644 & ~um) | 0600);

	/* Not a regular file. */
	fd = open(x->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_int_equal(
	    layout_import_fd(x->l, LAYOUT_FILES_DIR, fd, x->dir, NULL, sha, &size, &how, &e),
	    ERR_UNPROCESSABLE);
	close(fd);
}

static void test_partial_publish_swapped(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	char sha[65];
	store_tmp_sha_of("verified", sha);
	int fd = -1;
	assert_int_equal(layout_partial_open(x->l, LAYOUT_FILES_DIR, sha, &fd, NULL, &e), 0);
	assert_int_equal(write(fd, "verified", 8), 8);
	/* Someone who can write blobs/ replaces the partial after it was verified. */
	char path[PATH_MAX], other[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s/blobs/%s.partial", x->hub, LAYOUT_FILES_DIR, sha);
	snprintf(other, sizeof other, "%s/%s/blobs/other", x->hub, LAYOUT_FILES_DIR);
	write_file(other, "forged", 0644);
	assert_int_equal(rename(other, path), 0);
	assert_int_equal(layout_partial_publish(x->l, LAYOUT_FILES_DIR, sha, fd, sha, &e),
			 ERR_CONFLICT);
	assert_int_equal(layout_blob_exists(x->l, LAYOUT_FILES_DIR, sha, NULL), 0);
	close(fd);
	/* The file written, still under its name, is published. */
	assert_int_equal(layout_partial_open(x->l, LAYOUT_FILES_DIR, sha, &fd, NULL, &e), 0);
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(pwrite(fd, "verified", 8, 0), 8);
	assert_int_equal(layout_partial_publish(x->l, LAYOUT_FILES_DIR, sha, fd, sha, &e), 0);
	close(fd);
	uint64_t size = 0;
	assert_int_equal(layout_blob_exists(x->l, LAYOUT_FILES_DIR, sha, &size), 1);
	assert_int_equal(size, 8);
}

static void test_lock(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	char sha[65];
	store_tmp_sha_of("locked", sha);
	int a = -1, b = -1;
	assert_int_equal(layout_blob_lock(x->l, "models--o--r", sha, 0, NULL, &a, &e), 0);
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/.locks/models--o--r/%s.lock", x->hub, sha);
	assert_int_equal(access(path, F_OK), 0);

	int64_t t0 = now_ms();
	assert_int_equal(layout_blob_lock(x->l, "models--o--r", sha, 150, NULL, &b, &e),
			 ERR_TIMEOUT);
	int64_t dt = now_ms() - t0;
	assert_true(dt >= 140 && dt < 3000);
	assert_int_equal(b, -1);

	struct cancel_token *t = cancel_new();
	cancel_fire(t);
	t0 = now_ms();
	assert_int_equal(layout_blob_lock(x->l, "models--o--r", sha, 10000, t, &b, &e),
			 ERR_CANCELLED);
	assert_true(now_ms() - t0 < 2000);
	cancel_unref(t);

	layout_blob_unlock(a);
	assert_int_equal(layout_blob_lock(x->l, "models--o--r", sha, 1000, NULL, &b, &e), 0);
	layout_blob_unlock(b);
	layout_blob_unlock(-1);
}

static void test_remove_model(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *repo = "models--org--repo";
	const char *c1 = "1111111111111111111111111111111111111111";
	const char *c2 = "2222222222222222222222222222222222222222";
	char s1[65], s2[65], s3[65];
	put_blob(x->l, repo, "q4 weights", s1);
	put_blob(x->l, repo, "readme", s2);
	put_blob(x->l, repo, "q8 weights", s3);
	assert_int_equal(layout_snapshot_link(x->l, repo, c1, "sub/q4.gguf", s1, &e), 0);
	assert_int_equal(layout_snapshot_link(x->l, repo, c1, "README.md", s2, &e), 0);
	/* Another commit, as a huggingface_hub download would leave it, links README too. */
	assert_int_equal(layout_snapshot_link(x->l, repo, c2, "README.md", s2, &e), 0);
	assert_int_equal(layout_snapshot_link(x->l, repo, c2, "q8.gguf", s3, &e), 0);
	assert_int_equal(layout_ref_write(x->l, repo, "main", c1, &e), 0);
	assert_int_equal(layout_ref_write(x->l, repo, "v2", c2, &e), 0);

	const char *paths[] = {"sub/q4.gguf", "README.md"};
	const char *blobs[] = {s1, s2};
	size_t kept = 9;
	assert_int_equal(layout_remove_model(x->l, repo, c1, paths, 2, blobs, 2, &kept, &e), 0);
	assert_int_equal(kept, 1); /* README is still linked from c2 */
	assert_int_equal(layout_blob_exists(x->l, repo, s1, NULL), 0);
	assert_int_equal(layout_blob_exists(x->l, repo, s2, NULL), 1);
	assert_int_equal(layout_blob_exists(x->l, repo, s3, NULL), 1);
	char path[PATH_MAX], buf[64];
	snprintf(path, sizeof path, "%s/%s/snapshots/%s", x->hub, repo, c1);
	assert_int_equal(access(path, F_OK), -1);
	/* refs/main pointed at the removed snapshot; refs/v2 stays. */
	assert_int_equal(layout_ref_read(x->l, repo, "main", buf, sizeof buf, &e), ERR_NOT_FOUND);
	assert_int_equal(layout_ref_read(x->l, repo, "v2", buf, sizeof buf, &e), 0);

	const char *paths2[] = {"README.md", "q8.gguf"};
	const char *blobs2[] = {s2, s3};
	assert_int_equal(layout_remove_model(x->l, repo, c2, paths2, 2, blobs2, 2, &kept, &e), 0);
	assert_int_equal(kept, 0);
	snprintf(path, sizeof path, "%s/%s", x->hub, repo);
	assert_int_equal(access(path, F_OK), -1); /* the repo folder is gone */
	/* Removing what is already gone is fine. */
	assert_int_equal(layout_remove_model(x->l, repo, c2, paths2, 2, blobs2, 2, &kept, &e), 0);
	const char *evil[] = {"../../../outside"};
	assert_int_equal(layout_remove_model(x->l, repo, c2, evil, 1, NULL, 0, NULL, &e),
			 ERR_INVALID);
}

/* 1 if <hub>/<repo>/<sub> is a folder. */
static int has_dir(const struct fx *x, const char *repo, const char *sub)
{
	char path[PATH_MAX];
	struct stat st;
	snprintf(path, sizeof path, "%s/%s/%s", x->hub, repo, sub);
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/*
 * Cache scanners (huggingface_hub's scan_cache_dir, @huggingface/hub's
 * scanCacheDir) need snapshots/ and refs/ in every repo folder: a first
 * download that is only a .partial, and one left after its model was
 * removed, must not break them.
 */
static void test_partial_only_repo_is_valid(void **state)
{
	struct fx *x = *state;
	struct err e = {0};
	const char *repo = "models--org--partial";
	const char *sha = "abababababababababababababababababababababababababababababababab";
	int fd = -1;
	assert_int_equal(layout_partial_open(x->l, repo, sha, &fd, NULL, &e), 0);
	close(fd);
	assert_true(has_dir(x, repo, "blobs"));
	assert_true(has_dir(x, repo, "snapshots"));
	assert_true(has_dir(x, repo, "refs"));

	/* A model of the repo is removed while the partial stays. */
	const char *c1 = "1111111111111111111111111111111111111111";
	char s1[65];
	put_blob(x->l, repo, "weights", s1);
	assert_int_equal(layout_snapshot_link(x->l, repo, c1, "m.gguf", s1, &e), 0);
	assert_int_equal(layout_ref_write(x->l, repo, "main", c1, &e), 0);
	const char *paths[] = {"m.gguf"};
	const char *blobs[] = {s1};
	assert_int_equal(layout_remove_model(x->l, repo, c1, paths, 1, blobs, 1, NULL, &e), 0);
	assert_true(has_dir(x, repo, "snapshots"));
	assert_true(has_dir(x, repo, "refs"));

	/* Without the partial nothing is left: the repo folder goes. */
	assert_int_equal(layout_partial_remove(x->l, repo, sha, &e), 0);
	layout_repo_prune(x->l, repo);
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", x->hub, repo);
	assert_int_equal(access(path, F_OK), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_repo_dir_names),
	    cmocka_unit_test_setup_teardown(test_partial_commit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_snapshot_links, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refs, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hostile_paths, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_symlink_escape, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_adopt, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_import_fd, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_partial_publish_swapped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_remove_model, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_partial_only_repo_is_valid, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
