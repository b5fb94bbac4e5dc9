#include "core/sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cancel.h"
#include "core/err.h"
#include "core/gitblob.h"
#include "core/util.h"

/* Both digests are one EVP context each; these are the steps they share. */
static void evp_start(void **ctx, const EVP_MD *md)
{
	if (!*ctx)
		*ctx = EVP_MD_CTX_new();
	if (!*ctx || EVP_DigestInit_ex(*ctx, md, NULL) != 1)
		abort();
}

static void evp_final_hex(void *ctx, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	EVP_DigestFinal_ex(ctx, md, &len);
	hex_encode(md, len, out);
}

int sha256_hex_valid(const char *s)
{
	return s && strnlen(s, SHA256_HEX_LEN + 1) == SHA256_HEX_LEN &&
	       is_hex_lower(s, SHA256_HEX_LEN);
}

void sha256_init(struct sha256 *h)
{
	evp_start(&h->ctx, EVP_sha256());
}

void sha256_update(struct sha256 *h, const void *data, size_t n)
{
	EVP_DigestUpdate(h->ctx, data, n);
}

void sha256_final_hex(struct sha256 *h, char out[SHA256_HEX_LEN + 1])
{
	evp_final_hex(h->ctx, out);
}

void sha256_cleanup(struct sha256 *h)
{
	EVP_MD_CTX_free(h->ctx);
	h->ctx = NULL;
}

void sha256_buf_hex(const void *data, size_t n, char out[SHA256_HEX_LEN + 1])
{
	struct sha256 h = {0};
	sha256_init(&h);
	sha256_update(&h, data, n);
	sha256_final_hex(&h, out);
	sha256_cleanup(&h);
}

int sha256_fd(int fd, const char *what, struct cancel_token *cancel, char out[SHA256_HEX_LEN + 1],
	      char oid[41], uint64_t *size, struct err *e)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return err_set(e, ERR_IO, "fstat %s: %s", what, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return err_set(e, ERR_INVALID, "%s is not a regular file", what);
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	enum { BUF = 1 << 20 };
	unsigned char *buf = xmalloc(BUF);
	struct sha256 h = {0};
	struct gitblob g = {0};
	sha256_init(&h);
	if (oid)
		gitblob_init(&g, (uint64_t)st.st_size);
	uint64_t total = 0;
	int rc = 0;
	for (;;) {
		if (cancel_is_set(cancel)) {
			rc = err_set(e, ERR_CANCELLED, "hashing %s: cancelled", what);
			break;
		}
		ssize_t n = pread(fd, buf, BUF, (off_t)total);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = err_set(e, ERR_IO, "read %s: %s", what, strerror(errno));
			break;
		}
		if (n == 0)
			break;
		sha256_update(&h, buf, (size_t)n);
		if (oid)
			gitblob_update(&g, buf, (size_t)n);
		total += (uint64_t)n;
	}
	/* A file that grew or shrank under the read has no one digest. */
	if (rc == 0 && (oid ? gitblob_final_hex(&g, oid) != 0 : total != (uint64_t)st.st_size))
		rc = err_set(e, ERR_CONFLICT,
			     "%s changed size while it was read (%llu, then %llu bytes)", what,
			     (unsigned long long)st.st_size, (unsigned long long)total);
	if (rc == 0) {
		sha256_final_hex(&h, out);
		if (size)
			*size = total;
	}
	sha256_cleanup(&h);
	gitblob_cleanup(&g);
	free(buf);
	return rc;
}
