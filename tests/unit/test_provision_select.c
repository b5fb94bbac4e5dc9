/* Selector rules (docs/refs.md) and Hub error mapping of the provision module. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/cancel.h"
#include "core/err.h"
#include "provision/hfapi.h"
#include "provision/hfapi_internal.h"
#include "provision/hfselect.h"
#include "provision/provision.h"

static void test_quant_tag(void **state)
{
	(void)state;
	static const struct {
		const char *path;
		const char *tag; /* NULL: none */
	} cases[] = {
	    {"Llama-3-8B-Instruct.Q4_K_M.gguf", "Q4_K_M"},
	    {"model-q8_0.gguf", "Q8_0"},
	    {"sub/dir/x.Q4_K_M.gguf", "Q4_K_M"},
	    {"Qwen2-7B-Instruct-Q5_K_S-00001-of-00003.gguf", "Q5_K_S"},
	    {"model-IQ2_XXS.gguf", "IQ2_XXS"},
	    {"model-f16.gguf", "F16"},
	    {"model.BF16.gguf", "BF16"},
	    {"llama_7b_Q4_0.gguf", "Q4_0"},
	    {"DeepSeek-UD-Q4_K_XL.gguf", "Q4_K_XL"},
	    {"Q8_0-Llama-Q4_K_M.gguf", "Q4_K_M"},
	    {"Qwen2-7B.gguf", NULL},
	    {"tokenizer.json", NULL},
	    {"model-Qwerty.gguf", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char tag[HF_QUANT_MAX] = "";
		int found = hf_quant_tag(cases[i].path, tag);
		if (cases[i].tag) {
			assert_int_equal(found, 1);
			assert_string_equal(tag, cases[i].tag);
		} else {
			assert_int_equal(found, 0);
		}
	}
}

static void test_split_shard(void **state)
{
	(void)state;
	unsigned no = 0, count = 0;
	size_t stem = 0;
	assert_int_equal(hf_split_shard("a/m-Q4_K_M-00002-of-00003.gguf", &no, &count, &stem), 1);
	assert_int_equal(no, 2);
	assert_int_equal(count, 3);
	assert_int_equal(stem, strlen("a/m-Q4_K_M"));
	assert_int_equal(hf_split_shard("m-00004-of-00003.gguf", &no, &count, &stem), 0);
	assert_int_equal(hf_split_shard("m-00000-of-00003.gguf", &no, &count, &stem), 0);
	assert_int_equal(hf_split_shard("m-00001-of-00003.bin", &no, &count, &stem), 0);
	assert_int_equal(hf_split_shard("m-Q4_K_M.gguf", &no, &count, &stem), 0);
}

static void fill(struct hf_listing *l, const char *const *paths, size_t n)
{
	hf_listing_init(l);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(hf_listing_add(l, paths[i], 100 + i, NULL, NULL), 0);
}

static const char *const repo_files[] = {
    "README.md",
    "m-Q8_0.gguf",
    "m-Q4_K_M-00002-of-00003.gguf",
    "m-Q4_K_M-00001-of-00003.gguf",
    "m-Q4_K_M-00003-of-00003.gguf",
    "mmproj-Q4_K_M.gguf",
    "sub/x.Q5_K_M.gguf",
};

static void test_select_quant_split_order(void **state)
{
	(void)state;
	struct hf_listing l;
	fill(&l, repo_files, 7);
	size_t idx[16], n = 0;
	struct err e = {0};
	assert_int_equal(hf_select(&l, SEL_QUANT, "Q4_K_M", "a/b", NULL, idx, 16, &n, &e), 0);
	assert_int_equal(n, 3);
	assert_string_equal(l.files[idx[0]].path, "m-Q4_K_M-00001-of-00003.gguf");
	assert_string_equal(l.files[idx[1]].path, "m-Q4_K_M-00002-of-00003.gguf");
	assert_string_equal(l.files[idx[2]].path, "m-Q4_K_M-00003-of-00003.gguf");
	/* A tag with a prefix the tag grammar splits off. */
	static const char *const ud[] = {"X-UD-Q4_K_XL-00001-of-00002.gguf",
					 "X-UD-Q4_K_XL-00002-of-00002.gguf", "X-Q4_K.gguf"};
	struct hf_listing l2;
	fill(&l2, ud, 3);
	assert_int_equal(hf_select(&l2, SEL_QUANT, "UD-Q4_K_XL", "a/b", NULL, idx, 16, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_int_equal(hf_select(&l2, SEL_QUANT, "Q4_K", "a/b", NULL, idx, 16, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_string_equal(l2.files[idx[0]].path, "X-Q4_K.gguf");
	hf_listing_cleanup(&l2);
	/* Case-insensitive tag. */
	assert_int_equal(hf_select(&l, SEL_QUANT, "q5_k_m", "a/b", NULL, idx, 16, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_string_equal(l.files[idx[0]].path, "sub/x.Q5_K_M.gguf");
	hf_listing_cleanup(&l);
}

static void test_select_default_preference(void **state)
{
	(void)state;
	struct hf_listing l;
	size_t idx[16], n = 0;
	struct err e = {0};
	fill(&l, repo_files, 7);
	assert_int_equal(hf_select(&l, SEL_DEFAULT, "", "a/b", NULL, idx, 16, &n, &e), 0);
	assert_int_equal(n, 3); /* Q4_K_M first, with its shards */
	hf_listing_cleanup(&l);

	static const char *const q8[] = {"m-Q6_K.gguf", "m-Q8_0.gguf", "mmproj-Q4_K_M.gguf"};
	fill(&l, q8, 3);
	assert_int_equal(hf_select(&l, SEL_DEFAULT, "", "a/b", NULL, idx, 16, &n, &e), 0);
	assert_int_equal(n, 1);
	/* An mmproj carrying Q4_K_M loses to the model. */
	assert_string_equal(l.files[idx[0]].path, "m-Q8_0.gguf");
	hf_listing_cleanup(&l);

	static const char *const only[] = {"README.md", "mmproj.gguf", "weights.gguf"};
	fill(&l, only, 3);
	assert_int_equal(hf_select(&l, SEL_DEFAULT, "", "a/b", NULL, idx, 16, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_string_equal(l.files[idx[0]].path, "weights.gguf");
	hf_listing_cleanup(&l);

	static const char *const none[] = {"README.md", "model.safetensors"};
	fill(&l, none, 2);
	assert_int_equal(hf_select(&l, SEL_DEFAULT, "", "a/b", NULL, idx, 16, &n, &e),
			 ERR_NOT_FOUND);
	assert_string_equal(e.msg, "no GGUF file in a/b");
	hf_listing_cleanup(&l);
}

static void test_select_quant_missing_lists_available(void **state)
{
	(void)state;
	static const char *const files[] = {"m-Q4_K_M.gguf", "m-Q8_0.gguf", "m-q4_k_m-copy.txt"};
	struct hf_listing l;
	size_t idx[16], n = 0;
	struct err e = {0};
	fill(&l, files, 3);
	assert_int_equal(hf_select(&l, SEL_QUANT, "Q5_K_M", "a/b", NULL, idx, 16, &n, &e),
			 ERR_NOT_FOUND);
	assert_string_equal(e.msg, "no GGUF file matching Q5_K_M in a/b; available: Q4_K_M, Q8_0");
	hf_listing_cleanup(&l);
}

static void test_select_path_and_all(void **state)
{
	(void)state;
	struct hf_listing l;
	size_t idx[16], n = 0;
	struct err e = {0};
	fill(&l, repo_files, 7);
	assert_int_equal(hf_select(&l, SEL_PATH, "sub/x.Q5_K_M.gguf", "a/b", NULL, idx, 16, &n, &e),
			 0);
	assert_int_equal(n, 1);
	assert_int_equal(idx[0], 6);
	/* A shard named exactly brings its whole set. */
	assert_int_equal(
	    hf_select(&l, SEL_PATH, "m-Q4_K_M-00002-of-00003.gguf", "a/b", NULL, idx, 16, &n, &e),
	    0);
	assert_int_equal(n, 3);
	assert_int_equal(hf_select(&l, SEL_PATH, "nope.gguf", "a/b", NULL, idx, 16, &n, &e),
			 ERR_NOT_FOUND);
	assert_string_equal(e.msg, "file 'nope.gguf' not found in a/b");
	assert_int_equal(hf_select(&l, SEL_ALL, "", "a/b", NULL, idx, 16, &n, &e), 0);
	assert_int_equal(n, 7);
	assert_int_equal(hf_select(&l, SEL_ALL, "", "a/b", NULL, idx, 3, &n, &e), ERR_TOO_LARGE);
	hf_listing_cleanup(&l);
	/* The shard named is in the set, also when another name of it comes first (a fuzz find). */
	static const char *const twins[] = {"m-00002-of-00002.GGUF", "m-00001-of-00002.gguf",
					    "m-00002-of-00002.gguf"};
	fill(&l, twins, 3);
	assert_int_equal(
	    hf_select(&l, SEL_PATH, "m-00002-of-00002.gguf", "a/b", NULL, idx, 16, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_int_equal(idx[0], 1);
	assert_int_equal(idx[1], 2);
	hf_listing_cleanup(&l);
}

static void test_select_missing_shard(void **state)
{
	(void)state;
	static const char *const files[] = {"m-Q4_K_M-00001-of-00003.gguf",
					    "m-Q4_K_M-00003-of-00003.gguf"};
	struct hf_listing l;
	size_t idx[16], n = 0;
	struct err e = {0};
	fill(&l, files, 2);
	assert_int_equal(hf_select(&l, SEL_QUANT, "Q4_K_M", "a/b", NULL, idx, 16, &n, &e),
			 ERR_CORRUPT);
	assert_string_equal(e.msg, "shard 2 of 3 of 'm-Q4_K_M' is missing from a/b");
	hf_listing_cleanup(&l);
}

static double elapsed_ms(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/*
 * A listing of 20,000 GGUF files with distinct tags and a set of 2,000
 * shards: each selection is one pass (plus a sort for the tags of an error
 * message), so all of them take milliseconds; comparing every tag with every
 * earlier one took seconds here.
 */
static void test_select_many_distinct_tags(void **state)
{
	(void)state;
	enum { FILES = 20000, SHARDS = 2000 };
	struct hf_listing l;
	char path[64];
	size_t *idx = calloc(CAP_MODEL_FILES, sizeof(*idx)), n = 0;
	struct err e = {0};
	hf_listing_init(&l);
	for (unsigned i = 0; i < FILES; i++) {
		snprintf(path, sizeof(path), "m-IQ%u_%X.gguf", i % 9 + 1, i);
		assert_int_equal(hf_listing_add(&l, path, 1, NULL, NULL), 0);
	}
	for (unsigned i = SHARDS; i >= 1; i--) {
		snprintf(path, sizeof(path), "big-Q4_K_M-%05u-of-%05u.gguf", i, SHARDS);
		assert_int_equal(hf_listing_add(&l, path, 1, NULL, NULL), 0);
	}
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(
	    hf_select(&l, SEL_QUANT, "Q5_K_S", "a/b", NULL, idx, CAP_MODEL_FILES, &n, &e),
	    ERR_NOT_FOUND);
	assert_non_null(strstr(e.msg, "available: IQ1_0, IQ2_1, IQ3_2, "));
	assert_int_equal(
	    hf_select(&l, SEL_QUANT, "q4_k_m", "a/b", NULL, idx, CAP_MODEL_FILES, &n, &e), 0);
	assert_int_equal(n, SHARDS);
	assert_int_equal(idx[0], FILES + SHARDS - 1);
	assert_int_equal(idx[SHARDS - 1], FILES);
	assert_int_equal(hf_select(&l, SEL_DEFAULT, "", "a/b", NULL, idx, CAP_MODEL_FILES, &n, &e),
			 0);
	assert_int_equal(n, SHARDS);
	assert_int_equal(
	    hf_select(&l, SEL_QUANT, "Q9_9", "a/b", NULL, idx, CAP_MODEL_FILES, &n, &e),
	    ERR_NOT_FOUND);
	assert_non_null(strstr(e.msg, "available: IQ1_0, "));
	double ms = elapsed_ms(&t0);
	if (ms > 2000)
		fail_msg("four selections over %d files took %.0f ms", FILES + SHARDS, ms);
	hf_listing_cleanup(&l);
	free(idx);
}

/* A cancelled job's selection stops at once, with ERR_CANCELLED. */
static void test_select_cancelled(void **state)
{
	(void)state;
	struct hf_listing l;
	size_t idx[16], n = 0;
	struct err e = {0};
	struct cancel_token *t = cancel_new();
	fill(&l, repo_files, 7);
	cancel_fire(t);
	static const struct {
		enum ref_selector sel;
		const char *text;
	} cases[] = {
	    {SEL_QUANT, "Q4_K_M"},
	    {SEL_QUANT, "Q5_K_S"},
	    {SEL_DEFAULT, ""},
	    {SEL_PATH, "m-Q4_K_M-00002-of-00003.gguf"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(
		    hf_select(&l, cases[i].sel, cases[i].text, "a/b", t, idx, 16, &n, &e),
		    ERR_CANCELLED);
		assert_string_equal(e.msg, "cancelled");
	}
	cancel_unref(t);
	hf_listing_cleanup(&l);
}

/* The quantizations of a model: one per tag, a whole snapshot has several. */
static void test_model_quants(void **state)
{
	(void)state;
	static const char *const bundle[] = {"a.Q4_K_M.gguf",
					     "README.md",
					     "mmproj-a-F16.gguf",
					     "a.Q5_K_M.gguf",
					     "b-Q8_0-00001-of-00002.gguf",
					     "b-Q8_0-00002-of-00002.gguf",
					     "a.q4_k_m-imatrix.gguf"};
	static const char *const proj[] = {"mmproj-a-F16.gguf", "README.md"};
	static const char *const none[] = {"README.md", "a.gguf"};
	char tags[8][HF_QUANT_MAX];
	assert_int_equal(hf_model_quants(bundle, 7, tags, 8), 3);
	assert_string_equal(tags[0], "Q4_K_M");
	assert_string_equal(tags[1], "Q5_K_M");
	assert_string_equal(tags[2], "Q8_0");
	assert_int_equal(hf_model_quants(bundle, 7, tags, 2), 2);
	assert_string_equal(tags[1], "Q5_K_M");
	assert_int_equal(hf_model_quants(proj, 2, tags, 8), 1);
	assert_string_equal(tags[0], "F16");
	assert_int_equal(hf_model_quants(none, 2, tags, 8), 0);
}

static void clear_hf_env(void)
{
	static const char *const vars[] = {"HF_ENDPOINT",  "HF_TOKEN",	     "HF_HOME",
					   "HF_HUB_CACHE", "HF_HUB_OFFLINE", "XDG_CACHE_HOME"};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
}

/* Hub errors become messages; those that need a token say where the daemon looks for one. */
static void test_map_error(void **state)
{
	(void)state;
	struct err e = {0};
	struct hf_what w = {.repo = "a/b", .revision = "v9", .path = "x.gguf"};
	struct hf_client c;
	struct prov_config cfg = {0};
	clear_hf_env();
	setenv("HF_HOME", "/srv/hf", 1);
	assert_int_equal(hf_client_init(&c, &cfg, &e), 0);
	static const struct {
		long status;
		const char *code;
		const char *token_from;
		int err;
		const char *msg;
	} cases[] = {
	    {200, NULL, NULL, 0, ""},
	    {404, "RepoNotFound", "HF_TOKEN", ERR_NOT_FOUND, "repo 'a/b' not found"},
	    {401, "RepoNotFound", NULL, ERR_NOT_FOUND,
	     "repo 'a/b' not found (if it is private, the daemon needs a token: HF_TOKEN in the "
	     "daemon's environment or the file /srv/hf/token)"},
	    {404, "RevisionNotFound", NULL, ERR_NOT_FOUND, "revision 'v9' not found in a/b"},
	    {404, "EntryNotFound", NULL, ERR_NOT_FOUND, "file 'x.gguf' not found in a/b@v9"},
	    {401, "GatedRepo", NULL, ERR_GATED,
	     "'a/b' is gated: accept its terms on the Hub, then give the daemon a token: HF_TOKEN "
	     "in the daemon's environment or the file /srv/hf/token"},
	    {403, "GatedRepo", "/srv/hf/token", ERR_GATED,
	     "'a/b' is gated and the token from /srv/hf/token has no access: accept its terms on "
	     "the Hub"},
	    {429, NULL, NULL, ERR_RETRY, "the Hub is rate limiting requests; try again later"},
	    {500, NULL, NULL, ERR_NETWORK, "the Hub answered HTTP 500 for a/b"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct hf_resp r = {.status = cases[i].status, .token_from = cases[i].token_from};
		snprintf(r.error_code, sizeof(r.error_code), "%s",
			 cases[i].code ? cases[i].code : "");
		err_clear(&e);
		assert_int_equal(hf_check_status(&c, &r, &w, &e), cases[i].err);
		assert_string_equal(e.msg, cases[i].msg);
		/* The Hub's code travels beside the message, for the mirror's X-Error-Code. */
		if (cases[i].err)
			assert_string_equal(e.reason ? e.reason : "",
					    cases[i].code ? cases[i].code : "");
	}
	hf_client_cleanup(&c);
	/* With no HOME nor HF_HOME there is no token file: the hint names HF_TOKEN alone. */
	clear_hf_env();
	const char *home = getenv("HOME");
	char *saved = home ? strdup(home) : NULL;
	unsetenv("HOME");
	assert_int_equal(hf_client_init(&c, &cfg, &e), 0);
	struct hf_resp r = {.status = 401};
	snprintf(r.error_code, sizeof(r.error_code), "GatedRepo");
	assert_int_equal(hf_check_status(&c, &r, &w, &e), ERR_GATED);
	assert_string_equal(e.msg, "'a/b' is gated: accept its terms on the Hub, then give the "
				   "daemon a token: HF_TOKEN in the daemon's environment");
	hf_client_cleanup(&c);
	if (saved)
		setenv("HOME", saved, 1);
	free(saved);
}

/* HF_HUB_OFFLINE takes huggingface_hub's true values, in any case. */
static void test_env_offline(void **state)
{
	(void)state;
	static const struct {
		const char *v;
		int offline;
	} cases[] = {{"1", 1}, {"Yes", 1}, {"TRUE", 1}, {"on", 1}, {"0", 0}, {"", 0}, {"no", 0}};
	struct prov_config cfg = {0};
	struct hf_client c;
	clear_hf_env();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		setenv("HF_HUB_OFFLINE", cases[i].v, 1);
		assert_int_equal(hf_client_init(&c, &cfg, NULL), 0);
		assert_int_equal(c.offline, cases[i].offline);
		hf_client_cleanup(&c);
	}
	clear_hf_env();
	assert_int_equal(hf_client_init(&c, &cfg, NULL), 0);
	assert_int_equal(c.offline, 0);
	hf_client_cleanup(&c);
}

static void test_client_endpoint_rules(void **state)
{
	(void)state;
	struct hf_client c;
	struct err e = {0};
	struct prov_config cfg = {0};
	clear_hf_env();
	setenv("HOME", "/nonexistent", 1);
	assert_int_equal(hf_client_init(&c, &cfg, &e), 0);
	assert_string_equal(c.endpoint, "https://huggingface.co");
	assert_null(c.token);
	assert_int_equal(c.offline, 0);
	hf_client_cleanup(&c);

	setenv("HF_ENDPOINT", "http://127.0.0.1:8080/", 1);
	setenv("HF_TOKEN", "hf_abc", 1);
	setenv("HF_HUB_OFFLINE", "TRUE", 1);
	assert_int_equal(hf_client_init(&c, &cfg, &e), 0);
	assert_string_equal(c.endpoint, "http://127.0.0.1:8080");
	struct hf_token t;
	hf_token_get(&c, &t);
	assert_string_equal(t.value, "hf_abc");
	assert_string_equal(t.from, "HF_TOKEN");
	hf_token_clear(&t);
	assert_int_equal(c.offline, 1);
	hf_client_cleanup(&c);

	cfg.endpoint = "http://hub.example";
	assert_int_equal(hf_client_init(&c, &cfg, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "must be https://"));
	clear_hf_env();
}

/*
 * The token is looked up when a request needs it: a token file written
 * after the client started (huggingface-cli login) is read, HF_TOKEN wins
 * over the file and the configuration over both.
 */
static void test_client_token_file(void **state)
{
	(void)state;
	const char *tmp = getenv("RBEE_TEST_TMP");
	char dir[512], path[600];
	snprintf(dir, sizeof(dir), "%s/prov-token-%d", tmp ? tmp : "/tmp", (int)getpid());
	mkdir(tmp ? tmp : "/tmp", 0755);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(path, sizeof(path), "%s/token", dir);
	clear_hf_env();
	setenv("HF_HOME", dir, 1);
	struct hf_client c;
	struct hf_token t;
	struct prov_config cfg = {0};
	assert_int_equal(hf_client_init(&c, &cfg, NULL), 0);
	assert_string_equal(c.token_file, path);
	hf_token_get(&c, &t);
	assert_null(t.from);
	assert_string_equal(t.value, "");
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("hf_from_file\n", f);
	fclose(f);
	hf_token_get(&c, &t);
	assert_string_equal(t.value, "hf_from_file");
	assert_string_equal(t.from, path);
	/* An unusable file is no token (and a warning), not a header with a line break. */
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("hf_a\nhf_b\n", f);
	fclose(f);
	hf_token_get(&c, &t);
	assert_null(t.from);
	assert_string_equal(t.value, "");
	setenv("HF_TOKEN", "hf_env", 1);
	hf_token_get(&c, &t);
	assert_string_equal(t.value, "hf_env");
	assert_string_equal(t.from, "HF_TOKEN");
	hf_token_clear(&t);
	assert_null(t.from);
	hf_client_cleanup(&c);
	cfg.hf_token = "hf_cfg";
	assert_int_equal(hf_client_init(&c, &cfg, NULL), 0);
	hf_token_get(&c, &t);
	assert_string_equal(t.value, "hf_cfg");
	hf_token_clear(&t);
	hf_client_cleanup(&c);
	clear_hf_env();
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_quant_tag),
	    cmocka_unit_test(test_split_shard),
	    cmocka_unit_test(test_select_quant_split_order),
	    cmocka_unit_test(test_select_default_preference),
	    cmocka_unit_test(test_select_quant_missing_lists_available),
	    cmocka_unit_test(test_select_path_and_all),
	    cmocka_unit_test(test_select_missing_shard),
	    cmocka_unit_test(test_select_many_distinct_tags),
	    cmocka_unit_test(test_select_cancelled),
	    cmocka_unit_test(test_model_quants),
	    cmocka_unit_test(test_map_error),
	    cmocka_unit_test(test_env_offline),
	    cmocka_unit_test(test_client_endpoint_rules),
	    cmocka_unit_test(test_client_token_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
