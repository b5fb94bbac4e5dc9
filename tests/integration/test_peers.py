"""Hives that fetch from each other (docs/mirror.md, "Peers"): a hive
started with --peer asks its peers which ranges of a blob they hold
(GET /v1/peer/blobs/SHA256) and takes those bytes from them
(GET /v1/peer/blobs/SHA256/bytes by Range) beside the CDN. A hive pulls a
model its peer holds with zero CDN bytes; a peer that serves wrong bytes is
dropped and the model still verifies; a peer that disappears mid-transfer
is dropped and the CDN serves the rest; two hives pulling the same model at
once each take only part of it from a capped CDN.
"""

import hashlib
import http.client
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemonhelp import BIN, SRC, DaemonTestCase  # noqa: E402
from ports import free_port  # noqa: E402

sys.path.insert(0, os.path.join(SRC, "tests", "fakehub"))
import fixtures  # noqa: E402

REPO = "org/peer-GGUF"
FILE = "peer.Q4_K_M.gguf"
PAIR = "org/pair-GGUF"
PAIR_FILE = "pair.Q4_K_M.gguf"
# The CDN's cap per connection for the pair: slow enough that two hives
# starting together see each other's progress long before either is done.
PAIR_RATE = 3000000


class FakePeer:
    """A peer hive that holds all of one file and serves it by the peer
    protocol: faithfully, with one byte wrong (corrupt), or until it has
    sent die_after bytes, when it cuts the connection and goes away."""

    def __init__(self, path, sha256, corrupt=False, die_after=None, rate=None):
        with open(path, "rb") as f:
            self.data = bytearray(f.read())
        if corrupt:
            self.data[len(self.data) // 2] ^= 0xFF
        self.sha256, self.die_after, self.rate = sha256, die_after, rate
        self.sent, self.bytes_requests = 0, 0
        self.lock = threading.Lock()
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                base = "/v1/peer/blobs/" + peer.sha256
                if self.path == base:
                    body = json.dumps({"sha256": peer.sha256, "size": len(peer.data),
                                       "complete": True, "downloading": False,
                                       "ranges": [[0, len(peer.data)]]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if self.path != base + "/bytes":
                    self.send_error(404)
                    return
                m = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
                a, b = int(m.group(1)), int(m.group(2))
                with peer.lock:
                    peer.bytes_requests += 1
                self.send_response(206)
                self.send_header("Content-Range", "bytes %d-%d/%d" % (a, b, len(peer.data)))
                self.send_header("Content-Length", str(b - a + 1))
                self.end_headers()
                pos = a
                while pos <= b:
                    n = min(65536, b + 1 - pos)
                    with peer.lock:
                        if peer.die_after is not None and peer.sent >= peer.die_after:
                            threading.Thread(target=peer.stop).start()
                            self.close_connection = True
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                        peer.sent += n
                    self.wfile.write(peer.data[pos:pos + n])
                    pos += n
                    if peer.rate:
                        time.sleep(n / peer.rate)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.stopped = False

    def stop(self):
        with self.lock:
            if self.stopped:
                return
            self.stopped = True
        self.server.shutdown()
        self.server.server_close()


class PeersTest(DaemonTestCase):
    tmp_prefix = "rbee-peers-"
    serve_defaults = {"level": "info"}

    @classmethod
    def hub_config(cls):
        t = lambda *p: os.path.join(cls.tmp, *p)
        os.makedirs(t("src"))
        cls.gguf = fixtures.write_gguf(t("src", "peer.gguf"), size=20 << 20, seed=1401)
        cls.pair = fixtures.write_gguf(t("src", "pair.gguf"), size=48 << 20, seed=1402)
        cls.gguf_path, cls.pair_path = t("src", "peer.gguf"), t("src", "pair.gguf")
        repos = [
            fixtures.make_repo(REPO, [fixtures.make_file(FILE, cls.gguf)]),
            fixtures.make_repo(PAIR, [fixtures.make_file(PAIR_FILE, cls.pair,
                                                         faults={"rate_limit_bps": PAIR_RATE})]),
        ]
        return fixtures.make_config(repos)

    @classmethod
    def set_up_class(cls):
        cls.first, cls.first_url = cls.serve("first")
        cls.pull(cls.first_url, REPO)

    @classmethod
    def pull(cls, url, ref, timeout=90):
        env = {k: v for k, v in os.environ.items() if not k.startswith("RBEE_HIVE")}
        env["RBEE_HIVE_URL"] = url
        p = subprocess.run([BIN, "pull", ref], capture_output=True, text=True,
                           timeout=timeout, env=env)
        if p.returncode != 0:
            raise RuntimeError("pull %s from %s: %s %s" % (ref, url, p.stdout, p.stderr))

    def cdn_bytes(self, repo, path):
        return self.hub.stats()["files"].get("%s:%s" % (repo, path), {}).get("bytes_sent", 0)

    def log_of(self, name):
        with open(os.path.join(self.tmp, name + ".log")) as f:
            return f.read()

    def transfer_line(self, name):
        """(bytes from the CDN, bytes from peers) of the hive's last transfer with peers."""
        found = re.findall(r"(\d+) bytes from [^,]+, (\d+) from peers", self.log_of(name))
        self.assertTrue(found, "no transfer with peers in %s's log" % name)
        return int(found[-1][0]), int(found[-1][1])

    def source_metrics(self, url):
        """Bytes delivered by each source, from /metrics."""
        status, _, body = self.request(url, "/metrics")
        self.assertEqual(status, 200)
        return {g[0]: int(g[1]) for g in
                re.findall(r'rbee_source_bytes_total\{source="(\w+)"\} (\d+)', body.decode())}

    def file_sources(self, url, repo):
        """{path: source} of the model's files, from GET /v1/models."""
        status, _, body = self.request(url, "/v1/models")
        self.assertEqual(status, 200)
        for m in json.loads(body)["models"]:
            if repo in m["id"]:
                return {f["path"]: f.get("source") for f in m["files"]}
        self.fail("no model of %s at %s" % (repo, url))

    def blob_sha256(self, name, sha):
        path = os.path.join(self.tmp, name, "hf-home", "hub", "models--org--peer-GGUF", "blobs", sha)
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    def request(self, url, path, headers=None):
        u = urllib.parse.urlsplit(url)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        try:
            c.request("GET", path, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    # The protocol ------------------------------------------------------------

    def test_peer_protocol_ranges_and_bytes(self):
        sha, size = self.gguf["sha256"], self.gguf["size"]
        st, _, body = self.request(self.first_url, "/v1/peer/blobs/" + sha)
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body), {"sha256": sha, "size": size, "complete": True,
                                            "downloading": False, "ranges": [[0, size]]})
        st, h, body = self.request(self.first_url, "/v1/peer/blobs/%s/bytes" % sha,
                                   {"Range": "bytes=100-199"})
        self.assertEqual((st, h.get("content-range")), (206, "bytes 100-199/%d" % size))
        with open(self.gguf_path, "rb") as f:
            f.seek(100)
            self.assertEqual(body, f.read(100))
        st, _, _ = self.request(self.first_url, "/v1/peer/blobs/%s/bytes" % sha,
                                {"Range": "bytes=%d-%d" % (size, size + 10)})
        self.assertEqual(st, 416)
        st, _, _ = self.request(self.first_url, "/v1/peer/blobs/" + "0" * 64)
        self.assertEqual(st, 404)
        st, _, _ = self.request(self.first_url, "/v1/peer/blobs/NOTHEX")
        self.assertEqual(st, 400)

    def test_bad_peer_option_is_refused(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("RBEE_HIVE")}
        p = subprocess.run([BIN, "serve", "--peer", "http://127.0.0.1:1/some/path"],
                           capture_output=True, text=True, timeout=10, env=env)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("expected a hive's base URL", p.stderr)

    # Fetching from peers -----------------------------------------------------

    def test_a_hive_pulls_what_its_peer_holds_with_zero_cdn_bytes(self):
        _, url = self.serve("second", ["--peer", self.first_url])
        before = self.cdn_bytes(REPO, FILE)
        self.pull(url, REPO)
        self.assertEqual(self.cdn_bytes(REPO, FILE) - before, 0)
        self.assertEqual(self.transfer_line("second"), (0, self.gguf["size"]))
        self.assertEqual(self.blob_sha256("second", self.gguf["sha256"]), self.gguf["sha256"])
        # The hive says where the bytes came from: /metrics by source, and the file's source.
        m = self.source_metrics(url)
        self.assertEqual((m.get("peer"), m.get("cdn")), (self.gguf["size"], 0))
        self.assertEqual(self.file_sources(url, REPO), {FILE: "peer"})
        self.assertEqual(self.file_sources(self.first_url, REPO)[FILE], "cdn")

    def test_peers_from_the_environment(self):
        _, url = self.serve("third", env={"RBEE_HIVE_PEERS": "http://127.0.0.1:9, " +
                                          self.first_url})
        before = self.cdn_bytes(REPO, FILE)
        self.pull(url, REPO)
        self.assertEqual(self.cdn_bytes(REPO, FILE) - before, 0)
        self.assertIn("peer http://127.0.0.1:9: asked", self.log_of("third"))

    def test_a_peer_serving_wrong_bytes_is_dropped_and_the_model_verifies(self):
        peer = FakePeer(self.gguf_path, self.gguf["sha256"], corrupt=True)
        try:
            _, url = self.serve("fooled", ["--peer", peer.url])
            before = self.cdn_bytes(REPO, FILE)
            self.pull(url, REPO)
        finally:
            peer.stop()
        self.assertGreater(peer.bytes_requests, 0)
        self.assertEqual(self.blob_sha256("fooled", self.gguf["sha256"]), self.gguf["sha256"])
        log = self.log_of("fooled")
        self.assertIn("peer %s/v1/peer/blobs/%s/bytes dropped for this blob: it sent wrong bytes"
                      % (peer.url, self.gguf["sha256"]), log)
        # What the peer delivered came again from the CDN to be compared.
        self.assertGreater(self.cdn_bytes(REPO, FILE) - before, 0)

    def test_a_peer_that_disappears_mid_transfer_is_dropped(self):
        peer = FakePeer(self.gguf_path, self.gguf["sha256"], die_after=3 << 20,
                        rate=8 << 20)
        try:
            _, url = self.serve("deserted", ["--peer", peer.url])
            before = self.cdn_bytes(REPO, FILE)
            t0 = time.monotonic()
            self.pull(url, REPO)
            took = time.monotonic() - t0
        finally:
            peer.stop()
        self.assertTrue(peer.stopped)
        self.assertLess(took, 30)
        self.assertEqual(self.blob_sha256("deserted", self.gguf["sha256"]), self.gguf["sha256"])
        self.assertIn("dropped for this blob", self.log_of("deserted"))
        cdn, peers = self.transfer_line("deserted")
        self.assertGreater(peers, 0)
        self.assertEqual(cdn + peers, self.gguf["size"])
        # The CDN counts what it wrote, also bytes in flight on a request cut short.
        self.assertGreaterEqual(self.cdn_bytes(REPO, FILE) - before, cdn)
        self.assertLess(self.cdn_bytes(REPO, FILE) - before, self.gguf["size"] * 1.5)

    def test_two_hives_pulling_at_once_split_a_capped_cdn(self):
        ports = [free_port(), free_port()]
        urls = ["http://127.0.0.1:%d" % p for p in ports]
        _, a = self.serve("left", ["--port", str(ports[0]), "--peer", urls[1]])
        _, b = self.serve("right", ["--port", str(ports[1]), "--peer", urls[0]])
        before = self.cdn_bytes(PAIR, PAIR_FILE)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RBEE_HIVE")}
        procs = [subprocess.Popen([BIN, "pull", PAIR], env=dict(env, RBEE_HIVE_URL=u),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for u in (a, b)]
        for p in procs:
            out, _ = p.communicate(timeout=90)
            self.assertEqual(p.returncode, 0, out)
        size = self.pair["size"]
        total = self.cdn_bytes(PAIR, PAIR_FILE) - before
        left, right = self.transfer_line("left"), self.transfer_line("right")
        for cdn, peers in (left, right):
            self.assertEqual(cdn + peers, size)
            self.assertLess(cdn, size * 0.8)
        # The CDN counts what it wrote, also bytes in flight on a request cut short.
        self.assertGreaterEqual(total, left[0] + right[0])
        self.assertLessEqual(total, size * 1.25)


if __name__ == "__main__":
    unittest.main()
