/*
 * fuzz_job_body: the body of POST /v1/jobs as the job registry reads it
 * (job_submit_json, jobs/job.h), against a registry without persistence
 * whose provisioner fails at once, so accepted jobs end quickly.
 *
 * The harness restates the documented protocol as an oracle:
 *   {"operation":"model_download","model":REF[,"hive_id":ID]}
 *   {"operation":"model_list"} | {"operation":"model_get"|"model_delete","id":ID}
 *   {"operation":"model_verify"[,"id":ID]}
 * with null counting as absent, the argument 1..CAP_REF_LEN bytes without
 * control characters, REF a valid model ref and hive_id this hive's. The
 * registry must accept exactly what the oracle accepts (ERR_RETRY aside, a
 * full registry), and refuse the rest with a clean message.
 */
#include "fuzz.h"

#include "core/caps.h"
#include "core/err.h"
#include "core/json.h"
#include "core/ref.h"
#include "jobs/job.h"
#include "provision/provision.h"

#define HIVE_ID "hive-a"

static int prov_fail(struct provisioner *p, const struct prov_request *req,
		     struct prov_artifact *out, struct err *e)
{
	(void)p;
	(void)req;
	(void)out;
	return err_set(e, ERR_NETWORK, "the hub did not answer");
}

static void prov_free(struct provisioner *p)
{
	(void)p;
}

static const struct provisioner_ops prov_fail_ops = {
    .name = "fail", .provision = prov_fail, .free = prov_free};
static struct provisioner prov_failing = {&prov_fail_ops};

static struct job_registry *registry(void)
{
	static struct job_registry *r;
	if (!r) {
		struct job_registry_config cfg = {
		    .prov = &prov_failing,
		    .hive_id = HIVE_ID,
		    .max_jobs = 1,
		    .keep_jobs = 16,
		};
		struct err e = {0};
		FUZZ_CHECK(job_registry_new(&cfg, &r, &e) == 0);
	}
	return r;
}

static const char *str_or_absent(json_t *o, const char *key, int *bad)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v))
		return NULL;
	if (!json_is_string(v))
		*bad = 1;
	return json_string_value(v);
}

static int arg_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > CAP_REF_LEN)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return 1;
}

/* 1 when the body names an operation of rbee's own hive that this one answers with 501. */
static int absent(const uint8_t *data, size_t size)
{
	static const char *const ops[] = {"model_load", "model_unload", "hive_check"};
	json_t *o = NULL;
	if (json_parse_strict((const char *)data, size, CAP_REQUEST_BODY, &o, NULL) != 0)
		return 0;
	const char *op = json_string_value(json_object_get(o, "operation"));
	int hit = op && strncmp(op, "worker_", 7) == 0;
	for (size_t i = 0; op && i < sizeof(ops) / sizeof(ops[0]); i++)
		hit |= strcmp(op, ops[i]) == 0;
	json_decref(o);
	return hit;
}

/* 1 when the protocol accepts the body. */
static int oracle(const uint8_t *data, size_t size)
{
	json_t *o = NULL;
	if (json_parse_strict((const char *)data, size, CAP_REQUEST_BODY, &o, NULL) != 0)
		return 0;
	int ok = 0, bad = 0;
	static struct model_ref r;
	if (!json_is_object(o))
		goto out;
	const char *key;
	json_t *val;
	json_object_foreach(o, key, val)
	{
		if (strcmp(key, "operation") && strcmp(key, "model") && strcmp(key, "id") &&
		    strcmp(key, "hive_id"))
			goto out;
	}
	const char *op = str_or_absent(o, "operation", &bad);
	const char *model = str_or_absent(o, "model", &bad);
	const char *id = str_or_absent(o, "id", &bad);
	const char *hive = str_or_absent(o, "hive_id", &bad);
	if (bad || !op || (hive && strcmp(hive, HIVE_ID) != 0 && strcmp(hive, "localhost") != 0))
		goto out;
	if (strcmp(op, "model_download") == 0)
		ok = model && !id && arg_ok(model) && ref_parse(model, &r, NULL) == 0;
	else if (strcmp(op, "model_list") == 0)
		ok = !model && !id;
	else if (strcmp(op, "model_get") == 0 || strcmp(op, "model_delete") == 0)
		ok = id && !model && arg_ok(id);
	else if (strcmp(op, "model_verify") == 0)
		ok = !model && (!id || arg_ok(id));
out:
	json_decref(o);
	return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct job_registry *r = registry();
	char id[JOB_ID_MAX] = "";
	struct err e = {0};
	int rc = job_submit_json(r, (const char *)data, size, id, &e);
	if (rc == ERR_RETRY)
		return 0;
	int want = oracle(data, size);
	if (rc == 0) {
		FUZZ_CHECK(want);
		FUZZ_CHECK(strncmp(id, "job-", 4) == 0 && strnlen(id, JOB_ID_MAX) < JOB_ID_MAX);
		return 0;
	}
	FUZZ_CHECK(!want);
	if (absent(data, size))
		FUZZ_CHECK(rc == ERR_UNSUPPORTED);
	else
		FUZZ_CHECK(rc == ERR_INVALID || rc == ERR_UNPROCESSABLE || rc == ERR_TOO_LARGE);
	FUZZ_CHECK(e.code == rc && fuzz_err_ok(&e));
	/* A refusal is kept as a failed job, for clients that read every answer as one. */
	FUZZ_CHECK(strncmp(id, "job-", 4) == 0 && strnlen(id, JOB_ID_MAX) < JOB_ID_MAX);
	return 0;
}
