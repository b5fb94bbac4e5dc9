"""A site's shared blob tier on S3, against a real Ceph RADOS Gateway
(cephrgw.py: one monitor, one OSD, one RGW on 127.0.0.1, shared by every
test of the file): a blob uploaded by one hive is fetched by a fresh hive
from the store with no byte from the CDN; a corrupt object is detected and
the CDN used; the store stopped in the middle of a transfer leaves the hive
on the CDN; two hives finishing the same blob upload it once; a kill -9
during a multipart upload resumes it at its next part, and so does a new
upload after a cancelled one; s3:// refs pull from a site's bucket."""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cephrgw  # noqa: E402
from daemonhelp import BIN, DaemonTestCase  # noqa: E402
import fixtures  # noqa: E402

BUCKET = "rbee-blobs"
MIB = 1 << 20


def http(method, url, body=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@unittest.skipIf(cephrgw.available(), "Ceph is not installed (scripts/install-deps test)")
class S3TierTest(DaemonTestCase):
    tmp_prefix = "rbee-s3-"
    serve_defaults = {"level": "info"}

    @classmethod
    def hub_config(cls):
        t = lambda *p: os.path.join(cls.tmp, *p)
        os.makedirs(t("src"))
        cls.files = {}
        repos = []
        for name, size, seed in (("shared", 6 * MIB, 151), ("corrupt", 3 * MIB, 152),
                                 ("down", 24 * MIB, 153), ("race", 2 * MIB, 154),
                                 ("resume", 30 * MIB, 155)):
            f = fixtures.write_gguf(t("src", name + ".gguf"), size=size, seed=seed)
            cls.files[name] = f
            repos.append(fixtures.make_repo("org/%s-GGUF" % name, [
                fixtures.make_file("%s.Q4_K_M.gguf" % name, f)]))
        return fixtures.make_config(repos)

    @classmethod
    def set_up_class(cls):
        cls.rgw = cephrgw.CephRGW().start()
        cls.s3("PUT", "/" + BUCKET)

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        if getattr(cls, "rgw", None):
            cls.rgw.stop()

    # The store, through curl's SigV4

    @classmethod
    def s3(cls, method, path, upload=None, out=None, check=True):
        cmd = ["curl", "-s", "-o", out or "/dev/null", "-w", "%{http_code}", "-X", method,
               "--aws-sigv4", "aws:amz:us-east-1:s3",
               "-u", "%s:%s" % (cls.rgw.access_key, cls.rgw.secret_key),
               "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]
        if method == "HEAD":
            cmd[cmd.index("-X"):cmd.index("-X") + 2] = ["-I"]
        if upload:
            cmd += ["-T", upload]
        r = subprocess.run(cmd + [cls.rgw.endpoint + path], capture_output=True, text=True,
                           timeout=60)
        code = int(r.stdout[-3:] or 0)
        if check and code not in (200, 204):
            raise AssertionError("S3 %s %s: %s" % (method, path, r.stdout))
        return code

    @classmethod
    def blob_key(cls, prefix, name):
        return "/%s/%s/blobs/%s" % (BUCKET, prefix, cls.files[name]["sha256"])

    # Hives

    @classmethod
    def hive(cls, name, prefix, extra=()):
        env = {"AWS_ACCESS_KEY_ID": cls.rgw.access_key,
               "AWS_SECRET_ACCESS_KEY": cls.rgw.secret_key}
        proc, url = cls.serve(name, ["--blob-store", "s3://%s/%s" % (BUCKET, prefix),
                                     "--s3-endpoint", cls.rgw.endpoint] + list(extra), env=env)
        return proc, url

    def pull(self, url, name, timeout=120):
        job = self.submit(url, {"operation": "model_download",
                                "model": "hf:org/%s-GGUF" % name})
        return self.wait_job(url, job, timeout)

    def submit(self, url, body):
        status, out = http("POST", url + "/v1/jobs", body)
        self.assertEqual(status, 201, out)
        return json.loads(out)["job_id"]

    def job(self, url, job_id):
        status, out = http("GET", url + "/v1/jobs/" + job_id)
        self.assertEqual(status, 200, out)
        return json.loads(out)

    def wait_job(self, url, job_id, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            j = self.job(url, job_id)
            if j["state"] in ("succeeded", "failed", "cancelled", "interrupted"):
                return j
            time.sleep(0.1)
        self.fail("job %s did not end within %d s" % (job_id, timeout))

    def upload_jobs(self, url):
        status, out = http("GET", url + "/v1/jobs")
        jobs = json.loads(out)
        jobs = jobs.get("jobs", jobs) if isinstance(jobs, dict) else jobs
        return [j for j in jobs if j["operation"] == "model_upload"]

    def wait_upload(self, url, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            ups = self.upload_jobs(url)
            if ups:
                return self.wait_job(url, ups[0]["job_id"], timeout)
            time.sleep(0.1)
        self.fail("no upload job within %d s" % timeout)

    def narration(self, url, job_id):
        req = urllib.request.Request(url + "/v1/jobs/%s/stream" % job_id)
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read().decode()

    def metrics(self, url):
        status, out = http("GET", url + "/metrics")
        m = {}
        for line in out.decode().splitlines():
            g = re.match(r'(rbee_source_bytes_total\{source="(\w+)"\}|'
                         r'rbee_store_uploaded_bytes_total) (\d+)', line)
            if g:
                m[g.group(2) or "uploaded"] = int(g.group(3))
        return m

    def file_source(self, url, name):
        status, out = http("GET", url + "/v1/models/" + urllib.parse.quote(
            "hf:org/%s-GGUF:%s.Q4_K_M.gguf" % (name, name), safe=""))
        self.assertEqual(status, 200, out)
        return json.loads(out)["files"][0].get("source")

    def cdn_bytes(self, name):
        path = "%s.Q4_K_M.gguf" % name
        return sum(r.get("bytes_sent") or 0 for r in self.hub.requests(host="cdn", settle=2)
                   if r.get("file") == path or r["path"].endswith(path))

    def blob_path(self, hive, name):
        found = glob.glob(os.path.join(self.tmp, hive, "**", "models--org--%s-GGUF" % name,
                                       "blobs", self.files[name]["sha256"]), recursive=True)
        self.assertEqual(len(found), 1, found)
        return found[0]

    def stored_sha256(self, key):
        out = os.path.join(self.tmp, "got")
        self.assertEqual(self.s3("GET", key, out=out), 200)
        return fixtures.sha256_file(out)

    # The tests

    def test_fetched_from_the_store_with_no_cdn_byte(self):
        _, a = self.hive("a", "t1")
        self.assertEqual(self.pull(a, "shared")["state"], "succeeded")
        up = self.wait_upload(a)
        self.assertEqual(up["state"], "succeeded", up)
        key = self.blob_key("t1", "shared")
        self.assertEqual(self.stored_sha256(key), self.files["shared"]["sha256"])
        self.assertEqual(self.metrics(a)["uploaded"], self.files["shared"]["size"])

        self.hub.reset_requests()
        _, b = self.hive("b", "t1")
        j = self.pull(b, "shared")
        self.assertEqual(j["state"], "succeeded", j)
        self.assertEqual(self.cdn_bytes("shared"), 0)
        m = self.metrics(b)
        self.assertEqual(m["s3"], self.files["shared"]["size"])
        self.assertEqual(m["cdn"], 0)
        self.assertEqual(fixtures.sha256_file(self.blob_path("b", "shared")),
                         self.files["shared"]["sha256"])
        # What came from the store is not uploaded again.
        self.assertEqual(self.upload_jobs(b), [])
        # Each hive says where the blob came from: the API, and `show`.
        self.assertEqual(self.file_source(a, "shared"), "cdn")
        self.assertEqual(self.file_source(b, "shared"), "s3")
        r = subprocess.run([BIN, "show", "--url", b, "org/shared-GGUF"], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"FROM")
        self.assertRegex(r.stdout, r"shared\.Q4_K_M\.gguf +\S+ \S+ +s3 ")

    def test_corrupt_object_detected_and_cdn_used(self):
        bad = os.path.join(self.tmp, "bad.bin")
        with open(self.files["corrupt"]["path"], "rb") as f:
            data = bytearray(f.read())
        data[MIB] ^= 0xFF
        with open(bad, "wb") as f:
            f.write(data)
        self.s3("PUT", self.blob_key("t2", "corrupt"), upload=bad)
        self.hub.reset_requests()
        _, h = self.hive("c", "t2")
        j = self.pull(h, "corrupt")
        self.assertEqual(j["state"], "succeeded", j)
        self.assertEqual(fixtures.sha256_file(self.blob_path("c", "corrupt")),
                         self.files["corrupt"]["sha256"])
        self.assertEqual(self.cdn_bytes("corrupt"), self.files["corrupt"]["size"])
        self.assertGreater(self.metrics(h)["s3"], 0)

    def test_two_hives_upload_once(self):
        _, d = self.hive("d", "t4")
        _, e = self.hive("e", "t4")
        jobs = [(d, self.submit(d, {"operation": "model_download", "model": "hf:org/race-GGUF"})),
                (e, self.submit(e, {"operation": "model_download", "model": "hf:org/race-GGUF"}))]
        for url, job in jobs:
            self.assertEqual(self.wait_job(url, job)["state"], "succeeded")
        ups = [self.wait_upload(url) for url, _ in jobs]
        self.assertEqual([u["state"] for u in ups], ["succeeded", "succeeded"], ups)
        total = sum(self.metrics(url)["uploaded"] for url, _ in jobs)
        self.assertEqual(total, self.files["race"]["size"])
        self.assertEqual(self.stored_sha256(self.blob_key("t4", "race")),
                         self.files["race"]["sha256"])

    def test_kill_during_upload_resumes(self):
        size = self.files["resume"]["size"]
        proc, h = self.hive("f", "t5", ["--s3-part-size", "5M", "--limit-rate", "6M"])
        self.assertEqual(self.pull(h, "resume")["state"], "succeeded")
        deadline = time.time() + 60
        up = None
        while time.time() < deadline:
            ups = self.upload_jobs(h)
            if ups:
                up = self.job(h, ups[0]["job_id"])
                done = (up.get("progress") or {}).get("bytes_done", 0)
                if done >= 11 * MIB:
                    break
            time.sleep(0.05)
        self.assertIsNotNone(up)
        self.assertEqual(up["state"], "running", up)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.daemons.remove(proc)
        _, h = self.hive("f", "t5", ["--s3-part-size", "5M"])
        j = self.wait_job(h, up["job_id"])
        self.assertEqual(j["state"], "succeeded", j)
        text = self.narration(h, up["job_id"])
        m = re.search(r"resuming the upload of blob \w+ at part (\d+) of 6", text)
        self.assertTrue(m, text)
        self.assertGreaterEqual(int(m.group(1)), 3)
        self.assertEqual(self.stored_sha256(self.blob_key("t5", "resume")),
                         self.files["resume"]["sha256"])
        self.assertEqual(self.s3("HEAD", self.blob_key("t5", "resume")), 200)
        del size

    def test_upload_cancelled_then_resumed(self):
        _, h = self.hive("k", "t6", ["--s3-part-size", "5M", "--limit-rate", "8M"])
        self.assertEqual(self.pull(h, "resume")["state"], "succeeded")
        deadline = time.time() + 60
        up = None
        while time.time() < deadline:
            ups = self.upload_jobs(h)
            if ups:
                up = self.job(h, ups[0]["job_id"])
                if (up.get("progress") or {}).get("bytes_done", 0) >= 6 * MIB:
                    break
            time.sleep(0.05)
        status, out = http("POST", h + "/v1/jobs/%s/cancel" % up["job_id"])
        self.assertEqual(status, 200, out)
        self.assertEqual(self.wait_job(h, up["job_id"])["state"], "cancelled")
        self.assertNotEqual(self.s3("HEAD", self.blob_key("t6", "resume"), check=False), 200)
        # The parts done stay: a new upload of the model goes on from the next one.
        job = self.submit(h, {"operation": "model_upload",
                              "id": "hf:org/resume-GGUF:resume.Q4_K_M.gguf"})
        self.assertEqual(self.wait_job(h, job)["state"], "succeeded")
        m = re.search(r"resuming the upload of blob \w+ at part (\d+) of 6",
                      self.narration(h, job))
        self.assertTrue(m)
        self.assertGreaterEqual(int(m.group(1)), 2)
        self.assertEqual(self.stored_sha256(self.blob_key("t6", "resume")),
                         self.files["resume"]["sha256"])

    def test_s3_refs_from_a_site_bucket(self):
        self.s3("PUT", "/site-models")
        f = self.files["corrupt"]
        self.s3("PUT", "/site-models/llama/own.Q4_K_M.gguf", upload=f["path"])
        # Without credentials the daemon does not start, and says why.
        with self.assertRaises(RuntimeError):
            self.serve("nocreds", ["--blob-store", "s3://%s/x" % BUCKET,
                                   "--s3-endpoint", self.rgw.endpoint])
        with open(os.path.join(self.tmp, "nocreds.log")) as log:
            self.assertIn("AWS_ACCESS_KEY_ID", log.read())
        # An endpoint alone (no blob store) serves s3:// refs; the credentials from a file.
        creds = os.path.join(self.tmp, "s3-credentials")
        with open(creds, "w") as out:
            out.write("%s:%s\n" % (self.rgw.access_key, self.rgw.secret_key))
        os.chmod(creds, 0o600)
        _, h = self.serve("h", ["--s3-endpoint", self.rgw.endpoint, "--s3-credentials", creds])
        self.hub.reset_requests()
        ref = "s3://site-models/llama/own.Q4_K_M.gguf#sha256=" + f["sha256"]
        j = self.wait_job(h, self.submit(h, {"operation": "model_download", "model": ref}))
        self.assertEqual(j["state"], "succeeded", j)
        self.assertEqual(j["model_id"], "url:" + f["sha256"][:16])
        status, out = http("GET", h + "/v1/models/url:" + f["sha256"][:16])
        self.assertEqual(status, 200, out)
        self.assertEqual(json.loads(out)["status"], "available")
        self.assertEqual(self.hub.requests(settle=1), [])
        self.assertEqual(self.metrics(h)["s3"], f["size"])
        # A pinned digest that the object does not have fails, and says so.
        bad = "s3://site-models/llama/own.Q4_K_M.gguf#sha256=" + "0" * 64
        j = self.wait_job(h, self.submit(h, {"operation": "model_download", "model": bad}))
        self.assertEqual(j["state"], "failed", j)
        self.assertIn("sha256", j["error"])
        # A missing key is not found.
        j = self.wait_job(h, self.submit(h, {"operation": "model_download",
                                             "model": "s3://site-models/none.gguf"}))
        self.assertEqual(j["state"], "failed", j)
        self.assertIn("404", j["error"])

    def test_z_store_stopped_mid_transfer_falls_back_to_cdn(self):
        self.s3("PUT", self.blob_key("t3", "down"), upload=self.files["down"]["path"])
        self.hub.reset_requests()
        _, h = self.hive("g", "t3", ["--limit-rate", "4M"])
        job = self.submit(h, {"operation": "model_download", "model": "hf:org/down-GGUF"})
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.metrics(h).get("s3", 0) > 0 or \
                    ((self.job(h, job).get("progress") or {}).get("bytes_done", 0) > 2 * MIB):
                break
            time.sleep(0.05)
        self.rgw.stop_rgw()
        try:
            j = self.wait_job(h, job, 120)
            self.assertEqual(j["state"], "succeeded", j)
            self.assertEqual(fixtures.sha256_file(self.blob_path("g", "down")),
                             self.files["down"]["sha256"])
            self.assertGreater(self.cdn_bytes("down"), 0)
            self.assertLess(self.cdn_bytes("down"), self.files["down"]["size"])
        finally:
            self.rgw.start_rgw()


if __name__ == "__main__":
    unittest.main()
