"""OCI and Ollama model sources against a real registry: Debian's
docker-registry (the CNCF distribution registry) on loopback with its
filesystem storage in the test's folder. Artifacts are pushed with the
registry's own upload API (POST, chunked PATCH, final PUT) in the shapes
Docker Model Runner, CNCF ModelPack and Ollama use, then pulled through the
daemon: oci:// and ollama: refs, a split model, an image index, a tag that
does not exist, a manifest without a GGUF, a corrupted blob, a blob shared
with an hf: model, and a registry behind token authentication (an RS256 JWT
signed with the openssl CLI, handed out by a token server in the test)."""

import base64
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

from ports import free_port
from clihelp import CliMixin
from daemonhelp import DaemonTestCase
import fixtures

REGISTRY_BIN = shutil.which("docker-registry")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CHUNK = 1 << 20
SERVICE, ISSUER = "rbee-test-registry", "rbee-test-issuer"
USER, PASSWORD = "puller", "s3cret"


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Registry:
    """docker-registry serving DIR/data on 127.0.0.1:port; `auth` is
    {"token": {...}} or {"htpasswd": {...}}, the auth section of its
    config, or None for an open registry."""

    def __init__(self, folder, auth=None):
        self.folder = folder
        self.data = os.path.join(folder, "data")
        os.makedirs(self.data, exist_ok=True)
        self.log = os.path.join(folder, "registry.log")
        self.token = None  # a function (repository, actions) -> bearer token, for pushes
        self.basic = None  # or "user:password"
        for attempt in range(5):
            self.port = free_port()
            conf = os.path.join(folder, "config.yml")
            with open(conf, "w") as f:
                f.write("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                        "    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%d\n" %
                        (self.data, self.port))
                for kind, conf_items in (auth or {}).items():
                    f.write("auth:\n  %s:\n" % kind + "".join(
                        "    %s: %s\n" % kv for kv in conf_items.items()))
            with open(self.log, "a") as log:
                self.proc = subprocess.Popen([REGISTRY_BIN, "serve", conf],
                                             stdout=log, stderr=subprocess.STDOUT)
            if self._wait_up():
                break
            self.stop()
        else:
            raise RuntimeError("docker-registry did not start; see %s" % self.log)
        self.url = "http://127.0.0.1:%d" % self.port
        self.host = "127.0.0.1:%d" % self.port

    def _wait_up(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/v2/" % self.port, timeout=1)
                return True
            except urllib.error.HTTPError:
                return True  # 401 with token auth: it is up
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _req(self, method, url, body=None, headers=None, repo=None):
        h = dict(headers or {})
        if self.token and repo:
            h["Authorization"] = "Bearer " + self.token(repo, ["pull", "push"])
        elif self.basic:
            h["Authorization"] = "Basic " + base64.b64encode(self.basic.encode()).decode()
        if not url.startswith("http"):
            url = self.url + url
        req = urllib.request.Request(url, data=body, method=method, headers=h)
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()

    def push_blob(self, repo, data):
        """Uploads data in CHUNK-sized PATCHes and a final PUT; returns its descriptor."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        st, h, _ = self._req("POST", "/v2/%s/blobs/uploads/" % repo, b"", repo=repo)
        assert st == 202, st
        loc = h["Location"]
        for off in range(0, len(data), CHUNK):
            part = data[off:off + CHUNK]
            st, h, _ = self._req("PATCH", loc, part, {
                "Content-Type": "application/octet-stream",
                "Content-Range": "%d-%d" % (off, off + len(part) - 1)}, repo=repo)
            assert st == 202, st
            loc = h["Location"]
        sep = "&" if "?" in loc else "?"
        st, h, _ = self._req("PUT", loc + sep + "digest=" + urllib.parse.quote(digest), b"",
                             repo=repo)
        assert st == 201, st
        return {"digest": digest, "size": len(data)}

    def push_manifest(self, repo, ref, manifest, media_type):
        body = json.dumps(manifest).encode()
        st, h, _ = self._req("PUT", "/v2/%s/manifests/%s" % (repo, ref), body,
                             {"Content-Type": media_type}, repo=repo)
        assert st == 201, st
        return hashlib.sha256(body).hexdigest()

    def blob_data_path(self, digest):
        hexd = digest.split(":")[1]
        return os.path.join(self.data, "docker", "registry", "v2", "blobs", "sha256", hexd[:2],
                            hexd, "data")

    def blob_gets(self, digest):
        """GETs of a blob in the registry's access log."""
        with open(self.log, errors="replace") as f:
            return [l for l in f if '"GET ' in l and digest in l]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def layer(desc, media_type, path=None):
    d = dict(desc, mediaType=media_type)
    if path:
        d["annotations"] = {"org.cncf.model.filepath": path}
    return d


def docker_ai_manifest(reg, repo, ggufs, extras=()):
    """A Docker Model Runner artifact: its config, one gguf.v3 layer per shard, then extras."""
    cfg = json.dumps({"config": {"format": "gguf", "architecture": "llama"},
                      "descriptor": {"created": "2026-01-01T00:00:00Z"},
                      "rootfs": {"type": "rootfs", "diff_ids": [
                          "sha256:" + g["sha256"] for g in ggufs]}}).encode()
    layers = [layer(reg.push_blob(repo, read(g["path"])), "application/vnd.docker.ai.gguf.v3",
                    os.path.basename(g["path"])) for g in ggufs]
    for media_type, data in extras:
        layers.append(layer(reg.push_blob(repo, data), media_type))
    return {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": dict(reg.push_blob(repo, cfg),
                           mediaType="application/vnd.docker.ai.model.config.v0.1+json"),
            "layers": layers}


def ollama_manifest(reg, repo, gguf, extras=()):
    """Ollama's shape: a Docker schema 2 manifest with image.model and friends."""
    cfg = json.dumps({"model_format": "gguf", "model_family": "llama", "model_type": "1B",
                      "file_type": "Q4_K_M"}).encode()
    layers = [layer(reg.push_blob(repo, read(gguf["path"])), "application/vnd.ollama.image.model")]
    for media_type, data in extras:
        layers.append(layer(reg.push_blob(repo, data), media_type))
    return {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": dict(reg.push_blob(repo, cfg),
                           mediaType="application/vnd.docker.container.image.v1+json"),
            "layers": layers}


@unittest.skipUnless(REGISTRY_BIN, "docker-registry is not installed (scripts/install-deps TEST)")
class OciSources(CliMixin, DaemonTestCase):
    tmp_prefix = "oci-src-"
    serve_defaults = {"level": "info", "hf_home": "hf-home"}

    @classmethod
    def hub_config(cls):
        t = lambda *p: os.path.join(cls.tmp, *p)
        os.makedirs(t("src"))
        cls.shared = fixtures.write_gguf(t("src", "shared.gguf"), size=(1 << 20) + 17, seed=81,
                                         file_type="Q4_K_M", arch="qwen2")
        repo = fixtures.make_repo("org/shared-GGUF",
                                  [fixtures.make_file("shared.Q4_K_M.gguf", cls.shared)])
        return fixtures.make_config([repo])

    @classmethod
    def set_up_class(cls):
        t = lambda *p: os.path.join(cls.tmp, *p)
        cls.reg = Registry(t("registry"))
        cls.cache = t("hfcache")
        os.makedirs(cls.cache)
        cls.daemon, cls.url = cls.serve("hive", ["--hf-cache", cls.cache],
                                        env={"RBEE_HIVE_OLLAMA_REGISTRY": cls.reg.url})

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "reg", None):
            cls.reg.stop()
        super().tearDownClass()

    def pull(self, ref, ok=True):
        rc, out, err = self.run_cli("pull", "--json", ref)
        if ok:
            self.assertEqual(rc, 0, out + err)
            return next(json.loads(l)["data"] for l in out.splitlines()
                        if json.loads(l)["event"] == "data")
        self.assertNotEqual(rc, 0, out + err)
        return out + err

    def api(self, path, method="GET"):
        req = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def model(self, mid):
        return self.api("/v1/models/" + urllib.parse.quote(mid, safe=""))

    def oci_dir(self, name):
        return os.path.join(self.cache, "oci--127.0.0.1_%d--%s" % (
            self.reg.port, name.replace("/", "--")))

    def gguf(self, name, **kw):
        return fixtures.write_gguf(os.path.join(self.tmp, "src", name), **kw)

    # -- the shapes -------------------------------------------------------

    def test_docker_ai_split_model(self):
        a = self.gguf("m-00001-of-00002.gguf", size=(1 << 20) + 5, seed=11, split=(0, 2),
                      arch="llama", file_type="Q8_0")
        b = self.gguf("m-00002-of-00002.gguf", size=(2 << 20) + 9, seed=12, split=(1, 2),
                      arch="llama", file_type="Q8_0")
        lic = b"MIT License\n"
        man = docker_ai_manifest(self.reg, "ai/split", [a, b],
                                 [("application/vnd.docker.ai.license", lic)])
        digest = self.reg.push_manifest("ai/split", "Q8_0", man, OCI_MANIFEST)
        ref = "oci://127.0.0.1:%d/ai/split:Q8_0" % self.reg.port
        got = self.pull(ref)
        self.assertEqual(got["id"], ref)
        m = self.model(ref)
        self.assertEqual(m["source"], "oci")
        self.assertEqual(m["commit"], digest)
        self.assertEqual([f["path"] for f in m["files"]],
                         ["m-00001-of-00002.gguf", "m-00002-of-00002.gguf", "LICENSE"])
        self.assertEqual([f["sha256"] for f in m["files"]][:2], [a["sha256"], b["sha256"]])
        self.assertEqual(m["gguf"]["architecture"], "llama")
        rd = self.oci_dir("ai/split")
        snap = os.path.join(rd, "snapshots", digest)
        self.assertEqual(read(os.path.join(snap, "m-00002-of-00002.gguf")), read(b["path"]))
        self.assertEqual(read(os.path.join(snap, "LICENSE")), lic)
        self.assertEqual(read(os.path.join(rd, "refs", "Q8_0")).decode(), digest)
        # Pulled again: answered from the catalog, no blob fetched.
        before = len(self.reg.blob_gets(a["sha256"]))
        self.pull(ref)
        self.assertEqual(len(self.reg.blob_gets(a["sha256"])), before)
        # verify hashes every blob of it again and finds them right.
        rc, out, err = self.run_cli("verify", ref)
        self.assertEqual(rc, 0, out + err)
        # The shorthand without a tag names the same repository; rm removes the files.
        rc, out, err = self.run_cli("rm", "oci://127.0.0.1:%d/ai/split" % self.reg.port)
        self.assertEqual(rc, 0, out + err)
        self.assertFalse(os.path.exists(os.path.join(rd, "blobs", a["sha256"])))

    def test_modelpack_through_an_index_and_by_digest(self):
        g = self.gguf("pack.gguf", size=(1 << 20) + 3, seed=21, arch="gemma3")
        repo = "models/pack"
        man = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "artifactType": "application/vnd.cncf.model.manifest.v1+json",
               "config": dict(self.reg.push_blob(repo, b"{}"),
                              mediaType="application/vnd.cncf.model.config.v1+json"),
               "layers": [layer(self.reg.push_blob(repo, read(g["path"])),
                                "application/vnd.cncf.model.weight.v1.gguf")]}
        mdigest = self.reg.push_manifest(repo, "sha256:" + hashlib.sha256(
            json.dumps(man).encode()).hexdigest(), man, OCI_MANIFEST)
        size = len(json.dumps(man).encode())
        attest = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + mdigest, "size": size,
                  "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            attest, {"mediaType": OCI_MANIFEST, "digest": "sha256:" + mdigest, "size": size,
                     "platform": {"os": "linux", "architecture": "amd64"}}]}
        self.reg.push_manifest(repo, "v1", index, OCI_INDEX)
        got = self.pull("oci://127.0.0.1:%d/%s:v1" % (self.reg.port, repo))
        m = self.model(got["id"])
        self.assertEqual(m["commit"], mdigest)
        self.assertEqual([f["path"] for f in m["files"]], ["model.gguf"])
        self.assertEqual(m["gguf"]["architecture"], "gemma3")
        pinned = "oci://127.0.0.1:%d/%s@sha256:%s" % (self.reg.port, repo, mdigest)
        got = self.pull(pinned)
        self.assertEqual(got["id"], pinned)

    def test_ollama_library_and_user_models(self):
        g = self.gguf("tiny.gguf", size=(1 << 20) + 1, seed=31, arch="llama")
        extras = [("application/vnd.ollama.image.template", b"{{ .Prompt }}"),
                  ("application/vnd.ollama.image.params", b'{"stop":["<|eot|>"]}'),
                  ("application/vnd.ollama.image.license", b"license one"),
                  ("application/vnd.ollama.image.license", b"license two")]
        man = ollama_manifest(self.reg, "library/tinyllm", g, extras)
        digest = self.reg.push_manifest("library/tinyllm", "1b", man, DOCKER_MANIFEST)
        got = self.pull("ollama:tinyllm:1b")
        self.assertEqual(got["id"], "ollama:tinyllm:1b")
        m = self.model("ollama:tinyllm:1b")
        self.assertEqual([f["path"] for f in m["files"]],
                         ["model.gguf", "template", "params", "LICENSE", "LICENSE-2"])
        snap = os.path.join(self.oci_dir("library/tinyllm"), "snapshots", digest)
        self.assertEqual(read(os.path.join(snap, "LICENSE-2")), b"license two")
        self.assertEqual(read(os.path.join(snap, "model.gguf")), read(g["path"]))
        # A user's model: USER/NAME.
        self.reg.push_manifest("someone/tiny", "q4", ollama_manifest(self.reg, "someone/tiny", g),
                               DOCKER_MANIFEST)
        self.assertEqual(self.pull("ollama:someone/tiny:q4")["id"], "ollama:someone/tiny:q4")

    # -- errors -----------------------------------------------------------

    def test_unknown_tag_lists_the_tags(self):
        g = self.gguf("tags.gguf", size=1 << 20, seed=41)
        man = ollama_manifest(self.reg, "library/tagged", g)
        for tag in ("1b", "3b"):
            self.reg.push_manifest("library/tagged", tag, man, DOCKER_MANIFEST)
        out = self.pull("ollama:tagged:7b", ok=False)
        self.assertRegex(out, r"no tag or manifest '7b' in library/tagged; tags: (1b, 3b|3b, 1b)")
        out = self.pull("oci://127.0.0.1:%d/ai/nothing-here" % self.reg.port, ok=False)
        self.assertIn("repository ai/nothing-here not found", out)
        self.assertEqual([m for m in self.api("/v1/models")["models"]
                          if "tagged" in m["id"] or "nothing" in m["id"]], [])

    def test_manifest_without_gguf(self):
        man = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": dict(self.reg.push_blob("ai/docs", b"{}"),
                              mediaType="application/vnd.docker.ai.model.config.v0.1+json"),
               "layers": [layer(self.reg.push_blob("ai/docs", b"just a license"),
                                "application/vnd.docker.ai.license")]}
        self.reg.push_manifest("ai/docs", "latest", man, OCI_MANIFEST)
        out = self.pull("oci://127.0.0.1:%d/ai/docs" % self.reg.port, ok=False)
        self.assertIn("the manifest has no GGUF layer", out)

    def test_corrupted_blob_is_refused_and_nothing_kept(self):
        g = self.gguf("bad.gguf", size=(1 << 20) + 77, seed=51)
        man = ollama_manifest(self.reg, "library/corrupt", g)
        self.reg.push_manifest("library/corrupt", "1b", man, DOCKER_MANIFEST)
        data = self.reg.blob_data_path("sha256:" + g["sha256"])
        with open(data, "r+b") as f:
            f.seek(4096)
            byte = f.read(1)
            f.seek(4096)
            f.write(bytes([byte[0] ^ 0xFF]))
        out = self.pull("ollama:corrupt:1b", ok=False)
        self.assertIn("sha256", out)
        blobs = os.path.join(self.oci_dir("library/corrupt"), "blobs")
        kept = [n for n in (os.listdir(blobs) if os.path.isdir(blobs) else [])
                if n.startswith(g["sha256"])]
        self.assertEqual(kept, [])
        self.assertEqual([m for m in self.api("/v1/models")["models"]
                          if m["id"].startswith("ollama:corrupt")], [])

    def test_blob_shared_with_an_hf_model_is_stored_once(self):
        self.pull("hf:org/shared-GGUF:Q4_K_M")
        man = ollama_manifest(self.reg, "library/shared", self.shared)
        self.reg.push_manifest("library/shared", "latest", man, DOCKER_MANIFEST)
        self.pull("ollama:shared")
        hf_blob = os.path.join(self.cache, "models--org--shared-GGUF", "blobs",
                               self.shared["sha256"])
        oci_blob = os.path.join(self.oci_dir("library/shared"), "blobs", self.shared["sha256"])
        self.assertEqual(os.stat(hf_blob).st_ino, os.stat(oci_blob).st_ino)
        self.assertEqual(self.reg.blob_gets(self.shared["sha256"]), [])


def openssl(*args, data=None):
    return subprocess.run(["openssl"] + list(args), input=data, capture_output=True,
                          check=True, timeout=60).stdout


def libtrust_kid(key_pem):
    """The key id docker/libtrust gives the public key: base32 of the first 30
    bytes of the sha256 of its DER, in groups of four joined by ':'."""
    der = openssl("pkey", "-in", key_pem, "-pubout", "-outform", "DER")
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


class TokenServer:
    """The registry's realm: a token for the asked scope when the request
    carries Basic USER:PASSWORD, 401 otherwise. Records what it was sent."""

    def __init__(self, key_pem):
        self.key, self.kid = key_pem, libtrust_kid(key_pem)
        self.seen = []
        server = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                auth = self.headers.get("Authorization", "")
                server.seen.append({"auth": auth, "query": q})
                want = "Basic " + base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode()).decode()
                if auth != want or q.get("service") != [SERVICE]:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                repo = q["scope"][0].split(":")[1]
                body = json.dumps({"token": server.mint(repo, ["pull"]),
                                   "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.realm = "http://127.0.0.1:%d/token" % self.httpd.server_address[1]

    def mint(self, repo, actions):
        now = int(time.time())
        head = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        claims = {"iss": ISSUER, "sub": USER, "aud": SERVICE, "exp": now + 600,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(),
                  "access": [{"type": "repository", "name": repo, "actions": actions}]}
        signing = b64url(json.dumps(head).encode()) + "." + b64url(json.dumps(claims).encode())
        sig = openssl("dgst", "-sha256", "-sign", self.key, data=signing.encode())
        return signing + "." + b64url(sig)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class RedirectingFront:
    """A registry's front as public registries have one: every request goes
    on to the registry, except blob GETs, answered with a 307 to a content
    host of another origin (127.0.0.2), which serves the blob from the
    registry's storage and records the Authorization header it was sent.
    Each redirect hands out a signed link of its own (?exp=N); with
    link_budget set, a link expires once it has served that many bytes: the
    content host cuts the answer there and refuses the link (403) after.
    With expire_tokens set, a bearer token expires once a manifest was
    fetched with it: the front answers its later requests with 401 and
    `challenge`."""

    def __init__(self, reg):
        self.reg, self.front_auth, self.cdn_auth = reg, [], []
        self.cdn_ranges = []  # the Range header of each content request ("" for none)
        self.rate = 0  # bytes/s the content host sends at; 0: no limit
        self.link_budget = 0  # bytes a signed link serves before it expires; 0: never
        self.links = []  # the signed links handed out, in order
        self.sent = {}  # bytes each link served
        self.refused = []  # the links the content host refused as expired
        self.expire_tokens = False
        self.expired = set()  # the Authorization headers of expired tokens
        self.challenge = ""  # the WWW-Authenticate of a 401 for an expired token
        self.lock = threading.Lock()
        front = self

        class Front(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def expired(self):
                if self.headers.get("Authorization", "") not in front.expired:
                    return False
                self.send_response(401)
                self.send_header("WWW-Authenticate", front.challenge)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True

            def redirect_blob(self):
                if self.expired():
                    return True
                m = re.match(r"^/v2/.+/blobs/(sha256:[0-9a-f]{64})$", self.path)
                if not m:
                    return False
                with front.lock:
                    link = "/b/%s?exp=%d" % (m.group(1), len(front.links))
                    front.links.append(link)
                self.send_response(307)
                self.send_header("Location", front.cdn_url + link)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True

            def do_HEAD(self):
                front.front_auth.append(self.headers.get("Authorization", ""))
                if not self.redirect_blob():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def do_GET(self):
                front.front_auth.append(self.headers.get("Authorization", ""))
                if self.redirect_blob():
                    return
                keep = ("Authorization", "Accept", "Range")
                req = urllib.request.Request(reg.url + self.path, headers={
                    k: v for k, v in self.headers.items() if k in keep})
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        status, headers, body = r.status, r.headers, r.read()
                except urllib.error.HTTPError as err:
                    status, headers, body = err.code, err.headers, err.read()
                auth = self.headers.get("Authorization", "")
                if front.expire_tokens and "/manifests/" in self.path and status == 200 and \
                        auth.startswith("Bearer "):
                    front.expired.add(auth)
                self.send_response(status)
                for k in ("Content-Type", "Docker-Content-Digest", "WWW-Authenticate"):
                    if headers.get(k):
                        self.send_header(k, headers[k])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Cdn(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                front.cdn_auth.append(self.headers.get("Authorization", ""))
                front.cdn_ranges.append(self.headers.get("Range", ""))
                link = self.path
                budget = front.link_budget
                with front.lock:
                    expired = budget and front.sent.get(link, 0) >= budget
                    if expired:
                        front.refused.append(link)
                if expired:
                    self.send_response(403)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path = urllib.parse.urlparse(self.path).path
                data = read(reg.blob_data_path(path.split("/")[-1]))
                first, last = 0, len(data) - 1
                rng = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range", ""))
                if rng:
                    first = int(rng.group(1))
                    last = min(int(rng.group(2) or last), last)
                    self.send_response(206)
                    self.send_header("Content-Range", "bytes %d-%d/%d" % (first, last, len(data)))
                else:
                    self.send_response(200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(last - first + 1))
                self.end_headers()
                try:
                    for off in range(first, last + 1, 64 << 10):
                        piece = data[off:min(off + (64 << 10), last + 1)]
                        with front.lock:
                            left = budget - front.sent.get(link, 0) if budget else len(piece)
                            piece = piece[:max(left, 0)]
                            front.sent[link] = front.sent.get(link, 0) + len(piece)
                        if not piece:
                            self.close_connection = True
                            break  # the link expired mid-answer
                        self.wfile.write(piece)
                        if front.rate:
                            time.sleep((64 << 10) / front.rate)
                except OSError:
                    pass  # the client went away (a cancelled pull)

        self.front = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Front)
        self.cdn = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Cdn)
        for srv in (self.front, self.cdn):
            threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.host = "127.0.0.1:%d" % self.front.server_address[1]
        self.cdn_url = "http://127.0.0.2:%d" % self.cdn.server_address[1]

    def stop(self):
        for srv in (self.front, self.cdn):
            srv.shutdown()
            srv.server_close()


@unittest.skipUnless(REGISTRY_BIN, "docker-registry is not installed (scripts/install-deps TEST)")
class OciTokenAuth(CliMixin, DaemonTestCase):
    tmp_prefix = "oci-auth-"
    serve_defaults = {"level": "info"}

    @classmethod
    def set_up_class(cls):
        t = lambda *p: os.path.join(cls.tmp, *p)
        key, cert = t("key.pem"), t("cert.pem")
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                "-subj", "/CN=" + ISSUER, "-days", "2")
        cls.tokens = TokenServer(key)
        os.makedirs(t("registry"))
        cls.reg = Registry(t("registry"), auth={"token": {
            "realm": cls.tokens.realm, "service": SERVICE, "issuer": ISSUER,
            "rootcertbundle": cert}})
        cls.reg.token = cls.tokens.mint
        cls.front = RedirectingFront(cls.reg)
        cls.auth_file = t("config.json")
        cred = {"auth": base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode()).decode()}
        with open(cls.auth_file, "w") as f:
            json.dump({"auths": {cls.reg.host: cred, "http://%s/" % cls.front.host: cred}}, f)
        cls.gguf = fixtures.write_gguf(t("private.gguf"), size=(3 << 20) + 11, seed=91)
        man = ollama_manifest(cls.reg, "team/private", cls.gguf)
        cls.reg.push_manifest("team/private", "v1", man, DOCKER_MANIFEST)
        cls.ref = "oci://%s/team/private:v1" % cls.reg.host
        cls.daemon, cls.url = cls.serve("hive", ["--registry-auth", cls.auth_file])
        cls.anon, cls.anon_url = cls.serve("anon")

    @classmethod
    def tearDownClass(cls):
        for name in ("reg", "tokens", "front"):
            if getattr(cls, name, None):
                getattr(cls, name).stop()
        super().tearDownClass()

    def test_credentials_from_the_auth_file_earn_a_token(self):
        rc, out, err = self.run_cli("pull", "--json", self.ref)
        self.assertEqual(rc, 0, out + err)
        want = "Basic " + base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode()).decode()
        asked = [s for s in self.tokens.seen if s["auth"] == want]
        self.assertTrue(asked)
        self.assertEqual(asked[-1]["query"]["scope"], ["repository:team/private:pull"])
        rc, out, err = self.run_cli("show", "--json", self.ref)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(json.loads(out)["files"][0]["sha256"], self.gguf["sha256"])

    def test_blob_redirect_is_followed_without_the_registry_token(self):
        ref = "oci://%s/team/private:v1" % self.front.host
        rc, out, err = self.run_cli("pull", "--json", ref)
        self.assertEqual(rc, 0, out + err)
        # The registry got the bearer token; the content host never did.
        self.assertTrue([a for a in self.front.front_auth if a.startswith("Bearer ")])
        self.assertTrue(self.front.cdn_auth)
        self.assertEqual(set(self.front.cdn_auth), {""})

    def push_behind_front(self, name, size, seed):
        """A model team/NAME:v1 of one GGUF; returns the GGUF and its ref through the front."""
        g = fixtures.write_gguf(os.path.join(self.tmp, name + ".gguf"), size=size, seed=seed)
        man = ollama_manifest(self.reg, "team/" + name, g)
        self.reg.push_manifest("team/" + name, "v1", man, DOCKER_MANIFEST)
        return g, "oci://%s/team/%s:v1" % (self.front.host, name)

    def blobs_behind_front(self, name):
        return os.path.join(self.tmp, "hive", "hf-home", "hub", "oci--%s--team--%s" % (
            self.front.host.replace(":", "_"), name), "blobs")

    def test_cancelled_pull_resumes(self):
        g, ref = self.push_behind_front("slow", (4 << 20) + 3, 97)
        self.front.rate = 1 << 20
        try:
            rc, out, err = self.run_cli("pull", "--detach", ref)
            self.assertEqual(rc, 0, out + err)
            job = out.strip()
            deadline = time.time() + 30
            done = 0
            while time.time() < deadline and done < (1 << 20):
                with urllib.request.urlopen(self.url + "/v1/jobs/" + job, timeout=10) as r:
                    done = (json.loads(r.read()).get("progress") or {}).get("bytes_done", 0)
                time.sleep(0.05)
            self.assertGreaterEqual(done, 1 << 20)
            rc, out, err = self.run_cli("cancel", job)
            self.assertEqual(rc, 0, out + err)
            # The content host stays slow until the cancelled transfer has let go
            # (its token fires a moment after the job ends).
            time.sleep(0.5)
            blobs = self.blobs_behind_front("slow")
            partials = [n for n in os.listdir(blobs) if n.endswith(".partial")]
            self.assertEqual(partials, [g["sha256"] + ".partial"])
        finally:
            self.front.rate = 0
        before = len(self.front.cdn_ranges)
        rc, out, err = self.run_cli("pull", "--json", ref)
        self.assertEqual(rc, 0, out + err)
        # The second pull asked only for what the first had not saved.
        starts = [int(re.match(r"bytes=(\d+)-", r).group(1))
                  for r in self.front.cdn_ranges[before:] if r]
        self.assertTrue(starts and min(starts) > 0, self.front.cdn_ranges[before:])

    def test_expired_signed_link_is_renewed_by_the_registry(self):
        g, ref = self.push_behind_front("expiring", (3 << 20) + 7, 99)
        self.front.link_budget = 1 << 20
        try:
            rc, out, err = self.run_cli("pull", "--json", ref)
        finally:
            self.front.link_budget = 0
        self.assertEqual(rc, 0, out + err)
        # Each link expired after a MiB; the registry handed out fresh ones, each
        # asked with the registry's token, and the content host never saw it.
        mine = [l for l in self.front.links if g["sha256"] in l]
        self.assertGreaterEqual(len(mine), 4, mine)
        self.assertTrue(set(self.front.refused) & set(mine))
        self.assertEqual(set(self.front.cdn_auth), {""})
        rc, out, err = self.run_cli("show", "--json", ref)
        self.assertEqual(rc, 0, out + err)
        f = json.loads(out)["files"][0]
        self.assertEqual(f["sha256"], g["sha256"])
        blob = os.path.join(self.blobs_behind_front("expiring"), g["sha256"])
        self.assertEqual(hashlib.sha256(read(blob)).hexdigest(), g["sha256"])

    def test_token_that_expires_mid_pull_is_renewed_once(self):
        g, ref = self.push_behind_front("renewed", (2 << 20) + 9, 101)
        self.front.challenge = 'Bearer realm="%s",service="%s",scope="repository:%s:pull"' % (
            self.tokens.realm, SERVICE, "team/renewed")
        asked = len(self.tokens.seen)
        self.front.expire_tokens = True
        try:
            rc, out, err = self.run_cli("pull", "--json", ref)
        finally:
            self.front.expire_tokens = False
        self.assertEqual(rc, 0, out + err)
        # The plan's token expired before the blob was asked for; the challenge
        # gave one more, and only one.
        self.assertTrue(self.front.expired)
        self.assertEqual(len(self.tokens.seen) - asked, 2, self.tokens.seen[asked:])
        self.assertEqual(set(self.front.cdn_auth), {""})
        blob = os.path.join(self.blobs_behind_front("renewed"), g["sha256"])
        self.assertEqual(hashlib.sha256(read(blob)).hexdigest(), g["sha256"])

    def test_without_credentials_the_failure_says_so(self):
        rc, out, err = self.run_cli("pull", self.ref, env=self.env(RBEE_HIVE_URL=self.anon_url))
        self.assertNotEqual(rc, 0)
        self.assertIn("the token service refused an anonymous pull", out + err)
        self.assertIn("--registry-auth", out + err)


HTPASSWD = shutil.which("htpasswd")


@unittest.skipUnless(REGISTRY_BIN and HTPASSWD,
                     "docker-registry or apache2-utils is not installed (scripts/install-deps TEST)")
class OciBasicAuth(CliMixin, DaemonTestCase):
    """A registry that wants a user name and password (htpasswd) on every
    request, blobs included."""
    tmp_prefix = "oci-basic-"
    serve_defaults = {"level": "info"}

    @classmethod
    def set_up_class(cls):
        t = lambda *p: os.path.join(cls.tmp, *p)
        with open(t("htpasswd"), "w") as f:
            f.write(subprocess.run([HTPASSWD, "-Bbn", USER, PASSWORD], capture_output=True,
                                   text=True, check=True, timeout=30).stdout)
        os.makedirs(t("registry"))
        cls.reg = Registry(t("registry"), auth={"htpasswd": {
            "realm": "basic-realm", "path": t("htpasswd")}})
        cls.reg.basic = "%s:%s" % (USER, PASSWORD)
        cls.gguf = fixtures.write_gguf(t("basic.gguf"), size=(2 << 20) + 5, seed=95)
        man = ollama_manifest(cls.reg, "team/basic", cls.gguf)
        cls.reg.push_manifest("team/basic", "v1", man, DOCKER_MANIFEST)
        cls.ref = "oci://%s/team/basic:v1" % cls.reg.host
        auth_file = t("config.json")
        with open(auth_file, "w") as f:
            json.dump({"auths": {cls.reg.host: {"auth": base64.b64encode(
                cls.reg.basic.encode()).decode()}}}, f)
        cls.daemon, cls.url = cls.serve("hive", ["--registry-auth", auth_file])
        cls.anon, cls.anon_url = cls.serve("anon")

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "reg", None):
            cls.reg.stop()
        super().tearDownClass()

    def test_basic_credentials_go_with_every_request(self):
        rc, out, err = self.run_cli("pull", "--json", self.ref)
        self.assertEqual(rc, 0, out + err)
        rc, out, err = self.run_cli("show", "--json", self.ref)
        self.assertEqual(json.loads(out)["files"][0]["sha256"], self.gguf["sha256"])

    def test_without_credentials_the_failure_says_so(self):
        rc, out, err = self.run_cli("pull", self.ref, env=self.env(RBEE_HIVE_URL=self.anon_url))
        self.assertNotEqual(rc, 0)
        self.assertIn("asks for a user name and password (give the daemon --registry-auth FILE)",
                      out + err)


if __name__ == "__main__":
    unittest.main()
