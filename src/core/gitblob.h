/*
 * gitblob: git's blob id of a file, sha1("blob <size>\0" + bytes), over
 * OpenSSL's EVP interface. It is the "oid" the Hub lists for a file that is
 * not in LFS, and the name huggingface_hub gives such a file's blob in its
 * cache, so checking it is how a small file's bytes are verified.
 *
 * The caller owns a struct gitblob and must call gitblob_cleanup() once it
 * is done, also on error paths.
 */
#ifndef RBEE_CORE_GITBLOB_H
#define RBEE_CORE_GITBLOB_H

#include <stddef.h>
#include <stdint.h>

#define GITBLOB_HEX_LEN 40

struct gitblob {
	void *ctx; /* EVP_MD_CTX */
	uint64_t size, seen;
};

/* Starts the id of a blob of exactly size bytes (git hashes the size first). */
void gitblob_init(struct gitblob *h, uint64_t size);
void gitblob_update(struct gitblob *h, const void *data, size_t n);
/*
 * Writes 40 lowercase hex digits and a NUL. Returns 0, or ERR_DIGEST when
 * the bytes given were not the size announced to gitblob_init() (the id
 * would be of another header).
 */
int gitblob_final_hex(struct gitblob *h, char out[GITBLOB_HEX_LEN + 1]);
void gitblob_cleanup(struct gitblob *h);

/* A file's git blob id and SHA-256 in one pass: sha256_fd() (core/sha256.h). */

#endif
