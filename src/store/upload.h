/*
 * upload: content sent to the daemon by a client that may read a file the
 * daemon may not (PUT /v1/blobs/sha256:HEX, docs/api.md). The bytes are
 * written to blobs/<sha256>.partial of a repo folder as they arrive and
 * hashed on the way; only when all of them hash to the name is the partial
 * published as blobs/<sha256>. Wrong bytes leave nothing behind. An
 * interrupted upload keeps its partial, and the next one may resume at its
 * size: the bytes kept are hashed again before new ones are added.
 *
 * A struct upload belongs to the one thread that feeds it. It holds the
 * blob's lock (layout_blob_lock) from upload_begin() to upload_free(), so
 * two uploads, or an upload and a download, of one blob never interleave.
 */
#ifndef RBEE_STORE_UPLOAD_H
#define RBEE_STORE_UPLOAD_H

#include <stddef.h>
#include <stdint.h>

struct err;
struct layout;
struct upload;

/*
 * What repo_dir holds of content sha256: 1 with *size when the blob is
 * there; 0 with *offset = the bytes an earlier upload left in its partial
 * (0 when none); negative on bad input.
 */
int upload_status(const struct layout *l, const char *repo_dir, const char *sha256, uint64_t *size,
		  uint64_t *offset, struct err *e);

/*
 * Starts writing length bytes of content sha256 at offset. Returns 1 when
 * the blob is already there (nothing to write, *out NULL), 0 with *out, or
 * ERR_TOO_LARGE (offset + length over CAP_UPLOAD_SIZE), ERR_CONFLICT (the
 * blob is being written by someone else, or offset is past the bytes kept:
 * *kept tells how many), ERR_NOSPACE (length over the free space), ERR_IO.
 * An offset below the bytes kept drops the bytes after it. The blob gets
 * group and others read access only where mode (the source file's mode)
 * gives it, and never more than the umask allows.
 */
int upload_begin(const struct layout *l, const char *repo_dir, const char *sha256, uint64_t offset,
		 uint64_t length, unsigned mode, struct upload **out, uint64_t *kept,
		 struct err *e);

/* Appends n bytes. ERR_INVALID past the announced length; ERR_NOSPACE, ERR_IO. */
int upload_write(struct upload *u, const void *data, size_t n, struct err *e);

/* Bytes of the content received so far (kept bytes included). */
uint64_t upload_offset(const struct upload *u);

/*
 * Ends the upload: every announced byte must have arrived (ERR_INVALID
 * otherwise; the partial stays for a resume), and all of them must hash to
 * the name (ERR_INVALID "digest mismatch" otherwise; the partial is
 * removed). Then publishes the blob (layout_partial_publish).
 */
int upload_finish(struct upload *u, struct err *e);

/* Closes and releases the lock; an unfinished partial stays. NULL is a no-op. */
void upload_free(struct upload *u);

#endif
