#!/usr/bin/env python3
"""The transfer engine (src/fetch) through tests/tools/xfer-get against the fake hub:
parallel Range download, resume after cancel and after kill -9, each CDN fault,
cancel latency, digest mismatch, the Authorization rule and the free-space check."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

SRC = os.environ.get("RBEE_SRC") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("RBEE_BUILD") or os.path.join(SRC, "build")
sys.path.insert(0, os.path.join(SRC, "tests", "fakehub"))

import client  # noqa: E402
import fixtures  # noqa: E402

XFER_GET = os.path.join(BUILD, "xfer-get")
TOKEN = fixtures.DEFAULT_TOKEN
MiB = 1 << 20

# Small files still use several connections: split above 1 MiB, halves of 256 KiB.
SPLIT = ["--split-threshold", "1M", "--min-split", "256K"]
FAST_RETRY = ["--retry-base-ms", "50", "--retry-max-ms", "200"]


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


class FetchTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(XFER_GET):
            raise unittest.SkipTest("xfer-get is not built in %s" % BUILD)
        cls.tmp = tempfile.mkdtemp(prefix="fetch-test-")
        specs = {"big.bin": 24 * MiB, "slow.bin": 32 * MiB}
        for i in range(14):
            specs["f%d.bin" % i] = 6 * MiB + 4321
        cls.files = {}
        entries = []
        for n, (name, size) in enumerate(sorted(specs.items())):
            f = fixtures.write_bytes(os.path.join(cls.tmp, "src-" + name), size, seed=n + 1)
            cls.files[name] = f
            entries.append(fixtures.make_file(name, f))
        repo = fixtures.make_repo("org/files", entries)
        cls.hub = client.start(fixtures.make_config([repo], cdn_reject_authorization=True))

    @classmethod
    def tearDownClass(cls):
        cls.hub.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

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
                "--auth-token", TOKEN, "--origin-host", "127.0.0.1"]
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
        # Paced like a real CDN connection, so the parts overlap in time.
        self.hub.set_faults("big.bin", {"rate_limit_bps": 8 * MiB})
        out, rc, err = self.run_get("big.bin", "--connections", "8")
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

    def test_disk_full_during_transfer_fails_cleanly(self):
        # Unknown size: nothing is preallocated, so a 2 MiB tmpfs fills mid-transfer.
        # The tmpfs lives in a private mount namespace of this one command.
        if not shutil.which("unshare"):
            self.skipTest("unshare is not available")
        mnt = os.path.join(self.dir, "small")
        os.mkdir(mnt)
        argv = self.argv("f12.bin", size=False)
        argv[2] = os.path.join(mnt, "f12.bin.partial")
        script = 'mount -t tmpfs -o size=2m tmpfs "$0" || exit 77; exec "$@"'
        p = subprocess.run(["unshare", "-m", "sh", "-c", script, mnt] + argv,
                           capture_output=True, text=True, timeout=60)
        if p.returncode == 77:
            self.skipTest("cannot mount a tmpfs here: " + p.stderr.strip())
        out = json.loads([l for l in p.stdout.splitlines() if l.startswith("{")][-1])
        self.assertEqual(p.returncode, 1, out)
        self.assertEqual(out["result"], "no_space")
        self.assertIn("No space left on device", out["error"])

    def test_http_to_a_non_loopback_host_is_refused(self):
        p = subprocess.run([XFER_GET, "http://example.invalid/x", os.path.join(self.dir, "x")],
                           capture_output=True, text=True, timeout=30)
        out = json.loads(p.stdout.splitlines()[-1])
        self.assertEqual(out["result"], "bad_request")
        self.assertIn("https only", out["error"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
