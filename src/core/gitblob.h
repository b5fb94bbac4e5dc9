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

struct cancel_token;
struct err;

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

/*
 * Hashes the regular file open at fd from its first byte (with pread, so
 * fd's offset does not matter): its git blob id into oid and its SHA-256
 * into sha256, in one pass; either may be NULL (not computed). *size (may be NULL) receives
 * the bytes read. ERR_CONFLICT when the file changed size while it was
 * read, ERR_CANCELLED when cancel fired (cancel may be NULL), ERR_IO.
 */
int gitblob_hash_fd(int fd, struct cancel_token *cancel, char oid[GITBLOB_HEX_LEN + 1],
		    char sha256[65], uint64_t *size, struct err *e);

#endif
