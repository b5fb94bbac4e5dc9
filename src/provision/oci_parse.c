/*
 * The pure parsers of the OCI registry client: a WWW-Authenticate challenge,
 * a manifest or image index, and Docker's config.json credentials. No I/O;
 * every input is untrusted.
 */
#include <ctype.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"
#include "core/json.h"
#include "core/parse.h"
#include "core/sha256.h"
#include "core/util.h"
#include "provision/oci.h"

#define OCI_INDEX_OCI "application/vnd.oci.image.index.v1+json"
#define OCI_INDEX_DOCKER "application/vnd.docker.distribution.manifest.list.v2+json"
#define OCI_MANIFEST_OCI "application/vnd.oci.image.manifest.v1+json"
#define OCI_MANIFEST_DOCKER "application/vnd.docker.distribution.manifest.v2+json"

/* A registry answers 404 to a manifest request whose Accept lacks the manifest's type. */
const char oci_manifest_accept[] =
    OCI_MANIFEST_OCI ", " OCI_MANIFEST_DOCKER ", " OCI_INDEX_OCI ", " OCI_INDEX_DOCKER;

/* Manifest media types: which are indexes, which manifests. */
static const struct {
	const char *type;
	int index;
} manifest_types[] = {
    {OCI_MANIFEST_OCI, 0},
    {OCI_MANIFEST_DOCKER, 0},
    {OCI_INDEX_OCI, 1},
    {OCI_INDEX_DOCKER, 1},
};

/*
 * Layer media types that make a model, and the file each becomes when no
 * annotation names it. The three weight types are Docker Model Runner's,
 * CNCF ModelPack's and Ollama's GGUF.
 */
static const struct oci_media {
	const char *type;
	enum oci_role role;
	const char *name; /* file name; a weight's stem ("model" -> model.gguf) */
} media_types[] = {
    {"application/vnd.docker.ai.gguf.v3", OCI_ROLE_WEIGHT, "model"},
    {"application/vnd.cncf.model.weight.v1.gguf", OCI_ROLE_WEIGHT, "model"},
    {"application/vnd.ollama.image.model", OCI_ROLE_WEIGHT, "model"},
    {"application/vnd.docker.ai.mmproj", OCI_ROLE_EXTRA, "mmproj.gguf"},
    {"application/vnd.ollama.image.projector", OCI_ROLE_EXTRA, "mmproj.gguf"},
    {"application/vnd.ollama.image.adapter", OCI_ROLE_EXTRA, "adapter.gguf"},
    {"application/vnd.docker.ai.license", OCI_ROLE_EXTRA, "LICENSE"},
    {"application/vnd.cncf.model.doc.v1.license", OCI_ROLE_EXTRA, "LICENSE"},
    {"application/vnd.ollama.image.license", OCI_ROLE_EXTRA, "LICENSE"},
    {"application/vnd.docker.ai.chat.template.jinja", OCI_ROLE_EXTRA, "template.jinja"},
    {"application/vnd.ollama.image.template", OCI_ROLE_EXTRA, "template"},
    {"application/vnd.ollama.image.params", OCI_ROLE_EXTRA, "params"},
    {"application/vnd.ollama.image.system", OCI_ROLE_EXTRA, "system"},
    {"application/vnd.ollama.image.messages", OCI_ROLE_EXTRA, "messages"},
};

#define OCI_FILEPATH_ANNOTATION "org.cncf.model.filepath"

/* Challenge parameters that are kept, and where. */
struct chal_param {
	const char *name;
	size_t off;
	size_t size;
};

static const struct chal_param chal_params[] = {
    {"realm", offsetof(struct oci_challenge, realm), sizeof(((struct oci_challenge *)0)->realm)},
    {"service", offsetof(struct oci_challenge, service),
     sizeof(((struct oci_challenge *)0)->service)},
    {"scope", offsetof(struct oci_challenge, scope), sizeof(((struct oci_challenge *)0)->scope)},
};

static const struct {
	const char *name;
	enum oci_auth_scheme scheme;
} chal_schemes[] = {
    {"Bearer", OCI_AUTH_BEARER},
    {"Basic", OCI_AUTH_BASIC},
};

static int is_token_char(int c)
{
	/* strchr finds the terminator too: NUL must not count. */
	return c != 0 && (isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/*
 * RFC 7235: scheme, then auth-params NAME=VALUE (a token or a quoted
 * string with backslash escapes) separated by commas. A comma followed by
 * a word without '=' starts the next challenge, which is not read.
 */
int oci_challenge_parse(const char *h, struct oci_challenge *out, struct err *e)
{
	memset(out, 0, sizeof(*out));
	if (!h)
		return err_set(e, ERR_INVALID, "no WWW-Authenticate challenge");
	while (*h == ' ' || *h == '\t')
		h++;
	size_t sl = 0;
	while (is_token_char((unsigned char)h[sl]))
		sl++;
	for (size_t i = 0; i < sizeof(chal_schemes) / sizeof(chal_schemes[0]); i++)
		if (strlen(chal_schemes[i].name) == sl &&
		    strncasecmp(h, chal_schemes[i].name, sl) == 0)
			out->scheme = chal_schemes[i].scheme;
	if (out->scheme == OCI_AUTH_NONE)
		return err_set(e, ERR_INVALID, "authentication scheme '%.*s' is not supported",
			       (int)(sl > 32 ? 32 : sl), h);
	const char *p = h + sl;
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!*p)
			break;
		size_t nl = 0;
		while (is_token_char((unsigned char)p[nl]))
			nl++;
		const char *q = p + nl;
		while (*q == ' ' || *q == '\t')
			q++;
		if (nl > 0 && *q != '=')
			break; /* a word without '=' starts the next challenge */
		if (nl == 0)
			return err_set(e, ERR_INVALID, "malformed challenge at '%.20s'", p);
		q++;
		while (*q == ' ' || *q == '\t')
			q++;
		char val[CAP_URL_LEN + 1];
		size_t vl = 0;
		if (*q == '"') {
			for (q++; *q && *q != '"'; q++) {
				if (*q == '\\' && q[1])
					q++;
				if ((unsigned char)*q < 0x20 || vl >= sizeof(val) - 1)
					return err_set(e, ERR_INVALID,
						       "challenge value too long or not text");
				val[vl++] = *q;
			}
			if (*q != '"')
				return err_set(e, ERR_INVALID,
					       "unterminated quoted challenge value");
			q++;
		} else {
			for (; is_token_char((unsigned char)*q) || *q == '/' || *q == ':'; q++) {
				if (vl >= sizeof(val) - 1)
					return err_set(e, ERR_INVALID, "challenge value too long");
				val[vl++] = *q;
			}
		}
		val[vl] = '\0';
		for (size_t i = 0; i < sizeof(chal_params) / sizeof(chal_params[0]); i++) {
			const struct chal_param *cp = &chal_params[i];
			if (strlen(cp->name) != nl || strncasecmp(p, cp->name, nl) != 0)
				continue;
			if (vl >= cp->size)
				return err_set(e, ERR_TOO_LARGE, "challenge %s too long", cp->name);
			memcpy((char *)out + cp->off, val, vl + 1);
		}
		p = q;
	}
	if (out->scheme == OCI_AUTH_BEARER && !out->realm[0])
		return err_set(e, ERR_INVALID, "Bearer challenge without a realm");
	return 0;
}

void oci_manifest_cleanup(struct oci_manifest *m)
{
	for (size_t i = 0; m && i < m->n; i++)
		free(m->layers[i].path);
	if (m)
		free(m->layers);
	if (m)
		memset(m, 0, sizeof(*m));
}

/* "sha256:HEX" with 64 lowercase hex digits, into hex. */
static int digest_parse(const char *d, char hex[65], struct err *e)
{
	static const char algo[] = "sha256:";
	if (!d || strncmp(d, algo, sizeof(algo) - 1) != 0 ||
	    strlen(d) != sizeof(algo) - 1 + SHA256_HEX_LEN ||
	    !sha256_hex_valid(d + sizeof(algo) - 1))
		return err_set(e, ERR_INVALID, "manifest: digest '%.80s' is not sha256:HEX",
			       d ? d : "");
	memcpy(hex, d + sizeof(algo) - 1, 65);
	return 0;
}

static const char *str_of(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The first model manifest of an index: attestations and unknown platforms skipped. */
static int index_pick(json_t *root, struct oci_manifest *m, struct err *e)
{
	json_t *list = json_object_get(root, "manifests");
	if (!json_is_array(list))
		return err_set(e, ERR_INVALID, "image index without a manifests list");
	size_t i;
	json_t *d;
	json_array_foreach(list, i, d)
	{
		const char *mt = str_of(d, "mediaType");
		json_t *ann = json_object_get(d, "annotations");
		json_t *plat = json_object_get(d, "platform");
		const char *ref_type = str_of(ann, "vnd.docker.reference.type");
		const char *os = str_of(plat, "os");
		if (!mt ||
		    (strcmp(mt, OCI_MANIFEST_OCI) != 0 && strcmp(mt, OCI_MANIFEST_DOCKER) != 0))
			continue;
		if ((ref_type && strcmp(ref_type, "attestation-manifest") == 0) ||
		    (os && strcmp(os, "unknown") == 0))
			continue;
		m->is_index = 1;
		return digest_parse(str_of(d, "digest"), m->pick, e);
	}
	return err_set(e, ERR_UNSUPPORTED, "image index lists no model manifest");
}

static const struct oci_media *media_find(const char *type)
{
	for (size_t i = 0; type && i < sizeof(media_types) / sizeof(media_types[0]); i++)
		if (strcmp(media_types[i].type, type) == 0)
			return &media_types[i];
	return NULL;
}

static int path_taken(const struct oci_manifest *m, const char *path)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->layers[i].path && strcmp(m->layers[i].path, path) == 0)
			return 1;
	return 0;
}

/*
 * Names every layer: its annotation when that is a safe path not yet
 * taken, else its kind; a weight of a split model "model-0000K-of-0000N.gguf"
 * (llama.cpp's shard names, so it loads the set from the first), a name
 * taken already gets "-2", "-3", ... before its extension.
 */
static void name_layers(struct oci_manifest *m, char *const *annotated)
{
	for (size_t i = 0; i < m->n; i++) {
		struct oci_layer *l = &m->layers[i];
		const struct oci_media *md = media_find(l->media);
		const char *a = annotated[i];
		if (a && path_check_repo(a, strlen(a), NULL) == 0 && !path_taken(m, a)) {
			l->path = xstrdup(a);
			continue;
		}
		char base[64];
		if (l->role == OCI_ROLE_WEIGHT && m->n_weights > 1)
			snprintf(base, sizeof(base), "%s-%05zu-of-%05zu.gguf", md->name, i + 1,
				 m->n_weights);
		else if (l->role == OCI_ROLE_WEIGHT)
			snprintf(base, sizeof(base), "%s.gguf", md->name);
		else
			snprintf(base, sizeof(base), "%s", md->name);
		char *path = xstrdup(base);
		for (int k = 2; path_taken(m, path); k++) {
			const char *dot = strrchr(base, '.');
			size_t stem = dot ? (size_t)(dot - base) : strlen(base);
			free(path);
			path = xasprintf("%.*s-%d%s", (int)stem, base, k, dot ? dot : "");
		}
		l->path = path;
	}
}

/* The layers of a manifest, weights first (in order), then the extras. */
static int manifest_layers(json_t *root, struct oci_manifest *m, struct err *e)
{
	json_t *layers = json_object_get(root, "layers");
	if (!json_is_array(layers))
		return err_set(e, ERR_INVALID, "manifest without a layers list");
	size_t total = json_array_size(layers);
	if (total > CAP_MODEL_FILES)
		return err_set(e, ERR_TOO_LARGE, "manifest has %zu layers, over the cap of %d",
			       total, CAP_MODEL_FILES);
	m->layers = xcalloc(total ? total : 1, sizeof(*m->layers));
	char **annotated = xcalloc(total ? total : 1, sizeof(*annotated));
	int rc = 0;
	for (int pass = OCI_ROLE_WEIGHT; pass <= OCI_ROLE_EXTRA && rc == 0; pass++) {
		size_t i;
		json_t *d;
		json_array_foreach(layers, i, d)
		{
			const char *mt = str_of(d, "mediaType");
			const struct oci_media *md = media_find(mt);
			if (!md) {
				if (pass == OCI_ROLE_WEIGHT)
					m->n_skipped++;
				continue;
			}
			if ((int)md->role != pass)
				continue;
			struct oci_layer *l = &m->layers[m->n];
			json_t *size = json_object_get(d, "size");
			if (!json_is_integer(size) || json_integer_value(size) < 0) {
				rc = err_set(e, ERR_INVALID, "manifest: layer %zu has no size", i);
				break;
			}
			rc = digest_parse(str_of(d, "digest"), l->sha256, e);
			if (rc)
				break;
			l->size = (uint64_t)json_integer_value(size);
			l->role = md->role;
			l->media = md->type;
			const char *a =
			    str_of(json_object_get(d, "annotations"), OCI_FILEPATH_ANNOTATION);
			annotated[m->n] = a ? xstrdup(a) : NULL;
			m->n++;
			if (md->role == OCI_ROLE_WEIGHT)
				m->n_weights++;
		}
	}
	if (rc == 0)
		name_layers(m, annotated);
	for (size_t i = 0; i < total; i++)
		free(annotated[i]);
	free(annotated);
	return rc;
}

int oci_manifest_parse(const char *body, size_t len, const char *content_type,
		       struct oci_manifest *m, struct err *e)
{
	json_t *root = NULL;
	memset(m, 0, sizeof(*m));
	int rc = json_parse_strict(body, len, len, &root, e);
	if (rc)
		return rc;
	if (!json_is_object(root)) {
		json_decref(root);
		return err_set(e, ERR_INVALID, "manifest is not a JSON object");
	}
	json_t *sv = json_object_get(root, "schemaVersion");
	const char *mt = str_of(root, "mediaType");
	char ct[128] = "";
	if (!mt && content_type) {
		/* Content-Type may carry parameters; the type is what comes before them. */
		snprintf(ct, sizeof(ct), "%.*s", (int)strcspn(content_type, "; "), content_type);
		mt = ct;
	}
	int kind = -1;
	for (size_t i = 0; mt && i < sizeof(manifest_types) / sizeof(manifest_types[0]); i++)
		if (strcmp(mt, manifest_types[i].type) == 0)
			kind = manifest_types[i].index;
	/* An OCI manifest may name no type at all: its layers say what it is. */
	if (kind < 0 && (!mt || !mt[0]))
		kind = json_object_get(root, "manifests") ? 1 : 0;
	if (!json_is_integer(sv) || json_integer_value(sv) != 2)
		rc = err_set(e, ERR_UNSUPPORTED, "manifest schema version is not 2");
	else if (kind < 0)
		rc = err_set(e, ERR_UNSUPPORTED, "manifest type '%.100s' is not understood", mt);
	else if (kind == 1)
		rc = index_pick(root, m, e);
	else
		rc = manifest_layers(root, m, e);
	json_decref(root);
	if (rc)
		oci_manifest_cleanup(m);
	return rc;
}

/* "https://index.docker.io/v1/" -> "index.docker.io": a config.json key as a host. */
static void key_host(const char *key, char *out, size_t size)
{
	const char *p = strstr(key, "://");
	p = p ? p + 3 : key;
	snprintf(out, size, "%.*s", (int)strcspn(p, "/"), p);
	for (char *c = out; *c; c++)
		*c = (char)tolower((unsigned char)*c);
}

/* Docker Hub's registry is known in config.json by its older names. */
static int host_matches(const char *key, const char *host)
{
	static const char *const hub[] = {"registry-1.docker.io", "index.docker.io", "docker.io"};
	if (strcmp(key, host) == 0)
		return 1;
	int key_hub = 0, host_hub = 0;
	for (size_t i = 0; i < sizeof(hub) / sizeof(hub[0]); i++) {
		key_hub |= strcmp(key, hub[i]) == 0;
		host_hub |= strcmp(host, hub[i]) == 0;
	}
	return key_hub && host_hub;
}

int oci_auth_find(const char *json, size_t len, const char *host, char *b64, size_t size,
		  struct err *e)
{
	json_t *root = NULL;
	int rc = json_parse_strict(json, len, len, &root, e);
	if (rc)
		return rc;
	json_t *auths = json_object_get(root, "auths");
	const char *key;
	json_t *v;
	int found = 0;
	json_object_foreach(auths, key, v)
	{
		char kh[256];
		key_host(key, kh, sizeof(kh));
		const char *a = str_of(v, "auth");
		if (!a || !host_matches(kh, host))
			continue;
		/* Decoded once to check it is user:pass; what is sent is the base64 as given. */
		size_t al = strlen(a);
		unsigned char *plain = xmalloc(al + 4);
		int n = al % 4 == 0 && al > 0 && al <= CAP_TOKEN_LEN
			    ? EVP_DecodeBlock(plain, (const unsigned char *)a, (int)al)
			    : -1;
		int ok = n > 0 && memchr(plain, ':', (size_t)n) != NULL;
		memset(plain, 0, al + 4);
		free(plain);
		if (!ok)
			rc = err_set(e, ERR_INVALID,
				     "auths[\"%.80s\"].auth is not base64 of user:pass", key);
		else if (fmt_buf(b64, size, "%s", a))
			rc = err_set(e, ERR_TOO_LARGE, "auths[\"%.80s\"].auth is too long", key);
		else
			found = 1;
		break;
	}
	json_decref(root);
	return rc ? rc : found;
}
