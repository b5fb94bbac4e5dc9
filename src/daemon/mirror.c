/*
 * mirror: the download side of the Hugging Face Hub's protocol
 * (docs/mirror.md), served from the catalog and the hub cache, so that a
 * client pointed at this hive with HF_ENDPOINT downloads what the hive
 * holds: model info, the tree (paged), paths-info, resolve and llama.cpp's
 * manifest. What it lacks, it asks of the upstream Hub when it is online:
 * listings come from the upstream's, and a file is pulled through a
 * download job and streamed as the job writes it.
 *
 * What the hive knows of a repo is what its catalog holds: the files of
 * every available model of that repo and commit. A branch is read from the
 * hub cache's refs/, else from the revision a model was asked at; a full
 * commit names itself. File bytes come from blobs/ through a descriptor
 * opened with O_NOFOLLOW relative to the folder (layout_blob_open) and go
 * out with sendfile; nothing is read into memory but small files' git ids.
 *
 * Each request opens its own catalog connection (the catalog's one
 * connection per thread rule) and closes it before the answer is sent; a
 * pull-through answer keeps one for its stream, on its connection's thread.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/gitblob.h"
#include "core/json.h"
#include "core/parse.h"
#include "core/sha256.h"
#include "core/util.h"
#include "daemon/http.h"
#include "daemon/mirror.h"
#include "provision/hfselect.h"
#include "store/catalog.h"
#include "store/layout.h"

/* The text of an LFS pointer, whose git id is the oid the Hub lists for an LFS file. */
#define MIRROR_LFS_POINTER "version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %llu\n"

/*
 * Names the Hub's default .gitattributes sends to LFS, so that a small
 * file of these kinds is listed as LFS as the Hub lists it. Larger files
 * than CAP_MIRROR_GIT_FILE are always LFS.
 */
static const char *const mirror_lfs_suffixes[] = {
    ".gguf",	".safetensors", ".bin", ".pt",	   ".pth", ".ckpt",   ".onnx",	 ".h5",
    ".msgpack", ".model",	".npy", ".npz",	   ".pkl", ".pickle", ".tflite", ".ot",
    ".parquet", ".arrow",	".pb",	".joblib", ".zip", ".tar",    ".tgz",	 ".gz",
    ".xz",	".zst",		".7z",	".bz2",	   ".rar", ".wasm",   ".ftz",	 ".mlmodel",
};

/*
 * An error the way the Hub answers it: {"error": message} with the
 * X-Error-Code and X-Error-Message headers clients branch on, and the
 * commit when one was resolved.
 */
int mirror_hub_error(struct http_req *rq, int status, const char *code, const char *commit,
		     const char *fmt, ...)
{
	char msg[ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	struct err e;
	/* Through err_set, which makes a message quoting the request valid UTF-8. */
	err_set(&e, ERR_NOT_FOUND, "%s", msg);
	json_t *o = json_pack("{s:s}", "error", e.msg);
	char *s = o ? json_dump_compact(o) : xstrdup("{}");
	json_decref(o);
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(s);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	MHD_add_response_header(resp, "X-Error-Code", code);
	MHD_add_response_header(resp, "X-Error-Message", e.msg);
	if (commit)
		MHD_add_response_header(resp, "X-Repo-Commit", commit);
	return http_queue(rq, status, resp);
}

static int mirror_repo_not_found(struct mirror_req *m)
{
	return mirror_hub_error(m->rq, MHD_HTTP_NOT_FOUND, "RepoNotFound", NULL,
				"Repository Not Found: this hive holds no model of %s", m->repo);
}

static int mirror_revision_not_found(struct mirror_req *m)
{
	return mirror_hub_error(m->rq, MHD_HTTP_NOT_FOUND, "RevisionNotFound", NULL,
				"Invalid rev id: this hive holds no model of %s at %s", m->repo,
				m->rev);
}

static int mirror_is_commit(const char *s)
{
	return strlen(s) == 40 && is_hex_lower(s, 40);
}

/*
 * The commit a revision names: itself when it is one, else the hub cache's
 * refs/<rev>, else the revision a model was asked at. 1 when found.
 */
static int mirror_commit(struct mirror_req *m, struct catalog *cat, struct err *e)
{
	if (mirror_is_commit(m->rev)) {
		snprintf(m->r.commit, sizeof m->r.commit, "%s", m->rev);
		return 1;
	}
	char dir[LAYOUT_REPO_DIR_MAX];
	char commit[64];
	if (layout_repo_dir_hf(m->org, m->name, dir, sizeof dir, NULL) == 0 &&
	    layout_ref_read(m->rq->d->layout, dir, m->rev, commit, sizeof commit, NULL) == 0 &&
	    mirror_is_commit(commit) && catalog_repo_find(cat, m->repo, commit, commit, e) == 1) {
		snprintf(m->r.commit, sizeof m->r.commit, "%s", commit);
		return 1;
	}
	return catalog_repo_find(cat, m->repo, m->rev, m->r.commit, e);
}

/* A repo or revision the catalog lacks: answered (1), or left to the caller (2). */
static int mirror_miss(struct mirror_req *m, const char *code)
{
	m->miss = code;
	if (m->soft)
		return 2;
	if (strcmp(code, "RepoNotFound") == 0)
		mirror_repo_not_found(m);
	else
		mirror_revision_not_found(m);
	return 1;
}

/* See mirror.h. */
int mirror_open(struct http_req *rq, struct mirror_req *m, int rev_param, int soft)
{
	memset(m, 0, sizeof *m);
	m->rq = rq;
	m->soft = soft;
	struct daemon *d = rq->d;
	if (!d->mirror) {
		http_reply_error(rq, ERR_NOT_FOUND, "no route for %.16s %.200s", rq->method,
				 rq->path);
		return 1;
	}
	snprintf(m->org, sizeof m->org, "%s", rq->params[0]);
	snprintf(m->name, sizeof m->name, "%s", rq->params[1]);
	snprintf(m->repo, sizeof m->repo, "%.96s/%.96s", rq->params[0], rq->params[1]);
	const char *rev = rev_param >= 0 ? rq->params[rev_param] : "main";
	/* @huggingface/hub asks for HEAD when no revision is given: the default branch. */
	snprintf(m->rev, sizeof m->rev, "%.256s", strcmp(rev, "HEAD") == 0 ? "main" : rev);
	if (!d->catalog_path || !d->layout ||
	    name_check_hub(rq->params[0], strlen(rq->params[0]), NULL) < 0 ||
	    name_check_hub(rq->params[1], strlen(rq->params[1]), NULL) < 0) {
		mirror_repo_not_found(m);
		return 1;
	}
	if (revision_check(rev, strlen(rev), NULL) < 0) {
		mirror_revision_not_found(m);
		return 1;
	}
	struct catalog *cat = NULL;
	struct err e;
	err_clear(&e);
	char any[41];
	int rc = catalog_open(d->catalog_path, &cat, &e);
	if (rc == 0)
		rc = catalog_repo_find(cat, m->repo, NULL, any, &e);
	if (rc == 0) {
		catalog_close(cat);
		return mirror_miss(m, "RepoNotFound");
	}
	if (rc == 1)
		rc = mirror_commit(m, cat, &e);
	if (rc == 0) {
		catalog_close(cat);
		return mirror_miss(m, "RevisionNotFound");
	}
	char commit[41];
	memcpy(commit, m->r.commit, sizeof commit);
	if (rc == 1)
		rc = catalog_repo_snapshot(cat, m->repo, commit, &m->r, &e);
	catalog_close(cat);
	if (rc == ERR_NOT_FOUND)
		return mirror_miss(m, "RevisionNotFound");
	if (rc < 0) {
		http_reply_err(rq, &e);
		return 1;
	}
	return 0;
}

static int mirror_is_lfs(const struct mirror_req *m, const struct catalog_file *f)
{
	if (m->upstream)
		return f->sha256[0] != 0;
	const char *blob = catalog_file_blob(f);
	/* A blob named by its git id was written by a client the Hub served it to outside LFS. */
	if (strlen(blob) == GITBLOB_HEX_LEN)
		return 0;
	if (f->size > CAP_MIRROR_GIT_FILE)
		return 1;
	size_t n = strlen(f->path);
	for (size_t i = 0; i < sizeof mirror_lfs_suffixes / sizeof mirror_lfs_suffixes[0]; i++) {
		size_t k = strlen(mirror_lfs_suffixes[i]);
		if (n > k && strcasecmp(f->path + n - k, mirror_lfs_suffixes[i]) == 0)
			return 1;
	}
	return 0;
}

/* The git id of n bytes of data, as gitblob computes it for a file. */
static void mirror_git_id(const void *data, size_t n, char out[GITBLOB_HEX_LEN + 1])
{
	struct gitblob g = {0};
	gitblob_init(&g, n);
	gitblob_update(&g, data, n);
	gitblob_final_hex(&g, out);
	gitblob_cleanup(&g);
}

int mirror_meta(const struct mirror_req *m, const struct catalog_file *f, struct mirror_meta *out,
		struct err *e)
{
	memset(out, 0, sizeof *out);
	out->lfs = mirror_is_lfs(m, f);
	if (out->lfs) {
		char ptr[256];
		int n = snprintf(ptr, sizeof ptr, MIRROR_LFS_POINTER, f->sha256,
				 (unsigned long long)f->size);
		out->pointer_size = (uint64_t)n;
		mirror_git_id(ptr, (size_t)n, out->oid);
		out->etag = f->sha256;
		return 0;
	}
	out->etag = out->oid;
	const char *blob = catalog_file_blob(f);
	if (strlen(blob) == GITBLOB_HEX_LEN) {
		memcpy(out->oid, blob, sizeof out->oid);
		return 0;
	}
	int fd;
	int rc = layout_blob_open(m->rq->d->layout, m->r.repo_dir, blob, &fd, e);
	if (rc)
		return rc;
	char sha[SHA256_HEX_LEN + 1];
	uint64_t size = 0;
	rc = sha256_fd(fd, f->path, NULL, sha, out->oid, &size, e);
	close(fd);
	if (rc == 0 && (size != f->size || strcmp(sha, f->sha256) != 0))
		rc = err_set(e, ERR_CORRUPT,
			     "%s of %s is not what the catalog recorded; run rbee-hive verify",
			     f->path, m->repo);
	return rc;
}

int mirror_file_cmp(const void *a, const void *b)
{
	return strcmp(((const struct catalog_file *)a)->path,
		      ((const struct catalog_file *)b)->path);
}

const struct catalog_file *mirror_find(const struct catalog_repo *r, const char *path)
{
	size_t lo = 0, hi = r->nfiles;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(r->files[mid].path, path);
		if (c == 0)
			return &r->files[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* 1 when some file lies below the folder of the n bytes of dir. */
static int mirror_is_dir(const struct catalog_repo *r, const char *dir, size_t n)
{
	for (size_t i = 0; i < r->nfiles; i++)
		if (strncmp(r->files[i].path, dir, n) == 0 && r->files[i].path[n] == '/')
			return 1;
	return 0;
}

static void mirror_iso_time(int64_t ms, char out[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

static json_t *mirror_last_commit(const struct mirror_req *m)
{
	char date[32];
	mirror_iso_time(m->r.updated_ms, date);
	return json_pack("{s:s,s:s,s:s}", "id", m->r.commit, "title", "", "date", date);
}

static json_t *mirror_file_json(const struct mirror_req *m, const struct catalog_file *f,
				const struct mirror_meta *mm, int expand)
{
	json_t *o = json_pack("{s:s,s:s,s:I,s:s}", "type", "file", "oid", mm->oid, "size",
			      (json_int_t)f->size, "path", f->path);
	if (mm->lfs)
		json_object_set_new(o, "lfs",
				    json_pack("{s:s,s:I,s:I}", "oid", f->sha256, "size",
					      (json_int_t)f->size, "pointerSize",
					      (json_int_t)mm->pointer_size));
	if (expand)
		json_object_set_new(o, "lastCommit", mirror_last_commit(m));
	return o;
}

/*
 * A folder's entry. Its oid is git's id of "commit/folder", stable for the
 * folder at that commit; the hive does not keep git's tree objects.
 */
static json_t *mirror_dir_json(const struct mirror_req *m, const char *path, int expand)
{
	char *key = xasprintf("%s/%s", m->r.commit, path);
	char oid[GITBLOB_HEX_LEN + 1];
	mirror_git_id(key, strlen(key), oid);
	free(key);
	json_t *o = json_pack("{s:s,s:s,s:i,s:s}", "type", "directory", "oid", oid, "size", 0,
			      "path", path);
	if (expand)
		json_object_set_new(o, "lastCommit", mirror_last_commit(m));
	return o;
}

/* A query flag as clients write it: true, True, 1. */
static int mirror_query_flag(const struct http_req *rq, const char *key)
{
	int bad;
	char *v = http_query_get(rq, key, &bad);
	int on = v && (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0);
	free(v);
	return on;
}

void mirror_cleanup(struct mirror_req *m)
{
	catalog_repo_cleanup(&m->r);
}

/*
 * mirror_open for the listings: the catalog's view, else, when the hive
 * may ask upstream, the upstream Hub's. 0, or rq has been answered (1).
 */
static int mirror_open_listing(struct http_req *rq, struct mirror_req *m, int rev_param)
{
	int rc = mirror_open(rq, m, rev_param, mirror_can_pull(rq->d));
	if (rc == 2)
		rc = mirror_open_upstream(rq, m);
	return rc;
}

int mirror_info(struct http_req *rq)
{
	struct mirror_req m;
	if (mirror_open_listing(rq, &m, rq->n_params > 2 ? 2 : -1))
		return MHD_YES;
	int blobs = mirror_query_flag(rq, "blobs");
	struct err e;
	err_clear(&e);
	json_t *sib = json_array();
	for (size_t i = 0; i < m.r.nfiles; i++) {
		const struct catalog_file *f = &m.r.files[i];
		json_t *s = json_pack("{s:s}", "rfilename", f->path);
		struct mirror_meta mm;
		if (blobs && mirror_meta(&m, f, &mm, &e) < 0) {
			json_decref(s);
			json_decref(sib);
			mirror_cleanup(&m);
			return http_reply_err(rq, &e);
		}
		if (blobs) {
			json_object_set_new(s, "blobId", json_string(mm.oid));
			json_object_set_new(s, "size", json_integer((json_int_t)f->size));
			if (mm.lfs)
				json_object_set_new(s, "lfs",
						    json_pack("{s:s,s:I,s:I}", "sha256", f->sha256,
							      "size", (json_int_t)f->size,
							      "pointerSize",
							      (json_int_t)mm.pointer_size));
		}
		json_array_append_new(sib, s);
	}
	char date[32];
	mirror_iso_time(m.r.updated_ms, date);
	/* Unknown gating is served as gated: the hive refuses its files alike. */
	json_t *gated = m.r.gated ? json_string("manual") : json_false();
	json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:o,s:b,s:i,s:i,s:[],s:o}", "_id",
			      m.r.commit, "id", m.repo, "modelId", m.repo, "author", m.org, "sha",
			      m.r.commit, "lastModified", date, "private", 0, "gated", gated,
			      "disabled", 0, "downloads", 0, "likes", 0, "tags", "siblings", sib);
	mirror_cleanup(&m);
	return http_reply_json(rq, MHD_HTTP_OK, o);
}

/* One entry of a tree listing: a file of the catalog, or a folder (file NULL). */
struct mirror_entry {
	char *path;
	const struct catalog_file *file;
};

static int mirror_entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct mirror_entry *)a)->path,
		      ((const struct mirror_entry *)b)->path);
}

static void mirror_entry_add(struct mirror_entry **v, size_t *n, char *path,
			     const struct catalog_file *f)
{
	if ((*n & (*n - 1)) == 0)
		*v = xrealloc(*v, (*n ? *n * 2 : 1) * sizeof **v);
	(*v)[*n].path = path;
	(*v)[(*n)++].file = f;
}

/*
 * The entries below the folder prefix ("" or "sub/"): its files and
 * folders, or with recursive everything below it, sorted by path, each
 * folder once.
 */
static size_t mirror_entries(const struct catalog_repo *r, const char *prefix, int recursive,
			     struct mirror_entry **out)
{
	struct mirror_entry *v = NULL;
	size_t n = 0, pl = strlen(prefix);
	for (size_t i = 0; i < r->nfiles; i++) {
		const char *p = r->files[i].path;
		if (strncmp(p, prefix, pl) != 0)
			continue;
		for (const char *s = strchr(p + pl, '/'); s;
		     s = recursive ? strchr(s + 1, '/') : NULL)
			mirror_entry_add(&v, &n, xstrndup(p, (size_t)(s - p)), NULL);
		if (recursive || !strchr(p + pl, '/'))
			mirror_entry_add(&v, &n, xstrdup(p), &r->files[i]);
	}
	if (n)
		qsort(v, n, sizeof *v, mirror_entry_cmp);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (k && strcmp(v[k - 1].path, v[i].path) == 0) {
			free(v[i].path);
			continue;
		}
		v[k++] = v[i];
	}
	*out = v;
	return k;
}

/* The query of rq without its cursor, for the next page's link. */
static char *mirror_query_without_cursor(const struct http_req *rq)
{
	size_t cap = rq->query ? strlen(rq->query) + 1 : 1, used = 0;
	char *out = xmalloc(cap);
	out[0] = 0;
	for (const char *p = rq->query; p && *p;) {
		size_t n = strcspn(p, "&");
		if (!(n >= 7 && strncmp(p, "cursor=", 7) == 0) && n) {
			used += (size_t)snprintf(out + used, cap - used, "%s%.*s", used ? "&" : "",
						 (int)n, p);
		}
		p += n;
		if (*p == '&')
			p++;
	}
	return out;
}

int mirror_tree(struct http_req *rq)
{
	struct mirror_req m;
	if (mirror_open_listing(rq, &m, 2))
		return MHD_YES;
	struct err e;
	err_clear(&e);
	const char *sub = rq->n_params > 3 ? rq->params[3] : "";
	size_t sl = strlen(sub);
	while (sl && sub[sl - 1] == '/')
		sl--;
	char *prefix = xasprintf("%.*s%s", (int)sl, sub, sl ? "/" : "");
	int rc = 0;
	if (sl && (path_check_repo(sub, sl, &e) < 0 || !mirror_is_dir(&m.r, sub, sl))) {
		prefix[sl] = 0;
		rc = mirror_hub_error(rq, MHD_HTTP_NOT_FOUND, "EntryNotFound", m.r.commit,
				      "%.200s does not exist on \"%.100s\"", prefix, m.rev);
		free(prefix);
		mirror_cleanup(&m);
		return rc;
	}
	int bad;
	char *cur = http_query_get(rq, "cursor", &bad);
	char *lim = bad ? NULL : http_query_get(rq, "limit", &bad);
	uint64_t start = 0, limit = CAP_MIRROR_TREE_PAGE;
	if (bad)
		rc = err_set(&e, ERR_INVALID, "query: bad percent-encoding");
	if (!rc && cur)
		rc = parse_u64_str(cur, 0, CAP_REPO_FILES * (uint64_t)CAP_REPO_PATH_DEPTH, &start,
				   "cursor", &e);
	if (!rc && lim)
		rc = parse_u64_str(lim, 1, CAP_MIRROR_TREE_PAGE, &limit, "limit", &e);
	free(cur);
	free(lim);
	if (rc) {
		free(prefix);
		mirror_cleanup(&m);
		return http_reply_err(rq, &e);
	}
	int expand = mirror_query_flag(rq, "expand");
	struct mirror_entry *v = NULL;
	size_t n = mirror_entries(&m.r, prefix, mirror_query_flag(rq, "recursive"), &v);
	json_t *a = json_array();
	for (size_t i = (size_t)start; rc == 0 && i < n && i < start + limit; i++) {
		struct mirror_meta mm;
		if (!v[i].file)
			json_array_append_new(a, mirror_dir_json(&m, v[i].path, expand));
		else if ((rc = mirror_meta(&m, v[i].file, &mm, &e)) == 0)
			json_array_append_new(a, mirror_file_json(&m, v[i].file, &mm, expand));
	}
	for (size_t i = 0; i < n; i++)
		free(v[i].path);
	free(v);
	free(prefix);
	if (rc) {
		json_decref(a);
		mirror_cleanup(&m);
		return http_reply_err(rq, &e);
	}
	char *s = json_dump_compact(a);
	json_decref(a);
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(s);
		mirror_cleanup(&m);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	MHD_add_response_header(resp, "X-Repo-Commit", m.r.commit);
	if (start + limit < n) {
		/* Clients follow an absolute link (@huggingface/hub accepts no other). */
		const char *host = http_header(rq, "Host");
		char *q = mirror_query_without_cursor(rq);
		char *link = xasprintf("<http://%s%s?%s%scursor=%llu>; rel=\"next\"",
				       host ? host : rq->d->bind, rq->path, q, q[0] ? "&" : "",
				       (unsigned long long)(start + limit));
		MHD_add_response_header(resp, "Link", link);
		free(link);
		free(q);
	}
	mirror_cleanup(&m);
	return http_queue(rq, MHD_HTTP_OK, resp);
}

/* The paths and expand flag of a paths-info body: JSON, or a form as huggingface_hub posts. */
static int mirror_paths_body(const struct http_req *rq, char ***paths, size_t *n, int *expand,
			     struct err *e)
{
	*paths = NULL;
	*n = 0;
	*expand = 0;
	const char *body = rq->body ? rq->body : "";
	const char *ct = http_header(rq, "Content-Type");
	if (ct && strncasecmp(ct, "application/json", 16) == 0) {
		json_t *doc = NULL;
		int rc = json_parse_strict(body, rq->body_len, CAP_REQUEST_BODY, &doc, e);
		if (rc)
			return rc;
		json_t *p = json_object_get(doc, "paths");
		json_t *x = json_object_get(doc, "expand");
		if (!json_is_array(p) || json_array_size(p) > CAP_MIRROR_PATHS) {
			json_decref(doc);
			return err_set(e, ERR_INVALID, "paths-info: expected \"paths\", at most %d",
				       CAP_MIRROR_PATHS);
		}
		*expand = json_is_true(x);
		*paths = xcalloc(json_array_size(p) + 1, sizeof **paths);
		size_t i;
		json_t *it;
		json_array_foreach(p, i, it)
		{
			if (json_is_string(it))
				(*paths)[(*n)++] = xstrdup(json_string_value(it));
		}
		json_decref(doc);
		return 0;
	}
	*paths = xcalloc(CAP_MIRROR_PATHS, sizeof **paths);
	for (const char *p = body; *p;) {
		size_t len = strcspn(p, "&");
		const char *eq = memchr(p, '=', len);
		char *k = eq ? http_pct_decode(p, (size_t)(eq - p), 1) : NULL;
		char *v = eq ? http_pct_decode(eq + 1, len - (size_t)(eq - p) - 1, 1) : NULL;
		int rc = 0;
		if (!k || !v)
			rc = err_set(e, ERR_INVALID, "paths-info: malformed form body");
		else if (strcmp(k, "paths") == 0 && *n == CAP_MIRROR_PATHS)
			rc = err_set(e, ERR_INVALID, "paths-info: at most %d paths",
				     CAP_MIRROR_PATHS);
		else if (strcmp(k, "paths") == 0)
			(*paths)[(*n)++] = xstrdup(v);
		else if (strcmp(k, "expand") == 0)
			*expand = strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0;
		free(k);
		free(v);
		if (rc)
			return rc;
		p += len;
		if (*p == '&')
			p++;
	}
	return 0;
}

int mirror_paths_info(struct http_req *rq)
{
	struct mirror_req m;
	if (mirror_open_listing(rq, &m, 2))
		return MHD_YES;
	struct err e;
	err_clear(&e);
	char **paths = NULL;
	size_t n = 0;
	int expand = 0;
	int rc = mirror_paths_body(rq, &paths, &n, &expand, &e);
	/*
	 * A path the catalog's files of this commit lack may still be in the
	 * repo: with pull-through, the upstream's listing answers instead, as
	 * a resolve of that path would pull it.
	 */
	size_t missing = 0;
	for (size_t i = 0; rc == 0 && i < n; i++)
		missing += !mirror_find(&m.r, paths[i]) &&
			   !(paths[i][0] && mirror_is_dir(&m.r, paths[i], strlen(paths[i])));
	if (rc == 0 && missing && !m.upstream && mirror_can_pull(rq->d) &&
	    mirror_open_upstream(rq, &m)) {
		for (size_t i = 0; i < n; i++)
			free(paths[i]);
		free(paths);
		mirror_cleanup(&m);
		return MHD_YES;
	}
	json_t *a = json_array();
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const char *p = paths[i];
		const struct catalog_file *f = mirror_find(&m.r, p);
		struct mirror_meta mm;
		if (f && (rc = mirror_meta(&m, f, &mm, &e)) == 0)
			json_array_append_new(a, mirror_file_json(&m, f, &mm, expand));
		else if (!f && p[0] && mirror_is_dir(&m.r, p, strlen(p)))
			json_array_append_new(a, mirror_dir_json(&m, p, expand));
	}
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
	mirror_cleanup(&m);
	if (rc) {
		json_decref(a);
		return http_reply_err(rq, &e);
	}
	return http_reply_json(rq, MHD_HTTP_OK, a);
}

/* The file entry of a manifest: what llama.cpp reads (rfilename) and the Hub's other fields. */
static json_t *mirror_manifest_file(const struct mirror_req *m, const struct catalog_file *f,
				    struct err *e)
{
	struct mirror_meta mm;
	if (mirror_meta(m, f, &mm, e) < 0)
		return NULL;
	json_t *o = json_pack("{s:s,s:s,s:I}", "rfilename", f->path, "blobId", mm.oid, "size",
			      (json_int_t)f->size);
	if (mm.lfs)
		json_object_set_new(o, "lfs",
				    json_pack("{s:s,s:I,s:I}", "sha256", f->sha256, "size",
					      (json_int_t)f->size, "pointerSize",
					      (json_int_t)mm.pointer_size));
	return o;
}

/* 1 for a vision projector, which a manifest names apart from the model. */
static int mirror_is_mmproj(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	return strncasecmp(base, "mmproj", 6) == 0 && hf_is_gguf(path);
}

int mirror_manifest(struct http_req *rq)
{
	struct mirror_req m;
	if (mirror_open_listing(rq, &m, -1))
		return MHD_YES;
	const char *tag = rq->params[2];
	struct err e;
	err_clear(&e);
	struct hf_listing l;
	hf_listing_init(&l);
	const struct catalog_file *proj = NULL;
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < m.r.nfiles; i++) {
		const struct catalog_file *f = &m.r.files[i];
		rc = hf_listing_add(&l, f->path, f->size, f->sha256, NULL);
		if (!proj && mirror_is_mmproj(f->path))
			proj = f;
	}
	/* "latest" is the tag llama.cpp asks for when none is given: the default choice. */
	int latest = strcmp(tag, "latest") == 0;
	char up[HF_QUANT_MAX];
	size_t k = 0;
	for (; !latest && tag[k] && k + 1 < sizeof up; k++)
		up[k] = (char)(tag[k] >= 'a' && tag[k] <= 'z' ? tag[k] - 'a' + 'A' : tag[k]);
	up[k] = 0;
	size_t *idx = xcalloc(CAP_MODEL_FILES, sizeof *idx), n = 0;
	if (rc == 0)
		rc = hf_select(&l, latest ? SEL_DEFAULT : SEL_QUANT, latest ? "" : up, m.repo, NULL,
			       idx, CAP_MODEL_FILES, &n, &e);
	json_t *o = NULL;
	if (rc == 0) {
		const struct catalog_file *f = mirror_find(&m.r, l.files[idx[0]].path);
		json_t *gguf = f ? mirror_manifest_file(&m, f, &e) : NULL;
		json_t *mp = proj && gguf ? mirror_manifest_file(&m, proj, &e) : NULL;
		if (!gguf || (proj && !mp)) {
			json_decref(gguf);
			rc = e.code ? e.code : ERR_INTERNAL;
		} else {
			o = json_pack("{s:o}", "ggufFile", gguf);
			if (mp && strcmp(proj->path, f->path) != 0)
				json_object_set_new(o, "mmprojFile", mp);
			else
				json_decref(mp);
		}
	}
	free(idx);
	hf_listing_cleanup(&l);
	int r;
	if (rc == ERR_NOT_FOUND)
		r = mirror_hub_error(rq, MHD_HTTP_NOT_FOUND, "EntryNotFound", m.r.commit, "%.200s",
				     err_msg(&e));
	else if (rc < 0)
		r = http_reply_err(rq, &e);
	else
		r = http_reply_json(rq, MHD_HTTP_OK, o);
	mirror_cleanup(&m);
	return r;
}
