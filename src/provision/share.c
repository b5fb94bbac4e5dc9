#include "provision/share.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/cancel.h"
#include "core/log.h"
#include "core/sha256.h"
#include "core/util.h"
#include "fetch/s3.h"
#include "provision/oci.h"
#include "provision/vendor.h"
#include "store/catalog.h"
#include "store/layout.h"
#include "store/store.h"

/*
 * How long the blob lock may be busy before the wait is narrated: a transfer
 * of this process cancelled a moment ago may still be saving its ranges.
 */
#define PROV_LOCK_QUIET_MS 250

/*
 * Transfers of one blob at most: the blob store's, the source's, and the
 * source's again once a registry token that expired was renewed.
 */
#define PROV_BLOB_TRIES 3

/* Tries of a connection to the blob store without progress before the CDN takes over. */
#define PROV_STORE_RETRIES 2

struct prov_blob {
	struct prov_share *sh;
	struct prov_blob *next; /* in the table while not done */
	char key[80];
	char repo_dir[256];
	char sha256[65];   /* expected; the actual one once done */
	char git_sha1[41]; /* expected git blob id of a file git stores itself; "" if none */
	char name[65];	   /* blobs/<name>.partial: the sha256, or a hash of the URL */
	uint64_t size;
	int size_known;
	char *url;
	int url_is_hub;
	char *auth_token, *auth_origin; /* another server's token and its origin; NULL: none */
	int auth_basic;			/* auth_token is user:password for HTTP Basic */
	int url_is_store;
	enum prov_refresh refresh;	  /* who hands out a fresh URL after a 403 */
	char *org, *repo, *commit, *path; /* a Hub file's; NULL otherwise */
	char *registry_name;		  /* a registry blob's repository; NULL otherwise */
	char log_id[64];
	int from_peers;
	struct cancel_token *cancel; /* the transfer's own token */
	struct xfer *x;
	struct xfer *x_prev[PROV_BLOB_TRIES - 1]; /* the earlier tries' */
	size_t n_prev;
	enum prov_source source;
	/* guarded by sh->mu */
	char *lock_path;  /* the blob's lock, once another writer was found holding it */
	int lock_waiting; /* waiting for that lock now */
	int refs;
	int waiters;
	int done;
	int rc;
	int adopted;
	struct err err;
};

struct prov_share {
	struct prov_ctx *ctx;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* an entry got done, or a thread ended */
	struct prov_blob *head;
	int threads;
};

int prov_share_new(struct prov_ctx *ctx, struct prov_share **out)
{
	struct prov_share *sh = xcalloc(1, sizeof(*sh));
	sh->ctx = ctx;
	pthread_mutex_init(&sh->mu, NULL);
	cond_init_monotonic(&sh->cv);
	*out = sh;
	return 0;
}

void prov_share_free(struct prov_share *sh)
{
	if (!sh)
		return;
	/*
	 * The tokens are fired outside sh->mu: firing runs the engine's wake-up
	 * (curl_multi_wakeup) on this thread. A reference keeps each token alive
	 * once its entry may be freed by its thread.
	 */
	size_t n = 0;
	pthread_mutex_lock(&sh->mu);
	for (struct prov_blob *b = sh->head; b; b = b->next)
		n++;
	struct cancel_token **tokens = xcalloc(n ? n : 1, sizeof(*tokens));
	size_t k = 0;
	for (struct prov_blob *b = sh->head; b; b = b->next)
		tokens[k++] = cancel_ref(b->cancel);
	pthread_mutex_unlock(&sh->mu);
	for (size_t i = 0; i < n; i++) {
		cancel_fire(tokens[i]);
		cancel_unref(tokens[i]);
	}
	free(tokens);
	pthread_mutex_lock(&sh->mu);
	while (sh->threads > 0)
		pthread_cond_wait(&sh->cv, &sh->mu);
	pthread_mutex_unlock(&sh->mu);
	pthread_cond_destroy(&sh->cv);
	pthread_mutex_destroy(&sh->mu);
	free(sh);
}

static void blob_free(struct prov_blob *b)
{
	xfer_free(b->x);
	for (size_t i = 0; i < b->n_prev; i++)
		xfer_free(b->x_prev[i]);
	cancel_unref(b->cancel);
	free(b->url);
	if (b->auth_token)
		explicit_bzero(b->auth_token, strlen(b->auth_token));
	free(b->auth_token);
	free(b->auth_origin);
	free(b->org);
	free(b->repo);
	free(b->commit);
	free(b->path);
	free(b->registry_name);
	free(b->lock_path);
	free(b);
}

/* Drops one reference; call with sh->mu held. Returns 1 if the caller must free b. */
static int blob_unref_locked(struct prov_blob *b)
{
	assert(b->refs > 0);
	return --b->refs == 0;
}

/*
 * Resume state of the partial, kept in the catalog through the blob's
 * connection, and the synced saves through one of their own: the engine
 * makes them on another thread while the fresh saves go on (xfer.h), and a
 * connection serves one thread at a time (catalog.h).
 */
struct share_resume {
	struct catalog *cat;
	struct catalog *sync_cat; /* opened at the first synced save */
	const char *db_path;
	const char *repo_dir;
	const char *name;
};

/* The stored done ranges of a partial of total bytes; ERR_NOT_FOUND when none fit. */
static int resume_state(struct catalog *cat, const char *repo_dir, const char *name, uint64_t total,
			struct byte_range **cr, size_t *n)
{
	uint64_t stored_total = 0;
	*cr = NULL;
	*n = 0;
	int rc = catalog_partial_load(cat, repo_dir, name, &stored_total, cr, n, NULL);
	if (rc)
		return rc;
	if (stored_total != total) {
		/* The state belongs to another size of this content: it cannot be trusted. */
		free(*cr);
		*cr = NULL;
		*n = 0;
		return ERR_NOT_FOUND;
	}
	return 0;
}

uint64_t prov_share_resumed(struct catalog *cat, const char *repo_dir, const char *name,
			    uint64_t total)
{
	struct byte_range *cr;
	size_t n;
	uint64_t done = 0;
	if (!cat || !name[0] || !total || resume_state(cat, repo_dir, name, total, &cr, &n))
		return 0;
	for (size_t i = 0; i < n; i++)
		done += cr[i].end - cr[i].start;
	free(cr);
	return done;
}

static int resume_load(void *arg, const char *key, uint64_t total, struct byte_range **ranges,
		       size_t *n)
{
	struct share_resume *r = arg;
	(void)key;
	return resume_state(r->cat, r->repo_dir, r->name, total, ranges, n);
}

/* The two saves of the catalog: synced, then fresh (xfer_resume_ops). */
typedef int (*partial_save_fn)(struct catalog *c, const char *repo_dir, const char *sha256,
			       uint64_t total_size, const struct byte_range *ranges, size_t n,
			       struct err *e);
static const partial_save_fn partial_saves[2] = {catalog_partial_save, catalog_partial_save_fresh};

static int resume_save_kind(void *arg, uint64_t total, const struct byte_range *rs, size_t n,
			    int fresh)
{
	struct share_resume *r = arg;
	struct err e = {0};
	int rc = 0;
	if (!fresh && !r->sync_cat)
		rc = catalog_open(r->db_path, &r->sync_cat, &e);
	if (!rc)
		rc = partial_saves[fresh](fresh ? r->cat : r->sync_cat, r->repo_dir, r->name, total,
					  rs, n, &e);
	if (rc)
		log_warn("saving resume state of %s/%s: %s", r->repo_dir, r->name, err_msg(&e));
	return rc;
}

static int resume_save(void *arg, const char *key, uint64_t total, const struct byte_range *rs,
		       size_t n)
{
	(void)key;
	return resume_save_kind(arg, total, rs, n, 0);
}

static int resume_save_fresh(void *arg, const char *key, uint64_t total,
			     const struct byte_range *rs, size_t n)
{
	(void)key;
	return resume_save_kind(arg, total, rs, n, 1);
}

static void resume_discard(void *arg, const char *key)
{
	struct share_resume *r = arg;
	(void)key;
	catalog_partial_delete(r->cat, r->repo_dir, r->name, NULL);
}

/* After a 403 from the CDN: HEAD /resolve again for a freshly signed Location. */
static int refresh_hf(void *arg, char *url_out, size_t size, struct err *e)
{
	struct prov_blob *b = arg;
	struct hf_file_meta m;
	int rc =
	    hf_head_file(&b->sh->ctx->hf, b->org, b->repo, b->commit, b->path, b->cancel, &m, e);
	if (rc)
		return rc;
	if (strcmp(m.etag, b->sha256) != 0)
		return err_set(e, ERR_DIGEST, "'%s' changed on the Hub during the download",
			       b->path);
	return fmt_buf(url_out, size, "%s", m.url) ? err_set(e, ERR_TOO_LARGE, "URL too long") : 0;
}

/*
 * After a 403 from the content host: ask the registry for the blob again,
 * for a freshly signed Location. The registry's bearer token of the pull
 * goes along; when it expired, the registry's 401 runs the challenge once
 * and the new token is kept for the blob's later requests.
 */
static int refresh_registry(void *arg, char *url_out, size_t size, struct err *e)
{
	struct prov_blob *b = arg;
	struct prov_ctx *ctx = b->sh->ctx;
	struct oci_registry reg;
	int rc =
	    oci_registry_init(&reg, &ctx->hf, b->auth_origin, b->registry_name, b->registry_name,
			      ctx->registry_auth[0] ? ctx->registry_auth : NULL, b->cancel, e);
	if (rc)
		return rc;
	if (b->auth_token && !b->auth_basic)
		oci_registry_use_token(&reg, b->auth_token);
	rc = oci_blob_locate(&reg, b->sha256, url_out, size, e);
	if (rc == 0 && reg.bearer && (!b->auth_token || strcmp(reg.bearer, b->auth_token) != 0)) {
		if (b->auth_token)
			explicit_bzero(b->auth_token, strlen(b->auth_token));
		free(b->auth_token);
		b->auth_token = xstrdup(reg.bearer);
		b->auth_basic = 0;
	}
	oci_registry_cleanup(&reg);
	return rc;
}

/* One home for the rule of each source: who finds the bytes again after a 403. */
static const xfer_refresh_fn refreshers[PROV_REFRESH_KINDS] = {
    [PROV_REFRESH_NONE] = NULL,
    [PROV_REFRESH_HUB] = refresh_hf,
    [PROV_REFRESH_REGISTRY] = refresh_registry,
};

/* Where one try of a blob's bytes goes. */
struct blob_source {
	const char *url;
	const char *origin; /* NULL: url */
	const char *token;  /* bearer token, or S3 credentials with sigv4 */
	const char *sigv4;  /* S3 signing; NULL: none */
	int basic;	    /* token is user:password for HTTP Basic (a registry's) */
	int refresh;	    /* a 403 asks the blob's source for a fresh URL (refreshers[]) */
	int peers;	    /* the configured peers may be asked for it too */
	int max_retries;    /* 0: the engine's */
};

/*
 * One transfer of the blob from src into its partial, to the end; the
 * engine renames it into place. got receives the sha256 of the bytes.
 */
static int blob_fetch(struct prov_blob *b, struct catalog *cat, const struct blob_source *src,
		      char got[SHA256_HEX_LEN + 1], struct err *e)
{
	struct prov_ctx *ctx = b->sh->ctx;
	int known = b->sha256[0] != '\0';
	char dest[4096];
	int rc;
	/*
	 * The partial is opened once, relative to its blobs/ folder and without
	 * following a symlink; the engine writes, renames and removes it through
	 * these descriptors only, so a symlink swapped in under its name is never
	 * written through.
	 */
	int fd = -1, dir_fd = -1;
	char partial[LAYOUT_PARTIAL_NAME_MAX];
	layout_partial_name(b->name, partial);
	rc = layout_partial_open_dir(ctx->layout, b->repo_dir, b->name, &dir_fd, &fd, NULL, e);
	if (rc == 0)
		rc = layout_partial_path(ctx->layout, b->repo_dir, b->name, dest, sizeof(dest), e);
	struct share_resume res = {
	    .cat = cat, .db_path = ctx->db_path, .repo_dir = b->repo_dir, .name = b->name};
	struct xfer_resume_ops ops = {.load = resume_load,
				      .save = resume_save,
				      .discard = resume_discard,
				      .arg = &res,
				      .save_fresh = resume_save_fresh};
	struct xfer_request req = {
	    .url = src->url,
	    .origin = src->origin,
	    .auth_token = src->token,
	    .aws_sigv4 = src->sigv4,
	    .auth_basic = src->basic,
	    .max_retries = src->max_retries,
	    .dir_fd = dir_fd,
	    .fd = fd,
	    .name = partial,
	    .label = dest,
	    /* Named by its digest: by the expected one now, else by the one computed. */
	    .rename_to = known ? b->sha256 : NULL,
	    .rename_to_sha256 = !known,
	    .size = b->size,
	    .size_known = b->size_known,
	    .sha256 = known ? b->sha256 : NULL,
	    .git_sha1 = b->git_sha1[0] ? b->git_sha1 : NULL,
	    .resume = known && cat && b->size_known ? &ops : NULL,
	    .refresh_url = src->refresh ? refreshers[b->refresh] : NULL,
	    .refresh_arg = b,
	    .cancel = b->cancel,
	    .purge_on_cancel = 0,
	    .log_id = b->log_id[0] ? b->log_id : NULL,
	    .peers = (const char *const *)ctx->peers,
	    .n_peers = known && src->peers ? ctx->n_peers : 0,
	    .peer_rank = ctx->peer_rank,
	};
	struct xfer *x = NULL;
	if (rc == 0)
		rc = xfer_start(ctx->engine, &req, &x, e);
	/* The engine works on its own duplicates of the descriptors. */
	if (fd >= 0)
		close(fd);
	if (dir_fd >= 0)
		close(dir_fd);
	if (rc)
		return rc;
	struct xfer_progress p0;
	xfer_progress(x, &p0);
	/*
	 * An earlier try's transfer stays until the entry is freed: a job may
	 * be reading its progress now.
	 */
	pthread_mutex_lock(&b->sh->mu);
	if (b->x) {
		assert(b->n_prev < PROV_BLOB_TRIES - 1);
		b->x_prev[b->n_prev++] = b->x;
	}
	b->x = x;
	pthread_mutex_unlock(&b->sh->mu);
	xfer_wait(x, -1);
	catalog_close(res.sync_cat); /* the transfer's threads are done with it */
	rc = xfer_result(x, e, got);
	struct xfer_progress p1;
	xfer_progress(x, &p1);
	/* The last snapshot may lag the end: a finished transfer wrote every byte. */
	if (rc == 0 && b->size_known)
		p1.bytes_done = b->size;
	/*
	 * The bytes this try wrote, by who delivered them: the peers, the rest
	 * the URL's source. A failed try's count too, as they were delivered.
	 */
	uint64_t wrote = p1.bytes_done > p0.bytes_done ? p1.bytes_done - p0.bytes_done : 0;
	uint64_t peers = p1.from_peers < wrote ? p1.from_peers : wrote;
	prov_source_add(ctx, PROV_SRC_PEER, peers);
	prov_source_add(ctx, src->sigv4 ? PROV_SRC_S3 : PROV_SRC_CDN, wrote - peers);
	/* A blob is said to come from the peers when they delivered most of it. */
	if (rc == 0)
		b->source = peers > wrote - peers ? PROV_SRC_PEER
			    : src->sigv4	  ? PROV_SRC_S3
						  : PROV_SRC_CDN;
	return rc;
}

/*
 * The blob from the site's blob store: HEAD of PREFIX/blobs/<sha256>, then
 * the engine on its URL, signed. ERR_NOT_FOUND when the store lacks it (or
 * holds another size).
 */
static int blob_from_store(struct prov_blob *b, struct catalog *cat, char got[SHA256_HEX_LEN + 1],
			   struct err *e)
{
	const struct s3_store *s3 = b->sh->ctx->s3;
	char key[S3_KEY_MAX + 1], url[CAP_URL_LEN];
	uint64_t size = 0;
	int rc = s3_blob_key(s3, b->sha256, key, sizeof(key), e);
	if (rc == 0)
		rc = s3_head(s3, NULL, key, b->cancel, &size, e);
	if (rc == 0 && size != b->size)
		rc = err_set(e, ERR_NOT_FOUND, "the store's %s has %llu bytes, not %llu", key,
			     (unsigned long long)size, (unsigned long long)b->size);
	if (rc == 0)
		rc = s3_url(s3, NULL, key, NULL, 0, url, sizeof(url), e);
	if (rc)
		return rc;
	log_msg(LOG_INFO, b->log_id[0] ? b->log_id : NULL, "blob %.12s: from the blob store %s",
		b->sha256, url);
	struct blob_source src = {
	    .url = url,
	    .token = s3->userpwd,
	    .sigv4 = s3->sigv4,
	    /* A store that fails is left soon: the CDN is the way on. */
	    .max_retries = PROV_STORE_RETRIES,
	};
	return blob_fetch(b, cat, &src, got, e);
}

/*
 * A registry token may expire during a long pull, and the registry then
 * answers a blob request with 401: the registry is asked for the blob
 * once more (its challenge renews the token), and the transfer goes on
 * from the partial at the location it gives.
 */
static int blob_from_registry_again(struct prov_blob *b, struct catalog *cat,
				    char got[SHA256_HEX_LEN + 1], struct err *e)
{
	char url[CAP_URL_LEN];
	struct err re = {0};
	log_msg(LOG_INFO, b->log_id[0] ? b->log_id : NULL,
		"blob %.12s: %s; asking the registry again", b->sha256, err_msg(e));
	int rc = refresh_registry(b, url, sizeof(url), &re);
	if (rc)
		return err_set(e, rc, "%s", err_msg(&re));
	err_clear(e);
	struct blob_source src = {
	    .url = url,
	    .origin = b->auth_origin,
	    .token = b->auth_token,
	    .basic = b->auth_basic,
	    .refresh = 1,
	};
	return blob_fetch(b, cat, &src, got, e);
}

/* The work of one entry: lock, adopt or transfer, commit. Fills b->rc / b->err. */
static int blob_run(struct prov_blob *b, struct err *e)
{
	struct prov_ctx *ctx = b->sh->ctx;
	struct catalog *cat = NULL;
	int lock_fd = -1;
	int known = b->sha256[0] != '\0';
	int rc = layout_blob_lock(ctx->layout, b->repo_dir, b->name, PROV_LOCK_QUIET_MS, b->cancel,
				  &lock_fd, e);
	if (rc == ERR_TIMEOUT) {
		/* Someone else writes this blob (huggingface_hub, another daemon): say so, then
		 * wait. */
		char *path = xasprintf("%s/.locks/%s/%s.lock", layout_root(ctx->layout),
				       b->repo_dir, b->name);
		err_clear(e);
		pthread_mutex_lock(&b->sh->mu);
		free(b->lock_path);
		b->lock_path = path;
		b->lock_waiting = 1;
		pthread_mutex_unlock(&b->sh->mu);
		rc =
		    layout_blob_lock(ctx->layout, b->repo_dir, b->name, -1, b->cancel, &lock_fd, e);
		pthread_mutex_lock(&b->sh->mu);
		b->lock_waiting = 0;
		pthread_mutex_unlock(&b->sh->mu);
	}
	if (rc)
		return rc;
	if (catalog_open(ctx->db_path, &cat, NULL))
		cat = NULL;
	if (known) {
		char hint[256] = "";
		enum layout_adopt how = LAYOUT_ADOPT_NONE;
		if (cat && catalog_blob_where(cat, b->sha256, hint, sizeof(hint), NULL))
			hint[0] = '\0';
		rc = layout_adopt_blob(ctx->layout, b->repo_dir, b->sha256, b->size,
				       hint[0] ? hint : NULL, &how, e);
		if (rc)
			goto out;
		if (how != LAYOUT_ADOPT_NONE && how != LAYOUT_ADOPT_PRESENT)
			prov_blob_made(cat, ctx->layout, b->repo_dir, b->sha256,
				       how == LAYOUT_ADOPT_COPIED);
		/*
		 * A blob found in the cache is hashed once before it is trusted; a
		 * damaged one is fetched again, and the commit's rename replaces it.
		 */
		if (how != LAYOUT_ADOPT_NONE && cat) {
			char sha[65];
			struct err sub = {0};
			rc = store_blob_check(cat, ctx->layout, b->repo_dir, b->sha256, b->sha256,
					      NULL, b->size, 0,
					      how == LAYOUT_ADOPT_PRESENT && ctx->shared_cache,
					      b->cancel, sha, NULL, &sub);
			if (rc == ERR_DIGEST || rc == ERR_NOT_FOUND) {
				log_warn("%s; fetching it again", err_msg(&sub));
				how = LAYOUT_ADOPT_NONE;
				rc = 0;
			} else if (rc) {
				err_set(e, rc, "%s", err_msg(&sub));
				goto out;
			}
		}
		if (how != LAYOUT_ADOPT_NONE) {
			log_info("blob %.12s of %s: reused from the cache (%s)", b->sha256,
				 b->repo_dir,
				 how == LAYOUT_ADOPT_PRESENT  ? "present"
				 : how == LAYOUT_ADOPT_LINKED ? "hard link"
							      : "copy");
			b->adopted = 1;
			goto out;
		}
	} else {
		/* An unpinned URL: its content may have changed since a partial was left. */
		layout_partial_remove(ctx->layout, b->repo_dir, b->name, NULL);
	}
	/*
	 * A site's blob store first, when it holds this content; on any error
	 * there (absent, down, refused, corrupt) the CDN, resuming the bytes
	 * the store gave when they were right.
	 */
	char got[SHA256_HEX_LEN + 1] = "";
	rc = -1;
	if (known && b->size_known && prov_blob_store_on(ctx)) {
		struct err se = {0};
		rc = blob_from_store(b, cat, got, &se);
		if (rc == ERR_CANCELLED) {
			*e = se;
			goto out;
		}
		if (rc && rc != ERR_NOT_FOUND)
			log_msg(LOG_WARN, b->log_id[0] ? b->log_id : NULL,
				"blob %.12s: the blob store failed (%s); fetching it from %s",
				b->sha256, err_msg(&se), b->url);
	}
	if (rc) {
		struct hf_token tok = {0};
		/* Looked up now, so a login since the daemon started counts; the engine keeps a
		 * copy. */
		if (b->url_is_hub)
			hf_token_get(&ctx->hf, &tok);
		struct blob_source src = {
		    .url = b->url,
		    /* A Hub file's download starts at the endpoint: its token, and the bound on
		       redirects. */
		    .origin = b->org ? ctx->hf.endpoint : b->auth_origin,
		    .token = tok.from ? tok.value : b->auth_token,
		    .basic = !tok.from && b->auth_basic,
		    .refresh = 1,
		    .peers = b->from_peers,
		};
		/* An s3:// ref's object: the store's credentials, to the endpoint only. */
		if (b->url_is_store && ctx->s3) {
			src.token = ctx->s3->userpwd;
			src.sigv4 = ctx->s3->sigv4;
		}
		rc = blob_fetch(b, cat, &src, got, e);
		hf_token_clear(&tok);
		if (rc == ERR_UNAUTHORIZED && b->refresh == PROV_REFRESH_REGISTRY)
			rc = blob_from_registry_again(b, cat, got, e);
		if (rc)
			goto out;
	}
	if (!known)
		snprintf(b->sha256, sizeof(b->sha256), "%s", got);
	/* The engine hashed the bytes as it wrote them and renamed the blob into place. */
	prov_blob_made(cat, ctx->layout, b->repo_dir, b->sha256, 1);
	if (cat)
		catalog_blob_set_source(cat, b->repo_dir, b->sha256, prov_source_name(b->source),
					NULL);
out:
	/*
	 * The engine keeps the full range saved when it does not rename, and a
	 * crash after a commit leaves the state behind too: once the blob is in
	 * place (committed or adopted), its resume state is of no use.
	 */
	if (rc == 0 && known && cat)
		catalog_partial_delete(cat, b->repo_dir, b->name, NULL);
	catalog_close(cat);
	if (lock_fd >= 0)
		layout_blob_unlock(lock_fd);
	return rc;
}

static void *blob_thread(void *arg)
{
	struct prov_blob *b = arg;
	struct prov_share *sh = b->sh;
	struct err e = {0};
	int rc = blob_run(b, &e);
	pthread_mutex_lock(&sh->mu);
	b->rc = rc;
	b->err = e;
	if (rc && !e.msg[0])
		err_set(&b->err, rc, "%s", err_text(rc));
	b->done = 1;
	for (struct prov_blob **pp = &sh->head; *pp; pp = &(*pp)->next) {
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	}
	int do_free = blob_unref_locked(b);
	sh->threads--;
	pthread_cond_broadcast(&sh->cv);
	pthread_mutex_unlock(&sh->mu);
	if (do_free)
		blob_free(b);
	return NULL;
}

static void blob_key(const struct prov_blob_req *req, char *key, size_t size, char name[65])
{
	if (req->sha256 && req->sha256[0]) {
		snprintf(key, size, "%s", req->sha256);
		snprintf(name, 65, "%s", req->sha256);
		return;
	}
	struct sha256 h = {0};
	sha256_init(&h);
	sha256_update(&h, req->url, strlen(req->url));
	sha256_final_hex(&h, name);
	sha256_cleanup(&h);
	snprintf(key, size, "u:%s", name);
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

int prov_share_join(struct prov_share *sh, const struct prov_blob_req *req, struct prov_blob **out,
		    int *started, struct err *e)
{
	char key[80], name[65];
	blob_key(req, key, sizeof(key), name);
	if (started)
		*started = 0;
	pthread_mutex_lock(&sh->mu);
	for (struct prov_blob *b = sh->head; b; b = b->next) {
		/*
		 * An entry everyone left is being cancelled (its token may fire a
		 * moment after the last leaver released sh->mu): start afresh.
		 */
		if (strcmp(b->key, key) == 0 && !b->done && b->waiters > 0 &&
		    !cancel_is_set(b->cancel)) {
			assert(b->refs > b->waiters);
			b->refs++;
			b->waiters++;
			pthread_mutex_unlock(&sh->mu);
			*out = b;
			return 0;
		}
	}
	struct prov_blob *b = xcalloc(1, sizeof(*b));
	b->sh = sh;
	snprintf(b->key, sizeof(b->key), "%s", key);
	snprintf(b->name, sizeof(b->name), "%s", name);
	snprintf(b->repo_dir, sizeof(b->repo_dir), "%s", req->repo_dir);
	snprintf(b->sha256, sizeof(b->sha256), "%s", req->sha256 ? req->sha256 : "");
	snprintf(b->git_sha1, sizeof(b->git_sha1), "%s", req->git_sha1 ? req->git_sha1 : "");
	b->size = req->size;
	b->size_known = req->size_known;
	b->url = xstrdup(req->url);
	b->url_is_hub = req->url_is_hub;
	b->auth_token = dup_or_null(req->auth_token);
	b->auth_origin = dup_or_null(req->auth_origin);
	b->auth_basic = req->auth_basic;
	b->url_is_store = req->url_is_store;
	b->org = dup_or_null(req->org);
	b->repo = dup_or_null(req->repo);
	b->commit = dup_or_null(req->commit);
	b->path = dup_or_null(req->path);
	b->refresh = req->refresh;
	b->registry_name = dup_or_null(req->registry_name);
	snprintf(b->log_id, sizeof(b->log_id), "%s", req->log_id ? req->log_id : "");
	b->from_peers = req->from_peers;
	b->cancel = cancel_new();
	b->refs = 2; /* the thread and this caller */
	b->waiters = 1;
	b->next = sh->head;
	sh->head = b;
	sh->threads++;
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int prc = pthread_create(&t, &attr, blob_thread, b);
	pthread_attr_destroy(&attr);
	if (prc != 0) {
		sh->head = b->next;
		sh->threads--;
		pthread_mutex_unlock(&sh->mu);
		blob_free(b);
		return err_set(e, ERR_IO, "cannot start a transfer thread");
	}
	pthread_mutex_unlock(&sh->mu);
	if (started)
		*started = 1;
	*out = b;
	return 0;
}

int prov_share_wait(struct prov_blob *b, long timeout_ms)
{
	struct prov_share *sh = b->sh;
	struct timespec ts;
	deadline_after_ms(&ts, timeout_ms);
	pthread_mutex_lock(&sh->mu);
	while (!b->done) {
		if (pthread_cond_timedwait(&sh->cv, &sh->mu, &ts) != 0)
			break;
	}
	int done = b->done;
	pthread_mutex_unlock(&sh->mu);
	return done;
}

int prov_share_progress(struct prov_blob *b, struct xfer_progress *p)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_lock(&b->sh->mu);
	struct xfer *x = b->x;
	int adopted = b->adopted, done = b->done;
	pthread_mutex_unlock(&b->sh->mu);
	/* x stays valid while the caller holds its reference. */
	if (x)
		xfer_progress(x, p);
	else if (adopted || done)
		p->bytes_done = p->total = b->size;
	else
		return 0;
	return 1;
}

int prov_share_lock_wait(struct prov_blob *b, char *buf, size_t size)
{
	pthread_mutex_lock(&b->sh->mu);
	int waiting = b->lock_waiting && b->lock_path;
	if (waiting)
		snprintf(buf, size, "%s", b->lock_path);
	pthread_mutex_unlock(&b->sh->mu);
	return waiting;
}

int prov_share_result(struct prov_blob *b, char sha256_out[65], char repo_dir_out[256],
		      int *adopted, struct err *e)
{
	pthread_mutex_lock(&b->sh->mu);
	int rc = b->done ? b->rc : ERR_CONFLICT;
	if (rc && e)
		*e = b->err;
	if (rc == 0) {
		memcpy(sha256_out, b->sha256, 65);
		memcpy(repo_dir_out, b->repo_dir, 256);
		if (adopted)
			*adopted = b->adopted;
	}
	pthread_mutex_unlock(&b->sh->mu);
	return rc;
}

enum prov_source prov_share_source(struct prov_blob *b)
{
	pthread_mutex_lock(&b->sh->mu);
	enum prov_source s = b->done && !b->adopted ? b->source : PROV_SRC_CACHE;
	pthread_mutex_unlock(&b->sh->mu);
	return s;
}

void prov_share_leave(struct prov_blob *b)
{
	if (!b)
		return;
	struct prov_share *sh = b->sh;
	struct cancel_token *fire = NULL;
	pthread_mutex_lock(&sh->mu);
	assert(b->waiters > 0 && b->waiters <= b->refs);
	/* The last job to leave cancels; the token is fired once sh->mu is released. */
	if (--b->waiters == 0 && !b->done)
		fire = cancel_ref(b->cancel);
	int do_free = blob_unref_locked(b);
	pthread_mutex_unlock(&sh->mu);
	if (fire) {
		cancel_fire(fire);
		cancel_unref(fire);
	}
	if (do_free)
		blob_free(b);
}
