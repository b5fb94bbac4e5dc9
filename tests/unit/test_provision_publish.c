/*
 * Publishing a plan (provision/publish.c): its files are fetched through
 * the shared-transfer table from a server on loopback in this process,
 * checked and stored as blobs; then linked into the snapshot, the ref
 * written, the GGUF facts read and the model recorded as available, which
 * the fast path then finds. The failures leave no model behind: a wrong
 * digest, too little space, a cancel, a blob gone or damaged before it is
 * published. Everything happens in a temporary data root.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <cmocka.h>

#include "../tools/gguf_build.h"
#include "test_listen.h"
#include "test_prov_ctx.h"
#include "test_store_tmp.h"

#include "core/cancel.h"
#include "core/err.h"
#include "core/util.h"
#include "provision/vendor.h"
#include "store/catalog.h"
#include "store/layout.h"

#define URL_DIR "urls--127.0.0.1"
#define HF_DIR "models--org--repo"
#define HF_COMMIT "0123456789abcdef0123456789abcdef01234567"
#define EVENTS_MAX 64

struct fixture {
	int lfd;
	char url[128];
	char root[256];
	struct prov_ctx ctx;
	struct catalog *cat;
	pthread_t server;
	int serving;
	atomic_int requests;
	/* What the server answers: a small GGUF model. */
	struct gguf_build body;
	char body_sha[65];
	/* What the job reported. */
	struct cancel_token *cancel;
	struct prov_events events;
	struct prov_request req;
	struct prov_job job;
	enum prov_phase phases[EVENTS_MAX];
	size_t n_phases;
	char narration[EVENTS_MAX][256];
	size_t n_narration;
};

static void on_progress(void *arg, const struct prov_progress *p)
{
	struct fixture *f = arg;
	if (f->n_phases < EVENTS_MAX &&
	    (f->n_phases == 0 || f->phases[f->n_phases - 1] != p->phase))
		f->phases[f->n_phases++] = p->phase;
}

static void on_narrate(void *arg, const char *line)
{
	struct fixture *f = arg;
	if (f->n_narration < EVENTS_MAX)
		snprintf(f->narration[f->n_narration++], sizeof(f->narration[0]), "%s", line);
}

/* 1 if a narration line starts with prefix. */
static int narrated(const struct fixture *f, const char *prefix)
{
	for (size_t i = 0; i < f->n_narration; i++)
		if (strncmp(f->narration[i], prefix, strlen(prefix)) == 0)
			return 1;
	return 0;
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	f->lfd = test_listen_loopback(f->url, sizeof(f->url));
	assert_int_equal(store_tmp_make("provision-publish", f->root, sizeof(f->root)), 0);
	test_prov_ctx_init(&f->ctx, f->root);
	f->cat = store_tmp_catalog(f->root);

	gguf_build_init(&f->body, 3, 0);
	gguf_build_kv_str(&f->body, "general.architecture", "llama");
	gguf_build_kv_str(&f->body, "general.name", "Tiny Test");
	gguf_build_finish(&f->body);
	store_tmp_sha_of_bytes(f->body.buf, f->body.len, f->body_sha);

	f->cancel = cancel_new();
	f->events = (struct prov_events){on_progress, on_narrate, f};
	f->req = (struct prov_request){
	    .ref = "test-ref", .job_id = "job-test", .cancel = f->cancel, .events = &f->events};
	f->job = (struct prov_job){.ctx = &f->ctx, .req = &f->req, .cat = f->cat};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	test_prov_ctx_cleanup(&f->ctx);
	catalog_close(f->cat);
	if (f->serving) {
		shutdown(f->lfd, SHUT_RDWR);
		pthread_join(f->server, NULL);
	}
	close(f->lfd);
	cancel_unref(f->cancel);
	gguf_build_free(&f->body);
	store_tmp_remove(f->root);
	free(f);
	return 0;
}

static void *serve_body(void *arg)
{
	struct fixture *f = arg;
	test_serve_body(f->lfd, f->body.buf, f->body.len, &f->requests);
	return NULL;
}

static void start_server(struct fixture *f)
{
	f->serving = pthread_create(&f->server, NULL, serve_body, f) == 0;
	assert_true(f->serving);
}

/* A URL model's plan, as the URL vendor makes it: one file, named by its digest when pinned. */
static void url_plan(struct fixture *f, struct prov_plan *p, const char *sha256)
{
	memset(p, 0, sizeof(*p));
	p->kind = REF_URL;
	snprintf(p->repo_dir, sizeof(p->repo_dir), URL_DIR);
	snprintf(p->repo, sizeof(p->repo), "%s", f->url);
	snprintf(p->commit, sizeof(p->commit), "%s", sha256);
	ref_catalog_id_url(sha256, p->id, sizeof(p->id));
	prov_plan_add(p, "tiny.gguf", f->body.len, 1, sha256, f->url);
}

/* A Hugging Face model's plan at HF_COMMIT on main; files are added by the test. */
static void hf_plan(struct prov_plan *p, const char *first_path)
{
	memset(p, 0, sizeof(*p));
	p->kind = REF_HF;
	snprintf(p->repo_dir, sizeof(p->repo_dir), HF_DIR);
	snprintf(p->repo, sizeof(p->repo), "org/repo");
	snprintf(p->org, sizeof(p->org), "org");
	snprintf(p->name, sizeof(p->name), "repo");
	snprintf(p->revision, sizeof(p->revision), "main");
	snprintf(p->commit, sizeof(p->commit), HF_COMMIT);
	p->write_ref = 1;
	ref_catalog_id_hf("org", "repo", first_path, "main", p->id, sizeof(p->id));
}

/* Stores data as a blob of repo_dir, as another pull left it; its sha256 into sha. */
static void put_blob(struct fixture *f, const char *repo_dir, const void *data, size_t len,
		     char sha[65])
{
	char src[512];
	snprintf(src, sizeof(src), "%s/src", f->root);
	FILE *fp = fopen(src, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	fclose(fp);
	int fd = open(src, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	uint64_t size = 0;
	enum layout_adopt how;
	struct err e = {0};
	assert_int_equal(
	    layout_import_fd(f->ctx.layout, repo_dir, fd, src, NULL, sha, &size, &how, &e), 0);
	assert_int_equal(size, len);
	close(fd);
	unlink(src);
}

static void hub_path(const struct fixture *f, char *buf, size_t size, const char *rel)
{
	snprintf(buf, size, "%s/%s", f->ctx.hub_dir, rel);
}

static int exists(const struct fixture *f, const char *rel)
{
	char path[1024];
	struct stat st;
	hub_path(f, path, sizeof(path), rel);
	return lstat(path, &st) == 0;
}

static int model_count(struct fixture *f, const char *id)
{
	struct catalog_model m = {0};
	int rc = catalog_model_get(f->cat, id, &m, NULL);
	catalog_model_cleanup(&m);
	return rc == 0;
}

static void test_fetch_and_publish(void **state)
{
	struct fixture *f = *state;
	start_server(f);
	struct prov_plan p;
	url_plan(f, &p, f->body_sha);
	struct prov_artifact out = {0};
	struct err e = {0};
	assert_int_equal(prov_fetch_http(&f->job, &p, &e), 0);
	assert_true(atomic_load(&f->requests) >= 1);
	assert_true(p.files[0].present);
	assert_int_equal(f->job.files_done, 1);
	assert_true(narrated(f, "downloading tiny.gguf (file 1 of 1"));
	assert_true(narrated(f, "verifying tiny.gguf"));

	assert_int_equal(prov_publish(&f->job, &p, &out, &e), 0);
	assert_true(narrated(f, "publishing url:"));
	assert_int_equal(f->n_phases, 3);
	assert_int_equal(f->phases[0], PROV_DOWNLOADING);
	assert_int_equal(f->phases[1], PROV_VERIFYING);
	assert_int_equal(f->phases[2], PROV_PUBLISHING);

	/* The artifact is the snapshot entry, a link to the blob with the body. */
	assert_string_equal(out.id, p.id);
	assert_int_equal(out.size, f->body.len);
	char want[1024], sha[65];
	snprintf(want, sizeof(want), "%s/" URL_DIR "/snapshots/%s/tiny.gguf", f->ctx.hub_dir,
		 f->body_sha);
	assert_string_equal(out.path, want);
	uint64_t size = 0;
	assert_int_equal(store_tmp_sha_file(out.path, sha, &size), 0);
	assert_string_equal(sha, f->body_sha);

	struct catalog_model m = {0};
	assert_int_equal(catalog_model_get(f->cat, p.id, &m, &e), 0);
	assert_int_equal(m.status, CATALOG_AVAILABLE);
	assert_int_equal(m.source, CATALOG_SRC_URL);
	assert_int_equal(m.size, f->body.len);
	assert_int_equal(m.nfiles, 1);
	assert_string_equal(m.files[0].sha256, f->body_sha);
	assert_string_equal(m.gguf.architecture, "llama");
	assert_string_equal(m.gguf.name, "Tiny Test");
	catalog_model_cleanup(&m);

	/* The fast path finds it, at any commit or at its own, not at another. */
	struct prov_artifact again = {0};
	assert_int_equal(prov_lookup_available(&f->job, p.id, NULL, &again), 1);
	assert_string_equal(again.path, out.path);
	assert_int_equal(again.size, out.size);
	assert_int_equal(prov_lookup_available(&f->job, p.id, f->body_sha, &again), 1);
	assert_int_equal(prov_lookup_available(&f->job, p.id, HF_COMMIT, &again), 0);
	assert_int_equal(prov_lookup_available(&f->job, "url:0000000000000000", NULL, &again), 0);
	prov_plan_cleanup(&p);
}

/* Without a pinned digest, the one computed while downloading names the file. */
static void test_fetch_unpinned(void **state)
{
	struct fixture *f = *state;
	start_server(f);
	struct prov_plan p;
	url_plan(f, &p, "");
	struct err e = {0};
	assert_int_equal(prov_fetch_http(&f->job, &p, &e), 0);
	assert_string_equal(p.files[0].sha256, f->body_sha);
	assert_int_equal(p.files[0].size, f->body.len);
	char rel[256];
	snprintf(rel, sizeof(rel), URL_DIR "/blobs/%s", f->body_sha);
	assert_true(exists(f, rel));
	prov_plan_cleanup(&p);
}

static void test_fetch_wrong_digest(void **state)
{
	struct fixture *f = *state;
	start_server(f);
	char other[65];
	store_tmp_sha_of("not the body", other);
	struct prov_plan p;
	url_plan(f, &p, other);
	struct err e = {0};
	assert_int_equal(prov_fetch_http(&f->job, &p, &e), ERR_DIGEST);
	assert_false(p.files[0].present);
	char rel[256];
	snprintf(rel, sizeof(rel), URL_DIR "/blobs/%s", other);
	assert_false(exists(f, rel));
	snprintf(rel, sizeof(rel), URL_DIR "/blobs/%s", f->body_sha);
	assert_false(exists(f, rel));
	assert_false(model_count(f, p.id));
	prov_plan_cleanup(&p);
}

/*
 * A model that does not fit is refused before its first byte is asked for:
 * its first file, which fits, is not fetched for nothing.
 */
static void test_fetch_no_space(void **state)
{
	struct fixture *f = *state;
	start_server(f);
	struct statvfs vfs;
	assert_int_equal(statvfs(f->ctx.hub_dir, &vfs), 0);
	char other[65];
	store_tmp_sha_of("the second file", other);
	struct prov_plan p;
	url_plan(f, &p, f->body_sha);
	prov_plan_add(&p, "second.gguf", (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize + 1, 1,
		      other, f->url);
	struct err e = {0};
	assert_int_equal(prov_fetch_http(&f->job, &p, &e), ERR_NOSPACE);
	assert_non_null(strstr(e.msg, "not enough free space"));
	assert_int_equal(f->job.files_done, 0);
	assert_int_equal(atomic_load(&f->requests), 0);
	prov_plan_cleanup(&p);
}

static void test_fetch_cancelled(void **state)
{
	struct fixture *f = *state;
	struct prov_plan p;
	url_plan(f, &p, f->body_sha);
	cancel_fire(f->cancel);
	struct err e = {0};
	assert_int_equal(prov_fetch_http(&f->job, &p, &e), ERR_CANCELLED);
	assert_int_equal(f->job.files_done, 0);
	struct pollfd q = {.fd = f->lfd, .events = POLLIN};
	assert_int_equal(poll(&q, 1, 200), 0);
	prov_plan_cleanup(&p);
}

/* A file already present is not fetched; it still counts as done. */
static void test_fetch_skips_present(void **state)
{
	struct fixture *f = *state;
	struct prov_plan p;
	url_plan(f, &p, f->body_sha);
	p.files[0].present = 1;
	struct err e = {0};
	assert_int_equal(prov_fetch_http(&f->job, &p, &e), 0);
	assert_int_equal(f->job.files_done, 1);
	assert_int_equal(f->job.bytes_before, f->body.len);
	struct pollfd q = {.fd = f->lfd, .events = POLLIN};
	assert_int_equal(poll(&q, 1, 200), 0);
	prov_plan_cleanup(&p);
}

/*
 * A Hugging Face model of two files: both are linked into the snapshot,
 * refs/main names the commit, the facts come from the GGUF even when it is
 * not the first file, and the artifact is the first file.
 */
static void test_publish_hf(void **state)
{
	struct fixture *f = *state;
	const char *readme = "# a model card\n";
	char readme_sha[65], gguf_sha[65];
	put_blob(f, HF_DIR, readme, strlen(readme), readme_sha);
	put_blob(f, HF_DIR, f->body.buf, f->body.len, gguf_sha);
	struct prov_plan p;
	hf_plan(&p, "README.md");
	prov_plan_add(&p, "README.md", strlen(readme), 1, readme_sha, NULL)->present = 1;
	prov_plan_add(&p, "sub/tiny.Q4_K_M.gguf", f->body.len, 1, gguf_sha, NULL)->present = 1;
	struct prov_artifact out = {0};
	struct err e = {0};
	assert_int_equal(prov_publish(&f->job, &p, &out, &e), 0);
	assert_true(exists(f, HF_DIR "/snapshots/" HF_COMMIT "/README.md"));
	assert_true(exists(f, HF_DIR "/snapshots/" HF_COMMIT "/sub/tiny.Q4_K_M.gguf"));
	char ref[64];
	assert_int_equal(layout_ref_read(f->ctx.layout, HF_DIR, "main", ref, sizeof(ref), &e), 0);
	assert_string_equal(ref, HF_COMMIT);
	assert_string_equal(out.id, "hf:org/repo:README.md");
	assert_int_equal(out.size, strlen(readme) + f->body.len);
	assert_non_null(strstr(out.path, "/snapshots/" HF_COMMIT "/README.md"));

	struct catalog_model m = {0};
	assert_int_equal(catalog_model_get(f->cat, "hf:org/repo:README.md", &m, &e), 0);
	assert_int_equal(m.status, CATALOG_AVAILABLE);
	assert_string_equal(m.commit, HF_COMMIT);
	assert_string_equal(m.revision, "main");
	assert_int_equal(m.nfiles, 2);
	assert_string_equal(m.files[1].path, "sub/tiny.Q4_K_M.gguf");
	assert_string_equal(m.gguf.architecture, "llama");
	catalog_model_cleanup(&m);

	/* A blob that changed since it was found right is not taken by the fast path. */
	char blob[512];
	snprintf(blob, sizeof(blob), "%s/" HF_DIR "/blobs/%s", f->ctx.hub_dir, readme_sha);
	FILE *fp = fopen(blob, "ab");
	assert_non_null(fp);
	fputs("more\n", fp);
	fclose(fp);
	assert_int_equal(prov_lookup_available(&f->job, "hf:org/repo:README.md", NULL, &out), 0);
	prov_plan_cleanup(&p);
}

/* A blob that is gone when publishing starts: a conflict, and no model. */
static void test_publish_blob_gone(void **state)
{
	struct fixture *f = *state;
	struct prov_plan p;
	hf_plan(&p, "tiny.gguf");
	prov_plan_add(&p, "tiny.gguf", f->body.len, 1, f->body_sha, NULL)->present = 1;
	struct prov_artifact out = {0};
	struct err e = {0};
	assert_int_equal(prov_publish(&f->job, &p, &out, &e), ERR_CONFLICT);
	assert_non_null(strstr(e.msg, "vanished"));
	assert_false(exists(f, HF_DIR "/snapshots/" HF_COMMIT "/tiny.gguf"));
	assert_false(exists(f, HF_DIR "/refs/main"));
	assert_false(model_count(f, p.id));
	prov_plan_cleanup(&p);
}

/* A blob whose bytes are not its name's: hashed before it is published, refused. */
static void test_publish_blob_damaged(void **state)
{
	struct fixture *f = *state;
	char sha[65], blob[512];
	put_blob(f, HF_DIR, f->body.buf, f->body.len, sha);
	snprintf(blob, sizeof(blob), "%s/" HF_DIR "/blobs/%s", f->ctx.hub_dir, sha);
	int fd = open(blob, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "XXXX", 4, 0), 4);
	close(fd);
	struct prov_plan p;
	hf_plan(&p, "tiny.gguf");
	prov_plan_add(&p, "tiny.gguf", f->body.len, 1, sha, NULL)->present = 1;
	struct prov_artifact out = {0};
	struct err e = {0};
	assert_int_equal(prov_publish(&f->job, &p, &out, &e), ERR_DIGEST);
	assert_non_null(strstr(e.msg, "pull again"));
	assert_false(exists(f, HF_DIR "/snapshots/" HF_COMMIT "/tiny.gguf"));
	assert_false(model_count(f, p.id));
	prov_plan_cleanup(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_fetch_and_publish, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_unpinned, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_wrong_digest, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_no_space, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_cancelled, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fetch_skips_present, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_publish_hf, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_publish_blob_gone, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_publish_blob_damaged, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
