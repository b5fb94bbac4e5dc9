"""The client subcommands against the real daemon (`rbee-hive serve`) and the
fake Hugging Face Hub: pull in every output mode, ls, show, rm, jobs,
cancel, verify, tokens, and a pull on a pseudo-terminal that draws its bar
and is cancelled with Ctrl-C.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import unittest
import urllib.parse
import urllib.request

SRC = os.environ.get("RBEE_SRC", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "tests", "fakehub"))
from clihelp import BIN, CliMixin  # noqa: E402
from daemonhelp import DaemonTestCase, daemon_env, stop_daemon, wait_for_port  # noqa: E402
sys.path.insert(0, os.path.join(SRC, "tests", "torture"))
import common as torture  # noqa: E402
import fixtures  # noqa: E402

SMALL_ID = "hf:org/small-GGUF:model.Q4_K_M.gguf"
MULTI_ID = "hf:org/multi-GGUF:model-Q8_0-00001-of-00002.gguf"


class CliDaemonTest(CliMixin, DaemonTestCase):
    tmp_prefix = "rbee-cli-daemon-"
    # Every daemon of the class shares one hub cache.
    serve_defaults = {"level": "warn", "hf_home": "hf-home"}

    @classmethod
    def hub_config(cls):
        t = cls.tmp
        small = fixtures.write_gguf(os.path.join(t, "small.gguf"), size=2 << 20, seed=1,
                                    context_length=8192)
        slow = fixtures.write_gguf(os.path.join(t, "slow.gguf"), size=32 << 20, seed=2)
        s1 = fixtures.write_gguf(os.path.join(t, "s1.gguf"), size=1 << 20, seed=3,
                                 file_type="Q8_0", split=(1, 2))
        s2 = fixtures.write_gguf(os.path.join(t, "s2.gguf"), size=1 << 20, seed=4,
                                 file_type="Q8_0", split=(2, 2))
        ended = fixtures.write_gguf(os.path.join(t, "ended.gguf"), size=1 << 20, seed=99)
        cls.small_sha = small["sha256"]
        bundle = [fixtures.write_gguf(os.path.join(t, "b%d.gguf" % i), size=1 << 20,
                                      seed=10 + i, file_type=q)
                  for i, q in enumerate(("Q4_K_M", "Q5_K_M", "Q8_0", "Q4_K_M"))]
        cls.bundle_main = fixtures.fake_commit("bundle", "main")
        cls.bundle_v1 = fixtures.fake_commit("bundle", "v1")
        cfg = fixtures.make_config([
            fixtures.make_repo("org/bundle-GGUF", commits={
                cls.bundle_main: [fixtures.make_file("b.%s.gguf" % q, g)
                                  for q, g in zip(("Q4_K_M", "Q5_K_M", "Q8_0"), bundle)],
                cls.bundle_v1: [fixtures.make_file("b.Q4_K_M.gguf", bundle[3])],
            }, revisions={"main": cls.bundle_main, "v1": cls.bundle_v1}, tags=["v1"]),
            fixtures.make_repo("org/small-GGUF", [
                fixtures.make_file("model.Q4_K_M.gguf", small),
                fixtures.make_file("README.md", content="# small\n")]),
            # Paced so that a pull lasts long enough to be watched and cancelled.
            fixtures.make_repo("org/slow-GGUF", [
                fixtures.make_file("model.Q4_K_M.gguf", slow,
                                   faults={"rate_limit_bps": 300000})]),
            fixtures.make_repo("org/ended-GGUF", [
                fixtures.make_file("model.Q4_K_M.gguf", ended)]),
            fixtures.make_repo("org/multi-GGUF", [
                fixtures.make_file("model-Q8_0-00001-of-00002.gguf", s1),
                fixtures.make_file("model-Q8_0-00002-of-00002.gguf", s2)]),
        ])
        return cfg

    @classmethod
    def set_up_class(cls):
        cls.daemon, cls.url = cls.serve("hive")

    def api(self, path):
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.loads(r.read())

    def wait_job(self, job_id, pred, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            job = self.api("/v1/jobs/" + job_id)
            if pred(job):
                return job
            time.sleep(0.05)
        self.fail("job %s: condition not met; last %r" % (job_id, job))

    def cancel_all(self):
        for j in self.api("/v1/jobs")["jobs"]:
            if j["state"] in ("queued", "running"):
                self.run_cli("cancel", j["job_id"])

    def tearDown(self):
        self.cancel_all()

    def test_pull_ls_show_rm(self):
        rc, out, err = self.run_cli("pull", "hf:org/small-GGUF")
        self.assertEqual(rc, 0, err)
        # Not a terminal: the daemon's narration, each phase of each file once.
        self.assertNotIn("\033", out)
        self.assertLines(out, [
            r"job job-[0-9a-f]+ queued: model_download hf:org/small-GGUF",
            r"resolving hf:org/small-GGUF",
            r"org/small-GGUF@[0-9a-f]{12}: 1 file",
            r"downloading model\.Q4_K_M\.gguf \(file 1 of 1, 2\.10 MB\)",
            r"verifying model\.Q4_K_M\.gguf",
            r"publishing " + re.escape(SMALL_ID),
            re.escape(SMALL_ID) + r" is available \(2\.10 MB\)",
            r"done"])
        rc, out, err = self.run_cli("pull", "hf:org/small-GGUF")
        self.assertEqual(rc, 0, err)
        self.assertLines(out, [
            r"job job-[0-9a-f]+ queued: model_download hf:org/small-GGUF",
            r"resolving hf:org/small-GGUF",
            re.escape(SMALL_ID) + r" is already available",
            r"done"])

        rc, out, err = self.run_cli("ls")
        self.assertEqual(rc, 0, err)
        header, rows = out.splitlines()[0], out.splitlines()[1:]
        self.assertEqual(header.split(), ["ID", "SIZE", "QUANT", "STATUS", "AGE"])
        row = next(r for r in rows if r.startswith(SMALL_ID + " "))
        self.assertEqual(row.split()[1:], ["2.10", "MB", "Q4_K_M", "available", "just", "now"])
        rc, out, err = self.run_cli("ls", "--json")
        self.assertIn(SMALL_ID, [m["id"] for m in json.loads(out)["models"]])

        rc, out, err = self.run_cli("show", "org/small-GGUF")
        self.assertEqual(rc, 0, err)
        self.assertIn("id:             " + SMALL_ID, out)
        self.assertIn("architecture:   llama", out)
        self.assertIn("quantization:   Q4_K_M", out)
        self.assertIn("context length: 8192", out)
        self.assertRegex(out, r"commit:\s+[0-9a-f]{40}")
        self.assertIn(self.small_sha, out)
        rc, out, err = self.run_cli("show", "--json", SMALL_ID)
        self.assertEqual(json.loads(out)["files"][0]["sha256"], self.small_sha)

        rc, out, err = self.run_cli("rm", SMALL_ID)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), "deleted " + SMALL_ID)
        rc, out, err = self.run_cli("show", SMALL_ID)
        self.assertEqual(rc, 1)
        self.assertTrue(err.startswith("rbee-hive: "), err)
        rc, out, err = self.run_cli("ls", "--json")
        self.assertNotIn(SMALL_ID, [m["id"] for m in json.loads(out)["models"]])

    def test_revisions_and_whole_snapshot(self):
        main_id = "hf:org/bundle-GGUF:b.Q4_K_M.gguf"
        v1_id = main_id + "@v1"
        all_id = "hf:org/bundle-GGUF:*"
        snaps = os.path.join(self.tmp, "hf-home", "hub", "models--org--bundle-GGUF", "snapshots")
        try:
            for ref, want in (("org/bundle-GGUF:Q4_K_M", main_id),
                              ("org/bundle-GGUF:Q4_K_M@v1", v1_id),
                              ("org/bundle-GGUF:*", all_id)):
                rc, out, err = self.run_cli("pull", ref)
                self.assertEqual(rc, 0, err)
                self.assertIn(want + " is available", out)
            # ls tells the revisions apart and lists the snapshot's quantizations.
            rc, out, err = self.run_cli("ls")
            self.assertEqual(rc, 0, err)
            rows = {r.split()[0]: r.split() for r in out.splitlines()[1:]}
            self.assertEqual(rows[main_id][3], "Q4_K_M")
            self.assertEqual(rows[v1_id][3], "Q4_K_M")
            self.assertEqual(rows[all_id][3], "Q4_K_M,Q5_K_M,Q8_0")
            m = self.api("/v1/models/" + urllib.parse.quote(all_id, safe=""))
            self.assertEqual(m["quantizations"], ["Q4_K_M", "Q5_K_M", "Q8_0"])
            self.assertEqual(m["gguf"]["quantization"], "Q4_K_M")
            self.assertEqual(len(m["files"]), 3)
            # show prints the revision and the commit of each.
            rc, out, err = self.run_cli("show", v1_id)
            self.assertEqual(rc, 0, err)
            self.assertIn("revision:       v1", out)
            self.assertIn("commit:         " + self.bundle_v1, out)
            rc, out, err = self.run_cli("show", "org/bundle-GGUF:Q4_K_M@main")
            self.assertEqual(rc, 0, err)
            self.assertIn("id:             " + main_id + "\n", out)
            self.assertIn("commit:         " + self.bundle_main, out)
            rc, out, err = self.run_cli("show", "org/bundle-GGUF:*")
            self.assertEqual(rc, 0, err)
            self.assertIn("quantization:   Q4_K_M, Q5_K_M, Q8_0", out)
            # Both snapshots are there; a name without a revision is ambiguous.
            for c in (self.bundle_main, self.bundle_v1):
                self.assertTrue(os.path.exists(os.path.join(snaps, c, "b.Q4_K_M.gguf")))
            rc, out, err = self.run_cli("rm", "org/bundle-GGUF:Q4_K_M")
            self.assertEqual(rc, 1)
            self.assertIn("ambiguous", err)
            rc, out, err = self.run_cli("rm", v1_id)
            self.assertEqual(rc, 0, err)
            self.assertFalse(os.path.exists(os.path.join(snaps, self.bundle_v1)))
            self.assertTrue(os.path.exists(os.path.join(snaps, self.bundle_main,
                                                        "b.Q4_K_M.gguf")))
            rc, out, err = self.run_cli("show", main_id)
            self.assertEqual(rc, 0, err)
        finally:
            for i in (v1_id, main_id, all_id):
                self.run_cli("rm", i)

    def assertLines(self, out, patterns):
        """out is exactly one line per pattern, each matching it whole."""
        lines = out.splitlines()
        self.assertEqual(len(lines), len(patterns), out)
        for line, pat in zip(lines, patterns):
            self.assertRegex(line, "^" + pat + "$", out)

    def test_pull_file_uploads_what_the_daemon_may_not_read(self):
        import hashlib
        # The daemon reads no local path (no --allow-file-import): the CLI reads
        # the file with the user's rights and uploads it.
        src = os.path.join(self.tmp, "mine-Q8_0.gguf")
        g = fixtures.write_gguf(src, size=1 << 20, seed=9, file_type="Q8_0")
        os.chmod(src, 0o600)
        rc, out, err = self.run_cli("pull", "file://" + src)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("file:mine-Q8_0.gguf is available", out)
        rc, out, err = self.run_cli("show", "--json", "file:mine-Q8_0.gguf")
        m = json.loads(out)
        self.assertEqual(m["files"][0]["sha256"], g["sha256"])
        blob = None
        for root, _, files in os.walk(self.tmp):
            if g["sha256"] in files and root.endswith(os.path.join("files--local", "blobs")):
                blob = os.path.join(root, g["sha256"])
        self.assertIsNotNone(blob)
        st = os.stat(blob)
        self.assertEqual(st.st_mode & 0o077, 0, oct(st.st_mode))
        self.assertNotEqual(st.st_ino, os.stat(src).st_ino)
        self.run_cli("rm", "file:mine-Q8_0.gguf")

        # An upload an earlier run left with bytes of another file: started over.
        other = os.path.join(self.tmp, "other-Q8_0.gguf")
        g2 = fixtures.write_gguf(other, size=1 << 20, seed=10, file_type="Q8_0")
        with open(other, "rb") as f:
            data = f.read()
        bad = bytes(b ^ 0xff for b in data[:4096])
        # The request ends short: the daemon keeps its 4096 bytes.
        sock = socket.create_connection(("127.0.0.1", int(self.url.rsplit(":", 1)[1])))
        sock.sendall(("PUT /v1/blobs/sha256:%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Content-Length: %d\r\n\r\n" % (g2["sha256"], len(data))).encode() + bad)
        time.sleep(0.2)
        sock.close()
        rc, out, err = self.run_cli("pull", "file://" + other)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("file:other-Q8_0.gguf is available", out)
        self.assertEqual(hashlib.sha256(data).hexdigest(), g2["sha256"])
        self.run_cli("rm", "file:other-Q8_0.gguf")

        # Not a file, and a file that is not there: said before anything is sent.
        rc, out, err = self.run_cli("pull", "file://" + self.tmp + "/nope.gguf")
        self.assertEqual(rc, 1)
        self.assertIn("nope.gguf", err)

    def test_pull_lines_two_files(self):
        self.run_cli("rm", MULTI_ID)  # pulled by another test, perhaps
        rc, out, err = self.run_cli("pull", "org/multi-GGUF:Q8_0")
        self.assertEqual(rc, 0, err)
        f1, f2 = "model-Q8_0-00001-of-00002.gguf", "model-Q8_0-00002-of-00002.gguf"
        self.assertLines(out, [
            r"job job-[0-9a-f]+ queued: model_download org/multi-GGUF:Q8_0",
            r"resolving org/multi-GGUF:Q8_0",
            r"org/multi-GGUF@[0-9a-f]{12}: 2 files",
            r"downloading %s \(file 1 of 2, 1\.05 MB\)" % re.escape(f1),
            r"verifying " + re.escape(f1),
            r"downloading %s \(file 2 of 2, 1\.05 MB\)" % re.escape(f2),
            r"verifying " + re.escape(f2),
            r"publishing " + re.escape(MULTI_ID),
            re.escape(MULTI_ID) + r" is available \(2\.10 MB\)",
            r"done"])
        rc, out, err = self.run_cli("rm", MULTI_ID)
        self.assertEqual(rc, 0, err)

    def test_pull_json_two_files(self):
        rc, out, err = self.run_cli("pull", "--json", "org/multi-GGUF:Q8_0")
        self.assertEqual(rc, 0, err)
        events = [json.loads(l) for l in out.splitlines()]
        self.assertEqual(events[-1], {"event": "done"})
        progress = [e["data"] for e in events if e["event"] == "progress"]
        files = {p["file"] for p in progress if p["phase"] == "downloading"}
        self.assertEqual(files, {"model-Q8_0-00001-of-00002.gguf",
                                 "model-Q8_0-00002-of-00002.gguf"})
        self.assertEqual(max(p["files_total"] for p in progress), 2)
        ids = [int(e["id"]) for e in events if "id" in e]
        self.assertEqual(ids, sorted(set(ids)))
        rc, out, err = self.run_cli("show", MULTI_ID)
        self.assertEqual(rc, 0, err)
        self.assertIn("model-Q8_0-00002-of-00002.gguf", out)
        # Per-file byte counts beside the model's: the second file's count starts at 0.
        rc, out, err = self.run_cli("show", "--json", MULTI_ID)
        sizes = {f["path"]: f["size"] for f in json.loads(out)["files"]}
        first = "model-Q8_0-00001-of-00002.gguf"
        for p in progress:
            if p["phase"] not in ("downloading", "verifying"):
                continue
            self.assertEqual(p["file_bytes_total"], sizes[p["file"]], p)
            self.assertLessEqual(p["file_bytes_done"], p["file_bytes_total"], p)
            before = 0 if p["file"] == first else sizes[first]
            self.assertEqual(p["bytes_done"] - p["file_bytes_done"], before, p)
            if p["phase"] == "verifying":
                self.assertEqual(p["file_bytes_done"], sizes[p["file"]], p)

    def test_detach_jobs_cancel_rm_busy(self):
        rc, out, err = self.run_cli("pull", "--detach", "org/slow-GGUF")
        self.assertEqual(rc, 0, err)
        job_id = out.strip()
        self.assertRegex(job_id, r"^job-[0-9a-f]+$")
        self.wait_job(job_id, lambda j: (j.get("progress") or {}).get("phase") == "downloading")

        rc, out, err = self.run_cli("jobs")
        self.assertEqual(rc, 0, err)
        row = next(l for l in out.splitlines() if l.startswith(job_id))
        self.assertEqual(row.split()[1:3], ["model_download", "running"])
        self.assertIn("org/slow-GGUF", row)

        rc, out, err = self.run_cli("rm", "hf:org/slow-GGUF:model.Q4_K_M.gguf")
        self.assertEqual(rc, 1)
        self.assertIn("is being downloaded by job %s" % job_id, err)

        rc, out, err = self.run_cli("cancel", job_id)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), "cancelled " + job_id)
        self.wait_job(job_id, lambda j: j["state"] == "cancelled")
        rc, out, err = self.run_cli("cancel", job_id)
        self.assertEqual(rc, 1)
        self.assertIn("already ended", err)
        rc, out, err = self.run_cli("cancel", "job-0000000000000000")
        self.assertEqual(rc, 1)
        rc, out, err = self.run_cli("jobs", "--json")
        job = next(j for j in json.loads(out)["jobs"] if j["job_id"] == job_id)
        self.assertEqual(job["state"], "cancelled")

    def test_failed_pull(self):
        rc, out, err = self.run_cli("pull", "org/no-such-repo")
        self.assertEqual(rc, 1)
        self.assertTrue(err.startswith("rbee-hive: "), err)
        rc, out, err = self.run_cli("pull", "not a ref")
        self.assertEqual(rc, 1)
        self.assertIn("rbee-hive: ", err)
        # --json names the failure by the code the job failed with, not "internal".
        rc, out, err = self.run_cli("pull", "--json", "org/no-such-repo")
        self.assertEqual(rc, 1)
        failure = json.loads(err.strip().splitlines()[-1])["error"]
        self.assertEqual(failure["code"], "not_found", err)
        self.assertIn("no-such-repo", failure["message"])

    def test_jobs_show_how_ended_jobs_ended(self):
        rc, out, err = self.run_cli("pull", "--detach", "org/no-such-repo")
        self.assertEqual(rc, 0, err)
        failed = out.strip()
        job = self.wait_job(failed, lambda j: j["state"] == "failed")
        rc, out, err = self.run_cli("pull", "--detach", "hf:org/ended-GGUF")
        self.assertEqual(rc, 0, err)
        done = out.strip()
        self.wait_job(done, lambda j: j["state"] == "succeeded")

        rc, out, err = self.run_cli("jobs")
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["JOB", "OPERATION", "STATE", "PROGRESS", "MODEL",
                                            "AGE", "ERROR"])
        row = next(l for l in lines if l.startswith(failed))
        self.assertEqual(row.split()[2], "failed")
        # The phase the job was in when it ended is not shown as if it went on.
        self.assertNotIn("resolving", row)
        self.assertIn(job["error"], row)
        row = next(l for l in lines if l.startswith(done))
        self.assertEqual(row.split()[2:4], ["succeeded", "100%"])
        self.assertNotIn("publishing", row)

        # The job's progress says the state the job ended in, as GET /v1/jobs/{id} does.
        rc, out, err = self.run_cli("jobs", "--json")
        self.assertEqual(rc, 0, err)
        by_id = {j["job_id"]: j for j in json.loads(out)["jobs"]}
        for job_id, state in ((failed, "failed"), (done, "succeeded")):
            self.assertEqual(by_id[job_id]["state"], state)
            if by_id[job_id]["progress"] is not None:
                self.assertEqual(by_id[job_id]["progress"]["state"], state)
        self.assertIsNotNone(by_id[done]["progress"])
        self.assertEqual(self.run_cli("rm", "hf:org/ended-GGUF:model.Q4_K_M.gguf")[0], 0)

    def test_serve_json_logs(self):
        port_file = os.path.join(self.tmp, "json.port")
        env = daemon_env(self.hub.hub_url, os.path.join(self.tmp, "hf-home-json"), "info")
        proc = subprocess.Popen([BIN, "serve", "--json", "--port", "0", "--port-file", port_file,
                                 "--data-dir", os.path.join(self.tmp, "json")],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            self.assertIsNotNone(wait_for_port(proc, port_file))
        finally:
            stop_daemon(proc)
        out, err = proc.communicate(timeout=10)
        self.assertEqual(proc.returncode, 0, err)
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertTrue(lines)
        for line in lines:
            rec = json.loads(line)
            self.assertIn(rec["level"], ("error", "warn", "info", "debug"))
            self.assertIsInstance(rec["msg"], str)
            self.assertRegex(rec["time"], r"^\d{4}-\d\d-\d\dT")
        self.assertTrue(any("listening on" in json.loads(l)["msg"] for l in lines))

    def test_verify(self):
        rc, out, err = self.run_cli("pull", "--json", "hf:org/small-GGUF")
        self.assertEqual(rc, 0, err)
        path = next(json.loads(l)["data"]["path"] for l in out.splitlines()
                    if json.loads(l)["event"] == "data")
        blob = os.path.realpath(path)
        self.assertEqual(os.path.basename(blob), self.small_sha)
        try:
            rc, out, err = self.run_cli("verify")
            self.assertEqual(rc, 0, err)
            self.assertIn("ok: model.Q4_K_M.gguf (%s)" % SMALL_ID, out.splitlines())
            self.assertEqual(out.splitlines()[-1], "done")

            # One byte changed in the blob: the file is named, the status is 1.
            with open(blob, "r+b") as f:
                f.seek(4096)
                byte = f.read(1)
                f.seek(4096)
                f.write(bytes([byte[0] ^ 0xFF]))
            rc, out, err = self.run_cli("verify", "org/small-GGUF")
            self.assertEqual(rc, 1, out)
            self.assertIn("model.Q4_K_M.gguf", err)
            self.assertIn("corrupt", err)
            self.assertTrue(any(l.startswith("corrupt: model.Q4_K_M.gguf: ")
                                for l in out.splitlines()), out)
            self.assertEqual(self.api("/v1/models/" + urllib.parse.quote(SMALL_ID, safe=""))
                             ["status"], "failed")

            # --json: the report as the data event, then the error.
            rc, out, err = self.run_cli("verify", "--json", SMALL_ID)
            self.assertEqual(rc, 1)
            events = [json.loads(l) for l in out.splitlines()]
            report = next(e["data"] for e in events if e["event"] == "data")
            self.assertEqual((report["ok"], report["bad"]), (0, 1))
            self.assertEqual(report["models"], [{
                "id": SMALL_ID, "status": "bad",
                "files": [{"path": "model.Q4_K_M.gguf", "sha256": self.small_sha,
                           "status": "corrupt"}]}])
            self.assertEqual(events[-1]["event"], "error")
            # The torture scripts' reading of it: the bad file, not "unsupported".
            ok, problems, report = torture.cli_verify(self.url, timeout=60)
            self.assertFalse(ok)
            self.assertEqual(problems, [SMALL_ID + " model.Q4_K_M.gguf: corrupt"])

            # Put back, the model checks out and is available again.
            with open(blob, "r+b") as f:
                f.seek(4096)
                f.write(byte)
            rc, out, err = self.run_cli("verify", SMALL_ID)
            self.assertEqual(rc, 0, err)
            ok, problems, report = torture.cli_verify(self.url, timeout=60)
            self.assertEqual((ok, problems), (True, []))
            self.assertEqual(report["bad"], 0)
            self.assertIn(SMALL_ID, [m["id"] for m in report["models"]])
            # No daemon, no verdict: an error, never "ok" or "not supported".
            with self.assertRaisesRegex(torture.TortureError, "no verdict"):
                torture.cli_verify("http://127.0.0.1:1", timeout=30)
            self.assertEqual(self.api("/v1/models/" + urllib.parse.quote(SMALL_ID, safe=""))
                             ["status"], "available")
            rc, out, err = self.run_cli("verify", "org/absent-GGUF")
            self.assertEqual(rc, 1)
            self.assertIn("absent-GGUF", err)
        finally:
            self.run_cli("rm", SMALL_ID)

    def test_token(self):
        tf = os.path.join(self.tmp, "token")
        with open(tf, "w") as f:
            f.write("cli-test-token\n")
        proc, url = self.serve("guarded", ["--token-file", tf])
        try:
            env = self.env(RBEE_HIVE_URL=url)
            rc, out, err = self.run_cli("ls", env=env)
            self.assertEqual(rc, 1)
            self.assertIn("unauthorized", err)
            rc, out, err = self.run_cli("ls", "--token-file", tf, env=env)
            self.assertEqual(rc, 0, err)
            rc, out, err = self.run_cli("jobs", env=dict(env, RBEE_HIVE_TOKEN="cli-test-token"))
            self.assertEqual(rc, 0, err)
        finally:
            stop_daemon(proc)

    def test_pty_bars_per_file(self):
        self.run_cli("rm", MULTI_ID)
        try:
            pid, fd = self.spawn_pty("pull", "org/multi-GGUF:Q8_0")
            try:
                code, out = self.wait_exit(pid, fd, 30)
            finally:
                os.close(fd)
            text = out.decode("utf-8", "replace")
            self.assertEqual(code, 0, text)
            # Each file's bar counts that file's bytes (1.05 MB), not the model's (2.10 MB).
            self.assertRegex(text, r"00001-of-00002\.gguf\s+\u2595[^\r\n]*1/2\s+100%\s+"
                             r"1\.05 MB/1\.05 MB")
            self.assertRegex(text, r"00002-of-00002\.gguf\s+\u2595[^\r\n]*2/2\s+100%\s+"
                             r"1\.05 MB/1\.05 MB")
            self.assertNotIn("/2.10 MB", text)
        finally:
            self.run_cli("rm", MULTI_ID)

    def test_pty_bar_and_ctrl_c(self):
        pid, fd = self.spawn_pty("pull", "org/slow-GGUF")
        try:
            # The bar is drawn and redrawn in place, with rate and time left.
            out, ok = self.read_until(fd, lambda b: b.count(b"MB/s") >= 3, 30)
            text = out.decode("utf-8", "replace")
            self.assertTrue(ok, text)
            self.assertIn("model.Q4_K_M.gguf", text)
            self.assertIn("\u2595", text)
            self.assertIn("\r", text)
            self.assertRegex(text, r"\d+%\s+[\d.]+ [kM]B/33\.6 MB")
            self.assertRegex(text, r"\d+:\d\d")
            for line in re.split(r"\r|\n|\x1b\[J", text):
                self.assertLessEqual(len(line), 99, line)
            job_id = next(j["job_id"] for j in self.api("/v1/jobs?state=running")["jobs"]
                          if j["model"] == "org/slow-GGUF")

            os.kill(pid, signal.SIGINT)
            code, out = self.wait_exit(pid, fd, 20)
            self.assertEqual(code, 130, out)
            self.assertIn(b"was cancelled", out)
            self.assertEqual(self.api("/v1/jobs/" + job_id)["state"], "cancelled")
        finally:
            os.close(fd)


if __name__ == "__main__":
    if not os.access(BIN, os.X_OK):
        print("rbee-hive binary not found at %s" % BIN, file=sys.stderr)
        sys.exit(1)
    unittest.main(verbosity=2)
