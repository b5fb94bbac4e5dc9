/*
 * s3: a site's blob store on S3 (Ceph RGW, MinIO, AWS, ...): the store's
 * address and credentials, and the few requests rbee-hive makes of it:
 * HEAD of an object, PUT of a file's byte range (with If-None-Match: * for
 * "only if absent"), and the multipart upload (create, part, complete,
 * abort). Reads of an object's bytes go through the transfer engine
 * (xfer.h) with the SigV4 fields of struct xfer_request.
 *
 * Addressing is path-style (ENDPOINT/BUCKET/KEY). Requests are signed by
 * libcurl's SigV4; every request carries x-amz-content-sha256 set here
 * (libcurl 7.88 adds none and signs an empty body's hash), so a PUT or a
 * part is sent with the sha256 of its bytes and the store checks each
 * one. libcurl signs the query string as given: s3_query writes it sorted
 * and percent-encoded.
 *
 * Object keys follow ref_s3_key_check (core/ref.h): characters that need
 * no encoding in a path, so the signed path is the path sent.
 *
 * Threads: a struct s3_store is read-only once made and may be shared;
 * each request uses its own libcurl handle and blocks its caller, checking
 * the cancel token several times a second.
 */
#ifndef RBEE_FETCH_S3_H
#define RBEE_FETCH_S3_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct cancel_token;

#define S3_DEFAULT_REGION "us-east-1"
#define S3_MIN_PART (5ull << 20)      /* the smallest part but the last (S3's rule) */
#define S3_DEFAULT_PART (64ull << 20) /* a blob larger than this goes in parts */
#define S3_MAX_PARTS 10000	      /* S3's rule */
#define S3_ETAG_MAX 128		      /* an ETag we keep, quotes included */
#define S3_UPLOAD_ID_MAX 512	      /* a multipart upload id we keep */
#define S3_KEY_MAX 1024		      /* an object key: REF_S3_KEY_MAX */

struct s3_store {
	char endpoint[1024];	/* scheme://host[:port], no trailing slash */
	char bucket[64];	/* the blob store's; "" when there is none */
	char prefix[256];	/* "" or "a/b/": keys of blobs are PREFIX "blobs/" SHA256 */
	char sigv4[128];	/* libcurl's provider: "aws:amz:REGION:s3" */
	char *userpwd;		/* "ACCESS_KEY:SECRET"; scrubbed by s3_store_cleanup */
	uint64_t part_size;	/* multipart part size; 0: S3_DEFAULT_PART */
	uint64_t limit_rate;	/* bytes/s of each upload request; 0: none */
	const char *ca_file;	/* borrowed; NULL: the system's */
	const char *user_agent; /* borrowed; NULL: libcurl's */
};

/*
 * Fills s from "s3://BUCKET[/PREFIX]" (spec; NULL: no blob store, bucket
 * "", the endpoint serves s3:// refs only), the endpoint URL
 * (http[s]://host[:port]), the region (NULL: S3_DEFAULT_REGION) and the
 * credentials. ERR_INVALID with a message naming the part that is wrong.
 */
int s3_store_init(struct s3_store *s, const char *spec, const char *endpoint, const char *region,
		  const char *access_key, const char *secret, struct err *e);
void s3_store_cleanup(struct s3_store *s);

/* The key of the blob with this sha256: PREFIX "blobs/" SHA256. */
int s3_blob_key(const struct s3_store *s, const char *sha256, char *buf, size_t size,
		struct err *e);

struct s3_param {
	const char *name;
	const char *value; /* "" for a flag such as "uploads" */
};
/*
 * The query string of params in the order SigV4 signs it: sorted by name,
 * names and values percent-encoded, "name=" for an empty value. Pure.
 */
int s3_query(const struct s3_param *params, size_t n, char *buf, size_t size, struct err *e);
/* ENDPOINT/BUCKET/KEY[?QUERY] in the other store of bucket (NULL: s's own). */
int s3_url(const struct s3_store *s, const char *bucket, const char *key,
	   const struct s3_param *params, size_t n, char *buf, size_t size, struct err *e);

/*
 * The text of the first <element>…</element> of an XML answer of at most
 * len bytes, into out. ERR_NOT_FOUND when absent, ERR_TOO_LARGE when longer
 * than size - 1, ERR_INVALID when it holds markup or an entity. Only the
 * few fixed elements of S3's answers are read so (UploadId, Code,
 * Message); pure.
 */
int s3_xml_text(const char *body, size_t len, const char *element, char *out, size_t size);

/* Called with the bytes sent so far in one request. */
typedef void (*s3_sent_fn)(void *arg, uint64_t sent);

/*
 * HEAD of bucket/key (bucket NULL: the store's). 0 with *size, ERR_NOT_FOUND,
 * ERR_FORBIDDEN, ERR_NETWORK, ERR_CANCELLED.
 */
int s3_head(const struct s3_store *s, const char *bucket, const char *key,
	    struct cancel_token *cancel, uint64_t *size, struct err *e);

/*
 * PUT of len bytes of fd from off as key, signed with their sha256 (hashed
 * here first). if_absent: If-None-Match: *, and ERR_CONFLICT when the key
 * exists already. etag (may be NULL) receives the answer's ETag.
 */
int s3_put(const struct s3_store *s, const char *key, int fd, uint64_t off, uint64_t len,
	   int if_absent, struct cancel_token *cancel, s3_sent_fn sent, void *arg,
	   char etag[S3_ETAG_MAX], struct err *e);

/* The multipart upload: POST KEY?uploads= -> its upload id. */
int s3_mpu_create(const struct s3_store *s, const char *key, struct cancel_token *cancel,
		  char upload_id[S3_UPLOAD_ID_MAX], struct err *e);
/* One part (1-based), as s3_put; etag receives the part's ETag. */
int s3_mpu_part(const struct s3_store *s, const char *key, const char *upload_id, int part, int fd,
		uint64_t off, uint64_t len, struct cancel_token *cancel, s3_sent_fn sent, void *arg,
		char etag[S3_ETAG_MAX], struct err *e);
/*
 * Completes the upload with the n parts' ETags (etags[i] for part i + 1). A
 * 200 answer whose body is an <Error> is an error too.
 */
int s3_mpu_complete(const struct s3_store *s, const char *key, const char *upload_id,
		    char (*etags)[S3_ETAG_MAX], int n, struct cancel_token *cancel, struct err *e);
/* DELETE KEY?uploadId=ID. */
int s3_mpu_abort(const struct s3_store *s, const char *key, const char *upload_id, struct err *e);

#endif
