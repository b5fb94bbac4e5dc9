/*
 * Transfer engine lifecycle without a server that answers: request checks,
 * cancel through the token, purge, and engine shutdown with a transfer in
 * flight. The peer is a loopback socket that listens but never replies.
 * And the partial's descriptor: a symlink swapped in under the partial's
 * name, against a small server that does answer, is never written through.
 * And the hold of bytes not yet saved, against a server faster than the saves.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <pthread.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "test_listen.h"

#include "core/cancel.h"
#include "core/curl_mem.h"
#include "core/err.h"
#include "core/util.h"
#include "fetch/xfer.h"

struct fixture {
	int lfd;
	char url[128];
	char dir[256];
	char dest[300];
	int dfd; /* the folder */
	int pfd; /* blob.partial in it */
	struct xfer_engine *eng;
};

/* A request for the fixture's partial; the caller fills in the rest. */
static struct xfer_request fixture_req(const struct fixture *f)
{
	return (struct xfer_request){.url = f->url,
				     .dir_fd = f->dfd,
				     .fd = f->pfd,
				     .name = "blob.partial",
				     .label = f->dest};
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	f->lfd = test_listen_loopback(f->url, sizeof(f->url));
	const char *base = getenv("RBEE_TEST_TMP");
	if (base)
		mkdir(base, 0755);
	snprintf(f->dir, sizeof(f->dir), "%s/fetch-engine-XXXXXX", base ? base : "/tmp");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->dest, sizeof(f->dest), "%s/blob.partial", f->dir);
	f->dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(f->dfd >= 0);
	f->pfd = openat(f->dfd, "blob.partial", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
	assert_true(f->pfd >= 0);
	struct xfer_config cfg = {.connections = 4};
	struct err e;
	assert_int_equal(xfer_engine_new(&cfg, &f->eng, &e), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	xfer_engine_free(f->eng);
	close(f->lfd);
	close(f->pfd);
	unlinkat(f->dfd, "blob.partial", 0);
	unlinkat(f->dfd, "victim", 0);
	unlinkat(f->dfd, "final", 0);
	close(f->dfd);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void test_request_checks(void **state)
{
	struct fixture *f = *state;
	struct xfer *x = NULL;
	struct err e;
	struct xfer_request req = fixture_req(f);
	req.size = 10;
	req.size_known = 1;
	req.sha256 = "ABC";
	assert_int_equal(xfer_start(f->eng, &req, &x, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "64 lowercase hex"));
	req.sha256 = NULL;
	req.url = "ftp://127.0.0.1/x";
	assert_int_equal(xfer_start(f->eng, &req, &x, &e), ERR_INVALID);
	req.url = "http://10.1.2.3/x";
	assert_int_equal(xfer_start(f->eng, &req, &x, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "https only"));
	req.url = "not a url";
	assert_int_equal(xfer_start(f->eng, &req, &x, &e), ERR_INVALID);
	/* A git blob id needs the size up front: it is hashed into the header. */
	req.url = f->url;
	req.git_sha1 = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391";
	req.size_known = 0;
	assert_int_equal(xfer_start(f->eng, &req, &x, &e), ERR_INVALID);
	req.git_sha1 = NULL;
	/* The partial comes as descriptors; a name with a folder in it is refused. */
	req.name = "../blob.partial";
	assert_int_equal(xfer_start(f->eng, &req, &x, &e), ERR_INVALID);
	req.name = "blob.partial";
	req.fd = -1;
	assert_int_equal(xfer_start(f->eng, &req, &x, &e), ERR_INVALID);
	assert_null(x);
	xfer_free(NULL);
	xfer_engine_free(NULL);
}

static void test_cancel_token_keeps_partial(void **state)
{
	struct fixture *f = *state;
	struct cancel_token *t = cancel_new();
	struct xfer *x = NULL;
	struct err e;
	struct xfer_request req = fixture_req(f);
	req.size = 1 << 20;
	req.size_known = 1;
	req.cancel = t;
	assert_int_equal(xfer_start(f->eng, &req, &x, &e), 0);
	assert_int_equal(xfer_wait(x, 100), 0); /* the peer never answers */
	int64_t t0 = now_ms();
	cancel_fire(t);
	assert_int_equal(xfer_wait(x, 5000), 1);
	assert_true(now_ms() - t0 < 1000);
	assert_int_equal(xfer_result(x, &e, NULL), ERR_CANCELLED);
	struct xfer_progress p;
	xfer_progress(x, &p);
	assert_int_equal(p.finished, 1);
	assert_int_equal(p.total, 1 << 20);
	xfer_free(x);
	cancel_unref(t);
	struct stat st;
	assert_int_equal(stat(f->dest, &st), 0); /* kept for resume, preallocated */
	assert_int_equal(st.st_size, 1 << 20);
}

static void test_cancel_purge_removes_partial(void **state)
{
	struct fixture *f = *state;
	struct xfer *x = NULL;
	struct err e;
	struct xfer_request req = fixture_req(f);
	req.size = 4096;
	req.size_known = 1;
	assert_int_equal(xfer_start(f->eng, &req, &x, &e), 0);
	assert_int_equal(xfer_result(x, &e, NULL), ERR_CONFLICT);
	xfer_cancel(x, 1);
	assert_int_equal(xfer_wait(x, 5000), 1);
	assert_int_equal(xfer_result(x, &e, NULL), ERR_CANCELLED);
	xfer_free(x);
	assert_int_equal(access(f->dest, F_OK), -1);
}

static void test_engine_free_cancels_running(void **state)
{
	struct fixture *f = *state;
	struct xfer *x = NULL;
	struct err e;
	struct xfer_request req = fixture_req(f);
	assert_int_equal(xfer_start(f->eng, &req, &x, &e), 0);
	xfer_engine_free(f->eng);
	f->eng = NULL;
	assert_int_equal(xfer_wait(x, 5000), 1);
	assert_int_equal(xfer_result(x, &e, NULL), ERR_CANCELLED);
	assert_non_null(strstr(e.msg, "shutting down"));
	xfer_free(x);
	struct xfer_config cfg = {.connections = 4};
	assert_int_equal(xfer_engine_new(&cfg, &f->eng, &e), 0);
}

/*
 * A server of one file of sv->size bytes: answers each connection once
 * (206 to a Range, else 200), then closes.
 */
#define SERVED_SIZE 65536

struct server {
	int lfd;
	int conns;
	unsigned long size;
	long writes; /* write calls it made (read after the join) */
};

static void *serve_file(void *arg)
{
	struct server *sv = arg;
	static unsigned char chunk[1 << 16];
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = (unsigned char)(i * 7);
	for (int n = 0; n < sv->conns; n++) {
		int c = accept(sv->lfd, NULL, NULL);
		if (c < 0)
			break;
		char req[4096];
		test_read_request(c, req, sizeof(req));
		unsigned long a = 0, b = sv->size - 1;
		const char *rg = strstr(req, "Range: bytes=");
		char head[256];
		if (rg && sscanf(rg, "Range: bytes=%lu-%lu", &a, &b) == 2)
			snprintf(head, sizeof(head),
				 "HTTP/1.1 206 Partial Content\r\nContent-Length: %lu\r\n"
				 "Content-Range: bytes %lu-%lu/%lu\r\nConnection: close\r\n\r\n",
				 b - a + 1, a, b, sv->size);
		else
			snprintf(head, sizeof(head),
				 "HTTP/1.1 200 OK\r\nContent-Length: %lu\r\nConnection: "
				 "close\r\n\r\n",
				 sv->size);
		int ok = write(c, head, strlen(head)) > 0;
		sv->writes++;
		for (unsigned long left = b - a + 1; ok && left > 0;) {
			size_t n1 = left < sizeof(chunk) ? (size_t)left : sizeof(chunk);
			ssize_t w = write(c, chunk, n1);
			sv->writes++;
			ok = w > 0;
			left -= ok ? (unsigned long)w : 0;
		}
		close(c);
	}
	return NULL;
}

static void test_symlink_swapped_in_is_not_written_through(void **state)
{
	struct fixture *f = *state;
	struct server sv = {.lfd = f->lfd, .conns = 1, .size = SERVED_SIZE};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, serve_file, &sv), 0);
	/* The caller has opened the partial; another user now puts a symlink in its place. */
	int v = openat(f->dfd, "victim", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	assert_true(v >= 0);
	assert_int_equal(write(v, "precious", 8), 8);
	close(v);
	assert_int_equal(unlinkat(f->dfd, "blob.partial", 0), 0);
	assert_int_equal(symlinkat("victim", f->dfd, "blob.partial"), 0);

	struct xfer *x = NULL;
	struct err e;
	struct xfer_request req = fixture_req(f);
	req.size = SERVED_SIZE;
	req.size_known = 1;
	req.rename_to = "final";
	assert_int_equal(xfer_start(f->eng, &req, &x, &e), 0);
	assert_int_equal(xfer_wait(x, 10000), 1);
	assert_int_equal(xfer_result(x, &e, NULL), ERR_CONFLICT);
	assert_non_null(strstr(e.msg, "replaced by another file"));
	xfer_free(x);
	pthread_join(t, NULL);

	char buf[32] = "";
	v = openat(f->dfd, "victim", O_RDONLY | O_CLOEXEC);
	assert_true(v >= 0);
	assert_int_equal(read(v, buf, sizeof(buf)), 8);
	close(v);
	assert_memory_equal(buf, "precious", 8);
	struct stat st;
	assert_int_equal(fstatat(f->dfd, "blob.partial", &st, AT_SYMLINK_NOFOLLOW), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(fstatat(f->dfd, "final", &st, AT_SYMLINK_NOFOLLOW), -1);
	/* The bytes went into the file the caller opened, and only there. */
	assert_int_equal(fstat(f->pfd, &st), 0);
	assert_int_equal(st.st_size, SERVED_SIZE);
}

/*
 * A server faster than the resume saves: one file of BIG_SIZE bytes,
 * answered at loopback speed, while each save takes 50 ms. The bytes
 * written but not yet saved stay within the engine's hold (four flush
 * steps), so a crash loses at most that much; without the hold they grew
 * to most of the file.
 */
#define BIG_SIZE (48u << 20)
#define BIG_FLUSH (1u << 20)

struct slow_saves {
	struct xfer *_Atomic x;
	uint64_t max_unsaved; /* written minus the ranges of the save, at each save */
	int saves;
};

static int slow_load(void *arg, const char *key, uint64_t total, struct byte_range **ranges,
		     size_t *n)
{
	(void)arg, (void)key, (void)total;
	*ranges = NULL;
	*n = 0;
	return 0;
}

/* A save of 50 ms that notes how far the written bytes are beyond its ranges, before or after. */
static int slow_save_noting(struct slow_saves *s, const struct byte_range *r, size_t n, int after)
{
	uint64_t saved = 0;
	for (size_t i = 0; i < n; i++)
		saved += r[i].end - r[i].start;
	if (after)
		usleep(50 * 1000);
	struct xfer *x = atomic_load(&s->x);
	if (x) {
		struct xfer_progress p;
		xfer_progress(x, &p);
		if (p.bytes_done > saved && p.bytes_done - saved > s->max_unsaved)
			s->max_unsaved = p.bytes_done - saved;
	}
	s->saves++;
	if (!after)
		usleep(50 * 1000);
	return 0;
}

static int slow_save(void *arg, const char *key, uint64_t total, const struct byte_range *r,
		     size_t n)
{
	(void)key, (void)total;
	return slow_save_noting(arg, r, n, 0);
}

static void slow_discard(void *arg, const char *key)
{
	(void)arg, (void)key;
}

/*
 * One BIG_SIZE transfer from a fast local server with these resume ops (or
 * none); s->x is set meanwhile when s is given. Returns the server's write calls.
 */
static long big_transfer(struct fixture *f, const struct xfer_resume_ops *ops, struct slow_saves *s)
{
	struct server sv = {.lfd = f->lfd, .conns = 4, .size = BIG_SIZE};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, serve_file, &sv), 0);
	struct xfer_engine *eng = NULL;
	struct xfer_config cfg = {
	    .connections = 1, .piece_size = 2 * BIG_SIZE, .flush_bytes = BIG_FLUSH};
	struct err e;
	assert_int_equal(xfer_engine_new(&cfg, &eng, &e), 0);
	struct xfer *x = NULL;
	struct xfer_request req = fixture_req(f);
	req.size = BIG_SIZE;
	req.size_known = 1;
	req.resume = ops;
	assert_int_equal(xfer_start(eng, &req, &x, &e), 0);
	if (s)
		atomic_store(&s->x, x);
	assert_int_equal(xfer_wait(x, 60000), 1);
	if (s)
		atomic_store(&s->x, NULL);
	assert_int_equal(xfer_result(x, &e, NULL), 0);
	xfer_free(x);
	xfer_engine_free(eng);
	shutdown(f->lfd, SHUT_RDWR);
	pthread_join(t, NULL);
	return sv.writes;
}

static void test_unsaved_bytes_held_while_saves_lag(void **state)
{
	struct slow_saves s = {0};
	struct xfer_resume_ops ops = {slow_load, slow_save, slow_discard, &s, NULL};
	big_transfer(*state, &ops, &s);
	assert_true(s.saves >= 2);
	/* The hold is four flush steps; a libcurl buffer of slack on top. */
	if (s.max_unsaved > 4 * BIG_FLUSH + (1u << 20))
		fail_msg("%llu bytes written beyond the state being saved",
			 (unsigned long long)s.max_unsaved);
}

static int quick_save(void *arg, const char *key, uint64_t total, const struct byte_range *r,
		      size_t n)
{
	(void)arg, (void)key, (void)total, (void)r, (void)n;
	return 0;
}

/* A fresh save of 50 ms: the bytes written beyond its ranges are measured at its end. */
static int lagging_fresh_save(void *arg, const char *key, uint64_t total,
			      const struct byte_range *r, size_t n)
{
	(void)key, (void)total;
	return slow_save_noting(arg, r, n, 1);
}

/* A fresh step (1 MiB), a libcurl buffer, and what arrives while a save is posted. */
#define FRESH_PROMPT (3u << 20)
/* The engine's hold with fresh saves (8 steps of 1 MiB), a write batch and a libcurl buffer. */
#define FRESH_HOLD ((8u << 20) + (1u << 20))

/* Fresh saves that lag (50 ms each) hold the transfer too, at 8 of their steps (8 MiB). */
static void test_unsaved_bytes_held_while_fresh_saves_lag(void **state)
{
	struct slow_saves s = {0};
	struct xfer_resume_ops ops = {slow_load, quick_save, slow_discard, &s, lagging_fresh_save};
	big_transfer(*state, &ops, &s);
	assert_true(s.saves >= 2);
	if (s.max_unsaved > FRESH_HOLD)
		fail_msg("%llu bytes written beyond the fresh state being saved",
			 (unsigned long long)s.max_unsaved);
	if (s.max_unsaved < (4u << 20))
		fail_msg(
		    "the fresh saves lagged by %llu bytes only: the test did not make them lag",
		    (unsigned long long)s.max_unsaved);
}

/*
 * With a fresh save op, the state is saved every MiB or so without
 * waiting for the disk, while the synced saves (50 ms each here) trail: a
 * kill -9 then loses about a MiB, not four flush steps. The synced saves
 * still come, never ahead of the fresh ones, and the transfer is not held
 * for them; the fresh saves go on while one is made (they are made on
 * another thread), as a kill during a synced save would otherwise find
 * everything written since the fresh save before it unsaved.
 */
struct fresh_saves {
	struct slow_saves slow;	       /* the synced saves */
	uint64_t max_unsaved;	       /* written minus the ranges of the fresh save, at each one */
	int late;		       /* fresh saves with more than FRESH_PROMPT unsaved */
	_Atomic uint64_t fresh_bytes;  /* the ranges of the latest fresh save */
	uint64_t synced_beyond;	       /* a synced save with more than the latest fresh one */
	_Atomic uint64_t synced_bytes; /* the ranges of the latest synced save */
	uint64_t max_gap;	       /* the most the fresh state was ahead of the synced one */
	int saves;
	atomic_int in_synced; /* a synced save is being made */
	int during_synced;    /* fresh saves made meanwhile */
};

static uint64_t ranges_sum(const struct byte_range *r, size_t n)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += r[i].end - r[i].start;
	return sum;
}

static int fresh_save(void *arg, const char *key, uint64_t total, const struct byte_range *r,
		      size_t n)
{
	struct fresh_saves *s = arg;
	(void)key, (void)total;
	uint64_t saved = ranges_sum(r, n);
	struct xfer *x = atomic_load(&s->slow.x);
	if (x) {
		struct xfer_progress p;
		xfer_progress(x, &p);
		if (p.bytes_done > saved && p.bytes_done - saved > s->max_unsaved)
			s->max_unsaved = p.bytes_done - saved;
		if (p.bytes_done > saved && p.bytes_done - saved > FRESH_PROMPT)
			s->late++;
	}
	atomic_store(&s->fresh_bytes, saved);
	uint64_t synced = atomic_load(&s->synced_bytes);
	if (saved > synced && saved - synced > s->max_gap)
		s->max_gap = saved - synced;
	s->saves++;
	s->during_synced += atomic_load(&s->in_synced);
	return 0;
}

static int fresh_synced_save(void *arg, const char *key, uint64_t total, const struct byte_range *r,
			     size_t n)
{
	struct fresh_saves *s = arg;
	uint64_t saved = ranges_sum(r, n);
	/* The last save, of the whole file after its fsync, is ahead of every fresh one. */
	if (saved > atomic_load(&s->fresh_bytes) && saved < total)
		s->synced_beyond = saved;
	atomic_store(&s->synced_bytes, saved);
	atomic_store(&s->in_synced, 1);
	int rc = slow_save(&s->slow, key, total, r, n);
	atomic_store(&s->in_synced, 0);
	return rc;
}

static void test_fresh_saves_keep_up_while_syncs_lag(void **state)
{
	struct fresh_saves s = {0};
	struct xfer_resume_ops ops = {slow_load, fresh_synced_save, slow_discard, &s, fresh_save};
	big_transfer(*state, &ops, &s.slow);
	assert_true(s.slow.saves >= 1);
	assert_true(s.saves > 2 * s.slow.saves);
	assert_int_equal(s.synced_beyond, 0);
	if (s.during_synced == 0)
		fail_msg("no fresh save while one of %d synced saves was made", s.slow.saves);
	/*
	 * Prompt: the fresh state trails the written bytes by FRESH_PROMPT at
	 * most, but for a thread of the test's process off the CPU now and then
	 * on a loaded machine (1 save in about 50 runs beside other tests:
	 * 4.8 MB); never past the hold.
	 */
	if (s.late * 20 > s.saves || s.max_unsaved > FRESH_HOLD)
		fail_msg("%d of %d fresh saves more than %u bytes behind the written ones, "
			 "at most %llu",
			 s.late, s.saves, FRESH_PROMPT, (unsigned long long)s.max_unsaved);
	/* Not held at four flush steps behind the synced saves, as without fresh saves. */
	if (s.max_gap <= 4 * BIG_FLUSH + (1u << 20))
		fail_msg("the fresh state was at most %llu bytes ahead of the synced one",
			 (unsigned long long)s.max_gap);
}

/* Write calls of any kind (write, pwrite) this process has made, from /proc/self/io; -1 if unknown.
 */
static long long process_write_calls(void)
{
	FILE *io = fopen("/proc/self/io", "r");
	if (!io)
		return -1;
	char line[128];
	long long v = -1;
	while (fgets(line, sizeof(line), io))
		if (sscanf(line, "syscw: %lld", &v) == 1)
			break;
	fclose(io);
	return v;
}

/*
 * libcurl hands the body to the engine 16 KiB at a time; the engine
 * gathers it per connection and writes it in batches, so a fast answer of
 * BIG_SIZE takes far fewer write calls than the 3,072 that writing each
 * piece as it comes would (writes of 16 KiB took about three times the
 * CPU per byte of writes of 256 KiB: WRITE_BATCH).
 */
static void test_writes_batched(void **state)
{
	struct fixture *f = *state;
	long long before = process_write_calls();
	if (before < 0)
		skip();
	long served = big_transfer(f, NULL, NULL);
	struct stat st;
	assert_int_equal(fstatat(f->dfd, "blob.partial", &st, 0) == 0 ? st.st_size : -1, BIG_SIZE);
	long long engine = process_write_calls() - before - served;
	print_message("%lld write calls for %u MiB\n", engine, BIG_SIZE >> 20);
	assert_true(engine > 0);
	assert_true(engine <= BIG_SIZE / (32 * 1024));
}

/* Resident pages of [p, p + len) (at most 1 MiB), from mincore(2); -1 if not all mapped. */
static long resident_pages(uintptr_t p, size_t len)
{
	const uintptr_t page = 4096;
	unsigned char v[(1u << 20) / 4096 + 2];
	uintptr_t a = p & ~(page - 1);
	size_t n = (p + len - a + page - 1) / page;
	assert_true(n <= sizeof(v));
	if (mincore((void *)a, n * page, v) != 0)
		return -1;
	long r = 0;
	for (size_t i = 0; i < n; i++)
		r += v[i] & 1;
	return r;
}

/*
 * Blocks as large as libcurl's buffer, freed and allocated again: glibc
 * would raise its mmap threshold at the first free, and later blocks would
 * come from the heap, where a freed one between live ones stays resident.
 * Once an engine exists (curl_mem_init pins the threshold), a freed block
 * of that size is a mapping returned to the system.
 */
static void test_freed_buffers_leave_no_pages(void **state)
{
	(void)state;
#if defined(__SANITIZE_ADDRESS__)
	skip(); /* the sanitizer's allocator is not glibc's */
#endif
	struct err e;
	struct xfer_engine *eng = NULL;
	assert_int_equal(xfer_engine_new(NULL, &eng, &e), 0);
	enum { N = 16, SIZE = 512 * 1024 };  /* CURL_BUFFER */
	free(memset(malloc(SIZE), 1, SIZE)); /* the first request's buffer */
	char *b[N];
	for (int i = 0; i < N; i++)
		b[i] = memset(malloc(SIZE), 1, SIZE);
	long left = 0;
	for (int i = 0; i < N - 1; i++) {
		uintptr_t at = (uintptr_t)b[i];
		free(b[i]);
		/* -1: no longer mapped at all. */
		long r = resident_pages(at, SIZE);
		left += r > 0 ? r : 0;
	}
	free(b[N - 1]);
	xfer_engine_free(eng);
	print_message("%ld pages of %d freed buffers still resident\n", left, N - 1);
	assert_int_equal(left, 0);
}

/*
 * libcurl allocates each request's receive buffer and frees it at the
 * request's end: every one comes from the pool (core/curl_mem.c), and
 * every one is back once the transfer is over.
 */
static void test_receive_buffers_pooled(void **state)
{
	struct curl_mem_stats a, b;
	curl_mem_init();
	curl_mem_stats(&a);
	big_transfer(*state, NULL, NULL);
	curl_mem_stats(&b);
	print_message("%zu buffers from the pool, %zu from malloc, %zu idle with pages\n",
		      b.taken - a.taken, b.fallback - a.fallback, b.warm_idle);
	assert_true(b.taken > a.taken);
	assert_int_equal(b.fallback, a.fallback);
	assert_int_equal(b.in_use, 0);
	assert_true(b.warm_idle >= 1);
}

static void test_config_checks(void **state)
{
	(void)state;
	struct err e;
	struct xfer_config cfg = {.connections = 200};
	struct xfer_engine *eng = NULL;
	assert_int_equal(xfer_engine_new(&cfg, &eng, &e), ERR_INVALID);
	assert_null(eng);
	assert_non_null(strstr(e.msg, "connections"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_request_checks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_token_keeps_partial, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_purge_removes_partial, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_engine_free_cancels_running, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_symlink_swapped_in_is_not_written_through, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_unsaved_bytes_held_while_fresh_saves_lag, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_unsaved_bytes_held_while_saves_lag, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_fresh_saves_keep_up_while_syncs_lag, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_writes_batched, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_receive_buffers_pooled, setup, teardown),
	    cmocka_unit_test(test_config_checks),
	    cmocka_unit_test(test_freed_buffers_leave_no_pages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
