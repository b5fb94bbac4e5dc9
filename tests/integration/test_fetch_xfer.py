#!/usr/bin/env python3
"""The transfer engine (src/fetch) through tests/tools/xfer-get against the fake hub:
parallel Range download, resume after cancel and after kill -9, each CDN fault,
cancel latency, digest mismatch, the Authorization rule, the redirect policy,
size limits, the partial opened once without following symlinks, and the
free-space check."""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

SRC = os.environ.get("RBEE_SRC") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("RBEE_BUILD") or os.path.join(SRC, "build")
sys.path.insert(0, os.path.join(SRC, "tests", "fakehub"))

from daemonhelp import DaemonTestCase  # noqa: E402
import client  # noqa: E402
import fixtures  # noqa: E402

XFER_GET = os.path.join(BUILD, "xfer-get")
TOKEN = fixtures.DEFAULT_TOKEN
MiB = 1 << 20

# Small files still use several connections: split above 1 MiB, halves of 256 KiB.
SPLIT = ["--split-threshold", "1M", "--min-split", "256K"]
FAST_RETRY = ["--retry-base-ms", "50", "--retry-max-ms", "200"]
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def saved_bytes(state_file):
    """Bytes recorded as done in an xfer-get state file (0 if none)."""
    try:
        with open(state_file) as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return 0
    total = 0
    for line in lines[1:]:
        if line.strip():
            a, b = line.split()
            total += int(b) - int(a)
    return total


class FetchTest(DaemonTestCase):
    tmp_prefix = "fetch-test-"

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(XFER_GET):
            raise unittest.SkipTest("xfer-get is not built in %s" % BUILD)
        super().setUpClass()

    @classmethod
    def hub_config(cls):
        specs = {"big.bin": 24 * MiB, "slow.bin": 32 * MiB}
        for i in range(14):
            specs["f%d.bin" % i] = 6 * MiB + 4321
        cls.files = {}
        entries = []
        for n, (name, size) in enumerate(sorted(specs.items())):
            f = fixtures.write_bytes(os.path.join(cls.tmp, "src-" + name), size, seed=n + 1)
            cls.files[name] = f
            entries.append(fixtures.make_file(name, f))
        entries.append(fixtures.make_file("empty.bin", content="", lfs=True))
        cls.files["empty.bin"] = {"size": 0, "sha256": EMPTY_SHA256}
        repo = fixtures.make_repo("org/files", entries)
        return fixtures.make_config([repo], cdn_reject_authorization=True)

    def setUp(self):
        self.hub.clear_faults()
        self.hub.reset()
        self.dir = tempfile.mkdtemp(prefix="case-", dir=self.tmp)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def resolve_url(self, name):
        return self.hub.hub_url + "/org/files/resolve/main/" + name

    def argv(self, name, *extra, sha=True, size=True):
        f = self.files[name]
        args = [XFER_GET, self.resolve_url(name), os.path.join(self.dir, name + ".partial"),
                "--auth-token", TOKEN, "--origin", self.hub.hub_url]
        if sha:
            args += ["--sha256", f["sha256"]]
        if size:
            args += ["--size", str(f["size"])]
        return args + list(extra)

    def run_get(self, name, *extra, timeout=60, **kw):
        p = subprocess.run(self.argv(name, *extra, **kw), capture_output=True, text=True,
                           timeout=timeout)
        lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
        self.assertTrue(lines, "no JSON from xfer-get: rc=%d stderr=%s" % (p.returncode, p.stderr[-2000:]))
        return json.loads(lines[-1]), p.returncode, p.stderr

    def assert_ok(self, name, out, rc, err=""):
        self.assertEqual(rc, 0, "%s\n%s" % (out, err[-3000:]))
        self.assertEqual(out["result"], "ok")
        self.assertEqual(out["sha256"], self.files[name]["sha256"])
        path = os.path.join(self.dir, name + ".partial")
        self.assertEqual(os.path.getsize(path), self.files[name]["size"])
        self.assertEqual(fixtures.sha256_file(path), self.files[name]["sha256"])

    def cdn_body_requests(self):
        return [r for r in self.hub.requests(host="cdn") if r["method"] == "GET"]

    # Happy path --------------------------------------------------------------

    def test_parallel_ranges_hash_and_no_token_on_cdn(self):
        # Paced like a real CDN connection, so the parts overlap in time and
        # each connection added raises the rate: the ramp goes past its first 2.
        self.hub.set_faults("big.bin", {"rate_limit_bps": 8 * MiB})
        out, rc, err = self.run_get("big.bin", "--connections", "8", "--piece-size", "2M")
        self.assert_ok("big.bin", out, rc, err)
        hub_reqs = self.hub.requests(host="hub")
        self.assertTrue(hub_reqs and all(r["headers"].get("authorization") == "Bearer " + TOKEN
                                         for r in hub_reqs), hub_reqs)
        cdn = self.cdn_body_requests()
        self.assertTrue(cdn)
        self.assertFalse([r for r in cdn if "authorization" in r["headers"]])
        self.assertTrue(all(r["status"] == 206 and r["range"] for r in cdn), cdn)
        stats = self.hub.stats()["files"]["org/files:big.bin"]
        self.assertGreaterEqual(stats["max_concurrent"], 4, stats)

    def test_idle_connections_steal_from_a_slow_one(self):
        # One request pauses for 3 s; the others finish their parts and take
        # halves of what it has left, so it ends with little to do.
        self.hub.set_faults("f13.bin", {"rate_limit_bps": 2 * MiB,
                                        "stall": {"after_bytes": 65536, "seconds": 3, "count": 1}})
        out, rc, err = self.run_get("f13.bin", "--connections", "4", *SPLIT)
        self.assert_ok("f13.bin", out, rc, err)
        cdn = self.cdn_body_requests()
        stalled = [r for r in cdn if r["bytes_sent"] >= 65536 and r["range"]]
        starts = sorted(int(r["range"].split("=")[1].split("-")[0]) for r in cdn)
        self.assertGreater(len(cdn), 4, "no range was stolen: %s" % [r["range"] for r in cdn])
        self.assertEqual(len(set(starts)), len(starts))
        self.assertTrue(stalled)

    def test_unknown_size_and_hash_single_connection(self):
        out, rc, err = self.run_get("f0.bin", sha=False, size=False)
        self.assert_ok("f0.bin", out, rc, err)
        cdn = self.cdn_body_requests()
        self.assertEqual(len(cdn), 1, cdn)
        self.assertIsNone(cdn[0]["range"])

    def test_rename_to_after_success(self):
        final = os.path.join(self.dir, "final.bin")
        out, rc, err = self.run_get("f1.bin", "--rename-to", final, *SPLIT)
        self.assertEqual(rc, 0, out)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "f1.bin.partial")))
        self.assertEqual(fixtures.sha256_file(final), self.files["f1.bin"]["sha256"])

    # Resume ------------------------------------------------------------------

    def test_resume_after_cancel(self):
        state = os.path.join(self.dir, "state")
        total = self.files["slow.bin"]["size"]
        self.hub.set_faults("slow.bin", {"rate_limit_bps": 2 * MiB})
        out, rc, _ = self.run_get("slow.bin", "--connections", "4", "--state-file", state,
                                  "--cancel-after-bytes", str(8 * MiB))
        self.assertEqual(rc, 130, out)
        self.assertEqual(out["result"], "cancelled")
        saved = saved_bytes(state)
        self.assertGreaterEqual(saved, 8 * MiB)
        self.assertEqual(saved, out["bytes_done"])
        self.assertTrue(os.path.exists(os.path.join(self.dir, "slow.bin.partial")))

        self.hub.clear_faults()
        self.hub.reset()
        out, rc, err = self.run_get("slow.bin", "--connections", "4", "--state-file", state)
        self.assert_ok("slow.bin", out, rc, err)
        requested = sum(r["bytes_sent"] for r in self.cdn_body_requests())
        self.assertLess(requested, total - saved + 12 * MiB,
                        "resume re-downloaded %d of %d bytes with %d saved" % (requested, total, saved))
        self.assertFalse(os.path.exists(state + ".tmp"))

    def test_resume_after_kill_9(self):
        state = os.path.join(self.dir, "state")
        total = self.files["slow.bin"]["size"]
        self.hub.set_faults("slow.bin", {"rate_limit_bps": 2 * MiB})
        p = subprocess.Popen(self.argv("slow.bin", "--connections", "4", "--state-file", state,
                                       "--flush-ms", "200"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while saved_bytes(state) < 6 * MiB and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(p.pid, signal.SIGKILL)
        finally:
            p.wait(10)
        saved = saved_bytes(state)
        self.assertGreaterEqual(saved, 6 * MiB)
        self.assertLess(saved, total)

        self.hub.clear_faults()
        self.hub.reset()
        out, rc, err = self.run_get("slow.bin", "--connections", "4", "--state-file", state)
        self.assert_ok("slow.bin", out, rc, err)
        requested = sum(r["bytes_sent"] for r in self.cdn_body_requests())
        self.assertLess(requested, total - saved + 12 * MiB,
                        "resume re-downloaded %d of %d bytes with %d saved" % (requested, total, saved))

    def test_purge_on_cancel_removes_partial_and_state(self):
        state = os.path.join(self.dir, "state")
        self.hub.set_faults("slow.bin", {"rate_limit_bps": 2 * MiB})
        out, rc, _ = self.run_get("slow.bin", "--state-file", state, "--purge",
                                  "--cancel-after-bytes", str(2 * MiB))
        self.assertEqual(rc, 130, out)
        self.assertFalse(os.path.exists(state))
        self.assertFalse(os.path.exists(os.path.join(self.dir, "slow.bin.partial")))

    # Cancel latency --------------------------------------------------------

    def test_cancel_stops_bytes_quickly(self):
        self.hub.set_faults("slow.bin", {"rate_limit_bps": 4 * MiB})
        out, rc, _ = self.run_get("slow.bin", "--connections", "8", "--cancel-after-ms", "800")
        self.assertEqual(rc, 130, out)
        self.assertGreater(out["bytes_at_cancel"], 0)
        # The goal is 50 ms; the bound is loose for a loaded CI machine.
        self.assertLess(out["cancel_stop_ms"], 250, out)
        self.assertLess(out["bytes_after_cancel"], 4 * MiB, out)
        self.assertLess(out["cancel_finish_ms"], 3000, out)
        # Nothing is written after the end: the partial keeps its bytes.
        path = os.path.join(self.dir, "slow.bin.partial")
        before = fixtures.sha256_file(path)
        time.sleep(0.3)
        self.assertEqual(fixtures.sha256_file(path), before)

    # Faults ----------------------------------------------------------------

    def test_dropped_connections_are_retried(self):
        self.hub.set_faults("f2.bin", {"drop_after_bytes": {"bytes": 300000, "count": 3}})
        out, rc, err = self.run_get("f2.bin", *SPLIT, *FAST_RETRY)
        self.assert_ok("f2.bin", out, rc, err)
        self.assertTrue([r for r in self.cdn_body_requests() if r.get("error") == "dropped"])

    def test_stalled_connection_is_cut_and_retried(self):
        self.hub.set_faults("f3.bin", {"stall": {"after_bytes": 500000, "seconds": 20, "count": 1}})
        t = time.monotonic()
        out, rc, err = self.run_get("f3.bin", "--stall-timeout", "1", *SPLIT, *FAST_RETRY)
        self.assert_ok("f3.bin", out, rc, err)
        self.assertLess(time.monotonic() - t, 10)

    def test_5xx_is_retried(self):
        self.hub.set_faults("f4.bin", {"status_5xx": {"code": 503, "count": 3, "where": "cdn"}})
        out, rc, err = self.run_get("f4.bin", *SPLIT, *FAST_RETRY)
        self.assert_ok("f4.bin", out, rc, err)
        self.assertEqual(len([r for r in self.cdn_body_requests() if r["status"] == 503]), 3)

    def test_5xx_forever_fails_clearly(self):
        self.hub.set_faults("f5.bin", {"status_5xx": {"code": 502, "where": "cdn"}})
        out, rc, _ = self.run_get("f5.bin", "--max-retries", "2", *FAST_RETRY)
        self.assertEqual(rc, 1, out)
        self.assertEqual(out["result"], "network")
        self.assertIn("HTTP 502", out["error"])
        self.assertIn("gave up after 3 tries", out["error"])

    def test_429_honours_retry_after(self):
        self.hub.set_faults("f6.bin", {"status_429": {"count": 1, "retry_after": 1, "where": "cdn"}})
        out, rc, err = self.run_get("f6.bin", *FAST_RETRY)
        self.assert_ok("f6.bin", out, rc, err)
        cdn = self.cdn_body_requests()
        self.assertEqual(cdn[0]["status"], 429)
        self.assertGreaterEqual(cdn[1]["time"] - cdn[0]["time"], 0.9, cdn[:2])

    def test_200_to_range_restarts_from_zero(self):
        self.hub.set_faults("f7.bin", {"ignore_range": {"count": 1}})
        out, rc, err = self.run_get("f7.bin", *SPLIT)
        self.assert_ok("f7.bin", out, rc, err)
        cdn = self.cdn_body_requests()
        self.assertEqual(cdn[0]["status"], 200)
        self.assertIsNone(cdn[-1]["range"])  # went on with one whole-file request

    def test_corrupt_byte_fails_with_both_hashes(self):
        self.hub.set_faults("f8.bin", {"corrupt": 4 * MiB + 7})
        state = os.path.join(self.dir, "state")
        out, rc, _ = self.run_get("f8.bin", "--state-file", state, *SPLIT)
        self.assertEqual(rc, 1, out)
        self.assertEqual(out["result"], "digest_mismatch")
        self.assertIn("expected " + self.files["f8.bin"]["sha256"], out["error"])
        self.assertRegex(out["error"], r"got [0-9a-f]{64}")
        self.assertFalse(os.path.exists(os.path.join(self.dir, "f8.bin.partial")))
        self.assertFalse(os.path.exists(state))

    def test_expired_signed_url_is_refreshed(self):
        # URLs live 1 s; a connection dropped after 1.5 s must come back with a new one.
        self.hub.set_faults("slow.bin", {"url_ttl_seconds": 1, "rate_limit_bps": 2 * MiB,
                                         "drop_after_bytes": {"bytes": 3 * MiB}})
        out, rc, err = self.run_get("slow.bin", "--connections", "4", *SPLIT, *FAST_RETRY,
                                    "--refresh-from", self.resolve_url("slow.bin"))
        self.assert_ok("slow.bin", out, rc, err)
        self.assertGreaterEqual(out["refreshes"], 1)
        self.assertTrue([r for r in self.cdn_body_requests() if r["status"] == 403])

    def test_content_range_mismatch_is_rejected(self):
        # Claim a larger size than the file has: the 206's Content-Range total disagrees.
        f = self.files["f9.bin"]
        out, rc, _ = self.run_get("f9.bin", "--size", str(f["size"] + 4096), "--max-retries", "1",
                                  *FAST_RETRY, size=False)
        self.assertEqual(rc, 1, out)
        self.assertIn("Content-Range", out["error"])

    def test_limit_rate_caps_the_transfer(self):
        t = time.monotonic()
        out, rc, err = self.run_get("f11.bin", "--connections", "4", "--limit-rate", "3M", *SPLIT)
        elapsed = time.monotonic() - t
        self.assert_ok("f11.bin", out, rc, err)
        # 6 MiB at 3 MiB/s over all connections: about 2 s, never much faster.
        self.assertGreater(elapsed, 1.5)

    def test_416_discards_the_partial(self):
        # Resume state says all bytes of the real file are done, but the size
        # asked for is larger: the next Range starts past the end -> 416.
        f = self.files["f9.bin"]
        size = f["size"] + 8192
        state = os.path.join(self.dir, "state")
        partial = os.path.join(self.dir, "f9.bin.partial")
        shutil.copyfile(f["path"], partial)
        with open(partial, "ab") as out_f:
            out_f.write(b"\0" * 8192)
        with open(state, "w") as st:
            st.write("%s %d\n0 %d\n" % (f["sha256"], size, f["size"]))
        out, rc, _ = self.run_get("f9.bin", "--size", str(size), "--state-file", state, size=False)
        self.assertEqual(rc, 1, out)
        self.assertIn("HTTP 416", out["error"])
        self.assertIn("partial discarded", out["error"])
        self.assertEqual([r["status"] for r in self.cdn_body_requests()], [416])
        self.assertFalse(os.path.exists(partial))
        self.assertFalse(os.path.exists(state))

    # Disk ------------------------------------------------------------------

    def test_free_space_checked_before_first_byte(self):
        out, rc, _ = self.run_get("f10.bin", "--size", str(1 << 60), size=False, sha=False)
        self.assertEqual(rc, 1, out)
        self.assertEqual(out["result"], "no_space")
        self.assertIn("not enough free space", out["error"])
        self.assertEqual(self.hub.requests(), [])
        self.assertFalse(os.path.exists(os.path.join(self.dir, "f10.bin.partial")))

    def run_on_small_disk(self, name):
        """xfer-get of name, size unknown, into a 2 MiB tmpfs in a private mount
        namespace of this one command."""
        if not shutil.which("unshare"):
            self.skipTest("unshare is not available")
        mnt = os.path.join(self.dir, "small")
        os.makedirs(mnt, exist_ok=True)
        argv = self.argv(name, size=False)
        argv[2] = os.path.join(mnt, name + ".partial")
        script = 'mount -t tmpfs -o size=2m tmpfs "$0" || exit 77; exec "$@"'
        p = subprocess.run(["unshare", "-m", "sh", "-c", script, mnt] + argv,
                           capture_output=True, text=True, timeout=60)
        if p.returncode == 77:
            self.skipTest("cannot mount a tmpfs here: " + p.stderr.strip())
        out = json.loads([l for l in p.stdout.splitlines() if l.startswith("{")][-1])
        self.assertEqual(p.returncode, 1, out)
        self.assertEqual(out["result"], "no_space")
        return out

    def test_disk_full_during_transfer_fails_cleanly(self):
        # Unknown size and no Content-Length: nothing is preallocated or
        # announced, so the 2 MiB disk fills mid-transfer.
        self.hub.set_faults("f12.bin", {"extra_bytes": 0})
        out = self.run_on_small_disk("f12.bin")
        self.assertIn("No space left on device", out["error"])

    def test_announced_length_over_the_free_space_fails_before_the_body(self):
        out = self.run_on_small_disk("f12.bin")
        self.assertIn("announces %d bytes" % self.files["f12.bin"]["size"], out["error"])
        self.assertEqual(out["bytes_done"], 0)

    # The partial ---------------------------------------------------------------

    def test_symlink_at_the_partial_is_not_followed(self):
        # A user who can write the cache's blobs/ plants a symlink where the
        # partial goes: the target must not be truncated or overwritten.
        victim = os.path.join(self.dir, "victim")
        with open(victim, "w") as f:
            f.write("precious")
        os.symlink(victim, os.path.join(self.dir, "f4.bin.partial"))
        out, rc, _ = self.run_get("f4.bin")
        self.assertNotEqual(rc, 0, out)
        with open(victim) as f:
            self.assertEqual(f.read(), "precious")
        self.assertTrue(os.path.islink(os.path.join(self.dir, "f4.bin.partial")))
        self.assertEqual(self.cdn_body_requests(), [])

    # Sizes -----------------------------------------------------------------

    def test_known_size_zero_fetches_nothing(self):
        # The listing says 0 bytes (the LFS oid of the empty file); the CDN would
        # stream without Content-Length for ever. A known size of 0 is a size.
        self.hub.set_faults("empty.bin", {"extra_bytes": 64 * MiB})
        out, rc, err = self.run_get("empty.bin")
        self.assert_ok("empty.bin", out, rc, err)
        self.assertEqual(sum(r["bytes_sent"] for r in self.cdn_body_requests()), 0)

    def test_pinned_empty_digest_without_size_fetches_nothing(self):
        self.hub.set_faults("empty.bin", {"extra_bytes": 64 * MiB})
        out, rc, err = self.run_get("empty.bin", size=False)
        self.assert_ok("empty.bin", out, rc, err)
        self.assertEqual(sum(r["bytes_sent"] for r in self.cdn_body_requests()), 0)

    def test_bytes_past_the_expected_size_end_the_transfer(self):
        self.hub.set_faults("f5.bin", {"extra_bytes": 64 * MiB})
        t0 = time.monotonic()
        out, rc, _ = self.run_get("f5.bin")
        self.assertEqual(rc, 1, out)
        self.assertEqual(out["result"], "digest_mismatch")
        self.assertIn("more than the expected %d bytes" % self.files["f5.bin"]["size"], out["error"])
        self.assertLess(out["bytes_done"], self.files["f5.bin"]["size"] + 1)
        self.assertLess(time.monotonic() - t0, 20)

    def test_unknown_size_has_a_cap(self):
        self.hub.set_faults("f6.bin", {"extra_bytes": 64 * MiB})
        out, rc, _ = self.run_get("f6.bin", "--max-unknown-size", "1M", sha=False, size=False)
        self.assertEqual(rc, 1, out)
        self.assertEqual(out["result"], "too_large")
        self.assertIn("more than 1048576 bytes", out["error"])
        self.assertLessEqual(out["bytes_done"], MiB)

    def test_announced_length_over_the_cap_fails_before_the_body(self):
        out, rc, _ = self.run_get("f7.bin", "--max-unknown-size", "1M", sha=False, size=False)
        self.assertEqual(rc, 1, out)
        self.assertEqual(out["result"], "too_large")
        self.assertIn("announces %d bytes" % self.files["f7.bin"]["size"], out["error"])
        self.assertEqual(out["bytes_done"], 0)

    # Non-LFS files: the git blob id -------------------------------------------

    def test_git_blob_sha1_is_checked(self):
        with open(self.files["f8.bin"]["path"], "rb") as f:
            data = f.read()
        good = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        out, rc, err = self.run_get("f8.bin", "--git-sha1", good, sha=False)
        self.assert_ok("f8.bin", out, rc, err)
        self.hub.set_faults("f8.bin", {"corrupt": 12345})
        out, rc, _ = self.run_get("f8.bin", "--git-sha1", good, sha=False)
        self.assertEqual(rc, 1, out)
        self.assertEqual(out["result"], "digest_mismatch")
        self.assertIn("git blob sha1 mismatch", out["error"])
        self.assertFalse(os.path.exists(os.path.join(self.dir, "f8.bin.partial")))

    # Credentials and redirects ------------------------------------------------

    def test_token_goes_to_the_exact_origin_only(self):
        # The CDN on the hub's own host, another port: it must get no Authorization.
        cfg = fixtures.make_config([fixtures.make_repo(
            "org/files", [fixtures.make_file("f9.bin", self.files["f9.bin"])])],
            cdn_reject_authorization=True)
        hub = client.start(cfg, extra_args=("--cdn-host", "127.0.0.1"))
        self.addCleanup(hub.stop)
        self.assertTrue(hub.cdn_url.startswith("http://127.0.0.1:"), hub.cdn_url)
        argv = [XFER_GET, hub.hub_url + "/org/files/resolve/main/f9.bin",
                os.path.join(self.dir, "f9.bin.partial"), "--auth-token", TOKEN,
                "--origin", hub.hub_url, "--sha256", self.files["f9.bin"]["sha256"],
                "--size", str(self.files["f9.bin"]["size"])]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        out = json.loads(p.stdout.splitlines()[-1])
        self.assertEqual(p.returncode, 0, out)
        self.assertTrue(all(r["headers"].get("authorization") == "Bearer " + TOKEN
                            for r in hub.requests(host="hub")))
        cdn = hub.requests(host="cdn")
        self.assertTrue(cdn)
        self.assertFalse([r for r in cdn if "authorization" in r["headers"]], cdn)

    def test_redirect_from_https_to_plain_http_is_refused(self):
        # The Hub (https) handed over an http:// URL on this machine.
        argv = self.argv("f10.bin")
        argv[argv.index("--origin") + 1] = "https://hub.example.invalid"
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        out = json.loads(p.stdout.splitlines()[-1])
        self.assertEqual(p.returncode, 1, out)
        self.assertEqual(out["result"], "forbidden")
        self.assertIn("https to http", out["error"])
        self.assertEqual(self.hub.requests(), [])

    def test_redirect_to_a_name_resolving_to_loopback_is_refused_before_connecting(self):
        name = socket.gethostname()
        try:
            addr = socket.gethostbyname(name)
        except OSError:
            self.skipTest("the host name does not resolve")
        if not addr.startswith("127."):
            self.skipTest("the host name resolves to %s, not loopback" % addr)
        port = self.hub.hub_url.rsplit(":", 1)[1]
        url = "https://%s:%s/org/files/resolve/main/f11.bin" % (name, port)
        p = subprocess.run([XFER_GET, url, os.path.join(self.dir, "f11.bin.partial"),
                            "--origin", "https://hub.example.invalid", "--max-retries", "1"],
                           capture_output=True, text=True, timeout=60)
        out = json.loads(p.stdout.splitlines()[-1])
        self.assertEqual(p.returncode, 1, out)
        self.assertEqual(out["result"], "forbidden")
        self.assertIn("resolves to %s, a loopback address" % addr, out["error"])
        self.assertEqual(self.hub.requests(), [])

    def test_http_to_a_non_loopback_host_is_refused(self):
        p = subprocess.run([XFER_GET, "http://example.invalid/x", os.path.join(self.dir, "x")],
                           capture_output=True, text=True, timeout=30)
        out = json.loads(p.stdout.splitlines()[-1])
        self.assertEqual(out["result"], "bad_request")
        self.assertIn("https only", out["error"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
