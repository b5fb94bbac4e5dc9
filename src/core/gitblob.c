#include "core/gitblob.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/err.h"
#include "core/util.h"

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
