/*
 * mirror_pull: what the mirror asks of the upstream Hub (docs/mirror.md,
 * "Pull-through"): the listing of a repo or revision the catalog lacks,
 * and a file the catalog lacks, downloaded by an ordinary job and streamed
 * to the client as the job writes it.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/parse.h"
#include "core/sha256.h"
#include "core/util.h"
#include "daemon/http.h"
#include "daemon/mirror.h"
#include "jobs/job.h"
#include "provision/hfapi.h"
#include "provision/hfselect.h"
#include "provision/provision.h"
#include "store/catalog.h"
#include "store/layout.h"

/* How often a pull-through answer looks for new bytes, and the piece it sends at most. */
#define MIRROR_PULL_POLL_MS 100
#define MIRROR_PULL_BLOCK (256 * 1024)

int mirror_can_pull(const struct daemon *d)
{
	return d->prov_cfg && !d->prov_cfg->offline && d->jobs;
}

static int mirror_pull_error(struct http_req *rq, const struct mirror_req *m, const struct err *e,
			     const char *commit)
{
	const char *msg = err_msg(e);
	if (e->code == ERR_GATED)
		return mirror_hub_error(rq, MHD_HTTP_FORBIDDEN, "GatedRepo", NULL,
					"Access to model %s is restricted: %s", m->repo, msg);
	if (e->code != ERR_NOT_FOUND)
		return http_reply_err(rq, e);
	/* The upstream's own code when it named one (hfapi keeps it), else what was asked. */
	const char *code = e->reason ? e->reason : m->miss ? m->miss : "EntryNotFound";
	return mirror_hub_error(rq, MHD_HTTP_NOT_FOUND, code, commit && commit[0] ? commit : NULL,
				"%s (asked of the upstream Hub)", msg);
}

/*
 * Asks the upstream Hub about m's repo under the cap and deadline of the
 * Hub listings of GET /v1/sources: the commit of m->rev and its gating,
 * then, with path, that file's facts into meta, or without, the whole
 * tree into tree. 0, or an error in e (ERR_RETRY when the cap is full:
 * the caller answers with Retry-After).
 */
static int mirror_upstream(struct http_req *rq, const struct mirror_req *m, const char *path,
			   char commit[41], int *gated, struct hf_file_meta *meta,
			   struct hf_listing *tree, struct err *e)
{
	struct daemon *d = rq->d;
	struct cancel_token *cancel = NULL;
	if (http_upstream_begin(rq, "upstream requests", &cancel, e) < 0)
		return e->code;
	struct hf_client c;
	int rc = hf_client_init(&c, d->prov_cfg, e);
	if (rc == 0)
		rc = hf_resolve_commit(&c, m->org, m->name, m->rev, cancel, commit, NULL, gated, e);
	if (rc == 0 && path && (!*gated || d->mirror_gated))
		rc = hf_head_file(&c, m->org, m->name, commit, path, cancel, meta, e);
	if (rc == 0 && !path)
		rc = hf_list_tree(&c, m->org, m->name, commit, cancel, tree, e);
	int why = http_upstream_end(rq, cancel);
	hf_client_cleanup(&c);
	if (rc < 0 && why == ERR_TIMEOUT)
		rc =
		    err_set(e, ERR_TIMEOUT, "the upstream Hub did not answer about %s within %ld s",
			    m->repo, d->sources_deadline_ms / 1000);
	return rc;
}

/*
 * A repo or revision the catalog lacks, listed from the upstream Hub into
 * m->r instead (files sorted by path), so that a client can list what a
 * resolve then pulls through. 0, or rq has been answered (1).
 */
int mirror_open_upstream(struct http_req *rq, struct mirror_req *m)
{
	struct err e;
	err_clear(&e);
	struct hf_listing tree;
	hf_listing_init(&tree);
	char commit[41] = "";
	int gated = 0;
	int rc = mirror_upstream(rq, m, NULL, commit, &gated, NULL, &tree, &e);
	if (rc < 0) {
		hf_listing_cleanup(&tree);
		mirror_pull_error(rq, m, &e, commit);
		return 1;
	}
	catalog_repo_cleanup(&m->r);
	m->upstream = 1;
	m->r.repo = xstrdup(m->repo);
	char dir[LAYOUT_REPO_DIR_MAX] = "";
	layout_repo_dir_hf(m->org, m->name, dir, sizeof dir, NULL);
	m->r.repo_dir = xstrdup(dir);
	memcpy(m->r.commit, commit, sizeof m->r.commit);
	m->r.gated = gated;
	m->r.updated_ms = wall_ms();
	m->r.files = tree.n ? xcalloc(tree.n, sizeof *m->r.files) : NULL;
	for (size_t i = 0; i < tree.n; i++) {
		struct catalog_file *f = &m->r.files[m->r.nfiles++];
		f->path = xstrdup(tree.files[i].path);
		f->size = tree.files[i].size;
		memcpy(f->sha256, tree.files[i].sha256, sizeof f->sha256);
		if (!f->sha256[0])
			snprintf(f->blob, sizeof f->blob, "%.40s", tree.files[i].oid);
	}
	hf_listing_cleanup(&tree);
	qsort(m->r.files, m->r.nfiles, sizeof *m->r.files, mirror_file_cmp);
	return 0;
}

/*
 * Pull-through: a file the catalog lacks is asked of the upstream Hub
 * (commit, gating, the file's facts), downloaded by an ordinary job (seen
 * in GET /v1/jobs, cancellable) and streamed to the client from the
 * partial blob as the job's done ranges reach the catalog, then from the
 * published blob. A mirror_stream follows one such answer; libmicrohttpd's
 * response owns it.
 */
struct mirror_stream {
	struct daemon *d;
	char job[JOB_ID_MAX];
	char repo[2 * CAP_REPO_ID_LEN + 2];
	char repo_dir[LAYOUT_REPO_DIR_MAX];
	char commit[41];
	char path[CAP_REPO_PATH_LEN + 1];
	char sha256[SHA256_HEX_LEN + 1]; /* "" for a small file: named only once published */
	uint64_t first, len, size;
	int fd;
	int complete;	     /* fd is the published blob: every byte is there */
	uint64_t done_end;   /* a done range of the partial reaches this far from the read offset */
	int64_t last_ms;     /* when bytes last came */
	struct catalog *cat; /* this connection's own, opened on first need */
};

static void mirror_stream_free(void *cls)
{
	struct mirror_stream *s = cls;
	if (s->fd >= 0)
		close(s->fd);
	catalog_close(s->cat);
	free(s);
}

/* The job's state name into buf ("" when it is gone). */
static void mirror_job_state(struct mirror_stream *s, char *buf, size_t size)
{
	json_t *o = NULL;
	buf[0] = 0;
	const char *st = NULL;
	if (job_get_json(s->d->jobs, s->job, &o, NULL) == 0)
		st = json_string_value(json_object_get(o, "state"));
	snprintf(buf, size, "%s", st ? st : "");
	json_decref(o);
}

/* Opens the published file of the model the job made, from the catalog. 0 or an error. */
static int mirror_stream_published(struct mirror_stream *s, struct err *e)
{
	struct catalog_repo r;
	int rc = catalog_repo_snapshot(s->cat, s->repo, s->commit, &r, e);
	if (rc)
		return rc;
	const struct catalog_file *f = mirror_find(&r, s->path);
	if (!f || f->size != s->size)
		rc = err_set(e, ERR_NOT_FOUND, "%s is not what the job published", s->path);
	int fd = -1;
	if (rc == 0)
		rc = layout_blob_open(s->d->layout, r.repo_dir, catalog_file_blob(f), &fd, e);
	catalog_repo_cleanup(&r);
	if (rc)
		return rc;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = fd;
	s->complete = 1;
	return 0;
}

/*
 * Learns how far the bytes at off are there: the published blob, else the
 * done range of the partial's resume state holding off. 1 when some are,
 * 0 when none yet, negative when the job ended without them.
 */
static int mirror_stream_poll(struct mirror_stream *s, uint64_t off)
{
	struct err e;
	err_clear(&e);
	if (!s->cat && catalog_open(s->d->catalog_path, &s->cat, &e) < 0)
		return e.code;
	char state[32];
	mirror_job_state(s, state, sizeof state);
	if (strcmp(state, "succeeded") == 0)
		return mirror_stream_published(s, &e) < 0 ? e.code : 1;
	if (strcmp(state, "queued") != 0 && strcmp(state, "running") != 0)
		return ERR_CANCELLED;
	if (!s->sha256[0])
		return 0;
	if (s->fd < 0 &&
	    layout_partial_open_read(s->d->layout, s->repo_dir, s->sha256, &s->fd, NULL) < 0)
		return 0;
	uint64_t total = 0;
	struct byte_range *rs = NULL;
	size_t n = 0;
	if (catalog_partial_load(s->cat, s->repo_dir, s->sha256, &total, &rs, &n, NULL) < 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (rs[i].start <= off && off < rs[i].end)
			s->done_end = rs[i].end;
	free(rs);
	return s->done_end > off;
}

static ssize_t mirror_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct mirror_stream *s = cls;
	uint64_t off = s->first + pos;
	if (pos >= s->len)
		return MHD_CONTENT_READER_END_OF_STREAM;
	while (!s->complete && s->done_end <= off) {
		if (atomic_load(&s->d->stopping))
			return MHD_CONTENT_READER_END_WITH_ERROR;
		int rc = mirror_stream_poll(s, off);
		if (rc < 0) {
			log_warn("mirror: %s of %s: pull-through job %s ended before byte %llu",
				 s->path, s->repo, s->job, (unsigned long long)off);
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		if (rc == 0 && now_ms() - s->last_ms > CAP_MIRROR_PULL_IDLE_MS) {
			log_warn("mirror: %s of %s: no bytes for %d s from job %s", s->path,
				 s->repo, CAP_MIRROR_PULL_IDLE_MS / 1000, s->job);
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		if (rc == 0)
			sleep_ms(MIRROR_PULL_POLL_MS);
	}
	uint64_t end = s->complete ? s->first + s->len : s->done_end;
	if (end > s->first + s->len)
		end = s->first + s->len;
	size_t want = end - off < max ? (size_t)(end - off) : max;
	ssize_t n = pread(s->fd, buf, want, (off_t)off);
	if (n <= 0)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	s->last_ms = now_ms();
	return n;
}

/* Submits the job that downloads path of m's repo at the revision asked. */
static int mirror_pull_submit(struct http_req *rq, const struct mirror_req *m, const char *path,
			      char id[JOB_ID_MAX], struct err *e)
{
	char *ref = xasprintf("hf:%s:%s@%s", m->repo, path, m->rev);
	json_t *o = json_pack("{s:s,s:s}", "operation", "model_download", "model", ref);
	char *body = o ? json_dump_compact(o) : NULL;
	json_decref(o);
	int rc = body ? job_submit_json(rq->d->jobs, body, strlen(body), id, e)
		      : err_set(e, ERR_INVALID, "path '%.200s' cannot be asked for", path);
	if (rc == 0)
		log_info("mirror: %s %s of %s@%s pulled through job %s", rq->method, path, m->repo,
			 m->rev, id);
	free(body);
	free(ref);
	return rc;
}

int mirror_pull(struct http_req *rq, struct mirror_req *m, const char *path)
{
	struct daemon *d = rq->d;
	struct hf_file_meta meta;
	struct err e;
	err_clear(&e);
	memset(&meta, 0, sizeof meta);
	char commit[41] = "", id[JOB_ID_MAX] = "";
	int gated = 0;
	if (path_check_repo(path, strlen(path), &e) < 0)
		return mirror_hub_error(rq, MHD_HTTP_NOT_FOUND, "EntryNotFound", NULL, "%s",
					err_msg(&e));
	int rc = mirror_upstream(rq, m, path, commit, &gated, &meta, NULL, &e);
	if (rc < 0)
		return mirror_pull_error(rq, m, &e, commit);
	if (gated && !d->mirror_gated)
		return mirror_hub_error(rq, MHD_HTTP_FORBIDDEN, "GatedRepo", commit,
					"Access to model %s is restricted: its files are served "
					"only by a hive started with --mirror-gated",
					m->repo);
	int lfs = strlen(meta.etag) == SHA256_HEX_LEN;
	uint64_t first = 0, last = meta.size ? meta.size - 1 : 0;
	int ranged = mirror_if_range_ok(rq, meta.etag)
			 ? mirror_range(http_header(rq, "Range"), meta.size, &first, &last)
			 : 0;
	if (ranged < 0)
		return mirror_reply_unsatisfiable(rq, meta.size);
	if (mirror_pull_submit(rq, m, path, id, &e) < 0)
		return http_reply_err(rq, &e);
	struct mirror_stream *s = xcalloc(1, sizeof *s);
	s->d = d;
	s->fd = -1;
	snprintf(s->job, sizeof s->job, "%s", id);
	snprintf(s->repo, sizeof s->repo, "%s", m->repo);
	layout_repo_dir_hf(m->org, m->name, s->repo_dir, sizeof s->repo_dir, NULL);
	snprintf(s->commit, sizeof s->commit, "%s", commit);
	snprintf(s->path, sizeof s->path, "%s", path);
	if (lfs)
		snprintf(s->sha256, sizeof s->sha256, "%s", meta.etag);
	s->size = meta.size;
	s->first = first;
	s->len = meta.size ? last - first + 1 : 0;
	s->last_ms = now_ms();
	struct MHD_Response *resp = MHD_create_response_from_callback(
	    s->len, MIRROR_PULL_BLOCK, mirror_stream_read, s, mirror_stream_free);
	if (!resp) {
		mirror_stream_free(s);
		return MHD_NO;
	}
	char etag[SHA256_HEX_LEN + 3], size[32], cr[96];
	snprintf(etag, sizeof etag, "\"%s\"", meta.etag);
	snprintf(size, sizeof size, "%llu", (unsigned long long)meta.size);
	MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
	MHD_add_response_header(resp, "Accept-Ranges", "bytes");
	MHD_add_response_header(resp, "ETag", etag);
	MHD_add_response_header(resp, "X-Repo-Commit", commit);
	MHD_add_response_header(resp, "X-Linked-Size", size);
	MHD_add_response_header(resp, "X-Rbee-Job", id);
	if (lfs)
		MHD_add_response_header(resp, "X-Linked-Etag", etag);
	if (ranged) {
		snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)first,
			 (unsigned long long)last, (unsigned long long)meta.size);
		MHD_add_response_header(resp, "Content-Range", cr);
	}
	return http_queue(rq, ranged ? MHD_HTTP_PARTIAL_CONTENT : MHD_HTTP_OK, resp);
}
