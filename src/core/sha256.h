/*
 * sha256: SHA-256 over OpenSSL's EVP interface (which uses the CPU's SHA
 * instructions where present). The caller owns a struct sha256 and must call
 * sha256_cleanup() once it is done, also on error paths.
 * (The git blob id of a file not in LFS is core/gitblob.h.)
 */
#ifndef RBEE_CORE_SHA256_H
#define RBEE_CORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_HEX_LEN 64
/* The SHA-256 of no bytes: a digest that fixes the size too. */
#define SHA256_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct cancel_token;
struct err;

struct sha256 {
	void *ctx; /* EVP_MD_CTX */
};

/*
 * Starts a digest. h must be zeroed before its first sha256_init (struct
 * sha256 h = {0}): a context already there is reused, so h can be reset
 * for the next digest without a new allocation.
 */
void sha256_init(struct sha256 *h);
void sha256_update(struct sha256 *h, const void *data, size_t n);
/*
 * 1 if s is a SHA-256 as rbee-hive writes and names content: exactly 64
 * lowercase hex digits (s may be NULL). The one check of the tree.
 */
int sha256_hex_valid(const char *s);

/* Writes 64 lowercase hex digits and a NUL. h can be reused after sha256_init. */
void sha256_final_hex(struct sha256 *h, char out[SHA256_HEX_LEN + 1]);
void sha256_cleanup(struct sha256 *h);
/* The SHA-256 of n bytes at data, as 64 lowercase hex digits and a NUL: the one-shot form. */
void sha256_buf_hex(const void *data, size_t n, char out[SHA256_HEX_LEN + 1]);

/*
 * The one loop that hashes a file: the regular file open at fd, read from
 * offset 0 to its end with pread (the file position is not used). Its
 * SHA-256 goes to out and, when oid is not NULL, its git blob id
 * (core/gitblob.h) to oid, in the same pass; *size (may be NULL) receives
 * the bytes read; what names the file in errors. ERR_INVALID when fd is not
 * a regular file, ERR_CONFLICT when it changed size while it was read,
 * ERR_CANCELLED when cancel fired (cancel may be NULL), ERR_IO.
 */
int sha256_fd(int fd, const char *what, struct cancel_token *cancel, char out[SHA256_HEX_LEN + 1],
	      char oid[41], uint64_t *size, struct err *e);

#endif
