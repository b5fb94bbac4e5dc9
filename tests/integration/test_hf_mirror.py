"""The hive as a Hugging Face mirror (docs/mirror.md): with HF_ENDPOINT
pointed at a hive, the Hub's model info, tree (paged), paths-info and
resolve (HEAD, GET, Range) are answered from the catalog and the hub cache,
with the Hub's headers and error codes; a file the hive lacks is pulled
through a job and streamed as it arrives; @huggingface/hub downloads a
model by branch and by commit, and a file the hive must first pull through; gated repos are served only with --mirror-gated;
--mirror off removes the protocol; the job API's access policy applies.
"""

import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clihelp import CliMixin  # noqa: E402
from daemonhelp import SRC, DaemonTestCase  # noqa: E402

sys.path.insert(0, os.path.join(SRC, "tests", "fakehub"))
import fixtures  # noqa: E402

README = "# mirror\n"
CONFIG = '{"architectures": ["LlamaForCausalLM"]}\n'
REPO = "org/mirror-GGUF"
GATED = "org/gated-GGUF"
VISION = "org/vision-GGUF"
PULL = "org/pull-GGUF"
FRESH = "org/fresh-GGUF"
LISTED = "org/listed-GGUF"
UI = os.path.join(SRC, "tests", "ui")
NODE_MIN = (20, 19)


def git_oid(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def node_ok():
    """(node path, None) when node is new enough, else (None, why)."""
    node = shutil.which("node")
    if not node:
        return None, "node not found"
    v = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    parts = tuple(int(x) for x in v.lstrip("v").split(".")[:2])
    if parts < NODE_MIN:
        return None, "node %s is older than %d.%d" % (v, *NODE_MIN)
    return node, None


class MirrorTest(CliMixin, DaemonTestCase):
    tmp_prefix = "rbee-mirror-"
    serve_defaults = {"level": "warn"}

    @classmethod
    def hub_config(cls):
        t = lambda *p: os.path.join(cls.tmp, *p)
        os.makedirs(t("src"))
        cls.gguf = fixtures.write_gguf(t("src", "m.gguf"), size=2 << 20, seed=141)
        cls.gated_gguf = fixtures.write_gguf(t("src", "g.gguf"), size=1 << 20, seed=142)
        cls.vision = fixtures.write_gguf(t("src", "v.gguf"), size=1 << 20, seed=143)
        cls.proj = fixtures.write_gguf(t("src", "p.gguf"), size=1 << 20, seed=144)
        cls.pulled = fixtures.write_gguf(t("src", "pull.gguf"), size=6 << 20, seed=145)
        cls.slow = fixtures.write_gguf(t("src", "slow.gguf"), size=8 << 20, seed=146)
        cls.js = fixtures.write_gguf(t("src", "js.gguf"), size=1 << 20, seed=147)
        cls.fresh = fixtures.write_gguf(t("src", "fresh.gguf"), size=2 << 20, seed=148)
        repos = [
            fixtures.make_repo(REPO, [
                fixtures.make_file("model.Q4_K_M.gguf", cls.gguf),
                fixtures.make_file("README.md", content=README),
                fixtures.make_file("sub/config.json", content=CONFIG)]),
            fixtures.make_repo(GATED, [fixtures.make_file("g.Q4_K_M.gguf", cls.gated_gguf)],
                               gated=True),
            fixtures.make_repo(VISION, [fixtures.make_file("mmproj-f16.gguf", cls.proj),
                                        fixtures.make_file("vision.Q8_0.gguf", cls.vision)]),
            fixtures.make_repo(PULL, [
                fixtures.make_file("pull.Q4_K_M.gguf", cls.pulled,
                                   faults={"rate_limit_bps": 1500000}),
                fixtures.make_file("slow.Q4_K_M.gguf", cls.slow,
                                   faults={"rate_limit_bps": 200000}),
                fixtures.make_file("js.Q8_0.gguf", cls.js),
                fixtures.make_file("notes.txt", content=README)]),
            fixtures.make_repo(FRESH, [
                fixtures.make_file("fresh.Q4_K_M.gguf", cls.fresh),
                fixtures.make_file("README.md", content=README),
                fixtures.make_file("sub/config.json", content=CONFIG)]),
            fixtures.make_repo(LISTED, [
                fixtures.make_file("listed.Q4_K_M.gguf", cls.fresh),
                fixtures.make_file("README.md", content=README),
                fixtures.make_file("sub/config.json", content=CONFIG)]),
        ]
        cls.commits = {r["id"]: r["revisions"]["main"] for r in repos}
        return fixtures.make_config(repos)

    @classmethod
    def set_up_class(cls):
        cls.token_file = os.path.join(cls.tmp, "token")
        with open(cls.token_file, "w") as f:
            f.write("hive-secret\n")
        hf = {"HF_TOKEN": fixtures.DEFAULT_TOKEN}
        cls.daemon, cls.url = cls.serve("hive", env=hf)
        _, cls.gated_url = cls.serve("gated", ["--mirror-gated", "--token-file", cls.token_file],
                                     env=hf)
        _, cls.off_url = cls.serve("off", ["--mirror", "off"])
        cls.pull(cls.url, REPO + ":*")
        cls.pull(cls.url, GATED)
        cls.pull(cls.url, VISION + ":*")
        cls.pull(cls.gated_url, GATED, token="hive-secret")
        cls.pull(cls.off_url, REPO + ":*")

    @classmethod
    def pull(cls, url, ref, token=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("RBEE_HIVE")}
        env["RBEE_HIVE_URL"] = url
        if token:
            env["RBEE_HIVE_TOKEN"] = token
        from daemonhelp import BIN
        p = subprocess.run([BIN, "pull", ref], capture_output=True, text=True, timeout=120,
                           env=env)
        if p.returncode != 0:
            raise RuntimeError("pull %s: %s %s" % (ref, p.stdout, p.stderr))

    def request(self, method, path, headers=None, body=None, url=None):
        u = urllib.parse.urlsplit(url or self.url)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def hub_request(self, method, path, headers=None):
        h = dict(headers or {})
        h["Authorization"] = "Bearer " + fixtures.DEFAULT_TOKEN
        return self.request(method, path, h, url=self.hub.hub_url)

    # Model info -----------------------------------------------------------

    def test_model_info_by_branch_and_commit(self):
        commit = self.commits[REPO]
        for path in ("/api/models/%s" % REPO, "/api/models/%s/revision/main" % REPO,
                     "/api/models/%s/revision/%s" % (REPO, commit)):
            st, h, body = self.request("GET", path)
            self.assertEqual(st, 200, body)
            info = json.loads(body)
            self.assertEqual(info["id"], REPO)
            self.assertEqual(info["sha"], commit)
            self.assertEqual(sorted(s["rfilename"] for s in info["siblings"]),
                             ["README.md", "model.Q4_K_M.gguf", "sub/config.json"])
        st, _, body = self.request("GET", "/api/models/%s/revision/main?blobs=true" % REPO)
        sib = {s["rfilename"]: s for s in json.loads(body)["siblings"]}
        self.assertEqual(sib["model.Q4_K_M.gguf"]["lfs"]["sha256"], self.gguf["sha256"])
        self.assertEqual(sib["model.Q4_K_M.gguf"]["size"], self.gguf["size"])
        self.assertEqual(sib["README.md"]["blobId"], git_oid(README.encode()))
        self.assertNotIn("lfs", sib["README.md"])

    # Tree -----------------------------------------------------------------

    def tree(self, path, url=None):
        """Every entry of a tree listing, following Link rel="next"."""
        out, pages = [], 0
        while path:
            st, h, body = self.request("GET", path, url=url)
            self.assertEqual(st, 200, body)
            out += json.loads(body)
            pages += 1
            link = h.get("link")
            path = None
            if link:
                target = link.split(";")[0].strip("<> ")
                u = urllib.parse.urlsplit(target)
                self.assertEqual(u.scheme, "http")
                path = u.path + "?" + u.query
        return out, pages

    def test_tree_matches_the_hub_and_pages(self):
        commit = self.commits[REPO]
        ours, pages = self.tree("/api/models/%s/tree/main?recursive=true&limit=1" % REPO)
        self.assertEqual(pages, len(ours))
        self.assertGreater(pages, 3)
        st, _, body = self.hub_request("GET", "/api/models/%s/tree/%s?recursive=true&limit=100"
                                       % (REPO, commit))
        hub = json.loads(body)
        files = lambda es: sorted((e for e in es if e["type"] == "file"), key=lambda e: e["path"])
        self.assertEqual(files(ours), files(hub))
        self.assertEqual(sorted(e["path"] for e in ours if e["type"] == "directory"), ["sub"])
        top, _ = self.tree("/api/models/%s/tree/%s" % (REPO, commit))
        self.assertEqual(sorted(e["path"] for e in top), ["README.md", "model.Q4_K_M.gguf", "sub"])
        sub, _ = self.tree("/api/models/%s/tree/main/sub" % REPO)
        self.assertEqual([e["path"] for e in sub], ["sub/config.json"])
        st, h, _ = self.request("GET", "/api/models/%s/tree/main/nope" % REPO)
        self.assertEqual((st, h.get("x-error-code")), (404, "EntryNotFound"))

    def test_paths_info_json_and_form(self):
        body = json.dumps({"paths": ["model.Q4_K_M.gguf", "sub", "missing.txt"], "expand": True})
        st, _, out = self.request("POST", "/api/models/%s/paths-info/main" % REPO,
                                  {"Content-Type": "application/json"}, body)
        self.assertEqual(st, 200, out)
        got = {e["path"]: e for e in json.loads(out)}
        self.assertEqual(sorted(got), ["model.Q4_K_M.gguf", "sub"])
        self.assertEqual(got["model.Q4_K_M.gguf"]["lfs"]["oid"], self.gguf["sha256"])
        self.assertEqual(got["model.Q4_K_M.gguf"]["lastCommit"]["id"], self.commits[REPO])
        self.assertEqual(got["sub"]["type"], "directory")
        form = urllib.parse.urlencode([("paths", "README.md"), ("expand", "False")])
        st, _, out = self.request("POST", "/api/models/%s/paths-info/main" % REPO,
                                  {"Content-Type": "application/x-www-form-urlencoded"}, form)
        self.assertEqual(st, 200, out)
        self.assertEqual([(e["path"], e["oid"]) for e in json.loads(out)],
                         [("README.md", git_oid(README.encode()))])

    # Resolve --------------------------------------------------------------

    def test_resolve_headers_as_the_hub(self):
        commit = self.commits[REPO]
        path = "/%s/resolve/main/model.Q4_K_M.gguf" % REPO
        st, h, body = self.request("HEAD", path)
        self.assertEqual(st, 200)
        self.assertEqual(body, b"")
        self.assertEqual(h["x-repo-commit"], commit)
        self.assertEqual(h["etag"], '"%s"' % self.gguf["sha256"])
        self.assertEqual(h["x-linked-etag"], '"%s"' % self.gguf["sha256"])
        self.assertEqual(h["x-linked-size"], str(self.gguf["size"]))
        self.assertEqual(h["content-length"], str(self.gguf["size"]))
        self.assertEqual(h["accept-ranges"], "bytes")
        _, hub, _ = self.hub_request("HEAD", path)
        self.assertEqual(h["x-linked-etag"], hub["x-linked-etag"])
        st, h, body = self.request("HEAD", "/%s/resolve/%s/README.md" % (REPO, commit))
        self.assertEqual(st, 200)
        _, hub, _ = self.hub_request("HEAD", "/%s/resolve/%s/README.md" % (REPO, commit))
        self.assertEqual(h["etag"], hub["etag"])
        self.assertEqual(h["etag"], '"%s"' % git_oid(README.encode()))
        self.assertEqual(h["content-length"], str(len(README)))

    def test_resolve_bytes_and_ranges(self):
        path = "/%s/resolve/main/model.Q4_K_M.gguf" % REPO
        size = self.gguf["size"]
        st, _, body = self.request("GET", path)
        self.assertEqual(st, 200)
        self.assertEqual(hashlib.sha256(body).hexdigest(), self.gguf["sha256"])
        cases = [("bytes=10-19", 10, 19), ("bytes=%d-" % (size - 7), size - 7, size - 1),
                 ("bytes=-5", size - 5, size - 1), ("bytes=0-%d" % (size * 2), 0, size - 1)]
        for rng, a, b in cases:
            st, h, part = self.request("GET", path, {"Range": rng})
            self.assertEqual(st, 206, rng)
            self.assertEqual(h["content-range"], "bytes %d-%d/%d" % (a, b, size), rng)
            self.assertEqual(part, body[a:b + 1], rng)
        st, h, _ = self.request("GET", path, {"Range": "bytes=%d-" % size})
        self.assertEqual(st, 416)
        self.assertEqual(h["content-range"], "bytes */%d" % size)
        # An If-Range that no longer names the file asks for all of it.
        st, _, whole = self.request("GET", path, {"Range": "bytes=0-0", "If-Range": '"x"'})
        self.assertEqual((st, len(whole)), (200, size))
        st, h, _ = self.request("GET", path, {"Range": "bytes=0-0",
                                              "If-Range": '"%s"' % self.gguf["sha256"]})
        self.assertEqual(st, 206)

    def test_error_codes(self):
        commit = self.commits[REPO]
        cases = [
            ("/api/models/org/absent", "RepoNotFound"),
            ("/api/models/%s/revision/nope" % REPO, "RevisionNotFound"),
            ("/api/models/%s/revision/%s" % (REPO, "0" * 40), "RevisionNotFound"),
            ("/org/absent/resolve/main/x.gguf", "RepoNotFound"),
            ("/%s/resolve/nope/README.md" % REPO, "RevisionNotFound"),
            ("/%s/resolve/main/absent.gguf" % REPO, "EntryNotFound"),
        ]
        for path, code in cases:
            for method in ("GET", "HEAD"):
                st, h, body = self.request(method, path)
                self.assertEqual((st, h.get("x-error-code")), (404, code), path)
                self.assertTrue(h.get("x-error-message"), path)
                if method == "GET":
                    self.assertIsInstance(json.loads(body)["error"], str)
        _, h, _ = self.request("HEAD", "/%s/resolve/main/absent.gguf" % REPO)
        self.assertEqual(h["x-repo-commit"], commit)

    def test_routes_beside_the_api_and_the_page(self):
        st, h, body = self.request("GET", "/")
        self.assertEqual(st, 200)
        self.assertIn("text/html", h["content-type"])
        st, _, body = self.request("GET", "/v1/models")
        self.assertEqual(st, 200)
        self.assertTrue(json.loads(body))

    def test_llama_cpp_manifest_then_resolve(self):
        """llama.cpp's -hf ORG/REPO[:TAG]: the manifest names the GGUF, then
        resolve/main serves it."""
        h = {"Accept": "application/json", "User-Agent": "llama-cpp"}
        for tag in ("latest", "Q4_K_M", "q4_k_m"):
            st, _, body = self.request("GET", "/v2/%s/manifests/%s" % (REPO, tag), h)
            self.assertEqual(st, 200, body)
            m = json.loads(body)
            self.assertEqual(m["ggufFile"]["rfilename"], "model.Q4_K_M.gguf")
            self.assertEqual(m["ggufFile"]["lfs"]["sha256"], self.gguf["sha256"])
            self.assertNotIn("mmprojFile", m)
        st, _, body = self.request("GET", "/v2/%s/manifests/latest" % VISION, h)
        m2 = json.loads(body)
        self.assertEqual(m2["ggufFile"]["rfilename"], "vision.Q8_0.gguf")
        self.assertEqual(m2["mmprojFile"]["rfilename"], "mmproj-f16.gguf")
        self.assertEqual(m2["mmprojFile"]["lfs"]["sha256"], self.proj["sha256"])
        st, h2, _ = self.request("GET", "/v2/%s/manifests/Q8_0" % REPO, h)
        self.assertEqual((st, h2.get("x-error-code")), (404, "EntryNotFound"))
        st, h2, _ = self.request("GET", "/v2/org/absent/manifests/latest", h)
        self.assertEqual((st, h2.get("x-error-code")), (404, "RepoNotFound"))
        st, h2, _ = self.request("HEAD", "/%s/resolve/main/%s" % (REPO, m["ggufFile"]["rfilename"]))
        self.assertEqual((st, h2["etag"]), (200, '"%s"' % self.gguf["sha256"]))

    # Access ---------------------------------------------------------------

    def test_gated_files_need_mirror_gated(self):
        path = "/%s/resolve/main/g.Q4_K_M.gguf" % GATED
        st, h, _ = self.request("GET", path)
        self.assertEqual((st, h.get("x-error-code")), (403, "GatedRepo"))
        # Nor does the hive pull a gated repo's file through for anyone.
        st, h, _ = self.request("GET", "/%s/resolve/main/other.gguf" % GATED)
        self.assertEqual((st, h.get("x-error-code")), (403, "GatedRepo"))
        self.assertFalse([j for j in json.loads(self.request("GET", "/v1/jobs")[2])["jobs"]
                          if "other.gguf" in (j.get("model") or "")])
        st, _, body = self.request("GET", "/api/models/%s" % GATED)
        self.assertEqual(st, 200)
        self.assertTrue(json.loads(body)["gated"])
        auth = {"Authorization": "Bearer hive-secret"}
        st, _, body = self.request("GET", path, auth, url=self.gated_url)
        self.assertEqual(st, 200)
        self.assertEqual(hashlib.sha256(body).hexdigest(), self.gated_gguf["sha256"])

    def test_token_policy_applies(self):
        path = "/%s/resolve/main/g.Q4_K_M.gguf" % GATED
        for p in (path, "/api/models/%s" % GATED, "/api/models/%s/tree/main" % GATED,
                  "/v2/%s/manifests/latest" % GATED):
            st, _, _ = self.request("GET", p, url=self.gated_url)
            self.assertEqual(st, 401, p)
            st, _, _ = self.request("GET", p, {"Authorization": "Bearer wrong"},
                                    url=self.gated_url)
            self.assertEqual(st, 401, p)

    def test_mirror_off(self):
        for path in ("/api/models/%s" % REPO, "/%s/resolve/main/README.md" % REPO,
                     "/api/models/%s/tree/main" % REPO, "/v2/%s/manifests/latest" % REPO):
            st, h, _ = self.request("GET", path, url=self.off_url)
            self.assertEqual(st, 404, path)
            self.assertNotIn("x-repo-commit", h)
        st, _, _ = self.request("GET", "/v1/models", url=self.off_url)
        self.assertEqual(st, 200)

    # Pull-through -----------------------------------------------------------

    def open_get(self, path, headers=None):
        u = urllib.parse.urlsplit(self.url)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        c.request("GET", path, headers=headers or {})
        return c, c.getresponse()

    def job(self, job_id):
        st, _, body = self.request("GET", "/v1/jobs/" + job_id)
        self.assertEqual(st, 200, body)
        return json.loads(body)

    def test_pull_through_streams_from_a_job(self):
        path = "/%s/resolve/main/pull.Q4_K_M.gguf" % PULL
        c, r = self.open_get(path)
        try:
            self.assertEqual(r.status, 200)
            self.assertEqual(r.getheader("etag"), '"%s"' % self.pulled["sha256"])
            self.assertEqual(r.getheader("x-repo-commit"), self.commits[PULL])
            job_id = r.getheader("x-rbee-job")
            self.assertTrue(job_id)
            first = r.read(1 << 20)
            # The first bytes came while the job was still downloading.
            self.assertIn(self.job(job_id)["state"], ("queued", "running"))
            body = first + r.read()
        finally:
            c.close()
        self.assertEqual(hashlib.sha256(body).hexdigest(), self.pulled["sha256"])
        deadline = time.time() + 30
        while self.job(job_id)["state"] != "succeeded" and time.time() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.job(job_id)["state"], "succeeded")
        # Now the hive holds it: served from the catalog, no job.
        st, h, body = self.request("GET", path, {"Range": "bytes=5-9"})
        self.assertEqual((st, body), (206, self.pulled_bytes()[5:10]))
        self.assertNotIn("x-rbee-job", h)
        # A small file outside LFS is answered once its job has published it.
        st, h, body = self.request("GET", "/%s/resolve/main/notes.txt" % PULL)
        self.assertEqual((st, body), (200, README.encode()))
        self.assertEqual(h["etag"], '"%s"' % git_oid(README.encode()))

    def pulled_bytes(self):
        with open(self.pulled["path"], "rb") as f:
            return f.read()

    def test_pull_through_cancel_ends_the_answer(self):
        c, r = self.open_get("/%s/resolve/main/slow.Q4_K_M.gguf" % PULL)
        try:
            job_id = r.getheader("x-rbee-job")
            self.assertTrue(job_id)
            st, _, body = self.request("POST", "/v1/jobs/%s/cancel" % job_id)
            self.assertEqual(st, 200, body)
            t0 = time.time()
            with self.assertRaises(http.client.IncompleteRead):
                r.read()
            self.assertLess(time.time() - t0, 10)
        finally:
            c.close()
        self.assertEqual(self.job(job_id)["state"], "cancelled")

    def test_listings_of_a_repo_the_hive_lacks_come_from_upstream(self):
        commit = self.commits[LISTED]
        st, _, body = self.request("GET", "/api/models/%s/revision/main?blobs=true" % LISTED)
        self.assertEqual(st, 200, body)
        info = json.loads(body)
        self.assertEqual(info["sha"], commit)
        sib = {x["rfilename"]: x for x in info["siblings"]}
        self.assertEqual(sib["listed.Q4_K_M.gguf"]["lfs"]["sha256"], self.fresh["sha256"])
        self.assertEqual(sib["README.md"]["blobId"], git_oid(README.encode()))
        ours, _ = self.tree("/api/models/%s/tree/main?recursive=true&limit=2" % LISTED)
        _, _, hub = self.hub_request("GET", "/api/models/%s/tree/%s?recursive=true" % (LISTED, commit))
        files = lambda es: sorted((e for e in es if e["type"] == "file"), key=lambda e: e["path"])
        self.assertEqual(files(ours), files(json.loads(hub)))
        st, _, body = self.request("POST", "/api/models/%s/paths-info/%s" % (LISTED, commit),
                                   {"Content-Type": "application/json"},
                                   json.dumps({"paths": ["README.md", "sub"]}))
        self.assertEqual(sorted(e["path"] for e in json.loads(body)), ["README.md", "sub"])
        # Listing starts no download; the files come when asked for.
        self.assertFalse([j for j in json.loads(self.request("GET", "/v1/jobs")[2])["jobs"]
                          if LISTED in (j.get("model") or "")])

    def test_pull_through_unknown_upstream(self):
        for path, code in (("/org/nowhere/resolve/main/x.gguf", "RepoNotFound"),
                           ("/%s/resolve/nope/x.gguf" % PULL, "RevisionNotFound"),
                           ("/%s/resolve/main/none.gguf" % PULL, "EntryNotFound")):
            st, h, _ = self.request("HEAD", path)
            self.assertEqual((st, h.get("x-error-code")), (404, code), path)

    # A real client ----------------------------------------------------------

    def test_another_hive_pulls_from_this_one(self):
        from daemonhelp import start_daemon
        proc, url, _ = start_daemon(self.tmp, "second", self.url, level="warn")
        self.daemons.append(proc)
        self.hub.reset_requests()
        self.pull(url, REPO + ":*")
        self.pull(url, REPO + ":model.Q4_K_M.gguf@" + self.commits[REPO])
        self.assertEqual(self.hub.requests(), [])
        st, _, body = self.request("GET", "/%s/resolve/main/model.Q4_K_M.gguf" % REPO, url=url)
        self.assertEqual(st, 200)
        self.assertEqual(hashlib.sha256(body).hexdigest(), self.gguf["sha256"])

    def test_huggingface_js_downloads_by_branch_and_commit(self):
        node, why = node_ok()
        if not node:
            self.skipTest(why)
        if not os.path.exists(os.path.join(UI, "node_modules", "@huggingface", "hub",
                                           "package.json")):
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=UI, check=True, timeout=280)
        script = os.path.join(UI, "hf-download.mjs")
        commit = self.commits[REPO]
        for rev in ("main", commit):
            cache = os.path.join(self.tmp, "js-cache-" + rev[:8])
            p = subprocess.run([node, script, self.url, REPO, rev, cache], cwd=UI,
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            snap = json.loads(p.stdout.strip().splitlines()[-1])["snapshot"]
            self.assertTrue(snap.endswith(commit), snap)
            with open(os.path.join(snap, "model.Q4_K_M.gguf"), "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(), self.gguf["sha256"])
            with open(os.path.join(snap, "sub", "config.json")) as f:
                self.assertEqual(f.read(), CONFIG)
            blobs = sorted(os.listdir(os.path.join(cache, "models--org--mirror-GGUF", "blobs")))
            self.assertIn(self.gguf["sha256"], blobs)
            self.assertIn(git_oid(README.encode()), blobs)
        # A file the hive lacks comes through it, by branch and by commit.
        out = os.path.join(self.tmp, "js.gguf")
        for rev in ("main", self.commits[PULL]):
            p = subprocess.run([node, script, self.url, PULL, rev, out, "js.Q8_0.gguf"],
                               cwd=UI, capture_output=True, text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            with open(out, "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(), self.js["sha256"])
        # A whole model the hive has never held: listed upstream, every file pulled through.
        cache = os.path.join(self.tmp, "js-fresh")
        p = subprocess.run([node, script, self.url, FRESH, "main", cache], cwd=UI,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        snap = json.loads(p.stdout.strip().splitlines()[-1])["snapshot"]
        with open(os.path.join(snap, "fresh.Q4_K_M.gguf"), "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), self.fresh["sha256"])
        with open(os.path.join(snap, "sub", "config.json")) as f:
            self.assertEqual(f.read(), CONFIG)
        st, _, body = self.request("GET", "/v1/models/" + urllib.parse.quote(
            "hf:%s:fresh.Q4_K_M.gguf" % FRESH, safe=""))
        self.assertEqual(st, 200, body)
        # The hive was the only source: the client never reached the hub.
        self.assertFalse([r for r in self.hub.requests() if "node" in
                          (r["headers"].get("user-agent") or "")])


if __name__ == "__main__":
    unittest.main()
