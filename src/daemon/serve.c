/*
 * serve: the `rbee-hive serve` subcommand (docs/api.md, "rbee-hive serve"). Parses the flags
 * through a table, builds the provisioner and the daemon, then waits for
 * SIGTERM or SIGINT with sigwait() on the main thread (the signals are
 * blocked in every other thread, which inherit the mask). On a signal it
 * stops accepting, cancels running transfers (their partials stay for the
 * resume), flushes the jobs and exits 0. A stop that takes longer than
 * DAEMON_STOP_BUDGET_MS exits anyway, with an error line naming the step
 * it was stuck in and the jobs still running: status 0 when every job row
 * is on disk (nothing is lost, though the clean-up was cut short), else 1.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/log.h"
#include "core/parse.h"
#include "core/token.h"
#include "core/url.h"
#include "core/util.h"
#include "daemon/daemon.h"
#include "fetch/s3.h"
#include "fetch/xfer.h"
#include "jobs/job.h"
#include "provision/hfapi.h"
#include "provision/provision.h"
#include "store/store.h"

#define DAEMON_STOP_BUDGET_MS 1800

/* A flag given once per value; its entry's max is the cap. */
struct serve_list {
	const char *v[CAP_OPTION_VALUES];
	size_t n;
};

_Static_assert(CAP_FILE_IMPORT_DIRS <= CAP_OPTION_VALUES && CAP_ALLOW_NETS <= CAP_OPTION_VALUES &&
		   CAP_ALLOW_HOSTS <= CAP_OPTION_VALUES && CAP_ALLOW_ORIGINS <= CAP_OPTION_VALUES,
	       "a repeatable option holds at most CAP_OPTION_VALUES values");

struct serve_opts {
	const char *bind;
	uint64_t port;
	const char *data_dir;
	const char *hf_cache;
	const char *hive_id;
	const char *queen_url;
	const char *token_file;
	struct serve_list allow_net;
	struct serve_list allow_host;
	struct serve_list allow_origin;
	uint64_t max_jobs;
	uint64_t connections;
	uint64_t http_connections;
	uint64_t http_per_ip;
	uint64_t sources_deadline_s;
	const char *limit_rate;
	uint64_t max_unknown_size;
	int offline;
	const char *mirror;
	int mirror_gated;
	const char *log_level;
	const char *port_file;
	const char *registry_auth;
	struct serve_list allow_file_import;
	const char *blob_store;
	const char *s3_endpoint;
	const char *s3_region;
	const char *s3_credentials;
	uint64_t s3_part_size;
	int help;
};

enum opt_kind { OPT_STR, OPT_U64, OPT_SIZE, OPT_FLAG, OPT_LIST };

struct serve_flag {
	const char *name;
	enum opt_kind kind;
	size_t off;
	uint64_t min, max;
	const char *help;
};

static int serve_check_queen_url(const char *v, struct err *e)
{
	struct url_parts p;
	return url_parse(v, &p, e) < 0 ? err_prefix(e, "--queen-url '%.64s'", v) : 0;
}

static int serve_check_net(const char *v, struct err *e)
{
	return daemon_access_check(DAEMON_ALLOW_NET, v, e);
}

static int serve_check_host(const char *v, struct err *e)
{
	return daemon_access_check(DAEMON_ALLOW_HOST, v, e);
}

static int serve_check_origin(const char *v, struct err *e)
{
	return daemon_access_check(DAEMON_ALLOW_ORIGIN, v, e);
}

static int serve_check_mirror(const char *v, struct err *e)
{
	if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0)
		return err_set(e, ERR_INVALID, "--mirror '%.64s': expected on or off", v);
	return 0;
}

#define O(f) offsetof(struct serve_opts, f)
static const struct serve_flag serve_flags[] = {
    {"--bind", OPT_STR, O(bind), 0, 0, "ADDR  address to listen on (" DAEMON_DEFAULT_BIND ")"},
    {"--port", OPT_U64, O(port), 0, 65535, "N  port, 0 picks a free one"},
    {"--data-dir", OPT_STR, O(data_dir), 0, 0,
     "DIR  data root: catalog, hub cache ($RBEE_HIVE_HOME, else "
     "$XDG_CACHE_HOME/rbee-hive, else ~/.cache/rbee-hive)"},
    {"--hf-cache", OPT_STR, O(hf_cache), 0, 0,
     "DIR  Hugging Face hub cache to share ($HF_HUB_CACHE or "
     "$HF_HOME/hub when set, else DATA/hub)"},
    {"--hive-id", OPT_STR, O(hive_id), 0, 0,
     "ID  this hive's id, checked in job requests (none: any)"},
    {"--queen-url", OPT_STR, O(queen_url), 0, 0,
     "URL  the rbee queen, shown in GET /health; never contacted (none)"},
    {"--token-file", OPT_STR, O(token_file), 0, 0,
     "F  bearer token required by the API (none; needed beyond loopback)"},
    {"--allow-net", OPT_LIST, O(allow_net), 0, CAP_ALLOW_NETS,
     "CIDR  clients of this network need no token (repeatable; none)"},
    {"--allow-host", OPT_LIST, O(allow_host), 0, CAP_ALLOW_HOSTS,
     "NAME  a name of this daemon accepted in Host without a token (repeatable; none)"},
    {"--allow-origin", OPT_LIST, O(allow_origin), 0, CAP_ALLOW_ORIGINS,
     "ORIGIN  web pages of this origin may call the API: CORS (repeatable; none)"},
    {"--max-jobs", OPT_U64, O(max_jobs), 1, 64, "N  downloads at once"},
    {"--connections", OPT_U64, O(connections), 1, CAP_XFER_CONNECTIONS,
     "N  transfer connections per file"},
    {"--http-connections", OPT_U64, O(http_connections), 8, CAP_CONNECTIONS,
     "N  HTTP connections at once"},
    {"--http-per-ip", OPT_U64, O(http_per_ip), 1, CAP_CONNECTIONS,
     "N  HTTP connections from one address beyond loopback; none on loopback"},
    {"--sources-deadline", OPT_U64, O(sources_deadline_s), 1, 3600,
     "S  time limit of one repository listing, GET /v1/sources"},
    {"--limit-rate", OPT_STR, O(limit_rate), 0, 0,
     "BYTES/S  cap on the download rate over all transfers, e.g. 40M "
     "(no cap)"},
    {"--max-unknown-size", OPT_SIZE, O(max_unknown_size), 1, UINT64_MAX / 2,
     "BYTES  most bytes of a download whose size is not known in advance, e.g. 100G"},
    {"--offline", OPT_FLAG, O(offline), 0, 0, "  no network: serve the catalog only (off)"},
    {"--mirror", OPT_STR, O(mirror), 0, 0,
     "on|off  serve the Hugging Face Hub's download protocol from the catalog (on)"},
    {"--mirror-gated", OPT_FLAG, O(mirror_gated), 0, 0,
     "  the mirror serves files of gated repos too (off)"},
    {"--log-level", OPT_STR, O(log_level), 0, 0,
     "L  error, warn, info or debug ($RBEE_HIVE_LOG, else info)"},
    {"--port-file", OPT_STR, O(port_file), 0, 0, "F  write the port listened on to F (none)"},
    {"--allow-file-import", OPT_LIST, O(allow_file_import), 0, CAP_FILE_IMPORT_DIRS,
     "DIR  file:// refs may import "
     "files of DIR (repeatable; none: the daemon reads no local path)"},
    {"--registry-auth", OPT_STR, O(registry_auth), 0, 0,
     "F  credentials for OCI registries, in Docker's config.json format (none)"},
    {"--blob-store", OPT_STR, O(blob_store), 0, 0,
     "s3://BUCKET[/PREFIX]  the site's shared blob store: blobs are read from it before the "
     "origin and uploaded to it after (docs/fleet.md; none)"},
    {"--s3-endpoint", OPT_STR, O(s3_endpoint), 0, 0,
     "URL  the blob store's S3 endpoint, path-style (http[s]://HOST[:PORT])"},
    {"--s3-region", OPT_STR, O(s3_region), 0, 0,
     "R  the blob store's region (" S3_DEFAULT_REGION ")"},
    {"--s3-credentials", OPT_STR, O(s3_credentials), 0, 0,
     "F  file holding ACCESS_KEY:SECRET for the blob store ($AWS_ACCESS_KEY_ID and "
     "$AWS_SECRET_ACCESS_KEY)"},
    {"--s3-part-size", OPT_SIZE, O(s3_part_size), S3_MIN_PART, 5ULL << 30,
     "BYTES  blobs larger than this are uploaded in parts of this size, e.g. 64M"},
    {"--help", OPT_FLAG, O(help), 0, 0, "  this help"},
};
#undef O

/*
 * More about some options: the environment variable that gives it, as
 * rbee's hive reads them (the option on the command line wins), and the
 * check of each value of a string or list.
 */
static const struct {
	const char *name;
	const char *env;
	int (*check)(const char *value, struct err *e);
} serve_rules[] = {
    {"--port", "HIVE_PORT", NULL},
    {"--queen-url", "HIVE_QUEEN_URL", serve_check_queen_url},
    {"--hive-id", "HIVE_ID", NULL},
    {"--allow-net", NULL, serve_check_net},
    {"--allow-host", NULL, serve_check_host},
    {"--allow-origin", NULL, serve_check_origin},
    {"--mirror", NULL, serve_check_mirror},
};

/*
 * The defaults --help prints, from the constants the code uses, so that the
 * help cannot say another value than the one that applies.
 */
static const struct {
	const char *name;
	uint64_t value;
	int is_size; /* printed as parse_size reads it: 64G */
} serve_defaults[] = {
    {"--port", DAEMON_DEFAULT_PORT, 0},
    {"--max-jobs", JOB_DEFAULT_MAX_JOBS, 0},
    {"--connections", XFER_DEFAULT_CONNECTIONS, 0},
    {"--http-connections", CAP_CONNECTIONS, 0},
    {"--http-per-ip", DAEMON_PER_IP_DEFAULT, 0},
    {"--sources-deadline", CAP_SOURCES_DEADLINE_MS / 1000, 0},
    {"--max-unknown-size", CAP_UNKNOWN_SIZE_DEFAULT, 1},
    {"--s3-part-size", S3_DEFAULT_PART, 1},
};

/* " (64G)": a size in the largest binary unit that divides it, as parse_size reads it. */
static void serve_size_text(uint64_t v, char *buf, size_t size)
{
	static const char *const units[] = {"", "K", "M", "G", "T", "P"};
	size_t u = 0;
	while (v && v % 1024 == 0 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	snprintf(buf, size, " (%llu%s)", (unsigned long long)v, units[u]);
}

static void serve_usage(FILE *f)
{
	fprintf(f, "usage: rbee-hive serve [options]\n\noptions:\n");
	for (size_t i = 0; i < sizeof(serve_flags) / sizeof(serve_flags[0]); i++) {
		const struct serve_flag *sf = &serve_flags[i];
		char def[32] = "";
		for (size_t k = 0; k < sizeof(serve_defaults) / sizeof(serve_defaults[0]); k++) {
			if (strcmp(serve_defaults[k].name, sf->name) != 0)
				continue;
			if (serve_defaults[k].is_size)
				serve_size_text(serve_defaults[k].value, def, sizeof(def));
			else
				snprintf(def, sizeof(def), " (%llu)",
					 (unsigned long long)serve_defaults[k].value);
		}
		fprintf(f, "  %s %s%s\n", sf->name, sf->help, def);
	}
	fprintf(f, "\nenvironment (an option given wins):\n");
	for (size_t i = 0; i < sizeof(serve_rules) / sizeof(serve_rules[0]); i++)
		if (serve_rules[i].env)
			fprintf(f, "  %s  as %s\n", serve_rules[i].env, serve_rules[i].name);
}

static const struct serve_flag *serve_flag_find(const char *a, size_t n)
{
	for (size_t k = 0; k < sizeof(serve_flags) / sizeof(serve_flags[0]); k++)
		if (strlen(serve_flags[k].name) == n && strncmp(serve_flags[k].name, a, n) == 0)
			return &serve_flags[k];
	return NULL;
}

/* Stores val for the option f, given as what (the option, or an environment variable). */
static int serve_set(struct serve_opts *o, const struct serve_flag *f, const char *val,
		     const char *what, struct err *e)
{
	char *field = (char *)o + f->off;
	for (size_t k = 0; k < sizeof(serve_rules) / sizeof(serve_rules[0]); k++)
		if (serve_rules[k].check && strcmp(serve_rules[k].name, f->name) == 0 &&
		    serve_rules[k].check(val, e) < 0)
			return strcmp(what, f->name) == 0 ? e->code : err_prefix(e, "%s", what);
	if (f->kind == OPT_STR) {
		*(const char **)(void *)field = val;
	} else if (f->kind == OPT_SIZE) {
		int rc = parse_size(val, f->max, (uint64_t *)(void *)field, what, e);
		if (rc < 0)
			return rc;
		if (*(uint64_t *)(void *)field < f->min)
			return err_set(e, ERR_INVALID, "%s must be at least %llu", what,
				       (unsigned long long)f->min);
	} else if (f->kind == OPT_LIST) {
		struct serve_list *l = (struct serve_list *)(void *)field;
		if (l->n == f->max)
			return err_set(e, ERR_INVALID, "%s: at most %llu values", what,
				       (unsigned long long)f->max);
		l->v[l->n++] = val;
	} else {
		return parse_u64_str(val, f->min, f->max, (uint64_t *)(void *)field, what, e);
	}
	return 0;
}

static int serve_parse(int argc, char **argv, struct serve_opts *o, struct err *e)
{
	for (size_t k = 0; k < sizeof(serve_rules) / sizeof(serve_rules[0]); k++) {
		const char *v = serve_rules[k].env ? getenv(serve_rules[k].env) : NULL;
		const struct serve_flag *f =
		    serve_flag_find(serve_rules[k].name, strlen(serve_rules[k].name));
		if (v && v[0] && serve_set(o, f, v, serve_rules[k].env, e) < 0)
			return e->code;
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = NULL;
		const char *eq = strchr(a, '=');
		const struct serve_flag *f = serve_flag_find(a, eq ? (size_t)(eq - a) : strlen(a));
		if (!f)
			return err_set(e, ERR_INVALID, "unknown option '%.64s'", a);
		if (f->kind == OPT_FLAG) {
			if (eq)
				return err_set(e, ERR_INVALID, "%s takes no value", f->name);
			*(int *)(void *)((char *)o + f->off) = 1;
			continue;
		}
		if (eq)
			val = eq + 1;
		else if (i + 1 < argc)
			val = argv[++i];
		else
			return err_set(e, ERR_INVALID, "%s needs a value", f->name);
		int rc = serve_set(o, f, val, f->name, e);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/*
 * The blob store's credentials: the file's one line ACCESS_KEY:SECRET, read
 * as every token file is, else $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY.
 * *keys (malloc'd, scrubbed by the caller) holds the key, cut at the colon;
 * *secret points into it.
 */
static int serve_s3_credentials(const char *file, char **keys, const char **secret, struct err *e)
{
	*keys = NULL;
	*secret = NULL;
	if (file) {
		int rc = token_read_file(file, 0, keys, e);
		if (rc < 0)
			return err_prefix(e, "--s3-credentials: ");
	} else {
		const char *id = getenv("AWS_ACCESS_KEY_ID"),
			   *sec = getenv("AWS_SECRET_ACCESS_KEY");
		if (!id || !*id || !sec || !*sec)
			return err_set(e, ERR_INVALID,
				       "--blob-store needs credentials: AWS_ACCESS_KEY_ID and "
				       "AWS_SECRET_ACCESS_KEY, or --s3-credentials FILE");
		if (token_check(id, "AWS_ACCESS_KEY_ID", e) < 0 ||
		    token_check(sec, "AWS_SECRET_ACCESS_KEY", e) < 0)
			return e ? e->code : ERR_INVALID;
		*keys = xasprintf("%s:%s", id, sec);
	}
	char *colon = strchr(*keys, ':');
	if (!colon || colon == *keys || !colon[1]) {
		explicit_bzero(*keys, strlen(*keys));
		free(*keys);
		*keys = NULL;
		return err_set(e, ERR_INVALID, "--s3-credentials '%s': expected ACCESS_KEY:SECRET",
			       file ? file : "");
	}
	*colon = '\0';
	*secret = colon + 1;
	return 0;
}

static int serve_write_port_file(const char *path, int port, struct err *e)
{
	char *tmp = xasprintf("%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	int rc = 0;
	if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
		rc = err_set(e, ERR_IO, "--port-file %s: %s", path, strerror(errno));
	free(tmp);
	return rc;
}

/*
 * Which hub cache serves and why (docs/store.md, "Where things live"): the
 * one shared with huggingface_hub when --hf-cache, HF_HUB_CACHE or HF_HOME
 * names it, else rbee-hive's private one.
 */
static void serve_log_cache(const struct store_paths *sp)
{
	if (sp->shared)
		log_info("hub cache %s: shared with huggingface_hub (from %s)", sp->hub,
			 sp->hub_from);
	else
		log_info("hub cache %s: private to rbee-hive, in the data root (give --hf-cache, "
			 "HF_HUB_CACHE or HF_HOME to share huggingface_hub's)",
			 sp->hub);
}

/* POST /v1/shutdown stops the daemon the way SIGTERM does: through the sigwait below. */
static void serve_shutdown(void *arg)
{
	(void)arg;
	kill(getpid(), SIGTERM);
}

/* Set once daemon_stop() has returned: what is left is the transfer engine. */
static atomic_int serve_daemon_stopped;

static void *serve_stop_watchdog(void *arg)
{
	(void)arg;
	sleep_ms(DAEMON_STOP_BUDGET_MS);
	char what[1024];
	int flushed = daemon_stop_report(what, sizeof(what));
	if (atomic_load(&serve_daemon_stopped))
		snprintf(what, sizeof(what), "stopping the transfer engine; job rows on disk");
	log_error("the orderly stop took longer than %d ms, stuck %s; exiting with status %d%s",
		  DAEMON_STOP_BUDGET_MS, what, flushed ? 0 : 1,
		  flushed ? "" : ": the jobs not on disk resume from their last saved state");
	_exit(flushed ? 0 : 1);
	return NULL;
}

int daemon_serve_main(int argc, char **argv)
{
	struct serve_opts o;
	memset(&o, 0, sizeof(o));
	o.port = DAEMON_DEFAULT_PORT;
	struct err e;
	err_clear(&e);
	struct store_paths sp;
	char *token = NULL;
	struct provisioner *prov = NULL;
	char *s3_keys = NULL; /* "ACCESS_KEY:SECRET", split in place at the colon */
	const char *s3_secret = NULL;
	struct daemon *d = NULL;
	uint64_t limit_rate = 0;
	int listen_fd = -1;
	int status = 1;

	if (serve_parse(argc, argv, &o, &e) < 0) {
		fprintf(stderr, "rbee-hive serve: %s\n", err_msg(&e));
		serve_usage(stderr);
		return 2;
	}
	if (o.help) {
		serve_usage(stdout);
		return 0;
	}
	if (o.log_level) {
		enum log_level lvl;
		if (log_level_parse(o.log_level, &lvl) < 0) {
			fprintf(stderr,
				"rbee-hive serve: --log-level '%s': expected error, warn, "
				"info or debug\n",
				o.log_level);
			return 2;
		}
		log_set_level(lvl);
	}
	if (o.limit_rate &&
	    parse_size(o.limit_rate, UINT64_MAX / 2, &limit_rate, "--limit-rate", &e) < 0) {
		fprintf(stderr, "rbee-hive serve: %s\n", err_msg(&e));
		return 2;
	}
	/* The token is never logged. */
	if (o.token_file && token_read_file(o.token_file, 0, &token, &e) < 0)
		goto fail;
	if ((o.blob_store || o.s3_endpoint) &&
	    serve_s3_credentials(o.s3_credentials, &s3_keys, &s3_secret, &e) < 0)
		goto fail;
	/* The provisioner resolves the same paths; both follow docs/store.md through the store. */
	if (store_paths_resolve(o.data_dir, o.hf_cache, hf_env_shares_cache(), &sp, &e) < 0)
		goto fail;

	/* Block the stop signals before any thread starts, so only sigwait sees them. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct prov_config pc = {
	    .data_root = sp.root,
	    .hf_cache = o.hf_cache,
	    .offline = o.offline,
	    .connections = (int)o.connections,
	    .limit_rate = limit_rate,
	    .max_unknown_size = o.max_unknown_size,
	    .file_import_dirs = o.allow_file_import.v,
	    .n_file_import_dirs = o.allow_file_import.n,
	    .registry_auth = o.registry_auth,
	    .blob_store = o.blob_store,
	    .s3_endpoint = o.s3_endpoint,
	    .s3_region = o.s3_region,
	    .s3_access_key = s3_keys,
	    .s3_secret = s3_secret,
	    .s3_part_size = o.s3_part_size,
	    .s3_limit_rate = limit_rate,
	};
	/* A port in use is refused before the data root or the catalog is made. */
	if (daemon_listen(o.bind, (int)o.port, token != NULL || o.allow_net.n > 0, &listen_fd, &e) <
	    0)
		goto fail;
	serve_log_cache(&sp);
	if (provisioner_new(&pc, &prov, &e) < 0)
		goto fail;
	struct daemon_config dc = {
	    .bind = o.bind,
	    .port = (int)o.port,
	    .listen_fd = &listen_fd,
	    .data_root = sp.root,
	    .hub_dir = sp.hub,
	    .hive_id = o.hive_id,
	    .queen_url = o.queen_url,
	    .mirror_off = o.mirror && strcmp(o.mirror, "off") == 0,
	    .mirror_gated = o.mirror_gated,
	    .token = token,
	    .max_jobs = (int)o.max_jobs,
	    .max_connections = (int)o.http_connections,
	    .per_ip_connections = (int)o.http_per_ip,
	    .sources_deadline_ms = (long)o.sources_deadline_s * 1000,
	    .resume = 1,
	    .prov_cfg = &pc,
	    .allow_nets = o.allow_net.v,
	    .n_allow_nets = o.allow_net.n,
	    .allow_hosts = o.allow_host.v,
	    .n_allow_hosts = o.allow_host.n,
	    .allow_origins = o.allow_origin.v,
	    .n_allow_origins = o.allow_origin.n,
	    .shutdown = serve_shutdown,
	};
	/* daemon_start takes the socket, on failure too. */
	int rc = daemon_start(&dc, prov, &d, &e);
	listen_fd = -1;
	if (rc < 0)
		goto fail;
	const char *shown = o.bind ? o.bind : DAEMON_DEFAULT_BIND;
	int v6 = strchr(shown, ':') != NULL;
	log_info("listening on http://%s%s%s:%d", v6 ? "[" : "", shown, v6 ? "]" : "",
		 daemon_port(d));
	if (o.port_file && serve_write_port_file(o.port_file, daemon_port(d), &e) < 0)
		goto fail;

	int sig = 0;
	while (sigwait(&stop, &sig) != 0)
		;
	log_info("stopping on signal %d", sig);
	pthread_t wd;
	if (pthread_create(&wd, NULL, serve_stop_watchdog, NULL) == 0)
		pthread_detach(wd);
	daemon_stop(d);
	d = NULL;
	atomic_store(&serve_daemon_stopped, 1);
	provisioner_free(prov);
	prov = NULL;
	log_info("stopped");
	status = 0;
	goto out;
fail:
	/* One line on stderr, in the log's format, like every other line of serve. */
	log_error("serve: %s", err_msg(&e));
out:
	if (listen_fd >= 0)
		close(listen_fd);
	daemon_stop(d);
	provisioner_free(prov);
	free(token);
	if (s3_keys) {
		/* The key and, past the colon cut into a NUL, the secret. */
		size_t len = strlen(s3_keys);
		if (s3_secret)
			len += 1 + strlen(s3_secret);
		explicit_bzero(s3_keys, len);
		free(s3_keys);
	}
	return status;
}
