#!/usr/bin/env python3
"""Self-test of tests/fakehub: the fake Hugging Face Hub every later test uses."""

import hashlib
import http.client
import json
import os
import socket
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

SRC = os.environ.get("RBEE_SRC") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "fakehub"))

from daemonhelp import DaemonTestCase  # noqa: E402
import client  # noqa: E402
import fixtures  # noqa: E402

TOKEN = fixtures.DEFAULT_TOKEN
GGUF_SIZE = 3 * (1 << 20) + 12345
README = "# test model\n"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def fetch(url, method="GET", headers=None, timeout=10):
    """(status, headers, body) without following redirects; errors are answers too."""
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with OPENER.open(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        body = e.read()
        e.close()
        return e.code, e.headers, body


def raw_get(url, headers=None, timeout=10):
    """A GET with http.client that tolerates a short body: (status, headers, body, error)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request("GET", u.path + ("?" + u.query if u.query else ""), headers=headers or {})
        r = conn.getresponse()
        body, err = b"", None
        try:
            body = r.read()
        except http.client.IncompleteRead as e:
            body, err = e.partial, e
        return r.status, r.headers, body, err
    finally:
        conn.close()


class FakeHubTest(DaemonTestCase):
    tmp_prefix = "test-fakehub-"

    @classmethod
    def hub_config(cls):
        cls.gguf = fixtures.write_gguf(os.path.join(cls.tmp, "m.gguf"), size=GGUF_SIZE, seed=7,
                                       use_tool=False)
        with open(cls.gguf["path"], "rb") as f:
            cls.gguf_bytes = f.read()
        files = [
            fixtures.make_file("model.Q4_K_M.gguf", cls.gguf),
            fixtures.make_file("README.md", content=README),
        ]
        files += [fixtures.make_file("shards/part-%03d.txt" % i, content="part %d\n" % i)
                  for i in range(7)]
        cls.repo = fixtures.make_repo("org/model-GGUF", files, renamed_from="oldorg/model-GGUF")
        pr_commit = fixtures.fake_commit("pr")
        cls.repo["commits"][pr_commit] = {"files": [fixtures.make_file("pr.txt", content="pr\n")]}
        cls.repo["revisions"]["refs/pr/1"] = pr_commit
        cls.repo["revisions"]["v1.0"] = cls.repo["revisions"]["main"]
        cls.repo["tags"] = ["v1.0"]
        cls.commit = cls.repo["revisions"]["main"]
        cls.pr_commit = pr_commit
        gated = fixtures.make_repo("org/gated", [fixtures.make_file("g.gguf", cls.gguf)], gated="manual")
        private = fixtures.make_repo("org/private", [fixtures.make_file("p.txt", content="p\n")],
                                     private=True)
        cls.cfg = fixtures.make_config([cls.repo, gated, private], page_size=4)
        return cls.cfg

    def setUp(self):
        self.hub.clear_faults()
        self.hub.reset()

    def url(self, path):
        return self.hub.hub_url + path

    def resolve(self, path, method="HEAD", headers=None, repo="org/model-GGUF", rev="main"):
        p = "/%s/resolve/%s/%s" % (repo, urllib.parse.quote(rev, safe=""), urllib.parse.quote(path))
        return fetch(self.url(p), method, headers)

    def cdn_url(self, path="model.Q4_K_M.gguf", **kw):
        st, h, _ = self.resolve(path, **kw)
        self.assertEqual(st, 302)
        return h["Location"]

    # Listing ------------------------------------------------------------------

    def test_revision_info(self):
        st, h, body = fetch(self.url("/api/models/org/model-GGUF/revision/main?blobs=true"))
        self.assertEqual(st, 200)
        info = json.loads(body)
        self.assertEqual(info["id"], "org/model-GGUF")
        self.assertEqual(info["sha"], self.commit)
        self.assertFalse(info["gated"])
        sib = {s["rfilename"]: s for s in info["siblings"]}
        g = sib["model.Q4_K_M.gguf"]
        self.assertEqual(g["size"], GGUF_SIZE)
        self.assertEqual(g["lfs"]["sha256"], self.gguf["sha256"])
        self.assertNotIn("lfs", sib["README.md"])
        # Without blobs=true the Hub gives names only.
        st, _, body = fetch(self.url("/api/models/org/model-GGUF/revision/main"))
        self.assertEqual(json.loads(body)["siblings"][0].keys(), {"rfilename"})
        # A PR ref, percent-encoded, and a commit sha as REV.
        st, _, body = fetch(self.url("/api/models/org/model-GGUF/revision/refs%2Fpr%2F1"))
        self.assertEqual((st, json.loads(body)["sha"]), (200, self.pr_commit))
        st, _, body = fetch(self.url("/api/models/org/model-GGUF/revision/" + self.commit))
        self.assertEqual((st, json.loads(body)["sha"]), (200, self.commit))
        st, h, _ = fetch(self.url("/api/models/org/model-GGUF/revision/nope"))
        self.assertEqual((st, h["X-Error-Code"]), (404, "RevisionNotFound"))
        st, h, _ = fetch(self.url("/api/models/org/missing/revision/main"))
        self.assertEqual((st, h["X-Error-Code"]), (401, "RepoNotFound"))
        st, h, _ = fetch(self.url("/api/models/org/missing/revision/main"),
                         headers={"Authorization": "Bearer " + TOKEN})
        self.assertEqual((st, h["X-Error-Code"]), (404, "RepoNotFound"))

    def test_tree_pagination(self):
        url = self.url("/api/models/org/model-GGUF/tree/%s?recursive=true" % self.commit)
        entries, pages = [], 0
        while url:
            st, h, body = fetch(url)
            self.assertEqual(st, 200)
            page = json.loads(body)
            self.assertLessEqual(len(page), 4)
            entries += page
            pages += 1
            link = h.get("Link")
            url = None
            if link:
                self.assertTrue(link.endswith('>; rel="next"'), link)
                url = link[1:link.index(">")]
                self.assertTrue(url.startswith(self.hub.hub_url + "/"))
        paths = [e["path"] for e in entries]
        self.assertEqual(len(paths), len(set(paths)))
        self.assertEqual(pages, 3)  # 2 + 1 directory + 7 = 10 entries
        byp = {e["path"]: e for e in entries}
        self.assertEqual(byp["shards"]["type"], "directory")
        g = byp["model.Q4_K_M.gguf"]
        self.assertEqual((g["type"], g["size"]), ("file", GGUF_SIZE))
        self.assertEqual(g["lfs"], {"oid": self.gguf["sha256"], "size": GGUF_SIZE, "pointerSize": g["lfs"]["pointerSize"]})
        r = byp["README.md"]
        blob = README.encode()
        self.assertEqual(r["oid"], hashlib.sha1(b"blob %d\0" % len(blob) + blob).hexdigest())
        # Not recursive: the top level only.
        st, _, body = fetch(self.url("/api/models/org/model-GGUF/tree/main?limit=100"))
        self.assertEqual(sorted(e["path"] for e in json.loads(body)),
                         ["README.md", "model.Q4_K_M.gguf", "shards"])

    def test_refs(self):
        st, _, body = fetch(self.url("/api/models/org/model-GGUF/refs?include_prs=1"))
        refs = json.loads(body)
        self.assertEqual(refs["branches"], [{"name": "main", "ref": "refs/heads/main", "targetCommit": self.commit}])
        self.assertEqual([t["name"] for t in refs["tags"]], ["v1.0"])
        self.assertEqual(refs["pullRequests"][0]["targetCommit"], self.pr_commit)

    # Resolve and CDN ----------------------------------------------------------------

    def test_resolve_lfs_redirects_to_cdn(self):
        for method in ("HEAD", "GET"):
            st, h, body = self.resolve("model.Q4_K_M.gguf", method)
            self.assertEqual(st, 302)
            self.assertEqual(body, b"")
            self.assertEqual(h["Content-Length"], "0")
            self.assertEqual(h["X-Repo-Commit"], self.commit)
            self.assertEqual(h["X-Linked-Etag"], '"%s"' % self.gguf["sha256"])
            self.assertEqual(h["X-Linked-Size"], str(GGUF_SIZE))
            self.assertTrue(h["X-Request-Id"])
            self.assertTrue(h["Location"].startswith(self.hub.cdn_url + "/"), h["Location"])
        self.assertTrue(self.hub.cdn_url.startswith("http://127.0.0.2:"))

    def test_resolve_small_file_direct(self):
        st, h, body = self.resolve("README.md", "HEAD")
        blob = README.encode()
        sha1 = hashlib.sha1(b"blob %d\0" % len(blob) + blob).hexdigest()
        self.assertEqual((st, body), (200, b""))
        self.assertEqual(h["ETag"], '"%s"' % sha1)
        self.assertEqual(h["Content-Length"], str(len(blob)))
        self.assertEqual(h["X-Repo-Commit"], self.commit)
        st, h, body = self.resolve("README.md", "GET")
        self.assertEqual((st, body), (200, blob))
        st, h, body = self.resolve("pr.txt", "GET", rev="refs/pr/1")
        self.assertEqual((st, body, h["X-Repo-Commit"]), (200, b"pr\n", self.pr_commit))

    def test_resolve_errors(self):
        st, h, _ = self.resolve("nope.gguf")
        self.assertEqual((st, h["X-Error-Code"]), (404, "EntryNotFound"))
        st, h, _ = self.resolve("README.md", rev="nope")
        self.assertEqual((st, h["X-Error-Code"]), (404, "RevisionNotFound"))
        st, h, _ = self.resolve("README.md", repo="org/nope")
        self.assertEqual((st, h["X-Error-Code"]), (401, "RepoNotFound"))

    def test_rename_is_relative_307(self):
        st, h, _ = self.resolve("README.md", repo="oldorg/model-GGUF")
        self.assertEqual(st, 307)
        self.assertEqual(h["Location"], "/org/model-GGUF/resolve/main/README.md")

    def test_cdn_full_and_ranges(self):
        loc = self.cdn_url()
        st, h, body = fetch(loc)
        self.assertEqual((st, len(body)), (200, GGUF_SIZE))
        self.assertEqual(hashlib.sha256(body).hexdigest(), self.gguf["sha256"])
        self.assertEqual(body[:4], b"GGUF")
        st, h, body = fetch(loc, headers={"Range": "bytes=100-199"})
        self.assertEqual((st, h["Content-Range"]), (206, "bytes 100-199/%d" % GGUF_SIZE))
        self.assertEqual(body, self.gguf_bytes[100:200])
        st, h, body = fetch(loc, headers={"Range": "bytes=%d-" % (GGUF_SIZE - 10)})
        self.assertEqual((st, body), (206, self.gguf_bytes[-10:]))
        self.assertEqual(h["Content-Range"], "bytes %d-%d/%d" % (GGUF_SIZE - 10, GGUF_SIZE - 1, GGUF_SIZE))
        st, h, body = fetch(loc, headers={"Range": "bytes=%d-" % GGUF_SIZE})
        self.assertEqual((st, h["Content-Range"]), (416, "bytes */%d" % GGUF_SIZE))
        st, h, body = fetch(loc, "HEAD")
        self.assertEqual((st, h["Content-Length"], body), (200, str(GGUF_SIZE), b""))

    def test_keep_alive(self):
        loc = urllib.parse.urlsplit(self.cdn_url())
        conn = http.client.HTTPConnection(loc.hostname, loc.port, timeout=10)
        try:
            for a in (0, 1000, 5000):
                conn.request("GET", loc.path + "?" + loc.query, headers={"Range": "bytes=%d-%d" % (a, a + 99)})
                r = conn.getresponse()
                self.assertEqual((r.status, r.read()), (206, self.gguf_bytes[a:a + 100]))
        finally:
            conn.close()
        conns = {r["conn"] for r in self.hub.requests(host="cdn", settle=5)}
        self.assertEqual(len(conns), 1)

    def test_bad_signature_and_expiry(self):
        loc = self.cdn_url()
        st, h, body = fetch(loc.replace("sig=", "sig=0"))
        self.assertEqual(st, 403)
        self.assertIn(b"<Code>SignatureDoesNotMatch</Code>", body)
        self.hub.set_faults("model.Q4_K_M.gguf", {"url_ttl_seconds": 1})
        loc = self.cdn_url()
        st, _, _ = fetch(loc, headers={"Range": "bytes=0-0"})
        self.assertEqual(st, 206)
        exp = float(urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)["expires"][0])
        # Exact to the millisecond, not rounded up to a whole second.
        self.assertLessEqual(exp - time.time(), 1.0)
        time.sleep(max(0, exp - time.time()) + 0.1)
        st, _, body = fetch(loc, headers={"Range": "bytes=0-0"})
        self.assertEqual(st, 403)
        self.assertIn(b"expired", body)

    # Gated and private -------------------------------------------------------------

    def test_gated_repo(self):
        st, _, body = fetch(self.url("/api/models/org/gated/revision/main"))
        self.assertEqual((st, json.loads(body)["gated"]), (200, "manual"))
        st, h, _ = self.resolve("g.gguf", repo="org/gated")
        self.assertEqual((st, h["X-Error-Code"]), (401, "GatedRepo"))
        self.assertIn("restricted", h["X-Error-Message"])
        st, h, _ = self.resolve("g.gguf", repo="org/gated", headers={"Authorization": "Bearer wrong"})
        self.assertEqual((st, h["X-Error-Code"]), (401, "GatedRepo"))
        st, h, _ = self.resolve("g.gguf", repo="org/gated", headers={"Authorization": "Bearer " + TOKEN})
        self.assertEqual(st, 302)
        self.assertEqual(h["X-Linked-Etag"], '"%s"' % self.gguf["sha256"])

    def test_private_repo(self):
        st, h, _ = self.resolve("p.txt", repo="org/private")
        self.assertEqual((st, h["X-Error-Code"]), (401, "RepoNotFound"))
        st, h, body = self.resolve("p.txt", "GET", repo="org/private",
                                   headers={"Authorization": "Bearer " + TOKEN})
        self.assertEqual((st, body), (200, b"p\n"))

    # Recording ---------------------------------------------------------------------

    def test_records_authorization_on_hub_not_cdn(self):
        auth = {"Authorization": "Bearer " + TOKEN}
        loc = self.cdn_url(headers=auth, method="GET")
        st, _, _ = fetch(loc, headers={"Range": "bytes=0-9"})
        self.assertEqual(st, 206)
        reqs = self.hub.requests(settle=5)
        hub = [r for r in reqs if r["host"] == "hub"]
        cdn = [r for r in reqs if r["host"] == "cdn"]
        self.assertEqual(len(hub), 1)
        self.assertEqual(len(cdn), 1)
        self.assertEqual(hub[0]["headers"]["authorization"], "Bearer " + TOKEN)
        self.assertEqual((hub[0]["status"], hub[0]["file"]), (302, "model.Q4_K_M.gguf"))
        self.assertNotIn("authorization", cdn[0]["headers"])
        self.assertEqual((cdn[0]["range"], cdn[0]["status"], cdn[0]["bytes_sent"]), ("bytes=0-9", 206, 10))
        self.assertTrue(cdn[0]["completed"])


    # Faults ------------------------------------------------------------------------

    def test_drop_after_bytes_counted(self):
        self.hub.set_faults("model.Q4_K_M.gguf", {"drop_after_bytes": {"bytes": 5000, "count": 1}})
        loc = self.cdn_url()
        st, _, body, err = raw_get(loc)
        self.assertEqual(st, 200)
        self.assertIsNotNone(err)
        self.assertEqual(body, self.gguf_bytes[:5000])
        st, _, body, err = raw_get(loc, {"Range": "bytes=5000-"})
        self.assertEqual((st, err), (206, None))
        self.assertEqual(body, self.gguf_bytes[5000:])
        cdn = self.hub.requests(host="cdn", settle=5)
        self.assertEqual([(r["bytes_sent"], r["error"]) for r in cdn],
                         [(5000, "dropped"), (GGUF_SIZE - 5000, None)])

    def test_drop_on_small_file_always(self):
        self.hub.set_faults("README.md", {"drop_after_bytes": 3})
        for _ in range(2):
            st, _, body, err = raw_get(self.url("/org/model-GGUF/resolve/main/README.md"))
            self.assertEqual((st, body), (200, README.encode()[:3]))
            self.assertIsNotNone(err)

    def test_stall(self):
        self.hub.set_faults("model.Q4_K_M.gguf", {"stall_after_bytes": 1000, "stall_seconds": 5,
                                                  "stall_count": 1})
        loc = urllib.parse.urlsplit(self.cdn_url())
        sock = socket.create_connection((loc.hostname, loc.port), timeout=5)
        try:
            sock.sendall(("GET %s?%s HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1999\r\n\r\n"
                          % (loc.path, loc.query)).encode())
            got = b""
            while b"\r\n\r\n" not in got or len(got.split(b"\r\n\r\n", 1)[1]) < 1000:
                got += sock.recv(65536)
            self.assertEqual(len(got.split(b"\r\n\r\n", 1)[1]), 1000)
            sock.settimeout(0.7)
            with self.assertRaises(socket.timeout):
                sock.recv(65536)
        finally:
            sock.close()
        # The count is spent: the next request is not stalled.
        t = time.monotonic()
        st, _, body = fetch(self.cdn_url(), headers={"Range": "bytes=0-1999"}, timeout=3)
        self.assertEqual((st, body), (206, self.gguf_bytes[:2000]))
        self.assertLess(time.monotonic() - t, 2)

    def test_status_5xx_count_on_cdn(self):
        self.hub.set_faults("model.Q4_K_M.gguf", {"status_5xx": {"code": 502, "count": 2}})
        loc = self.cdn_url()
        codes = [fetch(loc, headers={"Range": "bytes=0-0"})[0] for _ in range(3)]
        self.assertEqual(codes, [502, 502, 206])
        self.assertEqual(self.resolve("model.Q4_K_M.gguf")[0], 302)

    def test_status_5xx_on_resolve(self):
        self.hub.set_faults("README.md", {"status_5xx": {"code": 500, "count": 1, "where": "resolve"}})
        self.assertEqual([self.resolve("README.md")[0] for _ in range(2)], [500, 200])

    def test_429_retry_after(self):
        self.hub.set_faults("model.Q4_K_M.gguf", {"status_429": {"count": 1, "retry_after": 7}})
        st, h, _ = self.resolve("model.Q4_K_M.gguf")
        self.assertEqual((st, h["Retry-After"]), (429, "7"))
        self.assertIn("t=7", h["RateLimit"])
        self.assertEqual(self.resolve("model.Q4_K_M.gguf")[0], 302)

    def test_head_fail(self):
        self.hub.set_faults("model.Q4_K_M.gguf", {"head_fail": {"count": 2, "code": 503}})
        codes = [self.resolve("model.Q4_K_M.gguf")[0] for _ in range(3)]
        self.assertEqual(codes, [503, 503, 302])

    def test_ignore_range(self):
        self.hub.set_faults("model.Q4_K_M.gguf", {"ignore_range": {"count": 1}})
        loc = self.cdn_url()
        st, h, body = fetch(loc, headers={"Range": "bytes=10-19"})
        self.assertEqual((st, len(body)), (200, GGUF_SIZE))
        self.assertNotIn("Content-Range", h)
        st, h, body = fetch(loc, headers={"Range": "bytes=10-19"})
        self.assertEqual((st, body), (206, self.gguf_bytes[10:20]))

    def test_corrupt(self):
        off = 2 * (1 << 20) + 17
        self.hub.set_faults("model.Q4_K_M.gguf", {"corrupt": {"offset": off}})
        loc = self.cdn_url()
        st, _, body = fetch(loc)
        self.assertEqual(st, 200)
        self.assertNotEqual(hashlib.sha256(body).hexdigest(), self.gguf["sha256"])
        diff = [i for i in range(len(body)) if body[i] != self.gguf_bytes[i]] if len(body) == GGUF_SIZE else None
        self.assertEqual(diff, [off])
        st, _, body = fetch(loc, headers={"Range": "bytes=%d-%d" % (off - 1, off + 1)})
        self.assertEqual(body, bytes([self.gguf_bytes[off - 1], self.gguf_bytes[off] ^ 0xFF,
                                      self.gguf_bytes[off + 1]]))

    def test_rate_limit(self):
        self.hub.set_faults("model.Q4_K_M.gguf", {"rate_limit_bps": 400000})
        loc = self.cdn_url()
        t = time.monotonic()
        st, _, body = fetch(loc, headers={"Range": "bytes=0-399999"})
        dt = time.monotonic() - t
        self.assertEqual((st, len(body)), (206, 400000))
        self.assertGreater(dt, 0.8)
        self.assertLess(dt, 3)

    def test_faults_from_config_and_stats(self):
        cfg = json.loads(json.dumps(self.cfg))
        repo = cfg["repos"][0]
        for f in repo["commits"][self.commit]["files"]:
            if f["path"] == "README.md":
                f["faults"] = {"status_5xx": {"code": 503, "count": 1, "where": "any"}}
        self.hub.reload(cfg)
        self.addCleanup(self.hub.reload, self.cfg)
        self.assertEqual(self.resolve("README.md", "GET")[0], 503)
        self.assertEqual(self.resolve("README.md", "GET")[0], 200)
        faults = self.hub.faults()
        self.assertEqual(faults[0]["counts"], {"status_5xx": 1})
        stats = self.hub.stats()
        self.assertEqual(stats["files"]["org/model-GGUF:README.md"]["bytes_sent"], len(README))

    def test_concurrency_stats(self):
        self.hub.set_faults("model.Q4_K_M.gguf", {"rate_limit_bps": 2000000})
        loc = self.cdn_url()
        import threading
        results = []
        def part(a):
            results.append(fetch(loc, headers={"Range": "bytes=%d-%d" % (a, a + 299999)})[0])
        ts = [threading.Thread(target=part, args=(i * 300000,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
        self.assertEqual(results, [206] * 4)
        s = self.hub.stats()["files"]["org/model-GGUF:model.Q4_K_M.gguf"]
        self.assertEqual((s["requests"], s["bytes_sent"], s["active"]), (4, 1200000, 0))
        self.assertEqual(s["max_concurrent"], 4)

    def test_bad_control_requests(self):
        with self.assertRaises(client.FakeHubError):
            self.hub.set_faults("x", {"no_such_fault": 1})
        with self.assertRaises(client.FakeHubError):
            self.hub.reload({"repos": [{"id": "noslash"}]})
        # A failed reload leaves the old config in place.
        self.assertEqual(self.resolve("README.md")[0], 200)


    def test_drop_rst(self):
        self.hub.set_faults("model.Q4_K_M.gguf", {"drop_after_bytes": {"bytes": 100, "mode": "rst"}})
        try:
            st, _, body, err = raw_get(self.cdn_url())
            self.assertLess(len(body), GGUF_SIZE)
        except ConnectionResetError:
            pass
        self.assertEqual(self.hub.requests(host="cdn", settle=5)[0]["error"], "dropped")

    def test_redirect_body_and_cdn_rejecting_authorization(self):
        cfg = dict(self.cfg, redirect_body=True, cdn_reject_authorization=True)
        self.hub.reload(cfg)
        self.addCleanup(self.hub.reload, self.cfg)
        st, h, body = self.resolve("model.Q4_K_M.gguf", "GET")
        self.assertEqual(st, 302)
        self.assertTrue(body.startswith(b"Found. Redirecting to http://127.0.0.2:"))
        self.assertEqual(h["Content-Length"], str(len(body)))
        self.assertEqual(h["X-Linked-Size"], str(GGUF_SIZE))
        st, _, body = fetch(h["Location"], headers={"Authorization": "Bearer " + TOKEN, "Range": "bytes=0-0"})
        self.assertEqual(st, 400)
        self.assertIn(b"InvalidArgument", body)

    def test_reject_invalid_tokens(self):
        self.assertEqual(self.resolve("README.md", headers={"Authorization": "Bearer bad"})[0], 200)
        self.hub.reload(dict(self.cfg, reject_invalid_tokens=True))
        self.addCleanup(self.hub.reload, self.cfg)
        st, h, _ = self.resolve("README.md", headers={"Authorization": "Bearer bad"})
        self.assertEqual((st, h["X-Error-Message"]), (401, "Invalid credentials in Authorization header"))
        self.assertIsNone(h["X-Error-Code"])
        self.assertEqual(self.resolve("README.md", headers={"Authorization": "Bearer " + TOKEN})[0], 200)
        self.assertEqual(self.resolve("README.md")[0], 200)

    def test_since_and_host_filters(self):
        self.resolve("README.md")
        last = self.hub.requests(settle=5)[-1]["seq"]
        self.resolve("README.md", "GET")
        reqs = self.hub.requests(since=last)
        self.assertEqual([r["method"] for r in reqs], ["GET"])
        self.assertEqual(self.hub.requests(host="cdn", settle=5), [])


class FixturesAndClientTest(unittest.TestCase):
    def test_python_gguf_header(self):
        import struct
        with tempfile.TemporaryDirectory() as d:
            g = fixtures.write_gguf(os.path.join(d, "a.gguf"), size=4096, seed=1, arch="qwen2",
                                    file_type="Q8_0", split=(1, 3), use_tool=False)
            with open(g["path"], "rb") as f:
                data = f.read()
            self.assertEqual(len(data), 4096)
            self.assertEqual(hashlib.sha256(data).hexdigest(), g["sha256"])
            magic, ver, ntens, nkv = struct.unpack_from("<4sIQQ", data)
            self.assertEqual((magic, ver, ntens, nkv), (b"GGUF", 3, 0, 7))
            pos, kv = 24, {}
            for _ in range(nkv):
                (klen,) = struct.unpack_from("<Q", data, pos)
                key = data[pos + 8:pos + 8 + klen].decode()
                (t,) = struct.unpack_from("<I", data, pos + 8 + klen)
                pos += 12 + klen
                if t == 8:
                    (vlen,) = struct.unpack_from("<Q", data, pos)
                    kv[key] = data[pos + 8:pos + 8 + vlen].decode()
                    pos += 8 + vlen
                else:
                    fmt = {2: "<H", 4: "<I", 5: "<i"}[t]
                    (kv[key],) = struct.unpack_from(fmt, data, pos)
                    pos += struct.calcsize(fmt)
            self.assertEqual(kv["general.architecture"], "qwen2")
            self.assertEqual(kv["general.file_type"], 7)
            self.assertEqual(kv["qwen2.context_length"], 4096)
            self.assertEqual((kv["split.no"], kv["split.count"]), (1, 3))
            g2 = fixtures.write_gguf(os.path.join(d, "b.gguf"), size=4096, seed=1, arch="qwen2",
                                     file_type="Q8_0", split=(1, 3), use_tool=False)
            self.assertEqual(g2["sha256"], g["sha256"])

    def test_bad_config_fails_fast(self):
        t = time.monotonic()
        with self.assertRaises(client.FakeHubError):
            client.start({"repos": [{"id": "a/b", "revisions": {"main": "0" * 40}}]}, timeout=10)
        self.assertLess(time.monotonic() - t, 5)

    def test_fixed_ports_and_stop(self):
        hub = client.start(fixtures.make_config([]), hub_port=18150, cdn_port=18151)
        try:
            self.assertEqual((hub.hub_url, hub.cdn_url), ("http://127.0.0.1:18150", "http://127.0.0.2:18151"))
            st, _, body = fetch(hub.hub_url + "/_fake/health")
            self.assertEqual(st, 200)
        finally:
            hub.stop()
        self.assertIsNone(hub.proc)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", 18150), timeout=2).close()

if __name__ == "__main__":
    unittest.main(verbosity=2)
