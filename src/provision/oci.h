/*
 * oci: the client of an OCI distribution registry (Docker Hub, ghcr.io,
 * Ollama's registry, a registry on this machine) for model artifacts:
 * the authentication challenge and its token, manifests (an image index
 * picks its manifest) checked against their digest, the tags of a
 * repository, and the layers of a manifest that make a model. Blob bytes
 * move through the shared transfers (share.h), not here.
 *
 * oci_parse.c holds the pure parsers (challenge, manifest, credentials
 * file), which the unit tests and the fuzzer drive off the network; oci.c
 * holds the requests. A struct oci_registry belongs to one provision() call
 * on one thread.
 */
#ifndef RBEE_PROVISION_OCI_H
#define RBEE_PROVISION_OCI_H

#include <stddef.h>
#include <stdint.h>

#include "core/caps.h"
#include "provision/hfapi.h"

struct cancel_token;
struct err;

/* The Accept header of a manifest request: every manifest type understood. */
extern const char oci_manifest_accept[];

enum oci_auth_scheme { OCI_AUTH_NONE = 0, OCI_AUTH_BEARER, OCI_AUTH_BASIC };

/* A WWW-Authenticate challenge: Bearer realm="…",service="…",scope="…", or Basic realm="…". */
struct oci_challenge {
	enum oci_auth_scheme scheme;
	char realm[CAP_URL_LEN + 1];
	char service[256];
	char scope[512];
};

/*
 * Parses one challenge (the first, when the header holds several). Quoted
 * values may hold escaped characters; unknown parameters are skipped.
 * Returns 0, or ERR_INVALID for another scheme, a Bearer challenge without
 * realm, or malformed text; ERR_TOO_LARGE for a value over its field.
 */
int oci_challenge_parse(const char *header, struct oci_challenge *out, struct err *e);

enum oci_role {
	OCI_ROLE_WEIGHT = 1, /* a GGUF of the model (several, in order, for a split model) */
	OCI_ROLE_EXTRA,	     /* license, template, projector, params, system prompt ... */
};

struct oci_layer {
	char sha256[65];
	uint64_t size;
	enum oci_role role;
	char *path;	   /* the file's path in the snapshot (checked, unique) */
	const char *media; /* the layer's media type (static) */
};

struct oci_manifest {
	int is_index;
	char pick[65];		  /* an index: the sha256 of the manifest it picks */
	struct oci_layer *layers; /* a manifest: weights first, in order, then extras */
	size_t n;
	size_t n_weights;
	size_t n_skipped; /* layers of a media type that is not part of a model */
};

/*
 * Parses a manifest answer: an image index or Docker manifest list (picks
 * the first model manifest, skipping attestations), or an OCI image
 * manifest or Docker schema 2 manifest, whose layers are chosen by media
 * type. content_type stands in when the body names no mediaType. A layer's
 * file is named by its org.cncf.model.filepath annotation when that is a
 * safe path, else by its kind ("model.gguf", "model-00001-of-00002.gguf",
 * "mmproj.gguf", "LICENSE", "template", ...), made unique. Errors:
 * ERR_INVALID (not JSON, not a manifest, a bad digest or size), ERR_TOO_LARGE
 * (over CAP_MODEL_FILES layers), ERR_UNSUPPORTED (a manifest type that is
 * not understood). A manifest without a GGUF layer parses (n_weights 0):
 * the caller says what it holds.
 */
int oci_manifest_parse(const char *body, size_t len, const char *content_type,
		       struct oci_manifest *m, struct err *e);
void oci_manifest_cleanup(struct oci_manifest *m);

/*
 * The credentials for registry host (HOST[:PORT]) in a Docker config.json
 * (auths[KEY].auth, base64 of "user:pass"; KEY the host, or a URL of it;
 * Docker Hub's https://index.docker.io/v1/ for registry-1.docker.io), as
 * the base64 text of a Basic authorization, into b64. Returns 1 when found,
 * 0 when the file has none for the host, or ERR_INVALID (bad JSON, an auth
 * that is not base64 of user:pass), ERR_TOO_LARGE.
 */
int oci_auth_find(const char *json, size_t len, const char *host, char *b64, size_t size,
		  struct err *e);

/* One repository at one registry, with the authorization it earned. */
struct oci_registry {
	struct hf_client hc;	    /* a copy, with the manifest cap */
	char base[CAP_URL_LEN + 1]; /* scheme://HOST[:PORT] */
	char host[256];		    /* HOST[:PORT], the key of the credentials */
	char name[CAP_OCI_NAME_LEN + 1];
	char label[CAP_URL_LEN + 1]; /* the repository in messages */
	const char *auth_file;	     /* Docker config.json; NULL: none */
	char *authorization;	     /* "Bearer T" or "Basic B64" once challenged */
	char *bearer;		     /* the bearer token alone, for blob transfers */
	char *basic;		     /* or user:password, for blob transfers */
	int challenged;
	struct cancel_token *cancel;
};

/*
 * base is scheme://HOST[:PORT] (checked by the URL policy: https, or http
 * to loopback), label names the repository in messages ("ollama:llama3.2").
 */
int oci_registry_init(struct oci_registry *r, const struct hf_client *hc, const char *base,
		      const char *name, const char *label, const char *auth_file,
		      struct cancel_token *cancel, struct err *e);
void oci_registry_cleanup(struct oci_registry *r);

/*
 * The manifest that reference (a tag or sha256:HEX) names, through an
 * index when there is one, with its sha256 (checked against the bytes, the
 * pinned digest and Docker-Content-Digest) in digest. Errors the user can
 * act on: ERR_NOT_FOUND ("no tag 'x' in …; tags: a, b", "repository … not
 * found"), ERR_UNAUTHORIZED, ERR_DIGEST, ERR_UNSUPPORTED, and those of the
 * request.
 */
int oci_manifest_get(struct oci_registry *r, const char *reference, char digest[65],
		     struct oci_manifest *m, struct err *e);

/* The URL of blob sha256 in the repository, into buf. */
int oci_blob_url(const struct oci_registry *r, const char *sha256, char *buf, size_t size);

#endif
