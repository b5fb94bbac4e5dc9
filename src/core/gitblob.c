#include "core/gitblob.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cancel.h"
#include "core/err.h"
#include "core/sha256.h"
#include "core/util.h"

#define GITBLOB_BUF (1 << 20)

void gitblob_init(struct gitblob *h, uint64_t size)
{
	if (!h->ctx)
		h->ctx = EVP_MD_CTX_new();
	if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha1(), NULL) != 1)
		abort();
	char head[32];
	int n = snprintf(head, sizeof head, "blob %llu", (unsigned long long)size);
	/* The NUL that ends the header is part of what git hashes. */
	EVP_DigestUpdate(h->ctx, head, (size_t)n + 1);
	h->size = size;
	h->seen = 0;
}

void gitblob_update(struct gitblob *h, const void *data, size_t n)
{
	EVP_DigestUpdate(h->ctx, data, n);
	h->seen += n;
}

int gitblob_final_hex(struct gitblob *h, char out[GITBLOB_HEX_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	EVP_DigestFinal_ex(h->ctx, md, &len);
	hex_encode(md, 20, out);
	return h->seen == h->size ? 0 : ERR_DIGEST;
}

void gitblob_cleanup(struct gitblob *h)
{
	EVP_MD_CTX_free(h->ctx);
	h->ctx = NULL;
}

int gitblob_hash_fd(int fd, struct cancel_token *cancel, char oid[GITBLOB_HEX_LEN + 1],
		    char sha256[65], uint64_t *size, struct err *e)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return err_set(e, ERR_IO, "fstat: %s", strerror(errno));
	if (!S_ISREG(st.st_mode))
		return err_set(e, ERR_INVALID, "not a regular file");
	unsigned char *buf = xmalloc(GITBLOB_BUF);
	struct gitblob g = {0};
	struct sha256 s = {0};
	if (oid)
		gitblob_init(&g, (uint64_t)st.st_size);
	if (sha256)
		sha256_init(&s);
	uint64_t off = 0;
	int rc = 0;
	for (;;) {
		if (cancel_is_set(cancel)) {
			rc = err_set(e, ERR_CANCELLED, "hashing: cancelled");
			break;
		}
		ssize_t n = pread(fd, buf, GITBLOB_BUF, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = err_set(e, ERR_IO, "read: %s", strerror(errno));
			break;
		}
		if (n == 0)
			break;
		if (oid)
			gitblob_update(&g, buf, (size_t)n);
		if (sha256)
			sha256_update(&s, buf, (size_t)n);
		off += (uint64_t)n;
	}
	if (!rc && (oid ? gitblob_final_hex(&g, oid) != 0 : off != (uint64_t)st.st_size))
		rc = err_set(e, ERR_CONFLICT,
			     "the file changed size while it was read (%llu, then %llu bytes)",
			     (unsigned long long)st.st_size, (unsigned long long)off);
	if (!rc && sha256)
		sha256_final_hex(&s, sha256);
	if (!rc && size)
		*size = off;
	if (oid)
		gitblob_cleanup(&g);
	if (sha256)
		sha256_cleanup(&s);
	free(buf);
	return rc;
}
