"""The URL and file vendors through provision-run, and refs that must fail
cleanly: unknown vendor, malformed ref, a repo path escaping the cache, a
listing that lies about a size, a redirect to plain http, a wrong pinned
digest. Every failure leaves the catalog as it was."""

import json
import os
import shutil
import tempfile
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from daemonhelp import DaemonTestCase
import provision_run as pr
import fixtures

EVIL_COMMIT = "e" * 40


class EvilHub(BaseHTTPRequestHandler):
    """A hub that lies, one way per repo name (org "evil")."""

    def log_message(self, *a):
        pass

    def send(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        parts = self.path.split("?")[0].split("/")
        # /api/models/evil/<case>/(revision|tree)/<rev>
        if len(parts) >= 7 and parts[1:4] == ["api", "models", "evil"]:
            case, kind = parts[4], parts[5]
            name = {"escape": "../../../escaped.gguf"}.get(case, "x.Q4_K_M.gguf")
            if kind == "revision":
                body = {"sha": EVIL_COMMIT, "siblings": [{"rfilename": "x.Q4_K_M.gguf"}]}
            else:
                body = [{"type": "file", "path": name, "size": 100, "oid": "1" * 40,
                         "lfs": {"oid": "a" * 64, "size": 100, "pointerSize": 130}}]
            return self.send(200, json.dumps(body).encode(),
                             [("Content-Type", "application/json"), ("X-Repo-Commit", EVIL_COMMIT)])
        self.send(404)

    def do_HEAD(self):
        parts = self.path.split("/")
        if len(parts) >= 4 and parts[1] == "evil" and parts[3] == "resolve":
            case = parts[2]
            size = "200" if case == "liar" else "100"
            loc = ("http://example.invalid/blob" if case == "plainhttp"
                   else "http://127.0.0.2:9/blob")
            return self.send(302, b"", [("X-Repo-Commit", EVIL_COMMIT),
                                        ("X-Linked-Etag", '"%s"' % ("a" * 64)),
                                        ("X-Linked-Size", size), ("Location", loc)])
        self.send(404)


class ProvisionUrlFile(DaemonTestCase):
    tmp_prefix = "prov-url-"

    @classmethod
    def hub_config(cls):
        os.makedirs(os.path.join(cls.tmp, "home"))
        cls.g = fixtures.write_gguf(os.path.join(cls.tmp, "u.gguf"), size=(2 << 20) + 123,
                                    seed=7, file_type="Q8_0", arch="phi3", use_tool=False)
        repo = fixtures.make_repo("org/files", [fixtures.make_file("u.Q8_0.gguf", cls.g)])
        return fixtures.make_config([repo])

    @classmethod
    def set_up_class(cls):
        cls.evil = ThreadingHTTPServer(("127.0.0.1", 0), EvilHub)
        threading.Thread(target=cls.evil.serve_forever, daemon=True).start()
        cls.evil_url = "http://127.0.0.1:%d" % cls.evil.server_address[1]

    @classmethod
    def tearDownClass(cls):
        evil = getattr(cls, "evil", None)
        if evil:
            evil.shutdown()
            evil.server_close()
        super().tearDownClass()

    def setUp(self):
        self.data = tempfile.mkdtemp(dir=self.tmp, prefix="data-")
        self.env = pr.clean_env(os.path.join(self.tmp, "home"), self.hub.hub_url)
        self.hub.reset()
        # A plain URL: the Hub's /resolve, which redirects to the CDN host.
        self.url = "%s/org/files/resolve/main/u.Q8_0.gguf" % self.hub.hub_url

    def pull(self, *refs, env=None, allow=()):
        """provision-run, with --allow-file-import for each folder of allow."""
        opts = [o for d in allow for o in ("--allow-file-import", d)]
        return pr.run(env or self.env, self.data, refs, *opts)

    def assert_fails(self, ref, code, message, env=None, allow=()):
        r = self.pull(ref, env=env, allow=allow)
        end = r.end(0)
        self.assertEqual(end["event"], "error", r.stderr)
        self.assertEqual(end["code"], code, end)
        self.assertIn(message, end["message"])
        self.assertEqual(r.models(), [])
        return end

    # URL vendor ----------------------------------------------------------

    def test_url_pinned(self):
        r = self.pull("%s#sha256=%s" % (self.url, self.g["sha256"]))
        end = r.end(0)
        self.assertEqual(end["event"], "done", r.stderr)
        self.assertEqual(end["id"], "url:" + self.g["sha256"][:16])
        m = r.models()[0]
        self.assertEqual((m["source"], m["repo"], m["size"]), ("url", self.url, self.g["size"]))
        self.assertEqual((m["architecture"], m["quantization"]), ("phi3", "Q8_0"))
        self.assertTrue(m["repo_dir"].startswith("urls--127.0.0.1"), m["repo_dir"])
        self.assertEqual(pr.sha256_file(end["path"]), self.g["sha256"])
        self.assertTrue(end["path"].endswith("/u.Q8_0.gguf"))
        # Again: answered from the catalog, no request at all.
        self.hub.reset()
        r = self.pull("%s#sha256=%s" % (self.url, self.g["sha256"]))
        self.assertEqual(r.end(0)["event"], "done")
        self.assertEqual(self.hub.requests(), [])

    def test_url_unpinned_records_computed_digest(self):
        r = self.pull(self.url)
        end = r.end(0)
        self.assertEqual(end["event"], "done", r.stderr)
        self.assertEqual(end["id"], "url:" + self.g["sha256"][:16])
        self.assertEqual(r.models()[0]["files"][0]["sha256"], self.g["sha256"])
        self.assertEqual(r.models()[0]["commit"], self.g["sha256"])

    def test_url_wrong_pin(self):
        end = self.assert_fails("%s#sha256=%s" % (self.url, "0" * 64), "digest_mismatch", "")
        self.assertIn("sha256", end["message"].lower())

    def test_url_not_found(self):
        self.assert_fails("%s/org/files/resolve/main/nope.gguf" % self.hub.hub_url,
                          "not_found", "HTTP 404")

    # File vendor ---------------------------------------------------------

    def blobs(self):
        d = os.path.join(self.data, "hub", "files--local", "blobs")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def test_file_import_copies_and_records_facts(self):
        src = os.path.join(self.tmp, "local-Q8_0.gguf")
        shutil.copyfile(self.g["path"], src)
        r = self.pull("file://" + src, allow=[self.tmp])
        end = r.end(0)
        self.assertEqual(end["event"], "done", r.stderr)
        self.assertEqual(end["id"], "file:local-Q8_0.gguf")
        m = r.models()[0]
        self.assertEqual((m["source"], m["files"][0]["sha256"]), ("file", self.g["sha256"]))
        self.assertEqual((m["architecture"], m["quantization"]), ("phi3", "Q8_0"))
        blob = os.path.join(self.data, "hub", m["repo_dir"], "blobs", self.g["sha256"])
        # A copy: the user's file can change or go without touching the verified blob.
        self.assertNotEqual(os.stat(blob).st_ino, os.stat(src).st_ino)
        self.assertEqual(pr.sha256_file(end["path"]), self.g["sha256"])
        self.assertEqual(self.hub.requests(), [])

    def test_file_missing(self):
        self.assert_fails("file://%s/none.gguf" % self.tmp, "not_found", "none.gguf",
                          allow=[self.tmp])

    def test_file_refused_without_allowed_folder(self):
        src = os.path.join(self.tmp, "unallowed.gguf")
        shutil.copyfile(self.g["path"], src)
        end = self.assert_fails("file://" + src, "forbidden", "--allow-file-import")
        self.assertIn("reads no local files", end["message"])
        self.assertEqual(self.blobs(), [])

    def test_file_kernel_files_refused(self):
        # Even a daemon told it may read everything never reads /proc, /sys or /dev.
        for path in ("/proc/self/environ", "/sys/kernel/mm/transparent_hugepage/enabled",
                     "/dev/zero", "/dev/null"):
            self.assert_fails("file://" + path, "forbidden", "/proc, /sys and /dev",
                                   allow=["/"])
        self.assertEqual(self.blobs(), [])
        # A link to them from an allowed folder is resolved first and refused too.
        link = os.path.join(self.tmp, "environ.gguf")
        os.symlink("/proc/self/environ", link)
        try:
            self.assert_fails("file://" + link, "forbidden", "never imported", allow=[self.tmp])
        finally:
            os.unlink(link)
        self.assertEqual(self.blobs(), [])

    def test_file_outside_allowed_folder(self):
        allowed = tempfile.mkdtemp(dir=self.tmp, prefix="allowed-")
        secret = os.path.join(self.tmp, "secret.gguf")
        with open(secret, "wb") as f:
            f.write(b"secret weights")
        os.chmod(secret, 0o600)
        self.assert_fails("file://" + secret, "forbidden", "outside the folders",
                               allow=[allowed])
        # A symlink inside the allowed folder that points out of it is not followed out.
        os.symlink(secret, os.path.join(allowed, "x.gguf"))
        self.assert_fails("file://%s/x.gguf" % allowed, "forbidden", "outside the folders",
                               allow=[allowed])
        # A fifo is not a file.
        os.mkfifo(os.path.join(allowed, "fifo.gguf"))
        self.assert_fails("file://%s/fifo.gguf" % allowed, "unprocessable",
                               "not a regular file", allow=[allowed])
        self.assertEqual(self.blobs(), [])

    def test_file_private_source_gives_private_blob(self):
        src = os.path.join(self.tmp, "private-Q8_0.gguf")
        shutil.copyfile(self.g["path"], src)
        os.chmod(src, 0o600)
        r = self.pull("file://" + src, allow=[self.tmp])
        end = r.end(0)
        self.assertEqual(end["event"], "done", r.stderr)
        blob = os.path.join(self.data, "hub", "files--local", "blobs", self.g["sha256"])
        self.assertEqual(os.stat(blob).st_mode & 0o077, 0, oct(os.stat(blob).st_mode))

    def test_file_pin(self):
        src = os.path.join(self.tmp, "pinned-Q8_0.gguf")
        shutil.copyfile(self.g["path"], src)
        self.assert_fails("file://%s#sha256=%s" % (src, "0" * 64), "digest_mismatch",
                          "not the pinned", allow=[self.tmp])
        r = self.pull("file://%s#sha256=%s" % (src, self.g["sha256"]), allow=[self.tmp])
        self.assertEqual(r.end(0)["event"], "done", r.stderr)
        # Once the content is stored, the pinned ref needs no read of the path at all.
        os.unlink(src)
        r = self.pull("file://%s#sha256=%s" % (src, self.g["sha256"]))
        self.assertEqual(r.end(0)["event"], "done", r.stderr)

    # Bad input -----------------------------------------------------------

    def test_unknown_vendor_and_malformed_refs(self):
        self.assert_fails("ftp://example.com/x.gguf", "unprocessable", "unknown scheme")
        self.assert_fails("a/b/c", "unprocessable", "model ref 'a/b/c'")
        self.assertEqual(self.hub.requests(), [])

    def test_repo_path_escaping_the_cache(self):
        env = dict(self.env, HF_ENDPOINT=self.evil_url)
        self.assert_fails("hf:evil/escape:*", "bad_request", "unsafe path", env=env)
        self.assertFalse(os.path.exists(os.path.join(self.data, "escaped.gguf")))

    def test_listing_that_lies_about_sizes(self):
        env = dict(self.env, HF_ENDPOINT=self.evil_url)
        self.assert_fails("hf:evil/liar", "digest_mismatch", "the listing says 100 bytes",
                          env=env)

    def test_redirect_to_plain_http(self):
        env = dict(self.env, HF_ENDPOINT=self.evil_url)
        self.assert_fails("hf:evil/plainhttp", "forbidden", "plain http:// is not allowed", env=env)


if __name__ == "__main__":
    unittest.main()
