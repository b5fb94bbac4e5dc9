/*
 * xfer-get: a small command line over the transfer engine, for integration
 * tests and benchmarks. It downloads URL into DEST (the partial file) and
 * prints one JSON line with the outcome. DEST is opened as the daemon opens
 * a partial: relative to its folder, without following a symlink.
 *
 *   xfer-get URL DEST [--sha256 HEX] [--git-sha1 HEX] [--size N] [--connections N]
 *            [--state-file F] [--synced-saves-only] [--auth-token T] [--origin URL]
 * [--max-unknown-size N]
 *            [--cancel-after-ms N | --cancel-after-bytes N] [--purge]
 *            [--limit-rate N] [--split-threshold N] [--min-split N] [--piece-size N]
 *            [--stall-timeout S] [--retry-base-ms N] [--retry-max-ms N]
 *            [--max-retries N] [--flush-ms N] [--rename-to PATH (in DEST's folder)]
 *            [--refresh-from URL] [--progress]
 *
 * --state-file keeps the resume ranges in a text file ("KEY TOTAL" then one
 * "START END" per line, replaced atomically), and the fresh ones (saved
 * without a sync, under the boot id) in F.fresh: a stand-in for the
 * catalog (see the resume ops below). --synced-saves-only leaves the fresh saves out, as the engine
 * did before them.
 * --refresh-from answers the engine's 403 callback by asking URL (a Hub
 * /resolve URL) again with HEAD and taking its Location.
 * Exit status: 0 success, 1 failure, 2 usage, 130 cancelled.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/cancel.h"
#include "core/caps.h"
#include "core/curl_mem.h"
#include "core/err.h"
#include "core/json.h"
#include "core/log.h"
#include "core/parse.h"
#include "core/util.h"
#include "fetch/xfer.h"

struct opts {
	const char *url;
	const char *dest;
	const char *sha256;
	const char *git_sha1;
	uint64_t size; /* UINT64_MAX: not given, unknown */
	const char *state_file;
	const char *auth_token;
	const char *origin;
	const char *rename_to;
	const char *refresh_from;
	uint64_t cancel_after_ms;
	uint64_t cancel_after_bytes;
	int purge;
	int synced_only;
	int progress;
	struct xfer_config cfg;
};

/* File-based resume ops */

/*
 * F holds the synced ranges ("KEY TOTAL", then "START END" per line),
 * replaced with a rename after an fsync. F.fresh holds the fresh ones: the
 * boot id they hold under, the same lines, and "end SUM" (the sum of the
 * numbers) after them, written over the file in place with one pwrite and
 * no sync, as cheap as the catalog's unsynced commit: a rename there waits
 * for the journal, tens of ms while the partial is written back. Bytes of
 * a longer state before stay after the end line, and are not read.
 */
static int state_read(const char *path, const char *key, uint64_t total, int fresh,
		      struct byte_range **ranges, size_t *n)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return ERR_NOT_FOUND;
	char k[4200], boot[BOOT_ID_LEN + 8];
	unsigned long long t = 0, a, b, sum = 0, want = 0;
	if ((fresh &&
	     (fscanf(f, "%47s", boot) != 1 || !boot_id()[0] || strcmp(boot, boot_id()) != 0)) ||
	    fscanf(f, "%4199s %llu", k, &t) != 2 || strcmp(k, key) != 0 || t != total) {
		fclose(f);
		return ERR_NOT_FOUND;
	}
	struct byte_range *r = xcalloc(CAP_XFER_RANGES, sizeof(*r));
	size_t c = 0;
	while (c < CAP_XFER_RANGES && fscanf(f, "%llu %llu", &a, &b) == 2) {
		r[c++] = (struct byte_range){a, b};
		sum += a + b;
	}
	int ok = !fresh || (fscanf(f, " end %llu", &want) == 1 && want == sum);
	fclose(f);
	if (!ok) {
		free(r);
		return ERR_NOT_FOUND;
	}
	*ranges = r;
	*n = c;
	return 0;
}

static int state_load(void *arg, const char *key, uint64_t total, struct byte_range **ranges,
		      size_t *n)
{
	char fresh[4200];
	snprintf(fresh, sizeof(fresh), "%s.fresh", (const char *)arg);
	if (state_read(fresh, key, total, 1, ranges, n) == 0)
		return 0;
	return state_read(arg, key, total, 0, ranges, n);
}

/* The state as text into a malloc'd buffer; its length in *len. */
static char *state_text(const char *key, uint64_t total, const struct byte_range *r, size_t n,
			int fresh, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);
	if (!f)
		return NULL;
	unsigned long long sum = 0;
	if (fresh)
		fprintf(f, "%s\n", boot_id());
	fprintf(f, "%s %llu\n", key, (unsigned long long)total);
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "%llu %llu\n", (unsigned long long)r[i].start,
			(unsigned long long)r[i].end);
		sum += r[i].start + r[i].end;
	}
	if (fresh)
		fprintf(f, "end %llu\n", sum);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static int state_save(void *arg, const char *key, uint64_t total, const struct byte_range *r,
		      size_t n)
{
	const char *path = arg;
	char tmp[4200];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	size_t len = 0;
	char *text = state_text(key, total, r, n, 0, &len);
	int fd = text ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
	int bad = fd < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) != 0;
	if (fd >= 0)
		bad |= close(fd) != 0;
	free(text);
	if (bad || rename(tmp, path) != 0)
		return ERR_IO;
	return 0;
}

static int state_save_fresh(void *arg, const char *key, uint64_t total, const struct byte_range *r,
			    size_t n)
{
	char fresh[4200];
	snprintf(fresh, sizeof(fresh), "%s.fresh", (const char *)arg);
	size_t len = 0;
	char *text = state_text(key, total, r, n, 1, &len);
	int fd = text ? open(fresh, O_WRONLY | O_CREAT | O_CLOEXEC, 0600) : -1;
	int bad = fd < 0 || pwrite(fd, text, len, 0) != (ssize_t)len;
	if (fd >= 0)
		bad |= close(fd) != 0;
	free(text);
	return bad ? ERR_IO : 0;
}

static void state_discard(void *arg, const char *key)
{
	(void)key;
	char fresh[4200];
	snprintf(fresh, sizeof(fresh), "%s.fresh", (const char *)arg);
	unlink(fresh);
	unlink((const char *)arg);
}

/* 403 callback: HEAD the resolve URL again, take its Location. */

struct refresh_ctx {
	const struct opts *o;
	int calls;
};

static int refresh(void *arg, char *url_out, size_t size, struct err *e)
{
	struct refresh_ctx *rc = arg;
	const struct opts *o = rc->o;
	rc->calls++;
	if (!o->refresh_from)
		return err_set(e, ERR_FORBIDDEN, "no --refresh-from given");
	CURL *h = curl_easy_init();
	curl_easy_setopt(h, CURLOPT_URL, o->refresh_from);
	curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
	if (o->auth_token) {
		curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
		curl_easy_setopt(h, CURLOPT_XOAUTH2_BEARER, o->auth_token);
	}
	CURLcode res = curl_easy_perform(h);
	char *loc = NULL;
	int rv = 0;
	if (res != CURLE_OK)
		rv = err_set(e, ERR_NETWORK, "refresh: %s", curl_easy_strerror(res));
	else if (curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &loc) != CURLE_OK || !loc)
		rv = err_set(e, ERR_NETWORK, "refresh: no Location");
	else if (fmt_buf(url_out, size, "%s", loc) < 0)
		rv = err_set(e, ERR_TOO_LARGE, "refresh: URL too long");
	curl_easy_cleanup(h);
	return rv;
}

static void on_progress(void *arg, const struct xfer_progress *p)
{
	(void)arg;
	fprintf(
	    stderr,
	    "{\"progress\":{\"bytes_done\":%llu,\"total\":%llu,\"hashed\":%llu,\"rate_bps\":%.0f,"
	    "\"connections\":%d}}\n",
	    (unsigned long long)p->bytes_done, (unsigned long long)p->total,
	    (unsigned long long)p->hashed, p->rate_bps, p->connections);
}

/* Command line */

enum opt_kind { O_STR, O_U64, O_INT, O_LONG, O_FLAG };

struct opt_def {
	const char *name;
	enum opt_kind kind;
	size_t off;
	int in_cfg;
};

#define OPT(n, k, f)                                                                               \
	{                                                                                          \
		n, k, offsetof(struct opts, f), 0                                                  \
	}
#define CFG(n, k, f)                                                                               \
	{                                                                                          \
		n, k, offsetof(struct xfer_config, f), 1                                           \
	}

static const struct opt_def opt_table[] = {
    OPT("--sha256", O_STR, sha256),
    OPT("--size", O_U64, size),
    OPT("--state-file", O_STR, state_file),
    OPT("--auth-token", O_STR, auth_token),
    OPT("--origin", O_STR, origin),
    OPT("--git-sha1", O_STR, git_sha1),
    OPT("--rename-to", O_STR, rename_to),
    OPT("--refresh-from", O_STR, refresh_from),
    OPT("--cancel-after-ms", O_U64, cancel_after_ms),
    OPT("--cancel-after-bytes", O_U64, cancel_after_bytes),
    OPT("--purge", O_FLAG, purge),
    OPT("--synced-saves-only", O_FLAG, synced_only),
    OPT("--progress", O_FLAG, progress),
    CFG("--connections", O_INT, connections),
    CFG("--limit-rate", O_U64, limit_rate),
    CFG("--split-threshold", O_U64, split_threshold),
    CFG("--min-split", O_U64, min_split),
    CFG("--piece-size", O_U64, piece_size),
    CFG("--stall-timeout", O_INT, stall_timeout_s),
    CFG("--retry-base-ms", O_LONG, retry_base_ms),
    CFG("--retry-max-ms", O_LONG, retry_max_ms),
    CFG("--max-retries", O_INT, max_retries),
    CFG("--flush-ms", O_LONG, flush_ms),
    CFG("--max-unknown-size", O_U64, max_unknown_size),
};

static int parse_args(int argc, char **argv, struct opts *o, struct err *e)
{
	int pos = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "--", 2) != 0) {
			if (pos == 0)
				o->url = a;
			else if (pos == 1)
				o->dest = a;
			else
				return err_set(e, ERR_INVALID, "unexpected argument '%s'", a);
			pos++;
			continue;
		}
		const struct opt_def *d = NULL;
		for (size_t k = 0; k < sizeof(opt_table) / sizeof(opt_table[0]); k++) {
			if (!strcmp(opt_table[k].name, a))
				d = &opt_table[k];
		}
		if (!d)
			return err_set(e, ERR_INVALID, "unknown option '%s'", a);
		char *base = d->in_cfg ? (char *)&o->cfg : (char *)o;
		void *field = base + d->off;
		if (d->kind == O_FLAG) {
			*(int *)field = 1;
			continue;
		}
		if (++i >= argc)
			return err_set(e, ERR_INVALID, "%s needs a value", a);
		uint64_t v = 0;
		switch (d->kind) {
		case O_STR: *(const char **)field = argv[i]; break;
		case O_U64:
			if (parse_size(argv[i], UINT64_MAX, &v, a, e) < 0)
				return e->code;
			*(uint64_t *)field = v;
			break;
		case O_INT:
			if (parse_u64_str(argv[i], 0, 1 << 30, &v, a, e) < 0)
				return e->code;
			*(int *)field = (int)v;
			break;
		case O_LONG:
			if (parse_u64_str(argv[i], 0, 1ull << 40, &v, a, e) < 0)
				return e->code;
			*(long *)field = (long)v;
			break;
		case O_FLAG: break;
		}
	}
	if (pos != 2)
		return err_set(e, ERR_INVALID, "usage: xfer-get URL DEST [options]");
	return 0;
}

/*
 * Opens DEST's folder, then DEST in it (created when absent, never through
 * a symlink), as the daemon opens a partial. --rename-to must name a file in
 * the same folder.
 */
static int open_dest(const struct opts *o, int *dir_fd, int *fd, const char **name,
		     const char **rename_to, struct err *e)
{
	static char dir[4096];
	const char *slash = strrchr(o->dest, '/');
	*name = slash ? slash + 1 : o->dest;
	if (slash)
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - o->dest), o->dest);
	else
		snprintf(dir, sizeof(dir), ".");
	if (!dir[0])
		snprintf(dir, sizeof(dir), "/");
	if (o->rename_to) {
		const char *rs = strrchr(o->rename_to, '/');
		size_t dlen = slash ? (size_t)(slash - o->dest) : 0;
		if ((rs ? (size_t)(rs - o->rename_to) : 0) != dlen ||
		    (dlen && strncmp(o->rename_to, o->dest, dlen) != 0))
			return err_set(e, ERR_INVALID, "--rename-to must be in DEST's folder");
		*rename_to = rs ? rs + 1 : o->rename_to;
	}
	*dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*dir_fd < 0)
		return err_set(e, ERR_IO, "open %s: %s", dir, strerror(errno));
	*fd = openat(*dir_fd, *name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (*fd < 0)
		return err_set(e, ERR_IO, "open %s: %s", o->dest, strerror(errno));
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = {.size = UINT64_MAX};
	struct err e;
	err_clear(&e);
	log_init_from_env();
	if (parse_args(argc, argv, &o, &e) < 0) {
		fprintf(stderr, "xfer-get: %s\n", e.msg);
		return 2;
	}
	curl_mem_init();
	struct xfer_engine *eng = NULL;
	struct xfer *x = NULL;
	struct cancel_token *cancel = cancel_new();
	struct xfer_resume_ops ops = {state_load, state_save, state_discard, (void *)o.state_file,
				      o.synced_only ? NULL : state_save_fresh};
	struct refresh_ctx rctx = {&o, 0};
	int64_t t0 = now_ms();
	int dir_fd = -1, fd = -1;
	const char *name = NULL, *rename_to = NULL;
	int rc = open_dest(&o, &dir_fd, &fd, &name, &rename_to, &e);
	if (rc == 0)
		rc = xfer_engine_new(&o.cfg, &eng, &e);
	if (rc == 0) {
		struct xfer_request req = {
		    .url = o.url,
		    .origin = o.origin,
		    .auth_token = o.auth_token,
		    .dir_fd = dir_fd,
		    .fd = fd,
		    .name = name,
		    .label = o.dest,
		    .rename_to = rename_to,
		    .size = o.size == UINT64_MAX ? 0 : o.size,
		    .size_known = o.size != UINT64_MAX,
		    .sha256 = o.sha256,
		    .git_sha1 = o.git_sha1,
		    .resume = o.state_file ? &ops : NULL,
		    .refresh_url = refresh,
		    .refresh_arg = &rctx,
		    .cancel = cancel,
		    .purge_on_cancel = o.purge,
		    .on_progress = o.progress ? on_progress : NULL,
		};
		rc = xfer_start(eng, &req, &x, &e);
	}
	if (fd >= 0)
		close(fd);
	if (dir_fd >= 0)
		close(dir_fd);
	json_t *out = json_object();
	if (rc == 0) {
		/* Fire the cancel when asked, then watch how soon the bytes stop. */
		int64_t fired_at = 0, last_change = 0, finished_at = 0;
		uint64_t at_fire = 0, last = 0;
		struct xfer_progress p;
		for (;;) {
			int fin = xfer_wait(x, fired_at ? 1 : 5);
			int64_t now = now_ms();
			xfer_progress(x, &p);
			if (fired_at && p.bytes_done != last)
				last_change = now;
			last = p.bytes_done;
			if (fin && !finished_at)
				finished_at = now;
			if (fin && (!fired_at || now - fired_at > 200))
				break;
			if (!fired_at &&
			    ((o.cancel_after_ms && now - t0 >= (int64_t)o.cancel_after_ms) ||
			     (o.cancel_after_bytes && p.bytes_done >= o.cancel_after_bytes))) {
				at_fire = p.bytes_done;
				fired_at = now_ms();
				cancel_fire(cancel);
			}
		}
		char sha[SHA256_HEX_LEN + 1] = "";
		rc = xfer_result(x, &e, sha);
		if (rc == 0)
			json_set_str(out, "sha256", sha);
		json_set_int(out, "bytes_done", (long long)p.bytes_done);
		json_set_int(out, "total", (long long)p.total);
		json_set_int(out, "hashed", (long long)p.hashed);
		if (fired_at) {
			json_set_int(out, "bytes_at_cancel", (long long)at_fire);
			json_set_int(out, "bytes_after_cancel",
				     (long long)(p.bytes_done - at_fire));
			json_set_int(out, "cancel_stop_ms",
				     last_change ? (long long)(last_change - fired_at) : 0);
			json_set_int(out, "cancel_finish_ms", (long long)(finished_at - fired_at));
		}
		json_set_int(out, "refreshes", rctx.calls);
	}
	json_set_int(out, "elapsed_ms", (long long)(now_ms() - t0));
	json_set_str(out, "result", err_name(rc));
	json_set_int(out, "code", rc);
	if (rc < 0)
		json_set_str(out, "error", err_msg(&e));
	char *line = json_dump_compact(out);
	printf("%s\n", line);
	fflush(stdout);
	free(line);
	json_decref(out);
	xfer_free(x);
	xfer_engine_free(eng);
	cancel_unref(cancel);
	return rc == 0 ? 0 : rc == ERR_CANCELLED ? 130 : 1;
}
