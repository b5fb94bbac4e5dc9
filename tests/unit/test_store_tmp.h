/*
 * Fixtures for the tests of the store and of what sits on it: temporary
 * folders (a fresh mkdtemp folder under $RBEE_TEST_TMP or /tmp, removed with
 * everything in it at the end), the catalog of a data root, and the SHA-256
 * of a test string or of a file.
 */
#ifndef RBEE_TEST_STORE_TMP_H
#define RBEE_TEST_STORE_TMP_H

#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/sha256.h"
#include "core/util.h"
#include "store/catalog.h"

static int store_tmp_rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

/* Creates <base>/<name>-XXXXXX into dir; returns 0 or -1. */
static inline int store_tmp_make(const char *name, char *dir, size_t size)
{
	const char *base = getenv("RBEE_TEST_TMP");
	if (!base || !base[0])
		base = "/tmp";
	mkdir(base, 0755);
	snprintf(dir, size, "%s/%s-XXXXXX", base, name);
	return mkdtemp(dir) ? 0 : -1;
}

static inline void store_tmp_remove(const char *dir)
{
	nftw(dir, store_tmp_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The catalog of data root ROOT (ROOT/catalog.db), open; the test fails when it cannot be. */
static inline struct catalog *store_tmp_catalog(const char *root)
{
	char *db = xasprintf("%s/catalog.db", root);
	struct catalog *c = NULL;
	struct err e;
	err_clear(&e);
	if (catalog_open(db, &c, &e) != 0)
		fail_msg("catalog_open %s: %s", db, e.msg);
	free(db);
	return c;
}

/* The SHA-256 of len bytes at data, as 64 hex digits. */
static inline void store_tmp_sha_of_bytes(const void *data, size_t len, char out[65])
{
	struct sha256 h = {0};
	sha256_init(&h);
	sha256_update(&h, data, len);
	sha256_final_hex(&h, out);
	sha256_cleanup(&h);
}

/* The SHA-256 of a NUL-terminated string, as 64 hex digits. */
static inline void store_tmp_sha_of(const char *data, char out[65])
{
	store_tmp_sha_of_bytes(data, strlen(data), out);
}

/* The SHA-256 and size of the file at path (sha256_fd() on it); returns 0 or an ERR_*. */
static inline int store_tmp_sha_file(const char *path, char out[65], uint64_t *size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ERR_NOT_FOUND;
	int rc = sha256_fd(fd, path, NULL, out, NULL, size, NULL);
	close(fd);
	return rc;
}

#endif
