"""GET /v1/sources/hf/ORG/REPO against a fake hub that answers badly: the
caps on a repo listing. Folders count toward the entry cap, a tree page over
the page cap is refused before it is parsed (the daemon's peak memory stays
small), at most a few listings run at once (503 with Retry-After beyond),
a listing has a deadline (504), a client that goes away frees its slot at
once, and a stop does not wait for a listing in flight.
"""

import json
import os
import signal
import socket
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fakehub"))
from daemonhelp import DaemonTestCase, start_daemon  # noqa: E402
import fixtures  # noqa: E402

ENTRIES_CAP = 20000  # CAP_SOURCES_ENTRIES
ACTIVE_CAP = 4       # CAP_SOURCES_ACTIVE
SLOW_S = 3           # each tree page of org/slow-GGUF takes that long


def gguf_repo(tmp, repo_id, seed, **tree):
    g = fixtures.write_gguf(os.path.join(tmp, "%d.gguf" % seed), size=64 << 10, seed=seed)
    r = fixtures.make_repo(repo_id, [fixtures.make_file("model.Q4_K_M.gguf", g),
                                     fixtures.make_file("README.md", content="# m\n")])
    r.update(tree)
    return r


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class SourcesCapsTest(DaemonTestCase):
    tmp_prefix = "rbee-sources-caps-"

    @classmethod
    def hub_config(cls):
        t = cls.tmp
        return fixtures.make_config([
            gguf_repo(t, "org/small-GGUF", 1),
            # One file, and folders enough to pass the entry cap with them.
            gguf_repo(t, "org/dirs-GGUF", 2, tree_dirs=ENTRIES_CAP),
            # One page of 150,000 folders, about 14 MB: a hub may send it.
            gguf_repo(t, "org/huge-GGUF", 3, tree_dirs=150000, tree_page_size=200000),
            gguf_repo(t, "org/slow-GGUF", 4, tree_delay_seconds=SLOW_S),
            gguf_repo(t, "org/stuck-GGUF", 5, tree_delay_seconds=60),
        ], page_size=1000)

    def daemon(self, name, extra=()):
        proc, url, log_path = start_daemon(self.tmp, name, self.hub.hub_url, extra)
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait()))
        return proc, url, log_path

    def get(self, url, path, timeout=30):
        """(status, JSON body, headers)."""
        try:
            with urllib.request.urlopen(url + path, timeout=timeout) as r:
                return r.status, json.loads(r.read()), r.headers
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null"), e.headers

    def tree_requests(self, repo):
        return [r for r in self.hub.requests(host="hub")
                if r["path"].startswith("/api/models/%s/tree/" % repo)]

    def test_small_repo_lists(self):
        _, url, _ = self.daemon("small")
        status, j, h = self.get(url, "/v1/sources/hf/org/small-GGUF")
        self.assertEqual(status, 200, j)
        self.assertEqual([q["tag"] for q in j["quants"]], ["Q4_K_M"])
        self.assertEqual(sorted(f["path"] for f in j["files"]), ["README.md", "model.Q4_K_M.gguf"])

    def test_folders_count_toward_the_entry_cap(self):
        _, url, _ = self.daemon("dirs")
        status, j, _ = self.get(url, "/v1/sources/hf/org/dirs-GGUF")
        self.assertEqual(status, 413, j)
        self.assertIn("%d files and folders" % ENTRIES_CAP, j["error"]["message"])

    def test_huge_tree_page_is_refused_and_memory_stays_small(self):
        proc, url, _ = self.daemon("huge")
        before = vm_hwm_kib(proc.pid)
        out = []

        def one():
            out.append(self.get(url, "/v1/sources/hf/org/huge-GGUF", timeout=60))
        threads = [threading.Thread(target=one) for _ in range(ACTIVE_CAP)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=90)
        statuses = sorted(s for s, _, _ in out)
        self.assertTrue(statuses and all(s in (413, 503) for s in statuses), out)
        self.assertIn(413, statuses)
        msg = [j["error"]["message"] for s, j, _ in out if s == 413][0]
        self.assertIn("over", msg)
        # A 14 MB page parsed as a whole took over 150 MB; refused unparsed,
        # the daemon grows by little more than the page cap per listing.
        grown = vm_hwm_kib(proc.pid) - before
        self.assertLess(grown, 48 * 1024, "VmHWM grew by %d KiB" % grown)

    def test_concurrency_cap_and_deadline(self):
        _, url, _ = self.daemon("busy", ["--sources-deadline", "2"])
        self.hub.reset_requests()
        out = []

        def one():
            t0 = time.monotonic()
            s, j, _ = self.get(url, "/v1/sources/hf/org/slow-GGUF")
            out.append((s, j, time.monotonic() - t0))
        threads = [threading.Thread(target=one) for _ in range(ACTIVE_CAP)]
        for th in threads:
            th.start()
        deadline = time.time() + 10
        while len(self.tree_requests("org/slow-GGUF")) < ACTIVE_CAP and time.time() < deadline:
            time.sleep(0.02)
        self.assertEqual(len(self.tree_requests("org/slow-GGUF")), ACTIVE_CAP)
        status, j, h = self.get(url, "/v1/sources/hf/org/small-GGUF")
        self.assertEqual((status, j["error"]["code"]), (503, "retry"), j)
        self.assertEqual(h.get("Retry-After"), "1")
        for th in threads:
            th.join(timeout=30)
        self.assertEqual(len(out), ACTIVE_CAP)
        for s, j, took in out:
            self.assertEqual((s, j["error"]["code"]), (504, "timeout"), j)
            self.assertIn("2 s", j["error"]["message"])
            self.assertLess(took, SLOW_S + 1.5)
        # The slots are free again.
        status, j, _ = self.get(url, "/v1/sources/hf/org/small-GGUF")
        self.assertEqual(status, 200, j)

    def test_client_gone_frees_its_slot(self):
        _, url, _ = self.daemon("gone")
        self.hub.reset_requests()
        port = int(url.rsplit(":", 1)[1])
        socks = []
        for _ in range(ACTIVE_CAP):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET /v1/sources/hf/org/stuck-GGUF HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            socks.append(s)
        deadline = time.time() + 10
        while len(self.tree_requests("org/stuck-GGUF")) < ACTIVE_CAP and time.time() < deadline:
            time.sleep(0.02)
        self.assertEqual(len(self.tree_requests("org/stuck-GGUF")), ACTIVE_CAP)
        status, j, _ = self.get(url, "/v1/sources/hf/org/small-GGUF")
        self.assertEqual(status, 503, j)
        for s in socks:
            s.close()
        # Each listing notices its client is gone and gives its slot back at
        # once, not when the hub answers a minute later.
        t0 = time.monotonic()
        while True:
            status, j, _ = self.get(url, "/v1/sources/hf/org/small-GGUF")
            if status != 503 or time.monotonic() - t0 > 5:
                break
            time.sleep(0.1)
        self.assertEqual(status, 200, j)
        self.assertLess(time.monotonic() - t0, 3)

    def test_stop_does_not_wait_for_a_listing(self):
        proc, url, log_path = self.daemon("stop")
        self.hub.reset_requests()
        out = []
        th = threading.Thread(target=lambda: out.append(
            self.get(url, "/v1/sources/hf/org/stuck-GGUF", timeout=30)))
        th.start()
        deadline = time.time() + 10
        while not self.tree_requests("org/stuck-GGUF") and time.time() < deadline:
            time.sleep(0.02)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=15)
        took = time.monotonic() - t0
        th.join(timeout=15)
        self.assertEqual(rc, 0)
        self.assertLess(took, 2.0)
        with open(log_path) as f:
            self.assertNotIn("took longer than", f.read())
        if out and not isinstance(out[0], Exception):
            self.assertEqual(out[0][0], 503, out)


if __name__ == "__main__":
    unittest.main()
