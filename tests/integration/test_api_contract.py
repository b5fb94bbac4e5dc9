"""The API contract held both ways: every field the CLI (src/cli) and the web
UI (ui/) read exists in the real daemon's answers. The daemon pulls from the
fake hub, and each answer the clients read is fetched once: the model list
and one model, the job list, a job, a job's progress event, the answer to a
submit, a cancel of an ended job, the partial downloads, a delete, and a
repo listing. The fields each client reads are listed below; the CLI's list
is checked against its source too, so a new field read there must be added
here (and so checked against the daemon).
"""

import json
import os
import re
import sys
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

SRC = os.environ.get("RBEE_SRC", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "tests", "fakehub"))
from daemonhelp import BIN, DaemonTestCase  # noqa: E402
import fixtures  # noqa: E402

# What each client reads, by answer. "a.b" is the field b of the object a.
CLI_READS = {
    "models_page": ["models", "next_offset"],
    "model": ["id", "status", "size", "created_ms", "quantizations", "source", "repo",
              "revision", "commit", "gguf.architecture", "gguf.parameters",
              "gguf.context_length", "files"],
    "model_file": ["path", "size", "sha256"],
    "jobs_page": ["jobs"],
    "download_job": ["job_id", "operation", "state", "model", "created_ms", "progress",
                     "error"],
    "failed_job": ["error", "error_code"],
    "verify_job": ["id"],
    "progress": ["state", "phase", "file", "files_done", "files_total", "bytes_done",
                 "bytes_total", "file_bytes_done", "file_bytes_total", "rate_bps", "eta_s"],
    "submit": ["job_id", "sse_url"],
    "cancel_ended": ["status"],
    "partials_page": ["partials"],
    "partial": ["sha256", "repo_dir"],
    "deleted": ["id"],
    "error": ["error", "error.code", "error.message"],
}

UI_READS = {
    "models_page": ["models", "next_offset"],
    "model": ["id", "repo", "gguf.name", "size", "quantizations", "gguf.architecture",
              "gguf.context_length", "status", "error", "files"],
    "jobs_page": ["jobs"],
    "download_job": ["job_id", "operation", "model", "state", "error", "model_id",
                     "created_ms", "updated_ms", "progress"],
    "verify_job": ["id"],
    "progress": ["state", "phase", "file", "files_done", "files_total", "bytes_done",
                 "bytes_total", "rate_bps", "eta_s"],
    "submit": ["job_id"],
    "partials_page": ["partials"],
    "partial": ["repo_dir", "sha256", "bytes_done", "total_size", "writing", "updated_ms"],
    "sources": ["repo", "commit", "files", "quants"],
    "sources_file": ["path", "size", "quant"],
    "sources_quant": ["tag", "files"],
    "error": ["error", "error.code", "error.message"],
}

# The CLI reads fields through these calls only (src/cli/answer.h, cli_list, cli_age_s).
CLI_READ_CALL = re.compile(r'cli_(?:jstr|juint|jget|list|age_s)\(\w+, "([\w.]+)"')


def has(doc, field):
    for part in field.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return False
        doc = doc[part]
    return True


class ApiContractTest(DaemonTestCase):
    tmp_prefix = "rbee-api-contract-"

    @classmethod
    def hub_config(cls):
        t = cls.tmp
        small = fixtures.write_gguf(os.path.join(t, "small.gguf"), size=1 << 20, seed=1,
                                    context_length=4096)
        slow = fixtures.write_gguf(os.path.join(t, "slow.gguf"), size=16 << 20, seed=2)
        return fixtures.make_config([
            fixtures.make_repo("org/small-GGUF", [
                fixtures.make_file("model.Q4_K_M.gguf", small),
                fixtures.make_file("README.md", content="# small\n")]),
            fixtures.make_repo("org/slow-GGUF", [
                fixtures.make_file("model.Q4_K_M.gguf", slow,
                                   faults={"rate_limit_bps": 400000})]),
        ])

    @classmethod
    def set_up_class(cls):
        _, cls.url = cls.serve("data", level="warn")
        cls.answers = cls.collect()

    @classmethod
    def call(cls, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(cls.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    @classmethod
    def wait_job(cls, job_id, pred, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            status, job = cls.call("GET", "/v1/jobs/" + job_id)
            if pred(job):
                return job
            time.sleep(0.05)
        raise AssertionError("job %s: condition not met; last %r" % (job_id, job))

    @classmethod
    def stream_progress(cls, sse_url):
        """The first progress event of a job's stream, as JSON."""
        with urllib.request.urlopen(cls.url + sse_url, timeout=30) as r:
            kind = None
            for raw in r:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:") and kind == "progress":
                    return json.loads(line[5:].strip())
                elif line == "":
                    kind = None
        raise AssertionError("no progress event in %s" % sse_url)

    @classmethod
    def collect(cls):
        a = {}
        status, a["submit"] = cls.call("POST", "/v1/jobs", {"operation": "model_download",
                                                             "model": "hf:org/small-GGUF"})
        assert status == 201, a["submit"]
        job_id = a["submit"]["job_id"]
        a["progress"] = cls.stream_progress(a["submit"]["sse_url"])
        cls.wait_job(job_id, lambda j: j["state"] == "succeeded")
        status, a["download_job"] = cls.call("GET", "/v1/jobs/" + job_id)
        status, a["cancel_ended"] = cls.call("POST", "/v1/jobs/%s/cancel" % job_id)
        assert status == 409, a["cancel_ended"]
        status, a["models_page"] = cls.call("GET", "/v1/models?limit=1000&offset=0")
        model_id = a["models_page"]["models"][0]["id"]
        status, a["model"] = cls.call("GET", "/v1/models/" + urllib.parse.quote(model_id, safe=""))
        a["model_file"] = a["model"]["files"][0]
        status, verify = cls.call("POST", "/v1/jobs", {"operation": "model_verify",
                                                        "id": model_id})
        a["verify_job"] = cls.wait_job(verify["job_id"], lambda j: j["state"] == "succeeded")
        status, a["jobs_page"] = cls.call("GET", "/v1/jobs")
        status, failed = cls.call("POST", "/v1/jobs", {"operation": "model_download",
                                                        "model": "hf:org/no-such-repo"})
        a["failed_job"] = cls.wait_job(failed["job_id"], lambda j: j["state"] == "failed")
        assert a["failed_job"].get("error_code") == "not_found", a["failed_job"]

        # A partial download: a slow pull, cancelled once bytes moved.
        status, slow = cls.call("POST", "/v1/jobs", {"operation": "model_download",
                                                      "model": "hf:org/slow-GGUF"})
        cls.wait_job(slow["job_id"], lambda j: ((j.get("progress") or {}).get("bytes_done")
                                                or 0) > 0)
        cls.call("POST", "/v1/jobs/%s/cancel" % slow["job_id"])
        cls.wait_job(slow["job_id"], lambda j: j["state"] == "cancelled")
        # The job ends as soon as it leaves its transfer; the transfer saves
        # the partial's resume state, which lists it, a moment later.
        deadline = time.time() + 15
        while True:
            status, a["partials_page"] = cls.call("GET", "/v1/partials")
            if a["partials_page"].get("partials") or time.time() > deadline:
                break
            time.sleep(0.05)
        assert a["partials_page"]["partials"], a["partials_page"]
        a["partial"] = a["partials_page"]["partials"][0]

        status, a["sources"] = cls.call("GET", "/v1/sources/hf/org/small-GGUF")
        assert status == 200, a["sources"]
        a["sources_file"] = a["sources"]["files"][0]
        a["sources_quant"] = a["sources"]["quants"][0]
        status, a["error"] = cls.call("GET", "/v1/models/hf%3Aorg%2Fnone%3Ax.gguf")
        assert status == 404, a["error"]
        status, a["deleted"] = cls.call("DELETE", "/v1/models/" +
                                        urllib.parse.quote(model_id, safe=""))
        assert status == 200, a["deleted"]
        return a

    def check(self, client, reads):
        for answer, fields in reads.items():
            doc = self.answers[answer]
            for field in fields:
                self.assertTrue(has(doc, field), "%s reads '%s' of %s, which the daemon "
                                "does not send: %s" % (client, field, answer,
                                                        json.dumps(doc)[:400]))

    def test_cli_reads_what_the_daemon_sends(self):
        self.check("the CLI", CLI_READS)

    def test_ui_reads_what_the_daemon_sends(self):
        self.check("the web UI", UI_READS)

    def test_cli_list_covers_its_source(self):
        listed = {f.split(".")[-1] for fields in CLI_READS.values() for f in fields}
        listed |= {f for fields in CLI_READS.values() for f in fields}
        src = os.path.join(SRC, "src", "cli")
        seen = set()
        for name in os.listdir(src):
            if name.endswith(".c"):
                with open(os.path.join(src, name)) as f:
                    seen |= set(CLI_READ_CALL.findall(f.read()))
        self.assertTrue(seen)
        self.assertEqual(sorted(seen - listed), [], "fields the CLI reads that this test "
                         "does not check against the daemon")

    def test_ui_list_is_read_by_the_ui(self):
        text = ""
        for name in ("api.js", "app.js", "sse.js"):
            with open(os.path.join(SRC, "ui", name)) as f:
                text += f.read()
        for fields in UI_READS.values():
            for field in fields:
                last = field.split(".")[-1]
                self.assertRegex(text, r"[.\[']%s\b" % re.escape(last),
                                 "UI_READS lists '%s', which ui/ does not read" % field)


if __name__ == "__main__":
    if not os.access(BIN, os.X_OK):
        print("rbee-hive binary not found at %s" % BIN, file=sys.stderr)
        sys.exit(1)
    unittest.main(verbosity=2)
