"""Provisioning from the fake Hub through provision-run: selectors, revisions,
gated and missing repos, the already-available fast path, shared blobs,
concurrent and cancelled jobs, a shared --hf-cache layout, and the listing
endpoint for GET /v1/sources/hf."""

import fcntl
import os
import shutil
import tempfile
import threading
import unittest

from daemonhelp import DaemonTestCase
import provision_run as pr
import fixtures

REPO = "org/split-GGUF"
SHARDS = ["m-Q4_K_M-0000%d-of-00003.gguf" % i for i in (1, 2, 3)]
TOKEN = fixtures.DEFAULT_TOKEN
BIG_SIZE = 8 << 20
BIG_RATE = 3 << 20  # bytes/s per connection: the big file takes a few seconds


class ProvisionHF(DaemonTestCase):
    tmp_prefix = "prov-hf-"

    @classmethod
    def hub_config(cls):
        t = lambda *p: os.path.join(cls.tmp, *p)
        os.makedirs(t("src"))
        os.makedirs(t("home"))
        cls.shards = [fixtures.write_gguf(t("src", "s%d.gguf" % i), size=(1 << 20) + i * 4096,
                                          seed=10 + i, split=(i, 3), use_tool=False)
                      for i in range(3)]
        cls.q8 = fixtures.write_gguf(t("src", "q8.gguf"), size=1 << 20, seed=20,
                                     file_type="Q8_0", arch="qwen2", context_length=32768,
                                     use_tool=False)
        cls.old = fixtures.write_gguf(t("src", "old.gguf"), size=512 << 10, seed=30,
                                      use_tool=False)
        cls.new = fixtures.write_gguf(t("src", "new.gguf"), size=512 << 10, seed=31,
                                      use_tool=False)
        cls.big = fixtures.write_gguf(t("src", "big.gguf"), size=BIG_SIZE, seed=40,
                                      use_tool=False)
        cls.shared = fixtures.write_gguf(t("src", "shared.gguf"), size=1 << 20, seed=50,
                                         use_tool=False)
        with open(fixtures.write_gguf(t("src", "tiny.gguf"), size=4096, seed=60,
                                      use_tool=False)["path"], "rb") as f:
            cls.tiny_gguf = f.read()
        split_files = [fixtures.make_file(p, s) for p, s in zip(SHARDS, cls.shards)]
        split_files += [fixtures.make_file("m-Q8_0.gguf", cls.q8),
                        fixtures.make_file("README.md", content="# split\n")]
        cls.commit_old = fixtures.fake_commit("pinned", "old")
        cls.commit_new = fixtures.fake_commit("pinned", "new")
        repos = [
            fixtures.make_repo(REPO, split_files),
            fixtures.make_repo("org/pinned", commits={
                cls.commit_old: [fixtures.make_file("p.Q4_K_M.gguf", cls.old)],
                cls.commit_new: [fixtures.make_file("p.Q4_K_M.gguf", cls.new)],
            }, revisions={"main": cls.commit_new, "v1": cls.commit_old}, tags=["v1"]),
            fixtures.make_repo("org/gated", [fixtures.make_file("g.Q4_K_M.gguf", cls.q8)],
                               gated="manual"),
            fixtures.make_repo("org/big", [fixtures.make_file(
                "big.Q4_K_M.gguf", cls.big, faults={"rate_limit_bps": BIG_RATE})]),
            fixtures.make_repo("org/shared-a", [fixtures.make_file("a.Q4_K_M.gguf", cls.shared)]),
            fixtures.make_repo("org/shared-b", [fixtures.make_file("b.Q4_K_M.gguf", cls.shared)]),
            fixtures.make_repo("org/renamed", [fixtures.make_file("r.Q4_K_M.gguf", cls.old)],
                               renamed_from=["oldorg/renamed"]),
            fixtures.make_repo("org/expiring", [fixtures.make_file(
                "e.Q4_K_M.gguf", cls.shared,
                faults={"url_ttl_seconds": 0.5, "rate_limit_bps": 1 << 20,
                        "drop_after_bytes": {"bytes": 768 << 10, "count": 1}})]),
            fixtures.make_repo("org/busy", [fixtures.make_file(
                "busy.Q4_K_M.gguf", cls.new,
                faults={"status_429": {"count": 1, "retry_after": 1}})]),
            # Files git stores itself, whose bytes a server flips: only the git blob id tells.
            fixtures.make_repo("org/nonlfs", [
                fixtures.make_file("config.json", content='{"model_type": "llama"}\n',
                                   faults={"corrupt": 3}),
                fixtures.make_file("tiny.Q4_K_M.gguf", content=cls.tiny_gguf, lfs=False,
                                   faults={"corrupt": 100}),
                fixtures.make_file("README.md", content="# fine\n"),
            ]),
            # The listing says 0 bytes; the CDN streams without Content-Length for ever.
            fixtures.make_repo("org/empty", [fixtures.make_file(
                "empty.bin", content="", lfs=True, faults={"extra_bytes": 64 << 20})]),
        ]
        cls.commit_split = next(r["revisions"]["main"] for r in repos if r["id"] == REPO)
        return fixtures.make_config(repos)

    def setUp(self):
        self.data = tempfile.mkdtemp(dir=self.tmp, prefix="data-")
        self.env = pr.clean_env(os.path.join(self.tmp, "home"), self.hub.hub_url)
        self.hub.reset()

    def pull(self, *refs, env=None, opts=()):
        return pr.run(env or self.env, self.data, refs, *opts)

    def blob(self, repo_dir, sha, hub=None):
        return os.path.join(hub or os.path.join(self.data, "hub"), repo_dir, "blobs", sha)

    def assert_done(self, r, job=0):
        end = r.end(job)
        self.assertEqual(end["event"], "done", "%r\n%s" % (end, r.stderr))
        return end

    def assert_error(self, r, code, message):
        end = r.end(0)
        self.assertEqual(end["event"], "error", r.stderr)
        self.assertEqual(end["code"], code)
        self.assertIn(message, end["message"])
        self.assertEqual(r.models(), [], "a failed pull must leave the catalog as it was")

    # Selectors -----------------------------------------------------------

    def test_quant_tag_pulls_every_shard_in_order(self):
        r = self.pull("hf:%s:q4_k_m" % REPO)
        end = self.assert_done(r)
        self.assertEqual(end["id"], "hf:%s:%s" % (REPO, SHARDS[0]))
        models = r.models()
        self.assertEqual(len(models), 1)
        m = models[0]
        self.assertEqual([f["path"] for f in m["files"]], SHARDS)
        self.assertEqual([f["sha256"] for f in m["files"]], [s["sha256"] for s in self.shards])
        self.assertEqual(m["size"], sum(s["size"] for s in self.shards))
        self.assertEqual(m["commit"], self.commit_split)
        self.assertEqual((m["architecture"], m["quantization"], m["context_length"]),
                         ("llama", "Q4_K_M", 4096))
        for f in m["files"]:
            self.assertEqual(pr.sha256_file(self.blob(m["repo_dir"], f["sha256"])), f["sha256"])
        # Progress: every phase, files counted up to 3, bytes up to the total.
        prog = r.of(0, "progress")
        self.assertEqual({p["phase"] for p in prog},
                         {"resolving", "downloading", "verifying", "publishing"})
        self.assertEqual(prog[-1]["files_done"], 3)
        self.assertEqual(prog[-1]["bytes_done"], m["size"])
        self.assertTrue(all(a["bytes_done"] <= b["bytes_done"] or b["phase"] == "resolving"
                            for a, b in zip(prog, prog[1:])))

    def test_exact_path(self):
        r = self.pull("%s:m-Q8_0.gguf" % REPO)
        end = self.assert_done(r)
        self.assertEqual(end["id"], "hf:%s:m-Q8_0.gguf" % REPO)
        m = r.models()[0]
        self.assertEqual([f["path"] for f in m["files"]], ["m-Q8_0.gguf"])
        self.assertEqual((m["architecture"], m["quantization"], m["context_length"]),
                         ("qwen2", "Q8_0", 32768))
        self.assertTrue(end["path"].endswith("/snapshots/%s/m-Q8_0.gguf" % self.commit_split))
        self.assertEqual(pr.sha256_file(end["path"]), self.q8["sha256"])

    def test_whole_snapshot_with_a_small_file(self):
        r = self.pull("hf:%s:*" % REPO)
        end = self.assert_done(r)
        m = r.models()[0]
        self.assertEqual(sorted(f["path"] for f in m["files"]),
                         sorted(SHARDS + ["m-Q8_0.gguf", "README.md"]))
        readme = os.path.join(os.path.dirname(end["path"]), "README.md")
        with open(readme) as f:
            self.assertEqual(f.read(), "# split\n")
        # The small file came from the Hub itself, with no token to send.
        self.assertTrue(any(q["method"] == "GET" and q["path"].endswith("/README.md")
                            for q in self.hub.requests(host="hub")))

    def test_whole_snapshot_is_its_own_entry(self):
        self.assert_done(self.pull("%s:m-Q8_0.gguf" % REPO))
        self.hub.reset()
        r = self.pull("%s:*" % REPO)
        end = self.assert_done(r)
        self.assertEqual(end["id"], "hf:%s:*" % REPO)
        by_id = {m["id"]: m for m in r.models()}
        self.assertEqual(sorted(by_id), ["hf:%s:*" % REPO, "hf:%s:m-Q8_0.gguf" % REPO])
        self.assertEqual(sorted(f["path"] for f in by_id["hf:%s:*" % REPO]["files"]),
                         sorted(SHARDS + ["m-Q8_0.gguf", "README.md"]))
        # Every file the snapshot lacked was fetched; the one it had was not.
        cdn = [q["file"] for q in self.hub.requests(host="cdn") if q["method"] == "GET"]
        self.assertEqual(sorted(set(cdn)), sorted(SHARDS))
        snap = os.path.join(self.data, "hub", "models--org--split-GGUF", "snapshots",
                            self.commit_split)
        for f in SHARDS + ["m-Q8_0.gguf", "README.md"]:
            self.assertTrue(os.path.isfile(os.path.join(snap, f)), f)
        # Again: the snapshot is available, nothing more is fetched.
        self.hub.reset()
        r = self.pull("hf:%s:*" % REPO)
        self.assertEqual(self.assert_done(r)["id"], "hf:%s:*" % REPO)
        self.assertEqual(self.hub.requests(host="cdn"), [])

    def test_default_prefers_q4_k_m(self):
        end = self.assert_done(self.pull("hf:" + REPO))
        self.assertEqual(end["id"], "hf:%s:%s" % (REPO, SHARDS[0]))

    # Revisions -----------------------------------------------------------

    def test_revision_tag_is_pinned_to_its_commit(self):
        r = self.pull("hf:org/pinned@v1")
        self.assert_done(r)
        m = r.models()[0]
        self.assertEqual(m["commit"], self.commit_old)
        self.assertEqual(m["revision"], "v1")
        self.assertEqual(m["files"][0]["sha256"], self.old["sha256"])
        refs = os.path.join(self.data, "hub", "models--org--pinned", "refs", "v1")
        with open(refs) as f:
            self.assertEqual(f.read(), self.commit_old)

    def test_two_revisions_are_two_catalog_entries(self):
        repo_dir = os.path.join(self.data, "hub", "models--org--pinned")
        snap = lambda c: os.path.join(repo_dir, "snapshots", c, "p.Q4_K_M.gguf")
        self.assertEqual(self.assert_done(self.pull("org/pinned:Q4_K_M"))["id"],
                         "hf:org/pinned:p.Q4_K_M.gguf")
        r = self.pull("org/pinned:Q4_K_M@v1")
        self.assertEqual(self.assert_done(r)["id"], "hf:org/pinned:p.Q4_K_M.gguf@v1")
        by_id = {m["id"]: m for m in r.models()}
        self.assertEqual(sorted(by_id), ["hf:org/pinned:p.Q4_K_M.gguf",
                                         "hf:org/pinned:p.Q4_K_M.gguf@v1"])
        self.assertEqual((by_id["hf:org/pinned:p.Q4_K_M.gguf"]["revision"],
                          by_id["hf:org/pinned:p.Q4_K_M.gguf"]["commit"]),
                         ("main", self.commit_new))
        self.assertEqual((by_id["hf:org/pinned:p.Q4_K_M.gguf@v1"]["revision"],
                          by_id["hf:org/pinned:p.Q4_K_M.gguf@v1"]["commit"]),
                         ("v1", self.commit_old))
        # Both snapshots stay, each ref names its own commit.
        self.assertEqual(pr.sha256_file(snap(self.commit_new)), self.new["sha256"])
        self.assertEqual(pr.sha256_file(snap(self.commit_old)), self.old["sha256"])
        for rev, commit in (("main", self.commit_new), ("v1", self.commit_old)):
            with open(os.path.join(repo_dir, "refs", rev)) as f:
                self.assertEqual(f.read(), commit)
        # Pulling either again changes nothing: no download, nothing flips.
        self.hub.reset()
        for ref, commit in (("org/pinned:Q4_K_M", self.commit_new),
                            ("hf:org/pinned:p.Q4_K_M.gguf@v1", self.commit_old)):
            r = self.pull(ref)
            self.assertIn("is already available", " ".join(
                e.get("line", "") for e in r.of(0, "narrate")), r.events)
            self.assertEqual(len(r.models()), 2)
        self.assertEqual(self.hub.requests(host="cdn"), [])
        self.assertTrue(os.path.exists(snap(self.commit_new)))
        self.assertTrue(os.path.exists(snap(self.commit_old)))

    def test_revision_commit(self):
        r = self.pull("hf:org/pinned@" + self.commit_new)
        self.assert_done(r)
        m = r.models()[0]
        self.assertEqual(m["commit"], self.commit_new)
        self.assertEqual(m["files"][0]["sha256"], self.new["sha256"])
        # huggingface_hub writes no ref for a commit given as the revision.
        refs = os.path.join(self.data, "hub", "models--org--pinned", "refs")
        self.assertFalse(os.path.exists(os.path.join(refs, self.commit_new)))

    # Gated, missing ------------------------------------------------------

    def test_gated_without_and_with_token(self):
        r = self.pull("hf:org/gated")
        self.assert_error(r, "gated", "'org/gated' is gated: accept its terms on the Hub, then "
                          "give the daemon a token: HF_TOKEN in the daemon's environment")
        env = dict(self.env, HF_TOKEN=TOKEN)
        self.hub.reset()
        self.assert_done(self.pull("hf:org/gated", env=env))
        # The token went to the Hub only, never to the CDN.
        reqs = self.hub.requests()
        self.assertTrue(any("authorization" in q["headers"] for q in reqs if q["host"] == "hub"))
        self.assertFalse(any("authorization" in q["headers"] for q in reqs if q["host"] == "cdn"))

    def test_gated_with_token_file(self):
        hf_home = os.path.join(self.tmp, "hfhome")
        os.makedirs(hf_home, exist_ok=True)
        with open(os.path.join(hf_home, "token"), "w") as f:
            f.write(TOKEN + "\n")
        env = dict(self.env, HF_HOME=hf_home)
        end = self.assert_done(self.pull("hf:org/gated", env=env))
        # HF_HOME also moves the hub cache, as for huggingface_hub.
        self.assertTrue(end["path"].startswith(os.path.join(hf_home, "hub") + "/"), end["path"])

    def test_not_found(self):
        cases = [
            ("hf:org/nope", "not_found", "repo 'org/nope' not found"),
            ("hf:%s@nope" % REPO, "not_found", "revision 'nope' not found in %s" % REPO),
            ("hf:%s:sub/x.gguf" % REPO, "not_found", "file 'sub/x.gguf' not found in %s" % REPO),
            ("hf:%s:Q5_K_M" % REPO, "not_found",
             "no GGUF file matching Q5_K_M in %s; available: Q4_K_M, Q8_0" % REPO),
        ]
        for ref, code, msg in cases:
            with self.subTest(ref=ref):
                self.assert_error(self.pull(ref), code, msg)
        self.assertEqual(self.hub.requests(host="cdn"), [])

    # Idempotence and sharing ---------------------------------------------

    def test_already_available_fast_path(self):
        self.assert_done(self.pull("hf:%s:Q4_K_M" % REPO))
        self.hub.reset()
        r = self.pull("hf:%s:Q4_K_M" % REPO)
        self.assert_done(r)
        reqs = self.hub.requests()
        self.assertEqual([q["host"] for q in reqs], ["hub"], reqs)
        self.assertEqual(len(r.models()), 1)
        # Offline: no request at all.
        self.hub.reset()
        self.assert_done(self.pull("hf:%s:Q4_K_M" % REPO, env=dict(self.env, HF_HUB_OFFLINE="1")))
        self.assert_done(self.pull("hf:%s:Q4_K_M" % REPO, opts=["--offline"]))
        self.assertEqual(self.hub.requests(), [])

    def test_offline_without_local_copy_fails_clearly(self):
        r = self.pull("hf:%s:Q8_0" % REPO, env=dict(self.env, HF_HUB_OFFLINE="yes"))
        self.assert_error(r, "offline", "offline")
        self.assertEqual(self.hub.requests(), [])

    def test_offline_serves_a_model_huggingface_hub_left_in_the_cache(self):
        cache = os.path.join(self.tmp, "hfcache-offline")
        shutil.rmtree(cache, ignore_errors=True)
        sha = self.q8["sha256"]
        rd = os.path.join(cache, "models--org--split-GGUF")
        snap = os.path.join(rd, "snapshots", self.commit_split)
        for d in ("blobs", "refs", snap):
            os.makedirs(os.path.join(rd, d), exist_ok=True)
        shutil.copyfile(self.q8["path"], os.path.join(rd, "blobs", sha))
        os.symlink("../../blobs/" + sha, os.path.join(snap, "m-Q8_0.gguf"))
        with open(os.path.join(rd, "refs", "main"), "w") as f:
            f.write(self.commit_split)
        env = dict(self.env, HF_HUB_OFFLINE="1", HF_HUB_CACHE=cache)
        r = self.pull("hf:%s:Q8_0" % REPO, env=env)
        end = self.assert_done(r)
        self.assertEqual(end["id"], "hf:%s:m-Q8_0.gguf" % REPO)
        self.assertEqual(r.models()[0]["quantization"], "Q8_0")
        self.assertEqual(self.hub.requests(), [])
        r = self.pull("hf:%s:Q4_K_M" % REPO, env=env)
        end = r.end(0)
        self.assertEqual((end["event"], end["code"]), ("error", "offline"))
        self.assertIn("no GGUF file matching Q4_K_M", end["message"])

    def test_shared_blob_between_two_models_is_linked(self):
        self.assert_done(self.pull("hf:org/shared-a"))
        self.hub.reset()
        r = self.pull("hf:org/shared-b")
        self.assert_done(r)
        self.assertEqual(self.hub.requests(host="cdn"), [])
        sha = self.shared["sha256"]
        a = os.stat(self.blob("models--org--shared-a", sha))
        b = os.stat(self.blob("models--org--shared-b", sha))
        self.assertEqual((a.st_dev, a.st_ino), (b.st_dev, b.st_ino), "hard link, not a copy")
        self.assertEqual(len(r.models()), 2)

    def test_blob_already_in_a_shared_cache_is_not_fetched(self):
        # As huggingface_hub would have left it: blob, snapshot link, ref.
        cache = os.path.join(self.tmp, "hfcache-pre")
        shutil.rmtree(cache, ignore_errors=True)
        sha = self.q8["sha256"]
        rd = os.path.join(cache, "models--org--split-GGUF")
        os.makedirs(os.path.join(rd, "blobs"))
        shutil.copyfile(self.q8["path"], os.path.join(rd, "blobs", sha))
        r = self.pull("%s:Q8_0" % REPO, opts=["--hf-cache", cache])
        self.assert_done(r)
        self.assertEqual(self.hub.requests(host="cdn"), [])
        self.assertEqual(r.models()[0]["files"][0]["sha256"], sha)

    def test_two_jobs_same_blob_one_transfer(self):
        r = self.pull("hf:org/big", "hf:org/big", opts=["--start-gap-ms", "300"])
        self.assertEqual(r.rc, 0, r.stderr)
        self.assert_done(r, 0)
        self.assert_done(r, 1)
        stats = self.hub.stats()["files"]["org/big:big.Q4_K_M.gguf"]
        self.assertLessEqual(stats["bytes_sent"], BIG_SIZE + (BIG_SIZE >> 4), stats)
        # Both watched the same transfer move.
        for job in (0, 1):
            moving = [p for p in r.of(job, "progress")
                      if p["phase"] == "downloading" and 0 < p["bytes_done"] < BIG_SIZE]
            self.assertTrue(moving, "job %d saw no progress" % job)
        self.assertEqual(len(r.models()), 1)

    def test_cancel_one_of_two_jobs_leaves_the_other_running(self):
        r = self.pull("hf:org/big", "hf:org/big",
                      opts=["--start-gap-ms", "300", "--cancel", "1:%d" % (1 << 20)])
        self.assertEqual(r.rc, 0, r.stderr)
        first, second = r.end(0), r.end(1)
        self.assertEqual(second["event"], "cancelled", r.stderr)
        self.assertEqual(first["event"], "done", r.stderr)
        self.assertLess(second["elapsed_ms"], first["elapsed_ms"])
        stats = self.hub.stats()["files"]["org/big:big.Q4_K_M.gguf"]
        self.assertLessEqual(stats["bytes_sent"], BIG_SIZE + (BIG_SIZE >> 4), stats)
        self.assertEqual(pr.sha256_file(first["path"]), self.big["sha256"])

    def test_cancel_only_job_stops_the_transfer_and_resume_continues(self):
        r = self.pull("hf:org/big", opts=["--cancel", "0:%d" % (1 << 20)])
        self.assertEqual(r.end(0)["event"], "cancelled", r.stderr)
        self.assertLess(r.end(0)["elapsed_ms"], 2000)
        self.assertEqual(r.models(), [])
        stats = self.hub.stats()["files"]["org/big:big.Q4_K_M.gguf"]
        self.assertLess(stats["bytes_sent"], BIG_SIZE)
        partial = self.blob("models--org--big", self.big["sha256"]) + ".partial"
        self.assertTrue(os.path.exists(partial), "the partial stays for resume")
        # A repo folder of only a partial is still a valid cache entry for scanners.
        rd = os.path.join(self.data, "hub", "models--org--big")
        self.assertEqual(sorted(os.listdir(rd)), ["blobs", "refs", "snapshots"])
        # The next pull resumes: it fetches only what is missing.
        self.hub.reset()
        end = self.assert_done(self.pull("hf:org/big"))
        cdn = [q for q in self.hub.requests(host="cdn") if q["method"] == "GET"]
        self.assertTrue(cdn)
        self.assertTrue(all((q["range"] or "").startswith("bytes=") for q in cdn), cdn)
        self.assertGreater(min(int(q["range"][6:].split("-")[0]) for q in cdn), 0, cdn)
        self.assertEqual(pr.sha256_file(end["path"]), self.big["sha256"])
        self.assertFalse(os.path.exists(partial))

    # Shared cache layout -------------------------------------------------

    def test_blob_locked_by_another_program_is_waited_for_and_narrated(self):
        # huggingface_hub takes the same flock on .locks/<repo folder>/<sha256>.lock.
        sha = self.shared["sha256"]
        lock_dir = os.path.join(self.data, "hub", ".locks", "models--org--shared-a")
        os.makedirs(lock_dir)
        lock = os.path.join(lock_dir, sha + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        releaser = threading.Timer(1.5, os.close, (fd,))
        releaser.start()
        try:
            r = self.pull("hf:org/shared-a")
        finally:
            releaser.cancel()
            releaser.join()
            try:
                os.close(fd)
            except OSError:
                pass
        self.assert_done(r)
        lines = [e["line"] for e in r.of(0, "narrate")]
        want = "waiting for a.Q4_K_M.gguf: another program is writing it (lock %s)" % lock
        self.assertEqual(lines.count(want), 1, lines)
        self.assertLess(lines.index("downloading a.Q4_K_M.gguf (file 1 of 1, 1.05 MB)"),
                        lines.index(want), lines)
        self.assertEqual(pr.sha256_file(self.blob("models--org--shared-a", sha)), sha)

    def test_free_blob_lock_is_not_narrated(self):
        r = self.pull("hf:org/shared-a")
        self.assert_done(r)
        lines = [e["line"] for e in r.of(0, "narrate")]
        self.assertFalse([l for l in lines if l.startswith("waiting for")], lines)

    def test_hf_cache_layout_matches_huggingface_hub(self):
        cache = os.path.join(self.tmp, "hfcache")
        shutil.rmtree(cache, ignore_errors=True)
        r = self.pull("hf:%s:Q4_K_M" % REPO, opts=["--hf-cache", cache])
        self.assert_done(r)
        rd = os.path.join(cache, "models--org--split-GGUF")
        with open(os.path.join(rd, "refs", "main")) as f:
            self.assertEqual(f.read(), self.commit_split)
        self.assertEqual(sorted(os.listdir(os.path.join(rd, "blobs"))),
                         sorted(s["sha256"] for s in self.shards))
        snap = os.path.join(rd, "snapshots", self.commit_split)
        self.assertEqual(sorted(os.listdir(snap)), SHARDS)
        for name, s in zip(SHARDS, self.shards):
            link = os.path.join(snap, name)
            self.assertTrue(os.path.islink(link))
            self.assertEqual(os.readlink(link), "../../blobs/" + s["sha256"])
        locks = os.path.join(cache, ".locks", "models--org--split-GGUF")
        self.assertTrue(all(n.endswith(".lock") for n in os.listdir(locks)))
        self.assertFalse(os.path.exists(os.path.join(self.data, "hub", "models--org--split-GGUF")))

    def test_hub_cache_from_environment(self):
        cache = os.path.join(self.tmp, "envcache")
        shutil.rmtree(cache, ignore_errors=True)
        end = self.assert_done(self.pull("hf:org/pinned", env=dict(self.env, HF_HUB_CACHE=cache)))
        self.assertTrue(end["path"].startswith(cache + "/models--org--pinned/snapshots/"),
                        end["path"])

    def test_hf_home_alone_switches_to_the_shared_cache(self):
        # docs/store.md: either variable switches; HF_HUB_CACHE before $HF_HOME/hub.
        home = os.path.join(self.tmp, "hfhome")
        cache = os.path.join(self.tmp, "hfhome-cache")
        for d in (home, cache):
            shutil.rmtree(d, ignore_errors=True)
        end = self.assert_done(self.pull("hf:org/pinned", env=dict(self.env, HF_HOME=home)))
        self.assertTrue(end["path"].startswith(home + "/hub/models--org--pinned/snapshots/"),
                        end["path"])
        self.assertFalse(os.path.exists(os.path.join(self.data, "hub", "models--org--pinned")))
        end = self.assert_done(self.pull("hf:org/pinned",
                                         env=dict(self.env, HF_HOME=home, HF_HUB_CACHE=cache)))
        self.assertTrue(end["path"].startswith(cache + "/models--org--pinned/snapshots/"),
                        end["path"])

    # Hub behaviour -------------------------------------------------------

    def test_renamed_repo_follows_same_host_redirect(self):
        r = self.pull("hf:oldorg/renamed")
        self.assert_done(r)
        self.assertTrue(any(q["status"] == 307 for q in self.hub.requests(host="hub")))

    def test_expired_cdn_url_is_resolved_again(self):
        r = self.pull("hf:org/expiring")
        end = self.assert_done(r)
        self.assertEqual(pr.sha256_file(end["path"]), self.shared["sha256"])
        cdn = [q["status"] for q in self.hub.requests(host="cdn")]
        self.assertIn(403, cdn)
        heads = [q for q in self.hub.requests(host="hub") if q["method"] == "HEAD"]
        self.assertGreaterEqual(len(heads), 2, "the URL was resolved again after the 403")

    def test_rate_limited_resolve_is_retried_after_retry_after(self):
        r = self.pull("hf:org/busy")
        self.assert_done(r)
        heads = [q for q in self.hub.requests(host="hub") if q["method"] == "HEAD"]
        self.assertEqual([q["status"] for q in heads], [429, 302])

    # Verification of what the Hub sends ------------------------------------

    def test_non_lfs_file_is_checked_against_its_git_blob_id(self):
        self.assert_error(self.pull("hf:org/nonlfs:config.json"), "digest_mismatch",
                          "git blob sha1 mismatch")
        self.assert_error(self.pull("hf:org/nonlfs:tiny.Q4_K_M.gguf"), "digest_mismatch",
                          "git blob sha1 mismatch")
        r = self.pull("hf:org/nonlfs:README.md")
        end = self.assert_done(r)
        with open(end["path"]) as f:
            self.assertEqual(f.read(), "# fine\n")

    def test_known_size_zero_is_not_unbounded(self):
        r = self.pull("hf:org/empty:empty.bin")
        end = self.assert_done(r)
        self.assertEqual(os.path.getsize(end["path"]), 0)
        self.assertEqual(sum(q["bytes_sent"] for q in self.hub.requests(host="cdn")), 0)

    # Listing for GET /v1/sources/hf --------------------------------------

    def test_repo_files_grouped_by_quant(self):
        r = pr.run(self.env, self.data, [], "--repo-files", REPO)
        doc = r.events[0]
        self.assertEqual(doc["commit"], self.commit_split)
        quants = {q["tag"]: q for q in doc["quants"]}
        self.assertEqual(set(quants), {"Q4_K_M", "Q8_0"})
        self.assertEqual(quants["Q4_K_M"]["files"], SHARDS)
        self.assertEqual(quants["Q4_K_M"]["size"], sum(s["size"] for s in self.shards))
        self.assertEqual(quants["Q4_K_M"]["ref"], "hf:%s:Q4_K_M" % REPO)
        self.assertIn("README.md", [f["path"] for f in doc["files"]])
        # The ref of a group pulls the revision that was listed.
        doc = pr.run(self.env, self.data, [], "--repo-files", "org/pinned@v1").events[0]
        self.assertEqual(doc["commit"], self.commit_old)
        self.assertEqual([q["ref"] for q in doc["quants"]], ["hf:org/pinned:Q4_K_M@v1"])
        r = pr.run(self.env, self.data, [], "--repo-files", "org/nope")
        self.assertEqual(r.events[0]["code"], "not_found")


if __name__ == "__main__":
    unittest.main()
