"""A cache shared with other programs, through the real daemon and CLI: an
entry huggingface_hub left (non-LFS files in blobs named by their git sha1)
is adopted as it is and survives `rm`; a damaged blob is hashed and fetched
again by the next pull; a blob found in the cache is hashed once before it
is trusted; a partial download can be discarded with `rm`.
"""

import hashlib
import json
import os
import shutil
import sqlite3
import sys
import time
import unittest
import urllib.parse
import urllib.request

SRC = os.environ.get("RBEE_SRC", os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "tests", "fakehub"))
from clihelp import CliMixin  # noqa: E402
from daemonhelp import DaemonTestCase  # noqa: E402
import fixtures  # noqa: E402

README = b"# shared\n"
CONFIG = b'{"architectures": ["LlamaForCausalLM"]}\n'


def git_oid(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256_of(path):
    return fixtures.sha256_file(path)


def flip_byte(path, offset=4096, keep_mtime=False):
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        # A write moves the mtime; make sure it moved even on a coarse clock.
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


class SharedCacheTest(CliMixin, DaemonTestCase):
    tmp_prefix = "rbee-shared-cache-"
    serve_defaults = {"level": "warn", "hf_home": "hf-home"}

    @classmethod
    def hub_config(cls):
        t = lambda *p: os.path.join(cls.tmp, *p)
        os.makedirs(t("src"))
        cls.gguf = fixtures.write_gguf(t("src", "m.gguf"), size=1 << 20, seed=61)
        cls.small = fixtures.write_gguf(t("src", "small.gguf"), size=1 << 20, seed=62)
        cls.found = fixtures.write_gguf(t("src", "found.gguf"), size=1 << 20, seed=63)
        cls.bad = fixtures.write_gguf(t("src", "bad.gguf"), size=1 << 20, seed=64)
        slow = fixtures.write_gguf(t("src", "slow.gguf"), size=16 << 20, seed=65)
        cls.slow_sha = slow["sha256"]
        repos = [
            fixtures.make_repo("org/shared-GGUF", [
                fixtures.make_file("model.Q4_K_M.gguf", cls.gguf),
                fixtures.make_file("README.md", content=README.decode()),
                fixtures.make_file("config.json", content=CONFIG.decode())]),
            fixtures.make_repo("org/small-GGUF", [fixtures.make_file("s.Q4_K_M.gguf", cls.small)]),
            fixtures.make_repo("org/found-GGUF", [fixtures.make_file("f.Q4_K_M.gguf", cls.found)]),
            fixtures.make_repo("org/bad-GGUF", [fixtures.make_file("b.Q4_K_M.gguf", cls.bad)]),
            fixtures.make_repo("org/slow-GGUF", [fixtures.make_file(
                "slow.Q4_K_M.gguf", slow, faults={"rate_limit_bps": 400000})]),
        ]
        cls.commits = {r["id"]: r["revisions"]["main"] for r in repos}
        return fixtures.make_config(repos)

    @classmethod
    def set_up_class(cls):
        cls.cache = os.path.join(cls.tmp, "hfcache")
        os.makedirs(cls.cache)
        cls.daemon, cls.url = cls.serve("hive", ["--hf-cache", cls.cache])

    def setUp(self):
        self.hub.reset()

    def api(self, path, method="GET"):
        req = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def model(self, mid):
        return self.api("/v1/models/" + urllib.parse.quote(mid, safe=""))

    def repo_dir(self, repo_id):
        return os.path.join(self.cache, "models--" + repo_id.replace("/", "--"))

    def pull(self, ref):
        rc, out, err = self.run_cli("pull", "--json", ref)
        self.assertEqual(rc, 0, out + err)
        return next(json.loads(l)["data"] for l in out.splitlines()
                    if json.loads(l)["event"] == "data")

    def hub_gets(self, suffix):
        return [q for q in self.hub.requests() if q["method"] in ("GET", "HEAD") and
                q["path"].endswith(suffix)]

    def seed_blob(self, repo_id, gguf):
        """Puts gguf's content in the cache as another program would: blobs/<sha256>."""
        rd = self.repo_dir(repo_id)
        os.makedirs(os.path.join(rd, "blobs"))
        blob = os.path.join(rd, "blobs", gguf["sha256"])
        shutil.copyfile(gguf["path"], blob)
        return blob

    def cdn_gets(self):
        return [q for q in self.hub.requests(host="cdn") if q["method"] == "GET"]

    # 1. Other programs' files --------------------------------------------

    def test_huggingface_hub_entries_are_adopted_and_survive_rm(self):
        repo = "org/shared-GGUF"
        commit = self.commits[repo]
        rd = self.repo_dir(repo)
        snap = os.path.join(rd, "snapshots", commit)
        # As huggingface_hub leaves non-LFS files: blobs named by the git sha1.
        os.makedirs(os.path.join(rd, "blobs"))
        os.makedirs(snap)
        os.makedirs(os.path.join(rd, "refs"))
        theirs = {"README.md": README, "config.json": CONFIG}
        for name, data in theirs.items():
            with open(os.path.join(rd, "blobs", git_oid(data)), "wb") as f:
                f.write(data)
            os.symlink("../../blobs/" + git_oid(data), os.path.join(snap, name))
        with open(os.path.join(rd, "refs", "main"), "w") as f:
            f.write(commit)

        data = self.pull(repo + ":*")
        # Their files were checked against the listing, not downloaded again.
        self.assertEqual(self.hub_gets("/README.md"), [])
        self.assertEqual(self.hub_gets("/config.json"), [])
        for name, data_ in theirs.items():
            self.assertEqual(os.readlink(os.path.join(snap, name)), "../../blobs/" + git_oid(data_))
        self.assertEqual(os.readlink(os.path.join(snap, "model.Q4_K_M.gguf")),
                         "../../blobs/" + self.gguf["sha256"])
        m = self.model(data["id"])
        self.assertEqual(m["status"], "available")
        files = {f["path"]: f["sha256"] for f in m["files"]}
        self.assertEqual(files["README.md"], hashlib.sha256(README).hexdigest())
        rc, out, err = self.run_cli("verify", data["id"])
        self.assertEqual(rc, 0, out + err)

        rc, out, err = self.run_cli("rm", data["id"])
        self.assertEqual(rc, 0, err)
        # What rbee-hive made is gone; what huggingface_hub made stays, and
        # its local_files_only lookup (refs/main -> snapshot -> blob) works.
        self.assertFalse(os.path.lexists(os.path.join(snap, "model.Q4_K_M.gguf")))
        self.assertFalse(os.path.exists(os.path.join(rd, "blobs", self.gguf["sha256"])))
        with open(os.path.join(rd, "refs", "main")) as f:
            self.assertEqual(f.read(), commit)
        for name, data_ in theirs.items():
            with open(os.path.join(rd, "snapshots", commit, name), "rb") as f:
                self.assertEqual(f.read(), data_)

    # 4. Repair ------------------------------------------------------------

    def test_pull_repairs_what_verify_found_bad(self):
        data = self.pull("org/small-GGUF")
        blob = os.path.realpath(data["path"])
        flip_byte(blob, keep_mtime=True)
        rc, out, err = self.run_cli("verify", data["id"])
        self.assertEqual(rc, 1, out)
        self.assertEqual(self.model(data["id"])["status"], "failed")
        self.hub.reset()
        self.pull("org/small-GGUF")
        self.assertTrue(self.cdn_gets(), "the damaged blob was fetched again")
        self.assertEqual(sha256_of(blob), self.small["sha256"])
        self.assertEqual(self.model(data["id"])["status"], "available")
        self.run_cli("rm", data["id"])

    def test_pull_hashes_a_blob_whose_mtime_changed(self):
        data = self.pull("org/small-GGUF")
        blob = os.path.realpath(data["path"])
        self.hub.reset()
        self.pull("org/small-GGUF")
        self.assertEqual(self.cdn_gets(), [], "an unchanged blob is not fetched again")
        flip_byte(blob)
        self.hub.reset()
        self.pull("org/small-GGUF")
        self.assertTrue(self.cdn_gets(), "the changed blob was hashed and fetched again")
        self.assertEqual(sha256_of(blob), self.small["sha256"])
        self.run_cli("rm", data["id"])

    def test_blob_found_in_the_cache_is_hashed_once_and_recorded(self):
        sha = self.found["sha256"]
        blob = self.seed_blob("org/found-GGUF", self.found)
        data = self.pull("org/found-GGUF")
        self.assertEqual(self.cdn_gets(), [])
        db = sqlite3.connect(os.path.join(self.tmp, "hive", "catalog.db"))
        try:
            row = db.execute("SELECT size, mtime_ns, verified_ms, adopted FROM blobs"
                             " WHERE repo_dir = ? AND name = ?",
                             ("models--org--found-GGUF", sha)).fetchone()
        finally:
            db.close()
        st = os.stat(blob)
        self.assertEqual(row[:2], (st.st_size, st.st_mtime_ns))
        self.assertGreater(row[2], 0)
        self.assertEqual(row[3], 1, "another program's blob")
        # Not rbee-hive's: rm leaves it.
        rc, out, err = self.run_cli("rm", data["id"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(sha256_of(blob), sha)

    def test_damaged_blob_found_in_the_cache_is_not_trusted(self):
        sha = self.bad["sha256"]
        blob = self.seed_blob("org/bad-GGUF", self.bad)
        flip_byte(blob)
        data = self.pull("org/bad-GGUF")
        self.assertTrue(self.cdn_gets())
        self.assertEqual(sha256_of(blob), sha)
        self.assertEqual(sha256_of(data["path"]), sha)
        self.run_cli("rm", data["id"])

    # 5. Partial downloads -------------------------------------------------

    def test_rm_discards_a_partial_download(self):
        rc, out, err = self.run_cli("pull", "--detach", "org/slow-GGUF")
        self.assertEqual(rc, 0, err)
        job_id = out.strip()
        deadline = time.time() + 20
        while time.time() < deadline:
            job = self.api("/v1/jobs/" + job_id)
            if (job.get("progress") or {}).get("bytes_done", 0) > 0:
                break
            time.sleep(0.05)
        rc, out, err = self.run_cli("cancel", job_id)
        self.assertEqual(rc, 0, err)
        deadline = time.time() + 20
        while time.time() < deadline:
            parts = [p for p in self.api("/v1/partials")["partials"] if p["sha256"] == self.slow_sha]
            if parts and not parts[0]["writing"]:
                break
            time.sleep(0.05)
        rd = self.repo_dir("org/slow-GGUF")
        self.assertEqual(sorted(os.listdir(rd)), ["blobs", "refs", "snapshots"])
        rc, out, err = self.run_cli("rm", self.slow_sha[:12])
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip(), "deleted partial download %s of models--org--slow-GGUF"
                         % self.slow_sha)
        self.assertEqual([p for p in self.api("/v1/partials")["partials"]
                          if p["sha256"] == self.slow_sha], [])
        self.assertFalse(os.path.exists(rd), os.listdir(rd) if os.path.exists(rd) else None)


if __name__ == "__main__":
    unittest.main()
